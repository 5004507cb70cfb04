"""The training loop: SGM's input update (Eq. 15/21), lock-step control runs, determinism, resume, the CLI."""
import json
import os

import numpy as np
import pytest

from nanosgm import backend, models
from nanosgm.attacks import input_gradient
from nanosgm.experiments import train_cli
from nanosgm.layers import BatchNorm, Dense, Flatten, ReLU, Sequential
from nanosgm.methods import SGM, Control, RunKeeping, SmoothGradient, TrainingDiverged, epoch_seed, fit
from nanosgm.optim import build_optimizer

QUIET = RunKeeping(progress=False, log=None)


def tiny_model(seed=0):
    backend.seed(seed)
    return Sequential([Flatten(), Dense(12, 8, dtype="float64"), BatchNorm(8, dtype="float64"), ReLU(),
                       Dense(8, 3, dtype="float64")])


def tiny_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 1, 3, 4)), rng.integers(0, 3, n)


def run(input_lr=0.2, epochs=2, seed=0, validation=None, **keeping):
    """A tiny SGM (or, with input_lr 0, control) run; ``keeping``: RunKeeping fields."""
    model = tiny_model(seed)
    X, y = tiny_data()
    opt = build_optimizer("wame", lr=1e-2)
    res = fit(model, opt, X, y, epochs=epochs, method=SGM(input_lr), batch_size=5, seed=seed, validation=validation,
              keeping=RunKeeping(progress=False, log=None, **keeping))
    return model, res


def test_one_batch_one_epoch_is_exactly_eq15_at_the_initial_weights():
    """A single full batch: X_1 = X_0 + lambda-bar * dE/dX(X_0) with dE/dX at the initial weights (training mode)."""
    X, y = tiny_data(n=10)
    order = np.random.default_rng(epoch_seed(0, 0, 1)).permutation(10)   # fit's batch order in epoch 0
    reference = tiny_model(seed=3)
    _, dX_batch = input_gradient(reference, X[order], y[order], training=True)
    dX = np.empty_like(X)
    dX[order] = dX_batch
    model = tiny_model(seed=3)
    res = fit(model, build_optimizer("wame"), X, y, epochs=1, method=SGM(0.2), batch_size=10, seed=0, keeping=QUIET)
    np.testing.assert_array_equal(res.train_inputs, X + 0.2 * dX)
    assert not np.array_equal(res.train_inputs, X)


def test_the_stored_training_set_is_never_modified():
    X, y = tiny_data()
    X0 = X.copy()
    fit(tiny_model(), build_optimizer("wame"), X, y, epochs=1, method=SGM(0.5), batch_size=4, keeping=QUIET)
    np.testing.assert_array_equal(X, X0)


def test_updates_persist_across_epochs():
    """Epoch 2 trains on X_1, not X_0: the change after two epochs is not the change after one."""
    _, r1 = run(epochs=1)
    _, r2 = run(epochs=2)
    X, _ = tiny_data()
    assert not np.allclose(r2.train_inputs - X, r1.train_inputs - X)


def test_control_and_sgm_start_in_lock_step():
    """Same seed: identical initial weights; the first epoch's batches and masks are the same too."""
    a, b = tiny_model(seed=7), tiny_model(seed=7)
    for (_, pa, _), (_, pb, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa, pb)
    seen = {}

    def cb(tag):
        return lambda epoch, model, X_t, record: seen.setdefault(tag, []).append(record["train_loss"])
    run(input_lr=0.0, epochs=1, seed=7, callback=cb("control"))
    run(input_lr=0.2, epochs=1, seed=7, callback=cb("sgm"))
    # one epoch: input updates of a batch only affect later epochs, so the first epoch's losses agree exactly
    assert seen["control"] == seen["sgm"]


def test_control_is_bit_identical_to_switching_updates_off_another_way(monkeypatch):
    m0, r0 = run(input_lr=0.0, epochs=3)
    m_ctl = tiny_model()
    X, y = tiny_data()
    r_ctl = fit(m_ctl, build_optimizer("wame", lr=1e-2), X, y, epochs=3, method=Control(), batch_size=5, keeping=QUIET)
    for (_, p0, _), (_, pc, _) in zip(m0.parameters(), m_ctl.parameters()):   # SGM(0) is the Control, bit for bit
        np.testing.assert_array_equal(p0, pc)
    assert [h["train_loss"] for h in r0.history] == [h["train_loss"] for h in r_ctl.history]
    monkeypatch.setattr(SmoothGradient, "update", lambda self, idx, dX: None)
    m1, r1 = run(input_lr=0.2, epochs=3)
    for (_, p0, _), (_, p1, _) in zip(m0.parameters(), m1.parameters()):
        np.testing.assert_array_equal(p0, p1)
    np.testing.assert_array_equal(r0.train_inputs, r1.train_inputs)


def test_a_seeded_run_is_deterministic_and_seeds_differ():
    m0, r0 = run(seed=5)
    m1, r1 = run(seed=5)
    m2, _ = run(seed=6)
    assert [h["train_loss"] for h in r0.history] == [h["train_loss"] for h in r1.history]
    np.testing.assert_array_equal(r0.train_inputs, r1.train_inputs)
    assert not np.array_equal(m0.layers[1].params["W"], m2.layers[1].params["W"])


def test_resume_from_checkpoint_gives_the_uninterrupted_result(tmp_path):
    X, y = tiny_data()
    full_model, full = run(epochs=3, validation=(X, y))
    ckpt = str(tmp_path / "ckpt.npz")
    run(epochs=2, validation=(X, y), checkpoint=ckpt)              # "interrupted" after epoch 2
    assert os.path.exists(ckpt)
    resumed_model, resumed = run(epochs=3, validation=(X, y), checkpoint=ckpt, resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    np.testing.assert_array_equal(resumed.train_inputs, full.train_inputs)
    for (_, a, _), (_, b, _) in zip(full_model.parameters(), resumed_model.parameters()):
        np.testing.assert_array_equal(a, b)


def test_best_validation_epoch_is_kept():
    X, y = tiny_data()
    model, res = run(epochs=4, validation=(X, y))
    errors = [h["val_error_pct"] for h in res.history]
    assert res.best_epoch == 1 + int(np.argmin(errors))
    assert 100 * (1 - __import__("nanosgm").attacks.accuracy(model, X, y)) == pytest.approx(min(errors))


def test_nan_loss_is_a_clear_error():
    X, y = tiny_data()
    X[0, 0, 0, 0] = np.nan
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        fit(tiny_model(), build_optimizer("wame"), X, y, epochs=1, batch_size=16, keeping=QUIET)


@pytest.mark.slow
def test_short_real_mnist_run_beats_chance_clearly(mnist_real):
    ds = mnist_real
    backend.seed(0)
    model = models.mnist_cnn()
    res = fit(model, build_optimizer("wame"), ds.X_train[:2000], ds.y_train[:2000], epochs=1, method=SGM(0.2),
              batch_size=64, validation=(ds.X_val[:1000], ds.y_val[:1000]), keeping=QUIET)
    assert res.history[0]["val_error_pct"] < 15     # chance is 90 %


def test_cli_runs_and_writes_results(tmp_path, mnist_real, capsys):
    out = tmp_path / "run"
    code = train_cli.main(["mnist", "--model", "dnn", "--epochs", "1", "--limit", "600", "--eval-limit", "300", "--batch-size", "100",
                       "--pgd", "50", "--eps", "0.01,0.1", "--out", str(out), "--no-progress",
                       "--data-dir", str(os.environ.get("NANOSGM_DATA", ""))])
    assert code == 0
    printed = capsys.readouterr().out
    assert "clean test accuracy" in printed and "FGSM acc" in printed and "first 50: FGSM" in printed and "PGD" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]["fgsm_pct"]) == {"0.01", "0.1"}
    assert results["spec"]["method"] == "sgm:0.2" and results["provenance"]["versions"]["numpy"] == np.__version__
    assert results["data_source"] and os.path.isdir(results["data_source"])
    prov = results["provenance"]
    assert prov["command"].startswith("python -m nanosgm.train mnist --model dnn") and prov["started"] <= prov["finished"]
    assert all(len(f"{v}".split(".")[-1]) <= 4 for v in results["results"]["fgsm_pct"].values())   # no float noise
    assert (out / "model.npz").exists() and not (out / "checkpoint.npz").exists()    # removed once finished


def test_cli_bad_flags_are_clear_errors(capsys):
    assert train_cli.main(["imagenet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: argument dataset: unknown dataset 'imagenet'") and err.count("\n") == 1
    assert train_cli.main(["mnist", "--eps", "a,b"]) == 1
    assert "--eps" in capsys.readouterr().err
    assert train_cli.main(["mnist", "--backend", "cupy"] if not backend.cupy_available()[0] else ["mnist", "--epochs", "0"]) == 1


def test_cli_missing_data_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from nanosgm.data import DataError
    import nanosgm.data as data

    def no_files(*a, **k):
        raise DataError("MNIST files not found: put them in ... or set NANOSGM_DATA")
    monkeypatch.setattr(data, "load", no_files)
    assert train_cli.main(["mnist", "--out", str(tmp_path / "x")]) == 1
    assert "NANOSGM_DATA" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_default_run_folder_names_the_settings_that_change_the_result():
    args = train_cli.build_parser().parse_args(["mnist", "--epochs", "1", "--limit", "500", "--seed", "3"])
    assert train_cli.default_out(args, "dnn") == os.path.join("runs", "mnist-dnn-wame-e1-ilr0.2-s3-n500")
    args = train_cli.build_parser().parse_args(["mnist", "--input-lr", "0", "--augment", "--optimizer", "adam"])
    assert train_cli.default_out(args, "cnn") == os.path.join("runs", "mnist-cnn-adam-e5-ilr0-s0-aug")
    args = train_cli.build_parser().parse_args(["mnist", "--val-size", "0"])
    assert train_cli.default_out(args, "cnn") == os.path.join("runs", "mnist-cnn-wame-e5-ilr0.2-s0-v0")


def test_cli_val_size_zero_trains_on_the_whole_training_set(tmp_path, mnist_real, capsys):
    out = tmp_path / "run"
    code = train_cli.main(["mnist", "--model", "dnn", "--epochs", "2", "--val-size", "0", "--eval-limit", "200",
                       "--pgd", "0", "--eps", "0.1", "--out", str(out), "--no-progress", "--constant-lr",
                       "--data-dir", str(os.environ.get("NANOSGM_DATA", "")), "--limit", "300"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["spec"]["val_size"] == 0 and results["best_epoch"] == 2      # no validation: the last epoch
    assert [h["val_error_pct"] for h in results["history"]] == [None, None]
    assert train_cli.main(["mnist", "--val-size", "-1", "--out", str(tmp_path / "x")]) == 1
    assert "--val-size" in capsys.readouterr().err


def test_cli_refuses_to_overwrite_an_earlier_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert train_cli.main(["mnist", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "results.json").read_text() == "{}"


def test_cli_checks_model_and_eps_before_loading_data(tmp_path, capsys, monkeypatch):
    import nanosgm.data as data
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data was loaded before the flags were checked"))
    assert train_cli.main(["mnist", "--model", "resnet", "--out", str(tmp_path / "a")]) == 1
    assert "unknown model 'resnet'" in capsys.readouterr().err
    assert train_cli.main(["mnist", "--eps", "0.1,-0.1", "--out", str(tmp_path / "b")]) == 1
    assert ">= 0" in capsys.readouterr().err
    assert train_cli.main(["mnist", "--optimizer", "adamw", "--out", str(tmp_path / "c")]) == 1
    assert "adamw" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())          # a run refused on its flags leaves no empty folder behind


def test_the_recorded_commit_is_read_once_per_process(monkeypatch):
    """A long run records the commit of the code it imported, not the checkout's HEAD when it finishes."""
    from nanosgm.experiments import recipe
    monkeypatch.setattr(recipe, "_COMMIT", [])
    reads = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(recipe, "_read_git_commit", lambda: next(reads))
    assert recipe.git_commit() == "a" * 40 and recipe.git_commit() == "a" * 40


def test_a_network_nested_in_a_network_is_refused_before_training():
    """parameters() lists a network's own layers, so the inner weights would silently never train: refused by
    fit before any work, and by an optimizer's step for a loop written by hand; the flat network trains."""
    rng = np.random.default_rng(0)
    X, y = rng.uniform(0, 1, (32, 6)).astype(np.float32), rng.integers(0, 2, 32)
    inner = Sequential([Dense(6, 8, rng=rng), ReLU()])
    nested = Sequential([inner, Dense(8, 2, rng=rng)])
    before = inner.layers[0].params["W"].copy()
    with pytest.raises(ValueError, match=r"^layer 0 of the model is itself a Sequential, .* \*inner\.layers"):
        fit(nested, build_optimizer("adam"), X, y, epochs=1, keeping=RunKeeping(progress=False, log=None))
    opt = build_optimizer("adam")
    with pytest.raises(ValueError, match="layer 0 of the model is itself a Sequential"):
        opt.step(nested)
    assert np.array_equal(inner.layers[0].params["W"], before)
    flat = Sequential([*inner.layers, nested.layers[1]])
    fit(flat, build_optimizer("adam"), X, y, epochs=1, batch_size=16, keeping=RunKeeping(progress=False, log=None))
    assert not np.array_equal(inner.layers[0].params["W"], before)          # the same layers, now trained
