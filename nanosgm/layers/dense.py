"""Fully connected layer, Eq. 6-10.

Eq. 6:  net_j = sum_i w_{i->j} o_i + b_j, written for a batch as ``y = x @ W + b``.
Eq. 7-9: dE/dw_{i->j} = dE/dnet_j * o_i, i.e. ``dW = x.T @ dy`` (the activation's phi' is its own layer).
Eq. 10: the gradient at the layer's inputs sums over the nodes each input feeds: ``dx = dy @ W.T``.
At the first layer this dx is the residual gradient at the inputs, Eq. 14.

Double backpropagation (R-operator along an input direction, W and b constant; see base.py):
    R{y}  = R{x} @ W
    R{dW} = R{x}.T @ dy + x.T @ R{dy},   R{db} = sum_n R{dy},   R{dx} = R{dy} @ W.T
"""
from __future__ import annotations

from ..kernels.reduce import column_sum
from .base import Array, Layer, check_float_dtype, check_ndim, glorot_uniform, he_normal, zeros


class Dense(Layer):
    """y = x @ W + b.   x: (N, in_features) -> y: (N, out_features).

    Params: ``W`` (in_features, out_features), He-initialised (``init="glorot"``: Glorot-uniform, Keras's
    default); ``b`` (out_features,), zeros.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, dtype="float32", rng=None,
                 init: str = "he") -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = check_float_dtype(dtype)
        shape = (self.in_features, self.out_features)
        if init == "he":
            self.params["W"] = he_normal(shape, self.in_features, self.dtype, rng)
        elif init == "glorot":
            self.params["W"] = glorot_uniform(shape, self.in_features, self.out_features, self.dtype, rng)
        else:
            raise ValueError(f"unknown init {init!r} for Dense: choose 'he' or 'glorot'")
        if bias:
            self.params["b"] = zeros((self.out_features,), self.dtype)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"

    def forward(self, x: Array, training: bool = True) -> Array:
        check_ndim(self, x, (2,), "Flatten images first (add a Flatten() layer before Dense).")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self!r} expected inputs shaped (N, {self.in_features}), got {tuple(x.shape)}")
        self._cache = x
        y = x @ self.params["W"]
        if "b" in self.params:
            y += self.params["b"]
        return y

    def backward(self, dy: Array) -> Array:
        x = self._need_cache()
        if self.param_grads:
            self.grads["W"] = x.T @ dy              # Eq. 7-9
            if "b" in self.params:
                self.grads["b"] = column_sum(dy)       # a GEMV on a GPU
        return dy @ self.params["W"].T              # Eq. 10 (Eq. 14 at the first layer)

    def forward_dot(self, x_dot: Array) -> Array:
        self._dot_cache = x_dot
        return x_dot @ self.params["W"]             # R{Eq. 6}: the bias does not move

    def backward_dot(self, dy: Array, dy_dot: Array) -> Array:
        x, x_dot = self._need_cache(), self._need_dot_cache()
        if self.param_grads:
            self.grads_dot["W"] = x_dot.T @ dy + x.T @ dy_dot    # R{Eq. 7-9}: product rule
            if "b" in self.params:
                self.grads_dot["b"] = column_sum(dy_dot)
        return dy_dot @ self.params["W"].T          # R{Eq. 10}
