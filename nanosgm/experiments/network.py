"""One network = one task: train it from a plain spec and measure it, the same way everywhere.

``python -m nanosgm.train`` trains one :class:`NetworkSpec`; ``python -m nanosgm.experiments`` trains many
(in this process, in worker processes, or on a Dask cluster). Both call :func:`train_network`, so a
network's record depends on its spec alone, given the BLAS thread count and the CPU kernels (float32 sums
depend on both; the record's ``versions`` says which it ran with), and clean / FGSM / PGD accuracy is
measured by one function, :func:`measure`.

    spec = NetworkSpec(dataset="mnist", model="cnn", seed=0, epochs=10, method="sgm:0.2")
    record = train_network(spec, checkpoint="runs/x/checkpoint.npz", model_path="runs/x/model.npz")
    record["results"]["fgsm_pct"]["0.1"]          # accuracy (%) under FGSM at eps = 0.1

What a spec trains is its ``method``, a label of the arm grammar (:mod:`nanosgm.methods.arms`): "control",
"sgm:0.2", "sgm:0.2:per-sample", "published", "fgsm-at:0.1", "fgsm-rs:0.1", "pgd-at:0.1:7".
Accuracies in a record are percentages (as the terminal prints them), rounded to 4 decimals. ``results``
measures the weights of the best validation epoch (the weights saved), ``results_last_epoch`` those of the
last epoch (the same numbers when the last epoch is the best); ``weights_sha256`` and ``weights_sha256_last``
are the digests of those two sets of weights (:func:`weights_digest`; records made before the field existed
lack them). A spec with ``evaluate=False`` (a refill checked by those digests) measures nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .. import attacks, backend
from ..methods import RunKeeping, fit, parse_arm
from . import recipe

if TYPE_CHECKING:
    from ..data import Dataset
    from ..layers import Sequential
    from ..layers.base import Array
    from ..methods import FitResult

__all__ = ["NetworkSpec", "train_network", "measure", "fgsm_watch", "weights_digest", "pct", "dataset_for",
           "RECORD_FORMAT"]

RECORD_FORMAT = "nanosgm-network/2"     # the spec names its method; FGSM both ways; the last epoch too
# PGD's random starts are drawn batch by batch from one seeded generator, so the batch size is part of the
# measurement; it is one fixed number so that every record's PGD accuracies are measured alike.
PGD_BATCH = 500


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """Everything that determines one trained network and its measurements (plain and picklable).

    ``data_dir`` says where the files are, not what they are (checksums pin the data), so it is not part
    of :meth:`identity`; nor is ``progress``-like presentation. ``eps``: FGSM/PGD budgets (Eq. 20);
    ``pgd``: PGD on the first N test images (0 = none) with ``pgd_steps`` steps; ``snapshot_rows``: keep
    X_t - X_0 of the first N training images after each of the first nine epochs (Figures 5-6).
    ``method``: the training method's label in the arm grammar (stored as its canonical spelling).
    ``watch_every``: every N epochs, FGSM accuracy on the validation split under both conventions, in the
    epoch's history record (:func:`fgsm_watch`; 0 = never, and then not part of :meth:`identity`, so specs
    from before the field existed keep their identity).
    ``evaluate``: measure the trained network (:func:`measure`); False trains it for its weights alone (a
    refill whose record names the weights' digests), and is then part of :meth:`identity`.
    ``dataset`` and ``model`` are names, or (for tests and experiments of your own) module-level functions
    ``f() -> Dataset`` and ``f(ds) -> Sequential``, which pickle by name into worker processes.
    """
    dataset: str = "mnist"
    model: str = "cnn"
    seed: int = 0
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "wame"
    lr: float | None = None
    constant_lr: bool = False
    method: str = "control"
    augment: bool = False
    limit: int | None = None
    eval_limit: int | None = None
    val_size: int | None = None
    eps: tuple = attacks.PAPER_EPS
    pgd: int = 0
    pgd_steps: int = 10
    snapshot_rows: int = 0
    watch_every: int = 0
    evaluate: bool = True
    backend: str = "numpy"
    data_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", tuple(float(e) for e in self.eps))
        object.__setattr__(self, "method", parse_arm(self.method).label)

    def identity(self) -> dict:
        """The fields that change the result, as plain JSON-able values."""
        d = dataclasses.asdict(self)
        d.pop("data_dir")
        if not d["watch_every"]:
            d.pop("watch_every")
        if d["evaluate"]:
            d.pop("evaluate")
        d["dataset"], d["model"] = _name(self.dataset), _name(self.model)
        d["eps"] = list(d["eps"])
        return d

    def with_(self, **changes) -> "NetworkSpec":
        return dataclasses.replace(self, **changes)


def _name(x: object) -> str:
    return x if isinstance(x, str) else getattr(x, "__name__", type(x).__name__)


def pct(fraction: float) -> float:
    """A fraction as a percentage without float noise: 0.9933 -> 99.33."""
    return round(100.0 * float(fraction), 4)


def weights_digest(model: Sequential) -> str:
    """sha256 of every parameter and buffer: equal digests = identical weights (the lock-step check)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


_DATA: dict[tuple[object, ...], tuple[Dataset, tuple[float, float] | None]] = {}


def dataset_for(spec: NetworkSpec, progress: bool = False) -> tuple[Dataset, tuple[float, float] | None]:
    """(Dataset, clip) for ``spec``, loaded once per process and shared by every spec with the same data."""
    key = (spec.dataset, spec.data_dir, spec.limit, spec.eval_limit, spec.val_size)
    if key not in _DATA:
        _DATA.clear()                      # one dataset per process at a time
        source = spec.dataset() if callable(spec.dataset) else spec.dataset
        _DATA[key] = recipe.load_data(source, data_dir=spec.data_dir, limit=spec.limit,
                                      eval_limit=spec.eval_limit, val_size=spec.val_size, progress=progress)
    return _DATA[key]


def measure(model: Sequential, ds: Dataset, clip: tuple[float, float] | None, eps: Iterable[float], *, pgd: int = 0,
            pgd_steps: int = 10, seed: int = 0, progress: bool = False) -> dict:
    """The paper's measures of a trained network on the test set, in percent.

    ``clean_pct`` (Table 4), ``fgsm_pct`` {eps: %} on the whole test set (Table 5, Eq. 20) measured the
    "inference" way, and when ``pgd > 0``: PGD-``pgd_steps`` on the first ``pgd`` test images
    (``pgd_pct``) with FGSM on the same images beside it (``fgsm_pgd_images_pct``), so that the two
    attacks compare; then ``fgsm_authors_pct``: FGSM on the whole test set measured the way the
    authors' scripts did (:mod:`nanosgm.attacks.conventions`), its dropout draws seeded by
    ``fgsm_authors_seed`` (= ``seed``). Keys are ``repr(eps)``. PGD runs in batches of :data:`PGD_BATCH`
    with one generator seeded by ``seed``.
    """
    eps = [float(e) for e in eps]
    out = {"clean_pct": pct(attacks.accuracy(model, ds.X_test, ds.y_test)),
           "fgsm_pct": _keyed(attacks.evaluate(model, ds.X_test, ds.y_test, eps, "fgsm", clip=clip,
                                               progress=progress))}
    k = min(int(pgd), len(ds.X_test))
    out["pgd_images"] = k
    if k > 0:
        X, y = ds.X_test[:k], ds.y_test[:k]
        out["pgd_steps"] = int(pgd_steps)
        out["pgd_pct"] = _keyed(attacks.evaluate(model, X, y, eps, "pgd", PGD_BATCH, clip=clip, progress=progress,
                                                 steps=int(pgd_steps), rng=seed))
        out["fgsm_pgd_images_pct"] = _keyed(attacks.evaluate(model, X, y, eps, "fgsm", clip=clip, progress=False))
    out["fgsm_authors_pct"] = _keyed(attacks.fgsm_accuracy(model, ds.X_test, ds.y_test, eps, "authors", clip=clip,
                                                           seed=seed))
    out["fgsm_authors_seed"] = int(seed)
    return out


def fgsm_watch(every: int, X: Array, y: Array, eps: Iterable[float], clip: tuple[float, float] | None,
               seed: int) -> Callable:
    """``watch(epoch, model)`` for :class:`~nanosgm.methods.RunKeeping`: after every ``every``-th epoch, FGSM
    accuracy (%) on (X, y) at each eps under both conventions (:mod:`nanosgm.attacks.conventions`; the
    authors' dropout draws seeded by ``seed``), as ``{"val_fgsm_pct": {repr(eps): %}, "val_fgsm_authors_pct":
    {...}}``; after the other epochs, ``{}``. The conventions leave the weights and the running statistics
    as they were, so a watched run trains exactly as an unwatched one."""
    eps = [float(e) for e in eps]

    def watch(epoch: int, model: Sequential) -> dict:
        if (epoch + 1) % every:
            return {}
        return {"val_fgsm_pct": _keyed(attacks.fgsm_accuracy(model, X, y, eps, "inference", clip=clip)),
                "val_fgsm_authors_pct": _keyed(attacks.fgsm_accuracy(model, X, y, eps, "authors", clip=clip,
                                                                     seed=seed))}
    return watch


def _keyed(acc: dict) -> dict:
    return {repr(float(e)): pct(a) for e, a in acc.items()}


def _watch_for(spec: NetworkSpec, ds: Dataset, clip: tuple[float, float] | None) -> Callable | None:
    """The spec's FGSM watch on the validation split (None without ``watch_every`` or a validation split)."""
    if not spec.watch_every or not len(ds.X_val):
        return None
    return fgsm_watch(spec.watch_every, ds.X_val, ds.y_val, spec.eps, clip, spec.seed)


def train_network(spec: NetworkSpec, *, checkpoint: str | None = None, resume: bool = True,
                  model_path: str | None = None, progress: bool = False, log: Callable[[str], None] | None = None,
                  config_free: Iterable[str] = ("epochs",)) -> dict:
    """Train the network ``spec`` describes, measure it (unless ``spec.evaluate`` is False: then ``results``
    is {} and ``results_last_epoch`` names only the epoch), and return its record (a JSON-able dict, plus
    ``"snapshots"`` with arrays when ``spec.snapshot_rows``).

    ``checkpoint``: fit's end-of-epoch checkpoint (resumed from when ``resume`` and it exists);
    ``model_path``: where to save the final weights (the best validation epoch). ``log``: one line per
    epoch (None: silent). Raises what :func:`nanosgm.methods.fit` raises (TrainingDiverged, ...).
    """
    if backend.name() != spec.backend:
        backend.use(spec.backend)
    started, commit = recipe.now(), recipe.git_commit()      # the code in use: read before training
    ds, clip = dataset_for(spec, progress=progress)
    backend.seed(spec.seed)                    # the initial weights: identical for every arm of a seed
    model = recipe.build_model(spec.model, ds)
    init_digest = weights_digest(model)
    opt, schedule = recipe.optimizer_and_schedule(spec.epochs, spec.optimizer, spec.lr, constant=spec.constant_lr)
    from .. import data
    augment = data.augmenter_for(ds.name) if spec.augment else None
    validation = (ds.X_val, ds.y_val) if len(ds.X_val) else None      # val_size 0: no validation
    config = dict(spec.identity(), data_source=ds.source)
    free = tuple(config_free) + ("data_source", "evaluate")      # neither changes the training
    keeping = RunKeeping(checkpoint=checkpoint, resume=resume, config=config, free_config_keys=free,
                         test=(ds.X_test, ds.y_test),
                         snapshot_rows=spec.snapshot_rows, progress=progress, log=log,
                         watch=_watch_for(spec, ds, clip))
    res = fit(model, opt, ds.X_train, ds.y_train, epochs=spec.epochs, method=parse_arm(spec.method, clip=clip),
              batch_size=spec.batch_size, seed=spec.seed, schedule=schedule, augment=augment, validation=validation,
              keeping=keeping)
    t0 = time.perf_counter()
    last = res.history[-1]["epoch"]
    results, results_last, digests = _best_and_last(model, res, ds, clip, spec, model_path, progress)
    eval_seconds = time.perf_counter() - t0
    record = {"format": RECORD_FORMAT, "spec": spec.identity(), "data_source": ds.source,
              "n_train": int(len(ds.X_train)), "n_test": int(len(ds.X_test)), "init_sha256": init_digest,
              "schedule": schedule.describe(spec.epochs), "history": res.history, "best_epoch": res.best_epoch,
              **digests, "results": results, "results_last_epoch": dict(results_last, epoch=last),
              "train_seconds": round(sum(h["seconds"] for h in res.history), 1),
              "eval_seconds": round(eval_seconds, 1), "started": started, "finished": recipe.now(),
              "git_commit": commit, "versions": recipe.versions()}
    if res.snapshots:
        record["snapshots"] = res.snapshots
    return record


def _best_and_last(model: Sequential, res: FitResult, ds: Dataset, clip: tuple[float, float] | None,
                   spec: NetworkSpec, model_path: str | None, progress: bool) -> tuple[dict, dict, dict]:
    """Measure and save the best epoch's weights (those fit leaves in ``model``), then measure the last
    epoch's: (results, the last epoch's results, {"weights_sha256": digest of the saved weights,
    "weights_sha256_last": of the last epoch's}). Without ``spec.evaluate`` the results are {}."""
    measured: dict[str, Any] = dict(pgd=spec.pgd, pgd_steps=spec.pgd_steps, seed=spec.seed, progress=progress)

    def results_now() -> dict:
        return measure(model, ds, clip, spec.eps, **measured) if spec.evaluate else {}

    results = results_now()
    best = weights_digest(model)
    if model_path:
        model.save(model_path)
    if res.history[-1]["epoch"] == res.best_epoch:
        return results, results, {"weights_sha256": best, "weights_sha256_last": best}
    model.load_state_dict(cast(dict, res.last_state))       # set by every finished epoch
    return results, results_now(), {"weights_sha256": best, "weights_sha256_last": weights_digest(model)}
