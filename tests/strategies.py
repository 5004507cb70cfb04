"""Hypothesis strategies shared by every property-based gradient test (minitorch style).

Shapes are drawn as small integers; array *values* come from a drawn seed fed to NumPy, which keeps
shrinking fast and every failure reproducible from the printed seed.
"""
from __future__ import annotations

import numpy as np
from hypothesis import settings, strategies as st

# Each numerical gradient costs two forward passes per element: keep arrays small, examples few.
GRADCHECK = settings(max_examples=int(__import__('os').environ.get('NANOSGM_GRADCHECK_EXAMPLES', 25)), deadline=None)
# float64 with 4th-order centred differences (nanosgm.layers.gradcheck): single layers typically agree to ~1e-9;
# the worst case found in searches of 200-300 examples per property was 2.7e-7, a BatchNorm input-gradient
# element of -1.2e-6 (nearly cancelling terms) where the numerical side is off by 6e-13. Networks add a loss
# and more round-off.
LAYER_TOL = 1e-6
NETWORK_TOL = 1e-5
# A loss adds round-off (~1e-12 absolute in the numerical gradient), so whole-network checks compare
# elements smaller than 1e-6 in absolute terms: |a - n| / max(1e-6, |a| + |n|).
NETWORK_FLOOR = 1e-6

seeds = st.integers(min_value=0, max_value=2**31 - 1)
batch = st.integers(min_value=1, max_value=3)
channels = st.integers(min_value=1, max_value=3)


def normal(seed: int, shape) -> np.ndarray:
    """Standard normal float64 values."""
    return np.random.default_rng(seed).standard_normal(shape)


def away_from_zero(seed: int, shape, low: float = 0.05) -> np.ndarray:
    """Random signs, magnitudes in [low, 1]: no ReLU input sits within a finite-difference step of its kink."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 1.0, size=shape)


def distinct(seed: int, shape, gap: float = 0.01) -> np.ndarray:
    """Values at least ``gap`` apart (a shuffled ladder): max-pooling has no ties to break."""
    size = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(size).reshape(shape) * gap - size * gap / 2


@st.composite
def dense_configs(draw):
    return dict(n=draw(st.integers(1, 4)), fin=draw(st.integers(1, 6)), fout=draw(st.integers(1, 5)))


@st.composite
def conv_configs(draw):
    """(N, C_in, C_out, H, W, kernel, stride, padding) with the padded input at least one kernel wide."""
    k = draw(st.integers(1, 4))
    padding = draw(st.integers(0, 2))
    stride = draw(st.integers(1, 3))
    h = draw(st.integers(max(1, k - 2 * padding), 7))
    w = draw(st.integers(max(1, k - 2 * padding), 7))
    return dict(n=draw(batch), cin=draw(channels), cout=draw(channels), h=h, w=w, k=k, stride=stride, padding=padding)


def conv_input_shape(cfg) -> tuple:
    """The (N, C_in, H, W) input shape a ``conv_configs`` example describes."""
    return (cfg["n"], cfg["cin"], cfg["h"], cfg["w"])


def conv_layer(cfg, seed: int):
    """The float64 Conv2D a ``conv_configs`` example describes: He weights after ``backend.seed(seed)``,
    bias ``normal(seed + 1)`` (non-zero, so that its gradient is checked too)."""
    from nanosgm import backend
    from nanosgm.layers import Conv2D
    backend.seed(seed)
    layer = Conv2D(cfg["cin"], cfg["cout"], cfg["k"], cfg["stride"], cfg["padding"], dtype="float64")
    layer.params["b"][...] = normal(seed + 1, cfg["cout"])
    return layer


@st.composite
def pool_configs(draw):
    k = draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.integers(1, 3)))
    h = draw(st.integers(k, 7))
    w = draw(st.integers(k, 7))
    return dict(n=draw(batch), c=draw(channels), h=h, w=w, k=k, stride=stride)


@st.composite
def batchnorm_shapes(draw):
    """(N, F) or (N, C, H, W) with at least four values per feature.

    With two values per feature the normalised output is +-1 whatever x is, so dE/dx is of the order
    of eps and a finite difference measures only round-off: a conditioning problem, not a test.
    """
    if draw(st.booleans()):
        return (draw(st.integers(4, 8)), draw(st.integers(1, 4)))
    n, c = draw(batch), draw(channels)
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if n * h * w < 4:
        h = 4
    return (n, c, h, w)


@st.composite
def any_shapes(draw, max_dims: int = 4):
    return tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=max_dims)))


# --- attacks, robustness audit, adversarial training (tests/test_attacks.py, test_robustness.py, test_adversarial.py)
attack_eps = st.sampled_from([0.0, 0.001, 0.05, 0.1, 0.3])


def blob_images(seed: int, n: int, classes: int = 3, shape=(1, 6, 6), spread: float = 0.08):
    """(X, y): n images in [0, 1] of `shape`, float64; class k is a fixed random pattern with values
    0.5 +- 0.1 plus Gaussian noise of std `spread`. Separable, but an L-inf step of about 0.1 crosses
    between classes, so attacks at eps in 0.05-0.3 succeed on part of the set."""
    rng = np.random.default_rng(seed)
    patterns = 0.5 + 0.1 * rng.choice([-1.0, 1.0], size=(classes,) + tuple(shape))
    y = rng.integers(0, classes, n)
    X = np.clip(patterns[y] + spread * rng.standard_normal((n,) + tuple(shape)), 0.0, 1.0)
    return X, y


def train_small(model, X, y, *, epochs: int = 20, batch: int = 50, lr: float = 0.01, seed: int = 0):
    """Train `model` with Adam on (X, y) (plain passes; deterministic). Returns the model."""
    from nanosgm.layers import SoftmaxCrossEntropy
    from nanosgm.optim import Adam
    rng = np.random.default_rng(seed)
    opt, loss_fn = Adam(lr=lr), SoftmaxCrossEntropy()
    for _ in range(epochs):
        perm = rng.permutation(len(X))
        for i in range(0, len(X) - 1, batch):
            idx = perm[i:i + batch]
            loss_fn.forward(model.forward(X[idx], training=True), y[idx])
            model.backward(loss_fn.backward())
            opt.step(model)
    return model
