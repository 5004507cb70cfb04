"""The paper's protocol (Sections 5-6) and its command lines.

    network      one network = one task: a NetworkSpec trained and measured the same way everywhere
    protocol     lock-step runs of the control and each arm, recorded in protocol.json (resumable)
    keys         how a result names its networks: "run<i>/<arm>"
    stats        medians, ranges and Wilcoxon tests of the paired runs
    tables       Tables 4-5 as text, beside the paper's numbers
    parallel     the networks in this process, in worker processes or on a Dask cluster
    verdicts, paper_tables, figures    the paper's claims, its numbers, Figures 1-6
    length       a protocol at the paper's length beside a shorter one of the same seeds (its figure: figures)
    audit        the robustness audit (``python -m nanosgm.robustness``)
    train_cli, cli                     ``python -m nanosgm.train`` and ``python -m nanosgm.experiments``

Names are loaded on first use, so that the command lines can set up the process (BLAS) before NumPy loads.
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {name: "protocol" for name in (
    "PAPER_EPS", "PROTOCOL_FORMAT", "CONTROL", "arm_spec", "parse_arm", "parse_arms", "ConfigMismatch",
    "run_protocol", "load_protocol", "protocol_config")}
_NAMES.update({name: "stats" for name in ("min_exact_p", "wilcoxon_paired", "arms_of", "paired", "summarize")})
_NAMES.update({name: "tables" for name in ("paper_experiment_name", "format_tables")})
_NAMES.update({"network_key": "keys", "write_figures": "figures", "NetworkSpec": "network",
               "train_network": "network", "measure": "network", "main": "cli"})

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
