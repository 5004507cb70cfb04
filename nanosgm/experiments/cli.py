"""``python -m nanosgm.experiments``: the paper's protocol from the command line (see :mod:`.protocol`)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from .. import backend
from ..plumbing.argparser import Parser
from ..plumbing.cli import CliError, check_out_folder, run_cli
from ..plumbing.flags import named, whole, wholes
from . import paper_tables, recipe
from .cli_args import add_common_arguments, common_setup, optimizer_name
from .figures import write_figures
from .network import NetworkSpec
from .protocol import load_protocol, parse_arms, run_protocol, selected_arms
from .stats import summarize
from .tables import format_tables

__all__ = ["main", "build_parser"]


PROG = "python -m nanosgm.experiments"


def build_parser(prog: str = PROG) -> Parser:
    """The flags; ``prog`` is the command in the usage line and messages (``nanosgm experiments`` from
    :mod:`nanosgm.commands`)."""
    p = Parser(
        prog=prog,
        description="The paper's protocol (Sections 5-6): N lock-step runs of the control and of each arm "
                    "(SGM, SGM per-sample, the authors' published code path), medians of clean and FGSM "
                    "accuracy (Tables 4-5), Wilcoxon tests. Resumable; networks can train in parallel.")
    add_common_arguments(p, "per network", dataset_optional=True)
    p.add_argument("--runs", type=whole("--runs", least=1), default=5,
                   help="lock-step runs (seeds) per arm (default 5, the paper's)")
    p.add_argument("--arms", type=named("--arms"), default=None, help="comma-separated arms beside the control: sgm:LAMBDA, "
                   "sgm:LAMBDA:per-sample, published; the adaptive input updates sgm-momentum|sgm-adam|sgm-sign:STEP"
                   "[:per-sample][:ball=R][:clip]; input-gradient regularisation gradreg:MU, gradreg-fd:MU:H; the "
                   "adversarial-training baselines fgsm-at:EPS, fgsm-rs:EPS, pgd-at:EPS:STEPS (default: "
                   "sgm:<--input-lr>, the paper's method; the grammar: nanosgm.methods.arms)")
    p.add_argument("--optimizer", type=optimizer_name, default="wame", help="wame (default), wame-printed, adam or sgd")
    p.add_argument("--pgd", type=whole("--pgd", least=0), default=0, metavar="N",
                   help="also PGD-10 on the first N test images (default 0)")
    p.add_argument("--watch-fgsm", type=whole("--watch-fgsm", least=0), default=0, metavar="K",
                   help="every K epochs, FGSM on the validation split under both conventions, in each network's "
                        "history (default 0: never)")
    p.add_argument("--out", type=named("--out"), default=None, help="protocol folder (default runs/protocol-<dataset>-<model>[-aug])")
    p.add_argument("--seed", type=whole("--seed", least=0), default=0,
                   help="seed of run 0; run i uses seed + i (default 0)")
    p.add_argument("--workers", type=whole("--workers", least=1), default=1, help="networks trained at once in "
                   "local worker processes (default 1: in this process)")
    p.add_argument("--threads", type=whole("--threads", least=1), default=None,
                   help="BLAS threads per network, whichever way it runs "
                   "(default: cores // workers); every number of a record depends on it, so a protocol is resumed "
                   "with the count it was made with (protocol.json's blas_threads)")
    p.add_argument("--scheduler", type=named("--scheduler"), default=None, metavar="ADDRESS", help="send the networks to this Dask scheduler "
                   "(tcp://host:8786) instead of local workers; needs pip install -e \".[cluster]\"")
    p.add_argument("--refill-weights", action="store_true", help="train nothing new: train again the recorded "
                   "networks (of --runs and --arms) whose weights are missing from --out/models, keeping each one's "
                   "weights only when its new record equals the stored one (the weights are not committed; an audit "
                   "needs them); a record that names its weights' digests is checked by them, without evaluating "
                   "the network again; the session entry names the digests of the weights kept (\"refilled\")")
    p.add_argument("--only-runs", type=wholes("--only-runs", least=0), default=None, metavar="I[,J...]",
                   help="train (or --refill-weights) only these runs of --runs, e.g. 4 (default: every run); the "
                        "others stay as they are")
    p.add_argument("--only-arms", default=None, metavar="ARM[,ARM...]",
                   help="train (or --refill-weights) only these of the arms, the control included, e.g. control "
                        "(default: every arm); the others stay as they are")
    p.add_argument("--figures", action="store_true", help="also write Figures 1-6 as PNGs into --out")
    p.add_argument("--tables-only", action="store_true", help="train nothing: print the tables (and --figures) "
                   "from --out/protocol.json (its own configuration; the training flags are ignored)")
    p.add_argument("--paper-dir", type=named("--paper-dir"), default=None, help="read the paper's numbers from the table CSVs in this folder "
                   "(default: the numbers shipped in nanosgm.experiments.paper_tables)")
    return p


def _base_spec(args: argparse.Namespace, model_name: str, eps_list: list[float]) -> NetworkSpec:
    return NetworkSpec(dataset=args.dataset, model=model_name, epochs=args.epochs, batch_size=args.batch_size,
                       optimizer=args.optimizer, augment=args.augment, limit=args.limit, eval_limit=args.eval_limit,
                       eps=tuple(eps_list), pgd=args.pgd, watch_every=args.watch_fgsm, backend=backend.name(),
                       data_dir=args.data_dir)


def _check_paper_dir(args: argparse.Namespace) -> None:
    if args.paper_dir is not None and not os.path.isdir(args.paper_dir):
        raise CliError(f"--paper-dir {args.paper_dir!r} is not a folder")
    if args.paper_dir is not None:        # its tables are checked now, not after hours of training
        try:
            paper_tables.read_paper_tables(args.paper_dir)
        except ValueError as exc:
            raise CliError(str(exc)) from None


def _check_args(args: argparse.Namespace) -> list[str]:
    _check_paper_dir(args)
    if args.arms is None and args.input_lr == 0:
        raise CliError("--input-lr 0 would train two control networks; the control is always part of the protocol")
    try:
        return parse_arms(args.arms or f"sgm:{args.input_lr!r}")
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _only_arms(args: argparse.Namespace, arm_list: list[str]) -> list[str] | None:
    """``--only-arms``: the arms named, each one of the protocol's (``arm_list``, the control first); None if not given."""
    if args.only_arms is None:
        return None
    try:
        return selected_arms(args.only_arms.split(","), arm_list)
    except ValueError:
        raise CliError(f"--only-arms {args.only_arms!r}: name arms of this protocol, comma-separated: "
                       f"{', '.join(arm_list)}") from None


def _finish(args: argparse.Namespace, result: dict, out: str) -> int:
    print()
    print(format_tables(result, paper=True, paper_dir=args.paper_dir))
    if args.figures:
        ds = None
        try:
            cfg = result["config"]
            ds, clip = recipe.load_data(cfg["dataset"], data_dir=args.data_dir, limit=cfg["limit"],
                                        eval_limit=cfg["eval_limit"], progress=False)
        except Exception as exc:          # the figures that need no data are still written
            print(f"(Figures 3-4 skipped: the dataset could not be loaded: {exc})")
            clip = (0.0, 1.0)
        for p in write_figures(result, out, ds=ds, clip=clip):
            print(f"wrote {p}")
    return 0


def _tables_only(args: argparse.Namespace, out: str) -> int:
    """``--tables-only``: the tables (and ``--figures``) of the protocol in ``out``, from its own record."""
    _check_paper_dir(args)
    if not os.path.isfile(os.path.join(out, "protocol.json")):
        what = "is a file, not a protocol's folder" if os.path.isfile(out) else "holds no protocol.json"
        raise CliError(f"{out!r} {what}; run the protocol first (the same command without --tables-only), "
                       f"or give its folder with --out")
    result = load_protocol(out)
    made = result["config"].get("dataset")
    if args.dataset is not None and args.dataset != made:
        raise CliError(f"--tables-only: the protocol in {out} is of {made}, not {args.dataset}; name its dataset "
                       f"or none")
    result["summary"] = summarize(result)
    return _finish(args, result, out)


def _main(argv: list[str], prog: str = PROG) -> int:
    from ..plumbing.runlock import RunLock
    args = build_parser(prog).parse_args(argv)
    if args.tables_only and args.out is not None:     # the protocol's own configuration names its dataset
        return _tables_only(args, args.out)
    if args.dataset is None:
        raise CliError("the dataset is missing: name it first (mnist, fashion-mnist, cifar10 or cifar100); only "
                       "--tables-only --out FOLDER does without it")
    eps_list, model_name = common_setup(args)
    arm_list = _check_args(args)
    out = args.out or os.path.join("runs", f"protocol-{args.dataset}-{model_name}{'-aug' if args.augment else ''}")
    if args.tables_only:
        return _tables_only(args, out)
    if args.only_runs is not None and max(args.only_runs) >= args.runs:
        raise CliError(f"--only-runs {','.join(map(str, args.only_runs))}: the protocol has --runs {args.runs}, "
                       f"runs 0-{args.runs - 1}")
    only_arms = _only_arms(args, arm_list)
    check_out_folder(out)
    if args.refill_weights and not os.path.isfile(os.path.join(out, "protocol.json")):
        raise CliError(f"--refill-weights: {out} holds no protocol.json, so no network is recorded there; give the "
                       f"protocol's folder with --out")
    if os.path.exists(os.path.join(out, "protocol.json")):
        load_protocol(out)           # one that will not read is refused before its folder is locked
    if args.scheduler is None:       # a --data-dir or NANOSGM_DATA that is no folder: refused before anything is
        from ..data import locate, registry      # written (files not found anywhere are downloaded where loaded)
        locate.find(registry.get_spec(args.dataset), args.data_dir)
    base = _base_spec(args, model_name, eps_list)
    t0 = time.perf_counter()
    with RunLock(out):
        try:
            result = run_protocol(base, runs=args.runs, seed0=args.seed, arms=arm_list, out=out, workers=args.workers,
                                  scheduler=args.scheduler, threads=args.threads, progress=True,
                                  bars=not args.no_progress, argv=argv, refill=args.refill_weights,
                                  only_runs=args.only_runs, only_arms=only_arms)
        except KeyboardInterrupt:
            raise CliError(f"interrupted: finished networks are in {out}/protocol.json and those in progress resume "
                           f"from their last saved epoch; run the same command again to continue", code=130) from None
    print(f"\nwrote {os.path.join(out, 'protocol.json')} ({time.perf_counter() - t0:.0f}s)")
    return _finish(args, result, out)


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """``python -m nanosgm.experiments`` (``prog`` names the command in its help and messages); the exit status."""
    return run_cli(lambda a: _main(a, prog), argv)


if __name__ == "__main__":
    sys.exit(main())
