"""Tests for nanosgm.methods.adaptive: SGM's input step taken by an optimizer's rule (Section 6's future work)."""
import numpy as np
import pytest

from nanosgm.layers import Dense, ReLU, Sequential
from nanosgm.methods import SGM, AdaptiveSGM, fit, parse_arm
from nanosgm.optim import build_optimizer
from nanosgm.plumbing.state import StateError

RULES = ["momentum", "adam", "sign"]


def _data(n=8, shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n,) + shape).astype(np.float32), rng


def _started(rule, X0, lam=0.01, **kw):
    m = AdaptiveSGM(rule, lam, **kw)
    m.start(X0)
    return m


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("per_sample", [False, True])
def test_the_input_rule_is_the_weight_rule_on_the_same_array(rule, per_sample):
    """Three visits of every row: the stored set equals a parameter stepped by the optimizer on -g (x B)."""
    X0, rng = _data()
    m = _started(rule, X0, per_sample=per_sample)
    param = X0.copy()
    weights = AdaptiveSGM(rule, 0.01).optimizer                     # a second instance of the same rule
    for _ in range(3):
        g = rng.standard_normal(X0.shape).astype(np.float32)
        m.update(np.arange(8), g)
        weights.step([("x", param, -(g * (8 if per_sample else 1)))])
    np.testing.assert_array_equal(m.sgm.X, param)
    assert m.sgm.n_updates == 3 and (m.count == 3).all()


def test_sign_rule_moves_every_pixel_by_the_step_up_the_gradient():
    X0, rng = _data()
    m = _started("sign", X0, lam=0.25)
    g = rng.standard_normal(X0.shape).astype(np.float32)
    m.update(np.array([1, 4]), g[:2])
    np.testing.assert_array_equal(m.sgm.X[[1, 4]], X0[[1, 4]] + np.float32(0.25) * np.sign(g[:2]))


def test_only_visited_rows_and_their_slots_change():
    X0, rng = _data()
    m = _started("adam", X0)
    m.update(np.array([6, 1]), rng.standard_normal((2, 3, 4)).astype(np.float32))
    others = np.setdiff1d(np.arange(8), [1, 6])
    np.testing.assert_array_equal(m.sgm.X[others], X0[others])
    assert not m.slots["m"][others].any() and not m.slots["v"][others].any()
    assert m.slots["m"][[1, 6]].any() and list(m.count) == [0, 1, 0, 0, 0, 0, 1, 0]


def test_each_sample_counts_its_own_visits_for_the_bias_correction():
    """Rows visited for the first time take Adam's first step (t = 1), whatever the rule did before."""
    X0, rng = _data()
    g = rng.standard_normal((2, 3, 4)).astype(np.float32)
    m = _started("adam", X0)
    m.update(np.array([0, 1]), rng.standard_normal((2, 3, 4)).astype(np.float32))
    m.update(np.array([2, 3]), g)
    fresh = _started("adam", X0)
    fresh.update(np.array([2, 3]), g)
    np.testing.assert_array_equal(m.sgm.X[[2, 3]], fresh.sgm.X[[2, 3]])


def test_rows_with_different_visit_counts_each_get_their_own_step_number():
    X0, rng = _data()
    g0, g1 = (rng.standard_normal((1, 3, 4)).astype(np.float32) for _ in range(2))
    m = _started("adam", X0)
    m.update(np.array([0]), g0)                   # row 0 visited once, row 5 never
    m.update(np.array([0, 5]), np.concatenate([g1, g1]))
    one = _started("adam", X0)
    one.update(np.array([0]), g0)
    one.update(np.array([0]), g1)                 # row 0's second step (t = 2)
    two = _started("adam", X0)
    two.update(np.array([5]), g1)                 # row 5's first step (t = 1)
    np.testing.assert_allclose(m.sgm.X[0], one.sgm.X[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(m.sgm.X[5], two.sgm.X[5], rtol=0, atol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_ball_and_clip_bound_the_stored_set(rule):
    X0, rng = _data()
    m = _started(rule, X0, lam=0.5, ball=0.05, clip=(0.0, 1.0))
    for _ in range(4):
        m.update(np.arange(8), rng.standard_normal(X0.shape).astype(np.float32) * 10)
    X = m.sgm.X
    assert np.abs(X - X0).max() <= 0.05 + 1e-7 and X.min() >= 0 and X.max() <= 1
    assert np.abs(X - X0).max() > 0.04                         # it did move, up to the ball


@pytest.mark.parametrize("rule", RULES)
def test_a_zero_step_is_the_control_even_with_a_ball_and_a_clip(rule):
    """input_lr = 0 moves nothing and keeps no state, as sgm:0 does; the ball (whose X_0 is not kept when
    nothing moves) is never reached."""
    X0, rng = _data()
    m = _started(rule, X0, lam=0.0, ball=0.05, clip=(0.0, 1.0))
    m.update(np.arange(8), rng.standard_normal(X0.shape).astype(np.float32))
    np.testing.assert_array_equal(m.sgm.X, X0)
    assert m.sgm.n_updates == 0 and not m.count.any() and m.epoch_record() == {}


@pytest.mark.parametrize("rule", RULES)
def test_checkpoint_round_trip_continues_bit_for_bit(rule):
    X0, rng = _data()
    gs = [rng.standard_normal(X0.shape).astype(np.float32) for _ in range(3)]
    a = _started(rule, X0)
    for g in gs[:2]:
        a.update(np.arange(8), g)
    b = _started(rule, X0)
    b.load_state_dict(a.state_dict())
    a.update(np.arange(8), gs[2])
    b.update(np.arange(8), gs[2])
    np.testing.assert_array_equal(a.sgm.X, b.sgm.X)
    for k in a.slots:
        np.testing.assert_array_equal(a.slots[k], b.slots[k])


def test_a_damaged_state_is_refused_and_nothing_is_assigned():
    X0, rng = _data()
    a = _started("adam", X0)
    a.update(np.arange(8), rng.standard_normal(X0.shape).astype(np.float32))
    state = a.state_dict()
    b = _started("adam", X0)
    for bad in ({**state, "count": -state["count"] - 1}, {k: v for k, v in state.items() if k != "slot_v"},
                {**state, "slot_m": state["slot_m"][:3]}):
        with pytest.raises(StateError):
            b.load_state_dict(bad)
        np.testing.assert_array_equal(b.sgm.X, X0)
        assert not b.count.any()


@pytest.mark.parametrize("label", ["sgm-adam:0.01", "sgm-momentum:0.05:per-sample", "sgm-sign:0.002:ball=0.01:clip"])
def test_fit_trains_with_each_rule_and_records_the_shift(label):
    rng = np.random.default_rng(1)
    X, y = rng.uniform(0, 1, (64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    X_given = X.copy()
    model = Sequential([Dense(6, 8), ReLU(), Dense(8, 3)])
    result = fit(model, build_optimizer("adam"), X, y, epochs=2, method=parse_arm(label), batch_size=16, seed=0)
    shifts = [h["input_shift_max"] for h in result.history]
    assert 0 < shifts[0] <= shifts[1]
    if "sign" in label:
        assert shifts[1] <= 0.01 + 1e-6                          # the ball
    np.testing.assert_array_equal(X, X_given)                     # X_0 itself never moves


def test_the_plain_rule_would_be_sgm_itself():
    """SGD without momentum on -g is Eq. 15 bit for bit (why there is no 'sgm-sgd' arm: it is sgm:L)."""
    X0, rng = _data()
    g = rng.standard_normal((3, 3, 4)).astype(np.float32)
    plain = SGM(0.2)
    plain.start(X0)
    plain.after_step(None, None, np.array([0, 3, 5]), None, None, g)
    param = X0[[0, 3, 5]].copy()
    build_optimizer("sgd", lr=0.2).step([("x", param, -g)])
    np.testing.assert_array_equal(plain.sgm.X[[0, 3, 5]], param)


@pytest.mark.parametrize("bad", ["sgm-adam", "sgm-adam:0", "sgm-adam:0.1:ball", "sgm-adam:0.1:clip:clip",
                                 "sgm-adam:0.1:foo", "sgm-sign:0.1:ball=-1", "sgm-sign:nan"])
def test_bad_labels_are_refused(bad):
    with pytest.raises(ValueError, match="arm"):
        parse_arm(bad)


def test_labels_read_back_in_canonical_order():
    assert parse_arm("sgm-adam:0.01:clip:ball=0.3:per-sample").label == "sgm-adam:0.01:per-sample:ball=0.3:clip"
    assert parse_arm("SGM-SIGN:2e-3").label == "sgm-sign:0.002"


def test_fit_resumes_an_adaptive_run_as_if_uninterrupted(tmp_path):
    """The rule's slots and visit counts travel in the checkpoint: 2 + 1 epochs give the 3-epoch run's bits."""
    from nanosgm import backend
    from nanosgm.methods import RunKeeping

    rng = np.random.default_rng(2)
    X, y = rng.uniform(0, 1, (20, 6)).astype(np.float32), rng.integers(0, 3, 20)

    def run(epochs, **keeping):
        backend.seed(0)
        model = Sequential([Dense(6, 8), ReLU(), Dense(8, 3)])
        res = fit(model, build_optimizer("wame", lr=1e-2), X, y, epochs=epochs, method=parse_arm("sgm-adam:0.01"),
                  batch_size=6, seed=0, keeping=RunKeeping(progress=False, log=None, **keeping))
        return model, res

    full_model, full = run(3)
    ckpt = str(tmp_path / "ckpt.npz")
    run(2, checkpoint=ckpt)
    model, resumed = run(3, checkpoint=ckpt, resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    np.testing.assert_array_equal(resumed.train_inputs, full.train_inputs)
    for (_, a, _), (_, b, _) in zip(full_model.parameters(), model.parameters()):
        np.testing.assert_array_equal(a, b)
