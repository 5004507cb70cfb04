"""Column sums, the reduction behind every bias gradient and BatchNorm's channel sums.

The reference sums with NumPy's ``a.sum(axis=0)``; the twin is one cuBLAS matrix-vector product with a
cached ones vector, which cuBLAS sums in its own order: the twin promises the reference to a relative
tolerance (about sqrt(M) * eps of the sum of |a|), not bit equality. Dense, Conv2D and BatchNorm all use
this one function (one path per job).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .core import kernel
from .elementwise import uniform_float

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["column_sum", "column_sum_twin", "ones"]

_ONES: dict = {}        # (rows, dtype, device) -> a ones vector for column sums by GEMV, built once


def ones(cp: Any, m: int, dtype: Any) -> Any:
    """A cached device vector of m ones of ``dtype`` (on the current device)."""
    key = (m, str(dtype), cp.cuda.Device().id)
    if key not in _ONES:
        _ONES[key] = cp.ones(m, dtype=dtype)
    return _ONES[key]


# ------------------------------------------------------------------------------------------ column sums
def column_sum_twin(cp: Any) -> Callable:
    """``ones(M) @ a``: one cuBLAS GEMV (CuPy copies a non-contiguous ``a`` first: one more kernel)."""
    def run(a: Any) -> Any:
        if a.ndim != 2 or not uniform_float(a):
            return column_sum.reference(a)
        return ones(cp, a.shape[0], a.dtype) @ a
    return run


@kernel(cuda=column_sum_twin)
def column_sum(a: Array) -> Array:
    """(M, C) -> (C,): the sum of each column (a bias gradient, a BatchNorm channel sum)."""
    return a.sum(axis=0)
