"""python -m nanosgm.decompose (nanosgm/experiments/decompose.py) on a tiny protocol made as the protocol tests
make theirs: a sealed decomposition.json with every reading of every saved network, the table per arm, the
records met by the inference and authors readings, resuming after an interruption, and one-line refusals."""
import json
import shutil

import numpy as np
import pytest

from nanosgm.attacks import READINGS
from nanosgm.experiments import decompose
from nanosgm.methods.arms import slug
from nanosgm.plumbing.seal import RecordEdited, check_seal

from test_experiments import copy_findable, run

pytestmark = pytest.mark.usefixtures("numpy_backend")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two runs of the control and FGSM adversarial training on 40 synthetic test images (eps 0.01 and 0.1 in
    the records). Its networks differ from the control's from the first batch on (an SGM arm's best epoch here
    is the first, whose weights are the control's)."""
    folder = tmp_path_factory.mktemp("made") / "p"
    run(arms="fgsm-at:0.1", runs=2, out=folder)
    return folder


@pytest.fixture
def folder(made, tmp_path, monkeypatch):
    """A copy of the protocol; the command finds its dataset and model by the names protocol.json gives
    ("syn", "tiny_net": the test's own functions)."""
    return copy_findable(made, tmp_path, monkeypatch)


def command(argv, capsys):
    code = decompose.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_writes_a_sealed_decomposition_and_a_table_per_arm(folder, capsys):
    code, out, err = command([folder, "--eps", "0.1,0.01", "--no-progress"], capsys)
    assert code == 0, err
    doc = decompose.load_decomposition(folder / "decomposition.json")      # the seal holds
    assert doc["format"] == decompose.FORMAT and doc["command"].startswith("python -m nanosgm.decompose ")
    assert list(doc["networks"]) == ["run0/control", "run0/fgsm-at:0.1", "run1/control", "run1/fgsm-at:0.1"]
    assert list(doc["settings"]["readings"]) == list(READINGS) and doc["settings"]["images"] == 40
    for key, entry in doc["networks"].items():
        assert entry["model"] == f"models/{key.replace('/', '-').replace(':', '_')}.npz"
        assert list(entry["readings"]) == list(READINGS)
        for r in entry["readings"].values():
            assert list(r["fgsm_pct"]) == ["0.1", "0.01"]
            assert all(0 <= v <= 100 for v in [*r["fgsm_pct"].values(), r["zero_gradient_pct"], r["saturated_pct"]])
        # the protocol's own images and seeds: the inference and authors readings are the records' numbers
        assert set(entry["record_check"]) == {"inference", "authors"}
        assert all(c["agrees"] for c in entry["record_check"].values()), entry["record_check"]
    saved = json.loads((folder / "protocol.json").read_text())["networks"]
    assert doc["networks"]["run1/fgsm-at:0.1"]["readings"]["authors"]["fgsm_pct"]["0.1"] == \
        saved["run1/fgsm-at:0.1"]["results"]["fgsm_authors_pct"]["0.1"]
    # the summary: medians of the paired differences, from the entries
    nets = doc["networks"]
    arm_minus_control = [nets[f"run{i}/fgsm-at:0.1"]["readings"]["batch-stats"]["fgsm_pct"]["0.1"]
                         - nets[f"run{i}/control"]["readings"]["batch-stats"]["fgsm_pct"]["0.1"] for i in (0, 1)]
    cell = doc["summary"]["fgsm-at:0.1"]["readings"]["batch-stats"]["fgsm"]["0.1"]
    assert cell["minus_control"] == round(float(np.median(arm_minus_control)), 4)
    assert any(c["minus_control"] != 0 for r in doc["summary"]["fgsm-at:0.1"]["readings"].values()
               for c in r["fgsm"].values())                            # the arm's networks are not the control's
    assert doc["summary"]["control"]["readings"]["inference"]["fgsm"]["0.1"]["minus_inference"] == 0.0
    assert doc["summary"]["control"]["readings"]["authors"]["fgsm"]["0.1"]["minus_control"] is None
    assert doc["summary"]["fgsm-at:0.1"]["pairs"] == 2
    # the table: one per arm, a row per reading
    assert "control (2 network(s))" in out and "fgsm-at:0.1 (2 network(s), 2 pair(s) with the control)" in out
    rows = [line for line in out.splitlines() if line.split(" ")[0] in READINGS]
    assert len(rows) == 2 * len(READINGS)
    assert f"wrote {folder / 'decomposition.json'}" in out
    assert not (folder / decompose.PARTIAL_NAME).exists()
    # written once: another run is refused without --overwrite, and an edited file is refused when read
    code, _, err = command([folder], capsys)
    assert code == 1 and err.count("\n") == 1 and "already exists; use --overwrite" in err
    edited = json.loads((folder / "decomposition.json").read_text())
    edited["networks"]["run0/control"]["readings"]["authors"]["fgsm_pct"]["0.1"] = 100.0
    (folder / "decomposition.json").write_text(json.dumps(edited))
    with pytest.raises(RecordEdited, match="was changed after it was written"):
        decompose.load_decomposition(folder / "decomposition.json")
    (folder / "decomposition.json").write_text("[" * 100000)                # absurdly nested: one line too
    with pytest.raises(decompose.DecomposeError, match="is not a decomposition.json"):
        decompose.load_decomposition(folder / "decomposition.json")


def test_an_interrupted_decomposition_resumes_after_its_finished_networks(folder, capsys, monkeypatch):
    argv = [folder, "--eps", "0.1", "--readings", "authors,batch-stats@32", "--no-progress"]
    real, calls, stop_at = decompose.decompose_network, [], [3]

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) in stop_at:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(decompose, "decompose_network", interrupted)
    code, _, err = command(argv, capsys)
    partial = folder / decompose.PARTIAL_NAME
    assert code == 130 and err.strip().endswith("run the same command to resume after them")
    assert f"the 2 finished network(s) are kept in {partial}" in err
    kept = json.loads(partial.read_text())["networks"]
    assert list(kept) == ["run0/control", "run0/fgsm-at:0.1"] and all(check_seal(v, k) for k, v in kept.items())
    code, _, err = command([folder, "--eps", "0.2", "--readings", "authors,batch-stats@32"], capsys)
    assert code == 1 and err.count("\n") == 1 and "was measured with other settings (eps)" in err
    calls.clear()
    stop_at.clear()
    code, _, err = command(argv, capsys)
    assert code == 0 and len(calls) == 2 and "resuming from" in err         # only the two that had not finished
    resumed = decompose.load_decomposition(folder / "decomposition.json")
    assert list(resumed["settings"]["readings"]) == ["inference", "authors", "batch-stats@32"]
    code, _, _ = command(argv + ["--overwrite"], capsys)                   # from scratch: the same numbers
    again = decompose.load_decomposition(folder / "decomposition.json")
    assert code == 0 and len(calls) == 6
    assert {k: v["readings"] for k, v in again["networks"].items()} == \
        {k: v["readings"] for k, v in resumed["networks"].items()}


def test_the_command_refuses_in_one_line(folder, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    (tmp_path / "empty").mkdir()
    cases = [([tmp_path / "nothing"], "is not a folder"), ([tmp_path / "afile"], "is not a folder"),
             ([tmp_path / "empty"], "holds no protocol.json"), ([""], "'' is empty"),
             ([folder, "--eps", "0.1,x"], "--eps must be comma-separated numbers"),
             ([folder, "--eps", "0.1,0.1"], "--eps: 0.1 is given twice in '0.1,0.1'; give each once"),
             ([folder, "--readings", "dropout,keras"], "--readings: unknown reading 'keras'"),
             ([folder, "--images", "33", "--readings", "batch-stats@32"], "a last attack batch of one image"),
             ([folder, "--bogus"], "unrecognized arguments: --bogus (see python -m nanosgm.decompose --help)")]
    for argv, message in cases:
        code, _, err = command(argv, capsys)
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and message in err, (argv, err)
    shutil.rmtree(folder / "models")
    code, _, err = command([folder], capsys)
    assert code == 1 and "holds none of the protocol's networks" in err
    assert err.startswith("error: ") and err.count("\n") == 1              # the refusal alone, no note before it
    (folder / "models").mkdir()
    code, _, err = command([folder], capsys)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "holds none" in err


def test_a_network_without_saved_weights_is_left_out_with_a_note(folder, capsys):
    (folder / "models" / f"run1-{slug('fgsm-at:0.1')}.npz").unlink()
    code, out, err = command([folder, "--eps", "0.1", "--readings", "authors", "--no-progress"], capsys)
    assert code == 0 and "note: 1 recorded network(s) have no saved weights" in err and "run1/fgsm-at:0.1" in err
    doc = decompose.load_decomposition(folder / "decomposition.json")
    assert "run1/fgsm-at:0.1" not in doc["networks"] and doc["summary"]["fgsm-at:0.1"]["pairs"] == 1


def test_the_authors_draw_seed_is_the_records_own_then_the_specs():
    """A record measured with a draw seed gives it back; one without (older records) gives its spec's seed."""
    from nanosgm.experiments.records import authors_draw_seed
    assert authors_draw_seed({"results": {"fgsm_authors_seed": 7}, "spec": {"seed": 3}}) == 7
    assert authors_draw_seed({"results": {"fgsm_authors_seed": 0}, "spec": {"seed": 3}}) == 0
    assert authors_draw_seed({"results": {}, "spec": {"seed": 3}}) == 3
    assert authors_draw_seed({"spec": {"seed": 4}}) == 4


def _perturbed(path):
    """Rewrite the saved weights at ``path`` with one value changed: weights other than the recorded ones."""
    with np.load(path) as z:
        arrays = dict(z)
    first = sorted(arrays)[0]
    arrays[first] = arrays[first] + np.float32(1e-3)
    np.savez(path, **arrays)


def test_networks_measured_a_few_at_a_time_on_machines_that_lose_them(folder, tmp_path, capsys):
    """--partial-only keeps entries and writes no decomposition.json; a later run takes the entry of a network
    whose weights are gone when it measured the recorded weights (numbers as one run over all four), never one
    of other weights; saved weights other than the recorded are refused; --require-all refuses in one line
    (exit 3), naming the runs to refill."""
    from nanosgm.plumbing.seal import seal, unsealed
    argv = [folder, "--eps", "0.1", "--readings", "authors,batch-stats@32", "--no-progress"]
    code, _, err = command(argv, capsys)                                     # the reference: every network at once
    assert code == 0, err
    whole = decompose.load_decomposition(folder / "decomposition.json")["networks"]
    code, _, err = command(argv + ["--partial-only", "--overwrite"], capsys)
    assert code == 1 and err.count("\n") == 1 and "the decomposition is finished, --partial-only has nothing" in err
    (folder / "decomposition.json").unlink()
    models, aside = folder / "models", tmp_path / "aside"
    aside.mkdir()
    for key in ("run1-control", f"run1-{slug('fgsm-at:0.1')}"):             # machine 1 has run 0's weights
        (models / f"{key}.npz").rename(aside / f"{key}.npz")
    shutil.copy(models / "run0-control.npz", aside / "run0-control.npz")
    _perturbed(models / "run0-control.npz")                                  # not the recorded weights: refused
    code, _, err = command(argv + ["--partial-only"], capsys)
    assert code == 1 and err.splitlines()[-1].startswith("error: ") and "other than those the protocol recorded " \
        "for run0/control" in err and "--refill-weights --only-runs 0)" in err
    assert not (folder / decompose.PARTIAL_NAME).exists()
    shutil.copy(aside / "run0-control.npz", models / "run0-control.npz")
    code, out, err = command(argv + ["--partial-only"], capsys)
    assert code == 0 and not (folder / "decomposition.json").exists(), err
    assert "2 network(s) are in" in out and "(4 recorded); no decomposition.json written" in out
    assert "note: 2 recorded network(s) have no saved weights" in err
    partial = folder / decompose.PARTIAL_NAME
    _, kept = decompose.read_partial(str(partial))
    assert list(kept) == ["run0/control", "run0/fgsm-at:0.1"]
    assert all(e["measured_by"]["git_commit"] == whole["run0/control"]["measured_by"]["git_commit"]
               for e in kept.values())
    doc = json.loads(partial.read_text())                                     # an entry of other weights, sealed
    doc["networks"]["run0/control"] = seal(dict(unsealed(doc["networks"]["run0/control"]), weights_sha256="0" * 64))
    partial.write_text(json.dumps(doc))
    for key in ("run0-control", f"run0-{slug('fgsm-at:0.1')}"):             # machine 2 has run 1's
        (models / f"{key}.npz").unlink()
    for key in ("run1-control", f"run1-{slug('fgsm-at:0.1')}"):
        (aside / f"{key}.npz").rename(models / f"{key}.npz")
    code, _, err = command(argv + ["--require-all"], capsys)
    assert code == 3 and err.count("\n") == 1 and "--require-all: 1 recorded network(s)" in err
    assert "run0/control; refill them" in err and "--only-runs 0)" in err
    assert not (folder / "decomposition.json").exists()
    code, _, err = command(argv, capsys)                                     # the other weights' entry: left out
    assert code == 0 and "taken from decomposition.partial.json, which measured their recorded weights: " \
        "run0/fgsm-at:0.1" in err and "note: 1 recorded network(s) have no saved weights" in err
    doc = decompose.load_decomposition(folder / "decomposition.json")
    assert list(doc["networks"]) == ["run0/fgsm-at:0.1", "run1/control", "run1/fgsm-at:0.1"]
    assert {k: v["readings"] for k, v in doc["networks"].items()} == \
        {k: whole[k]["readings"] for k in doc["networks"]}
    assert not partial.exists()


def test_an_entry_is_taken_only_for_a_digest_the_protocol_recorded():
    """A record without a digest (made before digests) never matches an entry, even one without a digest."""
    record = {"run0/control": {"spec": {}}}
    entry = {"run": 0, "arm": "control", "readings": {}}
    assert not decompose.measured_recorded({"networks": record, "sessions": []}, "run0/control", entry)
    digest = {"run0/control": {"spec": {}, "weights_sha256": "a" * 64}}
    assert decompose.measured_recorded({"networks": digest}, "run0/control", dict(entry, weights_sha256="a" * 64))
    assert not decompose.measured_recorded({"networks": digest}, "run0/control", dict(entry, weights_sha256="b" * 64))
    assert not decompose.measured_recorded({"networks": digest}, "run0/control",
                                            dict(entry, run=1, weights_sha256="a" * 64))


def test_a_partial_file_that_is_not_one_is_refused_in_one_line(tmp_path):
    bad = tmp_path / decompose.PARTIAL_NAME
    for text in ("[", json.dumps({"format": "other"}), json.dumps({"format": decompose.FORMAT + "/partial",
                                                                    "settings": [], "networks": {}})):
        bad.write_text(text)
        with pytest.raises(decompose.DecomposeError, match="is not a partial decomposition"):
            decompose.read_partial(str(bad))
    from nanosgm.plumbing.seal import seal
    entry = seal({"weights_sha256": "0" * 64, "readings": {}})
    entry["readings"] = {"inference": {}}                                     # edited after it was sealed
    bad.write_text(json.dumps({"format": decompose.FORMAT + "/partial", "settings": {}, "networks": {"run0/control": entry}}))
    with pytest.raises(decompose.DecomposeError, match="was changed after it was written"):
        decompose.read_partial(str(bad))
