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
spec, the BLAS thread count and the CPU kernels alone. Files under ``out`` (all written atomically):
    protocol.json              config, BLAS threads per network, provenance, one sealed record per finished
                               network ("run<i>/<arm>", :mod:`.keys`), rewritten as each network finishes
    rejected/run<i>-<arm>.json a finished network's record that did not fit the protocol (see below)
    models/run<i>-<arm>.npz    every network's final weights (for the robustness audit; never commit)
    ckpt/run<i>-<arm>.npz      the end-of-epoch checkpoint of a network in progress (removed once recorded)
    snapshots-<arm>.npz        X_t - X_0 of the first training images after each of the first nine epochs
                               of run 0's SGM networks (Figures 5-6)
Calling again with the same ``out`` and configuration skips the recorded networks and resumes the
others from their last finished epoch; more runs or more arms extend a protocol; a different
configuration is an error. So is a different BLAS thread count per network (``threads``, default
cores // workers): float32 sums, and so every number of a record, depend on it. protocol.json records
it (``blas_threads``) and each record says the count it was made with (``versions.blas_threads``); a
protocol written before that is resumed and records the count from then on, with a note that its
earlier records' count is not recorded (each session's command line is in ``sessions``).

Each record is sealed (:mod:`nanosgm.plumbing.seal`) when it is filed, and every record is checked when
protocol.json is read (:mod:`.records`: the seal, the spec against the config and the key, the
accuracies, the lock-step); records written before seals are accepted and counted in a note. Records of
format ``nanosgm-network/1`` (whose spec has input_lr, per_sample, published and adversarial instead of
``method``) are kept and read as they are. A new record that does not fit the protocol (its run's
networks started from other weights: the code initialises differently) is refused and kept in
``rejected/run<i>-<arm>.json``, outside protocol.json.

    python -m nanosgm.experiments mnist --runs 5 --epochs 10 --arms sgm:0.2,sgm:0.2:per-sample,published
"""
from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import attacks
from ..methods.arms import CONTROL, parse_arm, parse_arms, slug
from ..methods.base import format_number
from ..plumbing.checkpoint import ConfigMismatch
from ..plumbing.errors import NanosgmError
from ..plumbing.files import write_json_atomic
from ..plumbing.npz import load_npz, save_npz_atomic
from ..plumbing.seal import seal
from . import recipe
from .keys import file_stem, network_key, split_key
from .network import NetworkSpec
from .records import (FIX, LockstepBroken, ProtocolError, check_lockstep, check_protocol, check_record,
                      record_differences, refill_entry, seal_all)
from .stats import summarize

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["PAPER_EPS", "PROTOCOL_FORMAT", "CONTROL", "arm_spec", "parse_arm", "parse_arms", "selected_arms", "ConfigMismatch",
           "run_protocol", "load_protocol", "network_key", "protocol_config", "expected_spec", "check_lockstep",
           "ProtocolError", "LockstepBroken"]

PAPER_EPS = attacks.PAPER_EPS
PROTOCOL_FORMAT = "nanosgm-protocol/2"
SNAPSHOT_IMAGES = 8                     # Figures 5-6: the first 8 training images


# -------------------------------------------------------------------------------------------- arms
def _snapshot_rows(label: str, run: int) -> int:
    """Run 0 of a method that moves its inputs keeps the Figures 5-6 snapshots."""
    return SNAPSHOT_IMAGES if (run == 0 and parse_arm(label).moves_inputs) else 0


def arm_spec(base: NetworkSpec, label: str, seed: int, run: int) -> NetworkSpec:
    """The NetworkSpec of arm ``label``'s network in run ``run`` (seed ``seed``)."""
    return base.with_(seed=seed, method=label, snapshot_rows=_snapshot_rows(label, run))


def expected_spec(config: dict, run: int, label: str) -> dict:
    """The spec (as a record stores it: :meth:`NetworkSpec.identity`) that a protocol with ``config``
    trains for arm ``label`` in run ``run``: :func:`arm_spec` of its base spec, in the config's terms."""
    shared = {k: v for k, v in config.items() if k != "seed0"}
    return dict(shared, seed=config["seed0"] + run, method=label, snapshot_rows=_snapshot_rows(label, run))


# ------------------------------------------------------------------------------------------ files
def _note(line: str) -> None:
    """A note for the user (stderr, one line): what is accepted but must not pass silently."""
    print(f"note: {line}", file=sys.stderr, flush=True)


def load_protocol(out: str | Path) -> dict:
    """The result dict stored in ``<out>/protocol.json`` (with each arm's Figures 5-6 snapshots, if saved),
    after checking it (:mod:`.records`); a file that fails a check is refused with one line
    (:class:`ProtocolError`, :class:`~nanosgm.plumbing.seal.RecordEdited`, :class:`LockstepBroken`).
    Records without a seal (written before seals) are counted in a note on stderr."""
    path = Path(out) / "protocol.json"
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{path} is not UTF-8 text (byte {exc.start}); restore it (e.g. git checkout)") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ProtocolError(f"{path} cannot be read ({exc.strerror}); it must be the protocol's JSON file: move it "
                            f"away, or give another --out") from None
    except (ValueError, RecursionError) as exc:      # bad JSON, or a number Python will not read (4300+ digits)
        raise ProtocolError(f"{path} is not valid JSON ({exc}); restore it (e.g. git checkout)") from None
    if not isinstance(result, dict) or result.get("format") != PROTOCOL_FORMAT:
        raise ProtocolError(f"{path} is not a {PROTOCOL_FORMAT} file (format "
                            f"{result.get('format') if isinstance(result, dict) else None!r})")
    unsealed = check_protocol(result, str(path), lambda run, label: expected_spec(result["config"], run, label))
    if unsealed:
        _note(f"{path}: {unsealed} of its {len(result['networks'])} network record(s) carry no content digest "
              f"(written before records were sealed): a hand edit of those would not be detected; "
              f"python tools/seal_results.py seals a committed file")
    result["snapshots"] = _load_snapshots(out, result["arms"])
    return result


def _load_snapshots(out: str | Path, arms: Iterable[str]) -> dict:
    """{arm: Figures 5-6 snapshots} of the arms whose snapshots file is in ``out``."""
    snapshots = {}
    for arm in arms:
        p = Path(out) / f"snapshots-{slug(arm)}.npz"
        if p.exists():
            a = load_npz(p)
            snapshots[arm] = {"epochs": a["epochs"].tolist(), "X0": a["X0"], "deltas": list(a["deltas"]),
                              "indices": list(range(len(a["X0"])))}
    return snapshots


def _save_snapshots(out: str | Path, arm_label: str, s: dict) -> None:
    deltas = np.stack(s["deltas"]) if len(s["deltas"]) else np.zeros((0,) + np.shape(s["X0"]))
    save_npz_atomic(os.path.join(out, f"snapshots-{slug(arm_label)}.npz"),
                    {"epochs": np.asarray(s["epochs"], dtype=np.int64), "X0": np.asarray(s["X0"]), "deltas": deltas})


def _json_result(result: dict) -> dict:
    """What protocol.json holds of ``result``: every record sealed (those of a protocol written before seals
    too, checked when it was read: :func:`~.records.seal_all`)."""
    doc = {k: v for k, v in result.items() if k not in ("snapshots", "summary")}
    return {**doc, "networks": seal_all(doc["networks"])} if isinstance(doc.get("networks"), dict) else doc


def protocol_config(base: NetworkSpec, seed0: int) -> dict:
    """What makes two protocols the same experiment: the base spec (less what an arm or a run sets)."""
    cfg = base.identity()
    for k in ("seed", "method", "snapshot_rows"):
        cfg.pop(k)
    cfg["seed0"] = int(seed0)
    return cfg


def _open(out: str | Path | None, config: dict, threads: int, why: str) -> dict:
    """The saved protocol in ``out`` (checked against ``config`` and the BLAS thread count ``threads``,
    which ``why`` explains), or a new one."""
    result = {"format": PROTOCOL_FORMAT, "config": config, "blas_threads": threads, "arms": [CONTROL],
              "networks": {}, "sessions": []}
    if out is None:
        return result
    path = Path(out) / "protocol.json"
    if not path.exists():
        return result
    saved = load_protocol(out)
    if saved["config"] != config:
        diff = {k: (saved["config"].get(k), config.get(k)) for k in set(saved["config"]) | set(config)
                if saved["config"].get(k) != config.get(k)}
        raise ConfigMismatch(f"{path} was written with a different configuration "
                             f"(saved vs now: {diff}); use another --out folder")
    before = saved.get("blas_threads")
    if before is None and saved["networks"]:
        _note(f"{path}: the BLAS thread count of its {len(saved['networks'])} earlier network record(s) was not "
              f"recorded (each session's command line is in its \"sessions\"); from now on it records {threads}")
    elif before is not None and before != threads:
        raise ConfigMismatch(f"{path} was made with {before} BLAS thread(s) per network and this run would use "
                             f"{threads} ({why}): every number of a record depends on it; pass --threads {before} "
                             f"(with any --workers), or use another --out folder")
    result.update(saved)
    result["blas_threads"] = threads
    return result


# ---------------------------------------------------------------------------------------- protocol
def run_protocol(base: NetworkSpec, *, runs: int = 5, seed0: int = 0, arms: str | list[str] = "sgm:0.2",
                 out: str | Path | None = None, workers: int = 1, scheduler: str | Client | None = None,
                 threads: int | None = None, progress: bool = True, bars: bool = True,
                 argv: Sequence[str] = (), refill: bool = False, only_runs: Sequence[int] | None = None,
                 only_arms: Sequence[str] | None = None) -> dict:
    """Run the protocol (module docstring) and return the result dict.

    ``base``: the NetworkSpec every network shares (its seed, method and snapshot_rows are set per network);
    ``arms``: a string for :func:`parse_arms` or a list of arm labels; ``out``: the protocol folder
    (None: nothing is written or resumed, and the networks' weights are not kept). ``progress``: one line
    per finished network (and per epoch); ``bars``: the overall progress bar. Returns
    ``{"format", "config", "blas_threads", "arms", "networks": {"run<i>/<arm>": record}, "sessions", "snapshots",
    "summary"}``; ``threads``: BLAS threads per network (default cores // workers), which every record's
    numbers depend on. ``scheduler``: a Dask address (connected before anything is written, so an unreachable
    one leaves ``out`` as it was) or a connected client. ``refill``: train nothing new; train again the
    recorded networks (of these runs and arms) whose weights are missing from ``out``/models and keep their
    weights when the new record measures exactly what the stored one did (:func:`_refilled`). ``only_runs``:
    train (or refill) only these runs of ``range(runs)`` (None: all), e.g. one seed whose networks an audit needs;
    ``only_arms``: only these of the arms (control included; None: all), e.g. the controls another tool needs.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if only_runs is not None and (not only_runs or any(not 0 <= i < runs for i in only_runs)):
        raise ValueError(f"only_runs must name runs 0-{runs - 1} (of runs={runs}), got {list(only_runs)}")
    if only_arms is not None:
        only_arms = selected_arms(only_arms, parse_arms(arms if isinstance(arms, str) else ",".join(arms)))
    if refill and out is None:
        raise ValueError("refill needs the protocol folder (out)")
    if not isinstance(scheduler, str):
        return _protocol(base, runs, seed0, arms, out, workers, scheduler, threads, progress, bars, argv, refill,
                         only_runs, only_arms)
    from .parallel import connect_scheduler
    client = connect_scheduler(scheduler)
    try:
        return _protocol(base, runs, seed0, arms, out, workers, client, threads, progress, bars, argv, refill,
                         only_runs, only_arms)
    finally:
        client.close()


def selected_arms(names: Iterable[str], arm_list: Sequence[str]) -> list[str]:
    """``only_arms`` as canonical arm labels (as ``--arms`` spells them; blank names skipped), each one of
    ``arm_list`` (the protocol's arms, control first). ValueError if none is named or one is not an arm of it.

    >>> selected_arms([" control", "SGM:0.20"], ["control", "sgm:0.2"])
    ['control', 'sgm:0.2']
    """
    named = [parse_arm(a).label for a in names if a.strip()]
    if not named:
        raise ValueError("only_arms must name at least one arm")
    foreign = [a for a in named if a not in arm_list]
    if foreign:
        raise ValueError(f"only_arms names {', '.join(foreign)}, not among the arms {', '.join(arm_list)}")
    return named


def _protocol(base: NetworkSpec, runs: int, seed0: int, arms: str | list[str], out: str | Path | None, workers: int,
              scheduler: Client | None, threads: int | None, progress: bool, bars: bool,
              argv: Sequence[str], refill: bool = False, only_runs: Sequence[int] | None = None,
              only_arms: Sequence[str] | None = None) -> dict:
    """:func:`run_protocol` once its scheduler (if any) is connected."""
    from .parallel import default_threads
    arm_list = parse_arms(arms if isinstance(arms, str) else ",".join(arms))
    blas = int(threads or default_threads(workers))
    why = (f"--threads {blas}" if threads else
           f"--threads not given: cores // --workers = {os.cpu_count()} // {workers}")
    result = _open(out, protocol_config(base, seed0), blas, why)
    unknown = [a for a in arm_list if a not in result["arms"]]
    if refill and unknown:
        raise ProtocolError(f"a refill trains nothing new, and {out}/protocol.json has no arm {', '.join(unknown)} "
                            f"(its arms: {', '.join(result['arms'])}); name only those")
    for a in arm_list:
        if a not in result["arms"]:
            result["arms"].append(a)
    tasks: list[tuple[str, NetworkSpec, str | None, str | None]]
    if refill:       # weights are staged (.tmp-*, removed at start) until the new record is compared
        tasks = [(k, _refill_spec(spec, result["networks"][k]), ck, _staged(mp))
                 for k, spec, ck, mp in _tasks(base, arm_list, runs, seed0, out, {}, only_runs, only_arms)
                 if k in result["networks"] and mp is not None and not os.path.exists(mp)]   # mp: refill has an out
        if progress:
            print(f"{len(tasks)} recorded network(s) of these runs and arms to train again for their weights",
                  file=sys.stderr)
    else:
        tasks = _tasks(base, arm_list, runs, seed0, out, result["networks"], only_runs, only_arms)
    if tasks:        # a session that trains nothing leaves no entry
        result["sessions"].append(dict(recipe.provenance("nanosgm.experiments", argv), runs=runs, arms=arm_list,
                                       workers=workers, blas_threads=blas, **({"refill": True} if refill else {}),
                                       **({"only_runs": sorted(set(only_runs))} if only_runs is not None else {}),
                                       **({"only_arms": [a for a in arm_list if a in only_arms]}
                                          if only_arms is not None else {})))
    if out is not None:
        for sub in ("models", "ckpt"):
            os.makedirs(os.path.join(out, sub), exist_ok=True)
            for tmp in glob.glob(os.path.join(out, sub, ".tmp-*")):     # saves cut short by a kill
                os.remove(tmp)
        write_json_atomic(os.path.join(out, "protocol.json"), _json_result(result))
    _run(result, tasks, out, workers=workers, scheduler=scheduler, threads=blas, progress=progress, bars=bars,
         keep=_refilled if refill else _record)
    if out is not None:
        result["snapshots"] = _load_snapshots(out, result["arms"])
    result["summary"] = summarize(result)
    return result


def _tasks(base: NetworkSpec, arm_list: list[str], runs: int, seed0: int, out: str | Path | None,
           done: dict, only_runs: Sequence[int] | None = None,
           only_arms: Sequence[str] | None = None) -> list[tuple[str, NetworkSpec, str | None, str | None]]:
    """(key, spec, checkpoint path, model path) of every network not ``done`` yet, run by run (``only_runs``,
    ``only_arms``: of these runs, these arms only)."""
    tasks = []
    for i in (sorted(set(only_runs)) if only_runs is not None else range(runs)):
        for a in arm_list:
            key = network_key(i, a)
            if key in done or (only_arms is not None and a not in only_arms):
                continue
            ck = os.path.join(out, "ckpt", f"{file_stem(i, a)}.npz") if out else None
            mp = os.path.join(out, "models", f"{file_stem(i, a)}.npz") if out else None
            tasks.append((key, arm_spec(base, a, seed0 + i, i), ck, mp))
    return tasks


def _run(result: dict, tasks: list[tuple[str, NetworkSpec, str | None, str | None]], out: str | Path | None, *,
         workers: int, scheduler: Client | None, threads: int, progress: bool, bars: bool,
         keep: Callable[[dict, str, dict, str | Path | None], None] | None = None) -> None:
    """Run ``tasks``, handing each network to ``keep`` as it finishes (default :func:`_record`: into ``result``
    and protocol.json)."""
    keep = keep or _record
    from tqdm.auto import tqdm
    from .parallel import run_tasks
    say = tqdm.write if progress else (lambda line: None)
    n_done = len(result["networks"])
    if progress and n_done and keep is _record:
        say(f"{n_done} network(s) already in {out}/protocol.json: skipped")
    bar = tqdm(total=len(tasks), desc="networks", unit="net", disable=None if bars else True, dynamic_ncols=True)
    try:
        for key, record in run_tasks(tasks, workers=workers, scheduler=scheduler, threads=threads, verbose=progress):
            keep(result, key, record, out)
            bar.update(1)
            say(_network_line(key, record))
    finally:
        bar.close()


def _record(result: dict, key: str, record: dict, out: str | Path | None) -> None:
    """Seal a finished network's record, check it against the protocol (:func:`.records.check_record`, the
    lock-step of its run), file it (run by run, arms in protocol order), save protocol.json and the
    snapshots, and drop the network's checkpoint. A record that fails a check is kept in
    ``<out>/rejected/`` instead, and the check's error is raised."""
    snaps = record.pop("snapshots", None)
    record = seal(record)
    run, arm = split_key(key)
    _check_new(result, key, record, out)
    result["networks"][key] = record
    result["networks"] = dict(sorted(result["networks"].items(), key=lambda kv: (split_key(kv[0])[0],
                                     result["arms"].index(split_key(kv[0])[1]))))
    if out is None:
        return
    if snaps is not None:
        _save_snapshots(out, arm, snaps)
    write_json_atomic(os.path.join(out, "protocol.json"), _json_result(result))
    _drop_checkpoint(out, run, arm)


def _drop_checkpoint(out: str | Path, run: int, arm: str) -> None:
    """Remove the epoch checkpoint of a finished network (if any)."""
    ck = os.path.join(out, "ckpt", f"{file_stem(run, arm)}.npz")
    if os.path.exists(ck):
        os.remove(ck)


def _staged(model_path: str) -> str:
    """Where a refilled network's weights wait until its record is compared (a ``.tmp-*`` name: removed
    when a protocol starts, so weights cut short by a kill are never taken for checked ones)."""
    return os.path.join(os.path.dirname(model_path), f".tmp-refill-{os.path.basename(model_path)}")


def _refill_spec(spec: NetworkSpec, stored: dict) -> NetworkSpec:
    """What a refill trains for the recorded network ``stored``: ``spec`` itself, or, when the record names
    its weights' digests, ``spec`` without the evaluation (the digests then say whether the weights are the
    recorded ones, and measuring them again would only repeat the record)."""
    return spec.with_(evaluate=False) if "weights_sha256" in stored else spec


def _refilled(result: dict, key: str, record: dict, out: str | Path | None) -> None:
    """A recorded network trained again for its weights (``refill``): keep them (and the stored record) when
    the new record measures exactly what the stored one did (:func:`.records.record_differences`: the history
    and the weights' digests, or, for a stored record without digests, the history and every accuracy), and
    name their digest, bound to the record's, in this session's ``"refilled"`` (:func:`.records.refill_entry`);
    otherwise move the weights and the new record to ``<out>/rejected/`` and refuse, since the weights would
    not be those of the recorded network."""
    run, arm = split_key(key)
    name = file_stem(run, arm)
    _drop_checkpoint(str(out), run, arm)
    differ = record_differences(result["networks"][key], record, measured=record["spec"].get("evaluate", True))
    model = os.path.join(str(out), "models", f"{name}.npz")
    staged = _staged(model)
    if not differ:
        # the session's trace of the check, written before the weights are put in place: a kill between the
        # two leaves the weights missing (refilled again), never weights without their digest
        entry = refill_entry(result["networks"][key], record["weights_sha256"])
        result["sessions"][-1].setdefault("refilled", {})[key] = entry
        write_json_atomic(os.path.join(str(out), "protocol.json"), _json_result(result))
        os.replace(staged, model)
        return
    rejected = os.path.join(str(out), "rejected")
    os.makedirs(rejected, exist_ok=True)
    if os.path.exists(staged):
        os.replace(staged, os.path.join(rejected, f"{name}.npz"))
    record.pop("snapshots", None)
    write_json_atomic(os.path.join(rejected, f"{name}.json"), record)
    raise ProtocolError(f"{key} trained again differs from its record in {', '.join(differ)}: its weights would not "
                        f"be the recorded network's; the new record and weights are in {rejected}; refill with the "
                        f"code, BLAS thread count and CPU kernels of the sessions that trained it")


def _check_new(result: dict, key: str, record: dict, out: str | Path | None) -> None:
    """Refuse a new record that does not fit the protocol, keeping it in ``<out>/rejected/``."""
    run, arm = split_key(key)
    where = os.path.join(out, "protocol.json") if out is not None else "the protocol"
    try:
        check_record(result, key, record, where, lambda r, a: expected_spec(result["config"], r, a))
        check_lockstep({"networks": {**result["networks"], key: record}}, run)
    except NanosgmError as exc:
        said = str(exc).removesuffix(f"; {FIX}")        # the record is new: restoring the file is no remedy
        if isinstance(exc, LockstepBroken):
            advice = (f"; the code now in use initialises {arm} differently from the code that trained the "
                      f"recorded networks (their commits are in the \"sessions\" of protocol.json): run that code, "
                      f"or use another --out folder")
        else:
            advice = "; this run made the record, so nanosgm or the BLAS did not do what it should: please report it"
        kept = ""
        if out is not None:
            path = os.path.join(out, "rejected", f"{file_stem(run, arm)}.json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_json_atomic(path, record)
            kept = f"; the new record of {key} is kept in {path}, not in protocol.json"
        raise type(exc)(f"{said}{advice}{kept}") from None


def _network_line(key: str, r: dict) -> str:
    res = r["results"]
    parts = [f"{key} done ({r['train_seconds']:.0f}s training, {r['eval_seconds']:.0f}s evaluation)"]
    if not res:                    # trained for its weights alone (a refill)
        return f"{parts[0]} | weights {r['weights_sha256'][:12]}"
    parts.append(f"clean {res['clean_pct']:.2f}%")
    parts += [f"FGSM {format_number(float(e))}: {a:.2f}%" for e, a in res["fgsm_pct"].items()]
    parts += [f"PGD {format_number(float(e))}: {a:.2f}%" for e, a in res.get("pgd_pct", {}).items()]
    return " | ".join(parts)
