"""Checksum verification: every file is checked against its known digest before it is parsed.

IDX files are verified on their decompressed bytes (see :mod:`nanosgm.data.registry`), so
:func:`read_verified` decompresses ``.gz`` files first; a truncated or corrupted gzip stream is a
:class:`DataError` naming the file, never a zlib traceback.
"""
from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

from .errors import DataError, unreadable
from .registry import parse_digest

__all__ = ["hexdigest", "check_digest", "check_file_digest", "read_bytes", "read_verified", "file_digest"]


def hexdigest(data: bytes, algo: str) -> str:
    return hashlib.new(algo, data).hexdigest()


def file_digest(path: str | Path, algo: str, chunk: int = 1 << 20) -> str:
    """Digest of a file read in chunks (archives can be large); DataError if the file cannot be read."""
    h = hashlib.new(algo)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
    except OSError as exc:
        raise unreadable(path, exc) from exc
    return h.hexdigest()


def _mismatch(what: str, algo: str, expected: str, got: str, hint: str) -> DataError:
    return DataError(
        f"checksum mismatch for {what}: expected {algo} {expected}, got {got}. The file is corrupted, "
        f"truncated or not the official one. {hint}".rstrip()
    )


_HINT = ("Delete it and obtain it again (nanosgm downloads it when online), or put a good copy in a folder "
         "given by --data-dir / NANOSGM_DATA.")


def check_digest(data: bytes, expected: str, what: str, hint: str = _HINT) -> None:
    """Raise DataError unless ``data`` has digest ``expected`` (``"sha256:..."`` / ``"md5:..."``)."""
    algo, hexd = parse_digest(expected)
    got = hexdigest(data, algo)
    if got != hexd:
        raise _mismatch(what, algo, hexd, got, hint)


def check_file_digest(path: str | Path, expected: str, what: str | None = None, hint: str = _HINT) -> None:
    """Raise DataError unless the file at ``path`` has digest ``expected``."""
    algo, hexd = parse_digest(expected)
    got = file_digest(path, algo)
    if got != hexd:
        raise _mismatch(what or str(path), algo, hexd, got, hint)


def read_bytes(path: str | Path, gz: bool | None = None) -> bytes:
    """The (decompressed, if ``path`` ends in .gz or ``gz`` is true) content of a file.

    DataError either way: "corrupted or truncated" for a damaged gzip stream, what the system said
    (permission denied, a folder, ...) for a file that could not be read at all."""
    path = Path(path)
    if gz is None:
        gz = path.suffix == ".gz"
    try:
        f = gzip.open(path, "rb") if gz else open(path, "rb")
    except OSError as exc:                     # permission denied, a folder, ...: not a damaged file
        raise unreadable(path, exc) from exc
    try:
        with f:
            return f.read()
    except OSError as exc:
        if not gz or not isinstance(exc, gzip.BadGzipFile):   # the system refused, not a damaged stream
            raise unreadable(path, exc) from exc
        raise _damaged(path, exc) from exc
    except (EOFError, zlib.error) as exc:
        raise _damaged(path, exc) from exc


def _damaged(path: Path, exc: Exception) -> DataError:
    return DataError(f"cannot read {path}: {exc.__class__.__name__}: {exc}. The file is corrupted or truncated "
                     f"(an interrupted copy?). {_HINT}")


def read_verified(path: str | Path, expected: str, gz: bool | None = None) -> bytes:
    """Read ``path`` (decompressing .gz) and verify the content against ``expected``; return the bytes."""
    data = read_bytes(path, gz)
    suffix = " (decompressed content)" if (gz or (gz is None and Path(path).suffix == ".gz")) else ""
    check_digest(data, expected, f"{path}{suffix}")
    return data
