"""What every ``python -m nanosgm.*`` entry point shares: error reporting and the output-folder check.

Every entry point runs its body through :func:`run_cli`, which turns the project's own errors (every
:class:`~nanosgm.plumbing.errors.NanosgmError`: bad flags, data, checkpoints, a busy folder, divergence)
and ``ValueError`` / ``OSError`` into one line ``error: ...`` on stderr and a non-zero exit status; Ctrl-C
gives status 130. ``--debug`` (or ``NANOSGM_DEBUG=1``) shows the full traceback instead.
"""
from __future__ import annotations

import os
import sys
import traceback

from .errors import CliError, NanosgmError

__all__ = ["CliError", "run_cli", "check_out_folder"]

_REPORTED = (NanosgmError, ValueError, OSError)


def _one_line(exc) -> str:
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{exc.filename}: {msg}"
    return " ".join(msg.split())


def run_cli(body, argv=None) -> int:
    """``body(argv) -> exit status``, with the project's errors reported as one line (see the module)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("NANOSGM_DEBUG", "") not in ("", "0")
    try:
        return body(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130
    except _REPORTED as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return getattr(exc, "code", 1)


def check_out_folder(out) -> None:
    """Refuse, before any data is loaded, an output folder that is a file or cannot be created/written."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise CliError(f"--out {out} is an existing file, not a folder; choose another --out")
    probe = out
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    probe = probe or "."
    if not os.path.isdir(probe):
        raise CliError(f"--out {out}: {probe} is a file, so the folder cannot be created; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CliError(f"--out {out}: {probe} is not writable; choose another --out")
