"""tools/collect_results.py: finished result files come from a run checkout into this one only after their
checks, a protocol only as the one here grown, a finished audit never replaced, and nothing else copied."""
import json
import shutil

import pytest

from nanosgm.plumbing.seal import seal

from conftest import load_tool


def audit_doc(made, accuracy=70.0, run=0):
    """A sealed robustness.json of run ``run``'s control of the protocol ``made``, as python -m
    nanosgm.robustness writes it (the weights digest its record names)."""
    record = json.loads((made / "protocol.json").read_text())["networks"][f"run{run}/control"]
    net = {"info": {"weights_sha256": record["weights_sha256"]}, "clean": 99.0,
           "accuracy": {"FGSM": {"0.1": accuracy + 10}}, "robust": {"0.1": accuracy}}
    return seal({"settings": {"pgd_steps": 10, "restarts": 1, "apgd_steps": 100, "queries": 1000, "seed": 0,
                              "batch_size": 100, "eps": [0.1], "images": {f"p/run{run}-control": 100}},
                 "networks": {f"p/run{run}-control": net}, "checks": [], "transfer": []})


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
    (seed / "robustness.json").write_text(json.dumps(audit_doc(made)))
    (seed / "robustness.png").write_bytes(b"\x89PNG\r\n\x1a\n a figure")
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
    assert "then: python tools/robustness_tables.py results/p/robustness/seed0/robustness.json --protocol results/p" in out
    assert tool.main([str(run)], here=here) == 0                                       # the second time: nothing
    assert "nothing new" in capsys.readouterr().out


def test_the_next_command_names_every_seed_audit_here_by_seed_and_no_other_folder(trees, made, capsys):
    tool = load_tool("collect_results")
    run, here = trees
    for name, doc in (("seed1", audit_doc(made, run=1)), ("seed0-preliminary", {"not": "an audit of a seed"})):
        (here / "results" / "p" / "robustness" / name).mkdir(parents=True)
        (here / "results" / "p" / "robustness" / name / "robustness.json").write_text(json.dumps(doc))
    assert tool.main([str(run)], here=here) == 0
    then = [line for line in capsys.readouterr().out.splitlines() if "robustness_tables" in line]
    assert then == ["then: python tools/robustness_tables.py results/p/robustness/seed0/robustness.json "
                    "results/p/robustness/seed1/robustness.json --protocol results/p --figure "
                    "results/p/robustness/robust.png --gain-figure results/p/robustness/gain.png"]

def add_refill_session(tree, keys: list) -> None:
    """Append to tree's results/p/protocol.json a refill's session that kept the weights of networks ``keys``."""
    from nanosgm.experiments.records import refill_entry
    path = tree / "results" / "p" / "protocol.json"
    doc = json.loads(path.read_text())
    nets = doc["networks"]
    doc["sessions"].append({"command": "a refill", "refilled": {k: refill_entry(nets[k], nets[k]["weights_sha256"])
                                                                for k in keys}})
    path.write_text(json.dumps(doc))


def test_a_refill_session_that_named_more_weights_since_it_was_collected_comes_over(trees, capsys):
    tool = load_tool("collect_results")
    run, here = trees
    add_refill_session(here, ["run0/control"])                                # collected mid-session
    add_refill_session(run, ["run0/control", "run1/control"])                 # the session went on
    assert tool.main([str(run)], here=here) == 0
    assert "copied results/p/protocol.json" in capsys.readouterr().out
    assert (here / "results" / "p" / "protocol.json").read_text() == (run / "results" / "p" / "protocol.json").read_text()


def test_a_refill_session_that_lost_a_named_network_is_refused(trees, capsys):
    tool = load_tool("collect_results")
    run, here = trees
    add_refill_session(here, ["run0/control"])
    add_refill_session(run, ["run1/control"])                                 # neither holds the other
    before = (here / "results" / "p" / "protocol.json").read_text()
    assert tool.main([str(run)], here=here) == 1
    assert "differ in the earlier sessions" in capsys.readouterr().err
    assert (here / "results" / "p" / "protocol.json").read_text() == before

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


def test_a_protocol_without_a_finished_network_is_not_copied(trees, capsys):
    tool = load_tool("collect_results")
    run, here = trees
    started = run / "results" / "q"                                  # a protocol whose first networks still train
    started.mkdir()
    doc = json.loads((run / "results" / "p" / "protocol.json").read_text())
    (started / "protocol.json").write_text(json.dumps(doc | {"networks": {}}))
    assert tool.main([str(run)], here=here) == 0
    assert "results/q" not in capsys.readouterr().out and not (here / "results" / "q").exists()


def _edit_record(rp, reseal):
    doc = json.loads((rp / "protocol.json").read_text())
    record = doc["networks"]["run0/control"]
    record["train_seconds"] += 1.0
    doc["networks"]["run0/control"] = seal(record) if reseal else record
    (rp / "protocol.json").write_text(json.dumps(doc))


def _strip_seal(rp):
    doc = json.loads((rp / "protocol.json").read_text())
    doc["networks"]["run1/control"].pop("sha256")
    (rp / "protocol.json").write_text(json.dumps(doc))


def _write_audit(rp, doc, seed=0):
    (rp / "robustness" / f"seed{seed}").mkdir(parents=True, exist_ok=True)
    (rp / "robustness" / f"seed{seed}" / "robustness.json").write_text(json.dumps(doc))


def _edited_audit(rp, made):
    doc = audit_doc(made)
    doc["networks"]["p/run0-control"]["clean"] = 100.0
    _write_audit(rp, doc)


def _unsealed_audit(rp, made):
    doc = audit_doc(made)
    doc.pop("sha256")
    _write_audit(rp, doc)


def _other_weights(rp, made):
    doc = audit_doc(made)
    doc["networks"]["p/run0-control"]["info"]["weights_sha256"] = "d" * 64
    _write_audit(rp, seal(doc))


def _linked_seed(rp, made, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(rp / "robustness" / "seed0", outside)
    (outside / "robustness.json").write_text(json.dumps(audit_doc(made, run=1)))
    (rp / "robustness" / "seed1").symlink_to(outside)


BREAKS = {   # how RUN's results are damaged -> what the one-line refusal says
    "record": (lambda rp, made, tmp: _edit_record(rp, True), "differ in the record(s) of run0/control"),
    "seal": (lambda rp, made, tmp: _edit_record(rp, False), "was changed after it was written"),
    "stripped seal": (lambda rp, made, tmp: _strip_seal(rp), "carries no content digest"),
    "audit": (lambda rp, made, tmp: _edited_audit(rp, made), "robustness.json was changed after it was written"),
    "unsealed audit": (lambda rp, made, tmp: _unsealed_audit(rp, made), "carries no content digest; an audit"),
    "other weights": (lambda rp, made, tmp: _other_weights(rp, made), "has weights dddddddddddd, not the recorded"),
    "the same audit twice": (lambda rp, made, tmp: shutil.copytree(rp / "robustness" / "seed0",
                                                                   rp / "robustness" / "seed1"), "give each audit once"),
    "linked seed": (lambda rp, made, tmp: _linked_seed(rp, made, tmp), "is a symbolic link"),
    "committed audit": (lambda rp, made, tmp: _write_audit(tmp / "here" / "results" / "p", audit_doc(made, 60.0)),
                        "differs from the committed"),
    "decomposition": (lambda rp, made, tmp: (rp / "decomposition.json").write_text('{"sha256": "0"}'),
                      "decomposition.json"),
    "deep decomposition": (lambda rp, made, tmp: (rp / "decomposition.json").write_text("[" * 100000),
                           "is not a decomposition.json"),
    "transfer": (lambda rp, made, tmp: (rp / "transfer-x.json").write_text("not json"), "is not a JSON object"),
    "edited partial decomposition": (lambda rp, made, tmp: _partial(rp, ["run0/control"], edit=True),
                                     "was changed after it was written"),
    "partial decomposition of other weights": (lambda rp, made, tmp: _partial(rp, ["run0/control"], digest="d" * 64),
                                               "the entries of run0/control did not measure the weights"),
    "partial decomposition of another protocol": (lambda rp, made, tmp: _partial(rp, ["run0/control"],
                                                                                 config={"dataset": "cifar10"}),
                                                  "was measured on another configuration than"),
    "partial decomposition of an unrecorded network": (lambda rp, made, tmp: _partial(rp, ["run7/control"],
                                                                                    digest="e" * 64),
                                                       "the entries of run7/control did not measure the weights"),
    "partial decomposition that changed": (lambda rp, made, tmp: (
        _partial(tmp / "here" / "results" / "p", ["run0/control", "run1/control"], eps=0.1),
        _partial(rp, ["run0/control", "run1/control", "run0/sgm:0.2"], eps=0.2)), "differ in the settings; a partial"),
    "partial decomposition without the entries here": (lambda rp, made, tmp: (
        _partial(tmp / "here" / "results" / "p", ["run0/control", "run1/control"]),
        _partial(rp, ["run0/control", "run0/sgm:0.2"])), "lacks the entries of run1/control that"),
    "figure": (lambda rp, made, tmp: (rp / "decomposition.png").write_text("<svg/>"), "is not a PNG image"),
    "lone figure": (lambda rp, made, tmp: shutil.copytree(rp / "robustness" / "seed0", rp / "robustness" / "seed3",
                                                          ignore=shutil.ignore_patterns("*.json")), "no robustness.json"),
    "file for a folder": (lambda rp, made, tmp: (tmp / "here" / "results" / "p" / "robustness").write_text("x"),
                          "is not a plain folder"),
    "dangling link for a folder": (lambda rp, made, tmp: (tmp / "here" / "results" / "p" / "robustness").symlink_to(
        tmp / "nowhere"), "is not a plain folder"),
    "folder for a file": (lambda rp, made, tmp: ((tmp / "here" / "results" / "p" / "protocol.json").unlink(),
                                                 (tmp / "here" / "results" / "p" / "protocol.json").mkdir()),
                          "is not a plain file"),
}


def _partial(folder, keys: list, eps=0.1, edit=False, digest=None, config=None) -> None:
    """Write folder/decomposition.partial.json as python -m nanosgm.decompose --partial-only does: the settings
    (the protocol's configuration; ``config`` to replace it) and a sealed entry per network of ``keys``, of the
    weights its record names (``digest`` for other weights); ``edit``: the first entry changed after sealing."""
    doc = json.loads((folder / "protocol.json").read_text())
    networks = {k: seal({"run": int(k[3:k.index("/")]), "weights_sha256": digest or doc["networks"][k]["weights_sha256"],
                         "readings": {"inference": eps}}) for k in keys}
    if edit:
        next(iter(networks.values()))["readings"] = {"inference": 100}
    settings = {"protocol_config": config or doc["config"], "eps": [eps]}
    (folder / "decomposition.partial.json").write_text(json.dumps(
        {"format": "nanosgm-decomposition/1/partial", "settings": settings, "networks": networks}))


def test_a_partial_decomposition_comes_over_as_it_grows_and_not_beside_a_finished_one(trees, capsys):
    tool = load_tool("collect_results")
    run, here = trees
    rp, hp = run / "results" / "p", here / "results" / "p"
    name = "decomposition.partial.json"
    _partial(rp, ["run0/control"])
    assert tool.main([str(run)], here=here) == 0 and f"copied results/p/{name}" in capsys.readouterr().out
    assert (hp / name).read_bytes() == (rp / name).read_bytes()
    _partial(rp, ["run0/control", "run1/control"])                             # grown: comes over again
    assert tool.main([str(run)], here=here) == 0 and f"copied results/p/{name}" in capsys.readouterr().out
    assert (hp / name).read_bytes() == (rp / name).read_bytes()
    _partial(rp, ["run0/control"])                                             # older than the one here: left alone
    assert tool.main([str(run)], here=here) == 0 and name not in capsys.readouterr().out
    assert len(json.loads((hp / name).read_text())["networks"]) == 2
    _partial(rp, ["run0/control", "run1/control", "run0/sgm:0.2"])
    (rp / "decomposition.json").write_text("{}")                               # finished in RUN: the partial is history
    assert tool.main([str(run), "--dry-run"], here=here) == 1                  # (that decomposition.json is refused)
    assert name not in capsys.readouterr().out
    (rp / "decomposition.json").unlink()
    (hp / name).write_text("damaged")
    (hp / "decomposition.json").write_text("{}")                               # finished here: nothing read or copied
    assert tool.main([str(run)], here=here) == 0 and name not in capsys.readouterr().out
    assert (hp / name).read_text() == "damaged"


@pytest.mark.parametrize("break_it", sorted(BREAKS))
def test_results_that_do_not_hold_are_refused_and_nothing_is_copied(made, trees, tmp_path, capsys, break_it):
    tool = load_tool("collect_results")
    run, here = trees
    rp = run / "results" / "p"
    grow(rp, command="a refill")                                     # something that would otherwise be copied
    damage, why = BREAKS[break_it]
    damage(rp, made, tmp_path)
    before = {p: p.read_bytes() if p.is_file() else None for p in (here / "results").rglob("*")}
    assert tool.main([str(run)], here=here) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and why in err, err
    assert {p: p.read_bytes() if p.is_file() else None for p in (here / "results").rglob("*")} == before


def test_lookalike_folders_and_links_elsewhere_are_left_alone(made, trees, capsys):
    """seed2.old/ is not a seed's folder; a models/ folder linked to another disk is not a result."""
    tool = load_tool("collect_results")
    run, here = trees
    rp = run / "results" / "p"
    shutil.copytree(rp / "robustness" / "seed0", rp / "robustness" / "seed2.old")
    shutil.move(rp / "models", run / "models-on-another-disk")
    (rp / "models").symlink_to(run / "models-on-another-disk")
    assert tool.main([str(run)], here=here) == 0
    assert not (here / "results" / "p" / "robustness" / "seed2.old").exists()
    assert (here / "results" / "p" / "robustness" / "seed0" / "robustness.json").is_file()


def test_a_copy_cut_short_leaves_nothing_behind(made, trees, monkeypatch, capsys):
    tool = load_tool("collect_results")
    run, here = trees
    real = shutil.copyfile

    def cut(src, dst):                                   # half the file written, then the copy dies
        data = open(src, "rb").read()
        open(dst, "wb").write(data[:len(data) // 2])
        raise KeyboardInterrupt
    monkeypatch.setattr(tool.shutil, "copyfile", cut)
    assert tool.main([str(run)], here=here) == 130
    seed = here / "results" / "p" / "robustness" / "seed0"
    assert not any(seed.iterdir()) if seed.exists() else True              # no half file, no temporary one
    monkeypatch.setattr(tool.shutil, "copyfile", real)
    assert tool.main([str(run)], here=here) == 0 and (seed / "robustness.json").is_file()


def test_the_command_line_refuses_what_is_not_a_run_checkout(tmp_path, capsys):
    tool = load_tool("collect_results")
    for nothing in (tmp_path / "nowhere", tmp_path / "afile"):
        (tmp_path / "afile").write_text("")
        assert tool.main([str(nothing)], here=tmp_path) == 1
        assert f"{nothing} is not a folder" in capsys.readouterr().err
    assert tool.main([str(tmp_path)], here=tmp_path) == 1
    assert "has no results/ folder" in capsys.readouterr().err
    (tmp_path / "results").mkdir()
    assert tool.main([str(tmp_path)], here=tmp_path) == 1
    assert "is this checkout" in capsys.readouterr().err
    assert tool.main([], here=tmp_path) == 1
    assert "required: run" in capsys.readouterr().err


def test_files_sealed_here_since_hold_their_unsealed_copies_in_run(made, trees, capsys):
    """A checkout of an older commit holds, unsealed, files this one has sealed since (tools/seal_results.py):
    they are the same results, left alone."""
    tool = load_tool("collect_results")
    run, here = trees
    assert tool.main([str(run)], here=here) == 0                   # seed 0's audit is here now, sealed
    capsys.readouterr()
    audit = json.loads((run / "results" / "p" / "robustness" / "seed0" / "robustness.json").read_text())
    audit.pop("sha256")                                            # RUN's copies from before the seals
    (run / "results" / "p" / "robustness" / "seed0" / "robustness.json").write_text(json.dumps(audit))
    doc = json.loads((run / "results" / "p" / "protocol.json").read_text())
    for record in doc["networks"].values():
        record.pop("sha256")
    (run / "results" / "p" / "protocol.json").write_text(json.dumps(doc))
    assert tool.main([str(run)], here=here) == 0
    assert "nothing new" in capsys.readouterr().out
