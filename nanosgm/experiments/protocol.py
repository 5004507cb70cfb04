"""The paper's protocol (Sections 5-6): lock-step runs, medians, Wilcoxon tests, Tables 4-5.

For run i = 0 .. runs-1, with seed = seed0 + i, one network per ARM is trained, all lock-step with the
CONTROL network of that seed (same initial weights, batches, masks and augmentation: see
:mod:`nanosgm.methods.loop`); the only difference between them is the training method, named by its
label in the arm grammar (:mod:`nanosgm.methods.arms`: control, sgm:L, sgm:L:per-sample, published,
fgsm-at:E, fgsm-rs:E, pgd-at:E:K).

Each network (the weights of its best validation epoch) is measured by :func:`nanosgm.experiments.network.measure`:
clean accuracy (Table 4), FGSM accuracy at every eps (Table 5, Eq. 20), and optionally PGD on the first N
test images. Over the runs, per arm against the control: the MEDIAN (what the paper reports), min-max
and per-run values, and the two-sided Wilcoxon signed-rank test of the paired runs. With n pairs and no
ties the smallest exact p-value is 2 / 2**n: 0.0625 for five pairs, so "p < 0.05" cannot come from five
runs; the POOLED test over all (run, eps) cells of a row is the only way to get there, and its cells are
not independent (the same networks at several eps).

Every network is one task (:func:`nanosgm.experiments.network.train_network` on a NetworkSpec), run in this process,
in ``workers`` local processes or on a Dask cluster (:mod:`nanosgm.experiments.parallel`); its record depends on its
spec alone. Files under ``out`` (all written atomically):
    protocol.json              config, provenance, one record per finished network ("run<i>/<arm>"),
                               rewritten as each network finishes
    models/run<i>-<arm>.npz    every network's final weights (for the robustness audit; never commit)
    ckpt/run<i>-<arm>.npz      the end-of-epoch checkpoint of a network in progress (removed once recorded)
    snapshots-<arm>.npz        X_t - X_0 of the first training images after each of the first nine epochs
                               of run 0's SGM networks (Figures 5-6)
Calling again with the same ``out`` and configuration skips the recorded networks and resumes the
others from their last finished epoch; more runs or more arms extend a protocol; a different
configuration is an error.

    python -m nanosgm.experiments mnist --runs 5 --epochs 10 --arms sgm:0.2,sgm:0.2:per-sample,published
"""
from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import attacks, backend
from ..methods.arms import CONTROL, parse_arm, parse_arms, slug
from . import paper_tables, recipe
from ..plumbing.checkpoint import ConfigMismatch
from ..plumbing.files import write_json_atomic
from ..plumbing.npz import load_npz, save_npz_atomic
from .network import NetworkSpec

__all__ = ["PAPER_EPS", "PROTOCOL_FORMAT", "arm_spec", "parse_arm", "parse_arms", "ConfigMismatch", "run_protocol",
           "load_protocol", "summarize", "wilcoxon_paired", "format_tables", "paper_experiment_name",
           "network_key", "arms_of", "paired", "write_figures", "protocol_config"]

PAPER_EPS = attacks.PAPER_EPS
PROTOCOL_FORMAT = "nanosgm-protocol/2"
SNAPSHOT_IMAGES = 8                     # Figures 5-6: the first 8 training images


# -------------------------------------------------------------------------------------------- arms
def arm_spec(base: NetworkSpec, label: str, seed: int, run: int) -> NetworkSpec:
    """The NetworkSpec of arm ``label``'s network in run ``run`` (seed ``seed``); run 0 of a method that
    moves its inputs keeps the Figures 5-6 snapshots."""
    moves = parse_arm(label).moves_inputs
    return base.with_(seed=seed, method=label, snapshot_rows=SNAPSHOT_IMAGES if (run == 0 and moves) else 0)


def network_key(run: int, arm_label: str) -> str:
    return f"run{run}/{arm_label}"


def _split_key(key):
    run, arm = key.split("/", 1)
    return int(run[3:]), arm


# ------------------------------------------------------------------------------------------ files
def load_protocol(out) -> dict:
    """The result dict stored in ``<out>/protocol.json`` (with each arm's Figures 5-6 snapshots, if saved)."""
    path = Path(out) / "protocol.json"
    try:
        with open(path) as f:
            result = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(result, dict) or result.get("format") != PROTOCOL_FORMAT:
        raise ValueError(f"{path} is not a {PROTOCOL_FORMAT} file (format "
                         f"{result.get('format') if isinstance(result, dict) else None!r})")
    result["snapshots"] = {}
    for arm in result.get("arms", []):
        p = Path(out) / f"snapshots-{slug(arm)}.npz"
        if p.exists():
            a = load_npz(p)
            result["snapshots"][arm] = {"epochs": a["epochs"].tolist(), "X0": a["X0"], "deltas": list(a["deltas"]),
                                        "indices": list(range(len(a["X0"])))}
    return result


def _save_snapshots(out, arm_label, s) -> None:
    deltas = np.stack(s["deltas"]) if len(s["deltas"]) else np.zeros((0,) + np.shape(s["X0"]))
    save_npz_atomic(os.path.join(out, f"snapshots-{slug(arm_label)}.npz"),
                    {"epochs": np.asarray(s["epochs"], dtype=np.int64), "X0": np.asarray(s["X0"]), "deltas": deltas})


def _json_result(result):
    return {k: v for k, v in result.items() if k not in ("snapshots", "summary")}


def protocol_config(base: NetworkSpec, seed0: int) -> dict:
    """What makes two protocols the same experiment: the base spec (less what an arm or a run sets)."""
    cfg = base.identity()
    for k in ("seed", "method", "snapshot_rows"):
        cfg.pop(k)
    cfg["seed0"] = int(seed0)
    return cfg


def _open(out, config) -> dict:
    """The saved protocol in ``out`` (checked against ``config``), or a new one."""
    result = {"format": PROTOCOL_FORMAT, "config": config, "arms": [CONTROL], "networks": {}, "sessions": []}
    if out is not None and (Path(out) / "protocol.json").exists():
        saved = load_protocol(out)
        if saved["config"] != config:
            diff = {k: (saved["config"].get(k), config.get(k)) for k in set(saved["config"]) | set(config)
                    if saved["config"].get(k) != config.get(k)}
            raise ConfigMismatch(f"{Path(out) / 'protocol.json'} was written with a different configuration "
                                 f"(saved vs now: {diff}); use another --out folder")
        result.update(saved)
    return result


# ---------------------------------------------------------------------------------------- protocol
def run_protocol(base: NetworkSpec, *, runs: int = 5, seed0: int = 0, arms="sgm:0.2", out=None, workers: int = 1,
                 scheduler=None, threads=None, progress: bool = True, bars: bool = True, argv=()) -> dict:
    """Run the protocol (module docstring) and return the result dict.

    ``base``: the NetworkSpec every network shares (its seed and arm fields are set per network);
    ``arms``: a string for :func:`parse_arms` or a list of arm labels; ``out``: the protocol folder
    (None: nothing is written or resumed, and the networks' weights are not kept). ``progress``: one line
    per finished network (and per epoch); ``bars``: the overall progress bar. Returns
    ``{"format", "config", "arms", "networks": {"run<i>/<arm>": record}, "sessions", "snapshots", "summary"}``.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    arm_list = parse_arms(arms if isinstance(arms, str) else ",".join(arms))
    result = _open(out, protocol_config(base, seed0))
    for a in arm_list:
        if a not in result["arms"]:
            result["arms"].append(a)
    result["sessions"].append(dict(recipe.provenance("nanosgm.experiments", argv), runs=runs,
                                   arms=arm_list, workers=workers))
    tasks = _tasks(base, arm_list, runs, seed0, out, result["networks"])
    if out is not None:
        for sub in ("models", "ckpt"):
            os.makedirs(os.path.join(out, sub), exist_ok=True)
            for tmp in glob.glob(os.path.join(out, sub, ".tmp-*")):     # saves cut short by a kill
                os.remove(tmp)
        write_json_atomic(os.path.join(out, "protocol.json"), _json_result(result))
    _run(result, tasks, out, workers=workers, scheduler=scheduler, threads=threads, progress=progress, bars=bars)
    if out is not None:
        result["snapshots"] = load_protocol(out)["snapshots"]
    result["summary"] = summarize(result)
    return result


def _tasks(base, arm_list, runs, seed0, out, done):
    tasks = []
    for i in range(runs):
        for a in arm_list:
            key = network_key(i, a)
            if key in done:
                continue
            ck = os.path.join(out, "ckpt", f"run{i}-{slug(a)}.npz") if out else None
            mp = os.path.join(out, "models", f"run{i}-{slug(a)}.npz") if out else None
            tasks.append((key, arm_spec(base, a, seed0 + i, i), ck, mp))
    return tasks


def _run(result, tasks, out, *, workers, scheduler, threads, progress, bars) -> None:
    """Run ``tasks``, recording each network in ``result`` (and protocol.json) as it finishes."""
    from tqdm.auto import tqdm
    from .parallel import run_tasks
    say = tqdm.write if progress else (lambda line: None)
    n_done = len(result["networks"])
    if progress and n_done:
        say(f"{n_done} network(s) already in {out}/protocol.json: skipped")
    bar = tqdm(total=len(tasks), desc="networks", unit="net", disable=None if bars else True, dynamic_ncols=True)
    try:
        for key, record in run_tasks(tasks, workers=workers, scheduler=scheduler, threads=threads, verbose=progress):
            _record(result, key, record, out)
            bar.update(1)
            say(_network_line(key, record))
    finally:
        bar.close()


def _record(result, key, record, out) -> None:
    snaps = record.pop("snapshots", None)
    run, arm = _split_key(key)
    result["networks"][key] = record
    result["networks"] = dict(sorted(result["networks"].items(), key=lambda kv: (_split_key(kv[0])[0],
                                     result["arms"].index(_split_key(kv[0])[1]))))
    _check_lockstep(result, run)
    if out is None:
        return
    if snaps is not None:
        _save_snapshots(out, arm, snaps)
    write_json_atomic(os.path.join(out, "protocol.json"), _json_result(result))
    ck = os.path.join(out, "ckpt", f"run{run}-{slug(arm)}.npz")
    if os.path.exists(ck):
        os.remove(ck)


def _check_lockstep(result, run) -> None:
    """Every network of run ``run`` must have started from the control's initial weights."""
    digests = {k: r["init_sha256"] for k, r in result["networks"].items() if _split_key(k)[0] == run}
    if len(set(digests.values())) > 1:
        raise RuntimeError(f"run {run}: the networks did not start from the same weights (lock-step broken): "
                           f"{digests}")


def _network_line(key, r):
    res = r["results"]
    parts = [f"{key} done ({r['train_seconds']:.0f}s training, {r['eval_seconds']:.0f}s evaluation)",
             f"clean {res['clean_pct']:.2f}%"]
    parts += [f"FGSM {float(e):g}: {a:.2f}%" for e, a in res["fgsm_pct"].items()]
    parts += [f"PGD {float(e):g}: {a:.2f}%" for e, a in res.get("pgd_pct", {}).items()]
    return " | ".join(parts)


# ------------------------------------------------------------------------------------- statistics
def min_exact_p(n: int) -> float:
    """The smallest two-sided exact Wilcoxon signed-rank p-value with n non-zero, untied pairs: 2 / 2**n."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else 1.0


def wilcoxon_paired(control, updates) -> dict:
    """Wilcoxon signed-rank test of paired samples (two-sided), ``scipy.stats.wilcoxon``.

    Returns {"n", "statistic", "p", "median_diff", "min_exact_p", "note"}; ``median_diff`` is
    median(updates - control). All-zero differences (or no pairs) give p = 1.0 and a note instead of an error.
    """
    from scipy import stats
    c, u = np.asarray(control, dtype=float), np.asarray(updates, dtype=float)
    if c.shape != u.shape or c.ndim != 1:
        raise ValueError(f"control and updates must be paired 1-D sequences, got shapes {c.shape} and {u.shape}")
    n = int(c.size)
    d = u - c
    out = {"n": n, "statistic": None, "p": 1.0, "median_diff": round(float(np.median(d)), 4) if n else math.nan,
           "min_exact_p": min_exact_p(n), "note": ""}
    if n == 0:
        out["note"] = "no pairs"
        return out
    if np.all(d == 0):
        out.update(statistic=0.0, note="no difference (all paired differences are zero)")
        return out
    r = stats.wilcoxon(u, c, alternative="two-sided")
    out.update(statistic=float(r.statistic), p=float(r.pvalue))
    nz = int(np.count_nonzero(d))
    if nz < n:
        out["note"] = f"{n - nz} zero difference(s) dropped"
    return out


def arms_of(result) -> list:
    """The arms of a result beside the control, in the order they were added."""
    return [a for a in result["arms"] if a != CONTROL]


def paired(result, arm) -> list:
    """The runs that have both the control and ``arm`` recorded, in order."""
    runs = sorted({_split_key(k)[0] for k in result["networks"]})
    return [i for i in runs if network_key(i, CONTROL) in result["networks"] and network_key(i, arm) in result["networks"]]


def _stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "per_run": []}
    return {"median": round(float(np.median(v)), 4), "min": float(v.min()), "max": float(v.max()),
            "per_run": [float(x) for x in v]}


def _block(result, arm, runs, getter) -> dict:
    c = [getter(result["networks"][network_key(i, CONTROL)]) for i in runs]
    a = [getter(result["networks"][network_key(i, arm)]) for i in runs]
    return {"control": _stats(c), "arm": _stats(a), "wilcoxon": wilcoxon_paired(c, a)}


def summarize(result) -> dict:
    """Per arm against the control (paired runs only): clean accuracy (Table 4), FGSM accuracy per eps
    (Table 5), PGD per eps (when measured), and the pooled paired test over all (run, eps) FGSM cells.

    Returns {arm: {"runs", "clean", "fgsm": {eps: block}, "pgd": {eps: block}, "pooled_fgsm", "pooled_pgd"}},
    a block being {"control": {median, min, max, per_run}, "arm": {...}, "wilcoxon": {...}}; percent.
    """
    eps = [repr(float(e)) for e in result["config"]["eps"]]
    out = {}
    for arm in arms_of(result):
        runs = paired(result, arm)
        s = {"runs": runs, "clean": _block(result, arm, runs, lambda r: r["results"]["clean_pct"])}
        for kind in ("fgsm", "pgd"):
            have = runs and all(f"{kind}_pct" in result["networks"][network_key(i, v)]["results"]
                                for i in runs for v in (CONTROL, arm))
            s[kind] = {float(e): _block(result, arm, runs, lambda r, e=e, k=kind: r["results"][f"{k}_pct"][e])
                       for e in eps} if have else {}
            cells = [(b["control"]["per_run"], b["arm"]["per_run"]) for b in s[kind].values()]
            s[f"pooled_{kind}"] = wilcoxon_paired(sum((c for c, _ in cells), []), sum((a for _, a in cells), [])) \
                if cells else None
        out[arm] = s
    return out


# ---------------------------------------------------------------------------------- paper's tables
_DATASET_TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
_MODEL_TITLES = {"dnn": "DNN", "cnn": "CNN", "cifar_cnn": "CNN"}


def paper_experiment_name(dataset: str, model: str, augment: bool):
    """The paper's row name for this experiment ("MNIST-CNN-AUG", "CIFAR-10-CNN"), or None when the paper
    has no such experiment (e.g. Fashion-MNIST)."""
    from .. import models
    ds, m = _DATASET_TITLES.get(dataset), _MODEL_TITLES.get(models.ALIASES.get(model, model))
    if ds is None or m is None:
        return None
    return f"{ds}-{m}" + ("-AUG" if augment else "")


def _fmt_p(w):
    if w["note"].startswith("no "):
        return f"{w['p']:.4f} ({w['note'].split(' (')[0]})"
    return f"{w['p']:.4f}" + (" (ties)" if w["note"] else "")


def _cell(s):
    if not s["per_run"]:
        return "n/a"
    return f"{s['median']:6.2f} [{s['min']:.2f}-{s['max']:.2f}]"


def _table(title, rows, paper_cols):
    head = f"{'':<10} {'arm':<20} {'n':>2}  {'control med [min-max]':<22} {'arm med [min-max]':<22} {'diff':>6}  " \
           f"{'Wilcoxon p':<16}" + (" | paper control  updates" if paper_cols else "")
    lines = [title, head, "-" * len(head)]
    for label, arm, b, paper in rows:
        line = (f"{label:<10} {arm:<20} {len(b['arm']['per_run']):>2}  {_cell(b['control']):<22} {_cell(b['arm']):<22} "
                f"{b['wilcoxon']['median_diff']:+6.2f}  {_fmt_p(b['wilcoxon']):<16}")
        if paper_cols:
            line += " | " + (f"{paper[0]:13.2f}  {paper[1]:7.2f}" if paper else f"{'n/a':>13}  {'n/a':>7}")
        lines.append(line)
    return lines + [""]


def format_tables(result, paper=True, paper_dir=None) -> str:
    """Text tables in the style of the paper's Table 4 (clean accuracy) and Table 5 (FGSM accuracy per eps)
    and a PGD table: per arm, the control's and the arm's median [min-max], the median paired difference and
    the Wilcoxon p-value; the pooled tests; and with ``paper=True`` the paper's numbers (shipped in
    :mod:`nanosgm.paper_tables`, or read from ``paper_dir``) beside them."""
    cfg, summary = result["config"], result.get("summary") or summarize(result)
    name = paper_experiment_name(cfg["dataset"], cfg["model"], cfg["augment"])
    label = name or f"{cfg['dataset']}-{cfg['model']}" + ("-AUG" if cfg["augment"] else "")
    ref = (paper_tables.read_paper_tables(paper_dir) if paper_dir else paper_tables.PAPER_TABLES) if paper else None
    p4 = paper_tables.lookup(ref["table4"], name) if ref else None
    p5 = paper_tables.lookup(ref["table5"], name) if ref else None
    n_nets = len(result["networks"])
    lines = [f"{label}: {cfg['model']} on {cfg['dataset']}, {cfg['epochs']} epoch(s), optimizer {cfg['optimizer']}"
             f"{', augmented' if cfg['augment'] else ''}, seeds from {cfg['seed0']}, {n_nets} network(s) recorded", ""]
    rows4 = [("clean", arm, s["clean"], (p4["control"], p4["updates"]) if p4 else None)
             for arm, s in summary.items() if s["runs"]]
    lines += _table("Table 4 -- clean test accuracy (%)", rows4, p4 is not None)
    rows5 = [(f"eps {e:g}", arm, s["fgsm"][e],
              (p5["control"].get(e), p5["updates"].get(e)) if p5 and e in p5.get("control", {}) else None)
             for e in [float(x) for x in cfg["eps"]] for arm, s in summary.items() if s["fgsm"]]
    lines += _table("Table 5 -- FGSM test accuracy (%)", rows5, p5 is not None)
    rows_pgd = [(f"eps {e:g}", arm, s["pgd"][e], None) for e in [float(x) for x in cfg["eps"]]
                for arm, s in summary.items() if s["pgd"]]
    if rows_pgd:
        lines += _table(f"PGD-{cfg['pgd_steps']} test accuracy (%) on the first {cfg['pgd']} test images", rows_pgd, False)
    for arm, s in summary.items():
        for kind in ("fgsm", "pgd"):
            w = s.get(f"pooled_{kind}")
            if w:
                lines.append(f"pooled {kind.upper()}, {arm}: Wilcoxon over {w['n']} (run, eps) cells, p = {_fmt_p(w)}, "
                             f"median diff {w['median_diff']:+.2f} (the cells share networks: not independent)")
    n = max((len(s["runs"]) for s in summary.values()), default=0)
    lines += ["", f"Wilcoxon signed-rank test, two-sided, arm vs. control paired by seed (same initial weights). "
                  f"With n pairs the smallest possible exact p-value is 2/2^n: {min_exact_p(n):.4g} for n = {n} "
                  f"(0.0625 for the paper's 5 runs); p < 0.05 needs at least 6 pairs."]
    if paper:
        lines.append(f"paper's numbers: {ref['source']}" if (p4 or p5) else f"paper's numbers: the paper has no "
                     f"{label} experiment")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- figures
def write_figures(result, out, ds=None, clip=(0.0, 1.0), dpi: int = 90) -> list:
    """Save Figures 1-6 (as far as the result allows) as PNGs into ``out``; returns the paths."""
    from . import figures      # built without pyplot: no GUI backend needed
    paths = []

    def save(fig, name):
        p = os.path.join(out, name)
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        paths.append(p)

    save(figures.test_error_curves(result), "fig1-2_test_error.png")
    if ds is not None:
        for arm in result["arms"]:
            path = os.path.join(out, "models", f"run0-{slug(arm)}.npz")
            if os.path.exists(path):
                backend.seed(result["config"]["seed0"])
                model = recipe.build_model(result["config"]["model"], ds)
                model.load(path)
                save(figures.adversarial_examples(model, ds.X_test, ds.y_test, clip=clip, title=f"run 0, {arm}"),
                     f"fig3-4_adversarial_{slug(arm)}.png")
    for arm, snaps in (result.get("snapshots") or {}).items():
        if len(snaps["deltas"]):
            slug = slug(arm)
            save(figures.input_updates(snaps, title=arm), f"fig5-6_input_updates_{slug}.png")
            peak = max(float(np.abs(d).max()) for d in snaps["deltas"])
            if 0 < peak < 0.5:
                save(figures.input_updates(snaps, gain=1.0 / peak, title=arm), f"fig5-6_input_updates_{slug}_amplified.png")
    return paths
