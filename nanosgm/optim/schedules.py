"""Learning-rate schedules: the lambda of Eq. 1-2 as a function of the epoch.

Epochs are counted from 0. A schedule only computes numbers; the training loop calls
`schedule.apply(optimizer, epoch)` (which sets `optimizer.lr`) at the start of each epoch.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Optimizer

__all__ = ["StepSchedule", "paper_schedule", "PAPER_EPOCHS", "PAPER_BATCH_SIZE", "PAPER_LRS",
           "PAPER_MILESTONES", "MIN_EPOCHS_AT_FIRST_RATE"]

# The authors' training setting (not stated in the paper's text; see paper_schedule).
PAPER_EPOCHS = 50                   # the authors' training length
PAPER_BATCH_SIZE = 128
PAPER_LRS = (1e-3, 1e-4, 1e-5)      # WAME's lambda: 1e-3, then 1e-4 from epoch 10, then 1e-5 from epoch 20
PAPER_MILESTONES = (10, 20)
MIN_EPOCHS_AT_FIRST_RATE = 2        # a scaled-down schedule never drops before epoch 2


class StepSchedule:
    """Piecewise-constant learning rate (Eq. 2's lambda by epoch): `{first epoch: lr}`.

    `StepSchedule({0: 1e-3, 10: 1e-4, 20: 1e-5})` gives 1e-3 for epochs 0-9, 1e-4 for 10-19 and
    1e-5 from epoch 20 on. The dict must have an entry for epoch 0.
    """

    def __init__(self, milestones: dict[int, float]) -> None:
        ms = {int(e): float(lr) for e, lr in dict(milestones).items()}
        if 0 not in ms:
            raise ValueError("a StepSchedule needs a rate for epoch 0, got milestones "
                             + ", ".join(map(str, sorted(ms))))
        if any(e < 0 for e in ms):
            raise ValueError("milestone epochs must be >= 0")
        self.milestones = dict(sorted(ms.items()))

    def lr_at(self, epoch: int) -> float:
        """The learning rate for (0-based) `epoch`."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        lr = self.milestones[0]
        for e, rate in self.milestones.items():
            if e <= epoch:
                lr = rate
        return lr

    __call__ = lr_at

    def describe(self, epochs: int) -> str:
        """The schedule over a run of ``epochs`` epochs, counted from 1 as the training log counts them:
        e.g. ``"1e-03 in epochs 1-2, 1e-04 in epoch 3, 1e-05 in epochs 4-5"``."""
        parts, start = [], 0
        for e in range(1, int(epochs) + 1):
            if e == epochs or self.lr_at(e) != self.lr_at(start):
                span = f"epoch {start + 1}" if e == start + 1 else f"epochs {start + 1}-{e}"
                parts.append(f"{self.lr_at(start):.0e} in {span}")
                start = e
        return ", ".join(parts)

    def apply(self, optimizer: Optimizer, epoch: int) -> float:
        """Set `optimizer.lr` for `epoch` and return it."""
        optimizer.lr = self.lr_at(epoch)
        return optimizer.lr

    def __repr__(self) -> str:
        return f"StepSchedule({self.milestones!r})"


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def paper_schedule(total_epochs: int = PAPER_EPOCHS) -> StepSchedule:
    """The authors' WAME schedule for Eq. 2's lambda: 1e-3, 1e-4 from epoch 10, 1e-5 from epoch 20.

    (With batch 128 and 50 epochs: the authors' setting as recorded in this project's tracker; the
    paper's text names WAME but states none of these numbers.)

    For `total_epochs >= 50` the milestones are the paper's, unchanged (a longer run just stays at
    1e-5). A shorter run keeps the schedule's shape -- 20% of the run at 1e-3, 20% at 1e-4, the rest
    at 1e-5 -- with milestones round(E/5) and round(2E/5) (halves rounded up), under two floors:
    the first drop never comes before epoch 2 (`MIN_EPOCHS_AT_FIRST_RATE`; one epoch at 1e-3 is too
    little for WAME's per-weight factors to adapt and for the network to learn much before the rate
    falls tenfold), and each rate lasts at least one epoch. Milestones that fall at or after the last
    epoch are dropped. Examples: 25 epochs -> {0, 5, 10}; 10 -> {0, 2, 4}; 5 -> {0, 2, 3};
    3 -> {0: 1e-3, 2: 1e-4}; 1 or 2 -> {0: 1e-3}.
    """
    E = int(total_epochs)
    if E < 1:
        raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
    if E >= PAPER_EPOCHS:
        first, second = PAPER_MILESTONES
    else:
        first = max(_round_half_up(E * PAPER_MILESTONES[0] / PAPER_EPOCHS), MIN_EPOCHS_AT_FIRST_RATE)
        second = max(_round_half_up(E * PAPER_MILESTONES[1] / PAPER_EPOCHS), first + 1)
    ms = {0: PAPER_LRS[0]}
    for epoch, lr in ((first, PAPER_LRS[1]), (second, PAPER_LRS[2])):
        if epoch < E:
            ms[epoch] = lr
    return StepSchedule(ms)
