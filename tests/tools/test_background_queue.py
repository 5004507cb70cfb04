"""tools/background_queue.sh, its steps run against a stand-in python (PY) that records every command it is given
and makes the files the real commands would (weights, audits, the transfer table): which command each step runs,
from which checkout, in which order, what a finished step skips, and how a refusal of the decomposition is
followed. The stand-in's refusal of ``--require-all`` is the real line of nanosgm.decompose."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanosgm.experiments.decompose import NetworksMissing, _networks
from nanosgm.methods.arms import slug

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "background_queue.sh"

STAND_IN = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"cwd": os.getcwd(), "args": args, "blas": os.environ.get("OPENBLAS_NUM_THREADS"),
                          "path": os.environ.get("PYTHONPATH")}}) + "\\n")

def flag(name, default=None):
    return args[args.index(name) + 1] if name in args else default

if "--help" in args:
    print("" if os.environ.get("FAKE_OLD") else "--partial-only --only-arms --require-all")
elif args[:2] == ["-m", "nanosgm.experiments"]:
    runs = flag("--only-runs") or ",".join(map(str, range(int(flag("--runs")))))
    arms = (flag("--only-arms") or "control," + flag("--arms")).split(",")
    models = Path(flag("--out")) / "models"
    models.mkdir(parents=True, exist_ok=True)
    for run in runs.split(","):
        for arm in arms:
            (models / f"run{{run}}-{{arm.replace(':', '_')}}.npz").write_text("weights")
elif args[:2] == ["-m", "nanosgm.robustness"]:
    Path(flag("--out"), "robustness.json").write_text("{{}}")
elif args[:2] == ["-m", "nanosgm.decompose"]:
    refusal = Path(os.environ["FAKE_REFUSAL"])
    if "--require-all" in args and refusal.exists():
        sys.stderr.write(refusal.read_text())
        refusal.unlink()
        sys.exit(int(os.environ.get("FAKE_REFUSAL_RC", "3")))
    sys.exit(int(os.environ.get("FAKE_DECOMPOSE_RC", "0")))
elif args[0] == "tools/transfer_table.py":
    Path(flag("--json")).write_text("{{}}")
else:
    sys.exit(f"stand-in: no such command {{args}}")
"""


@pytest.fixture
def queue(tmp_path):
    """run(*steps, **env) -> (completed process, [logged command]) of the queue over a fresh WORKTREE in tmp_path,
    CODE and DCODE two other folders, PY the stand-in."""
    for name in ("run/results", "code", "dcode"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "python").write_text(STAND_IN)
    (tmp_path / "python").chmod(0o755)
    log = tmp_path / "log.jsonl"

    def run(*steps, **env):
        log.write_text("")
        full = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_")} | {
            "CODE": str(tmp_path / "code"), "DCODE": str(tmp_path / "dcode"), "PY": str(tmp_path / "python"),
            "NANOSGM_DATA": str(tmp_path), "FAKE_LOG": str(log), "FAKE_REFUSAL": str(tmp_path / "refusal")} | env
        got = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "run"), *steps], capture_output=True, text=True,
                             env=full, timeout=120)
        commands = [json.loads(line) for line in log.read_text().splitlines()]
        return got, [c for c in commands if "--help" not in c["args"]]

    run.base = tmp_path
    return run


def what(command):
    """(checkout, the module or script, the flags that tell the steps apart) of one logged command."""
    a = command["args"]
    name = a[1] if a[0] == "-m" else a[0]
    keep = [x for i, x in enumerate(a) if x in ("--refill-weights", "--partial-only", "--require-all")
            or (i and a[i - 1] in ("--model", "--only-runs", "--only-arms", "--runs"))]
    return Path(command["cwd"]).name, name, *keep


def flag(command, name):
    args = command["args"]
    return args[args.index(name) + 1]


def test_ten_pairs_trains_refills_decomposes_and_audits_each_seed_in_order_then_skips_them(queue):
    got, commands = queue("ten_pairs")
    assert got.returncode == 0, got.stdout + got.stderr
    expected = []
    for i in [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]:
        expected += [("code", "nanosgm.experiments", "cnn", "10", f"{i}"),
                     ("code", "nanosgm.experiments", "cnn", "10", f"{i}", "--refill-weights"),
                     ("dcode", "nanosgm.decompose", "--partial-only"),
                     ("code", "nanosgm.robustness")]
    assert [what(c) for c in commands] == expected
    trains = [c for c in commands if what(c)[1] == "nanosgm.experiments"]
    assert {(flag(c, "--workers"), flag(c, "--threads"), flag(c, "--out")) for c in trains} == {
        ("3", "1", str(queue.base / "run/results/mnist-cnn-ten"))}   # a seed's three networks at once
    models = queue.base / "run/results/mnist-cnn-ten/models"
    audits = [c["args"] for c in commands if what(c)[1] == "nanosgm.robustness"]
    for i, args in zip([5, 6, 7, 8, 9, 0, 1, 2, 3, 4], audits):
        assert args[2:5] == [str(models / f"run{i}-{slug(arm)}.npz")
                             for arm in ("control", "sgm:0.2", "sgm:0.2:per-sample")]
        assert args[args.index("--out") + 1] == str(queue.base / f"run/results/mnist-cnn-ten/robustness/seed{i}")
    assert {c["blas"] for c in commands if what(c)[1] in ("nanosgm.decompose", "nanosgm.robustness")} == {"1"}
    assert all(c["path"] == c["cwd"] for c in commands)              # each checkout runs its own code
    again, commands = queue("ten_pairs")
    assert again.returncode == 0 and commands == []                  # every seed audited: nothing runs again


def test_a_failed_pair_decomposition_does_not_hold_up_its_audits(queue):
    got, commands = queue("ten_pairs", FAKE_DECOMPOSE_RC="1")
    assert got.returncode == 0, got.stderr
    assert "== decomposition of mnist-cnn-ten seed 5 failed" in got.stdout
    assert [what(c)[1] for c in commands].count("nanosgm.robustness") == 10


def refusal_of(runs):
    """The line nanosgm.decompose prints when --require-all finds recorded networks of ``runs`` missing."""
    result = {"networks": {f"run{r}/{arm}": {} for r in runs for arm in ("control", "sgm:0.2")}}
    with pytest.raises(NetworksMissing) as caught:
        _networks("/nowhere", result, {}, True)
    return f"error: {caught.value}\n"


def test_the_decomposition_refills_only_the_runs_the_refusal_names_then_measures_again(queue):
    (queue.base / "run/results/mnist-cnn-ten").mkdir(parents=True)          # the ten pairs' protocol folder
    (queue.base / "refusal").write_text(refusal_of([3, 4]))
    got, commands = queue("decomposition")
    assert got.returncode == 0, got.stdout + got.stderr
    assert [what(c) for c in commands] == [
        ("dcode", "nanosgm.decompose", "--require-all"),
        ("code", "nanosgm.experiments", "cnn", "10", "3,4", "--refill-weights"),
        ("dcode", "nanosgm.decompose", "--require-all")]
    assert "--require-all: 4 recorded network(s)" in got.stderr       # the refusal is shown, not swallowed


@pytest.mark.parametrize("rc", ["1", "2"])
def test_any_other_refusal_of_the_decomposition_stops_the_queue_without_training(queue, rc):
    (queue.base / "run/results/mnist-cnn-ten").mkdir(parents=True)
    (queue.base / "refusal").write_text("error: something else\n")
    got, commands = queue("decomposition", "fifty_epochs", FAKE_REFUSAL_RC=rc)
    assert got.returncode == 1 and "== decomposition failed" in got.stdout
    assert [what(c) for c in commands] == [("dcode", "nanosgm.decompose", "--require-all")]


def test_a_finished_decomposition_is_left_alone(queue):
    (queue.base / "run/results/mnist-cnn-ten").mkdir(parents=True)
    (queue.base / "run/results/mnist-cnn-ten/decomposition.json").write_text("{}")
    got, commands = queue("decomposition")
    assert got.returncode == 0 and commands == []


def test_a_seed_with_its_audit_is_skipped_whole(queue):
    done = queue.base / "run/results/mnist-cnn-ten/robustness/seed6"
    done.mkdir(parents=True)
    (done / "robustness.json").write_text("{}")
    got, commands = queue("ten_pairs")
    assert got.returncode == 0
    assert "6" not in {flag(c, "--only-runs") for c in commands if what(c)[1] == "nanosgm.experiments"}
    assert len([c for c in commands if what(c)[1] == "nanosgm.robustness"]) == 9


def test_dnn_again_refills_the_dnn_protocol_and_only_future_works_controls_then_the_transfer_table(queue):
    got, commands = queue("dnn_again")
    assert got.returncode == 0, got.stdout + got.stderr
    assert flag(commands[0], "--workers") == "2"                   # ten networks: two at a time
    assert [what(c) for c in commands] == [
        ("code", "nanosgm.experiments", "dnn", "5", "--refill-weights"),
        ("dcode", "nanosgm.experiments", "cnn", "5", "--refill-weights", "control"),   # --only-arms control
        ("code", "tools/transfer_table.py")]
    assert (queue.base / "run/results/mnist-dnn-conventions/transfer-cnn-to-dnn-table.json").exists()
    assert queue("dnn_again")[1] == []                               # the table made: the step is done


def test_the_fifty_epoch_step_does_each_seed_like_the_ten_pairs_then_decomposes_them_whole(queue):
    got, commands = queue("fifty_epochs")
    assert got.returncode == 0, got.stdout + got.stderr
    expected = []
    for i in [0, 1, 2]:
        expected += [("code", "nanosgm.experiments", "cnn", "3", f"{i}"),
                     ("code", "nanosgm.experiments", "cnn", "3", f"{i}", "--refill-weights"),
                     ("dcode", "nanosgm.decompose", "--partial-only"),
                     ("code", "nanosgm.robustness")]
    assert [what(c) for c in commands] == expected + [("dcode", "nanosgm.decompose", "--require-all")]
    folder = str(queue.base / "run/results/mnist-cnn-50")
    audits = [c for c in commands if what(c)[1] == "nanosgm.robustness"]
    assert [flag(c, "--out") for c in audits] == [f"{folder}/robustness/seed{i}" for i in range(3)]
    for i, c in enumerate(audits):
        assert c["args"][2:5] == [f"{folder}/models/run{i}-{slug(arm)}.npz"
                                  for arm in ("control", "sgm:0.2", "sgm:0.2:per-sample")]
    for c in commands:
        if what(c)[1] == "nanosgm.experiments":
            assert (flag(c, "--epochs"), flag(c, "--watch-fgsm"), flag(c, "--out"), flag(c, "--workers")) == (
                "50", "10", folder, "3")
        elif what(c)[1] == "nanosgm.decompose":
            assert c["args"][2] == folder


def test_only_the_ten_pairs_reuse_future_works_finished_attacks(queue):
    partial = queue.base / "run/results/future-work/robustness/seed0/robustness.partial.json"
    partial.parent.mkdir(parents=True)
    partial.write_text('{"attacks": "of the shared control"}')
    assert queue("ten_pairs")[0].returncode == 0 and queue("fifty_epochs")[0].returncode == 0
    results = queue.base / "run/results"
    assert (results / "mnist-cnn-ten/robustness/seed0/robustness.partial.json").read_text() == partial.read_text()
    assert not (results / "mnist-cnn-ten/robustness/seed1/robustness.partial.json").exists()   # none to reuse
    assert not (results / "mnist-cnn-50/robustness/seed0/robustness.partial.json").exists()    # another control


def test_the_fifty_epoch_decomposition_refills_the_runs_it_lacks_with_the_fifty_epoch_flags(queue):
    for i in range(3):
        audit = queue.base / f"run/results/mnist-cnn-50/robustness/seed{i}"
        audit.mkdir(parents=True)
        (audit / "robustness.json").write_text("{}")
    (queue.base / "refusal").write_text(refusal_of([1]))
    got, commands = queue("fifty_epochs")
    assert got.returncode == 0, got.stdout + got.stderr
    assert [what(c) for c in commands] == [
        ("dcode", "nanosgm.decompose", "--require-all"),
        ("code", "nanosgm.experiments", "cnn", "3", "1", "--refill-weights"),
        ("dcode", "nanosgm.decompose", "--require-all")]
    refill = commands[1]
    assert (flag(refill, "--epochs"), flag(refill, "--watch-fgsm"), flag(refill, "--workers")) == ("50", "10", "2")


@pytest.mark.parametrize("case,why", [("old dcode", "error: DCODE="), ("no step", "error: no step tea"),
                                      ("no data", "error: set NANOSGM_DATA")])
def test_the_queue_refuses_in_one_line_before_running_anything(queue, case, why):
    if case == "old dcode":
        got, commands = queue("ten_pairs", FAKE_OLD="1")
    elif case == "no step":
        got, commands = queue("tea")
    else:
        got, commands = queue("ten_pairs", NANOSGM_DATA="")
    assert got.returncode == 2 and why in got.stderr and got.stderr.count("\n") == 1, got.stderr
    assert commands == []


def test_with_no_step_named_the_queue_runs_every_step_with_the_fifty_epochs_before_dnn_again(queue):
    expected = ["future_work", "future_audits", "ten_pairs", "decomposition", "fifty_epochs", "dnn_again"]
    got, commands = queue()
    assert got.returncode == 0, got.stderr
    started = [line.split()[1] for line in got.stdout.splitlines() if line.startswith("== ")]
    assert [step for step in started if step in expected] == expected
    first_fifty = next(i for i, c in enumerate(commands) if "mnist-cnn-50" in " ".join(c["args"]))
    first_dnn = next(i for i, c in enumerate(commands) if "dnn" in what(c))
    assert first_fifty < first_dnn
