"""What the authors' public Keras code did instead of SGM (see the README's reproduction section).

After each weight step, one more training-mode forward/backward pass computes dE/dX at the NEW weights
and throws it away: the stored inputs never change, and the extra pass draws its own dropout masks
(so the backend's generator advances differently from the control's). It costs one extra pass per batch
and reads nothing back from a device (the labels are checked from the bounds the loop found on the host).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..attacks import loss_and_input_gradient
from .base import Method

if TYPE_CHECKING:
    from ..layers import Sequential, SoftmaxCrossEntropy
    from ..layers.base import Array

__all__ = ["Published"]


class Published(Method):
    """The authors' published code path as a training method (label ``published``)."""
    label = "published"

    def after_step(self, model: Sequential, loss_fn: SoftmaxCrossEntropy, idx: Array | slice, xb: Array, yb: Array,
                   dX: Array | None) -> None:
        loss_and_input_gradient(model, xb, yb, training=True,   # computed at the new weights, then discarded
                                y_bounds=loss_fn.known_bounds(yb))
