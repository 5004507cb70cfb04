"""tools/seal_results.py: files written before seals get them only as committed, and only when they read."""
import json
import shutil
import subprocess

import pytest

from nanosgm.experiments.protocol import load_protocol
from nanosgm.plumbing.seal import check_seal, is_sealed

from conftest import load_tool


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def repo(made, tmp_path):
    """A git repository with results/p/protocol.json and an audit committed as written before seals."""
    repo = tmp_path / "repo"
    shutil.copytree(made, repo / "results" / "p", ignore=shutil.ignore_patterns("models", "ckpt*", "*.lock"))
    path = repo / "results" / "p" / "protocol.json"
    doc = json.loads(path.read_text())
    for record in doc["networks"].values():
        record.pop("sha256")
    path.write_text(json.dumps(doc, indent=2) + "\n")
    audit = {"settings": {"pgd_steps": 10, "eps": [0.1], "images": {"p/run0-control": 100}},
             "networks": {"p/run0-control": {"info": {}, "clean": 99.0, "accuracy": {"FGSM": {"0.1": 80.0}},
                                             "robust": {"0.1": 70.0}}}, "checks": [], "transfer": []}
    (repo / "results" / "p" / "robustness.json").write_text(json.dumps(audit, indent=2) + "\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "results")
    return repo


def test_committed_files_are_sealed_with_nothing_else_changed(repo, capsys):
    tool = load_tool("seal_results")
    protocol, audit = repo / "results" / "p" / "protocol.json", repo / "results" / "p" / "robustness.json"
    before = json.loads(protocol.read_text()), json.loads(audit.read_text())
    assert tool.main([str(protocol), str(audit)], repo=repo) == 0
    out = capsys.readouterr().out
    assert f"{protocol}: sealed 4 network record(s)" in out and f"{audit}: sealed 1 audit" in out
    doc = json.loads(protocol.read_text())
    assert all(is_sealed(r) for r in doc["networks"].values())
    assert {k: check_seal(r, k) for k, r in doc["networks"].items()} == before[0]["networks"]
    assert check_seal(json.loads(audit.read_text()), "audit") == before[1]
    load_protocol(protocol.parent)                                   # reads, no note needed
    assert "carry no content digest" not in capsys.readouterr().err
    git(repo, "commit", "-qam", "sealed")
    assert tool.main([str(protocol)], repo=repo) == 0 and "sealed already" in capsys.readouterr().out


def test_an_uncommitted_or_edited_file_is_refused_and_nothing_is_sealed(repo, capsys):
    tool = load_tool("seal_results")
    protocol, audit = repo / "results" / "p" / "protocol.json", repo / "results" / "p" / "robustness.json"
    text = audit.read_text()
    audit.write_text(text.replace("70.0", "71.0"))                   # edited since its commit
    assert tool.main([str(protocol), str(audit)], repo=repo) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differs from its committed version" in err
    assert not any(is_sealed(r) for r in json.loads(protocol.read_text())["networks"].values())
    audit.write_text(text)
    (repo / "results" / "p" / "new").mkdir()
    shutil.copy(protocol, repo / "results" / "p" / "new" / "protocol.json")
    assert tool.main([str(repo / "results" / "p" / "new" / "protocol.json")], repo=repo) == 1
    assert "is not committed" in capsys.readouterr().err
    assert tool.main([str(repo / "results" / "p" / "fig.png")], repo=repo) == 1
    assert "not a protocol.json or robustness.json" in capsys.readouterr().err


def test_a_committed_file_that_does_not_read_is_not_sealed(repo, capsys):
    tool = load_tool("seal_results")
    protocol = repo / "results" / "p" / "protocol.json"
    doc = json.loads(protocol.read_text())
    doc["networks"]["run0/control"]["init_sha256"] = "0" * 64        # the lock-step broken, committed
    protocol.write_text(json.dumps(doc, indent=2) + "\n")
    git(repo, "commit", "-qam", "broken")
    assert tool.main([str(protocol)], repo=repo) == 1
    assert "lock-step broken" in capsys.readouterr().err
    assert not any(is_sealed(r) for r in json.loads(protocol.read_text())["networks"].values())


def test_links_other_repositories_and_hidden_edits_are_refused(repo, tmp_path, capsys):
    """The bytes sealed must be the committed ones of this checkout: not through a link, not another
    repository's, not an edit git was told to overlook (assume-unchanged)."""
    tool = load_tool("seal_results")
    audit = repo / "results" / "p" / "robustness.json"
    (repo / "results" / "q").mkdir()
    (repo / "results" / "q" / "robustness.json").symlink_to(audit)
    assert tool.main([str(repo / "results" / "q" / "robustness.json")], repo=repo) == 1
    assert "is a symbolic link" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(repo, other)
    assert tool.main([str(other / "results" / "p" / "robustness.json")], repo=repo) == 1
    assert "is not inside the checkout" in capsys.readouterr().err
    git(repo, "update-index", "--assume-unchanged", "results/p/robustness.json")
    audit.write_text(audit.read_text().replace("70.0", "71.0"))
    assert tool.main([str(audit)], repo=repo) == 1
    assert "differs from its committed version" in capsys.readouterr().err
    assert not is_sealed(json.loads(audit.read_text()))
