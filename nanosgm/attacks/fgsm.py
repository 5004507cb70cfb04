"""The Fast Gradient Sign Method (Goodfellow et al. 2015), the paper's Eq. 20:

    x_adv = clip(x + eps * sign(dE/dx), lo, hi)

with dE/dx the input gradient (Eq. 14) of the cross-entropy against the true labels. `fgsm_from_sign`
is Eq. 20 given sign(dE/dx), for callers that already hold the gradient (evaluation shares one across
every eps; FGSM adversarial training reuses the clean pass's). `clip_to_range` and `gradient_sign` are
the pieces of Eq. 20 that PGD, APGD and the Square attack reuse.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import backend
from .checks import check_attack
from .gradients import loss_and_input_gradient
from .state import on_backend

if TYPE_CHECKING:
    from ..layers import Sequential
    from ..layers.base import Array


def clip_to_range(x: Array, clip: tuple[float, float] | None) -> Array:
    """`x` clipped to the valid range `clip` = (lo, hi) (the clip of Eq. 20); `clip` None: `x` itself."""
    if clip is None:
        return x
    xp = backend.array_module(x)
    return xp.clip(x, clip[0], clip[1])


def gradient_sign(g: Array, like: Array) -> Array:
    """sign(g) (the sign of Eq. 20) in `like`'s dtype."""
    return backend.array_module(g).sign(g).astype(like.dtype, copy=False)


def fgsm_from_sign(x: Array, sign_grad: Array, eps: float, clip: tuple[float, float] | None) -> Array:
    """Eq. 20 given sign(dE/dx): clip(x + eps * sign, lo, hi), in x's dtype."""
    return clip_to_range(x + x.dtype.type(eps) * sign_grad, clip)


def fgsm(model: Sequential, x: Array, y: Array, eps: float, *, clip: tuple[float, float] | None = (0.0, 1.0),
         training: bool = False, y_bounds: tuple[int, int] | None = None) -> Array:
    """Fast Gradient Sign Method, Eq. 20: `x_adv = clip(x + eps * sign(dE/dx), lo, hi)`.

    Uses the true labels `y` and the network in inference mode. `clip=None` skips the range clip;
    `clip=None, training=True` reproduces the authors' evaluation script (see the `nanosgm.attacks` docstring).
    Returns an array on the active backend with x's dtype; `x` is not modified. Refused (ValueError): an
    eps that is not a finite number >= 0, inputs outside `clip` or not finite, labels that are not one
    class index per input (`nanosgm.attacks.checks`). ``y_bounds``: the labels' (min, max) when the caller
    found them on the host (as the training loop does); None: read from `y`. On a device an attack reads
    back the inputs' min and max (one read) and, without ``y_bounds``, the labels' (one more).
    """
    x = on_backend(x)
    y = on_backend(y, like=x)
    y_bounds = check_attack("fgsm", x, y, eps, clip, y_bounds)
    _, _, g = loss_and_input_gradient(model, x, y, training=training, y_bounds=y_bounds)
    return fgsm_from_sign(x, gradient_sign(g, x), eps, clip)
