"""What :func:`nanosgm.methods.fit` keeps besides the weights: the best epoch, the history, end-of-epoch
checkpoints and resuming from them, Figures 5-6 snapshots, progress and log lines.

The checkpoint is one dict of named parts (:mod:`nanosgm.plumbing.checkpoint`): the model, the
optimizer, the training method (e.g. SGM's X_t), the best weights so far, the snapshots, and ``meta``
(epoch, history, the run's configuration, the BLAS thread count it was trained with). Resuming checks
every part before it loads any: the configuration, that the checkpoint holds no more epochs than the
run asks for, and the BLAS thread count (float32 sums depend on it, so a run resumes with the count it
was trained with; a checkpoint that does not record it resumes with a note saying so).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, cast

import numpy as np

from .. import backend
from ..attacks import accuracy
from ..plumbing import checkpoint as ckpt
from ..plumbing.blas import blas_threads

if TYPE_CHECKING:
    from ..layers import Sequential
    from ..layers.base import Array
    from ..optim import Optimizer
    from ..plumbing.state import CheckedState
    from .base import Method

__all__ = ["RunKeeping", "FitResult", "Interrupted", "SNAPSHOT_EPOCHS"]

SNAPSHOT_EPOCHS = 9         # Figures 5-6: X_t - X_0 after each of the first nine epochs


@dataclass
class RunKeeping:
    """The run-keeping knobs of :func:`fit`, gathered (all optional).

    checkpoint: path of an ``.npz`` written atomically after every epoch; ``resume=True`` continues from
        it if it exists, when its ``config`` equals this one except for the keys in ``free_config_keys``.
    test: (X_test, y_test) whose error is recorded after every epoch (the paper's Figures 1-2).
    snapshot_rows: keep X_t - X_0 of the first N training images after each of the first nine epochs
        (Figures 5-6; only for a method that moves its inputs).
    callback: called after every epoch as ``callback(epoch, model, X, record)`` (X: the training set the
        batches are read from, on the backend: SGM's X_t).
    watch: called after every epoch as ``watch(epoch, model) -> dict``, before the epoch's checkpoint, and
        its entries added to the epoch's record (so they are in the history a resumed run continues): a
        measurement taken while training goes on (e.g. FGSM every ten epochs). It must leave the model's
        weights and buffers as they were.
    progress: a progress bar per epoch (off when not a terminal); log: one line per epoch (None: silent).
    """
    checkpoint: str | None = None
    resume: bool = False
    config: dict | None = None
    free_config_keys: tuple = ("epochs",)
    test: tuple | None = None
    snapshot_rows: int = 0
    callback: Callable | None = None
    watch: Callable | None = None
    progress: bool = True
    log: Callable | None = print

    def say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)


@dataclass
class FitResult:
    """What :func:`fit` returns.

    ``history``: one dict per epoch: epoch (1-based), lr, train_loss, val_error_pct, test_error_pct,
    seconds, and what the method adds (SGM: input_shift_max / input_shift_mean, max and mean |X_t - X_0|
    over the training set). ``train_inputs``: the training set after the last epoch (SGM: X_t; host
    NumPy). ``best_epoch``: the epoch whose weights the model holds at the end (best validation error).
    ``snapshots``: Figures 5-6 data when asked. ``last_state``: the model's state dict after the last
    epoch (the model itself ends with the best epoch's weights).
    """
    history: list = field(default_factory=list)
    train_inputs: np.ndarray | None = None
    best_epoch: int = -1
    best_val_error_pct: float = math.nan
    snapshots: dict | None = None
    last_state: dict | None = None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`; ``saved_epoch`` finished epochs are in the checkpoint on disk."""

    def __init__(self, checkpoint: str | None, saved_epoch: int) -> None:
        super().__init__(checkpoint, saved_epoch)
        self.checkpoint, self.saved_epoch = checkpoint, saved_epoch

    @classmethod
    def after(cls, checkpoint: str | None) -> "Interrupted":
        return cls(checkpoint, ckpt.saved_epoch(checkpoint) if checkpoint else 0)


@dataclass
class Run:
    """The state of one fit() call that the loop and the keeping share."""
    model: Sequential
    optimizer: Optimizer
    method: Method
    X: Array                        # the training set the batches are read from (SGM: X_t), on the backend
    y: Array
    keeping: RunKeeping
    result: FitResult
    best_state: dict | None = None
    loss_ref: float | None = None
    start_epoch: int = 0


def start_run(model: Sequential, optimizer: Optimizer, method: Method, X_train: Array, y_train: Array,
              keeping: RunKeeping, epochs: int) -> Run:
    """A Run for fit: the method started on the training set, snapshots prepared, resumed if asked."""
    n = int(X_train.shape[0])
    if int(y_train.shape[0]) != n:
        raise ValueError(f"X_train has {n} samples but y_train has {int(y_train.shape[0])}")
    y = backend.to_device(np.asarray(backend.to_host(y_train)).astype(np.int64))
    run = Run(model, optimizer, method, method.start(X_train), y, keeping, FitResult())
    if keeping.snapshot_rows and method.moves_inputs:
        k = min(int(keeping.snapshot_rows), n)
        run.result.snapshots = {"indices": list(range(k)), "epochs": [],
                                "X0": np.array(backend.to_host(X_train[:k])), "deltas": []}
    path = keeping.checkpoint
    if keeping.resume and path and os.path.exists(path):
        _resume(run, path, epochs)
        keeping.say(f"resumed from {path}: {run.start_epoch} of {epochs} epochs done")
    return run


def error_pct(model: Sequential, X: Array | None, y: Array | None) -> float | None:
    """The error (%) of ``model`` on (X, y), or None without X (y always comes with X)."""
    return None if X is None else round(100.0 - 100.0 * accuracy(model, X, cast("Array", y), batch_size=500), 4)


def end_epoch(run: Run, epoch: int, record: dict) -> None:
    """Keep the best epoch, take the Figures 5-6 snapshot, write the checkpoint."""
    res = run.result
    res.history.append(record)
    current = res.last_state = run.model.state_dict()
    # keep the best validation epoch; without a validation set, the latest epoch
    if run.best_state is None or record["val_error_pct"] is None or record["val_error_pct"] < res.best_val_error_pct:
        res.best_epoch, run.best_state = epoch + 1, current
        if record["val_error_pct"] is not None:
            res.best_val_error_pct = record["val_error_pct"]
    snaps = res.snapshots
    if snaps is not None and epoch < SNAPSHOT_EPOCHS:
        k = len(snaps["indices"])
        snaps["epochs"].append(epoch + 1)
        snaps["deltas"].append(np.array(backend.to_host(run.X[:k]), dtype=np.float64) - snaps["X0"])
    if run.keeping.checkpoint:
        ckpt.save(run.keeping.checkpoint, _parts(run, epoch, current))


def _parts(run: Run, epoch: int, current: dict) -> dict:
    res = run.result
    parts = {"model": current, "optim": run.optimizer.state_dict(), "method": run.method.state_dict(),
             "best": run.best_state,
             "meta": {"epoch": epoch + 1, "best_epoch": res.best_epoch, "loss_ref": run.loss_ref,
                      "best_val_error_pct": None if math.isnan(res.best_val_error_pct) else res.best_val_error_pct,
                      "history": res.history, "config": run.keeping.config or {}, "blas_threads": blas_threads()}}
    if res.snapshots is not None:
        s = res.snapshots
        parts["snap"] = {"X0": s["X0"], "epochs": np.asarray(s["epochs"], dtype=np.int64),
                         "deltas": np.stack(s["deltas"]) if s["deltas"] else np.zeros((0,) + s["X0"].shape)}
    return parts


def _resume(run: Run, path: str, epochs: int) -> None:
    """Restore ``run`` from the checkpoint at ``path`` for a run of ``epochs`` epochs (all parts checked
    before anything changes)."""
    parts = ckpt.load(path)
    meta = parts["meta"]
    keep = run.keeping
    if keep.config is not None:
        ckpt.check_config(path, meta["config"], json.loads(json.dumps(keep.config)), keep.free_config_keys)
    if meta["epoch"] > epochs:
        raise ckpt.ConfigMismatch(f"{path} holds {meta['epoch']} finished epochs, more than the {epochs} asked for; "
                                  f"resume it with --epochs {meta['epoch']} or more, or use another --out folder")
    note = _check_threads(path, meta)
    parts.setdefault("method", {})                # a method without state saves no arrays
    checks: tuple[tuple[CheckedState, str, dict[str, Any]], ...] = (
        (run.model, "model", {}), (run.optimizer, "optim", {"model": run.model}), (run.method, "method", {}))
    for obj, part, kw in checks:          # every part is checked before any is loaded: all or nothing
        obj.check_state_dict(parts[part], source=path, prefix=f"{part}.", **kw)
    if parts.get("best"):
        run.model.check_state_dict(parts["best"], source=path, prefix="best.")
    for obj, part, kw in checks:
        obj.load_state_dict(parts[part], source=path, prefix=f"{part}.", **kw)
    run.best_state = parts.get("best") or None
    res = run.result
    res.last_state = parts["model"]
    res.history = meta["history"]
    res.best_epoch = int(meta["best_epoch"])
    res.best_val_error_pct = math.nan if meta["best_val_error_pct"] is None else float(meta["best_val_error_pct"])
    run.loss_ref = meta["loss_ref"]
    run.start_epoch = int(meta["epoch"])
    if res.snapshots is not None and "snap" in parts:
        res.snapshots["epochs"] = [int(e) for e in parts["snap"]["epochs"]]
        res.snapshots["deltas"] = list(parts["snap"]["deltas"])
    if note:
        keep.say(note)


def _check_threads(path: str, meta: dict) -> str | None:
    """Refuse a checkpoint trained with another BLAS thread count than this process has; a note (or None)
    when the count cannot be compared."""
    now = blas_threads()
    if "blas_threads" not in meta:
        return (f"note: {path} was written before checkpoints kept their BLAS thread count: its thread count was "
                f"not recorded, so it resumes with this process's {now} (the last digits may differ)")
    saved = meta["blas_threads"]
    if saved is not None and now is not None and saved != now:
        raise ckpt.ConfigMismatch(f"{path} was trained with {saved} BLAS threads and this process has {now}; "
                                  f"float32 sums depend on the thread count: resume with --threads {saved}")
    return None


def epoch_line(r: dict) -> str:
    """One epoch's record as a log line."""
    parts = [f"epoch {r['epoch']:3d}", f"lr {r['lr']:.0e}", f"train loss {r['train_loss']:.4f}"]
    if r["val_error_pct"] is not None:
        parts.append(f"val error {r['val_error_pct']:.2f}%")
    if r["test_error_pct"] is not None:
        parts.append(f"test error {r['test_error_pct']:.2f}%")
    if "input_shift_max" in r:
        parts.append(f"|X_t-X_0| max {r['input_shift_max']:.2g}")
    parts.append(f"{r['seconds']:.1f}s")
    return " | ".join(parts)
