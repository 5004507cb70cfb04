"""The numbers of ``python -m nanosgm.experiments``'s own flags (--runs, --seed, --pgd, --workers, --threads) are
checked where they are parsed: a negative, zero, NaN or fractional value is one line ``error: ...`` naming the
flag, before any data loads and before the protocol starts (issue 22, items 14 and 17); so is an unknown
--optimizer, which used to start the protocol (and write its protocol.json) before it was refused."""
import pytest

from nanosgm.experiments import cli as experiments_cli
from nanosgm.plumbing.errors import CliError


@pytest.fixture
def nothing_runs(monkeypatch):
    """Loading a dataset or starting the protocol fails the test: a refusal must come first."""
    import nanosgm.data as data
    from nanosgm.experiments import recipe
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data was loaded"))
    monkeypatch.setattr(recipe, "load_data", lambda *a, **k: pytest.fail("data was loaded"))
    monkeypatch.setattr(experiments_cli, "run_protocol", lambda *a, **k: pytest.fail("the protocol started"))


@pytest.mark.parametrize("flags, message", [
    (["--seed", "-1"], "--seed must be a whole number >= 0, got '-1'"),
    (["--seed", "1.5"], "--seed must be a whole number >= 0, got '1.5'"),
    (["--pgd", "-5"], "--pgd must be a whole number >= 0, got '-5'"),
    (["--pgd", "nan"], "--pgd must be a whole number >= 0, got 'nan'"),
    (["--runs", "0"], "--runs must be a whole number >= 1, got '0'"),
    (["--runs", "2.5"], "--runs must be a whole number >= 1, got '2.5'"),
    (["--workers", "0"], "--workers must be a whole number >= 1, got '0'"),
    (["--workers", "-2"], "--workers must be a whole number >= 1, got '-2'"),
    (["--workers", "inf"], "--workers must be a whole number >= 1, got 'inf'"),
    (["--threads", "0"], "--threads must be a whole number >= 1, got '0'"),
    (["--threads", "1.5"], "--threads must be a whole number >= 1, got '1.5'"),
    (["--optimizer", "adamw"], "--optimizer: unknown optimizer 'adamw': choose one of adam, sgd, wame or wame-printed"),
])
def test_experiments_refuse_a_bad_number_of_their_own(tmp_path, capsys, nothing_runs, flags, message):
    out = tmp_path / "protocol"
    assert experiments_cli.main(["mnist"] + flags + ["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not out.exists()


def test_good_numbers_reach_the_protocol_as_ints(tmp_path, capsys, monkeypatch):
    seen = {}

    def run_protocol(base, **kw):
        seen.update(kw, pgd=base.pgd, optimizer=base.optimizer)
        raise CliError("stop here")

    monkeypatch.setattr(experiments_cli, "run_protocol", run_protocol)
    argv = ["mnist", "--optimizer", "wame-printed", "--seed", "7", "--pgd", "0", "--runs", "2", "--workers", "1",
            "--threads", "1", "--out", str(tmp_path / "protocol")]
    assert experiments_cli.main(argv) == 1 and "error: stop here" in capsys.readouterr().err
    got = {k: seen[k] for k in ("seed0", "pgd", "runs", "workers", "threads")}
    assert got == {"seed0": 7, "pgd": 0, "runs": 2, "workers": 1, "threads": 1}
    assert all(type(v) is int for v in got.values())
    assert seen["optimizer"] == "wame-printed"
