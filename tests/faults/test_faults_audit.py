"""Fault injection for ``python -m nanosgm.robustness``: two audits into one folder, hand-edited partial
results, interruptions, and what the audit says about its plan, its time and its images.

Each case does what a user (or a second terminal, or a ``kill``) does and asserts what the user needs: a
report that is never replaced behind their back, numbers that an edited file cannot change, a one-line
message that says what is kept and how to go on."""
import json
import os
import signal

import pytest

from nanosgm.experiments import audit, train_cli
from nanosgm.plumbing.audit_resume import PARTIAL_NAME
from nanosgm.plumbing.runlock import RunLock
from nanosgm.plumbing.seal import seal

AU = ["-n", "20", "--pgd-steps", "2", "--restarts", "1", "--apgd-steps", "2", "--queries", "10", "--no-progress"]
ATTACKS = ("FGSM", "PGD-2x1", "PGD-4x1", "APGD-CE", "APGD-DLR", "Square")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """model.npz of a tiny MNIST run whose training evaluated the first 200 test images."""
    from conftest import require_real_data
    require_real_data("mnist")
    run = tmp_path_factory.mktemp("trained") / "run"
    assert train_cli.main(["mnist", "--model", "dnn", "--limit", "500", "--eval-limit", "200", "--pgd", "0",
                           "--epochs", "1", "--no-progress", "--out", str(run)]) == 0
    return run / "model.npz"


def au(model, out, *extra) -> int:
    return audit.main([str(model), "--out", str(out)] + AU + [str(a) for a in extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err
    return last


def numbers(out) -> dict:
    doc = json.loads((out / "robustness.json").read_text())
    return {name: (n["clean"], n["accuracy"], n["robust"]) for name, n in doc["networks"].items()}


# ------------------------------------------------------------ item 1: a report written meanwhile is never replaced
@pytest.mark.parametrize("existing", [True, False], ids=["existing-out", "new-out"])
def test_an_audit_never_replaces_a_report_another_audit_wrote_before_it_took_the_folder(trained, tmp_path, capsys,
                                                                                      monkeypatch, existing):
    """The race: audit 1 runs, audit 2 starts into the same --out, audit 1 writes robustness.json and lets go
    of the folder, audit 2 takes it. Played without timing: the report appears just before audit 2's lock."""
    out = tmp_path / "out"
    if existing:
        out.mkdir()
    first = '{"written by": "the first audit"}\n'
    real = RunLock.acquire

    def acquire(self):
        if os.path.abspath(self.folder) == str(out):
            out.mkdir(exist_ok=True)
            (out / "robustness.json").write_text(first)
        return real(self)
    monkeypatch.setattr(RunLock, "acquire", acquire)
    assert au(trained, out) == 1
    err = one_line_error(capsys)
    assert "already holds a robustness.json" in err and "--overwrite" in err
    assert (out / "robustness.json").read_text() == first


# -------------------------------------------------------- item 2: an edited partial file never changes the numbers
def all_correct(entry):
    """The hand edit of the issue: every example correct under the attack, at every eps."""
    def edit(x):
        if isinstance(x, dict):
            return {k: edit(v) for k, v in x.items()}
        if isinstance(x, str) and x and set(x) <= {"0", "1"}:
            return "1" * len(x)
        return x
    return edit(entry)


def edit_partial(out, change) -> None:
    path = out / PARTIAL_NAME
    doc = json.loads(path.read_text())
    doc["entries"] = {k: change(v) for k, v in doc["entries"].items()}
    path.write_text(json.dumps(doc))


def test_a_hand_edited_partial_entry_is_run_again_with_a_warning_naming_it(trained, tmp_path, capsys):
    out = tmp_path / "out"
    assert au(trained, out, "--keep-partial") == 0
    before = numbers(out)
    assert before["run"][0] < 60                       # clean accuracy: an all-correct edit would show
    edit_partial(out, all_correct)
    capsys.readouterr()
    assert au(trained, out, "--keep-partial", "--overwrite") == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warned) == len(ATTACKS), err
    for name in ATTACKS:
        assert any(f"the entry of run: {name} " in line and "run again" in line for line in warned), (name, warned)
    assert numbers(out) == before                       # recomputed: the edit changed nothing
    assert "(from the partial file)" not in err


def test_an_edit_that_recomputes_the_digest_is_refused_naming_the_attack_and_eps(trained, tmp_path, capsys):
    """Whoever edits the file can reseal it: the per-example invariant (correct under an attack implies
    correct clean) still refuses the all-correct results."""
    out = tmp_path / "out"
    assert au(trained, out, "--keep-partial") == 0
    edit_partial(out, lambda entry: seal(all_correct(entry)))
    capsys.readouterr()
    assert au(trained, out, "--keep-partial", "--overwrite") == 1
    err = one_line_error(capsys)
    assert "run: FGSM at eps 0.001:" in err and "misclassified clean" in err and PARTIAL_NAME in err


# --------------------------------------------------- item 3: an interrupted audit says what it keeps and how to go on
def stop_at_call(monkeypatch, n, action):
    """Call ``action()`` at the ``n``-th attack the audit runs (1: the clean pass, 2: FGSM, 3: PGD-2x1, ...)."""
    real, calls = audit.attacks.correct_under_attack, []

    def counted(*a, **kw):
        calls.append(1)
        if len(calls) == n:
            action()
        return real(*a, **kw)
    monkeypatch.setattr(audit.attacks, "correct_under_attack", counted)


def interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize("how, status, said", [
    (interrupt, 130, "interrupted"),
    (lambda: os.kill(os.getpid(), signal.SIGTERM), 143, "stopped by SIGTERM"),
    (lambda: os.kill(os.getpid(), signal.SIGHUP), 129, "stopped by SIGHUP")], ids=["ctrl-c", "sigterm", "sighup"])
def test_an_interrupted_audit_names_the_partial_file_it_keeps_and_the_same_command_resumes(
        trained, tmp_path, capsys, monkeypatch, guarded_signals, how, status, said):
    out = tmp_path / "out"
    stop_at_call(monkeypatch, 4, how)                   # in PGD-4x1: FGSM and PGD-2x1 are finished
    assert au(trained, out) == status
    err = one_line_error(capsys)
    assert err == (f"error: {said}: the 2 finished attack result(s) are kept in {out / PARTIAL_NAME}; run the same "
                   f"command to resume after them")
    assert guarded_signals == []                        # the audit handled the signal, not the fallback
    monkeypatch.undo()
    assert au(trained, out) == 0
    err = capsys.readouterr().err
    assert [line.split(" eps")[0] for line in err.splitlines() if line.endswith("(from the partial file)")] == \
        ["run: FGSM", "run: PGD-2x1"]


def test_an_audit_interrupted_before_any_attack_finished_says_nothing_is_kept(trained, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    stop_at_call(monkeypatch, 2, interrupt)             # in FGSM
    assert au(trained, out) == 130
    assert one_line_error(capsys) == ("error: interrupted: no attack had finished, so nothing is kept; run the same "
                                      "command to start again")
    assert not (out / PARTIAL_NAME).exists()


# ------------------------------------------------------- item 4: the plan, an estimate, a legend, the images used
def test_the_audit_prints_its_plan_an_estimate_a_legend_and_that_its_images_differ(trained, tmp_path, capsys):
    out = tmp_path / "out"
    assert au(trained, out) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[0] == ("note: the audit's images are not the ones training evaluated (run: the first 20 test images "
                      "here, the first 200 in training), so its clean accuracy differs from the run's")
    assert err[1] == "plan: 1 network(s) x 6 attacks x 6 eps (0.001, 0.01, 0.1, 0.2, 0.3, 0.5) x 20 images"
    assert err[2].startswith("  cost per image and eps, at most") and "PGD-4x1 4 gradients + 1 forward" in err[2]
    assert "Square 11 forward passes" in err[2]
    # per image: 1 + 6 * (2 + 4 + 3 + 3) gradients; 1 (clean) + 6 * (1 + 1 + 1 + 1 + 1 + 11) forward passes
    assert err[3] == "  in all at most 1,460 gradient evaluations and 1,940 forward passes (one image each)"
    assert err[4].startswith("run: FGSM eps 0.001: ")
    assert err[5].startswith("estimate: at most about ") and " more, from run: FGSM: " in err[5]
    assert sum(line.startswith("estimate:") for line in err) == 1
    legend = captured.out.splitlines()
    assert any(line.startswith("robust: classified correctly clean and under every attack") for line in legend)
    assert "(check): eps 0.5 is not one of --eps; it is audited only for the sanity check that accuracy falls to ~0 " \
           "at a large eps" in legend
