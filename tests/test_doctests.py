"""The usage examples in nanosgm's docstrings run as doctests, so they cannot drift from the code.

Every module of the package is imported and searched for `>>>` examples (module, class and function
docstrings, with the doctest module's own finder); each module that has any is one test, run on the NumPy
backend from seed 0. The modules whose docstrings show how to use them must keep runnable examples
(MUST_HAVE_EXAMPLES), so that this test cannot pass by finding nothing.
"""
import doctest
import importlib
import pkgutil

import pytest

import nanosgm
from nanosgm import backend

MUST_HAVE_EXAMPLES = ["nanosgm", "nanosgm.methods.sgm", "nanosgm.optim", "nanosgm.layers.sequential",
                      "nanosgm.attacks"]


def _module_names():
    """Every module of the package (the ``__main__`` entry points run a command line when imported: left out)."""
    names = [info.name for info in pkgutil.walk_packages(nanosgm.__path__, prefix="nanosgm.")]
    return sorted(["nanosgm"] + [n for n in names if not n.endswith("__main__")])


def _doctests(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module) if t.examples and t.name.startswith(module_name)]


for _name in _module_names():          # every module first: the lazy packages' names are then plain attributes
    importlib.import_module(_name)
WITH_EXAMPLES = [name for name in _module_names() if _doctests(name)]


@pytest.fixture
def numpy_backend_seed_0():
    before = backend.name()
    backend.use("numpy")
    backend.seed(0)
    yield
    backend.use(before)


def test_the_usage_examples_are_doctests():
    missing = [m for m in MUST_HAVE_EXAMPLES if m not in WITH_EXAMPLES]
    assert not missing, f"{missing}: their module docstrings should hold runnable `>>>` examples"


@pytest.mark.parametrize("module_name", WITH_EXAMPLES)
def test_docstring_examples(module_name, numpy_backend_seed_0):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in _doctests(module_name):
        result = runner.run(test, out=report.append)
        assert result.attempted > 0
    failed = runner.summarize(verbose=False).failed
    assert failed == 0, f"{failed} docstring example(s) of {module_name} failed:\n" + "".join(report)
