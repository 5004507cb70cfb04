"""nanosgm.kernels.norm: BatchNorm's passes as a few kernels, and column sums (Dense's bias gradient).

Each kernel, on the stand-in, gives its reference's NumPy bits in one launch, for C = 1, 3, 31, 96, M not a
multiple of 32, and contiguous, strided and transposed rows. The BatchNorm layer gives the bits of the code it
replaced (copied below as it was), on NumPy and on the stand-in, in both modes, for (N, F) inputs and for
feature maps in NCHW and channels-last memory, and the launches of each pass are counted. The ``gpu`` test runs
the compiled twins on a device: bit equality for the element-wise ones, a tolerance for the sums.
"""
import numpy as np
import pytest

from nanosgm import backend, standin
from nanosgm.kernels import compiled_twins, norm, use_reference
from nanosgm.layers import BatchNorm, Dense

CHANNELS = [1, 3, 31, 96]
ROWS = [37, 129]                                   # not multiples of 32
LAYOUTS = ["contiguous", "strided", "transposed"]
EXACT = ["update_running", "inverse_std", "scale_shift", "center_scale_shift", "backward_dx", "scale"]
SUMS = ["column_sum", "batch_stats", "backward_sums"]


def normal(seed, shape, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def rows(seed, m, c, layout, to_device=np.asarray, dtype=np.float32):
    """(M, C) values with a non-zero mean: contiguous, a strided view, or the transpose of (C, M) memory."""
    x = normal(seed, (m, c), dtype) * 2 + 1
    if layout == "contiguous":
        return to_device(x)
    if layout == "strided":
        big = np.zeros((m, 2 * c + 1), dtype=dtype)
        big[:, 1::2] = x
        return to_device(big)[:, 1::2]
    return to_device(np.ascontiguousarray(x.T)).T


def vector(seed, c, layout, to_device=np.asarray, dtype=np.float32, positive=False):
    """(C,) values (positive: in [0.5, 2.5)), contiguous or a strided view."""
    v = normal(seed, c, dtype)
    v = np.abs(v) + dtype(0.5) if positive else v
    if layout != "strided":
        return to_device(v)
    big = np.zeros(2 * c, dtype=dtype)
    big[::2] = v
    return to_device(big)[::2]


def case(name, m, c, layout, to_device=np.asarray, dtype=np.float32, vector_dtype=None):
    """(args, kwargs) for the kernel ``name``, fresh arrays on ``to_device`` (the same values for the same call)."""
    vd = dtype if vector_dtype is None else vector_dtype
    r = lambda seed: rows(seed, m, c, layout, to_device, dtype)                         # noqa: E731
    v = lambda seed, positive=False: vector(seed, c, layout, to_device, vd, positive)   # noqa: E731
    return {
        "column_sum": ((r(0),), {}),
        "batch_stats": ((r(0),), {}),
        "update_running": ((v(1), v(2, True), v(3), v(4, True)), dict(momentum=0.1, m=m, eps=1e-5)),
        "inverse_std": ((v(4, True), 1e-5), {}),
        "scale_shift": ((r(0), v(1), v(4, True), v(2)), {}),
        "center_scale_shift": ((r(0), v(3), v(1), v(4, True), v(2)), {}),
        "backward_sums": ((r(5), r(0), v(4, True)), {}),
        "backward_dx": ((r(5), r(0), v(1), v(4, True), v(6), v(7)), {}),
        "scale": ((r(5), v(1), v(4, True)), {}),
    }[name]


def outputs(result, args):
    """The kernel's results and every array argument after the call (in-place updates count too)."""
    result = result if isinstance(result, tuple) else (result,)
    return result + tuple(a for a in args if hasattr(a, "shape"))


def assert_bits(got, want, what=""):
    got, want = backend.to_host(got), backend.to_host(want)
    assert got.dtype == want.dtype and got.shape == want.shape, f"{what}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
    assert np.array_equal(np.ascontiguousarray(got).view(np.uint8), np.ascontiguousarray(want).view(np.uint8)), what


# --- each kernel: its reference's bits, in one launch on the stand-in ---------------------------------------
@pytest.mark.parametrize("name", EXACT + SUMS)
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_kernel_is_its_reference_bit_for_bit_in_one_launch(name, c, m, layout):
    f = getattr(norm, name)
    args, kwargs = case(name, m, c, layout)
    want = outputs(f.reference(*args, **kwargs), args)
    args, kwargs = case(name, m, c, layout)
    for got, w in zip(outputs(f(*args, **kwargs), args), want):          # NumPy: the reference itself
        assert_bits(got, w, f"{name} numpy")
    args, kwargs = case(name, m, c, layout, standin.asarray)
    with standin.counting() as count:
        result = f(*args, **kwargs)
    assert count.launches == f.launches and count.kernels[name] == f.launches, dict(count.kernels)   # the twin's
    got = outputs(result, args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_bits(g, w, f"{name} standin")


@pytest.mark.parametrize("name", EXACT + SUMS)
@pytest.mark.parametrize("dtype, vector_dtype", [(np.float64, None), (np.float64, np.float32), (np.float16, None)])
def test_other_and_mixed_dtypes_give_the_references_bits(name, dtype, vector_dtype):
    """float64, float16, and float64 rows with float32 parameters (NumPy promotes; the twins hand these to the
    reference)."""
    f = getattr(norm, name)
    args, kwargs = case(name, 45, 31, "contiguous", dtype=dtype, vector_dtype=vector_dtype)
    want = outputs(f.reference(*args, **kwargs), args)
    args, kwargs = case(name, 45, 31, "contiguous", standin.asarray, dtype, vector_dtype)
    with standin.counting() as count:
        got = outputs(f(*args, **kwargs), args)
    assert count.launches == f.launches
    for g, w in zip(got, want):
        assert_bits(g, w, name)


def test_the_statistics_are_the_column_means_and_variances():
    x = rows(0, 129, 31, "strided")
    xc, mean, var = norm.batch_stats(x)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(var, x.astype(np.float64).var(axis=0), rtol=1e-4)
    np.testing.assert_allclose(xc, x - mean, rtol=0, atol=0)
    rm, rv = np.zeros(31, np.float32), np.ones(31, np.float32)
    inv_std = norm.update_running(rm, rv, mean, var, momentum=0.1, m=129, eps=1e-5)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(var.astype(np.float64) + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(rm, 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * 129 / 128 * var.astype(np.float64), rtol=1e-6)


# --- the BatchNorm layer: the code the kernels replaced, as it was -------------------------------------------
def old_forward(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    if not training:
        inv_std = 1.0 / (rv + eps) ** 0.5
        xc = x - rm
        y = xc * (gamma * inv_std)
        y += beta
        return y, ("inference", xc, inv_std)
    m = x.shape[0]
    mean = x.mean(axis=0)
    xc = x - mean
    var = (xc * xc).mean(axis=0)
    inv_std = 1.0 / (var + eps) ** 0.5
    rm *= (1 - momentum)
    rm += momentum * mean
    rv *= (1 - momentum)
    rv += (momentum * m / (m - 1)) * var
    y = xc * (gamma * inv_std)
    y += beta
    return y, ("training", xc, inv_std)


def old_backward(dy, cache, gamma, param_grads=True):
    mode, xc, inv_std = cache
    scale = gamma * inv_std
    if mode == "inference" and not param_grads:
        return dy * scale, {}
    dgamma = (dy * xc).sum(axis=0) * inv_std
    dbeta = dy.sum(axis=0)
    grads = {"gamma": dgamma, "beta": dbeta} if param_grads else {}
    if mode == "inference":
        return dy * scale, grads
    m = dy.shape[0]
    dx = xc * (inv_std * dgamma / m)
    np.subtract(dy, dx, out=dx)
    dx -= dbeta / m
    dx *= scale
    return dx, grads


def to_rows(a):
    return a if a.ndim == 2 else a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def from_rows(r, shape):
    return r if len(shape) == 2 else r.reshape(shape[0], shape[2], shape[3], shape[1]).transpose(0, 3, 1, 2)


def feature_input(kind, c, to_device=np.asarray, seed=0):
    """(N, F) rows, or (N, C, H, W) maps in NCHW memory or channels-last memory; N*H*W not a multiple of 32."""
    if kind == "2d":
        return rows(seed, 37, c, "contiguous", to_device)
    x = normal(seed, (3, c, 5, 7)) * 2 + 1
    if kind == "nchw":
        return to_device(x)
    return to_device(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)


def run_layer(c, kind, training, param_grads, to_device):
    """Forward and backward of a BatchNorm with non-trivial parameters and running statistics, counted."""
    layer = BatchNorm(c)
    layer.param_grads = param_grads
    for name, seed, positive in (("gamma", 1, False), ("beta", 2, False)):
        layer.params[name][...] = to_device(vector(seed, c, "contiguous", positive=positive))
    layer.buffers["running_mean"][...] = to_device(vector(3, c, "contiguous"))
    layer.buffers["running_var"][...] = to_device(vector(4, c, "contiguous", positive=True))
    x, dy = feature_input(kind, c, to_device), feature_input(kind, c, to_device, seed=5)
    with standin.counting() as fwd:
        y = layer.forward(x, training=training)
    with standin.counting() as bwd:
        dx = layer.backward(dy)
    return layer, y, dx, fwd, bwd


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("kind", ["2d", "nchw", "channels_last"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("param_grads", [True, False])
def test_batchnorm_is_the_old_code_bit_for_bit_on_numpy_and_the_standin(c, kind, training, param_grads):
    x = feature_input(kind, c)
    gamma, beta = vector(1, c, "contiguous"), vector(2, c, "contiguous")
    rm, rv = vector(3, c, "contiguous"), vector(4, c, "contiguous", positive=True)
    y, cache = old_forward(to_rows(x), gamma, beta, rm, rv, training)
    dx, grads = old_backward(to_rows(feature_input(kind, c, seed=5)), cache, gamma, param_grads)
    y, dx = from_rows(y, x.shape), from_rows(dx, x.shape)
    backend.use("standin")
    try:
        on_device = run_layer(c, kind, training, param_grads, standin.asarray)
    finally:
        backend.use("numpy")
    for layer, y_got, dx_got, _, _ in (run_layer(c, kind, training, param_grads, np.asarray), on_device):
        assert_bits(y_got, y, "y")
        assert_bits(dx_got, dx, "dx")
        assert layer.grads.keys() == grads.keys()
        for k in grads:
            assert_bits(layer.grads[k], grads[k], k)
        assert_bits(layer.buffers["running_mean"], rm, "running_mean")
        assert_bits(layer.buffers["running_var"], rv, "running_var")


@pytest.mark.parametrize("kind", ["2d", "channels_last"])
def test_batchnorm_launches_on_the_standin(kind):
    """Training: statistics (3 CUDA kernels), running update, normalisation (5); backward: the sums (2) and dx (3).
    Inference: 1 / sqrt and the normalisation (2); backward: the sums and the scale (3), or the scale alone for
    attacks (1)."""
    backend.use("standin")
    try:
        counts = {(t, g): run_layer(31, kind, t, g, standin.asarray)[3:] for t in (True, False) for g in (True, False)}
    finally:
        backend.use("numpy")
    fwd, bwd = counts[True, True]
    assert fwd.launches == 5 and bwd.launches == 3, (dict(fwd.kernels), dict(bwd.kernels))
    assert fwd.kernels["batch_stats"] == 3 and bwd.kernels["backward_sums"] == 2 and bwd.kernels["backward_dx"] == 1
    fwd, bwd = counts[False, True]
    assert fwd.launches == 2 and bwd.launches == 3, (dict(fwd.kernels), dict(bwd.kernels))
    assert counts[False, False][1].launches == 1
    assert counts[True, False][1].launches == 3


# --- Dense's bias gradient --------------------------------------------------------------------------------
@pytest.mark.parametrize("m, c", [(37, 1), (129, 3), (45, 31), (200, 96)])
def test_dense_bias_gradient_is_the_column_sum_in_one_launch(m, c):
    x, dy = normal(0, (m, 5)), normal(1, (m, c))
    host = Dense(5, c, rng=np.random.default_rng(0))
    host.forward(x)
    dx = host.backward(dy)
    assert_bits(host.grads["b"], dy.sum(axis=0), "b")
    backend.use("standin")
    try:
        device = Dense(5, c, rng=np.random.default_rng(0))
        device.forward(standin.asarray(x))
        with standin.counting() as count:
            dx_dev = device.backward(standin.asarray(dy))
    finally:
        backend.use("numpy")
    assert count.launches == 3 and count.kernels["column_sum"] == 1, dict(count.kernels)    # dW, db, dx
    assert_bits(dx_dev, dx, "dx")
    for k in ("W", "b"):
        assert_bits(device.grads[k], host.grads[k], k)


# --- the twins on a device (CuPy: the compiled kernels; the stand-in: the references, one launch each) -------
def test_the_norm_twins_match_the_references_on_the_device(device):
    """Element-wise twins: the reference's bits. Sums (and what follows from them): within 1e-4 (float32) /
    1e-12 (float64) of the largest value (cuBLAS and CuPy add in another order than NumPy)."""
    xp = device.xp
    assert set(EXACT + SUMS) <= set(compiled_twins())
    for dtype, rtol in ((np.float32, 1e-4), (np.float64, 1e-12)):
        for c, m, layout in [(1, 37, "contiguous"), (3, 129, "strided"), (31, 45, "transposed"), (96, 1000, "contiguous")]:
            for name in EXACT + SUMS:
                f = getattr(norm, name)
                args, kwargs = case(name, m, c, layout, xp.asarray, dtype)
                got = outputs(f(*args, **kwargs), args)
                args, kwargs = case(name, m, c, layout, xp.asarray, dtype)
                with use_reference():
                    want = outputs(f(*args, **kwargs), args)
                for g, w in zip(got, want):
                    g, w = backend.to_host(g), backend.to_host(w)
                    if name in EXACT:
                        assert_bits(g, w, f"{name} {dtype.__name__} {layout}")
                    else:
                        atol = rtol * np.abs(w).max(initial=0.0)
                        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{name} {layout}")
