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
from ..kernels.loss import softmax_cross_entropy
from .base import Array


class SoftmaxCrossEntropy:
    """``loss = f.forward(logits, labels)``, then ``dlogits = f.backward()``.

    logits: (N, K) float; labels: (N,) integers in [0, K). The loss is a Python float; with
    ``loss_on_device=True`` and device logits it stays on the device as a 0-d float64 array holding the
    same value (the training loop reads many at once instead of one per step). One kernel computes the
    loss and dE/dz together (:func:`nanosgm.kernels.loss.softmax_cross_entropy`); ``backward`` returns that
    gradient, the layer's own array until the next forward.
    """

    def __init__(self, *, loss_on_device: bool = False) -> None:
        self.loss_on_device = loss_on_device
        self._cache: tuple[Array, Array, Array] | None = None     # (log p, labels, dE/dz) of the last forward
        self._known: tuple[Array, tuple[int, int] | None] | None = None  # (labels array, its (min, max)): known_labels

    def __repr__(self) -> str:
        return "SoftmaxCrossEntropy(loss_on_device=True)" if self.loss_on_device else "SoftmaxCrossEntropy()"

    def known_labels(self, labels: Array, bounds: tuple[int, int] | None) -> None:
        """Say that ``labels`` (this very array object) have (min, max) ``bounds``, found by the caller on
        the host: a forward pass on them then checks ``bounds`` against K instead of reading the labels'
        min and max back from the device (a host read a step). The last call wins."""
        self._known = (labels, bounds)

    def known_bounds(self, labels: Array) -> tuple[int, int] | None:
        """The (min, max) that `known_labels` gave for this very ``labels`` array; None when it gave none."""
        return self._known[1] if self._known is not None and labels is self._known[0] else None

    def forward(self, logits, labels) -> float | Array:
        xp = backend.array_module(logits)
        if logits.ndim != 2:
            raise ValueError(f"SoftmaxCrossEntropy expects logits shaped (N, K), got {tuple(logits.shape)}")
        n, k = logits.shape
        known = self._known if self._known is not None and labels is self._known[0] else None
        labels = xp.asarray(labels)
        if known is not None:
            label_shape(labels, n)
            check_label_bounds(known[1], k)
        else:
            label_bounds(labels, n, k)
        loss, d, log_p = softmax_cross_entropy(logits, labels)
        self._cache = (log_p, labels, d)
        return loss if self.loss_on_device and backend.is_gpu_array(logits) else float(loss)

    def losses(self) -> Array:
        """Per-sample losses -log p[n, y_n] from the last forward pass (an (N,) array)."""
        log_p, labels, _ = self._need_cache()
        return -log_p[backend.array_module(log_p).arange(log_p.shape[0]), labels]

    def _need_cache(self) -> Any:
        if self._cache is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() was called before forward(logits, labels)")
        return self._cache

    def backward(self) -> Array:
        """dE/dz = (p - onehot(y)) / N, computed by the forward pass."""
        return self._need_cache()[2]

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

    The one check of class labels: the loss makes it on every forward pass (from bounds the caller found on
    the host when it says so: `SoftmaxCrossEntropy.known_labels`), the attacks before they run (they learn
    `k` only from the logits, then call `check_label_range`)."""
    label_shape(y, n)
    if n == 0:
        return None
    lo, hi = backend.min_max(y)                         # one read for device labels
    bounds = int(lo), int(hi)
    check_label_bounds(bounds, k)
    return bounds


def check_label_bounds(bounds: tuple[int, int] | None, k: int | None) -> None:
    """The labels' (min, max) refused when the min is negative or (`k` given) the max is >= k; None: no labels."""
    if bounds is not None and bounds[0] < 0:
        raise ValueError(f"labels must lie in [0, {'K' if k is None else k}); got values in [{bounds[0]}, {bounds[1]}]")
    check_label_range(bounds, k)


def check_label_range(bounds, k: int | None) -> None:
    """The labels' (min, max) from `label_bounds` inside [0, k) for logits of k classes (k None: no check)."""
    if bounds is not None and k is not None and bounds[1] >= k:
        raise ValueError(f"labels must lie in [0, {k}); got values in [{bounds[0]}, {bounds[1]}]")
