"""Real MNIST (through NANOSGM_DATA) and Fashion-MNIST (Debian's dataset-fashion-mnist), loaded as the
paper splits them (Section 5: 50,000 / 10,000 / 10,000)."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

import nanosgm.data as data
from conftest import require_real_data


def test_shapes_dtypes_ranges_and_split_sizes(mnist_real):
    ds = mnist_real
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.input_shape == (1, 28, 28)
    for X, y, n in ((ds.X_train, ds.y_train, 50000), (ds.X_val, ds.y_val, 10000), (ds.X_test, ds.y_test, 10000)):
        assert X.shape == (n, 1, 28, 28) and X.dtype == np.float32 and X.flags.c_contiguous
        assert y.shape == (n,) and y.dtype == np.int64
        assert X.min() == 0.0 and X.max() == 1.0
        assert set(np.unique(y)) == set(range(10))
    # values are exactly k/255
    k = ds.X_test[:100] * 255
    assert np.allclose(k, np.round(k), atol=1e-4)


def test_sanity_facts_from_shared_readme(mnist_real):
    assert mnist_real.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(mnist_real.y_test, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958,
                                                                    1028, 974, 1009]


def test_validation_is_the_last_10000_training_images(mnist_real):
    Xtr, ytr, _, _, _, _, _ = data.load_raw("mnist", require_real_data("mnist"), download=False)
    assert Xtr.shape == (60000, 1, 28, 28) and Xtr.dtype == np.uint8
    assert np.array_equal(mnist_real.y_val, ytr[50000:])
    assert np.array_equal(mnist_real.X_val[:5], Xtr[50000:50005].astype(np.float32) / 255)
    assert np.array_equal(mnist_real.X_train[-3:], Xtr[49997:50000].astype(np.float32) / 255)


def test_repr_is_concise(mnist_real):
    r = repr(mnist_real)
    assert "(50000, 1, 28, 28)" in r and "float32" in r and len(r) < 600


def test_limit_val_size_dtype_and_range_options(mnist_real):
    d = require_real_data("mnist")
    small = data.load("mnist", d, limit=100, download=False)
    assert small.X_train.shape[0] == 100 and small.X_val.shape[0] == 10000 and small.X_test.shape[0] == 10000
    assert np.array_equal(small.X_train, mnist_real.X_train[:100])
    per = data.load("mnist", d, limit={"train": 7, "val": 5, "test": 3}, val_size=2000, dtype="uint8",
                    download=False)
    assert (per.X_train.shape[0], per.X_val.shape[0], per.X_test.shape[0]) == (7, 5, 3)
    assert per.X_train.dtype == np.uint8 and per.X_train.max() > 200
    assert np.array_equal(per.y_val, mnist_real.y_val[8000:8005])  # last 2,000 of the 60,000
    sym = data.load("mnist", d, limit=(50, 0, 0), dtype="float64", value_range=(-1, 1), download=False)
    assert sym.X_train.dtype == np.float64 and sym.X_train.min() == -1.0 and sym.X_train.max() == 1.0
    assert sym.X_val.shape == (0, 1, 28, 28)
    with pytest.raises(ValueError):
        data.load("mnist", d, val_size=60000, download=False)
    with pytest.raises(ValueError, match=r"limit keys must be 'train', 'val', 'test'; got extra, trian$"):
        data.load("mnist", d, limit={"trian": 7, "extra": 1}, download=False)     # a list, not a Python repr


def test_raw_and_gz_files_give_the_same_data(mnist_real, tmp_path):
    src = require_real_data("mnist") / "mnist"
    for f in src.glob("t*-ubyte.gz"):
        with gzip.open(f) as zin:
            (tmp_path / f.name[:-3]).write_bytes(zin.read())
    shutil.copy(src / "train-images-idx3-ubyte.gz", tmp_path)
    shutil.copy(src / "train-labels-idx1-ubyte.gz", tmp_path)
    ds = data.load("mnist", tmp_path, limit=(10, 10, 10000), download=False)
    assert np.array_equal(ds.X_test, mnist_real.X_test) and np.array_equal(ds.y_test, mnist_real.y_test)
    assert ds.source == str(tmp_path)


def test_corrupted_real_file_is_a_clear_error(tmp_path):
    src = require_real_data("mnist") / "mnist"
    for f in src.glob("*.gz"):
        shutil.copy(f, tmp_path)
    with gzip.open(src / "t10k-labels-idx1-ubyte.gz") as zin:
        raw = bytearray(zin.read())
    raw[100] = (raw[100] + 1) % 10  # one label changed: still a valid IDX file, but not the official one
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match=r"checksum mismatch for .*t10k-labels-idx1-ubyte.*ff7bcfd4"):
        data.load("mnist", tmp_path, download=False)


def test_truncated_gz_is_a_clear_error(tmp_path):
    src = require_real_data("mnist") / "mnist"
    for f in src.glob("*.gz"):
        shutil.copy(f, tmp_path)
    blob = (src / "t10k-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte.gz.*(corrupted|truncated)"):
        data.load("mnist", tmp_path, download=False)


def test_fashion_mnist_from_the_debian_package():
    d = require_real_data("fashion-mnist")
    ds = data.load("fashion-mnist", d, download=False)
    assert ds.X_train.shape == (50000, 1, 28, 28) and ds.X_val.shape == (10000, 1, 28, 28)
    assert ds.X_test.shape == (10000, 1, 28, 28) and ds.X_train.dtype == np.float32
    assert 0.0 <= ds.X_train.min() and ds.X_train.max() <= 1.0
    # Fashion-MNIST is balanced: 1,000 test and 6,000 training images per class
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert (np.bincount(ds.y_train, minlength=10) + np.bincount(ds.y_val, minlength=10)).tolist() == [6000] * 10
    assert ds.class_names[9] == "Ankle boot"
