"""A protocol command refused at its start leaves its folder as it was: an empty name is not read as the flag
left out, a data folder that is no folder and an unreachable scheduler are refused before the protocol folder
is made, a protocol.json that cannot be read is refused before the folder is locked, and a refill names only
arms its protocol has. Each refusal is one line ``error: ...``."""
import json
import os

import pytest

from nanosgm.experiments import cli, protocol
from nanosgm.plumbing.runlock import LOCK_NAME, RunLock

from faultkit import refused_in_one_line as refused
from protokit import BASE


@pytest.mark.parametrize("flag", ["--out", "--arms", "--scheduler", "--paper-dir", "--data-dir"])
def test_an_empty_name_is_refused_not_read_as_the_default(tmp_path, monkeypatch, capsys, no_data, flag):
    monkeypatch.chdir(tmp_path)                       # the default --out would be made here
    argv = ["mnist", "--epochs", "1", flag, ""] + ([] if flag == "--out" else ["--out", "p"])
    refused(cli.main, argv, capsys, f"{flag} is empty; give a value, or leave the flag out for its default")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("where", ["missing", "a file"])
def test_a_data_dir_that_is_no_folder_is_refused_before_the_protocol_folder_is_made(tmp_path, capsys, no_data,
                                                                                       where):
    data = tmp_path / "data"
    if where == "a file":
        data.write_text("not a folder")
    refused(cli.main, ["mnist", "--epochs", "1", "--data-dir", str(data), "--out", str(tmp_path / "p")], capsys,
            "is not an existing folder")
    assert not (tmp_path / "p").exists()


def test_a_scheduler_that_cannot_be_reached_leaves_no_folder(tmp_path, monkeypatch, capsys, no_data):
    from nanosgm.experiments import parallel

    def unreachable(address):
        raise OSError(f"cannot connect to {address}")
    monkeypatch.setattr(parallel, "connect_scheduler", unreachable)
    refused(cli.main, ["mnist", "--epochs", "1", "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "p")],
            capsys, "cannot connect to tcp://127.0.0.1:1")
    assert not (tmp_path / "p").exists()


def test_a_protocol_json_that_is_a_folder_is_refused_before_the_folder_is_locked(tmp_path, capsys, no_data):
    (tmp_path / "p" / "protocol.json").mkdir(parents=True)
    refused(cli.main, ["mnist", "--epochs", "1", "--out", str(tmp_path / "p")], capsys,
            "protocol.json cannot be read (Is a directory)")
    assert os.listdir(tmp_path / "p") == ["protocol.json"]


def test_a_broken_symbolic_link_as_the_folder_is_refused_in_one_line(tmp_path, capsys, no_data):
    (tmp_path / "p").symlink_to(tmp_path / "gone")
    refused(cli.main, ["mnist", "--epochs", "1", "--out", str(tmp_path / "p")], capsys, "is a broken symbolic link")
    assert not (tmp_path / "gone").exists()


def test_a_refill_naming_an_arm_the_protocol_lacks_is_refused_and_changes_nothing(made, tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "protocol.json").write_bytes((made / "protocol.json").read_bytes())
    before = (out / "protocol.json").read_bytes()
    with pytest.raises(protocol.ProtocolError, match=r"a refill trains nothing new, and .* has no arm sgm:0.9 "
                                                     r"\(its arms: control, sgm:0.2\)"):
        protocol.run_protocol(BASE, runs=2, arms="sgm:0.2,sgm:0.9", out=out, threads=1, progress=False, bars=False,
                              refill=True)
    assert (out / "protocol.json").read_bytes() == before
    assert json.loads(before)["arms"] == ["control", "sgm:0.2"]


def test_the_lock_removes_the_folder_it_made_when_the_block_fails_and_only_then(tmp_path):
    made_here, kept, written = tmp_path / "new", tmp_path / "old", tmp_path / "written"
    kept.mkdir()
    for folder in (made_here, kept, written):
        with pytest.raises(RuntimeError):
            with RunLock(folder):
                if folder == written:
                    (folder / "protocol.json").write_text("{}")
                raise RuntimeError("refused")
    assert not made_here.exists()                                  # made by the lock, nothing else in it: gone
    assert os.listdir(kept) == [LOCK_NAME]                        # there before: kept, as is its lock file
    assert sorted(os.listdir(written)) == [LOCK_NAME, "protocol.json"]   # something written: kept
    with RunLock(made_here):
        pass
    assert os.listdir(made_here) == [LOCK_NAME]                   # no error: the folder stays
