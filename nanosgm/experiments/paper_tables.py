"""The paper's published results, Tables 4 and 5, as data (percent, median of five runs of 50 epochs).

Source: A. Mosca and G. D. Magoulas, "Hardening against adversarial examples with the Smooth Gradient
Method", Soft Computing 22 (2018), Table 4 (clean test accuracy) and Table 5 (test accuracy under FGSM,
Eq. 20). "control" is plain training, "updates" training with the input updates (SGM, lambda-bar 0.2).
Row names are the paper's; :func:`read_paper_tables` reads the same tables from CSV files instead
(``--paper-dir``), e.g. to check these numbers against another transcription.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

__all__ = ["CITATION", "TABLE4", "TABLE5", "PAPER_TABLES", "read_paper_tables", "lookup"]

CITATION = ("A. Mosca, G. D. Magoulas, \"Hardening against adversarial examples with the Smooth Gradient Method\", "
            "Soft Computing 22, 2018: Tables 4-5 (median of 5 runs, 50 epochs)")

# Table 4: experiment -> {"control": %, "updates": %}
TABLE4 = {
    "MNIST-DNN": {"control": 98.81, "updates": 98.93},
    "MNIST-DNN-AUG": {"control": 99.03, "updates": 99.01},
    "MNIST-CNN": {"control": 99.48, "updates": 99.49},
    "MNIST-CNN-AUG": {"control": 99.55, "updates": 99.64},
    "CIFAR-10-CNN": {"control": 90.51, "updates": 90.48},
    "CIFAR-10-CNN-AUG": {"control": 93.06, "updates": 93.11},
    "CIFAR-100-CNN": {"control": 65.87, "updates": 65.84},
    "CIFAR-100-CNN-AUG": {"control": 70.02, "updates": 70.45},
}

_EPS = (0.001, 0.01, 0.1, 0.2)
_T5 = {   # experiment: (control at the four eps, updates at the four eps)
    "MNIST-DNN": ((98.77, 98.59, 94.61, 83.31), (98.79, 98.56, 94.68, 83.14)),
    "MNIST-DNN-AUG": ((99.03, 98.78, 95.10, 84.24), (98.91, 98.78, 95.06, 84.34)),
    "MNIST-CNN": ((99.47, 99.01, 84.16, 61.10), (99.45, 99.21, 89.01, 66.93)),
    "MNIST-CNN-AUG": ((99.54, 99.33, 91.47, 71.55), (99.62, 99.39, 92.20, 73.48)),
    "CIFAR-10-CNN": ((89.82, 82.40, 51.20, 40.53), (90.18, 87.81, 66.86, 52.57)),
    "CIFAR-10-CNN-AUG": ((92.98, 91.49, 74.24, 59.50), (93.00, 91.33, 74.06, 58.73)),
    "CIFAR-100-CNN": ((64.61, 53.26, 26.19, 19.01), (65.55, 62.59, 40.92, 27.38)),
    "CIFAR-100-CNN-AUG": ((69.78, 67.76, 48.47, 32.77), (70.12, 68.08, 48.29, 32.12)),
}
# Table 5: experiment -> {"control": {eps: %}, "updates": {eps: %}}
TABLE5 = {name: {"control": dict(zip(_EPS, c)), "updates": dict(zip(_EPS, u))} for name, (c, u) in _T5.items()}
PAPER_TABLES: dict[str, Any] = {"table4": TABLE4, "table5": TABLE5, "source": CITATION}


def _csv_name(name: str) -> str:
    # the CSV transcription of Table 5 drops the "-CNN" of the CIFAR rows ("CIFAR-10", "CIFAR-10-AUG")
    return name.replace("-CNN", "") if name.startswith("CIFAR") else name


def read_paper_tables(paper_dir: str | Path) -> dict:
    """The same layout as :data:`PAPER_TABLES`, read from ``table4_clean_accuracy.csv`` (columns experiment,
    control, with_updates) and ``table5_fgsm_accuracy.csv`` (experiment, variant control|updates, eps_<e>...)
    in ``paper_dir``. A missing file, a missing column, a value that is not a percentage or a Table 5
    experiment without both variants is a ValueError naming the file and the row."""
    paper_dir = Path(paper_dir)
    t4: dict[str, dict[str, float]] = {}
    t5: dict[str, dict[str, dict[float, float]]] = {}
    for row, where in _csv_rows(paper_dir / "table4_clean_accuracy.csv", ("experiment", "control", "with_updates")):
        t4[row["experiment"]] = {"control": _pct(row["control"], where), "updates": _pct(row["with_updates"], where)}
    for row, where in _csv_rows(paper_dir / "table5_fgsm_accuracy.csv", ("experiment", "variant")):
        if row["variant"] not in ("control", "updates"):
            raise ValueError(f"{where}: variant must be control or updates, got {row['variant']!r}")
        if None in row:                       # csv.DictReader keeps the cells beyond the header under None
            raise ValueError(f"{where}: more cells than the header has columns")
        accs = {_eps_of(k, where): _pct(v, where) for k, v in row.items() if k.startswith("eps_") and v}
        t5.setdefault(row["experiment"], {})[row["variant"]] = accs
    for name, variants in t5.items():
        if set(variants) != {"control", "updates"}:
            raise ValueError(f"{paper_dir / 'table5_fgsm_accuracy.csv'}: {name} needs a control and an updates row")
    return {"table4": t4, "table5": t5, "source": str(paper_dir)}


def _csv_rows(path: Path, columns: tuple[str, ...]):
    """(row dict, "file line N") of each row of the CSV ``path``, after checking that it has ``columns``."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: no column {', '.join(missing)} (its header: {reader.fieldnames}); "
                                 f"the paper's tables are transcribed with columns {', '.join(columns)}")
            rows = [(row, f"{path} line {reader.line_num}") for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"--paper-dir: cannot read {path} ({exc}); it needs table4_clean_accuracy.csv and "
                         f"table5_fgsm_accuracy.csv") from None
    return rows


def _eps_of(column: str, where: str) -> float:
    """The budget of a Table 5 column "eps_<e>", or a ValueError naming the row."""
    try:
        e = float(column[len("eps_"):])
    except ValueError:
        e = float("nan")
    if not 0 <= e < float("inf"):
        raise ValueError(f"{where}: column {column!r} is not eps_<a budget>, e.g. eps_0.1")
    return e


def _pct(text: str | None, where: str) -> float:
    """A percentage from a CSV cell, or a ValueError naming the row."""
    try:
        x = float(text or "")
    except ValueError:
        x = float("nan")
    if not 0 <= x <= 100:
        raise ValueError(f"{where}: {text!r} is not a percentage in [0, 100]")
    return x


def lookup(table: dict, name: str | None) -> dict | None:
    """``table[name]``, also under the CSV's spelling of CIFAR rows; None when absent."""
    if name is None:
        return None
    return table.get(name, table.get(_csv_name(name)))
