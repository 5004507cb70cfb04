"""What every public attack refuses, each with a one-line ValueError that says what is wrong and what to do.

    eps       a finite number >= 0 (0: the clean input); in a list, each eps once
    counts    steps, restarts, queries: whole numbers >= 1; a step size: a finite number > 0
    clip      None, or (lo, hi) with finite lo < hi
    inputs    finite, and inside `clip` when there is one: an attack clips its result to the range, so an
              input outside it (normalised to mean 0, 0-255 pixels) would come back far from where it was.
              One min and one max over the batch (one read for a device batch).
    labels    one integer class index per input, in [0, K) when the logits give K (as `SoftmaxCrossEntropy`);
              from the labels' (min, max) when the caller found them on the host (``y_bounds``)

The checks only read: an attack computes with its arguments as it was given them (`check_eps_list`
returns the list as the floats `evaluate` always used). Inside `deferred_input_checks` (the training
loop's steps) a device batch's min and max stay on the device until the loop reads them with its losses.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .. import backend
from ..layers.loss import check_label_bounds, check_label_range, label_bounds, label_shape

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["check_eps", "check_eps_list", "check_count", "check_positive", "check_clip", "check_inputs",
           "check_input_range", "deferred_input_checks", "check_attack", "check_labels", "label_shape",
           "label_bounds", "check_label_range"]

ZCA_HINT = "clip=None attacks unbounded inputs (e.g. ZCA-whitened CIFAR)"


def _finite(value: Any) -> float | None:
    """`value` as a float if it is a finite real number (a Python or NumPy scalar), else None."""
    if isinstance(value, (bool, str, bytes)) or getattr(value, "ndim", 0) != 0:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def check_eps(eps: float, who: str) -> None:
    """An L-inf budget: a finite number >= 0."""
    v = _finite(eps)
    if v is None or v < 0:
        raise ValueError(f"{who}: eps must be a finite number >= 0 (0: the clean input), got {eps!r}")


def check_eps_list(eps_list: Iterable[float], who: str) -> list:
    """The budgets as floats, each checked by `check_eps` and given once ({eps: result} holds one per eps)."""
    eps_list = list(eps_list)
    for e in eps_list:
        check_eps(e, who)
    out = [float(e) for e in eps_list]
    for i, e in enumerate(out):
        if e in out[:i]:
            raise ValueError(f"{who}: eps {e!r} is given twice ({', '.join(map(repr, out))}); give each budget once")
    return out


def check_count(n: int, name: str, who: str) -> None:
    """A number of steps, restarts or queries: a whole number >= 1."""
    v = _finite(n)
    if v is None or v != int(v) or v < 1:
        raise ValueError(f"{who}: {name} must be a whole number >= 1, got {n!r}")


def check_positive(value: float, name: str, who: str) -> None:
    """A step size: a finite number > 0."""
    v = _finite(value)
    if v is None or v <= 0:
        raise ValueError(f"{who}: {name} must be a finite number > 0, got {value!r}")


def check_clip(clip: tuple[float, float] | None, who: str) -> None:
    """None, or (lo, hi) with finite lo < hi."""
    if clip is None:
        return
    try:
        lo, hi = (_finite(c) for c in clip)
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or hi is None or not lo < hi:
        raise ValueError(f"{who}: clip must be None or (lo, hi) with finite lo < hi, got {clip!r}")


def check_inputs(x: Array, clip: tuple[float, float] | None, who: str) -> None:
    """`x` finite, and inside `clip` = (lo, hi) unless it is None (one min and one max over `x`). Inside
    `deferred_input_checks`, a device array's min and max are left on the device for the block's owner."""
    if x.size == 0:
        return
    if _DEFERRED and backend.is_gpu_array(x):
        _DEFERRED[-1].pending.append((x.min(), x.max(), clip, who))
        return
    check_input_range(*backend.min_max(x), clip, who)


def check_input_range(lo: float, hi: float, clip: tuple[float, float] | None, who: str) -> None:
    """The refusals of `check_inputs`, from the inputs' min `lo` and max `hi` (NaN anywhere makes both NaN)."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{who}: inputs must be finite, got values in [{lo}, {hi}] (NaN or inf pixels); "
                         "fix or drop those images")
    if clip is not None and (lo < clip[0] or hi > clip[1]):
        raise ValueError(f"{who}: inputs must lie in the clip range [{float(clip[0])!r}, {float(clip[1])!r}] the "
                         f"attack clips to, got values in [{lo:g}, {hi:g}]; scale them into it, pass their own "
                         f"range as clip=(lo, hi), or {ZCA_HINT}")


_DEFERRED: list = []        # the open deferred_input_checks blocks, innermost last


class deferred_input_checks:
    """``with deferred_input_checks() as block:`` -- inside it, `check_inputs` of a device array reads
    nothing back: it appends (min, max, clip, who) to ``block.pending``, the min and max as 0-d device
    arrays. The block's owner reads ``block.values()`` later, with other values of its own, and calls
    ``block.settle``, which refuses as `check_inputs` would have. Host arrays are checked at once, as
    outside a block. Should the block raise, its pending checks are settled first (one read): an input
    that would have been refused is reported, not what came of attacking it."""

    def __init__(self) -> None:
        self.pending: list = []

    def __enter__(self) -> "deferred_input_checks":
        _DEFERRED.append(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        _DEFERRED.remove(self)
        if exc_type is not None:
            self.settle(iter(backend.host_floats(self.values())))
        return False

    def values(self) -> list:
        """The pending checks' minima and maxima, (min, max) per check in order: what `settle` takes."""
        return [v for lo, hi, _, _ in self.pending for v in (lo, hi)]

    def settle(self, values: Iterator[float]) -> None:
        """`check_input_range` of each pending check, its (min, max) taken from ``values`` (read back in the
        order of `values`; an iterator, so several blocks' values may follow one another)."""
        for _, _, clip, who in self.pending:
            check_input_range(next(values), next(values), clip, who)


def check_attack(who: str, x: Array, y: Array, eps: float, clip: tuple[float, float] | None,
                 y_bounds: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The checks every attack makes before it runs: eps, clip, the labels' shape and type, the inputs.
    Returns the labels' (min, max) for the loss to check against the number of classes: ``y_bounds``
    when the caller found them on the host, else read from `y` (once per attack, not per step)."""
    check_eps(eps, who)
    check_clip(clip, who)
    label_shape(y, x.shape[0])
    check_inputs(x, clip, who)
    if y_bounds is not None or x.shape[0] == 0:
        return y_bounds
    return backend.min_max(y)


def check_labels(logits: Array, y: Array, y_bounds: tuple[int, int] | None = None) -> None:
    """`y` labels for `logits` (N, K), as `SoftmaxCrossEntropy` checks them: (N,) integers in [0, K).
    ``y_bounds``: the labels' (min, max) found by the caller (on the host), checked instead of reading `y`'s."""
    if y_bounds is None:
        label_bounds(y, logits.shape[0], logits.shape[1])
        return
    label_shape(y, logits.shape[0])
    check_label_bounds(y_bounds, logits.shape[1])
