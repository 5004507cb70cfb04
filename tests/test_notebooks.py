"""The notebooks in notebooks/ run top to bottom and are committed clean (no outputs, no execution counts).

Each notebook's code cells are executed in order, in one namespace, in a fresh ``python`` subprocess with
``NANOSGM_QUICK=1`` (the notebooks shrink their data and epochs) and ``MPLBACKEND=Agg`` -- no jupyter or
nbformat needed: the ``.ipynb`` is read as JSON. Lines starting with ``%`` or ``!`` (magics) are skipped.
A failure names the cell (its index among all cells) and shows its source and the traceback.
Notebooks that load a real dataset (``data.load("mnist", ...)``) need it through ``NANOSGM_DATA``: they are
skipped without it, or fail when ``CI=true`` (``require_real_data``).
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import require_real_data

ROOT = pathlib.Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
EXPECTED = ["01_layers_and_the_input_gradient.ipynb", "02_smooth_gradient_method.ipynb",
            "03_adversarial_examples.ipynb"]
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
TIMEOUT_S = 600          # per notebook; QUICK runs take well under a minute on 2 idle cores

# Runs in the subprocess: argv[1] is the notebook. Exits 3 with a report naming the failing cell.
RUNNER = r'''
import json, sys, traceback
path = sys.argv[1]
nb = json.load(open(path, encoding="utf-8"))
ns = {"__name__": "__main__", "__file__": path}
for i, cell in enumerate(nb["cells"]):
    if cell["cell_type"] != "code":
        continue
    src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())
    try:
        exec(compile(code, f"<{path} cell {i}>", "exec"), ns)
    except BaseException:
        sys.stdout.flush()
        sys.stderr.write(f"\n=== NOTEBOOK CELL {i} FAILED ===\n{src}\n=== TRACEBACK ===\n{traceback.format_exc()}")
        sys.exit(3)
    finally:
        try:
            import matplotlib.pyplot as plt
            plt.close("all")
        except ImportError:
            pass
print("NOTEBOOK OK")
'''


def _load(name):
    return json.loads((NB_DIR / name).read_text(encoding="utf-8"))


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def _source(cell):
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _datasets_needed(nb):
    """Names passed to data.load("...") in the notebook's code."""
    code = "\n".join(_source(c) for _, c in _code_cells(nb))
    return sorted(set(re.findall(r"""data\.load\(\s*["']([\w-]+)["']""", code)))


def test_the_three_notebooks_exist():
    assert [n for n in EXPECTED if n not in NOTEBOOKS] == [], f"missing notebooks in {NB_DIR}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean(name):
    nb = _load(name)
    assert nb.get("nbformat") == 4, f"{name}: not an nbformat v4 notebook"
    dirty = [i for i, c in _code_cells(nb) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, (f"{name}: code cells {dirty} have outputs or execution counts; clear them before "
                       f"committing (Jupyter: Edit > Clear All Outputs, or `jupyter nbconvert --clear-output "
                       f"--inplace notebooks/*.ipynb`)")
    first = _code_cells(nb)[0][1]
    assert "NANOSGM_DATA" in _source(first), f"{name}: the first code cell should say where the data comes from"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path):
    nb = _load(name)
    env = dict(os.environ, NANOSGM_QUICK="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.pop("NANOSGM_MODEL", None)            # notebook 03 trains its own networks in the test
    env.pop("NANOSGM_BACKEND", None)
    for dataset in _datasets_needed(nb):
        env["NANOSGM_DATA"] = str(require_real_data(dataset))   # skips (or fails under CI=true) without it
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(NB_DIR / name)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0 or "NOTEBOOK OK" not in proc.stdout:
        report = proc.stderr[proc.stderr.find("=== NOTEBOOK CELL"):] if "=== NOTEBOOK CELL" in proc.stderr \
            else proc.stderr[-4000:]
        pytest.fail(f"{name} failed (exit code {proc.returncode}):\n{report}\n--- last stdout ---\n"
                    f"{proc.stdout[-2000:]}", pytrace=False)
