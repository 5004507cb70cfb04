"""Numerical gradient checking with centred differences (CS231n's gradient_check.py, in float64).

    order 2:  n_i = (f(x + h e_i) - f(x - h e_i)) / (2 h)
    order 4:  n_i = (-f(x + 2h e_i) + 8 f(x + h e_i) - 8 f(x - h e_i) + f(x - 2h e_i)) / (12 h)
    relative error = |a - n| / max(1e-8, |a| + |n|)        (element-wise; report the maximum)

The element-wise relative error is unforgiving where a gradient element happens to be tiny: the
2-point formula's error in float64 is at best about eps^(2/3) ~ 1e-11 in absolute terms, i.e. 1e-5
relative on an element of 1e-6. The default 4th-order stencil (h = 1e-3) brings that to about
eps^(4/5) ~ 1e-13, so float64 checks reach ~1e-7 or better everywhere. Use float64 arrays: in
float32 the round-off of f swamps any difference quotient (`numerical_gradient` warns on any other dtype).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from .. import backend


def relative_error(analytic, numeric, floor: float = 1e-8) -> float:
    """max |a - n| / max(floor, |a| + |n|) over all elements (0.0 for empty arrays).

    Below ``floor`` the comparison is in absolute terms; raise it when the numerical gradient's
    absolute accuracy (about 1e-12 for a network with a loss) would make tiny elements meaningless.
    """
    a, n = backend.to_host(analytic).astype(np.float64), backend.to_host(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"shapes differ: analytic {a.shape} vs numeric {n.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(floor, np.abs(a) + np.abs(n))))


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-3, order: int = 4) -> np.ndarray:
    """d f / d x for a scalar function ``f()`` of the array ``x``, which is perturbed in place and restored.

    ``f`` takes no arguments: it closes over ``x`` (so the same helper checks inputs and parameters).
    ``order`` is 2 (the classic two-point formula; use h ~ 1e-5) or 4 (default). Warns (UserWarning) when
    ``x`` is not float64.
    """
    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order}")
    if x.dtype != np.float64:
        warnings.warn(f"numerical_gradient of a {x.dtype} array: central differences need float64 (in {x.dtype} "
                      "the round-off of f swamps the difference quotient, so the errors reported mean nothing); "
                      "build the layers with dtype='float64' and pass float64 inputs", UserWarning, stacklevel=2)
    xp = backend.array_module(x)
    grad = xp.zeros_like(x)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient perturbs x in place and needs a C-contiguous array")
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(x.size):
        old = flat[i].item()

        def at(delta: float) -> float:
            flat[i] = old + delta
            return f()

        if order == 2:
            gflat[i] = (at(h) - at(-h)) / (2 * h)
        else:
            gflat[i] = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)   # differences first: exact 0 for unused inputs
        flat[i] = old
    return grad


def check_layer(layer, x: np.ndarray, *, h: float = 1e-3, seed: int = 0, training: bool = True) -> dict:
    """Compare a layer's analytic dE/dx and dE/dparams with central differences.

    The scalar is E = sum(forward(x) * R) for a fixed random R, so dE/dy = R. R is drawn from its own
    stream (``seed`` mixed with a constant), so it is never a copy of test data drawn with the same seed.
    Returns a dict name -> relative error, with "x" for the input gradient and each parameter's own name.
    """
    xp = backend.array_module(x)
    y = layer.forward(x, training=training)
    R = xp.asarray(np.random.default_rng([seed, 0x5EED]).standard_normal(y.shape))

    def f() -> float:
        return float((layer.forward(x, training=training) * R).sum())

    dx = layer.backward(R)                     # the cache of the forward pass above
    grads = {k: v.copy() for k, v in layer.grads.items()}
    errors = {"x": relative_error(dx, numerical_gradient(f, x, h))}
    for name, p in layer.params.items():
        errors[name] = relative_error(grads[name], numerical_gradient(f, p, h))
    return errors


def check_model(model, loss, x: np.ndarray, labels: np.ndarray, *, h: float = 1e-3, training: bool = True, floor: float = 1e-8,
                return_gradients: bool = False) -> dict | tuple[dict, dict, dict]:
    """Compare a network's dE/dX (Eq. 14) and every parameter gradient with central differences.

    E is ``loss.forward(model.forward(x), labels)``. Returns a dict name -> relative error ("x" for
    dE/dX), and with ``return_gradients=True`` also the analytic and numerical gradients by name.
    """
    def f() -> float:
        return loss.forward(model.forward(x, training=training), labels)

    f()
    dx = model.backward(loss.backward())
    analytic = {"x": dx.copy()}
    analytic.update({name: g.copy() for name, _, g in model.parameters()})
    numeric = {"x": numerical_gradient(f, x, h)}
    numeric.update({name: numerical_gradient(f, p, h) for name, p, _ in model.parameters()})
    errors = {name: relative_error(analytic[name], numeric[name], floor) for name in analytic}
    return (errors, analytic, numeric) if return_gradients else errors
