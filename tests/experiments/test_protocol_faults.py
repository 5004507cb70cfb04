"""Hostile use of a protocol folder: hand-edited or malformed protocol.json, resuming with another BLAS
thread count, a record that breaks the lock-step, budgets that differ in the 7th digit.

Every refusal is one line (``error: ...`` from the command line) that names the file and the field."""
from __future__ import annotations

import json
import shutil

import pytest

from nanosgm import experiments
from nanosgm.experiments import network, protocol
from nanosgm.experiments.network import NetworkSpec
from nanosgm.plumbing.blas import blas_threads
from nanosgm.plumbing.errors import NanosgmError
from nanosgm.plumbing.seal import RecordEdited, seal

from conftest import load_tool, require_real_data
from protokit import BASE, run


@pytest.fixture
def folder(made, tmp_path):
    out = tmp_path / "p"
    shutil.copytree(made, out)
    return out


def edit(out, change) -> None:
    """Apply ``change(doc)`` to ``out``/protocol.json, as a person with an editor would."""
    path = out / "protocol.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=1))


def unseal(doc) -> None:
    """Make every record one written before records were sealed (and before thread counts were kept)."""
    doc.pop("blas_threads", None)
    for r in doc["networks"].values():
        r.pop("sha256", None)
        r["versions"].pop("blas_threads", None)


def tables_only(out, capsys) -> tuple:
    """(exit status, stderr) of ``python -m nanosgm.experiments --tables-only --out OUT``."""
    rc = experiments.main(["--tables-only", "--out", str(out)])
    return rc, capsys.readouterr().err


def one_error_line(err) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------- item 1: the BLAS thread count
def test_records_and_the_protocol_say_their_blas_thread_count(folder):
    if blas_threads() is None:
        pytest.skip("this BLAS does not report its thread count")
    doc = json.loads((folder / "protocol.json").read_text())
    assert doc["blas_threads"] == 1 and doc["sessions"][0]["blas_threads"] == 1
    assert [r["versions"]["blas_threads"] for r in doc["networks"].values()] == [1] * 4


def test_resuming_with_another_blas_thread_count_is_refused_with_the_flag_to_pass(folder):
    with pytest.raises(experiments.ConfigMismatch) as e:
        run(folder, runs=3, threads=2)
    assert "made with 1 BLAS thread(s) per network and this run would use 2" in str(e.value)
    assert "pass --threads 1" in str(e.value) and "\n" not in str(e.value)
    assert len(json.loads((folder / "protocol.json").read_text())["networks"]) == 4      # nothing trained


def test_a_protocol_without_a_thread_count_is_resumed_with_a_note_and_records_it_from_then_on(folder, capsys):
    edit(folder, unseal)
    rc, err = tables_only(folder, capsys)
    assert rc == 0 and "4 of its 4 network record(s) carry no content digest" in err
    res = run(folder, runs=3, threads=1)
    err = capsys.readouterr().err
    assert "BLAS thread count of its 4 earlier network record(s) was not recorded" in err and '"sessions"' in err
    assert "from now on it records 1" in err
    doc = json.loads((folder / "protocol.json").read_text())
    assert doc["blas_threads"] == 1 and len(res["networks"]) == 6
    assert "blas_threads" not in doc["networks"]["run0/control"]["versions"]          # kept as it was
    assert all("sha256" in r for r in doc["networks"].values())     # new ones sealed, and the old ones since
    with pytest.raises(experiments.ConfigMismatch, match="pass --threads 1"):
        run(folder, runs=4, threads=3)


def _comparable(out) -> dict:
    """The records of a protocol folder without what changes from run to run (times, and the seal over them)."""
    nets = json.loads((out / "protocol.json").read_text())["networks"]
    drop = ("train_seconds", "eval_seconds", "started", "finished", "sha256")
    return {k: dict({f: v for f, v in r.items() if f not in drop},
                    history=[{f: v for f, v in h.items() if f != "seconds"} for h in r["history"]])
            for k, r in nets.items()}


def test_readme_claim_one_worker_and_two_workers_with_the_same_threads_give_the_same_records(tmp_path, capsys):
    """README: the same effective BLAS thread count (here --threads 1), CPU kernels and backend give the
    same records, whatever --workers says."""
    data_dir = require_real_data("mnist")
    argv = ["mnist", "--model", "dnn", "--runs", "1", "--arms", "sgm:0.2", "--epochs", "1", "--limit", "300",
            "--eval-limit", "100", "--pgd", "0", "--eps", "0.1", "--threads", "1", "--data-dir", str(data_dir),
            "--no-progress"]
    assert experiments.main(argv + ["--workers", "1", "--out", str(tmp_path / "one")]) == 0
    assert experiments.main(argv + ["--workers", "2", "--out", str(tmp_path / "two")]) == 0
    capsys.readouterr()
    one, two = _comparable(tmp_path / "one"), _comparable(tmp_path / "two")
    assert list(one) == list(two) == ["run0/control", "run0/sgm:0.2"] and one == two
    if blas_threads() is not None:
        assert [r["versions"]["blas_threads"] for r in one.values()] == [1, 1]


# ---------------------------------------------------------------------- item 2: hand-edited records
def test_an_edited_accuracy_is_refused_by_tables_only_and_by_a_resume(folder, capsys):
    edit(folder, lambda d: d["networks"]["run1/sgm:0.2"]["results"]["fgsm_pct"].update({"0.1": 71.0}))
    rc, err = tables_only(folder, capsys)
    line = one_error_line(err)
    assert rc == 1 and "networks['run1/sgm:0.2'] was changed after it was written" in line and "protocol.json" in line
    with pytest.raises(RecordEdited):
        run(folder, runs=2)


def test_a_record_whose_seal_was_removed_is_refused_where_other_records_are_sealed(folder, capsys):
    """Records without digests read as written before seals only in a file with no sealed record."""
    def strip_and_edit(d):
        d["networks"]["run0/control"].pop("sha256")
        d["networks"]["run0/control"]["train_seconds"] = 1.0
    edit(folder, strip_and_edit)
    rc, err = tables_only(folder, capsys)
    line = one_error_line(err)
    assert rc == 1 and "networks['run0/control'] carries no content digest while other records of this file" in line
    assert "its digest was removed" in line


def test_a_mismatched_init_digest_is_refused(folder, capsys):
    edit(folder, lambda d: d["networks"]["run0/sgm:0.2"].update(init_sha256="0" * 64))
    with pytest.raises(RecordEdited):                                   # sealed: the seal sees it
        experiments.load_protocol(folder)

    def unsealed_and_edited(d):
        unseal(d)
        d["networks"]["run0/sgm:0.2"]["init_sha256"] = "0" * 64
    edit(folder, unsealed_and_edited)
    rc, err = tables_only(folder, capsys)                               # unsealed: the lock-step check sees it
    line = one_error_line(err)
    assert rc == 1 and "run 0: its networks did not start from the same weights (lock-step broken" in line


def test_an_edited_spec_is_refused_even_without_a_seal(folder, capsys):
    def add_input_lr(d):
        unseal(d)
        d["networks"]["run1/control"]["spec"]["input_lr"] = 0.2
    edit(folder, add_input_lr)
    rc, err = tables_only(folder, capsys)
    assert rc == 1 and "networks['run1/control'].spec disagrees" in one_error_line(err) and "input_lr 0.2" in err


def test_an_edited_legacy_spec_input_lr_is_refused(folder, capsys):
    """Records of format nanosgm-network/1 name their method by input_lr & co: an edit changes the method."""
    def legacy(d):
        unseal(d)
        for key, r in d["networks"].items():
            label = r["spec"].pop("method")
            r["format"] = "nanosgm-network/1"
            r["spec"].update(input_lr=0.2 if label == "sgm:0.2" else 0.0, per_sample=False, published=False)
    edit(folder, legacy)
    assert tables_only(folder, capsys)[0] == 0                          # as written: read as they are
    edit(folder, lambda d: d["networks"]["run1/sgm:0.2"]["spec"].update(input_lr=0.3))
    rc, err = tables_only(folder, capsys)
    assert rc == 1 and "method 'sgm:0.3' where 'sgm:0.2' was expected" in one_error_line(err)


def test_a_record_filed_under_another_run_is_refused(folder, capsys):
    def move(d):
        unseal(d)
        d["networks"]["run1/control"] = dict(d["networks"]["run0/control"])     # seed 0 under run 1
    edit(folder, move)
    rc, err = tables_only(folder, capsys)
    assert rc == 1 and "seed 0 where 1 was expected" in one_error_line(err)


@pytest.mark.parametrize("change, field", [
    (lambda r: r["results"].update(clean_pct=101.0), "results.clean_pct must be a percentage in [0, 100]"),
    (lambda r: r["results"].update(clean_pct=float("nan")), "results.clean_pct must be a percentage"),
    (lambda r: r["results"].update(clean_pct=33.3333), "is no whole number of the 20 images"),
    (lambda r: r["results"]["fgsm_pct"].pop("0.1"),
     "results.fgsm_pct must give one accuracy per eps of the config (0.01, 0.1), got 0.01;"),
    (lambda r: r["results_last_epoch"]["fgsm_authors_pct"].update({"0.1": -1.0}),
     "results_last_epoch.fgsm_authors_pct['0.1'] must be a percentage"),
])
def test_numbers_no_measurement_can_give_are_refused_in_unsealed_records(folder, capsys, change, field):
    def damage(d):
        unseal(d)
        change(d["networks"]["run0/sgm:0.2"])
    edit(folder, damage)
    rc, err = tables_only(folder, capsys)
    assert rc == 1 and field in one_error_line(err) and "networks['run0/sgm:0.2']" in err


# ---------------------------------------------------------------------- item 3: malformed files
def test_eps_nan_is_refused_before_anything_is_trained(tmp_path, capsys):
    rc = experiments.main(["mnist", "--eps", "0.1,nan", "--out", str(tmp_path / "p"), "--no-progress"])
    assert rc == 1 and "--eps values must be finite" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("damage, field", [
    (lambda d: d.pop("config"), "'config' is missing"),
    (lambda d: d.update(networks=[]), "'networks' must be an object"),
    (lambda d: d["networks"]["run0/control"]["results"].pop("clean_pct"), "results has no clean_pct"),
    (lambda d: d["networks"].update({"control": d["networks"].pop("run0/control")}), "'control' is not a network key"),
    (lambda d: d["config"].update(eps=[0.01, float("nan")]), "config.eps must be a list of finite numbers"),
    (lambda d: d["config"].update(epochs="ten"), "config.epochs must be a whole number"),
    (lambda d: d.update(note="hand-added"), "unknown top-level field(s) 'note'"),
    (lambda d: d.update(summary={}), "unknown top-level field(s) 'summary'"),
    (lambda d: d.update(arms=["sgm:0.2"]), "'arms' must be a list"),
    (lambda d: d["networks"].update({"run0/sgm:0.5": d["networks"]["run0/sgm:0.2"]}),
     "its arm 'sgm:0.5' is not among the protocol's arms (control, sgm:0.2);"),
])
def test_a_malformed_protocol_file_is_one_line_naming_the_field(folder, capsys, damage, field):
    edit(folder, lambda d: (unseal(d), damage(d)))
    rc, err = tables_only(folder, capsys)
    line = one_error_line(err)
    assert rc == 1 and field in line and str(folder / "protocol.json") in line
    with pytest.raises(NanosgmError, match="protocol.json"):                 # and so is a resume
        run(folder, runs=2)


def test_bytes_that_are_not_utf8_are_one_line(folder, capsys):
    path = folder / "protocol.json"
    path.write_bytes(path.read_bytes().replace(b'"control"', b'"contr\xffl"', 1))
    rc, err = tables_only(folder, capsys)
    assert rc == 1 and "is not UTF-8 text" in one_error_line(err) and str(path) in err


def test_a_new_record_that_breaks_the_lock_step_is_one_line_and_kept_aside(folder, monkeypatch):
    monkeypatch.setattr(network, "weights_digest", lambda model: "1" * 64)       # the code initialises differently
    before = json.loads((folder / "protocol.json").read_text())["networks"]
    with pytest.raises(protocol.LockstepBroken) as e:
        experiments.run_protocol(BASE, runs=2, arms="sgm:0.2,published", out=folder, threads=1, progress=False,
                                 bars=False)
    msg = str(e.value)
    assert isinstance(e.value, NanosgmError) and "\n" not in msg and "lock-step broken" in msg
    assert "initialises published differently" in msg and "rejected/run0-published.json" in msg
    kept = json.loads((folder / "rejected" / "run0-published.json").read_text())
    assert kept["init_sha256"] == "1" * 64 and seal(kept) == kept                 # the whole record, sealed
    assert experiments.load_protocol(folder)["networks"] == before              # not filed; the file still loads


# ----------------------------------------------------------------------------- item 4: exact budgets
CLOSE = (0.1234567, 0.1234568)


def test_close_budgets_keep_their_own_rows_in_the_tables(tmp_path):
    nets = {}
    config = protocol.protocol_config(NetworkSpec(dataset="mnist", model="cnn", eps=CLOSE), 0)
    for i in range(2):
        for arm, base_pct in (("control", 50.0), ("sgm:0.2", 60.0)):
            nets[f"run{i}/{arm}"] = {"init_sha256": "x", "spec": protocol.expected_spec(config, i, arm), "history": [],
                                     "results": {"clean_pct": 99.0,
                                                 "fgsm_pct": {repr(CLOSE[0]): base_pct, repr(CLOSE[1]): base_pct + 1}}}
    result = {"format": experiments.PROTOCOL_FORMAT, "config": config, "arms": ["control", "sgm:0.2"], "networks": nets}
    text = experiments.format_tables(result, paper=False)
    assert "eps 0.1234567 sgm:0.2" in text and "eps 0.1234568 sgm:0.2" in text
    (tmp_path / "protocol.json").write_text(json.dumps(result))
    rows = load_tool("results_tables").tables(tmp_path)
    assert "| FGSM ε=0.1234567 (Table 5) | sgm:0.2 | 2 | 50.00" in rows
    assert "| FGSM ε=0.1234568 (Table 5) | sgm:0.2 | 2 | 51.00" in rows
    assert protocol._network_line("run0/sgm:0.2", dict(nets["run0/sgm:0.2"], train_seconds=1.0, eval_seconds=1.0)) \
        .endswith("FGSM 0.1234567: 60.00% | FGSM 0.1234568: 61.00%")


def test_close_budgets_keep_their_own_numbers_in_the_robustness_tables():
    tool = load_tool("robustness_tables")
    keys = [repr(e) for e in CLOSE]
    net = {"clean": 99.0, "accuracy": {"FGSM": dict(zip(keys, (40.0, 41.0)))}, "robust": dict(zip(keys, (30.0, 31.0)))}
    doc = {"settings": {"pgd_steps": 10, "restarts": 1, "apgd_steps": 100, "queries": 100, "seed": 0, "batch_size": 100,
                        "eps": list(CLOSE), "check_eps": 0.5, "images": {"a": 100}},
           "networks": {"row/run0-control": net}, "transfer": []}
    arms, settings = tool.collect([("a.json", doc)])
    table = tool.accuracy_table(arms, settings)
    assert "| control | 0.1234567 | 1 | 99.0 | 40.0 | **30.0** |" in table
    assert "| control | 0.1234568 | 1 | 99.0 | 41.0 | **31.0** |" in table
