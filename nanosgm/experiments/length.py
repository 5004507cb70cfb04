"""Run length: a protocol trained at the paper's length beside a shorter one of the same seeds (issue 27, part 1).

    same_seeds(long, short, arm)       the runs both protocol results hold for the control and ``arm``, each network
                                       started from the same weights in both (equal ``init_sha256``)
    length_claims(long, short)         the paper's claims (:func:`.verdicts.claims`) judged on those runs at each
                                       length by the same rules, side by side, and whether the verdict changed
    shared_epochs(a, b)                how many leading epochs two records of one network agree on

The drift and the validation FGSM watch per epoch are drawn by :func:`.figures.watch_figure`.

SGM's input step is not on the learning-rate schedule, so a longer run moves its stored images further. The two
protocols must differ in their number of epochs only (and so in the schedule the paper's steps give each length):
every other setting that shapes training or measurement, and the BLAS threads, are checked equal. Each SGM arm's
claims are judged with the rules of :mod:`.verdicts` on the runs where both protocols hold it and the control
from the same initial weights, with the rules' least number of pairs lowered to that number but never below
:data:`MIN_LENGTH_PAIRS`; both lengths are judged on the same runs. Same initial weights do not make the two
trainings one path: they part at the first epoch whose learning rate differs.
"""
from __future__ import annotations

from ..methods.arms import CONTROL
from .keys import network_key, split_key
from .stats import paired, summarize
from .verdicts import MIN_PAIRS, claims, is_sgm_arm

__all__ = ["same_seeds", "restricted", "length_claims", "check_comparable", "shared_epochs", "PATH_KEYS",
           "MIN_LENGTH_PAIRS", "SAME_SETTINGS"]

#: the fewest pairs a verdict here is given on (the rules' own least, MIN_PAIRS, is lowered to the runs shared)
MIN_LENGTH_PAIRS = 3
#: the settings two protocols compared by run length must share (config keys; and the top-level blas_threads)
SAME_SETTINGS = ("dataset", "model", "augment", "optimizer", "batch_size", "lr", "constant_lr", "limit",
                 "eval_limit", "val_size", "eps", "backend", "seed0")


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
    runs = [i for i in paired(long, arm) if i in paired(short, arm)]
    for i in runs:
        for x in (CONTROL, arm):
            key = network_key(i, x)
            one, two = long["networks"][key].get("init_sha256"), short["networks"][key].get("init_sha256")
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
    keys = {network_key(i, x) for arm, runs in runs_of.items() for i in runs for x in (CONTROL, arm)}
    paths = {k: shared_epochs(long["networks"][k], short["networks"][k]) for k in keys}
    return {"epochs": (long["config"]["epochs"], short["config"]["epochs"]), "runs": runs_of, "rows": rows,
            "left_out": left_out, "paths": dict(sorted(paths.items()))}
