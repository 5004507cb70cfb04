"""Projected gradient descent (Madry et al. 2018): Eq. 20 iterated from a random start in the L-inf
eps-ball, each step projected back onto the ball and the valid range (`project`); with `restarts=R`,
per example the worst of R random starts.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .checks import check_attack, check_count, check_positive
from .fgsm import clip_to_range, gradient_sign
from .gradients import cross_entropy_loss, loss_and_input_gradient
from .state import as_rng, on_backend, uniform

if TYPE_CHECKING:
    from ..layers import Sequential
    from ..layers.base import Array


def project(x_adv: Array, x: Array, eps: float, clip: tuple[float, float] | None) -> Array:
    """P: onto the L-inf ball [x - eps, x + eps], then onto the valid range `clip`."""
    xp = backend.array_module(x)
    dt = x.dtype.type
    return clip_to_range(xp.minimum(xp.maximum(x_adv, x - dt(eps)), x + dt(eps)), clip)


def _pgd_run(model: Sequential, x: Array, y: Array, eps: float, steps: int, alpha: float, random_start: bool,
             clip: tuple[float, float] | None, rng: np.random.Generator | None, training: bool,
             idx: Array | None = None, y_bounds: tuple[int, int] | None = None) -> Array:
    """One PGD run (Madry et al. 2018) from one random start; see `pgd`. `idx`: run it on the examples
    x[idx] only (the random start is still drawn for all of x, so the draws do not depend on `idx`).
    `y_bounds`: (min, max) of all of y's labels, checked by every step's loss instead of reading y."""
    dt = x.dtype.type
    noise = uniform(rng, x.shape, x) if random_start and eps > 0 else None
    if idx is not None:
        x, y, noise = x[idx], y[idx], (None if noise is None else noise[idx])
    x_adv = x.copy() if noise is None else clip_to_range(x + (2 * noise - 1) * dt(eps), clip)
    if len(x) == 0:
        return x_adv
    for _ in range(steps):
        _, _, g = loss_and_input_gradient(model, x_adv, y, training=training, y_bounds=y_bounds)
        x_adv = project(x_adv + dt(alpha) * gradient_sign(g, x), x, eps, clip)
    return x_adv


def _fooled_and_loss(model: Sequential, x_adv: Array, y: Array,
                     y_bounds: tuple[int, int] | None = None) -> tuple[Array, Array]:
    """(misclassified (N,) bool, per-example cross-entropy (N,)) in inference mode."""
    logits = model.forward(x_adv, training=False)
    xp = backend.array_module(logits)
    return xp.argmax(logits, axis=1) != y, cross_entropy_loss(logits, y, y_bounds=y_bounds)[0]


def pgd(model: Sequential, x: Array, y: Array, eps: float, *, steps: int = 10, step_size: float | None = None,
        restarts: int = 1, random_start: bool = True, clip: tuple[float, float] | None = (0.0, 1.0),
        rng: int | np.random.Generator | None = None, training: bool = False, skip_fooled: bool = True,
        y_bounds: tuple[int, int] | None = None) -> Array:
    """Projected gradient descent on the loss (Madry et al. 2018), the L-inf iterated form of Eq. 20.

    x_0 = x + U(-eps, eps) (if `random_start`), clipped to the range; then `steps` times
    x_{k+1} = P(x_k + alpha * sign(dE/dx_k)), where P projects onto [x - eps, x + eps] and onto
    `clip`, and alpha = `step_size` (default 2.5 * eps / steps). The network is in inference mode
    (`training=True`: training mode with the buffers kept, as adversarial training uses it).
    `restarts=R` runs R random starts one after the other from the same generator and keeps, per
    example, the worst: a misclassified result over a correct one, else the higher cross-entropy
    (R = 1 is one plain run). `rng`: None (the backend's seeded device generator), an int seed, or a
    NumPy/CuPy Generator; a fixed seed gives a deterministic attack. Refused (ValueError): what `fgsm`
    refuses, `steps` or `restarts` not a whole number >= 1, a `step_size` that is not a finite number > 0.
    `y_bounds`: the labels' (min, max) when the caller found them on the host (as `fgsm`); without it they
    are read once per call, not once per step.

    `skip_fooled` (the speed trick, restarts > 1 only): a restart runs on the examples that no earlier
    restart has misclassified, so a fooled example keeps its first misclassified result. Which examples
    end misclassified is what `skip_fooled=False` (every restart on every example, the reference) gives,
    up to the rounding of a matrix product over fewer rows; the two differ only in which misclassified
    point a fooled example returns (tests/attacks/test_attacks.py compares them).
    """
    x = on_backend(x)
    y = on_backend(y, like=x)
    y_bounds = check_attack("pgd", x, y, eps, clip, y_bounds)
    check_count(steps, "steps", "pgd")
    check_count(restarts, "restarts", "pgd")
    if step_size is not None:
        check_positive(step_size, "step_size", "pgd")
    steps, restarts = int(steps), int(restarts)
    if restarts > 1 and not random_start:
        raise ValueError(f"pgd: {restarts} restarts need random_start=True (without it every restart is the same run)")
    alpha = 2.5 * eps / max(steps, 1) if step_size is None else float(step_size)
    rng = as_rng(rng, backend.device_rng) if (random_start and eps > 0) else None
    best = _pgd_run(model, x, y, eps, steps, alpha, random_start, clip, rng, training, y_bounds=y_bounds)
    if restarts == 1:
        return best
    xp = backend.array_module(x)
    best_fooled, best_loss = _fooled_and_loss(model, best, y, y_bounds)
    for _ in range(restarts - 1):
        idx = xp.nonzero(~best_fooled)[0] if skip_fooled else xp.arange(len(x))
        cand = _pgd_run(model, x, y, eps, steps, alpha, random_start, clip, rng, training, idx, y_bounds)
        if len(idx) == 0:
            continue
        fooled, loss = _fooled_and_loss(model, cand, y[idx], y_bounds)
        was_fooled, was_loss = best_fooled[idx], best_loss[idx]
        take = (fooled & ~was_fooled) | ((fooled == was_fooled) & (loss > was_loss))
        best[idx] = xp.where(take.reshape((-1,) + (1,) * (x.ndim - 1)), cand, best[idx])
        best_fooled[idx], best_loss[idx] = xp.where(take, fooled, was_fooled), xp.where(take, loss, was_loss)
    return best
