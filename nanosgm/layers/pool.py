"""Pooling layers: max-pooling (gradient routed to the arg-max of each window) and global average pooling.

Double backpropagation (base.py): both are linear once max-pooling's arg-max is fixed (a small move of
the inputs does not change which element wins a window without ties), so
    MaxPool2D:        R{y} = R{x} read at each window's stored arg-max,   R{dx} = backward(R{dy})
    GlobalAvgPool2D:  R{y} = mean over (H, W) of R{x},                    R{dx} = backward(R{dy})
"""
from __future__ import annotations

import math

from .. import backend
from ..kernels.pool import maxpool_backward, maxpool_forward, maxpool_forward_dot
from .base import Array, Layer, check_ndim
from .im2col import output_size, sample_blocks


class MaxPool2D(Layer):
    """(N, C, H, W) -> (N, C, Ho, Wo), Ho = floor((H - k) / s) + 1; stride defaults to kernel_size.

    Forward takes the maximum over the k*k window offsets and remembers, per output, the offset
    o = a*k + b of the first maximum (row-major order, as ``argmax`` would: a later offset replaces it
    only when strictly greater); backward sends each output's gradient to that one element, so ties
    get it once. Each is one device kernel (nanosgm.kernels.pool; one launch on a GPU). On the CPU both
    loop over the k*k offsets only, vectorised over samples, channels and positions, on blocks of a few
    samples that stay in the CPU cache across the offsets (im2col.sample_blocks), run on every CPU core
    (nanosgm.plumbing.threads.run_blocks); neither changes a number.
    :func:`maxpool2d_reference` is the plain per-window version the tests compare against (for finite
    inputs; a NaN in a window makes its output NaN, and where its gradient goes is not specified).
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.k = int(kernel_size)
        self.stride = self.k if stride is None else int(stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.k}, stride={self.stride}"

    def forward(self, x: Array, training: bool = True) -> Array:
        check_ndim(self, x, (4,), "MaxPool2D takes NCHW feature maps.")
        if x.shape[2] < self.k or x.shape[3] < self.k:
            raise ValueError(f"{self!r}: input {tuple(x.shape)} is smaller than the pooling window")
        blocks = sample_blocks(x.shape[0], x[0].nbytes, like=x)
        y, first = maxpool_forward(x, k=self.k, stride=self.stride, blocks=blocks)     # both (N, Ho, Wo, C)
        n, c, h, w = x.shape
        self._cache = ((n, h, w, c), first)
        return y.transpose(0, 3, 1, 2)

    def backward(self, dy: Array) -> Array:
        x_shape, first = self._need_cache()                  # x_shape channels-last (N, H, W, C)
        blocks = sample_blocks(first.shape[0], math.prod(x_shape[1:]) * dy.dtype.itemsize, like=dy)
        dx = maxpool_backward(dy, first, x_shape=x_shape, k=self.k, stride=self.stride, blocks=blocks)
        return dx.transpose(0, 3, 1, 2)

    def forward_dot(self, x_dot: Array) -> Array:
        """R{y}[n, c, i, j] = R{x} at the element that won window (i, j) in forward."""
        _, first = self._need_cache()
        y_dot = maxpool_forward_dot(x_dot, first, k=self.k, stride=self.stride)
        self._dot_cache = True
        return y_dot.transpose(0, 3, 1, 2)

    def backward_dot(self, dy: Array, dy_dot: Array) -> Array:
        return self.backward(dy_dot)                   # the same routing, applied to R{dy}


def maxpool2d_reference(x: Array, k: int, stride: int | None = None, dy: Array | None = None):
    """Max-pooling written out one window at a time: y (N, C, Ho, Wo), and dx if ``dy`` is given.

    Each window's gradient goes to ``argmax`` of the window read in row-major order (its first maximum).
    """
    xp = backend.array_module(x)
    s = k if stride is None else stride
    n, c, h, w = x.shape
    ho, wo = output_size(h, k, s, 0), output_size(w, k, s, 0)
    y = xp.empty((n, c, ho, wo), dtype=x.dtype)
    dx = None if dy is None else xp.zeros_like(x)
    nn, cc = xp.meshgrid(xp.arange(n), xp.arange(c), indexing="ij")
    for i in range(ho):
        for j in range(wo):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k].reshape(n, c, k * k)
            y[:, :, i, j] = window.max(axis=2)
            if dy is not None and dx is not None:          # (dx exists exactly when dy does)
                a, b = xp.divmod(window.argmax(axis=2), k)
                dx[nn, cc, i * s + a, j * s + b] += dy[:, :, i, j]
    return y if dy is None else (y, dx)


class GlobalAvgPool2D(Layer):
    """(N, C, H, W) -> (N, C): the mean of each feature map (the last layer of Table 3's CNN)."""

    def forward(self, x: Array, training: bool = True) -> Array:
        check_ndim(self, x, (4,))
        self._cache = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dy: Array) -> Array:
        n, c, h, w = self._need_cache()
        xp = backend.array_module(dy)
        return xp.broadcast_to(dy[:, :, None, None] / (h * w), (n, c, h, w)).copy()

    def forward_dot(self, x_dot: Array) -> Array:
        self._dot_cache = True
        return x_dot.mean(axis=(2, 3))

    def backward_dot(self, dy: Array, dy_dot: Array) -> Array:
        return self.backward(dy_dot)
