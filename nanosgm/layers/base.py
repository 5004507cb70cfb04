"""The contract every layer follows (CS231n style: a forward/backward pair with a cache).

    y  = layer.forward(x, training=True)   # caches what backward needs
    dx = layer.backward(dy)                # returns dE/dx and fills layer.grads

and a third pass, for training losses that contain the input gradient itself (double backpropagation,
the paper's Section 6 future work; nanosgm/methods/gradreg.py):

    y_dot  = layer.forward_dot(x_dot)        # R{y}: how y moves as x moves along x_dot
    dx_dot = layer.backward_dot(dy, dy_dot)  # R{dx}; fills layer.grads_dot

``R{f} = d/dr f(x + r x_dot) at r = 0`` is Pearlmutter's (1994) R-operator: applied to the forward pass
it is a Jacobian-vector product, applied to the backward pass a Hessian-vector product. Only the inputs
move (the weights are constants), so ``grads_dot[name] = R{dE/d(param)} = (d^2 E / d param dx) x_dot``.
``forward_dot`` follows ``forward`` (it reads that pass's cache); ``backward_dot`` takes the ``dy`` that
``backward`` was given, and the derivative ``dy_dot`` of it from the layer above.

``layer.params`` maps a name to a learnable array, ``layer.grads`` holds dE/d(param) under the same names
after ``backward``, and ``layer.buffers`` holds non-learnable state that is saved with the model
(batch normalisation's running statistics). Returning dE/dx from *every* layer, including the first,
is what gives the residual gradient at the inputs (Eq. 14) that the Smooth Gradient Method uses.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend
from ..backend import Array        # the annotation type of every layer; defined beside the backends


class Layer:
    """Base class: holds params / grads / buffers; subclasses implement forward and backward."""

    def __init__(self) -> None:
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.grads_dot: dict = {}       # R{grads} after backward_dot (double backpropagation)
        self._cache: Any = None          # what backward needs, each layer its own (None: no forward pass yet)
        self._dot_cache: Any = None      # what backward_dot needs (None: no forward_dot pass yet)
        # False: backward returns dE/dx only and leaves ``grads`` alone (attacks need no weight gradients)
        self.param_grads = True

    def forward(self, x: Array, training: bool = True) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_dot(self, x_dot: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no forward_dot (double backpropagation)")

    def backward_dot(self, dy: Array, dy_dot: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no backward_dot (double backpropagation)")

    def __call__(self, x: Array, training: bool = True) -> Array:
        return self.forward(x, training=training)

    def _need_cache(self) -> Any:
        """The cache from the last forward pass, or a clear error if there was none."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward() was called before forward(x, training=True)")
        return self._cache

    def _need_dot_cache(self) -> Any:
        """The cache from the last forward_dot pass, or a clear error if there was none."""
        if self._dot_cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward_dot() was called before forward_dot(x_dot)")
        return self._dot_cache

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def he_normal(shape: tuple, fan_in: int, dtype, rng: np.random.Generator | None = None) -> Array:
    """He et al. (2015) initialisation for ReLU layers: N(0, 2 / fan_in).

    Drawn on the host from ``rng`` (default: the global seeded host generator) and moved to the active
    backend, so the same seed gives the same weights on NumPy and CuPy.
    """
    rng = backend.host_rng() if rng is None else rng
    w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    return backend.to_device(w.astype(dtype))


def glorot_uniform(shape: tuple, fan_in: int, fan_out: int, dtype, rng: np.random.Generator | None = None) -> Array:
    """Glorot & Bengio (2010) initialisation, Keras's default for its layers: U(-a, a), a = sqrt(6 / (fan_in
    + fan_out)). Drawn on the host like `he_normal`."""
    rng = backend.host_rng() if rng is None else rng
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    w = rng.uniform(-limit, limit, shape)
    return backend.to_device(w.astype(dtype))


def zeros(shape: tuple, dtype) -> Array:
    return backend.xp().zeros(shape, dtype=dtype)


def ones(shape: tuple, dtype) -> Array:
    return backend.xp().ones(shape, dtype=dtype)


def check_float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float16, np.float32, np.float64):
        raise ValueError(f"dtype must be a floating type (float32, or float64 for gradient checks), got {dt}")
    return dt


def check_ndim(layer: "Layer", x: Array, ndims: tuple, hint: str = "") -> None:
    """Raise a ValueError that says what shape was expected and what to do."""
    if x.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{layer!r} expected a {want} input, got shape {tuple(x.shape)}. {hint}".strip())
