"""Figures for the notebooks: original vs. augmented images, as matplotlib Figures.

Built with ``matplotlib.figure.Figure`` directly (no pyplot, no GUI backend), so they work headless;
save with ``fig.savefig(path)`` or display the returned Figure in a notebook.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .augment import ZCA, as_generator, elastic_distort, random_affine

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..layers.base import Array

__all__ = ["image_grid", "plot_elastic_grid", "plot_cifar_preprocessing"]


def _to_display(X: Array) -> np.ndarray:
    """Host (N, H, W) or (N, H, W, 3) array in [0, 1] for imshow; each image rescaled to its own range."""
    X = np.asarray(backend.to_host(X), dtype=np.float64)
    if X.ndim == 4:
        X = X[:, 0] if X.shape[1] == 1 else X.transpose(0, 2, 3, 1)
    lo = X.reshape(len(X), -1).min(axis=1).reshape((-1,) + (1,) * (X.ndim - 1))
    hi = X.reshape(len(X), -1).max(axis=1).reshape((-1,) + (1,) * (X.ndim - 1))
    return (X - lo) / np.maximum(hi - lo, 1e-12)


def image_grid(rows: Sequence[Array], row_titles: Sequence[str], figsize_per_image: float = 1.2,
               suptitle: str | None = None) -> Figure:
    """A Figure showing ``rows`` (a list of image batches of equal length) one batch per row."""
    from matplotlib.figure import Figure

    n = len(rows[0])
    fig = Figure(figsize=(figsize_per_image * n + 1.5, figsize_per_image * len(rows) + 0.6))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (batch, title) in enumerate(zip(rows, row_titles)):
        imgs = _to_display(batch)
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(imgs[i], cmap="gray" if imgs.ndim == 3 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_elastic_grid(X: Array, n: int = 8, repeats: int = 2, alpha: float = 34.0, sigma: float = 4.0,
                      rng: int | np.random.Generator | None = 0) -> Figure:
    """Original digits (top row) and ``repeats`` rows of elastic distortions of them (new draw each row)."""
    X = X[:n]
    g = as_generator(rng)
    rows = [X] + [elastic_distort(X, alpha=alpha, sigma=sigma, rng=g) for _ in range(repeats)]
    titles = ["original"] + [f"elastic #{k + 1}" for k in range(repeats)]
    return image_grid(rows, titles, suptitle=f"Elastic distortions (alpha={alpha}, sigma={sigma})")


def plot_cifar_preprocessing(X: Array, n: int = 8, zca: ZCA | None = None, eps: float = 1e-2,
                             rng: int | np.random.Generator | None = 0, **affine) -> Figure:
    """CIFAR-format images: original, ZCA-whitened, and ZCA + random rotation/zoom/flip (3 rows).

    ``zca``: a fitted :class:`ZCA` (e.g. on the training split); if None one is fitted on ``X``.
    Whitened images are shown rescaled per image to [0, 1].
    """
    if zca is None:
        zca = ZCA(eps).fit(X)
    X = X[:n]
    Z = zca.transform(X)
    A = random_affine(Z, rng=as_generator(rng), **affine)
    return image_grid([X, Z, A], ["original", f"ZCA (eps={zca.eps:g})", "ZCA + rot/zoom/flip"],
                      suptitle="CIFAR preprocessing and augmentation")
