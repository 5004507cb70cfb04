"""Softmax cross-entropy and its gradient as one kernel (used by :class:`nanosgm.layers.SoftmaxCrossEntropy`).

For logits z (N, K) and labels y (N,) in [0, K):

    log p[n, :] = (z[n, :] - max_k z[n, k]) - log sum_k exp(z[n, k] - max_k z[n, k])     (log-softmax)
    E           = -(1/N) sum_n log p[n, y_n]                                              (the batch-mean loss)
    dE/dz       = (p - onehot(y)) / N                                                    (its gradient)

:func:`softmax_cross_entropy` returns all three, (E as a 0-d float64 array, dE/dz, log p), from one pass
over the logits: the gradient is computed in the forward pass, where the row's maximum and sum are at hand.

Reference: today's arithmetic, plain ``xp`` operations (on NumPy: the bits the committed records rely on).
E is the float32 (or float64) mean of the logits' dtype, cast to float64 at the end (exactly: the value
``float(E)`` gave before), so it can stay on the device and be read back, later, as the same Python float.

CuPy twin (**not yet run on a GPU**): one ``RawKernel`` launch with a single block of 256 threads, one
thread per row (rows strided by 256), for C-contiguous float32 / float64 logits and int64 labels (other
label dtypes are cast first, one more launch). Each thread does the reference's operations on its row in
the same order (max, subtract, exp, a sequential sum, log, subtract; exp, minus one at the label, divide
by N); the N row losses are summed by a shared-memory tree, then divided by N. One block keeps the mean
in one launch, without atomics and in a fixed order (the same bits every run); a training batch has a
few hundred rows, so one block is not the bottleneck. **Precision promise: a tolerance, not bit equality**
-- CUDA's ``expf``/``logf`` (<= 2 ulp) differ from NumPy's, and the row sum and the mean add in another
order than NumPy's pairwise sums: E, dE/dz and log p agree with the reference to rtol 1e-5 (float32) /
1e-12 (float64), atol 1e-7 / 1e-15 where a value is near zero. NaN or inf logits give a NaN loss, as in
the reference (the training loop's divergence check relies on it); a label outside [0, K), which the layer
refuses before calling this, gives a NaN loss instead of reading out of bounds.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import backend
from .core import kernel

__all__ = ["softmax_cross_entropy"]

THREADS = 256            # the twin's one block (a power of two: the tree sum halves it)

_SOURCE = r"""
extern "C" __global__ void softmax_xent(const T* z, const long long* y, const int n, const int k,
                                        T* log_p, T* d, double* loss) {
    __shared__ T part[THREADS];
    T acc = 0;                                       // this thread's sum of log p[r, y_r]
    for (int r = threadIdx.x; r < n; r += THREADS) {
        const T* zr = z + (long long)r * k;
        T m = zr[0];
        for (int j = 1; j < k; ++j) {                // the row maximum; a NaN wins, as in NumPy's max
            const T v = zr[j];
            m = (v > m || v != v) ? v : m;
        }
        T s = 0;
        for (int j = 0; j < k; ++j) s += EXP(zr[j] - m);
        const T lse = LOG(s);
        const long long yr = y[r];
        for (int j = 0; j < k; ++j) {
            const T lp = (zr[j] - m) - lse;
            T e = EXP(lp);
            if (j == yr) e -= (T)1;
            log_p[(long long)r * k + j] = lp;
            d[(long long)r * k + j] = e / (T)n;
        }
        acc += (yr >= 0 && yr < k) ? (zr[yr] - m) - lse : NAN_T;
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = (double)(-(part[0] / (T)n));
}
"""
_TYPES = {      # dtype: the source's prelude (no headers: NVRTC knows expf/logf and the bit-cast intrinsics)
    "float32": "typedef float T;\n#define EXP expf\n#define LOG logf\n#define NAN_T __int_as_float(0x7fc00000)\n",
    "float64": "typedef double T;\n#define EXP exp\n#define LOG log\n"
               "#define NAN_T __longlong_as_double(0x7ff8000000000000LL)\n",
}


def _twin(cp: Any) -> Callable:
    """The compiled version: one RawKernel per float dtype (compiled on first use), launched once per call."""
    import numpy as np
    built: dict = {}

    def compiled(dtype: Any) -> Any:
        key = np.dtype(dtype).name
        if key not in built:
            prelude = _TYPES[key] + f"#define THREADS {THREADS}\n"
            built[key] = cp.RawKernel(prelude + _SOURCE, "softmax_xent")
        return built[key]

    def run(logits: Any, labels: Any) -> tuple:
        n, k = logits.shape
        if np.dtype(logits.dtype).name not in _TYPES or k == 0:      # float16, or no classes: the reference
            return softmax_cross_entropy.reference(logits, labels)
        z = cp.ascontiguousarray(logits)
        y = cp.ascontiguousarray(labels.astype(cp.int64, copy=False))
        log_p, d = cp.empty((n, k), logits.dtype), cp.empty((n, k), logits.dtype)
        loss = cp.empty((), cp.float64)
        compiled(logits.dtype)((1,), (THREADS,), (z, y, np.int32(n), np.int32(k), log_p, d, loss))
        return loss, d, log_p
    return run


@kernel(cuda=_twin)
def softmax_cross_entropy(logits: Any, labels: Any) -> tuple:
    """(E, dE/dz, log p) for logits (N, K) and integer labels (N,) in [0, K) (module docstring): E a 0-d
    float64 array holding the logits' dtype's mean loss, dE/dz and log p (N, K) in the logits' dtype."""
    xp = backend.array_module(logits)
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    rows = xp.arange(n)
    loss = -log_p[rows, labels].mean()
    d = xp.exp(log_p)
    d[rows, labels] -= 1
    d /= n
    return xp.asarray(loss, dtype=xp.float64), d, log_p
