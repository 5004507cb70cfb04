"""An audit's attacks spread over worker processes: ``python -m nanosgm.robustness ... --workers N``.

Every attack of an audit draws from its own generator, and its result is stored in the partial file under a
key of everything it depends on (:mod:`nanosgm.plumbing.audit_resume`), so the attacks can run in any order
and in any process. :func:`prefill` hands every attack and transfer pair that the partial file does not hold
yet to ``workers`` fresh processes (each loads the networks from their files once and uses ``threads`` BLAS
threads), and stores each result in the partial file as it arrives, and'ed with this process's clean pass as the audit
does it (:func:`nanosgm.experiments.audit._attack_once`): this process is the file's only writer.
The ordinary audit (:func:`nanosgm.experiments.audit.audit`) then reads every result back and assembles the
report, the robust accuracy and the checks. The numbers are those of an audit in one process
(tests/experiments/test_audit_workers.py), provided every process uses the same number of BLAS threads: float32
products can round differently with another count. The workers use ``NANOSGM_THREADS`` threads when it is set,
else cores // workers.

A step is computed in a worker exactly as the audit computes it (:func:`nanosgm.experiments.audit.attack_compute`,
:func:`~nanosgm.experiments.audit.transfer_compute`), and the worker re-derives the step's key
from the networks it loaded: a key that differs from the coordinator's (a model file replaced meanwhile) stops
the audit.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from . import audit as A

if TYPE_CHECKING:
    from ..plumbing.audit_resume import FinishedAttacks

__all__ = ["prefill"]

_LOADED: dict = {}          # in a worker: (paths, load arguments) -> [Network]


def _networks(paths: tuple, load_kw: tuple) -> list:
    """The networks of `paths`, loaded once per worker process."""
    key = (paths, load_kw)
    if key not in _LOADED:
        kw = dict(load_kw)
        _LOADED.clear()
        _LOADED[key] = A.load_networks(list(paths), kw.pop("n_images"), **kw)
    return _LOADED[key]


def compute_step(paths: tuple, load_kw: tuple, job: tuple, eps_all: list[float], suite: A.Suite,
                 threads: int) -> tuple[str, dict, float]:
    """In a worker: (partial-file key, {eps: per-example bool} as the attack computed it, seconds) of one
    step's `job` (see `A._Step`)."""
    from ..plumbing.threads import set_threads
    set_threads(threads)
    nets = _networks(paths, load_kw)
    digests = [A._network_digest(net) for net in nets]
    if job[0] == "attack":
        _, i, name, attack, kw = job
        key = A._attack_key(digests[i], name, attack, kw, eps_all, suite)
        compute = A.attack_compute(nets[i], attack, kw, eps_all, suite)
    else:
        _, s, t = job
        key = A._transfer_key(digests[s], digests[t], eps_all, suite)
        compute = A.transfer_compute(nets[s], nets[t], eps_all, suite)
    t0 = time.perf_counter()
    got = compute()
    return key, got, time.perf_counter() - t0


def prefill(paths: list[str], load_kw: dict, nets: list, eps_all: list[float], suite: A.Suite, transfer: str,
            finished: FinishedAttacks, workers: int, threads: int, log: Callable[[str], None]) -> int:
    """Compute, in `workers` processes, every step of the audit of `nets` (loaded from `paths` with
    `load_kw`: n_images, data_dir, dataset, model) that `finished` does not hold, storing each result in it;
    ``log`` gets one line per finished step and one before the first. Returns how many steps ran."""
    from .parallel import run_in_pool
    if backend.name() != "numpy":
        raise A.AuditError("--workers runs the attacks in CPU processes; with --backend cupy use one (--workers 1)")
    todo = [s for s in A._steps(nets, eps_all, suite, transfer, finished) if s.job and not s.held]
    if not todo:
        return 0
    log(f"{len(todo)} attack step(s) in {workers} worker processes, {threads} BLAS thread(s) each")
    clean = [A._clean_correct(net, suite) for net in nets]        # this process's, as the audit's own
    frozen = (tuple(paths), tuple(sorted(load_kw.items())))
    calls = [(s.label, compute_step, (*frozen, s.job, eps_all, suite, threads)) for s in todo]
    by_label = {s.label: s for s in todo}
    kept = f"the finished attack results are kept in {finished.path}"
    for label, (key, raw, seconds) in run_in_pool(calls, workers, doing="computing", kept=kept):
        step = by_label[label]
        if key != step.key:
            raise A.AuditError(f"{label}: a worker loaded other networks than this audit (was a model file "
                               f"replaced during the audit?); run the same command again")
        target = step.job[1] if step.job[0] == "attack" else step.job[2]
        got, _ = A._attack_once(finished, key, label, clean[target], eps_all, None, 0, lambda: raw)
        log(f"{label} " + ", ".join(f"eps {A.format_number(e)}: {A._pct(float(np.mean(v)))}" for e, v in got.items())
            + f" ({seconds:.0f} s, in a worker)")
    return len(todo)
