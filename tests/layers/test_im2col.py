"""im2col / col2im against their plain references, adjointness, Conv2D against Eq. 11 written out,
memory layout (NCHW vs channels-last) never changing a value, and max-pooling's tie rule."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nanosgm import backend
from nanosgm.layers import BatchNorm, Conv2D, MaxPool2D
from nanosgm.layers.conv import conv2d_reference
from nanosgm.layers.pool import maxpool2d_reference
from nanosgm.layers import conv as conv_module
from nanosgm.layers.im2col import (col2im, col2im_cf, col2im_reference, im2col, im2col_cf, im2col_reference, output_size, pad, pad_channels_last)
from strategies import batchnorm_shapes, conv_configs, conv_input_shape as x_shape, conv_layer, distinct, normal, pool_configs, seeds

# Exact comparisons are cheap: more examples than a gradient check, still well under a second each.
FAST = settings(max_examples=40, deadline=None)


def cols_shape(cfg):
    ho = output_size(cfg["h"], cfg["k"], cfg["stride"], cfg["padding"])
    wo = output_size(cfg["w"], cfg["k"], cfg["stride"], cfg["padding"])
    return (cfg["n"] * ho * wo, cfg["k"] * cfg["k"] * cfg["cin"])


def channels_last(x):
    """The same NCHW array (same shape, same values) stored channels-last in memory."""
    y = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous and np.array_equal(y, x)
    return y


def args(cfg):
    return cfg["k"], cfg["k"], cfg["stride"], cfg["padding"]


# --- im2col / col2im ------------------------------------------------------------------------------
@FAST
@given(conv_configs(), seeds)
def test_im2col_equals_reference_exactly(cfg, seed):
    x = normal(seed, x_shape(cfg))
    fast = im2col(x, *args(cfg))
    assert fast.shape == cols_shape(cfg)
    np.testing.assert_array_equal(fast, im2col_reference(x, *args(cfg)))


@pytest.mark.parametrize("padding", [0, 1, 3])
def test_channels_last_padding_equals_pad_in_channels_last_memory(padding):
    for x in (normal(0, (2, 3, 5, 4)), channels_last(normal(0, (2, 3, 5, 4)))):
        padded = pad_channels_last(x, padding)
        np.testing.assert_array_equal(padded, pad(x, padding))
        assert padding == 0 or padded.transpose(0, 2, 3, 1).flags.c_contiguous


@FAST
@given(conv_configs(), seeds)
def test_channels_first_layout_is_the_transpose_of_the_reference(cfg, seed):
    """im2col_cf holds the same entries, rows (c, a, b) instead of columns (a, b, c); col2im_cf is its adjoint."""
    x = normal(seed, x_shape(cfg))
    c, k = cfg["cin"], cfg["k"]
    ref = im2col_reference(x, *args(cfg))                                  # (N*Ho*Wo, (a, b, c))
    as_cf = ref.reshape(-1, k, k, c).transpose(3, 1, 2, 0).reshape(c * k * k, -1)
    np.testing.assert_array_equal(im2col_cf(x, *args(cfg)), as_cf)
    cols = np.random.default_rng(seed).integers(-1000, 1000, as_cf.shape).astype(np.float64)
    back = cols.reshape(c, k, k, -1).transpose(3, 1, 2, 0).reshape(ref.shape)
    np.testing.assert_array_equal(col2im_cf(cols, x_shape(cfg), *args(cfg)),
                                  col2im_reference(back, x_shape(cfg), *args(cfg)))


@pytest.mark.parametrize("few", [0, 100])
def test_conv2d_gives_the_same_numbers_with_either_im2col_layout(few, monkeypatch):
    """FEW_CHANNELS decides the layout; forcing one or the other must not change forward or backward."""
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((3, 4, 7, 6)), rng.standard_normal((3, 5, 4, 3))   # output 4x3
    results = []
    for threshold in (few, 100 - few):
        monkeypatch.setattr(conv_module, "FEW_CHANNELS", threshold)
        backend.seed(1)
        layer = Conv2D(4, 5, 3, stride=2, padding=1, dtype="float64")
        y = layer.forward(x)
        results.append((y, layer.backward(dy), layer.grads["W"], layer.grads["b"]))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@FAST
@given(conv_configs(), seeds)
def test_col2im_equals_reference_exactly_on_integer_values(cfg, seed):
    """Integer-valued float64 entries make every sum exact, so the two must agree bit for bit
    (on general values they add a pixel's overlapping entries in different orders: see the next test)."""
    cols = np.random.default_rng(seed).integers(-1000, 1000, cols_shape(cfg)).astype(np.float64)
    fast = col2im(cols, x_shape(cfg), *args(cfg))
    assert fast.shape == x_shape(cfg)
    np.testing.assert_array_equal(fast, col2im_reference(cols, x_shape(cfg), *args(cfg)))


@FAST
@given(conv_configs(), seeds)
def test_col2im_equals_reference_to_rounding(cfg, seed):
    cols = normal(seed, cols_shape(cfg))
    np.testing.assert_allclose(col2im(cols, x_shape(cfg), *args(cfg)),
                               col2im_reference(cols, x_shape(cfg), *args(cfg)), rtol=1e-13, atol=1e-14)


@FAST
@given(conv_configs(), seeds)
def test_col2im_is_the_adjoint_of_im2col(cfg, seed):
    x = normal(seed, x_shape(cfg))
    c = normal(seed + 1, cols_shape(cfg))
    lhs = float(np.sum(im2col(x, *args(cfg)) * c))
    rhs = float(np.sum(x * col2im(c, x_shape(cfg), *args(cfg))))
    scale = max(1.0, float(np.sum(np.abs(im2col(x, *args(cfg)) * c))))
    assert abs(lhs - rhs) <= 1e-10 * scale, f"<im2col(x), c> = {lhs!r} but <x, col2im(c)> = {rhs!r}"


@FAST
@given(conv_configs(), seeds)
def test_im2col_accepts_channels_last_input(cfg, seed):
    x = normal(seed, x_shape(cfg))
    np.testing.assert_array_equal(im2col(channels_last(x), *args(cfg)), im2col(x, *args(cfg)))


def test_im2col_row_and_column_order_by_hand():
    """Rows are (n, i, j), columns (a, b, c): spelled out on a 1x2x3x3 input with a 2x2 kernel."""
    x = np.arange(18, dtype=np.float64).reshape(1, 2, 3, 3)
    cols = im2col(x, 2, 2)
    assert cols.shape == (4, 8)
    # output position (i, j) = (0, 1): window rows 0-1, columns 1-2; columns ordered (a, b, c)
    expected = [x[0, c, a, 1 + b] for a in range(2) for b in range(2) for c in range(2)]
    np.testing.assert_array_equal(cols[1], expected)


def test_im2col_padding_contributes_zeros():
    x = np.ones((1, 1, 2, 2))
    cols = im2col(x, 3, 3, 1, 1)            # one padded 4x4 map, 2x2 outputs, every window has 5 zeros
    assert cols.shape == (4, 9)
    np.testing.assert_array_equal(cols.sum(axis=1), [4, 4, 4, 4])


# --- Conv2D against Eq. 11 --------------------------------------------------------------------------
@FAST
@given(conv_configs(), seeds)
def test_conv2d_forward_equals_eq11_reference(cfg, seed):
    layer = conv_layer(cfg, seed)
    x = normal(seed, x_shape(cfg))
    y = layer.forward(x)
    ref = conv2d_reference(x, layer.params["W"], layer.params["b"], cfg["stride"], cfg["padding"])
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_conv2d_reference_is_a_cross_correlation():
    """Eq. 11 by hand: a 2x2 kernel picking the top-left pixel shifts nothing (no kernel flip)."""
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    W = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])
    np.testing.assert_array_equal(conv2d_reference(x, W)[0, 0], [[0, 1], [3, 4]])
    layer = Conv2D(1, 1, 2, dtype="float64")
    layer.params["W"][...] = W
    np.testing.assert_array_equal(layer.forward(x)[0, 0], [[0, 1], [3, 4]])


# --- memory layout never changes values --------------------------------------------------------------
def _run(layer, x, dy, training=True):
    y = np.array(layer.forward(x, training=training))
    dx = np.array(layer.backward(dy))
    grads = {k: np.array(v) for k, v in layer.grads.items()}
    return y, dx, grads


def _assert_same(a, b):
    ya, dxa, ga = a
    yb, dxb, gb = b
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(dxa, dxb)
    assert ga.keys() == gb.keys()
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k], err_msg=f"grad {k!r}")


def _conv_both_layouts(cfg, seed):
    x = normal(seed, x_shape(cfg))
    results = []
    for make in (lambda a: a, channels_last):
        layer = conv_layer(cfg, seed)
        y = layer.forward(make(x))
        results.append(_run(layer, make(x), make(normal(seed + 2, y.shape))))
    return results


def _batchnorm_both_layouts(shape, seed, training):
    x = normal(seed, shape) * 3 + 1
    results = []
    for make in (lambda a: a, channels_last):
        layer = BatchNorm(shape[1], dtype="float64")
        layer.params["gamma"][...] = normal(seed + 1, shape[1])
        layer.params["beta"][...] = normal(seed + 2, shape[1])
        layer.buffers["running_var"][...] = 0.5 + np.abs(normal(seed + 3, shape[1]))
        y, dx, grads = _run(layer, make(x), make(normal(seed + 4, shape)), training=training)
        grads.update({k: v.copy() for k, v in layer.buffers.items()})     # running stats must agree too
        results.append((y, dx, grads))
    return results


@FAST
@given(conv_configs().filter(lambda c: c["n"] > 1), seeds)
def test_conv2d_layout_does_not_change_values(cfg, seed):
    _assert_same(*_conv_both_layouts(cfg, seed))


@FAST
@given(pool_configs(), seeds)
def test_maxpool_layout_does_not_change_values(cfg, seed):
    x = distinct(seed, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    results = []
    for make in (lambda a: a, channels_last):
        layer = MaxPool2D(cfg["k"], cfg["stride"])
        y = layer.forward(make(x))
        results.append(_run(layer, make(x), make(normal(seed, y.shape))))
    _assert_same(*results)


@FAST
@given(batchnorm_shapes().filter(lambda s: len(s) == 4 and s[0] > 1), seeds, st.booleans())
def test_batchnorm_layout_does_not_change_values(shape, seed, training):
    _assert_same(*_batchnorm_both_layouts(shape, seed, training))


# With a single sample, ``t.transpose(0, 2, 3, 1).reshape(-1, C)`` of an NCHW array is a *view* with
# Fortran strides, and NumPy would then sum the rows in another order than for channels-last input: the
# layers make the rows contiguous first, so the results are identical bit for bit (a regression test).
def test_conv2d_layout_does_not_change_values_for_a_single_sample():
    cfg = dict(n=1, cin=3, cout=3, h=8, w=7, k=1, stride=1, padding=0)
    _assert_same(*_conv_both_layouts(cfg, 0))


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_layout_does_not_change_values_for_a_single_sample(training):
    _assert_same(*_batchnorm_both_layouts((1, 3, 8, 7), 0, training))


@FAST
@given(conv_configs(), seeds)
def test_conv2d_layout_changes_values_at_most_by_rounding(cfg, seed):
    (ya, dxa, ga), (yb, dxb, gb) = _conv_both_layouts(cfg, seed)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(dxa, dxb)
    for k in ga:
        np.testing.assert_allclose(ga[k], gb[k], rtol=1e-13, atol=1e-13, err_msg=f"grad {k!r}")


def test_conv2d_output_is_a_channels_last_view_with_nchw_shape():
    """The documented layout: an NCHW-shaped view of channels-last memory (what the layout tests rely on)."""
    layer = Conv2D(2, 3, 3, dtype="float64")
    y = layer.forward(normal(0, (2, 2, 5, 5)))
    assert y.shape == (2, 3, 3, 3)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous


# --- max-pooling's tie rule -------------------------------------------------------------------------
@FAST
@given(pool_configs(), seeds, st.sampled_from(["float32", "float64"]), st.booleans())
def test_maxpool_equals_its_per_window_reference_exactly(cfg, seed, dtype, ties):
    """Forward and backward against maxpool2d_reference, bit for bit where windows do not overlap; with
    ``ties`` the values are rounded to a few levels, so most windows hold repeated maxima (the first in
    row-major order must get the gradient)."""
    x = normal(seed, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    x = (np.round(x) if ties else x).astype(dtype)
    layer = MaxPool2D(cfg["k"], cfg["stride"])
    y = layer.forward(x)
    dy = normal(seed + 1, y.shape).astype(dtype)
    y_ref, dx_ref = maxpool2d_reference(x, cfg["k"], cfg["stride"], dy=dy)
    np.testing.assert_array_equal(y, y_ref)
    dx = layer.backward(dy)
    if (cfg["stride"] or cfg["k"]) >= cfg["k"]:       # windows do not overlap: each dx element gets one term
        np.testing.assert_array_equal(dx, dx_ref)
    else:                                             # overlapping windows add their terms in another order
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-6 if dtype == "float32" else 1e-14, atol=1e-6)


@pytest.mark.parametrize("k,stride", [(2, 2), (3, 3), (2, 1), (3, 2)])
def test_maxpool_all_ties_route_each_window_to_its_own_top_left(k, stride):
    """Every window of a constant map sends its gradient once, to its first (top-left) element."""
    h = w = 7
    layer = MaxPool2D(k, stride)
    x = np.zeros((2, 3, h, w))
    y = layer.forward(x)
    dy = normal(0, y.shape)
    dx = layer.backward(dy)
    expected = np.zeros_like(x)
    ho, wo = y.shape[2], y.shape[3]
    for i in range(ho):
        for j in range(wo):
            expected[:, :, i * stride, j * stride] += dy[:, :, i, j]
    np.testing.assert_allclose(dx, expected, rtol=0, atol=1e-15)
    assert dx.sum() == pytest.approx(dy.sum())           # the gradient is neither lost nor duplicated


# --- blocks of samples (im2col.sample_blocks), on one thread or several, change no number -----------
@pytest.mark.parametrize("k_pool, s_pool", [(2, 2), (3, 2)])
def test_blocks_of_samples_give_the_same_numbers_as_one_block(k_pool, s_pool, monkeypatch):
    """One block; one sample a block, serially and on 3 threads (nanosgm.plumbing.threads.run_blocks); 2 + 2 + 1 on 3 threads."""
    from nanosgm.layers import im2col as im2col_module
    x = channels_last(normal(3, (5, 3, 8, 8)))
    x[:, :, ::2, ::2] = x[:, :, 1::2, 1::2]                           # ties in the pooling windows
    ho = output_size(8, k_pool, s_pool, 0)
    dy = normal(4, (5, 3, ho, ho))
    dcols = normal(5, (5 * 8 * 8, 9 * 3))
    results = []
    for block_bytes, workers in ((1 << 40, "1"), (1, "1"), (1, "3"), (3 * 8 * 8 * 4 * 2, "3")):
        monkeypatch.setattr(im2col_module, "BLOCK_BYTES", block_bytes)
        monkeypatch.setenv("NANOSGM_THREADS", workers)
        pool = MaxPool2D(k_pool, s_pool)
        out = {"im2col": im2col(x, 3, 3, 1, 1), "col2im": np.asarray(col2im(dcols, x.shape, 3, 3, 1, 1)),
               "pool": np.asarray(pool.forward(x))}
        out["pool_dx"] = np.asarray(pool.backward(dy))
        results.append(out)
    assert len(im2col_module.sample_blocks(5, 3 * 8 * 8 * 4)) == 3
    for other in results[1:]:
        for name, value in results[0].items():
            np.testing.assert_array_equal(other[name], value, err_msg=name)
