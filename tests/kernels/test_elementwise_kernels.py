"""nanosgm.kernels.elementwise: ReLU's and Dropout's forward passes as one kernel each.

Each kernel, on the stand-in, gives its reference's NumPy bits in one launch, and the layers give the bits of the
code they replaced (copied below as it was), on NumPy and on the stand-in, for shapes with C = 1, 3, 31, 96,
sizes that are not multiples of 32, non-contiguous views, signed zeros, infinities and NaN; the launches of each
pass are counted. The ``gpu`` test runs the compiled twins on a device (they promise bit equality, NaN payloads
aside).
"""
import numpy as np
import pytest

from nanosgm import backend, standin
from nanosgm.kernels import compiled_twins, use_reference
from nanosgm.kernels.elementwise import dropout_forward, relu_forward, uniform_float
from nanosgm.layers import Dropout, ReLU

CHANNELS = [1, 3, 31, 96]
LAYOUTS = ["contiguous", "strided", "channels_last"]
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30]

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")    # inf * 0


def values(seed, c, layout, to_device=np.asarray, dtype=np.float32):
    """(5, C, 3, 7) values (105 per channel) with the special values planted: contiguous NCHW, a strided view,
    or an NCHW view of channels-last memory."""
    x = np.random.default_rng(seed).standard_normal((5, c, 3, 7))
    x.reshape(-1)[:len(SPECIAL)] = SPECIAL
    x = x.astype(dtype)
    if layout == "contiguous":
        return to_device(x)
    if layout == "strided":
        big = np.zeros((5, 2 * c, 3, 8), dtype=dtype)
        big[:, ::2, :, 1:] = x
        return to_device(big)[:, ::2, :, 1:]
    return to_device(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)


def assert_bits(got, want, what="", nan_payloads=True):
    """Bit for bit; with ``nan_payloads=False`` a NaN matches any NaN (a GPU makes its own NaN for inf * 0)."""
    got, want = backend.to_host(got), backend.to_host(want)
    assert got.dtype == want.dtype and got.shape == want.shape, f"{what}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
    if not nan_payloads and got.dtype.kind == "f":
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
        got, want = np.where(np.isnan(got), 0, got), np.where(np.isnan(want), 0, want)
    assert np.array_equal(np.ascontiguousarray(got).view(np.uint8), np.ascontiguousarray(want).view(np.uint8)), what


def draws(seed, shape, to_device=np.asarray, dtype=np.float32):
    return to_device(np.random.default_rng(seed).random(shape, dtype=dtype))


# --- the kernels: their references' bits, one launch on the stand-in ----------------------------------------
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_relu_forward_is_the_old_product_bit_for_bit_in_one_launch(c, layout, dtype):
    x = values(0, c, layout, dtype=dtype)
    mask = x > 0                                       # the code it replaced
    want = (x * mask, mask)
    for got in (relu_forward(x), relu_forward.reference(x)):
        for g, w in zip(got, want):
            assert_bits(g, w, "numpy")
    x_dev = values(0, c, layout, standin.asarray, dtype)
    with standin.counting() as count:
        got = relu_forward(x_dev)
    assert count.launches == 1 and count.kernels["relu_forward"] == 1
    for g, w in zip(got, want):
        assert_bits(g, w, "standin")
    assert np.signbit(backend.to_host(got[0])[x < 0]).all()          # x * 0 keeps the sign: -0.0, as NumPy


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_dropout_forward_is_the_old_mask_and_product_bit_for_bit_in_one_launch(c, layout, p, dtype):
    x = values(1, c, layout, dtype=dtype)
    draw = dtype if dtype != np.float16 else np.float32            # what Dropout draws for x's dtype
    keep = draws(2, x.shape, dtype=draw)
    mask = (keep >= p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))     # the code it replaced
    want = (x * mask, mask)
    for got in (dropout_forward(x, keep, p), dropout_forward.reference(x, keep, p)):
        for g, w in zip(got, want):
            assert_bits(g, w, "numpy")
    x_dev, keep_dev = values(1, c, layout, standin.asarray, dtype), draws(2, x.shape, standin.asarray, draw)
    with standin.counting() as count:
        got = dropout_forward(x_dev, keep_dev, p)
    assert count.launches == 1 and count.kernels["dropout_forward"] == 1
    for g, w in zip(got, want):
        assert_bits(g, w, "standin")


def test_dropout_keeps_p_as_numpy_rounds_it_against_the_draws():
    """p = 0.3 is not a float32: the draws just below, at and above float32(0.3) are kept as NumPy keeps them."""
    p32 = np.float32(0.3)
    near = np.array([np.nextafter(p32, np.float32(0)), p32, np.nextafter(p32, np.float32(1))], dtype=np.float32)
    _, mask = dropout_forward(np.ones(3, np.float32), near, 0.3)
    np.testing.assert_array_equal(mask != 0, [False, True, True])


def test_uniform_float_is_one_float32_or_float64_dtype():
    f32, f64 = np.zeros(2, np.float32), np.zeros(2, np.float64)
    assert uniform_float(f32, f32) and uniform_float(f64)
    assert not uniform_float(f32, f64) and not uniform_float(f32.astype(np.float16)) and not uniform_float(f32 > 0)


# --- the layers: the old code's bits on NumPy and the stand-in, launches counted ----------------------------
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_relu_layer_is_one_launch_each_way_and_the_old_bits(c, layout):
    x, dy = values(0, c, layout), values(3, c, layout)
    mask = x > 0
    y_old, dx_old = x * mask, dy * mask
    backend.use("standin")
    try:
        layer = ReLU()
        with standin.counting() as fwd:
            y = layer.forward(values(0, c, layout, standin.asarray))
        with standin.counting() as bwd:
            dx = layer.backward(values(3, c, layout, standin.asarray))
    finally:
        backend.use("numpy")
    assert fwd.launches == 1 and bwd.launches == 1, (dict(fwd.kernels), dict(bwd.kernels))
    assert_bits(y, y_old, "y")
    assert_bits(dx, dx_old, "dx")
    host = ReLU()
    assert_bits(host.forward(x), y_old, "numpy y")
    assert_bits(host.backward(dy), dx_old, "numpy dx")


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_dropout_layer_is_the_draw_and_one_kernel_and_the_old_bits(c, layout):
    p = 0.3
    x, dy = values(0, c, layout), values(3, c, layout)
    keep = np.random.default_rng(7).random(x.shape, dtype=np.float32)
    mask = (keep >= p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    y_old, dx_old = x * mask, dy * mask
    host = Dropout(p, rng=np.random.default_rng(7))
    assert_bits(host.forward(x), y_old, "numpy y")
    assert_bits(host.backward(dy), dx_old, "numpy dx")
    backend.use("standin")
    try:
        layer = Dropout(p, rng=standin.random.default_rng(7))
        x_dev = values(0, c, layout, standin.asarray)
        with standin.counting() as fwd:
            y = layer.forward(x_dev)
        with standin.counting() as bwd:
            dx = layer.backward(values(3, c, layout, standin.asarray))
        layer.hold_mask = True
        with standin.counting() as held:
            y_held = layer.forward(x_dev)
    finally:
        backend.use("numpy")
    assert fwd.launches == 2 and fwd.kernels["random.random"] == 1 and fwd.kernels["dropout_forward"] == 1
    assert bwd.launches == 1 and held.launches == 1
    assert_bits(y, y_old, "y")
    assert_bits(dx, dx_old, "dx")
    assert_bits(layer.mask, mask, "mask")
    assert_bits(y_held, y_old, "held y")


# --- the twins on a device (CuPy: the compiled kernels; the stand-in: the references, one launch each) -------
def test_the_elementwise_twins_give_the_references_bits_on_the_device(device):
    xp = device.xp
    assert {"relu_forward", "dropout_forward"} <= set(compiled_twins())
    for dtype in (np.float32, np.float64, np.float16):
        draw = dtype if dtype != np.float16 else np.float32
        for c, layout in [(1, "contiguous"), (3, "strided"), (31, "channels_last"), (96, "contiguous")]:
            x = values(0, c, layout, xp.asarray, dtype)
            keep = draws(2, x.shape, xp.asarray, draw)
            for f, args in ((relu_forward, (x,)), (dropout_forward, (x, keep, 0.3))):
                got = f(*args)
                with use_reference():
                    want = f(*args)
                for g, w in zip(got, want):
                    assert_bits(g, w, f"{f.__name__} {dtype.__name__} {layout}", nan_payloads=False)
