"""Run independent network tasks: in this process, in local worker processes, or on a Dask cluster.

    for key, record in run_tasks(tasks, workers=2):      # tasks: [(key, spec, checkpoint, model_path)]
        ...                                              # records arrive as each network finishes

A task is :func:`nanosgm.experiments.network.train_network` on a
:class:`~nanosgm.experiments.network.NetworkSpec`, whose
result depends on the spec alone, so the records are the same whichever way they ran, provided each
worker uses the same number of BLAS threads (``threads``; default: cores // workers, at least 1, so
that workers x threads <= cores). Worker processes are started with "spawn" (a fresh interpreter: no
inherited threads or generator state), and each ends itself when its coordinator is gone (killed with
SIGKILL or SIGTERM, which give it no chance to stop them: :func:`worker_pool`); a worker that dies is
reported with the network it was training. With ``scheduler`` (a Dask scheduler address, or a
``distributed.Client``) the tasks go to that cluster (``pip install -e ".[cluster]"``); an address that
does not answer within :data:`SCHEDULER_TIMEOUT_SECONDS` is refused (:func:`connect_scheduler`). The
cluster's workers need the data where their ``NANOSGM_DATA`` / the spec's ``data_dir`` points and, to
resume a killed task, the protocol folder on a shared filesystem.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from ..plumbing.errors import CliError, TaskFailed
from ..plumbing.threads import set_threads

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

    from distributed import Client

    from .network import NetworkSpec

__all__ = ["run_tasks", "default_threads", "run_task", "run_in_pool", "worker_pool", "connect_scheduler",
           "SCHEDULER_TIMEOUT_SECONDS", "TaskFailed"]

PARENT_CHECK_SECONDS = 1.0      # how often a worker looks whether its coordinator is still there
SCHEDULER_TIMEOUT_SECONDS = 10.0    # how long --scheduler waits for the Dask scheduler to answer
EXIT_STATUS_SECONDS = 5.0       # how long a dead worker's exit status is waited for (its sentinel comes first)


KEPT = "the networks recorded so far are kept"


def _failed(key: str, exc: BaseException, kept: str = KEPT) -> TaskFailed:
    return TaskFailed(f"{key}: {exc} ({kept}; fix this and run the same command again to continue)")


def default_threads(workers: int) -> int:
    """BLAS threads per worker so that workers x threads <= the cores of this machine."""
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))


def run_task(spec: NetworkSpec, checkpoint: str | None, model_path: str | None, threads: int,
             verbose_key: str | None = None) -> dict:
    """Train and measure one network (what a worker runs; ``spec.evaluate`` False: train it only); returns its
    record."""
    from .network import train_network
    set_threads(threads)

    def log(line: str) -> None:
        print(f"  {verbose_key} {line}", flush=True)

    return train_network(spec, checkpoint=checkpoint, resume=True, model_path=model_path, progress=False,
                         log=log if verbose_key else None)


def run_tasks(tasks: Iterable[tuple[str, NetworkSpec, str | None, str | None]], *, workers: int = 1,
              scheduler: str | Client | None = None, threads: int | None = None,
              verbose: bool = False) -> Iterator[tuple[str, dict]]:
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
        calls = [(key, run_task, (spec, ck, mp, threads, key if verbose else None)) for key, spec, ck, mp in tasks]
        yield from run_in_pool(calls, workers)


# ---------------------------------------------------------------------------------------- local worker processes
_ANNOUNCE = None                # in a worker: the pipe on which it says which call it starts (see _Watch)


def _init_worker(parent_pid: int, announce: Connection | None = None) -> None:
    """Worker initializer: end with the coordinator (:func:`_end_with`) and keep the pipe to announce calls on."""
    global _ANNOUNCE
    _ANNOUNCE = announce
    _end_with(parent_pid)


def _end_with(parent_pid: int) -> None:
    """A daemon thread ends this worker once its parent is no longer ``parent_pid``
    (the coordinator died and the worker was handed to another process)."""
    def watch() -> NoReturn:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)
    threading.Thread(target=watch, name="nanosgm-coordinator-watch", daemon=True).start()


def _announced(key: str, fn: Callable, args: tuple) -> Any:
    """In a worker: tell the coordinator that this process now runs ``key``, then return ``fn(*args)``."""
    if _ANNOUNCE is not None:
        _ANNOUNCE.send((os.getpid(), key))
    return fn(*args)


def worker_pool(workers: int, announce: Connection | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` fresh ("spawn") processes that end when this process ends, however it ends.
    ``announce``: the sending end of a pipe on which each worker says which call it starts."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(os.getpid(), announce))


class _Watch:
    """Which call each worker process runs, and which worker ended first: a thread reads the workers'
    announcements (:func:`_announced`) and waits on their sentinels until one of them ends. The pool
    terminates the other workers once one has died, so the first to end is the one that died."""

    def __init__(self, ctx: BaseContext) -> None:
        self._reader, self.announce = ctx.Pipe(duplex=False)
        self._running: dict[int, str] = {}            # pid -> key of the call it announced last
        self._first_dead: list[BaseProcess] = []      # the processes whose end was seen first
        self._thread: threading.Thread | None = None

    def start(self, processes: Iterable[BaseProcess]) -> None:
        self._thread = threading.Thread(target=self._watch, args=(list(processes),), daemon=True,
                                        name="nanosgm-worker-watch")
        self._thread.start()

    def _watch(self, processes: list[BaseProcess]) -> None:
        from multiprocessing.connection import wait
        by_sentinel = {p.sentinel: p for p in processes}
        while by_sentinel:
            ready = wait([self._reader, *by_sentinel])
            if not self._read_announcements():
                return
            dead = [by_sentinel[s] for s in ready if s in by_sentinel]
            if dead:
                self._first_dead = dead
                return

    def _read_announcements(self) -> bool:
        """Take every announcement waiting in the pipe; False once the pipe is closed."""
        try:
            while self._reader.poll():
                pid, key = self._reader.recv()
                self._running[pid] = key
        except (EOFError, OSError):
            return False
        return True

    def dead_keys(self) -> list:
        """The calls of the worker(s) that ended first (none known: [])."""
        if self._thread is not None:
            self._thread.join(timeout=10)
        dead = self._first_dead
        killed = [p for p in dead if _exit_status(p) != -signal.SIGTERM]     # not the pool's own terminate()
        return [self._running[p.pid] for p in (killed or dead) if p.pid in self._running]

    def close(self) -> None:
        self.announce.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._reader.close()


def _exit_status(process: BaseProcess, wait_s: float = EXIT_STATUS_SECONDS) -> int | None:
    """``process.exitcode`` once the system has it. A process's sentinel is ready when its files close, a moment
    before its exit status can be read; meanwhile ``exitcode`` is None, which would pass for "not terminated"."""
    deadline = time.monotonic() + wait_s
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return process.exitcode


def _worker_died(watch: _Watch, doing: str = "training", kept: str = KEPT) -> TaskFailed:
    keys = watch.dead_keys()
    what = f"while {doing} {', '.join(keys)}" if keys else "before it started its first call"
    return TaskFailed(f"a worker process died {what} (killed, or out of memory); {kept}: run the same command again "
                      f"to resume")


def run_in_pool(calls: Iterable[tuple[str, Callable, tuple]], workers: int, *, doing: str = "training",
                kept: str = KEPT) -> Iterator[tuple[str, Any]]:
    """Yield (key, result) of every call ``(key, function, args)`` as it finishes in a :func:`worker_pool` of
    ``workers`` processes. A call that raises is a TaskFailed naming its key; so is a worker process that
    dies, naming the call that worker was running (``doing`` it). Both messages say what is ``kept``."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool
    ctx = mp.get_context("spawn")
    watch = _Watch(ctx)
    before = {p.pid for p in mp.active_children()}
    pool = worker_pool(workers, watch.announce)
    try:
        futures = {pool.submit(_announced, key, fn, args): key for key, fn, args in calls}
        watch.start(p for p in mp.active_children() if p.pid not in before)     # a submit starts its worker
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(done, key=lambda f: f.cancelled() or f.exception() is not None):    # results first
                try:
                    result = f.result()
                except BrokenProcessPool:
                    raise _worker_died(watch, doing, kept) from None
                except Exception as exc:
                    raise _failed(futures[f], exc, kept) from exc
                yield futures[f], result
    except BaseException:          # Ctrl-C, or a failed task: stop the others now (their checkpoints are kept)
        for child in mp.active_children():
            if child.pid not in before:
                child.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        watch.close()


# ---------------------------------------------------------------------------------------------------- Dask
def _on_dask(tasks: list[tuple[str, NetworkSpec, str | None, str | None]], scheduler: str | Client, threads: int,
             verbose: bool) -> Iterator[tuple[str, dict]]:
    client = connect_scheduler(scheduler) if isinstance(scheduler, str) else scheduler
    from distributed import as_completed
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


def connect_scheduler(address: str, timeout: float | None = None) -> Client:
    """A ``distributed.Client`` of the Dask scheduler at ``address`` ("tcp://host:8786"), once a first
    connection to it has completed Dask's handshake within ``timeout`` seconds (default
    :data:`SCHEDULER_TIMEOUT_SECONDS`); otherwise a CliError naming the address, what happened and what to check."""
    timeout = SCHEDULER_TIMEOUT_SECONDS if timeout is None else float(timeout)
    try:
        from distributed import Client
    except ImportError:
        raise CliError('--scheduler needs Dask distributed: pip install -e ".[cluster]"') from None
    problem = _probe_scheduler(address, timeout)
    if isinstance(problem, ValueError):
        raise CliError(f"--scheduler {address!r} is not a Dask scheduler address ({problem}); give "
                       f"tcp://HOST:PORT (the scheduler's port, 8786 by default)")
    if problem is not None:
        raise CliError(f"--scheduler {address}: no Dask scheduler answered within {timeout:g} s ({problem}); check "
                       f"that `dask scheduler` runs there and that this machine reaches that host and port "
                       f"(8786 by default)")
    return Client(address, timeout=timeout)


def _probe_scheduler(address: str, timeout: float) -> str | ValueError | None:
    """None if a connection to ``address`` completes Dask's handshake within ``timeout`` seconds, else what
    went wrong: a phrase, or the ValueError of an address that is not one. Runs in a thread of its own, so
    that it works where an event loop runs already (a notebook)."""
    import asyncio
    from distributed.comm import connect

    async def probe() -> None:          # connect's own deadline comes first: a silent peer meets the outer one
        comm = await asyncio.wait_for(connect(address, timeout=0.9 * timeout), timeout)
        await comm.close()

    outcome: list[str | ValueError | None] = []

    def run() -> None:
        try:
            asyncio.run(probe())
            outcome.append(None)
        except asyncio.TimeoutError:
            outcome.append("it accepted the connection but never answered: is that port the scheduler's, "
                           "not its dashboard's or another program's?")
        except ValueError as exc:
            outcome.append(exc)
        except Exception:
            outcome.append(_connect_failure(address))

    thread = threading.Thread(target=run, name="nanosgm-scheduler-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    return outcome[0] if outcome else "it never answered"


def _connect_failure(address: str) -> str:
    """Why no connection to ``address`` could be made (Dask's own error only says that it timed out, after
    retrying), from one plain attempt: unknown host, connection refused, or no reply."""
    import socket
    from distributed.comm.addressing import parse_address, parse_host_port
    scheme, loc = parse_address(address)
    if scheme not in ("tcp", "tls"):
        return "no connection could be made"
    try:
        socket.create_connection(parse_host_port(loc), timeout=1.0).close()
    except socket.gaierror:
        return "unknown host"
    except ConnectionRefusedError:
        return "connection refused: nothing listens on that port"
    except OSError:
        return "no reply to the connection"
    return "no connection could be made"
