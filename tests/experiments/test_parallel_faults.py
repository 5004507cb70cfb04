"""Faults of the protocol's parallel runs (nanosgm/experiments/parallel.py): a worker process that dies is
reported with the network it was training; a --scheduler address that does not answer is refused within a
stated time, with one message naming the address and what to check."""
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from nanosgm.experiments import parallel
from nanosgm.plumbing.errors import CliError, NanosgmError

COORDINATOR = textwrap.dedent("""
    import os, sys, time
    from nanosgm.experiments import parallel

    def task(folder, key, model_path, threads, verbose_key):
        \"\"\"Stands for training a network: says which process runs it, then takes long.\"\"\"
        with open(os.path.join(folder, key + ".tmp"), "w") as f:
            f.write(str(os.getpid()))
        os.replace(os.path.join(folder, key + ".tmp"), os.path.join(folder, key))
        time.sleep(120)

    parallel.run_task = task            # at the top: the spawned workers import this script too

    if __name__ == "__main__":
        tasks = [(f"net{i}", sys.argv[1], f"net{i}", None) for i in range(12)]
        try:
            for key, _ in parallel.run_tasks(tasks, workers=2, threads=1):
                print("finished", key, flush=True)
        except parallel.TaskFailed as exc:
            print(exc, flush=True)
""")


def _started(folder, n, deadline_s=120):
    """{key: pid} of the calls that have started, once ``n`` have (or the deadline passed)."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        started = {p.name: int(p.read_text()) for p in folder.iterdir() if not p.name.endswith(".tmp")}
        if len(started) >= n:
            return started
        time.sleep(0.1)
    return {}


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_worker_is_reported_with_the_network_it_was_training(tmp_path):
    """Issue 22 item 18: the message named a queued network (any of the futures the broken pool failed)."""
    script, folder = tmp_path / "coordinator.py", tmp_path / "started"
    script.write_text(COORDINATOR)
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        started = _started(folder, 2)
        assert len(started) == 2, "the two workers did not start their calls"
        victim = max(started)                     # the later of the two running calls, not the first submitted
        os.kill(started[victim], signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    line = out.strip()
    named = re.match(r"a worker process died while training (.+?) \(killed, or out of memory\)", line)
    assert named and named.group(1) == victim, line
    assert "run the same command again" in line and "\n" not in line


class _Ending:
    """Stands for a worker process whose sentinel is ready but whose exit status the system gives only after
    ``late`` reads (the moment between a process closing its files and becoming reapable)."""

    def __init__(self, pid, status, late):
        self.pid, self._status, self._late = pid, status, late

    @property
    def exitcode(self):
        self._late -= 1
        return None if self._late >= 0 else self._status


def test_the_killed_worker_is_told_from_the_terminated_one_whose_status_comes_late():
    """The flake of the test above under load: both sentinels ready at once, the pool's terminated worker not yet
    reapable (exitcode None), so it passed for a killed one and the message named both calls."""
    import multiprocessing as mp
    watch = parallel._Watch(mp.get_context("spawn"))
    try:
        watch._running = {11: "net0", 12: "net1"}
        watch._first_dead = [_Ending(11, -signal.SIGTERM, late=3), _Ending(12, -signal.SIGKILL, late=2)]
        assert watch.dead_keys() == ["net1"]
    finally:
        watch.close()


def test_a_pool_reports_each_result_under_its_key():
    got = dict(parallel.run_in_pool([("a", abs, (-3,)), ("b", max, (1, 5))], workers=2))
    assert got == {"a": 3, "b": 5}


def test_a_failing_call_is_reported_with_its_key():
    with pytest.raises(parallel.TaskFailed, match=r"^b: invalid literal"):
        list(parallel.run_in_pool([("b", int, ("x",))], workers=2))


# ------------------------------------------------------------------------------------------ --scheduler
@pytest.fixture
def silent_server():
    """The address of a port that accepts connections and never sends a byte (item 13: no output for 540 s)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except (socket.timeout, OSError):
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for c in held:
        c.close()
    server.close()


def _closed_port_address():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"tcp://127.0.0.1:{port}"


def test_a_scheduler_that_never_answers_is_refused_with_its_address(silent_server, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(parallel, "SCHEDULER_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(CliError) as info:
        list(parallel.run_tasks([("run0/control", None, None, None)], scheduler=silent_server))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"--scheduler {silent_server}: no Dask scheduler answered within 0.5 s"), msg
    assert "accepted the connection but never answered" in msg and "check that `dask scheduler` runs there" in msg


def test_a_refused_scheduler_port_says_so(monkeypatch):
    pytest.importorskip("distributed")
    address = _closed_port_address()
    with pytest.raises(CliError, match=f"^--scheduler {address}: no Dask scheduler answered within 0.5 s "
                                       r"\(connection refused: nothing listens on that port\); check that"):
        parallel.connect_scheduler(address, timeout=0.5)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1", "127.0.0.1:port", "ftp://host:1"])
def test_a_malformed_scheduler_address_is_refused_at_once(address):
    pytest.importorskip("distributed")
    with pytest.raises(CliError, match=f"^--scheduler '{address}' is not a Dask scheduler address"):
        parallel.connect_scheduler(address, timeout=30)


def test_without_dask_the_scheduler_path_is_a_one_line_refusal(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)          # import distributed -> ImportError
    with pytest.raises(NanosgmError, match=r'--scheduler needs Dask distributed: pip install -e "\.\[cluster\]"'):
        list(parallel.run_tasks([("run0/control", None, None, None)], scheduler="tcp://127.0.0.1:8786"))


def test_a_live_scheduler_is_connected():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        client = parallel.connect_scheduler(cl.scheduler_address, timeout=5)
        try:
            assert client.submit(abs, -4).result() == 4
        finally:
            client.close()


def test_an_unreachable_scheduler_is_refused_before_the_protocol_folder_is_touched(tmp_path, monkeypatch):
    """run_protocol connects first: a refused --scheduler writes no protocol.json and makes no folder."""
    pytest.importorskip("distributed")
    from nanosgm.experiments import protocol
    from nanosgm.experiments.network import NetworkSpec
    monkeypatch.setattr(parallel, "SCHEDULER_TIMEOUT_SECONDS", 0.5)
    out = tmp_path / "p"
    with pytest.raises(CliError, match="no Dask scheduler answered"):
        protocol.run_protocol(NetworkSpec(dataset="mnist"), runs=1, arms="sgm:0.2", out=str(out),
                              scheduler=_closed_port_address(), progress=False, bars=False)
    assert not out.exists()
