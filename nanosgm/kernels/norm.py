"""Batch normalisation's passes as a few wide kernels, and column sums as a GEMV (nanosgm/layers/batchnorm.py,
nanosgm/layers/dense.py).

Every function works on (M, C) rows, C features (channels) and M values of each (the batch, times the spatial
positions for feature maps, which BatchNorm hands over channels-last); statistics are per column:

    batch_stats(x)                            -> (xc, mean, var):  mean = mean(x),  xc = x - mean,  var = mean(xc^2)
    update_running(rm, rv, mean, var, ...)    -> inv_std = 1 / sqrt(var + eps); rm, rv moved in place (PyTorch's
                                                 momentum convention, the unbiased M / (M - 1) var)
    inverse_std(var, eps)                     -> 1 / sqrt(var + eps)                       (inference)
    scale_shift(xc, gamma, inv_std, beta)     -> y = xc * (gamma * inv_std) + beta        (training)
    center_scale_shift(x, mean, ...)          -> (xc, y): xc = x - mean, then as above     (inference)
    backward_sums(dy, xc, inv_std)            -> (dgamma, dbeta) = (sum(dy * xc) * inv_std, sum(dy))
    backward_dx(dy, xc, gamma, inv_std, dgamma, dbeta)
                                              -> gamma inv_std (dy - dbeta / M - xc inv_std dgamma / M)
    scale(dy, gamma, inv_std)                 -> dy * (gamma * inv_std)                   (inference backward)
    column_sum(a)                             -> sum over the rows (Dense's bias gradient), a GEMV on a GPU

A training step of BatchNorm was 16 operations forward and 12 backward; with these it is 3 kernels forward
(statistics, running update, normalisation) and 2 backward (the two sums, dx). Inference was 7 forward, and 2
backward for an attack (6 with parameter gradients); it is 2 forward, 1 backward (2).

Reference: the layer's arithmetic as it was, moved here unchanged, plain ``xp`` operations (on NumPy: the bits
the committed records rely on). CuPy twins (**not yet run on a GPU**), two kinds with two promises:

* Element-wise (``update_running``, ``inverse_std``, ``scale_shift``, ``center_scale_shift``, ``backward_dx``,
  ``scale``): one ``ElementwiseKernel`` each (per-column values broadcast along the rows), the reference's
  operations on each element in the same order, every Python scalar passed in the arrays' dtype (as NumPy casts
  it), built with ``--fmad=false``; CUDA's ``+ - * /`` and ``sqrt`` are correctly rounded, so these **promise
  bit equality with the reference** (float32 / float64 arrays of one dtype; other cases run the reference).
* Reductions (``batch_stats``: 3 CUDA kernels, ``backward_sums``: 2, ``column_sum``: 1 cuBLAS GEMV; the stand-in
  counts one per call): CuPy reductions and cuBLAS, which add in another order than NumPy, so **a tolerance,
  not bit equality**: the sums, and what is computed from them, agree with the reference to 1e-4 (float32) /
  1e-12 (float64) of the largest value (the ``gpu`` test in tests/kernels/test_norm_kernels.py checks it).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import backend
from .core import kernel
from .elementwise import FMAD_OFF, uniform_float
from .reduce import column_sum, column_sum_twin

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["batch_stats", "update_running", "inverse_std", "scale_shift", "center_scale_shift",
           "backward_sums", "backward_dx", "scale", "column_sum"]

# ------------------------------------------------------------------------------------------ forward, training
def _batch_stats_twin(cp: Any) -> Callable:
    """Three kernels: CuPy's mean reduction, the subtraction, and one reduction for mean(xc^2)."""
    mean_square = cp.ReductionKernel("T xc", "T var", "xc * xc", "a + b",
                                     "var = a / (_in_ind.size() / _out_ind.size())", "0", "nanosgm_bn_var")

    def run(x: Any) -> tuple[Any, Any, Any]:
        if not uniform_float(x):
            return batch_stats.reference(x)
        mean = x.mean(axis=0)
        xc = x - mean
        return xc, mean, mean_square(xc, axis=0)
    return run


@kernel(cuda=_batch_stats_twin, launches=3)
def batch_stats(x: Array) -> tuple[Array, Array, Array]:
    """x: (M, C) -> (xc, mean, var): the column means, x centred on them, and the (biased) column variances."""
    mean = x.mean(axis=0)
    xc = x - mean
    var = (xc * xc).mean(axis=0)
    return xc, mean, var


_UPDATE_CODE = """
inv_std = (T)1 / sqrt(var + eps);
rm = rm * keep;
rm = rm + momentum * mean;
rv = rv * keep;
rv = rv + unbias * var;
"""


def _update_running_twin(cp: Any) -> Callable:
    """One ElementwiseKernel over the C features, rm and rv read and written in place."""
    update = cp.ElementwiseKernel("T mean, T var, T keep, T momentum, T unbias, T eps", "T rm, T rv, T inv_std",
                                  _UPDATE_CODE, "nanosgm_bn_update_running", options=FMAD_OFF)

    def run(running_mean: Any, running_var: Any, mean: Any, var: Any, *, momentum: float, m: int,
            eps: float) -> Any:
        if not uniform_float(running_mean, running_var, mean, var):
            return update_running.reference(running_mean, running_var, mean, var, momentum=momentum, m=m, eps=eps)
        t = mean.dtype.type
        inv_std = cp.empty_like(var)
        update(mean, var, t(1 - momentum), t(momentum), t(momentum * m / (m - 1)), t(eps),
               running_mean, running_var, inv_std)
        return inv_std
    return run


@kernel(cuda=_update_running_twin)
def update_running(running_mean: Array, running_var: Array, mean: Array, var: Array, *, momentum: float,
                   m: int, eps: float) -> Array:
    """running <- (1 - momentum) running + momentum batch_stat, in place, with the unbiased variance
    M / (M - 1) var (PyTorch's convention); returns inv_std = 1 / sqrt(var + eps) of the batch."""
    inv_std = 1.0 / (var + eps) ** 0.5
    running_mean *= (1 - momentum)
    running_mean += momentum * mean
    running_var *= (1 - momentum)
    running_var += (momentum * m / (m - 1)) * var                  # unbiased, as PyTorch
    return inv_std


def _scale_shift_twin(cp: Any) -> Callable:
    shift = cp.ElementwiseKernel("T xc, T gamma, T inv_std, T beta", "T y",
                                 "y = xc * (gamma * inv_std); y = y + beta;", "nanosgm_bn_scale_shift",
                                 options=FMAD_OFF)

    def run(xc: Any, gamma: Any, inv_std: Any, beta: Any) -> Any:
        if not uniform_float(xc, gamma, inv_std, beta):
            return scale_shift.reference(xc, gamma, inv_std, beta)
        return shift(xc, gamma, inv_std, beta)
    return run


@kernel(cuda=_scale_shift_twin)
def scale_shift(xc: Array, gamma: Array, inv_std: Array, beta: Array) -> Array:
    """y = xc * (gamma * inv_std) + beta: the normalisation and the affine step in one pass; (M, C) rows."""
    y = xc * (gamma * inv_std)
    y += beta
    return y


# ------------------------------------------------------------------------------------------ forward, inference
def _inverse_std_twin(cp: Any) -> Callable:
    inv = cp.ElementwiseKernel("T var, T eps", "T inv_std", "inv_std = (T)1 / sqrt(var + eps);",
                               "nanosgm_bn_inverse_std", options=FMAD_OFF)

    def run(var: Any, eps: float) -> Any:
        if not uniform_float(var):
            return inverse_std.reference(var, eps)
        return inv(var, var.dtype.type(eps))
    return run


@kernel(cuda=_inverse_std_twin)
def inverse_std(var: Array, eps: float) -> Array:
    """1 / sqrt(var + eps)."""
    return 1.0 / (var + eps) ** 0.5


def _center_scale_shift_twin(cp: Any) -> Callable:
    shift = cp.ElementwiseKernel("T x, T mean, T gamma, T inv_std, T beta", "T xc, T y",
                                 "xc = x - mean; y = xc * (gamma * inv_std); y = y + beta;",
                                 "nanosgm_bn_center_scale_shift", options=FMAD_OFF)

    def run(x: Any, mean: Any, gamma: Any, inv_std: Any, beta: Any) -> tuple[Any, Any]:
        if not uniform_float(x, mean, gamma, inv_std, beta):
            return center_scale_shift.reference(x, mean, gamma, inv_std, beta)
        return shift(x, mean, gamma, inv_std, beta)
    return run


@kernel(cuda=_center_scale_shift_twin)
def center_scale_shift(x: Array, mean: Array, gamma: Array, inv_std: Array, beta: Array) -> tuple[Array, Array]:
    """(xc, y) with xc = x - mean and y = xc * (gamma * inv_std) + beta; (M, C) rows."""
    xc = x - mean
    return xc, scale_shift.reference(xc, gamma, inv_std, beta)


# ------------------------------------------------------------------------------------------ backward
def _backward_sums_twin(cp: Any) -> Callable:
    """Two kernels: one reduction of dy * xc * inv_std (inv_std broadcast along the rows, so it is applied
    before the sum: another rounding than the reference's, within the tolerance), and :func:`column_sum`'s GEMV."""
    dgamma_sum = cp.ReductionKernel("T dy, T xc, T inv_std", "T dgamma", "dy * xc * inv_std", "a + b",
                                    "dgamma = a", "0", "nanosgm_bn_dgamma")
    sums = column_sum_twin(cp)

    def run(dy: Any, xc: Any, inv_std: Any) -> tuple[Any, Any]:
        if not uniform_float(dy, xc, inv_std):
            return backward_sums.reference(dy, xc, inv_std)
        return dgamma_sum(dy, xc, inv_std, axis=0), sums(dy)
    return run


@kernel(cuda=_backward_sums_twin, launches=2)
def backward_sums(dy: Array, xc: Array, inv_std: Array) -> tuple[Array, Array]:
    """(dgamma, dbeta) = (sum(dy * xhat), sum(dy)) over the rows, with xhat = xc * inv_std."""
    dgamma = (dy * xc).sum(axis=0) * inv_std                    # sum(dy * xhat)
    dbeta = dy.sum(axis=0)
    return dgamma, dbeta


_DX_CODE = """
const T k = inv_std * dgamma / m;
T t = xc * k;
t = dy - t;
t = t - dbeta / m;
dx = t * (gamma * inv_std);
"""


def _backward_dx_twin(cp: Any) -> Callable:
    dx_kernel = cp.ElementwiseKernel("T dy, T xc, T gamma, T inv_std, T dgamma, T dbeta, T m", "T dx", _DX_CODE,
                                     "nanosgm_bn_backward_dx", options=FMAD_OFF)

    def run(dy: Any, xc: Any, gamma: Any, inv_std: Any, dgamma: Any, dbeta: Any) -> Any:
        if not uniform_float(dy, xc, gamma, inv_std, dgamma, dbeta):
            return backward_dx.reference(dy, xc, gamma, inv_std, dgamma, dbeta)
        return dx_kernel(dy, xc, gamma, inv_std, dgamma, dbeta, dy.dtype.type(dy.shape[0]))
    return run


@kernel(cuda=_backward_dx_twin)
def backward_dx(dy: Array, xc: Array, gamma: Array, inv_std: Array, dgamma: Array, dbeta: Array) -> Array:
    """Training-mode dE/dx from the sums: with M rows, mean(dxhat) = gamma dbeta / M and
    mean(dxhat xhat) = gamma dgamma / M, so dx = gamma inv_std (dy - dbeta / M - xc inv_std dgamma / M)."""
    m = dy.shape[0]
    dx = xc * (inv_std * dgamma / m)
    xp = backend.array_module(dy)
    xp.subtract(dy, dx, out=dx)
    dx -= dbeta / m
    dx *= gamma * inv_std
    return dx


def _scale_twin(cp: Any) -> Callable:
    mul = cp.ElementwiseKernel("T dy, T gamma, T inv_std", "T dx", "dx = dy * (gamma * inv_std);",
                               "nanosgm_bn_scale", options=FMAD_OFF)

    def run(dy: Any, gamma: Any, inv_std: Any) -> Any:
        if not uniform_float(dy, gamma, inv_std):
            return scale.reference(dy, gamma, inv_std)
        return mul(dy, gamma, inv_std)
    return run


@kernel(cuda=_scale_twin)
def scale(dy: Array, gamma: Array, inv_std: Array) -> Array:
    """dy * (gamma * inv_std): the inference-mode backward, where the statistics are constants."""
    return dy * (gamma * inv_std)
