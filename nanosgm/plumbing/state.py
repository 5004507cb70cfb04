"""Checking saved state before any of it is used: loading is all or nothing.

Every ``load_state_dict`` in nanosgm (``Sequential``, the optimizers, ``SmoothGradient``, the training
methods) is :class:`CheckedState`'s: it first checks the whole state dict with the helpers here and only
then assigns; a state that fails a check raises a :class:`StateError` and leaves the object exactly as
it was. A check fails when an expected key is
missing (or an unknown one is present), an array has the wrong shape, a float is expected and the array
is not floating, or a value is NaN or infinite. The message names the file (``source``, when known)
and the key as it is spelled in that file (``prefix`` + key), e.g.::

    runs/c/checkpoint.npz: 'optim.state.0.W.zeta' is missing; ...

Use (``state`` is a flat ``{key: array}`` dict, e.g. what :func:`nanosgm.plumbing.npz.load_npz` returned)::

    where = Where(source="runs/c/checkpoint.npz", prefix="optim.")
    lr = float(check_array(state, "lr", where, shape=(), kind="f"))
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import NanosgmError

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["StateError", "Where", "CheckedState", "check_keys", "check_array", "KINDS"]


class StateError(NanosgmError, ValueError):
    """A saved state (a ``.npz`` file or a state dict) that cannot be loaded: missing or unexpected keys,
    wrong shapes or dtypes, non-finite values, or a file that is not a readable plain-array ``.npz``.
    The message names the file (when known) and the key, and says what to do."""


#: dtype kinds a check can ask for: numpy's ``dtype.kind`` letters each accepts
KINDS = {
    "f": ("f",),          # floating (float16/32/64)
    "i": ("i", "u"),      # integer
    "b": ("b",),          # bool
    "U": ("U",),          # text (a 0-d str array)
}
_KIND_WORDS = {"f": "a floating-point", "i": "an integer", "b": "a boolean", "U": "a text"}

DEFAULT_HINT = ("the file is damaged, incomplete, or was written for another model or configuration; "
                "use the file that was written with it, or start again without it")


@dataclass(frozen=True)
class Where:
    """Where a state dict came from: the file (``source``, may be None) and the prefix its keys carry there."""

    source: str | None = None
    prefix: str = ""
    hint: str = DEFAULT_HINT

    def key(self, key: str) -> str:
        """``key`` as it is spelled in the file, quoted."""
        return repr(f"{self.prefix}{key}")

    def error(self, problem: str) -> StateError:
        """A StateError '<file>: <problem>; <hint>'."""
        head = f"{self.source}: " if self.source else ""
        return StateError(f"{head}{problem}; {self.hint}")


class CheckedState:
    """``check_state_dict`` and ``load_state_dict``, all or nothing, for a class that says what its state is.

    The class writes ``state_dict()`` and two hooks:

        _checked_state(d, where, **context) -> values   check every key of ``d`` (failures: ``where.error``)
                                                         and return the values to install; change nothing
        _assign_state(values)                            install them; nothing here may fail

    ``load_state_dict`` runs the first, then the second; ``check_state_dict`` only the first. ``context``
    is what a class needs besides the dict (the optimizers take ``model=``).
    """

    def check_state_dict(self, d: Mapping, *, source: str | None = None, prefix: str = "", **context) -> None:
        """Raise the StateError :meth:`load_state_dict` would raise, changing nothing."""
        self._checked_state(d, Where(source, prefix), **context)

    def load_state_dict(self, d: Mapping, *, source: str | None = None, prefix: str = "", **context) -> None:
        """Restore what ``state_dict()`` returned (or an ``np.load``-ed ``.npz`` of it), all or nothing.

        Every key is checked before any is used; a failure is a :class:`StateError` naming ``source``
        (the file, when known) and the key as spelled there (``prefix`` + key), and leaves the object
        unchanged. What is checked is the class's ``_checked_state``.
        """
        self._assign_state(self._checked_state(d, Where(source, prefix), **context))

    # ``*args: Any, **context: Any``: each class takes the context it needs (mypy accepts any such override)
    def _checked_state(self, d: Mapping, where: "Where", *args: Any,
                       **context: Any) -> Any:  # pragma: no cover - every user writes its own
        raise NotImplementedError

    def _assign_state(self, values) -> None:  # pragma: no cover - every user writes its own
        raise NotImplementedError


def check_keys(state: Mapping, expected: Iterable[str], where: Where, *, what: str = "state",
               optional: Iterable[str] = ()) -> None:
    """Raise StateError unless ``state`` has every key of ``expected`` and no other (``optional`` may be absent)."""
    expected, optional = set(expected), set(optional)
    missing = sorted(expected - optional - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        full = lambda keys: [where.prefix + k for k in keys[:5]] + (["..."] if len(keys) > 5 else [])
        parts = ([f"missing {full(missing)}"] if missing else []) + \
                ([f"unexpected {full(unexpected)}"] if unexpected else [])
        raise where.error(f"{what} does not match: {', '.join(parts)}")


def check_array(state: Mapping, key: str, where: Where, *, shape: tuple[int, ...] | None = None,
                kind: str | None = None, finite: bool = True) -> np.ndarray:
    """``state[key]`` as an ndarray after checking it; StateError naming the key otherwise.

    ``shape``: the exact shape required (``()`` for a scalar), or None for any. ``kind``: a key of
    :data:`KINDS` ("f", "i", "b", "U"), or None for any non-object dtype. ``finite``: floating values
    must be neither NaN nor infinite.
    """
    if key not in state:
        raise where.error(f"{where.key(key)} is missing")
    value = state[key]
    if not isinstance(value, np.ndarray) and not _is_backend_array(value):
        if not isinstance(value, (bool, int, float, str, np.generic)):
            raise where.error(f"{where.key(key)} is a {type(value).__name__}, not an array")
        value = np.asarray(value)
    dtype = np.dtype(value.dtype)
    if dtype.kind in "OV":
        raise where.error(f"{where.key(key)} has dtype {dtype}, not a plain numeric or text array")
    if kind is not None and dtype.kind not in KINDS[kind]:
        raise where.error(f"{where.key(key)} has dtype {dtype}, {_KIND_WORDS[kind]} array is expected")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise where.error(f"{where.key(key)} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if finite and dtype.kind == "f" and not _all_finite(value):
        raise where.error(f"{where.key(key)} holds NaN or infinite values")
    return value


def _is_backend_array(value: object) -> bool:
    """Whether ``value`` is a device array (CuPy's or the CPU stand-in's): nanosgm.backend decides."""
    from .. import backend
    return backend.is_gpu_array(value)


def _all_finite(a: Array) -> bool:
    """True when every value of ``a`` (NumPy, CuPy or the stand-in) is finite."""
    from .. import backend
    return bool(backend.array_module(a).isfinite(a).all())
