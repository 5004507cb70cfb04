"""Adversarial training, the baselines SGM must be compared with, as one training pass for ``fit``.

    "fgsm"     Goodfellow et al. 2015: the loss mix * E(x) + (1 - mix) * E(x_adv), mix = 0.5, with
               x_adv = clip(x + eps * sign(dE/dx)) (Eq. 20) taken at the clean batch.
    "fgsm-rs"  Wong et al. 2020 ("Fast is better than free"): FGSM from a random start in the eps-ball,
               step alpha = 1.25 eps, projected back; trained on the adversarial batch only (mix = 0).
    "pgd"      Madry et al. 2018: PGD-k (random start, `steps` sign steps of alpha = 2.5 eps / steps,
               projected); trained on the adversarial batch only (mix = 0).

Every attack runs on the hand-written input gradient dE/dX of `model.backward` (Eq. 14).

Model state during the attack's inner passes (a decision, stated here):
  * batch normalisation: the inner passes run in training mode (batch statistics, as the pass that is
    then trained) with the running statistics frozen (`attacks.state.frozen_buffers`): they are updated only
    by the passes that are trained on -- once per batch for "fgsm-rs" and "pgd" (the adversarial batch),
    twice for "fgsm" (the clean and the adversarial batch, as two forward passes in training mode do).
  * dropout: ONE mask per batch and layer, drawn by the first forward pass from the backend's generator
    exactly as the plain pass draws it, then held for every inner and training pass of that batch. The
    attack thus targets the very sub-network that is trained, and the backend's generator advances as
    in the control run (lock-step: same seed, same initial weights, same batches, same masks).
  * the random starts are drawn from the `rng` given to `training_pass`, never from the backend's.

How SGM relates to adversarial training:
  SGM (Eq. 15/21) also trains on inputs moved along the input gradient, but its perturbation is
  persistent, unsigned and accumulated: X_{t+1} = X_t + lambda_bar * dE/dX_t changes the STORED training
  set, so each image carries the sum of all the small steps it received in earlier epochs, scaled by
  the gradient's size (and, with the batch-mean loss, by 1/B), with no eps-ball around the original.
  Adversarial training makes a fresh, signed perturbation of the clean batch at every step
  (eps * sign(dE/dx), or k projected sign steps), bounded by eps in L-inf and thrown away afterwards:
  the network never sees the same adversarial image twice and the training set stays as it was.
  SGM costs nothing beyond the plain pass (it reuses that pass's dE/dX); FGSM training costs about 2
  passes, FGSM-RS about 2 and PGD-k about k + 1 per batch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

from ..attacks.fgsm import fgsm, fgsm_from_sign, gradient_sign
from ..attacks.pgd import pgd
from ..layers import Dropout
from ..layers.base import Array
from .base import Method, format_number, parse_number

if TYPE_CHECKING:
    from ..layers import Layer, Sequential, SoftmaxCrossEntropy

__all__ = ["AdversarialTraining", "MODES"]

MODES = ("fgsm", "fgsm-rs", "pgd")
ARM_NAMES = {"fgsm": "fgsm-at", "fgsm-rs": "fgsm-rs", "pgd": "pgd-at"}      # mode -> its name in the arm grammar
DEFAULT_STEPS = 7


def _leaf_layers(model: Layer) -> Iterator:
    """The layers of `model` (nested Sequentials flattened)."""
    for layer in getattr(model, "layers", ()):
        if getattr(layer, "layers", None) is not None:
            yield from _leaf_layers(layer)
        else:
            yield layer


class _one_dropout_mask:
    """Context manager: every Dropout layer draws a fresh mask at its next forward pass and holds it
    (same shape) for the rest of the block; `hold_mask` is put back afterwards."""

    def __init__(self, model: Layer) -> None:
        self.layers = [layer for layer in _leaf_layers(model) if isinstance(layer, Dropout)]

    def __enter__(self) -> "_one_dropout_mask":
        self.saved = [layer.hold_mask for layer in self.layers]
        for layer in self.layers:
            layer.hold_mask, layer.mask = True, None
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        for layer, hold in zip(self.layers, self.saved):
            layer.hold_mask = hold
        return False


def _grads_copy(model: Layer) -> dict:
    """{(layer index, name): a copy of that weight gradient}."""
    return {(i, k): g.copy() for i, layer in enumerate(_leaf_layers(model)) for k, g in layer.grads.items()}


def _mix_into(model: Layer, clean_grads: dict, mix: float) -> None:
    """grads <- mix * clean_grads + (1 - mix) * grads, in place (the gradient of the mixed loss)."""
    for i, layer in enumerate(_leaf_layers(model)):
        for k, g in layer.grads.items():
            g *= g.dtype.type(1.0 - mix)
            g += g.dtype.type(mix) * clean_grads[(i, k)]


@dataclass(frozen=True)
class AdversarialTraining(Method):
    """A plain (picklable) configuration of one adversarial-training baseline.

    mode:  "fgsm" | "fgsm-rs" | "pgd" (module docstring)
    eps:   the L-inf budget (e.g. 0.1 on MNIST)
    steps: PGD steps k (mode "pgd"; default 7)
    alpha: the attack's step size (default 1.25 eps for "fgsm-rs", 2.5 eps / steps for "pgd"; "fgsm"
           steps by eps)
    mix:   the weight of the clean loss in mix * E(x) + (1 - mix) * E(x_adv) (default 0.5 for "fgsm",
           Goodfellow et al.'s alpha; 0 for "fgsm-rs" and "pgd")
    clip:  the valid input range (None for ZCA-whitened CIFAR)
    """
    mode: str
    eps: float
    steps: int = DEFAULT_STEPS
    alpha: float | None = None
    mix: float | None = None
    clip: tuple | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"adversarial training mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.eps < 0 or self.steps < 1:
            raise ValueError(f"adversarial training needs eps >= 0 and steps >= 1, got eps={self.eps}, steps={self.steps}")
        if not 0.0 <= self.clean_weight < 1.0:
            raise ValueError(f"mix (the clean loss's weight) must be in [0, 1), got {self.mix}")

    @property
    def label(self) -> str:
        """``fgsm-at:EPS``, ``fgsm-rs:EPS`` or ``pgd-at:EPS:STEPS``."""
        return f"{ARM_NAMES[self.mode]}:{format_number(self.eps)}" + (f":{self.steps}" if self.mode == "pgd" else "")

    @classmethod
    def parser(cls, mode: str) -> Callable[..., "AdversarialTraining"]:
        """The arm-grammar parser of one mode: ``args`` [EPS] (and [STEPS] for "pgd", default 7) -> an instance."""
        def parse(args: list, clip: tuple[float, float] | None = (0.0, 1.0)) -> "AdversarialTraining":
            if len(args) not in ((1, 2) if mode == "pgd" else (1,)):
                raise ValueError(f"{ARM_NAMES[mode]} takes an eps" + (" and optionally a step count" if mode == "pgd" else ""))
            eps = parse_number(args[0], "eps")
            if eps <= 0:
                raise ValueError(f"eps must be > 0, got {args[0]!r}")
            steps = DEFAULT_STEPS
            if len(args) == 2:
                if not (args[1].isascii() and args[1].isdigit()) or int(args[1]) < 1:
                    raise ValueError(f"the step count must be a whole number >= 1, got {args[1]!r}")
                steps = int(args[1])
            return cls(mode, eps, steps=steps, clip=clip)
        return parse

    @property
    def clean_weight(self) -> float:
        return (0.5 if self.mode == "fgsm" else 0.0) if self.mix is None else float(self.mix)

    @property
    def step_size(self) -> float:
        if self.alpha is not None:
            return float(self.alpha)
        return {"fgsm": self.eps, "fgsm-rs": 1.25 * self.eps, "pgd": 2.5 * self.eps / self.steps}[self.mode]

    def adversarial_batch(self, model: Sequential, xb: Array, yb: Array, rng: np.random.Generator | None,
                          clean_dX: Array | None = None, y_bounds: tuple[int, int] | None = None) -> Array:
        """x_adv for this mode: the inner passes in training mode with frozen buffers (module docstring).
        "fgsm" reuses `clean_dX` (dE/dx of the clean training pass) when it is given. `y_bounds`: the
        labels' (min, max) found on the host, so the attack does not read them back from a device."""
        if self.mode == "fgsm":
            if clean_dX is None:
                return fgsm(model, xb, yb, self.eps, clip=self.clip, training=True, y_bounds=y_bounds)
            return fgsm_from_sign(xb, gradient_sign(clean_dX, xb), self.eps, self.clip)
        if rng is None:
            raise ValueError(f"adversarial training mode {self.mode!r} needs an rng for its random start")
        steps = 1 if self.mode == "fgsm-rs" else self.steps
        return pgd(model, xb, yb, self.eps, steps=steps, step_size=self.step_size, clip=self.clip,
                   rng=rng, training=True, y_bounds=y_bounds)

    def training_pass(self, model: Sequential, loss_fn: SoftmaxCrossEntropy, xb: Array, yb: Array,
                      rng: np.random.Generator) -> tuple[float | Array, Array | None]:
        """Forward + backward in training mode that leaves in the layers' grads the gradient of this
        mode's training loss, mix * E(x) + (1 - mix) * E(x_adv) (mix = 0: E(x_adv) alone), and returns
        (that loss, dE/dX at the clean batch -- the gradient of E(x), as the plain pass returns it -- or
        None when this mode runs no clean pass). Then call `optimizer.step(model)` as usual.
        `loss_fn`: a SoftmaxCrossEntropy (the labels' bounds it knows go to the attack); `rng`: a Generator
        for the random starts."""
        mix = self.clean_weight
        with _one_dropout_mask(model):
            clean_loss, dX, clean_grads = None, None, None
            if self.mode == "fgsm" or mix > 0:
                clean_loss = loss_fn.forward(model.forward(xb, training=True), yb)
                dX = model.backward(loss_fn.backward())
                clean_grads = _grads_copy(model) if mix > 0 else None
            x_adv = self.adversarial_batch(model, xb, yb, rng, dX, loss_fn.known_bounds(yb))
            adv_loss = loss_fn.forward(model.forward(x_adv, training=True), yb)
            model.backward(loss_fn.backward(), param_grads=True)
            if clean_grads is not None:
                _mix_into(model, clean_grads, mix)
        # clean_loss is set whenever clean_grads is
        loss = adv_loss if clean_grads is None else mix * cast("float | Array", clean_loss) + (1 - mix) * adv_loss
        return loss, dX

    def describe(self) -> str:
        """One line for a log: the mode, eps, the step size, the steps and the mix."""
        steps = f", {self.steps} steps" if self.mode == "pgd" else ""
        return f"adversarial training {self.mode}: eps {self.eps:g}, step {self.step_size:g}{steps}, clean weight {self.clean_weight:g}"
