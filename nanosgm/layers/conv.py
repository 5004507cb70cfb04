"""2-D convolution, Eq. 11-13 (NCHW layout; as in every deep-learning library, a cross-correlation).

Eq. 11: o_{l,j} = sum_{a,b} w_{ab} o_{k, j+(a,b)}   -> with im2col, ``y = cols @ W_mat + b``
Eq. 12: dE/dw_{ab} = sum over output positions of dE/do_{l,j} * o_{k, j+(a,b)}   -> ``dW_mat = cols.T @ dy_mat``
Eq. 13: dE/do_{k,j} = sum_{a,b} dE/do_{l, j-(a,b)} * w_{ab}   -> ``dx = col2im(dy_mat @ W_mat.T)``

Memory layout: the interface is NCHW, but the arithmetic runs channels-last (rows of ``cols`` are
receptive fields, columns are (a, b, c)), which makes the copies in im2col/col2im contiguous. The
output is returned as an NCHW *view* of a channels-last array; element-wise layers keep that layout,
so the next convolution's transpose back to channels-last costs nothing. A layer with few input
channels (the first one, on grey images) uses the transposed ``cols`` instead (im2col_cf), whose
copies move whole image rows; the two give the same numbers (tests/layers/test_im2col.py).
At the network's first layer Eq. 13 is the residual gradient at the inputs, Eq. 14.
On a GPU, im2col, col2im and the bias gradient are one kernel launch each (nanosgm.kernels.conv).

Double backpropagation (R-operator along an input direction, W and b constant; see base.py): the
convolution is linear in x and in W, so every derivative is one of the three products above again:
    R{y} = Eq. 11 on R{x} (no bias);  R{dW} = Eq. 12 on (R{x}, dy) + Eq. 12 on (x, R{dy});
    R{db} = sum of R{dy};  R{dx} = Eq. 13 on R{dy}
"""
from __future__ import annotations

from .. import backend
from ..kernels.reduce import column_sum
from .base import Array, Layer, check_float_dtype, check_ndim, he_normal, zeros
from .im2col import col2im, col2im_cf, im2col, im2col_cf, output_size, pad

# Below this many input channels, Conv2D uses the channels-first column layout (see im2col.py).
FEW_CHANNELS = 8


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int,)) else (int(v[0]), int(v[1]))


class Conv2D(Layer):
    """x: (N, C_in, H, W) -> y: (N, C_out, Ho, Wo), Ho = floor((H + 2p - kh) / s) + 1.

    Params: ``W`` (C_out, C_in, kh, kw), He-initialised; ``b`` (C_out,), zeros.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding: int = 0,
                 *, bias: bool = True, dtype="float32", rng=None) -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kh, self.kw = _pair(kernel_size)
        self.stride, self.padding = int(stride), int(padding)
        if self.stride < 1 or self.padding < 0:
            raise ValueError(f"Conv2D needs stride >= 1 and padding >= 0, got stride={stride}, padding={padding}")
        self.dtype = check_float_dtype(dtype)
        fan_in = self.in_channels * self.kh * self.kw
        self.params["W"] = he_normal((self.out_channels, self.in_channels, self.kh, self.kw), fan_in, self.dtype, rng)
        if bias:
            self.params["b"] = zeros((self.out_channels,), self.dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size=({self.kh}, {self.kw}), "
                f"stride={self.stride}, padding={self.padding}")

    def _check(self, x: Array) -> None:
        check_ndim(self, x, (4,), f"Conv2D takes NCHW images; flat MNIST rows need X.reshape(-1, {self.in_channels}, 28, 28).")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r} expected {self.in_channels} input channels (NCHW), got shape {tuple(x.shape)}")
        h, w = x.shape[2] + 2 * self.padding, x.shape[3] + 2 * self.padding
        if h < self.kh or w < self.kw:
            raise ValueError(f"{self!r}: input {tuple(x.shape)} (padded {h}x{w}) is smaller than the kernel")

    def _w_mat(self) -> Array:
        """W (C_out, C_in, kh, kw) as the (kh*kw*C_in, C_out) matrix that multiplies im2col's rows."""
        return self.params["W"].transpose(2, 3, 1, 0).reshape(-1, self.out_channels)

    def _columns(self, x: Array, out: Array | None = None) -> Array:
        """im2col in this layer's layout: (C*kh*kw, N*Ho*Wo) below FEW_CHANNELS, else (N*Ho*Wo, kh*kw*C)."""
        geometry = (self.kh, self.kw, self.stride, self.padding)
        if self.in_channels < FEW_CHANNELS:
            return im2col_cf(x, *geometry, out=out)
        return im2col(x, *geometry, out=out)

    def _apply(self, cols: Array) -> Array:
        """Eq. 11 without the bias: the (N*Ho*Wo, C_out) rows of the output."""
        if self.in_channels < FEW_CHANNELS:
            return cols.T @ self.params["W"].reshape(self.out_channels, -1).T
        return cols @ self._w_mat()

    def _weight_grad(self, cols: Array, dy_mat: Array) -> Array:
        """Eq. 12: dE/dW (C_out, C_in, kh, kw) from the columns and the (N*Ho*Wo, C_out) output gradient."""
        if self.in_channels < FEW_CHANNELS:
            return (dy_mat.T @ cols.T).reshape(self.params["W"].shape)
        dw_mat = cols.T @ dy_mat
        return dw_mat.reshape(self.kh, self.kw, self.in_channels, self.out_channels).transpose(3, 2, 0, 1).copy()

    def _input_grad(self, dy_mat: Array, x_shape: tuple) -> Array:
        """Eq. 13 (Eq. 14 at the first layer): dE/dx (N, C_in, H, W) from the output gradient rows."""
        geometry = (self.kh, self.kw, self.stride, self.padding)
        if self.in_channels < FEW_CHANNELS:
            w_cf = self.params["W"].reshape(self.out_channels, -1)             # (C_out, C*kh*kw)
            return col2im_cf(w_cf.T @ dy_mat.T, x_shape, *geometry)
        return col2im(dy_mat @ self._w_mat().T, x_shape, *geometry)

    def _nchw(self, rows: Array, x_shape: tuple) -> Array:
        """(N*Ho*Wo, C_out) rows -> the (N, C_out, Ho, Wo) output, an NCHW view of channels-last memory."""
        n, _, h, w = x_shape
        ho = output_size(h, self.kh, self.stride, self.padding)
        wo = output_size(w, self.kw, self.stride, self.padding)
        return rows.reshape(n, ho, wo, self.out_channels).transpose(0, 3, 1, 2)

    def _rows(self, dy: Array) -> Array:
        """(N, C_out, Ho, Wo) -> contiguous (N*Ho*Wo, C_out)."""
        xp = backend.array_module(dy)
        return xp.ascontiguousarray(dy.transpose(0, 2, 3, 1)).reshape(-1, self.out_channels)

    def forward(self, x: Array, training: bool = True) -> Array:
        self._check(x)
        cols = self._columns(x, out=getattr(self, "_workspace", None))      # reused im2col buffer
        self._workspace = cols.base if cols.base is not None else cols
        y = self._apply(cols)                                                 # Eq. 11
        if "b" in self.params:
            y += self.params["b"]
        self._cache = (x.shape, cols)
        return self._nchw(y, x.shape)

    def backward(self, dy: Array) -> Array:
        x_shape, cols = self._need_cache()
        dy_mat = self._rows(dy)
        if self.param_grads:
            if "b" in self.params:
                self.grads["b"] = column_sum(dy_mat)                     # sum over positions
            self.grads["W"] = self._weight_grad(cols, dy_mat)                # Eq. 12
        return self._input_grad(dy_mat, x_shape)                              # Eq. 13 / Eq. 14

    def forward_dot(self, x_dot: Array) -> Array:
        """R{y} = conv(R{x}, W): Eq. 11 on the direction, without the bias (base.py)."""
        x_shape, _ = self._need_cache()
        cols_dot = self._columns(x_dot)             # its own buffer: the workspace still holds forward's cols
        self._dot_cache = cols_dot
        return self._nchw(self._apply(cols_dot), x_shape)

    def backward_dot(self, dy: Array, dy_dot: Array) -> Array:
        """R{dW} = Eq. 12 on (R{x}, dy) + Eq. 12 on (x, R{dy});  R{db} = sum R{dy};  R{dx} = Eq. 13 on R{dy}."""
        x_shape, cols = self._need_cache()
        cols_dot = self._need_dot_cache()
        dy_mat, dy_dot_mat = self._rows(dy), self._rows(dy_dot)
        if self.param_grads:
            if "b" in self.params:
                self.grads_dot["b"] = column_sum(dy_dot_mat)
            self.grads_dot["W"] = self._weight_grad(cols_dot, dy_mat) + self._weight_grad(cols, dy_dot_mat)
        return self._input_grad(dy_dot_mat, x_shape)


def conv2d_reference(x: Array, W: Array, b: Array | None = None, stride: int = 1, padding: int = 0) -> Array:
    """Eq. 11 written out directly, one output position at a time (tests compare Conv2D against it)."""
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    co, _, kh, kw = W.shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    xpad = pad(x, padding)
    y = xp.zeros((n, co, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            patch = xpad[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]   # (N, C, kh, kw)
            y[:, :, i, j] = xp.tensordot(patch, W, axes=([1, 2, 3], [1, 2, 3]))
    if b is not None:
        y += b[None, :, None, None]
    return y
