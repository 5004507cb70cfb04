"""Pooling layers: max-pooling (gradient routed to the arg-max of each window) and global average pooling.

Double backpropagation (base.py): both are linear once max-pooling's arg-max is fixed (a small move of
the inputs does not change which element wins a window without ties), so
    MaxPool2D:        R{y} = R{x} read at each window's stored arg-max,   R{dx} = backward(R{dy})
    GlobalAvgPool2D:  R{y} = mean over (H, W) of R{x},                    R{dx} = backward(R{dy})
"""
from __future__ import annotations

from .. import backend
from ..plumbing import threads
from .base import Array, Layer, check_ndim
from .im2col import output_size, sample_blocks


class MaxPool2D(Layer):
    """(N, C, H, W) -> (N, C, Ho, Wo), Ho = floor((H - k) / s) + 1; stride defaults to kernel_size.

    Forward takes the maximum over the k*k window offsets and remembers, per output, the offset
    o = a*k + b of the first maximum (row-major order, as ``argmax`` would: a later offset replaces it
    only when strictly greater); backward sends each output's gradient to that one element, so ties
    get it once. Both loop over the k*k offsets only, vectorised over samples, channels and positions,
    on blocks of a few samples that stay in the CPU cache across the offsets (im2col.sample_blocks),
    run on every CPU core (nanosgm.plumbing.threads.run_blocks); neither changes a number.
    :func:`maxpool2d_reference` is the plain per-window version the tests compare against (for finite
    inputs; a NaN in a window makes its output NaN, and where its gradient goes is not specified).
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.k = int(kernel_size)
        self.stride = self.k if stride is None else int(stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.k}, stride={self.stride}"

    def _window(self, m_cl: Array, o: int, ho: int, wo: int) -> Array:
        """Offset o's view of a channels-last map m: view[n, i, j, c] = m[n, a + s*i, b + s*j, c], (a, b) = divmod(o, k)."""
        a, b = divmod(o, self.k)
        s = self.stride
        return m_cl[:, a:a + s * ho:s, b:b + s * wo:s, :]

    def forward(self, x: Array, training: bool = True) -> Array:
        check_ndim(self, x, (4,), "MaxPool2D takes NCHW feature maps.")
        if x.shape[2] < self.k or x.shape[3] < self.k:
            raise ValueError(f"{self!r}: input {tuple(x.shape)} is smaller than the pooling window")
        xp = backend.array_module(x)
        ho, wo = output_size(x.shape[2], self.k, self.stride, 0), output_size(x.shape[3], self.k, self.stride, 0)
        x_cl = x.transpose(0, 2, 3, 1)            # channels-last view (see conv.py on memory layout)
        y = xp.empty((x.shape[0], ho, wo, x.shape[1]), dtype=x.dtype)
        first = xp.zeros(y.shape, dtype=xp.uint8 if self.k * self.k <= 256 else xp.int32)   # offset of the first max

        def block(lo: int, hi: int) -> None:
            yb, fb = y[lo:hi], first[lo:hi]
            yb[...] = self._window(x_cl[lo:hi], 0, ho, wo)
            above, code = xp.empty(yb.shape, dtype=bool), xp.empty(yb.shape, dtype=first.dtype)
            for o in range(1, self.k * self.k):
                view = self._window(x_cl[lo:hi], o, ho, wo)
                xp.greater(view, yb, out=above)                 # a new maximum at offset o
                xp.maximum(yb, view, out=yb)
                xp.multiply(above, first.dtype.type(o), out=code)
                xp.maximum(fb, code, out=fb)                    # offsets only grow: o replaces where above

        threads.run_blocks(block, sample_blocks(x.shape[0], x[0].nbytes, like=x))
        self._cache = (x_cl.shape, first)
        return y.transpose(0, 3, 1, 2)

    def backward(self, dy: Array) -> Array:
        x_shape, first = self._need_cache()                  # x_shape channels-last (N, H, W, C)
        xp = backend.array_module(dy)
        ho, wo = first.shape[1], first.shape[2]
        dy = dy.transpose(0, 2, 3, 1)
        # Windows that tile x exactly: each dx element belongs to one window, so it can be assigned.
        tiles = self.stride == self.k and x_shape[1] == self.k * ho and x_shape[2] == self.k * wo
        dx = (xp.empty if tiles else xp.zeros)(x_shape, dtype=dy.dtype)

        def block(lo: int, hi: int) -> None:
            fb, dyb, dxb = first[lo:hi], dy[lo:hi], dx[lo:hi]
            hit = xp.empty(fb.shape, dtype=bool)
            for o in range(self.k * self.k):
                xp.equal(fb, o, out=hit)
                target = self._window(dxb, o, ho, wo)
                if tiles:
                    xp.multiply(dyb, hit, out=target)
                else:
                    target += dyb * hit

        threads.run_blocks(block, sample_blocks(first.shape[0], dx[0].nbytes, like=dy))
        return dx.transpose(0, 3, 1, 2)

    def forward_dot(self, x_dot: Array) -> Array:
        """R{y}[n, c, i, j] = R{x} at the element that won window (i, j) in forward."""
        _, first = self._need_cache()
        x_cl = x_dot.transpose(0, 2, 3, 1)
        ho, wo = first.shape[1], first.shape[2]
        y_dot = backend.array_module(x_dot).zeros(first.shape, dtype=x_dot.dtype)
        for o in range(self.k * self.k):
            y_dot += self._window(x_cl, o, ho, wo) * (first == o)
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
            if dy is not None:
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
