"""What an attack leaves as it was, and where its arrays and random draws live.

An attack never changes the model: `frozen_buffers` copies every buffer (batch normalisation's running
statistics) and writes the copies back, so a pass in training mode leaves them as they were.
`on_backend` moves inputs to the active backend, `as_rng` turns None / an int seed / a Generator into a
generator, and `uniform` draws the random starts of PGD and APGD in the inputs' dtype.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import backend

if TYPE_CHECKING:
    from ..layers.base import Array


def _buffer_dicts(model: Any) -> Iterator[dict]:
    """Every `buffers` dict (e.g. batch norm's running statistics) in `model` and its sub-layers."""
    seen = set()
    stack = [model]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        if isinstance(getattr(m, "buffers", None), dict):
            yield m.buffers
        stack.extend(getattr(m, "layers", ()) or ())


class frozen_buffers:
    """Context manager: copy every buffer on entry and write the copies back (in place) on exit."""

    def __init__(self, model: Any, active: bool = True) -> None:
        self.model, self.active = model, active
        self.saved: list[tuple[dict, dict]] = []

    def __enter__(self) -> "frozen_buffers":
        if self.active:
            for d in _buffer_dicts(self.model):
                self.saved.append((d, {k: v.copy() for k, v in d.items()}))
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        for d, copies in self.saved:
            for k, v in copies.items():
                d[k][...] = v
        return False


def on_backend(a: Any, like: Array | None = None) -> Array:
    """`a` on the active backend (or on `like`'s backend when given)."""
    if like is not None and backend.array_module(a) is backend.array_module(like):
        return a
    return backend.to_device(a)


def as_rng(rng: int | np.random.Generator | None, default: Callable[[], Any]) -> np.random.Generator:
    """A generator: `rng` itself, a NumPy generator seeded with the int `rng`, or `default()` for None."""
    if rng is None:
        return default()
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    return rng


def uniform(rng: Any, shape: tuple, like: Array) -> Array:
    """U[0, 1) of `shape` drawn from `rng` (NumPy or CuPy), in `like`'s dtype, on `like`'s backend."""
    u = rng.random(shape, dtype=np.float64 if like.dtype == np.float64 else np.float32)
    return on_backend(u, like=like).astype(like.dtype, copy=False)
