"""tools/fgsm_transfer.py: FGSM crafted on one saved network, classified by another, under both conventions;
its white-box column is the number the target's own training run recorded on the same images."""
import json

import pytest
from conftest import load_tool

fgsm_transfer = load_tool("fgsm_transfer")


@pytest.mark.slow
def test_transfer_from_a_cnn_to_a_dnn_beside_their_white_box_numbers(tmp_path, capsys):
    from conftest import require_real_data
    from nanosgm.experiments import train_cli as train
    data_dir = str(require_real_data("mnist"))
    quick = ["--limit", "600", "--eval-limit", "60", "--epochs", "1", "--pgd", "0", "--eps", "0.1,0.2",
             "--no-progress", "--data-dir", data_dir]
    for model, seed in (("cnn", "1"), ("dnn-keras", "0")):
        assert train.main(["mnist", "--model", model, "--seed", seed, "--out", str(tmp_path / model)] + quick) == 0
    cnn, dnn = (str(tmp_path / m / "model.npz") for m in ("cnn", "dnn-keras"))
    out = tmp_path / "transfer.json"
    capsys.readouterr()
    assert fgsm_transfer.cli([cnn, dnn, "--images", "60", "--data-dir", data_dir, "--json", str(out)]) == 0
    assert "% on examples crafted on cnn" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    record = json.loads((tmp_path / "dnn-keras" / "results.json").read_text())["results"]
    got = doc["pct"]
    assert got["inference"]["white-box"] == {e: record["fgsm_pct"][e] for e in ("0.1", "0.2")}
    assert got["authors"]["white-box"] == {e: record["fgsm_authors_pct"][e] for e in ("0.1", "0.2")}
    assert got["inference"]["transfer"] != got["inference"]["white-box"]
    assert doc["images"] == 60 and doc["source"]["model"] == "cnn" and doc["target"]["model"] == "dnn-keras"
    assert (doc["source"]["draw_seed"], doc["target"]["draw_seed"]) == (1, 0)      # each record's own draws
    assert len(doc["target"]["weights_sha256"]) == 64 and doc["command"].startswith("python tools/fgsm_transfer.py")


def test_a_missing_model_is_one_line(tmp_path, capsys):
    assert fgsm_transfer.cli([str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no such model file" in err


@pytest.mark.parametrize("tool, args", [
    ("fgsm_transfer", ["a.npz", "b.npz"]), ("transfer_table", ["src", "dst"]),
    ("dropout_draws", ["row", "--networks", "run0/control"])])
@pytest.mark.parametrize("flag, value, why", [
    ("--eps", "abc", "--eps must be comma-separated numbers, got 'abc'"),
    ("--eps", "0.1,,0.2", "--eps has an empty part in '0.1,,0.2'; give comma-separated numbers, e.g. 0.1,0.2"),
    ("--eps", "0.1,-1", "--eps values must be finite numbers >= 0, got '0.1,-1'"),
    ("--eps", "0.1,0.10", "--eps: 0.1 is given twice in '0.1,0.10'; give each once"),
    ("--images", "-5", "--images must be a whole number >= 1, got '-5'"),     # not "all but the last 5"
    ("--images", "0", "--images must be a whole number >= 1, got '0'")])
def test_the_transfer_and_draw_tools_refuse_a_bad_number_before_reading_anything(tmp_path, capsys, tool, args,
                                                                              flag, value, why):
    module = load_tool(tool)
    entry = getattr(module, "cli", module.main)
    assert entry([str(tmp_path / a) if not a.startswith(("-", "run")) else a for a in args] + [flag, value]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {why}\n"


def test_a_transfer_table_refuses_an_edited_protocol_in_one_line(tmp_path, capsys):
    """The table reads its records (the dropout draws' seeds) through the protocol's checks: a sealed record
    changed by hand is refused before any network is loaded."""
    import os
    import shutil
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    row = tmp_path / "future-work"
    row.mkdir()
    text = open(os.path.join(root, "results", "future-work", "protocol.json"), encoding="utf-8").read()
    (row / "protocol.json").write_text(text.replace('"train_seconds": ', '"train_seconds": 1', 1), encoding="utf-8")
    shutil.copytree(row, tmp_path / "other")
    assert load_tool("transfer_table").cli([str(row), str(tmp_path / "other")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "networks['run0/control'] was changed after it was written" in err
