"""Convolution kernels: im2col and col2im each as one gather, and the bias gradient as one matrix-vector product.

Layouts (see nanosgm/layers/im2col.py, which calls these):
    channels-last   cols (N, Ho, Wo, kh, kw, C):  cols[n, i, j, a, b, c] = x_padded[n, c, a + s*i, b + s*j]
    channels-first  cols (C, kh, kw, N, Ho, Wo):  cols[c, a, b, n, i, j] = x_padded[n, c, a + s*i, b + s*j]
where x_padded is x with ``padding`` zeros around both spatial axes. col2im is the adjoint (Eq. 13):

    dx[n, c, y, x] = sum over (a, b), in row-major order, of cols[.., i, j, a, b, ..]
                     for which y + p = a + s*i and x + p = b + s*j with 0 <= i < Ho, 0 <= j < Wo.

Each **reference** is the library's CPU code: a padding copy, then one strided copy (im2col) or one ``+=``
(col2im, after a zero fill) per kernel offset, on blocks of samples run on every CPU core (``blocks``, from
im2col.sample_blocks; nanosgm.plumbing.threads.run_blocks). Each **twin** is one CuPy ``ElementwiseKernel``
with one thread per output element (CuPy picks the launch grid: 128-thread blocks, enough of them to cover
the output); it reads the padding as zeros instead of writing it, and col2im *gathers*: each input pixel
sums its own contributions in the reference's (a, b) order, so it needs no atomics and no zero fill, and it
is deterministic. The twins ignore ``blocks``. Not yet run on a GPU (written without one; see
tests/kernels/test_conv_kernels.py, whose ``gpu`` tests compare them with the references on a device).
"""
from __future__ import annotations

from typing import Any

from .. import backend
from ..plumbing import threads
from .core import kernel

Array = Any


def pad(x: Array, padding: int) -> Array:
    """Zero-pad the two spatial axes of an NCHW array."""
    if padding == 0:
        return x
    xp = backend.array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def pad_channels_last(x: Array, padding: int) -> Array:
    """:func:`pad`, returned as an NCHW view of channels-last memory (what im2col's copies want).

    ``pad`` writes NCHW memory, after which each of im2col's copies would gather C values a whole
    feature map apart; the values are the same (tests/layers/test_im2col.py).
    """
    if padding == 0:
        return x
    xp = backend.array_module(x)
    x_cl = x.transpose(0, 2, 3, 1)
    n, h, w, c = x_cl.shape
    out = xp.zeros((n, h + 2 * padding, w + 2 * padding, c), dtype=x.dtype)
    out[:, padding:padding + h, padding:padding + w, :] = x_cl
    return out.transpose(0, 3, 1, 2)


# --- im2col, channels-last -------------------------------------------------------------------------------
_IM2COL = r"""
ptrdiff_t r = i;
const ptrdiff_t ch = r % c;   r /= c;
const ptrdiff_t b = r % kw;   r /= kw;
const ptrdiff_t a = r % kh;   r /= kh;
const ptrdiff_t j = r % wo;   r /= wo;
const ptrdiff_t oi = r % ho;
const ptrdiff_t n = r / ho;
const ptrdiff_t row = a + s * oi - p, col = b + s * j - p;
if (row >= 0 && row < h && col >= 0 && col < w) {
    const ptrdiff_t at[] = {n, ch, row, col};
    cols = x[at];
} else {
    cols = (T)0;
}
"""


def _im2col_twin(cp) -> Any:
    copy = cp.ElementwiseKernel(
        "raw T x, int64 h, int64 w, int64 c, int64 ho, int64 wo, int64 kh, int64 kw, int64 s, int64 p",
        "T cols", _IM2COL, "nanosgm_im2col")

    def run(x: Array, cols: Array, *, stride: int, padding: int, blocks: list) -> None:
        _, c, h, w = x.shape
        _, ho, wo, kh, kw, _ = cols.shape
        copy(x, h, w, c, ho, wo, kh, kw, stride, padding, cols)
    return run


@kernel(cuda=_im2col_twin)
def im2col_gather(x: Array, cols: Array, *, stride: int, padding: int, blocks: list) -> None:
    """Fill ``cols`` (N, Ho, Wo, kh, kw, C) with the receptive fields of x (N, C, H, W), padding read as zeros.

    Reference: pad channels-last, then one strided copy per kernel offset (a, b), per block of samples.
    Twin: one thread per element of ``cols``, reading x through its strides (any layout; coalesced when x is
    channels-last, as Conv2D's outputs are). A copy: bit-equal to the reference.
    """
    _, ho, wo, kh, kw, _ = cols.shape
    xpad = pad_channels_last(x, padding).transpose(0, 2, 3, 1)        # (N, Hp, Wp, C) view

    def block(lo: int, hi: int) -> None:
        cb, xb = cols[lo:hi], xpad[lo:hi]
        for a in range(kh):
            for b in range(kw):
                cb[:, :, :, a, b, :] = xb[:, a:a + stride * ho:stride, b:b + stride * wo:stride, :]

    threads.run_blocks(block, blocks)


# --- col2im, channels-last -------------------------------------------------------------------------------
_COL2IM = r"""
ptrdiff_t r = i;
const ptrdiff_t ch = r % c;   r /= c;
const ptrdiff_t col = r % w;  r /= w;
const ptrdiff_t row = r % h;
const ptrdiff_t n = r / h;
T acc = 0;
for (ptrdiff_t a = 0; a < kh; ++a) {
    ptrdiff_t oi = row + p - a;
    if (oi < 0 || oi % s != 0) continue;
    oi /= s;
    if (oi >= ho) continue;
    for (ptrdiff_t b = 0; b < kw; ++b) {
        ptrdiff_t j = col + p - b;
        if (j < 0 || j % s != 0) continue;
        j /= s;
        if (j >= wo) continue;
        acc += cols[((((n * ho + oi) * wo + j) * kh + a) * kw + b) * c + ch];
    }
}
dx = acc;
"""


def _col2im_twin(cp) -> Any:
    gather = cp.ElementwiseKernel(
        "raw T cols, int64 h, int64 w, int64 c, int64 ho, int64 wo, int64 kh, int64 kw, int64 s, int64 p",
        "T dx", _COL2IM, "nanosgm_col2im")

    def run(cols: Array, *, x_shape: tuple, stride: int, padding: int, blocks: list) -> Array:
        n, c, h, w = x_shape
        _, ho, wo, kh, kw, _ = cols.shape
        dx = cp.empty((n, h, w, c), dtype=cols.dtype)
        gather(cols, h, w, c, ho, wo, kh, kw, stride, padding, dx)
        return dx.transpose(0, 3, 1, 2)
    return run


@kernel(cuda=_col2im_twin)
def col2im_gather(cols: Array, *, x_shape: tuple, stride: int, padding: int, blocks: list) -> Array:
    """The adjoint of :func:`im2col_gather`: cols (N, Ho, Wo, kh, kw, C) -> dx (N, C, H, W), summing overlaps.

    Returns an NCHW view of channels-last memory. Reference: zero a padded channels-last array, ``+=`` each
    kernel offset's slice (in row-major (a, b) order), crop. Twin: one thread per element of dx, which adds
    its contributions in that same order, starting from 0 (``raw`` ``cols`` is read through its strides):
    only additions, in the same order, so bit-equal to the reference; no atomics, deterministic.
    """
    xp = backend.array_module(cols)
    n, c, h, w = x_shape
    _, ho, wo, kh, kw, _ = cols.shape
    dxpad = xp.empty((n, h + 2 * padding, w + 2 * padding, c), dtype=cols.dtype)

    def block(lo: int, hi: int) -> None:
        db, cb = dxpad[lo:hi], cols[lo:hi]
        db[...] = 0
        for a in range(kh):
            for b in range(kw):
                db[:, a:a + stride * ho:stride, b:b + stride * wo:stride, :] += cb[:, :, :, a, b, :]

    threads.run_blocks(block, blocks)
    dx = dxpad.transpose(0, 3, 1, 2)
    if padding:
        return dx[:, :, padding:padding + h, padding:padding + w]
    return dx


# --- im2col and col2im, channels-first (few input channels) ----------------------------------------------
_IM2COL_CF = r"""
ptrdiff_t r = i;
const ptrdiff_t j = r % wo;   r /= wo;
const ptrdiff_t oi = r % ho;  r /= ho;
const ptrdiff_t n = r % nb;   r /= nb;
const ptrdiff_t b = r % kw;   r /= kw;
const ptrdiff_t a = r % kh;
const ptrdiff_t ch = r / kh;
const ptrdiff_t row = a + s * oi - p, col = b + s * j - p;
if (row >= 0 && row < h && col >= 0 && col < w) {
    const ptrdiff_t at[] = {n, ch, row, col};
    cols = x[at];
} else {
    cols = (T)0;
}
"""


def _im2col_cf_twin(cp) -> Any:
    copy = cp.ElementwiseKernel(
        "raw T x, int64 nb, int64 h, int64 w, int64 ho, int64 wo, int64 kh, int64 kw, int64 s, int64 p",
        "T cols", _IM2COL_CF, "nanosgm_im2col_cf")

    def run(x: Array, cols: Array, *, stride: int, padding: int) -> None:
        n, _, h, w = x.shape
        _, kh, kw, _, ho, wo = cols.shape
        copy(x, n, h, w, ho, wo, kh, kw, stride, padding, cols)
    return run


@kernel(cuda=_im2col_cf_twin)
def im2col_cf_gather(x: Array, cols: Array, *, stride: int, padding: int) -> None:
    """Fill ``cols`` (C, kh, kw, N, Ho, Wo) with the receptive fields of x (N, C, H, W), padding read as zeros.

    Reference: pad, then one strided copy of whole image rows per kernel offset. Twin: one thread per element
    of ``cols`` (consecutive threads read consecutive pixels of one image row). A copy: bit-equal.
    """
    _, kh, kw, _, ho, wo = cols.shape
    xpad = pad(x, padding)
    for a in range(kh):
        for b in range(kw):
            cols[:, a, b] = xpad[:, :, a:a + stride * ho:stride, b:b + stride * wo:stride].transpose(1, 0, 2, 3)


_COL2IM_CF = r"""
ptrdiff_t r = i;
const ptrdiff_t col = r % w;  r /= w;
const ptrdiff_t row = r % h;  r /= h;
const ptrdiff_t n = r % nb;
const ptrdiff_t ch = r / nb;
T acc = 0;
for (ptrdiff_t a = 0; a < kh; ++a) {
    ptrdiff_t oi = row + p - a;
    if (oi < 0 || oi % s != 0) continue;
    oi /= s;
    if (oi >= ho) continue;
    for (ptrdiff_t b = 0; b < kw; ++b) {
        ptrdiff_t j = col + p - b;
        if (j < 0 || j % s != 0) continue;
        j /= s;
        if (j >= wo) continue;
        acc += cols[((((ch * kh + a) * kw + b) * nb + n) * ho + oi) * wo + j];
    }
}
dx = acc;
"""


def _col2im_cf_twin(cp) -> Any:
    gather = cp.ElementwiseKernel(
        "raw T cols, int64 nb, int64 h, int64 w, int64 ho, int64 wo, int64 kh, int64 kw, int64 s, int64 p",
        "T dx", _COL2IM_CF, "nanosgm_col2im_cf")

    def run(cols: Array, *, x_shape: tuple, stride: int, padding: int) -> Array:
        n, c, h, w = x_shape
        _, kh, kw, _, ho, wo = cols.shape
        dx = cp.empty((c, n, h, w), dtype=cols.dtype)
        gather(cols, n, h, w, ho, wo, kh, kw, stride, padding, dx)
        return dx.transpose(1, 0, 2, 3)
    return run


@kernel(cuda=_col2im_cf_twin)
def col2im_cf_gather(cols: Array, *, x_shape: tuple, stride: int, padding: int) -> Array:
    """The adjoint of :func:`im2col_cf_gather`: cols (C, kh, kw, N, Ho, Wo) -> dx (N, C, H, W), summing overlaps.

    Returns an NCHW view of (C, N, H, W) memory. Reference: zero a padded array, ``+=`` each kernel offset's
    slice in row-major (a, b) order, crop. Twin: one thread per element of dx, adding its contributions in
    that order from 0: bit-equal to the reference; no atomics, deterministic.
    """
    xp = backend.array_module(cols)
    n, c, h, w = x_shape
    _, kh, kw, _, ho, wo = cols.shape
    dxpad = xp.zeros((c, n, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            dxpad[:, :, a:a + stride * ho:stride, b:b + stride * wo:stride] += cols[:, a, b]
    dx = dxpad.transpose(1, 0, 2, 3)
    if padding:
        return dx[:, :, padding:padding + h, padding:padding + w]
    return dx
