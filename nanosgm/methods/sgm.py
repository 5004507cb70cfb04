"""The Smooth Gradient Method: input updates on the stored training set (Eq. 14, 15, 21).

Backpropagation does not stop at the first layer: one more step of the chain rule gives the residual
gradient at the inputs, dE/dX (Eq. 14; `Sequential.backward` returns it). SGM adds it, scaled by an
input learning rate lambda_bar, to the stored training inputs:

    X_{t+1} = X_t + lambda_bar * dE_t/dX_t                                   (Eq. 15, 21)

This is FGSM's step (Eq. 20) without the sign, applied to the stored training set at every step. The
updated representation persists: the next epoch trains on X_{t+1}, not on the original X_0.
lambda_bar = 0.2 is the paper's setting for robustness, it reports lambda_bar = 1 as good for accuracy
and that -1 <= lambda_bar <= 1 all work; lambda_bar = 0 is the control experiment.

How SGM relates to adversarial training: the module docstring of :mod:`nanosgm.methods.adversarial`.

Use in a training loop (one forward/backward pass gives both gradients):

    >>> import numpy as np
    >>> from nanosgm.layers import Dense, ReLU, Sequential, SoftmaxCrossEntropy
    >>> from nanosgm.optim import build_optimizer
    >>> from nanosgm.methods import SmoothGradient
    >>> rng = np.random.default_rng(0)
    >>> X_train, y = rng.uniform(0, 1, (64, 20)).astype(np.float32), rng.integers(0, 3, 64)
    >>> model, loss_fn = Sequential([Dense(20, 8), ReLU(), Dense(8, 3)]), SoftmaxCrossEntropy()
    >>> optimizer = build_optimizer("wame")
    >>> X0 = X_train.copy()
    >>> sgm = SmoothGradient(X_train, input_lr=0.2)           # holds X_t, a copy of the training set
    >>> for idx in np.split(rng.permutation(64), 4):      # the batches of a permutation: no index twice
    ...     x = sgm.X[idx]                                 # (optionally augmented here)
    ...     loss = loss_fn.forward(model.forward(x, training=True), y[idx])
    ...     dX = model.backward(loss_fn.backward())        # dE/dX at the inputs, Eq. 14
    ...     optimizer.step(model)                          # weight update, Eq. 2
    ...     sgm.update(idx, dX)                            # input update, Eq. 15 / 21
    >>> sgm.n_updates, bool((sgm.X != X0).any()), bool(np.array_equal(X_train, X0))   # X_t moved, X_0 did not
    (4, True, True)

Augmentation: when the batch was randomly augmented, the gradient taken at the augmented input is added
to the stored, un-augmented sample. The paper's Section 4 (Eq. 22-35) argues this is sound: with
zero-mean augmentation noise eps_t of summable variance, X_t = X_0 + sum(Upsilon_k) + sum(eps_k) has
expectation X_0 + sum(Upsilon_k), so in expectation the updates follow the un-augmented trajectory.
(For geometric augmentations such as flips or rotations this is the paper's argument, not an exact
identity: the gradient is not mapped back through the transform.)

Scale convention: E is the batch-MEAN loss (the authors' convention, and what SoftmaxCrossEntropy
returns), so the row of dX for sample i is (1/B) * d loss_i / d x_i for a batch of B samples.
`per_sample=True` multiplies by B, i.e. uses the gradient of each sample's own loss, which makes the
step independent of the batch size.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, cast

import numpy as np

from .. import backend
from ..layers.base import Array
from ..plumbing.state import CheckedState, Where, check_array, check_keys
from .base import Method, format_number, parse_number, significant

if TYPE_CHECKING:
    from ..layers import Sequential, SoftmaxCrossEntropy

__all__ = ["input_update", "SmoothGradient", "SGM", "PAPER_INPUT_LR"]

PAPER_INPUT_LR = 0.2


def _as_index(idx: Array | slice, xp: ModuleType) -> slice | Array:
    """A slice stays a slice; anything else becomes a 1-D integer index array on the backend `xp`."""
    if isinstance(idx, slice):
        return idx
    idx = np.asarray(backend.to_host(idx)) if xp is np else xp.asarray(idx)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise ValueError(f"idx must be a slice or a 1-D array of integer indices, got {idx.dtype} shaped {idx.shape}")
    return idx


def _n_rows(X: Array, idx: Array | slice) -> int:
    if isinstance(idx, slice):
        return len(range(*idx.indices(X.shape[0])))
    return int(idx.shape[0])


def input_update(X: Array, idx: Array | slice, dX: Array, input_lr: float) -> Array:
    """Eq. 15 / 21 in place: `X[idx] += input_lr * dX`; returns X.

    `X` holds the whole training set's current representation, `idx` the rows of the batch (an integer
    array or a slice), `dX` the residual gradient dE/dX at those inputs (Eq. 14), shaped like X[idx].

    Assumption: `idx` contains each index at most once (a batch of a shuffled permutation). Plain fancy
    indexing is used, so with a repeated index only one of its updates would survive; it is not
    checked here because a permutation's batches never repeat an index.
    `input_lr == 0` returns at once, leaving X bit-for-bit untouched.
    """
    if input_lr == 0:
        return X
    xp = backend.array_module(X)
    idx = _as_index(idx, xp)
    if backend.array_module(dX) is not xp:
        dX = backend.to_host(dX) if xp is np else xp.asarray(dX)
    want = (_n_rows(X, idx),) + tuple(X.shape[1:])
    if tuple(dX.shape) != want:
        raise ValueError(f"dX has shape {tuple(dX.shape)}, but X[idx] has shape {want}")
    X[idx] += input_lr * dX
    return X


class SmoothGradient(CheckedState):
    """The training set's representation X_t under the Smooth Gradient Method (Eq. 15, 21).

    `X0` is copied onto the active backend (keeping its floating dtype) into `self.X`; X0 itself is never
    modified. `update(idx, dX)` applies `X[idx] += input_lr * dX` (times the batch size if
    `per_sample=True`, see the module docstring), then, only if `clip=(lo, hi)` was given, clips the
    updated rows to [lo, hi]. `input_lr == 0` (the control experiment) makes `update` a no-op.
    A warning is issued (once per instance) for an input_lr outside [-1, 1], the range the paper
    reports as working. Checkpoints: ``state_dict()``, and ``check_state_dict`` / ``load_state_dict``
    (all or nothing, :class:`~nanosgm.plumbing.state.CheckedState`).
    """

    def __init__(self, X0: Array, input_lr: float = PAPER_INPUT_LR, *, per_sample: bool = False,
                 clip: tuple[float, float] | None = None) -> None:
        if backend.name() == "numpy":
            X0 = backend.to_host(X0)
        dtype = np.dtype(X0.dtype)
        if dtype.kind != "f":
            raise TypeError(f"SmoothGradient needs floating-point inputs (it adds gradients to them), got {dtype}; "
                            "convert the training set to float32 first")
        self.X = backend.xp().array(X0, dtype=dtype, copy=True)
        self.per_sample = bool(per_sample)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        if self.clip is not None and not self.clip[0] <= self.clip[1]:
            raise ValueError(f"clip must be (lo, hi) with lo <= hi, got {clip}")
        self.n_updates = 0
        self._warned = False
        self.input_lr = input_lr

    @property
    def input_lr(self) -> float:
        """lambda_bar of Eq. 15 / 21."""
        return self._input_lr

    @input_lr.setter
    def input_lr(self, value: float) -> None:
        self._input_lr = float(value)
        if not -1.0 <= self._input_lr <= 1.0 and not self._warned:
            self._warned = True
            warnings.warn(f"input_lr = {self._input_lr} is outside [-1, 1], the range the paper reports as working "
                          f"(it uses 0.2 for robustness, 1 for accuracy)", stacklevel=2)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def batch(self, idx: Array | slice) -> Array:
        """The current representation of the samples `idx`: X_t[idx] (a copy, on the backend)."""
        return self.X[_as_index(idx, backend.array_module(self.X))]

    def update(self, idx: Array | slice, dX: Array) -> None:
        """Eq. 15 / 21 on the batch's rows: X[idx] += input_lr * dX (see the class docstring).

        `dX` is dE/dX from the same forward/backward pass that produced the weight gradients, E being
        the batch-mean loss. `idx` must not repeat an index (see `input_update`).
        """
        if self._input_lr == 0:
            return
        scale = self._input_lr * (dX.shape[0] if self.per_sample else 1)
        xp = backend.array_module(self.X)
        idx = _as_index(idx, xp)
        input_update(self.X, idx, dX, scale)
        if self.clip is not None:
            self.X[idx] = xp.clip(self.X[idx], self.clip[0], self.clip[1])
        self.n_updates += 1

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Flat dict of host NumPy arrays: "X" (a copy), "input_lr", "per_sample", "clip" ((2,) or (0,)),
        "n_updates"; loadable from an .npz with allow_pickle=False.

        While no update has been applied (always, in a control run) X is still the training set itself,
        so "X" is left out: a control run's checkpoint does not carry a second copy of the data."""
        state = {} if self.n_updates == 0 else {"X": np.array(backend.to_host(self.X))}
        return state | {
            "input_lr": np.array(self._input_lr, dtype=np.float64),
            "per_sample": np.array(self.per_sample),
            "clip": np.array(self.clip if self.clip is not None else (), dtype=np.float64),
            "n_updates": np.array(self.n_updates, dtype=np.int64),
        }

    def _checked_state(self, d: Mapping, where: Where) -> dict:
        """For ``load_state_dict`` (nanosgm/plumbing/state.py): "input_lr", "per_sample", "clip" ((2,) or
        (0,)) and "n_updates" present, with their dtypes and finite values, and "X" (when present)
        floating, finite and shaped like this training set. A state without "X" (no update applied yet)
        restores X_0, which is what this instance holds as long as it has not been updated itself."""
        check_keys(d, ("X", "input_lr", "per_sample", "clip", "n_updates"), where, what="the SGM state",
                   optional=("X",))
        input_lr = float(check_array(d, "input_lr", where, shape=(), kind="f"))
        per_sample = bool(check_array(d, "per_sample", where, shape=(), kind="b"))
        n_updates = int(check_array(d, "n_updates", where, shape=(), kind="i"))
        clip = check_array(d, "clip", where, kind="f")
        if clip.shape not in ((2,), (0,)) or (clip.size and not clip[0] <= clip[1]):
            raise where.error(f"{where.key('clip')} is ({', '.join(f'{v:g}' for v in clip.ravel().tolist())}), "
                              "expected () or (lo, hi) with lo <= hi")
        if n_updates < 0:
            raise where.error(f"{where.key('n_updates')} is {n_updates}, a count must be >= 0")
        if "X" in d:
            X = check_array(d, "X", where, shape=tuple(self.X.shape), kind="f")
        elif n_updates != 0 or self.n_updates != 0:
            raise where.error(f"{where.key('X')} is missing but the representation was updated (n_updates "
                              f"{n_updates}, this instance {self.n_updates}); the state is incomplete or this "
                              "SmoothGradient is not fresh")
        else:
            X = None
        return {"input_lr": input_lr, "per_sample": per_sample, "n_updates": n_updates, "X": X,
                "clip": None if clip.size == 0 else (float(clip[0]), float(clip[1]))}

    def _assign_state(self, checked: dict) -> None:
        """X goes into this instance's array (its backend, its dtype); the rest are attributes."""
        if checked["X"] is not None:
            self.X[...] = backend.array_module(self.X).asarray(checked["X"], dtype=self.X.dtype)
        self.per_sample, self.clip, self.n_updates = checked["per_sample"], checked["clip"], checked["n_updates"]
        self.input_lr = checked["input_lr"]

    def __repr__(self) -> str:
        return (f"SmoothGradient(X={tuple(self.X.shape)} {self.X.dtype}, input_lr={self._input_lr}, "
                f"per_sample={self.per_sample}, clip={self.clip})")


class SGM(Method):
    """The Smooth Gradient Method as a training method: the plain pass, then Eq. 15 / 21 on the stored set.

    It owns the moving training set X_t (a :class:`SmoothGradient`, made by :meth:`start`); every batch
    is read from X_t, so an image carries every update it received in earlier epochs. ``input_lr`` is
    lambda-bar; ``per_sample`` scales each row by the batch size (each sample's own loss, see the module
    docstring); ``clip`` optionally keeps X_t in a range (off in the paper). ``input_lr = 0`` is the
    control, bit for bit. Label: ``sgm:L`` or ``sgm:L:per-sample``.
    """
    sgm: SmoothGradient | None          # X_t, made by start()
    X0: Array | None                    # X_0 on the backend, kept by start() when the inputs move

    def __init__(self, input_lr: float = PAPER_INPUT_LR, *, per_sample: bool = False,
                 clip: tuple[float, float] | None = None) -> None:
        self.input_lr, self.per_sample, self.clip = float(input_lr), bool(per_sample), clip
        self.sgm = self.X0 = None

    @property
    def _x_t(self) -> SmoothGradient:
        """``self.sgm`` for the methods fit calls after :meth:`start` made it (before, it is None)."""
        return cast(SmoothGradient, self.sgm)

    @property
    def label(self) -> str:
        return f"sgm:{format_number(self.input_lr)}" + (":per-sample" if self.per_sample else "")

    @property
    def moves_inputs(self) -> bool:
        return self.input_lr != 0

    @classmethod
    def parse(cls, args: list, clip: tuple[float, float] | None = None) -> "SGM":
        """``sgm:L`` / ``sgm:L:per-sample`` (L a finite, non-zero number)."""
        if len(args) not in (1, 2) or (len(args) == 2 and args[1] != "per-sample"):
            raise ValueError("sgm takes a lambda-bar and optionally per-sample")
        lam = parse_number(args[0], "lambda-bar")
        if lam == 0:
            raise ValueError("sgm:0 is the control; give a non-zero lambda-bar")
        return cls(lam, per_sample=len(args) == 2)

    def start(self, X_train: Array) -> Array:
        self.sgm = SmoothGradient(X_train, self.input_lr, per_sample=self.per_sample, clip=self.clip)
        self.X0 = backend.to_device(X_train) if self.moves_inputs else None
        return self.sgm.X

    def after_step(self, model: Sequential, loss_fn: SoftmaxCrossEntropy, idx: Array | slice, xb: Array, yb: Array,
                   dX: Array | None) -> None:
        self._x_t.update(idx, cast(Array, dX))       # Eq. 15 / 21 (dX: plain_pass's, never None)

    def epoch_record(self) -> dict:
        """How far SGM has moved the stored training set: max and mean |X_t - X_0|."""
        if self.X0 is None:
            return {}
        d = backend.array_module(self._x_t.X).abs(self._x_t.X - self.X0)
        return {"input_shift_max": significant(float(d.max()), 4), "input_shift_mean": significant(float(d.mean()), 4)}

    def divergence_hint(self) -> str:
        return f" or the input learning rate (--input-lr, now {self.input_lr:g})"

    def state_dict(self) -> dict:
        return self._x_t.state_dict()

    def _checked_state(self, d: Mapping, where: Where) -> dict:
        return self._x_t._checked_state(d, where)                    # the state is X_t's (SmoothGradient)

    def _assign_state(self, checked: dict) -> None:
        self._x_t._assign_state(checked)
