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
The file holds only JSON text (never unpickled or executed); entries that do not decode to the expected shape
are ignored and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .files import write_json_atomic

__all__ = ["FinishedAttacks", "PartialFileError", "digest", "PARTIAL_NAME"]

PARTIAL_NAME = "robustness.partial.json"
FORMAT = "nanosgm-audit-partial/1"


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


class FinishedAttacks:
    """``get(key, eps_list, n)`` -> {eps: bool array (n,)} or None; ``put(key, got)`` stores and saves.

    ``path`` None keeps nothing (every ``get`` misses). ``loaded``: how many entries the file had;
    ``reused``: how many ``get`` calls it answered. A path that exists but is not a regular file (a folder,
    a pipe) is a :class:`PartialFileError`: it is neither read nor replaced.
    """

    def __init__(self, path=None):
        self.path = path
        self.entries = {}
        self.reused = 0
        if path is not None and os.path.lexists(path) and not os.path.isfile(path):
            raise PartialFileError(f"{path} exists but is not a regular file; remove it, or audit into "
                                   f"another --out")
        if path is not None and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    doc = json.load(f)
            except (OSError, ValueError, RecursionError):        # unreadable, not JSON, absurdly nested
                doc = None
            if isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("entries"), dict):
                self.entries = doc["entries"]
        self.loaded = len(self.entries)

    def get(self, key: str, eps_list, n: int):
        entry = self.entries.get(key)
        if not isinstance(entry, dict):
            return None
        got = {}
        for e in eps_list:
            bits = entry.get(repr(float(e)))
            if not isinstance(bits, str) or len(bits) != n or set(bits) - {"0", "1"}:
                return None
            got[float(e)] = np.frombuffer(bits.encode(), dtype=np.uint8) == ord("1")
        self.reused += 1
        return got

    def put(self, key: str, got) -> None:
        self.entries[key] = {repr(float(e)): "".join("1" if c else "0" for c in np.asarray(v, bool))
                             for e, v in got.items()}
        if self.path is not None:
            write_json_atomic(self.path, {"format": FORMAT, "entries": self.entries})

    def remove(self) -> None:
        """Delete the file (once the finished audit's robustness.json is written)."""
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)
