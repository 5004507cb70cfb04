"""The optimizers' fast paths: each rule's update as one kernel of nanosgm/kernels/optim.py.

Each kernel's reference (what NumPy runs) is the same arithmetic as the readable `update` of its
optimizer, as in-place passes over a few scratch arrays (the same operations on the same values in the
same order), so the result is the same bit for bit; tests/optim/test_optim.py compares them.
`Optimizer.step` runs these through nanosgm/plumbing/threads.py on NumPy, where each cache-sized piece
of a parameter goes through every pass while it is still in the cache; on a GPU it runs them once over
flat buffers holding every parameter (nanosgm/optim/flat.py), one compiled kernel per step.

Memory traffic of WAME per weight and step (float32, each array read or written once): reads g, zeta,
Z, theta, w (20 B) and the int8 sign of the previous gradient (1 B), writes zeta, Z, theta, w (16 B) and
the sign (1 B): 38 bytes, against Adam's 28 (reads g, m, v, w; writes m, v, w).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernels import optim as optim_kernels
from ..kernels.optim import zeta_factor, zeta_factor_reference

if TYPE_CHECKING:
    from ..layers.base import Array
    from .adam import Adam
    from .wame import WAME

__all__ = ["adam_update", "wame_update", "zeta_factor", "zeta_factor_reference"]


def adam_update(opt: Adam, param: Array, grad: Array, state: dict[str, Array]) -> None:
    """`Adam.update` in place: :func:`nanosgm.kernels.optim.adam_step` at the optimizer's step count."""
    optim_kernels.adam_step(param, grad, state["m"], state["v"], lr=opt.lr, beta1=opt.beta1, beta2=opt.beta2,
                            eps=opt.eps, t=opt.t)


def wame_update(opt: WAME, param: Array, grad: Array, state: dict[str, Array]) -> None:
    """`WAME.update` in place: :func:`nanosgm.kernels.optim.wame_step` with the optimizer's settings."""
    optim_kernels.wame_step(param, grad, state["zeta"], state["Z"], state["theta"], state["g_sign"],
                            lr_t=opt.step_size(), alpha=opt.alpha, beta2=opt.beta2, eta_plus=opt.eta_plus,
                            eta_minus=opt.eta_minus, zeta_min=opt.zeta_min, zeta_max=opt.zeta_max,
                            store=opt.ZETA_STORE, eps=opt.eps, printed=opt.form == "printed", literal=opt.literal)
