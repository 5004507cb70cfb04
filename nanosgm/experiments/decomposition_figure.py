"""The authors' FGSM taken apart, as a figure: one bar group per reading of a decomposition.json.

:mod:`.decompose` measures FGSM accuracy of every saved network of a protocol under readings that add one
factor of the authors' evaluation at a time (:mod:`nanosgm.attacks.readings`). :func:`decomposition_figure`
draws, for each eps, two panels side by side:

    accuracy   one bar group per reading (the inference reading, each factor alone, the authors' reading
               with and without the clip), one bar per arm: the median FGSM accuracy (%) over the arm's
               networks (the summary's "median"), the error bar from the lowest to the highest network
    gain       the same groups, one bar per arm beside the control: the median paired difference
               arm - control of the same run under the same reading (the summary's "minus_control", the
               "-ctl" column of the decompose table), the error bar from the lowest to the highest pair

so one sees which factor moves the accuracy and whether the sign of an arm's gain follows a factor. Each
arm keeps the colour it has in Figures 1-2 (its place in the protocol's arm list, :mod:`.figures`); an
arm of the protocol with no decomposed network is named in the legend, not dropped.

    python -m nanosgm.decompose PROTOCOL_DIR --figure     # PROTOCOL_DIR/decomposition.png from decomposition.json

The readings drawn by default, and how a tick names one:

    >>> FIGURE_READINGS
    ('inference', 'dropout', 'batch-stats', 'no-clip', 'keras-ce', 'authors-clipped', 'authors')
    >>> print(_tick("batch-stats")); print(_tick("dropout+no-clip"))
    batch-stats
    (attack batch's
    BN statistics)
    dropout+
    no-clip
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..attacks.readings import CONTROL_READING, FACTORS
from ..methods.arms import CONTROL
from ..methods.base import format_number
from .figures import _arm_style
from .keys import split_key

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FIGURE_READINGS", "GLOSS", "arm_values", "paired_gains", "decomposition_figure"]

#: the readings drawn by default, in this order: none of the factors, each alone, the authors' without the clip, all
FIGURE_READINGS = (CONTROL_READING, *FACTORS, "authors-clipped", "authors")

#: what each reading of FIGURE_READINGS changes, for the tick labels (the names are the decompose table's)
GLOSS = {CONTROL_READING: "this project's FGSM", "dropout": "dropout masks\nin the gradient",
         "batch-stats": "attack batch's\nBN statistics", "no-clip": "x_adv not\nclipped to [0, 1]",
         "keras-ce": "Keras's clipped\ncross-entropy", "authors-clipped": "the authors'\nwith the clip",
         "authors": "the authors'\n(all four)"}

_HATCHES = ("", "//", "..", "xx")        # bars of arms whose colour repeats (more than ten arms)


def _eps_key(eps: float) -> str:
    return repr(float(eps))


def _by_run(doc: dict, arm: str) -> dict:
    """{run: that network's readings} of ``arm``'s decomposed networks, by run."""
    out = {}
    for key, entry in doc["networks"].items():
        run, a = split_key(key)
        if a == arm:
            out[run] = entry["readings"]
    return dict(sorted(out.items()))


def arm_values(doc: dict, arm: str, reading: str, eps: float) -> np.ndarray:
    """FGSM accuracy (%) under ``reading`` at ``eps`` of each of ``arm``'s networks, by run: (networks,)."""
    return np.array([r[reading]["fgsm_pct"][_eps_key(eps)] for r in _by_run(doc, arm).values()], dtype=float)


def paired_gains(doc: dict, arm: str, reading: str, eps: float) -> np.ndarray:
    """arm - control (points) under ``reading`` at ``eps`` for each run that has both networks: (pairs,)."""
    nets, control = _by_run(doc, arm), _by_run(doc, CONTROL)
    e = _eps_key(eps)
    return np.array([nets[i][reading]["fgsm_pct"][e] - control[i][reading]["fgsm_pct"][e]
                     for i in sorted(set(nets) & set(control))], dtype=float)


def _bar_style(doc: dict, arm: str) -> dict:
    """The arm's colour in Figures 1-2 (its place in the protocol's arm list), hatched when colours repeat."""
    i = doc["arms"].index(arm)
    return {"color": _arm_style(i)["color"], "hatch": _HATCHES[(i // 10) % len(_HATCHES)], "edgecolor": "white"}


def _tick(reading: str) -> str:
    """A bar group's label: the reading's name, and what it changes (:data:`GLOSS`) in brackets."""
    return f"{reading}\n({GLOSS[reading]})" if reading in GLOSS else reading.replace("+", "+\n")


def _bars(ax: Axes, doc: dict, arms: list, readings: list, eps: float, gain: bool) -> None:
    """One group per reading, one bar per arm: the summary's median (or median paired gain), error bars
    from the lowest to the highest network (or pair)."""
    width = 0.8 / max(len(arms), 1)
    x = np.arange(len(readings))
    e = _eps_key(eps)
    for j, arm in enumerate(arms):
        cells = [doc["summary"][arm]["readings"][r]["fgsm"][e] for r in readings]
        heights = np.array([c["minus_control" if gain else "median"] for c in cells], dtype=float)
        spread = [(paired_gains if gain else arm_values)(doc, arm, r, eps) for r in readings]
        lo = np.array([max(h - v.min(), 0.0) for h, v in zip(heights, spread)])     # >= 0: the median is rounded
        hi = np.array([max(v.max() - h, 0.0) for h, v in zip(heights, spread)])
        ax.bar(x - 0.4 + width * (j + 0.5), heights, width, yerr=np.vstack([lo, hi]), label=arm,
               error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "0.25"}, **_bar_style(doc, arm))
    ax.set_xticks(x, [_tick(r) for r in readings], fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _legend(fig: Figure, doc: dict) -> None:
    """One entry per arm of the protocol, in its order: networks and pairs, or that none was decomposed."""
    from matplotlib.patches import Patch
    handles = []
    for arm in doc["arms"]:
        s = doc["summary"].get(arm)
        style = _bar_style(doc, arm)
        if s is None:
            handles.append(Patch(facecolor="none", edgecolor=style["color"], label=f"{arm}: no network decomposed"))
            continue
        pairs = "" if arm == CONTROL else f", {s['pairs']} pair(s) with the control"
        handles.append(Patch(facecolor=style["color"], hatch=style["hatch"], edgecolor="white",
                             label=f"{arm}: {s['networks']} network(s){pairs}"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False)


def _readings(doc: dict, readings: Sequence[str] | None) -> list:
    """The readings to draw: those asked for (ValueError, one line, naming any the file lacks), or the
    FIGURE_READINGS the decomposition measured."""
    measured = list(doc["settings"]["readings"])
    if readings is None:
        return [r for r in FIGURE_READINGS if r in measured]
    missing = [r for r in readings if r not in measured]
    if missing:
        raise ValueError(f"reading(s) {', '.join(missing)} are not in this decomposition; choose from "
                         f"{', '.join(measured)}")
    return list(readings)


def decomposition_figure(doc: dict, readings: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """The figure of a decomposition (the dict :func:`~.decompose.load_decomposition` returns): one row per
    eps of ``doc["settings"]["eps"]``, the accuracy panel left and the gain panel right (module docstring),
    one bar group per reading (default :data:`FIGURE_READINGS`, those measured), the legend below."""
    from matplotlib.figure import Figure
    names = _readings(doc, readings)
    eps_list = [float(e) for e in doc["settings"]["eps"]]
    arms = [a for a in doc["arms"] if a in doc["summary"]]
    beside = [a for a in arms if a != CONTROL and doc["summary"][a]["pairs"]]
    fig = Figure(figsize=(max(10.0, 1.9 * len(names) + 2), 3.6 * len(eps_list) + 0.8), layout="constrained")
    axes = fig.subplots(len(eps_list), 2, squeeze=False)
    for (ax_acc, ax_gain), eps in zip(axes, eps_list):
        eps_text = f"eps {format_number(eps)}"
        _bars(ax_acc, doc, arms, names, eps, gain=False)
        ax_acc.set_ylabel("FGSM accuracy (%)")
        ax_acc.set_ylim(bottom=0)
        ax_acc.set_title(f"{eps_text}: accuracy, median over each arm's networks (bar: min-max)", fontsize=9)
        _bars(ax_gain, doc, beside, names, eps, gain=True)
        ax_gain.axhline(0, color="grey", lw=0.8)
        ax_gain.set_ylabel("arm - control (points)")
        ax_gain.set_title(f"{eps_text}: gain over the control, median paired difference (bar: min-max)", fontsize=9)
        if not beside:
            ax_gain.text(0.5, 0.5, "no arm paired with a control network", ha="center", va="center",
                         transform=ax_gain.transAxes)
    _legend(fig, doc)
    cfg = doc["settings"].get("protocol_config", {})
    what = f"{cfg.get('dataset', '')} {cfg.get('model', '')}{' (augmented)' if cfg.get('augment') else ''}".strip()
    fig.suptitle(title or f"The authors' FGSM taken apart: {what}, {doc['settings']['images']} test images, "
                          f"one bar group per reading", fontsize=10)
    return fig
