"""``load(name)``: verified files -> train / validation / test arrays, split as the paper does.

Section 5 of the paper: MNIST 50,000 / 10,000 / 10,000 and CIFAR-10 / CIFAR-100
40,000 / 10,000 / 10,000 (train / validation / test). The validation set is the *last*
``val_size`` images of the official training set; the test set is the official test set.
Fashion-MNIST, a drop-in stand-in for MNIST, is split like MNIST.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np

from .cifar import parse_batch, parse_meta, read_archive_members
from .errors import DataError
from .idx import parse_idx
from .locate import Found, obtain
from .registry import DatasetSpec, get_spec, with_checksums
from .verify import check_digest, check_file_digest, read_verified

__all__ = ["Dataset", "load", "load_raw"]


def _describe(X: np.ndarray | None) -> str:
    if X is None:
        return "None"
    if X.size == 0:
        return f"{tuple(X.shape)} {X.dtype}"
    return f"{tuple(X.shape)} {X.dtype} [{float(X.min()):.3g}, {float(X.max()):.3g}]"


@dataclass(repr=False)
class Dataset:
    """Train / validation / test splits of one dataset, as host NumPy arrays.

    ``X_*``: images, NCHW, float32 in [0, 1] by default (see :func:`load`); ``y_*``: int64 labels.
    ``input_shape`` is (C, H, W). ``source`` says where the files were read from.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...] = ()
    source: str = ""
    info: dict = field(default_factory=dict)

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{"train": (X, y), "val": (X, y), "test": (X, y)}."""
        return {"train": (self.X_train, self.y_train), "val": (self.X_val, self.y_val),
                "test": (self.X_test, self.y_test)}

    def replace(self, **changes) -> "Dataset":
        """A copy with some fields replaced (e.g. ZCA-whitened images); arrays are not copied."""
        return replace(self, **changes)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, classes={self.num_classes}, input_shape={self.input_shape},\n"
                f"  train: X {_describe(self.X_train)}, y {tuple(self.y_train.shape)} {self.y_train.dtype}\n"
                f"  val:   X {_describe(self.X_val)}, y {tuple(self.y_val.shape)} {self.y_val.dtype}\n"
                f"  test:  X {_describe(self.X_test)}, y {tuple(self.y_test.shape)} {self.y_test.dtype}\n"
                f"  source: {self.source})")


def _read_idx_set(found: Found, spec: DatasetSpec, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    img_name, lab_name = names
    images = parse_idx(read_verified(found.paths[img_name], spec.files[img_name]), str(found.paths[img_name]), ndim=3)
    labels = parse_idx(read_verified(found.paths[lab_name], spec.files[lab_name]), str(found.paths[lab_name]), ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{found.paths[img_name]} has {images.shape[0]} images but {found.paths[lab_name]} "
                        f"has {labels.shape[0]} labels")
    return images[:, None, :, :], labels.astype(np.int64)


def _cifar_members(found: Found, spec: DatasetSpec) -> tuple[dict[str, bytes], str]:
    """Verified bytes of every CIFAR member (from the archive or the extracted folder)."""
    if found.archive is not None:
        archive_name, digest, folder = cast("tuple[str, str, str]", spec.archive)     # found in an archive
        check_file_digest(found.archive, digest)
        members = read_archive_members(found.archive, folder, spec.files)
        for name, data in members.items():
            check_digest(data, spec.files[name], f"{found.archive}:{folder}/{name}")
        return members, str(found.archive)
    return {name: read_verified(path, spec.files[name], gz=False) for name, path in found.paths.items()}, str(found.directory)


def _read_cifar(found: Found, spec: DatasetSpec,
                coarse: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], str]:
    members, source = _cifar_members(found, spec)
    if spec.name == "cifar100":
        label_key = "coarse_labels" if coarse else "fine_labels"
        names_key = "coarse_label_names" if coarse else "fine_label_names"
    else:
        if coarse:
            raise ValueError("coarse=True is for CIFAR-100 only")
        label_key, names_key = "labels", "label_names"

    def batches(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [parse_batch(members[n], f"{source}:{n}", label_key) for n in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    Xtr, ytr = batches(spec.train_files)
    Xte, yte = batches(spec.test_files)
    meta_file = cast(str, spec.meta_file)       # every CIFAR spec names its meta file (DatasetSpec checks)
    meta = parse_meta(members[meta_file], f"{source}:{meta_file}")
    class_names = tuple(meta.get(names_key, ()))
    return Xtr, ytr, Xte, yte, class_names, source


def load_raw(name: str, data_dir: str | Path | None = None, *, coarse: bool = False, download: bool = True,
             progress: bool = True, checksums: dict[str, str] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], str, DatasetSpec]:
    """The official train and test sets as uint8 NCHW arrays, verified; no split, no scaling.

    Returns (X_train, y_train, X_test, y_test, class_names, source, spec).
    """
    spec = with_checksums(get_spec(name), checksums)
    found = obtain(spec, data_dir, download=download, progress=progress)
    if spec.kind == "idx":
        Xtr, ytr = _read_idx_set(found, spec, spec.train_files)
        Xte, yte = _read_idx_set(found, spec, spec.test_files)
        return Xtr, ytr, Xte, yte, spec.class_names, str(found.directory), spec
    Xtr, ytr, Xte, yte, names, source = _read_cifar(found, spec, coarse)
    return Xtr, ytr, Xte, yte, names, source, spec


def _split_limits(limit: int | tuple | list | dict | None) -> dict[str, int | None]:
    if limit is None:
        return {"train": None, "val": None, "test": None}
    if isinstance(limit, (int, np.integer)):
        return {"train": int(limit), "val": None, "test": None}
    if isinstance(limit, dict):
        unknown = set(limit) - {"train", "val", "test"}
        if unknown:
            raise ValueError(f"limit keys must be 'train', 'val', 'test'; got {', '.join(sorted(map(str, unknown)))}")
        return {k: limit.get(k) for k in ("train", "val", "test")}
    if isinstance(limit, (tuple, list)) and len(limit) == 3:
        return dict(zip(("train", "val", "test"), limit))
    raise ValueError("limit must be an int (training images), a (train, val, test) tuple or a dict")


def _convert(X: np.ndarray, dtype, value_range: tuple[float, float]) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return np.ascontiguousarray(X)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a float type or uint8, got {dtype}")
    lo, hi = (float(v) for v in value_range)
    out = X.astype(dtype)
    out /= dtype.type(255.0)  # exactly k/255 in the default [0, 1] range
    if (lo, hi) != (0.0, 1.0):
        out *= dtype.type(hi - lo)
        out += dtype.type(lo)
    return out


def load(name: str, data_dir: str | Path | None = None, *, limit: int | tuple | list | dict | None = None,
         val_size: int | None = None, dtype="float32", value_range: tuple[float, float] = (0.0, 1.0),
         coarse: bool = False, download: bool = True, progress: bool = True,
         checksums: dict[str, str] | None = None) -> Dataset:
    """Load ``name`` ("mnist", "fashion-mnist", "cifar10", "cifar100") split as in the paper (Section 5).

    Args:
        data_dir: folder to look in first (``--data-dir``); then ``NANOSGM_DATA``, the user cache and
            ``/usr/share/datasets/<name>`` (see :mod:`nanosgm.data.locate`).
        limit: cap on the number of training images (an int), or per-split caps as a
            ``(train, val, test)`` tuple or ``{"train": .., "val": .., "test": ..}`` (None = all). The
            first images of each split are kept, so a limited load is a prefix of the full one.
        val_size: validation images taken from the end of the official training set
            (default 10,000, the paper's).
        dtype: "float32" (default) or another float type, scaled to ``value_range``; or "uint8" for
            the raw pixel values (``value_range`` is then ignored).
        value_range: (low, high) the pixel values 0 and 255 map to; default (0, 1).
        coarse: CIFAR-100 only: the 20 coarse (superclass) labels instead of the 100 fine ones.
        download: download into the cache when the files are found nowhere (needs network).
        progress: show a progress bar while downloading.
        checksums: test/advanced hook only: ``{file name: "sha256:..." | "md5:..."}`` replacing the
            official digests for those files (e.g. for small CIFAR-format fixtures). Every file is
            still verified, against these digests instead.

    Raises:
        DataError: files missing (the message says which, with their checksums, and where to put
            them), corrupted, truncated, not the official ones, or refused as unsafe.
    """
    Xtr_all, ytr_all, Xte, yte, class_names, source, spec = load_raw(
        name, data_dir, coarse=coarse, download=download, progress=progress, checksums=checksums)
    n = Xtr_all.shape[0]
    val = spec.val_size if val_size is None else int(val_size)
    if not 0 <= val < n:
        raise ValueError(f"val_size={val} must be in [0, {n}) for {spec.title} ({n} training images)")
    caps = _split_limits(limit)
    Xtr, ytr = Xtr_all[: n - val], ytr_all[: n - val]
    Xva, yva = Xtr_all[n - val:], ytr_all[n - val:]
    splits = {"train": (Xtr, ytr), "val": (Xva, yva), "test": (Xte, yte)}
    for key, cap in caps.items():
        if cap is not None:
            if int(cap) < 0:
                raise ValueError(f"limit for {key} must be >= 0, got {cap}")
            X, y = splits[key]
            splits[key] = (X[: int(cap)], y[: int(cap)])
    out = {k: (_convert(X, dtype, value_range), np.ascontiguousarray(y, dtype=np.int64)) for k, (X, y) in splits.items()}
    num_classes = spec.coarse_classes if (coarse and spec.coarse_classes) else spec.num_classes
    return Dataset(
        name=spec.name, X_train=out["train"][0], y_train=out["train"][1], X_val=out["val"][0], y_val=out["val"][1],
        X_test=out["test"][0], y_test=out["test"][1], num_classes=num_classes, input_shape=spec.input_shape,
        class_names=tuple(class_names), source=source,
        info={"val_size": val, "official_train": n, "official_test": int(Xte.shape[0]), "coarse": coarse},
    )
