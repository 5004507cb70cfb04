"""Copy the small result files a run checkout has finished into this one, each checked first:
``python tools/collect_results.py RUN [--dry-run]``.

The long runs (``tools/background_queue.sh RUN``) write into another checkout's ``results/``: a protocol's
``protocol.json`` as its networks finish, ``robustness/seed<i>/robustness.json`` (and ``robustness.png``) as a
seed's audit finishes, ``decomposition.json`` / ``decomposition.png``, ``decomposition.partial.json`` (the
networks decomposed so far, ``--partial-only``, whose weights a later machine will not have) and
``transfer-*.json`` tables. This tool copies exactly those into ``results/`` here (never weights, checkpoints,
partial audits or logs; never through a symbolic link) and refuses, with one line and before copying anything:

- a ``protocol.json`` that ``python -m nanosgm.experiments`` would not read (``load_protocol``: records, seals,
  refill entries, the lock-step), or one that is neither the one here grown nor held by it: a protocol only
  adds networks and sessions (RUN's is copied when it holds every network and session here unchanged, every
  record sealed; it is left alone when the one here holds it: RUN may be a checkout of an older commit);
- an audit (``robustness.json``) without its seal, or one that ``tools/robustness_tables.py`` would not
  tabulate with the other audits of its folder and, where there is one, its protocol (``--protocol``: the
  audited weights are the recorded ones); a ``decomposition.json`` whose seal does not hold; a partial
  decomposition with an entry whose seal does not hold or that did not measure the weights RUN's protocol
  recorded, one of another configuration, or one that is not the one here grown (the same settings, every
  entry here unchanged; it is left alone when the one here holds it, or beside a ``decomposition.json``); a
  ``transfer-*.json`` that is not a JSON object; a ``.png`` that is not a PNG, or an audit's figure without
  its audit;
- any file that differs from one of its name here (a finished result is never replaced: delete it here first
  to take RUN's), or one whose place here is taken by a file where a folder belongs.

Each file is written whole or not at all (a temporary file, then a rename). It prints each file it copied (or
would copy, ``--dry-run``) and then the commands that regenerate the tables and figures from them; the
READMEs' prose is for a person to update.
"""
from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))       # the other tools

import robustness_tables as tables                        # noqa: E402
from nanosgm.plumbing.argparser import Parser             # noqa: E402
from nanosgm.plumbing.seal import unsealed                # noqa: E402
from nanosgm.plumbing.cli import CliError, run_cli        # noqa: E402

HERE = Path(__file__).resolve().parents[1]
FINISHED = re.compile(r"[^/]+/(protocol\.json|robustness/seed\d+/robustness\.(json|png)"
                      r"|decomposition\.(json|png|partial\.json)|transfer-[^/]+\.json)")
PNG = b"\x89PNG\r\n\x1a\n"


def _holds_results(rel: Path) -> bool:
    """Whether the folder at ``rel`` (relative to results/) is one finished files lie in: a protocol's folder,
    its robustness/ and each robustness/seed<i>/."""
    parts = rel.parts
    return len(parts) == 1 or (parts[1] == "robustness" and (len(parts) == 2 or (
        len(parts) == 3 and re.fullmatch(r"seed\d+", parts[2]) is not None)))


def finished_files(results: Path) -> list[Path]:
    """The result files under ``results`` (one folder per protocol) this tool copies, relative to it;
    CliError for one reached through a symbolic link (links elsewhere, such as a models/ folder on another
    disk, are left alone)."""
    found = []
    for folder, dirs, files in os.walk(results, followlinks=False):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(results)
            finished = name in files and FINISHED.fullmatch(rel.as_posix()) is not None
            if path.is_symlink() and (finished or (name in dirs and _holds_results(rel))):
                raise CliError(f"{path} is a symbolic link: results are copied from the run checkout's own files "
                               f"only; replace it with the file or folder itself")
            if finished:
                found.append(rel)
    return sorted(found)


# ------------------------------------------------------------------------------------------ protocols
def _session_grown(new: object, old: object) -> bool:
    """Whether session ``new`` is ``old``, or ``old`` with more networks in its ``"refilled"`` (a refill's session
    names each network's kept weights as it finishes, so a copy taken mid-session holds fewer)."""
    if not (isinstance(new, dict) and isinstance(old, dict)):
        return new == old
    rest_new, rest_old = ({k: v for k, v in s.items() if k != "refilled"} for s in (new, old))
    got, had = new.get("refilled", {}), old.get("refilled", {})
    return (rest_new == rest_old and isinstance(got, dict) and isinstance(had, dict)
            and all(k in got and got[k] == v for k, v in had.items()))


def _differences(new: dict, old: dict) -> list[str]:
    """What of protocol ``old`` protocol ``new`` does not hold unchanged (records compared without their
    seals, which a committed file may have gained since: tools/seal_results.py; sessions by
    :func:`_session_grown`); [] if it is ``old`` grown."""
    sessions, later = old.get("sessions", []), new.get("sessions", [])
    changed = sorted(k for k, r in old["networks"].items()
                     if k not in new["networks"] or unsealed(new["networks"][k]) != unsealed(r))
    grown = len(later) >= len(sessions) and all(map(_session_grown, later, sessions))
    return ((["the configuration"] if new.get("config") != old.get("config") else [])
            + (["the arms"] if new["arms"][:len(old["arms"])] != old["arms"] else [])
            + (["the record(s) of " + ", ".join(changed)] if changed else [])
            + ([] if grown else ["the earlier sessions"]))


def protocol_to_copy(new_folder: Path, old_folder: Path) -> bool:
    """Whether ``new_folder``'s protocol.json is to be copied over ``old_folder``'s: it reads, every record is
    sealed, and it is the one there grown (or there is none there); False where the one there holds it
    (RUN is a checkout of an older commit) or RUN's has no network yet; CliError where neither holds the other."""
    from nanosgm.experiments.protocol import load_protocol
    from nanosgm.plumbing.errors import NanosgmError
    from nanosgm.plumbing.seal import is_sealed
    try:
        new = load_protocol(new_folder)
        old = load_protocol(old_folder) if (old_folder / "protocol.json").is_file() else None
    except (NanosgmError, OSError) as exc:
        raise CliError(str(exc)) from None
    if not new["networks"]:
        return False                        # a protocol that has just started: nothing finished to commit yet
    if old is not None and not _differences(old, new):
        return False
    if old is not None and _differences(new, old):
        raise CliError(f"{new_folder / 'protocol.json'} and {old_folder / 'protocol.json'} differ in "
                       f"{' and '.join(_differences(new, old))}; a protocol only grows: find out which is right")
    bare = sorted(k for k, r in new["networks"].items() if not is_sealed(r))
    if bare:
        raise CliError(f"{new_folder / 'protocol.json'}: the record(s) of {', '.join(bare)} carry no content digest "
                       f"(RUN's file is from before results were sealed): copy the sealed protocol.json of this "
                       f"checkout into RUN before the runs go on, or seal RUN's where it is committed "
                       f"(tools/seal_results.py)")
    return True


# ------------------------------------------------------------------------------ partial decompositions
def partial_to_copy(src: Path, dst: Path) -> bool:
    """Whether RUN's partial decomposition ``src`` is to be copied over ``dst``: every entry sealed and of the
    weights RUN's protocol recorded for its network, measured on that protocol's configuration; the one there
    grown (the same settings, each of its entries unchanged) or none there. False where the one there holds
    it, or a finished decomposition.json lies on either side; CliError otherwise."""
    from nanosgm.experiments.decompose import measured_recorded, read_partial
    from nanosgm.experiments.protocol import load_protocol
    from nanosgm.plumbing.errors import NanosgmError
    if (dst.parent / "decomposition.json").is_file() or (src.parent / "decomposition.json").is_file():
        return False                        # the decomposition is finished: its partial file is history
    try:
        settings, entries = read_partial(str(src))
        protocol = load_protocol(src.parent)
        old = read_partial(str(dst)) if dst.is_file() else None
    except NanosgmError as exc:
        raise CliError(str(exc)) from None
    if settings.get("protocol_config") != protocol["config"]:
        raise CliError(f"{src} was measured on another configuration than {src.parent / 'protocol.json'}'s")
    foreign = [k for k, e in entries.items() if not measured_recorded(protocol, k, e)]
    if foreign:
        raise CliError(f"{src}: the entries of {', '.join(foreign)} did not measure the weights "
                       f"{src.parent / 'protocol.json'} records for them")
    if old is None:
        return True
    if old[0] == settings and all(old[1].get(k) == e for k, e in entries.items()):
        return False                        # the one here holds RUN's (RUN is a checkout of an older commit)
    changed = sorted(k for k, e in old[1].items() if k in entries and entries[k] != e)
    if old[0] != settings or changed:
        what = "the settings" if old[0] != settings else "the entries of " + ", ".join(changed)
        raise CliError(f"{src} and {dst} differ in {what}; a partial decomposition only grows: find out which is "
                       f"right")
    lacking = sorted(k for k in old[1] if k not in entries)
    if lacking:
        raise CliError(f"{src} lacks the entries of {', '.join(lacking)} that {dst} holds: copy {dst} into RUN "
                       f"before its next session (the queue adds to it), then collect again")
    return True


# ------------------------------------------------------------------------------------------ other files
def check_audits(folder: str, run: Path, here: Path, todo: list[Path]) -> None:
    """CliError unless each audit of protocol folder ``folder`` to be copied is sealed, and all its audits as
    they will be here (those here, and those copied) tabulate together with the protocol that will be here
    (``tools/robustness_tables.py ... --protocol``: the audited weights are the recorded ones; without one
    where the folder has none)."""
    from nanosgm.plumbing.seal import is_sealed
    new = [run / rel for rel in todo if rel.parts[0] == folder and rel.name == "robustness.json"]
    for path in new:
        try:
            with open(path, encoding="utf-8") as f:
                sealed = is_sealed(json.load(f))
        except (OSError, ValueError, RecursionError) as exc:
            raise CliError(f"{path}: not readable JSON ({exc})") from None
        if not sealed:
            raise CliError(f"{path} carries no content digest; an audit of this code is sealed: audit again")
    kept = seed_audits(here / folder)
    protocol = (run / folder if Path(folder, "protocol.json") in todo
                else here / folder if (here / folder / "protocol.json").is_file() else None)
    try:
        tables.tables([str(p) for p in kept + new], str(protocol) if protocol else None)
    except (tables.TableError, OSError) as exc:
        raise CliError(str(exc)) from None


def check_other(rel: Path, src: Path) -> None:
    """CliError unless RUN's ``src`` (at ``rel``) is what its name says: a sealed decomposition, a transfer
    table (a JSON object), a PNG; an audit's figure beside its audit."""
    if rel.name == "decomposition.json":
        from nanosgm.experiments.decompose import load_decomposition
        from nanosgm.plumbing.errors import NanosgmError
        try:
            load_decomposition(src)
        except NanosgmError as exc:
            raise CliError(str(exc)) from None
    elif rel.name.startswith("transfer-"):
        try:
            with open(src, encoding="utf-8") as f:
                ok = isinstance(json.load(f), dict)
        except (OSError, ValueError, RecursionError):
            ok = False
        if not ok:
            raise CliError(f"{src} is not a JSON object (a table tools/transfer_table.py --json writes)")
    elif rel.suffix == ".png":
        with open(src, "rb") as f:
            if f.read(len(PNG)) != PNG:
                raise CliError(f"{src} is not a PNG image")
        if rel.name == "robustness.png" and not src.with_suffix(".json").is_file():
            raise CliError(f"{src} has no robustness.json beside it: the figure of which audit?")


def check_place(rel: Path, here: Path) -> None:
    """CliError unless ``rel``'s place here is free or a plain file, and each folder on its way a plain
    folder (not a file, not a symbolic link, dangling or not)."""
    dst = here / rel
    for parent in reversed(dst.parents):
        if here in parent.parents and os.path.lexists(parent) and (parent.is_symlink() or not parent.is_dir()):
            raise CliError(f"{parent} is not a plain folder (a file or a link) where {rel} needs one; "
                           f"move it away first")
    if os.path.lexists(dst) and (dst.is_symlink() or not dst.is_file()):
        raise CliError(f"{dst} is not a plain file (a folder or a link); move it away first")


def _same_audit(src: Path, dst: Path) -> bool:
    """Whether the audit ``dst`` (here, sealed) is the unsealed ``src`` sealed: the same content but its seal."""
    from nanosgm.plumbing.seal import is_sealed
    try:
        with open(src, encoding="utf-8") as f, open(dst, encoding="utf-8") as g:
            a, b = json.load(f), json.load(g)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(a, dict) and not is_sealed(a) and is_sealed(b) and unsealed(b) == a


def is_new(rel: Path, run: Path, here: Path) -> bool:
    """Check RUN's ``rel`` (CliError if it is not to be copied); True if it is to be copied here."""
    src, dst = run / rel, here / rel
    check_place(rel, here)
    if rel.name == "protocol.json":
        return protocol_to_copy(src.parent, dst.parent)
    if rel.name == "decomposition.partial.json":
        return partial_to_copy(src, dst)
    check_other(rel, src)
    if dst.exists() and rel.name == "robustness.json" and _same_audit(src, dst):
        return False                       # the one here holds it, sealed since (tools/seal_results.py)
    if dst.exists() and not (dst.is_file() and filecmp.cmp(src, dst, shallow=False)):
        raise CliError(f"{src} differs from the committed {dst}; a finished result is never replaced: "
                       f"delete {dst} first if RUN's is the right one")
    return not dst.exists()


# ------------------------------------------------------------------------------------------ the command
def copy_whole(src: Path, dst: Path) -> None:
    """``src`` to ``dst`` whole or not at all: a temporary file beside ``dst``, then a rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.collecting")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def collect(run: Path, here: Path, dry_run: bool = False) -> list[Path]:
    """Check every finished file of ``run``/results, then copy those that are new or grew into
    ``here``/results; the list of them (relative to results/)."""
    if not run.is_dir():
        raise CliError(f"{run} is not a folder; give the checkout tools/background_queue.sh wrote into (its WORKTREE)")
    if not (run / "results").is_dir():
        raise CliError(f"{run} has no results/ folder; give the checkout tools/background_queue.sh wrote into")
    if (run / "results").resolve() == (here / "results").resolve():
        raise CliError(f"{run} is this checkout; give the run checkout (the WORKTREE of tools/background_queue.sh)")
    todo = [rel for rel in finished_files(run / "results") if is_new(rel, run / "results", here / "results")]
    for folder in sorted({rel.parts[0] for rel in todo if rel.name == "robustness.json"}):
        check_audits(folder, run / "results", here / "results", todo)
    for rel in todo:
        if not dry_run:
            copy_whole(run / "results" / rel, here / "results" / rel)
        print(f"{'would copy' if dry_run else 'copied'} results/{rel}")
    return todo


def seed_audits(folder: Path) -> list[Path]:
    """The audits of a protocol folder, one per ``robustness/seed<i>/`` (no other folder), by seed."""
    found = (p for p in folder.glob("robustness/seed*/robustness.json") if re.fullmatch(r"seed\d+", p.parent.name))
    return sorted(found, key=lambda p: int(p.parent.name[4:]))


def next_commands(copied: list[Path], results: Path) -> list[str]:
    """The commands that regenerate the tables and figures of the folders ``copied`` touched (``results``:
    the folder they were copied into, whose audits the tables read)."""
    out = []
    for folder in sorted({rel.parts[0] for rel in copied}):
        new = [rel for rel in copied if rel.parts[0] == folder and rel.name == "robustness.json"]
        if new or any(rel.parts[0] == folder and rel.parts[1] == "robustness" for rel in copied if len(rel.parts) > 2):
            seeds = sorted({p.relative_to(results) for p in seed_audits(results / folder)} | set(new),
                           key=lambda rel: int(rel.parent.name[4:]))
            out.append(f"python tools/robustness_tables.py {' '.join(f'results/{rel}' for rel in seeds)} "
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
    for command in next_commands(copied, Path(here) / "results"):
        print(f"then: {command}")
    return 0


def main(argv: list[str] | None = None, here: Path = HERE) -> int:
    """The command (into the checkout ``here``, this one by default); its exit status."""
    return run_cli(lambda a: _main(a, here), argv)


if __name__ == "__main__":
    sys.exit(main())
