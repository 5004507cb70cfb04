"""Helpers of the fault-injection suite (tests/test_faults_*.py): damaged files built in tmp_path.

Each helper makes one kind of damage the way it happens to users (an interrupted copy, a bad disk, a
wrong ``ln -s``, a permission slip) so that the tests can assert what nanosgm then does.
"""
from __future__ import annotations

import builtins
import io
import os
import signal
from pathlib import Path

import pytest


def truncate(path: Path, keep: int) -> None:
    """Keep the first ``keep`` bytes of ``path`` (an interrupted copy)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def flip_byte(path: Path, pos: int) -> None:
    """Invert every bit of byte ``pos`` in place (a bad sector, a bit flip in transit); flipping the same
    byte again restores the file. (In place on purpose: truncating a file costs milliseconds here.)"""
    with open(path, "r+b") as f:
        f.seek(pos)
        byte = f.read(1)
        if len(byte) != 1:
            raise IndexError(f"{path} has no byte {pos}")
        f.seek(pos)
        f.write(bytes([byte[0] ^ 0xFF]))


def replace_with(path: Path, kind: str) -> None:
    """Put something other than a readable regular file where ``path`` was (removing what was there).

    ``kind``: "empty" (a 0-byte file), "directory", "dangling" (a symbolic link to nothing),
    "loop" (a symbolic link to itself) or "fifo" (a named pipe: opening it would block).
    """
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(path.parent / "nothing-here")
    elif kind == "loop":
        path.symlink_to(path.name)              # relative: the link points at itself
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        raise ValueError(kind)


BROKEN_KINDS = ("empty", "directory", "dangling", "loop", "fifo")


def snapshot(root: Path) -> dict:
    """{relative path: bytes, or the entry's kind} for everything under ``root``, links not followed:
    compare two snapshots to show that nothing was created, changed or removed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = "dir"
            elif p.is_fifo():
                out[rel] = "fifo"
            else:
                out[rel] = _read_raw(p)
    return out


def _read_raw(p: Path):
    """The bytes of ``p`` through os.open (which the deny_* fixtures leave alone), or its size and
    mtime when the system refuses (a chmod 000 file as an ordinary user)."""
    try:
        fd = os.open(p, os.O_RDONLY)
    except PermissionError:
        st = p.stat()
        return ("unreadable", st.st_size, st.st_mtime_ns)
    try:
        chunks = []
        while block := os.read(fd, 1 << 20):
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


@pytest.fixture
def deny_reading(monkeypatch):
    """``deny_reading(path)``: make a file or folder unreadable for the code under test.

    As an ordinary user this is ``chmod 000`` (undone at teardown). Root reads everything whatever the
    mode, so for root the refusal the system would give is injected instead: ``os.access`` answers
    False for that path and ``open`` raises PermissionError on it, as for an ordinary user.
    """
    restore = []

    def deny(path):
        path = Path(path).absolute()
        if os.geteuid() != 0:
            restore.append((path, path.stat().st_mode))
            os.chmod(path, 0)
            return
        real_access, real_open = os.access, builtins.open

        def same(p):
            return isinstance(p, (str, os.PathLike)) and Path(os.fspath(p)).absolute() == path

        def access(p, mode, *args, **kwargs):
            return False if same(p) else real_access(p, mode, *args, **kwargs)

        def open_(p, *args, **kwargs):
            if same(p):
                raise PermissionError(13, "Permission denied", str(p))
            return real_open(p, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)

    yield deny
    for path, mode in restore:
        os.chmod(path, mode)


@pytest.fixture
def deny_opening(monkeypatch):
    """``deny_opening(path)``: ``open`` raises PermissionError on ``path`` although ``os.access`` says it is
    readable (a file whose permissions change between the search and the read, an ACL, a FUSE mount)."""
    def deny(path):
        path = Path(path).absolute()
        real_open = builtins.open

        def open_(p, *args, **kwargs):
            if isinstance(p, (str, os.PathLike)) and Path(os.fspath(p)).absolute() == path:
                raise PermissionError(13, "Permission denied", str(p))
            return real_open(p, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)
    return deny


@pytest.fixture
def guarded_signals():
    """SIGTERM and SIGHUP recorded instead of ending pytest, should the code under test not handle them."""
    seen = []
    before = {s: signal.signal(s, lambda signum, frame: seen.append(signum)) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield seen
    for s, handler in before.items():
        signal.signal(s, handler)


@pytest.fixture
def no_data(monkeypatch):
    """Any attempt to load a dataset fails the test: a refusal must come first."""
    import nanosgm.data as data
    from nanosgm.experiments import recipe
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data was loaded"))
    monkeypatch.setattr(recipe, "load_data", lambda *a, **k: pytest.fail("data was loaded"))


def refused_in_one_line(main, argv, capsys, message):
    """``main(argv)`` exits 1 with one line ``error: ...`` that contains ``message``; that line."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    return err
