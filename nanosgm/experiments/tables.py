"""The protocol's results as text tables in the style of the paper's Table 4 and Table 5.

Per arm against the control: the control's and the arm's median [min-max] over the paired runs, the
median paired difference and the Wilcoxon p-value (:mod:`.stats`), and the paper's numbers beside them
(:mod:`.paper_tables`) for the experiments the paper has.
"""
from __future__ import annotations

from pathlib import Path

from ..methods.base import format_number
from . import paper_tables
from .stats import min_exact_p, summarize

__all__ = ["paper_experiment_name", "format_tables"]

_DATASET_TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
_MODEL_TITLES = {"dnn": "DNN", "dnn-keras": "DNN", "cnn": "CNN", "cifar_cnn": "CNN"}


def paper_experiment_name(dataset: str, model: str, augment: bool) -> str | None:
    """The paper's row name for this experiment ("MNIST-CNN-AUG", "CIFAR-10-CNN"), or None when the paper
    has no such experiment (e.g. Fashion-MNIST)."""
    from .. import models
    ds, m = _DATASET_TITLES.get(dataset), _MODEL_TITLES.get(models.ALIASES.get(model, model))
    if ds is None or m is None:
        return None
    return f"{ds}-{m}" + ("-AUG" if augment else "")


def _fmt_p(w: dict) -> str:
    if w["note"].startswith("no "):
        return f"{w['p']:.4f} ({w['note'].split(' (')[0]})"
    return f"{w['p']:.4f}" + (" (ties)" if w["note"] else "")


def _cell(s: dict) -> str:
    if not s["per_run"]:
        return "n/a"
    return f"{s['median']:6.2f} [{s['min']:.2f}-{s['max']:.2f}]"


def _table(title: str, rows: list[tuple], paper_cols: bool) -> list[str]:
    """One table: a title, a header and a line per (row label, arm, block, paper's (control, updates) or None)."""
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


AUTHORS_TITLE = ("Table 5, the authors' evaluation -- FGSM test accuracy (%): gradient in training mode on "
                 "test batches of 128, no clip (nanosgm.attacks.conventions)")
INFERENCE_TITLE = "Table 5 -- FGSM test accuracy (%): gradient in inference mode, clipped to the data's range"


def _fgsm_rows(eps: list[float], summary: dict, kind: str, p5: dict | None) -> list:
    return [(f"eps {format_number(e)}", arm, s[kind][e],
             (p5["control"].get(e), p5["updates"].get(e)) if p5 and e in p5.get("control", {}) else None)
            for e in eps for arm, s in summary.items() if s[kind]]


def _measured_tables(cfg: dict, summary: dict, p4: dict | None, p5: dict | None, when: str = "") -> list:
    """The lines of Table 4, Table 5 (both evaluations, when the records have the authors') and (when
    measured) the PGD table; ``when`` is added to the titles (e.g. ", last epoch")."""
    eps = [float(x) for x in cfg["eps"]]
    rows4 = [("clean", arm, s["clean"], (p4["control"], p4["updates"]) if p4 else None)
             for arm, s in summary.items() if s["runs"]]
    lines = _table(f"Table 4{when} -- clean test accuracy (%)", rows4, p4 is not None)
    authors = _fgsm_rows(eps, summary, "fgsm_authors", p5)
    title = INFERENCE_TITLE if authors else "Table 5 -- FGSM test accuracy (%)"
    lines += _table(title.replace("Table 5", f"Table 5{when}", 1), _fgsm_rows(eps, summary, "fgsm", p5), p5 is not None)
    if authors:
        lines += _table(AUTHORS_TITLE.replace("Table 5", f"Table 5{when}", 1), authors, p5 is not None)
    rows_pgd = [(f"eps {format_number(e)}", arm, s["pgd"][e], None)
                for e in eps for arm, s in summary.items() if s["pgd"]]
    if rows_pgd:
        lines += _table(f"PGD-{cfg['pgd_steps']} test accuracy (%) on the first {cfg['pgd']} test images{when}",
                        rows_pgd, False)
    return lines


_POOLED_NAMES = {"fgsm": "FGSM", "pgd": "PGD", "fgsm_authors": "FGSM (the authors' evaluation)"}


def _pooled_lines(summary: dict) -> list:
    lines = []
    for arm, s in summary.items():
        for kind, name in _POOLED_NAMES.items():
            w = s.get(f"pooled_{kind}")
            if w:
                lines.append(f"pooled {name}, {arm}: Wilcoxon over {w['n']} (run, eps) cells, p = {_fmt_p(w)}, "
                             f"median diff {w['median_diff']:+.2f} (the cells share networks: not independent)")
    return lines


def format_tables(result: dict, paper: bool = True, paper_dir: str | Path | None = None) -> str:
    """Text tables in the style of the paper's Table 4 (clean accuracy) and Table 5 (FGSM accuracy per eps)
    and a PGD table: per arm, the control's and the arm's median [min-max], the median paired difference and
    the Wilcoxon p-value; the pooled tests; and with ``paper=True`` the paper's numbers (shipped in
    :mod:`nanosgm.experiments.paper_tables`, or read from ``paper_dir``) beside them."""
    cfg, summary = result["config"], result.get("summary") or summarize(result)
    name = paper_experiment_name(cfg["dataset"], cfg["model"], cfg["augment"])
    label = name or f"{cfg['dataset']}-{cfg['model']}" + ("-AUG" if cfg["augment"] else "")
    ref = (paper_tables.read_paper_tables(paper_dir) if paper_dir else paper_tables.PAPER_TABLES) if paper else None
    p4 = paper_tables.lookup(ref["table4"], name) if ref else None
    p5 = paper_tables.lookup(ref["table5"], name) if ref else None
    n_nets = len(result["networks"])
    lines = [f"{label}: {cfg['model']} on {cfg['dataset']}, {cfg['epochs']} epoch(s), optimizer {cfg['optimizer']}"
             f"{', augmented' if cfg['augment'] else ''}, seeds from {cfg['seed0']}, {n_nets} network(s) recorded", ""]
    lines += _measured_tables(cfg, summary, p4, p5)
    lines += _pooled_lines(summary)
    last = {arm: dict(s["last_epoch"], runs=s["runs"]) for arm, s in summary.items() if s.get("last_epoch")}
    if last:
        lines += ["", "The same for the weights of the LAST epoch (the tables above: the best validation epoch's):", ""]
        lines += _measured_tables(cfg, last, p4, p5, when=", last epoch")
    n = max((len(s["runs"]) for s in summary.values()), default=0)
    lines += ["", f"Wilcoxon signed-rank test, two-sided, arm vs. control paired by seed (same initial weights). "
                  f"With n pairs the smallest possible exact p-value is 2/2^n: {min_exact_p(n):.4g} for n = {n} "
                  f"(0.0625 for the paper's 5 runs); p < 0.05 needs at least 6 pairs."]
    if ref is not None:                        # paper=True
        lines.append(f"paper's numbers: {ref['source']}" if (p4 or p5) else f"paper's numbers: the paper has no "
                     f"{label} experiment")
    return "\n".join(lines)
