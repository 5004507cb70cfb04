"""im2col / col2im: the speed trick behind Conv2D, kept apart from the maths it speeds up.

A convolution (Eq. 11) is a sum over kernel offsets (a, b) and input channels. im2col lays every
receptive field out as one column, so the whole layer becomes one matrix product:

    cols[(n, i, j), (a, b, c)] = x_padded[n, c, a + s*i, b + s*j]       shape (N*Ho*Wo, kh*kw*C)

col2im is its adjoint: it adds each column entry back to the input position it came from. That
scatter-add is exactly the "full correlation with the flipped kernel" of Eq. 13.

Two memory layouts, chosen by Conv2D from the number of input channels C:
    im2col / col2im         rows (n, i, j), columns (a, b, c): each copy moves C contiguous values
                            (fast for many channels, with channels-last storage);
    im2col_cf / col2im_cf   the transpose, rows (c, a, b), columns (n, i, j): each copy moves whole image
                            rows (fast for few channels, e.g. the first layer's single grey channel).
Each fast version is one device kernel (nanosgm.kernels.conv: one launch on a GPU, where col2im is a
gather, each input pixel summing its own contributions). On the CPU they loop over the kh*kw kernel
offsets only (25 slices for a 5x5 kernel), never over pixels, and accept an ``out`` workspace to reuse
between calls. The channels-last pair runs that loop on blocks of a few samples (:func:`sample_blocks`),
so that a block's columns stay in the CPU cache across the 25 copies, and the blocks run on every CPU
core (nanosgm.plumbing.threads.run_blocks; each block writes only its own samples); every element gets
the same operations in the same order, so blocking changes no number. The ``*_reference``
versions loop over every output position; they are slow, obviously correct, and the tests compare
the fast versions against them.
"""
from __future__ import annotations

from .. import backend
from ..kernels.conv import col2im_cf_gather, col2im_gather, im2col_cf_gather, im2col_gather
from ..kernels.conv import pad, pad_channels_last  # noqa: F401  (defined beside the kernels; importable from here)
from .base import Array


def output_size(size: int, k: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution or pooling window: floor((size + 2p - k) / s) + 1."""
    return (size + 2 * padding - k) // stride + 1


BLOCK_BYTES = 1 << 22      # ~4 MB of columns per block of samples: blocks whose columns stay in the CPU cache


def sample_blocks(n: int, bytes_per_sample: int, like=None) -> list:
    """(lo, hi) blocks of range(n) of about BLOCK_BYTES each; one block for a GPU array ``like``.

    >>> sample_blocks(5, BLOCK_BYTES // 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    if like is not None and backend.is_gpu_array(like):
        return [(0, n)]
    per = max(1, BLOCK_BYTES // max(1, int(bytes_per_sample)))
    return [(lo, min(n, lo + per)) for lo in range(0, n, per)]


def _workspace(out: Array | None, shape: tuple, dtype, xp) -> Array:
    """``out`` if it fits, else a new array: lets a layer reuse one buffer across calls."""
    if out is not None and out.shape == shape and out.dtype == dtype and backend.array_module(out) is xp:
        return out
    return xp.empty(shape, dtype=dtype)


def im2col(x: Array, kh: int, kw: int, stride: int = 1, padding: int = 0, out: Array | None = None) -> Array:
    """(N, C, H, W) -> cols (N*Ho*Wo, kh*kw*C): one row per receptive field.

    Rows are ordered (n, i, j) and columns (a, b, c): channels last, so each copy below moves C
    contiguous values when the input is stored channels-last (as Conv2D's own outputs are).
    Loops over the kh*kw kernel offsets only.
    """
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    cols = _workspace(out, (n, ho, wo, kh, kw, c), x.dtype, xp)
    im2col_gather(x, cols, stride=stride, padding=padding, blocks=sample_blocks(n, cols[0].nbytes, like=x))
    return cols.reshape(n * ho * wo, kh * kw * c)


def col2im(cols: Array, x_shape: tuple, kh: int, kw: int, stride: int = 1, padding: int = 0) -> Array:
    """The adjoint of :func:`im2col`: cols (N*Ho*Wo, kh*kw*C) -> (N, C, H, W), summing overlaps.

    The result is an NCHW view of a channels-last array.
    """
    n, c, h, w = x_shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    cols = cols.reshape(n, ho, wo, kh, kw, c)
    blocks = sample_blocks(n, cols[0].nbytes, like=cols)
    return col2im_gather(cols, x_shape=tuple(x_shape), stride=stride, padding=padding, blocks=blocks)


def im2col_cf(x: Array, kh: int, kw: int, stride: int = 1, padding: int = 0, out: Array | None = None) -> Array:
    """(N, C, H, W) -> cols (C*kh*kw, N*Ho*Wo): one *column* per receptive field (the few-channels layout)."""
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    cols = _workspace(out, (c, kh, kw, n, ho, wo), x.dtype, xp)
    im2col_cf_gather(x, cols, stride=stride, padding=padding)
    return cols.reshape(c * kh * kw, n * ho * wo)


def col2im_cf(cols: Array, x_shape: tuple, kh: int, kw: int, stride: int = 1, padding: int = 0) -> Array:
    """The adjoint of :func:`im2col_cf`: cols (C*kh*kw, N*Ho*Wo) -> (N, C, H, W), summing overlaps."""
    n, c, h, w = x_shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    cols = cols.reshape(c, kh, kw, n, ho, wo)
    return col2im_cf_gather(cols, x_shape=tuple(x_shape), stride=stride, padding=padding)


def im2col_reference(x: Array, kh: int, kw: int, stride: int = 1, padding: int = 0) -> Array:
    """Plain version of :func:`im2col`: one Python iteration per sample and output position."""
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    xpad = pad(x, padding)
    cols = xp.zeros((n * ho * wo, kh * kw * c), dtype=x.dtype)
    for s in range(n):
        for i in range(ho):
            for j in range(wo):
                patch = xpad[s, :, i * stride:i * stride + kh, j * stride:j * stride + kw]   # (C, kh, kw)
                cols[(s * ho + i) * wo + j, :] = patch.transpose(1, 2, 0).reshape(-1)
    return cols


def col2im_reference(cols: Array, x_shape: tuple, kh: int, kw: int, stride: int = 1, padding: int = 0) -> Array:
    """Plain version of :func:`col2im`: one Python iteration per sample and output position."""
    xp = backend.array_module(cols)
    n, c, h, w = x_shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    dxpad = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for s in range(n):
        for i in range(ho):
            for j in range(wo):
                patch = cols[(s * ho + i) * wo + j, :].reshape(kh, kw, c).transpose(2, 0, 1)
                dxpad[s, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += patch
    return dxpad[:, :, padding:padding + h, padding:padding + w]
