"""The project's error types, low in the house so that every layer can raise them and every command
line can report them without importing the code that raised them.

Every error meant for the user derives from :class:`NanosgmError`; its message is one line that names
what went wrong and what to do. The command lines (:func:`nanosgm.plumbing.cli.run_cli`) print such an
error as ``error: <message>`` and exit non-zero.
"""
from __future__ import annotations

__all__ = ["NanosgmError", "CliError", "TrainingDiverged", "TaskFailed", "FolderBusy"]


class NanosgmError(Exception):
    """An error whose message is written for the user (a refusal, bad data, a busy folder, ...)."""


class CliError(NanosgmError):
    """A refusal with a message for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class TrainingDiverged(NanosgmError, RuntimeError):
    """The loss or the weights became non-finite, or the loss exploded."""


class TaskFailed(NanosgmError, RuntimeError):
    """A network's task raised; the message names the network (the records finished before are kept)."""


class FolderBusy(NanosgmError, RuntimeError):
    """Another live process holds the run folder."""
