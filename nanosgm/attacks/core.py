"""Adversarial examples: FGSM (Eq. 20), PGD, Auto-PGD, the Square attack, transfer, and accuracy under attack.

Every gradient attack uses the residual gradient at the inputs, dE/dx (Eq. 14), that
`model.backward(..., param_grads=False)` returns; the Square attack uses forward passes only.

    FGSM   (Goodfellow et al. 2015; the paper's Eq. 20):  x_adv = clip(x + eps * sign(dE/dx), lo, hi),
           E the softmax cross-entropy against the TRUE labels (batch mean; only its sign matters).
    PGD    (Madry et al. 2018): a random start in the L-inf eps-ball, then `steps` FGSM-like steps of size
           alpha, each followed by projection onto the eps-ball around x and onto the valid range;
           `restarts=R` keeps, per example, the worst of R random starts.
    APGD   (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
           parameter-free attacks", Algorithm 1): PGD with momentum 0.75 and a step size 2 * eps that is
           halved at fixed checkpoints when progress stalls, restarting from the best point; for the
           cross-entropy or the DLR loss (their Eq. 5).
    Square (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box adversarial attack
           via random search", Algorithm 1 and 2, L-inf): random search over square patches of colour
           +-eps, accepted per example when the margin loss drops. It never looks at a gradient, so
           gradient masking cannot fool it.
    transfer: examples crafted on one network and classified by another (`crafted_on`, `transfer_accuracy`).

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
dropout is off and batch normalisation uses (and does not update) its running statistics. In
inference mode every example is attacked independently of the others in its batch. The
authors' own evaluation script computed the gradient with the network in training mode and did not
clip to [0, 1]; `fgsm(..., training=True, clip=None)` reproduces that. In training mode batch
normalisation would update its running statistics; the attack saves and restores them, so an
attack never changes the model -- neither its parameters nor its buffers, nor the weight gradients
the layers hold (the backward pass runs with ``param_grads=False``: dE/dx only, which is also cheaper).
In training mode dropout draws its masks from the backend's generator, advancing it.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..layers import SoftmaxCrossEntropy

__all__ = ["PAPER_EPS", "ATTACKS", "input_gradient", "loss_and_input_gradient", "cross_entropy_loss",
           "dlr_loss", "margin", "fgsm", "pgd", "apgd", "apgd_start", "apgd_checkpoints", "square",
           "square_p", "square_side", "crafted_on", "transfer_accuracy", "accuracy", "correct_under_attack",
           "n_steps", "evaluate"]

PAPER_EPS = (0.001, 0.01, 0.1, 0.2)


# ------------------------------------------------------------------------------------ model state
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


def _as_rng(rng, default):
    """A generator: `rng` itself, a NumPy generator seeded with the int `rng`, or `default()` for None."""
    if rng is None:
        return default()
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    return rng


def _uniform(rng, shape, like):
    """U[0, 1) of `shape` drawn from `rng` (NumPy or CuPy), in `like`'s dtype, on `like`'s backend."""
    u = rng.random(shape, dtype=np.float64 if like.dtype == np.float64 else np.float32)
    return _on_backend(u, like=like).astype(like.dtype, copy=False)


# ------------------------------------------------------------------------------------ losses
def cross_entropy_loss(logits, y):
    """(per-example softmax cross-entropy (N,), dE/dlogits (N, K)) with E the batch MEAN, as in training."""
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(logits, y)
    return loss_fn.losses(), loss_fn.backward()


def dlr_loss(logits, y):
    """Difference of Logits Ratio (Croce & Hein 2020, Eq. 5), per example, and d(sum of DLR)/dlogits:

        DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)       (pi sorts z in decreasing order)

    positive exactly when the example is misclassified; invariant to shifting and scaling the logits.
    A 1e-12 in the denominator keeps it finite when the three largest logits tie. Needs K >= 3 classes.
    Shapes: logits (N, K), y (N,) -> (N,), (N, K).
    """
    xp = backend.array_module(logits)
    n, k = logits.shape
    if k < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes (it uses the third-largest logit), got {k}")
    rows = xp.arange(n)
    y = xp.asarray(y)
    order = xp.argsort(-logits, axis=1)
    first, third = order[:, 0], order[:, 2]
    others = logits.copy()
    others[rows, y] = -xp.inf
    best_other = xp.argmax(others, axis=1)
    gap = logits[rows, y] - logits[rows, best_other]                 # z_y - max_{i != y} z_i
    spread = logits[rows, first] - logits[rows, third] + 1e-12       # z_pi1 - z_pi3
    loss = -gap / spread
    classes = xp.arange(k)[None, :]

    def onehot(idx):
        return (classes == idx[:, None]).astype(logits.dtype)

    # the four terms of the derivative; where two indices coincide (e.g. y = pi1) their terms add
    d = ((onehot(best_other) - onehot(y)) / spread[:, None]
         + (onehot(first) - onehot(third)) * (gap / spread ** 2)[:, None])
    return loss, d


LOSSES = {"ce": cross_entropy_loss, "dlr": dlr_loss}


def margin(logits, y):
    """z_y - max_{k != y} z_k per example (N,): negative exactly when the example is misclassified."""
    xp = backend.array_module(logits)
    rows = xp.arange(logits.shape[0])
    others = logits.copy()
    others[rows, y] = -xp.inf
    return logits[rows, y] - others.max(axis=1)


def loss_and_input_gradient(model, x, y, loss: str = "ce", *, training: bool = False):
    """(per-example loss (N,), logits (N, K), dE/dx shaped like x) of `model` at inputs `x`, labels `y`.

    `loss`: "ce" (softmax cross-entropy; the gradient is that of the batch mean, as in training) or
    "dlr" (the gradient of the sum of the per-example DLR losses). Inference mode by default;
    `training=True` runs training mode with the buffers kept unchanged. Parameters, buffers and the
    layers' weight gradients are never touched (the backward pass computes dE/dx only).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(sorted(LOSSES))}")
    x = _on_backend(x)
    y = _on_backend(y, like=x)
    with _frozen_buffers(model, active=training):
        logits = model.forward(x, training=training)
        values, dlogits = LOSSES[loss](logits, y)
        dx = model.backward(dlogits, param_grads=False)   # dE/dx only: weights stay as they are (Eq. 14)
    return values, logits, dx


def input_gradient(model, x, y, *, training: bool = False):
    """(loss, dE/dx): the residual gradient at the inputs (Eq. 14) of the softmax cross-entropy E
    (batch mean) of `model` on inputs `x` with integer labels `y`.

    `training=False` (default) runs the network in inference mode; `training=True` runs it in training
    mode (dropout on, batch statistics) while keeping its buffers unchanged. Parameters are never touched.
    """
    values, _, dx = loss_and_input_gradient(model, x, y, "ce", training=training)
    return float(values.mean()), dx


# ------------------------------------------------------------------------------------ FGSM and PGD
def _clip(x, clip):
    if clip is None:
        return x
    xp = backend.array_module(x)
    return xp.clip(x, clip[0], clip[1])


def _project(x_adv, x, eps, clip):
    """P: onto the L-inf ball [x - eps, x + eps], then onto the valid range `clip`."""
    xp = backend.array_module(x)
    dt = x.dtype.type
    return _clip(xp.minimum(xp.maximum(x_adv, x - dt(eps)), x + dt(eps)), clip)


def _sign(g, like):
    return backend.array_module(g).sign(g).astype(like.dtype, copy=False)


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
    _, g = input_gradient(model, x, y, training=training)
    return _fgsm_from_sign(x, _sign(g, x), eps, clip)


def _pgd_run(model, x, y, eps, steps, alpha, random_start, clip, rng, training, idx=None):
    """One PGD run (Madry et al. 2018) from one random start; see `pgd`. `idx`: run it on the examples
    x[idx] only (the random start is still drawn for all of x, so the draws do not depend on `idx`)."""
    dt = x.dtype.type
    noise = _uniform(rng, x.shape, x) if random_start and eps > 0 else None
    if idx is not None:
        x, y, noise = x[idx], y[idx], (None if noise is None else noise[idx])
    x_adv = x.copy() if noise is None else _clip(x + (2 * noise - 1) * dt(eps), clip)
    if len(x) == 0:
        return x_adv
    for _ in range(steps):
        _, g = input_gradient(model, x_adv, y, training=training)
        x_adv = _project(x_adv + dt(alpha) * _sign(g, x), x, eps, clip)
    return x_adv


def _fooled_and_loss(model, x_adv, y):
    """(misclassified (N,) bool, per-example cross-entropy (N,)) in inference mode."""
    logits = model.forward(x_adv, training=False)
    xp = backend.array_module(logits)
    return xp.argmax(logits, axis=1) != y, cross_entropy_loss(logits, y)[0]


def pgd(model, x, y, eps: float, *, steps: int = 10, step_size: float | None = None, restarts: int = 1,
        random_start: bool = True, clip=(0.0, 1.0), rng=None, training: bool = False, skip_fooled: bool = True):
    """Projected gradient descent on the loss (Madry et al. 2018), the L-inf iterated form of Eq. 20.

    x_0 = x + U(-eps, eps) (if `random_start`), clipped to the range; then `steps` times
    x_{k+1} = P(x_k + alpha * sign(dE/dx_k)), where P projects onto [x - eps, x + eps] and onto
    `clip`, and alpha = `step_size` (default 2.5 * eps / steps). The network is in inference mode
    (`training=True`: training mode with the buffers kept, as adversarial training uses it).
    `restarts=R` runs R random starts one after the other from the same generator and keeps, per
    example, the worst: a misclassified result over a correct one, else the higher cross-entropy
    (R = 1 is one plain run). `rng`: None (the backend's seeded device generator), an int seed, or a
    NumPy/CuPy Generator; a fixed seed gives a deterministic attack.

    `skip_fooled` (the speed trick, restarts > 1 only): a restart runs on the examples that no earlier
    restart has misclassified, so a fooled example keeps its first misclassified result. Which examples
    end misclassified is what `skip_fooled=False` (every restart on every example, the reference) gives,
    up to the rounding of a matrix product over fewer rows; the two differ only in which misclassified
    point a fooled example returns (tests/test_attacks.py compares them).
    """
    x = _on_backend(x)
    y = _on_backend(y, like=x)
    steps, restarts = int(steps), int(restarts)
    if restarts < 1 or (restarts > 1 and not random_start):
        raise ValueError(f"pgd: restarts must be >= 1 and needs random_start for more than one, got {restarts}")
    alpha = 2.5 * eps / max(steps, 1) if step_size is None else float(step_size)
    rng = _as_rng(rng, backend.device_rng) if (random_start and eps > 0) else None
    best = _pgd_run(model, x, y, eps, steps, alpha, random_start, clip, rng, training)
    if restarts == 1:
        return best
    xp = backend.array_module(x)
    best_fooled, best_loss = _fooled_and_loss(model, best, y)
    for _ in range(restarts - 1):
        idx = xp.nonzero(~best_fooled)[0] if skip_fooled else xp.arange(len(x))
        cand = _pgd_run(model, x, y, eps, steps, alpha, random_start, clip, rng, training, idx)
        if len(idx) == 0:
            continue
        fooled, loss = _fooled_and_loss(model, cand, y[idx])
        was_fooled, was_loss = best_fooled[idx], best_loss[idx]
        take = (fooled & ~was_fooled) | ((fooled == was_fooled) & (loss > was_loss))
        best[idx] = xp.where(take.reshape((-1,) + (1,) * (x.ndim - 1)), cand, best[idx])
        best_fooled[idx], best_loss[idx] = xp.where(take, fooled, was_fooled), xp.where(take, loss, was_loss)
    return best


# ------------------------------------------------------------------------------------ Auto-PGD
APGD_MOMENTUM = 0.75      # alpha in Croce & Hein's Algorithm 1
APGD_RHO = 0.75           # Condition 1: fewer than rho * (w_j - w_{j-1}) of the steps raised the loss


def apgd_checkpoints(steps: int) -> list:
    """The checkpoints w_j = ceil(p_j * steps) at which APGD may halve its step size (Croce & Hein 2020):
    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), while p_j <= 1. Duplicates
    (few steps) are dropped. steps = 100 gives [0, 22, 41, 57, 70, 80, 87, 93, 99]."""
    p = [0.0, 0.22]
    while True:
        nxt = round(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06), 10)   # p_j are multiples of 0.01: no float drift
        if nxt > 1:
            break
        p.append(nxt)
    return sorted({math.ceil(round(pj * int(steps), 9)) for pj in p})


def apgd_start(x, eps: float, rng, clip=(0.0, 1.0)):
    """APGD's random start, as in the authors' code: x + eps * t / max|t| with t ~ U(-1, 1) per example
    (a point on the surface of the L-inf ball), clipped to the range. `rng`: a NumPy/CuPy Generator."""
    xp = backend.array_module(x)
    t = 2 * _uniform(rng, x.shape, x) - 1
    scale = xp.abs(t.reshape(t.shape[0], -1)).max(axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    return _clip(x + x.dtype.type(eps) * t / scale, clip)


class _ApgdState:
    """Per-example bookkeeping of Algorithm 1: current/previous point, best point, step size, counters."""

    def __init__(self, x0, f0, g0, eps):
        xp = backend.array_module(x0)
        n = x0.shape[0]
        self.x, self.x_prev, self.f, self.g = x0, x0, f0, g0
        self.x_max, self.f_max, self.g_max = x0.copy(), f0.copy(), g0.copy()
        self.eta = xp.full(n, 2 * eps, dtype=x0.dtype)              # eta^(0) = 2 eps
        self.increases = xp.zeros(n, dtype=np.int64)                 # steps since w_{j-1} that raised f
        self.halved_last = xp.zeros(n, dtype=bool)                   # eta^(w_{j-1}) != eta^(w_j)
        self.f_max_last = f0.copy()                                  # f_max^(w_{j-1})

    def column(self, v):
        return v.reshape((-1,) + (1,) * (self.x.ndim - 1))


def _apgd_step(s, x, eps, clip, first: bool):
    """x^(k+1) from x^(k): z = P(x^(k) + eta sign(grad)); then, after the first step, the momentum
    step x^(k+1) = P(x^(k) + alpha (z - x^(k)) + (1 - alpha)(x^(k) - x^(k-1)))."""
    z = _project(s.x + s.column(s.eta) * _sign(s.g, x), x, eps, clip)
    if first:
        return z
    a = x.dtype.type(APGD_MOMENTUM)
    return _project(s.x + a * (z - s.x) + (1 - a) * (s.x - s.x_prev), x, eps, clip)


def _apgd_checkpoint(s, w, w_prev):
    """At checkpoint w_j: halve eta and restart from x_max where Condition 1 (too few increases since
    w_{j-1}) or Condition 2 (eta not halved at w_{j-1} and f_max unchanged since) holds."""
    xp = backend.array_module(s.x)
    cond1 = s.increases < APGD_RHO * (w - w_prev)
    cond2 = ~s.halved_last & (s.f_max == s.f_max_last)
    halve = cond1 | cond2
    s.eta = xp.where(halve, s.eta / 2, s.eta)
    col = s.column(halve)
    s.x, s.g, s.f = xp.where(col, s.x_max, s.x), xp.where(col, s.g_max, s.g), xp.where(halve, s.f_max, s.f)
    s.halved_last, s.f_max_last = halve, s.f_max.copy()
    s.increases = xp.zeros_like(s.increases)


def _loss_on_rows(model, x, y, loss, rows, f_old, g_old):
    """(per-example loss, misclassified, dE/dx) like `loss_and_input_gradient`, computed for the examples
    where the bool mask `rows` is True only; the others keep `f_old`, `g_old` and count as not
    misclassified. `rows` None: every example (the plain call, the reference)."""
    xp = backend.array_module(x)
    if rows is None or bool(rows.all()):
        f, logits, g = loss_and_input_gradient(model, x, y, loss)
        return f, xp.argmax(logits, axis=1) != y, g
    idx = xp.nonzero(rows)[0]
    f, g, wrong = f_old.copy(), g_old.copy(), xp.zeros(len(x), dtype=bool)
    f_a, logits, g_a = loss_and_input_gradient(model, x[idx], y[idx], loss)
    f[idx], g[idx], wrong[idx] = f_a, g_a, xp.argmax(logits, axis=1) != y[idx]
    return f, wrong, g


def apgd(model, x, y, eps: float, *, steps: int = 100, loss: str = "ce", rng=None, clip=(0.0, 1.0),
         skip_fooled: bool = True):
    """Auto-PGD (Croce & Hein 2020, Algorithm 1), L-inf, maximising `loss` ("ce" or "dlr") of `model`.

    From `apgd_start`, `steps` steps (`_apgd_step`: a sign step of size eta^(k), then momentum 0.75,
    each projected onto the eps-ball and the range), eta^(0) = 2 eps. At each checkpoint w_j of
    `apgd_checkpoints(steps)` the examples whose progress stalled get eta halved and restart from their
    best point x_max (`_apgd_checkpoint`). The network is in inference mode: each example is attacked
    on its own; steps + 1 forward/backward passes in all. Returns, per example, the first visited point
    that is misclassified, else x_max (the highest loss seen). `rng`: None (the backend's device
    generator), an int seed, or a Generator.

    `skip_fooled` (the speed trick): an example's result is fixed once it is misclassified, so later
    steps run the network on the others only, and stop when none is left. The result is that of
    `skip_fooled=False` (every example every step, the reference; tests/test_attacks.py compares them)
    up to the rounding of a matrix product over fewer rows.
    """
    x = _on_backend(x)
    y = _on_backend(y, like=x)
    xp = backend.array_module(x)
    if eps <= 0 or steps < 1:
        return x.copy()
    x0 = apgd_start(x, eps, _as_rng(rng, backend.device_rng), clip)
    f, logits, g = loss_and_input_gradient(model, x0, y, loss)
    s = _ApgdState(x0, f, g, eps)
    fooled = xp.argmax(logits, axis=1) != y
    x_fooled = x0.copy()
    checkpoints = [w for w in apgd_checkpoints(steps) if w > 0]
    w_prev = 0
    for k in range(steps):
        if skip_fooled and bool(fooled.all()):
            break
        x_new = _apgd_step(s, x, eps, clip, first=(k == 0))
        f_new, wrong, g_new = _loss_on_rows(model, x_new, y, loss, ~fooled if skip_fooled else None, s.f, s.g)
        s.increases += f_new > s.f
        new_fooled = wrong & ~fooled
        x_fooled = xp.where(s.column(new_fooled), x_new, x_fooled)
        fooled |= new_fooled
        better = f_new > s.f_max
        s.x_max, s.g_max = xp.where(s.column(better), x_new, s.x_max), xp.where(s.column(better), g_new, s.g_max)
        s.f_max = xp.where(better, f_new, s.f_max)
        s.x_prev, s.x, s.f, s.g = s.x, x_new, f_new, g_new
        if k + 1 in checkpoints:
            _apgd_checkpoint(s, k + 1, w_prev)
            w_prev = k + 1
    return xp.where(s.column(fooled), x_fooled, s.x_max)


# ------------------------------------------------------------------------------------ Square attack
SQUARE_P_INIT = 0.8       # the fraction of pixels the first squares cover (AutoAttack's L-inf setting)
_SQUARE_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)   # on a 10,000-query scale


def square_p(p_init: float, it: int, n_iters: int) -> float:
    """The Square attack's schedule of p, the fraction of the image a square covers: iteration `it` of
    `n_iters` is rescaled to 10,000 queries; p is halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000
    and 8000 of them (p_init / 512 from 8000 to 10000), as in the authors' `p_selection`."""
    t = int(it / n_iters * 10000)
    if t > 10000:
        return p_init
    return p_init / 2 ** sum(t > b for b in _SQUARE_HALVINGS)


def square_side(p: float, c: int, h: int, w: int) -> int:
    """Side s of the square: round(sqrt(p * c*h*w / c)), at least 1 and at most h - 1."""
    s = int(round(math.sqrt(p * c * h * w / c)))
    return min(max(s, 1), h - 1)


def _square_proposal(x, x_best, eps, s, rng, clip):
    """For every row: x_best with one random s x s window (the same position in every channel) set to
    x + (+-eps per channel), re-drawn until it differs from x_best (Algorithm 2 of the paper, L-inf).
    The window's corner is uniform over all h - s + 1 (w - s + 1) positions, as the paper says; the
    authors' code draws randint(0, h - s), which never places a window against the last row or column."""
    xp = backend.array_module(x)
    m, c, h, w = x.shape
    top = np.floor(backend.to_host(rng.random(m)) * (h - s + 1)).astype(np.int64)   # uniform in 0 .. h - s
    left = np.floor(backend.to_host(rng.random(m)) * (w - s + 1)).astype(np.int64)
    rows, cols = np.arange(h), np.arange(w)
    window = (((rows >= top[:, None]) & (rows < top[:, None] + s))[:, :, None]
              & ((cols >= left[:, None]) & (cols < left[:, None] + s))[:, None, :])[:, None]   # (m, 1, h, w)
    window = _on_backend(window, like=x)
    delta = x_best - x
    todo = np.ones(m, dtype=bool)
    for _ in range(100):                 # a draw equal to the current window is re-drawn (bounded)
        colour = np.where(backend.to_host(rng.random((m, c, 1, 1))) < 0.5, -eps, eps).astype(x.dtype)
        colour = _on_backend(colour, like=x)
        keep = _on_backend(~todo, like=x).reshape(-1, 1, 1, 1)
        delta = xp.where(window & ~keep, colour, delta)
        same = xp.abs(_clip(x + delta, clip) - x_best) < 1e-7
        todo = backend.to_host((same | ~window).all(axis=(1, 2, 3)))
        if not todo.any():
            break
    return _clip(x + delta, clip)


def square(model, x, y, eps: float, *, queries: int = 1000, p_init: float = SQUARE_P_INIT, rng=None,
           clip=(0.0, 1.0)):
    """The Square attack (Andriushchenko et al. 2020), L-inf, untargeted, gradient-free.

    Start: vertical stripes, x + eps * (+-1 per column and channel), clipped. Then `queries - 1` times,
    for the examples not yet misclassified: propose x_best with one s x s square (side from `square_p`
    and `square_side`) recoloured to +-eps per channel (`_square_proposal`), and accept it per example
    when the margin loss z_y - max_{k != y} z_k (logits, inference mode) goes down. An example stops as
    soon as its margin is negative. Each query is one forward pass. x: (N, C, H, W) images, H, W >= 2.
    `rng`: None (the backend's host generator), an int seed, or a Generator. Returns x_best.
    """
    x = _on_backend(x)
    y = _on_backend(y, like=x)
    xp = backend.array_module(x)
    if x.ndim != 4 or min(x.shape[2:]) < 2:
        raise ValueError(f"square needs images shaped (N, C, H, W) with H, W >= 2, got {tuple(x.shape)}")
    if eps <= 0:
        return x.copy()
    rng = _as_rng(rng, backend.host_rng)
    n, c, h, w = x.shape
    stripes = np.where(backend.to_host(rng.random((n, c, 1, w))) < 0.5, -eps, eps).astype(x.dtype)
    x_best = _clip(x + _on_backend(stripes, like=x), clip)
    loss_best = margin(model.forward(x_best, training=False), y)
    for it in range(int(queries) - 1):
        active = xp.nonzero(loss_best > 0)[0]
        if active.size == 0:
            break
        s = square_side(square_p(p_init, it, int(queries)), c, h, w)
        x_new = _square_proposal(x[active], x_best[active], eps, s, rng, clip)
        loss_new = margin(model.forward(x_new, training=False), y[active])
        better = loss_new < loss_best[active]
        x_best[active] = xp.where(better.reshape(-1, 1, 1, 1), x_new, x_best[active])
        loss_best[active] = xp.where(better, loss_new, loss_best[active])
    return x_best


ATTACKS = {"fgsm": fgsm, "pgd": pgd, "apgd": apgd, "square": square}


# ------------------------------------------------------------------------------------ transfer
def crafted_on(source, attack="pgd", **attack_kw):
    """An attack callable for `evaluate` that crafts its examples on the network `source` (with
    `attack` and `attack_kw`), whatever network it is then evaluated on: a transfer attack."""
    attack_fn = _attack_fn(attack)

    def transfer(model, x, y, eps, **kw):
        return attack_fn(source, x, y, eps, **{**attack_kw, **kw})

    transfer.__name__ = f"{getattr(attack_fn, '__name__', 'attack')} transfer"
    return transfer


def transfer_accuracy(source, target, X, y, eps_list=PAPER_EPS, attack="pgd", batch_size=None, *,
                      progress: bool = True, **attack_kw) -> dict:
    """{eps: accuracy of `target` on examples crafted on `source`} (a black-box transfer attack)."""
    return evaluate(target, X, y, eps_list, crafted_on(source, attack), batch_size, progress=progress, **attack_kw)


# ------------------------------------------------------------------------------------ evaluation
def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _correct(model, x, y):
    """(N,) bool on the host: which rows `model` classifies as `y` (inference mode)."""
    xp = backend.array_module(x)
    return np.asarray(backend.to_host(xp.argmax(model.forward(x, training=False), axis=1) == y))


def accuracy(model, X, y, batch_size: int = 500) -> float:
    """Clean accuracy (the paper's Table 4 measure): the fraction of `X` that `model` classifies as
    `y`, in inference mode, `batch_size` at a time.
    `X`, `y` may live on the host or the device; each batch is moved to the active backend."""
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("accuracy of an empty set")
    correct = 0
    for sl in _batches(n, int(batch_size)):
        correct += int(_correct(model, backend.to_device(X[sl]), backend.to_device(y[sl])).sum())
    return correct / n


def _attack_fn(attack):
    if callable(attack):
        return attack
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}: choose one of {', '.join(sorted(ATTACKS))}, or pass a callable")
    return ATTACKS[attack]


def _fgsm_batch(model, xb, yb, eps_list, attack_kw, bar):
    """{eps: (B,) correct} for FGSM on one batch: one input gradient shared by every eps (exactly
    `fgsm` per eps in inference mode)."""
    kw = dict(attack_kw)
    clip, training = kw.pop("clip", (0.0, 1.0)), kw.pop("training", False)
    if kw:
        raise TypeError(f"fgsm got unexpected keyword arguments {sorted(kw)}")
    out, sign = {}, None
    for e in eps_list:
        if e == 0:
            out[e] = _correct(model, xb, yb)
        else:
            if sign is None:
                sign = _sign(input_gradient(model, xb, yb, training=training)[1], xb)
            out[e] = _correct(model, _fgsm_from_sign(xb, sign, e, clip), yb)
        bar.update(1)
    return out


def correct_under_attack(model, X, y, eps_list=PAPER_EPS, attack="fgsm", batch_size=None, *, bar=None,
                         **attack_kw) -> dict:
    """{eps: (n,) bool host array}: which examples of X `model` still classifies as y under `attack`.

    For each batch and each eps, the batch is attacked with `attack` (a name in `ATTACKS` or a callable
    `attack(model, x, y, eps, **attack_kw)`) and classified in inference mode; eps = 0 is the clean
    input. `batch_size` None: 500 for FGSM (one gradient per batch), 100 for the iterative attacks.
    An integer `rng` seeds one generator shared by all batches (deterministic). `bar`: anything with
    `update(1)`, called after each (batch, eps).
    """
    attack_fn = _attack_fn(attack)
    if isinstance(attack_kw.get("rng"), (int, np.integer)):
        attack_kw["rng"] = np.random.default_rng(int(attack_kw["rng"]))  # one stream for all batches
    eps_list = [float(e) for e in eps_list]
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("evaluate on an empty set")
    batch_size = int(batch_size or (500 if attack_fn is fgsm else 100))
    bar = bar if bar is not None else _NoBar()
    parts = {e: [] for e in eps_list}
    for sl in _batches(n, batch_size):
        xb, yb = backend.to_device(X[sl]), backend.to_device(y[sl])
        if attack_fn is fgsm:
            got = _fgsm_batch(model, xb, yb, eps_list, attack_kw, bar)
        else:
            got = {}
            for e in eps_list:
                got[e] = _correct(model, xb if e == 0 else attack_fn(model, xb, yb, e, **attack_kw), yb)
                bar.update(1)
        for e in eps_list:
            parts[e].append(got[e])
    return {e: np.concatenate(parts[e]) for e in eps_list}


class _NoBar:
    def update(self, k=1):
        pass


def n_steps(n: int, eps_list, attack="fgsm", batch_size=None) -> int:
    """How many (batch, eps) units `correct_under_attack` reports to its bar."""
    bs = int(batch_size or (500 if _attack_fn(attack) is fgsm else 100))
    return math.ceil(int(n) / bs) * len(list(eps_list))


def evaluate(model, X, y, eps_list=PAPER_EPS, attack="fgsm", batch_size=None, *,
             progress: bool = True, **attack_kw) -> dict:
    """Accuracy under attack (the paper's Table 5 measure with FGSM, Eq. 20):
    {eps: fraction of the adversarial copy of X classified as y}; see `correct_under_attack`.

    For FGSM the input gradient does not depend on eps, so it is computed once per batch and shared
    by every eps (with `training=True` every eps shares one dropout mask). For PGD an integer `rng`
    seeds one generator shared by all batches; `rng=None` draws from the backend's device generator.
    A tqdm bar over batches x eps shows progress (`progress=False` hides it; it is also off when
    stderr is not a terminal).
    """
    from tqdm.auto import tqdm

    attack_fn = _attack_fn(attack)
    eps_list = [float(e) for e in eps_list]
    total = n_steps(int(X.shape[0]), eps_list, attack_fn, batch_size) if int(X.shape[0]) else 0
    with tqdm(total=total, desc=f"{getattr(attack_fn, '__name__', 'attack')} eval", unit="batch x eps",
              disable=None if progress else True, leave=False) as bar:
        correct = correct_under_attack(model, X, y, eps_list, attack_fn, batch_size, bar=bar, **attack_kw)
    return {e: float(correct[e].mean()) for e in eps_list}
