"""Regenerate the README's measured table: ``python tools/readme_numbers.py [--out results/readme]``.

Runs the README's three ``python -m nanosgm.train mnist ...`` commands through the very code path of that
CLI (its parser, :func:`nanosgm.experiments.train_cli.spec_from_args` and
:func:`nanosgm.experiments.network.train_network`), writes each network's record as JSON into ``--out``
(with its wall time) and prints the README's markdown table (clean and FGSM accuracy, PGD-10 on the
first 500 test images). About 10 minutes on an idle 2-core CPU. Needs MNIST (``NANOSGM_DATA`` or
``--data-dir``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nanosgm.experiments import recipe, train_cli  # noqa: E402
from nanosgm.experiments.cli_args import common_setup  # noqa: E402
from nanosgm.experiments.network import train_network  # noqa: E402
from nanosgm.plumbing.files import write_json_atomic  # noqa: E402

COMMANDS = (("--model cnn --epochs 1", ["mnist", "--model", "cnn", "--epochs", "1"]),
            ("--model dnn --epochs 1", ["mnist", "--model", "dnn", "--epochs", "1"]),
            ("default (CNN, 5 epochs)", ["mnist"]))


def measure(argv, data_dir=None) -> dict:
    """The record ``python -m nanosgm.train <argv>`` would write (without its files), plus the wall time."""
    args = train_cli.build_parser().parse_args(argv + (["--data-dir", data_dir] if data_dir else []))
    eps, model_name = common_setup(args)
    spec = train_cli.spec_from_args(args, model_name, eps)
    t0 = time.perf_counter()
    record = train_network(spec, progress=False, log=lambda line: print("   ", line, flush=True))
    record["wall_seconds"] = round(time.perf_counter() - t0, 1)
    record["command"] = "python -m nanosgm.train " + " ".join(argv)
    return record


def table(rows) -> str:
    lines = ["| command | clean | FGSM ε=0.001 | 0.01 | 0.1 | 0.2 | PGD-10 ε=0.1 / 0.2 (first 500) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, r in rows:
        res = r["results"]
        f = [f"{res['fgsm_pct'][repr(e)]:.2f}" for e in (0.001, 0.01, 0.1, 0.2)]
        p = f"{res['pgd_pct']['0.1']:.2f} / {res['pgd_pct']['0.2']:.2f}" if res.get("pgd_pct") else "-"
        lines.append(f"| `{label}` | {res['clean_pct']:.2f} | " + " | ".join(f) + f" | {p} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tools/readme_numbers.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/readme", help="folder for the records (default results/readme)")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: NANOSGM_DATA, ...)")
    p.add_argument("--only", type=int, default=None, help="run only command number N (0-2)")
    args = p.parse_args(argv)
    for i, (label, cmd) in enumerate(COMMANDS):
        if args.only is not None and i != args.only:
            continue
        print(f"python -m nanosgm.train {' '.join(cmd)}", flush=True)
        r = measure(cmd, args.data_dir)
        write_json_atomic(os.path.join(args.out, f"readme-{i}.json"), dict(r, written=recipe.now()))
    rows = []               # every command measured so far (--only adds one row to the others)
    for i, (label, _) in enumerate(COMMANDS):
        path = os.path.join(args.out, f"readme-{i}.json")
        if os.path.exists(path):
            with open(path) as f:
                rows.append((label, json.load(f)))
    print(table(rows))
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
