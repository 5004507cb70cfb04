"""Run independent network tasks: in this process, in local worker processes, or on a Dask cluster.

    for key, record in run_tasks(tasks, workers=2):      # tasks: [(key, spec, checkpoint, model_path)]
        ...                                              # records arrive as each network finishes

A task is :func:`nanosgm.experiments.network.train_network` on a
:class:`~nanosgm.experiments.network.NetworkSpec`, whose
result depends on the spec alone, so the records are the same whichever way they ran, provided each
worker uses the same number of BLAS threads (``threads``; default: cores // workers, at least 1, so
that workers x threads <= cores). Worker processes are started with "spawn" (a fresh interpreter: no
inherited threads or generator state), and each ends itself when its coordinator is gone (killed with
SIGKILL or SIGTERM, which give it no chance to stop them: :func:`worker_pool`). With ``scheduler`` (a Dask scheduler address, or a
``distributed.Client``) the tasks go to that cluster (``pip install -e ".[cluster]"``); its workers
need the data where their ``NANOSGM_DATA`` / the spec's ``data_dir`` points and, to resume a killed
task, the protocol folder on a shared filesystem.
"""
from __future__ import annotations

import os
import threading
import time

from ..plumbing.errors import TaskFailed
from ..plumbing.threads import set_threads

__all__ = ["run_tasks", "default_threads", "run_task", "worker_pool", "TaskFailed"]

PARENT_CHECK_SECONDS = 1.0      # how often a worker looks whether its coordinator is still there


def _failed(key, exc) -> TaskFailed:
    return TaskFailed(f"{key}: {exc} (the networks recorded so far are kept; fix this and run the same command "
                      f"again to continue)")


def default_threads(workers: int) -> int:
    """BLAS threads per worker so that workers x threads <= the cores of this machine."""
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))


def run_task(spec, checkpoint, model_path, threads, verbose_key=None):
    """Train and measure one network (what a worker runs); returns its record."""
    from .network import train_network
    set_threads(threads)

    def log(line):
        print(f"  {verbose_key} {line}", flush=True)

    return train_network(spec, checkpoint=checkpoint, resume=True, model_path=model_path, progress=False,
                         log=log if verbose_key else None)


def run_tasks(tasks, *, workers: int = 1, scheduler=None, threads: int | None = None, verbose: bool = False):
    """Yield (key, record) for every task as it finishes. ``tasks``: (key, spec, checkpoint, model_path)."""
    tasks = list(tasks)
    threads = int(threads or default_threads(workers))
    if scheduler is not None:
        yield from _on_dask(tasks, scheduler, threads, verbose)
    elif workers <= 1:
        for key, spec, ck, mp in tasks:
            try:
                record = run_task(spec, ck, mp, threads, key if verbose else None)
            except Exception as exc:
                raise _failed(key, exc) from exc
            yield key, record
    else:
        yield from _on_processes(tasks, workers, threads, verbose)


def _end_with(parent_pid: int) -> None:
    """Worker initializer: a daemon thread ends this worker once its parent is no longer ``parent_pid``
    (the coordinator died and the worker was handed to another process)."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)
    threading.Thread(target=watch, name="nanosgm-coordinator-watch", daemon=True).start()


def worker_pool(workers: int):
    """A pool of ``workers`` fresh ("spawn") processes that end when this process ends, however it ends."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_end_with,
                               initargs=(os.getpid(),))


def _on_processes(tasks, workers, threads, verbose):
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool
    pool = worker_pool(workers)
    try:
        futures = {pool.submit(run_task, spec, ck, mp_, threads, key if verbose else None): key
                   for key, spec, ck, mp_ in tasks}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                try:
                    record = f.result()
                except BrokenProcessPool:
                    raise TaskFailed(f"a worker process died while training {futures[f]} (killed, or out of "
                                     f"memory); run the same command again to resume") from None
                except Exception as exc:
                    raise _failed(futures[f], exc) from exc
                yield futures[f], record
    except BaseException:          # Ctrl-C, or a failed task: stop the others now (their checkpoints are kept)
        for child in mp.active_children():
            child.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _on_dask(tasks, scheduler, threads, verbose):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise RuntimeError('--scheduler needs Dask distributed: pip install -e ".[cluster]"') from None
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = {client.submit(run_task, spec, ck, mp_, threads, key if verbose else None, pure=False,
                                 key=f"nanosgm-{key}-{os.getpid()}"): key for key, spec, ck, mp_ in tasks}
        for f in as_completed(list(futures)):
            try:
                record = f.result()
            except Exception as exc:
                raise _failed(futures[f], exc) from exc
            yield futures[f], record
    finally:
        if client is not scheduler:
            client.close()
