"""A real protocol in seconds, for the tests of whatever reads protocol.json: tiny learnable data and a tiny
network, trained by :func:`nanosgm.experiments.run_protocol` exactly as the command line trains MNIST.

>>> doc = write_protocol(tmp / "p", runs=2, arms="sgm:0.2")          # doctest: +SKIP
>>> sorted(doc["networks"])                                           # doctest: +SKIP
['run0/control', 'run0/sgm:0.2', 'run1/control', 'run1/sgm:0.2']
"""
import json

import numpy as np
import pytest

from nanosgm import backend, experiments
from nanosgm.data import Dataset
from nanosgm.experiments.network import NetworkSpec
from nanosgm.layers import Dense, Flatten, ReLU, Sequential


def syn():
    """Learnable 3-class 1x4x4 data in [0, 1], named like MNIST (64 training, 20 validation, 20 test images)."""
    g = np.random.default_rng(0)

    def make(n):
        y = g.integers(0, 3, n)
        X = (g.random((n, 1, 4, 4)) * 0.5).astype(np.float32)
        X[np.arange(n), 0, y, y] += 0.5
        return X, y.astype(np.int64)

    (Xtr, ytr), (Xv, yv), (Xt, yt) = make(64), make(20), make(20)
    return Dataset("mnist", Xtr, ytr, Xv, yv, Xt, yt, 3, (1, 4, 4))


def tiny_net(ds):
    return Sequential([Flatten(), Dense(int(np.prod(ds.input_shape)), 8), ReLU(), Dense(8, ds.num_classes)])


BASE = NetworkSpec(dataset=syn, model=tiny_net, epochs=1, batch_size=32, eps=(0.01, 0.1))


def run(out, runs=1, threads=1, arms="sgm:0.2", **kw):
    """``run_protocol`` of BASE into folder ``out`` (its result dict)."""
    return experiments.run_protocol(BASE, runs=runs, arms=arms, out=out, threads=threads, progress=False,
                                    bars=False, **kw)


def write_protocol(out, runs=1, arms="sgm:0.2") -> dict:
    """A finished protocol in folder ``out`` (NumPy backend); its protocol.json as a dict."""
    backend.use("numpy")
    run(out, runs=runs, arms=arms)
    with open(f"{out}/protocol.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished two-run protocol folder of the control and sgm:0.2 (copy it before changing it); a test
    module takes it with ``from protokit import made``."""
    out = tmp_path_factory.mktemp("made") / "p"
    write_protocol(out, runs=2)
    return out
