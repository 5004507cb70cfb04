"""What the host-read tests share (tests/*/test_*host_reads.py): the ``on`` fixture that switches the backend
(to the CuPy stand-in, :mod:`nanosgm.standin`) for the rest of a test, and a tiny network and data set."""
from contextlib import contextmanager

import numpy as np
import pytest

from nanosgm import backend, standin
from nanosgm.layers import BatchNorm, Dense, Dropout, Flatten, ReLU, Sequential


@pytest.fixture
def on():
    """on("standin") makes the stand-in the backend for the rest of the test; NumPy is restored after."""
    yield backend.use
    backend.use("numpy")


def tiny_model(seed=0):
    """Flatten, Dense(12, 8), BatchNorm, ReLU, Dropout(0.25), Dense(8, 3), float64: the same weights on every
    backend (initialised from the seeded host generator)."""
    backend.seed(seed)
    return Sequential([Flatten(), Dense(12, 8, dtype="float64"), BatchNorm(8, dtype="float64"), ReLU(),
                       Dropout(0.25), Dense(8, 3, dtype="float64")])


def tiny_data(n, seed=0):
    """n inputs shaped (1, 3, 4) in [0, 1) and labels in {0, 1, 2}."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 1, 3, 4)), rng.integers(0, 3, n)


@contextmanager
def counted_steps(steps, reads):
    """Inside it, each training step (``nanosgm.methods.loop._step``) appends ``reads(counter)`` of its own
    stand-in counter to ``steps``; ``steps`` None counts nothing. The loop's step is restored after."""
    from nanosgm.methods import loop
    real = loop._step

    def counted(*a, **k):
        with standin.counting() as c:
            real(*a, **k)
        steps.append(reads(c))
    loop._step = counted if steps is not None else real
    try:
        yield
    finally:
        loop._step = real
