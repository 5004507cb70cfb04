"""Throughput benchmark of the paper's networks: ``python -m nanosgm.bench [--compare-torch]``.

For each paper network (Tables 1-3: ``dnn``, ``cnn``, ``cifar_cnn``) on the active backend it measures
images per second, at one batch size (default 128), of

    train (Adam)   forward(training=True) + softmax cross-entropy + backward to the inputs (dE/dX, Eq. 14,
                   which every nanosgm backward computes) + Adam step
    train (WAME)   the same with WAME, the paper's optimizer (PyTorch has no WAME: no torch column)
    infer          forward(training=False)
    FGSM           attacks.fgsm at eps = 0.1: an inference forward + backward to the input + the sign step
                   (the labels' bounds found on the host once, as the training steps' and evaluate's are)

``--compare-torch`` translates the SAME nanosgm network layer by layer into ``torch.nn`` (the one
translation, :func:`nanosgm.bench.torch_bridge.to_torch`), copies its weights, and times in the same
process, on the same inputs, batch and thread count, both in float32 (torch's TF32 is turned off on the
GPU: :func:`nanosgm.bench.cells.full_precision`):

    train (Adam)   model.train(); x.requires_grad_(True); cross-entropy; backward (fills x.grad too); Adam
    infer          model.eval() under torch.no_grad()
    FGSM           model.eval(); torch.autograd.grad(loss, x) (the input gradient only, as nanosgm's
                   attacks, whose backward runs with param_grads=False); clamp(x + eps * sign(g), 0, 1)

and prints the ratios nanosgm / torch (above 1: nanosgm is faster). Both sides run in float32.

Measurement: ``--warmup`` steps (default 2; fewer if they already took ``--seconds``) that are not
timed, then steps are timed one by one until at least ``--seconds`` (default 3) have passed (at least
one step); the cell's figure is batch / median step time; min, max and quartiles are kept too. With
``--compare-torch`` the nanosgm and torch steps of a column run in alternating blocks (three each, see
:func:`measure_pair`), so a change in background load falls on both sides alike. With the CuPy backend
the clock is read after ``backend.synchronize()`` (and ``torch.cuda.synchronize()``; torch then runs on
CUDA when it can).

Honesty: the report gives, per cell, the median / min / max step time and the interquartile range;
the 1-minute load average before and after the run; the machine's float32 GEMM peak (a 2048x2048
matmul, the better of NumPy's and torch's) and the GEMM FLOP/s each step reaches (its matrix-product
FLOPs counted from the layer shapes, :mod:`nanosgm.bench.profile`), as a fraction of that peak. It warns when
a cell's steps spread widely (IQR over 20 % of the median), when a side has fewer than 5 timed steps,
when a ratio from median steps and one from the fastest steps disagree by over 10 % (the ratio is then
marked '?'), and when other processes load the machine (more than 0.25 per CPU besides the bench).
``--profile`` prints instead the per-layer forward and backward times of one network's training step
and the Adam and WAME optimizer steps, so one sees where the time goes. ``--launches`` counts instead, on the
CPU stand-in for CuPy, the kernel launches and device-to-host reads of one step of each column
(:mod:`nanosgm.bench.launches`).

Threads: ``--threads N`` (default ``os.cpu_count()``) sets the BLAS threads of NumPy and
``torch.set_num_threads(N)``. NumPy's BLAS threads are changed at run time with ``threadpoolctl`` when it
is installed, else through OpenBLAS's own ``*openblas_set_num_threads*`` entry point found in the loaded
library (ctypes). If neither works the BLAS uses what ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` said
when NumPy was imported (all cores when unset) and the header says so. NumPy's element-wise operations
are single-threaded whatever N is; torch's are not.

torch is imported lazily, only inside this module's functions: ``import nanosgm`` never needs it.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from .. import backend, models
from . import profile
from ..plumbing.argparser import Parser
from ..plumbing.blas import set_blas_threads
from ..plumbing.cli import CliError, run_cli
from ..plumbing.threads import set_threads
from ..plumbing.files import write_json_atomic
from ..plumbing.flags import number, whole
from ..optim import build_optimizer
from .cells import (COLUMNS, FGSM_EPS, HEADERS, INPUT_SHAPES, LR, TORCH_COLUMNS, full_precision, grid,  # noqa: F401
                    import_full_precision, make_batch, nanosgm_cells, torch_cells)
from .torch_bridge import TorchMissing, to_torch   # to_torch: re-exported, other code uses it

__all__ = ["main", "parser", "to_torch", "measure", "measure_pair", "summary", "nanosgm_cells", "torch_cells",
           "INPUT_SHAPES", "COLUMNS", "TorchMissing", "set_blas_threads", "blas_gflops", "format_table",
           "format_details", "cell_warnings", "ratio_warnings", "load_warnings", "spread"]

# ----------------------------------------------------------------------------------------------- timing
def _sync() -> None:
    backend.synchronize()


def measure(fn: Callable[[], object], seconds: float, warmup: int = 2, sync: Callable[[], object] = _sync) -> dict:
    """Run ``fn`` up to ``warmup`` times untimed, then time single calls until ``seconds`` have passed
    (at least one). ``sync`` is called after each call, before the clock is read.

    The warm-up stops early (after at least one call) once it has taken ``seconds``: on a slow cell
    (the CIFAR CNN on a laptop CPU) one warm-up step already allocates every buffer and optimizer slot.
    Returns :func:`summary` of the timed steps, plus their list under "times"."""
    done = 0
    t_warm = time.perf_counter()
    while done < max(int(warmup), 0):
        fn()
        sync()
        done += 1
        if time.perf_counter() - t_warm >= seconds:
            break
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        sync()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 - start >= seconds:
            break
    return {**summary(times, done), "times": times}


def measure_pair(fn_a: Callable[[], object], fn_b: Callable[[], object], seconds: float, warmup: int = 2,
                 sync_a: Callable[[], object] = _sync, sync_b: Callable[[], object] = _sync, rounds: int = 3) -> tuple:
    """:func:`measure` for two step functions in alternating blocks: A, B, A, B, ... (``rounds`` each).

    Blocks, not single steps: after each call BLAS and OpenMP worker threads keep spinning for a while,
    and a step that follows the *other* library's step would pay for them. Each block starts with one
    untimed step; the medians are over all timed steps of a side. ``seconds`` is per side.
    """
    times: tuple[list[float], list[float]] = ([], [])
    done = [0, 0]
    for r in range(max(int(rounds), 1)):
        for k, (fn, sync) in enumerate(((fn_a, sync_a), (fn_b, sync_b))):
            m = measure(fn, seconds / rounds, warmup if r == 0 else 1, sync)
            times[k].extend(m.pop("times"))
            done[k] += m["warmup"]
    return tuple(summary(t, w) for t, w in zip(times, done))


def summary(times: Sequence[float], warmup: int) -> dict:
    """{"median_s", "min_s", "max_s", "q1_s", "q3_s" (quartiles), "reps", "warmup"} of step times (seconds)."""
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else (times[0],) * 3
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "q1_s": q1, "q3_s": q3,
            "reps": len(times), "warmup": warmup}


def blas_gflops(n: int = 2048, reps: int = 5, asarray: Callable | None = None,
                sync: Callable[[], object] = _sync) -> float:
    """GFLOP/s of an n x n float32 matmul (2 n^3 flops), best of ``reps`` after one warm-up.
    ``asarray`` moves the host operands (default: the active backend's ``to_device``; torch.as_tensor works)."""
    asarray = backend.to_device if asarray is None else asarray
    g = np.random.default_rng(0)
    a = asarray(g.standard_normal((n, n), dtype=np.float32))
    b = asarray(g.standard_normal((n, n), dtype=np.float32))
    c = a @ b
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        c = a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    del c
    return 2.0 * n ** 3 / best / 1e9


# ----------------------------------------------------------------------------------------------- report
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name() -> str:
    if backend.name() == "cupy":
        try:
            import cupy
            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            name = props["name"]
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception as exc:  # pragma: no cover - GPU only
            return f"CUDA device (name unavailable: {exc})"
    return f"{cpu_name()} ({os.cpu_count()} logical CPUs)"


# ----------------------------------------------------------------------------------------------- honesty
SPREAD_WARN = 0.2    # interquartile range / median of one cell's step times above this: a noisy cell
RATIO_WARN = 0.10    # median-based and best-step-based ratios disagreeing by more than this: unreliable ratio
MIN_REPS = 5         # fewer timed steps per side than this: a ratio from too few steps
BUSY_LOAD = 0.25     # other processes' load average per CPU above this: the machine is shared


def spread(m: dict) -> float:
    """Interquartile range / median of a cell's step times: 0 for steady steps. (The range, max - min,
    is printed too, but one slow step from a background process would dominate it.)"""
    return (m["q3_s"] - m["q1_s"]) / m["median_s"] if m["median_s"] > 0 else 0.0


def cell_warnings(label: str, m: dict) -> list:
    """Warnings (strings) about one cell's timings."""
    out = []
    if spread(m) > SPREAD_WARN:
        out.append(f"{label}: the middle half of the step times spans {100 * spread(m):.0f}% of the median "
                   f"({m['q1_s'] * 1e3:.1f} to {m['q3_s'] * 1e3:.1f} ms; min {m['min_s'] * 1e3:.1f}, max {m['max_s'] * 1e3:.1f})")
    if m["reps"] < MIN_REPS:
        out.append(f"{label}: only {m['reps']} timed step(s); raise --seconds")
    return out


def ratio_warnings(label: str, ours: dict, theirs: dict) -> list:
    """Warnings that make the ratio nanosgm/torch of one column unreliable (empty: it can be trusted)."""
    out = cell_warnings(f"{label} nanosgm", ours) + cell_warnings(f"{label} torch", theirs)
    by_median = theirs["median_s"] / ours["median_s"]
    by_min = theirs["min_s"] / ours["min_s"]
    if abs(by_median / by_min - 1) > RATIO_WARN:
        out.append(f"{label}: the ratio is {by_median:.2f}x from median steps but {by_min:.2f}x from the fastest steps")
    return out


def load_warnings(before: float | None, after: float | None, cpus: int, threads: int) -> list:
    """Warnings when other processes load the machine: before the run, or after it beyond the bench's own threads."""
    out, limit = [], BUSY_LOAD * max(cpus, 1)
    if before is not None and before > limit:
        out.append(f"load average {before:.2f} on {cpus} CPUs before the run: other processes share the cores")
    if after is not None and after - threads > limit:
        out.append(f"load average {after:.2f} after the run, more than the bench's own {threads} thread(s): "
                   "other processes shared the cores")
    return out


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


# ----------------------------------------------------------------------------------------------- tables
def _fmt(v: float | None, ratio: bool = False, doubtful: bool = False) -> str:
    if v is None:
        return "-"
    return (f"{v:.2f}x" + ("?" if doubtful else "")) if ratio else f"{v:,.0f}"


def format_table(results: dict, compare: bool) -> str:
    """The throughput table (img/s per column; with ``compare`` the torch rows and the ratios, a ratio
    marked '?' when :func:`ratio_warnings` found it unreliable)."""
    rows = []
    for name, r in results.items():
        rows.append([name, "nanosgm"] + [_fmt(r["nanosgm"][c]["img_per_s"]) for c in COLUMNS])
        if compare:
            rows.append([name, f"torch ({r['torch_device']})"]
                        + [_fmt(r["torch"][c]["img_per_s"]) if c in r["torch"] else "-" for c in COLUMNS])
            rows.append([name, "nanosgm/torch"] + [_fmt(r["ratio"].get(c), True, bool(r.get("ratio_warnings", {}).get(c)))
                                                   for c in COLUMNS])
    return grid(["model", "run"] + [HEADERS[c] for c in COLUMNS], rows)


def format_details(results: dict, peak_gflops: float | None) -> str:
    """Per cell: median / min / max step time, spread, GEMM GFLOP/s reached and its share of the peak."""
    rows = []
    for name, r in results.items():
        for side in ("nanosgm", "torch"):
            for col, m in r.get(side, {}).items():
                rate = m.get("gemm_gflops")
                rows.append([name, side, col, f"{m['median_s'] * 1e3:.2f}", f"{m['min_s'] * 1e3:.2f}",
                             f"{m['max_s'] * 1e3:.2f}", f"{100 * spread(m):.0f}%", str(m["reps"]),
                             "-" if rate is None else f"{rate:.1f}",
                             "-" if rate is None or not peak_gflops else f"{100 * rate / peak_gflops:.0f}%"])
    return grid(["model", "run", "column", "median ms", "min ms", "max ms", "IQR/median", "steps", "GEMM GFLOP/s",
                  "of peak"], rows, left=3)


# ----------------------------------------------------------------------------------------------- main
DESCRIPTION = ("Throughput of the paper's networks (Tables 1-3) on the active backend: images per second of a "
               "training step (Adam, WAME), inference and FGSM. --compare-torch times the same networks in PyTorch; "
               "--profile shows where a training step's time goes.")


PROG = "python -m nanosgm.bench"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The flags; ``prog`` is the command in the usage line and messages (``nanosgm bench`` from
    :mod:`nanosgm.commands`)."""
    p = Parser(prog=prog, description=DESCRIPTION)
    p.add_argument("--models", default="dnn,cnn,cifar_cnn",
                   help="comma-separated paper networks: dnn (Table 1), cnn (Table 2), cifar_cnn (Table 3) "
                        "(default: all three)")
    p.add_argument("--batch-size", type=whole("--batch-size", least=2), default=128,
                   help="images per step (default 128; at least 2: batch normalisation needs 2 samples in training "
                        "mode)")
    p.add_argument("--backend", default=None, choices=["numpy", "cupy"],
                   help="array backend (default: NANOSGM_BACKEND or numpy)")
    p.add_argument("--seconds", type=number("--seconds", least=0), default=3.0,
                   help="timed seconds per cell and side, after the warm-up (default 3)")
    p.add_argument("--warmup", type=whole("--warmup", least=0), default=2,
                   help="untimed steps per cell, fewer if they take --seconds (default 2)")
    p.add_argument("--threads", type=whole("--threads", least=1), default=None, metavar="N",
                   help="BLAS, torch and nanosgm threads (default: one per CPU)")
    p.add_argument("--compare-torch", action="store_true", help="also time the same networks in PyTorch")
    p.add_argument("--profile", action="store_true",
                   help="instead of the throughput table, print the per-layer forward/backward times and the "
                        "optimizer steps of the first --models network")
    p.add_argument("--launches", action="store_true",
                   help="instead of timing, count the kernel launches, device-to-host reads and uploads of one step "
                        "of each column on the CPU stand-in for CuPy (no GPU needed; --backend is ignored)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON (atomically)")
    p.add_argument("--seed", type=whole("--seed", least=0), default=0,
                   help="seed of the weights and the random batch (default 0)")
    p.add_argument("--no-progress", action="store_true",
                   help="no line per cell as it finishes (the tables are still printed)")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p


def _model_names(raw_list: str) -> list:
    """The network keys of the --models string (CliError naming a bad one)."""
    names = []
    for raw in raw_list.split(","):
        raw = raw.strip()
        if not raw:
            continue
        key = models.ALIASES.get(raw, raw)
        if key not in models.MODELS:
            raise CliError(f"--models: unknown model {raw!r}; choose from {', '.join(models.MODELS)} "
                           f"(aliases: {', '.join(sorted(models.ALIASES))})")
        if key not in INPUT_SHAPES:
            raise CliError(f"--models: no input shape known for model {key!r}; add it to nanosgm.bench.INPUT_SHAPES")
        if key not in names:
            names.append(key)
    if not names:
        raise CliError("--models is empty; give one or more of " + ", ".join(INPUT_SHAPES))
    return names


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """``python -m nanosgm.bench`` (``prog`` names the command in its help and messages); the exit status."""
    return run_cli(lambda a: _main(a, prog), argv)


def _main(argv: list[str], prog: str = PROG) -> int:
    args = parser(prog).parse_args(argv)
    names = _model_names(args.models)
    if args.launches:
        from .launches import run as count_launches     # the CPU stand-in, whatever --backend says
        return count_launches(args, names)
    threads = args.threads if args.threads is not None else (os.cpu_count() or 1)   # numbers: checked by parser()
    if args.backend:
        backend.use(args.backend)
    backend.name()                        # an unusable NANOSGM_BACKEND is refused here, before anything runs
    torch = None
    if args.compare_torch and not args.profile:
        try:
            torch = import_full_precision()
        except TorchMissing as exc:
            raise CliError(str(exc)) from None

    restore_threads, blas_desc = set_threads(threads)     # BLAS and nanosgm's own threads
    torch_threads_before = torch.get_num_threads() if torch is not None else None
    try:
        if args.profile:
            return _profile(args, names[0], threads, blas_desc)
        return _run(args, names, threads, blas_desc, torch)
    finally:
        restore_threads()
        if torch is not None:
            torch.set_num_threads(torch_threads_before)


def _profile(args: argparse.Namespace, name: str, threads: int, blas_desc: str) -> int:
    """--profile: per-layer times of one network's training step, and each optimizer's step."""
    load = loadavg()
    peak = blas_gflops()
    model, x, y, _, _ = make_batch(name, args.batch_size, args.seed)
    print(f"nanosgm profile | {name} | backend {backend.name()} | device {device_name()} | threads {threads} "
          f"(BLAS: {blas_desc}) | batch {args.batch_size} | float32 | load average {load if load is None else f'{load:.2f}'} | "
          f"GEMM peak {peak:.1f} GFLOP/s")
    reps = max(3, int(args.warmup) + 3)
    rows = profile.profile_layers(model, x, y, reps=reps)           # leaves every gradient filled
    steps = []
    for kind in ("adam", "wame"):
        opt = build_optimizer(kind, LR)
        opt.step(model)                                              # allocates the state
        steps.append((f"{kind} step", profile.median_time(lambda: opt.step(model), reps)))
    print(profile.format_profile(rows, peak, steps))
    print(f"(medians of {reps} calls per layer; an optimizer row is one step over all {model.num_params():,} "
          "weights, added to the forward + backward time)")
    for w in load_warnings(load, loadavg(), os.cpu_count() or 1, threads):
        print(f"WARNING: {w}")
    if args.json:
        write_json_atomic(args.json, {"model": name, "rows": rows, "optimizer_steps_s": dict(steps),
                                      "gemm_peak_gflops": peak, "load_avg_1min": load})
        print(f"wrote {args.json}")
    return 0


def _header(args: argparse.Namespace, threads: int, blas_desc: str, torch: ModuleType | None, tdev: str,
            tsync: Callable[[], None], on_gpu: bool) -> dict:
    """Print the run's header (machine, threads, load, GEMM peak); returns the JSON meta."""
    load = loadavg()
    meta = {
        "load_avg_1min_at_start": load,
        "backend": backend.name(), "device": device_name(), "numpy": np.__version__,
        "python": platform.python_version(), "threads": threads, "blas_threads": blas_desc,
        "batch_size": args.batch_size, "seconds": args.seconds, "warmup": args.warmup, "seed": args.seed,
        "dtype": "float32", "fgsm_eps": FGSM_EPS, "lr": LR,
        "torch": None if torch is None else torch.__version__,
        "torch_device": None if torch is None else tdev,
        "torch_threads": None if torch is None else torch.get_num_threads(),
    }
    print(f"nanosgm bench | backend {meta['backend']} | device {meta['device']} | numpy {meta['numpy']} | "
          f"threads {threads} (BLAS: {blas_desc}) | batch {args.batch_size} | float32")
    if load is not None:
        print(f"load average (1 min) at start: {load:.2f} on {os.cpu_count()} CPUs")
    if torch is not None:
        print(f"torch {torch.__version__} on {tdev} | torch threads {meta['torch_threads']}"
              + ("  (note: nanosgm on GPU, torch on CPU: ratios compare devices)" if on_gpu and tdev == "cpu" else ""))
    meta["blas_gflops"] = blas_gflops()
    ref = f"float32 GEMM peak: 2048x2048 matmul = {meta['blas_gflops']:.1f} GFLOP/s ({backend.name()})"
    if torch is not None:
        meta["torch_matmul_gflops"] = blas_gflops(asarray=lambda a: torch.as_tensor(a, device=tdev), sync=tsync)
        ref += f", {meta['torch_matmul_gflops']:.1f} GFLOP/s (torch {tdev})"
    meta["gemm_peak_gflops"] = max(meta["blas_gflops"], meta.get("torch_matmul_gflops") or 0.0)
    print(ref + f"; the peak used below: {meta['gemm_peak_gflops']:.1f}")
    print(f"timing: {args.warmup} warm-up steps (fewer if they take over {args.seconds:g} s), then >= "
          f"{args.seconds:g} s per cell; img/s = batch / median step time", flush=True)
    return meta


def _run(args: argparse.Namespace, names: list[str], threads: int, blas_desc: str, torch: ModuleType | None) -> int:
    t_start = time.perf_counter()
    on_gpu = backend.name() == "cupy"
    tdev = "cpu"
    if torch is not None:
        torch.set_num_threads(threads)
        if on_gpu and torch.cuda.is_available():
            tdev = "cuda"

    def tsync() -> None:
        if tdev == "cuda":
            assert torch is not None            # tdev is "cuda" only with torch
            torch.cuda.synchronize()

    meta = _header(args, threads, blas_desc, torch, tdev, tsync, on_gpu)
    warnings: list[str] = []
    results = {}
    for name in names:
        results[name] = _bench_network(name, args, torch, tdev, tsync, warnings)
        gc.collect()

    meta["wall_s"] = time.perf_counter() - t_start
    meta["load_avg_1min_at_end"] = loadavg()
    warnings = load_warnings(meta["load_avg_1min_at_start"], meta["load_avg_1min_at_end"], os.cpu_count() or 1,
                             threads) + warnings
    meta["warnings"] = warnings
    print()
    print(format_table(results, torch is not None))
    print(f"(ratio nanosgm/torch > 1: nanosgm faster; '?': unreliable, see the warnings; torch has no WAME; "
          f"total {meta['wall_s']:.0f} s)")
    print()
    print(format_details(results, meta["gemm_peak_gflops"]))
    print(f"(GEMM GFLOP/s: matrix-product FLOPs of the step counted from the layer shapes (nanosgm.bench.profile) / median "
          f"step time; peak {meta['gemm_peak_gflops']:.1f} GFLOP/s; load average "
          f"{_fmt_load(meta['load_avg_1min_at_start'])} at start, {_fmt_load(meta['load_avg_1min_at_end'])} at end)")
    for w in warnings:
        print(f"WARNING: {w}")
    if args.json:
        write_json_atomic(args.json, {"meta": meta, "columns": list(COLUMNS), "results": results})
        print(f"wrote {args.json}")
    return 0


def _fmt_load(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.2f}"


def _bench_network(name: str, args: argparse.Namespace, torch: ModuleType | None, tdev: str,
                   tsync: Callable[[], None], warnings: list[str]) -> dict:
    """Time every column of one network (and its torch twin); appends warnings; returns its results."""
    model, x, y, x_host, y_host = make_batch(name, args.batch_size, args.seed)
    flops = profile.step_flops(model, INPUT_SHAPES[name], args.batch_size)
    r: dict[str, Any] = {"input_shape": list(INPUT_SHAPES[name]), "params": model.num_params(), "nanosgm": {},
                         "gemm_gflop_per_step": {c: f / 1e9 for c, f in flops.items()}}
    tcells = {}
    if torch is not None:
        tmodel = to_torch(model, INPUT_SHAPES[name], device=tdev)   # before any step: the same initial weights
        tcells = torch_cells(tmodel, torch.from_numpy(x_host).to(tdev), torch.from_numpy(y_host).to(tdev))
        r.update(torch_device=tdev, torch={}, ratio={}, ratio_warnings={})

    def report(side: str, col: str, m: dict) -> None:
        m["img_per_s"] = args.batch_size / m["median_s"]
        m["gemm_gflops"] = flops[col] / m["median_s"] / 1e9
        r[side][col] = m
        if not args.no_progress:
            print(f"  {name:9s} {side:7s} {col:10s} {m['img_per_s']:10,.1f} img/s  (median {m['median_s'] * 1e3:.1f} "
                  f"ms/step, min {m['min_s'] * 1e3:.1f}, max {m['max_s'] * 1e3:.1f}, {m['reps']} steps)", flush=True)

    for col, fn in nanosgm_cells(model, x, y).items():
        gc.collect()
        if col in tcells:              # alternate nanosgm and torch steps: same conditions for both
            m, mt = measure_pair(fn, tcells[col], args.seconds, args.warmup, sync_b=tsync)
            report("nanosgm", col, m)
            report("torch", col, mt)
            r["ratio"][col] = m["img_per_s"] / mt["img_per_s"]
            r["ratio_warnings"][col] = ratio_warnings(f"{name} {col}", m, mt)
            warnings += r["ratio_warnings"][col]
        else:
            m = measure(fn, args.seconds, args.warmup)
            m.pop("times")
            report("nanosgm", col, m)
            warnings += cell_warnings(f"{name} {col} nanosgm", m)
    return r
