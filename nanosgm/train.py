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

``published=True`` reproduces what the authors' public Keras code does instead (see the README): after
each weight step one more training-mode forward/backward pass computes dE/dX and throws it away; the
stored inputs never change, and the extra pass draws its own dropout masks.
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import attacks, backend, checkpoint as ckpt, recipe
from .cli import CliError, add_common_arguments, check_out_folder, common_setup, run_cli
from .layers import SoftmaxCrossEntropy
from .sgm import SmoothGradient

__all__ = ["fit", "FitResult", "TrainingDiverged", "Interrupted", "main", "epoch_seed", "EXPLODED",
           "SNAPSHOT_EPOCHS"]

EXPLODED = 1000.0           # a batch loss this many times the run's first one counts as divergence
SNAPSHOT_EPOCHS = 9         # Figures 5-6: X_t - X_0 after each of the first nine epochs


class TrainingDiverged(RuntimeError):
    """The loss or the weights became non-finite, or the loss exploded."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`; ``saved_epoch`` finished epochs are in the checkpoint on disk."""

    def __init__(self, checkpoint, saved_epoch: int):
        super().__init__(checkpoint, saved_epoch)
        self.checkpoint, self.saved_epoch = checkpoint, saved_epoch


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 32-bit seed for one epoch's randomness, derived from (seed, epoch, stream) alone."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1)[0])


@dataclass
class FitResult:
    """What :func:`fit` returns.

    ``history``: one dict per epoch: epoch (1-based), lr, train_loss, val_error_pct, test_error_pct,
    seconds, and for SGM runs input_shift_max / input_shift_mean (max and mean |X_t - X_0| over the
    training set). ``train_inputs``: X_t after the last epoch (host NumPy). ``best_epoch``: the epoch whose
    weights the model holds at the end (best validation error). ``snapshots``: Figures 5-6 data when asked.
    """
    history: list = field(default_factory=list)
    train_inputs: np.ndarray | None = None
    best_epoch: int = -1
    best_val_error_pct: float = math.nan
    snapshots: dict | None = None


@dataclass
class _Run:
    """The state of one fit() call that its helper functions share."""
    model: object
    optimizer: object
    sgm: SmoothGradient
    y: object
    result: FitResult
    best_state: dict | None = None
    loss_ref: float | None = None
    start_epoch: int = 0


def _error_pct(model, X, y):
    return None if X is None else round(100.0 - 100.0 * attacks.accuracy(model, X, y, batch_size=500), 4)


def _sig(x, digits=6):
    return float(f"{float(x):.{digits}g}")


# ------------------------------------------------------------------------------------------ the loop
def fit(model, optimizer, X_train, y_train, *, epochs: int, batch_size: int = 128, input_lr: float = 0.0,
        seed: int = 0, X_val=None, y_val=None, X_test=None, y_test=None, schedule=None, augment=None,
        per_sample: bool = False, clip=None, published: bool = False, adversarial=None, snapshot_rows: int = 0,
        callback=None, checkpoint: str | None = None, resume: bool = False, free_config_keys=("epochs",),
        progress: bool = True, log=print, config: dict | None = None) -> FitResult:
    """Train ``model`` with ``optimizer`` and, when ``input_lr != 0``, the SGM input updates (Eq. 15 / 21).

    Args:
        X_train, y_train: the training set (host or device arrays); X_train is never modified: the
            updated representation X_t lives in a :class:`nanosgm.sgm.SmoothGradient`.
        input_lr: lambda-bar; 0 is the control experiment. ``per_sample`` and ``clip``: see SmoothGradient.
        schedule: an object with ``apply(optimizer, epoch)`` (see nanosgm.schedules), or None.
        augment: ``f(X_batch, rng) -> X_aug`` applied to each batch (fresh every epoch); the input gradient
            at the augmented batch is added to the stored, un-augmented samples (Section 4, Eq. 22-35).
        published: the authors' Keras behaviour (module docstring); ``adversarial``: an object with
            ``training_pass(model, loss_fn, xb, yb, rng) -> (loss, dX or None)`` that replaces the plain
            forward/backward pass (adversarial training, nanosgm.adversarial).
        snapshot_rows: keep X_t - X_0 of the first N training images after each of the first nine epochs.
        callback: called after every epoch as ``callback(epoch, model, X_t, record)`` (X_t on the backend).
        checkpoint: path of an ``.npz`` written atomically after every epoch (:mod:`nanosgm.checkpoint`);
            ``resume=True`` continues from it if it exists; its configuration must equal ``config`` except
            for the keys in ``free_config_keys``.
    Returns a :class:`FitResult`; the model ends with the weights of its best validation epoch (its last
    epoch when there is no validation set). An epoch is logged only once its checkpoint is on disk.
    Raises :class:`TrainingDiverged` when the loss or the weights stop being finite or the loss explodes,
    and :class:`Interrupted` (a KeyboardInterrupt that says what was saved) on Ctrl-C.
    When the training set size leaves a last batch of a single sample, that sample sits out the epoch
    (batch normalisation needs two); shuffling differs every epoch, so it is a different sample each time.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    n = int(X_train.shape[0])
    if int(y_train.shape[0]) != n:
        raise ValueError(f"X_train has {n} samples but y_train has {int(y_train.shape[0])}")
    run = _Run(model, optimizer, SmoothGradient(X_train, input_lr, per_sample=per_sample, clip=clip),
               backend.to_device(np.asarray(backend.to_host(y_train)).astype(np.int64)), FitResult())
    if snapshot_rows and input_lr != 0:
        k = min(int(snapshot_rows), n)
        run.result.snapshots = {"indices": list(range(k)), "epochs": [],
                                "X0": np.array(backend.to_host(X_train[:k])), "deltas": []}
    if resume and checkpoint and os.path.exists(checkpoint):
        _resume(run, checkpoint, config, free_config_keys)
        log(f"resumed from {checkpoint}: {run.start_epoch} of {epochs} epochs done")
    X0 = backend.to_device(X_train) if input_lr != 0 else None
    try:
        for epoch in range(run.start_epoch, epochs):
            t0 = time.perf_counter()
            lr = schedule.apply(optimizer, epoch) if schedule is not None else optimizer.lr
            loss = _train_epoch(run, epoch, epochs, batch_size=batch_size, seed=seed, augment=augment,
                                published=published, adversarial=adversarial, progress=progress)
            record = {"epoch": epoch + 1, "lr": lr, "train_loss": _sig(loss),
                      "val_error_pct": _error_pct(model, X_val, y_val),
                      "test_error_pct": _error_pct(model, X_test, y_test)}
            if X0 is not None:
                record.update(_input_shift(run.sgm.X, X0))
            record["seconds"] = round(time.perf_counter() - t0, 2)
            _end_epoch(run, epoch, record, checkpoint, config)
            log(_epoch_line(record))
            if callback is not None:
                callback(epoch, model, run.sgm.X, record)
    except KeyboardInterrupt:
        raise Interrupted(checkpoint, ckpt.saved_epoch(checkpoint) if checkpoint else 0) from None
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    run.result.train_inputs = np.array(backend.to_host(run.sgm.X))
    return run.result


def _train_epoch(run, epoch, epochs, *, batch_size, seed, augment, published, adversarial, progress) -> float:
    """One pass over the shuffled training set; returns the mean training loss."""
    from tqdm.auto import tqdm
    xp = backend.xp()
    n = len(run.sgm)
    backend.seed(epoch_seed(seed, epoch, 0))                         # dropout masks of this epoch
    order = np.random.default_rng(epoch_seed(seed, epoch, 1)).permutation(n)
    aug_rng = np.random.default_rng(epoch_seed(seed, epoch, 2))
    adv_rng = np.random.default_rng(epoch_seed(seed, epoch, 3))
    loss_fn = SoftmaxCrossEntropy()
    total, count = 0.0, 0
    bar = tqdm(range(0, n, batch_size), desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
               disable=None if progress else True, leave=False, dynamic_ncols=True)   # None: off when not a terminal
    for start in bar:
        idx = order[start:start + batch_size]
        if len(idx) < 2:            # batch normalisation cannot train on one sample: skip this remainder
            continue
        idx_dev = xp.asarray(idx)
        xb = run.sgm.X[idx_dev]
        if augment is not None:
            xb = augment(xb, aug_rng)
        yb = run.y[idx_dev]
        loss = _step(run, loss_fn, xb, yb, idx_dev, published=published, adversarial=adversarial, rng=adv_rng,
                     where=f"epoch {epoch + 1}, batch {start // batch_size + 1}")
        total += loss * len(idx)
        count += len(idx)
        if progress and (start // batch_size) % 20 == 0:
            bar.set_postfix(loss=f"{total / count:.4f}")
    bar.close()
    return total / count


def _step(run, loss_fn, xb, yb, idx, *, published, adversarial, rng, where) -> float:
    """One mini-batch: forward, backward to the inputs (Eq. 14), weight step, input update (Eq. 15 / 21)."""
    model = run.model
    if adversarial is not None:
        loss, dX = adversarial.training_pass(model, loss_fn, xb, yb, rng)
        _check_loss(run, loss, where)
    else:
        loss = loss_fn.forward(model.forward(xb, training=True), yb)
        _check_loss(run, loss, where)
        dX = model.backward(loss_fn.backward())                      # Eq. 14: dE/dX of this very pass
    run.optimizer.step(model)                                        # Eq. 1-2 (WAME)
    if published:       # the authors' Keras code: dE/dX at the new weights, computed and thrown away
        attacks.input_gradient(model, xb, yb, training=True)
    elif dX is not None:
        run.sgm.update(idx, dX)                                      # Eq. 15 / 21
    return float(loss)


def _check_loss(run, loss, where) -> None:
    if run.loss_ref is None:
        run.loss_ref = float(loss)
    if not math.isfinite(loss) or loss > EXPLODED * max(run.loss_ref, 1e-3):
        what = f"became {loss}" if not math.isfinite(loss) else \
            f"exploded to {loss:.3g} (the run's first batch: {run.loss_ref:.3g})"
        raise TrainingDiverged(f"the loss {what} at {where}; lower the learning rate (--lr, now "
                               f"{run.optimizer.lr:g}) or the input learning rate (--input-lr, now "
                               f"{run.sgm.input_lr:g})")


def _check_weights(model, epoch) -> None:
    xp = backend.xp()
    for name, param, _ in model.parameters():
        if not bool(xp.isfinite(param).all()):
            raise TrainingDiverged(f"the weights {name} became non-finite in epoch {epoch + 1}; lower the "
                                   f"learning rate (--lr)")


def _input_shift(X_t, X0) -> dict:
    """How far SGM has moved the stored training set: max and mean |X_t - X_0|."""
    xp = backend.array_module(X_t)
    d = xp.abs(X_t - X0)
    return {"input_shift_max": _sig(float(d.max()), 4), "input_shift_mean": _sig(float(d.mean()), 4)}


def _end_epoch(run, epoch, record, checkpoint, config) -> None:
    """Keep the best epoch, check the weights, take the Figures 5-6 snapshot, write the checkpoint."""
    _check_weights(run.model, epoch)
    res = run.result
    res.history.append(record)
    current = run.model.state_dict()
    # keep the best validation epoch; without a validation set, the latest epoch
    if run.best_state is None or record["val_error_pct"] is None or record["val_error_pct"] < res.best_val_error_pct:
        res.best_epoch, run.best_state = epoch + 1, current
        if record["val_error_pct"] is not None:
            res.best_val_error_pct = record["val_error_pct"]
    snaps = res.snapshots
    if snaps is not None and epoch < SNAPSHOT_EPOCHS:
        k = len(snaps["indices"])
        snaps["epochs"].append(epoch + 1)
        snaps["deltas"].append(np.array(backend.to_host(run.sgm.X[:k]), dtype=np.float64) - snaps["X0"])
    if checkpoint:
        ckpt.save(checkpoint, _parts(run, epoch, current, config))


def _parts(run, epoch, current, config) -> dict:
    res = run.result
    parts = {"model": current, "optim": run.optimizer.state_dict(), "sgm": run.sgm.state_dict(),
             "best": run.best_state,
             "meta": {"epoch": epoch + 1, "best_epoch": res.best_epoch, "loss_ref": run.loss_ref,
                      "best_val_error_pct": None if math.isnan(res.best_val_error_pct) else res.best_val_error_pct,
                      "history": res.history, "config": config or {}}}
    if res.snapshots is not None:
        s = res.snapshots
        parts["snap"] = {"X0": s["X0"], "epochs": np.asarray(s["epochs"], dtype=np.int64),
                         "deltas": np.stack(s["deltas"]) if s["deltas"] else np.zeros((0,) + s["X0"].shape)}
    return parts


def _resume(run, path, config, free) -> None:
    """Restore ``run`` from the checkpoint at ``path`` (all parts checked before anything changes)."""
    import json
    parts = ckpt.load(path)
    meta = parts["meta"]
    if config is not None:
        ckpt.check_config(path, meta["config"], json.loads(json.dumps(config)), free)
    checks = ((run.model, "model", {}), (run.optimizer, "optim", {"model": run.model}), (run.sgm, "sgm", {}))
    for obj, part, kw in checks:          # every part is checked before any is loaded: all or nothing
        obj.check_state_dict(parts[part], source=path, prefix=f"{part}.", **kw)
    if parts.get("best"):
        run.model.check_state_dict(parts["best"], source=path, prefix="best.")
    for obj, part, kw in checks:
        obj.load_state_dict(parts[part], source=path, prefix=f"{part}.", **kw)
    run.best_state = parts.get("best") or None
    res = run.result
    res.history = meta["history"]
    res.best_epoch = int(meta["best_epoch"])
    res.best_val_error_pct = math.nan if meta["best_val_error_pct"] is None else float(meta["best_val_error_pct"])
    run.loss_ref = meta["loss_ref"]
    run.start_epoch = int(meta["epoch"])
    if res.snapshots is not None and "snap" in parts:
        res.snapshots["epochs"] = [int(e) for e in parts["snap"]["epochs"]]
        res.snapshots["deltas"] = list(parts["snap"]["deltas"])


def _epoch_line(r):
    parts = [f"epoch {r['epoch']:3d}", f"lr {r['lr']:.0e}", f"train loss {r['train_loss']:.4f}"]
    if r["val_error_pct"] is not None:
        parts.append(f"val error {r['val_error_pct']:.2f}%")
    if r["test_error_pct"] is not None:
        parts.append(f"test error {r['test_error_pct']:.2f}%")
    if "input_shift_max" in r:
        parts.append(f"|X_t-X_0| max {r['input_shift_max']:.2g}")
    parts.append(f"{r['seconds']:.1f}s")
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------- CLI


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m nanosgm.train",
        description="Train one of the paper's networks with the Smooth Gradient Method (or the control, "
                    "--input-lr 0), then measure clean accuracy, FGSM accuracy (Eq. 20) and PGD-10 accuracy "
                    "on the test set.")
    add_common_arguments(p, "of training")
    p.add_argument("--optimizer", default="wame", help="wame (the paper's, in the authors' published form; the "
                   "default), wame-printed (the WAME paper's printed algorithm), adam or sgd")
    p.add_argument("--lr", type=float, default=None, help="initial learning rate (default: 1e-3 for wame/adam, "
                   "0.01 for sgd); decays 10x twice, as the authors' schedule (nanosgm.schedules)")
    p.add_argument("--constant-lr", action="store_true", help="no learning-rate decay")
    p.add_argument("--per-sample", action="store_true", help="scale input updates by the batch size "
                   "(gradient of each sample's own loss) instead of the batch-mean convention")
    p.add_argument("--published", action="store_true", help="train as the authors' Keras code did: an extra "
                   "training-mode pass after each step whose input update is thrown away (inputs never move)")
    p.add_argument("--adv", default=None, choices=["fgsm", "fgsm-rs", "pgd"], help="adversarial training instead "
                   "of SGM: FGSM with the clean/adversarial loss mix (Goodfellow et al. 2015), FGSM with a random "
                   "start (Wong et al. 2020) or PGD (Madry et al. 2018); see nanosgm.adversarial")
    p.add_argument("--adv-eps", type=float, default=0.1, help="the adversarial-training budget (default 0.1)")
    p.add_argument("--adv-steps", type=int, default=7, help="PGD steps of --adv pgd (default 7)")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights, batch order and dropout (default 0)")
    p.add_argument("--val-size", type=int, default=None, metavar="N", help="validation images held out from the "
                   "end of the official training set (default: the paper's split, 10,000 for MNIST and CIFAR); "
                   "0 trains on the whole official training set and keeps the last epoch")
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>-<model>-<optimizer>-e<epochs>-ilr<input-lr>-s<seed>, "
                   "plus -n<limit>, -v<val-size>, -ps, -pub and -aug when given)")
    p.add_argument("--pgd", type=int, default=500, metavar="N", help="also run PGD (10 steps) on the first N test "
                   "images at each eps, as a check against gradient masking (0 = skip; default 500)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.npz if it exists")
    p.add_argument("--reevaluate", action="store_true", help="with --resume on a finished run: measure it again")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    return p


def default_out(args, model_name: str) -> str:
    """The run folder named after the settings that change the result, so that runs do not collide."""
    name = f"{args.dataset}-{model_name}-{args.optimizer}-e{args.epochs}-ilr{args.input_lr:g}-s{args.seed}"
    for flag, suffix in ((args.limit is not None, f"-n{args.limit}"), (args.val_size is not None, f"-v{args.val_size}"),
                         (args.per_sample, "-ps"), (args.published, "-pub"),
                         (bool(args.adv), f"-{args.adv}{args.adv_eps:g}"), (args.augment, "-aug")):
        name += suffix if flag else ""
    return os.path.join("runs", name)


def spec_from_args(args, model_name, eps_list):
    """The :class:`nanosgm.network.NetworkSpec` that ``python -m nanosgm.train``'s flags describe."""
    from .network import NetworkSpec
    return NetworkSpec(dataset=args.dataset, model=model_name, seed=args.seed, epochs=args.epochs,
                       batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, constant_lr=args.constant_lr,
                       input_lr=0.0 if (args.published or args.adv) else args.input_lr, per_sample=args.per_sample,
                       published=args.published, adversarial=(args.adv, args.adv_eps, args.adv_steps) if args.adv else None, augment=args.augment, limit=args.limit, eval_limit=args.eval_limit,
                       val_size=args.val_size, eps=tuple(eps_list), pgd=args.pgd, backend=backend.name(),
                       data_dir=args.data_dir)


RUN_FILES = ("results.json", "checkpoint.npz", "model.npz")


def _claim_folder(args, out) -> bool:
    """Decide what to do with an earlier run in ``out`` (we hold its lock); True: it is complete, leave it."""
    for tmp in glob.glob(os.path.join(out, ".tmp-*")):      # a save killed half-way (we hold the lock)
        os.remove(tmp)
    earlier = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if not earlier:
        return False
    if args.overwrite:
        for f in earlier:
            os.remove(os.path.join(out, f))
        return False
    if not args.resume:
        raise CliError(f"{out} already holds a run ({', '.join(earlier)}); use --resume to continue it, --overwrite "
                       f"to replace it, or --out to write elsewhere")
    done = os.path.exists(os.path.join(out, "results.json")) and \
        ckpt.saved_epoch(os.path.join(out, "checkpoint.npz")) >= args.epochs
    return done and not args.reevaluate


def _print_results(record) -> None:
    r = record["results"]
    k = r["pgd_images"]
    print(f"\nclean test accuracy: {r['clean_pct']:.2f}%  (best epoch {record['best_epoch']}, "
          f"training {record['train_seconds']:.0f}s, evaluation {record['eval_seconds']:.0f}s)")
    if k:
        print(f"(the last two columns: FGSM and {r['pgd_steps']}-step PGD on the first {k} test images, side by "
              f"side; PGD is the stronger attack)")
    header = f"{'eps':>8} | {'FGSM acc':>9}" + (f" | {f'first {k}: FGSM':>15} | {'PGD':>7}" if k else "")
    print(header)
    print("-" * len(header))
    for e, a in r["fgsm_pct"].items():
        line = f"{float(e):>8g} | {a:8.2f}%"
        if k:
            line += f" | {r['fgsm_pgd_images_pct'][e]:14.2f}% | {r['pgd_pct'][e]:6.2f}%"
        print(line)


def _train(args, spec, out, model_name) -> int:
    from .runlock import RunLock
    prov = recipe.provenance("nanosgm.train", args.argv)
    lock = RunLock(out)
    if os.path.isdir(out):               # hold an existing folder from the start; a new one once the data loaded
        lock.acquire()
    try:
        if lock.held and _claim_folder(args, out):
            print(f"{out} holds a finished run of {args.epochs} epoch(s) ({out}/results.json); nothing to do "
                  f"(add --reevaluate to measure it again)")
            return 0
        from .network import dataset_for
        print(dataset_for(spec, progress=not args.no_progress)[0])
        if not lock.held:
            lock.acquire()
            _claim_folder(args, out)
        return _train_locked(args, spec, out, model_name, prov)
    finally:
        lock.release()


def _what(spec) -> str:
    if spec.adversarial:
        return f" (adversarial training: {spec.adversarial[0]}, eps {spec.adversarial[1]:g})"
    if spec.published:
        return " (published: extra pass, inputs unchanged)"
    return " (control)" if spec.input_lr == 0 else " (SGM)"


def _train_locked(args, spec, out, model_name, prov) -> int:
    from .files import write_json_atomic
    from .network import train_network
    print(f"{model_name} | optimizer {args.optimizer} | input_lr {spec.input_lr:g}"
          f"{_what(spec)}"
          f" | seed {spec.seed} | backend {backend.name()} | out {out}", flush=True)
    try:
        record = train_network(spec, checkpoint=os.path.join(out, "checkpoint.npz"), resume=args.resume,
                               model_path=os.path.join(out, "model.npz"), progress=not args.no_progress, log=print)
    except Interrupted as exc:
        if exc.saved_epoch >= spec.epochs:
            raise CliError(f"interrupted during the final evaluation; training is complete in {out}/checkpoint.npz: "
                           f"run the same command with --resume to evaluate it", code=130) from None
        kept = f"epoch {exc.saved_epoch} is saved" if exc.saved_epoch else "no epoch was finished and saved yet"
        raise CliError(f"interrupted: {kept} in {out}/checkpoint.npz; run the same command with --resume to "
                       f"continue", code=130) from None
    except KeyboardInterrupt:            # during the final evaluation (fit had returned)
        raise CliError(f"interrupted during the final evaluation; training is complete in {out}/checkpoint.npz: "
                       f"run the same command with --resume to evaluate it", code=130) from None
    record.pop("snapshots", None)
    _print_results(record)
    write_json_atomic(os.path.join(out, "results.json"), {"provenance": dict(prov, finished=recipe.now()), **record})
    print(f"wrote {out}/results.json, {out}/model.npz and {out}/checkpoint.npz")
    return 0


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    eps_list, model_name = common_setup(args)
    if args.val_size is not None and args.val_size < 0:
        raise CliError(f"--val-size must be >= 0 (0: no validation split), got {args.val_size}")
    if (args.published or args.adv) and args.per_sample:
        raise CliError("--published and --adv never move the stored inputs, so --per-sample has no meaning with them")
    if args.published and args.adv:
        raise CliError("choose one of --published and --adv")
    if args.adv and (args.adv_eps <= 0 or args.adv_steps < 1):
        raise CliError("--adv-eps must be > 0 and --adv-steps >= 1")
    try:
        recipe.optimizer_and_schedule(args.epochs, args.optimizer, args.lr, constant=args.constant_lr)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    out = args.out or default_out(args, model_name)
    check_out_folder(out)
    spec = spec_from_args(args, model_name, eps_list)
    return _train(args, spec, out, model_name)


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
