"""Transfer (black-box) attacks: examples crafted on one network and classified by another."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .evaluation import PAPER_EPS, evaluate, resolve_attack

if TYPE_CHECKING:
    from ..layers import Sequential
    from ..layers.base import Array


def crafted_on(source: Sequential, attack: str | Callable[..., Array] = "pgd",
               **attack_kw: Any) -> Callable[..., Array]:
    """An attack callable for `evaluate` that crafts its examples on the network `source` (with
    `attack` and `attack_kw`), whatever network it is then evaluated on: a transfer attack."""
    attack_fn = resolve_attack(attack)

    def transfer(model: Sequential, x: Array, y: Array, eps: float, **kw: Any) -> Array:
        return attack_fn(source, x, y, eps, **{**attack_kw, **kw})

    transfer.__name__ = f"{getattr(attack_fn, '__name__', 'attack')} transfer"
    return transfer


def transfer_accuracy(source: Sequential, target: Sequential, X: Array, y: Array,
                      eps_list: Iterable[float] = PAPER_EPS, attack: str | Callable[..., Array] = "pgd",
                      batch_size: int | None = None, *, progress: bool = True, **attack_kw: Any) -> dict:
    """{eps: accuracy of `target` on examples crafted on `source`} (a black-box transfer attack)."""
    return evaluate(target, X, y, eps_list, crafted_on(source, attack), batch_size, progress=progress, **attack_kw)
