"""Adam (Kingma & Ba 2015), a baseline weight update rule."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import backend
from ..kernels import optim as optim_kernels
from .base import Optimizer

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["Adam"]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), with bias correction, applied as Eq. 2's weight step.

        m <- b1 m + (1 - b1) g
        v <- b2 v + (1 - b2) g^2
        w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    `step` runs :meth:`update_fused` (one scratch buffer, in-place passes), bit for bit :meth:`update`.
    """

    elementwise = True
    kind = "adam"
    hyper = ("beta1", "beta2", "eps")

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def init_state(self, param: Array) -> dict[str, Array]:
        xp = backend.array_module(param)
        return {"m": xp.zeros_like(param), "v": xp.zeros_like(param)}

    def update(self, param: Array, grad: Array, state: dict[str, Array]) -> None:
        """The rule above for one parameter, whole arrays. The bias corrections are applied as the fused
        path applies them: v times 1 / (1 - b2^t), and m's folded into the step size lr / (1 - b1^t)."""
        xp = backend.array_module(param)
        m, v, b1, b2 = state["m"], state["v"], self.beta1, self.beta2
        m[...] = b1 * m + (1 - b1) * grad
        v[...] = b2 * v + (1 - b2) * (grad * grad)
        v_hat = v * (1 / (1 - b2 ** self.t))
        param -= m / (xp.sqrt(v_hat) + self.eps) * (self.lr / (1 - b1 ** self.t))

    def update_fused(self, param: Array, grad: Array, state: dict[str, Array]) -> None:
        """:meth:`update` in place: :func:`nanosgm.kernels.optim.adam_step` at this step count, the same bits
        (its NumPy reference makes the same passes over one scratch buffer)."""
        optim_kernels.adam_step(param, grad, state["m"], state["v"], lr=self.lr, beta1=self.beta1,
                                beta2=self.beta2, eps=self.eps, t=self.t)
