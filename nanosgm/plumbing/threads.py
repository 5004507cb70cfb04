"""Work in cache-sized pieces on every CPU core: the speed trick behind ``optimizer.step`` and the
layers' copy loops.

An optimizer step (WAME, Adam) is a dozen whole-array passes over parameter-sized arrays. Cut into
contiguous pieces, each piece goes through all its passes while it is still in the CPU cache, and
pieces can run in parallel threads (NumPy's ufuncs release the GIL on large arrays). Element-wise maths
does not depend on how an array is cut, so the result is bit-for-bit that of the plain loop
:func:`run_serial` (tests/plumbing/test_threads.py checks it). On CuPy arrays the plain loop runs.
``python -m nanosgm.bench --profile`` prints the optimizer steps' times.

Piece sizes: with one worker, CHUNK_SINGLE elements, pieces that fit the CPU cache; with several, the
larger CHUNK_THREADS, so that a thread spends its time computing rather than waiting for the GIL.

The same pool runs :func:`run_blocks`: the layers' loops over blocks of samples (im2col, col2im,
max-pooling), each block writing only its own samples' part of the output, so that the result is the
serial loop's bit for bit (tests/layers/test_im2col.py).

The number of workers is ``NANOSGM_THREADS`` if set, else the number of CPUs.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from .blas import set_blas_threads

if TYPE_CHECKING:
    from ..layers.base import Array

CHUNK_THREADS = 1 << 18       # elements per piece with several workers
CHUNK_SINGLE = 1 << 16        # elements per piece with one worker
_POOL = None


def workers() -> int:
    env = os.environ.get("NANOSGM_THREADS")
    return max(1, int(env)) if env else (os.cpu_count() or 1)


def run_serial(update: Callable[..., None], jobs: Iterable[tuple[Array, ...]]) -> None:
    """The reference: ``update(*arrays)`` for each job (a tuple of same-shaped arrays)."""
    for arrays in jobs:
        update(*arrays)


def pieces(jobs: Iterable[tuple[Array, ...]], chunk: int) -> Iterator[tuple[Array, ...]]:
    """Cut each job whose arrays are all C-contiguous and of one size into pieces of ``chunk`` elements."""
    for arrays in jobs:
        size = arrays[0].size
        if size <= chunk or not all(a.flags.c_contiguous and a.size == size for a in arrays):
            yield arrays
            continue
        flat = [a.reshape(-1) for a in arrays]
        for lo in range(0, size, chunk):
            yield tuple(f[lo:lo + chunk] for f in flat)


def run(update: Callable[..., None], jobs: Iterable[tuple[Array, ...]]) -> None:
    """Like :func:`run_serial`, but in cache-sized contiguous pieces, spread over a thread pool.

    ``update`` must be element-wise in every array it is given (no reductions, no reshapes): it sees
    slices, not whole arrays. Optimizers reach this only when they declare ``elementwise = True``
    (nanosgm.optim.Optimizer states and enforces the contract).
    """
    jobs = list(jobs)
    if not jobs or not isinstance(jobs[0][0], np.ndarray):       # CuPy arrays: the plain loop
        return run_serial(update, jobs)
    n = workers()
    if n == 1:
        return run_serial(update, pieces(jobs, CHUNK_SINGLE))
    _map(n, update, pieces(jobs, CHUNK_THREADS))


def run_blocks(work: Callable[[int, int], None], blocks: Iterable[tuple[int, int]]) -> None:
    """``work(lo, hi)`` for every (lo, hi) block, on the thread pool when there are several blocks and workers.

    The blocks must not overlap in what ``work`` writes (each writes its own samples' rows), so the order
    in which they run changes no number: the result is that of the plain loop ``for lo, hi in blocks``.
    """
    blocks = list(blocks)
    n = workers()
    if n == 1 or len(blocks) < 2:
        for lo, hi in blocks:
            work(lo, hi)
        return
    _map(n, work, blocks)


def _map(n: int, fn: Callable[..., None], argument_tuples: Iterable[tuple]) -> None:
    """fn(*args) for each tuple on the pool of n threads; waits for all, re-raising the first error.
    Not re-entrant: ``fn`` must not call :func:`run` or :func:`run_blocks` (a full pool would wait on itself)."""
    global _POOL
    if _POOL is None or _POOL._max_workers != n:
        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="nanosgm")
    for future in [_POOL.submit(fn, *args) for args in argument_tuples]:
        future.result()                                  # re-raises any error from a worker


def set_threads(threads: int) -> tuple[Callable[[], None], str]:
    """Give this process `threads` BLAS threads and as many of nanosgm's own (optimizer steps, copy loops):
    what each worker does. Returns (restore: callable, BLAS description), as blas.set_blas_threads."""
    before = os.environ.get("NANOSGM_THREADS")
    os.environ["NANOSGM_THREADS"] = str(threads)      # workers() reads it at every call
    restore_blas, desc = set_blas_threads(threads)

    def restore() -> None:
        restore_blas()
        if before is None:
            os.environ.pop("NANOSGM_THREADS", None)
        else:
            os.environ["NANOSGM_THREADS"] = before
    return restore, desc
