"""The notebooks in notebooks/: committed with the outputs of a full run, and runnable top to bottom.

Committed state (read with nbformat, nothing executed): every code cell was executed once, in order
(execution counts 1, 2, 3, ...), no output is an error, the first cell's output says QUICK=False (a full
run, not the rough QUICK one) and each file stays under MAX_BYTES. Regenerate them with
``python tools/run_notebooks.py`` (see notebooks/README.md).

Execution: each notebook runs with ``NANOSGM_QUICK=1`` (small data and epochs) through a real Jupyter kernel
(nbclient + ipykernel, ``tools/run_notebooks.py``'s ``execute``, the command that writes the committed
outputs), started in a temporary folder with this checkout first on PYTHONPATH. The notebook is read into
memory and the executed copy is never written, so the committed file stays as it was (checked). A cell
appended to the in-memory copy reports which nanosgm the kernel imported. Notebooks that load a real dataset
(``data.load("mnist", ...)``) need it through ``NANOSGM_DATA``: they are skipped without it, or fail when
``CI=true`` (``require_real_data``).
"""
import hashlib
import importlib.util
import pathlib
import re

import pytest

from conftest import require_real_data

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = pathlib.Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
EXPECTED = ["01_layers_and_the_input_gradient.ipynb", "02_smooth_gradient_method.ipynb",
            "03_adversarial_examples.ipynb", "04_random_perturbations.ipynb", "05_wame.ipynb",
            "06_reproducing_tables_4_and_5.ipynb", "07_future_work.ipynb"]
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
MAX_BYTES = 1_500_000
WHERE_FROM = "import nanosgm, os\nprint('NANOSGM_FROM', os.path.dirname(os.path.abspath(nanosgm.__file__)))"


def _runner():
    """tools/run_notebooks.py as a module (it is a script, not part of the nanosgm package)."""
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(name):
    return nbformat.read(str(NB_DIR / name), as_version=4)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(outputs) -> str:
    """The text of a cell's stream and text/plain outputs."""
    parts = []
    for out in outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _datasets_needed(nb):
    """Names passed to data.load("...") in the notebook's code."""
    code = "\n".join(c.source for c in _code_cells(nb))
    return sorted(set(re.findall(r"""data\.load\(\s*["']([\w-]+)["']""", code)))


def test_the_expected_notebooks_exist():
    assert [n for n in EXPECTED if n not in NOTEBOOKS] == [], f"missing notebooks in {NB_DIR}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_with_outputs_of_one_full_run(name):
    path = NB_DIR / name
    nb = _read(name)
    nbformat.validate(nb)
    cells = _code_cells(nb)
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{name}: execution counts {counts}; the committed notebook must be executed top to bottom in one "
        f"kernel: run `python tools/run_notebooks.py {name[:2]}` and commit the result")
    errors = [i for i, c in enumerate(cells) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: code cells {errors} hold an error output; fix the notebook and rerun it"
    assert "NANOSGM_DATA" in cells[0].source, f"{name}: the first code cell should say where the data comes from"
    assert "QUICK=False" in _text(cells[0].outputs), (
        f"{name}: the first cell's output does not say QUICK=False; commit the outputs of a full run "
        f"(`python tools/run_notebooks.py` without NANOSGM_QUICK)")
    assert path.stat().st_size < MAX_BYTES, (
        f"{name} is {path.stat().st_size / 1e6:.2f} MB; keep it under {MAX_BYTES / 1e6} MB (smaller or fewer figures)")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom_in_a_kernel(name, tmp_path):
    runner = _runner()
    path = NB_DIR / name
    committed = hashlib.sha256(path.read_bytes()).hexdigest()
    env = runner.kernel_env(quick=True)
    for dataset in _datasets_needed(_read(name)):
        env["NANOSGM_DATA"] = str(require_real_data(dataset))   # skips (or fails under CI=true) without it

    copy = tmp_path / name                     # the kernel runs a copy that carries one extra, last cell
    nb = _read(name)
    nb.cells.append(nbformat.v4.new_code_cell(WHERE_FROM))
    nbformat.write(nb, str(copy))
    executed = runner.execute(copy, env, tmp_path)   # raises CellExecutionError naming the failing cell

    where = _text(executed.cells[-1].outputs).split("NANOSGM_FROM", 1)[-1].strip()
    assert pathlib.Path(where) == ROOT / "nanosgm", f"the kernel imported nanosgm from {where}, not this checkout"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == committed, f"executing {name} modified the committed file"
    errors = [o for c in _code_cells(executed) for o in c.outputs if o.output_type == "error"]
    assert not errors
