"""Seal result files written before results were sealed, with git as the witness of their content:
``python tools/seal_results.py FILE ...``.

Each FILE is a protocol's ``protocol.json`` or an audit's ``robustness.json``. Files written since seals
existed carry the sha256 of their content (:mod:`nanosgm.plumbing.seal`) and every reader checks it; older
ones are read as they are, with a note that an edit would go unseen. This tool gives such a file its seals
(each unsealed network record of a protocol; an unsealed audit as a whole), and only when:

- the file lies in this checkout (not through a symbolic link) and its bytes are those of its committed
  version (``git show HEAD:<path>``): the seal then vouches for exactly what the history holds, and
  ``git log -p`` shows where that came from;
- the file reads as its reader reads it (``load_protocol``; ``tools/robustness_tables.py``'s checks).

Nothing else changes: sealing adds one ``"sha256"`` key to each record sealed (a protocol's own checks, its
refill entries and the lock-step use the record without it). It prints what it sealed; a file already sealed
is left as it is.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))       # the other tools

import robustness_tables as tables                        # noqa: E402
from nanosgm.plumbing.argparser import Parser             # noqa: E402
from nanosgm.plumbing.cli import CliError, run_cli        # noqa: E402
from nanosgm.plumbing.errors import NanosgmError          # noqa: E402
from nanosgm.plumbing.files import write_json_atomic      # noqa: E402
from nanosgm.plumbing.seal import is_sealed, seal         # noqa: E402

HERE = Path(__file__).resolve().parents[1]


def as_committed(path: Path, repo: Path) -> None:
    """CliError unless ``path`` is a file (not a link) inside the git checkout ``repo`` whose bytes are those
    of its committed version (``git show HEAD:<path>``: what git's history holds, whatever the index says)."""
    if path.is_symlink():
        raise CliError(f"{path} is a symbolic link; name the file itself")
    top, real = repo.resolve(), path.resolve()
    if top not in real.parents:
        raise CliError(f"{path} is not inside the checkout {top}; seal the results of this repository only")
    rel = real.relative_to(top).as_posix()
    shown = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=top, capture_output=True)
    if shown.returncode != 0:
        raise CliError(f"{path} is not committed (git show HEAD:{rel} has nothing): only a committed file is "
                       f"sealed (git vouches for it)")
    if shown.stdout != real.read_bytes():
        raise CliError(f"{path} differs from its committed version; commit it or restore it (git checkout) first")


def check_reads(path: Path) -> None:
    """CliError unless ``path`` reads as its reader reads it (a protocol.json or a robustness.json)."""
    if path.name == "protocol.json":
        from nanosgm.experiments.protocol import load_protocol
        try:
            load_protocol(path.parent)
        except (NanosgmError, OSError) as exc:
            raise CliError(str(exc)) from None
    else:
        try:
            tables._load(path)
        except tables.TableError as exc:
            raise CliError(str(exc)) from None


def seal_protocol(path: Path) -> int:
    """Seal each unsealed network record of the protocol.json ``path``; how many."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    todo = [k for k, r in doc["networks"].items() if not is_sealed(r)]
    for key in todo:
        doc["networks"][key] = seal(doc["networks"][key])
    if todo:
        write_json_atomic(path, doc)
    return len(todo)


def seal_audit(path: Path) -> int:
    """Seal the robustness.json ``path`` as a whole; 1, or 0 if it was sealed already."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if is_sealed(doc):
        return 0
    write_json_atomic(path, seal(doc))
    return 1


def main(argv: list[str] | None = None, repo: Path = HERE) -> int:
    """The command (on files of the git checkout ``repo``, this one by default); its exit status."""
    def body(args_list: list[str]) -> int:
        p = Parser(prog="python tools/seal_results.py", description=__doc__.split("\n\n")[0])
        p.add_argument("files", nargs="+", help="protocol.json or robustness.json files, committed")
        args = p.parse_args(args_list)
        paths = [Path(f) for f in args.files]
        for path in paths:
            if path.name not in ("protocol.json", "robustness.json"):
                raise CliError(f"{path}: not a protocol.json or robustness.json")
            if not path.is_file():
                raise CliError(f"{path}: no such file")
            as_committed(path, repo)
        for path in paths:
            check_reads(path)                     # every file checked before any is changed
        for path in paths:
            n = seal_protocol(path) if path.name == "protocol.json" else seal_audit(path)
            what = "network record(s)" if path.name == "protocol.json" else "audit"
            print(f"{path}: sealed {n} {what}" if n else f"{path}: sealed already")
        return 0
    return run_cli(body, argv)


if __name__ == "__main__":
    sys.exit(main())
