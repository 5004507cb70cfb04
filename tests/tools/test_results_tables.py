"""tools/results_tables.py: the generated blocks of results/README.md are what the committed result files give,
and the decomposition table reads its numbers from the sealed decomposition.json."""
import importlib.util
import json
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("results_tables", os.path.join(ROOT, "tools", "results_tables.py"))
results_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_tables)


def test_the_committed_readme_blocks_are_up_to_date(tmp_path):
    """Regenerating every block of a copy of results/README.md (beside copies of the result folders) changes
    nothing: no table in the README was edited by hand or left stale."""
    src = os.path.join(ROOT, "results")
    dst = tmp_path / "results"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.png", "models", "ckpt"))
    before = (dst / "README.md").read_text(encoding="utf-8")
    assert results_tables.update(str(dst / "README.md")) >= 4
    assert (dst / "README.md").read_text(encoding="utf-8") == before


def test_the_decomposition_table_shows_the_files_medians():
    folder = os.path.join(ROOT, "results", "mnist-dnn-aug")
    with open(os.path.join(folder, "decomposition.json"), encoding="utf-8") as f:
        summary = json.load(f)["summary"]
    table = results_tables.decomposition_table(folder, "mnist-dnn-aug")
    row = next(line for line in table.splitlines() if line.startswith("| `batch-stats` |"))
    control = summary["control"]["readings"]["batch-stats"]["fgsm"]["0.1"]
    gain = summary["sgm:0.2"]["readings"]["batch-stats"]["fgsm"]["0.1"]["minus_control"]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{control['median']:.2f} ({control['minus_inference']:+.2f})"
    assert cells[3] == f"{gain:+.2f}"


def test_an_edited_decomposition_is_refused(tmp_path):
    folder = tmp_path / "row"
    folder.mkdir()
    doc = json.loads(open(os.path.join(ROOT, "results", "mnist-dnn-aug", "decomposition.json"), encoding="utf-8").read())
    doc["summary"]["control"]["readings"]["inference"]["fgsm"]["0.1"]["median"] = 99.0
    (folder / "decomposition.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(Exception, match="sha256|edited|seal"):
        results_tables.decomposition_table(str(folder))
    assert "pending" in results_tables.decomposition_table(str(tmp_path / "absent"))
