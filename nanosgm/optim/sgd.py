"""Stochastic gradient descent: the paper's Eq. 1-2 as it stands, optionally with momentum."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import backend
from .base import Optimizer

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent, Eq. 1-2: `w <- w - lr * g`, optionally with heavy-ball momentum.

    With `momentum = mu > 0` it follows PyTorch's convention: `v <- mu * v + g` (v starts at 0),
    `w <- w - lr * v`.
    """

    elementwise = True
    kind = "sgd"
    hyper = ("momentum",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0) -> None:
        super().__init__(lr)
        self.momentum = float(momentum)

    def init_state(self, param: Array) -> dict[str, Array]:
        if self.momentum == 0.0:
            return {}
        return {"v": backend.array_module(param).zeros_like(param)}

    def update(self, param: Array, grad: Array, state: dict[str, Array]) -> None:
        if self.momentum == 0.0:
            param -= self.lr * grad                     # Eq. 2
            return
        v = state["v"]
        v *= self.momentum                              # v <- mu v + g
        v += grad
        param -= self.lr * v                            # w <- w - lr v
