"""The authors' FGSM taken apart: readings that change one factor of the evaluation at a time, and a
gradient-masking check.

The authors' FGSM (``CONVENTIONS["authors"]``, :mod:`.conventions`) differs from the inference-mode one
(``CONVENTIONS["inference"]``) in four ways at once, and attacks batches of 128:

    dropout       dropout draws masks in the gradient pass
    batch-stats   batch normalisation uses the attack batch's statistics in the gradient pass (its running
                  statistics are left as they were)
    no-clip       x_adv is not clipped to the data's range
    keras-ce      Keras's cross-entropy: probabilities clipped to [1e-7, 1 - 1e-7], no gradient outside

A READING is a :class:`~.conventions.Convention` with a subset of these factors. "inference" has none and
"authors" all four; "authors-clipped" is the authors' reading with the clip (all but no-clip); every
other reading is named by its factors joined with "+" in the order above ("dropout+batch-stats" is the
whole network in training mode, clipped, plain cross-entropy). A reading whose gradient pass uses
dropout or batch statistics attacks 128-image batches (the authors'); an inference-mode one 500 (the
inference convention's: there each example is attacked on its own, so the batch decides nothing).
"@32" / "@512" name another batch size: ``reading("batch-stats", batch_size=32).name == "batch-stats@32"``.

:data:`READINGS` holds all sixteen subsets (each factor alone, every pair, every triple, all four) and,
for the readings with batch statistics named in the issue (batch-stats, dropout+batch-stats,
authors-clipped, authors), batches of 32 and 512. ``READINGS["inference"]`` and ``READINGS["authors"]``
are the two conventions themselves, so their numbers are the records' ``fgsm_pct`` and
``fgsm_authors_pct``.

The masking check (:func:`masking_shares`, and :func:`fgsm_readings` beside the accuracies), per reading:

    zero_gradient   the images whose input gradient, as evaluated (the model's dtype, batch-mean loss),
                    has no non-zero entry: FGSM leaves them where they are (sign(0) = 0)
    saturated       the images whose true-class probability in that reading's forward pass lies outside
                    Keras's clip, so that the Keras loss gives them no gradient (whatever the reading's loss)

    >>> import numpy as np, nanosgm
    >>> from nanosgm.attacks.readings import READINGS, fgsm_readings
    >>> model = nanosgm.Sequential([nanosgm.Dense(4, 6), nanosgm.BatchNorm(6), nanosgm.ReLU(),
    ...                             nanosgm.Dropout(0.5), nanosgm.Dense(6, 3)])
    >>> X = np.random.default_rng(0).uniform(0, 1, (40, 4)).astype(np.float32)
    >>> got = fgsm_readings(model, X, np.arange(40) % 3, [0.1], ["inference", "batch-stats"])
    >>> sorted(got["batch-stats"]), got["inference"]["correct"][0.1].shape
    (['correct', 'saturated', 'zero_gradient'], (40,))
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .checks import check_clip, check_eps_list
from .conventions import CONVENTIONS, Convention, fgsm_batches
from .gradients import keras_unclipped

if TYPE_CHECKING:
    from ..layers import Sequential
    from ..layers.base import Array

__all__ = ["FACTORS", "READINGS", "CONTROL_READING", "reading", "parse_reading", "gradient_groups",
           "fgsm_readings", "masking_shares"]

FACTORS = ("dropout", "batch-stats", "no-clip", "keras-ce")     # in the order a reading's name lists them
AUTHORS_BATCH = 128                 # the authors' attack batch (MNIST's batch size)
INFERENCE_BATCH = CONVENTIONS["inference"].batch_size
OTHER_BATCHES = (32, 512)           # the batch sizes beside 128 for the readings with batch statistics
CONTROL_READING = "inference"       # the reading every other is compared with
_ALIASES = {frozenset(): "inference", frozenset(FACTORS): "authors",
            frozenset(FACTORS) - {"no-clip"}: "authors-clipped"}


def _default_batch(factors: Iterable[str]) -> int:
    return AUTHORS_BATCH if {"dropout", "batch-stats"} & set(factors) else INFERENCE_BATCH


def reading(*factors: str, batch_size: int | None = None) -> Convention:
    """The reading with these ``factors`` (names in :data:`FACTORS`, any order) and attack batch
    ``batch_size`` (None: 128 with dropout or batch statistics, else 500), named as the module says."""
    unknown = [f for f in factors if f not in FACTORS]
    if unknown:
        raise ValueError(f"unknown factor(s) {', '.join(map(repr, unknown))} of a reading; choose from "
                         f"{', '.join(FACTORS)}")
    chosen = frozenset(factors)
    default = _default_batch(chosen)
    batch_size = default if batch_size is None else batch_size
    name = _ALIASES.get(chosen) or "+".join(f for f in FACTORS if f in chosen)
    if batch_size != default:
        name = f"{name}@{batch_size}"
    return Convention(name, dropout="dropout" in chosen, batch_stats="batch-stats" in chosen,
                      clip_to_data="no-clip" not in chosen, batch_size=batch_size,
                      loss="keras-ce" if "keras-ce" in chosen else "ce")


def _named_readings() -> dict:
    subsets = [c for k in range(len(FACTORS) + 1) for c in itertools.combinations(FACTORS, k)]
    out = {r.name: r for r in (reading(*c) for c in subsets)}
    for factors in (("batch-stats",), ("dropout", "batch-stats"), tuple(f for f in FACTORS if f != "no-clip"),
                    FACTORS):
        for b in OTHER_BATCHES:
            r = reading(*factors, batch_size=b)
            out[r.name] = r
    return out


#: every reading of the decomposition, by name (module docstring): 16 subsets of the factors, then 8 batch sizes
READINGS = _named_readings()


def parse_reading(text: str | Convention) -> Convention:
    """A reading from its name: one of :data:`READINGS`, or factors joined with "+" (any order; "authors",
    "authors-clipped", "inference" as above) with an optional "@<batch size>". A :class:`Convention`
    is returned as it is. ValueError (one line) for anything else."""
    if isinstance(text, Convention):
        return text
    if text in READINGS:
        return READINGS[text]
    name, _, size = str(text).partition("@")
    words = {v: sorted(k) for k, v in _ALIASES.items()}.get(name, name.split("+"))
    try:
        batch = int(size) if size else None
        if batch is not None and batch < 1:
            raise ValueError
        return reading(*words, batch_size=batch)
    except ValueError:
        raise ValueError(f"unknown reading {text!r}: give factors from {', '.join(FACTORS)} joined with '+' "
                         f"(or inference, authors, authors-clipped), optionally '@<batch size>'") from None


def gradient_groups(readings: Iterable[Convention]) -> list:
    """``readings`` (Conventions) grouped by what their gradient depends on (dropout, batch statistics,
    loss, batch size), in order of first appearance: readings that differ only in the clip share one
    gradient pass."""
    groups: dict[tuple[bool, bool, str, int], list[Convention]] = {}
    for r in readings:
        groups.setdefault((r.dropout, r.batch_stats, r.loss, r.batch_size), []).append(r)
    return list(groups.values())


def fgsm_readings(model: Sequential, X: Array, y: Array, eps_list: Iterable[float],
                  readings: Iterable[str | Convention] = tuple(READINGS), *,
                  clip: tuple[float, float] | None = (0.0, 1.0), seed: int = 0, bar: Any = None) -> dict:
    """{reading name: {"correct": {eps: (n,) bool}, "zero_gradient": (n,) bool, "saturated": (n,) bool}}
    for FGSM on X (n, ...) with labels y (n,) under each of ``readings`` (names or Conventions;
    :func:`parse_reading`). ``correct[eps]`` is exactly what :func:`~.conventions.fgsm_correct` gives for
    that reading with this ``clip`` (the data's range) and ``seed`` (the backend generator's, for the
    dropout masks): readings that differ only in the clip share one gradient pass, seeded alike.
    "zero_gradient" and "saturated" are the masking check of the module docstring. ``eps_list`` may be
    empty (the masking check alone). ``bar``: anything with ``update(1)``, called per (batch, eps) of
    each gradient pass."""
    chosen = [parse_reading(r) for r in readings]
    names = [r.name for r in chosen]
    if len(set(names)) < len(names):
        raise ValueError(f"fgsm_readings: a reading is given twice ({', '.join(names)}); give each once")
    eps_list = check_eps_list(eps_list, "fgsm_readings")
    check_clip(clip, "fgsm_readings")
    out = {}
    for group in gradient_groups(chosen):
        clips = [clip if r.clip_to_data else None for r in group]
        parts: list[dict[float, list[np.ndarray]]] = [{e: [] for e in eps_list} for _ in group]
        zero, saturated = [], []
        for correct, losses, g in fgsm_batches(model, X, y, eps_list, group[0], clips, seed=seed, bar=bar):
            for i in range(len(group)):
                for e in eps_list:
                    parts[i][e].append(correct[i][e])
            flat = g.reshape(g.shape[0], -1)
            zero.append(np.asarray(backend.to_host(~(flat != 0).any(axis=1))))
            saturated.append(np.asarray(backend.to_host(~keras_unclipped(losses))))
        for i, r in enumerate(group):
            out[r.name] = {"correct": {e: np.concatenate(parts[i][e]) for e in eps_list},
                           "zero_gradient": np.concatenate(zero), "saturated": np.concatenate(saturated)}
    return {n: out[n] for n in names}


def masking_shares(model: Sequential, X: Array, y: Array, readings: Iterable[str | Convention] = (CONTROL_READING,),
                   *, seed: int = 0) -> dict:
    """{reading name: {"zero_gradient": share, "saturated": share}} (fractions of X's n images): the
    gradient-masking check of the module docstring under each of ``readings`` (default: the
    inference-mode gradient alone, float32 as evaluated when the model is float32)."""
    got = fgsm_readings(model, X, y, [], readings, clip=None, seed=seed)
    return {n: {k: float(v[k].mean()) for k in ("zero_gradient", "saturated")} for n, v in got.items()}
