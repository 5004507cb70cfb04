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
    assert "pending" in results_tables.decomposition_table(str(tmp_path / "absent"))      # a README block's


@pytest.mark.parametrize("args, why", [
    (["{tmp}/absent"], "{tmp}/absent: no such folder; give a protocol folder, e.g. results/mnist-cnn"),
    (["--conventions", "{tmp}/absent"], "{tmp}/absent: no such folder"),          # a typo is not "pending"
    (["--decomposition", "{tmp}/absent"], "{tmp}/absent: no such folder"),
    (["{tmp}/empty"], "{tmp}/empty holds no protocol.json; give a folder that python -m nanosgm.experiments wrote"),
    (["{tmp}/edited"], "{tmp}/edited/protocol.json: networks['run0/control'] was changed after it was written"),
    (["{tmp}/cut"], "{tmp}/cut/protocol.json is not valid JSON"),
    (["--update", "{tmp}/plain.md"], "{tmp}/plain.md has no <!-- results_tables: FOLDER -->")])
def test_a_bad_input_is_refused_in_one_line_with_exit_status_1(tmp_path, capsys, args, why):
    (tmp_path / "empty").mkdir()
    (tmp_path / "plain.md").write_text("# no blocks\n")
    committed = open(os.path.join(ROOT, "results", "future-work", "protocol.json"), encoding="utf-8").read()
    for name, text in (("edited", committed.replace('"train_seconds": ', '"train_seconds": 1', 1)),
                       ("cut", committed[:5000])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "protocol.json").write_text(text, encoding="utf-8")
    assert results_tables.main([a.format(tmp=tmp_path) for a in args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: " + why.format(tmp=tmp_path)) and err.count("\n") == 1


@pytest.mark.parametrize("command, shown", [
    ("python -m nanosgm.decompose /work/run/results/mnist-cnn-ten -n 1000 --require-all",
     "python -m nanosgm.decompose results/mnist-cnn-ten -n 1000 --require-all"),
    ("python -m nanosgm.decompose results/mnist-cnn-ten -n 1000", "python -m nanosgm.decompose results/mnist-cnn-ten -n 1000"),
    ("python -m nanosgm.decompose /tmp/elsewhere -n 10", "python -m nanosgm.decompose /tmp/elsewhere -n 10"),
    ("python -m nanosgm.decompose /home/me/results/proj/results/mnist-cnn-ten/",
     "python -m nanosgm.decompose results/mnist-cnn-ten"),
    ("python -m nanosgm.decompose /tmp/results/mnist-cnn-tenth", "python -m nanosgm.decompose /tmp/results/mnist-cnn-tenth"),
    ("x --out=/work/run/results/mnist-cnn-ten", "x --out=results/mnist-cnn-ten"),
    ("x '/work/my run/results/mnist-cnn-ten'", "x results/mnist-cnn-ten"),
])
def test_a_decomposition_block_names_its_folder_as_typed_in_a_checkout(command, shown):
    """The queue runs in a worktree (/work/run); the README shows the command a reader types in the repository
    root: a path to the decomposition's own folder becomes results/<folder>, every other word stays."""
    assert results_tables.in_repository(command, "mnist-cnn-ten") == shown


@pytest.mark.skipif(not os.path.isfile(os.path.join(ROOT, "results", "mnist-cnn-50", "protocol.json")),
                    reason="results/mnist-cnn-50 holds no protocol.json yet")
def test_the_length_table_judges_the_shared_seeds_at_both_lengths():
    """The 50-epoch protocol beside the ten pairs: each row's paired gains per run are the records' numbers."""
    from nanosgm import experiments
    long, short = (os.path.join(ROOT, "results", f) for f in ("mnist-cnn-50", "mnist-cnn-ten"))
    table = results_tables.length_table(long, short)
    nets = {f: experiments.load_protocol(f)["networks"] for f in (long, short)}
    runs = sorted({int(k.split("/")[0][3:]) for k in nets[long] if k.endswith("/sgm:0.2:per-sample")})
    row = next(line for line in table.splitlines()
               if line.startswith("| sgm:0.2:per-sample | FGSM accuracy rises at ε = 0.1 (Table 5) |"))
    for f, cell in ((short, 4), (long, 6)):
        d = [nets[f][f"run{i}/sgm:0.2:per-sample"]["results"]["fgsm_pct"]["0.1"]
             - nets[f][f"run{i}/control"]["results"]["fgsm_pct"]["0.1"] for i in runs]
        assert row.split("|")[cell].strip().startswith(", ".join(f"{x:+.2f}" for x in d))


def test_the_length_table_refuses_protocols_of_other_settings_and_waits_for_a_missing_one(tmp_path, capsys):
    a, b = (os.path.join(ROOT, "results", f) for f in ("mnist-cnn-ten", "mnist-dnn-conventions"))
    assert results_tables.main(["--length", a, b]) == 1
    assert "differ in model ('cnn' and 'dnn')" in capsys.readouterr().err
    assert results_tables.main(["--length", a]) == 1
    assert "--length takes two protocol folders" in capsys.readouterr().err
    assert "pending" in results_tables.length_table(str(tmp_path), a)


def test_a_block_marker_that_does_not_parse_is_refused_with_its_line(tmp_path, capsys):
    """A typo in a marker would leave that block's old tables in place; it is refused, naming the line."""
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results_length: only-one -->\nold\n<!-- /results_length -->\n", encoding="utf-8")
    assert results_tables.main(["--update", str(readme)]) == 1
    assert f"{readme}:2: a results_length block marker that does not parse" in capsys.readouterr().err
    readme.write_text("<!--  results_length:  a   b-->\nold\n<!-- /results_length -->\n", encoding="utf-8")
    assert "pending (`a/` has no protocol.json yet)" in results_tables.rewritten(str(readme))[0]
