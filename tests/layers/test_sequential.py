"""Sequential: parameter naming, state dicts, safe checkpoint files (atomic save, never unpickle on load)."""
import os

import numpy as np
import pytest

from nanosgm import backend
from nanosgm.plumbing.state import StateError
from nanosgm.layers import (BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy)
from strategies import normal


def small_net(seed=0):
    backend.seed(seed)
    return Sequential([Conv2D(1, 2, 3, dtype="float64"), MaxPool2D(2), BatchNorm(2, dtype="float64"), ReLU(),
                       Flatten(), Dense(8, 5, dtype="float64"), BatchNorm(5, dtype="float64"), ReLU(), Dropout(0.5),
                       Dense(5, 3, dtype="float64")])


def trained_net(seed=0):
    """A net whose parameters and running statistics are all away from their initial values."""
    model = small_net(seed)
    for step in range(3):
        x = normal(seed + step, (4, 1, 6, 6))
        loss = SoftmaxCrossEntropy()
        loss.forward(model.forward(x, training=True), np.array([0, 1, 2, 1]))
        model.backward(loss.backward())
        for _, p, g in model.parameters():
            p -= 0.1 * g
    return model


X = normal(123, (3, 1, 6, 6))
EXPECTED_KEYS = ["0.W", "0.b", "2.gamma", "2.beta", "5.W", "5.b", "6.gamma", "6.beta", "9.W", "9.b"]


# --- construction and parameters -------------------------------------------------------------------
def test_construction_rejects_non_layers():
    with pytest.raises(TypeError, match=r"layer 1 .*forward/backward"):
        Sequential([ReLU(), 3])
    with pytest.raises(TypeError, match="layer 0"):
        Sequential([np.zeros(3)])


def test_parameters_are_named_index_dot_key_in_order():
    model = small_net()
    assert [name for name, _, _ in model.parameters()] == EXPECTED_KEYS


def test_parameters_yield_the_live_arrays_and_none_grads_before_backward():
    model = small_net()
    for name, p, g in model.parameters():
        i, key = name.split(".")
        assert p is model[int(i)].params[key]
        assert g is None


def test_parameters_yield_grads_after_backward_shaped_like_params():
    model = small_net()
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(X), np.array([0, 1, 2]))
    model.backward(loss.backward())
    for name, p, g in model.parameters():
        assert g is not None and g.shape == p.shape, name
        i, key = name.split(".")
        assert g is model[int(i)].grads[key]


def test_num_params_counts_every_learnable_value():
    model = small_net()
    assert model.num_params() == (2 * 9 + 2) + (2 + 2) + (8 * 5 + 5) + (5 + 5) + (5 * 3 + 3)


# --- state dict ----------------------------------------------------------------------------------
def test_state_dict_has_params_and_batchnorm_running_stats():
    state = trained_net().state_dict()
    buffers = ["2.running_mean", "2.running_var", "6.running_mean", "6.running_var"]
    assert set(state) == set(EXPECTED_KEYS) | set(buffers)
    model = trained_net()
    np.testing.assert_array_equal(state["2.running_mean"], model[2].buffers["running_mean"])
    assert not np.allclose(state["6.running_var"], 1.0)        # really the trained statistics


def test_state_dict_returns_host_copies():
    model = trained_net()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = model.state_dict()
    for k, v in state.items():
        assert isinstance(v, np.ndarray)
        v += 1.0
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"mutating the state dict changed {k!r}")


def test_load_state_dict_round_trip_gives_identical_inference_outputs():
    src, dst = trained_net(0), small_net(99)
    assert not np.array_equal(src.forward(X, training=False), dst.forward(X, training=False))
    dst.load_state_dict(src.state_dict())
    np.testing.assert_array_equal(dst.forward(X, training=False), src.forward(X, training=False))


def test_load_state_dict_copies_into_the_existing_arrays():
    model = small_net()
    w = model[0].params["W"]
    model.load_state_dict(trained_net().state_dict())
    assert model[0].params["W"] is w         # optimizers keep references to these arrays


def test_load_state_dict_missing_key_is_a_clear_state_error():
    model = small_net()
    state = trained_net().state_dict()
    del state["5.W"]
    with pytest.raises(StateError, match=r"missing \['5\.W'\]"):
        model.load_state_dict(state)


def test_load_state_dict_unexpected_key_is_a_clear_state_error():
    state = small_net().state_dict()
    state["11.W"] = np.zeros(3)
    with pytest.raises(StateError, match=r"unexpected \['11\.W'\]"):
        small_net().load_state_dict(state)


def test_load_state_dict_wrong_shape_is_a_clear_state_error():
    state = small_net().state_dict()
    state["9.W"] = np.zeros((3, 5))
    with pytest.raises(StateError, match=r"'9\.W' has shape \(3, 5\), expected \(5, 3\)"):
        small_net().load_state_dict(state)


def test_failed_load_leaves_the_model_untouched():
    model = small_net()
    before = model.state_dict()
    state = trained_net().state_dict()
    state["9.b"] = np.zeros(7)                       # the last entry is the broken one
    with pytest.raises(StateError):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k!r} changed by a load that failed")


# --- files ---------------------------------------------------------------------------------------
def test_save_load_round_trip_is_bit_identical(tmp_path):
    src = trained_net()
    path = tmp_path / "model.npz"
    src.save(path)
    dst = small_net(7)
    dst.load(path)
    np.testing.assert_array_equal(dst.forward(X, training=False), src.forward(X, training=False))
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)


def test_save_writes_a_plain_npz_with_the_state_dict_keys(tmp_path):
    path = tmp_path / "model.npz"
    trained_net().save(path)
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(trained_net().state_dict())


def test_load_missing_key_from_file_is_a_state_error(tmp_path):
    state = trained_net().state_dict()
    del state["2.running_var"]
    np.savez(tmp_path / "partial.npz", **state)
    with pytest.raises(StateError, match=r"missing \['2\.running_var'\]"):
        small_net().load(tmp_path / "partial.npz")


def test_load_wrong_shape_from_file_is_a_state_error(tmp_path):
    state = trained_net().state_dict()
    state["0.W"] = np.zeros((2, 1, 5, 5))
    np.savez(tmp_path / "shape.npz", **state)
    with pytest.raises(StateError, match=r"'0\.W' has shape \(2, 1, 5, 5\)"):
        small_net().load(tmp_path / "shape.npz")


def test_load_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        small_net().load(tmp_path / "nope.npz")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0])
def test_truncated_file_is_reported_as_corrupted(tmp_path, keep):
    path = tmp_path / "model.npz"
    trained_net().save(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(StateError, match="truncated or corrupted"):
        small_net().load(path)


def test_garbage_file_is_reported_as_corrupted(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"PK\x03\x04" + os.urandom(200))
    with pytest.raises(StateError, match="corrupted"):
        small_net().load(path)


class _Payload:
    """Unpickling this runs code that creates a marker file: a checkpoint must never get that far."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_object_array_in_npz_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    state = trained_net().state_dict()
    state["9.b"] = np.array([_Payload(marker)] * 3, dtype=object)     # the right name and shape
    path = tmp_path / "evil.npz"
    np.savez(path, **state)                                            # savez pickles object arrays
    with np.load(path, allow_pickle=True) as f:                        # sanity: the payload does fire
        f["9.b"]
    assert marker.exists()
    marker.unlink()
    model = small_net()
    with pytest.raises(StateError, match="contains pickled Python objects; nanosgm never unpickles"):
        model.load(path)
    assert not marker.exists(), "loading a checkpoint executed pickled code"


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    small_net().save(path)
    original = path.read_bytes()

    def failing_savez(file, *args, **kwds):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        trained_net().save(path)
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["model.npz"], "a temporary file was left behind"


def test_save_creates_missing_folders_and_overwrites(tmp_path):
    path = tmp_path / "a" / "b" / "model.npz"
    small_net().save(path)
    trained_net().save(path)
    model = small_net(5)
    model.load(path)
    np.testing.assert_array_equal(model.forward(X, training=False), trained_net().forward(X, training=False))
    assert sorted(os.listdir(path.parent)) == ["model.npz"]


@pytest.mark.parametrize("training", [True, False])          # False: the attacks' inference-mode path
def test_backward_without_param_grads_gives_the_same_input_gradient_and_leaves_grads_alone(training):
    from nanosgm.models import mnist_cnn
    backend.seed(0)
    model = mnist_cnn(dtype="float64")
    for layer in model.layers:
        if hasattr(layer, "hold_mask"):
            layer.hold_mask = True
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 28, 28))
    dy = np.random.default_rng(1).standard_normal((3, 10))
    model.forward(x, training=training)
    dx_full = model.backward(dy)
    grads = {n: g.copy() for n, _, g in model.parameters()}
    model.forward(x, training=training)
    dx_only = model.backward(dy * 2, param_grads=False)
    np.testing.assert_array_equal(dx_only, 2 * dx_full)
    for n, _, g in model.parameters():
        np.testing.assert_array_equal(g, grads[n])                # untouched by the second pass
    assert all(layer.param_grads for layer in model.layers)       # the switch is reset afterwards
