"""Inverted dropout (Srivastava et al. 2014), used by the paper on every layer of its networks.

Training: keep each unit with probability 1 - p and scale the kept ones by 1 / (1 - p), so inference
is the identity. The mask is drawn from the backend's seeded generator (``backend.device_rng()``).

Double backpropagation (base.py) holds the forward pass's mask: R{y} = R{x} * mask, R{dx} = R{dy} * mask.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..kernels.elementwise import dropout_forward
from .base import Array, Layer

_IDENTITY = object()     # cache marker: the last forward pass was the identity (inference, or p = 0)


class Dropout(Layer):
    """y = x * mask / (1 - p) in training, y = x at inference.   Any shape.

    ``hold_mask = True`` reuses the last mask while the input shape stays the same (gradient checks
    need the same mask on every evaluation).
    """

    def __init__(self, p: float = 0.5, rng=None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = rng
        self.hold_mask = False
        self.mask = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Array, training: bool = True) -> Array:
        if not training or self.p == 0.0:
            self._cache = _IDENTITY
            return x
        if self.hold_mask and self.mask is not None and self.mask.shape == x.shape:
            y = x * self.mask
        else:
            rng = self.rng if self.rng is not None else backend.device_rng()
            draw = x.dtype if x.dtype in (np.float32, np.float64) else np.float32   # what Generator.random offers
            keep = rng.random(x.shape, dtype=draw)
            y, self.mask = dropout_forward(x, keep, self.p)     # mask and product: one kernel
        self._cache = self.mask
        return y

    def backward(self, dy: Array) -> Array:
        mask = self._need_cache()
        return dy if mask is _IDENTITY else dy * mask

    def forward_dot(self, x_dot: Array) -> Array:
        self._dot_cache = True
        return self.backward(x_dot)                 # the same held mask, the same product

    def backward_dot(self, dy: Array, dy_dot: Array) -> Array:
        return self.backward(dy_dot)
