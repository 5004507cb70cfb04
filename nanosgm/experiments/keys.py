"""How a protocol result names its networks: ``"run<i>/<arm label>"`` (``"run0/control"``, ``"run3/sgm:0.2"``).

The protocol writes its records under these keys (:mod:`.protocol`); the statistics pair them by run
(:mod:`.stats`) and the figures group them by arm (:mod:`.figures`).

    >>> network_key(3, "sgm:0.2:per-sample")
    'run3/sgm:0.2:per-sample'
    >>> split_key("run3/sgm:0.2:per-sample")
    (3, 'sgm:0.2:per-sample')
"""
from __future__ import annotations

import re

__all__ = ["network_key", "split_key", "file_stem"]


def network_key(run: int, arm_label: str) -> str:
    """The key of arm ``arm_label``'s network in run ``run``."""
    return f"run{run}/{arm_label}"


_KEY = re.compile(r"run(0|[1-9][0-9]*)/(.+)", re.S)


def split_key(key: str) -> tuple:
    """(run, arm label) of a network key; ValueError for anything not of the form ``run<i>/<arm label>``."""
    m = _KEY.fullmatch(key) if isinstance(key, str) else None
    if m is None:
        raise ValueError(f"{key!r} is not a network key (run<i>/<arm label>, e.g. 'run0/control')")
    return int(m[1]), m[2]


def file_stem(run: int, arm_label: str) -> str:
    """The name (no extension) a protocol gives network (``run``, ``arm_label``)'s files: its weights in
    ``models/``, its checkpoint in ``ckpt/``, a rejected record in ``rejected/`` ("run1-sgm_0.2_per-sample")."""
    from ..methods.arms import slug
    return f"run{run}-{slug(arm_label)}"
