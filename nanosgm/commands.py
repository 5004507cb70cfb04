"""The ``nanosgm`` command: ``nanosgm <command> [options]``, one front door to every command line.

Each command is the ``python -m nanosgm.<command>`` of the same name (the same ``main``, so the two
spellings behave alike; ``main(argv, prog="nanosgm <command>")`` makes its usage line and messages name
the spelling used); ``nanosgm <command> --help`` gives its options. ``nanosgm --version`` (``-V``) and
``nanosgm <command> --version`` print ``nanosgm <version>``. A refusal, here or by a command's flags, is one
line ``error: ...`` with exit status 1.

Nothing here loads NumPy: a command's own module is imported only after
:func:`~nanosgm.plumbing.blas.limit_spin_wait` has set the environment that OpenBLAS reads when NumPy
loads, as every ``python -m nanosgm.*`` entry point does.
"""
from __future__ import annotations

import difflib
import importlib
import sys

from . import __version__
from .plumbing.cli import CliError, run_cli

__all__ = ["COMMANDS", "main", "usage", "version"]

# command -> (the module whose main(argv) runs it, one line for nanosgm --help)
COMMANDS = {
    "train": ("nanosgm.experiments.train_cli", "train one of the paper's networks and measure it (FGSM, PGD)"),
    "experiments": ("nanosgm.experiments.cli", "the paper's protocol: lock-step runs of each arm, Tables 4-5, "
                                              "Wilcoxon tests"),
    "robustness": ("nanosgm.experiments.audit", "audit trained networks: FGSM, PGD, APGD, Square, transfer, "
                                                "sanity checks"),
    "bench": ("nanosgm.bench.bench", "speed of the paper's networks (against PyTorch with --compare-torch)"),
    "plot": ("nanosgm.experiments.plot_run", "draw one run's learning curves from its results.json"),
    "decompose": ("nanosgm.experiments.decompose", "the authors' FGSM taken apart on a protocol's saved networks "
                                                   "(each factor alone and together, gradient masking)"),
}
VERSION_FLAGS = ("--version", "-V")


def version() -> str:
    return f"nanosgm {__version__}"


def usage() -> str:
    """The text of ``nanosgm --help``."""
    width = max(map(len, COMMANDS))
    lines = ["usage: nanosgm <command> [options]", "",
             "A from-scratch NumPy/CuPy reproduction of \"Hardening against adversarial examples with the Smooth "
             "Gradient Method\".", "", "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help     show this help and exit", "  -V, --version  print the version and exit",
              "", "nanosgm <command> --help shows a command's options; nanosgm <command> is also "
              "python -m nanosgm.<command>."]
    return "\n".join(lines)


def _unknown(word: str) -> CliError:
    if word.startswith("-"):
        return CliError(f"unknown option {word!r} before the command; give a command first ({', '.join(COMMANDS)}), "
                        f"then its options (see nanosgm --help)")
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return CliError(f"unknown command {word!r}; {hint}choose one of {', '.join(COMMANDS)} (see nanosgm --help)")


def _main(argv) -> int:
    if not argv:
        print(usage(), file=sys.stderr)
        return 1
    first, rest = argv[0], argv[1:]
    if first in ("-h", "--help"):
        print(usage())
        return 0
    if first in VERSION_FLAGS:
        print(version())
        return 0
    if first not in COMMANDS:
        raise _unknown(first)
    if any(flag in rest for flag in VERSION_FLAGS):
        print(version())
        return 0
    from .plumbing.blas import limit_spin_wait
    limit_spin_wait()            # before the command's module loads NumPy (nanosgm/plumbing/blas.py)
    return importlib.import_module(COMMANDS[first][0]).main(rest, prog=f"nanosgm {first}")


def main(argv=None) -> int:
    """``nanosgm <command> [options]`` (the module docstring); returns the exit status."""
    return run_cli(_main, argv)
