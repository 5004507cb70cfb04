"""Fault injection, data files: every damaged or misplaced dataset file is a clear DataError naming it.

Each test builds a small MNIST- or CIFAR-format dataset in tmp_path, with a good copy of the same files
in a second place that the search would reach next (NANOSGM_DATA), damages one file of the first place,
and asserts the outcome a user needs: a DataError that names the damaged file and says what is wrong
(never a reason to load the other copy instead: only a file that is not present lets the search go
on), or, where the damage is harmless, the correct data; and in every case that no file anywhere was
created, changed or removed.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import nanosgm.data as data
from nanosgm.data import cifar, locate, verify
from conftest import write_cifar_fixture
from faultkit import BROKEN_KINDS, flip_byte, replace_with, snapshot, truncate
from datakit import fake_idx_files, write_idx

TARGET = "t10k-labels-idx1-ubyte"          # the file the reproduction damaged


@pytest.fixture
def two_copies(isolated_data_env, monkeypatch):
    """A named --data-dir ("named/mnist/", .gz files) and a good copy in NANOSGM_DATA ("good/mnist/")."""
    tmp = isolated_data_env
    arrays, blobs, sums = fake_idx_files()
    write_idx(tmp / "named" / "mnist", blobs)
    write_idx(tmp / "good" / "mnist", blobs)
    monkeypatch.setenv(locate.DATA_ENV, str(tmp / "good"))
    return {"tmp": tmp, "named": tmp / "named", "dir": tmp / "named" / "mnist", "arrays": arrays,
            "blobs": blobs, "sums": sums}


def load_named(c):
    return data.load("mnist", c["named"], checksums=c["sums"], val_size=5, progress=False)


def refused(c, match, what=None):
    """Loading from the named folder raises a DataError matching ``match`` that names ``what``;
    nothing on disk changes."""
    before = snapshot(c["tmp"])
    with pytest.raises(data.DataError, match=match) as info:
        load_named(c)
    assert str(what or c["dir"] / f"{TARGET}.gz") in str(info.value)
    assert snapshot(c["tmp"]) == before, "a refused load changed files on disk"
    return str(info.value)


def test_the_undamaged_set_loads_from_the_named_folder(two_copies):
    ds = load_named(two_copies)
    assert "named" in ds.source
    np.testing.assert_array_equal(ds.y_test, two_copies["arrays"][TARGET])


# --- damaged content ------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9])
def test_truncated_gz_is_named_as_corrupted_or_truncated(two_copies, fraction):
    path = two_copies["dir"] / f"{TARGET}.gz"
    truncate(path, int(path.stat().st_size * fraction))
    refused(two_copies, "(corrupted or truncated|checksum mismatch)")


def test_truncated_raw_file_fails_its_checksum(two_copies):
    c = two_copies
    (c["dir"] / f"{TARGET}.gz").unlink()
    (c["dir"] / TARGET).write_bytes(c["blobs"][TARGET][:-3])
    refused(c, "checksum mismatch", c["dir"] / TARGET)


def test_a_flipped_byte_anywhere_in_a_gz_file_is_caught(two_copies):
    c = two_copies
    path = c["dir"] / f"{TARGET}.gz"
    header_only = {4, 5, 6, 7, 8, 9}     # mtime, extra flags, OS: gzip ignores these bytes, data is intact
    for pos in range(path.stat().st_size):
        flip_byte(path, pos)
        if pos in header_only:
            np.testing.assert_array_equal(load_named(c).y_test, c["arrays"][TARGET])
        else:
            refused(c, "(corrupted or truncated|checksum mismatch|not a gzipped file|cannot read)")
        flip_byte(path, pos)


@pytest.mark.parametrize("pos", [0, 3, 8, 17])
def test_a_flipped_byte_in_a_raw_file_fails_its_checksum(two_copies, pos):
    c = two_copies
    (c["dir"] / f"{TARGET}.gz").unlink()
    (c["dir"] / TARGET).write_bytes(c["blobs"][TARGET])
    flip_byte(c["dir"] / TARGET, pos)
    refused(c, "checksum mismatch", c["dir"] / TARGET)


def test_swapped_files_fail_their_checksums(two_copies):
    c = two_copies
    a, b = c["dir"] / "t10k-labels-idx1-ubyte.gz", c["dir"] / "train-labels-idx1-ubyte.gz"
    ba, bb = a.read_bytes(), b.read_bytes()
    a.write_bytes(bb)
    b.write_bytes(ba)
    msg = refused(c, "checksum mismatch", c["dir"] / "train-labels-idx1-ubyte.gz")   # the first one read
    assert "not the official one" in msg


# --- something else in the file's place -------------------------------------------------------------

@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_a_broken_entry_in_the_named_folder_is_an_error_not_a_fall_through(two_copies, kind):
    path = two_copies["dir"] / f"{TARGET}.gz"
    replace_with(path, kind)
    expected = {"empty": "corrupted", "directory": "is a folder", "dangling": "broken symbolic link",
                "loop": "symbolic link loop", "fifo": "not a regular file"}[kind]
    refused(two_copies, expected, path)


@pytest.mark.parametrize("kind", ["directory", "dangling", "loop", "fifo"])
def test_a_broken_raw_name_beside_a_good_gz_is_an_error(two_copies, kind):
    path = two_copies["dir"] / TARGET                 # looked for before TARGET.gz
    replace_with(path, kind)
    refused(two_copies, "folder|symbolic link|regular file", path)


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_a_broken_link_in_place_of_the_dataset_folder_is_an_error(two_copies, kind):
    import shutil
    shutil.rmtree(two_copies["dir"])
    replace_with(two_copies["dir"], kind)
    refused(two_copies, "symbolic link", two_copies["dir"])


def test_a_file_in_place_of_the_dataset_folder_is_an_error(two_copies):
    import shutil
    shutil.rmtree(two_copies["dir"])
    two_copies["dir"].write_bytes(b"not a folder")
    refused(two_copies, "is not a folder", two_copies["dir"])


def test_a_valid_symbolic_link_to_the_file_is_followed(two_copies):
    c = two_copies
    path = c["dir"] / f"{TARGET}.gz"
    real = c["tmp"] / "elsewhere.gz"
    path.rename(real)
    path.symlink_to(real)
    np.testing.assert_array_equal(load_named(c).y_test, c["arrays"][TARGET])


def test_a_file_that_is_not_present_lets_the_search_go_on(two_copies):
    """The one case where the next place is searched: the named folder lacks the dataset entirely."""
    import shutil
    shutil.rmtree(two_copies["dir"])
    ds = load_named(two_copies)
    assert ds.source.startswith(str(two_copies["tmp"] / "good"))


# --- permissions --------------------------------------------------------------------------------------

def test_an_unreadable_file_is_permission_denied_not_corrupted(two_copies, deny_reading):
    path = two_copies["dir"] / f"{TARGET}.gz"
    deny_reading(path)
    msg = refused(two_copies, "permission denied", path)
    assert "corrupted" not in msg


@pytest.mark.parametrize("which", ["dataset folder", "data root"])
def test_an_unreadable_folder_is_an_error_not_a_traceback(two_copies, deny_reading, which):
    folder = two_copies["dir"] if which == "dataset folder" else two_copies["named"]
    deny_reading(folder)
    with pytest.raises(data.DataError, match="permission denied") as info:
        load_named(two_copies)
    assert str(folder) in str(info.value)


def test_a_permission_error_while_reading_says_so(two_copies, deny_opening):
    """os.access says readable, the read is refused: still 'permission denied', never 'corrupted'."""
    path = two_copies["dir"] / f"{TARGET}.gz"
    deny_opening(path)
    msg = refused(two_copies, "cannot read .*permission denied", path)
    assert "corrupted" not in msg


def test_a_permission_error_while_hashing_an_archive_says_so(tmp_path, deny_opening):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"x" * 10)
    deny_opening(path)
    with pytest.raises(data.DataError, match="permission denied"):
        verify.check_file_digest(path, "md5:" + "0" * 32)


# --- CIFAR ---------------------------------------------------------------------------------------------

@pytest.fixture
def cifar_two_copies(isolated_data_env, monkeypatch):
    tmp = isolated_data_env
    fx = write_cifar_fixture(tmp / "named", "cifar10", per_batch=2, layout="folder")
    write_cifar_fixture(tmp / "good", "cifar10", per_batch=2, layout="folder")
    monkeypatch.setenv(locate.DATA_ENV, str(tmp / "good"))
    return tmp, fx


def load_cifar(tmp, fx):
    return data.load("cifar10", tmp / "named", checksums=fx["checksums"], val_size=2, progress=False)


@pytest.mark.parametrize("kind", ["directory", "dangling", "loop", "fifo"])
def test_a_broken_cifar_batch_is_an_error_naming_it(cifar_two_copies, kind):
    tmp, fx = cifar_two_copies
    path = fx["folder"] / "data_batch_3"
    replace_with(path, kind)
    before = snapshot(tmp)
    with pytest.raises(data.DataError) as info:
        load_cifar(tmp, fx)
    assert str(path) in str(info.value)
    assert snapshot(tmp) == before


@pytest.mark.parametrize("kind", ["dangling", "loop", "directory"])
def test_a_broken_cifar_archive_is_an_error_naming_it(isolated_data_env, monkeypatch, kind):
    tmp = isolated_data_env
    fx = write_cifar_fixture(tmp / "named", "cifar10", per_batch=2, layout="archive")
    write_cifar_fixture(tmp / "good", "cifar10", per_batch=2, layout="folder")
    monkeypatch.setenv(locate.DATA_ENV, str(tmp / "good"))
    replace_with(fx["archive"], kind)
    with pytest.raises(data.DataError) as info:
        load_cifar(tmp, fx)
    assert str(fx["archive"]) in str(info.value)


def test_an_unreadable_cifar_archive_is_permission_denied(isolated_data_env, deny_opening):
    tmp = isolated_data_env
    fx = write_cifar_fixture(tmp / "named", "cifar10", per_batch=2, layout="archive")
    deny_opening(fx["archive"])
    with pytest.raises(data.DataError, match="permission denied") as info:
        load_cifar(tmp, fx)
    assert "corrupted" not in str(info.value) and str(fx["archive"]) in str(info.value)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.99])
def test_a_truncated_cifar_batch_fails_its_checksum(cifar_two_copies, fraction):
    tmp, fx = cifar_two_copies
    path = fx["folder"] / "test_batch"
    truncate(path, int(path.stat().st_size * fraction))
    with pytest.raises(data.DataError, match="checksum mismatch for .*test_batch"):
        load_cifar(tmp, fx)


def _crafted(ops: bytes) -> bytes:
    """A protocol-2 pickle made of ``ops`` (raw pickle opcodes) and STOP."""
    return b"\x80\x02" + ops + b"."


OBJECT_ARRAY_PICKLES = {
    # numpy.ndarray((3,), 'O'): calling the class the allow-list resolves
    "ndarray call": _crafted(b"cnumpy\nndarray\nK\x03\x85X\x01\x00\x00\x00O\x86R"),
    # _reconstruct(ndarray, (3,), 'O'): an object type code
    "reconstruct 'O'": _crafted(b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x03\x85"
                                b"X\x01\x00\x00\x00O\x87R"),
    # numpy's own pickle of an object array (its state holds a list, not bytes)
    "object array": pickle.dumps(np.array([1, "a"], dtype=object), protocol=2),
    # a uint8 dtype whose pickled state claims object fields / flags
    "dtype state": _crafted(b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R"
                            b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"),
    # a bare dtype object outside any array
    "bare dtype": _crafted(b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R"),
}


@pytest.mark.parametrize("name", list(OBJECT_ARRAY_PICKLES))
def test_the_cifar_unpickler_never_builds_object_arrays(name):
    with pytest.raises(data.DataError, match="refused"):
        cifar.safe_loads(OBJECT_ARRAY_PICKLES[name], name)


@pytest.mark.parametrize("protocol", [2, 3, 4])
@pytest.mark.parametrize("array", [np.arange(6, dtype=">i4").reshape(2, 3), np.asfortranarray(np.eye(3)),
                                   np.arange(3072, dtype=np.uint8).reshape(1, 3072)])
def test_the_cifar_unpickler_rebuilds_plain_arrays_exactly(protocol, array):
    got = cifar.safe_loads(pickle.dumps({"data": array}, protocol=protocol))["data"]
    assert got.dtype == array.dtype and got.flags.writeable
    np.testing.assert_array_equal(got, array)


# --- dataset names (what the CLIs accept) ----------------------------------------------------------------

@pytest.mark.parametrize("spelling, key", [("MNIST", "mnist"), ("mnist", "mnist"), ("cifar-10", "cifar10"),
                                           ("CIFAR-10", "cifar10"), ("Cifar10", "cifar10"), ("cifar 100", "cifar100"),
                                           ("Fashion-MNIST", "fashion-mnist"), ("fashion_mnist", "fashion-mnist")])
def test_dataset_names_are_accepted_in_any_spelling(spelling, key):
    assert data.canonical_name(spelling) == key
    assert data.dataset_argument(spelling) == key


def test_dataset_argument_for_argparse_names_the_choices():
    import argparse
    parser = argparse.ArgumentParser(prog="train")
    parser.add_argument("dataset", type=data.dataset_argument)
    assert parser.parse_args(["CIFAR-10"]).dataset == "cifar10"
    with pytest.raises(argparse.ArgumentTypeError, match="unknown dataset 'svhn': choose one of mnist, "
                                                         "fashion-mnist, cifar10, cifar100"):
        data.dataset_argument("svhn")
    assert set(data.ACCEPTED_NAMES) >= {"mnist", "cifar-10", "cifar10", "fashion-mnist"}
    assert all(data.canonical_name(n) in data.DATASETS for n in data.ACCEPTED_NAMES)
