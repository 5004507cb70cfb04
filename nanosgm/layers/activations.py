"""Element-wise activation and reshaping layers: ReLU (phi and phi' of Eq. 6-9) and Flatten.

Double backpropagation (base.py): both are linear in x where they are differentiable (ReLU's phi'' is 0
away from its kink, and the mask does not move), so R{y} and R{dx} use the forward's mask or shape:
    ReLU:    R{y} = R{x} * [x > 0],   R{dx} = R{dy} * [x > 0]
"""
from __future__ import annotations

from ..kernels.elementwise import relu_forward
from .base import Array, Layer, check_ndim


class ReLU(Layer):
    """phi(net) = max(net, 0);  phi'(net) = 1 where net > 0, else 0.   Any shape."""

    def forward(self, x: Array, training: bool = True) -> Array:
        y, self._cache = relu_forward(x)            # y = x * [x > 0], one kernel; the mask is kept
        return y

    def backward(self, dy: Array) -> Array:
        return dy * self._need_cache()

    def forward_dot(self, x_dot: Array) -> Array:
        self._dot_cache = True
        return x_dot * self._need_cache()

    def backward_dot(self, dy: Array, dy_dot: Array) -> Array:
        return dy_dot * self._need_cache()


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), in C, H, W order (as PyTorch's flatten)."""

    def forward(self, x: Array, training: bool = True) -> Array:
        check_ndim(self, x, (2, 3, 4, 5))
        self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Array) -> Array:
        return dy.reshape(self._need_cache())

    def forward_dot(self, x_dot: Array) -> Array:
        self._dot_cache = True
        return x_dot.reshape(self._need_cache()[0], -1)

    def backward_dot(self, dy: Array, dy_dot: Array) -> Array:
        return dy_dot.reshape(self._need_cache())
