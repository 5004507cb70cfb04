"""tools/build_docs.py: the API reference covers every module, and a broken docstring fails the build.

pdoc imports every module to read it, so importing a module of nanosgm must do nothing else: print
nothing, write no file, change no environment variable.
"""
import doctest
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import load_tool

build_docs = load_tool("build_docs")


def test_keep_layout_examples():
    assert doctest.testmod(build_docs).failed == 0


def test_the_documented_modules_are_all_but_the_entry_points():
    names = build_docs.module_names()
    assert {"nanosgm", "nanosgm.data.dataset", "nanosgm.methods.sgm", "nanosgm.train"} <= set(names)
    assert not [n for n in names if n.endswith("__main__")]


def test_importing_every_module_has_no_side_effects(tmp_path):
    names = build_docs.module_names()
    code = textwrap.dedent(f"""
        import importlib, json, os, sys
        before = dict(os.environ)
        for name in {names!r}:
            importlib.import_module(name)
        changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
        sys.__stdout__.write("\\n" + json.dumps(changed))
    """)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": str(build_docs.ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    (tmp_path / "cwd").mkdir()
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "cwd", env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed, changed = proc.stdout.rsplit("\n", 1)
    assert printed == "" and proc.stderr == ""          # nothing printed or warned on import
    assert json.loads(changed) == []                    # no environment variable set or changed
    assert [p.name for p in tmp_path.iterdir()] == ["cwd"] and not list((tmp_path / "cwd").iterdir())


def test_a_broken_docstring_fails_the_build(tmp_path, monkeypatch):
    pytest.importorskip("pdoc", reason="the API reference needs pdoc (pip install pdoc)")
    package = tmp_path / "brokendocs"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""A package whose docstrings point at nothing."""\n'
        '__all__ = ["helper", "ghost"]\n\n\n'
        'def helper():\n    """Like :func:`helper`, unlike :func:`missing` and :mod:`brokendocs.nowhere`."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = build_docs.build(tmp_path / "api", package="brokendocs")
    assert any("'ghost'" in p and "does not resolve" in p for p in problems), problems
    assert [p for p in problems if "names nothing" in p] == [
        "brokendocs: helper: :func:`missing` names nothing",
        "brokendocs: helper: :mod:`brokendocs.nowhere` names nothing"]


def test_the_reference_of_nanosgm_builds_clean(tmp_path):
    pytest.importorskip("pdoc", reason="the API reference needs pdoc (pip install pdoc)")
    out = tmp_path / "api"
    assert build_docs.build(out) == []
    pages = {p.relative_to(out).as_posix() for p in out.rglob("*.html")}
    assert {"index.html", "nanosgm.html", "nanosgm/data/dataset.html", "nanosgm/methods/sgm.html"} <= pages
    assert not [p for p in pages if "__main__" in p]
    data_page = (out / "nanosgm/data.html").read_text()
    assert 'href="data/dataset.html"' in data_page          # a package lists every submodule
    root_page = (out / "nanosgm.html").read_text()
    assert 'id="fit"' in root_page and 'id="Sequential"' in root_page    # the lazily loaded names
