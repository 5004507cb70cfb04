"""The paper's protocol (Sections 5-6): lock-step runs of the control and of each arm, recorded as they finish.

For run i = 0 .. runs-1, with seed = seed0 + i, one network per ARM is trained, all lock-step with the
CONTROL network of that seed (same initial weights, batches, masks and augmentation: see
:mod:`nanosgm.methods.loop`); the only difference between them is the training method, named by its
label in the arm grammar (:mod:`nanosgm.methods.arms`: control, sgm:L, sgm:L:per-sample, published,
fgsm-at:E, fgsm-rs:E, pgd-at:E:K).

Each network (the weights of its best validation epoch) is measured by :func:`nanosgm.experiments.network.measure`:
clean accuracy (Table 4), FGSM accuracy at every eps (Table 5, Eq. 20), and optionally PGD on the first N
test images. The medians and Wilcoxon tests over the runs are in :mod:`.stats`, the tables in
:mod:`.tables`, the figures in :mod:`.figures`.

Every network is one task (:func:`nanosgm.experiments.network.train_network` on a NetworkSpec), run in this process,
in ``workers`` local processes or on a Dask cluster (:mod:`nanosgm.experiments.parallel`); its record depends on its
spec alone. Files under ``out`` (all written atomically):
    protocol.json              config, provenance, one record per finished network ("run<i>/<arm>",
                               :mod:`.keys`), rewritten as each network finishes
    models/run<i>-<arm>.npz    every network's final weights (for the robustness audit; never commit)
    ckpt/run<i>-<arm>.npz      the end-of-epoch checkpoint of a network in progress (removed once recorded)
    snapshots-<arm>.npz        X_t - X_0 of the first training images after each of the first nine epochs
                               of run 0's SGM networks (Figures 5-6)
Calling again with the same ``out`` and configuration skips the recorded networks and resumes the
others from their last finished epoch; more runs or more arms extend a protocol; a different
configuration is an error. Nothing here reads a record's spec, so records of format ``nanosgm-network/1``
(whose spec has input_lr, per_sample, published and adversarial instead of ``method``) are kept and read
as they are.

    python -m nanosgm.experiments mnist --runs 5 --epochs 10 --arms sgm:0.2,sgm:0.2:per-sample,published
"""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np

from .. import attacks
from ..methods.arms import CONTROL, parse_arm, parse_arms, slug
from ..plumbing.checkpoint import ConfigMismatch
from ..plumbing.files import write_json_atomic
from ..plumbing.npz import load_npz, save_npz_atomic
from . import recipe
from .keys import network_key, split_key
from .network import NetworkSpec
from .stats import summarize

__all__ = ["PAPER_EPS", "PROTOCOL_FORMAT", "CONTROL", "arm_spec", "parse_arm", "parse_arms", "ConfigMismatch",
           "run_protocol", "load_protocol", "network_key", "protocol_config", "check_lockstep"]

PAPER_EPS = attacks.PAPER_EPS
PROTOCOL_FORMAT = "nanosgm-protocol/2"
SNAPSHOT_IMAGES = 8                     # Figures 5-6: the first 8 training images


# -------------------------------------------------------------------------------------------- arms
def arm_spec(base: NetworkSpec, label: str, seed: int, run: int) -> NetworkSpec:
    """The NetworkSpec of arm ``label``'s network in run ``run`` (seed ``seed``); run 0 of a method that
    moves its inputs keeps the Figures 5-6 snapshots."""
    moves = parse_arm(label).moves_inputs
    return base.with_(seed=seed, method=label, snapshot_rows=SNAPSHOT_IMAGES if (run == 0 and moves) else 0)


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

    ``base``: the NetworkSpec every network shares (its seed, method and snapshot_rows are set per network);
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
    """(key, spec, checkpoint path, model path) of every network not ``done`` yet, run by run."""
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
    """File a finished network's record (run by run, arms in protocol order), check the lock-step, save
    protocol.json and the snapshots, and drop the network's checkpoint."""
    snaps = record.pop("snapshots", None)
    run, arm = split_key(key)
    result["networks"][key] = record
    result["networks"] = dict(sorted(result["networks"].items(), key=lambda kv: (split_key(kv[0])[0],
                                     result["arms"].index(split_key(kv[0])[1]))))
    check_lockstep(result, run)
    if out is None:
        return
    if snaps is not None:
        _save_snapshots(out, arm, snaps)
    write_json_atomic(os.path.join(out, "protocol.json"), _json_result(result))
    ck = os.path.join(out, "ckpt", f"run{run}-{slug(arm)}.npz")
    if os.path.exists(ck):
        os.remove(ck)


def check_lockstep(result, run) -> None:
    """Every network of run ``run`` must have started from the control's initial weights."""
    digests = {k: r["init_sha256"] for k, r in result["networks"].items() if split_key(k)[0] == run}
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
