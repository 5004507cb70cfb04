"""Datasets, preprocessing and augmentation: MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100.

    import nanosgm.data as data
    ds = data.load("mnist")                 # Dataset: X_train (50000, 1, 28, 28) float32 in [0, 1], ...
    ds = data.load("cifar10", limit=5000)   # 5,000 training images, full validation and test sets
    ds, zca = data.zca_whiten(data.load("cifar10"))
    aug = data.augmenter_for("mnist")       # f(X_batch, rng) -> elastically distorted copy

Modules, one concept each:
    registry  - file names, checksums, mirrors and split sizes of each dataset
    locate    - where files are looked for (--data-dir, NANOSGM_DATA, cache, /usr/share/datasets) and
                atomic, verified downloads
    verify    - checksum verification
    idx       - the IDX format (MNIST, Fashion-MNIST)
    cifar     - CIFAR "python version" pickles with a restricted unpickler
    dataset   - ``load`` and the ``Dataset`` container (the paper's splits, Section 5)
    augment   - elastic distortions, ZCA whitening, random rotation/zoom/flip
    plots     - figures of original vs. augmented images
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .augment import ZCA, as_generator, augmenter_for, elastic_distort, hflip, random_affine, zca_whiten
from .dataset import Dataset, load, load_raw
from .errors import DataError
from .registry import ACCEPTED_NAMES, DATASETS, canonical_name, dataset_argument

__all__ = ["load", "load_raw", "Dataset", "DataError", "DATASETS", "canonical_name", "dataset_argument",
           "ACCEPTED_NAMES", "ZCA", "zca_whiten", "elastic_distort",
           "hflip", "random_affine", "augmenter_for", "as_generator", "plot_elastic_grid",
           "plot_cifar_preprocessing"]

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_elastic_grid(*args, **kwargs) -> Figure:
    """See :func:`nanosgm.data.plots.plot_elastic_grid` (imports matplotlib lazily)."""
    from .plots import plot_elastic_grid as f
    return f(*args, **kwargs)


def plot_cifar_preprocessing(*args, **kwargs) -> Figure:
    """See :func:`nanosgm.data.plots.plot_cifar_preprocessing` (imports matplotlib lazily)."""
    from .plots import plot_cifar_preprocessing as f
    return f(*args, **kwargs)
