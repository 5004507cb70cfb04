"""Softmax cross-entropy: the error E of the paper, as the mean over the mini-batch.

    p = softmax(z),  E = -(1/N) sum_n log p[n, y_n],  dE/dz = (p - onehot(y)) / N
Computed from log-softmax with the row maximum subtracted, so large logits cannot overflow.
"""
from __future__ import annotations

from .. import backend


class SoftmaxCrossEntropy:
    """``loss = f.forward(logits, labels)`` (a float), then ``dlogits = f.backward()``.

    logits: (N, K) float; labels: (N,) integers in [0, K).
    """

    def __init__(self):
        self._cache = None

    def __repr__(self):
        return "SoftmaxCrossEntropy()"

    def forward(self, logits, labels) -> float:
        xp = backend.array_module(logits)
        if logits.ndim != 2:
            raise ValueError(f"SoftmaxCrossEntropy expects logits shaped (N, K), got {tuple(logits.shape)}")
        labels = xp.asarray(labels)
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"labels must be shaped ({logits.shape[0]},) to match logits {tuple(logits.shape)}, "
                             f"got {tuple(labels.shape)}")
        if labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers (class indices), got dtype {labels.dtype}")
        n, k = logits.shape
        if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise ValueError(f"labels must lie in [0, {k}); got values in [{int(labels.min())}, {int(labels.max())}]")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        rows = xp.arange(n)
        self._cache = (log_p, labels, rows)
        return float(-log_p[rows, labels].mean())

    def losses(self):
        """Per-sample losses -log p[n, y_n] from the last forward pass (an (N,) array)."""
        log_p, labels, rows = self._need_cache()
        return -log_p[rows, labels]

    def _need_cache(self):
        if self._cache is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() was called before forward(logits, labels)")
        return self._cache

    def backward(self):
        log_p, labels, rows = self._need_cache()
        xp = backend.array_module(log_p)
        d = xp.exp(log_p)
        d[rows, labels] -= 1
        d /= log_p.shape[0]
        return d
