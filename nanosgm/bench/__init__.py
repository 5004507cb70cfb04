"""Speed: ``python -m nanosgm.bench`` (img/s against PyTorch), the per-layer profile, and the one
translation of a nanosgm network to torch (also the tests' oracle).

Names are loaded on first use, so that ``python -m nanosgm.bench`` can set up BLAS before NumPy loads.
"""
from __future__ import annotations

import importlib
from typing import Any

_MODULES = ("bench", "cells", "launches", "profile", "torch_bridge")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    module = importlib.import_module(".bench", __name__)
    if name in module.__all__:
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
