"""Max-pooling kernels: forward, backward and the double-backward forward pass, each one launch on a GPU.

Window (i, j) of a k x k pooling with stride s covers x[n, c, s*i + a, s*j + b] for the offsets
o = a*k + b = 0 .. k*k-1. Forward keeps each window's maximum and ``first``, the offset of its first
maximum in row-major order (a later offset replaces it only when strictly greater, as ``argmax``);
backward sends each window's gradient to that one element:

    y[n, i, j, c] = max_o x_o,      dx[n, c, s*i + a, s*j + b] += dy[n, c, i, j] * [first[n, i, j, c] == o]

Arrays called ``*_cl`` are channels-last (N, H, W, C), which is what the layer keeps; x and dy come in as
NCHW views (of channels-last memory, in a network), read through their strides.

Each **reference** is the library's CPU code: a loop over the k*k offsets, vectorised over samples, channels
and positions, on blocks of samples run on every CPU core (``blocks``, from im2col.sample_blocks; see
nanosgm.plumbing.threads.run_blocks). Each **twin** is one CuPy ``ElementwiseKernel`` with one thread per
output element (CuPy picks the grid: 128-thread blocks covering the output) that loops over the same
offsets in the same order; backward *gathers* (each dx element sums the windows that contain it), so it
needs no atomics and no zero fill. The twins ignore ``blocks``. Not yet run on a GPU (written without one;
tests/kernels/test_pool_kernels.py's ``gpu`` tests compare them with the references on a device).
"""
from __future__ import annotations

from typing import Any

from .. import backend
from ..plumbing import threads
from .core import kernel

Array = Any


def window(m_cl: Array, o: int, k: int, s: int, ho: int, wo: int) -> Array:
    """Offset o's view of a channels-last map m: view[n, i, j, c] = m[n, a + s*i, b + s*j, c], (a, b) = divmod(o, k)."""
    a, b = divmod(o, k)
    return m_cl[:, a:a + s * ho:s, b:b + s * wo:s, :]


def first_dtype(k: int, xp) -> Any:
    """The dtype of ``first``: uint8 while the k*k offsets fit in it, else int32."""
    return xp.uint8 if k * k <= 256 else xp.int32


# --- forward -------------------------------------------------------------------------------------------
_FORWARD = r"""
ptrdiff_t r = i;
const ptrdiff_t ch = r % c;   r /= c;
const ptrdiff_t j = r % wo;   r /= wo;
const ptrdiff_t oi = r % ho;
const ptrdiff_t n = r / ho;
const ptrdiff_t at0[] = {n, ch, s * oi, s * j};
T m = x[at0];
F f = 0;
for (int o = 1; o < k * k; ++o) {
    const ptrdiff_t at[] = {n, ch, s * oi + o / k, s * j + o % k};
    const T v = x[at];
    if (v > m) {            // a new maximum at offset o
        m = v;
        f = (F)o;
    } else if (v != v) {    // NaN: the maximum becomes NaN, as numpy.maximum; first stays
        m = v;
    }
}
y = m;
first = f;
"""


def _forward_twin(cp) -> Any:
    pool = cp.ElementwiseKernel("raw T x, int64 c, int64 ho, int64 wo, int64 k, int64 s", "T y, F first",
                                _FORWARD, "nanosgm_maxpool_forward")

    def run(x: Array, *, k: int, stride: int, blocks: list) -> tuple:
        n, c, h, w = x.shape
        ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
        y = cp.empty((n, ho, wo, c), dtype=x.dtype)
        first = cp.empty((n, ho, wo, c), dtype=first_dtype(k, cp))
        pool(x, c, ho, wo, k, stride, y, first)
        return y, first
    return run


@kernel(cuda=_forward_twin)
def maxpool_forward(x: Array, *, k: int, stride: int, blocks: list) -> tuple:
    """x (N, C, H, W) -> (y_cl, first), both (N, Ho, Wo, C), Ho = floor((H - k) / s) + 1.

    Reference: y = offset 0's view, then per offset o: ``above = view > y; y = max(y, view);
    first = max(first, above * o)`` (offsets only grow, so o replaces ``first`` exactly where above).
    Twin: one thread per output, the same comparisons in the same order: bit-equal to the reference
    (a maximum is exact), except that a window holding both 0.0 and -0.0 may keep either zero.
    """
    xp = backend.array_module(x)
    s = stride
    ho, wo = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
    x_cl = x.transpose(0, 2, 3, 1)            # channels-last view (see layers/conv.py on memory layout)
    y = xp.empty((x.shape[0], ho, wo, x.shape[1]), dtype=x.dtype)
    first = xp.zeros(y.shape, dtype=first_dtype(k, xp))

    def block(lo: int, hi: int) -> None:
        yb, fb = y[lo:hi], first[lo:hi]
        yb[...] = window(x_cl[lo:hi], 0, k, s, ho, wo)
        above, code = xp.empty(yb.shape, dtype=bool), xp.empty(yb.shape, dtype=first.dtype)
        for o in range(1, k * k):
            view = window(x_cl[lo:hi], o, k, s, ho, wo)
            xp.greater(view, yb, out=above)                 # a new maximum at offset o
            xp.maximum(yb, view, out=yb)
            xp.multiply(above, first.dtype.type(o), out=code)
            xp.maximum(fb, code, out=fb)                    # offsets only grow: o replaces where above

    threads.run_blocks(block, blocks)
    return y, first


# --- backward ------------------------------------------------------------------------------------------
_BACKWARD = r"""
ptrdiff_t r = i;
const ptrdiff_t ch = r % c;   r /= c;
const ptrdiff_t col = r % w;  r /= w;
const ptrdiff_t row = r % h;
const ptrdiff_t n = r / h;
T acc = 0;
for (int o = 0; o < k * k; ++o) {
    ptrdiff_t oi = row - o / k, j = col - o % k;
    if (oi < 0 || j < 0 || oi % s != 0 || j % s != 0) continue;
    oi /= s;
    j /= s;
    if (oi >= ho || j >= wo) continue;
    const ptrdiff_t at_dy[] = {n, ch, oi, j};
    const ptrdiff_t at_f[] = {n, oi, j, ch};
    const T g = dy[at_dy] * (T)(first[at_f] == o);
    acc = tiles ? g : acc + g;
}
dx = acc;
"""


def _backward_twin(cp) -> Any:
    route = cp.ElementwiseKernel(
        "raw T dy, raw F first, int64 h, int64 w, int64 c, int64 ho, int64 wo, int64 k, int64 s, bool tiles",
        "T dx", _BACKWARD, "nanosgm_maxpool_backward")

    def run(dy: Array, first: Array, *, x_shape: tuple, k: int, stride: int, blocks: list) -> Array:
        n, h, w, c = x_shape
        ho, wo = first.shape[1], first.shape[2]
        dx = cp.empty(tuple(x_shape), dtype=dy.dtype)
        route(dy, first, h, w, c, ho, wo, k, stride, tiles_exactly(x_shape, k, stride, ho, wo), dx)
        return dx
    return run


def tiles_exactly(x_shape_cl: tuple, k: int, stride: int, ho: int, wo: int) -> bool:
    """Whether the windows tile x (N, H, W, C) exactly: each x element then belongs to exactly one window."""
    return stride == k and x_shape_cl[1] == k * ho and x_shape_cl[2] == k * wo


@kernel(cuda=_backward_twin)
def maxpool_backward(dy: Array, first: Array, *, x_shape: tuple, k: int, stride: int, blocks: list) -> Array:
    """dy (N, C, Ho, Wo) and forward's ``first`` (N, Ho, Wo, C) -> dx_cl (N, H, W, C), x_shape = (N, H, W, C).

    Reference: per offset o, ``dx[window o] = dy * (first == o)`` where the windows tile x exactly, else
    ``dx = 0`` and ``dx[window o] += dy * (first == o)``. Twin: one thread per dx element, going through the
    offsets in the same order and doing the same operations (a product by 0 or 1 is exact, so a fused
    multiply-add changes nothing): bit-equal to the reference; no atomics, deterministic.
    """
    xp = backend.array_module(dy)
    ho, wo = first.shape[1], first.shape[2]
    dy_cl = dy.transpose(0, 2, 3, 1)
    tiles = tiles_exactly(x_shape, k, stride, ho, wo)
    dx = (xp.empty if tiles else xp.zeros)(x_shape, dtype=dy.dtype)

    def block(lo: int, hi: int) -> None:
        fb, dyb, dxb = first[lo:hi], dy_cl[lo:hi], dx[lo:hi]
        hit = xp.empty(fb.shape, dtype=bool)
        for o in range(k * k):
            xp.equal(fb, o, out=hit)
            target = window(dxb, o, k, stride, ho, wo)
            if tiles:
                xp.multiply(dyb, hit, out=target)
            else:
                target += dyb * hit

    threads.run_blocks(block, blocks)
    return dx


# --- the double backward's forward pass: read the direction at each window's winner ---------------------
_FORWARD_DOT = r"""
ptrdiff_t r = i;
const ptrdiff_t ch = r % c;   r /= c;
const ptrdiff_t j = r % wo;   r /= wo;
const ptrdiff_t oi = r % ho;
const ptrdiff_t n = r / ho;
const ptrdiff_t at_f[] = {n, oi, j, ch};
const int f = first[at_f];
T acc = 0;
for (int o = 0; o < k * k; ++o) {
    const ptrdiff_t at[] = {n, ch, s * oi + o / k, s * j + o % k};
    acc += x_dot[at] * (T)(f == o);
}
y_dot = acc;
"""


def _forward_dot_twin(cp) -> Any:
    read = cp.ElementwiseKernel("raw T x_dot, raw F first, int64 c, int64 ho, int64 wo, int64 k, int64 s",
                                "T y_dot", _FORWARD_DOT, "nanosgm_maxpool_forward_dot")

    def run(x_dot: Array, first: Array, *, k: int, stride: int) -> Array:
        n, ho, wo, c = first.shape
        y_dot = cp.empty(first.shape, dtype=x_dot.dtype)
        read(x_dot, first, c, ho, wo, k, stride, y_dot)
        return y_dot
    return run


@kernel(cuda=_forward_dot_twin)
def maxpool_forward_dot(x_dot: Array, first: Array, *, k: int, stride: int) -> Array:
    """R{y}_cl (N, Ho, Wo, C): the direction x_dot (N, C, H, W) read at each window's stored winner ``first``.

    Reference: ``y_dot = 0; y_dot += window_o(x_dot) * (first == o)`` for each offset o. Twin: one thread per
    output doing the same sum in the same order (products by 0 or 1 are exact): bit-equal to the reference.
    """
    xp = backend.array_module(x_dot)
    x_cl = x_dot.transpose(0, 2, 3, 1)
    ho, wo = first.shape[1], first.shape[2]
    y_dot = xp.zeros(first.shape, dtype=x_dot.dtype)
    for o in range(k * k):
        y_dot += window(x_cl, o, k, stride, ho, wo) * (first == o)
    return y_dot
