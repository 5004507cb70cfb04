"""``python -m nanosgm.bench`` speaks as the other command lines do: a refusal is one line ``error: ...`` with
exit status 1 (argparse's own refusals exited 2 with the usage and ``python -m nanosgm.bench: error:``), its
help is plain text with the defaults written once, and it takes ``--debug`` and ``--no-progress``."""
import pytest

from nanosgm.bench import bench

QUICK = ["--models", "dnn", "--seconds", "0", "--warmup", "0", "--batch-size", "2", "--threads", "1"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "usage:" not in err, err
    return err


@pytest.mark.parametrize("flags, message", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--backend", "gpu"], "argument --backend: invalid choice: 'gpu'"),
    (["--seconds"], "argument --seconds: expected one argument"),
])
def test_an_argparse_refusal_is_one_line_and_exit_1(monkeypatch, capsys, flags, message):
    monkeypatch.setattr(bench, "_run", lambda *a, **k: pytest.fail("the bench ran"))
    assert bench.main(["--models", "dnn"] + flags) == 1
    err = one_line_error(capsys)
    assert message in err and err.rstrip().endswith("(see python -m nanosgm.bench --help)"), err


@pytest.mark.parametrize("models, message", [
    ("cnn,resnet", "--models: unknown model 'resnet'; choose from dnn, dnn-keras, cnn, cifar_cnn"),
    (" , ", "--models is empty; give one or more of dnn, dnn-keras, cnn, cifar_cnn"),
])
def test_a_bad_models_list_is_one_line_and_exit_1(capsys, models, message):
    assert bench.main(["--models", models]) == 1
    assert message in one_line_error(capsys)


def test_help_is_plain_text_with_each_default_once():
    text = bench.parser().format_help()
    for raw in ("``", "(default: None)", "None:", "(default: dnn,cnn,cifar_cnn)"):
        assert raw not in text, raw
    for flag in ("--debug", "--no-progress", "--models", "--compare-torch", "--profile"):
        assert flag in text, flag
    assert "(default 128;" in text and "(default 3)" in text and "{numpy,cupy}" in text


def test_debug_shows_the_traceback(capsys):
    assert bench.main(["--models", "resnet", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "CliError" in err and err.rstrip().splitlines()[-1].startswith("error: ")


@pytest.mark.usefixtures("numpy_backend")
def test_no_progress_drops_the_line_per_cell_and_keeps_the_tables(capsys):
    assert bench.main(QUICK) == 0
    with_lines = capsys.readouterr().out
    assert bench.main(QUICK + ["--no-progress"]) == 0
    without = capsys.readouterr().out
    cell_line = "  dnn       nanosgm train_adam"
    assert cell_line in with_lines and cell_line not in without
    for out in (with_lines, without):
        assert "train img/s (Adam)" in out and "median ms" in out
