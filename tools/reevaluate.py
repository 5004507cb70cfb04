"""Add new measurements to the records of a committed protocol whose networks' weights are gone.

    python tools/reevaluate.py results/mnist-dnn --scratch runs/reeval-mnist-dnn [--workers 2] [--threads 1]

Each recorded network is trained again from its spec (the protocol's configuration, the arm's label and
seed ``seed0 + run``) in a scratch protocol folder, which resumes like any protocol; the new record must
equal the committed one in everything the committed one holds (initial-weight digest, per-epoch losses
and errors, best epoch, every committed result). Only then are the fields the committed record lacks
(FGSM under the authors' convention, the last epoch's results) copied into it, with a note of the code
that measured them, and ``protocol.json`` is rewritten atomically. A network that does not reproduce is
reported and left as it was (exit status 1).

``--threads`` must be what the protocol was trained with (a network's float32 numbers depend on its BLAS
thread count): every committed protocol's sessions say ``--threads 1``, the default here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nanosgm.plumbing.blas import limit_spin_wait  # noqa: E402

limit_spin_wait()

from nanosgm.experiments import recipe  # noqa: E402
from nanosgm.experiments.network import NetworkSpec  # noqa: E402
from nanosgm.experiments.protocol import load_protocol, run_protocol  # noqa: E402
from nanosgm.plumbing.files import write_json_atomic  # noqa: E402

NEW_RESULT_KEYS = ("fgsm_authors_pct", "fgsm_authors_seed")
NEW_RECORD_KEYS = ("results_last_epoch",)


def base_spec(config: dict, data_dir=None) -> NetworkSpec:
    """The protocol's base NetworkSpec from its saved configuration."""
    fields = {k: v for k, v in config.items() if k != "seed0"}
    return NetworkSpec(**fields, data_dir=data_dir)


def _history(h):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in h]


def differences(old: dict, new: dict) -> list:
    """What of the committed record ``old`` the retrained record ``new`` does not reproduce."""
    bad = [k for k in ("init_sha256", "best_epoch", "n_train", "n_test") if old.get(k) != new.get(k)]
    if _history(old["history"]) != _history(new["history"]):
        bad.append("history")
    bad += [f"results.{k}" for k, v in old["results"].items() if new["results"].get(k) != v]
    return bad


def merge(old: dict, new: dict) -> dict:
    """``old`` with the new measurements of ``new`` added (nothing of ``old`` changes)."""
    merged = json.loads(json.dumps(old))
    merged["results"].update({k: new["results"][k] for k in NEW_RESULT_KEYS if k in new["results"]})
    merged.update({k: new[k] for k in NEW_RECORD_KEYS if k in new})
    merged["reevaluated"] = {"git_commit": new.get("git_commit"), "finished": new.get("finished"),
                             "fields": [f"results.{k}" for k in NEW_RESULT_KEYS] + list(NEW_RECORD_KEYS)}
    return merged


def reevaluate(folder, scratch, *, workers: int = 1, threads: int = 1, data_dir=None) -> list:
    """Retrain, compare, merge (module docstring), one run (seed) at a time so that every finished run is
    merged and saved at once; returns the keys of the networks that did not reproduce."""
    committed = load_protocol(folder)
    todo = {k: r for k, r in committed["networks"].items() if "fgsm_authors_pct" not in r["results"]}
    if not todo:
        print(f"every network of {folder} already has the new measurements")
        return []
    base = base_spec(committed["config"], data_dir)
    failed = []
    for run in sorted({int(k.split("/")[0][3:]) for k in todo}):
        keys = [k for k in todo if k.startswith(f"run{run}/")]
        arms = [a for a in committed["arms"] if a != "control" and f"run{run}/{a}" in keys]
        fresh = run_protocol(base, runs=run + 1, seed0=committed["config"]["seed0"], arms=",".join(arms) or committed["arms"][1],
                             out=scratch, workers=workers, threads=threads, progress=True, argv=sys.argv[1:])
        for key in keys:
            new = fresh["networks"].get(key)
            bad = differences(todo[key], new) if new is not None else ["not retrained"]
            if bad:
                print(f"{key}: NOT reproduced ({', '.join(bad)}); left as it was")
                failed.append(key)
            else:
                committed["networks"][key] = merge(todo[key], new)
                print(f"{key}: reproduced; added {', '.join(NEW_RESULT_KEYS + NEW_RECORD_KEYS)}")
        out = {k: v for k, v in committed.items() if k not in ("snapshots", "summary")}
        write_json_atomic(os.path.join(folder, "protocol.json"), out)
    return failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tools/reevaluate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a protocol folder with protocol.json (e.g. results/mnist-dnn)")
    p.add_argument("--scratch", required=True, help="where the networks are trained again (a protocol folder)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads per worker: what the protocol used (1)")
    p.add_argument("--data-dir", default=os.environ.get("NANOSGM_DATA"))
    args = p.parse_args(argv)
    recipe.git_commit()
    return 1 if reevaluate(args.folder, args.scratch, workers=args.workers, threads=args.threads,
                           data_dir=args.data_dir) else 0


if __name__ == "__main__":
    sys.exit(main())
