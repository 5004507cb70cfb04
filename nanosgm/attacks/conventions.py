"""How FGSM accuracy (Eq. 20) is measured: two named conventions, because the paper's own differs from
the sound one.

    inference  (this project's default) the input gradient of the network in INFERENCE mode (dropout off,
               batch normalisation on its running statistics: every example is attacked on its own),
               x_adv = clip(x + eps * sign(dE/dx), lo, hi) in the data's range, classified in inference mode.
    authors    what the authors' evaluation scripts did (github.com/nitbix/deep-learning-experiments,
               papers/InputUpdates_Adversarial/generate_adversarial_set.py at commit 0d712940 and
               test_adversarial_set.py at commit bc5ceb70, June 2017, Keras 2.0 on Theano):
               * the gradient of the batch-mean cross-entropy against the true labels, with the network in
                 TRAINING mode (learning phase 1, generate_adversarial_set.py:68): dropout draws a mask per
                 batch and batch normalisation uses the attack batch's statistics (the running statistics
                 are left alone: the gradient function has no updates);
               * attack batches of 128 consecutive test images in file order (the MNIST configuration's
                 batch size, generate_adversarial_set.py:75-81; the last batch holds the remainder);
               * Keras's cross-entropy clips the probabilities to [1e-7, 1 - 1e-7], so an example whose
                 true-class probability lies outside that range has a zero gradient and is not perturbed
                 (:func:`~nanosgm.attacks.gradients.keras_cross_entropy_loss`);
               * no clip to [0, 1]: x + eps * sign(g) is classified as it is (test_adversarial_set.py:32);
               * classified with ``model.evaluate``, i.e. in INFERENCE mode;
               * one gradient per batch, its sign scaled by every eps (test_adversarial_set.py:29-32).
               MNIST pixels were in [0, 1] there too, so eps means the same.

A :class:`Convention` names each of these choices on its own (dropout, batch statistics, clip, loss,
batch size), so that :mod:`nanosgm.attacks.readings` can change them one at a time.

In training mode the result depends on the dropout draws: :func:`fgsm_correct` seeds the backend's
generator with ``seed`` first, so a record states one reproducible draw. Training-mode gradients make a
WEAKER attack (each batch is attacked through its own dropout sub-network, and confident examples are not
perturbed at all), so numbers measured that way are not robustness; they are what the paper's tables report.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .checks import check_clip, check_eps_list, check_inputs
from .evaluation import PAPER_EPS, _batch_bounds, _batches, _correct, _labels, correct_under_attack
from .fgsm import fgsm_from_sign, gradient_sign
from .gradients import LOSSES, loss_and_input_gradient

if TYPE_CHECKING:
    from ..layers import Sequential
    from ..layers.base import Array

__all__ = ["Convention", "CONVENTIONS", "fgsm_correct", "fgsm_accuracy", "fgsm_batches"]


@dataclass(frozen=True)
class Convention:
    """One way of measuring FGSM accuracy (module docstring).

    dropout:      dropout draws masks in the gradient pass (training mode for the Dropout layers)
    batch_stats:  batch normalisation uses the attack batch's statistics in the gradient pass (else its
                  running statistics); the running statistics are left as they were either way
    clip_to_data: clip x_adv to the data's valid range (else no clip)
    batch_size:   the attack batch (it matters with batch statistics, and for the dropout draws)
    loss:         the loss whose gradient's sign is taken ("ce", or "keras-ce": Keras's probability clip)

    ``training``: the whole network in training mode (dropout and batch statistics, as Keras's learning
    phase 1); ``inference``: neither. With only one of the two the gradient pass is mixed
    (:func:`~nanosgm.attacks.gradients.mixed_forward`). The adversarial images are always classified in
    inference mode.
    """
    name: str
    dropout: bool
    batch_stats: bool
    clip_to_data: bool
    batch_size: int
    loss: str = "ce"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"Convention {self.name!r}: unknown loss {self.loss!r}; choose one of "
                             f"{', '.join(sorted(LOSSES))}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"Convention {self.name!r}: batch_size must be a whole number >= 1, "
                             f"got {self.batch_size!r}")

    @property
    def training(self) -> bool:
        """The gradient pass in training mode throughout (dropout and batch statistics)."""
        return self.dropout and self.batch_stats

    @property
    def inference(self) -> bool:
        """The gradient pass in inference mode throughout (no dropout, running statistics)."""
        return not (self.dropout or self.batch_stats)


CONVENTIONS = {
    "inference": Convention("inference", dropout=False, batch_stats=False, clip_to_data=True, batch_size=500),
    "authors": Convention("authors", dropout=True, batch_stats=True, clip_to_data=False, batch_size=128,
                          loss="keras-ce"),
}


def _convention(convention: str | Convention) -> Convention:
    if isinstance(convention, Convention):
        return convention
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FGSM convention {convention!r}: choose one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[convention]


def fgsm_correct(model: Sequential, X: Array, y: Array, eps_list: Iterable[float] = PAPER_EPS,
                 convention: str | Convention = "inference", *, clip: tuple[float, float] | None = (0.0, 1.0),
                 seed: int = 0, bar: Any = None, target: Sequential | None = None) -> dict:
    """{eps: (n,) bool host array}: which examples of X the model still classifies as y under FGSM
    measured by ``convention`` (a name in :data:`CONVENTIONS` or a :class:`Convention`). ``target``: the
    network that classifies the examples crafted on ``model`` (a transfer attack, each batch's examples
    made as the convention makes them; classified in inference mode); None: ``model`` itself. ``clip``: the
    data's valid range (None: no range, e.g. ZCA-whitened CIFAR). ``seed``: the backend generator's seed
    for the dropout masks of a training-mode gradient. eps = 0 is the clean input. Refused (ValueError):
    what :func:`~nanosgm.attacks.evaluation.correct_under_attack` refuses; inputs that are not finite, and
    under a convention that clips, inputs outside ``clip`` (the authors' convention takes any finite input).
    The "inference" convention is :func:`~nanosgm.attacks.evaluation.correct_under_attack` with FGSM."""
    conv = _convention(convention)
    eps_list = check_eps_list(eps_list, "fgsm_correct")
    check_clip(clip, "fgsm_correct")
    x_clip = clip if conv.clip_to_data else None
    if conv.inference and conv.loss == "ce" and target is None:
        return correct_under_attack(model, X, y, eps_list, "fgsm", conv.batch_size, bar=bar, clip=x_clip)
    parts: dict = {e: [] for e in eps_list}
    for got, _, _ in fgsm_batches(model, X, y, eps_list, conv, [x_clip], seed=seed, bar=bar, target=target):
        for e in eps_list:
            parts[e].append(got[0][e])
    return {e: np.concatenate(parts[e]) for e in eps_list}


def fgsm_batches(model: Sequential, X: Array, y: Array, eps_list: list[float], conv: Convention,
                 clips: Sequence[tuple[float, float] | None], *, seed: int = 0,
                 bar: Any = None, target: Sequential | None = None) -> Iterator[tuple[list[dict], Array, Array]]:
    """FGSM measured by ``conv``, one attack batch at a time (``conv.batch_size`` consecutive images):
    yields (correct, losses, g) per batch, where correct[i] is {eps: (B,) bool host array} with x_adv
    clipped to ``clips[i]`` (None: no clip), losses the per-example loss (B,) of the gradient pass and g
    its dE/dx (B, ...), on the backend. One gradient per batch serves every clip and eps. The backend's
    generator is seeded with ``seed`` before the first batch (the dropout masks). ``eps_list`` checked by
    the caller (:func:`~nanosgm.attacks.checks.check_eps_list`); each batch is checked here (finite, and
    inside the first clip of ``clips`` that is not None: the data's range), on ``X``, ``y`` where they
    live: given on the host, a batch's checks read nothing back from the device. ``target``: the network
    that classifies x_adv (None: ``model``; see :func:`fgsm_correct`)."""
    y, bounds = _labels(y, int(X.shape[0]))
    bounded = next((c for c in clips if c is not None), None)
    backend.seed(int(seed))                            # the dropout masks of the training-mode gradient
    for sl in _batches(int(X.shape[0]), conv.batch_size):
        xb, yb = backend.to_device(X[sl]), backend.to_device(y[sl])
        check_inputs(X[sl], bounded, "fgsm_correct")   # no clip (the authors'): any finite input
        losses, _, g = loss_and_input_gradient(model, xb, yb, conv.loss, dropout=conv.dropout,
                                               batch_stats=conv.batch_stats, y_bounds=_batch_bounds(y[sl]))
        sign = gradient_sign(g, xb)
        correct: list[dict[float, np.ndarray]] = [{} for _ in clips]
        for e in eps_list:
            for i, c in enumerate(clips):
                x_adv = xb if e == 0 else fgsm_from_sign(xb, sign, e, c)
                correct[i][e] = _correct(model if target is None else target, x_adv, yb, bounds)
            if bar is not None:
                bar.update(1)
        yield correct, losses, g


def fgsm_accuracy(model: Sequential, X: Array, y: Array, eps_list: Iterable[float] = PAPER_EPS,
                  convention: str | Convention = "inference", *, clip: tuple[float, float] | None = (0.0, 1.0),
                  seed: int = 0, target: Sequential | None = None) -> dict:
    """{eps: accuracy (a fraction)} under FGSM measured by ``convention`` (see :func:`fgsm_correct`; with
    ``target``, of that network on the examples crafted on ``model``).

    >>> import numpy as np, nanosgm
    >>> from nanosgm.attacks import fgsm_accuracy
    >>> model = nanosgm.Sequential([nanosgm.Dense(4, 6), nanosgm.BatchNorm(6), nanosgm.ReLU(),
    ...                             nanosgm.Dropout(0.5), nanosgm.Dense(6, 3)])
    >>> X = np.random.default_rng(0).uniform(0, 1, (40, 4)).astype(np.float32)
    >>> y = np.arange(40) % 3
    >>> a = fgsm_accuracy(model, X, y, [0.0, 0.1], "authors", seed=1)
    >>> a == fgsm_accuracy(model, X, y, [0.0, 0.1], "authors", seed=1), a[0.0] == nanosgm.accuracy(model, X, y)
    (True, True)
    """
    correct = fgsm_correct(model, X, y, eps_list, convention, clip=clip, seed=seed, target=target)
    return {e: float(c.mean()) for e, c in correct.items()}
