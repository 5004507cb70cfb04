"""Files that are never half-written: write to a temporary file in the same folder, then rename.

``os.replace`` is atomic on POSIX and Windows, so a reader sees the old file or the new one, never a
partial one, and an interrupted run (Ctrl-C, a crash, a full disk) leaves the previous file intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def ordinary_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (0o666 less the umask).

    ``tempfile.mkstemp`` creates its files 0o600 (private); a result renamed into place from one
    should get the permissions every other file the user writes gets."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[IO], object], *, binary: bool = True, suffix: str = "") -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())       # the data is on disk before the name points at it
        os.chmod(tmp, ordinary_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str | Path, obj) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    def write(f: IO[str]) -> None:
        json.dump(obj, f, indent=2)
        f.write("\n")

    atomic_write(path, write, binary=False, suffix=".json")
