"""tools/collect_results.py: finished result files come from a run checkout into this one only after their
checks, a protocol only as the one here grown, a finished audit never replaced, and nothing else copied."""
import json
import shutil

import pytest

from nanosgm.plumbing.seal import seal

from conftest import load_tool
from protokit import write_protocol


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished two-run protocol folder (copy it before changing it)."""
    out = tmp_path_factory.mktemp("made") / "p"
    write_protocol(out, runs=2)
    return out


def audit_doc(accuracy=70.0):
    """A sealed robustness.json of one network, as python -m nanosgm.robustness writes it."""
    net = {"info": {}, "clean": 99.0, "accuracy": {"FGSM": {"0.1": accuracy + 10}}, "robust": {"0.1": accuracy}}
    return seal({"settings": {"pgd_steps": 10, "restarts": 1, "apgd_steps": 100, "queries": 1000, "seed": 0,
                              "batch_size": 100, "eps": [0.1], "images": {"p/run0-control": 100}},
                 "networks": {"p/run0-control": net}, "checks": [], "transfer": []})


@pytest.fixture
def trees(made, tmp_path):
    """(run checkout, this checkout): both with results/p/ the made protocol; RUN's also with its weights,
    checkpoints and a finished and a partial audit of seed 0."""
    run, here = tmp_path / "run", tmp_path / "here"
    for tree in (run, here):
        shutil.copytree(made, tree / "results" / "p", ignore=shutil.ignore_patterns("models", "ckpt*"))
    shutil.copytree(made / "models", run / "results" / "p" / "models")
    seed = run / "results" / "p" / "robustness" / "seed0"
    seed.mkdir(parents=True)
    (seed / "robustness.json").write_text(json.dumps(audit_doc()))
    (seed / "robustness.png").write_bytes(b"\x89PNG fake")
    (seed / "robustness.partial.json").write_text("{}")
    (run / "results" / "p" / "ckpt").mkdir()
    (run / "results" / "p" / "ckpt" / "run0-control.npz").write_bytes(b"weights")
    return run, here


def grow(folder, **session) -> None:
    """Append a session to folder/protocol.json, as a later command would."""
    path = folder / "protocol.json"
    doc = json.loads(path.read_text())
    doc["sessions"].append(session)
    path.write_text(json.dumps(doc))


def test_the_finished_audit_comes_over_and_nothing_else(trees, capsys):
    tool = load_tool("collect_results")
    run, here = trees
    assert tool.main([str(run), "--dry-run"], here=here) == 0
    assert not (here / "results" / "p" / "robustness").exists()                       # a dry run copies nothing
    assert "would copy results/p/robustness/seed0/robustness.json" in capsys.readouterr().out
    assert tool.main([str(run)], here=here) == 0
    out = capsys.readouterr().out
    got = sorted(str(p.relative_to(here / "results")) for p in (here / "results").rglob("*") if p.is_file())
    assert [g for g in got if "robustness" in g] == ["p/robustness/seed0/robustness.json",
                                                      "p/robustness/seed0/robustness.png"]
    assert not any(g.startswith(("p/models", "p/ckpt")) for g in got)                   # weights stay behind
    assert "then: python tools/robustness_tables.py results/p/robustness/seed*/robustness.json --protocol results/p" in out
    assert tool.main([str(run)], here=here) == 0                                       # the second time: nothing
    assert "nothing new" in capsys.readouterr().out


def test_a_grown_protocol_is_copied_and_an_older_one_left_alone(trees, capsys):
    tool = load_tool("collect_results")
    run, here = trees
    grow(run / "results" / "p", command="a refill")                 # RUN's protocol grew: it comes over
    assert tool.main([str(run)], here=here) == 0
    assert "copied results/p/protocol.json" in capsys.readouterr().out
    assert (here / "results" / "p" / "protocol.json").read_text() == (run / "results" / "p" / "protocol.json").read_text()
    grow(here / "results" / "p", command="a later session here")    # here is ahead (RUN is an older checkout): kept
    kept = (here / "results" / "p" / "protocol.json").read_text()
    assert tool.main([str(run)], here=here) == 0
    assert (here / "results" / "p" / "protocol.json").read_text() == kept


@pytest.mark.parametrize("break_it, why", [
    ("record", "differ in networks, sessions or configuration that both hold"),
    ("seal", "was changed after it was written"),
    ("audit", "robustness.json was changed after it was written"),
    ("committed audit", "differs from the committed"),
    ("decomposition", "decomposition.json"),
])
def test_results_that_do_not_hold_are_refused_and_nothing_is_copied(trees, capsys, break_it, why):
    tool = load_tool("collect_results")
    run, here = trees
    rp = run / "results" / "p"
    grow(rp, command="a refill")                                     # something that would otherwise be copied
    doc = json.loads((rp / "protocol.json").read_text())
    if break_it in ("record", "seal"):                               # a record rewritten (sealed again) or edited
        record = doc["networks"]["run0/control"]
        record["train_seconds"] += 1.0
        doc["networks"]["run0/control"] = seal(record) if break_it == "record" else record
        (rp / "protocol.json").write_text(json.dumps(doc))
    elif break_it == "audit":
        audit = audit_doc()
        audit["networks"]["p/run0-control"]["clean"] = 100.0
        (rp / "robustness" / "seed0" / "robustness.json").write_text(json.dumps(audit))
    elif break_it == "committed audit":
        (here / "results" / "p" / "robustness" / "seed0").mkdir(parents=True)
        (here / "results" / "p" / "robustness" / "seed0" / "robustness.json").write_text(json.dumps(audit_doc(60.0)))
    else:
        (rp / "decomposition.json").write_text(json.dumps({"format": "x", "sha256": "0" * 64}))
    before = sorted(p for p in (here / "results").rglob("*"))
    assert tool.main([str(run)], here=here) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and why in err, err
    assert sorted(p for p in (here / "results").rglob("*")) == before                 # checked first, then copied


def test_the_command_line_refuses_what_is_not_a_run_checkout(tmp_path, capsys):
    tool = load_tool("collect_results")
    assert tool.main([str(tmp_path)], here=tmp_path) == 1
    assert "has no results/ folder" in capsys.readouterr().err
    (tmp_path / "results").mkdir()
    assert tool.main([str(tmp_path)], here=tmp_path) == 1
    assert "is this checkout" in capsys.readouterr().err
    assert tool.main([], here=tmp_path) == 1
    assert "required: run" in capsys.readouterr().err
