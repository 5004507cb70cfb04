"""The spread of the authors' FGSM over dropout draws, for saved networks of a protocol (issue 21: "report
the spread over draws once").

The authors' convention takes the input gradient with dropout on, so its accuracy depends on the masks
drawn; every record fixes them with one seed (``fgsm_authors_seed``). This tool measures the same reading
(:data:`nanosgm.attacks.conventions.CONVENTIONS` ``["authors"]``: batch statistics over attack batches of
128, dropout on, no clip) with ``--draws`` seeds (the record's seed first, so the first draw gives the
record's number on the same images), and prints per network and eps the median, minimum, maximum and the
spread (max - min) in points; ``--json`` keeps them with the command.

    python tools/dropout_draws.py /work/run/results/mnist-dnn-conventions --networks run3/control,run3/sgm:0.2 \\
        --draws 10 --images 10000 --json results/mnist-dnn-conventions/dropout-draws.json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np                                          # noqa: E402

from nanosgm import attacks, backend                        # noqa: E402
from nanosgm.experiments import recipe                      # noqa: E402
from nanosgm.experiments.keys import file_stem, split_key   # noqa: E402
from nanosgm.experiments.network import pct                 # noqa: E402
from nanosgm.experiments.protocol import load_protocol      # noqa: E402
from nanosgm.plumbing.errors import NanosgmError            # noqa: E402
from nanosgm.plumbing.files import write_json_atomic        # noqa: E402
from nanosgm.plumbing.flags import numbers, whole           # noqa: E402


def draws(model, X, y, eps: list, seeds: list) -> dict:
    """{repr(eps): [accuracy (%) under the authors' convention with dropout seed s, for s in seeds]}."""
    out = {repr(e): [] for e in eps}
    for s in seeds:
        acc = attacks.fgsm_accuracy(model, X, y, eps, "authors", clip=(0.0, 1.0), seed=int(s))
        for e in eps:
            out[repr(e)].append(pct(acc[e]))
    return out


def summary(values: list) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "spread": round(max(values) - min(values), 4)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a protocol folder with protocol.json and models/")
    p.add_argument("--networks", required=True, help="comma-separated keys, e.g. run3/control,run3/sgm:0.2")
    p.add_argument("--draws", type=whole("--draws", least=1), default=10, help="dropout seeds per network (default 10)")
    p.add_argument("--eps", type=numbers("--eps", least=0), default=[0.1, 0.2],
                   help="comma-separated budgets (default 0.1,0.2)")
    p.add_argument("--images", type=whole("--images", least=1), default=None,
                   help="the first N test images (default all)")
    p.add_argument("--json", default=None, help="write the draws and their summary here")
    args = p.parse_args(argv)
    result = load_protocol(args.folder)
    config, eps = result["config"], args.eps
    ds, _ = recipe.load_data(config["dataset"], limit=config.get("limit"), eval_limit=config.get("eval_limit"),
                             val_size=config.get("val_size"), progress=False)
    n = len(ds.X_test) if args.images is None else min(args.images, len(ds.X_test))
    X, y = np.asarray(ds.X_test[:n]), np.asarray(ds.y_test[:n])
    out = {"command": " ".join(["python tools/dropout_draws.py"] + (argv or sys.argv[1:])), "images": n,
           "networks": {}}
    for key in args.networks.split(","):
        record = result["networks"][key]
        run, arm = split_key(key)
        backend.seed(0)
        model = recipe.build_model(config["model"], ds)
        model.load(os.path.join(args.folder, "models", file_stem(run, arm) + ".npz"))
        seed0 = int(record["results"].get("fgsm_authors_seed", record["spec"]["seed"]))
        got = draws(model, X, y, eps, list(range(seed0, seed0 + args.draws)))
        recorded = record["results"].get("fgsm_authors_pct") if n == record.get("n_test") else None
        out["networks"][key] = {"seeds": [seed0, seed0 + args.draws - 1], "pct": got, "recorded": recorded,
                                "summary": {e: summary(v) for e, v in got.items()}}
        for e, s in out["networks"][key]["summary"].items():
            first = got[e][0]
            check = "" if recorded is None else f" (record {recorded[e]}: {'equal' if recorded[e] == first else 'DIFFERS'})"
            print(f"{key} eps {e}: median {s['median']:.2f} [{s['min']:.2f}, {s['max']:.2f}] spread {s['spread']:.2f} "
                  f"over {args.draws} draws; first draw {first:.2f}{check}")
    if args.json:
        write_json_atomic(args.json, out)
        print(f"wrote {args.json}")
    return 0


def cli(argv=None) -> int:
    """main() with the refusals as one line ``error: ...`` and exit status 1."""
    try:
        return main(argv)
    except (OSError, ValueError, KeyError, NanosgmError) as exc:
        what = f"no network {exc} in the protocol (keys look like run3/control)" if isinstance(exc, KeyError) else exc
        print(f"error: {what}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli())
