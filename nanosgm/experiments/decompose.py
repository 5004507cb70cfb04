"""Which part of the authors' FGSM moves each number: ``python -m nanosgm.decompose PROTOCOL_DIR``.

For every network a protocol saved (``PROTOCOL_DIR/models/run<i>-<arm>.npz``, recorded in
``PROTOCOL_DIR/protocol.json``, which names the dataset and model): FGSM accuracy at each eps under each
reading of :mod:`nanosgm.attacks.readings` (inference; each factor of the authors' evaluation alone, in
pairs, in threes; the authors' reading with and without the clip; attack batches of 32 / 128 / 512 for the
readings with batch statistics), and the gradient-masking check under each reading (the share of images
whose input gradient is all zero, and whose cross-entropy is saturated beyond Keras's clip). Each
network's dropout draws are seeded with its record's seed (``fgsm_authors_seed``, else the spec's), so on
the protocol's own test images the "inference" and "authors" readings give the record's ``fgsm_pct`` and
``fgsm_authors_pct``; the file says whether they do (``record_check``).

Writes ``PROTOCOL_DIR/decomposition.json`` (atomically, sealed: :mod:`nanosgm.plumbing.seal`) with, per
network, accuracy (%) per reading and eps and the two masking shares (%), and per arm the summary the
terminal table shows: per reading the median over the arm's networks, the median paired difference from
the inference reading on the same network (what the reading's factors do), and, for an arm beside the
control, the median paired difference from the control network of the same run under the same reading
(the arm's gain as that reading measures it).

Every finished network is kept in ``PROTOCOL_DIR/decomposition.partial.json`` (each entry sealed, with the
settings): an interrupted run (Ctrl-C, SIGTERM, SIGHUP) says so, and the same command resumes after the
last finished network; other settings are refused. An existing decomposition.json is replaced only with
``--overwrite``. Nothing locks the folder: a protocol may go on training there meanwhile (networks it
records later are not in this decomposition), but run one decomposition per folder at a time.

A protocol trained a few networks at a time on machines that lose their weights is decomposed the same way:
``--partial-only`` measures the networks saved now into the partial file and stops there (no
decomposition.json); a later run takes, for a network whose weights are gone, the partial file's entry when
it measured the weights the protocol recorded for that network (:func:`~.records.recorded_weights`), and
``--require-all`` refuses, before measuring, while some recorded network has neither (exit status 3). Saved
weights other than those recorded are refused, never measured; each entry names the code that measured it
(``measured_by``).

    python -m nanosgm.decompose results/mnist-cnn --eps 0.1,0.2
    python -m nanosgm.decompose results/mnist-cnn --figure     # decomposition.png from decomposition.json
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import attacks, backend
from ..attacks.readings import CONTROL_READING, READINGS, gradient_groups, parse_reading
from ..methods.arms import CONTROL
from ..methods.base import format_number
from ..plumbing.argparser import Parser
from ..plumbing.errors import NanosgmError
from ..plumbing.seal import RecordEdited, check_seal, seal
from ..plumbing.flags import named, numbers
from .keys import file_stem, split_key
from .network import pct, weights_digest
from .records import authors_draw_seed, recorded_weights

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from tqdm.auto import tqdm

    from ..attacks.conventions import Convention
    from ..data import Dataset
    from ..layers import Sequential
    from ..layers.base import Array

__all__ = ["FORMAT", "OUT_NAME", "FIGURE_NAME", "PARTIAL_NAME", "DEFAULT_EPS", "decompose_network", "summarize",
           "format_tables", "load_decomposition", "read_partial", "measured_recorded", "main"]

PROG = "python -m nanosgm.decompose"
FORMAT = "nanosgm-decomposition/1"
OUT_NAME = "decomposition.json"
FIGURE_NAME = "decomposition.png"
PARTIAL_NAME = "decomposition.partial.json"
DEFAULT_EPS = (0.1, 0.2)
RECORDED = {CONTROL_READING: "fgsm_pct", "authors": "fgsm_authors_pct"}   # reading -> the record's measure


class DecomposeError(NanosgmError, ValueError):
    """A bad folder, file or flag: printed as one line ``error: ...``."""


class NetworksMissing(DecomposeError):
    """``--require-all``: recorded networks with neither saved weights nor an entry; exit status 3, so that a
    script can tell it from any other refusal and refill the runs the line names."""
    code = 3


# ------------------------------------------------------------------------------------------ one network
def decompose_network(model: Sequential, X: Array, y: Array, eps: Iterable[float],
                      readings: Iterable[str | Convention], *, clip: tuple[float, float] | None = (0.0, 1.0),
                      seed: int = 0, bar: tqdm | None = None) -> dict:
    """{reading name: {"fgsm_pct": {repr(eps): %}, "zero_gradient_pct": %, "saturated_pct": %}} for one
    network on X (n, ...), y (n,): :func:`~nanosgm.attacks.readings.fgsm_readings` in percent."""
    got = attacks.fgsm_readings(model, X, y, eps, readings, clip=clip, seed=seed, bar=bar)
    return {name: {"fgsm_pct": {repr(float(e)): pct(c.mean()) for e, c in r["correct"].items()},
                   "zero_gradient_pct": pct(r["zero_gradient"].mean()), "saturated_pct": pct(r["saturated"].mean())}
            for name, r in got.items()}


def _record_check(record: dict, entry: dict, eps: Sequence[float], n_images: int) -> dict | None:
    """{reading: {"recorded": {eps: %}, "agrees": bool}} for the readings the protocol's record measured
    too (inference: fgsm_pct, authors: fgsm_authors_pct), when these are the record's test images."""
    results = record.get("results") or {}
    if record.get("n_test") != n_images:
        return None
    out = {}
    for name, measure in RECORDED.items():
        have = results.get(measure) or {}
        keys = [repr(float(e)) for e in eps if repr(float(e)) in have]
        if name in entry and keys:
            recorded = {k: have[k] for k in keys}
            out[name] = {"recorded": recorded,
                         "agrees": all(entry[name]["fgsm_pct"][k] == v for k, v in recorded.items())}
    return out or None


# -------------------------------------------------------------------------------------------- summary
def _median(values: Sequence[float]) -> float | None:
    return round(float(np.median(values)), 4) if values else None


def summarize(networks: dict, arms: Iterable[str], reading_names: Sequence[str], eps: Sequence[float]) -> dict:
    """{arm: {"networks": n, "pairs": n, "readings": {reading: {"fgsm": {eps: {"median", "minus_inference",
    "minus_control"}}, "zero_gradient_pct", "saturated_pct"}}}}: medians over the arm's networks of the
    accuracy, of the paired difference from the inference reading on the same network, and (arms beside
    the control) of the paired difference from the same run's control network under the same reading.
    ``networks``: {"run<i>/<arm>": entry} as decomposition.json holds them."""
    by_arm: dict[str, dict[int, dict]] = {}
    for key, entry in networks.items():
        run, arm = split_key(key)
        by_arm.setdefault(arm, {})[run] = entry["readings"]
    control = by_arm.get(CONTROL, {})
    out = {}
    for arm in [a for a in arms if a in by_arm]:
        nets = by_arm[arm]
        pairs = sorted(set(nets) & set(control)) if arm != CONTROL else []
        rows = {}
        for name in reading_names:
            cells = {}
            for e in (repr(float(e)) for e in eps):
                acc = [r[name]["fgsm_pct"][e] for r in nets.values()]
                minus_inf = [r[name]["fgsm_pct"][e] - r[CONTROL_READING]["fgsm_pct"][e] for r in nets.values()
                             if CONTROL_READING in r]
                minus_ctl = [nets[i][name]["fgsm_pct"][e] - control[i][name]["fgsm_pct"][e] for i in pairs]
                cells[e] = {"median": _median(acc), "minus_inference": _median(minus_inf),
                            "minus_control": _median(minus_ctl)}
            rows[name] = {"fgsm": cells,
                          "zero_gradient_pct": _median([r[name]["zero_gradient_pct"] for r in nets.values()]),
                          "saturated_pct": _median([r[name]["saturated_pct"] for r in nets.values()])}
        out[arm] = {"networks": len(nets), "pairs": len(pairs), "readings": rows}
    return out


def _signed(v: float | None) -> str:
    return "     -" if v is None else f"{v:+6.2f}"


def format_tables(doc: dict) -> str:
    """One table per arm of a decomposition (the dict decomposition.json holds): per reading and eps the
    median FGSM accuracy (%), its median paired difference from the inference reading ("-inf") and, beside
    the control, from the control network ("-ctl"); then the median masking shares (%)."""
    eps = [repr(float(e)) for e in doc["settings"]["eps"]]
    names = list(doc["settings"]["readings"])
    width = max(len(n) for n in names)
    head = "".join(f" | eps {format_number(float(e)):<5}   acc   -inf   -ctl" for e in eps)
    lines = [f"FGSM accuracy (%) under each reading, {doc['settings']['images']} test images; medians over "
             f"networks; -inf: paired difference from the '{CONTROL_READING}' reading (same network); -ctl: "
             f"paired difference from the control network of the same run (same reading)"]
    for arm, s in doc["summary"].items():
        paired = f", {s['pairs']} pair(s) with the control" if arm != CONTROL else ""
        lines += ["", f"{arm} ({s['networks']} network(s){paired})",
                  f"{'reading':<{width}}{head} | zero grad  saturated"]
        for name in names:
            row = s["readings"][name]
            cells = "".join(f" | {'':9}{c['median']:6.2f} {_signed(c['minus_inference'])} "
                            f"{_signed(c['minus_control'])}" for c in (row["fgsm"][e] for e in eps))
            lines.append(f"{name:<{width}}{cells} | {row['zero_gradient_pct']:8.2f}%  {row['saturated_pct']:8.2f}%")
    return "\n".join(lines)


def load_decomposition(path: str | Path) -> dict:
    """The dict in a decomposition.json, its seal checked (RecordEdited, one line, if it was edited)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:
        raise DecomposeError(f"{path} is not a decomposition.json ({exc})") from None
    body = check_seal(doc, str(path), fix="restore it (e.g. git checkout) or run python -m nanosgm.decompose again")
    if body.get("format") != FORMAT:
        raise DecomposeError(f"{path} is not a {FORMAT} file (format {body.get('format')!r})")
    return body


# ------------------------------------------------------------------------------------------------ CLI
def build_parser(prog: str = PROG) -> Parser:
    p = Parser(prog=prog, description="FGSM accuracy of every network a protocol saved under each reading of the "
               "authors' evaluation taken apart (dropout, batch statistics, clip, Keras's loss, batch size), with "
               "the gradient-masking check; writes PROTOCOL_DIR/decomposition.json and prints a table per arm.")
    p.add_argument("folder", metavar="PROTOCOL_DIR", help="a protocol's folder: protocol.json and "
                   "models/run<i>-<arm>.npz (python -m nanosgm.experiments ... --out PROTOCOL_DIR)")
    p.add_argument("--eps", type=numbers("--eps", above=0), default=",".join(format_number(e) for e in DEFAULT_EPS),
                   help="comma-separated L-inf budgets (default 0.1,0.2)")
    p.add_argument("-n", "--images", type=int, default=None, help="the first N of the protocol's test images "
                   "(default: all it measured, so that the inference and authors readings meet the records)")
    p.add_argument("--readings", default="all", help="comma-separated readings (default all "
                   f"{len(READINGS)}: {', '.join(READINGS)}); '{CONTROL_READING}' is always measured")
    p.add_argument("--data-dir", type=named("--data-dir"), default=None, help="where the dataset files are (else NANOSGM_DATA, ...)")
    p.add_argument("--backend", default=None, choices=["numpy", "cupy"], help="array backend (default numpy)")
    p.add_argument("--overwrite", action="store_true", help=f"replace an earlier {OUT_NAME}")
    p.add_argument("--partial-only", action="store_true", help=f"measure the saved networks into {PARTIAL_NAME} "
                   f"and stop there, writing no {OUT_NAME} (a later run takes the entry of a network whose weights "
                   "are gone where it measured the weights the protocol recorded)")
    p.add_argument("--require-all", action="store_true", help="refuse, before measuring, while a recorded network "
                   f"has neither its weights saved nor its entry in {PARTIAL_NAME} (exit status 3; the line names "
                   "the runs to refill)")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a line per network on stderr)")
    p.add_argument("--figure", action="store_true", help=f"measure nothing: draw PROTOCOL_DIR/{FIGURE_NAME} from "
                   f"the existing {OUT_NAME} (one bar group per reading, per eps; "
                   "nanosgm.experiments.decomposition_figure)")
    return p


def _parse_readings(text: str) -> list:
    """The readings (Conventions) to measure, the inference reading first."""
    names = list(READINGS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    try:
        chosen = [parse_reading(n) for n in names]
    except ValueError as exc:
        raise DecomposeError(f"--readings: {exc}") from None
    out = [READINGS[CONTROL_READING]]
    for r in chosen:
        if r.name not in [o.name for o in out]:
            out.append(r)
    return out


def _check_batches(readings: Iterable[Convention], n: int) -> None:
    """Batch statistics need two images in every attack batch: refuse an image count that leaves one."""
    for r in readings:
        if r.batch_stats and n % r.batch_size == 1:
            raise DecomposeError(f"{n} images leave a last attack batch of one image for reading {r.name!r} "
                                 f"(batches of {r.batch_size}), and batch statistics need two; choose another --images")


def _networks(folder: str, result: dict, kept: dict,
              require_all: bool) -> tuple[list[tuple[str, dict, str]], dict]:
    """([(key, record, model path)] of the recorded networks whose weights are saved, in the protocol's order;
    {key: entry} of the others whose entry in the partial file (``kept``) measured the weights the protocol
    recorded for them). A note on stderr names the rest (a DecomposeError with ``require_all``)."""
    found: list[tuple[str, dict, str]] = []
    from_partial, missing = {}, []
    for key, record in result["networks"].items():
        run, arm = split_key(key)
        path = os.path.join(folder, "models", f"{file_stem(run, arm)}.npz")
        entry = kept.get(key)
        if os.path.isfile(path):
            found.append((key, record, path))
        elif entry is not None and measured_recorded(result, key, entry):
            from_partial[key] = entry
        else:
            missing.append(key)
    if missing and require_all:
        runs = sorted({split_key(k)[0] for k in missing})
        raise NetworksMissing(f"--require-all: {len(missing)} recorded network(s) have neither saved weights nor "
                             f"an entry of their recorded weights in {PARTIAL_NAME}: {', '.join(missing)}; "
                             f"refill them (python -m nanosgm.experiments ... --refill-weights --only-runs "
                             f"{','.join(str(r) for r in runs)}) and run again")
    if not found and not from_partial:       # refused in one line, before any note
        raise DecomposeError(f"{folder}/models holds none of the protocol's networks (the weights are never "
                             "committed): decompose the folder the protocol was run in")
    if missing:
        print(f"note: {len(missing)} recorded network(s) have no saved weights under {folder}/models and are left "
              f"out: {', '.join(missing)}", file=sys.stderr)
    if from_partial:
        print(f"{len(from_partial)} network(s) without saved weights are taken from {PARTIAL_NAME}, which measured "
              f"their recorded weights: {', '.join(from_partial)}", file=sys.stderr)
    return found, from_partial


def _images(config: dict,
            args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None, Dataset]:
    """(X, y, clip, dataset): the protocol's test images on the host (the first --images of them), their
    valid range and the dataset they come from (to build the networks for)."""
    from ..data import DataError
    from . import recipe
    try:
        ds, clip = recipe.load_data(config["dataset"], data_dir=args.data_dir, limit=config.get("limit"),
                                    eval_limit=config.get("eval_limit"), val_size=config.get("val_size"),
                                    progress=False)
    except (DataError, ValueError, FileNotFoundError) as exc:
        raise DecomposeError(f"the protocol's data ({config['dataset']!r}): {exc}") from None
    n = len(ds.X_test) if args.images is None else min(int(args.images), len(ds.X_test))
    return np.asarray(ds.X_test[:n]), np.asarray(ds.y_test[:n]), clip, ds


def _load_model(config: dict, ds: Dataset, path: str) -> Sequential:
    from . import recipe
    backend.seed(0)
    try:
        model = recipe.build_model(config["model"], ds)
        model.load(path)
    except (ValueError, FileNotFoundError) as exc:
        raise DecomposeError(f"{path}: {exc}") from None
    return model


def measured_recorded(result: dict, key: str, entry: dict) -> bool:
    """Whether ``entry`` measured the weights protocol ``result`` recorded for network ``key`` (False where the
    protocol names no digest for them: such an entry is never taken without the weights themselves)."""
    want = recorded_weights(result, key)
    return want is not None and entry.get("weights_sha256") == want and entry.get("run") == split_key(key)[0]


def read_partial(path: str) -> tuple[dict, dict]:
    """(settings, {network key: entry}) of a partial decomposition file, every entry's seal checked; a
    DecomposeError (one line) for a file that is not one or was edited."""
    fix = f"delete {path} to start again"
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved["format"] != FORMAT + "/partial":
            raise KeyError("format")
        settings, stored = saved["settings"], saved["networks"].items()
        if not isinstance(settings, dict):
            raise TypeError("settings")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise DecomposeError(f"{path} is not a partial decomposition ({exc!r}); {fix}") from None
    try:
        return settings, {k: check_seal(v, f"{path} ({k})", fix=fix) for k, v in stored}
    except RecordEdited as exc:
        raise DecomposeError(str(exc)) from None


class _Partial:
    """The finished networks of an unfinished decomposition (``PARTIAL_NAME``): sealed entries and the
    settings they were measured with; rewritten atomically after each network."""

    def __init__(self, path: str, settings: dict) -> None:
        self.path, self.settings, self.entries = path, settings, {}
        if not os.path.exists(path):
            return
        saved, entries = read_partial(path)
        if saved != settings:
            differ = sorted(k for k in set(settings) | set(saved) if settings.get(k) != saved.get(k))
            raise DecomposeError(f"{path} was measured with other settings ({', '.join(differ)}); run the command "
                                 f"that wrote it again, or delete {path} to start again")
        self.entries = entries

    def keep(self, key: str, entry: dict) -> None:
        from ..plumbing.files import write_json_atomic
        self.entries[key] = entry
        write_json_atomic(self.path, {"format": FORMAT + "/partial", "settings": self.settings,
                                      "networks": {k: seal(v) for k, v in self.entries.items()}})

    def remove(self) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)


def _settings(config: dict, readings: Iterable[Convention], eps: list[float], n: int,
              clip: tuple[float, float] | None) -> dict:
    """What every number of a decomposition depends on besides the weights (as JSON reads it back)."""
    s = {"protocol_config": config, "eps": eps, "images": n, "clip": clip, "backend": backend.name(),
         "control_reading": CONTROL_READING,
         "readings": {r.name: {k: v for k, v in dataclasses.asdict(r).items() if k != "name"} for r in readings},
         "seed": "each network's record's fgsm_authors_seed, else its spec's seed"}
    return json.loads(json.dumps(s))


def _units(readings: Iterable[Convention], n: int, eps: Sequence[float]) -> int:
    """The progress bar's (batch, eps) units for one network: per gradient pass, batches x eps."""
    return sum(math.ceil(n / g[0].batch_size) * len(eps) for g in gradient_groups(readings))


def _measure_all(nets: list[tuple[str, dict, str]], result: dict, ds: Dataset, X: np.ndarray, y: np.ndarray,
                 clip: tuple[float, float] | None, eps: list[float], readings: Sequence[Convention], partial: _Partial,
                 progress: bool, measured_by: dict) -> dict:
    """{key: entry} for every saved network, reusing the partial file's entries for the same weights; a
    DecomposeError for saved weights other than those the protocol recorded (never measured, nor kept)."""
    from tqdm.auto import tqdm
    out = {}
    for i, (key, record, path) in enumerate(nets, 1):
        model = _load_model(result["config"], ds, path)
        digest, want = weights_digest(model), recorded_weights(result, key)
        if want is not None and digest != want:
            raise DecomposeError(f"{path} holds weights ({digest[:12]}) other than those the protocol recorded for "
                                 f"{key} ({want[:12]}); delete it and train them again (python -m nanosgm.experiments "
                                 f"... --refill-weights --only-runs {split_key(key)[0]})")
        kept = partial.entries.get(key)
        if kept is not None and kept["weights_sha256"] == digest:
            out[key] = kept
            continue
        run, arm = split_key(key)
        t0, seed = time.perf_counter(), authors_draw_seed(record)
        with tqdm(total=_units(readings, len(X), eps), desc=key, unit="batch x eps", leave=False,
                  disable=None if progress else True) as bar:
            got = decompose_network(model, X, y, eps, readings, clip=clip, seed=seed, bar=bar)
        entry = {"run": run, "arm": arm, "model": os.path.relpath(path, os.path.dirname(os.path.dirname(path))),
                 "weights_sha256": digest, "seed": seed, "readings": got,
                 "record_check": _record_check(record, got, eps, len(X)), "measured_by": measured_by}
        partial.keep(key, entry)
        out[key] = entry
        print(f"{key}: {len(readings)} readings in {time.perf_counter() - t0:.0f}s ({i}/{len(nets)})", file=sys.stderr)
        for name, check in (entry["record_check"] or {}).items():
            if not check["agrees"]:
                print(f"note: {key}: the {name!r} reading differs from the record's {RECORDED[name]} "
                      f"{check['recorded']} (another backend or BLAS thread count?)", file=sys.stderr)
    return out


def _note_mixed_code(networks: dict) -> None:
    """A note on stderr when the entries were measured by more than one code commit (each entry names its own)."""
    commits = sorted({str((e.get("measured_by") or {}).get("git_commit")) for e in networks.values()})
    if len(commits) > 1:
        print(f"note: the entries were measured by {len(commits)} code commits ({', '.join(commits)}); each "
              f"entry's measured_by names its own", file=sys.stderr)


def _draw(folder: str) -> int:
    """``--figure``: PROTOCOL_DIR/decomposition.png from the existing decomposition.json (nothing measured)."""
    from .decomposition_figure import decomposition_figure
    path, out_path = os.path.join(folder, OUT_NAME), os.path.join(folder, FIGURE_NAME)
    if not os.path.isfile(path):
        raise DecomposeError(f"{path} does not exist; run the decomposition first: {PROG} {folder}")
    decomposition_figure(load_decomposition(path)).savefig(out_path, dpi=90, bbox_inches="tight")
    print(f"wrote {out_path}")
    return 0


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from ..plumbing.cli import CliError, interruption, interruption_status
    from . import recipe
    from .protocol import load_protocol
    if args.figure:
        return _draw(args.folder)
    started = recipe.provenance("nanosgm.decompose", argv)      # the code in use: read before measuring
    eps, readings = list(args.eps), _parse_readings(args.readings)     # --eps: checked where parsed
    if args.images is not None and args.images < 1:
        raise DecomposeError(f"--images must be >= 1, got {args.images}")
    folder = args.folder
    out_path = os.path.join(folder, OUT_NAME)
    if not os.path.isfile(os.path.join(folder, "protocol.json")):
        what = ("is empty" if not folder.strip() else "is not a folder" if not os.path.isdir(folder)
                else "holds no protocol.json")
        raise DecomposeError(f"{folder!r} {what}; give a protocol's folder (python -m nanosgm.experiments ... "
                             "--out FOLDER)")
    if os.path.exists(out_path) and args.partial_only:
        raise DecomposeError(f"{out_path} already exists: the decomposition is finished, --partial-only has nothing "
                             f"to add (--overwrite without --partial-only measures it again)")
    if os.path.exists(out_path) and not args.overwrite:
        raise DecomposeError(f"{out_path} already exists; use --overwrite to replace it")
    if args.backend:
        backend.use(args.backend)              # a BackendError is a NanosgmError: run_cli prints it in one line
    result = load_protocol(folder)
    X, y, clip, ds = _images(result["config"], args)
    _check_batches(readings, len(X))
    settings = _settings(result["config"], readings, eps, len(X), clip)
    partial = _Partial(os.path.join(folder, PARTIAL_NAME), settings)
    nets, from_partial = _networks(folder, result, partial.entries, args.require_all)
    if partial.entries:
        print(f"resuming from {partial.path}: {len(partial.entries)} finished network(s) are not measured again",
              file=sys.stderr)
    try:
        measured = _measure_all(nets, result, ds, X, y, clip, eps, readings, partial, not args.no_progress,
                                {"git_commit": started["git_commit"], "versions": started["versions"]})
    except KeyboardInterrupt:
        n = len(partial.entries)
        kept = (f"the {n} finished network(s) are kept in {partial.path}; run the same command to resume after them"
                if n else "no network had finished, so nothing is kept; run the same command to start again")
        raise CliError(f"{interruption()}: {kept}", code=interruption_status()) from None
    if args.partial_only:
        print(f"{len(partial.entries)} network(s) are in {partial.path} ({len(result['networks'])} recorded); "
              f"no {OUT_NAME} written (--partial-only): run without it to write one")
        return 0
    networks = {k: {**measured, **from_partial}[k] for k in result["networks"] if k in measured or k in from_partial}
    _note_mixed_code(networks)
    doc = {"format": FORMAT, **started, "finished": recipe.now(), "settings": settings, "arms": result["arms"],
           "networks": networks, "summary": summarize(networks, result["arms"], [r.name for r in readings], eps)}
    from ..plumbing.files import write_json_atomic
    write_json_atomic(out_path, seal(doc))
    partial.remove()
    print(format_tables(doc))
    print(f"wrote {out_path}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """``python -m nanosgm.decompose`` (``prog`` names the command in its help and messages); the exit status."""
    from ..plumbing.cli import run_cli
    return run_cli(lambda a: _run(build_parser(prog).parse_args(a), a), argv)
