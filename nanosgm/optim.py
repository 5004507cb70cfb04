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
    ['state.0.W.Z', 'state.0.W.g_prev', 'state.0.W.theta', 'state.0.W.zeta']
    >>> opt2 = build_optimizer("wame")
    >>> opt2.load_state_dict(d)    # restored onto each parameter's own backend at the next step
    >>> opt2.lr, opt2.t
    (0.0001, 1)

`model` is anything with a `parameters()` method yielding `(name, param, grad)` triples (or such an
iterable itself). Per-parameter state is keyed by `name`, allocated lazily on the first step with the
parameter's array module (NumPy or CuPy) and dtype, and updated with whole-array xp operations.
"""
from __future__ import annotations

import numpy as np

from . import backend, threads

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
    hyperparameters, saved in checkpoints), and implements `_init_state(param)` (a dict of slot
    arrays) and `_update(param, grad, state)` (which must modify `param` in place).
    """

    kind = "base"
    hyper: tuple[str, ...] = ()

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
        # the same element-wise update on every core (nanosgm/threads.py; bit-identical to a plain loop)
        threads.run(update, jobs)

    def _init_state(self, param) -> dict:
        return {}

    def _update(self, param, grad, state) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state_for(self, name: str, param) -> dict:
        state = self.state.get(name)
        if state is not None:
            return state
        state = self._init_state(param)
        loaded = self._pending.pop(name, None)
        if loaded is not None:
            xp = backend.array_module(param)
            for slot, host in loaded.items():
                if slot not in state:
                    raise KeyError(f"{self.kind} state for {name!r} has an unknown slot {slot!r}")
                if tuple(host.shape) != tuple(param.shape):
                    raise ValueError(f"{self.kind} state {name}.{slot} has shape {host.shape}, "
                                     f"the parameter has {param.shape}")
                state[slot] = xp.array(host, dtype=param.dtype)  # a copy, on the parameter's backend
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

    def load_state_dict(self, d) -> None:
        """Restore what `state_dict` returned (or an `np.load`-ed .npz of it).

        The learning rate, step count and hyperparameters are restored at once; the slot arrays are
        kept on the host and moved onto each parameter's backend (with its dtype) at the next `step`.
        """
        kind = str(np.asarray(d["kind"]))
        if kind != self.kind:
            raise ValueError(f"this state dict belongs to a {kind!r} optimiser, not {self.kind!r}")
        self.lr = float(np.asarray(d["lr"]))
        self.t = int(np.asarray(d["t"]))
        for h in self.hyper:
            if h in d:
                setattr(self, h, float(np.asarray(d[h])))
        self.state, self._pending = {}, {}
        for key in d.keys():
            if not key.startswith("state."):
                continue
            name, slot = key[len("state."):].rsplit(".", 1)
            self._pending.setdefault(name, {})[slot] = np.array(d[key])

    def __repr__(self):
        hp = ", ".join(f"{h}={getattr(self, h)!r}" for h in self.hyper)
        return f"{type(self).__name__}(lr={self.lr!r}{', ' + hp if hp else ''})"


class SGD(Optimizer):
    """Stochastic gradient descent, Eq. 1-2: `w <- w - lr * g`, optionally with heavy-ball momentum.

    With `momentum = mu > 0` it follows PyTorch's convention: `v <- mu * v + g` (v starts at 0),
    `w <- w - lr * v`.
    """

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


class WAME(Optimizer):
    """WAME, Weight-wise Adaptive learning rates with Moving average Estimator (the paper's Ref. [18]).

    The update rule the paper uses for every network (Section 5). Per weight it keeps an acceleration
    factor zeta (starts at 1), its moving average Z, a moving average theta of the squared gradient
    (starts at 0) and the previous gradient g_prev (starts at 0). Both forms share zeta's rule, with g
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
        return {"zeta": xp.ones_like(param), "Z": Z, "theta": xp.zeros_like(param), "g_prev": xp.zeros_like(param)}

    def _update(self, param, grad, state):
        # In-place operations on two scratch buffers: on a 12M-weight network a naive version allocates
        # ~15 parameter-sized temporaries per step and runs ~3x slower on the CPU.
        xp = backend.array_module(param)
        zeta, Z, theta, g_prev = state["zeta"], state["Z"], state["theta"], state["g_prev"]
        a = self.alpha
        # sign agreement of this gradient with the previous one: +1, -1, or 0 (a zero gradient)
        agree = xp.sign(grad)
        agree *= xp.sign(g_prev)
        # zeta: the factor is a sum of 0/1 masks times eta_plus / eta_minus / 1 -- exactly one term is
        # non-zero, so it is exact. Branch-free on purpose: a masked copy (copyto(..., where=...)) of
        # random sign patterns runs ~20x slower per element on a CPU.
        factor = xp.multiply(agree > 0, self.eta_plus, dtype=param.dtype)
        factor += xp.multiply(agree < 0, self.eta_minus, dtype=param.dtype)
        factor += agree == 0
        zeta *= factor
        buf = factor                      # reuse as scratch
        if self.form == "printed":
            # one clip gives min(zeta*eta_plus, zeta_max) or max(zeta*eta_minus, zeta_min): zeta stays in bounds
            xp.clip(zeta, self.zeta_min, self.zeta_max, out=zeta)
            zc, rate, lr_t = zeta, a, self.lr
        else:
            xp.clip(zeta, ZETA_STORE_MIN, ZETA_STORE_MAX, out=zeta)  # wide bounds: no inf or 0 in float32
            zc = xp.clip(zeta, self.zeta_min, self.zeta_max)        # zeta itself stays outside [min, max]
            rate = self.beta2
            lr_t = self.lr * (1.0 - self.beta2 ** self.t) ** 0.5 / (1.0 - self.beta1 ** self.t)
        # Z <- a Z + (1 - a) zc ;  theta <- rate theta + (1 - rate) g^2
        Z *= a
        xp.multiply(zc, 1.0 - a, out=buf)
        Z += buf
        theta *= rate
        xp.multiply(grad, grad, out=buf)
        buf *= 1.0 - rate
        theta += buf
        # denominator: sqrt(theta) + eps   (printed, literal: theta + eps)
        if self.literal:
            xp.add(theta, self.eps, out=buf)
        else:
            xp.sqrt(theta, out=buf)
            buf += self.eps
        step = agree                      # reuse the second scratch buffer
        if self.form == "printed":
            xp.multiply(Z, grad, out=step)                          # Z * g
        else:
            xp.divide(zc, Z, out=step)                              # (zc / Z) * g
            step *= grad
        step /= buf
        step *= lr_t
        param -= step
        g_prev[...] = grad

    def state_dict(self) -> dict:
        d = super().state_dict()
        d["form"] = np.array(self.form)
        return d

    def load_state_dict(self, d) -> None:
        super().load_state_dict(d)
        self.literal = bool(self.literal)
        if "form" in d:
            self.form = str(np.asarray(d["form"]))


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
