"""CIFAR-10 / CIFAR-100 "python version" batches, read safely.

Format (https://www.cs.toronto.edu/~kriz/cifar.html): each batch file is a pickled dict with
``data`` (an N x 3072 uint8 array: 1024 red, 1024 green, 1024 blue values of a 32x32 image in
row-major order, i.e. already CHW), ``labels`` (CIFAR-10) or ``fine_labels`` / ``coarse_labels``
(CIFAR-100) as lists of ints, plus ``batch_label`` / ``filenames``. The originals were written by
Python 2, so keys may come back as ``bytes`` or ``str``; both are accepted.

Pickles are untrusted input: an ordinary ``pickle.load`` runs any callable the file names. Files are
therefore (1) checksum-verified first (by the caller, :mod:`nanosgm.data.verify`) and (2) decoded by
:class:`RestrictedUnpickler`, which resolves *no* global except the three NumPy names a pickled plain
numeric ``ndarray`` refers to (the real files store ``data`` as one) and ``_codecs.encode`` (how Python 3
writes ``bytes`` at pickle protocol 2), each replaced by a stand-in that only accepts the harmless
arguments that use needs; the array is then rebuilt from its raw bytes by this module, never by
NumPy's own unpickling code. Everything else (``os.system``, ``builtins.eval``, object arrays, a call
of ``numpy.ndarray``, ...) is refused with a :class:`DataError`.
"""
from __future__ import annotations

import codecs
import io
import math
import pickle
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, NoReturn, cast

import numpy as np

from .errors import DataError, unreadable

__all__ = ["RestrictedUnpickler", "safe_loads", "parse_batch", "parse_meta", "read_archive_members",
           "dump_batch"]

_SAFE_DTYPES = {np.dtype(t).str for t in (np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16,
                                            np.uint32, np.uint64, np.float32, np.float64)}
_SAFE_DTYPES |= {np.dtype(t).newbyteorder(">").str for t in (np.int16, np.int32, np.int64, np.uint16,
                                                             np.uint32, np.uint64, np.float32, np.float64)}
_SAFE_DTYPES |= {"u1", "i1", "i2", "i4", "i8", "u2", "u4", "u8", "f4", "f8"}


class _Refused:
    """What ``numpy.ndarray`` resolves to: usable only as ``_reconstruct``'s first argument, never called."""

    def __call__(self, *args, **kwargs) -> NoReturn:
        raise pickle.UnpicklingError("refused call of numpy.ndarray: arrays are only rebuilt from their data")


_NDARRAY = _Refused()


class _DtypeSpec:
    """Stands for ``numpy.dtype(code)`` while unpickling: a plain numeric code, and the byte order the
    pickle's state gives it. No real dtype's ``__setstate__`` ever sees the file's data."""

    def __init__(self, code: str) -> None:
        self.dtype = np.dtype(code)

    def __setstate__(self, state: object) -> None:
        # numpy writes (3, byteorder, None, None, None, -1, -1, 0) for a plain numeric dtype (4: + metadata)
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                and state[1] in ("|", "<", ">", "=") and state[2:5] == (None, None, None)
                and state[5:8] == (-1, -1, 0) and (len(state) == 8 or state[8] is None)):
            raise pickle.UnpicklingError(f"refused dtype state {state!r}: only plain numeric dtypes are allowed")
        if state[1] in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])


def _safe_dtype(obj: object, align: bool = False, copy: bool = False) -> _DtypeSpec:
    """``numpy.dtype`` restricted to plain numeric types (no object, void or structured dtypes)."""
    if not isinstance(obj, str) or obj not in _SAFE_DTYPES:
        raise pickle.UnpicklingError(f"refused dtype {obj!r}: only plain numeric dtypes are allowed")
    return _DtypeSpec(obj)


class _ArraySpec:
    """Stands for ``numpy.core.multiarray._reconstruct(ndarray, ...)`` while unpickling; its state
    (version, shape, dtype, Fortran order, raw bytes) is checked and turned into a fresh numeric
    ndarray by :func:`_materialise`. Object arrays cannot arise: their state holds a list, not bytes."""

    array = None

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise pickle.UnpicklingError("refused array state: not (1, shape, dtype, fortran, bytes)")
        _, shape, spec, fortran, raw = state
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise pickle.UnpicklingError(f"refused array shape {shape!r}")
        if not isinstance(spec, _DtypeSpec) or not isinstance(fortran, bool):
            raise pickle.UnpicklingError("refused array state: the dtype is not a plain numeric one")
        if isinstance(raw, str):              # Python 2 pickles: the bytes arrive as a latin-1 str
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError(f"refused array data of type {type(raw).__name__} (object arrays hold lists)")
        if len(raw) != math.prod(shape) * spec.dtype.itemsize:
            raise pickle.UnpicklingError(f"array data of {len(raw)} bytes does not fit shape {shape} of {spec.dtype}")
        self.array = np.ndarray(shape, dtype=spec.dtype, buffer=raw, order="F" if fortran else "C").copy(order="A")


def _safe_reconstruct(subtype: object, shape: object, dtype_code: object) -> _ArraySpec:
    """``numpy.core.multiarray._reconstruct`` restricted to base ``ndarray`` (numpy writes ``(ndarray, (0,), b'b')``)."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"refused array subtype {subtype!r}")
    if dtype_code not in ("b", b"b"):
        raise pickle.UnpicklingError(f"refused array type code {dtype_code!r}")
    return _ArraySpec()


def _safe_encode(text: object, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` restricted to str -> bytes with latin-1 (Python 3 protocol-2 bytes)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused _codecs.encode call")
    return codecs.encode(text, "latin1")


_ALLOWED = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("_codecs", "encode"): _safe_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR batches that refuses every global outside a tiny allow-list.

    The plain types the format uses (dict, list, str, bytes, int) need no global at all; the only
    globals resolved are those in ``_ALLOWED``, and none of them is a real NumPy callable: arrays are
    rebuilt by :class:`_ArraySpec` from raw bytes with a dtype from ``_safe_dtype`` (so no object arrays),
    and ``numpy.ndarray`` cannot be called.
    """

    def find_class(self, module: str, name: str) -> object:
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return fn


def _materialise(obj: object) -> Any:
    """``obj`` with every _ArraySpec replaced by its ndarray; UnpicklingError for any other placeholder."""
    if isinstance(obj, _ArraySpec):
        if obj.array is None:
            raise pickle.UnpicklingError("refused array without data")
        return obj.array
    if isinstance(obj, (_DtypeSpec, _Refused)):
        raise pickle.UnpicklingError(f"refused {type(obj).__name__.strip('_')} outside an array")
    if isinstance(obj, dict):
        return {_materialise(k): _materialise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def safe_loads(data: bytes, what: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (Python-2 strings decoded as latin-1)."""
    try:
        return _materialise(RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load())
    except pickle.UnpicklingError as exc:
        raise DataError(f"{what} was refused as unsafe or malformed: {exc}. CIFAR files must be the "
                        "official 'python version' batches; nothing else is unpickled.") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError,
            MemoryError, RecursionError) as exc:
        raise DataError(f"{what} is not a valid CIFAR pickle ({exc.__class__.__name__}: {exc}); "
                        "the file is corrupted or of the wrong kind") from exc


def _str_keys(d: object, what: str) -> dict:
    if not isinstance(d, dict):
        raise DataError(f"{what} does not hold a dict (found {type(d).__name__}); not a CIFAR batch")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}


def parse_batch(data: bytes, what: str, label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Decode one batch file into (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    d = _str_keys(safe_loads(data, what), what)
    if "data" not in d or label_key not in d:
        raise DataError(f"{what} lacks the '{'data' if 'data' not in d else label_key}' entry "
                        f"(keys: {', '.join(sorted(map(str, d)))}); not the expected CIFAR batch")
    raw = d["data"]
    if isinstance(raw, (bytes, bytearray)):
        raw = np.frombuffer(raw, dtype=np.uint8)
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8:
        raise DataError(f"{what}: 'data' must be a uint8 array, found {type(raw).__name__} "
                        f"{getattr(raw, 'dtype', '')}")
    if raw.size % 3072 != 0:
        raise DataError(f"{what}: 'data' has {raw.size} values, not a multiple of 3072 (3x32x32)")
    images = raw.reshape(-1, 3, 32, 32)
    labels = d[label_key]
    if not isinstance(labels, (list, np.ndarray)) or not all(isinstance(v, (int, np.integer)) for v in labels):
        raise DataError(f"{what}: '{label_key}' must be a list of ints")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (images.shape[0],):
        raise DataError(f"{what}: {images.shape[0]} images but {labels.size} labels")
    return images, labels


def parse_meta(data: bytes, what: str) -> dict:
    """Decode ``batches.meta`` / ``meta`` (label names) into a dict with str keys and values."""
    d = _str_keys(safe_loads(data, what), what)
    out = {}
    for k, v in d.items():
        if isinstance(v, list):
            v = [x.decode("latin1") if isinstance(x, bytes) else x for x in v]
        out[k] = v
    return out


def read_archive_members(archive: str | Path, folder: str, names: Iterable[str]) -> dict[str, bytes]:
    """Read the regular-file members ``folder/<name>`` of a .tar.gz without extracting to disk."""
    out = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in names:
                member_name = f"{folder}/{name}"
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise DataError(f"{archive} has no member {member_name}; not the expected CIFAR archive") from None
                if not member.isfile():
                    raise DataError(f"{archive}: member {member_name} is not a regular file; refused")
                f = cast("IO[bytes]", tar.extractfile(member))      # a regular file: not None
                out[name] = f.read()
    except DataError:
        raise
    except PermissionError as exc:
        raise unreadable(archive, exc) from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read archive {archive}: {exc.__class__.__name__}: {exc}; it is corrupted or "
                        "truncated. Delete it and download it again.") from exc
    return out


def dump_batch(images: np.ndarray, labels: Iterable[int], label_key: str = "labels", extra: dict | None = None,
               protocol: int = 2) -> bytes:
    """Pickle bytes in the CIFAR batch layout (used to write small test fixtures).

    ``images`` is uint8 (N, 3, 32, 32); keys are written as ``bytes`` like the Python-2 originals,
    ``data`` as an N x 3072 uint8 array.
    """
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.ndim != 4 or images.shape[1:] != (3, 32, 32):
        raise ValueError(f"images must be (N, 3, 32, 32), got {images.shape}")
    d = {b"batch_label": b"fixture batch", b"data": images.reshape(len(images), 3072),
         label_key.encode(): [int(v) for v in labels],
         b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(images))]}
    for k, v in (extra or {}).items():
        d[k.encode()] = v
    return pickle.dumps(d, protocol=protocol)
