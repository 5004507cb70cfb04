"""Fault injection for ``python -m nanosgm.train``'s run folder: replacing, resuming and finishing a run.

Each case does what a user (or a full disk, or a ``kill``) does to a run folder and asserts what the user
needs: an earlier run that is never lost to a command that then fails, a one-line refusal that names the
setting or file at fault and what to do, and a folder that says truthfully what it holds."""
import errno
import json
import os
import signal

import numpy as np
import pytest

from nanosgm.experiments import train_cli
from nanosgm.layers import BatchNorm, Dense, Flatten, ReLU, Sequential
from nanosgm.methods import SGM, RunKeeping, fit as fit_model
from nanosgm.optim import WAME, build_optimizer
from nanosgm.plumbing import checkpoint
from nanosgm.plumbing.seal import check_seal
from faultkit import snapshot, truncate

TR = ["mnist", "--model", "dnn", "--limit", "500", "--eval-limit", "200", "--pgd", "0", "--epochs", "1",
      "--no-progress"]            # 500 images, batch 128: four steps an epoch


def tr(out, *extra):
    return train_cli.main(TR + ["--out", str(out)] + [str(a) for a in extra])


def folder(run) -> dict:
    """What the run folder holds, byte for byte (its lock file aside: it names the last holder)."""
    return {k: v for k, v in snapshot(run).items() if k != ".lock"}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def stop_at_step(monkeypatch, n, action):
    """Call ``action()`` at the ``n``-th optimizer step of the run (four steps an epoch with TR)."""
    real, steps = WAME.step, []

    def step(self, model):
        steps.append(1)
        if len(steps) == n:
            action()
        return real(self, model)
    monkeypatch.setattr(WAME, "step", step)


def interrupt():
    raise KeyboardInterrupt


def meta_of(ck) -> dict:
    with np.load(ck, allow_pickle=False) as f:
        return json.loads(str(f["meta.json"]))


def edit_meta(ck, change) -> None:
    """Rewrite the checkpoint with ``change(meta)`` applied to its meta.json (a hand edit, a foreign writer)."""
    with np.load(ck, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta.json"]))
    change(meta)
    arrays["meta.json"] = np.array(json.dumps(meta))
    np.savez(ck, **arrays)


# ------------------------------------------------------------------ item 1: --overwrite never loses a run for nothing
def test_an_overwrite_that_fails_on_its_data_keeps_the_earlier_run(tmp_path, mnist_real, capsys):
    run = tmp_path / "r"
    assert tr(run) == 0
    before = folder(run)
    assert tr(run, "--overwrite", "--data-dir", tmp_path / "nonexistent") == 1
    one_line_error(capsys)
    assert folder(run) == before


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",     # NumPy meets the divergence
                            "ignore:invalid value encountered:RuntimeWarning")  # before fit reports it
def test_an_overwrite_that_diverges_or_is_interrupted_in_its_first_epoch_keeps_the_earlier_run(
        tmp_path, mnist_real, capsys, monkeypatch):
    run = tmp_path / "r"
    assert tr(run) == 0
    before = folder(run)
    assert tr(run, "--overwrite", "--lr", "1e30") == 1
    assert "lower the learning rate" in one_line_error(capsys)
    assert folder(run) == before
    stop_at_step(monkeypatch, 2, interrupt)
    assert tr(run, "--overwrite", "--seed", "1") == 130
    err = capsys.readouterr().err
    assert "earlier run" in err and "as it was" in err and "is saved" not in err
    assert folder(run) == before


def test_an_overwrite_replaces_the_earlier_run_once_its_first_epoch_is_saved(tmp_path, mnist_real, capsys,
                                                                             monkeypatch):
    run = tmp_path / "r"
    assert tr(run) == 0
    stop_at_step(monkeypatch, 6, interrupt)                         # in epoch 2 of the new run
    assert tr(run, "--overwrite", "--seed", "1", "--epochs", "2") == 130
    err = capsys.readouterr().err
    assert "epoch 1 is saved" in err and "--resume in place of --overwrite" in err
    assert sorted(folder(run)) == ["checkpoint.npz"]               # the earlier results and model are gone
    assert meta_of(run / "checkpoint.npz")["config"]["seed"] == 1
    monkeypatch.undo()
    assert tr(run, "--resume", "--seed", "1", "--epochs", "2") == 0
    assert json.loads((run / "results.json").read_text())["spec"]["seed"] == 1


# ----------------------------------------------------- item 2: a run is never resumed with fewer epochs than it holds
def test_resume_with_fewer_epochs_than_a_finished_run_holds_is_refused(tmp_path, mnist_real, capsys):
    run = tmp_path / "e2"
    assert tr(run, "--epochs", 2) == 0
    before = folder(run)
    assert tr(run, "--epochs", 1, "--resume", "--reevaluate") == 1
    err = one_line_error(capsys)
    assert "2 epoch(s)" in err and "--epochs 2" in err
    assert folder(run) == before


def tiny_fit(epochs, **keeping):
    rng = np.random.default_rng(0)
    X, y = rng.uniform(0, 1, (16, 1, 3, 4)), rng.integers(0, 3, 16)
    model = Sequential([Flatten(), Dense(12, 8, dtype="float64"), BatchNorm(8, dtype="float64"), ReLU(),
                        Dense(8, 3, dtype="float64")])
    keeping = dict(dict(progress=False, log=None, config={"a": 1}), **keeping)
    return model, fit_model(model, build_optimizer("wame", lr=1e-2), X, y, epochs=epochs, batch_size=5,
                            method=SGM(0.2), keeping=RunKeeping(**keeping))


def test_fit_refuses_a_checkpoint_that_holds_more_epochs_than_asked(tmp_path):
    ck = str(tmp_path / "c.npz")
    tiny_fit(2, checkpoint=ck)
    with pytest.raises(checkpoint.ConfigMismatch, match="holds 2 finished epochs.*--epochs 2") as exc:
        tiny_fit(1, checkpoint=ck, resume=True)
    assert ck in str(exc.value)


# -------------------------------------------- item 3: resuming a finished run checks that it is the run asked for
def test_resume_of_a_finished_run_with_other_settings_is_refused_naming_them(tmp_path, mnist_real, capsys):
    run = tmp_path / "base"
    assert tr(run) == 0
    before = folder(run)
    assert tr(run, "--model", "cnn", "--input-lr", 0, "--resume") == 1
    err = one_line_error(capsys)
    assert "model: saved 'dnn', now 'cnn'" in err and "method: saved 'sgm:0.2', now 'control'" in err
    assert "--overwrite" in err and "nothing to do" not in err
    assert folder(run) == before


@pytest.mark.parametrize("damage", ["truncated", "not a record", "no spec", "no model"])
def test_resume_of_a_finished_run_with_damaged_files_is_refused(tmp_path, mnist_real, capsys, damage):
    run = tmp_path / "base"
    assert tr(run) == 0
    results = run / "results.json"
    if damage == "truncated":
        truncate(results, results.stat().st_size // 2)
    elif damage == "not a record":
        results.write_text("[1, 2]\n")
    elif damage == "no spec":
        results.write_text(json.dumps({k: v for k, v in json.loads(results.read_text()).items() if k != "spec"}))
    else:
        (run / "model.npz").unlink()
    assert tr(run, "--resume") == 1
    err = one_line_error(capsys)
    assert ("model.npz" if damage == "no model" else "results.json") in err and "--overwrite" in err


def test_resume_of_a_finished_run_checks_the_seal_of_its_results(tmp_path, mnist_real, capsys):
    """train seals its results.json; --resume refuses an edited one in one line naming it, and reads one
    written before results were sealed (no digest) with a one-line note."""
    run = tmp_path / "base"
    assert tr(run) == 0
    results = run / "results.json"
    record = json.loads(results.read_text())
    body = check_seal(record, str(results))                     # sealed as written: the digest matches
    capsys.readouterr()
    results.write_text(json.dumps(dict(record, best_epoch=record["best_epoch"] + 1)))
    assert tr(run, "--resume") == 1
    assert one_line_error(capsys) == (f"error: {results} was changed after it was written (its content no longer "
                                      "matches its sha256); restore it from a copy, or train the run again with "
                                      "--overwrite\n")
    results.write_text(json.dumps(body))                        # a results.json from before results were sealed
    assert tr(run, "--resume") == 0
    out, err = capsys.readouterr()
    assert "nothing to do" in out
    assert err == (f"note: {results} carries no content digest (written before results were sealed), so an edit "
                   "to it cannot be detected; read as it is\n")


# ------------------------------------------------------- item 4: every checkpoint meta value is checked when read
@pytest.mark.parametrize("key, value, message", [
    ("epoch", 99, "'epoch' is 99 but its history holds 2 epochs"),
    ("epoch", "2", "'epoch' is '2', not a whole number"),
    ("epoch", 0, "'epoch' is 0"),
    ("history", "garbage", "'history' is 'garbage', not a list"),
    ("history", [{"epoch": 1}, {"epoch": 2}], "'history' epoch 1 lacks"),
    ("loss_ref", "abc", "'loss_ref' is 'abc', not a finite number"),
    ("loss_ref", float("nan"), "'loss_ref' is nan, not a finite number"),
    ("best_epoch", 3, "'best_epoch' is 3, not a whole number in 1..2"),
    ("best_val_error_pct", "x", "'best_val_error_pct' is 'x'"),
    ("best_val_error_pct", 1.5, "'best_val_error_pct' is 1.5 but epoch"),
    ("config", [], "'config' is [], not a dict"),
    ("blas_threads", 0, "'blas_threads' is 0"),
])
def test_a_checkpoint_meta_value_of_the_wrong_type_or_range_is_refused_before_training(tmp_path, key, value,
                                                                                       message):
    ck = str(tmp_path / "c.npz")
    tiny_fit(2, checkpoint=ck)
    edit_meta(ck, lambda m: m.__setitem__(key, value))
    with pytest.raises(checkpoint.CheckpointError) as exc:
        tiny_fit(3, checkpoint=ck, resume=True)
    assert ck in str(exc.value) and message in str(exc.value) and "\n" not in str(exc.value)


def test_a_checkpoint_whose_epoch_was_edited_is_refused_by_the_cli_before_training(tmp_path, mnist_real, capsys):
    run = tmp_path / "r"
    assert tr(run, "--keep-checkpoint") == 0
    edit_meta(run / "checkpoint.npz", lambda m: m.__setitem__("epoch", 99))
    assert tr(run, "--epochs", 2, "--resume") == 1
    assert "'epoch' is 99 but its history holds 1 epoch" in one_line_error(capsys)
    edit_meta(run / "checkpoint.npz", lambda m: m.update(epoch=1, loss_ref="abc"))
    assert tr(run, "--epochs", 2, "--resume") == 1
    assert "'loss_ref' is 'abc'" in one_line_error(capsys)
    assert "epoch   2" not in capsys.readouterr().out


# ------------------------------------------------------ item 5: a full disk and SIGTERM / SIGHUP say what is kept
def _no_space(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_saving_an_epoch_names_the_checkpoint_and_what_it_keeps(tmp_path, mnist_real, capsys,
                                                                                   monkeypatch):
    real, calls = checkpoint.save_npz_atomic, []

    def save(path, arrays):
        calls.append(path)
        if len(calls) == 2:
            _no_space()
        real(path, arrays)
    monkeypatch.setattr(checkpoint, "save_npz_atomic", save)
    run = tmp_path / "r"
    assert tr(run, "--epochs", 2) == 1
    err = one_line_error(capsys)
    assert f"{run}/checkpoint.npz" in err and "No space left on device" in err
    assert "epoch 1 is saved" in err and "--resume" in err
    monkeypatch.undo()
    assert tr(run, "--epochs", 2, "--resume") == 0


@pytest.mark.parametrize("where, name", [("nanosgm.layers.sequential.save_npz_atomic", "model.npz"),
                                         ("nanosgm.plumbing.files.write_json_atomic", "results.json")])
def test_a_full_disk_after_training_names_the_file_and_says_training_is_complete(tmp_path, mnist_real, capsys,
                                                                                 monkeypatch, where, name):
    monkeypatch.setattr(where, _no_space)
    run = tmp_path / "r"
    assert tr(run) == 1
    err = one_line_error(capsys)
    assert f"{run}/{name}" in err and "No space left on device" in err
    assert "training is complete" in err and "--resume" in err
    monkeypatch.undo()
    assert tr(run, "--resume") == 0 and (run / "results.json").exists()


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_end_a_run_like_ctrl_c_saying_what_is_kept(tmp_path, mnist_real, capsys, monkeypatch,
                                                                      guarded_signals, signum, status):
    stop_at_step(monkeypatch, 6, lambda: os.kill(os.getpid(), signum))      # in epoch 2
    run = tmp_path / "r"
    assert tr(run, "--epochs", 2) == status
    err = one_line_error(capsys)
    assert signal.Signals(signum).name in err and "epoch 1 is saved" in err and "--resume" in err
    assert checkpoint.saved_epoch(run / "checkpoint.npz") == 1
    assert guarded_signals == []                    # the command handled the signal, not the fallback
    monkeypatch.undo()
    assert tr(run, "--epochs", 2, "--resume") == 0


# ------------------------------------------------------------ item 6: the BLAS thread count a run was trained with
def test_a_run_records_its_thread_count_and_resumes_only_with_it(tmp_path, mnist_real, capsys):
    run = tmp_path / "r"
    assert tr(run, "--threads", 1, "--keep-checkpoint") == 0
    ck = run / "checkpoint.npz"
    assert meta_of(ck)["blas_threads"] == 1
    assert json.loads((run / "results.json").read_text())["versions"]["blas_threads"] == 1
    edit_meta(ck, lambda m: m.__setitem__("blas_threads", 7))
    capsys.readouterr()
    assert tr(run, "--epochs", 2, "--resume", "--threads", 1) == 1
    err = one_line_error(capsys)
    assert "7 BLAS threads" in err and "--threads 7" in err
    edit_meta(ck, lambda m: m.pop("blas_threads"))             # a checkpoint written before the count was kept
    assert tr(run, "--epochs", 2, "--resume", "--threads", 1) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "thread count" in line]
    assert len(notes) == 1 and "not recorded" in notes[0]


# --------------------------------------------------------- item 7: a finished run keeps its model, not its checkpoint
def test_a_finished_run_removes_its_checkpoint_and_still_says_nothing_to_do(tmp_path, mnist_real, capsys):
    run = tmp_path / "r"
    assert tr(run) == 0
    assert sorted(folder(run)) == ["model.npz", "results.json"]
    assert "checkpoint.npz" not in capsys.readouterr().out.splitlines()[-1]
    before = folder(run)
    assert tr(run, "--resume") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert tr(run, "--resume", "--reevaluate") == 1
    assert "--keep-checkpoint" in one_line_error(capsys)
    assert tr(run, "--resume", "--epochs", 2) == 1
    assert "--keep-checkpoint" in one_line_error(capsys)
    assert folder(run) == before
    kept = tmp_path / "k"
    assert tr(kept, "--keep-checkpoint") == 0
    assert sorted(folder(kept)) == ["checkpoint.npz", "model.npz", "results.json"]


def test_the_progress_bar_shows_the_running_mean_of_the_loss(monkeypatch):
    import tqdm.auto
    shown = []

    class Bar:
        def __init__(self, iterable, **kw):
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable)

        def set_postfix(self, refresh=True, **kw):
            shown.append(kw["loss"])

        def close(self):
            pass
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    _, res = tiny_fit(1, progress=True)
    assert float(shown[-1]) == pytest.approx(res.history[0]["train_loss"], abs=1e-4)
