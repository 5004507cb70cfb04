"""Input-gradient regularisation ("double backpropagation"): the paper's second future-work direction.

Section 6 proposes "adding the error with respect to the input to the error function as a regularisation
term". With S = sum_n E_n the summed per-sample losses and G = dS/dX = N dE/dX (row n is sample n's own
input gradient, as SGM's per-sample mode uses; training-mode batch normalisation also lets the other
samples of the batch into it), the training loss is

    L(theta) = E + mu * (1/N) sum_n ||G_n||^2          (Drucker & LeCun 1992; Ross & Doshi-Velez 2018)

Its weight gradient needs the derivative of the backward pass itself. With R_v{f} the derivative of f
when the inputs move along v (Pearlmutter's R-operator; every layer's forward_dot / backward_dot,
nanosgm/layers/base.py):

    dL/dtheta = dE/dtheta + (2 mu / N) (dG/dtheta)^T G = dE/dtheta + R_v{dE/dtheta},   v = 2 mu N dE/dX

because (d(dE/dX)/dtheta)^T u = d<dE/dX, u>/dtheta = R_u{dE/dtheta}. Two ways to get R_v{dE/dtheta}:

    gradreg:MU        exact: the forward pass, the backward pass (keeping each layer's dy), forward_dot(v)
                      and backward_dot -- about twice the control's cost
    gradreg-fd:MU:H   Finlay & Oberman (2019): a finite difference along the unit direction u = v / |v|
                      (|v| over the whole batch), from a second ordinary forward + backward pass,
                      R_v{g} ~ |v| (g(X + H u) - g(X)) / H; the second pass holds the first pass's dropout
                      masks and leaves batch normalisation's running statistics as the first pass set them

    >>> from nanosgm.methods import parse_arm
    >>> parse_arm("gradreg:0.01"), parse_arm("gradreg-fd:0.01:0.001")
    (GradientRegularisation('gradreg:0.01'), GradientRegularisation('gradreg-fd:0.01:0.001'))
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..attacks.state import frozen_buffers
from ..backend import host_floats
from ..layers import Sequential, SoftmaxCrossEntropy
from ..layers.base import Array
from .adversarial import _grads_copy, _leaf_layers, _one_dropout_mask
from .base import Method, format_number, parse_number, significant

__all__ = ["GradientRegularisation", "regularised_pass", "finite_difference_pass"]


def _squares(dX: Array) -> float | Array:
    """sum(dE/dX ** 2) in float64: a NumPy scalar, or a 0-d array left on the device."""
    return (dX.astype("float64") ** 2).sum()


def _penalty(mu: float, n: int, squares: float | Array) -> float | Array:
    """mu * (1/N) sum_n ||G_n||^2 with G = N dE/dX, i.e. mu * N * sum(dE/dX ** 2), from ``squares`` =
    sum(dE/dX ** 2) (`_squares`) over ``n`` samples; a 0-d device array stays on the device."""
    return mu * n * squares


def regularised_pass(model: Sequential, loss_fn: SoftmaxCrossEntropy, xb: Array, yb: Array,
                     mu: float) -> tuple[float | Array, Array, float | Array]:
    """(E, dE/dX, penalty): the exact pass. Leaves dL/dtheta (module docstring) in the layers' grads.
    The penalty is a float64 scalar on NumPy and a 0-d array on a device, where nothing is read back."""
    E = loss_fn.forward(model.forward(xb, training=True), yb)
    dX = model.backward(loss_fn.backward(), keep=True)               # dE/dtheta and dE/dX (Eq. 14)
    v = dX * dX.dtype.type(2.0 * mu * xb.shape[0])                     # v = 2 mu N dE/dX
    model.backward_dot(loss_fn.backward_dot(model.forward_dot(v)))   # R_v{dE/dtheta} in grads_dot
    for layer in _leaf_layers(model):
        for k, g in layer.grads.items():
            g += layer.grads_dot[k]
    return E, dX, _penalty(mu, xb.shape[0], _squares(dX))


def finite_difference_pass(model: Sequential, loss_fn: SoftmaxCrossEntropy, xb: Array, yb: Array, mu: float,
                           h: float) -> tuple[float | Array, Array, float | Array]:
    """(E, dE/dX, penalty): Finlay & Oberman's two-pass estimate of the same weight gradient. On a device
    it reads one float a step, sum(dE/dX ** 2): |v| decides whether there is a direction at all (|v| = 0)
    and scales the step to X + H u on the host."""
    with _one_dropout_mask(model):
        E = loss_fn.forward(model.forward(xb, training=True), yb)
        dX = model.backward(loss_fn.backward())
        squares = float(_squares(dX))
        norm = 2.0 * mu * xb.shape[0] * math.sqrt(squares)                                  # |v|
        if norm == 0.0:
            return E, dX, 0.0
        g0 = _grads_copy(model)
        moved = xb + dX * dX.dtype.type(h * 2.0 * mu * xb.shape[0] / norm)                  # X + H v / |v|
        with frozen_buffers(model):
            loss_fn.forward(model.forward(moved, training=True), yb)
            model.backward(loss_fn.backward())
    scale = norm / h
    for i, layer in enumerate(_leaf_layers(model)):
        for k, g in layer.grads.items():
            g -= g0[(i, k)]
            g *= g.dtype.type(scale)                     # |v| (g(X + H u) - g(X)) / H
            g += g0[(i, k)]
    return E, dX, _penalty(mu, xb.shape[0], squares)


class GradientRegularisation(Method):
    """Training on E + mu * mean_n ||G_n||^2 (module docstring); ``h`` None for the exact double backward,
    a step size for the finite-difference estimate. Reports the epoch's mean penalty in its history: the
    batches' penalties, kept on a device until the epoch's end, are read there at once."""

    def __init__(self, mu: float, h: float | None = None) -> None:
        if not (math.isfinite(mu) and mu > 0):
            raise ValueError(f"the regularisation strength MU must be a number > 0, got {mu!r}")
        if h is not None and not (math.isfinite(h) and h > 0):
            raise ValueError(f"the finite-difference step H must be a number > 0, got {h!r}")
        self.mu, self.h = float(mu), None if h is None else float(h)
        self._penalties: list = []         # this epoch's, one a batch (floats, or 0-d device arrays)

    @property
    def label(self) -> str:
        if self.h is None:
            return f"gradreg:{format_number(self.mu)}"
        return f"gradreg-fd:{format_number(self.mu)}:{format_number(self.h)}"

    @classmethod
    def parser(cls, finite_difference: bool) -> Callable[..., "GradientRegularisation"]:
        """The arm grammar's parser of ``gradreg:MU`` or ``gradreg-fd:MU:H``."""
        def parse(args: list, clip: tuple[float, float] | None = None) -> "GradientRegularisation":
            want = 2 if finite_difference else 1
            if len(args) != want:
                raise ValueError("gradreg-fd takes MU and H" if finite_difference else "gradreg takes MU")
            mu = parse_number(args[0], "the regularisation strength MU")
            h = parse_number(args[1], "the finite-difference step H") if finite_difference else None
            return cls(mu, h)
        return parse

    def training_pass(self, model: Sequential, loss_fn: SoftmaxCrossEntropy, xb: Array, yb: Array,
                      rng: np.random.Generator) -> tuple[float | Array, Array]:
        if self.h is None:
            E, dX, penalty = regularised_pass(model, loss_fn, xb, yb, self.mu)
        else:
            E, dX, penalty = finite_difference_pass(model, loss_fn, xb, yb, self.mu, self.h)
        self._penalties.append(penalty)
        return E, dX

    def epoch_record(self) -> dict:
        """The epoch's mean penalty mu * mean_n ||G_n||^2 (the train loss reported is E alone): the batches'
        penalties read back together (one read on a device) and summed on the host in batch order."""
        total = 0.0
        for penalty in host_floats(self._penalties):
            total = total + penalty
        mean = total / max(len(self._penalties), 1)
        self._penalties = []
        return {"gradreg_penalty": significant(mean)}

    def divergence_hint(self) -> str:
        return f" or the regularisation strength MU (now {self.mu:g})"
