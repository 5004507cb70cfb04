"""The optimizers by name: what ``--optimizer`` and the experiment recipes choose from."""
from __future__ import annotations

from .adam import Adam
from .base import Optimizer
from .sgd import SGD
from .wame import WAME

__all__ = ["OPTIMIZERS", "build_optimizer"]

OPTIMIZERS = {"wame": WAME, "sgd": SGD, "adam": Adam}


def build_optimizer(name: str, lr: float | None = None, **kw) -> Optimizer:
    """The weight update rule (Eq. 2 / WAME) called `name` ('wame', 'sgd' or 'adam'; 'wame-printed' is WAME
    with form='printed', the WAME paper's algorithm as printed); `lr=None` keeps the class default (WAME and
    Adam 1e-3, SGD 0.01). Extra keywords go to the constructor."""
    key = str(name).strip().lower()
    if key in ("wame-printed", "wame_printed"):          # the WAME paper's algorithm as printed
        key, kw = "wame", {"form": "printed", **kw}
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(sorted(OPTIMIZERS))} or wame-printed")
    cls = OPTIMIZERS[key]
    return cls(**kw) if lr is None else cls(lr=lr, **kw)
