"""Adaptive input updates: SGM's step on the stored training set taken by a weight optimizer's rule.

The paper's Section 6 proposes applying the adaptive rules of weight training "to the residual gradient",
i.e. to SGM's input updates. Here the rule is an optimizer of :mod:`nanosgm.optim` itself, applied to the
rows of the stored set X_t that a batch visited, with the sign that makes Eq. 15 an ascent on E:

    g        = dE/dX at the batch's rows (Eq. 14), times B with per-sample (each sample's own loss)
    X_t[idx] = rule.update(X_t[idx], -g, slots[idx])        the rule minimises -E, so X moves up E

    sgm-momentum:L    SGD with momentum 0.9:  v <- 0.9 v - g,  X <- X - L v
    sgm-adam:L        Adam (0.9, 0.999, 1e-8) on -g: X <- X + L m_hat / (sqrt(v_hat) + eps)
    sgm-sign:L        sign descent on -g: X <- X + L sign(g), FGSM's step (Eq. 20) at every visit

(plain SGD on -g is ``X <- X + L g``, Eq. 15 itself: the arm ``sgm:L``). Every sample keeps its own
slots and its own step count (Adam's bias correction counts the sample's visits, one per epoch): Adam
holds two more arrays the size of the training set (2 x 157 MB for MNIST in float32), momentum one, the
sign rule none. The rule's maths is not copied here: ``rule.update`` is the weight update, called on the
gathered rows (tests/methods/test_adaptive.py checks that both give the same bits on the same array).

Options, each off by default, in a label after L (any order; the label prints them in this order):

    per-sample   g from each sample's own loss (B x the batch-mean gradient; irrelevant to the sign rule)
    ball=R       after each update, project X_t onto the L-inf ball of radius R around X_0
    clip         after each update, clip X_t into the valid input range ([0, 1] for images)

    >>> from nanosgm.methods import parse_arm
    >>> parse_arm("sgm-adam:0.01:clip:per-sample")
    AdaptiveSGM('sgm-adam:0.01:per-sample:clip')
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, cast

import numpy as np

from .. import backend
from ..layers.base import Array
from ..optim import SGD, Adam, SignSGD
from ..plumbing.state import Where, check_array
from .base import format_number, parse_number
from .sgm import SGM, _as_index

if TYPE_CHECKING:
    from ..layers import Sequential, SoftmaxCrossEntropy

__all__ = ["AdaptiveSGM", "INPUT_RULES"]

#: rule name -> the optimizer that takes the input step, given lambda-bar as its learning rate
INPUT_RULES = {
    "momentum": lambda lam: SGD(lr=lam, momentum=0.9),
    "adam": lambda lam: Adam(lr=lam),
    "sign": lambda lam: SignSGD(lr=lam),
}


class AdaptiveSGM(SGM):
    """SGM whose input step is the rule ``rule`` (a key of :data:`INPUT_RULES`) with step size
    ``input_lr``; ``per_sample``, ``ball`` (a radius or None) and ``clip`` (the input range or None) as
    in the module docstring. X_t, X_0 and the shift records are SGM's; this class adds the rule's slots
    and the per-sample step counts, and saves them in the checkpoint."""
    slots: dict[str, Array]             # the rule's slots, one row per sample (made by start())
    count: np.ndarray | None            # visits per sample, on the host (made by start())

    def __init__(self, rule: str, input_lr: float, *, per_sample: bool = False, ball: float | None = None,
                 clip: tuple[float, float] | None = None) -> None:
        if rule not in INPUT_RULES:
            raise ValueError(f"unknown input rule {rule!r}: choose one of {', '.join(INPUT_RULES)}")
        if ball is not None and not ball > 0:
            raise ValueError(f"ball radius must be > 0, got {ball!r}")
        super().__init__(input_lr, per_sample=per_sample)
        self.rule, self.ball, self.project_clip = rule, ball, clip
        self.optimizer = INPUT_RULES[rule](float(input_lr))
        self.slots, self.count = {}, None

    @property
    def label(self) -> str:
        options = (["per-sample"] if self.per_sample else []) + \
                  ([f"ball={format_number(self.ball)}"] if self.ball is not None else []) + \
                  (["clip"] if self.project_clip is not None else [])
        return ":".join([f"sgm-{self.rule}", format_number(self.input_lr)] + options)

    @classmethod
    def parser(cls, rule: str) -> Callable[..., "AdaptiveSGM"]:
        """The arm grammar's parser of ``sgm-<rule>:L[:per-sample][:ball=R][:clip]``."""
        def parse(args: list, clip: tuple[float, float] | None = None) -> "AdaptiveSGM":
            if not args:
                raise ValueError(f"sgm-{rule} takes a step size")
            lam = parse_number(args[0], "the step size")
            if lam == 0:
                raise ValueError(f"sgm-{rule}:0 is the control; give a non-zero step size")
            options = {}
            for field in args[1:]:
                name, _, value = field.partition("=")
                if name not in ("per-sample", "ball", "clip") or bool(value) != (name == "ball"):
                    raise ValueError(f"unknown option {field!r} (per-sample, ball=R or clip)")
                if name in options:
                    raise ValueError(f"option {name!r} is given twice")
                options[name] = parse_number(value, "the ball radius") if value else True
            return cls(rule, lam, per_sample="per-sample" in options, ball=options.get("ball"),
                       clip=clip if "clip" in options else None)
        return parse

    @property
    def _visits(self) -> np.ndarray:
        """``self.count`` for the methods fit calls after :meth:`start` made it (before, it is None)."""
        return cast(np.ndarray, self.count)

    def start(self, X_train: Array) -> Array:
        X = super().start(X_train)
        self.slots = self.optimizer.init_state(X)                     # the rule's slots, one row per sample
        self.count = np.zeros(X.shape[0], dtype=np.int64)             # visits per sample (host)
        return X

    def after_step(self, model: Sequential, loss_fn: SoftmaxCrossEntropy, idx: Array | slice, xb: Array, yb: Array,
                   dX: Array | None) -> None:
        self.update(idx, cast(Array, dX))                             # dX: plain_pass's, never None

    def update(self, idx: Array | slice, dX: Array) -> None:
        """The rule's step on the rows ``idx`` of X_t from dE/dX at them, then the projections; with
        ``input_lr == 0`` nothing at all (X_t, slots and counts bit for bit as they were: the control)."""
        if not self.moves_inputs:
            return
        X = self._x_t.X
        xp = backend.array_module(X)
        host_idx = np.asarray(backend.to_host(idx)) if not isinstance(idx, slice) else np.arange(X.shape[0])[idx]
        idx = _as_index(idx, xp)
        g = xp.asarray(dX, dtype=X.dtype) * (dX.shape[0] if self.per_sample else 1)
        rows, state = X[idx], {k: s[idx] for k, s in self.slots.items()}
        # the rule's maths broadcasts a per-row array t as well as the int that Optimizer.step keeps
        self.optimizer.t = self._step_count(host_idx, X.dtype, xp, X.ndim)
        self.optimizer.update(rows, -g, state)                        # descent on -E: X moves up E (Eq. 15)
        X[idx] = self._project(rows, idx, xp)
        for k, s in self.slots.items():
            s[idx] = state[k]
        self._visits[host_idx] += 1
        self._x_t.n_updates += 1

    def _step_count(self, host_idx: np.ndarray, dtype: np.dtype, xp: ModuleType, ndim: int) -> int | Array:
        """The rule's step number for these rows: their visits + 1, one Python int when the rows share it
        (a permutation's batches always do), else an array broadcast over each row."""
        t = self._visits[host_idx] + 1
        if t.size and (t == t[0]).all():
            return int(t[0])
        return xp.asarray(t.astype(dtype).reshape((-1,) + (1,) * (ndim - 1)))

    def _project(self, rows: Array, idx: Array | slice, xp: ModuleType) -> Array:
        if self.ball is not None:
            x0 = cast(Array, self.X0)[idx]                                # start() keeps X_0 when input_lr != 0
            rows = xp.minimum(xp.maximum(rows, x0 - self.ball), x0 + self.ball)
        if self.project_clip is not None:
            rows = xp.clip(rows, self.project_clip[0], self.project_clip[1])
        return rows

    def divergence_hint(self) -> str:
        return f" or the input step size (now {self.input_lr:g})"

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """SGM's state, plus "count" (visits per sample) and "slot_<name>" for each of the rule's slots
        (left out, like X, while nothing has moved)."""
        state = super().state_dict() | {"count": self._visits.copy()}
        if self._x_t.n_updates:
            state |= {f"slot_{k}": np.array(backend.to_host(s)) for k, s in self.slots.items()}
        return state

    def _checked_state(self, d: Mapping, where: Where) -> dict:
        slot_keys = {f"slot_{k}" for k in self.slots}
        base = super()._checked_state({k: v for k, v in d.items() if k != "count" and k not in slot_keys}, where)
        count = check_array(d, "count", where, shape=(int(self._x_t.X.shape[0]),), kind="i")
        if (count < 0).any():
            raise where.error(f"{where.key('count')} has negative visit counts")
        slots = {}
        if base["n_updates"]:
            for k in self.slots:
                slots[k] = check_array(d, f"slot_{k}", where, shape=tuple(self._x_t.X.shape), kind="f")
        elif slot_keys & set(d):
            raise where.error(f"{where.key('slot_*')} present although no update was applied")
        return base | {"count": count, "slots": slots}

    def _assign_state(self, checked: dict) -> None:
        super()._assign_state(checked)
        self._visits[...] = checked["count"]
        for k, host in checked["slots"].items():
            self.slots[k][...] = backend.array_module(self.slots[k]).asarray(host, dtype=self.slots[k].dtype)
