"""Helpers of the data tests (tests/data/ and the fault suite): tiny MNIST-format files written by hand."""
from __future__ import annotations

import gzip
import hashlib

import numpy as np

from nanosgm.data import idx


def fake_idx_files(n_train=30, n_test=10, seed=0):
    """Tiny MNIST-format files: {name: raw bytes} and the checksums= override that accepts them."""
    g = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": g.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": g.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": g.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": g.integers(0, 10, n_test, dtype=np.uint8),
    }
    blobs = {k: idx.encode_idx(v) for k, v in arrays.items()}
    sums = {k: "sha256:" + hashlib.sha256(b).hexdigest() for k, b in blobs.items()}
    return arrays, blobs, sums


def write_idx(folder, blobs, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for name, b in blobs.items():
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(b))
        else:
            (folder / name).write_bytes(b)
