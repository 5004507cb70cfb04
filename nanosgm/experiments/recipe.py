"""How one network is set up from plain settings: its data, model, optimizer + schedule, and provenance.

``python -m nanosgm.train``, the protocol's tasks (:mod:`nanosgm.experiments.network`) and the PyTorch reference in
``tests/`` all build their networks with these functions, so a network is set up the same way whichever
of them trains it.

    ds, clip = load_data("mnist", data_dir=None, limit=None, eval_limit=None, val_size=None)
    backend.seed(seed); model = build_model("cnn", ds)          # the initial weights come from the seed
    opt, schedule = optimizer_and_schedule(epochs, "wame", lr=None)
"""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__, backend, models
from ..optim import build_optimizer
from ..optim.schedules import StepSchedule, paper_schedule

if TYPE_CHECKING:
    from ..data import Dataset
    from ..layers import Sequential
    from ..optim import Optimizer

__all__ = ["DEFAULT_MODEL", "load_data", "build_model", "optimizer_and_schedule", "versions", "git_commit",
           "provenance", "now"]

DEFAULT_MODEL = {"mnist": "cnn", "fashion-mnist": "cnn", "cifar10": "cifar_cnn", "cifar100": "cifar_cnn"}


def load_data(dataset: str | Dataset, *, data_dir: str | Path | None = None, limit: int | None = None,
              eval_limit: int | None = None, val_size: int | None = None,
              progress: bool = True) -> tuple[Dataset, tuple[float, float] | None]:
    """(Dataset, clip): a dataset prepared for training as the paper does, and its valid input range.

    ``dataset``: a name ("mnist", "fashion-mnist", "cifar10", "cifar100") or an already loaded
    :class:`nanosgm.data.Dataset` (then ``limit`` / ``eval_limit`` cut its splits). ``val_size``: see
    :func:`nanosgm.data.load` (None: the paper's split). CIFAR is ZCA-whitened (fitted on the training
    split) and attacks are then not clipped (``clip=None``: whitened inputs have no fixed valid range);
    MNIST-like data stays in [0, 1] and adversarial images are clipped to it.
    """
    from .. import data
    if isinstance(dataset, str):
        lim = limit if eval_limit is None else {"train": limit, "val": eval_limit, "test": eval_limit}
        ds = data.load(dataset, data_dir=data_dir, limit=lim, val_size=val_size, progress=progress)
    else:
        tr, ev = slice(None, limit), slice(None, eval_limit)
        ds = dataset.replace(X_train=dataset.X_train[tr], y_train=dataset.y_train[tr], X_val=dataset.X_val[ev],
                             y_val=dataset.y_val[ev], X_test=dataset.X_test[ev], y_test=dataset.y_test[ev])
    clip: tuple[float, float] | None = (0.0, 1.0)
    if ds.name.startswith("cifar"):
        if progress:
            print("ZCA whitening (fitted on the training split) ...", flush=True)
        ds, _ = data.zca_whiten(ds)
        clip = None
    return ds, clip


def build_model(model: str | Callable[[Dataset], Sequential], ds: Dataset) -> Sequential:
    """A fresh network for dataset ``ds``: ``model`` is a name from :mod:`nanosgm.models` or a callable
    ``f(ds) -> Sequential``. Its initial weights come from the backend's generator: call
    ``backend.seed(seed)`` first."""
    if callable(model):
        return model(ds)
    kw = {"in_features": int(np.prod(ds.input_shape))} if models.ALIASES.get(model, model) in models.FLAT_INPUTS \
        else {"in_channels": ds.input_shape[0]}
    return models.build(model, num_classes=ds.num_classes, **kw)


def optimizer_and_schedule(epochs: int, optimizer: str, lr: float | None = None, *,
                           constant: bool = False) -> tuple[Optimizer, StepSchedule]:
    """The optimizer by name and its learning-rate schedule: the authors' steps (1e-3 -> 1e-4 -> 1e-5)
    scaled to the run length and to ``lr``, or ``lr`` throughout when ``constant``."""
    opt = build_optimizer(optimizer, lr=lr)
    if constant:
        return opt, StepSchedule({0: opt.lr})
    paper = paper_schedule(epochs)
    return opt, StepSchedule({e: opt.lr * r / paper.lr_at(0) for e, r in paper.milestones.items()})


def _blas_info() -> list:
    """The BLAS libraries NumPy uses, as threadpoolctl or numpy's build config describe them."""
    try:
        from threadpoolctl import threadpool_info
        return [f"{d.get('internal_api')} {d.get('version')}" for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return [f"{blas.get('name', '?')} {blas.get('version', '?')}"]
    except Exception:          # numpy < 1.25 has no mode="dicts": the BLAS stays unnamed
        return []


def _numpy_simd() -> list:
    """NumPy's x86 SIMD levels in use (its float32 exp/log/... differ in the last bit between them)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return []
    return [k for k in ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR") if __cpu_features__.get(k)]


def versions() -> dict:
    """The versions a results file records: nanosgm, Python, NumPy (and its BLAS: its CPU kernels and the
    thread count in force, None where unknown; float32 sums depend on both), SciPy, the backend."""
    import scipy
    from ..plumbing.blas import blas_kernels, blas_threads
    v = {"nanosgm": __version__, "python": platform.python_version(), "numpy": np.__version__,
         "blas": _blas_info(), "blas_kernels": blas_kernels(), "blas_threads": blas_threads(),
         "numpy_simd": _numpy_simd(),
         "scipy": scipy.__version__, "backend": backend.name(), "machine": platform.machine()}
    if backend.name() == "cupy":
        v["cupy"] = backend.xp().__version__
    return v


_COMMIT: list[str | None] = []          # the commit this process read first (its code was imported by then)


def git_commit() -> str | None:
    """The git commit of the nanosgm source in use (``+dirty`` when it has uncommitted changes), or None
    when the package is not inside a git checkout.

    Read once per process and then remembered: a long run records the commit of the code it imported,
    not whatever the checkout holds when it finishes (train_network and the audit ask when they start).
    """
    if not _COMMIT:
        _COMMIT.append(_read_git_commit())
    return _COMMIT[0]


def _read_git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def provenance(prog: str, args: Sequence[str] | None = None) -> dict:
    """Where a result came from: the command line (``prog``, e.g. "nanosgm.train", and its arguments; default
    ``sys.argv[1:]``), the git commit of the code, versions, host and the start time."""
    args = sys.argv[1:] if args is None else list(args)
    return {"command": shlex.join(["python", "-m", prog] + [str(a) for a in args]), "cwd": os.getcwd(),
            "git_commit": git_commit(), "versions": versions(), "host": platform.node(), "started": now()}
