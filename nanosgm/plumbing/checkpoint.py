"""The end-of-epoch checkpoint of :func:`nanosgm.methods.fit`: one dict of named parts in one ``.npz``.

    parts = {"model":  model.state_dict(),       # the weights after the epoch
             "optim":  optimizer.state_dict(),   # its moments / WAME's zeta ...
             "method": method.state_dict(),      # e.g. SGM's X_t (left out while no update was applied)
             "best":  best weights so far,
             "snap":  {"deltas": ...},           # Figures 5-6 snapshots (optional)
             "meta":  {"format", "epoch", "best_epoch", "best_val_error_pct", "history", "config", ...}}
    save(path, parts); parts = load(path)

Arrays are stored as ``"<part>.<key>"``; ``meta`` is one JSON string (``"meta.json"``). The file is
written atomically (temporary file + rename) and read with ``allow_pickle=False``. :func:`load` checks
that the file is a checkpoint of this format with every meta key, each meta value of its type and range
and consistent with the others (``epoch`` = the length of ``history``, ``best_epoch`` one of them, ...);
each part is then checked by the ``load_state_dict`` it is given to. A save that fails (a full disk)
raises :class:`CheckpointWriteError` naming the file; the checkpoint already there is left intact.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import NanosgmError
from .npz import load_npz, save_npz_atomic

__all__ = ["FORMAT", "META_KEYS", "HISTORY_KEYS", "CheckpointError", "CheckpointWriteError", "ConfigMismatch",
           "save", "load", "saved_epoch", "check_config"]

FORMAT = "nanosgm-checkpoint/3"
OLDER = ("nanosgm-checkpoint/1", "nanosgm-checkpoint/2")     # other layouts: refused with a message of their own
META_KEYS = ("format", "epoch", "best_epoch", "best_val_error_pct", "history", "config", "loss_ref")
# what fit records for every epoch (a method adds its own keys)
HISTORY_KEYS = ("epoch", "lr", "train_loss", "val_error_pct", "test_error_pct", "seconds")
_DAMAGED = ("the checkpoint is damaged or was edited; use the file the run wrote, or start the run again with "
            "--overwrite")


class CheckpointError(NanosgmError, ValueError):
    """A checkpoint file that cannot be resumed from (damaged, incomplete, another format)."""


class CheckpointWriteError(NanosgmError, OSError):
    """A checkpoint that could not be written (a full disk, ...); the one already at ``path`` is intact."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"could not write {path}: {reason}")
        self.path, self.reason = os.fspath(path), reason


class ConfigMismatch(NanosgmError, ValueError):
    """A checkpoint (or protocol) written by a run with a different configuration."""


def save(path: str | Path, parts: dict) -> None:
    """Write ``parts`` (part name -> dict of arrays; ``"meta"`` -> a JSON-able dict) to ``path`` atomically."""
    arrays = {}
    for part, d in parts.items():
        if part == "meta":
            arrays["meta.json"] = np.array(json.dumps(dict(d, format=FORMAT)))
            continue
        for k, v in (d or {}).items():
            arrays[f"{part}.{k}"] = np.asarray(v)
    try:
        save_npz_atomic(path, arrays)
    except OSError as exc:
        raise CheckpointWriteError(path, exc.strerror or str(exc)) from exc


def load(path: str | Path) -> dict:
    """The parts :func:`save` wrote, as {part: {key: array}} plus ``"meta"`` as a dict. Raises
    :class:`CheckpointError` (naming the file) for anything that is not a complete checkpoint."""
    path = os.fspath(path)
    try:
        arrays = load_npz(path)
    except (ValueError, OSError) as exc:
        raise CheckpointError(str(exc)) from exc
    meta = _meta(path, arrays.pop("meta.json", None))
    parts = {"meta": meta}
    for key, value in arrays.items():
        part, _, name = key.partition(".")
        parts.setdefault(part, {})[name] = value
    for part in ("model", "optim"):
        if part not in parts:
            raise CheckpointError(f"{path} has no {part!r} part; the checkpoint is incomplete (use --overwrite "
                                  f"to start the run again)")
    return parts


def _meta(path: str, raw: np.ndarray | None) -> dict:
    if raw is None:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (no meta.json; an older nanosgm or another "
                              f"program wrote it); start the run again with --overwrite")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: meta.json is not valid JSON ({exc}); the checkpoint is damaged") from exc
    if isinstance(meta, dict) and meta.get("format") in OLDER:
        raise CheckpointError(f"{path} was written by an earlier nanosgm ({meta['format']}; this one reads {FORMAT}) "
                              f"and cannot be resumed; start the run again with --overwrite")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint; start the run again with --overwrite")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: meta.json lacks {', '.join(missing)}; the checkpoint is damaged")
    _check_meta(path, meta)
    return meta


def _check_meta(path: str, meta: dict) -> None:
    """Raise CheckpointError unless every meta value has its type and range and agrees with the others."""
    def bad(key: str, problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: meta.json's {key!r} {problem}; {_DAMAGED}")
    epoch, history, best = meta["epoch"], meta["history"], meta["best_epoch"]
    if not _whole(epoch) or epoch < 1:
        raise bad("epoch", f"is {_shown(epoch)}, not a whole number >= 1")
    if not isinstance(history, list):
        raise bad("history", f"is {_shown(history)}, not a list of epoch records")
    if len(history) != epoch:
        raise bad("epoch", f"is {epoch} but its history holds {_epochs(len(history))}")
    for i, record in enumerate(history):
        problem = _history_problem(record, i + 1)
        if problem:
            raise bad("history", f"epoch {i + 1} {problem}")
    if not _whole(best) or not 1 <= best <= epoch:
        raise bad("best_epoch", f"is {_shown(best)}, not a whole number in 1..{epoch}")
    best_val = meta["best_val_error_pct"]
    if best_val is not None and not _finite(best_val):
        raise bad("best_val_error_pct", f"is {_shown(best_val)}, not a finite number or null")
    if best_val != history[best - 1]["val_error_pct"]:
        raise bad("best_val_error_pct", f"is {_shown(best_val)} but epoch {best}'s val_error_pct is "
                                        f"{_shown(history[best - 1]['val_error_pct'])}")
    if meta["loss_ref"] is not None and not _finite(meta["loss_ref"]):
        raise bad("loss_ref", f"is {_shown(meta['loss_ref'])}, not a finite number or null")
    if not isinstance(meta["config"], dict):
        raise bad("config", f"is {_shown(meta['config'])}, not a dict")
    # the BLAS thread count it was trained with (None: unknown; files written before it was kept lack it)
    threads = meta.get("blas_threads")
    if threads is not None and (not _whole(threads) or threads < 1):
        raise bad("blas_threads", f"is {_shown(threads)}, not a whole number >= 1 or null")


def _history_problem(record: object, epoch: int) -> str | None:
    """What is wrong with fit's record of ``epoch`` (None: nothing)."""
    if not isinstance(record, dict):
        return f"is {_shown(record)}, not a dict"
    missing = [k for k in HISTORY_KEYS if k not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    if record["epoch"] != epoch or not _whole(record["epoch"]):
        return f"is numbered {_shown(record['epoch'])}"
    for key in HISTORY_KEYS[1:]:
        optional = key in ("val_error_pct", "test_error_pct")
        if not (_finite(record[key]) or (optional and record[key] is None)):
            return f"has {key} {_shown(record[key])}, not a finite number"
    return None


def _whole(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _shown(x: object) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def saved_epoch(path: str | Path) -> int:
    """The number of finished epochs the checkpoint at ``path`` holds (0 when there is none or it is unreadable)."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as f:
            return _meta(os.fspath(path), f["meta.json"])["epoch"]
    except Exception:          # no file, or a damaged one: nothing resumable is saved
        return 0


def check_config(path: str | Path, saved: dict, now: dict, free: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigMismatch` when ``saved`` and ``now`` differ in any key not in ``free``."""
    keys = (set(saved) | set(now)) - set(free)
    diff = {k: (saved.get(k), now.get(k)) for k in sorted(keys) if saved.get(k) != now.get(k)}
    if diff:
        shown = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, b_a in diff.items() for a, b in [b_a])
        raise ConfigMismatch(f"{path} was written by a run with a different configuration ({shown}); use "
                             f"another --out folder, or --overwrite to replace it")
