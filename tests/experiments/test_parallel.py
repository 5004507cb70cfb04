"""Worker processes of a protocol (nanosgm/experiments/parallel.py) end with their coordinator, however it ends."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

COORDINATOR = textwrap.dedent("""
    import multiprocessing as mp, sys, time
    from nanosgm.experiments.parallel import worker_pool
    if __name__ == "__main__":
        pool = worker_pool(2)
        futures = [pool.submit(time.sleep, 120) for _ in range(2)]
        time.sleep(2)
        print(" ".join(str(p.pid) for p in mp.active_children()), flush=True)
        time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"          # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_when_their_coordinator_is_killed(tmp_path, sig):
    script = tmp_path / "coordinator.py"
    script.write_text(COORDINATOR)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) >= 2 and all(_alive(p) for p in workers)
    os.kill(proc.pid, sig)
    proc.wait(timeout=10)
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "a worker outlived its coordinator"
