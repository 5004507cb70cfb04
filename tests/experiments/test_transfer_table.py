"""tools/transfer_table.py on a tiny protocol (two runs of the control and FGSM adversarial training): the
control's examples classified by every arm of the same run, beside each network's white-box numbers."""
import json
import shutil
import statistics

import pytest
from conftest import load_tool


from test_experiments import copy_findable, run

transfer_table = load_tool("transfer_table")
pytestmark = pytest.mark.usefixtures("numpy_backend")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("made") / "p"
    run(arms="fgsm-at:0.1", runs=2, out=folder)
    return folder


@pytest.fixture
def folder(made, tmp_path, monkeypatch):
    """A copy of the protocol, whose dataset and model ("syn", "tiny_net") the loader finds by name."""
    return copy_findable(made, tmp_path, monkeypatch)


def test_every_arm_classifies_the_controls_examples_beside_its_own_white_box_numbers(folder, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert transfer_table.cli([str(folder), str(folder), "--eps", "0.01,0.1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| `control` | 2 |" in printed and "| `fgsm-at:0.1` | 2 |" in printed
    doc = json.loads(out.read_text())
    records = json.loads((folder / "protocol.json").read_text())["networks"]
    for r in ("0", "1"):
        for arm in ("control", "fgsm-at:0.1"):
            cell, record = doc["cells"][r][arm], records[f"run{r}/{arm}"]["results"]
            # the white-box numbers are the protocol's own (same images, same draws)
            assert cell["inference"]["white-box"] == {e: record["fgsm_pct"][e] for e in ("0.01", "0.1")}
            assert cell["authors"]["white-box"] == {e: record["fgsm_authors_pct"][e] for e in ("0.01", "0.1")}
        control = doc["cells"][r]["control"]
        assert control["inference"]["transfer"] == control["inference"]["white-box"]   # crafted on itself
    s = doc["summary"]["fgsm-at:0.1"]["inference"]["transfer"]["0.1"]
    deltas = [doc["cells"][r]["fgsm-at:0.1"]["inference"]["transfer"]["0.1"]
              - doc["cells"][r]["control"]["inference"]["transfer"]["0.1"] for r in ("0", "1")]
    assert s["delta_median"] == pytest.approx(statistics.median(deltas)) and s["runs"] == [0, 1]
    assert set(doc["networks"]) == {"run0/control", "run0/fgsm-at:0.1", "run1/control", "run1/fgsm-at:0.1",
                                    "source run0/control", "source run1/control"}


def test_a_folder_without_saved_networks_is_one_line(folder, tmp_path, capsys):
    shutil.rmtree(folder / "models")
    assert transfer_table.cli([str(folder), str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no run has both" in err
