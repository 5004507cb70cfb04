"""The results committed under results/ hold: every protocol reads as python -m nanosgm.experiments reads
it, with every record sealed; every audit and decomposition is sealed and its seal holds. An edit to a
committed number, or a result file added without its seal, fails here."""
import json
import shutil
from pathlib import Path

import pytest

from nanosgm.experiments.decompose import load_decomposition
from nanosgm.experiments.protocol import load_protocol
from nanosgm.plumbing.seal import is_sealed

from conftest import load_tool

RESULTS = Path(__file__).resolve().parents[1] / "results"


def committed(name: str) -> list[Path]:
    return sorted(RESULTS.rglob(name))


@pytest.mark.parametrize("path", committed("protocol.json"), ids=lambda p: str(p.relative_to(RESULTS)))
def test_each_committed_protocol_reads_with_every_record_sealed(path, capsys):
    result = load_protocol(path.parent)
    assert result["networks"] and all(is_sealed(r) for r in json.loads(path.read_text())["networks"].values())
    assert "carry no content digest" not in capsys.readouterr().err


@pytest.mark.parametrize("path", committed("robustness.json"), ids=lambda p: str(p.relative_to(RESULTS)))
def test_each_committed_audit_is_sealed_and_reads(path, capsys):
    assert is_sealed(json.loads(path.read_text()))
    doc = load_tool("robustness_tables")._load(path)                  # the seal checked, the numbers possible
    assert doc["networks"] and "no content digest" not in capsys.readouterr().err


@pytest.mark.parametrize("path", committed("decomposition.json"), ids=lambda p: str(p.relative_to(RESULTS)))
def test_each_committed_decomposition_is_sealed_and_reads(path):
    assert load_decomposition(path)["networks"]


@pytest.mark.parametrize("path", committed("decomposition.json"), ids=lambda p: str(p.relative_to(RESULTS)))
def test_each_committed_decomposition_measured_the_recorded_weights_where_they_are_named(path):
    """Where its protocol's records name their weights' digests (records made from commit ea61504 on), a
    decomposition measured exactly those weights, network by network; older protocols name none."""
    from nanosgm.experiments.decompose import measured_recorded, recorded_weights
    protocol = load_protocol(path.parent)
    networks = load_decomposition(path)["networks"]
    named = [k for k in networks if recorded_weights(protocol, k) is not None]
    if not named:
        pytest.skip(f"{path.parent.name}'s records name no weight digests")
    assert named == list(networks), "every network or none names its digest in one protocol"
    assert all(measured_recorded(protocol, k, e) for k, e in networks.items())


@pytest.mark.parametrize("path", committed("decomposition.partial.json"), ids=lambda p: str(p.relative_to(RESULTS)))
def test_each_committed_partial_decomposition_measured_the_recorded_weights(path):
    """A partial decomposition (--partial-only) is committed so that the final one need not train its networks
    again: each entry's seal holds and it measured the weights its protocol recorded for that network."""
    from nanosgm.experiments.decompose import measured_recorded, read_partial
    protocol = load_protocol(path.parent)
    settings, entries = read_partial(str(path))
    assert settings["protocol_config"] == protocol["config"]
    assert entries and all(measured_recorded(protocol, k, e) for k, e in entries.items())


MEASURED = ("init_sha256", "best_epoch", "results", "results_last_epoch", "spec", "schedule", "versions",
            "n_train", "n_test", "data_source")


def test_the_ten_pairs_controls_equal_the_future_work_controls_of_the_same_seeds():
    """results/mnist-cnn-ten/README.md: seeds 0-4's controls are trained with the code, seeds and threads of
    future-work's, whose records they must equal in everything but the clock (the weights' digests are new)."""
    from nanosgm.experiments.keys import split_key
    ten = load_protocol(RESULTS / "mnist-cnn-ten")["networks"]
    future = load_protocol(RESULTS / "future-work")["networks"]
    future_runs = {split_key(k)[0] for k in future}
    for key in [k for k in ten if k.endswith("/control") and split_key(k)[0] in future_runs]:
        a, b = ten[key], future[key]
        assert {f: a[f] for f in MEASURED} == {f: b[f] for f in MEASURED}, key
        untimed = [[{k: v for k, v in e.items() if k != "seconds"} for e in r["history"]] for r in (a, b)]
        assert untimed[0] == untimed[1], key


def with_table_blocks() -> list[Path]:
    return [p for p in committed("README.md") if "<!-- results_" in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", with_table_blocks(), ids=lambda p: str(p.relative_to(RESULTS)))
def test_each_readme_table_block_is_what_the_committed_results_make_now(path):
    """A README's generated tables (tools/results_tables.py --update) are those of the files beside them: a
    protocol that grew, or a table edited by hand, fails here until the blocks are written again."""
    text, blocks = load_tool("results_tables").rewritten(path)
    assert blocks >= 1
    assert text == path.read_text(encoding="utf-8"), (
        f"{path.relative_to(RESULTS.parent)}: run python tools/results_tables.py --update {path.relative_to(RESULTS.parent)}")


def tables_beside_a_protocol() -> list[Path]:
    return [p for p in committed("tables.txt") if (p.parent / "protocol.json").is_file()]


@pytest.mark.parametrize("path", tables_beside_a_protocol(), ids=lambda p: str(p.relative_to(RESULTS)))
def test_each_tables_txt_is_what_its_protocol_prints_now(path, tmp_path, capsys):
    """``tables.txt`` is ``python -m nanosgm.experiments --tables-only --out FOLDER`` of the protocol beside it
    (a first line ``$ COMMAND`` aside), run on a copy: a protocol that grew without its tables fails here."""
    from nanosgm.experiments import cli
    shutil.copyfile(path.parent / "protocol.json", tmp_path / "protocol.json")
    assert cli.main(["--tables-only", "--out", str(tmp_path)]) == 0
    kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if not line.startswith("$ ")]
    assert capsys.readouterr().out == "".join(kept), (
        f"write it again: python -m nanosgm.experiments --tables-only --out {path.parent.relative_to(RESULTS.parent)}"
        f" > {path.relative_to(RESULTS.parent)}")


def test_the_committed_results_were_found():
    assert len(committed("protocol.json")) >= 8 and len(committed("robustness.json")) >= 10
    assert len(with_table_blocks()) >= 4 and len(tables_beside_a_protocol()) >= 6
