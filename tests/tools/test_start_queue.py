"""tools/start_queue.sh: on a new machine it would make the three checkouts and start the queue detached
(--dry-run, so nothing is made or started here); it says so when the queue runs already; one-line refusals."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "start_queue.sh"


@pytest.fixture(autouse=True)
def data(tmp_path_factory):
    """A folder with mnist/ (the script checks that much) for every call of start, and stand-ins for git and
    setsid that fail, so that a test whose dry run stopped being one makes no checkout and starts nothing."""
    global DATA, STUBS
    DATA = tmp_path_factory.mktemp("data")
    (DATA / "mnist").mkdir()
    STUBS = tmp_path_factory.mktemp("bin")
    for name in ("git", "setsid"):
        (STUBS / name).write_text("#!/bin/sh\necho \"stand-in $0: not here\" >&2\nexit 1\n")
        (STUBS / name).chmod(0o755)


def start(*args, data="made", **env):
    full = {k: v for k, v in os.environ.items() if k != "NANOSGM_DATA"} | {"PY": sys.executable} | env
    full["PATH"] = f"{STUBS}:{os.environ['PATH']}"
    if data is not None:
        full["NANOSGM_DATA"] = str(DATA) if data == "made" else data
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=full,
                          timeout=60)


def test_a_dry_run_names_the_checkouts_the_copy_and_the_detached_start(tmp_path):
    got = start("--dry-run", tmp_path)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].endswith(f"worktree add --detach {tmp_path}/run HEAD")
    assert lines[1].endswith(f"worktree add --detach {tmp_path}/frozen b8b8142")
    assert lines[2].endswith(f"worktree add --detach {tmp_path}/dcode HEAD")
    assert lines[3] == f"would run: cp {SCRIPT.parent}/background_queue.sh {tmp_path}/queue.sh"
    assert lines[4] == (f"would start: CODE={tmp_path}/frozen DCODE={tmp_path}/dcode PY={sys.executable} "
                        f"{tmp_path}/queue.sh {tmp_path}/run >> {tmp_path}/queue.log")
    assert start(tmp_path, "--dry-run").stdout == got.stdout         # --dry-run after BASE: still a dry run
    (tmp_path / "run").mkdir()                               # a checkout there already: not made again
    assert "worktree add --detach " + str(tmp_path / "run") not in start("--dry-run", tmp_path).stdout
    assert not (tmp_path / "queue.sh").exists()


@pytest.mark.skipif(shutil.which("pgrep") is None, reason="needs pgrep")
def test_a_running_queue_is_left_alone(tmp_path):
    fake = subprocess.Popen(["bash", "-c", f'exec -a "bash {tmp_path}/queue.sh {tmp_path}/run" sleep 30'])
    try:
        time.sleep(0.5)
        got = start(tmp_path)
        assert got.returncode == 0 and got.stdout.startswith(f"the queue runs already (pid {fake.pid})")
    finally:
        fake.kill()
    assert not (tmp_path / "queue.sh").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("case,why", [
    ("no data", "error: set NANOSGM_DATA"), ("data without mnist", "error: NANOSGM_DATA=/nowhere holds no mnist/"),
    ("no folder", "error: no folder"), ("empty base", "error: BASE is empty"), ("two bases", "error: one BASE at most"),
    ("an option", "error: no option --dryrun"), ("no python", "error: no python at"),
    ("python a folder", "error: no python at")])
def test_the_script_refuses_in_one_line(tmp_path, case, why):
    args = {"no folder": [tmp_path / "nowhere"], "empty base": [""], "two bases": [tmp_path, tmp_path],
            "an option": ["--dry-run", "--dryrun", tmp_path]}.get(case, [tmp_path])
    env = {"no data": {"data": None}, "data without mnist": {"data": "/nowhere"},
           "no python": {"PY": str(tmp_path / "python")}, "python a folder": {"PY": str(tmp_path)}}.get(case, {})
    got = start(*args, **env) if case == "an option" else start("--dry-run", *args, **env)
    assert got.returncode == 2 and got.stderr.count("\n") == 1 and got.stderr.startswith(why), got.stderr
    assert got.stdout == ""
