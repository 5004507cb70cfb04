"""The multi-core element-wise update and block loop (nanosgm/threads.py) are bit-for-bit the plain loops;
every command line shortens OpenBLAS's spinning before NumPy loads (nanosgm/plumbing/blas.py)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from nanosgm.plumbing import threads
from nanosgm.optim import build_optimizer


class Params:
    def __init__(self, arrays, grads):
        self.arrays, self.grads = arrays, grads

    def parameters(self):
        return [(str(i), p, g) for i, (p, g) in enumerate(zip(self.arrays, self.grads))]


@pytest.mark.parametrize("name", ["wame", "adam", "sgd"])
def test_threaded_optimizer_steps_equal_the_serial_loop_bit_for_bit(name, monkeypatch):
    rng = np.random.default_rng(0)
    shapes = [(600, 700), (3, 5), (300_001,)]          # chunked, too small to chunk, an odd length
    results = []
    for n_workers in ("1", "4"):                       # 1: cache-sized pieces in a loop; 4: a thread pool
        monkeypatch.setenv("NANOSGM_THREADS", n_workers)
        rng = np.random.default_rng(0)
        params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        opt = build_optimizer(name, **({"momentum": 0.9} if name == "sgd" else {}))
        for _ in range(4):
            grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
            grads[0][::3] *= -1
            opt.step(Params(params, grads))
        results.append(params)
    for serial, threaded in zip(*results):
        np.testing.assert_array_equal(serial, threaded)


def test_chunks_cover_every_element_once(monkeypatch):
    monkeypatch.setenv("NANOSGM_THREADS", "3")
    a = np.zeros(5 * threads.CHUNK_THREADS + 7, dtype=np.float32)
    b = np.zeros((3, 4), dtype=np.float32)
    threads.run(lambda x: x.__iadd__(1), [(a,), (b,)])
    assert (a == 1).all() and (b == 1).all()


def test_errors_in_a_worker_reach_the_caller(monkeypatch):
    monkeypatch.setenv("NANOSGM_THREADS", "2")

    def boom(x):
        raise RuntimeError("from a worker")
    with pytest.raises(RuntimeError, match="from a worker"):
        threads.run(boom, [(np.zeros(4 * threads.CHUNK_THREADS),)])


def test_run_blocks_calls_every_block_once_and_reraises(monkeypatch):
    monkeypatch.setenv("NANOSGM_THREADS", "3")
    seen = np.zeros(10, dtype=int)

    def work(lo, hi):
        seen[lo:hi] += 1
    threads.run_blocks(work, [(0, 3), (3, 4), (4, 10)])
    assert (seen == 1).all()

    def boom(lo, hi):
        raise ValueError(f"block {lo}")
    with pytest.raises(ValueError, match="block"):
        threads.run_blocks(boom, [(0, 1), (1, 2)])


_PROBE = """
import os, runpy, sys
seen = []
class Probe:                      # records OPENBLAS_THREAD_TIMEOUT when NumPy is first imported
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append(os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset"))
        return None
sys.meta_path.insert(0, Probe())
import nanosgm
print("numpy" in sys.modules, os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset"))
if sys.argv[1:]:
    sys.argv = [sys.argv[1], "--help"]
    try:
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    print(seen[0] if seen else "numpy never loaded")
"""


def _probe(env, entry=None):
    argv = [sys.executable, "-c", _PROBE] + ([entry] if entry else [])
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.split()


def test_importing_nanosgm_loads_no_numpy_and_sets_no_environment_variable():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    assert _probe(env) == ["False", "unset"]


@pytest.mark.parametrize("entry", ["nanosgm.train", "nanosgm.experiments", "nanosgm.robustness", "nanosgm.bench"])
def test_every_command_line_sets_the_spin_timeout_before_numpy_loads_and_keeps_a_users_value(entry):
    from nanosgm.plumbing.blas import SPIN_TIMEOUT_LOG2
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    assert _probe(env, entry)[-1] == str(SPIN_TIMEOUT_LOG2)        # OpenBLAS reads it when NumPy loads it
    assert _probe({**env, "OPENBLAS_THREAD_TIMEOUT": "28"}, entry)[-1] == "28"
