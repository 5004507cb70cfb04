"""Run length: a protocol trained at the paper's length beside a shorter one of the same seeds (issue 27, part 1).

    same_seeds(long, short)            the runs both protocol results hold for every arm they share, each network
                                       started from the same weights in both (equal ``init_sha256``)
    length_claims(long, short)         the paper's claims (:func:`.verdicts.claims`) judged on those runs at each
                                       length by the same rules, side by side, and whether the verdict changed
    watch_figure(result)               per epoch, the drift of the stored images |X_t - X_0| (max, each SGM arm)
                                       and, at the watched epochs, FGSM accuracy on the validation split under
                                       both conventions (``--watch-fgsm``), each arm

SGM's input step is not on the learning-rate schedule, so a longer run moves its stored images further; the
claims are judged with the rules of :mod:`.verdicts` on the common runs only, with ``min_pairs`` lowered to
their number (three here; the rules' five is the paper's), and both lengths are judged on the same runs, so a
change of verdict is the run length's, not the seeds'.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .keys import split_key
from .stats import summarize
from .verdicts import claims

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["same_seeds", "restricted", "length_claims", "watch_figure", "watch_curves", "watched_eps", "WATCH_EPS"]


def _by_run(result: dict) -> dict[int, dict[str, dict]]:
    """{run: {arm: record}} of a protocol result's networks."""
    runs: dict[int, dict[str, dict]] = {}
    for key, record in result["networks"].items():
        i, arm = split_key(key)
        runs.setdefault(i, {})[arm] = record
    return runs


def same_seeds(long: dict, short: dict) -> list[int]:
    """The runs, in order, that hold every arm the two results share in both; ValueError if one of those
    networks did not start from the same weights in both (their ``init_sha256`` differ, or one lacks it)."""
    arms = [a for a in long["arms"] if a in short["arms"]]
    a, b = _by_run(long), _by_run(short)
    runs = [i for i in sorted(a) if i in b and all(arm in a[i] and arm in b[i] for arm in arms)]
    for i in runs:
        for arm in arms:
            x, y = a[i][arm].get("init_sha256"), b[i][arm].get("init_sha256")
            if x is None or x != y:
                raise ValueError(f"run {i}, {arm}: the two protocols' networks did not start from the same weights "
                                 f"(init_sha256 {x} and {y}); a comparison of run length needs the same seeds")
    return runs


def restricted(result: dict, runs: list[int]) -> dict:
    """``result`` with the networks of ``runs`` only (the same config and arms)."""
    keep = set(runs)
    return {**result, "networks": {k: r for k, r in result["networks"].items() if split_key(k)[0] in keep}}


def length_claims(long: dict, short: dict) -> dict:
    """The claims of :func:`.verdicts.claims` judged on the common runs (:func:`same_seeds`) at both lengths.

    Returns {"runs": [...], "epochs": (long, short), "rows": [{"arm", "claim", "convention", "paper_diff",
    "long": claim row, "short": claim row, "changed": bool}]} (a claim row as :func:`.verdicts.claims` gives it,
    its "diffs" per common run, in order; "changed": the two verdicts differ). Claims that only one length
    measured are left out. ValueError when no run is common to both."""
    runs = same_seeds(long, short)
    if not runs:
        raise ValueError("the two protocols have no run in common with every shared arm recorded")
    n = len(runs)
    judged = []
    for result in (long, short):
        r = restricted(result, runs)
        judged.append({(c["arm"], c["claim"]): c for c in claims(r, summarize(r), min_pairs=n)})
    rows = []
    for key, c_long in judged[0].items():
        c_short = judged[1].get(key)
        if c_short is None:
            continue
        rows.append({"arm": key[0], "claim": key[1], "convention": c_long["convention"],
                     "paper_diff": c_long["paper_diff"], "long": c_long, "short": c_short,
                     "changed": c_long["verdict"] != c_short["verdict"]})
    return {"runs": runs, "epochs": (long["config"]["epochs"], short["config"]["epochs"]), "rows": rows}


# ------------------------------------------------------------------------------------------ the figure
def watch_curves(result: dict, arm: str, key: str, eps: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values): ``key`` of each network of ``arm`` per epoch of its history, one row per run in run
    order, NaN where an epoch lacks it; ``eps``: the key holds {eps: %} (``val_fgsm_pct``), take that one.
    Epochs are 1..the longest history; shorter histories are padded with NaN."""
    records = [r for _, r in sorted((split_key(k)[0], r) for k, r in result["networks"].items()
                                    if split_key(k)[1] == arm)]
    length = max((len(r["history"]) for r in records), default=0)
    values = np.full((len(records), length), math.nan)
    for row, r in enumerate(records):
        for h in r["history"]:
            v = h.get(key)
            if isinstance(v, dict):
                v = v.get(eps) if eps is not None else None
            if v is not None:
                values[row, int(h["epoch"]) - 1] = float(v)
    return np.arange(1, length + 1), values


def watched_eps(result: dict) -> list[str]:
    """The eps keys of the validation-split FGSM watch, in the protocol's order (none if nothing was watched)."""
    seen = {e for r in result["networks"].values() for h in r["history"] for e in (h.get("val_fgsm_pct") or {})}
    return [e for e in (repr(float(x)) for x in result["config"]["eps"]) if e in seen]


WATCH_EPS = ("0.1", "0.2")      # the eps of the paper's Table 5 claims on MNIST that FGSM moves by points


def watch_figure(result: dict, eps: tuple[str, ...] = WATCH_EPS) -> Figure:
    """One panel of the SGM arms' drift per epoch (max |X_t - X_0|, each run a line, log scale), then one panel
    per watched eps (of ``eps``): validation FGSM accuracy per watched epoch, each arm a colour, the
    inference-mode FGSM solid and the authors' dashed, each run a line. Axes titles: "Stored images' drift",
    "Validation FGSM, ε = <eps>". ValueError when the records hold no watch."""
    from .figures import _arm_style, _figure
    shown = [e for e in watched_eps(result) if e in eps]
    if not shown:
        raise ValueError("the records hold no validation FGSM watch at these eps (train with --watch-fgsm N)")
    fig = _figure((4.4 * (1 + len(shown)), 3.8))
    axes = fig.subplots(1, 1 + len(shown), squeeze=False)[0]
    for i, arm in enumerate(result["arms"]):
        style = _arm_style(i)
        epochs, drift = watch_curves(result, arm, "input_shift_max")
        if np.isfinite(drift).any():
            for row, curve in enumerate(drift):
                axes[0].plot(epochs, curve, color=style["color"], lw=1, label=arm if row == 0 else None)
        for ax, e in zip(axes[1:], shown):
            for key, ls, what in (("val_fgsm_pct", "-", "inference"), ("val_fgsm_authors_pct", "--", "authors'")):
                epochs, acc = watch_curves(result, arm, key, e)
                watched = np.isfinite(acc).any(axis=0)
                for row, curve in enumerate(acc[:, watched]):
                    ax.plot(epochs[watched], curve, color=style["color"], ls=ls, marker="o", ms=3, lw=1,
                            label=f"{arm}, {what}" if row == 0 else None)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("max |X_t - X_0|")
    axes[0].set_title("Stored images' drift", fontsize=9)
    for ax, e in zip(axes[1:], shown):
        ax.set_ylabel("FGSM accuracy, validation (%)")
        ax.set_title(f"Validation FGSM, ε = {e}", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    cfg = result["config"]
    fig.suptitle(f"{cfg['dataset']} {cfg['model']}, {cfg['epochs']} epochs: each run a line", fontsize=10)
    fig.tight_layout()
    return fig
