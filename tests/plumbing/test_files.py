"""Atomic writes: a result file is the old one or the new one, never half of one, with ordinary permissions."""
import json
import os
import stat

import pytest

from nanosgm.plumbing.files import atomic_write, write_json_atomic


def test_written_file_gets_the_permissions_of_an_ordinary_file(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "results.json", {"a": 1})
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "results.json").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode) == 0o644   # not mkstemp's 0o600
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1}


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"previous")

    def half_then_interrupt(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_interrupt)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
