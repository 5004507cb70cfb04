"""Fault injection for training and its CLI: divergence, interruptions, damaged or foreign checkpoints,
concurrent runs, leftovers of killed saves, and refusals that must be one line, not a traceback.
Each case builds its damaged input itself and checks what a user needs: a clear error and a non-zero exit,
or the correct result, and that nothing saved before was lost or altered."""
import json
import os

import numpy as np
import pytest

from nanosgm import backend
from nanosgm.experiments import train_cli
from nanosgm.layers import BatchNorm, Dense, Dropout, Flatten, ReLU, Sequential
from nanosgm.methods import SGM, Interrupted, Published, RunKeeping, TrainingDiverged, fit as fit_model
from nanosgm.optim import build_optimizer
from nanosgm.plumbing import checkpoint
from nanosgm.plumbing.runlock import FolderBusy, RunLock

QUIET = dict(progress=False, log=None)


def tiny_model(seed=0, dropout=False):
    backend.seed(seed)
    layers = [Flatten(), Dense(12, 8, dtype="float64"), BatchNorm(8, dtype="float64"), ReLU()]
    layers += [Dropout(0.5)] if dropout else []
    return Sequential(layers + [Dense(8, 3, dtype="float64")])


def tiny_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 1, 3, 4)), rng.integers(0, 3, n)


def fit(model=None, epochs=2, lr=1e-2, optimizer="wame", method=None, **keeping):
    """A tiny run (SGM 0.2 unless ``method`` says otherwise); ``keeping``: RunKeeping fields."""
    X, y = tiny_data()
    model = model or tiny_model()
    return model, fit_model(model, build_optimizer(optimizer, lr=lr), X, y, epochs=epochs, batch_size=5,
                            method=method or SGM(0.2), keeping=RunKeeping(**QUIET, **keeping))


# ------------------------------------------------------------------------------------------ divergence
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",     # NumPy meets the divergence
                            "ignore:invalid value encountered:RuntimeWarning")  # before fit reports it
def test_an_infinite_learning_rate_is_divergence_not_a_saved_nan_model(tmp_path):
    ck = tmp_path / "c.npz"
    with pytest.raises(TrainingDiverged, match="non-finite|became"):
        fit(lr=float("inf"), epochs=1, checkpoint=str(ck), optimizer="sgd")
    assert not ck.exists()                     # nothing non-finite was saved


def test_non_finite_weights_after_a_single_batch_are_caught_before_saving(tmp_path):
    """The issue's case: one batch, lr inf -- the loss before the step is finite, the weights after it are not."""
    X, y = tiny_data()
    ck = tmp_path / "c.npz"
    with pytest.raises(TrainingDiverged, match="weights .* became non-finite"):
        fit_model(tiny_model(), build_optimizer("sgd", lr=float("inf")), X, y, epochs=1, batch_size=16,
                  keeping=RunKeeping(checkpoint=str(ck), **QUIET))
    assert not ck.exists()


def test_an_exploding_loss_is_divergence(monkeypatch):
    from nanosgm.layers import SoftmaxCrossEntropy
    real = SoftmaxCrossEntropy.forward
    calls = []

    def forward(self, logits, y):              # the loss of the 3rd batch is 10^6 times the first one
        calls.append(1)
        return real(self, logits, y) * (1e6 if len(calls) == 3 else 1)
    monkeypatch.setattr(SoftmaxCrossEntropy, "forward", forward)
    with pytest.raises(TrainingDiverged, match="exploded"):
        fit(epochs=1)


# ----------------------------------------------------------------------------------------- interrupts
def test_ctrl_c_reports_the_epoch_that_is_really_on_disk(tmp_path, monkeypatch):
    ck = str(tmp_path / "c.npz")
    opt = build_optimizer("wame", lr=1e-2)
    steps = []
    real = type(opt).step

    def step(self, model):                     # Ctrl-C in the middle of epoch 2 (4 batches per epoch)
        steps.append(1)
        if len(steps) == 6:
            raise KeyboardInterrupt
        return real(self, model)
    monkeypatch.setattr(type(opt), "step", step)
    X, y = tiny_data()
    with pytest.raises(Interrupted) as exc:
        fit_model(tiny_model(), opt, X, y, epochs=3, batch_size=5, keeping=RunKeeping(checkpoint=ck, **QUIET))
    assert exc.value.saved_epoch == 1 == checkpoint.saved_epoch(ck)


def test_an_epoch_is_logged_only_after_its_checkpoint_is_saved(tmp_path):
    ck = str(tmp_path / "c.npz")
    seen = []

    def log(line):
        if line.startswith("epoch"):
            seen.append(checkpoint.saved_epoch(ck))
    X, y = tiny_data()
    fit_model(tiny_model(), build_optimizer("wame"), X, y, epochs=2, batch_size=5,
              keeping=RunKeeping(checkpoint=ck, progress=False, log=log))
    assert seen == [1, 2]


# ------------------------------------------------------------------------------ damaged checkpoints
def _saved(tmp_path, epochs=1, **kw):
    ck = str(tmp_path / "c.npz")
    fit(epochs=epochs, checkpoint=ck, config={"a": 1}, **kw)
    return ck


def _rewrite(ck, change):
    with np.load(ck, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    np.savez(ck, **arrays)


@pytest.mark.parametrize("damage, message", [
    (lambda a: a.pop("meta.json"), "not a nanosgm-checkpoint/3"),
    (lambda a: a.__setitem__("meta.json", np.array("{not json")), "not valid JSON"),
    (lambda a: a.__setitem__("meta.json", np.array(json.dumps({"format": checkpoint.FORMAT}))), "lacks epoch"),
    (lambda a: [a.pop(k) for k in list(a) if k.startswith("optim.")], "no 'optim' part"),
])
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, damage, message):
    ck = _saved(tmp_path)
    _rewrite(ck, damage)
    model = tiny_model()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(checkpoint.CheckpointError, match=message) as exc:
        fit(model=model, epochs=2, checkpoint=ck, resume=True, config={"a": 1})
    assert ck in str(exc.value)
    for k, v in model.state_dict().items():          # nothing of the model changed
        np.testing.assert_array_equal(v, before[k])


def test_a_truncated_checkpoint_is_refused(tmp_path):
    ck = _saved(tmp_path)
    data = open(ck, "rb").read()
    open(ck, "wb").write(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupted"):
        fit(epochs=2, checkpoint=ck, resume=True, config={"a": 1})


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    ck = _saved(tmp_path)
    with pytest.raises(checkpoint.ConfigMismatch, match="a: saved 1, now 2"):
        fit(epochs=2, checkpoint=ck, resume=True, config={"a": 2})
    fit(epochs=2, checkpoint=ck, resume=True, config={"a": 2}, free_config_keys=("a",))   # declared free: fine


# ------------------------------------------------------------------------------------- the published arm
def test_published_never_moves_the_inputs_and_without_dropout_equals_the_control():
    X, _ = tiny_data()
    m_pub, r_pub = fit(method=Published(), epochs=3)
    m_ctl, r_ctl = fit(method=SGM(0.0), epochs=3)
    np.testing.assert_array_equal(r_pub.train_inputs, X)
    for (_, a, _), (_, b, _) in zip(m_pub.parameters(), m_ctl.parameters()):
        np.testing.assert_array_equal(a, b)        # the extra pass changes neither weights nor BN statistics
    for k, v in m_pub.state_dict().items():
        np.testing.assert_array_equal(v, m_ctl.state_dict()[k])


def test_published_with_dropout_draws_its_own_masks():
    m_pub, r_pub = fit(model=tiny_model(dropout=True), method=Published(), epochs=2)
    m_ctl, r_ctl = fit(model=tiny_model(dropout=True), method=SGM(0.0), epochs=2)
    assert any(not np.array_equal(a, b) for (_, a, _), (_, b, _) in zip(m_pub.parameters(), m_ctl.parameters()))


def test_sgm_records_how_far_the_inputs_moved():
    _, res = fit(method=SGM(0.2), epochs=2)
    X, _ = tiny_data()
    shift = np.abs(res.train_inputs - X)
    assert res.history[-1]["input_shift_max"] == pytest.approx(shift.max(), rel=1e-3)
    assert res.history[-1]["input_shift_mean"] == pytest.approx(shift.mean(), rel=1e-3)
    _, ctl = fit(method=SGM(0.0), epochs=1)
    assert "input_shift_max" not in ctl.history[0]


# ----------------------------------------------------------------------------------------------- CLI
def test_a_second_run_into_a_held_folder_is_refused_with_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        assert train_cli.main(["mnist", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "in use by another nanosgm run" in err and f"pid {os.getpid()}" in err
        assert err.count("\n") == 1
    with RunLock(out):                          # released: the folder can be taken again
        pass


def test_the_lock_is_exclusive_between_two_holders(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(FolderBusy):
            RunLock(tmp_path).acquire()


@pytest.mark.parametrize("argv, message", [
    (["mnist", "--eps", "a"], "--eps must be comma-separated numbers"),
    (["mnist", "--epochs", "0"], "--epochs must be a whole number >= 1"),
    (["mnist", "--published", "--per-sample"], "--per-sample has no meaning"),
    (["mnist", "--model", "resnet"], "unknown model 'resnet'; choose one of cifar_cnn, cnn, dnn, dnn-keras\n"),
    (["mnist", "--optimizer", "adamw"], "unknown optimizer 'adamw': choose one of adam, sgd, wame or wame-printed"),
    (["mnist", "--val-size", "-1"], "--val-size must be a whole number >= 0"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, argv, message):
    assert train_cli.main(argv + ["--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_an_unknown_network_name_lists_the_choices_as_words():
    from nanosgm import models
    with pytest.raises(ValueError, match=r"^unknown model 'resnet'; choose one of cifar_cnn, cnn, dnn, dnn-keras "
                                         r"\(aliases: allcnn, cifar, mnist_cnn, mnist_dnn\)$"):
        models.build("resnet")


def test_an_out_that_is_a_file_is_refused_before_any_data_is_loaded(tmp_path, capsys, monkeypatch):
    import nanosgm.data as data
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data was loaded"))
    f = tmp_path / "file"
    f.write_text("keep me")
    assert train_cli.main(["mnist", "--out", str(f)]) == 1
    assert "is an existing file" in capsys.readouterr().err
    assert train_cli.main(["mnist", "--out", str(f / "sub")]) == 1
    assert "is a file" in capsys.readouterr().err
    assert f.read_text() == "keep me"


def test_dataset_names_in_any_spelling(capsys):
    assert train_cli.build_parser().parse_args(["MNIST"]).dataset == "mnist"
    assert train_cli.build_parser().parse_args(["CIFAR-10"]).dataset == "cifar10"


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert train_cli.main(["mnist", "--eps", "a", "--debug", "--out", str(tmp_path / "x")]) == 1
    assert "Traceback" in capsys.readouterr().err


def _cli(tmp_path, *extra):
    return ["mnist", "--model", "cnn", "--epochs", "2", "--limit", "200", "--eval-limit", "100", "--pgd", "20",
            "--eps", "0.1", "--out", str(tmp_path / "run"), "--no-progress"] + list(extra)


def test_resume_of_a_finished_run_leaves_it_alone(tmp_path, mnist_real, capsys):
    assert train_cli.main(_cli(tmp_path, "--keep-checkpoint")) == 0          # --reevaluate below needs it
    results = (tmp_path / "run" / "results.json").read_text()
    assert train_cli.main(_cli(tmp_path, "--resume")) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (tmp_path / "run" / "results.json").read_text() == results
    assert train_cli.main(_cli(tmp_path, "--resume", "--reevaluate")) == 0
    again = json.loads((tmp_path / "run" / "results.json").read_text())
    first = json.loads(results)
    assert again["results"] == first["results"] and again["train_seconds"] == first["train_seconds"]


def test_ctrl_c_in_the_final_evaluation_ends_cleanly_and_resume_only_evaluates(tmp_path, mnist_real, capsys,
                                                                               monkeypatch):
    from nanosgm.experiments import network
    real = network.measure

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(network, "measure", interrupted)
    assert train_cli.main(_cli(tmp_path)) == 130
    err = capsys.readouterr().err
    assert "final evaluation" in err and "--resume" in err and "Traceback" not in err
    monkeypatch.setattr(network, "measure", real)
    assert train_cli.main(_cli(tmp_path, "--resume")) == 0
    out = capsys.readouterr().out
    assert "2 of 2 epochs done" in out and "epoch   1" not in out


def test_leftovers_of_a_killed_save_are_removed(tmp_path, mnist_real):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".tmp-abc.npz").write_bytes(b"x" * 100)
    assert train_cli.main(_cli(tmp_path, "--epochs", "1")) == 0
    assert not list(run.glob(".tmp-*"))


def test_sigkill_at_any_moment_leaves_a_resumable_checkpoint_and_the_same_result(tmp_path, mnist_real):
    """Kill -9 a run once its first epoch is on disk (maybe in the middle of the next save); --resume then
    finishes with exactly the result of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time
    argv = [sys.executable, "-m", "nanosgm.train"] + _cli(tmp_path, "--epochs", "3", "--limit", "400")
    ref_out = tmp_path / "ref"
    ref = [a if a != str(tmp_path / "run") else str(ref_out) for a in argv]
    assert subprocess.run(ref, capture_output=True, timeout=600).returncode == 0
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "run" / "checkpoint.npz"
    deadline = time.time() + 300
    while checkpoint.saved_epoch(ck) < 1 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert checkpoint.saved_epoch(ck) >= 1                      # a complete checkpoint is always there
    assert subprocess.run(argv + ["--resume"], capture_output=True, timeout=600).returncode == 0
    a, b = (json.loads((d / "results.json").read_text()) for d in (ref_out, tmp_path / "run"))
    assert a["results"] == b["results"]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert not list((tmp_path / "run").glob(".tmp-*"))


def test_two_processes_into_one_folder_one_is_refused_and_nothing_is_mixed(tmp_path, mnist_real):
    """The issue's case: two runs started into the same --out; the second is refused naming the holder,
    and the folder ends with the first run's results and checkpoint only."""
    import subprocess
    import sys
    import time
    argv = [sys.executable, "-m", "nanosgm.train"] + _cli(tmp_path, "--epochs", "2", "--limit", "400",
                                                          "--keep-checkpoint")
    first = subprocess.Popen(argv + ["--seed", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "run" / ".lock"
    deadline = time.time() + 120
    while not (lock.exists() and f"pid {first.pid}" in lock.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(argv + ["--seed", "1", "--resume"], capture_output=True, text=True, timeout=300)
    assert first.wait(timeout=600) == 0
    assert second.returncode == 1 and f"pid {first.pid}" in second.stderr and "in use" in second.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["spec"]["seed"] == 0
    assert json.loads(str(np.load(tmp_path / "run" / "checkpoint.npz")["meta.json"]))["config"]["seed"] == 0
