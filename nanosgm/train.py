"""Training: the loop that runs the Smooth Gradient Method, and ``python -m nanosgm.train``.

One mini-batch step, in the order the paper's method needs it (Section 2):

    x = X_t[idx]                                  the batch's current representation (augmented if asked)
    E = loss(model.forward(x, training=True), y)  batch-mean softmax cross-entropy
    dE/dX = model.backward(dE/dlogits)            fills every weight gradient AND returns the input gradient (Eq. 14)
    optimizer.step(model)                         W_{t+1} = W_t - lambda * grad E (WAME by default)
    X_t[idx] += input_lr * dE/dX                  Eq. 15 / 21 (nothing when input_lr = 0: the control)

The input update uses the gradient of the same pass that produced the weight gradients, at the weights
before the step. X_t persists from epoch to epoch. Randomness in epoch e (shuffling, dropout masks,
augmentation) is derived from (seed, e) alone, so a run resumed from an end-of-epoch checkpoint finishes
with exactly the result of an uninterrupted one, and a control run and an SGM run of the same seed see the
same initial weights, batches and masks ("lock-step", Section 5).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__, attacks, backend, models
from .files import write_json_atomic
from .layers import SoftmaxCrossEntropy, load_npz, save_npz_atomic
from .optim import build_optimizer
from .schedules import StepSchedule, paper_schedule
from .sgm import SmoothGradient

__all__ = ["fit", "FitResult", "TrainingDiverged", "main", "epoch_seed", "load_data", "versions", "check_common_args",
           "add_common_arguments", "common_setup", "build_model", "optimizer_and_schedule"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 32-bit seed for one epoch's randomness, derived from (seed, epoch, stream) alone."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1)[0])


@dataclass
class FitResult:
    """What :func:`fit` returns.

    ``history``: one dict per epoch (epoch, lr, train_loss, val_error, test_error, seconds).
    ``train_inputs``: X_t after the last epoch (host NumPy), to show what SGM did to the training set.
    ``best_epoch``: the epoch whose weights the model holds at the end (best validation error).
    """
    history: list = field(default_factory=list)
    train_inputs: np.ndarray | None = None
    best_epoch: int = -1
    best_val_error: float = math.nan


def _error(model, X, y, batch_size=500):
    return 1.0 - attacks.accuracy(model, X, y, batch_size=batch_size)


def _state_arrays(prefix, d):
    return {f"{prefix}.{k}": np.asarray(v) for k, v in d.items()}


def _sub_state(state, prefix):
    n = len(prefix) + 1
    return {k[n:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def fit(model, optimizer, X_train, y_train, *, epochs: int, batch_size: int = 128, input_lr: float = 0.0,
        seed: int = 0, X_val=None, y_val=None, X_test=None, y_test=None, schedule=None, augment=None,
        per_sample: bool = False, clip=None, callback=None, checkpoint: str | None = None,
        resume: bool = False, progress: bool = True, log=print, config: dict | None = None) -> FitResult:
    """Train ``model`` with ``optimizer`` and, when ``input_lr != 0``, the SGM input updates (Eq. 15 / 21).

    Args:
        X_train, y_train: the training set (host or device arrays); X_train is never modified: the
            updated representation X_t lives in a :class:`nanosgm.sgm.SmoothGradient`.
        input_lr: lambda-bar; 0 is the control experiment. ``per_sample`` and ``clip``: see SmoothGradient.
        schedule: an object with ``apply(optimizer, epoch)`` (see nanosgm.schedules), or None.
        augment: ``f(X_batch, rng) -> X_aug`` applied to each batch (fresh every epoch); the input gradient
            at the augmented batch is added to the stored, un-augmented samples (Section 4, Eq. 22-35).
        callback: called after every epoch as ``callback(epoch, model, X_t, record)`` (X_t on the backend).
        checkpoint: path of an ``.npz`` written atomically after every epoch (model, optimizer, SGM state,
            best weights, history); ``resume=True`` continues from it if it exists.
    Returns a :class:`FitResult`; the model ends with the weights of its best validation epoch
    (its last epoch when there is no validation set). When the training set size leaves a last batch of
    a single sample, that sample sits out the epoch (batch normalisation needs two); shuffling differs
    every epoch, so it is a different sample each time.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    xp = backend.xp()
    n = int(X_train.shape[0])
    if int(y_train.shape[0]) != n:
        raise ValueError(f"X_train has {n} samples but y_train has {int(y_train.shape[0])}")
    sgm = SmoothGradient(X_train, input_lr, per_sample=per_sample, clip=clip)
    y_dev = backend.to_device(np.asarray(backend.to_host(y_train)).astype(np.int64))
    loss_fn = SoftmaxCrossEntropy()
    result = FitResult()
    best_state = None
    start_epoch = 0

    if resume and checkpoint and os.path.exists(checkpoint):
        state = load_npz(checkpoint)
        saved_cfg = json.loads(str(state["meta.config"]))
        free = ("epochs", "resume", "data_source")    # may differ between the first run and its resumption
        if config is not None and {k: v for k, v in saved_cfg.items() if k not in free} != \
                {k: v for k, v in config.items() if k not in free}:
            raise ValueError(f"{checkpoint} was written by a run with a different configuration; "
                             f"use another --out folder or drop --resume.\n saved: {saved_cfg}\n now:   {config}")
        model.load_state_dict(_sub_state(state, "model"))
        optimizer.load_state_dict(_sub_state(state, "optim"))
        sgm.load_state_dict(_sub_state(state, "sgm"))
        best = _sub_state(state, "best")
        best_state = best or None
        result.history = json.loads(str(state["meta.history"]))
        result.best_epoch = int(state["meta.best_epoch"])
        result.best_val_error = float(state["meta.best_val_error"])
        start_epoch = int(state["meta.epoch"]) + 1
        log(f"resumed from {checkpoint} after epoch {start_epoch} of {epochs}")

    from tqdm.auto import tqdm

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        lr = schedule.apply(optimizer, epoch) if schedule is not None else optimizer.lr
        backend.seed(epoch_seed(seed, epoch, 0))                         # dropout masks of this epoch
        order = np.random.default_rng(epoch_seed(seed, epoch, 1)).permutation(n)
        aug_rng = np.random.default_rng(epoch_seed(seed, epoch, 2))
        total, count = 0.0, 0
        bar = tqdm(range(0, n, batch_size), desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=None if progress else True, leave=False, dynamic_ncols=True)   # None: off when not a terminal
        for start in bar:
            idx = order[start:start + batch_size]
            if len(idx) < 2:            # batch normalisation cannot train on one sample: skip this remainder
                continue
            idx_dev = xp.asarray(idx)
            xb = sgm.X[idx_dev]
            if augment is not None:
                xb = augment(xb, aug_rng)
            yb = y_dev[idx_dev]
            loss = loss_fn.forward(model.forward(xb, training=True), yb)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss} at epoch {epoch + 1}, batch {start // batch_size + 1}; "
                    f"lower the learning rate (--lr, now {optimizer.lr:g}) or the input learning rate "
                    f"(--input-lr, now {input_lr:g})")
            dX = model.backward(loss_fn.backward())                      # Eq. 14: dE/dX of this very pass
            optimizer.step(model)                                        # Eq. 1-2 (WAME)
            sgm.update(idx_dev, dX)                                      # Eq. 15 / 21
            total += loss * len(idx)
            count += len(idx)
            if progress and (start // batch_size) % 20 == 0:
                bar.set_postfix(loss=f"{total / count:.4f}")
        bar.close()
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": total / count}
        record["val_error"] = _error(model, X_val, y_val) if X_val is not None else None
        record["test_error"] = _error(model, X_test, y_test) if X_test is not None else None
        record["seconds"] = time.perf_counter() - t0
        result.history.append(record)
        current = model.state_dict()
        # keep the best validation epoch; without a validation set, the latest epoch
        if best_state is None or record["val_error"] is None or record["val_error"] < result.best_val_error:
            result.best_epoch, best_state = epoch + 1, current
            if record["val_error"] is not None:
                result.best_val_error = record["val_error"]
        log(_epoch_line(record))
        if callback is not None:
            callback(epoch, model, sgm.X, record)
        if checkpoint:
            arrays = {}
            arrays.update(_state_arrays("model", current))
            arrays.update(_state_arrays("optim", optimizer.state_dict()))
            arrays.update(_state_arrays("sgm", sgm.state_dict()))
            arrays.update(_state_arrays("best", best_state))
            arrays["meta.epoch"] = np.array(epoch)
            arrays["meta.best_epoch"] = np.array(result.best_epoch)
            arrays["meta.best_val_error"] = np.array(result.best_val_error)
            arrays["meta.history"] = np.array(json.dumps(result.history))
            arrays["meta.config"] = np.array(json.dumps(config or {}))
            save_npz_atomic(checkpoint, arrays)

    if best_state is not None:
        model.load_state_dict(best_state)
    result.train_inputs = np.array(backend.to_host(sgm.X))
    return result


def _epoch_line(r):
    parts = [f"epoch {r['epoch']:3d}", f"lr {r['lr']:.0e}", f"train loss {r['train_loss']:.4f}"]
    if r["val_error"] is not None:
        parts.append(f"val error {100 * r['val_error']:.2f}%")
    if r["test_error"] is not None:
        parts.append(f"test error {100 * r['test_error']:.2f}%")
    parts.append(f"{r['seconds']:.1f}s")
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------- CLI
DEFAULT_MODEL = {"mnist": "cnn", "fashion-mnist": "cnn", "cifar10": "cifar_cnn", "cifar100": "cifar_cnn"}


def add_common_arguments(p, what: str) -> None:
    """The flags ``python -m nanosgm.train`` and ``python -m nanosgm.experiments`` share (``what`` names
    the thing trained, for the help texts)."""
    from .data import DATASETS
    p.add_argument("dataset", choices=sorted(DATASETS), help="which dataset")
    p.add_argument("--model", default=None, help="dnn (Table 1), cnn (Table 2) or cifar_cnn (Table 3); default: cnn "
                   "for MNIST-like data, cifar_cnn for CIFAR")
    p.add_argument("--epochs", type=int, default=5, help=f"epochs {what} (default 5; the paper trains 50)")
    p.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default 128, the authors')")
    p.add_argument("--input-lr", type=float, default=0.2, help="SGM's lambda-bar (0.2 in the paper)")
    p.add_argument("--augment", action="store_true", help="elastic distortions (MNIST) or rotation/zoom/flip (CIFAR)")
    p.add_argument("--eps", default="0.001,0.01,0.1,0.2", help="comma-separated FGSM epsilons (Eq. 20; default: the "
                   "paper's 0.001,0.01,0.1,0.2)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images (quick runs)")
    p.add_argument("--eval-limit", type=int, default=None, help="use only the first N validation and test images")
    p.add_argument("--data-dir", default=None, help="where the dataset files are (else NANOSGM_DATA, the cache, ...)")
    p.add_argument("--backend", default=None, choices=["numpy", "cupy"], help="array backend (default: "
                   "NANOSGM_BACKEND or numpy)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m nanosgm.train",
        description="Train one of the paper's networks with the Smooth Gradient Method (or the control, "
                    "--input-lr 0), then measure clean and FGSM accuracy on the test set.")
    add_common_arguments(p, "of training")
    p.add_argument("--optimizer", default="wame", help="wame (the paper's, in the authors' published form; the "
                   "default), wame-printed (the WAME paper's printed algorithm), adam or sgd")
    p.add_argument("--lr", type=float, default=None, help="initial learning rate (default: 1e-3 for wame/adam, "
                   "0.01 for sgd); decays 10x twice, as the authors' schedule (nanosgm.schedules)")
    p.add_argument("--constant-lr", action="store_true", help="no learning-rate decay")
    p.add_argument("--per-sample", action="store_true", help="scale input updates by the batch size "
                   "(gradient of each sample's own loss) instead of the batch-mean convention")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights, batch order and dropout (default 0)")
    p.add_argument("--val-size", type=int, default=None, metavar="N", help="validation images held out from the "
                   "end of the official training set (default: the paper's split, 10,000 for MNIST and CIFAR); "
                   "0 trains on the whole official training set and keeps the last epoch")
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>-<model>-<optimizer>-e<epochs>-ilr<input-lr>-s<seed>, "
                   "plus -n<limit>, -v<val-size> and -aug when given)")
    p.add_argument("--pgd", type=int, default=500, metavar="N", help="also run PGD (10 steps) on the first N test "
                   "images at each eps, as a check against gradient masking (0 = skip; default 500)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.npz if it exists")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    return p


def versions() -> dict:
    """The versions a results file records: nanosgm, Python, NumPy, SciPy, the backend (and CuPy)."""
    import scipy
    v = {"nanosgm": __version__, "python": platform.python_version(), "numpy": np.__version__,
         "scipy": scipy.__version__, "backend": backend.name(), "machine": platform.machine()}
    if backend.name() == "cupy":
        v["cupy"] = backend.xp().__version__
    return v


def load_data(dataset, *, data_dir=None, limit=None, eval_limit=None, val_size=None, progress=True):
    """(Dataset, clip): a dataset prepared for training as the paper does, and its valid input range.

    ``dataset``: a name ("mnist", "fashion-mnist", "cifar10", "cifar100") or an already loaded
    :class:`nanosgm.data.Dataset` (then ``limit`` / ``eval_limit`` cut its splits). ``val_size``: see
    :func:`nanosgm.data.load` (None: the paper's split). CIFAR is ZCA-whitened
    (fitted on the training split) and attacks are then not clipped (``clip=None``: whitened inputs have
    no fixed valid range); MNIST-like data stays in [0, 1] and adversarial images are clipped to it.
    """
    from . import data
    if isinstance(dataset, str):
        lim = limit if eval_limit is None else {"train": limit, "val": eval_limit, "test": eval_limit}
        ds = data.load(dataset, data_dir=data_dir, limit=lim, val_size=val_size, progress=progress)
    else:
        tr, ev = slice(None, limit), slice(None, eval_limit)
        ds = dataset.replace(X_train=dataset.X_train[tr], y_train=dataset.y_train[tr], X_val=dataset.X_val[ev],
                             y_val=dataset.y_val[ev], X_test=dataset.X_test[ev], y_test=dataset.y_test[ev])
    clip = (0.0, 1.0)
    if ds.name.startswith("cifar"):
        if progress:
            print("ZCA whitening (fitted on the training split) ...", flush=True)
        ds, _ = data.zca_whiten(ds)
        clip = None
    return ds, clip


def check_common_args(args):
    """(eps list, None) or (None, an error message) for the flags ``train`` and ``experiments`` share."""
    try:
        eps_list = [float(e) for e in args.eps.split(",") if e.strip()]
    except ValueError:
        return None, f"--eps must be comma-separated numbers, got {args.eps!r}"
    if not eps_list:
        return None, "--eps needs at least one value"
    if min(eps_list) < 0:
        return None, f"--eps values must be >= 0 (0 gives the clean accuracy), got {args.eps!r}"
    if args.epochs < 1:
        return None, "--epochs must be >= 1"
    if args.batch_size < 2:
        return None, "--batch-size must be >= 2 (batch normalisation needs two samples)"
    if args.limit is not None and args.limit < 2:
        return None, "--limit must be at least 2"
    if args.eval_limit is not None and args.eval_limit < 1:
        return None, "--eval-limit must be at least 1"
    return eps_list, None


def common_setup(args):
    """(eps list, model name, None) or (None, None, an error message), for ``train`` and ``experiments``:
    checks the shared flags, switches to ``--backend`` and resolves ``--model`` (default by dataset)."""
    from . import data
    eps_list, error = check_common_args(args)
    if error:
        return None, None, error
    try:
        if args.backend:
            backend.use(args.backend)
    except backend.BackendError as exc:
        return None, None, str(exc)
    model_name = args.model or DEFAULT_MODEL[data.registry.canonical_name(args.dataset)]
    if models.ALIASES.get(model_name, model_name) not in models.MODELS:
        return None, None, f"unknown model {model_name!r}; choose one of {sorted(models.MODELS)}"
    return eps_list, model_name, None


def build_model(model, ds):
    """A fresh network for dataset ``ds``: ``model`` is a name from :mod:`nanosgm.models` or a callable
    ``f(ds) -> Sequential``. Its initial weights come from the backend's generator: call
    ``backend.seed(seed)`` first."""
    if callable(model):
        return model(ds)
    kw = {"in_features": int(np.prod(ds.input_shape))} if models.ALIASES.get(model, model) == "dnn" \
        else {"in_channels": ds.input_shape[0]}
    return models.build(model, num_classes=ds.num_classes, **kw)


def optimizer_and_schedule(epochs: int, optimizer: str, lr=None, *, constant: bool = False):
    """The optimizer by name and its learning-rate schedule: the authors' steps (1e-3 -> 1e-4 -> 1e-5)
    scaled to the run length and to ``lr``, or ``lr`` throughout when ``constant``."""
    opt = build_optimizer(optimizer, lr=lr)
    if constant:
        return opt, StepSchedule({0: opt.lr})
    paper = paper_schedule(epochs)
    return opt, StepSchedule({e: opt.lr * r / paper.lr_at(0) for e, r in paper.milestones.items()})


def default_out(args, model_name: str) -> str:
    """The run folder named after the settings that change the result, so that runs do not collide."""
    name = f"{args.dataset}-{model_name}-{args.optimizer}-e{args.epochs}-ilr{args.input_lr:g}-s{args.seed}"
    if args.limit is not None:
        name += f"-n{args.limit}"
    if args.val_size is not None:
        name += f"-v{args.val_size}"
    if args.augment:
        name += "-aug"
    return os.path.join("runs", name)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from . import data
    from .data import DataError

    def fail(msg):
        print(f"error: {msg}", file=sys.stderr)
        return 1

    eps_list, model_name, error = common_setup(args)
    if error:
        return fail(error)
    if args.val_size is not None and args.val_size < 0:
        return fail(f"--val-size must be >= 0 (0: no validation split), got {args.val_size}")
    try:
        opt, schedule = optimizer_and_schedule(args.epochs, args.optimizer, args.lr, constant=args.constant_lr)
    except ValueError as exc:
        return fail(str(exc))
    out = args.out or default_out(args, model_name)
    earlier = [f for f in ("results.json", "checkpoint.npz") if os.path.exists(os.path.join(out, f))]
    if earlier and not (args.resume or args.overwrite):
        return fail(f"{out} already holds a run ({', '.join(earlier)}); use --resume to continue it, --overwrite "
                    f"to replace it, or --out to write elsewhere")
    progress = not args.no_progress

    try:
        ds, clip = load_data(args.dataset, data_dir=args.data_dir, limit=args.limit, eval_limit=args.eval_limit,
                             val_size=args.val_size, progress=progress)
    except (DataError, ValueError) as exc:
        return fail(str(exc))
    print(ds)

    backend.seed(args.seed)                # the initial weights: identical for control and SGM runs
    try:
        model = build_model(model_name, ds)
    except ValueError as exc:
        return fail(str(exc))
    os.makedirs(out, exist_ok=True)        # only now: a run that fails on its flags or data leaves no folder
    X_val, y_val = (ds.X_val, ds.y_val) if len(ds.X_val) else (None, None)     # --val-size 0: no validation
    augment = data.augmenter_for(ds.name) if args.augment else None
    config = {"dataset": ds.name, "model": model_name, "epochs": args.epochs, "batch_size": args.batch_size,
              "optimizer": args.optimizer, "lr": opt.lr, "schedule": {str(k): v for k, v in schedule.milestones.items()},
              "input_lr": args.input_lr, "per_sample": args.per_sample, "augment": args.augment,
              "seed": args.seed, "limit": args.limit, "eval_limit": args.eval_limit, "val_size": len(ds.X_val),
              "backend": backend.name(),
              "data_source": ds.source}
    print(f"{model_name}: {model.num_params():,} parameters | optimizer {args.optimizer} | lr {schedule.describe(args.epochs)} "
          f"| input_lr {args.input_lr:g}{' (control)' if args.input_lr == 0 else ' (SGM)'} | backend {backend.name()} "
          f"| out {out}", flush=True)

    t0 = time.perf_counter()
    try:
        res = fit(model, opt, ds.X_train, ds.y_train, epochs=args.epochs, batch_size=args.batch_size,
                  input_lr=args.input_lr, seed=args.seed, X_val=X_val, y_val=y_val, X_test=ds.X_test,
                  y_test=ds.y_test, schedule=schedule, augment=augment, per_sample=args.per_sample,
                  checkpoint=os.path.join(out, "checkpoint.npz"), resume=args.resume, progress=progress,
                  config=config)
    except TrainingDiverged as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print(f"\ninterrupted: the last finished epoch is saved in {out}/checkpoint.npz; "
              f"run the same command with --resume to continue", file=sys.stderr)
        return 130
    train_seconds = time.perf_counter() - t0

    print(f"evaluating the best epoch ({res.best_epoch}) on the test set ...", flush=True)
    clean = attacks.accuracy(model, ds.X_test, ds.y_test)
    fgsm_acc = attacks.evaluate(model, ds.X_test, ds.y_test, eps_list, "fgsm", clip=clip, progress=progress)
    pgd_acc, fgsm_sub = {}, {}
    k = min(args.pgd, len(ds.X_test))
    if k > 0:    # PGD on a subset, with FGSM on the same images beside it so the two compare
        pgd_acc = attacks.evaluate(model, ds.X_test[:k], ds.y_test[:k], eps_list, "pgd", clip=clip,
                                   progress=progress, rng=args.seed)
        fgsm_sub = attacks.evaluate(model, ds.X_test[:k], ds.y_test[:k], eps_list, "fgsm", clip=clip, progress=False)
    eval_seconds = time.perf_counter() - t0 - train_seconds

    print(f"\nclean test accuracy: {100 * clean:.2f}%  (best epoch {res.best_epoch}, "
          f"training {train_seconds:.0f}s, evaluation {eval_seconds:.0f}s)")
    if pgd_acc:
        print(f"(the last two columns: FGSM and 10-step PGD on the first {k} test images, side by side; "
              f"PGD is the stronger attack)")
    header = f"{'eps':>8} | {'FGSM acc':>9}" + (f" | {f'first {k}: FGSM':>15} | {'PGD-10':>7}" if pgd_acc else "")
    print(header)
    print("-" * len(header))
    for e in eps_list:
        line = f"{e:>8g} | {100 * fgsm_acc[e]:8.2f}%"
        if pgd_acc:
            line += f" | {100 * fgsm_sub[e]:14.2f}% | {100 * pgd_acc[e]:6.2f}%"
        print(line)

    results = {"config": config, "versions": versions(), "history": res.history, "best_epoch": res.best_epoch,
               "results": {"clean_accuracy": clean, "fgsm_accuracy": {str(e): a for e, a in fgsm_acc.items()},
                           "pgd_accuracy": {str(e): a for e, a in pgd_acc.items()}, "pgd_images": k if pgd_acc else 0,
                           "fgsm_accuracy_pgd_images": {str(e): a for e, a in fgsm_sub.items()},
                           "train_seconds": train_seconds, "eval_seconds": eval_seconds}}
    write_json_atomic(os.path.join(out, "results.json"), results)
    model.save(os.path.join(out, "model.npz"))
    print(f"wrote {out}/results.json, {out}/model.npz and {out}/checkpoint.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
