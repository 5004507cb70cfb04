"""FGSM crafted on one protocol's networks, classified by another protocol's networks of the same seed, for
every arm: is a paired gain (arm - control) the same when the adversarial set comes from elsewhere?

The authors' scripts write one adversarial set per dataset and test every network on it (issue 21); if the
paper's MNIST-DNN rows were measured on a set crafted on the CNN, Table 5's DNN gains are transfer gains. For
each run i that both protocols' ``models/`` folders hold, the examples are crafted on SOURCE's
``run<i>-<source arm>`` and classified by every ``run<i>-<arm>`` of TARGET; each cell is measured as
tools/fgsm_transfer.py measures one pair (white-box beside transfer, both FGSM conventions, each network's
dropout draws seeded as its record was), and the table gives per arm the median [range] over runs and the
median paired difference from the same run's control:

    python tools/transfer_table.py results/future-work results/mnist-dnn-conventions --json transfer-table.json

Weights are not committed: run it where the protocols were trained (``--images`` for fewer test images).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fgsm_transfer import CONVENTIONS, measure, one_line_errors   # noqa: E402
from nanosgm.experiments import load_protocol              # noqa: E402
from nanosgm.experiments.audit import load_networks         # noqa: E402
from nanosgm.experiments.recipe import git_commit           # noqa: E402
from nanosgm.experiments.records import authors_draw_seed   # noqa: E402
from nanosgm.methods.arms import CONTROL, slug              # noqa: E402
from nanosgm.plumbing.files import write_json_atomic        # noqa: E402
from nanosgm.plumbing.flags import numbers, whole           # noqa: E402

MODEL_NAME = re.compile(r"run(\d+)-(.+)\.npz$")
KINDS = ("white-box", "transfer")


def saved_networks(folder: str) -> dict:
    """{(run, arm label): (model path, record)} of a protocol folder: every models/run<i>-<slug>.npz whose
    record is in its protocol.json (the arm named by its slug)."""
    doc = load_protocol(folder)                   # checked: format, seals, lock-step (one line if not)
    labels = {slug(arm): arm for arm in doc["arms"]}
    models = os.path.join(folder, "models")
    found = {}
    for name in sorted(os.listdir(models)) if os.path.isdir(models) else []:
        m = MODEL_NAME.match(name)
        if m and m.group(2) in labels:
            key = (int(m.group(1)), labels[m.group(2)])
            record = doc["networks"].get(f"run{key[0]}/{key[1]}")
            if record is not None:
                found[key] = (os.path.join(models, name), record)
    return found


def plan(source: dict, target: dict, source_arm: str = CONTROL) -> dict:
    """{run: [target arm labels]} of the runs whose source network and target control are both saved."""
    runs = sorted({run for run, arm in target if (run, source_arm) in source and (run, CONTROL) in target})
    if not runs:
        raise ValueError(f"no run has both a saved source network ({source_arm}) and a saved target control")
    return {run: [arm for (r, arm) in sorted(target) if r == run] for run in runs}


def summarize(cells: dict) -> dict:
    """{arm: {convention: {kind: {eps: {"median", "min", "max", "delta_median", "runs"}}}}} from
    ``cells`` {run: {arm: measure() output}}; delta: arm minus the same run's control."""
    out: dict = {}
    arms = sorted({arm for per in cells.values() for arm in per}, key=lambda a: (a != CONTROL, a))
    for arm in arms:
        runs = [r for r in cells if arm in cells[r]]
        for conv in CONVENTIONS:
            for kind in KINDS:
                for eps in cells[runs[0]][arm][conv][kind]:
                    vals = [cells[r][arm][conv][kind][eps] for r in runs]
                    deltas = [cells[r][arm][conv][kind][eps] - cells[r][CONTROL][conv][kind][eps] for r in runs]
                    out.setdefault(arm, {}).setdefault(conv, {}).setdefault(kind, {})[eps] = {
                        "median": statistics.median(vals), "min": min(vals), "max": max(vals),
                        "delta_median": statistics.median(deltas), "runs": runs}
    return out


def format_table(summary: dict) -> str:
    """One markdown row per arm: median [range] over runs (control) or median paired delta (other arms),
    white-box and transfer, each convention and eps."""
    first = next(iter(summary.values()))
    cols = [(conv, kind, eps) for conv in CONVENTIONS for kind in KINDS for eps in first[conv][kind]]
    head = ["arm", "runs"] + [f"{conv} {kind} ε {eps}" for conv, kind, eps in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for arm, s in summary.items():
        cells = []
        for conv, kind, eps in cols:
            c = s[conv][kind][eps]
            cells.append(f"{c['median']:.2f} [{c['min']:.2f}–{c['max']:.2f}]" if arm == CONTROL
                         else f"Δ {c['delta_median']:+.2f}")
        runs = s[cols[0][0]][cols[0][1]][cols[0][2]]["runs"]
        lines.append(f"| `{arm}` | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(source_dir: str, target_dir: str, eps: list[float], images: int | None, source_arm: str = CONTROL,
        data_dir: str | None = None) -> dict:
    """The cells of every planned (run, target arm), with each network's weights digest and draw seed."""
    source, target = saved_networks(source_dir), saved_networks(target_dir)
    todo = plan(source, target, source_arm)
    cells: dict = {}
    networks: dict = {}
    for r, arms in todo.items():
        src_path, src_record = source[(r, source_arm)]
        records = {a: target[(r, a)][1] for a in arms}
        for a, record in records.items():
            if (record["spec"]["seed"], record["spec"]["dataset"]) != (src_record["spec"]["seed"],
                                                                       src_record["spec"]["dataset"]):
                raise ValueError(f"run {r}: {source_dir}'s {source_arm} and {target_dir}'s {a} differ in seed or "
                                 f"dataset; pair protocols made with the same --seed on one dataset")
        src, *nets = load_networks([src_path] + [target[(r, a)][0] for a in arms], images, data_dir=data_dir)
        src_seed = authors_draw_seed(src_record)
        for arm, net in zip(arms, nets):
            seeds = (src_seed, authors_draw_seed(records[arm]))
            cells.setdefault(r, {})[arm] = measure(src, net, eps, seeds)
            networks[f"run{r}/{arm}"] = net.info | {"draw_seed": seeds[1]}
            print(f"run {r} {arm}: " + "; ".join(
                f"{conv} {kind} {e}: {cells[r][arm][conv][kind][e]:.2f}"
                for conv in CONVENTIONS for kind in KINDS for e in cells[r][arm][conv][kind]), flush=True)
        networks[f"source run{r}/{source_arm}"] = src.info | {"draw_seed": src_seed}
    return {"cells": {str(r): v for r, v in cells.items()}, "networks": networks,
            "summary": summarize(cells)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", metavar="SOURCE_DIR", help="the protocol whose networks craft the examples")
    p.add_argument("target", metavar="TARGET_DIR", help="the protocol whose networks classify them")
    p.add_argument("--source-arm", default=CONTROL, help="which of SOURCE's arms crafts them (default: control)")
    p.add_argument("--eps", type=numbers("--eps", least=0), default=[0.1, 0.2],
                   help="comma-separated budgets (default 0.1,0.2)")
    p.add_argument("--images", type=whole("--images", least=1), default=None,
                   help="the first N test images (default all)")
    p.add_argument("--data-dir", default=None, help="where the dataset files are (else NANOSGM_DATA, ...)")
    p.add_argument("--json", default=None, help="write the cells, the networks and the summary here")
    args = p.parse_args(argv)
    eps = args.eps
    got = run(args.source, args.target, eps, args.images, args.source_arm, args.data_dir)
    print(format_table(got["summary"]))
    if args.json:
        write_json_atomic(args.json, {
            "command": " ".join(["python tools/transfer_table.py"] + (sys.argv[1:] if argv is None else argv)),
            "git_commit": git_commit(), "source": args.source, "target": args.target,
            "source_arm": args.source_arm, "eps": eps, "images": args.images} | got)
        print(f"wrote {args.json}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """main() with the refusals as one line ``error: ...`` and exit status 1."""
    return one_line_errors(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
