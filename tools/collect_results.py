"""Copy the small result files a run checkout has finished into this one, each checked first:
``python tools/collect_results.py RUN [--dry-run]``.

The long runs (``tools/background_queue.sh RUN``) write into another checkout's ``results/``: a protocol's
``protocol.json`` as its networks finish, ``robustness/seed<i>/robustness.json`` (and ``robustness.png``) as a
seed's audit finishes, ``decomposition.json`` / ``decomposition.png`` and ``transfer-*.json`` tables. This tool
copies exactly those into ``results/`` here (never weights, checkpoints, partial audits or logs) and refuses,
with one line and before copying anything:

- a ``protocol.json`` that ``python -m nanosgm.experiments`` would not read (``load_protocol``: records, seals,
  refill entries, the lock-step), or one that is neither the one here grown nor held by it: a protocol only
  adds networks and sessions (RUN's is copied when it holds every network and session here unchanged, and
  left alone when the one here holds it: RUN may be a checkout of an older commit);
- a ``robustness.json`` that ``tools/robustness_tables.py`` would not read (its seal and structure), a
  ``decomposition.json`` whose seal does not hold, or any file that differs from a committed one of that name
  (a finished audit is never replaced; delete it here first to take the new one).

It prints each file it copied (or would copy, ``--dry-run``) and then the commands that regenerate the tables
and figures from them; the READMEs' prose is for a person to update.
"""
from __future__ import annotations

import filecmp
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nanosgm.plumbing.argparser import Parser             # noqa: E402
from nanosgm.plumbing.cli import CliError, run_cli        # noqa: E402

HERE = Path(__file__).resolve().parents[1]
PATTERNS = ("protocol.json", "robustness/seed*/robustness.json", "robustness/seed*/robustness.png",
            "decomposition.json", "decomposition.png", "transfer-*.json")


def finished_files(results: Path) -> list[Path]:
    """The result files under ``results`` (one folder per protocol) this tool copies, relative to it."""
    found = {p.relative_to(results) for folder in sorted(results.iterdir()) if folder.is_dir()
             for pattern in PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sorted(found)


def _robustness_tables():
    import importlib.util
    spec = importlib.util.spec_from_file_location("robustness_tables", HERE / "tools" / "robustness_tables.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _holds(new: dict, old: dict) -> bool:
    """Whether protocol ``new`` is protocol ``old`` grown: the same configuration, and every arm, network and
    session of ``old`` in ``new`` unchanged."""
    sessions = old.get("sessions", [])
    return (new.get("config") == old.get("config") and new["arms"][:len(old["arms"])] == old["arms"]
            and all(new["networks"].get(k) == r for k, r in old["networks"].items())
            and new.get("sessions", [])[:len(sessions)] == sessions)


def protocol_to_copy(new_folder: Path, old_folder: Path) -> bool:
    """Whether ``new_folder``'s protocol.json is to be copied over ``old_folder``'s: it reads and is the one
    there grown (or there is none there); False where they are equal or the one there is ahead (it holds
    the other: RUN is a checkout of an older commit); CliError where neither holds the other."""
    from nanosgm.experiments.protocol import load_protocol
    from nanosgm.plumbing.errors import NanosgmError
    try:
        new = load_protocol(new_folder)
        old = load_protocol(old_folder) if (old_folder / "protocol.json").is_file() else None
    except (NanosgmError, OSError) as exc:
        raise CliError(str(exc)) from None
    if old is None:
        return True
    if _holds(old, new):
        return False
    if not _holds(new, old):
        raise CliError(f"{new_folder / 'protocol.json'} and {old_folder / 'protocol.json'} differ in networks, "
                       f"sessions or configuration that both hold; a protocol only grows: find out which is right")
    return True


def check_file(rel: Path, run: Path, here: Path) -> bool:
    """Check RUN's ``rel`` (CliError if it is not to be copied); True if it differs from the file here."""
    src, dst = run / rel, here / rel
    if rel.name == "protocol.json":
        return protocol_to_copy(src.parent, dst.parent)
    if rel.name == "robustness.json":
        tables = _robustness_tables()
        try:
            tables._load(src)
        except tables.TableError as exc:
            raise CliError(str(exc)) from None
    if rel.name == "decomposition.json":
        from nanosgm.experiments.decompose import load_decomposition
        from nanosgm.plumbing.errors import NanosgmError
        try:
            load_decomposition(src)
        except NanosgmError as exc:
            raise CliError(str(exc)) from None
    if dst.exists() and not filecmp.cmp(src, dst, shallow=False):
        raise CliError(f"{src} differs from the committed {dst}; a finished result is never replaced: "
                       f"delete {dst} first if RUN's is the right one")
    return not dst.exists()


def collect(run: Path, here: Path, dry_run: bool = False) -> list[Path]:
    """Check every finished file of ``run``/results, then copy those that are new or grew into
    ``here``/results; the list of them (relative to results/)."""
    if not (run / "results").is_dir():
        raise CliError(f"{run} has no results/ folder; give the checkout tools/background_queue.sh wrote into")
    if (run / "results").resolve() == (here / "results").resolve():
        raise CliError(f"{run} is this checkout; give the run checkout (the WORKTREE of tools/background_queue.sh)")
    todo = [rel for rel in finished_files(run / "results") if check_file(rel, run / "results", here / "results")]
    for rel in todo:
        if not dry_run:
            (here / "results" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / "results" / rel, here / "results" / rel)
        print(f"{'would copy' if dry_run else 'copied'} results/{rel}")
    return todo


def next_commands(copied: list[Path]) -> list[str]:
    """The commands that regenerate the tables and figures of the folders ``copied`` touched."""
    out = []
    for folder in sorted({rel.parts[0] for rel in copied}):
        if any(rel.parts[0] == folder and rel.parts[1] == "robustness" for rel in copied if len(rel.parts) > 2):
            out.append(f"python tools/robustness_tables.py results/{folder}/robustness/seed*/robustness.json "
                       f"--protocol results/{folder} --figure results/{folder}/robustness/robust.png "
                       f"--gain-figure results/{folder}/robustness/gain.png")
        if Path(folder, "protocol.json") in copied:
            out.append(f"python -m nanosgm.experiments --tables-only --out results/{folder}")
    return out


def _main(argv: list[str], here: Path) -> int:
    p = Parser(prog="python tools/collect_results.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="the checkout the long runs wrote into (tools/background_queue.sh's WORKTREE)")
    p.add_argument("--dry-run", action="store_true", help="check and list, copy nothing")
    args = p.parse_args(argv)
    copied = collect(Path(args.run), Path(here), dry_run=args.dry_run)
    if not copied:
        print("nothing new: every finished file is here already")
    for command in next_commands(copied):
        print(f"then: {command}")
    return 0


def main(argv: list[str] | None = None, here: Path = HERE) -> int:
    """The command (into the checkout ``here``, this one by default); its exit status."""
    return run_cli(lambda a: _main(a, here), argv)


if __name__ == "__main__":
    sys.exit(main())
