"""The IDX file format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian uint32
dimensions, then the values in row-major order. Images are ``idx3`` (N, 28, 28) uint8, labels
``idx1`` (N,) uint8. Every malformation is a :class:`DataError` naming the file.
"""
from __future__ import annotations

import struct

import numpy as np

from .errors import DataError

__all__ = ["parse_idx", "encode_idx"]

_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, what: str = "IDX data", ndim: int | None = None) -> np.ndarray:
    """Decode IDX bytes into an array (native byte order). ``ndim``, if given, is enforced."""
    if len(data) < 4:
        raise DataError(f"{what} is not an IDX file: only {len(data)} bytes")
    zero0, zero1, code, nd = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in _TYPES or nd == 0:
        raise DataError(f"{what} is not an IDX file (bad magic number {data[:4].hex()}); "
                        "expected a file such as train-images-idx3-ubyte")
    if ndim is not None and nd != ndim:
        raise DataError(f"{what} has {nd} dimensions, expected {ndim} (images are idx3, labels idx1)")
    header = 4 + 4 * nd
    if len(data) < header:
        raise DataError(f"{what} is truncated inside its header")
    dims = struct.unpack(f">{nd}I", data[4:header])
    dtype = _TYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{what} has {len(data)} bytes but its header {dims} says {expected}: "
                        "the file is truncated or has trailing garbage")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def encode_idx(arr: np.ndarray) -> bytes:
    """IDX bytes for a uint8 array (used to write test fixtures; the inverse of :func:`parse_idx`)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
