"""The protocol's statistics (Section 6): per arm against the control, paired by run (seed).

Over the runs that have both networks recorded: the MEDIAN (what the paper reports), min-max and
per-run values of the control and of the arm, and the two-sided Wilcoxon signed-rank test of the paired
runs. With n pairs and no ties the smallest exact p-value is 2 / 2**n: 0.0625 for five pairs, so
"p < 0.05" cannot come from five runs; the POOLED test over all (run, eps) cells of a row is the only way
to get there, and its cells are not independent (the same networks at several eps).

A result is the dict :func:`nanosgm.experiments.run_protocol` returns (or ``load_protocol`` reads):
``{"config", "arms", "networks": {"run<i>/<arm>": record}, ...}``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from ..methods.arms import CONTROL
from .keys import network_key, split_key
from .records import eps_keys

__all__ = ["min_exact_p", "wilcoxon_paired", "arms_of", "paired", "summarize"]


def min_exact_p(n: int) -> float:
    """The smallest two-sided exact Wilcoxon signed-rank p-value with n non-zero, untied pairs: 2 / 2**n."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else 1.0


def wilcoxon_paired(control: Sequence[float] | np.ndarray, updates: Sequence[float] | np.ndarray) -> dict:
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


def arms_of(result: dict) -> list:
    """The arms of a result beside the control, in the order they were added."""
    return [a for a in result["arms"] if a != CONTROL]


def paired(result: dict, arm: str) -> list:
    """The runs that have both the control and ``arm`` recorded, in order."""
    runs = sorted({split_key(k)[0] for k in result["networks"]})
    return [i for i in runs if network_key(i, CONTROL) in result["networks"] and network_key(i, arm) in result["networks"]]


def _stats(values: Sequence[float]) -> dict:
    """{median, min, max, per_run} of one arm's values over the runs (NaN and [] when there are none)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "per_run": []}
    return {"median": round(float(np.median(v)), 4), "min": float(v.min()), "max": float(v.max()),
            "per_run": [float(x) for x in v]}


def _block(result: dict, arm: str, runs: list[int], getter: Callable[[dict], float]) -> dict:
    """One cell of a table: the control's and the arm's values (``getter(record)``) over ``runs``, and their test."""
    c = [getter(result["networks"][network_key(i, CONTROL)]) for i in runs]
    a = [getter(result["networks"][network_key(i, arm)]) for i in runs]
    return {"control": _stats(c), "arm": _stats(a), "wilcoxon": wilcoxon_paired(c, a)}


def _attack_blocks(result: dict, arm: str, runs: list[int], kind: str, eps: list[str], part: str = "results") -> dict:
    """{eps: block} of ``kind`` ("fgsm", "pgd" or "fgsm_authors": the record's ``<kind>_pct``) in the
    record's ``part`` ("results": the best epoch; "results_last_epoch"), or {} unless every paired
    network has it."""
    have = runs and all(f"{kind}_pct" in result["networks"][network_key(i, v)].get(part, {})
                        for i in runs for v in (CONTROL, arm))
    if not have:
        return {}
    # the cast: mypy cannot infer a lambda with a default argument (e=e binds each eps)
    return {float(e): _block(result, arm, runs,
                             cast("Callable[[dict], float]", lambda r, e=e: r[part][f"{kind}_pct"][e]))
            for e in eps}


def _pooled(blocks: dict) -> dict | None:
    """The paired test over every (run, eps) cell of ``blocks`` (None without cells)."""
    cells = [(b["control"]["per_run"], b["arm"]["per_run"]) for b in blocks.values()]
    if not cells:
        return None
    return wilcoxon_paired(sum((c for c, _ in cells), []), sum((a for _, a in cells), []))


KINDS = ("fgsm", "pgd", "fgsm_authors")      # FGSM (this project's evaluation), PGD, FGSM the authors' way


def summarize(result: dict) -> dict:
    """Per arm against the control (paired runs only): clean accuracy (Table 4), FGSM accuracy per eps
    (Table 5) measured this project's way ("fgsm") and the authors' way ("fgsm_authors", when the
    records have it: :mod:`nanosgm.attacks.conventions`), PGD per eps (when measured), and the pooled
    paired test over all (run, eps) cells of each; under "last_epoch" the same for the weights of the
    last epoch (when every paired record has them).

    Returns {arm: {"runs", "clean", "fgsm": {eps: block}, "pgd": {...}, "fgsm_authors": {...},
    "pooled_fgsm", "pooled_pgd", "pooled_fgsm_authors", "last_epoch": {"clean", "fgsm", ...} or {}}},
    a block being {"control": {median, min, max, per_run}, "arm": {...}, "wilcoxon": {...}}; percent.
    """
    eps = eps_keys(result["config"])
    out = {}
    for arm in arms_of(result):
        runs = paired(result, arm)
        s = _part(result, arm, runs, eps, "results")
        last = runs and all("results_last_epoch" in result["networks"][network_key(i, v)]
                            for i in runs for v in (CONTROL, arm))
        s["last_epoch"] = _part(result, arm, runs, eps, "results_last_epoch") if last else {}
        out[arm] = dict(runs=runs, **s)
    return out


def _part(result: dict, arm: str, runs: list[int], eps: list[str], part: str) -> dict:
    """The blocks of one part of the records ("results" or "results_last_epoch")."""
    s: dict[str, Any] = {"clean": _block(result, arm, runs, lambda r: r[part]["clean_pct"])}
    for kind in KINDS:
        s[kind] = _attack_blocks(result, arm, runs, kind, eps, part)
        s[f"pooled_{kind}"] = _pooled(s[kind])
    return s
