"""On a device backend: every parameter, its gradient and each optimizer slot as views of one flat buffer,
so that an element-wise update (Adam, WAME, SGD) is one call over all the weights, not one per parameter.

    params   one buffer; each model parameter is rebound to a view of it (``model.bind_parameters``)
    grads    one buffer; the layers' gradients are gathered into it at each step (one ``concatenate``)
    slots    one buffer per slot (m, v; zeta, Z, theta, g_sign); ``optimizer.state[name][slot]`` are views

so an Adam or WAME step on a GPU is two launches: the gather, then the rule's kernel
(nanosgm/kernels/optim.py) on the flat buffers. Element-wise rules give every element what they give
it parameter by parameter (the element-wise contract, nanosgm/optim/base.py), so the bits are those of
the NumPy path; tests/optim/test_flat.py checks it on the stand-in. Checkpoints are unchanged: the views
are the per-parameter slots that ``state_dict`` saves.

The layout is made at the first step and kept while the model holds the same view objects under the
same names and the optimizer's state the same slot views; anything else (a parameter rebound by a load
or a move, new parameters, a loaded optimizer state) makes a new layout, once. After the first step on
a device, read ``layer.params[name]`` anew: an array taken from it before is no longer the parameter.
CuPy gathers more than 8 gradients of one dtype averaging under 2 MiB with one kernel (and a small
upload of their addresses); otherwise its ``concatenate`` copies gradient by gradient.

Used when the model can rebind its parameters (``bind_parameters``, as :class:`~nanosgm.layers.Sequential`)
and all parameters and gradients have one dtype; otherwise `Optimizer.step` updates parameter by parameter.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import backend

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["FlatLayout", "applies", "build"]


def applies(model: Any, triples: Sequence[tuple[str, Array, Array]]) -> bool:
    """Whether the flat path is for this model: parameters on a device backend, all of one dtype (their
    gradients too), and a model that can rebind its parameters to views."""
    if not triples or not callable(getattr(model, "bind_parameters", None)):
        return False
    dtype = triples[0][1].dtype
    return (backend.array_module(triples[0][1]).__name__ != "numpy"
            and all(p.dtype == dtype and g.dtype == dtype for _, p, g in triples))


def _views(flat: Array, arrays: Sequence[Array]) -> list[Array]:
    """Views of the 1-d ``flat`` shaped like ``arrays``, one after the other."""
    views, lo = [], 0
    for a in arrays:
        views.append(flat[lo:lo + a.size].reshape(a.shape))
        lo += a.size
    return views


def _gather(arrays: Sequence[Array], dtype: Any) -> Array:
    """A new 1-d buffer holding ``arrays``' elements one after the other, in C order (one launch)."""
    xp = backend.array_module(arrays[0])
    flat = xp.empty(sum(a.size for a in arrays), dtype)
    xp.concatenate([a.reshape(-1) for a in arrays], out=flat)
    return flat


@dataclass(eq=False, repr=False)
class FlatLayout:
    """The flat buffers of one model's parameters (``param``), gradients (``grad``) and optimizer slots
    (``slots``, {slot name: buffer}), and what was handed out: ``views`` (the parameters the model holds),
    ``states`` (per parameter, the {slot: view} dict the optimizer's state holds) and ``slot_views`` (those
    dicts' views)."""
    names: tuple[str, ...]
    views: tuple
    states: tuple
    slot_views: tuple
    param: Array
    grad: Array
    slots: dict

    def holds(self, triples: Sequence[tuple[str, Array, Array]], state: dict) -> bool:
        """Whether ``triples`` are still this layout's parameters (same names, the same view objects) and
        ``state`` (the optimizer's) still holds this layout's slot views."""
        if len(triples) != len(self.names):
            return False
        for (name, param, grad), own, view, slots, slot_views in zip(triples, self.names, self.views,
                                                                     self.states, self.slot_views):
            held = state.get(name)
            if name != own or param is not view or grad.dtype != view.dtype or held is not slots:
                return False
            if len(held) != len(slot_views) or any(a is not b for a, b in zip(held.values(), slot_views)):
                return False
        return True

    def gather_grads(self, grads: Sequence[Array]) -> None:
        """Copy the gradients into the flat gradient buffer, in the parameters' order (one concatenate)."""
        backend.array_module(self.grad).concatenate([g.reshape(-1) for g in grads], out=self.grad)


def build(model: Any, triples: Sequence[tuple[str, Array, Array]], states: Sequence[dict]) -> FlatLayout:
    """Gather the parameters and the optimizer slots ``states`` (one {slot: array} dict per parameter,
    modified in place to hold views) into flat buffers, and rebind the model's parameters to views of
    theirs. ``applies(model, triples)`` must hold."""
    names = tuple(name for name, _, _ in triples)
    params = [p for _, p, _ in triples]
    flat_param = _gather(params, params[0].dtype)
    views = _views(flat_param, params)
    model.bind_parameters(dict(zip(names, views)))
    slots = {}
    for slot in (states[0] if states else {}):
        arrays = [s[slot] for s in states]
        slots[slot] = _gather(arrays, arrays[0].dtype)
        for s, view in zip(states, _views(slots[slot], arrays)):
            s[slot] = view
    xp = backend.array_module(flat_param)
    return FlatLayout(names=names, views=tuple(views), states=tuple(states),
                      slot_views=tuple(tuple(s.values()) for s in states), param=flat_param,
                      grad=xp.empty(flat_param.size, flat_param.dtype), slots=slots)
