"""tools/gpu_check.py on a CPU-only machine: it reports "no GPU" cleanly; its step runner reports
failures and time-outs and goes on (the GPU steps themselves run only where a GPU is lent)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nanosgm import backend

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_no_gpu_is_reported_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "gpu_status", lambda: (False, "cupy is not importable (test)", ""))
    monkeypatch.setattr(gpu_check, "steps", lambda *a: pytest.fail("no step may run without a GPU"))
    assert gpu_check.main(["--out", str(tmp_path / "o")]) == gpu_check.EXIT_OK
    s = json.loads((tmp_path / "o" / "gpu_check.json").read_text())
    assert s["gpu"] is False and s["steps"] == [] and "cupy is not importable" in s["reason"]
    text = (tmp_path / "o" / "gpu_check.txt").read_text()
    assert "no GPU: cupy is not importable (test)" in text and text in capsys.readouterr().out


@pytest.mark.skipif(backend.cupy_available()[0], reason="a GPU is here: the script would run its full check")
def test_the_script_itself_exits_0_without_a_gpu(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no GPU" in proc.stdout and json.loads((tmp_path / "gpu_check.json").read_text())["gpu"] is False


def test_out_defaults_to_the_OUT_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("OUT", str(tmp_path / "from-env"))
    assert gpu_check.parser().parse_args([]).out == str(tmp_path / "from-env")


def test_unwritable_out_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert gpu_check.main(["--out", str(blocker / "sub")]) == gpu_check.EXIT_USAGE
    assert "cannot create --out" in capsys.readouterr().err


def test_run_step_reports_failure_and_timeout():
    r = gpu_check.run_step("fails", [sys.executable, "-c", "import sys; print('hello'); sys.exit(3)"], 60)
    assert r["status"] == "failed" and r["rc"] == 3 and "hello" in r["tail"] and r["last_line"] == "hello"
    r = gpu_check.run_step("slow", [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"], 1)
    assert r["status"] == "timeout" and r["rc"] is None and "stopped after 1 s" in r["tail"]
    assert gpu_check.run_step("ok", [sys.executable, "-c", "pass"], 60)["status"] == "passed"


def test_a_failing_step_is_reported_and_the_next_steps_still_run(tmp_path, monkeypatch):
    """E.g. an experiments CLI without --workers: that step fails (argparse exits 2), the others run."""
    calls = []

    def fake(name, cmd, timeout, env=None):
        calls.append((name, timeout))
        status = "failed" if name == "protocol" else "passed"
        return {"name": name, "cmd": " ".join(cmd), "status": status, "rc": 2 if status == "failed" else 0,
                "wall_s": 0.1, "last_line": "error: unrecognized arguments: --workers 4", "tail": "usage: ..."}

    monkeypatch.setattr(gpu_check, "gpu_status", lambda: (True, "", "Fake GPU"))
    monkeypatch.setattr(gpu_check, "run_step", fake)
    monkeypatch.setattr(gpu_check, "find_mnist", lambda data_dir: tmp_path)
    assert gpu_check.main(["--out", str(tmp_path / "o"), "--budget", "100"]) == gpu_check.EXIT_FAILED
    assert [c[0] for c in calls] == ["tests", "bench", "protocol"]
    assert sum(c[1] for c in calls) == pytest.approx(100)                    # the limits add up to --budget
    text = (tmp_path / "o" / "gpu_check.txt").read_text()
    assert "Fake GPU" in text and "protocol  failed" in text and "unrecognized arguments: --workers" in text


def test_missing_mnist_skips_the_protocol_and_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "run_step", lambda name, cmd, timeout, env=None: {
        "name": name, "cmd": "", "status": "passed", "rc": 0, "wall_s": 0.0, "last_line": "", "tail": ""})
    records = gpu_check.steps(tmp_path, None, 100)
    assert [r["status"] for r in records] == ["passed", "passed", "skipped"]
    assert "data/mnist" in records[2]["tail"]


def test_find_mnist_prefers_data_inside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "ROOT", tmp_path)
    monkeypatch.delenv("NANOSGM_DATA", raising=False)
    assert gpu_check.find_mnist(None) is None
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    other = tmp_path / "elsewhere"
    (other / "mnist").mkdir(parents=True)
    (other / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"")
    assert gpu_check.find_mnist(str(other)) == tmp_path / "data"
    (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").unlink()
    assert gpu_check.find_mnist(str(other)) == other
