"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", Algorithm 1), L-inf: PGD with momentum 0.75 and a step size 2 * eps
that is halved at fixed checkpoints when progress stalls, restarting from the best point; it raises
the cross-entropy or the DLR loss (their Eq. 5).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .checks import check_attack, check_count
from .fgsm import clip_to_range, gradient_sign
from .gradients import loss_and_input_gradient
from .pgd import project
from .state import as_rng, on_backend, uniform

if TYPE_CHECKING:
    from ..layers import Sequential
    from ..layers.base import Array


APGD_MOMENTUM = 0.75      # alpha in Croce & Hein's Algorithm 1
APGD_RHO = 0.75           # Condition 1: fewer than rho * (w_j - w_{j-1}) of the steps raised the loss


def apgd_checkpoints(steps: int) -> list:
    """The checkpoints w_j = ceil(p_j * steps) at which APGD may halve its step size (Croce & Hein 2020):
    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), while p_j <= 1. Duplicates
    (few steps) are dropped. steps = 100 gives [0, 22, 41, 57, 70, 80, 87, 93, 99]."""
    p = [0.0, 0.22]
    while True:
        nxt = round(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06), 10)   # p_j are multiples of 0.01: no float drift
        if nxt > 1:
            break
        p.append(nxt)
    return sorted({math.ceil(round(pj * int(steps), 9)) for pj in p})


def apgd_start(x: Array, eps: float, rng: np.random.Generator, clip: tuple[float, float] | None = (0.0, 1.0)) -> Array:
    """APGD's random start, as in the authors' code: x + eps * t / max|t| with t ~ U(-1, 1) per example
    (a point on the surface of the L-inf ball), clipped to the range. `rng`: a NumPy/CuPy Generator."""
    xp = backend.array_module(x)
    t = 2 * uniform(rng, x.shape, x) - 1
    scale = xp.abs(t.reshape(t.shape[0], -1)).max(axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    return clip_to_range(x + x.dtype.type(eps) * t / scale, clip)


class _ApgdState:
    """Per-example bookkeeping of Algorithm 1: current/previous point, best point, step size, counters."""

    def __init__(self, x0: Array, f0: Array, g0: Array, eps: float) -> None:
        xp = backend.array_module(x0)
        n = x0.shape[0]
        self.x, self.x_prev, self.f, self.g = x0, x0, f0, g0
        self.x_max, self.f_max, self.g_max = x0.copy(), f0.copy(), g0.copy()
        self.eta = xp.full(n, 2 * eps, dtype=x0.dtype)              # eta^(0) = 2 eps
        self.increases = xp.zeros(n, dtype=np.int64)                 # steps since w_{j-1} that raised f
        self.halved_last = xp.zeros(n, dtype=bool)                   # eta^(w_{j-1}) != eta^(w_j)
        self.f_max_last = f0.copy()                                  # f_max^(w_{j-1})

    def column(self, v: Array) -> Array:
        return v.reshape((-1,) + (1,) * (self.x.ndim - 1))


def _apgd_step(s: _ApgdState, x: Array, eps: float, clip: tuple[float, float] | None, first: bool) -> Array:
    """x^(k+1) from x^(k): z = P(x^(k) + eta sign(grad)); then, after the first step, the momentum
    step x^(k+1) = P(x^(k) + alpha (z - x^(k)) + (1 - alpha)(x^(k) - x^(k-1)))."""
    z = project(s.x + s.column(s.eta) * gradient_sign(s.g, x), x, eps, clip)
    if first:
        return z
    a = x.dtype.type(APGD_MOMENTUM)
    return project(s.x + a * (z - s.x) + (1 - a) * (s.x - s.x_prev), x, eps, clip)


def _apgd_checkpoint(s: _ApgdState, w: int, w_prev: int) -> None:
    """At checkpoint w_j: halve eta and restart from x_max where Condition 1 (too few increases since
    w_{j-1}) or Condition 2 (eta not halved at w_{j-1} and f_max unchanged since) holds."""
    xp = backend.array_module(s.x)
    cond1 = s.increases < APGD_RHO * (w - w_prev)
    cond2 = ~s.halved_last & (s.f_max == s.f_max_last)
    halve = cond1 | cond2
    s.eta = xp.where(halve, s.eta / 2, s.eta)
    col = s.column(halve)
    s.x, s.g, s.f = xp.where(col, s.x_max, s.x), xp.where(col, s.g_max, s.g), xp.where(halve, s.f_max, s.f)
    s.halved_last, s.f_max_last = halve, s.f_max.copy()
    s.increases = xp.zeros_like(s.increases)


def _loss_on_rows(model: Sequential, x: Array, y: Array, loss: str, rows: Array | None, f_old: Array, g_old: Array,
                  y_bounds: tuple[int, int] | None = None) -> tuple[Array, Array, Array]:
    """(per-example loss, misclassified, dE/dx) like `loss_and_input_gradient`, computed for the examples
    where the bool mask `rows` is True only; the others keep `f_old`, `g_old` and count as not
    misclassified. `rows` None: every example (the plain call, the reference). `y_bounds`: (min, max) of
    all of y's labels, checked by the loss instead of reading y."""
    xp = backend.array_module(x)
    if rows is None or bool(rows.all()):
        f, logits, g = loss_and_input_gradient(model, x, y, loss, y_bounds=y_bounds)
        return f, xp.argmax(logits, axis=1) != y, g
    idx = xp.nonzero(rows)[0]
    f, g, wrong = f_old.copy(), g_old.copy(), xp.zeros(len(x), dtype=bool)
    f_a, logits, g_a = loss_and_input_gradient(model, x[idx], y[idx], loss, y_bounds=y_bounds)
    f[idx], g[idx], wrong[idx] = f_a, g_a, xp.argmax(logits, axis=1) != y[idx]
    return f, wrong, g


def apgd(model: Sequential, x: Array, y: Array, eps: float, *, steps: int = 100, loss: str = "ce",
         rng: int | np.random.Generator | None = None, clip: tuple[float, float] | None = (0.0, 1.0),
         skip_fooled: bool = True) -> Array:
    """Auto-PGD (Croce & Hein 2020, Algorithm 1), L-inf, maximising `loss` ("ce" or "dlr") of `model`.

    From `apgd_start`, `steps` steps (`_apgd_step`: a sign step of size eta^(k), then momentum 0.75,
    each projected onto the eps-ball and the range), eta^(0) = 2 eps. At each checkpoint w_j of
    `apgd_checkpoints(steps)` the examples whose progress stalled get eta halved and restart from their
    best point x_max (`_apgd_checkpoint`). The network is in inference mode: each example is attacked
    on its own; steps + 1 forward/backward passes in all. Returns, per example, the first visited point
    that is misclassified, else x_max (the highest loss seen). `rng`: None (the backend's device
    generator), an int seed, or a Generator.

    `skip_fooled` (the speed trick): an example's result is fixed once it is misclassified, so later
    steps run the network on the others only, and stop when none is left. The result is that of
    `skip_fooled=False` (every example every step, the reference; tests/attacks/test_attacks.py compares them)
    up to the rounding of a matrix product over fewer rows.

    Refused (ValueError): what `fgsm` refuses, and `steps` not a whole number >= 1.
    """
    x = on_backend(x)
    y = on_backend(y, like=x)
    y_bounds = check_attack("apgd", x, y, eps, clip)
    check_count(steps, "steps", "apgd")
    xp = backend.array_module(x)
    if eps == 0:
        return x.copy()
    x0 = apgd_start(x, eps, as_rng(rng, backend.device_rng), clip)
    f, logits, g = loss_and_input_gradient(model, x0, y, loss, y_bounds=y_bounds)
    s = _ApgdState(x0, f, g, eps)
    fooled = xp.argmax(logits, axis=1) != y
    x_fooled = x0.copy()
    checkpoints = [w for w in apgd_checkpoints(steps) if w > 0]
    w_prev = 0
    for k in range(steps):
        if skip_fooled and bool(fooled.all()):
            break
        x_new = _apgd_step(s, x, eps, clip, first=(k == 0))
        rows = ~fooled if skip_fooled else None
        f_new, wrong, g_new = _loss_on_rows(model, x_new, y, loss, rows, s.f, s.g, y_bounds)
        s.increases += f_new > s.f
        new_fooled = wrong & ~fooled
        x_fooled = xp.where(s.column(new_fooled), x_new, x_fooled)
        fooled |= new_fooled
        better = f_new > s.f_max
        s.x_max, s.g_max = xp.where(s.column(better), x_new, s.x_max), xp.where(s.column(better), g_new, s.g_max)
        s.f_max = xp.where(better, f_new, s.f_max)
        s.x_prev, s.x, s.f, s.g = s.x, x_new, f_new, g_new
        if k + 1 in checkpoints:
            _apgd_checkpoint(s, k + 1, w_prev)
            w_prev = k + 1
    return xp.where(s.column(fooled), x_fooled, s.x_max)
