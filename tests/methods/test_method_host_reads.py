"""The training methods besides the control and SGM read nothing back from the device in a step either
(issue 23): ``published``, ``fgsm-at``, ``fgsm-rs``, ``pgd-at`` and ``gradreg`` check the batch's labels
from the bounds the loop found on the host, keep their losses on the device, and (adversarial training)
leave the attacks' input checks on the device until the loop reads them with its losses; ``gradreg``
keeps each batch's penalty there until the epoch's end. ``gradreg-fd`` reads one float a step (|v|, for
its step). Counted on the stand-in, whose numbers are NumPy's: both backends give the same history, the
same weights and the same refusals with the same messages."""
import re

import numpy as np
import pytest

from nanosgm import backend
from nanosgm.backend import host_floats
from nanosgm.layers import SoftmaxCrossEntropy
from nanosgm.methods import GradientRegularisation, RunKeeping, fit, loop, parse_arm
from nanosgm.optim import build_optimizer
from standinkit import counted_steps, tiny_data, tiny_model

QUIET = RunKeeping(progress=False, log=None)
BATCH = 5
NO_READ_ARMS = ["published", "fgsm-at:0.1", "fgsm-rs:0.1", "pgd-at:0.1:3", "gradreg:0.01"]


def train(arm, n, epochs=1, X=None, y=None, steps=None):
    """(fit's result, the model) for the tiny model trained by ``arm`` on n samples (batches of 5), WAME;
    ``steps`` collects each step's host reads (loop._step) by kind when given."""
    if X is None:
        X, y = tiny_data(n)
    with counted_steps(steps, lambda c: dict(c.reads)):
        model = tiny_model()
        result = fit(model, build_optimizer("wame", lr=1e-2), X, y, epochs=epochs, method=parse_arm(arm),
                     batch_size=BATCH, keeping=QUIET)
    return result, model


@pytest.mark.parametrize("arm", NO_READ_ARMS)
def test_a_step_reads_nothing_back(on, arm):
    on("standin")
    steps = []
    train(arm, 20, steps=steps)                                    # 4 steps
    assert steps == [{}] * 4


def test_a_finite_difference_step_reads_one_float(on):
    """gradreg-fd needs |v| on the host: whether to take the second pass at all, and its step H / |v|."""
    on("standin")
    steps = []
    train("gradreg-fd:0.01:0.001", 20, steps=steps)
    assert steps == [{"float": 1}] * 4


@pytest.mark.parametrize("arm", NO_READ_ARMS + ["gradreg-fd:0.01:0.001"])
def test_the_standin_trains_as_numpy_does_bit_for_bit(on, arm):
    """The same history (the losses, gradreg's penalty) and the same weights on both backends."""
    numpy_run, numpy_model = train(arm, 23, epochs=2)
    on("standin")
    standin_run, standin_model = train(arm, 23, epochs=2)

    def history(run):
        return [{k: v for k, v in record.items() if k != "seconds"} for record in run.history]
    assert history(standin_run) == history(numpy_run)
    numpy_state, standin_state = numpy_model.state_dict(), standin_model.state_dict()
    assert standin_state.keys() == numpy_state.keys()
    for key, value in numpy_state.items():
        np.testing.assert_array_equal(backend.to_host(standin_state[key]), value, err_msg=key)


@pytest.mark.parametrize("h", [None, 0.001])
def test_the_penalties_are_the_floats_they_always_were(h):
    """Each batch's penalty is float(mu * N * float(sum(dX ** 2))), as the per-step read gave it."""
    method, loss_fn = GradientRegularisation(0.3, h), SoftmaxCrossEntropy()
    model = tiny_model()
    X, y = tiny_data(15)
    old = []
    for start in range(0, 15, BATCH):
        _, dX = method.training_pass(model, loss_fn, X[start:start + BATCH], y[start:start + BATCH], None)
        old.append(float(0.3 * BATCH * float((dX.astype("float64") ** 2).sum())))
    assert host_floats(method._penalties) == old and min(old) > 0


def refusal(backend_name, arm, X, y, on):
    """The message of the ValueError training the tiny model by ``arm`` on X, y raises on that backend."""
    on(backend_name)
    with pytest.raises(ValueError) as e:
        train(arm, len(X), X=X, y=y)
    on("numpy")
    return str(e.value)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("every", [50, 2])
@pytest.mark.parametrize("arm", ["pgd-at:0.1:2", "fgsm-rs:0.1"])
@pytest.mark.parametrize("bad, message", [
    (1.5, r"^pgd: inputs must lie in the clip range \[0.0, 1.0\] the attack clips to, got values in \[[\d.e-]+, 1.5\]"),
    (np.nan, r"^pgd: inputs must be finite, got values in \[nan, nan\]"),
])
def test_an_attacked_batch_is_refused_as_numpy_refuses_it(on, monkeypatch, every, arm, bad, message):
    """Read with the losses on the device (up to CHECK_EVERY - 1 steps later), the input check of the
    batch that holds the bad pixel still comes before that batch's loss: the same error, word for word."""
    monkeypatch.setattr(loop, "CHECK_EVERY", every)
    X, y = tiny_data(40)
    X[17, 0, 1, 2] = bad
    expected = refusal("numpy", arm, X, y, on)
    assert refusal("standin", arm, X, y, on) == expected
    assert re.search(message, expected), expected
