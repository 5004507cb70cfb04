"""One place that chooses the array library: NumPy (CPU) or CuPy (GPU), or the CPU stand-in for CuPy.

Every layer, optimizer and attack in nanosgm is written once against the array API that NumPy and
CuPy share. They ask this module for the array module instead of importing numpy directly:

    from nanosgm import backend
    xp = backend.xp()            # numpy or cupy, whichever is active
    xp = backend.array_module(a) # the module that owns array `a`

Choosing the backend:
    * the environment variable ``NANOSGM_BACKEND=numpy|cupy``, read at import and applied at the first
      use of the backend (``name()``, ``xp()``, ``seed()``, ...): an unknown name, or cupy where it cannot
      run, lets ``import nanosgm`` succeed and makes that first use raise a :class:`BackendError` that
      names the variable (and every later use, until ``use()`` chooses a backend); or
    * ``backend.use("cupy")`` at run time (``python -m nanosgm.train --backend cupy`` does this); it
      overrides the variable.
    * ``backend.use("standin")`` (or ``NANOSGM_BACKEND=standin``): :mod:`nanosgm.standin`, a CPU stand-in for
      CuPy that refuses host arrays as CuPy does and counts kernel launches and host reads (the tests, ``bench
      --launches``).

Device arrays: an array belongs to a device module (``cupy``, ``nanosgm.standin``: :data:`DEVICE_MODULES`)
when it is an instance of that module's ``ndarray``; a module is asked only once it has been imported (no
array of it can exist before), so recognising arrays never imports cupy. :func:`array_module`,
:func:`is_gpu_array`, :func:`to_host` and :func:`check_same_backend` all use this one rule.

Random numbers: ``backend.seed(s)`` seeds a global generator pair. ``host_rng()`` is a NumPy generator used
for everything whose result must be identical on both backends (weight initialisation, shuffling);
``device_rng()`` lives on the active backend and is used for bulk draws on the hot path (dropout masks).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import numpy as np

from .plumbing.errors import NanosgmError

#: An array of the active backend: a ``numpy.ndarray``, or a ``cupy.ndarray`` (the same interface) on the GPU.
Array = np.ndarray

__all__ = [
    "BackendError", "use", "name", "xp", "array_module", "is_gpu_array", "to_host", "to_device", "min_max",
    "host_floats", "seed", "host_rng", "device_rng", "cupy_available", "synchronize", "check_same_backend",
    "DEVICE_MODULES", "Array",
]


class BackendError(NanosgmError, RuntimeError):
    """Raised when a backend is asked for that cannot be used here."""


_NAME = "numpy"
_XP: ModuleType = np           # numpy, cupy or nanosgm.standin
_ENV = "NANOSGM_BACKEND"
_FROM_ENV = os.environ.get(_ENV) or None    # applied at the first use (see _apply_env); None once applied
_SEED = 0
_HOST_RNG = np.random.default_rng(0)
_DEVICE_RNG = _HOST_RNG


def cupy_available() -> tuple[bool, str]:
    """(True, "") when cupy imports and sees a CUDA device, else (False, the reason)."""
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return False, (f"cupy is not importable ({exc.__class__.__name__}: {exc}); "
                       'install it with `pip install -e ".[gpu]"`')
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, _cuda_failure(exc)
    if n < 1:
        return False, "cupy found no CUDA GPU on this machine"
    return True, ""


_NO_DEVICE, _OLD_DRIVER = 100, 35               # cudaErrorNoDevice, cudaErrorInsufficientDriver
_DRIVER_LIBRARY = "nvcuda.dll" if os.name == "nt" else "libcuda.so.1"


def _gpu_driver_found() -> bool:
    """Whether the NVIDIA driver's CUDA library can be loaded (without it there is no GPU to use)."""
    import ctypes
    try:
        ctypes.CDLL(_DRIVER_LIBRARY)
    except OSError:
        return False
    return True


def _cuda_failure(exc: Exception) -> str:
    """Why cupy cannot use CUDA, from the error of its device count. The CUDA runtime reports a missing driver
    as an "insufficient" one (cudaErrorInsufficientDriver), so an old driver is named only when one is found."""
    status = getattr(exc, "status", None)
    if not _gpu_driver_found():
        return f"no GPU driver was found ({_DRIVER_LIBRARY} cannot be loaded), so this machine has no GPU cupy can use"
    if status == _NO_DEVICE:
        return "cupy found no CUDA GPU on this machine"
    if status == _OLD_DRIVER:
        return ("the NVIDIA driver is older than cupy's CUDA runtime needs; update the driver, or install the "
                "cupy build for the driver's CUDA version")
    return f"cupy cannot use CUDA ({exc.__class__.__name__}: {exc})"


# what to do instead, by where the backend was asked for: use() (--backend) or NANOSGM_BACKEND
_ADVICE = {"use": {"cupy": f"use --backend numpy (or {_ENV}=numpy) to run on the CPU",
                   "name": "choose 'numpy' or 'cupy'"},
           "env": {"cupy": f"unset {_ENV} or set it to numpy to run on the CPU",
                   "name": f"set {_ENV} to 'numpy' or 'cupy', or unset it"}}


def use(backend_name: str) -> None:
    """Make ``backend_name`` ("numpy" or "cupy") the active backend.

    Raises BackendError with an actionable message when cupy is asked for but cannot be used.
    The generators are re-created from the last seed so that a seeded run does not depend on when
    the backend was chosen.
    """
    _use(backend_name, _ADVICE["use"])


def _use(backend_name: str, advice: dict) -> None:
    """:func:`use`, with ``advice`` (an entry of _ADVICE) ending its refusals."""
    global _NAME, _XP, _FROM_ENV
    _FROM_ENV = None                            # an explicit choice overrides NANOSGM_BACKEND
    key = str(backend_name).strip().lower()
    if key in ("numpy", "np", "cpu"):
        _NAME, _XP = "numpy", np
    elif key in ("cupy", "cp", "gpu", "cuda"):
        ok, why = cupy_available()
        if not ok:
            raise BackendError(f"backend 'cupy' was asked for, but {why}; {advice['cupy']}")
        import cupy
        _NAME, _XP = "cupy", cupy
    elif key == "standin":
        from . import standin
        _NAME, _XP = "standin", standin
    else:
        raise BackendError(f"unknown backend {backend_name!r}; {advice['name']}")
    seed(_SEED)


def _apply_env() -> None:
    """Switch to the backend NANOSGM_BACKEND names, once; BackendError (naming the variable) if it cannot be used."""
    global _FROM_ENV
    if _FROM_ENV is None:
        return
    wanted = _FROM_ENV
    try:
        _use(wanted, _ADVICE["env"])
    except BackendError as exc:
        _FROM_ENV = wanted                      # keep refusing: never run silently on another backend
        raise BackendError(f"{_ENV}={wanted!r}: {exc}") from None


def name() -> str:
    """The active backend's name: "numpy", "cupy" or "standin"."""
    _apply_env()
    return _NAME


def xp() -> ModuleType:
    """The active array module (numpy, cupy or nanosgm.standin)."""
    _apply_env()
    return _XP


DEVICE_MODULES = ("cupy", "nanosgm.standin")     # the modules whose ``ndarray`` is a device array


def _device_module(a: object) -> ModuleType | None:
    """The device module (cupy, nanosgm.standin) whose ``ndarray`` ``a`` is, or None for anything else."""
    if type(a) is np.ndarray:
        return None
    for module_name in DEVICE_MODULES:
        module = sys.modules.get(module_name)            # not imported: it cannot own an array
        device_type = getattr(module, "ndarray", None)
        if isinstance(device_type, type) and isinstance(a, device_type):
            return module
    return None


def is_gpu_array(a: object) -> bool:
    """Whether ``a`` is a device array: CuPy's, or the CPU stand-in's (:mod:`nanosgm.standin`)."""
    return _device_module(a) is not None


def array_module(a: object) -> ModuleType:
    """The array module that owns ``a`` (cupy or nanosgm.standin for their arrays, numpy otherwise)."""
    module = _device_module(a)
    return np if module is None else module


def to_host(a) -> np.ndarray:
    """A NumPy array holding ``a``'s values (a copy from the device, or ``a`` itself on the CPU)."""
    if is_gpu_array(a):
        return a.get()
    return np.asarray(a)


def min_max(a) -> tuple[Any, Any]:
    """(min, max) of the non-empty array ``a`` as Python numbers (ints for an integer array); from a device
    array both come back in one read."""
    lo, hi = array_module(a).stack([a.min(), a.max()]).tolist()
    return lo, hi


def host_floats(values: list) -> list[float]:
    """``values`` (floats, NumPy scalars, device 0-d arrays) as Python floats; the device ones are stacked
    and read back together: one host read, however many there are."""
    device = [v for v in values if is_gpu_array(v)]
    if device:
        xp = array_module(device[0])
        device = xp.stack([xp.asarray(v, dtype=xp.float64).reshape(()) for v in device]).tolist()
    read = iter(device)
    return [next(read) if is_gpu_array(v) else float(v) for v in values]


def _backend_name(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def check_same_backend(x: Array, weights: Array | Iterable[Array], owner: str = "the model") -> None:
    """Refuse an input ``x`` that lives on another backend than ``weights`` (an array, or an iterable of arrays
    of which the first is checked; nothing when empty) with a :class:`BackendError` that says what to do,
    instead of the array library's TypeError deep inside a matrix product. Cost: two type checks."""
    w = weights if hasattr(weights, "shape") else next(iter(weights), None)
    if w is None:
        return
    mx, mw = array_module(x), array_module(w)
    if mx is not mw:
        raise BackendError(f"{owner}'s input is a {_backend_name(mx)} array but its weights are "
                           f"{_backend_name(mw)} arrays; build or load the model after "
                           f"backend.use({_backend_name(mx)!r}), or move the input with backend.to_device / "
                           f"backend.to_host")


def to_device(a, dtype=None) -> Array:
    """``a`` as an array of the active backend (optionally cast to ``dtype``)."""
    return xp().asarray(a, dtype=dtype)


def synchronize() -> None:
    """Wait for queued GPU work (no-op on NumPy); benchmarks call this before reading a clock."""
    if name() != "numpy":
        _XP.cuda.Stream.null.synchronize()


def seed(s: int) -> None:
    """Seed the host generator and the active backend's generator from ``s``."""
    global _SEED, _HOST_RNG, _DEVICE_RNG
    _apply_env()
    _SEED = int(s)
    _HOST_RNG = np.random.default_rng(_SEED)
    if _NAME != "numpy":
        _DEVICE_RNG = _XP.random.default_rng(_SEED + 1)
    else:
        _DEVICE_RNG = np.random.default_rng(_SEED + 1)


def host_rng() -> np.random.Generator:
    """The global NumPy generator (initialisation, shuffling: identical results on both backends)."""
    _apply_env()
    return _HOST_RNG


def device_rng() -> Any:
    """The global generator on the active backend (dropout masks and other bulk draws)."""
    _apply_env()
    return _DEVICE_RNG
