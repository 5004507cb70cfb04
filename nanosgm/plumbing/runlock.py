"""One run owns its folder for its whole life: an exclusive lock file (``fcntl.flock``).

    with RunLock("runs/mnist-cnn"):       # raises FolderBusy if another process holds the folder
        ...train, write checkpoint.npz, results.json ...

The lock is held on an open file, ``<folder>/.lock``, which records the holder's pid and command. The
operating system releases a ``flock`` when its process ends in any way (exit, crash, SIGKILL), so a lock
can never go stale; the file itself stays behind and is harmless. A folder the lock created is removed
again, lock file and all, when the block ends in an error before anything else was written into it (a run
refused at its start leaves nothing behind). Where ``fcntl`` does not exist (Windows) the lock is a no-op.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Literal, TextIO

fcntl: ModuleType | None        # None where the module does not exist (Windows)
try:
    import fcntl
except ImportError:            # pragma: no cover - Windows
    fcntl = None

from .errors import FolderBusy

__all__ = ["RunLock", "FolderBusy", "LOCK_NAME"]

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive, non-blocking lock on ``folder`` (created if missing); a context manager."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._f: TextIO | None = None
        self._created = False       # whether acquire made the folder

    def acquire(self) -> "RunLock":
        self._created = not os.path.isdir(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        f = open(self.path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "unknown process"
                f.close()
                raise FolderBusy(f"{self.folder} is in use by another nanosgm run ({holder}); wait for it to "
                                 f"finish, stop it, or write elsewhere with --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n")
        f.flush()
        self._f = f
        return self

    @property
    def held(self) -> bool:
        return self._f is not None

    def release(self) -> None:
        if self._f is not None:
            if fcntl is not None:
                fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            self._f.close()
            self._f = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, exc_type, *exc) -> Literal[False]:
        if exc_type is not None and self._created:
            self._remove_made_folder()
        self.release()
        return False

    def _remove_made_folder(self) -> None:
        """A refused run in a folder it made: the lock file goes while the lock is still held (a run that opens
        it after that makes a new one), then the folder, once empty (another run may have written into it)."""
        try:
            if os.listdir(self.folder) == [LOCK_NAME]:
                os.remove(self.path)
                os.rmdir(self.folder)
        except OSError:
            pass
