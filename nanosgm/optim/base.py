"""The optimizer base class: the walk over the parameters, the learning rate, the step count and the
per-parameter state, and the optimizer's checkpoints.

A weight update rule (Eq. 1-2, `W_{t+1} = W_t - lambda * grad E_t(W_t)`, or a refinement of it) is a
subclass that writes its rule for one parameter, `update(param, grad, state)`, as its equations, and
optionally `update_fused`, the same arithmetic with speed tricks (nanosgm/kernels/optim.py); `step` runs
the fused one, tests/optim/test_optim.py checks that both give the same bits. On a GPU, `step` runs
an element-wise rule once over flat buffers of all the parameters (nanosgm/optim/flat.py).
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from ..plumbing import threads
from ..plumbing.state import CheckedState, StateError, Where, check_array, check_keys
from . import flat

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["Optimizer"]


def refuse_nested(model) -> None:
    """ValueError if a layer of `model` is itself a network with layers of its own (a Sequential in a
    Sequential): `parameters()` and `state_dict()` list a network's own layers only, so an optimizer would
    never update the inner weights, nor a checkpoint keep them."""
    for i, layer in enumerate(getattr(model, "layers", ())):
        if hasattr(layer, "layers"):
            raise ValueError(f"layer {i} of the model is itself a {type(layer).__name__}, whose weights no optimizer "
                             f"would update (nor a checkpoint keep); give the outer network its layers instead: "
                             f"Sequential([..., *inner.layers, ...])")


def _triples(model) -> Iterator[tuple[str, Array, Array]]:
    """The `(name, param, grad)` triples of `model` (an object with `parameters()`, or an iterable)."""
    refuse_nested(model)
    params = model.parameters() if hasattr(model, "parameters") else model
    for name, param, grad in params:
        if grad is None:
            continue
        yield str(name), param, grad


class Optimizer(CheckedState):
    """Base class of the weight update rules (Eq. 1-2 and refinements): per-parameter state slots,
    the learning rate, the step count, checkpoints.

    A subclass sets `kind` (its name in `build_optimizer`), `hyper` (the names of its float
    hyperparameters, saved in checkpoints), `choices` (its text settings, also saved), `elementwise`
    (below; every subclass must say), and implements `init_state(param)` (a dict of slot arrays) and
    `update(param, grad, state)` (which must modify `param` and the slot arrays in place). It may
    implement `update_fused`, the same update bit for bit, faster; `step` runs it unless
    `use_fused` is False.

    The element-wise contract. With `elementwise = True`, the update promises that every output element
    depends only on the elements at the same position of `param`, `grad` and the slots: no sums, norms,
    means, maxima, reshapes or neighbours. `step` then runs it through nanosgm/plumbing/threads.py: on
    flat, contiguous slices of the arrays (cache-sized pieces, not whole parameters), possibly several
    slices at the same time in a thread pool, and the result is bit-for-bit that of one call on the whole
    arrays. An update with a reduction (clipping by a gradient norm, LARS/LAMB trust ratios, ...) would
    silently compute its reduction per slice there, so it must declare `elementwise = False`: `step`
    then calls the update once per parameter on the whole arrays, one at a time. (A reduction across
    parameters, such as clipping by the global norm, also needs `step` overridden to compute it first.)
    On a device backend (CuPy, the stand-in) an element-wise update runs instead once over flat buffers
    that hold every parameter, gradient and slot (nanosgm/optim/flat.py): one kernel per step.
    The declaration is required, not inherited: a subclass that does not set `elementwise` in its own
    class body is a TypeError when it is defined, so a new optimizer cannot fall into the threaded
    path by default. tests/optim/test_optim.py shows a norm-clipping rule that gives a different result
    per slice and is run whole.
    """

    kind = "base"
    hyper: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    elementwise: bool = False      # see the contract above; every subclass declares its own
    use_fused = True               # `step` runs `update_fused`; False: the readable `update`
    #: slots a loaded state may hold under another name, converted on loading:
    #: {saved name: (slot, host array -> slot array)}
    old_slots: dict = {}

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        if not isinstance(cls.__dict__.get("elementwise"), bool):
            raise TypeError(f"optimizer {cls.__name__} must declare `elementwise = True` (an update that works on "
                            "any slice of the arrays, run in threaded pieces) or `elementwise = False` (it has a "
                            "reduction: run whole) in its class body; see nanosgm.optim.Optimizer")

    def __init__(self, lr: float) -> None:
        self.lr = float(lr)
        self.t: int | np.ndarray = 0     # steps taken (the adaptive input rules: a per-row array of them)
        self.state: dict[str, dict] = {}    # parameter name -> {slot name: array on the param's backend}
        self._pending: dict[str, dict] = {}  # loaded host state not yet moved to its parameter
        self._expect_loaded_state = False   # True after loading a state with slots: a parameter without one is an error
        self._flat: flat.FlatLayout | None = None   # on a device: the flat buffers (nanosgm/optim/flat.py)

    # ------------------------------------------------------------------ the update
    def step(self, model) -> None:
        """Apply one update to every parameter of `model` in place, from the gradients it holds."""
        self.t += 1
        triples = list(_triples(model))
        for name, param, grad in triples:
            if param.shape != grad.shape:
                raise ValueError(f"parameter {name!r} has shape {param.shape} but its gradient {grad.shape}")
        if self.elementwise and flat.applies(model, triples):
            self._step_flat(model, triples)              # on a GPU: one call over flat buffers
            return
        jobs, slots = [], ()
        for name, param, grad in triples:
            state = self._state_for(name, param)
            slots = tuple(state)                 # slot names, the same for every parameter
            jobs.append((param, grad, *state.values()))
        rule = self.update_fused if self.use_fused else self.update

        def update(param: Array, grad: Array, *arrays: Array) -> None:
            rule(param, grad, dict(zip(slots, arrays)))
        if self.elementwise:
            # the same element-wise update on every core, in slices (threads.py; bit-identical to a plain loop)
            threads.run(update, jobs)
        else:
            threads.run_serial(update, jobs)      # a reduction inside: whole arrays, one parameter at a time

    def _step_flat(self, model, triples: list[tuple[str, Array, Array]]) -> None:
        """The update once over flat buffers of every parameter, gradient and slot (nanosgm/optim/flat.py),
        made at the first step and again whenever a parameter or the state was replaced."""
        layout = self._flat
        if layout is None or not layout.holds(triples, self.state):
            states = [self._state_for(name, param) for name, param, _ in triples]
            layout = self._flat = flat.build(model, triples, states)
        layout.gather_grads([grad for _, _, grad in triples])
        rule = self.update_fused if self.use_fused else self.update
        rule(layout.param, layout.grad, dict(layout.slots))

    def init_state(self, param: Array) -> dict:
        """The slot arrays of a parameter before its first step (none by default)."""
        return {}

    def update(self, param: Array, grad: Array, state: dict) -> None:  # pragma: no cover - abstract
        """The rule for one parameter, as its equations: modifies `param` and the slot arrays in place."""
        raise NotImplementedError

    def update_fused(self, param: Array, grad: Array, state: dict) -> None:
        """`update` with speed tricks, the same bits; by default `update` itself."""
        self.update(param, grad, state)

    def _state_for(self, name: str, param: Array) -> dict:
        """The slots of parameter `name`: made at its first step, or moved from a loaded checkpoint."""
        state = self.state.get(name)
        if state is not None:
            return state
        state = self.init_state(param)
        loaded = self._pending.pop(name, None)
        if loaded is None and state and self._expect_loaded_state:
            raise StateError(f"the loaded {self.kind} state has no slots for parameter {name!r} (it was taken "
                             f"after {self.t - 1} steps); the state is incomplete or belongs to another model")
        xp = backend.array_module(param)
        for slot, host in (loaded or {}).items():
            if tuple(host.shape) != tuple(param.shape):
                raise StateError(f"{self.kind} state {name}.{slot} has shape {host.shape}, "
                                 f"the parameter has {param.shape}")
            state[slot] = xp.array(host, dtype=state[slot].dtype)  # a copy, on the parameter's backend
        self.state[name] = state
        return state

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """A flat dict of str -> host NumPy array (scalars as 0-d arrays), loadable with allow_pickle=False.

        Keys: "kind", "lr", "t", one per hyperparameter, "state.<param name>.<slot>" per slot, and one
        per text setting (`choices`).
        """
        d = {"kind": np.array(self.kind), "lr": np.array(self.lr, dtype=np.float64),
             "t": np.array(self.t, dtype=np.int64)}
        for h in self.hyper:
            d[h] = np.array(getattr(self, h), dtype=np.float64)
        for name, slots in list(self._pending.items()) + list(self.state.items()):
            for slot, arr in slots.items():
                d[f"state.{name}.{slot}"] = np.array(backend.to_host(arr))  # always a copy
        for c in self.choices:
            d[c] = np.array(getattr(self, c))
        return d

    def _checked_state(self, d: Mapping, where: Where, model=None) -> dict:
        """For `load_state_dict` (nanosgm/plumbing/state.py): "kind" this optimizer's, "lr", "t", every
        hyperparameter and text setting present (finite scalars, text), and each parameter's slots all
        present, of the slot's dtype and finite, with no unknown key. With `model` (anything with
        `parameters()`), each of its parameters must have its slots, shaped like it.

        Loaded slots stay on the host until the next `step` moves them onto each parameter's backend
        (with its dtype); a parameter that then has no loaded slots is an error, never a silent
        re-initialisation."""
        kind = str(check_array(d, "kind", where, shape=(), kind="U"))
        if kind != self.kind:
            raise where.error(f"{where.key('kind')} says this state belongs to a {kind!r} optimizer, not {self.kind!r}")
        t = int(check_array(d, "t", where, shape=(), kind="i"))
        if t < 0:
            raise where.error(f"{where.key('t')} is {t}, a step count must be >= 0")
        settings: dict[str, float | str] = {h: float(check_array(d, h, where, shape=(), kind="f"))
                                            for h in ("lr",) + self.hyper}
        settings |= {c: str(check_array(d, c, where, shape=(), kind="U")) for c in self.choices}
        settings = self._checked_settings(settings, where)
        init = self._probe(settings).init_state(np.zeros(1))
        slots = tuple(init)
        slot_keys = {k for k in d if k.startswith("state.")}
        check_keys(d, {"kind", "t", "lr", *self.hyper, *self.choices} | slot_keys, where,
                   what=f"the {self.kind} optimizer's state", optional=slot_keys)
        pending = self._checked_slots(d, where, {k: np.asarray(v).dtype.kind for k, v in init.items()})
        if model is not None:
            self._check_against_model(pending, model, where, slots, t)
        elif t > 0 and slots and not pending:
            raise where.error(f"{where.key('state.*')} is missing: the optimizer took {t} steps but its "
                              f"per-parameter state ({', '.join(slots)}) is absent")
        return {"t": t, "settings": settings, "pending": pending, "strict": t > 0 and bool(slots)}

    def _checked_settings(self, settings: dict, where: Where) -> dict:
        """The loaded hyperparameters and text settings, checked together and converted (a subclass's rules)."""
        return settings

    def _probe(self, settings: dict) -> "Optimizer":
        """A copy of this optimizer under the loaded settings: what `init_state` gives there (SGD: momentum)."""
        probe = copy.copy(self)
        for h, value in settings.items():
            setattr(probe, h, value)
        return probe

    def _checked_slots(self, d: Mapping, where: Where, kinds: dict) -> dict:
        """{param name: {slot: host array}} from the "state.<name>.<slot>" keys, every slot present and checked.
        `kinds`: each slot's dtype kind. A slot named in `old_slots` (a float array) is converted to its slot."""
        pending: dict[str, dict] = {}
        for key in d:
            if not key.startswith("state."):
                continue
            name, _, slot = key[len("state."):].rpartition(".")
            new, convert = self.old_slots.get(slot, (slot, None))
            if not name or new not in kinds:
                raise where.error(f"{where.key(key)} is not a slot of the {self.kind} optimizer "
                                  f"(its slots: {', '.join(kinds) or 'none'})")
            host = np.array(check_array(d, key, where, kind="f" if convert else kinds[slot]))
            pending.setdefault(name, {})[new] = convert(host) if convert else host
        for name, got in pending.items():
            for slot in kinds:
                if slot not in got:
                    raise where.error(f"{where.key(f'state.{name}.{slot}')} is missing")
            shapes = [tuple(a.shape) for a in got.values()]
            common = max(set(shapes), key=shapes.count)
            for slot, shape in zip(got, shapes):
                if shape != common:
                    raise where.error(f"{where.key(f'state.{name}.{slot}')} has shape {shape}, its other slots {common}")
        return pending

    def _check_against_model(self, pending: dict, model, where: Where, slots: tuple[str, ...], t: int) -> None:
        """Every parameter of `model` has its slots, shaped like it; no slots for a parameter it lacks."""
        params = {str(n): p for n, p, _ in (model.parameters() if hasattr(model, "parameters") else model)}
        if not slots or (t == 0 and not pending):       # (a slot key of an optimizer without slots was refused)
            return
        for name, p in params.items():
            if name not in pending:
                raise where.error(f"{where.key(f'state.{name}.{slots[0]}')} is missing (parameter {name!r} has no state)")
            shape = tuple(next(iter(pending[name].values())).shape)
            if shape != tuple(p.shape):
                raise where.error(f"{where.key(f'state.{name}')} has shape {shape}, the parameter has {tuple(p.shape)}")
        extra = sorted(set(pending) - set(params))
        if extra:
            raise where.error(f"{where.key(f'state.{extra[0]}')} is for a parameter the model does not have")

    def _assign_state(self, checked: dict) -> None:
        """Install what `_checked_state` returned (nothing here can fail)."""
        self.t = checked["t"]
        for h, value in checked["settings"].items():
            setattr(self, h, value)
        self.state, self._pending = {}, checked["pending"]
        self._expect_loaded_state = checked["strict"]

    def __repr__(self) -> str:
        hp = "".join(f", {h}={getattr(self, h)!r}" for h in self.hyper + self.choices)
        return f"{type(self).__name__}(lr={self.lr!r}{hp})"
