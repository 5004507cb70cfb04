"""Element-wise updates on every CPU core: the speed trick behind the optimisers' ``step``.

NumPy's ufuncs release the GIL on large arrays, so contiguous pieces of one element-wise update (WAME,
Adam, SGD) can run in parallel threads. Element-wise maths does not depend on how an array is cut, so
the result is bit-for-bit that of the plain loop :func:`run_serial` (tests/test_threads.py checks it).
On CuPy arrays, or with one worker, the plain loop runs: the GPU is already parallel.

The number of workers is ``NANOSGM_THREADS`` if set, else the number of CPUs.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from . import backend

MIN_CHUNK = 1 << 16          # elements: below this a thread costs more than it saves
_POOL = None


def workers() -> int:
    env = os.environ.get("NANOSGM_THREADS")
    return max(1, int(env)) if env else (os.cpu_count() or 1)


def run_serial(update, jobs) -> None:
    """The reference: ``update(*arrays)`` for each job (a tuple of same-shaped arrays)."""
    for arrays in jobs:
        update(*arrays)


def run(update, jobs) -> None:
    """Like :func:`run_serial`, but with large C-contiguous jobs cut into chunks spread over a thread pool.

    ``update`` must be element-wise in every array it is given (no reductions, no reshapes).
    """
    jobs = list(jobs)
    n = workers()
    if n == 1 or not jobs or backend.is_gpu_array(jobs[0][0]):
        return run_serial(update, jobs)
    pieces = []
    for arrays in jobs:
        size = arrays[0].size
        if size < 2 * MIN_CHUNK or not all(a.flags.c_contiguous and a.size == size for a in arrays):
            pieces.append(arrays)
            continue
        k = min(n, size // MIN_CHUNK)
        step = -(-size // k)
        flat = [a.reshape(-1) for a in arrays]
        pieces.extend(tuple(f[lo:lo + step] for f in flat) for lo in range(0, size, step))
    global _POOL
    if _POOL is None or _POOL._max_workers != n:
        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="nanosgm")
    for future in [_POOL.submit(update, *arrays) for arrays in pieces]:
        future.result()                                  # re-raises any error from a worker
