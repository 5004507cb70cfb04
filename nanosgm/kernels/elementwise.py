"""ReLU's and Dropout's forward passes as single element-wise kernels (used by nanosgm/layers/activations.py
and nanosgm/layers/dropout.py), and :func:`uniform_float`, the dtype test every twin of this package's
element-wise and normalisation kernels makes before it runs.

    relu_forward(x)            -> (y, mask):  mask = [x > 0],  y = x * mask                    (Eq. 6-9's phi)
    dropout_forward(x, keep, p) -> (y, mask): mask = [keep >= p] / (1 - p),  y = x * mask    (inverted dropout)

Today each was several array operations (ReLU 2, Dropout's mask and product 4 after the draw); each kernel
is one pass that writes both the output and the mask the backward pass needs. The backward passes were
already one operation each (``dy * mask``) and stay plain.

Reference: the layers' arithmetic as it was, plain ``xp`` operations (on NumPy: the bits the committed records
rely on). CuPy twins (**not yet run on a GPU**): one ``ElementwiseKernel`` each, the reference's operations on
each element in order. ``x * mask`` with a boolean mask is ``x * 1`` or ``x * 0`` (so -0.0 for a negative x and
NaN for NaN, as in NumPy); the scaled mask is ``scale`` or ``+0``, which is what ``[keep >= p] * scale`` rounds to;
``p`` and ``scale`` are passed in the dtypes NumPy casts the Python floats to. No sum is contracted into a
fused multiply-add (there is none), so the **twins promise bit equality with the reference** for float32 and
float64 arrays, NaN payloads aside (``inf * 0`` is NaN on both, but a GPU writes its own canonical NaN); other
dtypes (float16) run the reference on the device.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .core import kernel

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["relu_forward", "dropout_forward", "uniform_float"]

FMAD_OFF = ("--fmad=false",)     # no fused multiply-add: each operation rounds on its own, as NumPy's do


def uniform_float(*arrays: Any) -> bool:
    """Whether every array has one dtype, float32 or float64: what the compiled twins are built for.
    Mixed dtypes (a float32 layer fed float64 inputs) promote as NumPy does only in the reference."""
    dtypes = {a.dtype for a in arrays}
    return len(dtypes) == 1 and dtypes.pop() in (np.float32, np.float64)


# ------------------------------------------------------------------------------------------ ReLU
def _relu_forward_twin(cp: Any) -> Callable:
    """One ElementwiseKernel writing y and the boolean mask."""
    relu = cp.ElementwiseKernel("T x", "T y, bool mask", "mask = x > (T)0; y = x * (T)mask;",
                                "nanosgm_relu_forward", options=FMAD_OFF)

    def run(x: Any) -> tuple[Any, Any]:
        if not uniform_float(x):
            return relu_forward.reference(x)
        return relu(x)
    return run


@kernel(cuda=_relu_forward_twin)
def relu_forward(x: Array) -> tuple[Array, Array]:
    """phi(x) = max(x, 0) as ``x * [x > 0]``: returns (y, mask), y of x's shape and dtype, mask boolean."""
    mask = x > 0
    return x * mask, mask


# ------------------------------------------------------------------------------------------ Dropout
def dropout_scale(p: float) -> float:
    """1 / (1 - p): the factor that keeps the expected value of a unit kept with probability 1 - p."""
    return 1.0 / (1.0 - p)


def _dropout_forward_twin(cp: Any) -> Callable:
    """One ElementwiseKernel writing y and the scaled mask; ``keep`` may have another dtype than x (K)."""
    drop = cp.ElementwiseKernel("T x, K keep, K p, T scale", "T y, T mask",
                                "mask = keep >= p ? scale : (T)0; y = x * mask;",
                                "nanosgm_dropout_forward", options=FMAD_OFF)

    def run(x: Any, keep: Any, p: float) -> tuple[Any, Any]:
        if not (uniform_float(x) and uniform_float(keep)):
            return dropout_forward.reference(x, keep, p)
        return drop(x, keep, keep.dtype.type(p), x.dtype.type(dropout_scale(p)))
    return run


@kernel(cuda=_dropout_forward_twin)
def dropout_forward(x: Array, keep: Array, p: float) -> tuple[Array, Array]:
    """Inverted dropout with the uniform draws ``keep`` (x's shape): returns (y, mask) with
    mask = [keep >= p] / (1 - p) in x's dtype and y = x * mask."""
    mask = (keep >= p).astype(x.dtype) * x.dtype.type(dropout_scale(p))
    return x * mask, mask
