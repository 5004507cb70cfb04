"""The training loop: one function, :func:`fit`, the same for every training method.

One mini-batch step, in the order the paper's method needs it (Section 2):

    x = X[idx]                                    the batch's current representation (augmented if asked)
    E = loss(model.forward(x, training=True), y)  batch-mean softmax cross-entropy      } method.training_pass
    dE/dX = model.backward(dE/dlogits)            every weight gradient AND dE/dX (Eq. 14) }
    optimizer.step(model)                         W_{t+1} = W_t - lambda * grad E (WAME, Eq. 1-5)
    method.after_step(...)                        SGM: X_t[idx] += lambda_bar * dE/dX (Eq. 15 / 21)

For SGM, ``X`` is the stored training set X_t that the method owns and moves; the input update uses the
gradient of the same pass that produced the weight gradients, at the weights before the step, and X_t
persists from epoch to epoch. The methods (control, SGM, the authors' published code path, adversarial
training) are in :mod:`nanosgm.methods`.

Randomness in epoch e (shuffling, dropout masks, augmentation, a method's own draws) is derived from
(seed, e) alone, so a run resumed from an end-of-epoch checkpoint finishes with exactly the result of an
uninterrupted one, and two methods trained with the same seed see the same initial weights, batches and
masks ("lock-step", Section 5).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from ..attacks.checks import deferred_input_checks
from ..backend import host_floats
from ..layers import SoftmaxCrossEntropy
from ..optim.base import refuse_nested
from ..plumbing.errors import TrainingDiverged
from .base import Method, significant
from .keeping import FitResult, Interrupted, RunKeeping, Run, end_epoch, epoch_line, error_pct, start_run

if TYPE_CHECKING:
    from tqdm.auto import tqdm

    from ..layers import Sequential
    from ..layers.base import Array
    from ..optim import Optimizer, StepSchedule

__all__ = ["fit", "FitResult", "RunKeeping", "TrainingDiverged", "Interrupted", "epoch_seed", "EXPLODED"]

EXPLODED = 1000.0           # a batch loss this many times the run's first one counts as divergence
CHECK_EVERY = 50            # on a device: steps between reads of the batch losses (divergence check, progress)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 32-bit seed for one epoch's randomness, derived from (seed, epoch, stream) alone."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1)[0])


def fit(model: Sequential, optimizer: Optimizer, X_train: Array, y_train: Array, *, epochs: int,
        method: Method | None = None, batch_size: int = 128, seed: int = 0, schedule: StepSchedule | None = None,
        augment: Callable[[Array, np.random.Generator], Array] | None = None,
        validation: tuple[Array, Array] | None = None, keeping: RunKeeping | None = None) -> FitResult:
    """Train ``model`` with ``optimizer`` for ``epochs`` epochs by ``method`` (default: the control).

    Args:
        X_train, y_train: the training set (host or device arrays); X_train is never modified (SGM moves
            its own copy, X_t).
        method: a :class:`~nanosgm.methods.base.Method` (``SGM(0.2)``, ``AdversarialTraining("pgd", 0.1)``,
            ... or ``parse_arm("sgm:0.2")``); None trains plainly (the control).
        schedule: an object with ``apply(optimizer, epoch) -> lr`` (:mod:`nanosgm.optim.schedules`), or None.
        augment: ``f(X_batch, rng) -> X_aug`` applied to each batch (fresh every epoch); SGM adds the input
            gradient at the augmented batch to the stored, un-augmented samples (Section 4, Eq. 22-35).
        validation: (X_val, y_val): the model ends with the weights of the epoch with the lowest
            validation error (without it: the last epoch).
        keeping: what is kept and reported besides the weights (checkpoints, resuming, per-epoch test
            error, Figures 5-6 snapshots, a callback, progress and log lines): a :class:`RunKeeping`.
    Returns a :class:`FitResult`. An epoch is logged only once its checkpoint is on disk. Raises
    :class:`TrainingDiverged` when the loss or the weights stop being finite or the loss explodes, and
    :class:`Interrupted` (a KeyboardInterrupt that says what was saved) on Ctrl-C. On a device backend a
    step reads nothing back: the batch losses are read, checked and summed every ``CHECK_EVERY`` steps
    and at the epoch's end (so a divergence is reported up to ``CHECK_EVERY`` - 1 steps late, naming the
    batch where it happened), and each batch's labels are checked on a host copy of ``y_train``.
    When the training set size leaves a last batch of a single sample, that sample sits out the epoch
    (batch normalisation needs two); shuffling differs every epoch, so it is a different sample each time.

    >>> import numpy as np, nanosgm
    >>> from nanosgm.methods import SGM, RunKeeping
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.uniform(0, 1, (64, 6)).astype(np.float32), rng.integers(0, 2, 64)
    >>> model = nanosgm.Sequential([nanosgm.Dense(6, 8), nanosgm.ReLU(), nanosgm.Dense(8, 2)])
    >>> result = nanosgm.fit(model, nanosgm.WAME(), X, y, epochs=2, method=SGM(0.2), batch_size=16,
    ...                      keeping=RunKeeping(progress=False, log=None))
    >>> [r["epoch"] for r in result.history], result.history[-1]["input_shift_max"] > 0
    ([1, 2], True)
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    refuse_nested(model)                 # before any work: the optimizer would refuse it at the first step
    run = start_run(model, optimizer, method or Method(), X_train, y_train, keeping or RunKeeping(), epochs)
    keep = run.keeping
    X_val, y_val = validation if validation is not None else (None, None)
    X_test, y_test = keep.test if keep.test is not None else (None, None)
    y_host = np.asarray(backend.to_host(y_train)).astype(np.int64)   # each batch's labels checked here
    try:
        for epoch in range(run.start_epoch, epochs):
            t0 = time.perf_counter()
            lr = schedule.apply(optimizer, epoch) if schedule is not None else optimizer.lr
            loss = _train_epoch(run, epoch, epochs, batch_size=batch_size, seed=seed, augment=augment, y_host=y_host)
            record = {"epoch": epoch + 1, "lr": lr, "train_loss": significant(loss),
                      "val_error_pct": error_pct(model, X_val, y_val),
                      "test_error_pct": error_pct(model, X_test, y_test)}
            record.update(run.method.epoch_record())
            record["seconds"] = round(time.perf_counter() - t0, 2)
            _check_weights(model, epoch)
            if keep.watch is not None:               # measured after the epoch's seconds, before its checkpoint
                record.update(keep.watch(epoch, model))
            end_epoch(run, epoch, record)
            keep.say(epoch_line(record))
            if keep.callback is not None:
                keep.callback(epoch, model, run.X, record)
    except KeyboardInterrupt:
        raise Interrupted.after(keep.checkpoint) from None
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    run.result.train_inputs = np.array(backend.to_host(run.X))
    return run.result


def _train_epoch(run: Run, epoch: int, epochs: int, *, batch_size: int, seed: int,
                 augment: Callable[[Array, np.random.Generator], Array] | None, y_host: np.ndarray) -> float:
    """One pass over the shuffled training set; returns the mean training loss. ``y_host``: the labels
    on the host, where each batch's are checked (no device read)."""
    from tqdm.auto import tqdm
    xp = backend.xp()
    n = int(run.X.shape[0])
    backend.seed(epoch_seed(seed, epoch, 0))                         # dropout masks of this epoch
    order = np.random.default_rng(epoch_seed(seed, epoch, 1)).permutation(n)
    aug_rng = np.random.default_rng(epoch_seed(seed, epoch, 2))
    method_rng = np.random.default_rng(epoch_seed(seed, epoch, 3))   # e.g. adversarial training's random starts
    loss_fn = SoftmaxCrossEntropy(loss_on_device=True)
    bar = tqdm(range(0, n, batch_size), desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
               disable=None if run.keeping.progress else True, leave=False, dynamic_ncols=True)   # None: off when not a terminal
    losses = LossTally(run, bar if run.keeping.progress else None, every=1 if xp is np else CHECK_EVERY)
    try:
        for start in bar:
            idx = order[start:start + batch_size]
            if len(idx) < 2:        # batch normalisation cannot train on one sample: skip this remainder
                continue
            idx_dev = xp.asarray(idx)
            xb = run.X[idx_dev]
            if augment is not None:
                xb = augment(xb, aug_rng)
            yb, y_batch = run.y[idx_dev], y_host[idx]
            loss_fn.known_labels(yb, (int(y_batch.min()), int(y_batch.max())))   # from the host: no read
            _step(run, loss_fn, xb, yb, idx_dev, method_rng, losses,
                  where=f"epoch {epoch + 1}, batch {start // batch_size + 1}")
    except Exception:
        losses.read()               # a divergence not read yet comes first: it explains what failed after it
        raise
    losses.read()
    bar.close()
    return losses.total / losses.count


def _step(run: Run, loss_fn: SoftmaxCrossEntropy, xb: Array, yb: Array, idx: Array, rng: np.random.Generator,
          losses: LossTally, *, where: str) -> None:
    """One mini-batch: the method's pass (forward, backward to the inputs: Eq. 14), the weight step,
    then what the method does after it (SGM: Eq. 15 / 21). The loss goes to ``losses`` (checked there),
    and so do the input checks of the attacks an adversarial-training pass runs on device arrays."""
    with deferred_input_checks() as inputs:
        loss, dX = run.method.training_pass(run.model, loss_fn, xb, yb, rng)
    losses.add(loss, len(idx), where, inputs)
    run.optimizer.step(run.model)                                    # Eq. 1-2 (WAME)
    run.method.after_step(run.model, loss_fn, idx, xb, yb, dX)


class LossTally:
    """The epoch's batch losses, summed on the host in batch order, read from the device ``every`` steps.

    On NumPy (``every`` 1) each loss is checked as it comes, before the weight step, as it always was. On a
    device the losses stay there (0-d arrays) until ``every`` of them wait, or the epoch ends; then one read
    brings them back, and each is checked and added in batch order: the same sum, the same error (naming
    the batch where it happened) as one read a step would give, ``every`` - 1 steps later at most. A batch's
    deferred input checks (:class:`~nanosgm.attacks.checks.deferred_input_checks`: an attack's inputs
    finite and inside its clip range) come back in the same read and are settled before its loss is
    checked, as the attack checked them before it ran."""

    def __init__(self, run: Run, bar: tqdm | None, every: int) -> None:
        self.run, self.bar, self.every = run, bar, every
        self.total, self.count = 0.0, 0
        self.pending: list = []             # (loss, batch size, where, deferred input checks) not yet read

    def add(self, loss: float | Array, count: int, where: str, inputs: deferred_input_checks | None = None) -> None:
        """One batch's loss (a float or a 0-d device array), its size and its deferred input checks."""
        self.pending.append((loss, count, where, inputs or deferred_input_checks()))
        if len(self.pending) >= self.every:
            self.read()

    def read(self) -> None:
        """Bring the waiting losses and input bounds to the host (one read); per batch, in order, settle the
        input checks, then check the loss; add the losses up, show the running mean."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        values = host_floats([loss for loss, _, _, _ in pending] +
                             [v for _, _, _, inputs in pending for v in inputs.values()])
        bounds = iter(values[len(pending):])
        for value, (_, count, where, inputs) in zip(values, pending):
            inputs.settle(bounds)
            _check_loss(self.run, value, where)
            self.total += value * count
            self.count += count
        if self.bar is not None:            # the running mean so far, shown at the bar's next refresh
            self.bar.set_postfix(loss=f"{self.total / self.count:.4f}", refresh=False)


def _check_loss(run: Run, loss: float, where: str) -> None:
    if run.loss_ref is None:
        run.loss_ref = float(loss)
    if not math.isfinite(loss) or loss > EXPLODED * max(run.loss_ref, 1e-3):
        what = f"became {loss}" if not math.isfinite(loss) else \
            f"exploded to {loss:.3g} (the run's first batch: {run.loss_ref:.3g})"
        raise TrainingDiverged(f"the loss {what} at {where}; lower the learning rate (--lr, now "
                               f"{run.optimizer.lr:g}){run.method.divergence_hint()}")


def _check_weights(model: Sequential, epoch: int) -> None:
    xp = backend.xp()
    for name, param, _ in model.parameters():
        if not bool(xp.isfinite(param).all()):
            raise TrainingDiverged(f"the weights {name} became non-finite in epoch {epoch + 1}; lower the "
                                   f"learning rate (--lr)")
