"""Refilling a protocol's weights (``--refill-weights``): a recorded network whose weights are gone is trained
again and its weights kept only when its new record equals the stored one."""
import json
import os

import numpy as np
import pytest

from nanosgm.experiments import protocol
from nanosgm.experiments.records import (ProtocolError, record_differences, record_digest, recorded_weights,
                                         refill_entry)
from nanosgm.plumbing.seal import seal

from test_experiments import run

pytestmark = pytest.mark.usefixtures("numpy_backend")


def weights(path):
    with np.load(path) as z:
        return {k: z[k].copy() for k in z.files}


def test_a_lost_network_is_trained_again_to_the_same_weights_and_the_record_is_untouched(tmp_path):
    out = tmp_path / "p"
    run(arms="sgm:0.2", runs=2, out=out)
    lost = out / "models" / "run1-sgm_0.2.npz"
    before, record = weights(lost), json.loads((out / "protocol.json").read_text())["networks"]
    os.remove(lost)
    run(arms="sgm:0.2", runs=2, out=out, refill=True)
    after = weights(lost)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    doc = json.loads((out / "protocol.json").read_text())
    assert doc["networks"] == record                       # the stored records, not the new ones
    assert doc["sessions"][-1]["refill"] is True and not (out / "rejected").exists()
    assert doc["sessions"][-1]["refilled"] == {"run1/sgm:0.2": refill_entry(record["run1/sgm:0.2"],
                                                                            record["run1/sgm:0.2"]["weights_sha256"])}


def test_a_network_that_trains_to_other_numbers_is_refused_and_its_weights_set_aside(tmp_path):
    out = tmp_path / "p"
    run(arms="sgm:0.2", runs=1, out=out)
    doc = json.loads((out / "protocol.json").read_text())
    edited = dict(doc["networks"]["run0/sgm:0.2"])
    edited.pop("sha256")
    edited["best_epoch"] = edited["best_epoch"] + 1          # as if another machine had trained it
    doc["networks"]["run0/sgm:0.2"] = seal(edited)
    (out / "protocol.json").write_text(json.dumps(doc))
    os.remove(out / "models" / "run0-sgm_0.2.npz")
    with pytest.raises(ProtocolError, match=r"run0/sgm:0.2 trained again differs from its record in best_epoch"):
        run(arms="sgm:0.2", runs=1, out=out, refill=True)
    assert not (out / "models" / "run0-sgm_0.2.npz").exists()
    assert (out / "rejected" / "run0-sgm_0.2.npz").exists() and (out / "rejected" / "run0-sgm_0.2.json").exists()


def test_refilling_trains_nothing_when_every_network_has_its_weights(tmp_path, monkeypatch):
    out = tmp_path / "p"
    run(arms="sgm:0.2", runs=1, out=out)
    monkeypatch.setattr(protocol, "_refilled", lambda *a: pytest.fail("a network was trained"))
    run(arms="sgm:0.2", runs=1, out=out, refill=True)


def file_digest(path):
    from test_records_unchanged import file_digest as digest
    return digest(path)


def test_a_record_names_the_digests_of_its_saved_and_its_last_weights(tmp_path):
    from nanosgm.experiments.network import train_network
    from test_experiments import base
    record = train_network(base(), model_path=str(tmp_path / "m.npz"))
    assert record["weights_sha256"] == file_digest(tmp_path / "m.npz") != record["init_sha256"]
    if record["best_epoch"] == record["history"][-1]["epoch"]:
        assert record["weights_sha256_last"] == record["weights_sha256"]
    else:
        assert record["weights_sha256_last"] != record["weights_sha256"]


def _edit(out, key, change):
    """Change the stored record ``key`` of the protocol in ``out`` (``change(record)``), sealed again."""
    doc = json.loads((out / "protocol.json").read_text())
    edited = dict(doc["networks"][key])
    edited.pop("sha256")
    change(edited)
    doc["networks"][key] = seal(edited)
    (out / "protocol.json").write_text(json.dumps(doc))


def test_a_record_with_digests_is_refilled_without_evaluating_and_checked_by_them(tmp_path, monkeypatch):
    out = tmp_path / "p"
    run(arms="sgm:0.2", runs=1, out=out)
    before = file_digest(out / "models" / "run0-sgm_0.2.npz")
    os.remove(out / "models" / "run0-sgm_0.2.npz")
    from nanosgm.experiments import network
    monkeypatch.setattr(network, "measure", lambda *a, **k: pytest.fail("a refill with digests evaluated"))
    run(arms="sgm:0.2", runs=1, out=out, refill=True)
    assert file_digest(out / "models" / "run0-sgm_0.2.npz") == before
    os.remove(out / "models" / "run0-sgm_0.2.npz")
    _edit(out, "run0/sgm:0.2", lambda r: r.update(weights_sha256="0" * 64))     # as if other weights were saved
    doc = json.loads((out / "protocol.json").read_text())          # (and the refill's trace of the old digest gone)
    doc["sessions"] = [{k: v for k, v in s.items() if k != "refilled"} for s in doc["sessions"]]
    (out / "protocol.json").write_text(json.dumps(doc))
    with pytest.raises(ProtocolError, match=r"run0/sgm:0.2 trained again differs from its record in weights_sha256:"):
        run(arms="sgm:0.2", runs=1, out=out, refill=True)
    assert not (out / "models" / "run0-sgm_0.2.npz").exists()


def test_a_record_without_digests_is_refilled_by_evaluating_and_comparing_every_accuracy(tmp_path, monkeypatch):
    out = tmp_path / "p"
    run(arms="sgm:0.2", runs=1, out=out)
    _edit(out, "run0/sgm:0.2", lambda r: [r.pop(k) for k in ("weights_sha256", "weights_sha256_last")])
    os.remove(out / "models" / "run0-sgm_0.2.npz")
    from nanosgm.experiments import network
    calls = []
    real = network.measure
    monkeypatch.setattr(network, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    run(arms="sgm:0.2", runs=1, out=out, refill=True)
    assert calls and (out / "models" / "run0-sgm_0.2.npz").exists()
    doc = json.loads((out / "protocol.json").read_text())          # the refill names the digest the record lacks
    entry = doc["sessions"][-1]["refilled"]["run0/sgm:0.2"]
    assert entry["record_sha256"] == record_digest(doc["networks"]["run0/sgm:0.2"])
    assert recorded_weights(doc, "run0/sgm:0.2") == entry["weights_sha256"]
    assert "weights_sha256" not in doc["networks"]["run0/sgm:0.2"]


def _refilled_protocol(tmp_path):
    """A one-run protocol whose run0/sgm:0.2 record has no digest and was refilled once: (folder, its JSON)."""
    out = tmp_path / "p"
    run(arms="sgm:0.2", runs=1, out=out)
    _edit(out, "run0/sgm:0.2", lambda r: [r.pop(k) for k in ("weights_sha256", "weights_sha256_last")])
    os.remove(out / "models" / "run0-sgm_0.2.npz")
    run(arms="sgm:0.2", runs=1, out=out, refill=True)
    return out, json.loads((out / "protocol.json").read_text())


def test_a_refill_entry_is_trusted_only_for_the_record_it_reproduced(tmp_path):
    """An entry is bound to its record's digest and sealed: after the record is recomputed, or when the
    entry is edited, recorded_weights names no digest rather than a wrong one."""
    out, doc = _refilled_protocol(tmp_path)
    entry = doc["sessions"][-1]["refilled"]["run0/sgm:0.2"]
    assert recorded_weights(doc, "run0/sgm:0.2") == entry["weights_sha256"]
    other = json.loads(json.dumps(doc))
    other["networks"]["run0/sgm:0.2"]["best_epoch"] += 1            # another version of the record
    assert recorded_weights(other, "run0/sgm:0.2") is None
    edited = json.loads(json.dumps(doc))
    edited["sessions"][-1]["refilled"]["run0/sgm:0.2"]["weights_sha256"] = "a" * 64
    assert recorded_weights(edited, "run0/sgm:0.2") is None
    with pytest.raises(ProtocolError, match=r"refilled\['run0/sgm:0.2'\] was changed after it was written"):
        (out / "protocol.json").write_text(json.dumps(edited))
        run(arms="sgm:0.2", runs=1, out=out, refill=True)


def test_a_refill_entry_of_a_deleted_record_leaves_the_protocol_readable(tmp_path):
    """Deleting a record to recompute it (what a refused record's message advises) keeps working."""
    out, doc = _refilled_protocol(tmp_path)
    del doc["networks"]["run0/sgm:0.2"]
    (out / "protocol.json").write_text(json.dumps(doc))
    run(arms="sgm:0.2", runs=1, out=out)                            # trains the record again
    doc = json.loads((out / "protocol.json").read_text())
    assert recorded_weights(doc, "run0/sgm:0.2") == doc["networks"]["run0/sgm:0.2"]["weights_sha256"]


@pytest.mark.parametrize("change, why", [
    (lambda e: "f" * 64, r"refilled\['run0/sgm:0.2'\] is not a sealed \{weights_sha256, record_sha256\} pair"),
    (lambda e: dict(e, weights_sha256="f" * 63), r"is not a sealed \{weights_sha256, record_sha256\} pair"),
    (lambda e: seal({"weights_sha256": "f" * 64, "record_sha256": e["record_sha256"]}),
     r"refills of run0/sgm:0.2 name other weights than its record or each other"),
    (lambda e: ["run0/sgm:0.2"], None)])
def test_a_damaged_refill_entry_is_refused_when_the_protocol_is_read(tmp_path, change, why):
    out, doc = _refilled_protocol(tmp_path)
    if why is None:                                 # "refilled" itself not an object
        doc["sessions"][-1]["refilled"], why = ["run0/sgm:0.2"], r"sessions\[\d+\]\.refilled must be an object"
    else:
        entry = doc["sessions"][-1]["refilled"]["run0/sgm:0.2"]
        new = change(entry)
        if "other weights" in why:                  # a second refill of the same record that kept other weights
            doc["sessions"].append({"refill": True, "refilled": {"run0/sgm:0.2": new}})
        else:
            doc["sessions"][-1]["refilled"]["run0/sgm:0.2"] = new
    (out / "protocol.json").write_text(json.dumps(doc))
    with pytest.raises(ProtocolError, match=why):
        run(arms="sgm:0.2", runs=1, out=out, refill=True)


def test_an_unevaluated_network_is_compared_by_digests_and_history_alone():
    stored = {"init_sha256": "x", "weights_sha256": "w", "weights_sha256_last": "v", "best_epoch": 1,
              "results": {"clean_pct": 90.0}, "results_last_epoch": {"clean_pct": 89.0, "epoch": 2},
              "history": [{"epoch": 1, "train_loss": 0.5}]}
    new = dict(stored, results={}, results_last_epoch={"epoch": 2})
    assert record_differences(stored, new, measured=False) == []
    assert record_differences(stored, new) == ["results", "results_last_epoch"]
    assert record_differences(stored, dict(new, weights_sha256_last="u"), measured=False) == ["weights_sha256_last"]
    without = {k: v for k, v in stored.items() if not k.startswith("weights_")}
    with pytest.raises(ValueError, match="lacks"):
        record_differences(without, new, measured=False)


def test_record_differences_ignore_times_and_name_every_measured_field():
    a = {"init_sha256": "x", "best_epoch": 2, "results": {"clean_pct": 90.0}, "train_seconds": 5.0,
         "history": [{"epoch": 1, "train_loss": 0.5, "seconds": 3.0}]}
    b = dict(a, train_seconds=9.0, history=[{"epoch": 1, "train_loss": 0.5, "seconds": 4.0}])
    assert record_differences(a, b) == []
    assert record_differences(a, dict(b, results={"clean_pct": 90.1})) == ["results"]
    assert record_differences(a, dict(b, history=[{"epoch": 1, "train_loss": 0.6, "seconds": 4.0}])) == ["history"]


def test_the_command_refuses_a_folder_without_a_protocol_in_one_line(tmp_path, capsys):
    from nanosgm.experiments import cli
    assert cli.main(["mnist", "--refill-weights", "--out", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--refill-weights" in err and "holds no protocol.json" in err


def test_an_older_record_is_compared_on_what_it_measured():
    old = {"init_sha256": "x", "results": {"clean_pct": 90.0}}
    new = {"init_sha256": "x", "results": {"clean_pct": 90.0, "fgsm_authors_pct": {"0.1": 50.0}},
           "results_last_epoch": {"clean_pct": 89.0}}
    assert record_differences(old, new) == []
    assert record_differences(old, dict(new, results={"clean_pct": 91.0})) == ["results"]


def test_only_runs_trains_and_refills_just_the_runs_it_names(tmp_path):
    out = tmp_path / "p"
    run(arms="sgm:0.2", runs=3, out=out, only_runs=[1])
    assert sorted(json.loads((out / "protocol.json").read_text())["networks"]) == ["run1/control", "run1/sgm:0.2"]
    run(arms="sgm:0.2", runs=3, out=out)                     # the others later, to the same protocol
    for f in ("run0-control.npz", "run1-sgm_0.2.npz", "run2-sgm_0.2.npz"):
        os.remove(out / "models" / f)
    run(arms="sgm:0.2", runs=3, out=out, refill=True, only_runs=[1])
    models = sorted(os.listdir(out / "models"))
    assert "run1-sgm_0.2.npz" in models and "run0-control.npz" not in models and "run2-sgm_0.2.npz" not in models
    assert json.loads((out / "protocol.json").read_text())["sessions"][-1]["only_runs"] == [1]


@pytest.mark.parametrize("only", [[3], [], [-1]])
def test_only_runs_outside_the_protocol_are_refused(tmp_path, only):
    with pytest.raises(ValueError, match="only_runs must name runs 0-2"):
        run(arms="sgm:0.2", runs=3, out=tmp_path / "p", only_runs=only)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("text,why", [("5", "--runs 5, runs 0-4"), ("1,,2", "comma-separated whole numbers"),
                                      ("x", "must be a whole number")])
def test_the_command_refuses_a_bad_only_runs_in_one_line(tmp_path, capsys, text, why):
    from nanosgm.experiments import cli
    assert cli.main(["mnist", "--only-runs", text, "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and why in err
    assert not (tmp_path / "p").exists()


def handed_to_protocol(monkeypatch, capsys, argv) -> dict:
    """The keyword arguments the command gives run_protocol for ``argv`` (stopped there, exit 130)."""
    from nanosgm.experiments import cli
    seen = {}

    def stop(base, **kw):
        seen.update(kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "run_protocol", stop)
    assert cli.main(argv) == 130
    capsys.readouterr()
    return seen


def test_the_command_hands_only_runs_to_the_protocol(tmp_path, monkeypatch, capsys):
    seen = handed_to_protocol(monkeypatch, capsys, ["mnist", "--runs", "3", "--only-runs", "2,0",
                                                    "--out", str(tmp_path / "p")])
    assert seen["only_runs"] == [2, 0] and seen["runs"] == 3


def test_only_arms_refills_just_the_arms_it_names_the_control_alone_included(tmp_path):
    """What a tool that needs only the controls asks for (tools/transfer_table.py's source networks)."""
    out = tmp_path / "p"
    run(arms="sgm:0.2,fgsm-at:0.1", runs=2, out=out)
    kept = weights(out / "models" / "run1-control.npz")
    for f in os.listdir(out / "models"):
        os.remove(out / "models" / f)
    run(arms="sgm:0.2,fgsm-at:0.1", runs=2, out=out, refill=True, only_arms=["control"])
    assert sorted(os.listdir(out / "models")) == ["run0-control.npz", "run1-control.npz"]
    again = weights(out / "models" / "run1-control.npz")
    assert all(np.array_equal(kept[k], again[k]) for k in kept)
    session = json.loads((out / "protocol.json").read_text())["sessions"][-1]
    assert session["only_arms"] == ["control"] and sorted(session["refilled"]) == ["run0/control", "run1/control"]
    run(arms="sgm:0.2,fgsm-at:0.1", runs=2, out=out, refill=True, only_arms=["fgsm-at:0.1"], only_runs=[1])
    assert sorted(os.listdir(out / "models")) == ["run0-control.npz", "run1-control.npz", "run1-fgsm-at_0.1.npz"]
    run(arms="sgm:0.2,fgsm-at:0.1", runs=2, out=out, refill=True, only_arms=["SGM:0.20"])   # canonical labels
    assert "run0-sgm_0.2.npz" in os.listdir(out / "models")
    with pytest.raises(ValueError, match="only_arms names sgm:0.3, not among the arms control, sgm:0.2"):
        run(arms="sgm:0.2,fgsm-at:0.1", runs=2, out=out, refill=True, only_arms=["sgm:0.3"])
    before = (out / "protocol.json").read_bytes()
    for nothing in ([], [" "]):
        with pytest.raises(ValueError, match="only_arms must name at least one arm"):
            run(arms="sgm:0.2,fgsm-at:0.1", runs=2, out=out, refill=True, only_arms=nothing)
    assert (out / "protocol.json").read_bytes() == before           # refused before anything is written


@pytest.mark.parametrize("text", ["sgm:0.3", ",", "control,bogus"])
def test_the_command_refuses_an_arm_not_of_the_protocol_in_one_line(tmp_path, capsys, text):
    from nanosgm.experiments import cli
    assert cli.main(["mnist", "--arms", "sgm:0.2", "--only-arms", text, "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--only-arms" in err and "name arms of this protocol, comma-separated: " \
        "control, sgm:0.2" in err
    assert not (tmp_path / "p").exists()


def test_the_command_hands_only_arms_to_the_protocol(tmp_path, monkeypatch, capsys):
    out = ["--out", str(tmp_path / "p")]
    seen = handed_to_protocol(monkeypatch, capsys, ["mnist", "--arms", "sgm:0.2", "--only-arms", " control "] + out)
    assert seen["only_arms"] == ["control"]
    seen = handed_to_protocol(monkeypatch, capsys, ["mnist", "--arms", "sgm:0.20,pgd-at:0.1",
                                                    "--only-arms", "SGM:0.20,pgd-at:0.1"] + out)
    assert seen["only_arms"] == ["sgm:0.2", "pgd-at:0.1:7"]                 # as --arms spells them


def test_a_run_that_trains_nothing_leaves_no_session_entry(tmp_path):
    out = tmp_path / "p"
    run(arms="sgm:0.2", runs=1, out=out)
    run(arms="sgm:0.2", runs=1, out=out)                     # everything is recorded: nothing to train
    run(arms="sgm:0.2", runs=1, out=out, refill=True)        # every network has its weights
    assert len(json.loads((out / "protocol.json").read_text())["sessions"]) == 1
