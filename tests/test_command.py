"""The ``nanosgm`` command (nanosgm/commands.py): ``nanosgm train|experiments|robustness|bench|plot|decompose`` runs the
``python -m nanosgm.<command>`` of that name (its usage line naming the spelling used), ``--version``
answers at both levels, ``--help`` lists the commands, and a wrong command or flag, at either level, is one
line ``error: ...`` with exit status 1. ``python -m nanosgm`` is the
same command; the installed ``nanosgm`` script (pyproject's [project.scripts]) too."""
import importlib.metadata
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import nanosgm
from nanosgm import commands
from nanosgm.plumbing.blas import SPIN_TIMEOUT_LOG2

VERSION = f"nanosgm {nanosgm.__version__}"


def run(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, **kw)


def one_line_error(err) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# --- the version ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_at_the_top(capsys, flag):
    assert commands.main([flag]) == 0
    assert capsys.readouterr().out == VERSION + "\n"


@pytest.mark.parametrize("command", list(commands.COMMANDS))
def test_version_after_each_command(capsys, command):
    assert commands.main([command, "--version"]) == 0
    assert capsys.readouterr().out == VERSION + "\n"


def test_the_version_is_the_installed_distributions():
    try:
        installed = importlib.metadata.version("nanosgm")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("nanosgm is not installed (pip install -e .): no distribution metadata to compare with")
    assert VERSION == f"nanosgm {installed}"


# --- help and refusals -----------------------------------------------------------------------------------------
def test_help_lists_every_command_on_one_line(capsys):
    assert commands.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nanosgm <command>")
    for name in ("train", "experiments", "robustness", "bench", "plot", "decompose"):
        lines = [line for line in out.splitlines() if line.split()[:1] == [name]]
        assert len(lines) == 1 and len(lines[0].split()) > 3, (name, out)
    assert "--version" in out and "python -m nanosgm.<command>" in out


def test_no_command_prints_the_help_and_exits_1(capsys):
    assert commands.main([]) == 1
    assert "commands:" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["trian"], "error: unknown command 'trian'; did you mean 'train'? choose one of train, experiments, "
                "robustness, bench, plot, decompose (see nanosgm --help)"),
    (["frobnicate", "--epochs", "1"], "error: unknown command 'frobnicate'; choose one of"),
    (["--bogus", "train"], "error: unknown option '--bogus' before the command; give a command first"),
])
def test_an_unknown_command_is_one_line_and_exit_1(capsys, argv, message):
    assert commands.main(argv) == 1
    assert one_line_error(capsys.readouterr().err).startswith(message)


# --- delegation ------------------------------------------------------------------------------------------------
def test_a_command_runs_its_modules_main_after_limiting_the_spin_wait(monkeypatch):
    """The command's module is imported only once OPENBLAS_THREAD_TIMEOUT is set (OpenBLAS reads it when
    NumPy loads), and its main gets the arguments after the command."""
    seen = {}
    module = types.ModuleType("fake_command")
    module.main = lambda argv, prog: seen.update(argv=argv, prog=prog,
                                                 timeout=os.environ.get("OPENBLAS_THREAD_TIMEOUT")) or 7
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(commands.COMMANDS, "train", ("fake_command", "a stand-in"))
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    assert commands.main(["train", "mnist", "--epochs", "1"]) == 7
    assert seen == {"argv": ["mnist", "--epochs", "1"], "prog": "nanosgm train", "timeout": str(SPIN_TIMEOUT_LOG2)}


def _command_main(command):
    """The ``main`` that ``python -m nanosgm.<command>`` runs."""
    import importlib
    return importlib.import_module(commands.COMMANDS[command][0]).main


@pytest.mark.parametrize("command", list(commands.COMMANDS))
def test_each_commands_usage_names_the_spelling_used(capsys, command):
    """``nanosgm <command> --help`` says ``usage: nanosgm <command>``; the module's own main (what
    ``python -m nanosgm.<command>`` runs) keeps ``usage: python -m nanosgm.<command>``."""
    with pytest.raises(SystemExit) as exit_:
        commands.main([command, "--help"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"usage: nanosgm {command} ")
    with pytest.raises(SystemExit) as exit_:
        _command_main(command)(["--help"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"usage: python -m nanosgm.{command} ")


# each command with the arguments it needs before a flag it does not know
VALID_BEFORE = {"train": ["mnist"], "experiments": ["mnist"], "robustness": ["m.npz"], "bench": [], "plot": ["r.json"],
                "decompose": ["results/x"]}


def _unknown_flag_cases():
    yield pytest.param(None, ["--bogus"], "error: unknown option '--bogus' before the command; give a command "
                       "first", id="nanosgm")
    for command, before in VALID_BEFORE.items():
        yield pytest.param(None, [command, *before, "--bogus"], "error: unrecognized arguments: --bogus (see "
                           f"nanosgm {command} --help)\n", id=f"nanosgm {command}")
        yield pytest.param(command, [*before, "--bogus"], "error: unrecognized arguments: --bogus (see "
                           f"python -m nanosgm.{command} --help)\n", id=f"python -m nanosgm.{command}")


@pytest.mark.parametrize("module_of, argv, line", list(_unknown_flag_cases()))
def test_every_command_refuses_an_unknown_flag_in_one_line_with_exit_1(capsys, module_of, argv, line):
    """argparse's own refusal (the usage, then ``prog: error: ...``, exit 2) is never what a nanosgm command
    line prints: the nanosgm command, each command through it, and each ``python -m nanosgm.<command>``."""
    main = commands.main if module_of is None else _command_main(module_of)
    assert main(argv) == 1
    assert one_line_error(capsys.readouterr().err).startswith(line)


@pytest.mark.parametrize("command", list(VALID_BEFORE))
def test_every_command_takes_debug_and_then_shows_the_traceback(capsys, command):
    """``--debug`` is one of each command's flags (argparse would refuse it as unknown otherwise): a refusal
    then shows its traceback above the one ``error:`` line."""
    assert commands.main([command, *VALID_BEFORE[command], "--debug", "--bogus"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err, err
    assert err.rstrip().splitlines()[-1].startswith("error: unrecognized arguments: --bogus (see"), err


def test_importing_the_command_loads_no_numpy():
    proc = run(sys.executable, "-c", "import sys, nanosgm.commands; sys.exit('numpy' in sys.modules)")
    assert proc.returncode == 0, proc.stderr


# --- python -m nanosgm and the installed script ----------------------------------------------------------------
def _script() -> Path:
    try:
        importlib.metadata.version("nanosgm")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("nanosgm is not installed (pip install -e .), so there is no nanosgm script")
    name = "nanosgm.exe" if os.name == "nt" else "nanosgm"
    script = Path(sys.executable).parent / name
    assert script.is_file(), f"{script} is missing: reinstall with pip install -e . (pyproject [project.scripts])"
    return script


@pytest.mark.parametrize("how", ["python -m", "script"])
def test_the_command_line_answers_version_help_and_refusals(how):
    base = [sys.executable, "-m", "nanosgm"] if how == "python -m" else [str(_script())]
    proc = run(*base, "--version")
    assert (proc.returncode, proc.stdout) == (0, VERSION + "\n"), proc.stderr
    proc = run(*base, "--help")
    assert proc.returncode == 0 and "  plot " in proc.stdout, proc.stderr
    proc = run(*base, "bench", "--bogus")
    assert proc.returncode == 1
    assert one_line_error(proc.stderr) == "error: unrecognized arguments: --bogus (see nanosgm bench --help)\n"
    proc = run(*base, "train", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: nanosgm train "), proc.stderr
    proc = run(*base, "nope")
    assert proc.returncode == 1 and one_line_error(proc.stderr).startswith("error: unknown command 'nope'")


def test_python_m_of_a_command_keeps_its_own_usage():
    proc = run(sys.executable, "-m", "nanosgm.train", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m nanosgm.train "), proc.stderr
    proc = run(sys.executable, "-m", "nanosgm.robustness", "m.npz", "--bogus")
    assert proc.returncode == 1
    assert one_line_error(proc.stderr) == ("error: unrecognized arguments: --bogus (see python -m nanosgm.robustness "
                                           "--help)\n")
