"""Pooling layers: max-pooling (gradient routed to the arg-max of each window) and global average pooling."""
from __future__ import annotations

from .. import backend
from .base import Layer, check_ndim
from .im2col import output_size, sample_blocks


class MaxPool2D(Layer):
    """(N, C, H, W) -> (N, C, Ho, Wo), Ho = floor((H - k) / s) + 1; stride defaults to kernel_size.

    Forward takes the maximum over the k*k window offsets; backward sends each output's gradient to
    the first arg-max of its window (row-major order, as ``argmax`` would), so ties get it once.
    Both loop over the k*k offsets only, vectorised over samples, channels and positions, on blocks of
    a few samples that stay in the CPU cache across the offsets (im2col.sample_blocks; no number changes).
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None):
        super().__init__()
        self.k = int(kernel_size)
        self.stride = self.k if stride is None else int(stride)

    def extra_repr(self):
        return f"kernel_size={self.k}, stride={self.stride}"

    def _windows(self, x_cl, ho, wo):
        """Yield (a, b, view) per kernel offset: view[n, i, j, c] = x[n, c, a + s*i, b + s*j] (channels-last)."""
        s = self.stride
        for a in range(self.k):
            for b in range(self.k):
                yield a, b, x_cl[:, a:a + s * ho:s, b:b + s * wo:s, :]

    def forward(self, x, training=True):
        check_ndim(self, x, (4,), "MaxPool2D takes NCHW feature maps.")
        if x.shape[2] < self.k or x.shape[3] < self.k:
            raise ValueError(f"{self!r}: input {tuple(x.shape)} is smaller than the pooling window")
        xp = backend.array_module(x)
        ho, wo = output_size(x.shape[2], self.k, self.stride, 0), output_size(x.shape[3], self.k, self.stride, 0)
        x_cl = x.transpose(0, 2, 3, 1)            # channels-last view (see conv.py on memory layout)
        y = xp.empty((x.shape[0], ho, wo, x.shape[1]), dtype=x.dtype)
        for lo, hi in sample_blocks(x.shape[0], x[0].nbytes, like=x):
            yb = y[lo:hi]
            for a, b, view in self._windows(x_cl[lo:hi], ho, wo):
                if a == 0 and b == 0:
                    yb[...] = view
                else:
                    xp.maximum(yb, view, out=yb)
        self._cache = (x_cl, y)
        return y.transpose(0, 3, 1, 2)

    def backward(self, dy):
        x_cl, y = self._need_cache()
        xp = backend.array_module(y)
        ho, wo = y.shape[1], y.shape[2]
        dy = dy.transpose(0, 2, 3, 1)
        s, k = self.stride, self.k
        # Windows that tile x exactly: each dx element belongs to one window, so it can be assigned.
        tiles = s == k and x_cl.shape[1] == k * ho and x_cl.shape[2] == k * wo
        dx = (xp.empty if tiles else xp.zeros)(x_cl.shape, dtype=dy.dtype)
        for lo, hi in sample_blocks(y.shape[0], x_cl[0].nbytes, like=y):
            yb, dyb, dxb = y[lo:hi], dy[lo:hi], dx[lo:hi]
            unrouted = xp.ones(yb.shape, dtype=bool)         # windows whose gradient is not yet placed
            hit = xp.empty(yb.shape, dtype=bool)
            for a, b, view in self._windows(x_cl[lo:hi], ho, wo):
                xp.equal(view, yb, out=hit)
                hit &= unrouted                              # the first arg-max only
                unrouted ^= hit
                target = dxb[:, a:a + s * ho:s, b:b + s * wo:s, :]
                if tiles:
                    xp.multiply(dyb, hit, out=target)
                else:
                    target += dyb * hit
        return dx.transpose(0, 3, 1, 2)


class GlobalAvgPool2D(Layer):
    """(N, C, H, W) -> (N, C): the mean of each feature map (the last layer of Table 3's CNN)."""

    def forward(self, x, training=True):
        check_ndim(self, x, (4,))
        self._cache = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        n, c, h, w = self._need_cache()
        xp = backend.array_module(dy)
        return xp.broadcast_to(dy[:, :, None, None] / (h * w), (n, c, h, w)).copy()
