"""A training method: what one mini-batch step does besides the weight update, as one object.

:func:`nanosgm.methods.fit` runs the same loop for every method (Section 2 of the paper):

    X  = method.start(X_train)                          once: the training set the batches are read from
    for each batch idx:
        xb, yb = X[idx], y[idx]                         (augmented if asked)
        E, dX  = method.training_pass(model, loss_fn, xb, yb, rng)   fills the weight gradients
        optimizer.step(model)                           Eq. 1-2 (WAME by default)
        method.after_step(model, loss_fn, idx, xb, yb, dX)           e.g. SGM's input update, Eq. 15/21

The methods of this package, each named by its label in the protocol's arm grammar
(:func:`nanosgm.methods.arms.parse_arm`):

    control                 :class:`Control`      the plain pass; nothing else (the paper's control)
    sgm:L[:per-sample]      :class:`~nanosgm.methods.sgm.SGM`                 Eq. 15/21 on the stored set X_t
    sgm-RULE:L[:...]        :class:`~nanosgm.methods.adaptive.AdaptiveSGM`    SGM's step by an optimizer's rule
    published               :class:`~nanosgm.methods.published.Published`     the authors' Keras code path
    fgsm-at:E, fgsm-rs:E, pgd-at:E:K   :class:`~nanosgm.methods.adversarial.AdversarialTraining`
    gradreg:MU, gradreg-fd:MU:H        :class:`~nanosgm.methods.gradreg.GradientRegularisation`

A method that keeps state across batches (SGM's X_t) hands it to the checkpoint through
``state_dict`` / ``load_state_dict`` (the same all-or-nothing contract as the model's), and reports
per-epoch figures through ``epoch_record``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from ..layers import Sequential, SoftmaxCrossEntropy
from ..layers.base import Array
from ..plumbing.state import CheckedState, Where, check_keys

__all__ = ["Method", "Control", "plain_pass", "parse_number", "format_number", "significant"]


def parse_number(text: str, what: str) -> float:
    """A finite number from a label's field; ValueError naming ``what`` otherwise."""
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} must be finite, got {text!r}")
    return x


def format_number(x: float) -> str:
    """The shortest text that reads back as exactly ``x``: 0.2 -> '0.2', 1.0 -> '1', 0.1234567 -> '0.1234567'."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def significant(x: float, digits: int = 6) -> float:
    """``x`` rounded to ``digits`` significant digits (for the history records)."""
    return float(f"{float(x):.{digits}g}")


def plain_pass(model: Sequential, loss_fn: SoftmaxCrossEntropy, xb: Array, yb: Array) -> tuple[float | Array, Array]:
    """(E, dE/dX): one training-mode forward pass and the backward pass to the inputs (Eq. 14), which
    also fills every weight gradient. E is a float, or a 0-d array left on a device."""
    loss = loss_fn.forward(model.forward(xb, training=True), yb)
    return loss, model.backward(loss_fn.backward())


class Method(CheckedState):
    """The interface every training method implements; by itself it trains plainly (the control).

    ``label``: the method's name in the arm grammar; ``moves_inputs``: whether the stored training set
    changes during training (then fit records how far it moved, and keeps Figures 5-6 snapshots).
    Checkpoints: ``state_dict()``, and ``check_state_dict`` / ``load_state_dict`` from
    :class:`~nanosgm.plumbing.state.CheckedState` (a method with state writes its two hooks).
    """
    if TYPE_CHECKING:       # read-only to callers: a subclass sets them (Control) or computes them (SGM's label)
        @property
        def label(self) -> str: ...

        @property
        def moves_inputs(self) -> bool: ...
    else:
        label = "control"
        moves_inputs = False

    def start(self, X_train: Array) -> Array:
        """Called once by fit before the first epoch; returns the array the batches are read from
        (here: the training set itself, on the active backend)."""
        return backend.to_device(X_train)

    def training_pass(self, model: Sequential, loss_fn: SoftmaxCrossEntropy, xb: Array, yb: Array,
                      rng: np.random.Generator) -> tuple[float | Array, Array | None]:
        """Forward + backward in training mode; leaves the weight gradients in the layers and returns
        (E, dE/dX at xb or None); E is a float, or a 0-d array left on a device. ``rng``: a Generator for
        the method's own random draws."""
        return plain_pass(model, loss_fn, xb, yb)

    def after_step(self, model: Sequential, loss_fn: SoftmaxCrossEntropy, idx: Array | slice, xb: Array, yb: Array,
                   dX: Array | None) -> None:
        """Called after the weight step with the batch's indices, inputs, labels and dE/dX."""

    def epoch_record(self) -> dict:
        """Figures this method adds to each epoch's history record."""
        return {}

    def divergence_hint(self) -> str:
        """What besides the learning rate to lower when training diverges ('' for nothing)."""
        return ""

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The method's own state as host NumPy arrays (nothing for a stateless method)."""
        return {}

    def _checked_state(self, d: Mapping, where: Where) -> dict | None:
        """For ``load_state_dict`` (nanosgm/plumbing/state.py): a stateless method's state has no key."""
        check_keys(d, (), where, what=f"the state of method {self.label!r}")
        return None                                     # nothing to install

    def _assign_state(self, values: Any) -> None:
        """Nothing to install."""

    @classmethod
    def parse(cls, args: list, clip: tuple[float, float] | None = None) -> "Method":
        """The method from the fields of its label after the name (the arm grammar, nanosgm.methods.arms);
        here: a method without parameters."""
        if args:
            raise ValueError(f"{cls.label} takes no parameters")
        return cls()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"


class Control(Method):
    """The paper's control experiment: plain training, the stored inputs never change."""
    label = "control"
