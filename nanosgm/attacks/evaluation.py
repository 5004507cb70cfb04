"""Accuracy, clean (the paper's Table 4 measure) and under attack (its Table 5 measure, with FGSM, Eq. 20).

`evaluate` attacks a test set batch by batch at every eps of a list (the paper's `PAPER_EPS` by
default) and returns {eps: accuracy}; `correct_under_attack` gives the per-example results behind it.
An attack is a name in `ATTACKS` or a callable `attack(model, x, y, eps, **kw)`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .apgd import apgd
from .checks import check_clip, check_eps_list, check_inputs, check_label_range, label_bounds
from .fgsm import fgsm, fgsm_from_sign, gradient_sign
from .gradients import loss_and_input_gradient
from .pgd import pgd
from .square import square, square_each_eps

if TYPE_CHECKING:
    from ..layers import Sequential
    from ..layers.base import Array

PAPER_EPS = (0.001, 0.01, 0.1, 0.2)     # the eps of the paper's evaluation (Table 5)
ATTACKS: dict[str, Callable[..., Array]] = {"fgsm": fgsm, "pgd": pgd, "apgd": apgd, "square": square}


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _correct(model: Sequential, x: Array, y: Array, bounds: tuple[int, int] | None = None) -> np.ndarray:
    """(N,) bool on the host: which rows `model` classifies as `y` (inference mode). `bounds`: the labels'
    (min, max) from `checks.label_bounds`, refused if the logits have too few classes for them."""
    xp = backend.array_module(x)
    logits = model.forward(x, training=False)
    check_label_range(bounds, logits.shape[1])
    return np.asarray(backend.to_host(xp.argmax(logits, axis=1) == y))


def _labels(y: Array, n: int) -> tuple[Array, tuple[int, int] | None]:
    """(`y` as an array, its (min, max)): one integer class index >= 0 per input (`checks.label_bounds`)."""
    y = y if hasattr(y, "shape") else np.asarray(y)
    return y, label_bounds(y, n)


def _batch_bounds(y: Array) -> tuple[int, int] | None:
    """(min, max) of one batch's labels `y` (None: no labels), found where `y` lives: a batch of labels
    given on the host is read there, nothing comes back from the device."""
    return backend.min_max(y) if len(y) else None


def accuracy(model: Sequential, X: Array, y: Array, batch_size: int = 500) -> float:
    """Clean accuracy (the paper's Table 4 measure): the fraction of `X` that `model` classifies as
    `y`, in inference mode, `batch_size` at a time. The labels are checked as `SoftmaxCrossEntropy`
    checks them: (N,) integers in [0, K) for the K classes of the logits (ValueError otherwise).
    `X`, `y` may live on the host or the device; each batch is moved to the active backend."""
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("accuracy of an empty set")
    y, bounds = _labels(y, n)
    correct = 0
    for sl in _batches(n, int(batch_size)):
        correct += int(_correct(model, backend.to_device(X[sl]), backend.to_device(y[sl]), bounds).sum())
    return correct / n


def resolve_attack(attack: str | Callable[..., Array]) -> Callable[..., Array]:
    if callable(attack):
        return attack
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}: choose one of {', '.join(sorted(ATTACKS))}, or pass a callable")
    return ATTACKS[attack]


def _fgsm_batch(model: Sequential, xb: Array, yb: Array, eps_list: list[float], attack_kw: dict, bar: Any,
                bounds: tuple[int, int] | None = None, given: tuple[Array, Array] | None = None) -> dict:
    """{eps: (B,) correct} for FGSM on one batch: one input gradient shared by every eps (exactly
    `fgsm` per eps in inference mode, with its input check once per batch). `given`: (x, y) of the batch
    as the caller gave it (None: xb, yb): its inputs and labels are checked there, so a batch given on
    the host costs no read from the device."""
    x_given, y_given = (xb, yb) if given is None else given
    kw = dict(attack_kw)
    clip, training = kw.pop("clip", (0.0, 1.0)), kw.pop("training", False)
    if kw:
        raise TypeError(f"fgsm got unexpected keyword arguments {', '.join(sorted(kw))}")
    out, sign = {}, None
    for e in eps_list:
        if e == 0:
            out[e] = _correct(model, xb, yb, bounds)
        else:
            if sign is None:
                check_inputs(x_given, clip, "fgsm")
                _, _, g = loss_and_input_gradient(model, xb, yb, training=training, y_bounds=_batch_bounds(y_given))
                sign = gradient_sign(g, xb)
            out[e] = _correct(model, fgsm_from_sign(xb, sign, e, clip), yb, bounds)
        bar.update(1)
    return out


def _square_batch(model: Sequential, xb: Array, yb: Array, eps_list: list[float], attack_kw: dict, bar: Any,
                  bounds: tuple[int, int] | None = None) -> dict:
    """{eps: (B,) correct} for the Square attack on one batch: every eps in one batched run
    (`square_each_eps`: B * E rows, one forward pass per query)."""
    adv = square_each_eps(model, xb, yb, eps_list, **attack_kw)
    out = {}
    for e in eps_list:
        out[e] = _correct(model, adv[e], yb, bounds)
        bar.update(1)
    return out


def correct_under_attack(model: Sequential, X: Array, y: Array, eps_list: Iterable[float] = PAPER_EPS,
                         attack: str | Callable[..., Array] = "fgsm", batch_size: int | None = None, *, bar: Any = None,
                         **attack_kw: Any) -> dict:
    """{eps: (n,) bool host array}: which examples of X `model` still classifies as y under `attack`.

    For each batch and each eps, the batch is attacked with `attack` (a name in `ATTACKS` or a callable
    `attack(model, x, y, eps, **attack_kw)`) and classified in inference mode; eps = 0 is the clean
    input. `batch_size` None: 500 for FGSM (one gradient per batch), 100 for the iterative attacks.
    Square attacks a batch at every eps at once (`square_each_eps`), the bar then moving by len(eps_list).
    Refused before any attack runs (ValueError): an eps that is not a finite number >= 0, an eps given
    twice, labels that are not one class index >= 0 per input; then each attack checks its batch
    (`nanosgm.attacks.checks`: inputs inside `clip` and finite, labels below the number of classes).
    An integer `rng` seeds one generator shared by all batches (deterministic). `bar`: anything with
    `update(1)`, called after each (batch, eps).
    """
    attack_fn = resolve_attack(attack)
    if isinstance(attack_kw.get("rng"), (int, np.integer)):
        attack_kw["rng"] = np.random.default_rng(int(attack_kw["rng"]))  # one stream for all batches
    eps_list = check_eps_list(eps_list, "evaluate")
    check_clip(attack_kw.get("clip"), "evaluate")
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("evaluate on an empty set")
    y, bounds = _labels(y, n)
    batch_size = int(batch_size or (500 if attack_fn is fgsm else 100))
    bar = bar if bar is not None else _NoBar()
    parts: dict[float, list[np.ndarray]] = {e: [] for e in eps_list}
    for sl in _batches(n, batch_size):
        xb, yb = backend.to_device(X[sl]), backend.to_device(y[sl])
        if attack_fn is fgsm:
            got = _fgsm_batch(model, xb, yb, eps_list, attack_kw, bar, bounds, given=(X[sl], y[sl]))
        elif attack_fn is square:
            got = _square_batch(model, xb, yb, eps_list, attack_kw, bar, bounds)
        else:
            got = {}
            for e in eps_list:
                got[e] = _correct(model, xb if e == 0 else attack_fn(model, xb, yb, e, **attack_kw), yb, bounds)
                bar.update(1)
        for e in eps_list:
            parts[e].append(got[e])
    return {e: np.concatenate(parts[e]) for e in eps_list}


class _NoBar:
    def update(self, k: int = 1) -> None:
        pass


def n_steps(n: int, eps_list: Iterable[float], attack: str | Callable[..., Array] = "fgsm",
            batch_size: int | None = None) -> int:
    """How many (batch, eps) units `correct_under_attack` reports to its bar."""
    bs = int(batch_size or (500 if resolve_attack(attack) is fgsm else 100))
    return math.ceil(int(n) / bs) * len(list(eps_list))


def evaluate(model: Sequential, X: Array, y: Array, eps_list: Iterable[float] = PAPER_EPS,
             attack: str | Callable[..., Array] = "fgsm", batch_size: int | None = None, *, progress: bool = True,
             **attack_kw: Any) -> dict:
    """Accuracy under attack (the paper's Table 5 measure with FGSM, Eq. 20):
    {eps: fraction of the adversarial copy of X classified as y}; see `correct_under_attack`.

    For FGSM the input gradient does not depend on eps, so it is computed once per batch and shared
    by every eps (with `training=True` every eps shares one dropout mask). For PGD an integer `rng`
    seeds one generator shared by all batches; `rng=None` draws from the backend's device generator.
    A tqdm bar over batches x eps shows progress (`progress=False` hides it; it is also off when
    stderr is not a terminal).
    """
    from tqdm.auto import tqdm

    attack_fn = resolve_attack(attack)
    eps_list = [float(e) for e in eps_list]
    total = n_steps(int(X.shape[0]), eps_list, attack_fn, batch_size) if int(X.shape[0]) else 0
    with tqdm(total=total, desc=f"{getattr(attack_fn, '__name__', 'attack')} eval", unit="batch x eps",
              disable=None if progress else True, leave=False) as bar:
        correct = correct_under_attack(model, X, y, eps_list, attack_fn, batch_size, bar=bar, **attack_kw)
    return {e: float(correct[e].mean()) for e in eps_list}
