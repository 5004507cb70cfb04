"""``nanosgm plot RUN/results.json [--out FILE]``: the learning curves of one run of ``nanosgm train``.

    load_run(path)        the record in a run's results.json, checked: CliError (one line) for a file that
                          is not one, RecordEdited for a sealed record edited since it was written
    run_curves(record)    a matplotlib Figure of what the record's history holds, per epoch: the training
                          loss; the validation and test error (%), the epoch whose weights were kept marked;
                          and, for a method that moves the stored inputs (SGM), max and mean |X_t - X_0|

As the protocol's figures (:mod:`.figures`, which draw many runs), the Figure is built without pyplot, so
it works headless. The default ``--out`` is ``curves.png`` beside the results.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..plumbing.argparser import Parser
from ..plumbing.cli import CliError, run_cli
from ..plumbing.files import atomic_write
from ..plumbing.flags import named, whole
from ..plumbing.seal import check_seal, is_sealed, unsealed_note
from .figures import _COLORS, _figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["main", "build_parser", "load_run", "run_curves", "RUN_FORMAT"]

RUN_FORMAT = "nanosgm-network/"          # the prefix of a run record's "format" (nanosgm-network/2, ...)
SHIFTS = (("input_shift_max", "max |X_t - X_0|"), ("input_shift_mean", "mean |X_t - X_0|"))
ERRORS = (("val_error_pct", "validation"), ("test_error_pct", "test"))


# ------------------------------------------------------------------------------------------ the record
def _read_json(path: str | Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as exc:
        raise CliError(f"{path} cannot be read ({exc.strerror or exc}); give the results.json of a run") from None
    except ValueError as exc:
        raise CliError(f"{path} is not the results.json of a nanosgm run: it is not JSON ({exc})") from None


def _not_a_run(path: str | Path, record: object) -> str:
    """Why ``record`` is not the record of a run ("" when it is)."""
    if not isinstance(record, dict):
        return "it holds no JSON object"
    if "networks" in record and "config" in record:
        return ("it is a protocol's record; plot a protocol with nanosgm experiments --tables-only --figures "
                f"--out {os.path.dirname(path) or '.'}")
    fmt = record.get("format")
    if not (isinstance(fmt, str) and fmt.startswith(RUN_FORMAT)):
        return (f"its format is {fmt!r}, not {RUN_FORMAT}N" if fmt is not None else
                f"it names no format (a run's results.json says \"format\": \"{RUN_FORMAT}N\")")
    history = record.get("history")
    if not (isinstance(history, list) and history and all(isinstance(h, dict) for h in history)):
        return "it records no history of epochs"
    if not all(isinstance(h.get("epoch"), int) and not isinstance(h["epoch"], bool) for h in history):
        return "an entry of its history has no whole epoch number"
    return ""


def _check_number(path: str | Path, i: int, row: dict, key: str) -> None:
    """CliError unless ``row[key]`` of history entry ``i`` is a number, null or absent (drawn as a gap)."""
    v = row.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise CliError(f"{path}: history[{i}].{key} is {v!r}, not a number; restore the file (e.g. from a copy) "
                       "or train the run again")


def load_run(path: str | Path, say: Callable[[str], None] | None = None) -> dict:
    """The run record in ``path`` (a results.json, or the run folder holding one), checked.

    A sealed record (:mod:`nanosgm.plumbing.seal`) is checked against its digest; an unsealed one is
    accepted, and ``say`` (default: a line on stderr) is told so."""
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    record = _read_json(path)
    why = _not_a_run(path, record)
    if why:
        raise CliError(f"{path} is not the results.json of a nanosgm run: {why}")
    sealed = is_sealed(record)
    if sealed:
        record = check_seal(record, str(path), fix="restore it (e.g. from a copy), or train the run again")
    for i, row in enumerate(record["history"]):
        for key in ("train_loss",) + tuple(k for k, _ in ERRORS + SHIFTS):
            _check_number(path, i, row, key)
    if not sealed:
        (say or _note)(unsealed_note(str(path), "plotted as it is"))
    return record


def _note(line: str) -> None:
    print(line, file=sys.stderr)


# ------------------------------------------------------------------------------------------ the figure
def _series(record: dict, key: str) -> list:
    return [math.nan if h.get(key) is None else float(h[key]) for h in record["history"]]


def _title(record: dict) -> str:
    spec = record.get("spec")
    if not isinstance(spec, dict):
        spec = {}
    parts = [str(spec[k]) for k in ("dataset", "model", "method") if spec.get(k) is not None]
    if spec.get("seed") is not None:
        parts.append(f"seed {spec['seed']}")
    return " | ".join(parts) or "nanosgm run"


def _epoch_axis(ax: Axes, epochs: list[int]) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if 0 < len(epochs) <= 3:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def _plot_errors(ax: Axes, record: dict, epochs: list[int]) -> None:
    for (key, label), color in zip(ERRORS, _COLORS):
        values = _series(record, key)
        if any(not math.isnan(v) for v in values):
            ax.plot(epochs, values, color=color, marker="o", ms=3, label=f"{label} error")
    best = record.get("best_epoch")
    if isinstance(best, int) and not isinstance(best, bool) and best in epochs:
        ax.axvline(best, color="grey", ls=":", label=f"kept: epoch {best}")
    ax.set_ylabel("error (%)")
    ax.set_title("Error per epoch", fontsize=9)
    ax.legend(fontsize=7)


def _plot_shifts(ax: Axes, record: dict, epochs: list[int]) -> None:
    for (key, label), color in zip(SHIFTS, _COLORS):
        ax.plot(epochs, _series(record, key), color=color, marker="o", ms=3, label=label)
    ax.set_ylabel("input shift")
    ax.set_title("Stored inputs' shift |X_t - X_0|", fontsize=9)
    ax.legend(fontsize=7)


def run_curves(record: dict, title: str | None = None) -> Figure:
    """The learning curves of one run record (module docstring): 2 axes, or 3 when the history records
    the input shift. Axes titles: "Training loss", "Error per epoch", "Stored inputs' shift |X_t - X_0|"."""
    epochs = [int(h["epoch"]) for h in record["history"]]
    moves_inputs = any(h.get(SHIFTS[0][0]) is not None for h in record["history"])
    n = 3 if moves_inputs else 2
    fig = _figure((4.2 * n, 3.6))
    axes = fig.subplots(1, n, squeeze=False)[0]
    axes[0].plot(epochs, _series(record, "train_loss"), color=_COLORS[0], marker="o", ms=3, label="training loss")
    axes[0].set_ylabel("cross-entropy")
    axes[0].set_title("Training loss", fontsize=9)
    _plot_errors(axes[1], record, epochs)
    if moves_inputs:
        _plot_shifts(axes[2], record, epochs)
    for ax in axes:
        _epoch_axis(ax, epochs)
    fig.suptitle(title or _title(record), fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ the command
PROG = "python -m nanosgm.plot"


def build_parser(prog: str = PROG) -> Parser:
    """The flags; ``prog`` is the command in the usage line and messages (``nanosgm plot`` from
    :mod:`nanosgm.commands`)."""
    p = Parser(prog=prog, description="Draw the learning curves of one run of nanosgm train from its "
               "results.json: training loss, validation and test error per epoch and, for SGM, the stored "
               "inputs' shift |X_t - X_0|.")
    p.add_argument("results", metavar="RESULTS.json", help="the run's results.json (or its run folder)")
    p.add_argument("--out", type=named("--out"), default=None, metavar="FILE", help="the image to write (.png, .pdf, .svg; default: "
                   "curves.png beside the results.json)")
    p.add_argument("--dpi", type=whole("--dpi", least=10), default=100, help="dots per inch of a .png (default 100)")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p


def _out_path(args: argparse.Namespace) -> tuple:
    """(the image to write, its format), refused before anything is read."""
    from matplotlib.backend_bases import FigureCanvasBase
    folder = args.results if os.path.isdir(args.results) else os.path.dirname(args.results)
    out = args.out or os.path.join(folder, "curves.png")
    if os.path.isdir(out):
        raise CliError(f"--out {out} is a folder; give the image file to write "
                       f"(e.g. {os.path.join(out, 'curves.png')})")
    fmt = os.path.splitext(out)[1].lstrip(".").lower() or "png"
    if fmt not in FigureCanvasBase.get_supported_filetypes():
        raise CliError(f"--out {out}: cannot write .{fmt} images; use .png, .pdf or .svg")
    return out, fmt


def _main(argv: list[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    out, fmt = _out_path(args)
    fig = run_curves(load_run(args.results))
    atomic_write(out, lambda f: fig.savefig(f, format=fmt, dpi=args.dpi, bbox_inches="tight"), suffix=f".{fmt}")
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """``python -m nanosgm.plot`` (``prog`` names the command in its help and messages); the exit status."""
    return run_cli(lambda a: _main(a, prog), argv)

