"""Transfer (black-box) attacks: examples crafted on one network and classified by another."""
from __future__ import annotations

from .evaluation import PAPER_EPS, evaluate, resolve_attack


def crafted_on(source, attack="pgd", **attack_kw):
    """An attack callable for `evaluate` that crafts its examples on the network `source` (with
    `attack` and `attack_kw`), whatever network it is then evaluated on: a transfer attack."""
    attack_fn = resolve_attack(attack)

    def transfer(model, x, y, eps, **kw):
        return attack_fn(source, x, y, eps, **{**attack_kw, **kw})

    transfer.__name__ = f"{getattr(attack_fn, '__name__', 'attack')} transfer"
    return transfer


def transfer_accuracy(source, target, X, y, eps_list=PAPER_EPS, attack="pgd", batch_size=None, *,
                      progress: bool = True, **attack_kw) -> dict:
    """{eps: accuracy of `target` on examples crafted on `source`} (a black-box transfer attack)."""
    return evaluate(target, X, y, eps_list, crafted_on(source, attack), batch_size, progress=progress, **attack_kw)
