"""Plain-array ``.npz`` files: written atomically, read with ``allow_pickle=False`` and checked member by
member, so that a checkpoint can never execute code and a damaged file is refused with a message that
names it (a :class:`~nanosgm.plumbing.state.StateError`)."""
from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .files import atomic_write
from .state import StateError

__all__ = ["save_npz_atomic", "load_npz"]


def save_npz_atomic(path: str | Path, arrays: dict) -> None:
    """np.savez to a temporary file in the same folder, then rename: never a half-written file."""
    atomic_write(path, lambda f: np.savez(f, **arrays), suffix=".npz")


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")     # a zip archive (an .npz) with members / an empty one
_NPY_MAGIC = b"\x93NUMPY"                        # a single array written by np.save
_NPZ_HINT = "it may be truncated or corrupted (an interrupted copy?); use another copy, or write it again"


def load_npz(path: str | Path) -> dict:
    """Every array of a ``.npz`` as ``{name: ndarray}``, read with ``allow_pickle=False``.

    A missing file is FileNotFoundError; anything else that is not a readable plain-array ``.npz``
    (a folder, an unreadable file, a ``.npy`` or other file under an ``.npz`` name, a truncated or
    corrupted archive, pickled objects) is a :class:`~nanosgm.plumbing.state.StateError` naming the file.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"no such checkpoint: {path}")
    _check_npz_head(path)
    try:
        _check_archive(path)
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise StateError(f"{path} contains pickled Python objects; nanosgm never unpickles checkpoints "
                             f"(that could run code). Only plain-array .npz files written by nanosgm load.") from exc
        raise StateError(f"{path} is not a readable .npz file ({exc}); {_NPZ_HINT}") from exc
    except PermissionError as exc:
        raise StateError(f"{path} cannot be read: permission denied; check its permissions") from exc
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, NotImplementedError, RuntimeError) as exc:
        raise StateError(f"{path} is not a readable .npz file ({exc.__class__.__name__}: {exc}); {_NPZ_HINT}") from exc
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):        # np.load hands back the raw bytes of a member that is no .npy
            raise StateError(f"{path}: member {k!r} is not a NumPy array; not an .npz written by nanosgm")
    return arrays


def _check_archive(path: str) -> None:
    """StateError unless every member passes its CRC and the archive holds as many members as its end
    record states: NumPy reads a member only as far as its header says and zipfile checks a CRC only at a
    member's end, so a damaged header or central directory could otherwise drop or cut arrays silently."""
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
        if bad is not None:
            raise StateError(f"{path}: member {bad!r} fails its CRC check; {_NPZ_HINT}")
        stated, found = _stated_members(path), len(z.infolist())
    if stated is not None and stated != found:
        raise StateError(f"{path} states {stated} members but {found} can be read; {_NPZ_HINT}")


def _stated_members(path: str) -> int | None:
    """The member count in the zip's end-of-central-directory record (None for a ZIP64 archive)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 22 - 0xFFFF))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("no end-of-central-directory record")
    total = struct.unpack_from("<H", tail, at + 10)[0]
    return None if total == 0xFFFF else total


def _check_npz_head(path: str) -> None:
    """StateError unless ``path`` is a readable regular file that starts like a zip archive."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:                       # a dangling symbolic link, a link loop, a folder we may not enter
        raise StateError(f"{path} cannot be opened ({exc.strerror or exc}); "
                         f"{'it is a broken symbolic link; ' if os.path.islink(path) else ''}"
                         "point it at the real file") from exc
    if stat.S_ISDIR(mode):
        raise StateError(f"{path} is a folder, not an .npz file")
    if not stat.S_ISREG(mode):
        raise StateError(f"{path} is not a regular file (a pipe or device?), not an .npz file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except PermissionError as exc:
        raise StateError(f"{path} cannot be read: permission denied; check its permissions") from exc
    except OSError as exc:
        raise StateError(f"{path} cannot be read ({exc.__class__.__name__}: {exc})") from exc
    if head.startswith(_NPY_MAGIC):
        raise StateError(f"{path} holds a single .npy array (written by np.save), not an .npz archive of named "
                         "arrays; write it with Sequential.save or np.savez")
    if not head.startswith(_ZIP_MAGIC):
        what = "is empty" if not head else f"starts with {head!r}"
        raise StateError(f"{path} is not an .npz file (it {what}); {_NPZ_HINT}")
