"""Adversarial examples: FGSM (Eq. 20) and PGD, and accuracy under attack.

Both attacks use the residual gradient at the inputs, dE/dx (Eq. 14), that `model.backward` returns,
with E the softmax cross-entropy against the TRUE labels (batch mean; only its sign matters here).

    FGSM (Goodfellow et al. 2015; the paper's Eq. 20):   x_adv = clip(x + eps * sign(dE/dx), lo, hi)
    PGD  (Madry et al. 2018): a random start in the L-inf eps-ball, then `steps` FGSM-like steps of size
         alpha, each followed by projection onto the eps-ball around x and onto the valid range.

The paper evaluates on an FGSM copy of the test set at eps in {0.001, 0.01, 0.1, 0.2} (`PAPER_EPS`).

    >>> import numpy as np
    >>> from nanosgm import attacks
    >>> from nanosgm.layers import Dense, Flatten, ReLU, Sequential
    >>> model = Sequential([Flatten(), Dense(16, 8), ReLU(), Dense(8, 3)])
    >>> x = np.random.default_rng(0).uniform(0, 1, (5, 1, 4, 4)).astype(np.float32)
    >>> y = np.array([0, 1, 2, 0, 1])
    >>> E, g = attacks.input_gradient(model, x, y)            # dE/dx (Eq. 14), shaped like x
    >>> x_adv = attacks.fgsm(model, x, y, eps=0.1)             # Eq. 20, clipped to [0, 1]
    >>> bool(np.allclose(x_adv, np.clip(x + 0.1 * np.sign(g), 0, 1))), float(np.abs(x_adv - x).max()) <= 0.1 + 1e-6
    (True, True)
    >>> acc = attacks.evaluate(model, x, y, [0.0, 0.1], "fgsm", progress=False)   # {eps: accuracy}
    >>> acc[0.0] == attacks.accuracy(model, x, y), sorted(acc)
    (True, [0.0, 0.1])

Model state: by default the attacks differentiate the network in inference mode (`training=False`):
dropout is off and batch normalisation uses (and does not update) its running statistics. The
authors' own evaluation script computed the gradient with the network in training mode and did not
clip to [0, 1]; `fgsm(..., training=True, clip=None)` reproduces that. In training mode batch
normalisation would update its running statistics; the attack saves and restores them, so an
attack never changes the model -- neither its parameters nor its buffers, nor the weight gradients
the layers hold (the backward pass runs with ``param_grads=False``: dE/dx only, which is also cheaper).
In training mode dropout draws its masks from the backend's generator, advancing it.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .layers import SoftmaxCrossEntropy

__all__ = ["PAPER_EPS", "ATTACKS", "input_gradient", "fgsm", "pgd", "accuracy", "evaluate"]

PAPER_EPS = (0.001, 0.01, 0.1, 0.2)


def _buffer_dicts(model):
    """Every `buffers` dict (e.g. batch norm's running statistics) in `model` and its sub-layers."""
    seen = set()
    stack = [model]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        if isinstance(getattr(m, "buffers", None), dict):
            yield m.buffers
        stack.extend(getattr(m, "layers", ()) or ())


class _frozen_buffers:
    """Context manager: copy every buffer on entry and write the copies back (in place) on exit."""

    def __init__(self, model, active=True):
        self.model, self.active, self.saved = model, active, []

    def __enter__(self):
        if self.active:
            for d in _buffer_dicts(self.model):
                self.saved.append((d, {k: v.copy() for k, v in d.items()}))
        return self

    def __exit__(self, *exc):
        for d, copies in self.saved:
            for k, v in copies.items():
                d[k][...] = v
        return False


def _on_backend(a, like=None):
    """`a` on the active backend (or on `like`'s backend when given)."""
    if like is not None and backend.array_module(a) is backend.array_module(like):
        return a
    return backend.to_device(a)


def input_gradient(model, x, y, *, training: bool = False):
    """(loss, dE/dx): the residual gradient at the inputs (Eq. 14) of the softmax cross-entropy E
    (batch mean) of `model` on inputs `x` with integer labels `y`.

    `training=False` (default) runs the network in inference mode; `training=True` runs it in training
    mode (dropout on, batch statistics) while keeping its buffers unchanged. Parameters are never touched.
    """
    x = _on_backend(x)
    y = _on_backend(y, like=x)
    loss_fn = SoftmaxCrossEntropy()
    with _frozen_buffers(model, active=training):
        logits = model.forward(x, training=training)
        loss = loss_fn.forward(logits, y)
        dx = model.backward(loss_fn.backward(), param_grads=False)   # dE/dx only: weights stay as they are
    return loss, dx


def _clip(x, clip):
    if clip is None:
        return x
    xp = backend.array_module(x)
    return xp.clip(x, clip[0], clip[1])


def _fgsm_from_sign(x, sign_grad, eps, clip):
    """Eq. 20 given sign(dE/dx): clip(x + eps * sign, lo, hi), in x's dtype."""
    return _clip(x + x.dtype.type(eps) * sign_grad, clip)


def fgsm(model, x, y, eps: float, *, clip=(0.0, 1.0), training: bool = False):
    """Fast Gradient Sign Method, Eq. 20: `x_adv = clip(x + eps * sign(dE/dx), lo, hi)`.

    Uses the true labels `y` and the network in inference mode. `clip=None` skips the range clip;
    `clip=None, training=True` reproduces the authors' evaluation script (see the module docstring).
    Returns an array on the active backend with x's dtype; `x` is not modified.
    """
    x = _on_backend(x)
    xp = backend.array_module(x)
    _, g = input_gradient(model, x, y, training=training)
    return _fgsm_from_sign(x, xp.sign(g).astype(x.dtype, copy=False), eps, clip)


def pgd(model, x, y, eps: float, *, steps: int = 10, step_size: float | None = None,
        random_start: bool = True, clip=(0.0, 1.0), rng=None):
    """Projected gradient descent on the loss (Madry et al. 2018), the L-inf iterated form of Eq. 20.

    x_0 = x + U(-eps, eps) (if `random_start`), clipped to the range; then `steps` times
    x_{k+1} = P(x_k + alpha * sign(dE/dx_k)), where P projects onto [x - eps, x + eps] and onto
    `clip`, and alpha = `step_size` (default 2.5 * eps / steps). The network is in inference mode.
    `rng`: None (the backend's seeded device generator), an int seed, or a NumPy/CuPy Generator; the
    random start is drawn from it, so a fixed seed gives a deterministic attack.
    """
    x = _on_backend(x)
    xp = backend.array_module(x)
    steps = int(steps)
    alpha = 2.5 * eps / max(steps, 1) if step_size is None else float(step_size)
    dt = x.dtype.type
    lo, hi = x - dt(eps), x + dt(eps)
    x_adv = x.copy()
    if random_start and eps > 0:
        if rng is None:
            rng = backend.device_rng()
        elif isinstance(rng, (int, np.integer)):
            rng = np.random.default_rng(int(rng))
        u = rng.random(x.shape, dtype=np.float64 if x.dtype == np.float64 else np.float32)
        x_adv = _clip(x + (2 * _on_backend(u, like=x).astype(x.dtype, copy=False) - 1) * dt(eps), clip)
    for _ in range(steps):
        _, g = input_gradient(model, x_adv, y)
        x_adv = x_adv + dt(alpha) * xp.sign(g).astype(x.dtype, copy=False)
        x_adv = _clip(xp.minimum(xp.maximum(x_adv, lo), hi), clip)
    return x_adv


ATTACKS = {"fgsm": fgsm, "pgd": pgd}


def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _n_correct(model, x, y) -> int:
    xp = backend.array_module(x)
    pred = xp.argmax(model.forward(x, training=False), axis=1)
    return int((pred == y).sum())


def accuracy(model, X, y, batch_size: int = 500) -> float:
    """Clean accuracy (the paper's Table 4 measure): the fraction of `X` that `model` classifies as
    `y`, in inference mode, `batch_size` at a time.
    `X`, `y` may live on the host or the device; each batch is moved to the active backend."""
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("accuracy of an empty set")
    correct = 0
    for sl in _batches(n, int(batch_size)):
        correct += _n_correct(model, backend.to_device(X[sl]), backend.to_device(y[sl]))
    return correct / n


def evaluate(model, X, y, eps_list=PAPER_EPS, attack="fgsm", batch_size: int = 500, *,
             progress: bool = True, **attack_kw) -> dict:
    """Accuracy under attack (the paper's Table 5 measure with FGSM, Eq. 20):
    {eps: fraction of the adversarial copy of X classified as y}.

    For each batch and each eps, the batch is attacked with `attack` ('fgsm' (Eq. 20), 'pgd', or a
    callable `attack(model, x, y, eps, **attack_kw)`) and classified in inference mode; eps = 0 gives
    the clean accuracy. For FGSM the input gradient does not depend on eps, so it is computed once per
    batch and shared by every eps (exactly `fgsm` per eps in inference mode; with `training=True`
    every eps shares one dropout mask). For PGD an integer `rng` seeds one generator shared by all
    batches (deterministic); `rng=None` draws from the backend's device generator. A tqdm bar over
    the batches shows progress (`progress=False` hides it).
    """
    from tqdm.auto import tqdm

    if isinstance(attack, str):
        if attack not in ATTACKS:
            raise ValueError(f"unknown attack {attack!r}: choose one of {', '.join(sorted(ATTACKS))}, or pass a callable")
        attack_fn = ATTACKS[attack]
    else:
        attack_fn = attack
    if isinstance(attack_kw.get("rng"), (int, np.integer)):
        attack_kw["rng"] = np.random.default_rng(int(attack_kw["rng"]))  # one stream for all batches
    eps_list = [float(e) for e in eps_list]
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("evaluate on an empty set")
    correct = {e: 0 for e in eps_list}
    bar = tqdm(list(_batches(n, int(batch_size))), desc=f"{getattr(attack_fn, '__name__', 'attack')} eval",
               unit="batch", disable=None if progress else True, leave=False)
    for sl in bar:
        xb, yb = backend.to_device(X[sl]), backend.to_device(y[sl])
        if attack_fn is fgsm:
            kw = dict(attack_kw)
            clip, training = kw.pop("clip", (0.0, 1.0)), kw.pop("training", False)
            if kw:
                raise TypeError(f"fgsm got unexpected keyword arguments {sorted(kw)}")
            xp = backend.array_module(xb)
            sign = None
            for e in eps_list:
                if e == 0:
                    correct[e] += _n_correct(model, xb, yb)
                    continue
                if sign is None:
                    sign = xp.sign(input_gradient(model, xb, yb, training=training)[1]).astype(xb.dtype, copy=False)
                correct[e] += _n_correct(model, _fgsm_from_sign(xb, sign, e, clip), yb)
        else:
            for e in eps_list:
                x_adv = xb if e == 0 else attack_fn(model, xb, yb, e, **attack_kw)
                correct[e] += _n_correct(model, x_adv, yb)
    return {e: correct[e] / n for e in eps_list}
