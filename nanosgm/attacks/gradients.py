"""The losses an attack raises, and their gradient at the inputs dE/dx (Eq. 14).

    cross_entropy_loss   softmax cross-entropy, its gradient that of the batch mean (as in training)
    keras_cross_entropy_loss   the same as Keras computed it: probabilities clipped to [1e-7, 1 - 1e-7]
    dlr_loss             Difference of Logits Ratio (Croce & Hein 2020, Eq. 5), for APGD
    margin               z_y - max_{k != y} z_k, the Square attack's loss (no gradient)

`loss_and_input_gradient` runs the network forward and backward to the inputs only
(``param_grads=False``): the weights, the layers' weight gradients and (via `frozen_buffers`) the
buffers are left as they were. Its forward pass is in inference mode, in training mode, or mixed
(`mixed_forward`: dropout and batch normalisation each in a mode of its own), so that the parts of a
training-mode gradient can be measured one at a time (:mod:`nanosgm.attacks.readings`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import backend
from ..layers import BatchNorm, Dropout, Sequential, SoftmaxCrossEntropy
from .checks import check_labels
from .state import frozen_buffers, on_backend

if TYPE_CHECKING:
    from ..layers import Layer
    from ..layers.base import Array


def cross_entropy_loss(logits: Array, y: Array, *, y_bounds: tuple[int, int] | None = None) -> tuple[Array, Array]:
    """(per-example softmax cross-entropy (N,), dE/dlogits (N, K)) with E the batch MEAN, as in training.
    ``y_bounds``: the labels' (min, max) when the caller found them on the host (checked against K instead
    of reading `y`'s back); the batch mean stays on the device (unused here: nothing is read back)."""
    loss_fn = SoftmaxCrossEntropy(loss_on_device=True)
    if y_bounds is not None:
        loss_fn.known_labels(y, y_bounds)
    loss_fn.forward(logits, y)
    return loss_fn.losses(), loss_fn.backward()


def dlr_loss(logits: Array, y: Array, *, y_bounds: tuple[int, int] | None = None) -> tuple[Array, Array]:
    """Difference of Logits Ratio (Croce & Hein 2020, Eq. 5), per example, and d(sum of DLR)/dlogits:

        DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)       (pi sorts z in decreasing order)

    positive exactly when the example is misclassified; invariant to shifting and scaling the logits.
    A 1e-12 in the denominator keeps it finite when the three largest logits tie. Needs K >= 3 classes;
    the labels are checked as `SoftmaxCrossEntropy` checks them (from ``y_bounds``, their (min, max), when given).
    Shapes: logits (N, K), y (N,) -> (N,), (N, K).
    """
    xp = backend.array_module(logits)
    n, k = logits.shape
    if k < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes (it uses the third-largest logit), got {k}")
    rows = xp.arange(n)
    y = xp.asarray(y)
    check_labels(logits, y, y_bounds)
    order = xp.argsort(-logits, axis=1)
    first, third = order[:, 0], order[:, 2]
    others = logits.copy()
    others[rows, y] = -xp.inf
    best_other = xp.argmax(others, axis=1)
    gap = logits[rows, y] - logits[rows, best_other]                 # z_y - max_{i != y} z_i
    spread = logits[rows, first] - logits[rows, third] + 1e-12       # z_pi1 - z_pi3
    loss = -gap / spread
    classes = xp.arange(k)[None, :]

    def onehot(idx: Array) -> Array:
        return (classes == idx[:, None]).astype(logits.dtype)

    # the four terms of the derivative; where two indices coincide (e.g. y = pi1) their terms add
    d = ((onehot(best_other) - onehot(y)) / spread[:, None]
         + (onehot(first) - onehot(third)) * (gap / spread ** 2)[:, None])
    return loss, d


KERAS_EPSILON = 1e-7    # Keras's K.epsilon(): its categorical cross-entropy clips probabilities to [eps, 1 - eps]


def keras_cross_entropy_loss(logits: Array, y: Array, prob_clip: float = KERAS_EPSILON, *,
                             y_bounds: tuple[int, int] | None = None) -> tuple[Array, Array]:
    """The softmax cross-entropy and its batch-mean gradient as Keras 2 computed them (the authors'
    framework): -log(clip(p_y, prob_clip, 1 - prob_clip)). A clipped value has no gradient, so a row whose
    true-class probability lies outside [prob_clip, 1 - prob_clip] gets dE/dlogits = 0; every other row
    gets the exact (softmax(z) - onehot(y)) / N. ``y_bounds``: as for `cross_entropy_loss`.

    >>> import numpy as np
    >>> z = np.array([[0.0, 0.0], [40.0, 0.0]], dtype=np.float32)     # row 1: p(class 0) = 1 - 4e-18
    >>> keras_cross_entropy_loss(z, np.array([0, 0]))[1].tolist()
    [[-0.25, 0.25], [0.0, 0.0]]
    """
    losses, d = cross_entropy_loss(logits, y, y_bounds=y_bounds)
    inside = keras_unclipped(losses, prob_clip)
    return losses, d * inside[:, None].astype(d.dtype)


def keras_unclipped(losses: Array, prob_clip: float = KERAS_EPSILON) -> Array:
    """(N,) bool: the rows whose true-class probability p_y = exp(-loss) lies inside Keras's clip
    [prob_clip, 1 - prob_clip], i.e. whose Keras cross-entropy has a gradient. The others are SATURATED:
    the authors' loss leaves them unperturbed. ``losses``: the per-example cross-entropy (N,)."""
    p = backend.array_module(losses).exp(-losses)                     # the true class's probability
    return (p >= prob_clip) & (p <= 1 - prob_clip)


LOSSES = {"ce": cross_entropy_loss, "dlr": dlr_loss, "keras-ce": keras_cross_entropy_loss}


def margin(logits: Array, y: Array) -> Array:
    """z_y - max_{k != y} z_k per example (N,): negative exactly when the example is misclassified.
    Labels are checked as `SoftmaxCrossEntropy` checks them ((N,) integers in [0, K))."""
    xp = backend.array_module(logits)
    check_labels(logits, y)
    rows = xp.arange(logits.shape[0])
    others = logits.copy()
    others[rows, y] = -xp.inf
    return logits[rows, y] - others.max(axis=1)


def _layer_mode(layer: Layer, dropout: bool, batch_stats: bool) -> bool:
    """The `training` flag `mixed_forward` gives one (non-Sequential) layer."""
    if isinstance(layer, Dropout):
        return dropout
    if isinstance(layer, BatchNorm):
        return batch_stats
    return dropout and batch_stats            # no other layer of nanosgm.layers reads the flag


def mixed_forward(model: Layer, x: Array, *, dropout: bool, batch_stats: bool) -> Array:
    """The logits of `model` at `x` with every Dropout layer in training mode iff ``dropout`` (a mask
    drawn per call) and every BatchNorm layer on the batch's statistics iff ``batch_stats`` (else on its
    running statistics); any other layer gets ``dropout and batch_stats``. Each layer keeps its cache, so
    ``model.backward`` then gives the input gradient of this mixed mode. With ``dropout == batch_stats``
    it is ``model.forward(x, training=dropout)`` itself. Nested Sequentials are walked layer by layer.
    BatchNorm on batch statistics updates its running statistics, as in training: wrap the call in
    :class:`~nanosgm.attacks.state.frozen_buffers` (as `loss_and_input_gradient` does).
    Shapes: x (N, ...) -> logits (N, K)."""
    if dropout == batch_stats:
        return model.forward(x, training=dropout)
    if not isinstance(model, Sequential):
        return model.forward(x, training=_layer_mode(model, dropout, batch_stats))
    backend.check_same_backend(x, (p for layer in model.layers for p in layer.params.values()), "Sequential")
    for layer in model.layers:
        x = mixed_forward(layer, x, dropout=dropout, batch_stats=batch_stats)
    return x


def loss_and_input_gradient(model: Sequential, x: Array, y: Array, loss: str = "ce", *, training: bool = False,
                            dropout: bool | None = None, batch_stats: bool | None = None,
                            y_bounds: tuple[int, int] | None = None) -> tuple[Array, Array, Array]:
    """(per-example loss (N,), logits (N, K), dE/dx shaped like x) of `model` at inputs `x`, labels `y`.

    `loss`: "ce" (softmax cross-entropy; the gradient is that of the batch mean, as in training),
    "keras-ce" (the same as Keras computed it) or "dlr" (the gradient of the sum of the per-example DLR
    losses). Inference mode by default; `training=True` runs training mode with the buffers kept
    unchanged. ``dropout`` / ``batch_stats`` (None: `training`) set the two layer kinds apart
    (`mixed_forward`): e.g. ``dropout=False, batch_stats=True`` is batch normalisation on the batch's
    statistics with dropout off. Parameters, buffers and the layers' weight gradients are never
    touched (the backward pass computes dE/dx only). ``y_bounds``: the labels' (min, max) when the caller
    found them (on the host, or once per attack): the loss checks them instead of reading `y`'s back.
    Nothing is read back from a device.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(sorted(LOSSES))}")
    dropout = training if dropout is None else bool(dropout)
    batch_stats = training if batch_stats is None else bool(batch_stats)
    x = on_backend(x)
    y = on_backend(y, like=x)
    with frozen_buffers(model, active=batch_stats):             # only batch statistics move the buffers
        logits = mixed_forward(model, x, dropout=dropout, batch_stats=batch_stats)
        values, dlogits = LOSSES[loss](logits, y, y_bounds=y_bounds)
        dx = model.backward(dlogits, param_grads=False)   # dE/dx only: weights stay as they are (Eq. 14)
    return values, logits, dx


def input_gradient(model: Sequential, x: Array, y: Array, *, training: bool = False) -> tuple[float, Array]:
    """(loss, dE/dx): the residual gradient at the inputs (Eq. 14) of the softmax cross-entropy E
    (batch mean) of `model` on inputs `x` with integer labels `y`.

    `training=False` (default) runs the network in inference mode; `training=True` runs it in training
    mode (dropout on, batch statistics) while keeping its buffers unchanged. Parameters are never touched.
    The loss is a Python float (one read from a device): callers that need dE/dx only call
    `loss_and_input_gradient`, which reads nothing back.
    """
    values, _, dx = loss_and_input_gradient(model, x, y, "ce", training=training)
    return float(values.mean()), dx
