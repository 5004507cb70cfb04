"""The paper's figures from a protocol result (see :mod:`nanosgm.experiments`), as matplotlib Figures.

    test_error_curves(result)            Figures 1-2: median test error per epoch, per arm (control first),
                                         with the min-max band over the runs
    watch_figure(result)                 per epoch, the drift of the stored images |X_t - X_0| (max, each SGM
                                         arm) and, at the watched epochs, FGSM accuracy on the validation split
                                         under both conventions (``--watch-fgsm``), each arm; ``watch_curves``
                                         gives its series
    adversarial_examples(model, X, y)    Figures 3-4: clean images, FGSM images (Eq. 20) and their
                                         perturbations at eps = 0.001 and 0.1
    input_updates(snapshots)             Figures 5-6: X_t - X_0 over the first nine epochs of SGM
                                         (50% grey = no update, white = +1, black = -1)
    write_figures(result, out, ds)       all of them that a protocol result allows, as PNGs in ``out``

Built with ``matplotlib.figure.Figure`` directly (no pyplot, no GUI, never ``plt.show``), so they work
headless; save with ``fig.savefig(path)`` or display the returned Figure in a notebook.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import attacks, backend
from ..methods.arms import slug
from ..methods.base import format_number
from . import recipe
from .keys import split_key

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..data import Dataset
    from ..layers import Sequential
    from ..layers.base import Array

__all__ = ["test_error_curves", "adversarial_examples", "input_updates", "update_to_grey", "error_curves",
           "write_figures", "watch_figure", "watch_curves", "watched_eps", "WATCH_EPS"]


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)


def error_curves(result: dict, arm: str) -> np.ndarray:
    """(runs, epochs) test error (%) of ``arm`` ("control", "sgm:0.2", ...) from each recorded network's
    history (protocol.json's "networks"), cut to the shortest history."""
    nets = result["networks"]
    keys = sorted((k for k in nets if split_key(k)[1] == arm), key=lambda k: split_key(k)[0])
    curves = [[h["test_error_pct"] for h in nets[k]["history"]] for k in keys]
    if not curves:
        return np.zeros((0, 0))
    n = min(len(c) for c in curves)
    return np.array([c[:n] for c in curves], dtype=float)


_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan")
_LINESTYLES = ("-", "--", ":", "-.")


def _arm_style(i: int) -> dict:
    """Colour, line style and marker of the ``i``-th arm: ten colours, then the colours again with the next
    line style and marker, so that every arm has a style of its own."""
    turn = i // len(_COLORS)
    return {"color": _COLORS[i % len(_COLORS)], "linestyle": _LINESTYLES[turn % len(_LINESTYLES)],
            "marker": "osD^v"[turn % 5]}


def test_error_curves(result: dict, title: str | None = None) -> Figure:
    """Figures 1-2: test error (%) per epoch, median over the runs (line) and min-max over the runs (band),
    one style per arm (the control first, :func:`_arm_style`). One axes; the legend (one entry per arm) sits
    to the right of it, off the curves."""
    fig = _figure((7.5, 4))
    ax = fig.subplots()
    n_epochs = 0
    handles = []
    for i, arm in enumerate(result["arms"]):
        E = error_curves(result, arm)
        if E.size == 0:
            continue
        style = _arm_style(i)
        n_epochs = max(n_epochs, E.shape[1])
        epochs = np.arange(1, E.shape[1] + 1)
        line, = ax.plot(epochs, np.median(E, axis=0), ms=3, label=arm, **style)
        band = ax.fill_between(epochs, E.min(axis=0), E.max(axis=0), color=style["color"], alpha=0.15)
        handles.append(((line, band), f"{arm}: median, min-max of {E.shape[0]}"))
    cfg = result.get("config", {})
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if 0 < n_epochs <= 3:
        ax.set_xlim(0.5, n_epochs + 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_title(title or f"Test error per epoch: {cfg.get('dataset', '')} {cfg.get('model', '')}"
                          f"{' (augmented)' if cfg.get('augment') else ''}")
    ax.grid(alpha=0.3)
    if handles:
        ax.legend(*zip(*handles), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


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


def _image(x: np.ndarray) -> np.ndarray:
    """One (C, H, W) image for imshow: (H, W) for one channel, (H, W, 3) for three, values unchanged."""
    x = np.asarray(x, dtype=np.float64)
    return x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)


def _show_image(ax: Axes, x: np.ndarray, fixed_range: bool) -> None:
    """Pixels in [0, 1] are shown as they are when ``fixed_range``; otherwise (e.g. ZCA-whitened CIFAR)
    the image is rescaled to its own [min, max] for display."""
    img = _image(x)
    if not fixed_range:
        img = (img - img.min()) / max(img.max() - img.min(), 1e-12)
    ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")


def update_to_grey(delta: np.ndarray, channels: str = "mean") -> np.ndarray:
    """The Figures 5-6 mapping of an update (C, H, W): ``0.5 + 0.5 * clip(delta, -1, 1)``, so 0 is 50% grey,
    +1 white and -1 black. ``channels="mean"`` averages 3 channels first (one grey image, (H, W));
    ``"rgb"`` maps each channel the same way and returns (H, W, 3)."""
    d = np.asarray(delta, dtype=np.float64)
    if d.ndim == 3:
        if d.shape[0] == 1:
            d = d[0]
        elif channels == "mean":
            d = d.mean(axis=0)
        elif channels == "rgb":
            d = d.transpose(1, 2, 0)
        else:
            raise ValueError(f"channels must be 'mean' or 'rgb', got {channels!r}")
    return 0.5 + 0.5 * np.clip(d, -1.0, 1.0)


def adversarial_examples(model: Sequential, X: Array, y: Array, eps_list: Sequence[float] = (0.001, 0.1), n: int = 6,
                         *, clip: tuple[float, float] | None = (0.0, 1.0), title: str | None = None) -> Figure:
    """Figures 3-4: for the first ``n`` images of ``X``: the clean image, and for every eps the FGSM image
    (``nanosgm.attacks.fgsm``, Eq. 20) and its perturbation. The perturbation column shows
    ``(x_adv - x) / eps`` with 50% grey = 0, white = +1, black = -1, i.e. ``sgn(dE/dx)`` (from
    ``nanosgm.attacks.input_gradient``) wherever the range clip did not cut it. Titles give the predicted
    class (and the true one on the clean image). Inputs outside [0, 1] (``clip=None``, ZCA-whitened data)
    are rescaled per image for display; 3-channel images are shown as RGB.
    Returns a Figure with ``n * (1 + 2 * len(eps_list))`` axes (one row per image)."""
    x = backend.to_device(np.asarray(backend.to_host(X[:n])))
    yy = backend.to_device(np.asarray(backend.to_host(y[:n])).astype(np.int64))
    n = int(x.shape[0])
    xp = backend.array_module(x)
    _, g = attacks.input_gradient(model, x, yy)
    sign = np.asarray(backend.to_host(xp.sign(g)))
    x_host = np.asarray(backend.to_host(x))

    def predict(a: Array) -> np.ndarray:
        return np.asarray(backend.to_host(xp.argmax(model.forward(a, training=False), axis=1)))

    cols = 1 + 2 * len(eps_list)
    fig = _figure((1.35 * cols + 0.5, 1.45 * n + 0.8))
    axes = fig.subplots(n, cols, squeeze=False)
    fixed = clip is not None
    pred0 = predict(x)
    labels = np.asarray(backend.to_host(yy))
    for i in range(n):
        _show_image(axes[i, 0], x_host[i], fixed)
        axes[i, 0].set_title(f"clean: {pred0[i]} (true {labels[i]})", fontsize=7)
    for j, eps in enumerate(eps_list):
        x_adv = attacks.fgsm(model, x, yy, eps, clip=clip)
        pred = predict(x_adv)
        adv = np.asarray(backend.to_host(x_adv))
        for i in range(n):
            ax_a, ax_p = axes[i, 1 + 2 * j], axes[i, 2 + 2 * j]
            _show_image(ax_a, adv[i], fixed)
            ax_a.set_title(f"eps {format_number(eps)}: {pred[i]}", fontsize=7)
            # (x_adv - x) / eps, rounded to absorb float32 error: sgn(dE/dx), smaller where the clip cut it
            pert = np.round((adv[i].astype(np.float64) - x_host[i]) / eps, 3) if eps else 0 * sign[i]
            ax_p.imshow(update_to_grey(pert, channels="rgb"), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax_p.set_title(f"(x~ - x)/{format_number(eps)}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title and f"FGSM adversarial examples ({title})" or "FGSM adversarial examples (Eq. 20)", fontsize=9)
    fig.tight_layout()
    return fig


def input_updates(snapshots: dict, n: int | None = None, *, gain: float = 1.0, channels: str = "mean",
                  title: str = "") -> Figure:
    """Figures 5-6: the SGM input updates X_t - X_0 of a few training images after each recorded epoch
    (the first nine), as images: ``0.5 + 0.5 * clip(gain * delta, -1, 1)`` with ``cmap="gray", vmin=0,
    vmax=1`` -- 50% grey = no update, white = +1, black = -1 (``gain=1``, the paper's mapping; a larger
    gain amplifies small updates and the title says so). 3-channel images: the channels are averaged
    (``channels="mean"``, default) or shown as RGB with the same per-channel mapping (``"rgb"``).

    ``snapshots``: ``{"epochs": [1, ..], "X0": (k, C, H, W), "deltas": [(k, C, H, W) per epoch]}`` as
    :func:`nanosgm.methods.fit` records them (``snapshot_rows``). One row per image (the first ``n``, default all),
    first column X_0, then one column per epoch: ``rows * (1 + epochs)`` axes.
    """
    X0 = np.asarray(snapshots["X0"], dtype=np.float64)
    deltas = [np.asarray(d, dtype=np.float64) for d in snapshots["deltas"]]
    epochs = list(snapshots["epochs"])
    k = X0.shape[0] if n is None else min(int(n), X0.shape[0])
    cols = 1 + len(deltas)
    fig = _figure((1.2 * cols + 0.5, 1.25 * k + 0.9))
    axes = fig.subplots(k, cols, squeeze=False)
    fixed = X0.min() >= 0 and X0.max() <= 1
    for i in range(k):
        _show_image(axes[i, 0], X0[i], fixed)
        if i == 0:
            axes[i, 0].set_title("X_0", fontsize=8)
        for t, d in enumerate(deltas):
            ax = axes[i, 1 + t]
            ax.imshow(update_to_grey(gain * d[i], channels=channels), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            if i == 0:
                ax.set_title(f"epoch {epochs[t]}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    peak = max((float(np.abs(d[:k]).max()) for d in deltas), default=0.0)
    g = "" if gain == 1 else f", amplified x{gain:.3g}"
    fig.suptitle(f"SGM input updates X_t - X_0{' (' + title + ')' if title else ''} (grey = 0, white = +1, "
                 f"black = -1{g}); max |update| = {peak:.3g}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def write_figures(result: dict, out: str, ds: Dataset | None = None, clip: tuple[float, float] | None = (0.0, 1.0),
                  dpi: int = 90) -> list:
    """Save Figures 1-6 of a protocol result (as far as it allows) as PNGs into ``out``; returns the paths.

    Figures 1-2 always; when the records hold a validation FGSM watch (``--watch-fgsm``), the drift of the
    stored images and the watch per epoch (:func:`watch_figure`, ``watch_drift_and_val_fgsm.png``);
    Figures 3-4 of every arm whose run-0 weights are in ``out/models`` when the
    dataset ``ds`` is given; Figures 5-6 of every arm with snapshots, also amplified to the largest update
    when that is below 0.5."""
    paths = []

    def save(fig: Figure, name: str) -> None:
        p = os.path.join(out, name)
        if os.path.isdir(p):
            raise ValueError(f"cannot write the figure {p}: a folder has that name; move it away and run again")
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        paths.append(p)

    save(test_error_curves(result), "fig1-2_test_error.png")
    if set(watched_eps(result)) & set(WATCH_EPS):
        save(watch_figure(result), "watch_drift_and_val_fgsm.png")
    if ds is not None:
        for arm in result["arms"]:
            path = os.path.join(out, "models", f"run0-{slug(arm)}.npz")
            if os.path.exists(path):
                backend.seed(result["config"]["seed0"])
                model = recipe.build_model(result["config"]["model"], ds)
                model.load(path)
                save(adversarial_examples(model, ds.X_test, ds.y_test, clip=clip, title=f"run 0, {arm}"),
                     f"fig3-4_adversarial_{slug(arm)}.png")
    for arm, snaps in (result.get("snapshots") or {}).items():
        if len(snaps["deltas"]):
            name = slug(arm)
            save(input_updates(snaps, title=arm), f"fig5-6_input_updates_{name}.png")
            peak = max(float(np.abs(d).max()) for d in snaps["deltas"])
            if 0 < peak < 0.5:
                save(input_updates(snaps, gain=1.0 / peak, title=arm), f"fig5-6_input_updates_{name}_amplified.png")
    return paths


# a figure, not a pytest test (in case a test module imports it by name); mypy knows no function attributes
test_error_curves.__test__ = False  # type: ignore[attr-defined]
