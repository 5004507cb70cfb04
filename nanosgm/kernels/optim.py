"""The optimizers' element-wise updates as single kernels: Adam's and WAME's step for any arrays of one shape.

Each kernel updates ``param`` and the rule's slot arrays in place from ``grad`` (all of one shape; on a
GPU the optimizer hands it flat buffers holding every parameter, nanosgm/optim/flat.py), and returns None.

Reference: the in-place arithmetic of the optimizers' fast paths (`Adam.update_fused` and
`WAME.update_fused` call these kernels), plain ``xp`` passes over one or two scratch arrays, the same operations on the same values in
the same order as the readable rules (``Adam.update``, ``WAME.update``), so NumPy gives their bits;
tests/optim/test_optim.py compares them. Scalars (learning rate, betas, bias corrections) are Python
floats computed on the host from the integer step count ``t``: no device value is read back.

CuPy twins (**not yet run on a GPU**): one ``ElementwiseKernel`` each, the reference's operations in its
order, every scalar passed as the parameters' dtype (as NumPy casts a Python float operand), built with
``--fmad=false`` so that no ``a * b + c`` is contracted into one rounding. CUDA's ``+ - * /`` and ``sqrt``
are correctly rounded (CuPy does not ask for fast math), and WAME's zeta factor is a plain conditional
(exactly eta_plus, eta_minus or 1), so the **twins promise bit equality with the reference**; the
``gpu`` tests in tests/kernels/test_optim_kernels.py check it on a device.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .core import kernel

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["adam_step", "wame_step", "zeta_factor", "zeta_factor_reference"]

_FMAD_OFF = ("--fmad=false",)       # no fused multiply-add: each operation rounds as NumPy's does


# ------------------------------------------------------------------------------------------ Adam
def adam_scalars(lr: float, beta1: float, beta2: float, eps: float, t: int) -> dict[str, float]:
    """The host scalars of Adam's step t: the betas, their complements, 1 / (1 - b2^t), eps, lr / (1 - b1^t)."""
    c1 = 1.0 - beta1 ** t
    c2 = 1.0 - beta2 ** t
    return {"b1": beta1, "one_minus_b1": 1.0 - beta1, "b2": beta2, "one_minus_b2": 1.0 - beta2,
            "inv_c2": 1.0 / c2, "eps": eps, "lr_c1": lr / c1}


_ADAM_CODE = """
T buf = g * one_minus_b1;
m = m * b1;
m = m + buf;
buf = g * g;
buf = buf * one_minus_b2;
v = v * b2;
v = v + buf;
buf = v * inv_c2;
buf = sqrt(buf);
buf = buf + eps;
buf = m / buf;
buf = buf * lr_c1;
w = w - buf;
"""


def _adam_twin(cp: Any) -> Callable:
    """Adam's step as one ElementwiseKernel (the reference's thirteen passes, per element, in order)."""
    names = ("b1", "one_minus_b1", "b2", "one_minus_b2", "inv_c2", "eps", "lr_c1")
    step = cp.ElementwiseKernel("T g, " + ", ".join(f"T {n}" for n in names), "T w, T m, T v", _ADAM_CODE,
                                "nanosgm_adam_step", options=_FMAD_OFF)

    def run(param: Any, grad: Any, m: Any, v: Any, *, lr: float, beta1: float, beta2: float, eps: float,
            t: int) -> None:
        s = adam_scalars(lr, beta1, beta2, eps, t)
        cast = param.dtype.type
        step(grad, *(cast(s[n]) for n in names), param, m, v)
    return run


@kernel(cuda=_adam_twin)
def adam_step(param: Array, grad: Array, m: Array, v: Array, *, lr: float, beta1: float, beta2: float,
              eps: float, t: int) -> None:
    """Adam's step t in place (nanosgm/optim/adam.py), over one scratch buffer:
    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  w <- w - (lr / (1 - b1^t)) m / (sqrt(v / (1 - b2^t)) + eps)."""
    xp = backend.array_module(param)
    s = adam_scalars(lr, beta1, beta2, eps, t)
    buf = xp.multiply(grad, s["one_minus_b1"])
    m *= s["b1"]
    m += buf                                           # m <- b1 m + (1 - b1) g
    xp.multiply(grad, grad, out=buf)
    buf *= s["one_minus_b2"]
    v *= s["b2"]
    v += buf                                           # v <- b2 v + (1 - b2) g^2
    xp.multiply(v, s["inv_c2"], out=buf)               # sqrt(v / c2) + eps
    xp.sqrt(buf, out=buf)
    buf += s["eps"]
    xp.divide(m, buf, out=buf)
    buf *= s["lr_c1"]
    param -= buf


# ------------------------------------------------------------------------------------------ WAME
_CLIP = "{x} < {lo} ? {lo} : ({x} > {hi} ? {hi} : {x})"     # NumPy's clip, NaN kept

_WAME_CODE = f"""
const signed char s = (g > (T)0) - (g < (T)0);
const signed char agree = s * g_sign;
g_sign = s;
zeta = zeta * (agree > 0 ? eta_plus : (agree < 0 ? eta_minus : (T)1));
T zc;
if (printed) {{
    zeta = {_CLIP.format(x="zeta", lo="zeta_min", hi="zeta_max")};
    zc = zeta;
}} else {{
    zeta = {_CLIP.format(x="zeta", lo="store_lo", hi="store_hi")};
    zc = {_CLIP.format(x="zeta", lo="zeta_min", hi="zeta_max")};
}}
Z = Z * alpha;
T step = zc * one_minus_alpha;
Z = Z + step;
if (printed) {{
    step = Z * g;
}} else {{
    step = zc / Z;
    step = step * g;
}}
theta = theta * rate;
T buf = g * g;
buf = buf * one_minus_rate;
theta = theta + buf;
if (literal) {{
    buf = theta + eps;
}} else {{
    buf = sqrt(theta);
    buf = buf + eps;
}}
step = step / buf;
step = step * lr_t;
w = w - step;
"""

_WAME_SCALARS = ("eta_plus", "eta_minus", "zeta_min", "zeta_max", "store_lo", "store_hi", "alpha",
                 "one_minus_alpha", "rate", "one_minus_rate", "eps", "lr_t")


def _wame_twin(cp: Any) -> Callable:
    """WAME's step as one ElementwiseKernel (the reference's passes, per element, in order; the form and
    `literal` are run-time flags, the same branch for every element)."""
    ins = "T g, " + ", ".join(f"T {n}" for n in _WAME_SCALARS) + ", int32 printed, int32 literal"
    step = cp.ElementwiseKernel(ins, "T w, T zeta, T Z, T theta, int8 g_sign", _WAME_CODE, "nanosgm_wame_step",
                                options=_FMAD_OFF)

    def run(param: Any, grad: Any, zeta: Any, Z: Any, theta: Any, g_sign: Any, *, lr_t: float, alpha: float,
            beta2: float, eta_plus: float, eta_minus: float, zeta_min: float, zeta_max: float,
            store: tuple[float, float], eps: float, printed: bool, literal: bool) -> None:
        rate = alpha if printed else beta2
        s = {"eta_plus": eta_plus, "eta_minus": eta_minus, "zeta_min": zeta_min, "zeta_max": zeta_max,
             "store_lo": store[0], "store_hi": store[1], "alpha": alpha, "one_minus_alpha": 1.0 - alpha,
             "rate": rate, "one_minus_rate": 1.0 - rate, "eps": eps, "lr_t": lr_t}
        cast = param.dtype.type
        step(grad, *(cast(s[n]) for n in _WAME_SCALARS), np.int32(printed), np.int32(literal),
             param, zeta, Z, theta, g_sign)
    return run


@kernel(cuda=_wame_twin)
def wame_step(param: Array, grad: Array, zeta: Array, Z: Array, theta: Array, g_sign: Array, *, lr_t: float,
              alpha: float, beta2: float, eta_plus: float, eta_minus: float, zeta_min: float, zeta_max: float,
              store: tuple[float, float], eps: float, printed: bool, literal: bool) -> None:
    """WAME's step in place (nanosgm/optim/wame.py gives the rule and its two forms), over two scratch
    arrays; ``lr_t`` is the step's learning rate (``WAME.step_size()``), ``store`` the range the authors'
    form keeps the unclipped zeta in, ``g_sign`` the int8 sign of the previous gradient. The zeta factor is
    computed on bit patterns (:func:`zeta_factor`)."""
    xp = backend.array_module(param)
    a = alpha
    sign = (grad > 0).view(xp.int8) - (grad < 0).view(xp.int8)    # sign(g) as int8 (0 for a zero gradient)
    agree = sign * g_sign
    g_sign[...] = sign
    buf, step = xp.empty_like(param), xp.empty_like(param)       # the two scratch arrays
    zeta *= zeta_factor(agree, eta_plus, eta_minus, buf, step)
    if printed:
        xp.clip(zeta, zeta_min, zeta_max, out=zeta)
        zc, rate = zeta, a
    else:
        xp.clip(zeta, *store, out=zeta)
        zc, rate = xp.clip(zeta, zeta_min, zeta_max, out=buf), beta2
    Z *= a
    xp.multiply(zc, 1.0 - a, out=step)
    Z += step                                                   # Z <- a Z + (1 - a) zc
    if printed:
        xp.multiply(Z, grad, out=step)                          # Z * g
    else:
        xp.divide(zc, Z, out=step)                              # (zc / Z) * g
        step *= grad
    theta *= rate
    xp.multiply(grad, grad, out=buf)                            # zc (in buf) is no longer needed
    buf *= 1.0 - rate
    theta += buf                                                # theta <- rate theta + (1 - rate) g^2
    if literal:
        xp.add(theta, eps, out=buf)                             # theta + eps
    else:
        xp.sqrt(theta, out=buf)                                 # sqrt(theta) + eps
        buf += eps
    step /= buf
    step *= lr_t
    param -= step


def zeta_factor(agree: Array, eta_plus: float, eta_minus: float, out: Array, scratch: Array) -> Array:
    """WAME's factor for zeta, exactly eta_plus / eta_minus / 1 where ``agree`` (int8) is +1 / -1 / 0;
    written into ``out`` (float, agree's shape; ``scratch`` is a second such array) and returned.

    Computed on the factor's bit pattern, with integers, so that it is exact: the bits B(f) of the three
    values lie on the parabola through (p, B) = (-1, B(eta_minus)), (0, B(1)), (1, B(eta_plus)), so

        2 B(f) = (p (B+ + B- - 2 B1) + (B+ - B-)) p + 2 B1,      p = agree,

    evaluated in unsigned integers of the float's width (wrapping arithmetic is exact modulo 2^bits, and
    2 B(f) of a positive float fits), then halved and read back as floats. Five integer passes instead
    of float masks; :func:`zeta_factor_reference` is the plain version (``where``), and the tests compare
    the two bit for bit.
    """
    xp = backend.array_module(out)
    uint = xp.dtype(f"uint{8 * out.dtype.itemsize}")
    ftype = out.dtype.type

    def bits(v: float) -> int:
        return int(np.array(ftype(v)).view(uint))
    bp, bm, b1 = bits(eta_plus), bits(eta_minus), bits(1.0)
    wrap = 1 << (8 * out.dtype.itemsize)
    curve, slope, twice_one = (uint.type((c) % wrap) for c in (bp + bm - 2 * b1, bp - bm, 2 * b1))
    p, t = scratch.view(uint), out.view(uint)
    xp.copyto(p, agree, casting="unsafe")                      # -1 -> 2^bits - 1: modular arithmetic
    xp.multiply(p, curve, out=t)
    xp.add(t, slope, out=t)
    xp.multiply(t, p, out=t)
    xp.add(t, twice_one, out=t)
    xp.right_shift(t, uint.type(1), out=t)                     # 2 B(f) / 2: exact, it is even
    return out


def zeta_factor_reference(agree: Array, eta_plus: float, eta_minus: float, dtype: Any) -> Array:
    """The plain version of :func:`zeta_factor`: eta_plus / eta_minus / 1 by ``where`` (as `WAME.update` writes it)."""
    xp = backend.array_module(agree)
    return xp.where(agree > 0, eta_plus, xp.where(agree < 0, eta_minus, 1.0)).astype(dtype)
