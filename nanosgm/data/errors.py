"""The one exception type of ``nanosgm.data``."""
from __future__ import annotations

from pathlib import Path

from ..plumbing.errors import NanosgmError

__all__ = ["DataError", "unreadable"]


class DataError(NanosgmError, RuntimeError):
    """A dataset file is missing, corrupted, truncated, of the wrong kind or refused as unsafe.

    The message always names the file and says what to do about it (which file is expected, its
    checksum, where to put it, ``--data-dir`` / ``NANOSGM_DATA``).
    """


def unreadable(path: str | Path, exc: OSError) -> DataError:
    """The DataError for a file the system would not let us read (``exc``): says what it is, not "corrupted"."""
    if isinstance(exc, PermissionError):
        return DataError(f"cannot read {path}: permission denied; make it readable (chmod a+r {path}) or point "
                         "--data-dir / NANOSGM_DATA at a readable copy")
    if isinstance(exc, IsADirectoryError):
        return DataError(f"cannot read {path}: it is a folder, where a data file is expected; fix or remove it")
    return DataError(f"cannot read {path}: {exc.__class__.__name__}: {exc.strerror or exc}; check the file and "
                     "the disk, or point --data-dir / NANOSGM_DATA at another copy")
