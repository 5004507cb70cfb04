"""What every ``python -m nanosgm.*`` entry point shares: error reporting and the output-folder check.

Every entry point runs its body through :func:`run_cli`, which turns the project's own errors (every
:class:`~nanosgm.plumbing.errors.NanosgmError`: bad flags, data, checkpoints, a busy folder, divergence)
and ``ValueError`` / ``OSError`` into one line ``error: ...`` on stderr and a non-zero exit status; Ctrl-C
gives status 130. ``--debug`` (or ``NANOSGM_DEBUG=1``) shows the full traceback instead.

SIGTERM and SIGHUP (``kill``, a closed terminal) stop the body as Ctrl-C does: while it runs, they raise
:class:`Stopped`, a ``KeyboardInterrupt``, so that whatever keeps work on Ctrl-C keeps it on them too.
The exit status is then 128 + the signal's number (143, 129). A command that reports what it kept on an
interruption words it with :func:`interruption` and exits with :func:`interruption_status`::

    except KeyboardInterrupt:
        raise CliError(f"{interruption()}: finished attacks are kept in ...", code=interruption_status()) from None
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from .errors import CliError, NanosgmError

__all__ = ["CliError", "Stopped", "run_cli", "check_out_folder", "interruption", "interruption_status"]

_REPORTED = (NanosgmError, ValueError, OSError)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_RECEIVED: list[int] = []           # the stop signal received while run_cli's body runs (at most the first)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP while a command runs: ``signum`` is the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> NoReturn:
    if not _RECEIVED:
        _RECEIVED.append(signum)
    raise Stopped(signum)


def interruption() -> str:
    """How the running command was interrupted, for its message: "interrupted" (Ctrl-C) or "stopped by SIGTERM"."""
    return f"stopped by {signal.Signals(_RECEIVED[0]).name}" if _RECEIVED else "interrupted"


def interruption_status() -> int:
    """The exit status of an interrupted command: 130 for Ctrl-C, 128 + the signal's number for SIGTERM / SIGHUP."""
    return 128 + int(_RECEIVED[0]) if _RECEIVED else 130


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except OSError:              # no terminal left to say it on (SIGHUP)
        pass


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{exc.filename}: {msg}"
    return " ".join(msg.split())


def run_cli(body: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """``body(argv) -> exit status``, with the project's errors reported as one line (see the module)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("NANOSGM_DEBUG", "") not in ("", "0")
    restore = _catch_stop_signals()
    try:
        return body(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        _say(f"\n{interruption()}")
        return interruption_status()
    except _REPORTED as exc:
        if debug:
            traceback.print_exc()
        _say(f"error: {_one_line(exc)}")
        code = getattr(exc, "code", 1)
        return interruption_status() if code == 130 else code
    finally:
        restore()


def _catch_stop_signals() -> Callable[[], None]:
    """Let SIGTERM and SIGHUP raise :class:`Stopped` (only the main thread can take signals); returns the undo."""
    _RECEIVED.clear()
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    before = {s: signal.signal(s, _stop) for s in STOP_SIGNALS}

    def restore() -> None:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
    return restore


def check_out_folder(out: str | Path) -> None:
    """Refuse, before any data is loaded, an output folder that is a file or cannot be created/written."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise CliError(f"--out {out} is an existing file, not a folder; choose another --out")
    if os.path.islink(out) and not os.path.exists(out):
        raise CliError(f"--out {out} is a broken symbolic link (to {os.readlink(out)}); remove it or choose another --out")
    probe = out
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    probe = probe or "."
    if not os.path.isdir(probe):
        raise CliError(f"--out {out}: {probe} is a file, so the folder cannot be created; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CliError(f"--out {out}: {probe} is not writable; choose another --out")
