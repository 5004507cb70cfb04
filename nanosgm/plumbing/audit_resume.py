"""The finished attacks of a robustness audit, kept on disk so that an interrupted audit resumes.

An audit of several networks runs long; a killed audit should lose at most the attack it was
running. After every attack (and every transfer pair) the audit stores which examples stayed correct, per
eps, in one JSON file (``robustness.partial.json`` beside the ``robustness.json`` to come), rewritten
atomically. A later audit with the same ``--out`` reads it back and skips what is there.

An entry is keyed by a digest of everything its result depends on: the attacked network's weights, the
images and labels, the attack's column and keyword arguments, the eps list, the batch size, the clip
range, the backend and the source of the code that computes attacks (:mod:`nanosgm.experiments.audit` says
which files). Every attack draws from its own generator seeded from the suite
(:class:`nanosgm.experiments.audit.Suite`), so skipping finished attacks does not change the random draws of
the others: a resumed audit gives the numbers an uninterrupted one gives (tests/experiments/test_robustness.py).
The file holds only JSON text (never unpickled or executed).

Every entry is sealed (:mod:`nanosgm.plumbing.seal`): it carries the sha256 of its own content, which
names the attack, repeats its key and holds its bits. An entry whose content no longer matches its digest
(a hand edit, damage, an entry copied under another key) is dropped and its attack is run again, with a
printed warning that names it: the entry only saves time, so recomputing it gives the true numbers
without asking the user to repair the file (and without losing its other entries). A file that cannot be
used at all (not JSON, another format, one written before entries were sealed) is not used either, with
a printed note; the audit then replaces it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .files import write_json_atomic
from .seal import RecordEdited, check_seal, seal

__all__ = ["FinishedAttacks", "PartialFileError", "digest", "PARTIAL_NAME"]

PARTIAL_NAME = "robustness.partial.json"
FORMAT = "nanosgm-audit-partial/2"         # /2: every entry sealed


class PartialFileError(ValueError):
    """The partial file's path holds something that is not a regular file."""


def digest(*parts) -> str:
    """A short sha256 of JSON-able parts and NumPy arrays (their dtype, shape and bytes).

    >>> digest("a", 1) == digest("a", 1) != digest("a", 2)
    True
    """
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class FinishedAttacks:
    """``get(key, eps_list, n)`` -> {eps: bool array (n,)} or None; ``put(key, got, label)`` stores and saves.

    ``path`` None keeps nothing (every ``get`` misses). ``loaded``: how many entries the file had;
    ``reused``: how many ``get`` calls it answered. A path that exists but is not a regular file (a folder,
    a pipe) is a :class:`PartialFileError`: it is neither read nor replaced. ``say``: called with each
    note and warning (one line each; default: printed on stderr).
    """

    def __init__(self, path: str | Path | None = None, say: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.say = say or _stderr
        self.entries = {}
        self.reused = 0
        if path is not None and os.path.lexists(path) and not os.path.isfile(path):
            raise PartialFileError(f"{path} exists but is not a regular file; remove it, or audit into "
                                   f"another --out")
        if path is not None and os.path.exists(path):
            self.entries = self._read(path)
        self.loaded = len(self.entries)

    def _read(self, path: str | Path) -> dict:
        """The entries of the file at ``path``, or {} with a note saying why it is not used."""
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError, RecursionError):        # unreadable, not JSON, absurdly nested
            doc, why = None, "cannot be read as JSON"
        if isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("entries"), dict):
            return doc["entries"]
        if doc is not None:
            found = doc.get("format") if isinstance(doc, dict) else None
            why = (f"was written by an older nanosgm ({found}, whose entries carry no content digest)"
                   if isinstance(found, str) and found.startswith(FORMAT.split("/")[0] + "/")
                   else "is not an audit's partial file")
        self.say(f"note: {path} {why}: its attacks are not reused but run again, and the file is replaced")
        return {}

    def get(self, key: str, eps_list: Iterable[float], n: int) -> dict[float, np.ndarray] | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        label = entry.get("attack") if isinstance(entry, dict) else None
        where = f"{self.path or 'the partial results'}: the entry of {label or key}"
        try:
            body = check_seal(entry, where)
        except RecordEdited:
            body = None
        if not isinstance(body, dict) or body.get("key") != key or not isinstance(body.get("correct"), dict):
            del self.entries[key]
            self.say(f"warning: {where} does not match its content digest (edited or damaged after it was "
                     f"written): it is not used, and the attack is run again")
            return None
        got = {}
        for e in eps_list:
            bits = body["correct"].get(repr(float(e)))
            if not isinstance(bits, str) or len(bits) != n or set(bits) - {"0", "1"}:
                return None
            got[float(e)] = np.frombuffer(bits.encode(), dtype=np.uint8) == ord("1")
        self.reused += 1
        return got

    def put(self, key: str, got: dict[float, np.ndarray], label: str | None = None) -> None:
        """Store ``got`` ({eps: per-example bool}) under ``key``, sealed; ``label`` names the attack in messages."""
        bits = {repr(float(e)): "".join("1" if c else "0" for c in np.asarray(v, bool)) for e, v in got.items()}
        self.entries[key] = seal({"attack": label or key, "key": key, "correct": bits})
        if self.path is not None:
            write_json_atomic(self.path, {"format": FORMAT, "entries": self.entries})

    def holds(self, key: str) -> bool:
        """Whether an entry is stored under ``key`` (its seal and shape are checked by ``get``)."""
        return key in self.entries

    def remove(self) -> None:
        """Delete the file (once the finished audit's robustness.json is written)."""
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)
