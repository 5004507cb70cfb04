"""``nanosgm plot RUN/results.json`` (nanosgm/experiments/plot_run.py): one run's learning curves from the
history its results.json records, and a one-line refusal of any file that is not such a record."""
import copy
import json
import os
import subprocess
import sys

import pytest

from conftest import require_real_data
from nanosgm.experiments import plot_run, train_cli
from nanosgm.plumbing.seal import check_seal, is_sealed, seal

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A two-epoch SGM run of the paper's DNN on 500 real MNIST images (a few seconds)."""
    data = require_real_data("mnist")
    out = tmp_path_factory.mktemp("plot") / "run"
    argv = ["mnist", "--model", "dnn", "--limit", "500", "--eval-limit", "200", "--pgd", "0", "--epochs", "2",
            "--no-progress", "--data-dir", str(data), "--out", str(out)]
    assert train_cli.main(argv) == 0
    return out


@pytest.fixture
def record(run_folder):
    with open(run_folder / "results.json") as f:
        return json.load(f)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def lines_of(ax) -> dict:
    return {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}


# --- the figure ------------------------------------------------------------------------------------------------
def test_the_plot_of_a_run_writes_a_png(run_folder, tmp_path, capsys):
    out = tmp_path / "figs" / "curves.png"
    assert plot_run.main([str(run_folder / "results.json"), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG) and os.listdir(out.parent) == ["curves.png"]   # no temporary left
    captured = capsys.readouterr()
    assert captured.out == f"wrote {out}\n"
    assert captured.err == ""             # nanosgm train seals its results.json: no note that it could be edited


def test_the_default_out_is_beside_the_results(run_folder):
    assert plot_run.main([str(run_folder)]) == 0            # the run folder stands for its results.json
    assert (run_folder / "curves.png").read_bytes().startswith(PNG)


def test_an_sgm_run_has_loss_error_and_input_shift_axes(record):
    history = record["history"]
    fig = plot_run.run_curves(record)
    loss, error, shift = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["Training loss", "Error per epoch",
                                                   "Stored inputs' shift |X_t - X_0|"]
    assert lines_of(loss) == {"training loss": [h["train_loss"] for h in history]}
    errors = lines_of(error)
    assert errors["validation error"] == [h["val_error_pct"] for h in history]
    assert errors["test error"] == [h["test_error_pct"] for h in history]
    assert errors[f"kept: epoch {record['best_epoch']}"] == [0, 1]         # axvline: the epoch whose weights are kept
    assert lines_of(shift) == {"max |X_t - X_0|": [h["input_shift_max"] for h in history],
                               "mean |X_t - X_0|": [h["input_shift_mean"] for h in history]}
    assert all(list(line.get_xdata()) == [1, 2] for line in loss.get_lines())
    assert "mnist | dnn | sgm:0.2 | seed 0" == fig._suptitle.get_text()


def test_a_run_whose_inputs_do_not_move_has_no_shift_axes(record):
    control = copy.deepcopy(record)
    for h in control["history"]:
        h.pop("input_shift_max"), h.pop("input_shift_mean")
    fig = plot_run.run_curves(control)
    assert [ax.get_title() for ax in fig.axes] == ["Training loss", "Error per epoch"]


def test_a_missing_validation_error_is_left_out(record):
    no_val = copy.deepcopy(record)
    for h in no_val["history"]:
        h["val_error_pct"] = None                  # --val-size 0: no validation set
    assert "validation error" not in lines_of(plot_run.run_curves(no_val).axes[1])


# --- the record ------------------------------------------------------------------------------------------------
def test_an_unsealed_record_is_plotted_with_a_note(record, tmp_path, capsys):
    """A results.json written before nanosgm train sealed its results: plotted, with one line saying so."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "sha256"}))
    notes = []
    assert plot_run.load_run(str(path), say=notes.append)["history"] == record["history"]
    assert notes == [f"note: {path} carries no content digest (written before results were sealed), so an edit to "
                     "it cannot be detected; plotted as it is"]
    assert plot_run.main([str(path), "--out", str(tmp_path / "c.png")]) == 0
    assert capsys.readouterr().err == notes[0] + "\n"


def test_a_sealed_record_is_checked(record, tmp_path, capsys):
    assert is_sealed(record) and check_seal(record, "results.json")["spec"] == record["spec"]   # as train wrote it
    path = tmp_path / "results.json"
    path.write_text(json.dumps(record))
    notes = []
    assert plot_run.load_run(str(path), say=notes.append)["history"] == record["history"] and notes == []
    edited = seal(record)
    edited["history"][0]["train_loss"] = 0.01
    path.write_text(json.dumps(edited))
    assert plot_run.main([str(path), "--out", str(tmp_path / "c.png")]) == 1
    assert one_line_error(capsys) == (f"error: {path} was changed after it was written (its content no longer "
                                      "matches its sha256); restore it (e.g. from a copy), or train the run again\n")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("content, message", [
    ("not json", "is not the results.json of a nanosgm run: it is not JSON"),
    ("[1, 2]", "it holds no JSON object"),
    ('{"history": []}', "it names no format"),
    ('{"format": "nanosgm-protocol/1", "history": []}', "its format is 'nanosgm-protocol/1', not nanosgm-network/N"),
    ('{"config": {}, "networks": {}}', "it is a protocol's record; plot a protocol with nanosgm experiments"),
    ('{"format": "nanosgm-network/2", "history": []}', "it records no history of epochs"),
    ('{"format": "nanosgm-network/2", "history": [{"epoch": "1"}]}', "an entry of its history has no whole epoch"),
    ('{"format": "nanosgm-network/2", "history": [{"epoch": 1, "train_loss": "low"}]}',
     "history[0].train_loss is 'low', not a number"),
])
def test_a_file_that_is_not_a_run_record_is_refused_in_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "results.json"
    path.write_text(content)
    assert plot_run.main([str(path), "--out", str(tmp_path / "c.png")]) == 1
    err = one_line_error(capsys)
    assert err.startswith(f"error: {path}") and message in err, err
    assert not (tmp_path / "c.png").exists()


def test_a_missing_file_and_a_bad_out_are_refused_in_one_line(run_folder, tmp_path, capsys):
    assert plot_run.main([str(tmp_path / "nope.json")]) == 1
    assert "nope.json cannot be read (No such file or directory)" in one_line_error(capsys)
    assert plot_run.main([str(run_folder), "--out", str(tmp_path / "c.bogus")]) == 1
    assert "cannot write .bogus images; use .png, .pdf or .svg" in one_line_error(capsys)
    assert plot_run.main([str(run_folder), "--dpi", "0"]) == 1
    assert "--dpi must be a whole number >= 10" in one_line_error(capsys)


def test_nanosgm_plot_from_the_command_line(run_folder, tmp_path):
    out = tmp_path / "c.svg"
    argv = [sys.executable, "-m", "nanosgm", "plot", str(run_folder / "results.json"), "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote {out}\n" and out.read_text().lstrip().startswith("<?xml")
