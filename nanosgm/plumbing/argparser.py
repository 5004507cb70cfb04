"""An ``argparse.ArgumentParser`` whose refusals are the project's: one line ``error: ...``, exit status 1.

argparse's own refusal (an unknown flag, a missing argument, a value outside ``choices``) prints the usage
and ``prog: error: ...`` and exits with status 2. :class:`Parser` raises a
:class:`~nanosgm.plumbing.errors.CliError` instead, which :func:`~nanosgm.plumbing.cli.run_cli` prints as
every other error of a command: one line ``error: <message> (see <prog> --help)``, exit status 1.

Every nanosgm command line (train, experiments, robustness, bench, plot) builds its parser from it, with
``prog`` the spelling it was called by (``python -m nanosgm.train`` or ``nanosgm train``).
"""
from __future__ import annotations

import argparse
from typing import NoReturn

from .errors import CliError

__all__ = ["Parser"]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` raising CliError (one line, exit 1) where argparse would exit 2."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)")
