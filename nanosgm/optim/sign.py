"""Sign descent (signSGD, Bernstein et al. 2018): each element moves by the learning rate, up or down."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import backend
from .base import Optimizer

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["SignSGD"]


class SignSGD(Optimizer):
    """``w <- w - lr * sign(g)``: the step's size is the learning rate in every element; only the
    gradient's sign is used. Applied to inputs with the sign of the step reversed, it is FGSM's step
    (Eq. 20) taken again at every visit (:mod:`nanosgm.methods.adaptive`). Not in ``build_optimizer``'s
    list: it is here as an input rule."""

    elementwise = True
    kind = "sign"

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__(lr)

    def update(self, param: Array, grad: Array, state: dict[str, Array]) -> None:
        param -= self.lr * backend.array_module(param).sign(grad)
