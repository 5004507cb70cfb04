"""The one exception type of ``nanosgm.data``."""
from __future__ import annotations

__all__ = ["DataError"]


class DataError(RuntimeError):
    """A dataset file is missing, corrupted, truncated, of the wrong kind or refused as unsafe.

    The message always names the file and says what to do about it (which file is expected, its
    checksum, where to put it, ``--data-dir`` / ``NANOSGM_DATA``).
    """
