"""Softmax cross-entropy: the error E of the paper, as the mean over the mini-batch.

    p = softmax(z),  E = -(1/N) sum_n log p[n, y_n],  dE/dz = (p - onehot(y)) / N
Computed from log-softmax with the row maximum subtracted, so large logits cannot overflow.

Double backpropagation (nanosgm/layers/base.py): along a direction R{z} of the logits,
    R{dE/dz} = p * (R{z} - sum_k p_k R{z}_k) / N        (the softmax's Jacobian applied to R{z}, over N)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from .base import Array


class SoftmaxCrossEntropy:
    """``loss = f.forward(logits, labels)`` (a float), then ``dlogits = f.backward()``.

    logits: (N, K) float; labels: (N,) integers in [0, K).
    """

    def __init__(self) -> None:
        self._cache = None

    def __repr__(self) -> str:
        return "SoftmaxCrossEntropy()"

    def forward(self, logits, labels) -> float:
        xp = backend.array_module(logits)
        if logits.ndim != 2:
            raise ValueError(f"SoftmaxCrossEntropy expects logits shaped (N, K), got {tuple(logits.shape)}")
        labels = xp.asarray(labels)
        label_bounds(labels, logits.shape[0], logits.shape[1])
        n = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        rows = xp.arange(n)
        self._cache = (log_p, labels, rows)
        return float(-log_p[rows, labels].mean())

    def losses(self) -> Array:
        """Per-sample losses -log p[n, y_n] from the last forward pass (an (N,) array)."""
        log_p, labels, rows = self._need_cache()
        return -log_p[rows, labels]

    def _need_cache(self) -> Any:
        if self._cache is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() was called before forward(logits, labels)")
        return self._cache

    def backward(self) -> Array:
        log_p, labels, rows = self._need_cache()
        xp = backend.array_module(log_p)
        d = xp.exp(log_p)
        d[rows, labels] -= 1
        d /= log_p.shape[0]
        return d

    def backward_dot(self, logits_dot: Array) -> Array:
        """R{dE/dz} for the logits' direction ``logits_dot`` (N, K), after forward."""
        log_p, _, _ = self._need_cache()
        p = backend.array_module(log_p).exp(log_p)
        return p * (logits_dot - (p * logits_dot).sum(axis=1, keepdims=True)) / log_p.shape[0]


def label_shape(y, n: int) -> None:
    """`y` one integer label per input: shaped (n,), integer dtype."""
    shape = getattr(y, "shape", None)
    if shape is None:
        y = np.asarray(y)
        shape = y.shape
    if tuple(shape) != (n,):
        raise ValueError(f"labels must be shaped ({n},), one class index per input, got {tuple(shape)}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers (class indices), got dtype {y.dtype}")


def label_bounds(y: Array, n: int, k: int | None = None) -> tuple[int, int] | None:
    """(min, max) of the labels `y` of `n` inputs after `label_shape` (None for no labels); refused when
    negative, or when `k` (the number of classes) is given and one is >= k.

    The one check of class labels: the loss makes it on every forward pass, the attacks before they run
    (they learn `k` only from the logits, then call `check_label_range`)."""
    label_shape(y, n)
    if n == 0:
        return None
    bounds = int(y.min()), int(y.max())
    if bounds[0] < 0:
        raise ValueError(f"labels must lie in [0, {'K' if k is None else k}); got values in [{bounds[0]}, {bounds[1]}]")
    check_label_range(bounds, k)
    return bounds


def check_label_range(bounds, k: int | None) -> None:
    """The labels' (min, max) from `label_bounds` inside [0, k) for logits of k classes (k None: no check)."""
    if bounds is not None and k is not None and bounds[1] >= k:
        raise ValueError(f"labels must lie in [0, {k}); got values in [{bounds[0]}, {bounds[1]}]")
