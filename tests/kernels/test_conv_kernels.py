"""nanosgm.kernels.conv: im2col / col2im (both layouts) and the conv bias gradient as one kernel each.

Each kernel is compared bit for bit with the code it replaced (copied below as it was), on NumPy and on the
stand-in (where it must be one launch), for C = 1, 3, 31, 96, batches that are not multiples of 32, the
stride/padding/kernel shapes Conv2D takes, and non-contiguous inputs. The twins' gathers are transcribed in
NumPy (same index arithmetic, same order of additions) to check that they reproduce the references bit for
bit; the ``gpu`` test runs the compiled twins themselves on a device.
"""
import numpy as np
import pytest

from nanosgm import backend, standin
from nanosgm.kernels import compiled_twins
from nanosgm.kernels import conv as kconv
from nanosgm.kernels.reduce import column_sum
from nanosgm.layers import Conv2D
from nanosgm.layers.im2col import col2im, col2im_cf, im2col, im2col_cf, im2col_reference, output_size, pad, pad_channels_last

GEOMETRIES = [(5, 5, 1, 0), (3, 3, 1, 1), (3, 3, 2, 1), (1, 1, 1, 0), (2, 2, 2, 0), (3, 5, 2, 2)]   # kh, kw, s, p
CHANNELS = [1, 3, 31, 96]
LAYOUTS = ["nchw", "channels_last", "strided"]


def normal(seed, shape, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def arrange(x, layout, to_device=np.asarray):
    """x (N, C, H, W) on a backend (``to_device``), contiguous NCHW, an NCHW view of channels-last memory, or a
    strided view into a larger array (non-contiguous on every axis but N)."""
    if layout == "nchw":
        return to_device(np.ascontiguousarray(x))
    if layout == "channels_last":
        return to_device(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    n, c, h, w = x.shape
    big = np.zeros((n, 2 * c, 2 * h, 2 * w + 1), dtype=x.dtype)
    big[:, ::2, ::2, 1::2] = x
    return to_device(big)[:, ::2, ::2, 1::2]


def sizes(x_shape, kh, kw, s, p):
    return output_size(x_shape[2], kh, s, p), output_size(x_shape[3], kw, s, p)


# --- the code the kernels replaced, as it was (one block of samples: blocks change no number, test_im2col.py) ---
def old_im2col(x, kh, kw, s, p):
    n, c, h, w = x.shape
    ho, wo = sizes(x.shape, kh, kw, s, p)
    xpad = pad_channels_last(x, p).transpose(0, 2, 3, 1)
    cols = np.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            cols[:, :, :, a, b, :] = xpad[:, a:a + s * ho:s, b:b + s * wo:s, :]
    return cols.reshape(n * ho * wo, kh * kw * c)


def old_col2im(cols, x_shape, kh, kw, s, p):
    n, c, h, w = x_shape
    ho, wo = sizes(x_shape, kh, kw, s, p)
    cols = cols.reshape(n, ho, wo, kh, kw, c)
    dxpad = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            dxpad[:, a:a + s * ho:s, b:b + s * wo:s, :] += cols[:, :, :, a, b, :]
    return dxpad.transpose(0, 3, 1, 2)[:, :, p:p + h, p:p + w]


def old_im2col_cf(x, kh, kw, s, p):
    n, c, h, w = x.shape
    ho, wo = sizes(x.shape, kh, kw, s, p)
    xpad = pad(x, p)
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            cols[:, a, b] = xpad[:, :, a:a + s * ho:s, b:b + s * wo:s].transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * ho * wo)


def old_col2im_cf(cols, x_shape, kh, kw, s, p):
    n, c, h, w = x_shape
    ho, wo = sizes(x_shape, kh, kw, s, p)
    cols = cols.reshape(c, kh, kw, n, ho, wo)
    dxpad = np.zeros((c, n, h + 2 * p, w + 2 * p), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            dxpad[:, :, a:a + s * ho:s, b:b + s * wo:s] += cols[:, a, b]
    return dxpad.transpose(1, 0, 2, 3)[:, :, p:p + h, p:p + w]


# --- the twins' gathers, transcribed in NumPy (one "thread" per dx element, vectorised) --------------------
def gather_like_the_twin(x_shape, kh, kw, s, p, read, dtype):
    """dx[n, c, y, x] = 0 + the contributions read(n, c, i, j, a, b) for (a, b) in row-major order with
    y + p = a + s*i, x + p = b + s*j, 0 <= i < Ho, 0 <= j < Wo: the loop of _COL2IM / _COL2IM_CF."""
    n, c, h, w = x_shape
    ho, wo = sizes(x_shape, kh, kw, s, p)
    nn, ch, row, col = np.indices(x_shape)
    acc = np.zeros(x_shape, dtype=dtype)
    for a in range(kh):
        oi = row + p - a
        ok_a = (oi >= 0) & (oi % s == 0) & (oi // s < ho)
        for b in range(kw):
            j = col + p - b
            ok = ok_a & (j >= 0) & (j % s == 0) & (j // s < wo)
            value = read(nn, ch, np.clip(oi // s, 0, ho - 1), np.clip(j // s, 0, wo - 1), a, b)
            acc = np.where(ok, acc + value, acc)               # the twin skips (continue) where not ok
    return acc


def shape_for(c, n=5):
    return (n, c, 7, 9) if c < 96 else (n, c, 6, 5)


def _cases():
    for c in CHANNELS:
        for geometry in GEOMETRIES:
            yield pytest.param(c, geometry, id=f"C{c}-k{geometry[0]}x{geometry[1]}-s{geometry[2]}-p{geometry[3]}")


CASES = list(_cases())


# --- im2col ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c, geometry", CASES)
def test_im2col_is_the_old_copy_loop_bit_for_bit_and_one_launch_on_the_standin(c, geometry, layout):
    x = normal(c, shape_for(c, n=33 if c == 3 else 5))
    host = arrange(x, layout)
    for fast, old in ((im2col, old_im2col), (im2col_cf, old_im2col_cf)):
        expected = old(host, *geometry)
        np.testing.assert_array_equal(fast(host, *geometry), expected)
        with standin.counting() as count:
            on_device = fast(arrange(x, layout, standin.asarray), *geometry)
        assert count.launches == 1, dict(count.kernels)
        np.testing.assert_array_equal(on_device.get(), expected)
    np.testing.assert_array_equal(im2col(host, *geometry), im2col_reference(host, *geometry))


def test_im2col_writes_into_the_workspace_it_is_given():
    x = normal(0, (5, 31, 7, 9))
    x_dev = standin.asarray(x)
    first = im2col(x_dev, 3, 3, 1, 1)
    workspace = first.reshape(5, 7, 9, 3, 3, 31)
    with standin.counting() as count:
        im2col(x_dev * 2, 3, 3, 1, 1, out=workspace)
    assert count.launches == 2, dict(count.kernels)               # x * 2, then the one im2col kernel
    np.testing.assert_array_equal(first.get(), 2 * im2col_reference(x, 3, 3, 1, 1))   # written in place


# --- col2im ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("c, geometry", CASES)
def test_col2im_is_the_old_scatter_bit_for_bit_and_one_launch_on_the_standin(c, geometry, contiguous):
    x_shape = shape_for(c, n=33 if c == 31 else 5)
    ho, wo = sizes(x_shape, *geometry)
    kh, kw = geometry[:2]
    rows, width = x_shape[0] * ho * wo, kh * kw * c
    for fast, old, shape in ((col2im, old_col2im, (rows, width)), (col2im_cf, old_col2im_cf, (width, rows))):
        cols = normal(7, shape)
        cols = cols if contiguous else np.asfortranarray(cols)
        expected = old(cols, x_shape, *geometry)
        dx = fast(cols, x_shape, *geometry)
        assert dx.shape == x_shape
        np.testing.assert_array_equal(dx, expected)
        with standin.counting() as count:
            on_device = fast(standin.asarray(cols), x_shape, *geometry)
        assert count.launches == 1, dict(count.kernels)
        assert list(count.kernels) == [fast.__name__ + "_gather"]
        np.testing.assert_array_equal(on_device.get(), expected)


@pytest.mark.parametrize("c, geometry", CASES)
def test_the_twins_gathers_add_in_the_references_order(c, geometry):
    """The CUDA gathers' loops, transcribed: each dx element sums its contributions from 0 in (a, b) order."""
    x_shape = shape_for(c)
    ho, wo = sizes(x_shape, *geometry)
    kh, kw, s, p = geometry
    n = x_shape[0]
    cols_cl = normal(3, (n, ho, wo, kh, kw, c)) * np.float32(1e3) ** normal(4, (n, ho, wo, kh, kw, c))
    reference = kconv.col2im_gather.reference(cols_cl, x_shape=x_shape, stride=s, padding=p, blocks=[(0, n)])
    twin = gather_like_the_twin(x_shape, kh, kw, s, p, lambda nn, ch, i, j, a, b: cols_cl[nn, i, j, a, b, ch],
                                cols_cl.dtype)
    np.testing.assert_array_equal(twin, reference)
    cols_cf = np.ascontiguousarray(cols_cl.transpose(5, 3, 4, 0, 1, 2))   # (C, kh, kw, N, Ho, Wo)
    reference = kconv.col2im_cf_gather.reference(cols_cf, x_shape=x_shape, stride=s, padding=p)
    twin = gather_like_the_twin(x_shape, kh, kw, s, p, lambda nn, ch, i, j, a, b: cols_cf[ch, a, b, nn, i, j],
                                cols_cf.dtype)
    np.testing.assert_array_equal(twin, reference)


# --- the bias gradient -------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows, c", [(5 * 7 * 9, 1), (33 * 24 * 24, 3), (315, 31), (1000, 96)])
def test_bias_grad_is_the_column_sum_and_one_launch(rows, c):
    dy = normal(rows, (rows, c))
    for dy_rows in (dy, np.asfortranarray(dy), normal(1, (c, rows)).T):
        expected = dy_rows.sum(axis=0)
        np.testing.assert_array_equal(column_sum(dy_rows), expected)
        with standin.counting() as count:
            db = column_sum(standin.asarray(dy_rows))
        assert count.launches == 1 and count.kernels["column_sum"] == 1
        np.testing.assert_array_equal(db.get(), expected)


# --- Conv2D on the stand-in: the same numbers as NumPy, in a few launches -----------------------------------
@pytest.mark.parametrize("cin, geometry", [(1, (5, 5, 1, 0)), (3, (3, 3, 1, 1)), (31, (3, 3, 2, 1)), (96, (5, 5, 1, 0))])
def test_conv2d_on_the_standin_is_numpy_bit_for_bit_in_few_launches(cin, geometry):
    kh, kw, s, p = geometry
    x = arrange(normal(0, (5, cin, 9, 8)), "channels_last")
    host = Conv2D(cin, 6, (kh, kw), s, p, rng=np.random.default_rng(0))
    y = host.forward(x)
    dy = normal(1, y.shape)
    dx = host.backward(dy)
    backend.use("standin")
    try:
        device = Conv2D(cin, 6, (kh, kw), s, p, rng=np.random.default_rng(0))
        x_dev, dy_dev = standin.asarray(x), standin.asarray(dy)
        with standin.counting() as forward:
            y_dev = device.forward(x_dev)
        with standin.counting() as backward:
            dx_dev = device.backward(dy_dev)
    finally:
        backend.use("numpy")
    np.testing.assert_array_equal(y_dev.get(), y)
    np.testing.assert_array_equal(dx_dev.get(), dx)
    for name in ("W", "b"):
        np.testing.assert_array_equal(device.grads[name].get(), host.grads[name])
    # forward: im2col, matmul, + b (and W's reshape into a matrix for the channels-last layout)
    assert forward.launches <= 4, dict(forward.kernels)
    # backward: dy's rows, db, dW (matmul, + a transposing copy), dx (matmul, W's reshape, col2im)
    assert backward.launches <= 7, dict(backward.kernels)
    col2im_name = "col2im_cf_gather" if cin < 8 else "col2im_gather"
    assert backward.kernels[col2im_name] == 1 and backward.kernels["column_sum"] == 1


# --- the twins on a device (CuPy: the compiled kernels; the stand-in: the references, one launch each) ------
def test_the_conv_twins_match_the_references_on_the_device(device):
    xp = device.xp
    names = {"im2col_gather", "col2im_gather", "im2col_cf_gather", "col2im_cf_gather", "column_sum"}
    assert names <= set(compiled_twins())
    for c, geometry in [(1, (5, 5, 1, 0)), (3, (3, 3, 1, 1)), (31, (3, 5, 2, 2)), (96, (3, 3, 2, 1))]:
        x = normal(c, shape_for(c, n=33))
        x_shape = x.shape
        ho, wo = sizes(x_shape, *geometry)
        kh, kw = geometry[:2]
        for layout in LAYOUTS:
            x_dev = arrange(x, layout, xp.asarray)
            for fast in (im2col, im2col_cf):
                np.testing.assert_array_equal(backend.to_host(fast(x_dev, *geometry)), fast(x, *geometry),
                                              err_msg=f"{fast.__name__} {layout}")
        rows, width = x_shape[0] * ho * wo, kh * kw * c
        for fast, shape in ((col2im, (rows, width)), (col2im_cf, (width, rows))):
            cols = normal(9, shape)
            for cols_dev in (xp.asarray(cols), xp.asarray(np.asfortranarray(cols))):
                np.testing.assert_array_equal(backend.to_host(fast(cols_dev, x_shape, *geometry)),
                                              fast(cols, x_shape, *geometry), err_msg=fast.__name__)
        dy = normal(2, (rows, c))
        db = backend.to_host(column_sum(xp.asarray(dy)))
        scale = np.abs(dy).sum(axis=0)
        np.testing.assert_allclose(db, dy.sum(axis=0), rtol=0, atol=float(1e-6 * np.sqrt(rows) * scale.max()))
