"""Tests for nanosgm.methods.sgm: the Smooth Gradient Method's input updates (Eq. 15, 21)."""
import io
import warnings

import numpy as np
import pytest

from nanosgm.methods import sgm
from nanosgm.methods.sgm import SmoothGradient, input_update


def _data(n=10, shape=(3, 4), dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, size=(n,) + shape).astype(dtype), rng


def test_update_adds_lambda_times_gradient_on_indexed_rows_only():
    X0, rng = _data()
    X0_copy = X0.copy()
    s = SmoothGradient(X0, input_lr=0.2)
    assert s.X is not X0 and not np.shares_memory(s.X, X0)
    idx = np.array([7, 2, 5])
    dX = rng.standard_normal((3, 3, 4))
    s.update(idx, dX)
    np.testing.assert_array_equal(s.X[idx], X0[idx] + 0.2 * dX)     # exactly Eq. 15
    others = np.setdiff1d(np.arange(10), idx)
    np.testing.assert_array_equal(s.X[others], X0[others])           # other rows untouched
    np.testing.assert_array_equal(X0, X0_copy)                       # X0 never modified
    assert s.n_updates == 1


def test_updates_accumulate_across_epochs():
    X0, rng = _data(n=6)
    s = SmoothGradient(X0, input_lr=0.5)
    expected = X0.copy()
    for epoch in range(3):
        perm = rng.permutation(6)
        for idx in (perm[:4], perm[4:]):
            dX = rng.standard_normal((len(idx), 3, 4))
            s.update(idx, dX)
            expected[idx] = expected[idx] + 0.5 * dX
    np.testing.assert_array_equal(s.X, expected)  # X_{t+1} builds on X_t, not on X_0


def test_input_lr_zero_is_bit_identical_noop():
    X0, rng = _data(dtype=np.float32)
    s = SmoothGradient(X0, input_lr=0.0)
    before = s.X.copy()
    dX = np.full((4, 3, 4), np.nan, dtype=np.float32)  # even NaN gradients cannot leak in
    s.update(np.arange(4), dX)
    assert s.X.tobytes() == before.tobytes() == X0.tobytes()
    assert s.n_updates == 0
    X = X0.copy()
    assert input_update(X, np.arange(4), dX, 0.0) is X and X.tobytes() == X0.tobytes()


def test_per_sample_scales_by_batch_size():
    X0, rng = _data()
    idx = np.array([0, 3, 9, 4])
    dX = rng.standard_normal((4, 3, 4))
    mean_conv = SmoothGradient(X0, input_lr=0.1)
    per_sample = SmoothGradient(X0, input_lr=0.1, per_sample=True)
    mean_conv.update(idx, dX)
    per_sample.update(idx, dX)
    np.testing.assert_allclose(per_sample.X[idx] - X0[idx], 4 * (mean_conv.X[idx] - X0[idx]), rtol=1e-12)


def test_clip_only_when_asked():
    X0 = np.full((4, 2), 0.5)
    dX = np.array([[10.0, -10.0], [1.0, 1.0]])
    free = SmoothGradient(X0, input_lr=1.0)
    free.update(np.array([0, 1]), dX)
    assert free.X.max() == 10.5 and free.X.min() == -9.5
    clipped = SmoothGradient(X0, input_lr=1.0, clip=(0.0, 1.0))
    clipped.update(np.array([0, 1]), dX)
    np.testing.assert_array_equal(clipped.X, [[1.0, 0.0], [1.0, 1.0], [0.5, 0.5], [0.5, 0.5]])


def test_slice_and_list_indices():
    X0, rng = _data(n=8)
    dX = rng.standard_normal((3, 3, 4))
    a, b = SmoothGradient(X0), SmoothGradient(X0)
    a.update(slice(2, 5), dX)
    b.update([2, 3, 4], dX)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.batch([2, 3, 4]), b.X[2:5])


def test_shape_mismatch_and_bad_inputs_raise():
    X0, _ = _data()
    s = SmoothGradient(X0)
    with pytest.raises(ValueError, match="shape"):
        s.update(np.array([0, 1]), np.zeros((3, 3, 4)))
    with pytest.raises(ValueError, match="integer"):
        s.update(np.array([0.0, 1.0]), np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="float"):
        SmoothGradient(np.zeros((2, 3), dtype=np.uint8))


def test_dtype_is_kept():
    X0, rng = _data(dtype=np.float32)
    s = SmoothGradient(X0, input_lr=0.2)
    s.update(np.array([1]), rng.standard_normal((1, 3, 4)))  # a float64 gradient
    assert s.X.dtype == np.float32


@pytest.mark.parametrize("lr,warns", [(-1.0, False), (0.2, False), (1.0, False), (1.5, True), (-2.0, True)])
def test_warns_outside_minus_one_one(lr, warns):
    X0, _ = _data()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = SmoothGradient(X0, input_lr=lr)
        s.input_lr = lr  # setting it again does not warn twice
    assert len(w) == (1 if warns else 0)
    if warns:
        assert "[-1, 1]" in str(w[0].message)


def test_state_dict_round_trip():
    X0, rng = _data(dtype=np.float32)
    a = SmoothGradient(X0, input_lr=0.3, per_sample=True, clip=(0.0, 1.0))
    a.update(np.array([1, 4]), rng.standard_normal((2, 3, 4)).astype(np.float32))
    buf = io.BytesIO()
    np.savez(buf, **a.state_dict())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    b = SmoothGradient(X0, input_lr=0.0)
    b.load_state_dict(d)
    assert (b.input_lr, b.per_sample, b.clip, b.n_updates) == (0.3, True, (0.0, 1.0), 1)
    np.testing.assert_array_equal(a.X, b.X)
    for s in (a, b):
        s.update(np.array([0, 1, 2]), np.ones((3, 3, 4), dtype=np.float32))
    np.testing.assert_array_equal(a.X, b.X)
    d["X"][...] = 0  # the state dict holds copies
    assert b.X.any()
    with pytest.raises(ValueError, match="shape"):
        SmoothGradient(X0[:5]).load_state_dict(d)
    none_clip = SmoothGradient(X0).state_dict()
    assert none_clip["clip"].shape == (0,)


def test_control_state_carries_no_copy_of_the_data():
    X0, rng = _data(dtype=np.float32)
    control = SmoothGradient(X0, input_lr=0.0)
    control.update(np.array([1, 2]), rng.standard_normal((2, 3, 4)).astype(np.float32))   # a no-op
    d = control.state_dict()
    assert "X" not in d and int(d["n_updates"]) == 0
    fresh = SmoothGradient(X0, input_lr=0.2)
    fresh.load_state_dict(d)
    np.testing.assert_array_equal(fresh.X, X0)
    assert fresh.input_lr == 0.0
    sgm_run = SmoothGradient(X0, input_lr=0.2)
    sgm_run.update(np.array([0]), np.ones((1, 3, 4), dtype=np.float32))
    assert "X" in sgm_run.state_dict()
    with pytest.raises(ValueError, match="not fresh"):
        sgm_run.load_state_dict(d)          # an updated X cannot be "restored" to X_0 from a state without X


def test_the_methods_load_all_or_nothing_through_the_shared_mechanism():
    """The training methods' check_state_dict / load_state_dict are nanosgm.plumbing.state's: SGM restores
    its X_t, a refused state changes nothing, and a stateless method refuses any key, naming file and key."""
    from nanosgm.methods.base import Control
    from nanosgm.plumbing.state import StateError
    X0, rng = _data(dtype=np.float32)
    a, b = sgm.SGM(0.2), sgm.SGM(0.2)
    a.start(X0), b.start(X0)
    a.after_step(None, None, np.array([2, 5]), None, None, rng.standard_normal((2, 3, 4)).astype(np.float32))
    d = a.state_dict()
    bad = d | {"clip": np.array([1.0, 0.0])}
    with pytest.raises(StateError, match=r"^ck\.npz: 'method\.clip' is \(1, 0\)"):
        b.load_state_dict(bad, source="ck.npz", prefix="method.")
    assert b.sgm.n_updates == 0 and np.array_equal(b.sgm.X, X0)          # refused: unchanged
    b.check_state_dict(d, source="ck.npz", prefix="method.")
    assert b.sgm.n_updates == 0                                           # a check changes nothing
    b.load_state_dict(d, source="ck.npz", prefix="method.")
    assert b.sgm.n_updates == 1 and np.array_equal(b.sgm.X, a.sgm.X) and not np.array_equal(b.sgm.X, X0)
    Control().load_state_dict({}, source="ck.npz", prefix="method.")
    with pytest.raises(StateError, match=r"^ck\.npz: the state of method 'control' does not match: "
                                         r"unexpected \['method\.X'\]"):
        Control().check_state_dict({"X": X0}, source="ck.npz", prefix="method.")


def test_every_default_path_uses_the_papers_lambda_bar():
    """lambda-bar = 0.2 (the paper's robustness setting) is what SmoothGradient, the SGM method, the
    command line and the protocol's default arm use when nothing is said."""
    from nanosgm.experiments import train_cli
    from nanosgm.methods import SGM
    assert sgm.PAPER_INPUT_LR == 0.2
    assert SmoothGradient(np.zeros((2, 2))).input_lr == 0.2 and SGM().label == "sgm:0.2"
    args = train_cli.build_parser().parse_args(["mnist"])
    assert train_cli.method_label(args) == "sgm:0.2"
    X = np.zeros((4, 3))
    s = SGM()
    s.start(X)
    s.after_step(None, None, np.array([0, 1]), None, None, np.ones((2, 3)))
    np.testing.assert_array_equal(s.sgm.X[:2], np.full((2, 3), 0.2))      # the step it takes is 0.2 * dE/dX


# ---------------------------------------------------------------------------- with a real network
def test_dX_from_backward_and_per_sample_semantics():
    """dX from Sequential.backward of the batch-mean loss is (1/B) x each sample's own input gradient;
    per_sample=True therefore adds exactly what a batch of one would have added."""
    from nanosgm.layers import Dense, ReLU, Sequential, SoftmaxCrossEntropy

    rng = np.random.default_rng(0)
    model = Sequential([Dense(5, 7, dtype="float64", rng=rng), ReLU(), Dense(7, 3, dtype="float64", rng=rng)])
    X0 = rng.uniform(0, 1, (6, 5))
    y = rng.integers(0, 3, 6)
    loss_fn = SoftmaxCrossEntropy()
    idx = np.array([4, 0, 2])

    def input_grad(rows):
        loss_fn.forward(model.forward(X0[rows], training=True), y[rows])
        return model.backward(loss_fn.backward())

    dX = input_grad(idx)
    mean_conv = SmoothGradient(X0, input_lr=0.2)
    mean_conv.update(idx, dX)
    per_sample = SmoothGradient(X0, input_lr=0.2, per_sample=True)
    per_sample.update(idx, dX)
    singles = np.concatenate([input_grad(np.array([i])) for i in idx])
    np.testing.assert_allclose(per_sample.X[idx], X0[idx] + 0.2 * singles, rtol=1e-12)
    np.testing.assert_allclose(mean_conv.X[idx], X0[idx] + 0.2 * singles / 3, rtol=1e-12)


# ------------------------------------------- device backends: CuPy (skipped without a GPU) and the CPU stand-in
from nanosgm import backend as _backend  # noqa: E402


def test_smooth_gradient_on_cupy(device):
    xp = device.xp
    X0, rng = _data(dtype=np.float32)
    idx = np.array([3, 1, 8])
    dX = rng.standard_normal((3, 3, 4)).astype(np.float32)
    ref = SmoothGradient(X0, input_lr=0.2)
    ref.update(idx, dX)
    device.use()
    try:
        s = SmoothGradient(X0, input_lr=0.2, clip=(-10.0, 10.0))
        assert isinstance(s.X, xp.ndarray) and s.X.dtype == np.float32
        s.update(idx, xp.asarray(dX))                # host indices, device gradient
        np.testing.assert_allclose(xp.asnumpy(s.X), ref.X, rtol=1e-6)
        d = s.state_dict()
        assert isinstance(d["X"], np.ndarray)
        t = SmoothGradient(X0, input_lr=0.0)
        t.load_state_dict(d)
        assert isinstance(t.X, xp.ndarray) and bool((t.X == s.X).all())
    finally:
        _backend.use("numpy")
