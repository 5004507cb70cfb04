"""Run length: a protocol trained at the paper's length beside a shorter one of the same seeds (issue 27, part 1).

    same_seeds(long, short, arm)       the runs both protocol results hold for the control and ``arm``, each network
                                       started from the same weights in both (equal ``init_sha256``)
    length_claims(long, short)         the paper's claims (:func:`.verdicts.claims`) judged on those runs at each
                                       length by the same rules, side by side, and whether the verdict changed
    watch_figure(result)               per epoch, the drift of the stored images |X_t - X_0| (max, each SGM arm)
                                       and, at the watched epochs, FGSM accuracy on the validation split under
                                       both conventions (``--watch-fgsm``), each arm

SGM's input step is not on the learning-rate schedule, so a longer run moves its stored images further. The two
protocols must differ in their number of epochs only (and so in the schedule the paper's steps give each length):
every other setting that shapes training or measurement, and the BLAS threads, are checked equal. Each SGM arm's
claims are judged with the rules of :mod:`.verdicts` on the runs where both protocols hold it and the control
from the same initial weights, with the rules' least number of pairs lowered to that number but never below
:data:`MIN_LENGTH_PAIRS`; both lengths are judged on the same runs. Same initial weights do not make the two
trainings one path: they part at the first epoch whose learning rate differs.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..methods.arms import CONTROL
from .keys import split_key
from .stats import summarize
from .verdicts import MIN_PAIRS, claims, is_sgm_arm

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["same_seeds", "restricted", "length_claims", "check_comparable", "shared_epochs", "watch_figure",
           "watch_curves", "watched_eps", "PATH_KEYS", "WATCH_EPS", "MIN_LENGTH_PAIRS", "SAME_SETTINGS"]

#: the fewest pairs a verdict here is given on (the rules' own least, MIN_PAIRS, is lowered to the runs shared)
MIN_LENGTH_PAIRS = 3
#: the settings two protocols compared by run length must share (config keys; and the top-level blas_threads)
SAME_SETTINGS = ("dataset", "model", "augment", "optimizer", "batch_size", "lr", "constant_lr", "limit",
                 "eval_limit", "val_size", "eps", "backend", "seed0")


def _by_run(result: dict) -> dict[int, dict[str, dict]]:
    """{run: {arm: record}} of a protocol result's networks."""
    runs: dict[int, dict[str, dict]] = {}
    for key, record in result["networks"].items():
        i, arm = split_key(key)
        runs.setdefault(i, {})[arm] = record
    return runs


def check_comparable(long: dict, short: dict) -> None:
    """ValueError (one line, naming the setting) unless the two results differ in their number of epochs, the
    first the longer, and in nothing else of :data:`SAME_SETTINGS` or their BLAS threads."""
    a, b = long["config"], short["config"]
    for key in SAME_SETTINGS:
        if a.get(key) != b.get(key):
            raise ValueError(f"the two protocols differ in {key} ({a.get(key)!r} and {b.get(key)!r}), not only in "
                             f"their length; compare protocols of the same settings")
    if long.get("blas_threads") != short.get("blas_threads"):
        raise ValueError(f"the two protocols differ in blas_threads ({long.get('blas_threads')!r} and "
                         f"{short.get('blas_threads')!r}), so their training differs beyond the run length")
    if not a["epochs"] > b["epochs"]:
        raise ValueError(f"the first protocol must be the longer: {a['epochs']} and {b['epochs']} epochs")


def same_seeds(long: dict, short: dict, arm: str) -> list[int]:
    """The runs, in order, that hold the control and ``arm`` in both results; ValueError if one of those networks
    did not start from the same weights in both (their ``init_sha256`` differ, or one lacks it)."""
    a, b = _by_run(long), _by_run(short)
    runs = [i for i in sorted(a) if i in b and all(x in a[i] and x in b[i] for x in (CONTROL, arm))]
    for i in runs:
        for x in (CONTROL, arm):
            one, two = a[i][x].get("init_sha256"), b[i][x].get("init_sha256")
            if one is None or one != two:
                raise ValueError(f"run {i}, {x}: the two protocols' networks did not start from the same weights "
                                 f"(init_sha256 {str(one)[:12]} and {str(two)[:12]}); compare runs of the same seeds")
    return runs


#: what an epoch's history record says of training (not its wall time, nor the watch measured after it)
PATH_KEYS = ("epoch", "lr", "train_loss", "val_error_pct", "test_error_pct", "input_shift_max", "input_shift_mean")


def shared_epochs(a: dict, b: dict) -> tuple[int, int]:
    """(epochs whose history records of :data:`PATH_KEYS` agree, epochs whose learning rates agree), both counted
    from the first epoch, for two network records. Networks trained on one path until their schedules part
    agree for as many epochs as their learning rates do."""
    def leading(same) -> int:
        n = 0
        for x, y in zip(a["history"], b["history"]):
            if not same(x, y):
                break
            n += 1
        return n
    return (leading(lambda x, y: all(x.get(k) == y.get(k) for k in PATH_KEYS)),
            leading(lambda x, y: x.get("lr") == y.get("lr")))


def restricted(result: dict, runs: list[int], arms: list[str] | None = None) -> dict:
    """``result`` with the networks of ``runs`` (and of ``arms``, if given) only, the same config."""
    keep = set(runs)
    nets = {k: r for k, r in result["networks"].items()
            if split_key(k)[0] in keep and (arms is None or split_key(k)[1] in arms)}
    return {**result, "networks": nets, "arms": list(arms) if arms is not None else result["arms"]}


def _judged(result: dict, arm: str, runs: list[int], min_pairs: int) -> dict:
    """{claim: claim row} of ``arm`` against the control on ``runs``."""
    r = restricted(result, runs, [CONTROL, arm])
    return {c["claim"]: c for c in claims(r, summarize(r), min_pairs=min_pairs) if c["arm"] == arm}


def length_claims(long: dict, short: dict) -> dict:
    """The claims of :func:`.verdicts.claims` judged, per SGM arm, on the runs both results hold with the control
    (:func:`same_seeds`) at both lengths, after :func:`check_comparable`.

    Returns {"epochs": (long, short), "runs": {arm: [...]}, "rows": [{"arm", "claim", "convention", "paper_diff",
    "long": claim row, "short": claim row, "changed": bool}], "left_out": [one line each], "paths": {network key:
    :func:`shared_epochs` of its two records}} (a claim row as
    :func:`.verdicts.claims` gives it, its "diffs" per run, in order; "changed": the two verdicts differ). An SGM
    arm without a shared run, and a claim only one length measured, are named in "left_out"."""
    check_comparable(long, short)
    rows, runs_of, left_out = [], {}, []
    for arm in [a for a in long["arms"] if is_sgm_arm(a)]:
        if arm not in short["arms"]:
            left_out.append(f"{arm}: only the {long['config']['epochs']}-epoch protocol has it")
            continue
        runs = same_seeds(long, short, arm)
        if not runs:
            left_out.append(f"{arm}: no run holds it and the control in both protocols")
            continue
        runs_of[arm] = runs
        need = max(MIN_LENGTH_PAIRS, min(len(runs), MIN_PAIRS))
        judged_long, judged_short = _judged(long, arm, runs, need), _judged(short, arm, runs, need)
        for claim in sorted(set(judged_long) ^ set(judged_short), key=list(judged_long | judged_short).index):
            n = long["config"]["epochs"] if claim in judged_long else short["config"]["epochs"]
            left_out.append(f"{arm}, {claim}: measured at {n} epochs only")
        for claim, c_long in judged_long.items():
            if claim in judged_short:
                c_short = judged_short[claim]
                rows.append({"arm": arm, "claim": claim, "convention": c_long["convention"],
                             "paper_diff": c_long["paper_diff"], "long": c_long, "short": c_short,
                             "changed": c_long["verdict"] != c_short["verdict"]})
    paths = {f"run{i}/{x}": shared_epochs(long["networks"][f"run{i}/{x}"], short["networks"][f"run{i}/{x}"])
             for arm, runs in runs_of.items() for i in runs for x in (CONTROL, arm)}
    return {"epochs": (long["config"]["epochs"], short["config"]["epochs"]), "runs": runs_of, "rows": rows,
            "left_out": left_out, "paths": dict(sorted(paths.items()))}


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
        if ax.get_lines():
            ax.legend(fontsize=6)
    cfg = result["config"]
    fig.suptitle(f"{cfg['dataset']} {cfg['model']}, {cfg['epochs']} epochs: each run a line", fontsize=10)
    fig.tight_layout()
    return fig
