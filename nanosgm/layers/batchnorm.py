"""Batch normalisation (Ioffe & Szegedy 2015), used on every layer of the paper's networks.

Training, over the batch (and, for feature maps, the spatial axes) of each feature:
    mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps),  y = gamma * xhat + beta
and the running estimates follow PyTorch's convention:
    running = (1 - momentum) * running + momentum * batch_stat   (the unbiased variance, M / (M - 1) * var)
Inference uses the running estimates, so the layer is a fixed affine map per feature and its backward
is ``dx = dy * gamma / sqrt(running_var + eps)`` (attacks such as FGSM differentiate the network in this
mode). Training-mode backward, with M values per feature:
    dxhat = dy * gamma
    dx = (1 / sqrt(var + eps)) * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
       = gamma / sqrt(var + eps) * (dy - dbeta / M - xhat * dgamma / M)      (how it is computed:
    mean(dxhat) and mean(dxhat * xhat) are the parameter gradients dbeta, dgamma times gamma / M)

Double backpropagation (R-operator along an input direction, gamma and beta constant; see base.py).
With s = 1 / sqrt(var + eps), and in training mode the batch statistics moving with the inputs:
    R{s}    = -s^2 mean(xhat R{x})
    R{xhat} = s (R{x} - mean(R{x}) - xhat mean(xhat R{x})),      R{y} = gamma R{xhat}
    dx      = gamma s inner,   inner = dy - mean(dy) - xhat mean(dy xhat)
    R{dx}   = gamma (R{s} inner + s R{inner}),
    R{inner} = R{dy} - mean(R{dy}) - R{xhat} mean(dy xhat) - xhat mean(R{dy} xhat + dy R{xhat})
    R{dgamma} = sum(R{dy} xhat + dy R{xhat}),   R{dbeta} = sum(R{dy})
In inference mode s and the mean are constants: R{xhat} = s R{x}, R{s} = 0.
"""
from __future__ import annotations

from .. import backend
from ..kernels import norm
from .base import Array, Layer, check_float_dtype, check_ndim, ones, zeros


def _rows(x: Array) -> Array:
    """(N, C, H, W) -> the channels-last rows (N*H*W, C), contiguous (free when x is stored channels-last)."""
    return backend.array_module(x).ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(-1, x.shape[1])


class BatchNorm(Layer):
    """Works on (N, F) (per feature) and on (N, C, H, W) (per channel); output has the input's shape.

    Params ``gamma`` (ones), ``beta`` (zeros); buffers ``running_mean`` (zeros), ``running_var`` (ones).
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, *, dtype="float32") -> None:
        super().__init__()
        self.num_features, self.momentum, self.eps = int(num_features), float(momentum), float(eps)
        self.dtype = check_float_dtype(dtype)
        self.params["gamma"] = ones((self.num_features,), self.dtype)
        self.params["beta"] = zeros((self.num_features,), self.dtype)
        self.buffers["running_mean"] = zeros((self.num_features,), self.dtype)
        self.buffers["running_var"] = ones((self.num_features,), self.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}"

    def _check(self, x: Array) -> None:
        check_ndim(self, x, (2, 4))
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self!r} expected {self.num_features} features/channels on axis 1, got shape {tuple(x.shape)}")

    def forward(self, x: Array, training: bool = True) -> Array:
        """(N, F) -> (N, F), or (N, C, H, W) -> (N, C, H, W): the 4-D case is the 2-D one applied to the
        channels-last rows (N*H*W, C), which is both the per-channel statistic and the fast memory order."""
        self._check(x)
        if x.ndim == 4:
            n, c, h, w = x.shape
            y = self._forward2d(_rows(x), training)
            return y.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return self._forward2d(x, training)

    def backward(self, dy: Array) -> Array:
        if dy.ndim == 4:
            n, c, h, w = dy.shape
            dx = self._backward2d(_rows(dy))
            return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return self._backward2d(dy)

    def forward_dot(self, x_dot: Array) -> Array:
        if x_dot.ndim == 4:
            n, c, h, w = x_dot.shape
            return self._forward_dot2d(_rows(x_dot)).reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return self._forward_dot2d(x_dot)

    def backward_dot(self, dy: Array, dy_dot: Array) -> Array:
        if dy.ndim == 4:
            n, c, h, w = dy.shape
            dx_dot = self._backward_dot2d(_rows(dy), _rows(dy_dot))
            return dx_dot.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return self._backward_dot2d(dy, dy_dot)

    def _forward2d(self, x: Array, training: bool) -> Array:
        """x: (M, F) rows; the statistics are per column. Kernels (nanosgm/kernels/norm.py): training is the
        statistics, the running update and the normalisation with the affine step; inference is 1 / sqrt(var +
        eps) and the centring, normalisation and affine step."""
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not training:
            inv_std = norm.inverse_std(self.buffers["running_var"], self.eps)
            xc, y = norm.center_scale_shift(x, self.buffers["running_mean"], gamma, inv_std, beta)
            self._cache = ("inference", xc, inv_std)
            return y
        m = x.shape[0]
        if m < 2:
            raise ValueError(f"{self!r} needs more than one value per feature in training mode")
        xc, mean, var = norm.batch_stats(x)
        inv_std = norm.update_running(self.buffers["running_mean"], self.buffers["running_var"], mean, var,
                                      momentum=self.momentum, m=m, eps=self.eps)
        self._cache = ("training", xc, inv_std)                     # xhat = xc * inv_std, never stored
        return norm.scale_shift(xc, gamma, inv_std, beta)

    def _backward2d(self, dy: Array) -> Array:
        """Kernels: the two sums and dx in training; dy * gamma * inv_std in inference."""
        mode, xc, inv_std = self._need_cache()
        gamma = self.params["gamma"]
        if mode == "inference" and not self.param_grads:    # dE/dx only (attacks): no reductions needed
            return norm.scale(dy, gamma, inv_std)
        dgamma, dbeta = norm.backward_sums(dy, xc, inv_std)
        if self.param_grads:
            self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        if mode == "inference":                     # statistics are constants: a per-feature scale
            return norm.scale(dy, gamma, inv_std)
        return norm.backward_dx(dy, xc, gamma, inv_std, dgamma, dbeta)

    def _forward_dot2d(self, x_dot: Array) -> Array:
        """R{y} for (M, F) rows; caches R{xhat} and R{s} (module docstring)."""
        mode, xc, s = self._need_cache()
        if mode == "inference":
            xhat_dot, s_dot = x_dot * s, None
        else:
            xhat = xc * s
            s_dot = -s * s * (xhat * x_dot).mean(axis=0)
            xhat_dot = s * (x_dot - x_dot.mean(axis=0) - xhat * (xhat * x_dot).mean(axis=0))
        self._dot_cache = (xhat_dot, s_dot)
        return self.params["gamma"] * xhat_dot

    def _backward_dot2d(self, dy: Array, dy_dot: Array) -> Array:
        """R{dx} for (M, F) rows; fills grads_dot (module docstring)."""
        mode, xc, s = self._need_cache()
        xhat_dot, s_dot = self._need_dot_cache()
        gamma, xhat = self.params["gamma"], xc * s
        if self.param_grads:
            self.grads_dot["gamma"] = (dy_dot * xhat + dy * xhat_dot).sum(axis=0)
            self.grads_dot["beta"] = norm.column_sum(dy_dot)
        if mode == "inference":
            return dy_dot * (gamma * s)
        inner = dy - dy.mean(axis=0) - xhat * (dy * xhat).mean(axis=0)
        inner_dot = (dy_dot - dy_dot.mean(axis=0) - xhat_dot * (dy * xhat).mean(axis=0)
                     - xhat * (dy_dot * xhat + dy * xhat_dot).mean(axis=0))
        return gamma * (s_dot * inner + s * inner_dot)
