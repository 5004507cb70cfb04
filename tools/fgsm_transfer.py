"""FGSM crafted on one saved network and classified by another, under both conventions (issue 21: was the
paper's DNN measured on perturbations made on another network?).

The authors' scripts write one adversarial set per dataset (generate_adversarial_set.py) and test networks on
it (test_adversarial_set.py); if the DNN of Table 5 was tested on a set crafted on the CNN, its FGSM accuracy
is a transfer (black-box) number. For each eps this prints the TARGET's accuracy on FGSM examples crafted on
itself (white-box) and on examples crafted on SOURCE (transfer), each measured by the inference convention
and by the authors' (:mod:`nanosgm.attacks.conventions`; the dropout draws of the network whose gradient is
taken seeded as its training record seeded them: ``fgsm_authors_seed``, else the spec's seed), and writes them
with the command, the commit, both networks' weight digests and draw seeds:

    python tools/fgsm_transfer.py runs/cnn/model.npz runs/dnn/model.npz --json results/x/transfer.json

Each MODEL.npz needs the results.json that ``python -m nanosgm.train`` wrote beside it (as for the audit,
whose loader this is: ``nanosgm.experiments.audit``); both must be trained on the same dataset.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nanosgm import attacks                                 # noqa: E402
from nanosgm.experiments.audit import load_networks         # noqa: E402
from nanosgm.experiments.network import pct                 # noqa: E402
from nanosgm.experiments.recipe import git_commit           # noqa: E402
from nanosgm.experiments.records import authors_draw_seed   # noqa: E402
from nanosgm.plumbing.errors import NanosgmError            # noqa: E402
from nanosgm.plumbing.files import write_json_atomic        # noqa: E402
from nanosgm.plumbing.flags import numbers, whole           # noqa: E402

CONVENTIONS = ("inference", "authors")


def draw_seed(model_path: str) -> int:
    """The seed of the authors' FGSM dropout draws that the network's training record used (results.json
    beside ``model_path``, read by the audit's loader first, so it exists and its seal was checked)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(model_path)), "results.json")) as f:
        return authors_draw_seed(json.load(f))


def measure(source, target, eps: list[float], seeds: tuple[int, int] = (0, 0)) -> dict:
    """{convention: {"white-box": {eps: %}, "transfer": {eps: %}}} of the target network (audit Networks);
    ``seeds``: the (source's, target's) dropout-draw seeds, each used where its gradient is taken."""
    out = {}
    for conv in CONVENTIONS:
        white = attacks.fgsm_accuracy(target.model, target.X, target.y, eps, conv, clip=target.clip, seed=seeds[1])
        moved = attacks.fgsm_accuracy(source.model, target.X, target.y, eps, conv, clip=target.clip, seed=seeds[0],
                                      target=target.model)
        out[conv] = {"white-box": {repr(e): pct(a) for e, a in white.items()},
                     "transfer": {repr(e): pct(a) for e, a in moved.items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", metavar="SOURCE.npz", help="the network the examples are crafted on")
    p.add_argument("target", metavar="TARGET.npz", help="the network that classifies them")
    p.add_argument("--eps", type=numbers("--eps", least=0), default=[0.1, 0.2],
                   help="comma-separated budgets (default 0.1,0.2)")
    p.add_argument("--images", type=whole("--images", least=1), default=None,
                   help="the first N test images (default all)")
    p.add_argument("--data-dir", default=None, help="where the dataset files are (else NANOSGM_DATA, ...)")
    p.add_argument("--json", default=None, help="write the numbers here")
    args = p.parse_args(argv)
    eps = args.eps
    source, target = load_networks([args.source, args.target], args.images, data_dir=args.data_dir)
    if source.dataset != target.dataset:
        raise ValueError(f"{args.source} was trained on {source.dataset}, {args.target} on {target.dataset}: "
                         "give two networks of one dataset")
    seeds = (draw_seed(args.source), draw_seed(args.target))
    got = measure(source, target, eps, seeds)
    for conv, rows in got.items():
        for e in rows["white-box"]:
            print(f"{conv:9s} eps {e}: {target.name} {rows['white-box'][e]:.2f} % white-box, "
                  f"{rows['transfer'][e]:.2f} % on examples crafted on {source.name}")
    if args.json:
        write_json_atomic(args.json, {
            "command": " ".join(["python tools/fgsm_transfer.py"] + (sys.argv[1:] if argv is None else argv)),
            "git_commit": git_commit(), "images": int(len(target.y)),
            "source": source.info | {"draw_seed": seeds[0]}, "target": target.info | {"draw_seed": seeds[1]},
            "pct": got})
        print(f"wrote {args.json}")
    return 0


def one_line_errors(body: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """``body(argv)`` with its refusals as one line ``error: ...`` and exit status 1 (this tool's and
    tools/transfer_table.py's)."""
    try:
        return body(argv)
    except (OSError, ValueError, KeyError, NanosgmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cli(argv: list[str] | None = None) -> int:
    """main() with the refusals as one line ``error: ...`` and exit status 1."""
    return one_line_errors(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
