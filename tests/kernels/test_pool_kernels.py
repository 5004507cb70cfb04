"""nanosgm.kernels.pool: max-pooling forward, backward and forward_dot as one kernel each.

Each is compared bit for bit with the code it replaced (copied below as it was), on NumPy and on the stand-in
(where each pass is one launch), for C = 1, 3, 31, 96, batches that are not multiples of 32, window/stride
choices that tile, overlap and leave edges out, ties, and non-contiguous inputs. The twins' loops are
transcribed in NumPy to check that they reproduce the references bit for bit; the ``gpu`` test runs the
compiled twins themselves on a device.
"""
import numpy as np
import pytest

from nanosgm import backend, standin
from nanosgm.kernels import compiled_twins
from nanosgm.kernels import pool as kpool
from nanosgm.layers import MaxPool2D
from nanosgm.layers.pool import maxpool2d_reference

# (k, stride, H, W): tiling, overlapping with edges left out, non-overlapping with edges left out, stride 1,
# and k*k = 289 > 256 offsets (``first`` in int32)
WINDOWS = [(2, 2, 8, 6), (3, 2, 9, 10), (3, 3, 10, 8), (2, 1, 5, 6), (17, 17, 17, 18)]
CHANNELS = [1, 3, 31, 96]
LAYOUTS = ["nchw", "channels_last", "strided"]


def sample(seed, shape, ties):
    """Normal values, or small integers (many ties in each window)."""
    g = np.random.default_rng(seed)
    x = g.integers(-2, 3, shape) if ties else g.standard_normal(shape)
    return x.astype(np.float32)


def arrange(x, layout, to_device=np.asarray):
    """x (N, C, H, W) contiguous, as an NCHW view of channels-last memory, or as a strided view."""
    if layout == "nchw":
        return to_device(np.ascontiguousarray(x))
    if layout == "channels_last":
        return to_device(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    n, c, h, w = x.shape
    big = np.zeros((n, 2 * c, 2 * h, 2 * w + 1), dtype=x.dtype)
    big[:, ::2, ::2, 1::2] = x
    return to_device(big)[:, ::2, ::2, 1::2]


# --- the code the kernels replaced, as it was (one block of samples) ---------------------------------------
def old_window(m_cl, o, k, s, ho, wo):
    a, b = divmod(o, k)
    return m_cl[:, a:a + s * ho:s, b:b + s * wo:s, :]


def old_forward(x, k, s):
    ho, wo = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
    x_cl = x.transpose(0, 2, 3, 1)
    y = np.empty((x.shape[0], ho, wo, x.shape[1]), dtype=x.dtype)
    first = np.zeros(y.shape, dtype=np.uint8 if k * k <= 256 else np.int32)
    y[...] = old_window(x_cl, 0, k, s, ho, wo)
    above, code = np.empty(y.shape, dtype=bool), np.empty(y.shape, dtype=first.dtype)
    for o in range(1, k * k):
        view = old_window(x_cl, o, k, s, ho, wo)
        np.greater(view, y, out=above)
        np.maximum(y, view, out=y)
        np.multiply(above, first.dtype.type(o), out=code)
        np.maximum(first, code, out=first)
    return y, first


def old_backward(dy, first, x_shape_cl, k, s):
    ho, wo = first.shape[1], first.shape[2]
    dy = dy.transpose(0, 2, 3, 1)
    tiles = s == k and x_shape_cl[1] == k * ho and x_shape_cl[2] == k * wo
    dx = (np.empty if tiles else np.zeros)(x_shape_cl, dtype=dy.dtype)
    hit = np.empty(first.shape, dtype=bool)
    for o in range(k * k):
        np.equal(first, o, out=hit)
        target = old_window(dx, o, k, s, ho, wo)
        if tiles:
            np.multiply(dy, hit, out=target)
        else:
            target += dy * hit
    return dx


def old_forward_dot(x_dot, first, k, s):
    x_cl = x_dot.transpose(0, 2, 3, 1)
    ho, wo = first.shape[1], first.shape[2]
    y_dot = np.zeros(first.shape, dtype=x_dot.dtype)
    for o in range(k * k):
        y_dot += old_window(x_cl, o, k, s, ho, wo) * (first == o)
    return y_dot


# --- the twins' loops, transcribed in NumPy (one "thread" per output element, vectorised) ------------------
def forward_like_the_twin(x, k, s):
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    nn, oi, j, ch = np.indices((n, ho, wo, c))
    m = x[nn, ch, s * oi, s * j]
    f = np.zeros(m.shape, dtype=np.uint8 if k * k <= 256 else np.int32)
    for o in range(1, k * k):
        v = x[nn, ch, s * oi + o // k, s * j + o % k]
        above = v > m
        m = np.where(above, v, np.where(np.isnan(v), v, m))
        f = np.where(above, o, f).astype(f.dtype)
    return m, f


def backward_like_the_twin(dy, first, x_shape_cl, k, s):
    n, h, w, c = x_shape_cl
    ho, wo = first.shape[1], first.shape[2]
    tiles = kpool.tiles_exactly(x_shape_cl, k, s, ho, wo)
    nn, row, col, ch = np.indices(x_shape_cl)
    acc = np.zeros(x_shape_cl, dtype=dy.dtype)
    for o in range(k * k):
        oi, j = row - o // k, col - o % k
        ok = (oi >= 0) & (j >= 0) & (oi % s == 0) & (j % s == 0) & (oi // s < ho) & (j // s < wo)
        oi, j = np.clip(oi // s, 0, ho - 1), np.clip(j // s, 0, wo - 1)
        g = dy[nn, ch, oi, j] * (first[nn, oi, j, ch] == o).astype(dy.dtype)
        acc = np.where(ok, g if tiles else acc + g, acc)
    return acc


def forward_dot_like_the_twin(x_dot, first, k, s):
    n, ho, wo, c = first.shape
    nn, oi, j, ch = np.indices(first.shape)
    acc = np.zeros(first.shape, dtype=x_dot.dtype)
    for o in range(k * k):
        acc = acc + x_dot[nn, ch, s * oi + o // k, s * j + o % k] * (first == o).astype(x_dot.dtype)
    return acc


def cases():
    return [pytest.param(c, window, id=f"C{c}-k{window[0]}-s{window[1]}-{window[2]}x{window[3]}")
            for c in CHANNELS for window in WINDOWS if not (c == 96 and window[0] == 17)]


CASES = cases()


def shape_for(c, window):
    k, s, h, w = window
    return (33 if c == 3 else 5, c, h, w)


# --- the layer on NumPy: the old code's numbers; on the stand-in: the same, one launch a pass -----------------
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c, window", CASES)
def test_maxpool_passes_are_the_old_loops_bit_for_bit_and_one_launch_each(c, window, layout, ties):
    k, s = window[:2]
    x = sample(c, shape_for(c, window), ties)
    host_x = arrange(x, layout)
    pool = MaxPool2D(k, s)
    y = pool.forward(host_x)
    y_old, first_old = old_forward(host_x, k, s)
    np.testing.assert_array_equal(y, y_old.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(pool._cache[1], first_old)
    assert pool._cache[1].dtype == first_old.dtype
    dy = sample(c + 1, y.shape, ties=False)
    dx_old = old_backward(dy, first_old, x.transpose(0, 2, 3, 1).shape, k, s).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(pool.backward(dy), dx_old)
    x_dot = sample(c + 2, x.shape, ties=False)
    y_dot_old = old_forward_dot(x_dot, first_old, k, s).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(pool.forward_dot(x_dot), y_dot_old)

    device = MaxPool2D(k, s)
    counts = {}
    passes = {"forward": lambda: device.forward(arrange(x, layout, standin.asarray)),
              "backward": lambda: device.backward(standin.asarray(dy)),
              "forward_dot": lambda: device.forward_dot(standin.asarray(x_dot)),
              "backward_dot": lambda: device.backward_dot(standin.asarray(dy), standin.asarray(dy))}
    results = {}
    for name, run in passes.items():
        with standin.counting() as count:
            results[name] = run()
        counts[name] = count.launches
    assert counts == {"forward": 1, "backward": 1, "forward_dot": 1, "backward_dot": 1}
    for name, expected in (("forward", y), ("backward", dx_old), ("forward_dot", y_dot_old), ("backward_dot", dx_old)):
        np.testing.assert_array_equal(results[name].get(), expected, err_msg=name)


def test_maxpool_forward_agrees_with_the_per_window_version():
    x = sample(0, (33, 3, 9, 10), ties=True)
    for k, s in ((2, 2), (3, 2), (3, 3), (2, 1)):
        y, _ = kpool.maxpool_forward(x, k=k, stride=s, blocks=[(0, 33)])
        np.testing.assert_array_equal(y.transpose(0, 3, 1, 2), maxpool2d_reference(x, k, s))


# --- the twins' loops reproduce the references -----------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("c, window", CASES)
def test_the_twins_loops_give_the_references_numbers(c, window, ties):
    k, s = window[:2]
    x = sample(c, shape_for(c, window), ties)
    n = x.shape[0]
    y, first = kpool.maxpool_forward.reference(x, k=k, stride=s, blocks=[(0, n)])
    y_twin, first_twin = forward_like_the_twin(x, k, s)
    np.testing.assert_array_equal(y_twin, y)
    np.testing.assert_array_equal(first_twin, first)
    x_shape_cl = x.transpose(0, 2, 3, 1).shape
    dy = sample(1, (n, c) + y.shape[1:3], ties=False)
    dy[0, 0] = -0.0                                             # signed zeros go through as the reference's
    dx = kpool.maxpool_backward.reference(dy, first, x_shape=x_shape_cl, k=k, stride=s, blocks=[(0, n)])
    np.testing.assert_array_equal(np.signbit(backward_like_the_twin(dy, first, x_shape_cl, k, s)), np.signbit(dx))
    np.testing.assert_array_equal(backward_like_the_twin(dy, first, x_shape_cl, k, s), dx)
    x_dot = sample(2, x.shape, ties=False)
    y_dot = kpool.maxpool_forward_dot.reference(x_dot, first, k=k, stride=s)
    np.testing.assert_array_equal(forward_dot_like_the_twin(x_dot, first, k, s), y_dot)


def test_a_nan_makes_its_window_nan_in_the_reference_and_the_twins_loop():
    x = sample(0, (5, 3, 8, 8), ties=True)
    x[1, 2, 3, 4] = np.nan
    y, first = kpool.maxpool_forward.reference(x, k=2, stride=2, blocks=[(0, 5)])
    assert np.isnan(y[1, 1, 2, 2]) and np.isnan(y).sum() == 1
    y_twin, first_twin = forward_like_the_twin(x, 2, 2)
    np.testing.assert_array_equal(y_twin, y)
    np.testing.assert_array_equal(first_twin, first)


# --- the twins on a device (CuPy: the compiled kernels; the stand-in: the references, one launch each) ------
def test_the_pool_twins_match_the_references_on_the_device(device):
    xp = device.xp
    assert {"maxpool_forward", "maxpool_backward", "maxpool_forward_dot"} <= set(compiled_twins())
    for c, window in [(1, (2, 2, 8, 6)), (3, (3, 2, 9, 10)), (31, (3, 3, 10, 8)), (96, (2, 1, 5, 6)), (3, (17, 17, 17, 18))]:
        k, s = window[:2]
        x = sample(c, (33, c) + window[2:], ties=True)
        n = x.shape[0]
        y, first = kpool.maxpool_forward(x, k=k, stride=s, blocks=[(0, n)])
        x_shape_cl = x.transpose(0, 2, 3, 1).shape
        dy = sample(1, (n, c) + y.shape[1:3], ties=False)
        dx = kpool.maxpool_backward(dy, first, x_shape=x_shape_cl, k=k, stride=s, blocks=[(0, n)])
        x_dot = sample(2, x.shape, ties=False)
        y_dot = kpool.maxpool_forward_dot(x_dot, first, k=k, stride=s)
        for layout in LAYOUTS:
            y_dev, first_dev = kpool.maxpool_forward(arrange(x, layout, xp.asarray), k=k, stride=s, blocks=[(0, n)])
            np.testing.assert_array_equal(backend.to_host(y_dev), y, err_msg=layout)
            np.testing.assert_array_equal(backend.to_host(first_dev), first, err_msg=layout)
            assert first_dev.dtype == first.dtype
            dx_dev = kpool.maxpool_backward(arrange(dy, layout, xp.asarray), xp.asarray(first), x_shape=x_shape_cl,
                                            k=k, stride=s, blocks=[(0, n)])
            np.testing.assert_array_equal(backend.to_host(dx_dev), dx, err_msg=layout)
            y_dot_dev = kpool.maxpool_forward_dot(arrange(x_dot, layout, xp.asarray), xp.asarray(first), k=k, stride=s)
            np.testing.assert_array_equal(backend.to_host(y_dot_dev), y_dot, err_msg=layout)
