"""What every public attack refuses, each with a one-line ValueError that says what is wrong and what to do.

    eps       a finite number >= 0 (0: the clean input); in a list, each eps once
    counts    steps, restarts, queries: whole numbers >= 1; a step size: a finite number > 0
    clip      None, or (lo, hi) with finite lo < hi
    inputs    finite, and inside `clip` when there is one: an attack clips its result to the range, so an
              input outside it (normalised to mean 0, 0-255 pixels) would come back far from where it was.
              One min and one max over the batch.
    labels    one integer class index per input, in [0, K) when the logits give K (as `SoftmaxCrossEntropy`)

The checks only read: an attack computes with its arguments as it was given them (`check_eps_list`
returns the list as the floats `evaluate` always used).
"""
from __future__ import annotations

import math

from ..layers.loss import check_label_range, label_bounds, label_shape

__all__ = ["check_eps", "check_eps_list", "check_count", "check_positive", "check_clip", "check_inputs",
           "check_attack", "check_labels", "label_shape", "label_bounds", "check_label_range"]

ZCA_HINT = "clip=None attacks unbounded inputs (e.g. ZCA-whitened CIFAR)"


def _finite(value):
    """`value` as a float if it is a finite real number (a Python or NumPy scalar), else None."""
    if isinstance(value, (bool, str, bytes)) or getattr(value, "ndim", 0) != 0:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def check_eps(eps, who: str) -> None:
    """An L-inf budget: a finite number >= 0."""
    v = _finite(eps)
    if v is None or v < 0:
        raise ValueError(f"{who}: eps must be a finite number >= 0 (0: the clean input), got {eps!r}")


def check_eps_list(eps_list, who: str) -> list:
    """The budgets as floats, each checked by `check_eps` and given once ({eps: result} holds one per eps)."""
    eps_list = list(eps_list)
    for e in eps_list:
        check_eps(e, who)
    out = [float(e) for e in eps_list]
    for i, e in enumerate(out):
        if e in out[:i]:
            raise ValueError(f"{who}: eps {e!r} is given twice ({', '.join(map(repr, out))}); give each budget once")
    return out


def check_count(n, name: str, who: str) -> None:
    """A number of steps, restarts or queries: a whole number >= 1."""
    v = _finite(n)
    if v is None or v != int(v) or v < 1:
        raise ValueError(f"{who}: {name} must be a whole number >= 1, got {n!r}")


def check_positive(value, name: str, who: str) -> None:
    """A step size: a finite number > 0."""
    v = _finite(value)
    if v is None or v <= 0:
        raise ValueError(f"{who}: {name} must be a finite number > 0, got {value!r}")


def check_clip(clip, who: str) -> None:
    """None, or (lo, hi) with finite lo < hi."""
    if clip is None:
        return
    try:
        lo, hi = (_finite(c) for c in clip)
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or hi is None or not lo < hi:
        raise ValueError(f"{who}: clip must be None or (lo, hi) with finite lo < hi, got {clip!r}")


def check_inputs(x, clip, who: str) -> None:
    """`x` finite, and inside `clip` = (lo, hi) unless it is None (one min and one max over `x`)."""
    if x.size == 0:
        return
    lo, hi = float(x.min()), float(x.max())            # NaN anywhere makes both NaN
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{who}: inputs must be finite, got values in [{lo}, {hi}] (NaN or inf pixels); "
                         "fix or drop those images")
    if clip is not None and (lo < clip[0] or hi > clip[1]):
        raise ValueError(f"{who}: inputs must lie in the clip range [{float(clip[0])!r}, {float(clip[1])!r}] the "
                         f"attack clips to, got values in [{lo:g}, {hi:g}]; scale them into it, pass their own "
                         f"range as clip=(lo, hi), or {ZCA_HINT}")


def check_attack(who: str, x, y, eps, clip) -> None:
    """The checks every attack makes before it runs: eps, clip, the inputs, and the labels' shape and type."""
    check_eps(eps, who)
    check_clip(clip, who)
    label_shape(y, x.shape[0])
    check_inputs(x, clip, who)


def check_labels(logits, y) -> None:
    """`y` labels for `logits` (N, K), as `SoftmaxCrossEntropy` checks them: (N,) integers in [0, K)."""
    label_bounds(y, logits.shape[0], logits.shape[1])
