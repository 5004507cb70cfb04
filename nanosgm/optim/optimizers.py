"""Weight update rules (the paper's Eq. 1-2, `W_{t+1} = W_t - lambda * grad E_t(W_t)`, and its refinements).

The paper trains every network with WAME (its Ref. [18]: Mosca & Magoulas, "Training convolutional
networks with weight-wise adaptive learning rates", ESANN 2017). SGD and Adam are here as baselines.

Every optimiser has the same small interface:

    >>> import numpy as np
    >>> from nanosgm.layers import Dense, Sequential, SoftmaxCrossEntropy
    >>> from nanosgm.optim import build_optimizer
    >>> model, loss = Sequential([Dense(4, 3)]), SoftmaxCrossEntropy()
    >>> opt = build_optimizer("wame", lr=1e-3)
    >>> E = loss.forward(model.forward(np.ones((2, 4), np.float32), training=True), np.array([0, 2]))
    >>> _ = model.backward(loss.backward())   # fills the grads
    >>> W_before = model[0].params["W"].copy()
    >>> opt.step(model)        # updates every parameter IN PLACE from its gradient
    >>> bool((model[0].params["W"] != W_before).any()), opt.t
    (True, 1)
    >>> opt.lr = 1e-4          # the learning rate is a plain attribute (see nanosgm.schedules)
    >>> d = opt.state_dict()   # flat {str: host NumPy array}, safe for np.savez / np.load(allow_pickle=False)
    >>> sorted(k for k in d if k.startswith("state.0.W."))
    ['state.0.W.Z', 'state.0.W.g_sign', 'state.0.W.theta', 'state.0.W.zeta']
    >>> opt2 = build_optimizer("wame")
    >>> opt2.load_state_dict(d)    # restored onto each parameter's own backend at the next step
    >>> opt2.lr, opt2.t
    (0.0001, 1)

`model` is anything with a `parameters()` method yielding `(name, param, grad)` triples (or such an
iterable itself). Per-parameter state is keyed by `name`, allocated lazily on the first step with the
parameter's array module (NumPy or CuPy) and dtype, and updated with whole-array xp operations.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import backend
from ..plumbing import threads
from ..plumbing.state import StateError, Where, check_array, check_keys

__all__ = ["Optimizer", "SGD", "Adam", "WAME", "build_optimizer", "OPTIMIZERS"]


def _triples(model):
    """The `(name, param, grad)` triples of `model` (an object with `parameters()`, or an iterable)."""
    params = model.parameters() if hasattr(model, "parameters") else model
    for name, param, grad in params:
        if grad is None:
            continue
        yield str(name), param, grad


class Optimizer:
    """Base class of the weight update rules (Eq. 1-2 and refinements): per-parameter state slots,
    the learning rate, the step count, checkpoints.

    A subclass sets `kind` (its name in `build_optimizer`), `hyper` (the names of its float
    hyperparameters, saved in checkpoints), `elementwise` (below; every subclass must say), and
    implements `_init_state(param)` (a dict of slot arrays) and `_update(param, grad, state)` (which
    must modify `param` and the slot arrays in place).

    The element-wise contract. With `elementwise = True`, `_update` promises that every output element
    depends only on the elements at the same position of `param`, `grad` and the slots: no sums, norms,
    means, maxima, reshapes or neighbours. `step` then runs it through nanosgm/threads.py: on flat,
    contiguous slices of the arrays (cache-sized pieces, not whole parameters), possibly several slices
    at the same time in a thread pool, and the result is bit-for-bit that of one call on the whole
    arrays. An update with a reduction (clipping by a gradient norm, LARS/LAMB trust ratios, ...) would
    silently compute its reduction per slice there, so it must declare `elementwise = False`: `step`
    then calls `_update` once per parameter on the whole arrays, one at a time. (A reduction across
    parameters, such as clipping by the global norm, also needs `step` overridden to compute it first.)
    The declaration is required, not inherited: a subclass that does not set `elementwise` in its own
    class body is a TypeError when it is defined, so a new optimiser cannot fall into the threaded
    path by default. tests/test_optim.py shows a norm-clipping rule that gives a different result
    per slice and is run whole.
    """

    kind = "base"
    hyper: tuple[str, ...] = ()
    elementwise: bool = False      # see the contract above; every subclass declares its own

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not isinstance(cls.__dict__.get("elementwise"), bool):
            raise TypeError(f"optimiser {cls.__name__} must declare `elementwise = True` (an update that works on "
                            "any slice of the arrays, run in threaded pieces) or `elementwise = False` (it has a "
                            "reduction: run whole) in its class body; see nanosgm.optim.Optimizer")

    def __init__(self, lr: float):
        self.lr = float(lr)
        self.t = 0                       # number of steps taken
        self.state: dict[str, dict] = {}    # parameter name -> {slot name: array on the param's backend}
        self._pending: dict[str, dict] = {}  # loaded host state not yet moved to its parameter

    # ------------------------------------------------------------------ the update
    def step(self, model) -> None:
        """Apply one update to every parameter of `model` in place, from the gradients it holds."""
        self.t += 1
        jobs, slots = [], ()
        for name, param, grad in _triples(model):
            if param.shape != grad.shape:
                raise ValueError(f"parameter {name!r} has shape {param.shape} but its gradient {grad.shape}")
            state = self._state_for(name, param)
            slots = tuple(state)                 # slot names, the same for every parameter
            jobs.append((param, grad, *state.values()))

        def update(param, grad, *arrays):
            self._update(param, grad, dict(zip(slots, arrays)))
        if self.elementwise:
            # the same element-wise update on every core, in slices (nanosgm/threads.py; bit-identical to a plain loop)
            threads.run(update, jobs)
        else:
            threads.run_serial(update, jobs)      # a reduction inside: whole arrays, one parameter at a time

    def _init_state(self, param) -> dict:
        return {}

    def _convert_loaded(self, slot: str, host):
        """(slot, host array) for a slot read from a checkpoint: a subclass that changed its state
        layout maps an old slot to the new one here."""
        return slot, host

    def _update(self, param, grad, state) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state_for(self, name: str, param) -> dict:
        state = self.state.get(name)
        if state is not None:
            return state
        state = self._init_state(param)
        loaded = self._pending.pop(name, None)
        if loaded is None and state and self._expect_loaded_state:
            raise StateError(f"the loaded {self.kind} state has no slots for parameter {name!r} (it was taken "
                             f"after {self.t - 1} steps); the state is incomplete or belongs to another model")
        if loaded is not None:
            xp = backend.array_module(param)
            for slot, host in loaded.items():
                slot, host = self._convert_loaded(slot, host)
                if slot not in state:
                    raise KeyError(f"{self.kind} state for {name!r} has an unknown slot {slot!r}")
                if tuple(host.shape) != tuple(param.shape):
                    raise StateError(f"{self.kind} state {name}.{slot} has shape {host.shape}, "
                                     f"the parameter has {param.shape}")
                state[slot] = xp.array(host, dtype=state[slot].dtype)  # a copy, on the parameter's backend
        self.state[name] = state
        return state

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """A flat dict of str -> host NumPy array (scalars as 0-d arrays), loadable with allow_pickle=False.

        Keys: "kind", "lr", "t", one per hyperparameter, and "state.<param name>.<slot>" per slot.
        """
        d = {"kind": np.array(self.kind), "lr": np.array(self.lr, dtype=np.float64),
             "t": np.array(self.t, dtype=np.int64)}
        for h in self.hyper:
            d[h] = np.array(getattr(self, h), dtype=np.float64)
        for name, slots in list(self._pending.items()) + list(self.state.items()):
            for slot, arr in slots.items():
                d[f"state.{name}.{slot}"] = np.array(backend.to_host(arr))  # always a copy
        return d

    _expect_loaded_state = False   # True after loading a state with slots: a parameter without one is an error

    def load_state_dict(self, d, *, source=None, prefix: str = "", model=None) -> None:
        """Restore what `state_dict` returned (or an `np.load`-ed .npz of it), all or nothing.

        Every key is checked first (nanosgm/state.py): "kind" must be this optimiser's, "lr", "t" and
        every hyperparameter present as finite scalars, and each parameter's slots all present, floating
        and finite, with no unknown key. With `model` (anything with `parameters()`), each of its
        parameters must have its slots, shaped like it. Any failure is a StateError naming `source`
        (the file) and the key (`prefix` + key), and leaves the optimiser unchanged. The slot arrays
        are kept on the host and moved onto each parameter's backend (with its dtype) at the next
        `step`; a parameter that then has no loaded slots is an error, never a silent re-initialisation.
        """
        self._assign_state(self._checked_state(d, Where(source, prefix), model))

    def check_state_dict(self, d, *, source=None, prefix: str = "", model=None) -> None:
        """Raise the StateError `load_state_dict(d, ...)` would raise, changing nothing: check every
        part of a checkpoint first, then load them all, and a refused checkpoint changes nothing."""
        self._checked_state(d, Where(source, prefix), model)

    def _checked_state(self, d, where, model=None) -> dict:
        """Check the state dict `d` completely (see `load_state_dict`); the values to assign, or StateError."""
        kind = str(check_array(d, "kind", where, shape=(), kind="U"))
        if kind != self.kind:
            raise where.error(f"{where.key('kind')} says this state belongs to a {kind!r} optimiser, not {self.kind!r}")
        t = int(check_array(d, "t", where, shape=(), kind="i"))
        if t < 0:
            raise where.error(f"{where.key('t')} is {t}, a step count must be >= 0")
        scalars = {h: float(check_array(d, h, where, shape=(), kind="f")) for h in ("lr",) + self.hyper}
        probe = copy.copy(self)                 # the slot names under the loaded hyperparameters (SGD: momentum)
        for h in self.hyper:
            setattr(probe, h, scalars[h])
        init = probe._init_state(np.zeros(1))
        slots = tuple(init)
        kinds = {k: np.asarray(v).dtype.kind for k, v in init.items()}      # WAME's g_sign is int8
        slot_keys = {k for k in d if k.startswith("state.")}
        check_keys(d, {"kind", "t", "lr", *self.hyper} | slot_keys, where, what=f"the {self.kind} optimiser's state",
                   optional=slot_keys)
        pending = self._checked_slots(d, where, slots, kinds)
        if model is not None:
            self._check_against_model(pending, model, where, slots, t)
        elif t > 0 and slots and not pending:
            raise where.error(f"{where.key('state.*')} is missing: the optimiser took {t} steps but its "
                              f"per-parameter state ({', '.join(slots)}) is absent")
        return {"t": t, "scalars": scalars, "pending": pending, "strict": t > 0 and bool(slots)}

    def _checked_slots(self, d, where, slots, kinds) -> dict:
        """{param name: {slot: host array}} from the "state.<name>.<slot>" keys, every slot present and checked
        (an older layout's slot is converted by `_convert_loaded`; it was a float array)."""
        pending: dict[str, dict] = {}
        for key in d:
            if key.startswith("state."):
                name, _, slot = key[len("state."):].rpartition(".")
                new = self._convert_loaded(slot, np.zeros(0))[0] if name else slot
                if not name or new not in slots:
                    raise where.error(f"{where.key(key)} is not a slot of the {self.kind} optimiser "
                                      f"(its slots: {', '.join(slots) or 'none'})")
                host = np.array(check_array(d, key, where, kind=kinds[new] if new == slot else "f"))
                pending.setdefault(name, {})[new] = self._convert_loaded(slot, host)[1]
        for name, got in pending.items():
            for slot in slots:
                if slot not in got:
                    raise where.error(f"{where.key(f'state.{name}.{slot}')} is missing")
            shapes = [tuple(a.shape) for a in got.values()]
            common = max(set(shapes), key=shapes.count)
            for slot, shape in zip(got, shapes):
                if shape != common:
                    raise where.error(f"{where.key(f'state.{name}.{slot}')} has shape {shape}, its other slots {common}")
        return pending

    def _check_against_model(self, pending, model, where, slots, t) -> None:
        """Every parameter of `model` has its slots, shaped like it; no slots for a parameter it lacks."""
        params = {str(n): p for n, p, _ in (model.parameters() if hasattr(model, "parameters") else model)}
        if not slots or (t == 0 and not pending):       # (a slot key of an optimiser without slots was refused)
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

    def _assign_state(self, checked) -> None:
        """Install what `_checked_state` returned (nothing here can fail)."""
        self.t = checked["t"]
        self.lr = checked["scalars"]["lr"]
        for h in self.hyper:
            setattr(self, h, checked["scalars"][h])
        self.state, self._pending = {}, checked["pending"]
        self._expect_loaded_state = checked["strict"]

    def __repr__(self):
        hp = ", ".join(f"{h}={getattr(self, h)!r}" for h in self.hyper)
        return f"{type(self).__name__}(lr={self.lr!r}{', ' + hp if hp else ''})"


class SGD(Optimizer):
    """Stochastic gradient descent, Eq. 1-2: `w <- w - lr * g`, optionally with heavy-ball momentum.

    With `momentum = mu > 0` it follows PyTorch's convention: `v <- mu * v + g` (v starts at 0),
    `w <- w - lr * v`.
    """

    elementwise = True
    kind = "sgd"
    hyper = ("momentum",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0):
        super().__init__(lr)
        self.momentum = float(momentum)

    def _init_state(self, param):
        if self.momentum == 0.0:
            return {}
        return {"v": backend.array_module(param).zeros_like(param)}

    def _update(self, param, grad, state):
        if self.momentum == 0.0:
            param -= self.lr * grad
            return
        v = state["v"]
        v *= self.momentum
        v += grad
        param -= self.lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), with bias correction, applied as Eq. 2's weight step.

    `m <- b1 m + (1-b1) g`, `v <- b2 v + (1-b2) g^2`,
    `w <- w - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`.
    """

    elementwise = True
    kind = "adam"
    hyper = ("beta1", "beta2", "eps")

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _init_state(self, param):
        xp = backend.array_module(param)
        return {"m": xp.zeros_like(param), "v": xp.zeros_like(param)}

    def _update(self, param, grad, state):
        xp = backend.array_module(param)
        m, v = state["m"], state["v"]
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        buf = xp.multiply(grad, 1.0 - self.beta1)        # one scratch buffer, reused (see WAME)
        m *= self.beta1
        m += buf
        xp.multiply(grad, grad, out=buf)
        buf *= 1.0 - self.beta2
        v *= self.beta2
        v += buf
        xp.multiply(v, 1.0 / c2, out=buf)                  # sqrt(v / c2) + eps
        xp.sqrt(buf, out=buf)
        buf += self.eps
        xp.divide(m, buf, out=buf)
        buf *= self.lr / c1
        param -= buf


ZETA_STORE_MIN, ZETA_STORE_MAX = 1e-30, 1e30   # WAME authors' form: the range zeta is stored in


def _zeta_factor(agree, eta_plus, eta_minus, out, scratch):
    """WAME's factor for zeta, exactly eta_plus / eta_minus / 1 where ``agree`` (int8) is +1 / -1 / 0;
    written into ``out`` (float, agree's shape; ``scratch`` is a second such array) and returned.

    Computed on the factor's bit pattern, with integers, so that it is exact: the bits B(f) of the three
    values lie on the parabola through (p, B) = (-1, B(eta_minus)), (0, B(1)), (1, B(eta_plus)), so

        2 B(f) = (p (B+ + B- - 2 B1) + (B+ - B-)) p + 2 B1,      p = agree,

    evaluated in unsigned integers of the float's width (wrapping arithmetic is exact modulo 2^bits, and
    2 B(f) of a positive float fits), then halved and read back as floats. Five integer passes, about
    half the time of the same factor built from float masks; :func:`_zeta_factor_reference` is the plain
    version (``where``), and the tests compare the two bit for bit.
    """
    xp = backend.array_module(out)
    uint = xp.dtype(f"uint{8 * out.dtype.itemsize}")
    ftype = out.dtype.type

    def bits(v):
        return int(np.array(ftype(v)).view(uint))
    bp, bm, b1 = bits(eta_plus), bits(eta_minus), bits(1.0)
    wrap = 1 << (8 * out.dtype.itemsize)
    curve, slope, twice_one = (uint.type((c) % wrap) for c in (bp + bm - 2 * b1, bp - bm, 2 * b1))
    p, t = scratch.view(uint), out.view(uint)
    xp.copyto(p, agree, casting="unsafe")                      # -1 -> 2^bits - 1: modular arithmetic
    xp.multiply(p, curve, out=t)
    xp.add(t, slope, out=t)
    xp.multiply(t, p, out=t)
    xp.add(t, twice_one, out=t)
    xp.right_shift(t, uint.type(1), out=t)                     # 2 B(f) / 2: exact, it is even
    return out


def _zeta_factor_reference(agree, eta_plus, eta_minus, dtype):
    """The plain version of :func:`_zeta_factor`: eta_plus / eta_minus / 1 by ``where``."""
    xp = backend.array_module(agree)
    return xp.where(agree > 0, eta_plus, xp.where(agree < 0, eta_minus, 1.0)).astype(dtype)


class WAME(Optimizer):
    """WAME, Weight-wise Adaptive learning rates with Moving average Estimator (the paper's Ref. [18]).

    The update rule the paper uses for every network (Section 5). Per weight it keeps an acceleration
    factor zeta (starts at 1), its moving average Z, a moving average theta of the squared gradient
    (starts at 0) and the previous gradient g_prev (starts at 0; only its sign enters, so it is stored as the
    int8 slot "g_sign"). Both forms share zeta's rule, with g
    the current gradient:

        zeta <- zeta * eta_plus    where g * g_prev > 0   (same sign: accelerate)
        zeta <- zeta * eta_minus   where g * g_prev < 0   (sign flip: brake)
                (unchanged where g * g_prev == 0, e.g. at the first step), bounded by [zeta_min, zeta_max]
        g_prev <- g

    and differ in the step. ``form="printed"``: the algorithm as printed in the WAME paper (Z starts at 0):

        zeta  <- clip(zeta, zeta_min, zeta_max)
        Z     <- alpha * Z     + (1 - alpha) * zeta
        theta <- alpha * theta + (1 - alpha) * g^2
        w     <- w - lr * Z * g / (sqrt(theta) + eps)      (literal=True: / (theta + eps), as printed)

    ``form="authors"`` (DEFAULT): the update of the authors' published Keras implementation, the code
    behind the paper's numbers (Z starts at 1, theta averages g^2 over ~1000 steps, Adam's bias correction):

        zc    = clip(zeta, zeta_min, zeta_max)           (zeta itself is kept unclipped, as in that code, so
                                                          it remembers how far past a bound it went; here
                                                          within [1e-30, 1e30], so that float32 never turns it
                                                          into inf or 0, which would freeze zc at a bound)
        Z     <- alpha * Z     + (1 - alpha) * zc
        theta <- beta2 * theta + (1 - beta2) * g^2
        w     <- w - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * (zc / Z) * g / (sqrt(theta) + eps)

    Why the default is the authors' form. In the printed form the step is lr * Z: with mini-batch noise
    the gradient's sign flips about half the time, each flip divides zeta by 10 and each agreement only
    multiplies it by 1.2, so zeta and Z sink to zeta_min for most weights and the step to ~lr / 100
    (tests/test_optim.py shows the mechanism; notebooks/05_wame.ipynb plots it and compares both forms
    with Adam and SGD on MNIST; the README's WAME section gives measured accuracies). In the authors' form
    the ratio zc / Z compares zeta with its own recent average, so it stays near 1 whatever level zeta
    sinks to.
    One detail of that published code is not copied: it stores the previous *parameter* where the
    previous gradient belongs (so zeta follows sign(g * w)); here g_prev is the gradient, as the paper
    defines the rule.

    Denominator of the printed form: the paper prints theta, which makes the step scale like lr * Z / |g|
    (units of w / g, unbounded as the gradient vanishes); sqrt(theta), the RMSprop normalisation WAME
    builds on, gives a scale-free step of about lr * Z * sign(g) and is used unless literal=True.
    tests/test_optim.py::test_wame_printed_sqrt_vs_literal_on_a_quadratic shows both on E = c w^2 / 2.

    The sign test uses sign(g) * sign(g_prev), so that a product of two tiny float32 gradients that
    underflows to 0 is not mistaken for "no information".
    """

    elementwise = True
    kind = "wame"
    FORMS = ("authors", "printed")
    hyper = ("alpha", "eta_plus", "eta_minus", "zeta_min", "zeta_max", "eps", "literal", "beta1", "beta2")

    def __init__(self, lr: float = 1e-3, alpha: float = 0.9, eta_plus: float = 1.2, eta_minus: float = 0.1,
                 zeta_min: float = 0.01, zeta_max: float = 100.0, eps: float = 1e-8, literal: bool = False,
                 form: str = "authors", beta1: float = 0.9, beta2: float = 0.999):
        super().__init__(lr)
        self.alpha, self.eta_plus, self.eta_minus = float(alpha), float(eta_plus), float(eta_minus)
        self.zeta_min, self.zeta_max, self.eps = float(zeta_min), float(zeta_max), float(eps)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.literal = bool(literal)
        self.form = str(form)
        if self.form not in self.FORMS:
            raise ValueError(f"WAME form must be one of {self.FORMS}, got {form!r}")
        if self.literal and self.form != "printed":
            raise ValueError("literal=True (divide by theta, as printed) applies to form='printed' only")
        if not (0 < self.zeta_min <= 1.0 <= self.zeta_max and self.eta_minus < 1.0 < self.eta_plus):
            raise ValueError("WAME needs 0 < zeta_min <= 1 <= zeta_max and eta_minus < 1 < eta_plus (zeta starts at 1), "
                             f"got zeta_min={zeta_min}, zeta_max={zeta_max}, eta_minus={eta_minus}, eta_plus={eta_plus}")

    def __repr__(self):
        return super().__repr__()[:-1] + f", form={self.form!r})"

    def _init_state(self, param):
        xp = backend.array_module(param)
        Z = xp.ones_like(param) if self.form == "authors" else xp.zeros_like(param)
        return {"zeta": xp.ones_like(param), "Z": Z, "theta": xp.zeros_like(param),
                "g_sign": xp.zeros(param.shape, dtype=xp.int8)}

    def _convert_loaded(self, slot, host):
        """Checkpoints written before the compact state kept the previous gradient itself ("g_prev",
        float); only its sign is used, so it loads as "g_sign" = sign(g_prev) (the same next step)."""
        if slot == "g_prev":
            return "g_sign", np.sign(host).astype(np.int8)
        return slot, host

    def _zeta_rate_lr(self, zeta, buf, xp):
        """Bound zeta (in place) and return (zc, the theta rate, the step's learning rate) of the form."""
        if self.form == "printed":
            # one clip gives min(zeta*eta_plus, zeta_max) or max(zeta*eta_minus, zeta_min): zeta stays in bounds
            xp.clip(zeta, self.zeta_min, self.zeta_max, out=zeta)
            return zeta, self.alpha, self.lr
        xp.clip(zeta, ZETA_STORE_MIN, ZETA_STORE_MAX, out=zeta)       # wide bounds: no inf or 0 in float32
        zc = xp.clip(zeta, self.zeta_min, self.zeta_max, out=buf)     # zeta itself stays outside [min, max]
        return zc, self.beta2, self.lr * (1.0 - self.beta2 ** self.t) ** 0.5 / (1.0 - self.beta1 ** self.t)

    def _update(self, param, grad, state):
        """The fast update: in-place passes over two scratch arrays, the previous gradient kept as its sign.

        Memory traffic per weight and step (float32, each array read or written once, the minimum when
        :mod:`nanosgm.threads` keeps every pass of a piece in the cache): reads g, zeta, Z, theta, w (20 B)
        and the int8 sign (1 B), writes zeta, Z, theta, w (16 B) and the sign (1 B): 38 bytes, against
        Adam's 28 (reads g, m, v, w; writes m, v, w): 1.36x. With the previous gradient stored as a float
        it was 44 bytes (1.57x). Bit-for-bit the result of :meth:`update_reference` (tests/test_optim.py).
        """
        xp = backend.array_module(param)
        zeta, Z, theta, g_sign = state["zeta"], state["Z"], state["theta"], state["g_sign"]
        a = self.alpha
        # sign of g as int8 (+1, 0, -1; 0 for a zero gradient), and its agreement with the previous sign
        sign = (grad > 0).view(xp.int8) - (grad < 0).view(xp.int8)
        agree = sign * g_sign
        g_sign[...] = sign
        buf, step = xp.empty_like(param), xp.empty_like(param)       # the two scratch arrays
        zeta *= _zeta_factor(agree, self.eta_plus, self.eta_minus, buf, step)
        zc, rate, lr_t = self._zeta_rate_lr(zeta, buf, xp)
        # Z <- a Z + (1 - a) zc ;  theta <- rate theta + (1 - rate) g^2
        Z *= a
        xp.multiply(zc, 1.0 - a, out=step)
        Z += step
        if self.form == "printed":
            xp.multiply(Z, grad, out=step)                          # Z * g
        else:
            xp.divide(zc, Z, out=step)                              # (zc / Z) * g
            step *= grad
        theta *= rate
        xp.multiply(grad, grad, out=buf)                            # zc (in buf) is no longer needed
        buf *= 1.0 - rate
        theta += buf
        # denominator: sqrt(theta) + eps   (printed, literal: theta + eps)
        if self.literal:
            xp.add(theta, self.eps, out=buf)
        else:
            xp.sqrt(theta, out=buf)
            buf += self.eps
        step /= buf
        step *= lr_t
        param -= step

    def update_reference(self, param, grad, state):
        """The plain reference of :meth:`_update`, written as the docstring's equations, whole-array and
        without scratch buffers, on the full layout: ``state`` holds the previous gradient "g_prev"
        (float) instead of its sign. Tests compare the two bit for bit (same operations, same order)."""
        xp = backend.array_module(param)
        zeta, Z, theta, g_prev = state["zeta"], state["Z"], state["theta"], state["g_prev"]
        a = self.alpha
        agree = xp.sign(grad) * xp.sign(g_prev)
        zeta *= _zeta_factor_reference(agree, self.eta_plus, self.eta_minus, param.dtype)
        zc, rate, lr_t = self._zeta_rate_lr(zeta, xp.empty_like(param), xp)
        Z[...] = Z * a + zc * (1.0 - a)
        theta[...] = theta * rate + grad * grad * (1.0 - rate)
        denom = theta + self.eps if self.literal else xp.sqrt(theta) + self.eps
        step = Z * grad if self.form == "printed" else zc / Z * grad
        param -= step / denom * lr_t
        g_prev[...] = grad

    def state_dict(self) -> dict:
        d = super().state_dict()
        d["form"] = np.array(self.form)
        return d

    def _checked_state(self, d, where, model=None) -> dict:
        """As `Optimizer._checked_state`, with the WAME form ("authors" or "printed") also required."""
        checked = super()._checked_state({k: v for k, v in d.items() if k != "form"}, where, model)
        form = str(check_array(d, "form", where, shape=(), kind="U"))
        if form not in self.FORMS:
            raise where.error(f"{where.key('form')} is {form!r}, not one of {self.FORMS}")
        literal = bool(checked["scalars"]["literal"])
        if literal and form != "printed":
            raise where.error(f"{where.key('literal')} is set but {where.key('form')} is {form!r}; literal applies to 'printed' only")
        return checked | {"form": form, "literal": literal}

    def _assign_state(self, checked) -> None:
        super()._assign_state(checked)
        self.literal, self.form = checked["literal"], checked["form"]


OPTIMIZERS = {"wame": WAME, "sgd": SGD, "adam": Adam}


def build_optimizer(name: str, lr: float | None = None, **kw) -> Optimizer:
    """The weight update rule (Eq. 2 / WAME) called `name` ('wame', 'sgd' or 'adam'); `lr=None` keeps the class default
    (WAME and Adam 1e-3, SGD 0.01). Extra keywords go to the constructor."""
    key = str(name).strip().lower()
    if key in ("wame-printed", "wame_printed"):          # the WAME paper's algorithm as printed
        key, kw = "wame", {"form": "printed", **kw}
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimiser {name!r}: choose one of {', '.join(sorted(OPTIMIZERS))} or wame-printed")
    cls = OPTIMIZERS[key]
    return cls(**kw) if lr is None else cls(lr=lr, **kw)
