"""nanosgm.kernels.optim: Adam's and WAME's step as one element-wise kernel each.

Each kernel is compared bit for bit with the optimizer's readable rule (``Adam.update``, ``WAME.update``) over
several steps, on NumPy and on the stand-in (one launch per call), for sizes 1, 3, 31, 96, a (7, 13) array and
non-contiguous views. The twins' element-wise code is run in NumPy (Adam's source itself, WAME's transcribed
line by line, each scalar cast to the arrays' dtype as the twin casts it) to check that it reproduces the
references bit for bit; the ``gpu`` test runs the compiled twins themselves on a device.
"""
import numpy as np
import pytest

from nanosgm import backend, kernels, standin
from nanosgm.kernels import optim as kopt
from nanosgm.optim import WAME, Adam

SHAPES = [(1,), (3,), (31,), (96,), (7, 13)]
LAYOUTS = ["contiguous", "strided", "transposed"]
WAME_FORMS = [("authors", False), ("printed", False), ("printed", True)]


def arrange(a, layout, to_device=np.asarray):
    """``a`` as a contiguous array, a strided view (every other element of a larger array) or a transposed view."""
    if layout == "contiguous":
        return to_device(a.copy())
    if layout == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), a.dtype)
        big[..., 1::2] = a
        return to_device(big)[..., 1::2]
    return to_device(np.array(a.T, order="C")).T          # (a copy, also for 1-d arrays)


def grads(shape, steps, dtype, seed=0):
    """Gradients with exact zeros, sign flips, repeated signs and values whose products underflow."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(steps):
        g = rng.standard_normal(shape).astype(dtype)
        g[rng.random(shape) < 0.2] = 0
        if g.size > 3:
            g.flat[:1] = 1e-30 * (-1) ** k                  # g * g_prev underflows, the signs do not
        if k % 3 == 2:
            g.flat[1:3] = out[-1].flat[1:3]
        out.append(g)
    return out


def host(a):
    return backend.to_host(a)


def same_bits(a, b):
    a, b = host(a), host(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def adam_kwargs(opt):
    return dict(lr=opt.lr, beta1=opt.beta1, beta2=opt.beta2, eps=opt.eps, t=opt.t)


def wame_kwargs(opt):
    return dict(lr_t=opt.step_size(), alpha=opt.alpha, beta2=opt.beta2, eta_plus=opt.eta_plus,
                eta_minus=opt.eta_minus, zeta_min=opt.zeta_min, zeta_max=opt.zeta_max, store=opt.ZETA_STORE,
                eps=opt.eps, printed=opt.form == "printed", literal=opt.literal)


def run_kernel(kind, opt, w0, gs, layout, to_device, step=None):
    """``step`` (default: the kernel) over the gradients ``gs``: (weights, slots) as host arrays."""
    step = step or (kopt.adam_step if kind == "adam" else kopt.wame_step)
    w = arrange(w0, layout, to_device)
    slots = {k: arrange(host(v), layout, to_device) for k, v in opt.init_state(w0).items()}
    for g in gs:
        opt.t += 1
        kw = adam_kwargs(opt) if kind == "adam" else wame_kwargs(opt)
        step(w, arrange(g, layout, to_device), *slots.values(), **kw)
    return host(w), {k: host(v) for k, v in slots.items()}


def run_readable(opt, w0, gs):
    w, state = w0.copy(), opt.init_state(w0)
    for g in gs:
        opt.t += 1
        opt.update(w, g, state)
    return w, state


def check_against_readable(kind, make_opt, shape, layout, dtype):
    rng = np.random.default_rng(1)
    w0, gs = rng.standard_normal(shape).astype(dtype), grads(shape, 8, dtype)
    w_ref, s_ref = run_readable(make_opt(), w0, gs)
    for to_device in (np.asarray, standin.asarray):
        with standin.counting() as c:
            w, slots = run_kernel(kind, make_opt(), w0, gs, layout, to_device)
        assert same_bits(w, w_ref), (to_device, layout)
        assert all(same_bits(slots[k], s_ref[k]) for k in s_ref), (to_device, layout)
        if to_device is standin.asarray:
            name = "adam_step" if kind == "adam" else "wame_step"
            assert c.kernels[name] == len(gs)                  # one launch per step
    assert not same_bits(w, w0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_adam_step_is_the_readable_rule_bit_for_bit(shape, layout, dtype):
    check_against_readable("adam", lambda: Adam(lr=0.01, beta1=0.8, beta2=0.99), shape, layout, dtype)


@pytest.mark.parametrize("form,literal", WAME_FORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_wame_step_is_the_readable_rule_bit_for_bit(shape, layout, form, literal):
    check_against_readable("wame", lambda: WAME(lr=0.01, form=form, literal=literal), shape, layout, np.float32)


# --- the twins' element-wise code, run in NumPy --------------------------------------------------------------
def adam_source_in_numpy(w, g, m, v, *, lr, beta1, beta2, eps, t):
    """The twin's CUDA source, executed line by line on NumPy arrays with its scalars cast to the dtype."""
    cast = w.dtype.type
    scope = {k: cast(x) for k, x in kopt.adam_scalars(lr, beta1, beta2, eps, t).items()}
    scope |= {"w": w.copy(), "g": g, "m": m.copy(), "v": v.copy(), "sqrt": np.sqrt}
    for line in kopt._ADAM_CODE.strip().splitlines():
        exec(line.removeprefix("T ").rstrip(";"), {}, scope)
    w[...], m[...], v[...] = scope["w"], scope["m"], scope["v"]


def wame_transcribed(w, g, zeta, Z, theta, g_sign, *, lr_t, alpha, beta2, eta_plus, eta_minus, zeta_min, zeta_max,
                     store, eps, printed, literal):
    """kopt._WAME_CODE transcribed, line by line: conditionals as np.where, each scalar cast to the dtype."""
    T = w.dtype.type
    rate = alpha if printed else beta2

    def clip(x, lo, hi):
        return np.where(x < T(lo), T(lo), np.where(x > T(hi), T(hi), x))
    s = (g > 0).astype(np.int8) - (g < 0).astype(np.int8)
    agree = s * g_sign
    g_sign[...] = s
    zeta[...] = zeta * np.where(agree > 0, T(eta_plus), np.where(agree < 0, T(eta_minus), T(1)))
    if printed:
        zeta[...] = clip(zeta, zeta_min, zeta_max)
        zc = zeta
    else:
        zeta[...] = clip(zeta, *store)
        zc = clip(zeta, zeta_min, zeta_max)
    Z[...] = Z * T(alpha)
    step = zc * T(1.0 - alpha)
    Z[...] = Z + step
    step = Z * g if printed else (zc / Z) * g
    theta[...] = theta * T(rate)
    buf = (g * g) * T(1.0 - rate)
    theta[...] = theta + buf
    buf = theta + T(eps) if literal else np.sqrt(theta) + T(eps)
    step = (step / buf) * T(lr_t)
    w[...] = w - step


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_adam_twin_source_gives_the_reference_bits(dtype):
    opt = Adam(lr=0.01, beta1=0.8, beta2=0.99)
    rng = np.random.default_rng(2)
    w0, gs = rng.standard_normal(500).astype(dtype), grads(500, 8, dtype)
    ref = run_kernel("adam", opt, w0, gs, "contiguous", np.asarray)
    twin = run_kernel("adam", Adam(lr=0.01, beta1=0.8, beta2=0.99), w0, gs, "contiguous", np.asarray,
                      step=adam_source_in_numpy)
    assert same_bits(twin[0], ref[0]) and all(same_bits(twin[1][k], ref[1][k]) for k in ref[1])


@pytest.mark.parametrize("form,literal", WAME_FORMS)
def test_the_wame_twin_transcribed_gives_the_reference_bits(form, literal):
    rng = np.random.default_rng(3)
    w0, gs = rng.standard_normal(500).astype(np.float32), grads(500, 30, np.float32)
    ref = run_kernel("wame", WAME(lr=0.01, form=form, literal=literal), w0, gs, "contiguous", np.asarray)
    twin = run_kernel("wame", WAME(lr=0.01, form=form, literal=literal), w0, gs, "contiguous", np.asarray,
                      step=wame_transcribed)
    assert same_bits(twin[0], ref[0]) and all(same_bits(twin[1][k], ref[1][k]) for k in ref[1])
    assert (ref[1]["zeta"] != 1).mean() > 0.5                    # zeta moved, both ways


# --- on a device: the compiled twins against the references --------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("kind,form,literal", [("adam", None, False)] + [("wame", f, lit) for f, lit in WAME_FORMS])
def test_the_twins_match_the_references_on_the_device(device, kind, form, literal):
    """CuPy: the compiled kernel against its reference run with CuPy operations (kernels.use_reference()),
    bit for bit, as the module docstring promises; stand-in: the kernel is its reference."""
    assert {"adam_step", "wame_step"} <= set(kernels.compiled_twins())
    make = (lambda: Adam(lr=0.01, beta1=0.8, beta2=0.99)) if kind == "adam" else \
        (lambda: WAME(lr=0.01, form=form, literal=literal))
    rng = np.random.default_rng(4)
    w0, gs = rng.standard_normal((37, 29)).astype(np.float32), grads((37, 29), 10, np.float32)
    for layout in LAYOUTS:
        twin = run_kernel(kind, make(), w0, gs, layout, device.xp.asarray)
        with kernels.use_reference():
            ref = run_kernel(kind, make(), w0, gs, layout, device.xp.asarray)
        assert same_bits(twin[0], ref[0]), layout
        assert all(same_bits(twin[1][k], ref[1][k]) for k in ref[1]), layout
        assert not same_bits(twin[0], w0)
