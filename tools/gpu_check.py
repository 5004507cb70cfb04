"""The GPU check: everything the CuPy backend should show on one NVIDIA GPU, in under 8 minutes, offline.

    python tools/gpu_check.py [--out DIR] [--budget SECONDS] [--data-dir DIR]

Run from a checkout on a machine with one NVIDIA GPU, cupy and PyTorch (CUDA), no network. Steps, each
in its own process with a time limit (the limits add up to at most --budget, default 450 s):

    tests      python -m pytest -q -m gpu          every gpu-marked test (tests/test_gpu_backend.py and
                                                    the CuPy cases in the other test files)
    bench      python -m nanosgm.bench --backend cupy --compare-torch   the three paper networks against
                                                    PyTorch on CUDA (img/s, ratios, GEMM peak)
    protocol   python -m nanosgm.experiments mnist --runs 2 --epochs 2 --pgd 200 --workers 4 --backend cupy
                                                    a 2-pair, 2-epoch MNIST-CNN protocol, workers sharing the GPU

MNIST is looked for in ``data/mnist`` inside the checkout (git-ignored, so it travels with the working
tree: ``mkdir -p data && cp -r $NANOSGM_DATA/mnist data/``), else in --data-dir / NANOSGM_DATA. A step
that fails (or an option the installed nanosgm lacks) is reported and the next step runs.

Writes ``gpu_check.json`` and ``gpu_check.txt`` (a short summary: each step's status and time, the
bench table, the protocol's medians) under --out (default: $OUT if set, else ./gpu_check_out).

Exit status: 0 every step passed, or there is no usable GPU (then the summary says "no GPU" and why, and
no step runs); 1 a step failed, ran out of time or could not run (no MNIST); 2 bad arguments or an
unwritable --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))                      # run from a checkout without installing

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SHARES = {"tests": 0.3, "bench": 0.3, "protocol": 0.4}     # of --budget, each step's time limit
TAIL = 3000                                                # characters of output kept per step


def gpu_status() -> tuple[bool, str, str]:
    """(usable, reason when not, device name) for the first CUDA device, through nanosgm's backend check."""
    from nanosgm import backend
    ok, why = backend.cupy_available()
    if not ok:
        return False, why, ""
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return True, "", name


def find_mnist(data_dir) -> Path | None:
    """The folder holding mnist/ (data/ in the checkout first, then --data-dir, then NANOSGM_DATA), or None."""
    for base in (ROOT / "data", data_dir, os.environ.get("NANOSGM_DATA")):
        if base and (Path(base) / "mnist").is_dir() and any((Path(base) / "mnist").glob("*ubyte*")):
            return Path(base)
    return None


def run_step(name: str, cmd: list, timeout: float, env=None) -> dict:
    """Run one step; returns {"name", "cmd", "status" (passed/failed/timeout), "rc", "wall_s", "tail"}."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout, 1), env=env)
        rc, out = proc.returncode, (proc.stdout or "") + (proc.stderr or "")
        status = "passed" if rc == 0 else "failed"
    except subprocess.TimeoutExpired as exc:
        rc, status = None, "timeout"
        out = "".join(s if isinstance(s, str) else (s or b"").decode(errors="replace") for s in (exc.stdout, exc.stderr))
        out += f"\n[gpu_check: stopped after {timeout:.0f} s]"
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return {"name": name, "cmd": " ".join(map(str, cmd)), "status": status, "rc": rc,
            "wall_s": round(time.perf_counter() - t0, 1), "last_line": last, "tail": out[-TAIL:]}


def skipped(name: str, why: str) -> dict:
    return {"name": name, "cmd": "", "status": "skipped", "rc": None, "wall_s": 0.0, "last_line": why, "tail": why}


def steps(out: Path, data: Path | None, budget: float) -> list:
    """Run the three steps in order (see the module docstring); returns their records."""
    py = sys.executable
    env = dict(os.environ, MPLBACKEND="Agg")
    records = [run_step("tests", [py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
                        SHARES["tests"] * budget, env)]
    records.append(run_step("bench", [py, "-m", "nanosgm.bench", "--backend", "cupy", "--compare-torch",
                                      "--seconds", "1", "--json", str(out / "bench.json")],
                            SHARES["bench"] * budget, env))
    if data is None:
        records.append(skipped("protocol", "no MNIST found: put the four IDX files in data/mnist inside the checkout "
                                           "(git-ignored), or pass --data-dir / set NANOSGM_DATA"))
    else:
        records.append(run_step("protocol", [py, "-m", "nanosgm.experiments", "mnist", "--runs", "2", "--epochs", "2",
                                             "--pgd", "200", "--workers", "4", "--backend", "cupy", "--no-progress",
                                             "--data-dir", str(data), "--out", str(out / "protocol")],
                                SHARES["protocol"] * budget, env))
    return records


def bench_table(out: Path) -> str:
    """The bench's throughput table (from its JSON), or '' when the bench wrote none."""
    path = out / "bench.json"
    if not path.exists():
        return ""
    from nanosgm import bench
    d = json.loads(path.read_text())
    return bench.format_table(d["results"], compare=bool(d["meta"].get("torch")))


def summary_text(s: dict) -> str:
    lines = [f"nanosgm GPU check | {s['when']} | device: {s['device'] or 'none'}"]
    if not s["gpu"]:
        lines.append(f"no GPU: {s['reason']}; no step was run.")
        return "\n".join(lines) + "\n"
    for r in s["steps"]:
        lines.append(f"  {r['name']:9s} {r['status']:8s} {r['wall_s']:7.1f} s  {r['cmd']}")
        lines.append(f"      last line: {r['last_line']}")       # e.g. pytest's 'N passed, M skipped'
        if r["status"] != "passed":
            lines += ["      | " + ln for ln in r["tail"].strip().splitlines()[-8:]]
    if s.get("bench_table"):
        lines += ["", s["bench_table"]]
    return "\n".join(lines) + "\n"


def parser():
    p = argparse.ArgumentParser(prog="python tools/gpu_check.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out", help="folder for the summary ($OUT if set)")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all steps together")
    p.add_argument("--data-dir", default=None, help="folder with mnist/ when data/ in the checkout has none")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"gpu_check: error: cannot create --out {out} ({exc}); choose a writable folder", file=sys.stderr)
        return EXIT_USAGE
    ok, why, device = gpu_status()
    s = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": ok, "reason": why, "device": device, "steps": []}
    if ok:
        s["steps"] = steps(out, find_mnist(args.data_dir), args.budget)
        s["bench_table"] = bench_table(out)
    (out / "gpu_check.json").write_text(json.dumps(s, indent=1))
    text = summary_text(s)
    (out / "gpu_check.txt").write_text(text)
    print(text, end="")
    print(f"(summary in {out / 'gpu_check.json'} and {out / 'gpu_check.txt'})")
    incomplete = [r["name"] for r in s["steps"] if r["status"] != "passed"]      # failed, timeout or skipped
    return EXIT_FAILED if incomplete else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
