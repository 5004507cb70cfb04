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
that the file is a checkpoint of this format with every meta key; each part is then checked by the
``load_state_dict`` it is given to.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .errors import NanosgmError
from .npz import load_npz, save_npz_atomic

__all__ = ["FORMAT", "META_KEYS", "CheckpointError", "ConfigMismatch", "save", "load", "saved_epoch",
           "check_config"]

FORMAT = "nanosgm-checkpoint/3"
OLDER = ("nanosgm-checkpoint/1", "nanosgm-checkpoint/2")     # other layouts: refused with a message of their own
META_KEYS = ("format", "epoch", "best_epoch", "best_val_error_pct", "history", "config", "loss_ref")


class CheckpointError(NanosgmError, ValueError):
    """A checkpoint file that cannot be resumed from (damaged, incomplete, another format)."""


class ConfigMismatch(NanosgmError, ValueError):
    """A checkpoint (or protocol) written by a run with a different configuration."""


def save(path, parts: dict) -> None:
    """Write ``parts`` (part name -> dict of arrays; ``"meta"`` -> a JSON-able dict) to ``path`` atomically."""
    arrays = {}
    for part, d in parts.items():
        if part == "meta":
            arrays["meta.json"] = np.array(json.dumps(dict(d, format=FORMAT)))
            continue
        for k, v in (d or {}).items():
            arrays[f"{part}.{k}"] = np.asarray(v)
    save_npz_atomic(path, arrays)


def load(path) -> dict:
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


def _meta(path, raw) -> dict:
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
    return meta


def saved_epoch(path) -> int:
    """The number of finished epochs the checkpoint at ``path`` holds (0 when there is none or it is unreadable)."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as f:
            return int(json.loads(str(f["meta.json"]))["epoch"])
    except Exception:          # no file, or a damaged one: nothing resumable is saved
        return 0


def check_config(path, saved: dict, now: dict, free=()) -> None:
    """Raise :class:`ConfigMismatch` when ``saved`` and ``now`` differ in any key not in ``free``."""
    keys = (set(saved) | set(now)) - set(free)
    diff = {k: (saved.get(k), now.get(k)) for k in sorted(keys) if saved.get(k) != now.get(k)}
    if diff:
        shown = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, b_a in diff.items() for a, b in [b_a])
        raise ConfigMismatch(f"{path} was written by a run with a different configuration ({shown}); use "
                             f"another --out folder, or --overwrite to replace it")
