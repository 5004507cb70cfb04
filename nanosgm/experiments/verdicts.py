"""Verdicts on the paper's claims, from a protocol's paired runs, by rules fixed in advance.

The paper reports, per experiment, the median over five runs of the control and of SGM ("updates"), and
claims (a) clean accuracy is not lowered (Table 4) and (b) accuracy under FGSM rises (Table 5). With five
pairs no per-cell Wilcoxon test can reach 0.05 (its smallest two-sided p is 2/2^5 = 0.0625), so the rules
below use what five pairs *can* show: whether every pair moves the same way, and how large the median
paired difference d = arm - control is against the paper's difference D = updates - control.

    gain claim (a Table 5 cell where the paper reports D >= GAIN_CLAIM points):
        confirmed       every pair gains (d > 0) and median(d) >= D / 2
        refuted         no pair gains even half the paper's difference: max(d) < D / 2
        not decidable   anything else (the pairs disagree, or the median falls between)
    no-harm claim (Table 4, clean accuracy):
        confirmed       median(d) >= -HARM_TOL
        refuted         every pair loses (d < 0) and median(d) < -HARM_TOL
        not decidable   anything else
    fewer than MIN_PAIRS pairs: "not decidable yet", whatever the numbers.

The claims are the paper's claims about SGM, so they are judged for the SGM arms only (``sgm:...`` and
``published``); an adversarial-training baseline in the same protocol (``fgsm-at:...``, ``fgsm-rs:...``,
``pgd-at:...``) is compared in results/robustness/, not judged here.

    >>> verdict_gain([1.0, 2.0, 3.0, 2.5, 4.0], 4.85)[0]
    'confirmed'
    >>> verdict_gain([0.1, -0.2, 0.3, 0.0, 0.4], 4.85)[0]
    'refuted'
    >>> verdict_no_harm([-0.3, -0.2, -0.25, -0.1, -0.4])[0]
    'refuted'
    >>> verdict_gain([5.0, 6.0], 4.85)[0]
    'not decidable yet'
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np

from ..methods.base import format_number
from . import paper_tables
from .stats import summarize
from .tables import paper_experiment_name

__all__ = ["verdict_gain", "verdict_no_harm", "claims", "CONVENTIONS", "is_sgm_arm", "MIN_PAIRS", "GAIN_CLAIM", "HARM_TOL"]

#: the FGSM conventions a Table 5 claim is judged under: (summary kind, convention name); see
#: nanosgm.attacks.conventions. The rules are the same for both; only the measurement differs.
CONVENTIONS = (("fgsm", "inference"), ("fgsm_authors", "authors"))
CLAIM_SUFFIX = {"inference": "", "authors": ", the authors' FGSM"}

MIN_PAIRS = 5        # the paper's five runs
GAIN_CLAIM = 1.0     # a Table 5 difference of at least one point is a claimed gain
HARM_TOL = 0.1       # clean accuracy may fall by at most 0.1 points (10 of 10,000 test images)


def _diffs(block: dict) -> np.ndarray:
    """arm - control per run, rounded to 4 decimals as the records are (no float noise in the verdicts)."""
    return np.round(np.asarray(block["arm"]["per_run"], float) - np.asarray(block["control"]["per_run"], float), 4)


def _median(d: np.ndarray) -> float:
    """The median paired difference, rounded as :func:`.stats.wilcoxon_paired`'s median_diff is."""
    return round(float(np.median(d)), 4)


def _too_few(d: np.ndarray, min_pairs: int) -> tuple | None:
    if len(d) < min_pairs:
        return "not decidable yet", f"{len(d)} of {min_pairs} pairs"
    return None


def verdict_gain(d: Sequence[float] | np.ndarray, paper_diff: float, min_pairs: int = MIN_PAIRS) -> tuple:
    """(verdict, reason) for the claim "accuracy rises by about `paper_diff` points", from the paired
    differences `d` (arm - control, one per run); fewer than ``min_pairs`` pairs: "not decidable yet"."""
    d = np.asarray(d, float)
    early = _too_few(d, min_pairs)
    if early:
        return early
    half, med = paper_diff / 2, _median(d)
    if np.all(d > 0) and med >= half:
        return "confirmed", f"all {len(d)} pairs gain; median {med:+.2f} >= half the paper's {paper_diff:+.2f}"
    if float(d.max()) < half:
        return "refuted", f"no pair gains half the paper's {paper_diff:+.2f} (largest {float(d.max()):+.2f})"
    return "not decidable", (f"{int(np.sum(d > 0))} of {len(d)} pairs gain; median {med:+.2f}, "
                             f"range {float(d.min()):+.2f} to {float(d.max()):+.2f}")


def verdict_no_harm(d: Sequence[float] | np.ndarray, min_pairs: int = MIN_PAIRS) -> tuple:
    """(verdict, reason) for the claim "clean accuracy is not lowered" from the paired differences `d`."""
    d = np.asarray(d, float)
    early = _too_few(d, min_pairs)
    if early:
        return early
    med = _median(d)
    if med >= -HARM_TOL:
        return "confirmed", f"median {med:+.2f} >= -{HARM_TOL:g}"
    if np.all(d < 0):
        return "refuted", f"all {len(d)} pairs lose; median {med:+.2f} < -{HARM_TOL:g}"
    return "not decidable", f"median {med:+.2f}, but {int(np.sum(d >= 0))} of {len(d)} pairs do not lose"


def is_sgm_arm(label: str) -> bool:
    """Whether a protocol arm trains with SGM (``sgm:0.2``, ``sgm:0.2:per-sample``, ``published``).

    >>> [is_sgm_arm(a) for a in ("sgm:0.2", "published", "fgsm-at:0.1", "control")]
    [True, True, False, False]
    """
    return label == "published" or label.startswith("sgm:")


def claims(result: dict, summary: dict | None = None, min_pairs: int = MIN_PAIRS) -> list:
    """One row per (arm, claim) of a protocol result: {"arm", "claim", "convention", "paper_diff", "pairs",
    "diffs" (arm - control per paired run), "median_diff", "range", "verdict", "reason"}; each Table 5 claim once per FGSM convention the records
    carry (:data:`CONVENTIONS`; "convention" None for the clean-accuracy claim). Claims are the paper's Table 4 cell and its Table 5 cells with a
    difference of at least GAIN_CLAIM; an experiment the paper does not have gives no rows. ``summary``:
    :func:`.stats.summarize` of ``result`` when the caller already has it. ``min_pairs``: the rules' least
    number of pairs (the paper's five; a comparison of fewer pairs may lower it and say so)."""
    cfg = result["config"]
    name = paper_experiment_name(cfg["dataset"], cfg["model"], cfg.get("augment", False))
    p4, p5 = paper_tables.lookup(paper_tables.TABLE4, name), paper_tables.lookup(paper_tables.TABLE5, name)
    rows = []
    for arm, s in (summary or summarize(result)).items():
        if not s["runs"] or not is_sgm_arm(arm):
            continue
        if p4:
            rows.append(_row(arm, "clean accuracy is not lowered (Table 4)", p4["updates"] - p4["control"],
                             s["clean"], lambda d: verdict_no_harm(d, min_pairs)) | {"convention": None})
        for kind, convention in CONVENTIONS:
            rows += _gain_rows(arm, s.get(kind) or {}, p5, convention, min_pairs)
    return rows


def _gain_rows(arm: str, blocks: dict, p5: dict | None, convention: str, min_pairs: int = MIN_PAIRS) -> list:
    """The Table 5 claims of one arm, judged on FGSM measured under ``convention``."""
    rows = []
    for e, block in blocks.items():
        D = p5["updates"][e] - p5["control"][e] if p5 and e in p5["control"] else None
        if D is not None and D >= GAIN_CLAIM:
            # the cast: mypy cannot infer a lambda with a default argument (D=D binds this eps's difference)
            rule = cast("Callable[[np.ndarray], tuple]", lambda d, D=D: verdict_gain(d, D, min_pairs))
            rows.append(_row(arm, f"FGSM accuracy rises at ε = {format_number(e)} (Table 5{CLAIM_SUFFIX[convention]})",
                             D, block, rule) | {"convention": convention})
    return rows


def _row(arm: str, claim: str, paper_diff: float, block: dict, rule: Callable[[np.ndarray], tuple]) -> dict:
    d = _diffs(block)
    v, why = rule(d)
    return {"arm": arm, "claim": claim, "paper_diff": round(float(paper_diff), 2), "pairs": int(len(d)),
            "diffs": [float(x) for x in d], "median_diff": _median(d), "range": [float(d.min()), float(d.max())],
            "verdict": v, "reason": why}
