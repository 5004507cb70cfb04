"""The paper's protocol (Sections 5-6): lock-step runs, medians, Wilcoxon tests, Tables 4-5.

For run i = 0 .. runs-1, with seed = seed0 + i, two networks are trained with ``nanosgm.train.fit``:

    CONTROL  input_lr = 0          (plain training)
    UPDATES  input_lr = lambda-bar (the Smooth Gradient Method, Eq. 15 / 21; 0.2 in the paper)

Both are built right after ``backend.seed(seed)``, so they start from the same initial weights, and
``fit`` derives every per-epoch random draw (shuffling, dropout masks, augmentation) from
(seed, epoch) alone, so they also see the same batches and masks: "lock-step". The only difference
between the two networks of a run is the input update. Each network (the weights of its best
validation epoch, as ``fit`` leaves it) is then measured on the test set:

    clean accuracy                              the paper's Table 4
    FGSM accuracy at every eps (Eq. 20)         the paper's Table 5
    (optionally PGD on the first N test images, a check against gradient masking)

Over the runs: the MEDIAN of each measure (what the paper reports), and the Wilcoxon signed-rank
test of control vs. updates over the paired runs (two-sided). With n pairs and no ties the smallest
exact two-sided p-value is 2 / 2**n: 0.0625 for the paper's five runs, so "p < 0.05" cannot happen
with five runs however large the effect.

Files under ``out`` (all written atomically: temporary file + ``os.replace``):
    protocol.json          config, versions, one record per finished run (rewritten after every run)
    snapshots.npz          X_t - X_0 of the first training images after each of the first nine
                           epochs of run 0's SGM network (Figures 5-6)
    run0_control.npz, run0_updates.npz   run 0's trained networks (Figures 3-4)
    ckpt-run<i>-<variant>.npz            fit's end-of-epoch checkpoint of the run in progress
                                         (removed once the run is recorded)
Calling again with the same ``out`` and configuration skips the runs already recorded (and resumes
an interrupted one from its last finished epoch); a different configuration is an error.

    python -m nanosgm.experiments mnist --runs 5 --epochs 50 --out runs/protocol-mnist-cnn --figures
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import attacks, backend, models, train
from .files import write_json_atomic
from .layers import load_npz, save_npz_atomic

__all__ = ["PAPER_EPS", "PROTOCOL_FORMAT", "VARIANTS", "ConfigMismatch", "run_protocol", "load_protocol",
           "summarize", "wilcoxon_paired", "format_tables", "read_paper_tables", "paper_experiment_name",
           "main"]

PAPER_EPS = attacks.PAPER_EPS
PROTOCOL_FORMAT = "nanosgm-protocol/1"
VARIANTS = ("control", "updates")       # input_lr = 0, input_lr = lambda-bar
SNAPSHOT_EPOCHS = 9                     # Figures 5-6: the first nine epochs
SNAPSHOT_IMAGES = 8                     # ... of the first 8 training images


class ConfigMismatch(ValueError):
    """``out`` already holds a protocol run with a different configuration."""


# ------------------------------------------------------------------------------------- data, model
load_data = train.load_data          # (Dataset, clip) prepared exactly as python -m nanosgm.train does


def _model_name(model) -> str:
    return model if isinstance(model, str) else getattr(model, "__name__", type(model).__name__)


def weights_digest(model) -> str:
    """sha256 of every parameter and buffer: equal digests = identical weights (the lock-step check)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------- files
def load_protocol(out) -> dict:
    """The result dict stored in ``<out>/protocol.json`` (with ``snapshots`` from snapshots.npz if present)."""
    out = Path(out)
    with open(out / "protocol.json") as f:
        result = json.load(f)
    if result.get("format") != PROTOCOL_FORMAT:
        raise ValueError(f"{out / 'protocol.json'} is not a {PROTOCOL_FORMAT} file (format {result.get('format')!r})")
    if (out / "snapshots.npz").exists():
        result["snapshots"] = _snapshots_from_arrays(load_npz(out / "snapshots.npz"))
    return result


def _snapshots_to_arrays(s):
    return {"indices": np.asarray(s["indices"]), "epochs": np.asarray(s["epochs"]), "X0": s["X0"],
            "deltas": np.stack(s["deltas"]) if len(s["deltas"]) else np.zeros((0,) + s["X0"].shape, s["X0"].dtype)}


def _snapshots_from_arrays(a):
    return {"indices": a["indices"].tolist(), "epochs": a["epochs"].tolist(), "X0": a["X0"],
            "deltas": list(a["deltas"])}


def _json_result(result):
    return {k: v for k, v in result.items() if k != "snapshots"}


# ------------------------------------------------------------------------------------ one network
def _train_and_measure(ds, clip, cfg, *, seed, variant, out, progress, snapshots=None, model_path=None,
                       run_label=""):
    input_lr = 0.0 if variant == "control" else float(cfg["input_lr"])
    backend.seed(seed)                                   # the initial weights: identical for both variants
    model = train.build_model(cfg["_model"], ds)
    init_digest = weights_digest(model)
    opt, schedule = train.optimizer_and_schedule(cfg["epochs"], cfg["optimizer"], cfg["lr"])  # as the CLI
    from . import data
    augment = data.augmenter_for(ds.name) if cfg["augment"] else None

    callback = None
    if snapshots is not None:
        k = min(SNAPSHOT_IMAGES, len(ds.X_train))
        snapshots.update(indices=list(range(k)), epochs=[], X0=np.array(ds.X_train[:k]), deltas=[])

        def callback(epoch, model_, X_t, record):        # X_t - X_0 after each of the first nine epochs
            if epoch < SNAPSHOT_EPOCHS:
                snapshots["epochs"].append(epoch + 1)
                snapshots["deltas"].append(np.array(backend.to_host(X_t[:k]), dtype=np.float64) - snapshots["X0"])

    fit_config = {k: v for k, v in cfg.items() if not k.startswith("_")}
    fit_config.update(seed=seed, variant=variant, run_input_lr=input_lr,
                      protocol_epochs=cfg["epochs"])        # fit ignores "epochs" when it compares configs
    ckpt = os.path.join(out, f"ckpt-run{run_label}-{variant}.npz") if out else None

    def log(line):
        if progress:
            print(f"  run {run_label} {variant:7s} {line}", flush=True)

    t0 = time.perf_counter()
    res = train.fit(model, opt, ds.X_train, ds.y_train, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                    input_lr=input_lr, seed=seed, X_val=ds.X_val, y_val=ds.y_val, X_test=ds.X_test,
                    y_test=ds.y_test, schedule=schedule, augment=augment, per_sample=cfg["per_sample"],
                    callback=callback, checkpoint=ckpt, resume=True, progress=progress, log=log,
                    config=fit_config)
    train_seconds = time.perf_counter() - t0
    clean = attacks.accuracy(model, ds.X_test, ds.y_test)
    fgsm_acc = attacks.evaluate(model, ds.X_test, ds.y_test, cfg["eps"], "fgsm", clip=clip, progress=progress)
    pgd_acc = {}
    if cfg["pgd"] > 0:
        k = min(cfg["pgd"], len(ds.X_test))
        pgd_acc = attacks.evaluate(model, ds.X_test[:k], ds.y_test[:k], cfg["eps"], "pgd", clip=clip,
                                   progress=progress, rng=seed)
    if model_path:
        model.save(model_path)
    return {"input_lr": input_lr, "init_sha256": init_digest, "clean_accuracy": clean,
            "fgsm_accuracy": {repr(float(e)): a for e, a in fgsm_acc.items()},
            "pgd_accuracy": {repr(float(e)): a for e, a in pgd_acc.items()},
            "history": res.history, "best_epoch": res.best_epoch, "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t0 - train_seconds}, ckpt


# ----------------------------------------------------------------------------------- the protocol
def run_protocol(dataset, model="cnn", *, runs: int = 5, epochs: int = 5, input_lr: float = 0.2,
                 augment: bool = False, eps_list=PAPER_EPS, data_dir=None, limit=None, eval_limit=None,
                 out=None, seed0: int = 0, pgd: int = 0, progress: bool = True, batch_size: int = 128,
                 optimizer: str = "wame", lr=None, per_sample: bool = False) -> dict:
    """Run the paper's protocol (see the module docstring) and return the result dict.

    ``dataset``: a name or a loaded :class:`nanosgm.data.Dataset`; ``model``: a name ("dnn", "cnn",
    "cifar_cnn") or a callable ``f(ds) -> Sequential``. ``out``: folder for protocol.json and friends
    (None: nothing is written and nothing resumed). ``runs`` is not part of the configuration: calling
    again with more runs extends a finished protocol. Returns
    ``{"format", "config", "versions", "runs": [{"run", "seed", "backend", "control": {...},
    "updates": {...}}, ...], "snapshots": {...}, "summary": summarize(...)}``.
    """
    if runs < 1 or epochs < 1:
        raise ValueError(f"runs and epochs must be >= 1, got runs={runs}, epochs={epochs}")
    if input_lr == 0:
        raise ValueError("input_lr = 0 would make the 'updates' variant another control run; the paper uses 0.2")
    ds, clip = load_data(dataset, data_dir=data_dir, limit=limit, eval_limit=eval_limit, progress=progress)
    return _run_prepared(ds, clip, model, runs=runs, epochs=epochs, input_lr=input_lr, augment=augment,
                         eps_list=eps_list, limit=limit, eval_limit=eval_limit, out=out, seed0=seed0, pgd=pgd,
                         progress=progress, batch_size=batch_size, optimizer=optimizer, lr=lr, per_sample=per_sample)


def _run_prepared(ds, clip, model, *, runs, epochs, input_lr, augment, eps_list, limit, eval_limit, out, seed0,
                  pgd, progress, batch_size, optimizer, lr, per_sample):
    """run_protocol on a dataset already prepared by :func:`load_data`."""
    config = {"dataset": ds.name, "model": _model_name(model), "epochs": int(epochs), "input_lr": float(input_lr),
              "augment": bool(augment), "eps": [float(e) for e in eps_list], "limit": limit,
              "eval_limit": eval_limit, "seed0": int(seed0), "pgd": int(pgd), "batch_size": int(batch_size),
              "optimizer": optimizer, "lr": lr, "per_sample": bool(per_sample), "clip": clip and list(clip),
              "n_train": int(len(ds.X_train)), "n_test": int(len(ds.X_test))}
    result = {"format": PROTOCOL_FORMAT, "config": config, "versions": train.versions(), "runs": [],
              "snapshots": None}
    if out is not None:
        os.makedirs(out, exist_ok=True)
        path = Path(out) / "protocol.json"
        if path.exists():
            saved = load_protocol(out)
            if saved["config"] != json.loads(json.dumps(config)):
                diff = {k: (saved["config"].get(k), config.get(k)) for k in set(saved["config"]) | set(config)
                        if saved["config"].get(k) != json.loads(json.dumps(config.get(k)))}
                raise ConfigMismatch(f"{path} was written with a different configuration "
                                     f"(saved vs now: {diff}); use another --out folder")
            result["runs"], result["snapshots"] = saved["runs"], saved.get("snapshots")
    cfg = dict(config, _model=model)

    done = {r["run"] for r in result["runs"]}
    for i in range(runs):
        if i in done:
            if progress:
                print(f"run {i + 1}/{runs} (seed {seed0 + i}): already in {out}, skipped", flush=True)
            continue
        seed = seed0 + i
        t0 = time.perf_counter()
        record = {"run": i, "seed": seed, "backend": backend.name()}
        snaps = {} if i == 0 else None
        ckpts = []
        for variant in VARIANTS:
            model_path = os.path.join(out, f"run0_{variant}.npz") if (out and i == 0) else None
            record[variant], ckpt = _train_and_measure(
                ds, clip, cfg, seed=seed, variant=variant, out=out, progress=progress,
                snapshots=snaps if variant == "updates" else None, model_path=model_path, run_label=str(i))
            ckpts.append(ckpt)
        if record["control"]["init_sha256"] != record["updates"]["init_sha256"]:
            raise RuntimeError(f"run {i}: control and updates did not start from the same weights (lock-step broken)")
        record["seconds"] = time.perf_counter() - t0
        result["runs"].append(record)
        result["runs"].sort(key=lambda r: r["run"])
        if snaps is not None:
            result["snapshots"] = snaps
        if out is not None:
            if snaps is not None:
                save_npz_atomic(os.path.join(out, "snapshots.npz"), _snapshots_to_arrays(snaps))
            write_json_atomic(os.path.join(out, "protocol.json"), _json_result(result))
            for c in ckpts:
                if c and os.path.exists(c):
                    os.remove(c)
        if progress:
            print(_run_line(record, runs, config["eps"]), flush=True)
    result["summary"] = summarize(result)
    return result


def _run_line(r, runs, eps):
    c, u = r["control"], r["updates"]
    parts = [f"run {r['run'] + 1}/{runs} (seed {r['seed']}) done in {r['seconds']:.0f}s",
             f"clean control {100 * c['clean_accuracy']:.2f}% / updates {100 * u['clean_accuracy']:.2f}%"]
    for e in eps:
        k = repr(float(e))
        parts.append(f"FGSM {float(e):g}: {100 * c['fgsm_accuracy'][k]:.2f}% / {100 * u['fgsm_accuracy'][k]:.2f}%")
    return " | ".join(parts)


# ------------------------------------------------------------------------------------- statistics
def min_exact_p(n: int) -> float:
    """The smallest two-sided exact Wilcoxon signed-rank p-value with n non-zero, untied pairs: 2 / 2**n."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else 1.0


def wilcoxon_paired(control, updates) -> dict:
    """Wilcoxon signed-rank test of paired samples (two-sided), ``scipy.stats.wilcoxon``.

    Returns {"n", "statistic", "p", "median_diff", "note"}; ``median_diff`` is median(updates - control).
    All-zero differences (or no pairs) give p = 1.0 and the note "no difference" instead of an error.
    """
    from scipy import stats
    c, u = np.asarray(control, dtype=float), np.asarray(updates, dtype=float)
    if c.shape != u.shape or c.ndim != 1:
        raise ValueError(f"control and updates must be paired 1-D sequences, got shapes {c.shape} and {u.shape}")
    n = int(c.size)
    d = u - c
    out = {"n": n, "statistic": None, "p": 1.0, "median_diff": float(np.median(d)) if n else math.nan,
           "min_exact_p": min_exact_p(n), "note": ""}
    if n == 0:
        out["note"] = "no runs"
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


def summarize(result) -> dict:
    """Medians over runs (Table 4: clean accuracy, Table 5: FGSM accuracy per eps) and paired Wilcoxon
    tests, from a result dict as :func:`run_protocol` returns or protocol.json stores.

    Returns {"n_runs", "clean": {"control", "updates", "wilcoxon", "per_run": {...}},
    "fgsm": {eps: {...same...}}, "pgd": {eps: {...}}}; accuracies are fractions, not percent.
    """
    runs = sorted(result["runs"], key=lambda r: r["run"])

    def block(getter):
        vals = {v: [getter(r[v]) for r in runs] for v in VARIANTS}
        return {"control": float(np.median(vals["control"])) if runs else math.nan,
                "updates": float(np.median(vals["updates"])) if runs else math.nan,
                "wilcoxon": wilcoxon_paired(vals["control"], vals["updates"]), "per_run": vals}

    eps = [float(e) for e in result["config"]["eps"]]
    summary = {"n_runs": len(runs), "clean": block(lambda v: v["clean_accuracy"]),
               "fgsm": {e: block(lambda v, e=e: v["fgsm_accuracy"][repr(e)]) for e in eps}, "pgd": {}}
    if runs and all(r[v].get("pgd_accuracy") for r in runs for v in VARIANTS):
        summary["pgd"] = {e: block(lambda v, e=e: v["pgd_accuracy"][repr(e)]) for e in eps}
    return summary


# ---------------------------------------------------------------------------------- paper's tables
_DATASET_TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
_MODEL_TITLES = {"dnn": "DNN", "cnn": "CNN", "cifar_cnn": "CNN"}


def paper_experiment_name(dataset: str, model: str, augment: bool):
    """The row name the paper's CSVs use for this experiment ("MNIST-CNN-AUG", "CIFAR-10-CNN"), or None
    when the paper has no such experiment (e.g. Fashion-MNIST)."""
    ds, m = _DATASET_TITLES.get(dataset), _MODEL_TITLES.get(models.ALIASES.get(model, model))
    if ds is None or m is None:
        return None
    return f"{ds}-{m}" + ("-AUG" if augment else "")


def _name_candidates(name):
    # Table 5's CSV drops the "-CNN" of the CIFAR rows ("CIFAR-10" / "CIFAR-10-AUG").
    yield name
    if name.startswith("CIFAR"):
        yield name.replace("-CNN", "")


def default_paper_dir():
    """``../shared/paper`` relative to the working directory, if it exists."""
    p = Path.cwd().parent / "shared" / "paper"
    return p if p.is_dir() else None


def read_paper_tables(paper_dir) -> dict:
    """{"table4": {name: {"control": %, "updates": %}}, "table5": {name: {"control": {eps: %}, "updates": {...}}}}
    from ``table4_clean_accuracy.csv`` / ``table5_fgsm_accuracy.csv`` in ``paper_dir`` (missing files: empty)."""
    import csv
    paper_dir = Path(paper_dir)
    t4, t5 = {}, {}
    p4, p5 = paper_dir / "table4_clean_accuracy.csv", paper_dir / "table5_fgsm_accuracy.csv"
    if p4.exists():
        with open(p4, newline="") as f:
            for row in csv.DictReader(f):
                t4[row["experiment"]] = {"control": float(row["control"]), "updates": float(row["with_updates"])}
    if p5.exists():
        with open(p5, newline="") as f:
            for row in csv.DictReader(f):
                accs = {float(k[len("eps_"):]): float(v) for k, v in row.items() if k.startswith("eps_") and v}
                t5.setdefault(row["experiment"], {})[row["variant"]] = accs
    return {"table4": t4, "table5": t5}


def _lookup(table, name):
    if name is None:
        return None
    for cand in _name_candidates(name):
        if cand in table:
            return table[cand]
    return None


def _fmt_p(w):
    if w["note"].startswith("no "):
        return f"{w['p']:.3f} ({w['note'].split(' (')[0]})"
    return f"{w['p']:.4f}" + (f" ({w['note']})" if w["note"] else "")


def format_tables(result, paper=True, paper_dir=None) -> str:
    """Text tables in the style of the paper's Table 4 (median clean accuracy) and Table 5 (median FGSM
    accuracy per eps), control vs. updates, with the paired Wilcoxon p-values; with ``paper=True`` the
    paper's own numbers side by side, read from ``paper_dir`` (default :func:`default_paper_dir`) --
    when the CSVs are not found no paper numbers are shown."""
    cfg = result["config"]
    summary = result.get("summary") or summarize(result)
    n = summary["n_runs"]
    name = paper_experiment_name(cfg["dataset"], cfg["model"], cfg["augment"])
    label = name or f"{cfg['dataset']}-{cfg['model']}" + ("-AUG" if cfg["augment"] else "")
    ref = None
    if paper:
        pdir = Path(paper_dir) if paper_dir is not None else default_paper_dir()
        if pdir is not None and pdir.is_dir():
            ref = read_paper_tables(pdir)
    p4 = _lookup(ref["table4"], name) if ref else None
    p5 = _lookup(ref["table5"], name) if ref else None

    test_desc = f"{cfg.get('n_test', '?')} test images" + (" (--eval-limit)" if cfg.get("eval_limit") else "")
    lines = [f"{label}: {cfg['model']} on {cfg['dataset']}, {cfg['epochs']} epoch(s), lambda-bar {cfg['input_lr']:g}"
             f"{', augmented' if cfg['augment'] else ''}, {n} lock-step run(s) (seeds {cfg['seed0']}.."
             f"{cfg['seed0'] + max(n, 1) - 1}), {cfg.get('n_train', '?')} training images, {test_desc}", ""]

    def pct(x):
        return f"{100 * x:7.2f}" if x is not None and not math.isnan(x) else "    n/a"

    paper_cols = p4 is not None or p5 is not None
    head_paper = " | paper control  paper updates" if paper_cols else ""

    lines.append(f"Table 4 -- clean test accuracy (%), median of {n} run(s)")
    h = f"{'experiment':<18} {'control':>8} {'updates':>8} {'diff':>7}  {'Wilcoxon p':<28}" + head_paper
    lines += [h, "-" * len(h)]
    c = summary["clean"]
    row = (f"{label:<18} {pct(c['control']):>8} {pct(c['updates']):>8} "
           f"{100 * (c['updates'] - c['control']):+7.2f}  {_fmt_p(c['wilcoxon']):<28}")
    if paper_cols:
        row += f" | {p4['control']:13.2f}  {p4['updates']:13.2f}" if p4 else " |           n/a            n/a"
    lines += [row, ""]

    lines.append(f"Table 5 -- FGSM test accuracy (%), median of {n} run(s)")
    h = f"{'eps':<18} {'control':>8} {'updates':>8} {'diff':>7}  {'Wilcoxon p':<28}" + head_paper
    lines += [h, "-" * len(h)]
    for e, b in summary["fgsm"].items():
        row = (f"{e:<18g} {pct(b['control']):>8} {pct(b['updates']):>8} "
               f"{100 * (b['updates'] - b['control']):+7.2f}  {_fmt_p(b['wilcoxon']):<28}")
        if paper_cols:
            pc = p5.get("control", {}).get(e) if p5 else None
            pu = p5.get("updates", {}).get(e) if p5 else None
            row += " | " + (f"{pc:13.2f}" if pc is not None else f"{'n/a':>13}") + "  " + \
                   (f"{pu:13.2f}" if pu is not None else f"{'n/a':>13}")
        lines.append(row)
    if summary.get("pgd"):
        k = cfg["pgd"]
        lines += ["", f"PGD-10 test accuracy (%) on the first {min(k, cfg.get('n_test', k))} test images, median of {n} run(s)"]
        h = f"{'eps':<18} {'control':>8} {'updates':>8} {'diff':>7}  {'Wilcoxon p':<28}"
        lines += [h, "-" * len(h)]
        for e, b in summary["pgd"].items():
            lines.append(f"{e:<18g} {pct(b['control']):>8} {pct(b['updates']):>8} "
                         f"{100 * (b['updates'] - b['control']):+7.2f}  {_fmt_p(b['wilcoxon']):<28}")
    lines += ["",
              f"Wilcoxon signed-rank test, two-sided, control vs. updates paired by run (same seed, same initial "
              f"weights). With n pairs the smallest possible exact p-value is 2/2^n: "
              f"{min_exact_p(n):.4g} for n = {n}" + (" (0.0625 for the paper's 5 runs)" if n != 5 else "")
              + "; p < 0.05 needs at least 6 runs."]
    if cfg["epochs"] == 1:
        lines.append("With 1 epoch the two networks of a run are identical: every training image is used once per "
                     "epoch, before its own input update, so the updates only act from epoch 2 on.")
    if paper:
        if ref is None:
            lines.append("paper's numbers: not shown (table4_clean_accuracy.csv / table5_fgsm_accuracy.csv not "
                         "found; pass --paper-dir)")
        elif not paper_cols:
            lines.append(f"paper's numbers: the paper has no {label} experiment")
        else:
            lines.append(f"paper's numbers: median of 5 runs of 50 epochs on the full test set (row {name!r})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- figures
def write_figures(result, out, ds=None, clip=(0.0, 1.0)) -> list:
    """Save Figures 1-6 (as far as the result allows) as PNGs into ``out``; returns the paths."""
    from . import figures      # Figures are built without pyplot: no GUI backend needed
    paths = []

    def save(fig, name):
        p = os.path.join(out, name)
        fig.savefig(p, dpi=110, bbox_inches="tight")
        paths.append(p)

    save(figures.test_error_curves(result), "fig1-2_test_error.png")
    if ds is not None:
        for variant in VARIANTS:
            path = os.path.join(out, f"run0_{variant}.npz")
            if os.path.exists(path):
                backend.seed(result["config"]["seed0"])
                model = train.build_model(result["config"]["model"], ds)
                model.load(path)
                save(figures.adversarial_examples(model, ds.X_test, ds.y_test, clip=clip,
                                                  title=f"run 0, {variant}"), f"fig3-4_adversarial_{variant}.png")
    snaps = result.get("snapshots")
    if snaps and len(snaps["deltas"]):
        save(figures.input_updates(snaps), "fig5-6_input_updates.png")
        peak = max(float(np.abs(d).max()) for d in snaps["deltas"])
        if 0 < peak < 0.5:
            save(figures.input_updates(snaps, gain=1.0 / peak), "fig5-6_input_updates_amplified.png")
    return paths


# -------------------------------------------------------------------------------------------- CLI
def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m nanosgm.experiments",
        description="The paper's protocol (Sections 5-6): N lock-step runs of the control (input_lr 0) and "
                    "the SGM network, medians of clean and FGSM accuracy (Tables 4-5), Wilcoxon tests.")
    train.add_common_arguments(p, "per network")
    p.add_argument("--runs", type=int, default=5, help="lock-step run pairs (default 5, the paper's)")
    p.add_argument("--pgd", type=int, default=0, metavar="N", help="also PGD-10 on the first N test images (default 0)")
    p.add_argument("--out", default=None, help="output folder (default runs/protocol-<dataset>-<model>[-aug])")
    p.add_argument("--seed", type=int, default=0, help="seed of run 0; run i uses seed + i")
    p.add_argument("--figures", action="store_true", help="also write Figures 1-6 as PNGs into --out")
    p.add_argument("--paper-dir", default=None, help="folder with the paper's table CSVs (default ../shared/paper)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .data import DataError

    def fail(msg):
        print(f"error: {msg}", file=sys.stderr)
        return 1

    eps_list, model_name, error = train.common_setup(args)
    if error:
        return fail(error)
    if args.runs < 1:
        return fail("--runs must be >= 1")
    if args.input_lr == 0:
        return fail("--input-lr 0 would train two control networks; the control is always part of the protocol")
    if args.paper_dir is not None and not os.path.isdir(args.paper_dir):
        return fail(f"--paper-dir {args.paper_dir!r} is not a folder")
    out = args.out or os.path.join("runs", f"protocol-{args.dataset}-{model_name}{'-aug' if args.augment else ''}")
    progress = not args.no_progress
    try:
        ds, clip = load_data(args.dataset, data_dir=args.data_dir, limit=args.limit, eval_limit=args.eval_limit,
                             progress=progress)
        result = _run_prepared(ds, clip, model_name, runs=args.runs, epochs=args.epochs, input_lr=args.input_lr,
                               augment=args.augment, eps_list=eps_list, limit=args.limit, eval_limit=args.eval_limit,
                               out=out, seed0=args.seed, pgd=args.pgd, progress=progress,
                               batch_size=args.batch_size, optimizer="wame", lr=None, per_sample=False)
    except (DataError, ConfigMismatch, train.TrainingDiverged, ValueError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are in {out}/protocol.json and the run in progress resumes from its "
              f"last epoch; run the same command again to continue", file=sys.stderr)
        return 130
    print()
    print(format_tables(result, paper=True, paper_dir=args.paper_dir))
    print(f"\nwrote {os.path.join(out, 'protocol.json')}")
    if args.figures:
        for p in write_figures(result, out, ds=ds, clip=clip):
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
