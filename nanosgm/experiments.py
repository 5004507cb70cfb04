"""The paper's protocol (Sections 5-6): lock-step runs, medians, Wilcoxon tests, Tables 4-5.

For run i = 0 .. runs-1, with seed = seed0 + i, one network per ARM is trained, all lock-step with the
CONTROL network of that seed (same initial weights, batches, masks and augmentation: see
:mod:`nanosgm.train`); the only difference between them is what the arm does to the inputs:

    control               input_lr = 0 (plain training)
    sgm:L                 the Smooth Gradient Method with lambda-bar L, batch-mean loss (Eq. 15 / 21)
    sgm:L:per-sample      the same with each sample's own loss (B = batch-size times larger steps)
    published             what the authors' Keras code did: an extra training-mode pass per step whose
                          input update is thrown away (the stored inputs never change)
    fgsm-at:E, fgsm-rs:E, pgd-at:E:K   adversarial training at budget E (nanosgm.adversarial): the
                          baselines a defence is compared with

Each network (the weights of its best validation epoch) is measured by :func:`nanosgm.network.measure`:
clean accuracy (Table 4), FGSM accuracy at every eps (Table 5, Eq. 20), and optionally PGD on the first N
test images. Over the runs, per arm against the control: the MEDIAN (what the paper reports), min-max
and per-run values, and the two-sided Wilcoxon signed-rank test of the paired runs. With n pairs and no
ties the smallest exact p-value is 2 / 2**n: 0.0625 for five pairs, so "p < 0.05" cannot come from five
runs; the POOLED test over all (run, eps) cells of a row is the only way to get there, and its cells are
not independent (the same networks at several eps).

Every network is one task (:func:`nanosgm.network.train_network` on a NetworkSpec), run in this process,
in ``workers`` local processes or on a Dask cluster (:mod:`nanosgm.parallel`); its record depends on its
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

import argparse
import glob
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import attacks, backend, paper_tables, recipe
from .checkpoint import ConfigMismatch
from .cli import CliError, add_common_arguments, check_out_folder, common_setup, run_cli
from .files import write_json_atomic
from .layers import load_npz, save_npz_atomic
from .network import NetworkSpec

__all__ = ["PAPER_EPS", "PROTOCOL_FORMAT", "Arm", "parse_arm", "parse_arms", "ConfigMismatch", "run_protocol",
           "load_protocol", "summarize", "wilcoxon_paired", "format_tables", "paper_experiment_name", "main",
           "network_key", "arms_of", "paired"]

PAPER_EPS = attacks.PAPER_EPS
PROTOCOL_FORMAT = "nanosgm-protocol/2"
CONTROL = "control"
SNAPSHOT_IMAGES = 8                     # Figures 5-6: the first 8 training images


# -------------------------------------------------------------------------------------------- arms
@dataclass(frozen=True)
class Arm:
    """One way of training beside the control; ``label`` is how protocol.json and the tables name it."""
    label: str
    input_lr: float = 0.0
    per_sample: bool = False
    published: bool = False
    adversarial: tuple | None = None

    def spec(self, base: NetworkSpec, seed: int, run: int) -> NetworkSpec:
        """The NetworkSpec of this arm's network in run ``run`` (seed ``seed``)."""
        moves = self.input_lr != 0
        return base.with_(seed=seed, input_lr=self.input_lr, per_sample=self.per_sample, published=self.published,
                          adversarial=self.adversarial, snapshot_rows=SNAPSHOT_IMAGES if (run == 0 and moves) else 0)

    @property
    def slug(self) -> str:
        return self.label.replace(":", "_")


ADVERSARIAL_ARMS = {"fgsm-at": "fgsm", "fgsm-rs": "fgsm-rs", "pgd-at": "pgd"}


def _number(text):
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def parse_arm(text: str) -> Arm:
    """``control``, ``published``, ``sgm:L``, ``sgm:L:per-sample``, or an adversarial-training baseline
    ``fgsm-at:EPS``, ``fgsm-rs:EPS``, ``pgd-at:EPS[:STEPS]`` (default 7 steps) -> an :class:`Arm`."""
    t = text.strip().lower()
    if t in (CONTROL, "published"):
        return Arm(t, published=t == "published")
    parts = t.split(":")
    if parts[0] in ADVERSARIAL_ARMS and len(parts) in (2, 3):
        eps = _number(parts[1])
        steps = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else (7 if len(parts) == 2 else 0)
        if eps is not None and eps > 0 and steps >= 1 and (parts[0] == "pgd-at" or len(parts) == 2):
            label = f"{parts[0]}:{eps:g}" + (f":{steps}" if parts[0] == "pgd-at" else "")
            return Arm(label, adversarial=(ADVERSARIAL_ARMS[parts[0]], eps, steps))
    if parts[0] == "sgm" and len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "per-sample"):
        try:
            lam = float(parts[1])
        except ValueError:
            lam = None
        if lam is not None and math.isfinite(lam) and lam != 0:
            label = f"sgm:{lam:g}" + (":per-sample" if len(parts) == 3 else "")
            return Arm(label, input_lr=lam, per_sample=len(parts) == 3)
    raise ValueError(f"unknown arm {text!r}: use control, published, sgm:LAMBDA, sgm:LAMBDA:per-sample (LAMBDA a "
                     f"non-zero number, e.g. sgm:0.2), fgsm-at:EPS, fgsm-rs:EPS or pgd-at:EPS[:STEPS]")


def parse_arms(text: str) -> list:
    """A comma-separated arm list (the control is always added first, once)."""
    arms = [parse_arm(a) for a in text.split(",") if a.strip()]
    labels = [CONTROL] + [a.label for a in arms if a.label != CONTROL]
    if len(labels) == 1:
        raise ValueError("--arms needs at least one arm beside the control, e.g. sgm:0.2")
    if len(set(labels)) != len(labels):
        raise ValueError(f"--arms names an arm twice: {text!r}")
    return [parse_arm(label) for label in labels]


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
        p = Path(out) / f"snapshots-{parse_arm(arm).slug}.npz"
        if p.exists():
            a = load_npz(p)
            result["snapshots"][arm] = {"epochs": a["epochs"].tolist(), "X0": a["X0"], "deltas": list(a["deltas"]),
                                        "indices": list(range(len(a["X0"])))}
    return result


def _save_snapshots(out, arm_label, s) -> None:
    deltas = np.stack(s["deltas"]) if len(s["deltas"]) else np.zeros((0,) + np.shape(s["X0"]))
    save_npz_atomic(os.path.join(out, f"snapshots-{parse_arm(arm_label).slug}.npz"),
                    {"epochs": np.asarray(s["epochs"], dtype=np.int64), "X0": np.asarray(s["X0"]), "deltas": deltas})


def _json_result(result):
    return {k: v for k, v in result.items() if k not in ("snapshots", "summary")}


def protocol_config(base: NetworkSpec, seed0: int) -> dict:
    """What makes two protocols the same experiment: the base spec (less what an arm or a run sets)."""
    cfg = base.identity()
    for k in ("seed", "input_lr", "per_sample", "published", "adversarial", "snapshot_rows"):
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
    ``arms``: a string for :func:`parse_arms` or a list of :class:`Arm`; ``out``: the protocol folder
    (None: nothing is written or resumed, and the networks' weights are not kept). ``progress``: one line
    per finished network (and per epoch); ``bars``: the overall progress bar. Returns
    ``{"format", "config", "arms", "networks": {"run<i>/<arm>": record}, "sessions", "snapshots", "summary"}``.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    arm_list = parse_arms(arms) if isinstance(arms, str) else list(arms)
    result = _open(out, protocol_config(base, seed0))
    for a in arm_list:
        if a.label not in result["arms"]:
            result["arms"].append(a.label)
    result["sessions"].append(dict(recipe.provenance("nanosgm.experiments", argv), runs=runs,
                                   arms=[a.label for a in arm_list], workers=workers))
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
            key = network_key(i, a.label)
            if key in done:
                continue
            ck = os.path.join(out, "ckpt", f"run{i}-{a.slug}.npz") if out else None
            mp = os.path.join(out, "models", f"run{i}-{a.slug}.npz") if out else None
            tasks.append((key, a.spec(base, seed0 + i, i), ck, mp))
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
    ck = os.path.join(out, "ckpt", f"run{run}-{parse_arm(arm).slug}.npz")
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
    from . import models
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
            path = os.path.join(out, "models", f"run0-{parse_arm(arm).slug}.npz")
            if os.path.exists(path):
                backend.seed(result["config"]["seed0"])
                model = recipe.build_model(result["config"]["model"], ds)
                model.load(path)
                save(figures.adversarial_examples(model, ds.X_test, ds.y_test, clip=clip, title=f"run 0, {arm}"),
                     f"fig3-4_adversarial_{parse_arm(arm).slug}.png")
    for arm, snaps in (result.get("snapshots") or {}).items():
        if len(snaps["deltas"]):
            slug = parse_arm(arm).slug
            save(figures.input_updates(snaps, title=arm), f"fig5-6_input_updates_{slug}.png")
            peak = max(float(np.abs(d).max()) for d in snaps["deltas"])
            if 0 < peak < 0.5:
                save(figures.input_updates(snaps, gain=1.0 / peak, title=arm), f"fig5-6_input_updates_{slug}_amplified.png")
    return paths


# -------------------------------------------------------------------------------------------- CLI
def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m nanosgm.experiments",
        description="The paper's protocol (Sections 5-6): N lock-step runs of the control and of each arm "
                    "(SGM, SGM per-sample, the authors' published code path), medians of clean and FGSM "
                    "accuracy (Tables 4-5), Wilcoxon tests. Resumable; networks can train in parallel.")
    add_common_arguments(p, "per network")
    p.add_argument("--runs", type=int, default=5, help="lock-step runs (seeds) per arm (default 5, the paper's)")
    p.add_argument("--arms", default=None, help="comma-separated arms beside the control: sgm:LAMBDA, "
                   "sgm:LAMBDA:per-sample, published, and the adversarial-training baselines fgsm-at:EPS, fgsm-rs:EPS, "
                   "pgd-at:EPS:STEPS (default: sgm:<--input-lr>, the paper's method)")
    p.add_argument("--optimizer", default="wame", help="wame (default), wame-printed, adam or sgd")
    p.add_argument("--pgd", type=int, default=0, metavar="N", help="also PGD-10 on the first N test images (default 0)")
    p.add_argument("--out", default=None, help="protocol folder (default runs/protocol-<dataset>-<model>[-aug])")
    p.add_argument("--seed", type=int, default=0, help="seed of run 0; run i uses seed + i (default 0)")
    p.add_argument("--workers", type=int, default=1, help="networks trained at once in local worker processes "
                   "(default 1: in this process)")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads per worker (default: cores // workers)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="send the networks to this Dask scheduler "
                   "(tcp://host:8786) instead of local workers; needs pip install -e \".[cluster]\"")
    p.add_argument("--figures", action="store_true", help="also write Figures 1-6 as PNGs into --out")
    p.add_argument("--tables-only", action="store_true", help="train nothing: print the tables (and --figures) "
                   "from --out/protocol.json (its own configuration; the training flags are ignored)")
    p.add_argument("--paper-dir", default=None, help="read the paper's numbers from the table CSVs in this folder "
                   "(default: the numbers shipped in nanosgm.paper_tables)")
    return p


def _base_spec(args, model_name, eps_list) -> NetworkSpec:
    return NetworkSpec(dataset=args.dataset, model=model_name, epochs=args.epochs, batch_size=args.batch_size,
                       optimizer=args.optimizer, augment=args.augment, limit=args.limit, eval_limit=args.eval_limit,
                       eps=tuple(eps_list), pgd=args.pgd, backend=backend.name(), data_dir=args.data_dir)


def _check_args(args):
    if args.runs < 1:
        raise CliError("--runs must be >= 1")
    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        raise CliError("--workers and --threads must be >= 1")
    if args.paper_dir is not None and not os.path.isdir(args.paper_dir):
        raise CliError(f"--paper-dir {args.paper_dir!r} is not a folder")
    if args.arms is None and args.input_lr == 0:
        raise CliError("--input-lr 0 would train two control networks; the control is always part of the protocol")
    try:
        return parse_arms(args.arms or f"sgm:{args.input_lr:g}")
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _finish(args, result, out) -> int:
    print()
    print(format_tables(result, paper=True, paper_dir=args.paper_dir))
    if args.figures:
        ds = None
        try:
            cfg = result["config"]
            ds, clip = recipe.load_data(cfg["dataset"], data_dir=args.data_dir, limit=cfg["limit"],
                                        eval_limit=cfg["eval_limit"], progress=False)
        except Exception as exc:          # the figures that need no data are still written
            print(f"(Figures 3-4 skipped: the dataset could not be loaded: {exc})")
            clip = (0.0, 1.0)
        for p in write_figures(result, out, ds=ds, clip=clip):
            print(f"wrote {p}")
    return 0


def _main(argv) -> int:
    from .runlock import RunLock
    args = build_parser().parse_args(argv)
    eps_list, model_name = common_setup(args)
    arm_list = _check_args(args)
    out = args.out or os.path.join("runs", f"protocol-{args.dataset}-{model_name}{'-aug' if args.augment else ''}")
    if args.tables_only:
        if not os.path.isfile(os.path.join(out, "protocol.json")):
            raise CliError(f"{out} holds no protocol.json; run the protocol first (the same command without "
                           f"--tables-only), or give its folder with --out")
        result = load_protocol(out)
        result["summary"] = summarize(result)
        return _finish(args, result, out)
    check_out_folder(out)
    base = _base_spec(args, model_name, eps_list)
    t0 = time.perf_counter()
    with RunLock(out):
        try:
            result = run_protocol(base, runs=args.runs, seed0=args.seed, arms=arm_list, out=out, workers=args.workers,
                                  scheduler=args.scheduler, threads=args.threads, progress=True,
                                  bars=not args.no_progress, argv=argv)
        except KeyboardInterrupt:
            raise CliError(f"interrupted: finished networks are in {out}/protocol.json and those in progress resume "
                           f"from their last saved epoch; run the same command again to continue", code=130) from None
    print(f"\nwrote {os.path.join(out, 'protocol.json')} ({time.perf_counter() - t0:.0f}s)")
    return _finish(args, result, out)


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
