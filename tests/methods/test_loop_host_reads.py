"""The training loop reads nothing back from the device in a step (issue 23): the batch losses stay on the
device and are read, checked and summed every ``loop.CHECK_EVERY`` steps and at the epoch's end; each batch's
labels are checked on the host. Counted on the stand-in; the results, the divergence and label errors and
their messages are those of the NumPy backend, where nothing changed."""
import numpy as np
import pytest

from nanosgm import standin
from nanosgm.layers import SoftmaxCrossEntropy
from nanosgm.methods import SGM, RunKeeping, TrainingDiverged, epoch_seed, fit, loop
from nanosgm.optim import build_optimizer
from standinkit import counted_steps, tiny_data, tiny_model

QUIET = RunKeeping(progress=False, log=None)
BATCH = 5


def train(n, epochs=1, X=None, y=None, steps=None, **kw):
    """fit of the tiny model on n samples (batches of 5), SGM(0.2), WAME; ``steps`` collects the host reads
    of each step (loop._step) when given."""
    if X is None:
        X, y = tiny_data(n)
    with counted_steps(steps, lambda c: c.host_reads):
        return fit(tiny_model(), build_optimizer("wame", lr=1e-2), X, y, epochs=epochs, method=SGM(0.2),
                   batch_size=BATCH, keeping=QUIET, **kw)


def batch_holding(sample, n, seed=0, epoch=0):
    """The 1-based batch of the epoch that holds training sample ``sample``."""
    order = np.random.default_rng(epoch_seed(seed, epoch, 1)).permutation(n)
    return int(np.flatnonzero(order == sample)[0]) // BATCH + 1


def test_a_step_reads_nothing_and_an_epochs_reads_do_not_grow_with_its_steps(on):
    on("standin")
    reads, steps = {}, {}
    for n in (20, 60):                                           # 4 and 12 steps an epoch
        steps[n] = []
        with standin.counting() as c:
            train(n, epochs=2, steps=steps[n])
        reads[n] = c.host_reads
    assert steps[20] == [0] * 8 and steps[60] == [0] * 24
    assert reads[20] == reads[60]                                # the epoch-end reads only (weights, SGM's record)


def test_the_losses_are_read_once_every_check_every_steps(on, monkeypatch):
    on("standin")
    monkeypatch.setattr(loop, "CHECK_EVERY", 3)
    steps = []
    train(35, steps=steps)                                        # 7 steps
    assert steps == [0, 0, 1, 0, 0, 1, 0]                         # the 7th is read at the epoch's end


def test_the_standin_trains_as_numpy_does_bit_for_bit(on):
    """Same history on both: the epoch's loss summed on the host, in batch order, from the same values."""
    numpy_run = train(23, epochs=2)
    on("standin")
    standin_run = train(23, epochs=2)
    assert [h["train_loss"] for h in standin_run.history] == [h["train_loss"] for h in numpy_run.history]
    np.testing.assert_array_equal(standin_run.train_inputs, numpy_run.train_inputs)


def diverged(backend_name, n, X, y, on):
    on(backend_name)
    with pytest.raises(TrainingDiverged) as e:
        train(n, X=X, y=y)
    on("numpy")
    return str(e.value)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("every", [50, 3])
def test_a_nan_loss_is_the_same_error_with_the_same_message(on, monkeypatch, every):
    """Read later on a device, but naming the batch where it happened, as NumPy's immediate check does."""
    monkeypatch.setattr(loop, "CHECK_EVERY", every)
    n = 40
    X, y = tiny_data(n)
    X[17, 0, 0, 0] = np.nan
    batch = batch_holding(17, n)
    assert batch > 1                                              # not the run's first batch (loss_ref)
    message = diverged("numpy", n, X, y, on)
    assert message.startswith(f"the loss became nan at epoch 1, batch {batch}; lower the learning rate")
    assert diverged("standin", n, X, y, on) == message


def test_an_exploding_loss_is_the_same_error_with_the_same_message(on, monkeypatch):
    real, calls = SoftmaxCrossEntropy.forward, []

    def forward(self, logits, y):                                  # the 3rd batch's loss 10^6 times the first
        calls.append(1)
        return real(self, logits, y) * (1e6 if len(calls) == 3 else 1)
    monkeypatch.setattr(SoftmaxCrossEntropy, "forward", forward)
    X, y = tiny_data(40)
    message = diverged("numpy", 40, X, y, on)
    calls.clear()
    assert "exploded to" in message and "at epoch 1, batch 3;" in message
    assert diverged("standin", 40, X, y, on) == message


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
def test_an_error_after_an_unread_divergence_reports_the_divergence(on, monkeypatch):
    """The losses waiting on the device are read when a later step fails: NumPy would have stopped there."""
    on("standin")
    n = 40
    X, y = tiny_data(n)
    X[17, 0, 0, 0] = np.nan
    batch, real, steps = batch_holding(17, n), SGM.after_step, []

    def after_step(self, *a):
        steps.append(1)
        if len(steps) == 7:
            raise ValueError("something else went wrong later")
        return real(self, *a)
    monkeypatch.setattr(SGM, "after_step", after_step)
    with pytest.raises(TrainingDiverged, match=f"the loss became nan at epoch 1, batch {batch};"):
        train(n, X=X, y=y)


@pytest.mark.parametrize("bad, message", [
    (5, r"labels must lie in \[0, 3\); got values in \[\d, 5\]"),
    (-1, r"labels must lie in \[0, 3\); got values in \[-1, \d\]"),
])
def test_bad_labels_are_refused_at_the_same_batch_with_the_same_message(on, bad, message):
    n = 40
    X, y = tiny_data(n)
    y[23] = bad
    errors = {}
    for name in ("numpy", "standin"):
        on(name)
        with pytest.raises(ValueError, match=message) as e:
            train(n, X=X, y=y)
        errors[name] = str(e.value)
    assert errors["standin"] == errors["numpy"]


@pytest.mark.gpu
def test_training_on_the_device_reports_a_divergence_as_numpy_does(device, monkeypatch):
    """On CuPy the losses stay on the GPU between reads; the error still names the batch, as on NumPy."""
    monkeypatch.setattr(loop, "CHECK_EVERY", 3)
    n = 40
    X, y = tiny_data(n)
    X[17, 0, 0, 0] = np.nan
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged) as on_numpy:
        train(n, X=X, y=y)
    device.use()
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged) as on_device:
        train(n, X=X, y=y)
    assert str(on_device.value) == str(on_numpy.value)
    good = train(20)                                              # and a clean epoch trains
    assert np.isfinite(good.history[0]["train_loss"])


def test_the_bench_steps_train_as_fit_does_reading_nothing(on):
    """``python -m nanosgm.bench --launches`` counts the steps of nanosgm_cells: no host read in training."""
    import argparse
    from nanosgm.bench.launches import count_network
    on("standin")
    counts = count_network("dnn", argparse.Namespace(batch_size=16, seed=0))
    assert counts["train_adam"]["host_reads"] == 0 and counts["train_wame"]["host_reads"] == 0
    assert counts["train_adam"]["reads"] == {}
