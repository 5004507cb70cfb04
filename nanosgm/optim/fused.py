"""The optimizers' fast paths: each rule's update as in-place passes over a few scratch arrays.

Each function here is the same arithmetic as the readable `update` of its optimizer (the same
operations on the same values in the same order), so the result is the same bit for bit;
tests/optim/test_optim.py compares them. `Optimizer.step` runs these through nanosgm/plumbing/threads.py,
where each cache-sized piece of a parameter goes through every pass while it is still in the cache.

Memory traffic of WAME per weight and step (float32, each array read or written once): reads g, zeta,
Z, theta, w (20 B) and the int8 sign of the previous gradient (1 B), writes zeta, Z, theta, w (16 B) and
the sign (1 B): 38 bytes, against Adam's 28 (reads g, m, v, w; writes m, v, w).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend

if TYPE_CHECKING:
    from ..layers.base import Array
    from .adam import Adam
    from .wame import WAME

__all__ = ["adam_update", "wame_update", "zeta_factor", "zeta_factor_reference"]


def adam_update(opt: Adam, param: Array, grad: Array, state: dict[str, Array]) -> None:
    """`Adam.update` in place, over one scratch buffer."""
    xp = backend.array_module(param)
    m, v = state["m"], state["v"]
    c1 = 1.0 - opt.beta1 ** opt.t
    c2 = 1.0 - opt.beta2 ** opt.t
    buf = xp.multiply(grad, 1.0 - opt.beta1)
    m *= opt.beta1
    m += buf                                           # m <- b1 m + (1 - b1) g
    xp.multiply(grad, grad, out=buf)
    buf *= 1.0 - opt.beta2
    v *= opt.beta2
    v += buf                                           # v <- b2 v + (1 - b2) g^2
    xp.multiply(v, 1.0 / c2, out=buf)                  # sqrt(v / c2) + eps
    xp.sqrt(buf, out=buf)
    buf += opt.eps
    xp.divide(m, buf, out=buf)
    buf *= opt.lr / c1
    param -= buf


def wame_update(opt: WAME, param: Array, grad: Array, state: dict[str, Array]) -> None:
    """`WAME.update` in place, over two scratch arrays; the zeta factor on bit patterns (:func:`zeta_factor`)."""
    xp = backend.array_module(param)
    zeta, Z, theta, g_sign = state["zeta"], state["Z"], state["theta"], state["g_sign"]
    a, printed = opt.alpha, opt.form == "printed"
    sign = (grad > 0).view(xp.int8) - (grad < 0).view(xp.int8)    # sign(g) as int8 (0 for a zero gradient)
    agree = sign * g_sign
    g_sign[...] = sign
    buf, step = xp.empty_like(param), xp.empty_like(param)       # the two scratch arrays
    zeta *= zeta_factor(agree, opt.eta_plus, opt.eta_minus, buf, step)
    if printed:
        xp.clip(zeta, opt.zeta_min, opt.zeta_max, out=zeta)
        zc, rate = zeta, a
    else:
        xp.clip(zeta, *opt.ZETA_STORE, out=zeta)
        zc, rate = xp.clip(zeta, opt.zeta_min, opt.zeta_max, out=buf), opt.beta2
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
    if opt.literal:
        xp.add(theta, opt.eps, out=buf)                         # theta + eps
    else:
        xp.sqrt(theta, out=buf)                                 # sqrt(theta) + eps
        buf += opt.eps
    step /= buf
    step *= opt.step_size()
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


def zeta_factor_reference(agree: Array, eta_plus: float, eta_minus: float, dtype) -> Array:
    """The plain version of :func:`zeta_factor`: eta_plus / eta_minus / 1 by ``where`` (as `WAME.update` writes it)."""
    xp = backend.array_module(agree)
    return xp.where(agree > 0, eta_plus, xp.where(agree < 0, eta_minus, 1.0)).astype(dtype)
