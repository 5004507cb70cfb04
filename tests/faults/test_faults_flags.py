"""Nothing silently wrong on the command lines: every number a flag takes is checked where it is parsed (NaN,
inf, negative or fractional values are one-line errors before any data is loaded, not a NaN row, an endless
loop or a refusal blamed on something else later), budgets that are the same float are refused as
duplicates, and close budgets keep their own keys and labels."""
import json

import numpy as np
import pytest

from nanosgm.experiments import audit, cli as experiments_cli, train_cli
from nanosgm.methods.arms import parse_arm, parse_arms

from faultkit import refused_in_one_line as refused


# ------------------------------------------------------------------------------ item 6: budgets on the command line
@pytest.mark.parametrize("eps", ["nan,0.1", "0.1,nan", "-0.1", "0.1,inf", "-inf"])
def test_train_refuses_a_nan_negative_or_infinite_eps(tmp_path, capsys, no_data, eps):
    """The issue's case: `--eps nan,0.1` trained a network and stored a row "nan"."""
    refused(train_cli.main, ["mnist", f"--eps={eps}", "--out", str(tmp_path / "x")], capsys,
            "--eps values must be finite numbers >= 0")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("eps", ["nan", "0.1,-0.2"])
def test_experiments_refuse_a_nan_or_negative_eps(tmp_path, capsys, no_data, eps):
    refused(experiments_cli.main, ["mnist", "--eps", eps, "--out", str(tmp_path / "x")], capsys,
            "--eps values must be finite numbers >= 0")


# ------------------------------------------------------------------------------ item 11: close and equal budgets
@pytest.mark.parametrize("main", [train_cli.main, experiments_cli.main])
@pytest.mark.parametrize("eps", ["0.1,0.10", "0.2,0.1,2e-1", "0,0.0"])
def test_the_same_budget_twice_is_refused_as_a_duplicate(tmp_path, capsys, no_data, main, eps):
    refused(main, ["mnist", "--eps", eps, "--out", str(tmp_path / "x")], capsys, "is given twice")


def test_close_budgets_are_not_duplicates(tmp_path, capsys, monkeypatch):
    """0.1234567 and 0.1234568 are two budgets: both reach the network's spec, exactly."""
    seen = {}
    monkeypatch.setattr(train_cli, "_train", lambda args, spec, out, model: seen.setdefault("spec", spec) and 0)
    assert train_cli.main(["mnist", "--eps", "0.1234567,0.1234568", "--out", str(tmp_path / "x")]) == 0
    assert seen["spec"].eps == (0.1234567, 0.1234568)


def test_train_prints_each_close_budget_under_its_own_label(capsys):
    record = {"best_epoch": 1, "train_seconds": 1.0, "eval_seconds": 1.0,
              "results": {"clean_pct": 90.0, "pgd_images": 0, "fgsm_pct": {"0.1234567": 50.0, "0.1234568": 40.0}}}
    train_cli._print_results(record)
    out = capsys.readouterr().out
    assert "0.1234567 |" in out and "0.1234568 |" in out
    record["results"]["fgsm_pct"] = {"0.1": 50.0, "0.2": 40.0}         # ordinary budgets print as before
    train_cli._print_results(record)
    rows = [line for line in capsys.readouterr().out.splitlines() if "%" in line and "|" in line]
    assert rows == ["     0.1 |    50.00%", "     0.2 |    40.00%"]


def _report(eps):
    nets = {"net": {"clean": 0.9, "accuracy": {"FGSM": {e: 0.5 + i / 10 for i, e in enumerate(eps)}},
                    "robust": {e: 0.4 + i / 10 for i, e in enumerate(eps)}}}
    return {"eps": list(eps), "check_eps": None, "eps_evaluated": list(eps), "networks": nets, "transfer": [],
            "checks": []}


class _Net:
    name, info, X = "net", {}, np.zeros((4, 1))


def test_the_audit_keeps_close_budgets_under_their_own_keys():
    """robustness.json keyed the accuracies by f"{eps:g}": 0.1234567 and 0.1234568 became one key."""
    eps = [0.1234567, 0.1234568]
    doc = audit.report_json(_report(eps), [_Net()], audit.Suite(), argv=[])
    json.dumps(doc)
    net = doc["networks"]["net"]
    assert net["accuracy"]["FGSM"] == {"0.1234567": 50.0, "0.1234568": 60.0}
    assert net["robust"] == {"0.1234567": 40.0, "0.1234568": 50.0}
    text = audit.format_report(_report(eps))
    assert "0.1234567 |" in text and "0.1234568 |" in text
    doc = audit.report_json(_report([0.1, 0.3]), [_Net()], audit.Suite(), argv=[])   # ordinary keys as before
    assert list(doc["networks"]["net"]["robust"]) == ["0.1", "0.3"]


def test_the_audit_refuses_the_same_budget_twice(tmp_path, capsys):
    (tmp_path / "m.npz").write_bytes(b"junk")
    refused(audit.main, [str(tmp_path / "m.npz"), "--eps", "0.1,0.10"], capsys, "is given twice")


def test_close_sgm_arms_train_with_their_exact_rate_and_are_two_arms():
    assert parse_arm("sgm:0.1234567").input_lr == 0.1234567
    assert parse_arms("sgm:0.1234567,sgm:0.1234568") == ["control", "sgm:0.1234567", "sgm:0.1234568"]
    with pytest.raises(ValueError, match="names an arm twice"):
        parse_arms("sgm:0.1,sgm:0.10")


# ------------------------------------------------------------------------------ item 17: every number where it is parsed
@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "--lr must be a finite number > 0, got 'nan'"),
    (["--lr", "-1"], "--lr must be a finite number > 0, got '-1'"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--lr", "inf"], "--lr must be a finite number > 0"),
    (["--input-lr", "nan"], "--input-lr must be a finite number, got 'nan'"),
    (["--input-lr", "inf"], "--input-lr must be a finite number, got 'inf'"),
    (["--adv", "fgsm", "--adv-eps", "nan"], "--adv-eps must be a finite number > 0, got 'nan'"),
    (["--adv", "pgd", "--adv-eps", "-0.1"], "--adv-eps must be a finite number > 0"),
    (["--adv", "pgd", "--adv-steps", "0"], "--adv-steps must be a whole number >= 1, got '0'"),
    (["--adv", "pgd", "--adv-steps", "2.5"], "--adv-steps must be a whole number >= 1, got '2.5'"),
    (["--seed", "-1"], "--seed must be a whole number >= 0, got '-1'"),
    (["--seed", "1.5"], "--seed must be a whole number >= 0"),
    (["--pgd", "-5"], "--pgd must be a whole number >= 0, got '-5'"),
    (["--epochs", "0"], "--epochs must be a whole number >= 1"),
    (["--epochs", "two"], "--epochs must be a whole number >= 1, got 'two'"),
    (["--batch-size", "1"], "--batch-size must be a whole number >= 2"),
    (["--limit", "1"], "--limit must be a whole number >= 2"),
    (["--eval-limit", "0"], "--eval-limit must be a whole number >= 1"),
    (["--val-size", "-1"], "--val-size must be a whole number >= 0"),
])
def test_train_refuses_a_bad_number_before_any_data_is_loaded(tmp_path, capsys, no_data, flags, message):
    refused(train_cli.main, ["mnist"] + flags + ["--out", str(tmp_path / "x")], capsys, message)
    assert not (tmp_path / "x").exists()


def test_train_still_takes_a_negative_or_zero_input_lr(tmp_path, monkeypatch):
    """lambda-bar 0 is the control; a negative one is allowed (SGM warns outside [-1, 1])."""
    seen = []
    monkeypatch.setattr(train_cli, "_train", lambda args, spec, out, model: seen.append(spec.method) or 0)
    for value in ("0", "-0.2", "0.1234567"):
        assert train_cli.main(["mnist", "--input-lr", value, "--out", str(tmp_path / value)]) == 0
    assert seen == ["control", "sgm:-0.2", "sgm:0.1234567"]


@pytest.mark.parametrize("flags, message", [
    (["--input-lr", "nan"], "--input-lr must be a finite number, got 'nan'"),
    (["--epochs", "-3"], "--epochs must be a whole number >= 1"),
    (["--batch-size", "nan"], "--batch-size must be a whole number >= 2"),
])
def test_experiments_refuse_a_bad_shared_number(tmp_path, capsys, no_data, flags, message):
    refused(experiments_cli.main, ["mnist"] + flags + ["--out", str(tmp_path / "x")], capsys, message)


# ------------------------------------------------------------------------------ item 18 (parts)
def test_a_fractional_step_count_says_it_is_not_a_whole_number(tmp_path, capsys, no_data):
    refused(experiments_cli.main, ["mnist", "--arms", "pgd-at:0.1:²", "--out", str(tmp_path / "x")], capsys,
            "the step count must be a whole number >= 1, got '²'")


def test_an_audit_out_that_names_a_file_is_one_line_before_anything_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(audit, "_load_networks", lambda *a, **k: pytest.fail("the networks were loaded"))
    (tmp_path / "m.npz").write_bytes(b"junk")
    f = tmp_path / "file"
    f.write_text("keep me")
    refused(audit.main, [str(tmp_path / "m.npz"), "--out", str(f)], capsys, f"--out {f} is an existing file")
    refused(audit.main, [str(tmp_path / "m.npz"), "--out", str(f / "sub")], capsys, "is a file")
    assert f.read_text() == "keep me"


def test_an_audit_seed_below_zero_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(audit, "_load_networks", lambda *a, **k: pytest.fail("the networks were loaded"))
    (tmp_path / "m.npz").write_bytes(b"junk")
    refused(audit.main, [str(tmp_path / "m.npz"), "--seed", "-1"], capsys, "--seed must be >= 0")
