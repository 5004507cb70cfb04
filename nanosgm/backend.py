"""One place that chooses the array library: NumPy (CPU) or CuPy (GPU).

Every layer, optimiser and attack in nanosgm is written once against the array API that NumPy and
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

Random numbers: ``backend.seed(s)`` seeds a global generator pair. ``host_rng()`` is a NumPy generator used
for everything whose result must be identical on both backends (weight initialisation, shuffling);
``device_rng()`` lives on the active backend and is used for bulk draws on the hot path (dropout masks).
"""
from __future__ import annotations

import os

import numpy as np

from .plumbing.errors import NanosgmError

__all__ = [
    "BackendError", "use", "name", "xp", "array_module", "is_gpu_array", "to_host", "to_device",
    "seed", "host_rng", "device_rng", "cupy_available", "synchronize",
]


class BackendError(NanosgmError, RuntimeError):
    """Raised when a backend is asked for that cannot be used here."""


_NAME = "numpy"
_XP = np
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
        return False, f"cupy is installed but CUDA is not usable ({exc.__class__.__name__}: {exc})"
    if n < 1:
        return False, "cupy is installed but no CUDA device is visible"
    return True, ""


def use(backend_name: str) -> None:
    """Make ``backend_name`` ("numpy" or "cupy") the active backend.

    Raises BackendError with an actionable message when cupy is asked for but cannot be used.
    The generators are re-created from the last seed so that a seeded run does not depend on when
    the backend was chosen.
    """
    global _NAME, _XP, _FROM_ENV
    _FROM_ENV = None                            # an explicit choice overrides NANOSGM_BACKEND
    key = str(backend_name).strip().lower()
    if key in ("numpy", "np", "cpu"):
        _NAME, _XP = "numpy", np
    elif key in ("cupy", "cp", "gpu", "cuda"):
        ok, why = cupy_available()
        if not ok:
            raise BackendError(f"backend 'cupy' was asked for, but {why}. Use --backend numpy (or NANOSGM_BACKEND=numpy) to run on the CPU.")
        import cupy
        _NAME, _XP = "cupy", cupy
    else:
        raise BackendError(f"unknown backend {backend_name!r}: choose 'numpy' or 'cupy'")
    seed(_SEED)


def _apply_env() -> None:
    """Switch to the backend NANOSGM_BACKEND names, once; BackendError (naming the variable) if it cannot be used."""
    global _FROM_ENV
    if _FROM_ENV is None:
        return
    wanted = _FROM_ENV
    try:
        use(wanted)
    except BackendError as exc:
        _FROM_ENV = wanted                      # keep refusing: never run silently on another backend
        raise BackendError(f"{_ENV}={wanted!r}: {exc}; set {_ENV} to numpy or cupy, or unset it") from None


def name() -> str:
    """The active backend's name: "numpy" or "cupy"."""
    _apply_env()
    return _NAME


def xp():
    """The active array module (numpy or cupy)."""
    _apply_env()
    return _XP


def is_gpu_array(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def array_module(a):
    """The array module that owns ``a`` (cupy for a cupy array, numpy otherwise)."""
    if is_gpu_array(a):
        import cupy
        return cupy
    return np


def to_host(a):
    """A NumPy array holding ``a``'s values (a copy from the GPU, or ``a`` itself on the CPU)."""
    if is_gpu_array(a):
        return a.get()
    return np.asarray(a)


def to_device(a, dtype=None):
    """``a`` as an array of the active backend (optionally cast to ``dtype``)."""
    return xp().asarray(a, dtype=dtype)


def synchronize() -> None:
    """Wait for queued GPU work (no-op on NumPy); benchmarks call this before reading a clock."""
    if name() == "cupy":
        _XP.cuda.Stream.null.synchronize()


def seed(s: int) -> None:
    """Seed the host generator and the active backend's generator from ``s``."""
    global _SEED, _HOST_RNG, _DEVICE_RNG
    _apply_env()
    _SEED = int(s)
    _HOST_RNG = np.random.default_rng(_SEED)
    if _NAME == "cupy":
        _DEVICE_RNG = _XP.random.default_rng(_SEED + 1)
    else:
        _DEVICE_RNG = np.random.default_rng(_SEED + 1)


def host_rng() -> np.random.Generator:
    """The global NumPy generator (initialisation, shuffling: identical results on both backends)."""
    _apply_env()
    return _HOST_RNG


def device_rng():
    """The global generator on the active backend (dropout masks and other bulk draws)."""
    _apply_env()
    return _DEVICE_RNG
