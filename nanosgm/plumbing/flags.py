"""Values on a command line, checked where they are parsed: argparse ``type=`` functions that refuse a
value which is not a number of the kind the flag needs (NaN, inf, negative, not whole), or a blank name,
with a :class:`~nanosgm.plumbing.errors.CliError` naming the flag, before any data is loaded.

    p.add_argument("--lr", type=flags.number("--lr", above=0))       # a finite number > 0
    p.add_argument("--seed", type=flags.whole("--seed", least=0))    # a whole number >= 0
    p.add_argument("--out", type=flags.named("--out"))              # not "" (which would mean the default)

The CliError passes through argparse (which catches only its own, TypeError and ValueError), so
:func:`~nanosgm.plumbing.cli.run_cli` prints it as one line ``error: ...`` and exits 1.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from .errors import CliError

__all__ = ["named", "number", "numbers", "whole", "wholes"]


def named(flag: str) -> Callable[[str], str]:
    """A ``type=`` for a name (a folder, a file, an address, a list of arms) that is not blank: an empty
    ``--out ""`` (an unset shell variable) is refused rather than read as the flag left out.

    >>> named("--out")("runs/a")
    'runs/a'
    """
    def parse(text: str) -> str:
        if not text.strip():
            raise CliError(f"{flag} is empty; give a value, or leave the flag out for its default")
        return text
    parse.__name__ = "named"
    return parse


def _bound_text(least: float | None, above: float | None) -> str:
    if above is not None:
        return f" > {above:g}"
    return f" >= {least:g}" if least is not None else ""


def number(flag: str, *, least: float | None = None, above: float | None = None) -> Callable[[str], float]:
    """A ``type=`` for a finite float, >= ``least`` or > ``above`` when given."""
    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            x = math.nan
        if not math.isfinite(x) or (least is not None and x < least) or (above is not None and x <= above):
            raise CliError(f"{flag} must be a finite number{_bound_text(least, above)}, got {text!r}")
        return x
    parse.__name__ = "number"
    return parse


def numbers(flag: str, *, least: float | None = None, above: float | None = None) -> Callable[[str], list[float]]:
    """A ``type=`` (or a parser) for a comma-separated list of finite floats ("0.1,0.2"), each >= ``least``
    or > ``above`` when given, none twice (0.1 and 0.10 are one value): every command's ``--eps``.

    >>> numbers("--eps", above=0)("0.1,0.2")
    [0.1, 0.2]
    """
    def parse(text: str) -> list[float]:
        parts = text.split(",")
        if any(not p.strip() for p in parts):
            raise CliError(f"{flag} has an empty part in {text!r}; give comma-separated numbers, e.g. 0.1,0.2")
        try:
            values = [float(p) + 0.0 for p in parts]        # + 0.0: -0 is 0
        except ValueError:
            raise CliError(f"{flag} must be comma-separated numbers, got {text!r}") from None
        if not all(math.isfinite(x) and (least is None or x >= least) and (above is None or x > above)
                   for x in values):
            raise CliError(f"{flag} values must be finite numbers{_bound_text(least, above)}, got {text!r}")
        for i, x in enumerate(values):
            if x in values[:i]:
                raise CliError(f"{flag}: {x!r} is given twice in {text!r}; give each once")
        return values
    parse.__name__ = "numbers"
    return parse


def whole(flag: str, *, least: int | None = None) -> Callable[[str], int]:
    """A ``type=`` for an int written as a whole number ("3", not "3.0" or "2.5"), >= ``least`` when given."""
    def parse(text: str) -> int:
        try:
            n = int(text, 10)
        except ValueError:
            n = None
        if n is None or (least is not None and n < least):
            raise CliError(f"{flag} must be a whole number{_bound_text(least, None)}, got {text!r}")
        return n
    parse.__name__ = "whole"
    return parse


def wholes(flag: str, *, least: int | None = None) -> Callable[[str], list[int]]:
    """A ``type=`` for a comma-separated list of whole numbers ("4", "0,3"), each >= ``least`` when given.

    >>> wholes("--only-runs", least=0)("3,0")
    [3, 0]
    """
    one = whole(flag, least=least)

    def parse(text: str) -> list[int]:
        parts = text.split(",")
        if any(not p.strip() for p in parts):
            raise CliError(f"{flag} must be comma-separated whole numbers{_bound_text(least, None)}, got {text!r}")
        return [one(p.strip()) for p in parts]
    parse.__name__ = "wholes"
    return parse
