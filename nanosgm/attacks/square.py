"""The Square attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search", Algorithm 1 and 2), L-inf: random search over square patches
of colour +-eps, accepted per example when the margin loss drops. Forward passes only: it never looks
at a gradient, so gradient masking cannot fool it.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .checks import check_attack, check_count
from .fgsm import clip_to_range
from .gradients import margin
from .state import as_rng, on_backend


SQUARE_P_INIT = 0.8       # the fraction of pixels the first squares cover (AutoAttack's L-inf setting)
_SQUARE_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)   # on a 10,000-query scale


def square_p(p_init: float, it: int, n_iters: int) -> float:
    """The Square attack's schedule of p, the fraction of the image a square covers: iteration `it` of
    `n_iters` is rescaled to 10,000 queries; p is halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000
    and 8000 of them (p_init / 512 from 8000 to 10000), as in the authors' `p_selection`."""
    t = int(it / n_iters * 10000)
    if t > 10000:
        return p_init
    return p_init / 2 ** sum(t > b for b in _SQUARE_HALVINGS)


def square_side(p: float, c: int, h: int, w: int) -> int:
    """Side s of the square: round(sqrt(p * c*h*w / c)), at least 1 and at most h - 1."""
    s = int(round(math.sqrt(p * c * h * w / c)))
    return min(max(s, 1), h - 1)


def _square_proposal(x, x_best, eps, s, rng, clip):
    """For every row: x_best with one random s x s window (the same position in every channel) set to
    x + (+-eps per channel), re-drawn until it differs from x_best (Algorithm 2 of the paper, L-inf).
    The window's corner is uniform over all h - s + 1 (w - s + 1) positions, as the paper says; the
    authors' code draws randint(0, h - s), which never places a window against the last row or column."""
    xp = backend.array_module(x)
    m, c, h, w = x.shape
    top = np.floor(backend.to_host(rng.random(m)) * (h - s + 1)).astype(np.int64)   # uniform in 0 .. h - s
    left = np.floor(backend.to_host(rng.random(m)) * (w - s + 1)).astype(np.int64)
    rows, cols = np.arange(h), np.arange(w)
    window = (((rows >= top[:, None]) & (rows < top[:, None] + s))[:, :, None]
              & ((cols >= left[:, None]) & (cols < left[:, None] + s))[:, None, :])[:, None]   # (m, 1, h, w)
    window = on_backend(window, like=x)
    delta = x_best - x
    todo = np.ones(m, dtype=bool)
    for _ in range(100):                 # a draw equal to the current window is re-drawn (bounded)
        colour = np.where(backend.to_host(rng.random((m, c, 1, 1))) < 0.5, -eps, eps).astype(x.dtype)
        colour = on_backend(colour, like=x)
        keep = on_backend(~todo, like=x).reshape(-1, 1, 1, 1)
        delta = xp.where(window & ~keep, colour, delta)
        same = xp.abs(clip_to_range(x + delta, clip) - x_best) < 1e-7
        todo = backend.to_host((same | ~window).all(axis=(1, 2, 3)))
        if not todo.any():
            break
    return clip_to_range(x + delta, clip)


def square(model, x, y, eps: float, *, queries: int = 1000, p_init: float = SQUARE_P_INIT, rng=None,
           clip=(0.0, 1.0)):
    """The Square attack (Andriushchenko et al. 2020), L-inf, untargeted, gradient-free.

    Start: vertical stripes, x + eps * (+-1 per column and channel), clipped. Then `queries - 1` times,
    for the examples not yet misclassified: propose x_best with one s x s square (side from `square_p`
    and `square_side`) recoloured to +-eps per channel (`_square_proposal`), and accept it per example
    when the margin loss z_y - max_{k != y} z_k (logits, inference mode) goes down. An example stops as
    soon as its margin is negative. Each query is one forward pass. x: (N, C, H, W) images, H, W >= 2.
    `rng`: None (the backend's host generator), an int seed, or a Generator. Returns x_best.
    Refused (ValueError): what `fgsm` refuses, `queries` not a whole number >= 1, `p_init` outside (0, 1].
    """
    x = on_backend(x)
    y = on_backend(y, like=x)
    xp = backend.array_module(x)
    if x.ndim != 4 or min(x.shape[2:]) < 2:
        raise ValueError(f"square needs images shaped (N, C, H, W) with H, W >= 2, got {tuple(x.shape)}")
    check_attack("square", x, y, eps, clip)
    check_count(queries, "queries", "square")
    if not 0 < p_init <= 1:           # False for NaN too
        raise ValueError(f"square: p_init must be a number in (0, 1] (the fraction of the image the first squares "
                         f"cover), got {p_init!r}")
    if eps == 0:
        return x.copy()
    rng = as_rng(rng, backend.host_rng)
    n, c, h, w = x.shape
    stripes = np.where(backend.to_host(rng.random((n, c, 1, w))) < 0.5, -eps, eps).astype(x.dtype)
    x_best = clip_to_range(x + on_backend(stripes, like=x), clip)
    loss_best = margin(model.forward(x_best, training=False), y)
    for it in range(int(queries) - 1):
        active = xp.nonzero(loss_best > 0)[0]
        if active.size == 0:
            break
        s = square_side(square_p(p_init, it, int(queries)), c, h, w)
        x_new = _square_proposal(x[active], x_best[active], eps, s, rng, clip)
        loss_new = margin(model.forward(x_new, training=False), y[active])
        better = loss_new < loss_best[active]
        x_best[active] = xp.where(better.reshape(-1, 1, 1, 1), x_new, x_best[active])
        loss_best[active] = xp.where(better, loss_new, loss_best[active])
    return x_best
