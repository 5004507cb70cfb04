"""Fault injection, model and checkpoint files: a damaged or mismatched .npz never loads silently.

Each test saves a small trained network (model.npz) or a checkpoint-like .npz (the model, WAME and SGM
state under "model.", "optim." and "sgm.", as nanosgm.train writes them) into tmp_path, damages it,
and asserts the outcome a user needs: a StateError (nanosgm's own ValueError subclass) naming the file
and, for a bad entry, the key as it is spelled in the file, or the correct result; and that nothing
was altered: the model, optimizer and SGM state after a refused load equal those before it, and the
file on disk is unchanged.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

from nanosgm import backend
from nanosgm.layers import BatchNorm, Dense, Flatten, ReLU, Sequential, SoftmaxCrossEntropy
from nanosgm.plumbing.npz import load_npz, save_npz_atomic
from nanosgm.optim import SGD, WAME, Adam
from nanosgm.methods.sgm import SmoothGradient
from nanosgm.plumbing.state import StateError
from faultkit import BROKEN_KINDS, flip_byte, replace_with, snapshot, truncate


def net(seed=0):
    backend.seed(seed)
    return Sequential([Flatten(), Dense(12, 6, dtype="float64"), BatchNorm(6, dtype="float64"), ReLU(),
                       Dense(6, 3, dtype="float64")])


X0 = np.random.default_rng(1).uniform(0, 1, (16, 1, 3, 4))
Y0 = np.arange(16) % 3


def train(model, opt, sgm, steps, start=0):
    """``steps`` mini-batches of 8 with SGM input updates: weights, optimizer slots and X_t all move."""
    loss = SoftmaxCrossEntropy()
    for k in range(start, start + steps):
        idx = np.arange(8) + 8 * (k % 2)
        loss.forward(model.forward(sgm.X[idx], training=True), Y0[idx])
        dX = model.backward(loss.backward())
        opt.step(model)
        sgm.update(idx, dX)


def trained(steps=3):
    model, opt, sgm = net(), WAME(lr=0.01), SmoothGradient(X0, 0.2, clip=(0.0, 1.0))
    train(model, opt, sgm, steps)
    return model, opt, sgm


def checkpoint_arrays(model, opt, sgm) -> dict:
    out = {}
    for prefix, d in (("model", model.state_dict()), ("optim", opt.state_dict()), ("sgm", sgm.state_dict())):
        out.update({f"{prefix}.{k}": np.asarray(v) for k, v in d.items()})
    return out


def sub(state, prefix):
    n = len(prefix) + 1
    return {k[n:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def resume(path, model, opt, sgm):
    """What a resume does with a checkpoint: read it, check every part, then load each part (naming the
    file and the prefix), so that a refused checkpoint changes none of the three."""
    state = load_npz(path)
    model.check_state_dict(sub(state, "model"), source=str(path), prefix="model.")
    opt.check_state_dict(sub(state, "optim"), source=str(path), prefix="optim.", model=model)
    sgm.check_state_dict(sub(state, "sgm"), source=str(path), prefix="sgm.")
    model.load_state_dict(sub(state, "model"), source=str(path), prefix="model.")
    opt.load_state_dict(sub(state, "optim"), source=str(path), prefix="optim.", model=model)
    sgm.load_state_dict(sub(state, "sgm"), source=str(path), prefix="sgm.")


def everything(model, opt, sgm) -> dict:
    """The complete state of the three objects (host copies) and their scalar attributes."""
    out = {"model": model.state_dict(), "optim": opt.state_dict(), "sgm": sgm.state_dict()}
    out["attrs"] = (opt.lr, opt.t, opt.form, opt.literal, sgm.input_lr, sgm.per_sample, sgm.clip, sgm.n_updates)
    return out


def assert_same(a, b):
    assert a["attrs"] == b["attrs"]
    for part in ("model", "optim", "sgm"):
        assert set(a[part]) == set(b[part]), part
        for k in a[part]:
            np.testing.assert_array_equal(a[part][k], b[part][k], err_msg=f"{part}.{k} changed by a refused load")


@pytest.fixture
def saved(tmp_path):
    """A checkpoint-like file written by trained objects, and fresh (differently seeded) objects to load it into."""
    path = tmp_path / "checkpoint.npz"
    arrays = checkpoint_arrays(*trained())
    save_npz_atomic(path, arrays)
    fresh = (net(seed=5), WAME(lr=0.5), SmoothGradient(X0, 0.2, clip=(0.0, 1.0)))
    return path, arrays, fresh


def refused(path, objs, match, key=None):
    """Resuming from ``path`` into ``objs`` raises a StateError matching ``match``, naming the file and ``key``;
    the objects and the file are left exactly as they were."""
    before, on_disk = everything(*objs), snapshot(path.parent)
    with pytest.raises(StateError, match=match) as info:
        resume(path, *objs)
    assert str(path) in str(info.value), info.value
    if key is not None:
        assert repr(key) in str(info.value), info.value
    assert_same(everything(*objs), before)
    assert snapshot(path.parent) == on_disk
    return str(info.value)


def rewrite(path, arrays, **changes):
    """Write ``arrays`` to ``path`` with entries replaced (a value) or removed (None)."""
    arrays = dict(arrays)
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    np.savez(path, **arrays)


# --- the correct result ---------------------------------------------------------------------------------

def test_an_intact_checkpoint_resumes_bit_identically(saved):
    """Resuming after 3 steps and taking 3 more equals 6 uninterrupted steps, weight for weight."""
    path, _, (model, opt, sgm) = saved
    resume(path, model, opt, sgm)
    train(model, opt, sgm, 3, start=3)
    ref = trained(6)
    assert_same(everything(model, opt, sgm), everything(*ref))


# --- the file itself is damaged --------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.5, 0.9, 0.999])
def test_a_truncated_file_is_refused(saved, fraction):
    path, _, objs = saved
    truncate(path, int(path.stat().st_size * fraction))
    refused(path, objs, "is empty|truncated or corrupted|not an .npz")


def structure_positions(path) -> list[int]:
    """Byte offsets of a .npz worth flipping: every byte of each member's local header and .npy header,
    of the central directory and of the end record, and every 11th byte of the array data."""
    size = path.stat().st_size
    with zipfile.ZipFile(path) as z:
        pos = set(range(z.start_dir, size)) | set(range(0, size, 11))
        for info in z.infolist():    # 30-byte header, name, ZIP64 extra (np.savez: 20 bytes), .npy header
            pos |= set(range(info.header_offset, min(size, info.header_offset + 30 + len(info.filename) + 20 + 128)))
    return sorted(pos)


def test_a_flipped_byte_anywhere_is_refused_or_harmless(tmp_path):
    """Each structural byte (and every 11th data byte) of a model.npz inverted in turn: a StateError
    naming the file, or (a byte zip does not use, such as a timestamp) exactly the saved arrays."""
    path = tmp_path / "model.npz"
    trained()[0].save(path)
    arrays = load_npz(path)
    outcomes = {"refused": 0, "harmless": 0}
    for pos in structure_positions(path):
        flip_byte(path, pos)
        try:
            state = load_npz(path)
        except StateError as exc:
            assert str(path) in str(exc)
            outcomes["refused"] += 1
            continue
        finally:
            flip_byte(path, pos)                  # back to the intact file
        assert set(state) == set(arrays), f"byte {pos}: the keys changed"
        for k in arrays:
            assert state[k].dtype == arrays[k].dtype, f"byte {pos} changed the dtype of {k}"
            np.testing.assert_array_equal(state[k], arrays[k], err_msg=f"byte {pos} changed {k} silently")
        outcomes["harmless"] += 1
    assert outcomes["refused"] > outcomes["harmless"] > 0, outcomes


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_something_else_in_place_of_the_file_is_refused(saved, kind):
    path, _, objs = saved
    replace_with(path, kind)
    expected = {"empty": "is empty", "directory": "is a folder", "dangling": "broken symbolic link",
                "loop": "cannot be opened", "fifo": "not a regular file"}[kind]
    refused(path, objs, expected)


def test_an_unreadable_file_is_permission_denied(saved, deny_reading):
    path, _, objs = saved
    deny_reading(path)
    before, on_disk = everything(*objs), snapshot(path.parent)     # (snapshot reads through os.open)
    with pytest.raises(StateError, match=f"{path} cannot be read: permission denied"):
        resume(path, *objs)
    assert_same(everything(*objs), before)
    assert snapshot(path.parent) == on_disk


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_npz(tmp_path / "nope.npz")


def test_an_npy_under_an_npz_name_is_refused_by_load_npz_and_sequential_load(tmp_path):
    path = tmp_path / "model.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))                  # np.save: one bare array, not an archive
    with pytest.raises(StateError, match="single .npy array"):
        load_npz(path)
    model = net()
    before = model.state_dict()
    with pytest.raises(StateError, match=f"{path} holds a single .npy array"):
        model.load(path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("content", [b"\x80\x04K\x01.", b"hello, this is text\n", b"\x1f\x8b\x08\x00gzip"])
def test_other_files_under_an_npz_name_are_refused(tmp_path, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(StateError, match="is not an .npz file"):
        net().load(path)


def test_a_member_that_is_not_an_array_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    net().save(path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("notes.txt", "not an array")
    with pytest.raises(StateError, match="member 'notes.txt' is not a NumPy array"):
        load_npz(path)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("key", ["model.1.W", "optim.state.1.W.zeta", "sgm.X"])
def test_object_arrays_are_refused_and_never_unpickled(saved, key):
    path, arrays, objs = saved
    marker = path.parent / "pwned"
    rewrite(path, arrays, **{key: np.array([_Payload(marker)] * 2, dtype=object)})
    refused(path, objs, "contains pickled Python objects")
    assert not marker.exists(), "loading a checkpoint executed pickled code"


# --- the file is readable, an entry is wrong ---------------------------------------------------------------

def _all_keys():
    return sorted(checkpoint_arrays(*trained(1)))


@pytest.mark.parametrize("key", _all_keys())
def test_every_missing_key_is_refused_naming_it(saved, key):
    path, arrays, objs = saved
    rewrite(path, arrays, **{key: None})
    if key.startswith("sgm.X"):                 # X may be absent only while nothing was updated
        refused(path, objs, "missing but the representation was updated", "sgm.X")
    else:
        refused(path, objs, "missing", key)


@pytest.mark.parametrize("prefix", ["model", "optim", "sgm"])
def test_an_unexpected_key_is_refused_naming_it(saved, prefix):
    path, arrays, objs = saved
    key = f"{prefix}.7.W" if prefix != "optim" else "optim.momentum"
    rewrite(path, arrays, **{key: np.zeros(3)})
    refused(path, objs, "unexpected", None)


@pytest.mark.parametrize("key, value", [
    ("model.1.W", np.zeros((6, 12))),              # transposed
    ("model.2.running_var", np.ones(7)),
    ("optim.state.4.W.theta", np.zeros((3, 6))),
    ("optim.lr", np.array([0.01])),                # a scalar expected
    ("sgm.X", np.zeros((15, 1, 3, 4))),            # another training set
    ("sgm.clip", np.array([0.0, 1.0, 2.0])),
])
def test_a_wrong_shape_is_refused_naming_the_key(saved, key, value):
    path, arrays, objs = saved
    rewrite(path, arrays, **{key: value})
    refused(path, objs, "shape|clip", key)


@pytest.mark.parametrize("key, dtype", [
    ("model.1.W", np.int64), ("model.2.gamma", np.bool_), ("model.4.b", np.complex128),
    ("optim.state.1.W.Z", np.int32), ("optim.lr", np.int64), ("optim.t", np.float64),
    ("sgm.X", np.uint8), ("sgm.n_updates", np.float64), ("sgm.per_sample", np.float64),
])
def test_a_wrong_dtype_is_refused_naming_the_key(saved, key, dtype):
    path, arrays, objs = saved
    rewrite(path, arrays, **{key: arrays[key].astype(dtype)})
    refused(path, objs, "dtype", key)


def test_text_where_a_number_belongs_is_refused(saved):
    path, arrays, objs = saved
    rewrite(path, arrays, optim__lr=np.array("0.01"))
    refused(path, objs, "dtype <U4", "optim.lr")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ["model.1.W", "model.2.running_mean", "optim.state.4.b.theta", "optim.lr",
                                 "optim.alpha", "sgm.X", "sgm.input_lr", "sgm.clip"])
def test_non_finite_values_are_refused_naming_the_key(saved, key, bad):
    path, arrays, objs = saved
    value = np.array(arrays[key], copy=True)
    value.reshape(-1)[value.size // 2] = bad
    rewrite(path, arrays, **{key: value})
    refused(path, objs, "NaN or infinite", key)


# --- the optimizer's state specifically ------------------------------------------------------------------------

def test_all_slots_of_one_parameter_missing_are_refused_with_the_model(saved):
    path, arrays, objs = saved
    rewrite(path, arrays, **{k: None for k in arrays if k.startswith("optim.state.4.W.")})
    refused(path, objs, "parameter '4.W' has no state", "optim.state.4.W.zeta")


def test_without_the_model_a_missing_parameter_is_an_error_at_the_first_step(saved):
    """A caller that does not pass model= still never trains on re-initialised slots."""
    path, arrays, (model, opt, sgm) = saved
    state = load_npz(path)
    optim = {k: v for k, v in sub(state, "optim").items() if not k.startswith("state.4.W.")}
    opt.load_state_dict(optim, source=str(path), prefix="optim.")
    model.load_state_dict(sub(state, "model"))
    with pytest.raises(StateError, match="no slots for parameter '4.W'"):
        train(model, opt, sgm, 1)


def test_without_the_model_no_state_at_all_after_steps_is_refused(saved):
    path, arrays, (_, opt, _) = saved
    optim = {k: v for k, v in sub(load_npz(path), "optim").items() if not k.startswith("state.")}
    with pytest.raises(StateError, match=r"took 3 steps but its per-parameter state .* is absent"):
        opt.load_state_dict(optim, source=str(path), prefix="optim.")


def test_an_unknown_slot_is_refused(saved):
    path, arrays, objs = saved
    rewrite(path, arrays, **{"optim.state.1.W.momentum": arrays["optim.state.1.W.Z"]})
    refused(path, objs, "not a slot of the wame optimizer", "optim.state.1.W.momentum")


def test_slots_for_a_parameter_the_model_lacks_are_refused(saved):
    path, arrays, objs = saved
    extra = {f"optim.state.9.W.{s}": arrays[f"optim.state.1.W.{s}"] for s in ("zeta", "Z", "theta", "g_sign")}
    rewrite(path, arrays, **extra)
    refused(path, objs, "for a parameter the model does not have", "optim.state.9.W")


@pytest.mark.parametrize("key, value, match", [
    ("optim.kind", np.array("adam"), "belongs to a 'adam' optimizer"),
    ("optim.form", np.array("fancy"), "'fancy', not one of authors, printed;"),
    ("optim.literal", np.array(1.0), "literal applies to 'printed' only"),
    ("optim.t", np.array(-2), "must be >= 0"),
    ("sgm.n_updates", np.array(-1), "must be >= 0"),
    ("sgm.clip", np.array([1.0, 0.0]), "lo <= hi"),
])
def test_inconsistent_values_are_refused(saved, key, value, match):
    path, arrays, objs = saved
    rewrite(path, arrays, **{key: value})
    refused(path, objs, match)


@pytest.mark.parametrize("make, hyper", [(lambda: SGD(lr=0.1, momentum=0.9), "momentum"),
                                         (lambda: Adam(), "beta2"), (lambda: WAME(), "eta_minus")])
def test_every_optimizer_refuses_a_missing_hyperparameter(make, hyper):
    model, opt = net(), make()
    train(model, opt, SmoothGradient(X0, 0.0), 2)
    d = opt.state_dict()
    del d[hyper]
    fresh = make()
    before = fresh.state_dict(), fresh.lr, fresh.t
    with pytest.raises(StateError, match=f"'{hyper}' is missing"):
        fresh.load_state_dict(d, model=model)
    assert (fresh.state_dict(), fresh.lr, fresh.t) == before


def test_sgd_without_momentum_resumes_without_slots():
    """The correct result for an optimizer that keeps no per-parameter state: nothing is missing."""
    model, opt = net(), SGD(lr=0.1)
    train(model, opt, SmoothGradient(X0, 0.0), 2)
    d = opt.state_dict()
    assert not [k for k in d if k.startswith("state.")]
    fresh = SGD(lr=0.5)
    fresh.load_state_dict(d, model=model)
    assert fresh.lr == 0.1 and fresh.t == 2
    train(model, fresh, SmoothGradient(X0, 0.0), 1)


# --- a refused load leaves a previously loaded model intact ------------------------------------------------------

def test_a_refused_load_after_a_good_one_keeps_the_good_weights(tmp_path):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    src = trained()[0]
    src.save(good)
    state = src.state_dict()
    state["4.b"] = np.full(3, np.nan)          # the last entry checked is the broken one
    np.savez(bad, **state)
    model = net(seed=9)
    model.load(good)
    loaded = model.state_dict()
    with pytest.raises(StateError, match=f"{bad}: '4.b' holds NaN"):
        model.load(bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, loaded[k])
    assert os.path.getsize(good) > 0 and load_npz(good).keys() == loaded.keys()
