"""Tests for nanosgm.methods.gradreg: input-gradient regularisation as a training method (issue 24 part 2).

The double backward itself is checked layer by layer and network by network against torch and central
differences in tests/layers/test_double_backward.py; here: the arm grammar, and what fit does with it.
"""
import math

import numpy as np
import pytest

from nanosgm import backend
from nanosgm.attacks import input_gradient
from nanosgm.layers import BatchNorm, Dense, Dropout, Flatten, ReLU, Sequential, SoftmaxCrossEntropy
from nanosgm.methods import GradientRegularisation, RunKeeping, fit, parse_arm
from nanosgm.methods.arms import parse_arms
from nanosgm.methods.base import plain_pass
from nanosgm.optim import build_optimizer
from strategies import blob_images

pytestmark = pytest.mark.usefixtures("numpy_backend")

QUIET = RunKeeping(progress=False, log=None)


# --------------------------------------------------------------------------------------------------------
# the arm grammar
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, label, mu, h", [
    ("gradreg:0.01", "gradreg:0.01", 0.01, None),
    ("GRADREG:1e-2", "gradreg:0.01", 0.01, None),
    (" gradreg:+2 ", "gradreg:2", 2.0, None),
    ("gradreg:0.1234567", "gradreg:0.1234567", 0.1234567, None),
    ("gradreg:1e-12", "gradreg:1e-12", 1e-12, None),
    ("gradreg-fd:0.01:0.001", "gradreg-fd:0.01:0.001", 0.01, 0.001),
    ("Gradreg-FD:1E-3:1e-4", "gradreg-fd:0.001:0.0001", 0.001, 1e-4),
])
def test_labels_parse_to_the_method_and_read_back_canonically(text, label, mu, h):
    method = parse_arm(text)
    assert isinstance(method, GradientRegularisation)
    assert (method.label, method.mu, method.h) == (label, mu, h)
    assert parse_arm(label).label == label                  # the canonical label reads back as itself
    assert not method.moves_inputs                          # the stored training set never moves


def test_an_arm_list_names_each_variant_once_after_the_control():
    assert parse_arms("gradreg:1e-2, gradreg-fd:0.01:0.001") == ["control", "gradreg:0.01", "gradreg-fd:0.01:0.001"]
    with pytest.raises(ValueError, match="twice"):
        parse_arms("gradreg:0.01,gradreg:1e-2")


@pytest.mark.parametrize("bad, says", [
    ("gradreg", "gradreg takes MU"),
    ("gradreg:", "MU must be a number"),
    ("gradreg:abc", "MU must be a number"),
    ("gradreg:0", "MU must be a number > 0"),
    ("gradreg:-0.1", "MU must be a number > 0"),
    ("gradreg:nan", "MU must be finite"),
    ("gradreg:inf", "MU must be finite"),
    ("gradreg:0.1:0.01", "gradreg takes MU"),                   # an extra field
    ("gradreg-fd", "gradreg-fd takes MU and H"),
    ("gradreg-fd:0.1", "gradreg-fd takes MU and H"),            # H missing
    ("gradreg-fd:0.1:0.01:0.5", "gradreg-fd takes MU and H"),   # an extra field
    ("gradreg-fd::0.01", "MU must be a number"),
    ("gradreg-fd:0:0.01", "MU must be a number > 0"),
    ("gradreg-fd:0.1:0", "H must be a number > 0"),
    ("gradreg-fd:0.1:-1e-3", "H must be a number > 0"),
    ("gradreg-fd:0.1:nan", "H must be finite"),
])
def test_bad_labels_are_refused_with_what_to_write(bad, says):
    with pytest.raises(ValueError, match="arm") as info:
        parse_arm(bad)
    assert says in str(info.value) and "gradreg:MU or gradreg-fd:MU:H" in str(info.value)


@pytest.mark.parametrize("mu, h, says", [(0.0, None, "MU"), (-1.0, None, "MU"), (math.nan, None, "MU"),
                                         (math.inf, None, "MU"), (0.1, 0.0, "H"), (0.1, math.inf, "H"),
                                         (0.1, -1e-3, "H")])
def test_the_constructor_refuses_what_the_grammar_refuses(mu, h, says):
    with pytest.raises(ValueError, match=says):
        GradientRegularisation(mu, h)


# --------------------------------------------------------------------------------------------------------
# the method's pass and its epoch record
# --------------------------------------------------------------------------------------------------------
def bn_model(seed=0):
    """Flatten, Dense, BatchNorm, ReLU, Dropout, Dense in float64: batch statistics and masks both matter."""
    backend.seed(seed)
    return Sequential([Flatten(), Dense(36, 16, dtype="float64"), BatchNorm(16, dtype="float64"), ReLU(),
                       Dropout(0.2), Dense(16, 3, dtype="float64")])


def plain_model(seed=0):
    """No BatchNorm, no dropout: training and inference mode compute the same input gradient."""
    backend.seed(seed)
    return Sequential([Flatten(), Dense(36, 16, dtype="float64"), ReLU(), Dense(16, 3, dtype="float64")])


def mean_squared_input_gradient(model, X, y) -> float:
    """mean_n ||G_n||^2 with G = N dE/dX (each sample's own input gradient), in inference mode."""
    _, dX = input_gradient(model, X, y, training=False)
    return float(((len(X) * dX) ** 2).reshape(len(X), -1).sum(axis=1).mean())


@pytest.mark.parametrize("h", [None, 1e-3], ids=["exact", "finite-difference"])
def test_the_pass_returns_the_plain_E_and_dX_and_records_the_mean_penalty(h):
    """training_pass returns the control's (E, dE/dX) (what fit logs and SGM-like hooks read); epoch_record
    gives the mean of mu * N * sum((dE/dX)^2) over the epoch's batches, then starts again."""
    X, y = blob_images(1, 24)
    method, loss_fn = GradientRegularisation(0.3, h), SoftmaxCrossEntropy()
    penalties = []
    for batch in (slice(0, 12), slice(12, 24)):
        control = bn_model(4)
        backend.seed(8)
        E_c, dX_c = plain_pass(control, loss_fn, X[batch], y[batch])
        model = bn_model(4)
        backend.seed(8)                                              # the same dropout mask
        E, dX = method.training_pass(model, loss_fn, X[batch], y[batch], None)
        assert E == E_c
        np.testing.assert_array_equal(dX, dX_c)
        penalties.append(0.3 * 12 * float((dX_c ** 2).sum()))
    assert method.epoch_record()["gradreg_penalty"] == pytest.approx(np.mean(penalties), rel=1e-5)
    assert method.epoch_record() == {"gradreg_penalty": 0.0}          # nothing since the last record
    assert "MU" in method.divergence_hint()


@pytest.mark.parametrize("arm", ["gradreg:0.01", "gradreg-fd:0.01:0.001"])
def test_fit_trains_with_the_penalty_recorded_every_epoch(arm):
    X, y = blob_images(0, 48)
    X_given = X.copy()
    result = fit(bn_model(), build_optimizer("wame", lr=1e-2), X, y, epochs=2, method=parse_arm(arm),
                 batch_size=16, seed=0, keeping=QUIET)
    assert [h["epoch"] for h in result.history] == [1, 2]
    for record in result.history:
        assert math.isfinite(record["gradreg_penalty"]) and record["gradreg_penalty"] > 0
        assert math.isfinite(record["train_loss"])
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    np.testing.assert_array_equal(X, X_given)


def test_the_regulariser_lowers_the_input_gradient_the_control_leaves():
    """Same seed, same batches: after 4 epochs at mu = 1 the per-sample squared input-gradient norm is a
    fraction of the control's (measured 0.13 against 1.12; five data seeds gave ratios 0.05-0.22), and
    the recorded penalty falls from epoch to epoch."""
    X, y = blob_images(0, 96)
    results, measured = {}, {}
    for arm in ("control", "gradreg:1"):
        model = plain_model()
        results[arm] = fit(model, build_optimizer("wame", lr=1e-2), X, y, epochs=4, method=parse_arm(arm),
                           batch_size=16, seed=0, keeping=QUIET)
        measured[arm] = mean_squared_input_gradient(model, X, y)
    assert measured["gradreg:1"] < 0.5 * measured["control"], measured
    penalty = [h["gradreg_penalty"] for h in results["gradreg:1"].history]
    assert all(b < a for a, b in zip(penalty, penalty[1:])), penalty


@pytest.mark.parametrize("arm", ["gradreg:1e-12", "gradreg-fd:1e-12:0.001"])
def test_a_vanishing_penalty_trains_in_lock_step_with_the_control(arm):
    """mu = 1e-12: every weight and running statistic after 6 steps (2 epochs) equals the control's to float
    tolerance, so the arm sees the control's batches and dropout masks and adds no pass that draws one.
    (Plain SGD: WAME and Adam divide each gradient element by its own size, so the round-off of the
    biases in front of a BatchNorm, whose true gradient is 0, would decide their steps.)"""
    X, y = blob_images(0, 48)
    runs = {}
    for name in ("control", arm):
        model = bn_model(3)
        result = fit(model, build_optimizer("sgd", lr=0.05), X, y, epochs=2, method=parse_arm(name),
                     batch_size=16, seed=0, keeping=QUIET)
        runs[name] = (model.state_dict(), result.history)
    ours, control = runs[arm][0], runs["control"][0]
    assert sorted(ours) == sorted(control)
    for k in control:
        np.testing.assert_allclose(ours[k], control[k], rtol=1e-9, atol=1e-12, err_msg=k)
    assert not np.array_equal(control["2.running_mean"], bn_model(3).state_dict()["2.running_mean"])
    assert [h["train_loss"] for h in runs[arm][1]] == [h["train_loss"] for h in runs["control"][1]]
    assert 0 < runs[arm][1][-1]["gradreg_penalty"] < 1e-9


def test_the_finite_difference_arm_tracks_the_exact_arm():
    """gradreg-fd:MU:1e-4 follows gradreg:MU through 4 epochs: the same penalty and loss to ~1e-5."""
    X, y = blob_images(0, 96)
    runs = {}
    for arm in ("gradreg:1", "gradreg-fd:1:0.0001"):
        model = plain_model()
        result = fit(model, build_optimizer("wame", lr=1e-2), X, y, epochs=4, method=parse_arm(arm),
                     batch_size=16, seed=0, keeping=QUIET)
        runs[arm] = (model.state_dict(), result.history)
    (exact, h_exact), (fd, h_fd) = runs["gradreg:1"], runs["gradreg-fd:1:0.0001"]
    for a, b in zip(h_exact, h_fd):
        assert b["gradreg_penalty"] == pytest.approx(a["gradreg_penalty"], rel=1e-4)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    for k in exact:
        assert np.linalg.norm(fd[k] - exact[k]) < 1e-3 * np.linalg.norm(exact[k]), k
