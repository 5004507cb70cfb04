"""Build the API reference from the docstrings: ``python tools/build_docs.py [--out docs/api]``.

Writes one HTML page per module of ``nanosgm`` into ``--out`` (default ``docs/api/``, git-ignored; open
``docs/api/index.html``) with pdoc (``pip install pdoc``; it does not need torch). pdoc imports every module
to read its docstrings; importing a module of ``nanosgm`` runs nothing, and the ``__main__`` entry points
(``python -m nanosgm.experiments`` and ``python -m nanosgm.bench``) are left out. The docstrings are
reStructuredText: ``:func:`fit``` becomes a link to ``fit``.

The build fails (exit 1, each problem on its own line) on any warning (a module that does not import, a
name in ``__all__`` that does not resolve) and on any ``:mod:``, ``:class:``, ``:func:``, ``:meth:``,
``:data:``, ``:attr:`` or ``:exc:`` reference that names nothing, so a broken docstring fails ``.ci/run``.
"""
from __future__ import annotations

import argparse
import builtins
import importlib
import os
import pkgutil
import re
import shutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGE = "nanosgm"
TEMPLATES = ROOT / "docs" / "pdoc"            # pdoc's templates, changed where docs/pdoc/*.jinja2 say
ROLE = re.compile(r"(?::py)?:(mod|func|data|const|class|meth|attr|exc|obj):`([^`]+)`")
SECTION = re.compile(r"[A-Z][A-Z a-z]+:")      # a Google-style section header (Args:, Raises:); pdoc lays it out


def module_names(package: str = PACKAGE) -> list[str]:
    """Every module of ``package`` that the reference documents (all but the ``__main__`` entry points)."""
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
    return [name for name in names if name.rsplit(".", 1)[-1] != "__main__"]


def expose_lazy_names(names: list[str]) -> None:
    """Put the names a package loads on first use (its ``__getattr__``) into its namespace, where pdoc
    looks for the names of ``__all__`` (this changes the modules of this process only)."""
    for name in names:
        module = importlib.import_module(name)
        if "__getattr__" in vars(module):
            for attr in getattr(module, "__all__", ()):
                if attr not in vars(module):
                    setattr(module, attr, getattr(module, attr))


def keep_layout(docstring: str) -> str:
    """The docstring with a blank line between a line that ends in ``:`` and the block indented under it.

    ``help()`` shows such a block as written; Markdown would run it into the line above. With the blank line
    it stays preformatted text (a block of ``*`` items becomes a list):

    >>> keep_layout("Modules, one each:\\n    a  one\\n    b  two")
    'Modules, one each:\\n\\n    a  one\\n    b  two'
    >>> keep_layout("Two ways, in order:\\n    * one\\n      more\\nafter")
    'Two ways, in order:\\n\\n* one\\n  more\\n\\nafter'
    """
    lines, out, i = docstring.split("\n"), [], 0
    while i < len(lines):
        line, i = lines[i], i + 1
        out.append(line)
        head = line.rstrip()
        if (not head.endswith(":") or head[:1].isspace() or SECTION.fullmatch(head)
                or i == len(lines) or not lines[i].startswith("    ") or not lines[i].strip()):
            continue
        out.append("")
        if lines[i].lstrip().startswith(("* ", "- ")):            # a list: dedent it, end it with a blank
            while i < len(lines) and lines[i].startswith("    "):
                out.append(lines[i][4:])
                i += 1
            if i < len(lines) and lines[i].strip():
                out.append("")
    return "\n".join(out)


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` names an importable module or an attribute path below one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return len(parts) == 1 and hasattr(builtins, dotted)


def _candidates(target: str, modulename: str, qualname: str) -> list[str]:
    """Where a reference ``target`` written in ``modulename`` (inside ``qualname``) may point, nearest first:
    the enclosing class, the module, each package above it, then ``target`` as an absolute name."""
    target = target.lstrip(".")
    scopes = []
    if "." in qualname:                                   # a method or attribute: its class first
        scopes.append(f"{modulename}.{qualname.rsplit('.', 1)[0]}")
    if qualname:                                          # a class: its own members
        scopes.append(f"{modulename}.{qualname}")
    parts = modulename.split(".")
    scopes += [".".join(parts[:cut]) for cut in range(len(parts), 0, -1)]
    return [f"{scope}.{target}" for scope in scopes] + [target]


def broken_references(modules: dict) -> list[str]:
    """``module: qualname: :role:`target``` for each docstring reference in ``modules`` (name -> pdoc
    module) that names nothing."""
    broken: dict[str, None] = {}                          # ordered, each once (re-exports repeat)
    for name, module in modules.items():
        for doc in [module] + module.flattened_own_members:
            where, qualname = (name, "") if doc is module else doc.taken_from    # where it was written
            for role, text in ROLE.findall(doc.docstring):
                target = re.sub(r"^.*<(.+)>$", r"\1", text).lstrip("~!")
                if not any(_resolves(c) for c in _candidates(target, where, qualname)):
                    broken[f"{where}: {qualname or '(module)'}: :{role}:`{text}` names nothing"] = None
    return list(broken)


def render(modules: dict, out: Path) -> None:
    """Write one page per module, the index and the search index into ``out`` (what ``pdoc.pdoc`` does,
    for exactly these modules: pdoc itself would walk only the submodules a package's ``__all__`` names)."""
    import pdoc.render

    for name, module in modules.items():
        page = out / f"{name.replace('.', '/')}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(pdoc.render.html_module(module, modules), encoding="utf-8")
    (out / "index.html").write_text(pdoc.render.html_index(modules), encoding="utf-8")
    (out / "search.js").write_text(pdoc.render.search_index(modules), encoding="utf-8")


def build(out: Path, package: str = PACKAGE) -> list[str]:
    """Render the reference of ``package`` into ``out``; the problems found (empty: a clean build)."""
    import pdoc.doc
    import pdoc.docstrings
    import pdoc.render

    version = getattr(importlib.import_module(package), "__version__", "")
    pdoc.render.configure(docformat="google", footer_text=f"{package} {version}".strip(),
                          template_directory=TEMPLATES)
    convert = pdoc.docstrings.convert
    pdoc.docstrings.convert = lambda docstring, *rest: convert(keep_layout(docstring), *rest)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            names = module_names(package)
            expose_lazy_names(names)
            modules = {name: pdoc.doc.Module.from_name(name) for name in names}
            render(modules, out)
            problems = broken_references(modules)
    finally:
        pdoc.docstrings.convert = convert
    return [f"warning: {w.category.__name__}: {w.message}" for w in caught] + problems


def _clear(out: Path) -> None:
    """Remove a previous build in ``out``; refuse a non-empty folder that does not hold one."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / "index.html").is_file():
            sys.exit(f"error: {out} is not empty and holds no earlier API build (no index.html); "
                     f"pass an empty or new folder with --out")
        shutil.rmtree(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "api",
                        help="folder for the HTML pages (default docs/api/)")
    args = parser.parse_args(argv)
    try:
        import pdoc  # noqa: F401
    except ImportError:
        print("error: pdoc is not installed; pip install pdoc", file=sys.stderr)
        return 1
    os.environ.setdefault("MPLBACKEND", "Agg")
    _clear(args.out)
    problems = build(args.out)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"error: the API reference has {len(problems)} problem(s), listed above", file=sys.stderr)
        return 1
    print(f"API reference: {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
