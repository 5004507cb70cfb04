"""CIFAR-10 / CIFAR-100 loaders on small files written in exactly the CIFAR "python version" layout
(folder and .tar.gz archive), plus the untrusted-pickle and corrupted-file cases."""
from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest

import nanosgm.data as data
from conftest import write_cifar_fixture
from nanosgm.data import cifar


@pytest.mark.parametrize("layout", ["folder", "archive"])
def test_cifar10_fixture_loads_with_the_paper_split(isolated_data_env, layout):
    fx = write_cifar_fixture(isolated_data_env / "d", "cifar10", per_batch=12, layout=layout)
    ds = data.load("cifar10", isolated_data_env / "d", val_size=12, checksums=fx["checksums"])
    Xtr, ytr, _ = fx["train"]
    Xte, yte, _ = fx["test"]
    assert ds.X_train.shape == (48, 3, 32, 32) and ds.X_val.shape == (12, 3, 32, 32) and ds.X_test.shape == (12, 3, 32, 32)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.X_train.min() and ds.X_train.max() <= 1.0
    assert np.array_equal(ds.X_train, Xtr[:48] / np.float32(255)) and np.array_equal(ds.y_train, ytr[:48])
    assert np.array_equal(ds.y_val, ytr[48:])  # the validation set is data_batch_5, the end of the training set
    assert np.array_equal(ds.X_test * 255, Xte.astype(np.float32)) and np.array_equal(ds.y_test, yte)
    assert ds.num_classes == 10 and ds.input_shape == (3, 32, 32) and ds.class_names[3] == "class3"
    if layout == "archive":
        assert ds.source.endswith("cifar-10-python.tar.gz")


def test_cifar10_channel_layout_is_rgb_planes(isolated_data_env):
    """Row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major."""
    X = np.zeros((1, 3, 32, 32), np.uint8)
    X[0, 0, 0, 1] = 255  # red, row 0, column 1 -> byte 1
    X[0, 2, 31, 31] = 7  # blue, last pixel -> byte 3071
    blob = cifar.dump_batch(X, [4])
    row = pickle.loads(blob)[b"data"][0]
    assert row[1] == 255 and row[3071] == 7
    images, labels = cifar.parse_batch(blob, "b")
    assert np.array_equal(images, X) and labels.tolist() == [4]


def test_cifar100_fine_and_coarse_labels(isolated_data_env):
    fx = write_cifar_fixture(isolated_data_env / "d", "cifar100", per_batch=4, layout="archive")
    fine = data.load("cifar100", isolated_data_env / "d", val_size=5, checksums=fx["checksums"])
    coarse = data.load("cifar100", isolated_data_env / "d", val_size=5, checksums=fx["checksums"], coarse=True)
    _, yf, yc = fx["train"]
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert np.array_equal(fine.y_train, yf[:15]) and np.array_equal(coarse.y_train, yc[:15])
    assert np.array_equal(coarse.y_test, fx["test"][2]) and coarse.class_names[0] == "coarse0"
    assert np.array_equal(fine.X_train, coarse.X_train)


def test_folder_is_preferred_to_archive_and_limit_works(isolated_data_env):
    fx = write_cifar_fixture(isolated_data_env / "d", "cifar10", per_batch=6, layout="both")
    ds = data.load("cifar10", isolated_data_env / "d", val_size=6, limit=(10, 3, 2), checksums=fx["checksums"])
    assert ds.source.endswith("cifar-10-batches-py")
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == (10, 3, 2)


def test_fixture_without_override_is_rejected(isolated_data_env):
    """The default path always verifies against the official digests."""
    write_cifar_fixture(isolated_data_env / "d", "cifar10", per_batch=2, layout="archive")
    with pytest.raises(data.DataError, match="checksum mismatch for .*cifar-10-python.tar.gz.*c58f3010"):
        data.load("cifar10", isolated_data_env / "d")
    write_cifar_fixture(isolated_data_env / "e", "cifar100", per_batch=2, layout="folder")
    with pytest.raises(data.DataError, match="checksum mismatch for .*cifar-100-python.*16019d7e|f0ef6b0a|7973b151"):
        data.load("cifar100", isolated_data_env / "e")


def test_corrupted_member_is_named(isolated_data_env):
    fx = write_cifar_fixture(isolated_data_env / "d", "cifar10", per_batch=3, layout="folder")
    path = fx["folder"] / "data_batch_3"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match="checksum mismatch for .*data_batch_3"):
        data.load("cifar10", isolated_data_env / "d", val_size=3, checksums=fx["checksums"])


def test_truncated_archive_is_a_clear_error(isolated_data_env):
    fx = write_cifar_fixture(isolated_data_env / "d", "cifar10", per_batch=3, layout="archive")
    blob = fx["archive"].read_bytes()
    fx["archive"].write_bytes(blob[: len(blob) // 2])
    sums = dict(fx["checksums"], **{"cifar-10-python.tar.gz": "md5:" + hashlib.md5(blob[: len(blob) // 2]).hexdigest()})
    # even when the (test-only) override vouches for the truncated archive, reading it fails cleanly
    with pytest.raises(data.DataError, match="cifar-10-python.tar.gz.*(corrupted|truncated)"):
        data.load("cifar10", isolated_data_env / "d", val_size=3, checksums=sums)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_executed(isolated_data_env):
    marker = isolated_data_env / "pwned"
    evil = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [_Exploit(marker)]}, protocol=2)
    with pytest.raises(data.DataError, match=r"refused global (posix|os|nt)\.system"):
        cifar.parse_batch(evil, "evil")
    assert not marker.exists()
    # and through the loader, with an override that vouches for the evil file (checksum alone is no defence)
    fx = write_cifar_fixture(isolated_data_env / "d", "cifar10", per_batch=2, layout="folder")
    (fx["folder"] / "test_batch").write_bytes(evil)
    sums = dict(fx["checksums"], test_batch="md5:" + hashlib.md5(evil).hexdigest())
    with pytest.raises(data.DataError, match=r"test_batch was refused as unsafe"):
        data.load("cifar10", isolated_data_env / "d", val_size=2, checksums=sums)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps({"data": np.array([object()], dtype=object)}, protocol=2),  # object array
    pickle.dumps(eval, protocol=2),                                            # builtins.eval
    pickle.dumps({"data": np.zeros(3, np.uint8).view(np.recarray)}, protocol=2),  # ndarray subclass
])
def test_restricted_unpickler_refuses_non_plain_types(payload):
    with pytest.raises(data.DataError, match="refused"):
        cifar.safe_loads(payload, "crafted")


def test_protocol_variants_and_wrong_content():
    X = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3, 32, 32)
    for protocol in (2, 4):
        images, labels = cifar.parse_batch(cifar.dump_batch(X, [1, 2], protocol=protocol), "b")
        assert np.array_equal(images, X) and labels.tolist() == [1, 2]
    with pytest.raises(data.DataError, match=r"lacks the 'labels' entry \(keys: data\)"):
        cifar.parse_batch(pickle.dumps({b"data": X.reshape(2, -1)}, protocol=2), "b")
    with pytest.raises(data.DataError, match="2 images but 3 labels"):
        cifar.parse_batch(pickle.dumps({"data": X.reshape(2, -1), "labels": [1, 2, 3]}, protocol=2), "b")
    with pytest.raises(data.DataError, match="not a valid CIFAR pickle"):
        cifar.safe_loads(b"\x80\x02}q\x00(", "trunc")
    with pytest.raises(data.DataError, match="does not hold a dict"):
        cifar.parse_batch(pickle.dumps([1, 2], protocol=2), "b")


def test_a_hand_built_spec_the_loaders_cannot_read_is_refused_in_one_line():
    """A CIFAR spec without its archive or meta file, or a spec of an unknown kind, is refused when it is
    built (a ValueError naming what is missing), not later inside a loader as a TypeError."""
    import dataclasses
    from nanosgm.data import registry
    cifar10 = registry.get_spec("cifar10")
    for missing in ("archive", "meta_file"):
        with pytest.raises(ValueError, match=r"^DatasetSpec 'cifar10': a CIFAR spec needs archive=.*meta_file="):
            dataclasses.replace(cifar10, **{missing: None})
    with pytest.raises(ValueError, match=r"kind must be 'idx' or 'cifar', got 'png'"):
        dataclasses.replace(registry.get_spec("mnist"), kind="png")
    assert dataclasses.replace(cifar10, name="copy").archive == cifar10.archive       # a whole spec still builds
