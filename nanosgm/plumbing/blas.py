"""NumPy's BLAS thread count, changed at run time: ``set_blas_threads(n)``.

Used by the bench (same threads for nanosgm and torch) and by the protocol's worker processes
(workers x threads <= cores). ``threadpoolctl`` is used when it is installed; otherwise OpenBLAS's own
``*openblas_set_num_threads*`` entry point, found in the loaded library through ctypes. If neither works,
the BLAS keeps what ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` said when NumPy was imported.

Spinning: after each matrix product OpenBLAS's helper threads keep spinning for 2^28 cycles (~0.1 s)
before they sleep, and nanosgm's own threads (optimizer steps, the layers' copy loops,
nanosgm.plumbing.threads) would wait for those cores. :func:`limit_spin_wait`, which every command line
(``python -m nanosgm.train``, ``.robustness``, ``.experiments``, ``.bench``) calls before NumPy loads, sets
``OPENBLAS_THREAD_TIMEOUT`` to 2^16 cycles (~30 us) unless it is already set. OpenBLAS reads it once, when
NumPy loads it, so it applies only when it is set before NumPy is imported; it changes no number, only
who waits.
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, MutableMapping

__all__ = ["set_blas_threads", "blas_threads", "blas_kernels", "limit_spin_wait", "REFERENCE_NUMERICS"]

SPIN_TIMEOUT_LOG2 = 16      # OPENBLAS_THREAD_TIMEOUT: log2 of the cycles a helper thread spins (OpenBLAS: 4..30, default 28)


def limit_spin_wait(environ: MutableMapping[str, str] = os.environ) -> str:
    """Set OPENBLAS_THREAD_TIMEOUT to SPIN_TIMEOUT_LOG2 unless the environment already has it; returns the value in force."""
    return environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(SPIN_TIMEOUT_LOG2))

# The environment in which float32 results are the same on every x86-64 machine with AVX2: OpenBLAS's
# Haswell kernels (a DYNAMIC_ARCH build otherwise picks the CPU's own, e.g. SkylakeX with AVX-512, which
# round differently) and NumPy's AVX2 loops (its AVX-512 loops of exp, log, ... differ in the last bit).
# Both are read when NumPy loads, so they apply to a new process.
REFERENCE_NUMERICS = {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}


def _openblas_library() -> list[ctypes.CDLL]:
    """ctypes handles of the OpenBLAS libraries loaded in this process."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return []
    libs = []
    for path in paths:
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


def blas_kernels() -> str | None:
    """The CPU kernels the loaded OpenBLAS uses ("Haswell", "SkylakeX", ...), or None when unknown."""
    for lib in _openblas_library():
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                     "openblas_get_corename"):
            f = getattr(lib, name, None)
            if f is not None:
                f.restype = ctypes.c_char_p
                return f().decode()
    return None


def _openblas_handles() -> tuple[Callable | None, Callable | None]:
    """(set, get) ctypes functions of the OpenBLAS loaded in this process, or (None, None)."""
    for lib in _openblas_library():
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "_64_", ""):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    return setter, getter
    return None, None


def set_blas_threads(n: int) -> tuple[Callable[[], None], str]:
    """Set NumPy's BLAS threads to n. Returns (restore: callable, description: str)."""
    n = int(n)
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        pass
    else:
        limiter = threadpool_limits(limits=n, user_api="blas")
        info = [f"{d.get('internal_api', '?')}={d.get('num_threads', '?')}" for d in threadpool_info()
                if d.get("user_api") == "blas"]
        return limiter.restore_original_limits, f"{', '.join(info) or n} (threadpoolctl)"
    setter, getter = _openblas_handles()
    if setter is not None and getter is not None:      # both or neither
        before = getter()
        setter(n)
        return (lambda: setter(before)), f"openblas={getter()} (set via ctypes; threadpoolctl not installed)"
    env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    return (lambda: None), (f"not set: threadpoolctl not installed and no OpenBLAS found; the BLAS uses "
                            f"{'OPENBLAS_NUM_THREADS/OMP_NUM_THREADS=' + env if env else 'all cores (env vars unset)'}")


def blas_threads() -> int | None:
    """The BLAS thread count now in force (None when it cannot be read)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        _, getter = _openblas_handles()
        return getter() if getter is not None else None
    counts = [d.get("num_threads") for d in threadpool_info() if d.get("user_api") == "blas"]
    return counts[0] if counts else None
