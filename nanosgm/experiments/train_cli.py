"""``python -m nanosgm.train``: train one of the paper's networks and measure it.

The command line around :func:`nanosgm.experiments.network.train_network`: flags, the run folder (its
lock, resuming, replacing an earlier run), and the printed table. The training loop itself is
:func:`nanosgm.methods.fit`.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

from .. import backend
from ..methods import Interrupted
from ..methods.adversarial import ARM_NAMES
from ..methods.base import format_number
from ..plumbing import checkpoint as ckpt
from ..plumbing.cli import CliError, check_out_folder, run_cli
from ..plumbing.flags import number, whole
from . import recipe
from .cli_args import add_common_arguments, common_setup

__all__ = ["main", "build_parser", "default_out", "spec_from_args", "RUN_FILES"]


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m nanosgm.train",
        description="Train one of the paper's networks with the Smooth Gradient Method (or the control, "
                    "--input-lr 0), then measure clean accuracy, FGSM accuracy (Eq. 20) and PGD-10 accuracy "
                    "on the test set.")
    add_common_arguments(p, "of training")
    p.add_argument("--optimizer", default="wame", help="wame (the paper's, in the authors' published form; the "
                   "default), wame-printed (the WAME paper's printed algorithm), adam or sgd")
    p.add_argument("--lr", type=number("--lr", above=0), default=None, help="initial learning rate (default: 1e-3 "
                   "for wame/adam, 0.01 for sgd); decays 10x twice, as the authors' schedule (nanosgm.optim.schedules)")
    p.add_argument("--constant-lr", action="store_true", help="no learning-rate decay")
    p.add_argument("--per-sample", action="store_true", help="scale input updates by the batch size "
                   "(gradient of each sample's own loss) instead of the batch-mean convention")
    p.add_argument("--published", action="store_true", help="train as the authors' Keras code did: an extra "
                   "training-mode pass after each step whose input update is thrown away (inputs never move)")
    p.add_argument("--adv", default=None, choices=["fgsm", "fgsm-rs", "pgd"], help="adversarial training instead "
                   "of SGM: FGSM with the clean/adversarial loss mix (Goodfellow et al. 2015), FGSM with a random "
                   "start (Wong et al. 2020) or PGD (Madry et al. 2018); see nanosgm.methods.adversarial")
    p.add_argument("--adv-eps", type=number("--adv-eps", above=0), default=0.1,
                   help="the adversarial-training budget (default 0.1)")
    p.add_argument("--adv-steps", type=whole("--adv-steps", least=1), default=7, help="PGD steps of --adv pgd (default 7)")
    p.add_argument("--seed", type=whole("--seed", least=0), default=0, help="seeds the initial weights, batch order and dropout (default 0)")
    p.add_argument("--val-size", type=whole("--val-size", least=0), default=None, metavar="N", help="validation images held out from the "
                   "end of the official training set (default: the paper's split, 10,000 for MNIST and CIFAR); "
                   "0 trains on the whole official training set and keeps the last epoch")
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>-<model>-<optimizer>-e<epochs>-ilr<input-lr>-s<seed>, "
                   "plus -n<limit>, -v<val-size>, -ps, -pub and -aug when given)")
    p.add_argument("--pgd", type=whole("--pgd", least=0), default=500, metavar="N", help="also run PGD (10 steps) "
                   "on the first N test images at each eps, as a check against gradient masking (0 = skip; default 500)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.npz if it exists")
    p.add_argument("--reevaluate", action="store_true", help="with --resume on a finished run: measure it again")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    return p


def default_out(args, model_name: str) -> str:
    """The run folder named after the settings that change the result, so that runs do not collide."""
    ilr = format_number(args.input_lr)                      # exact: close rates get their own folders
    name = f"{args.dataset}-{model_name}-{args.optimizer}-e{args.epochs}-ilr{ilr}-s{args.seed}"
    for flag, suffix in ((args.limit is not None, f"-n{args.limit}"), (args.val_size is not None, f"-v{args.val_size}"),
                         (args.per_sample, "-ps"), (args.published, "-pub"),
                         (bool(args.adv), f"-{args.adv}{format_number(args.adv_eps)}"), (args.augment, "-aug")):
        name += suffix if flag else ""
    return os.path.join("runs", name)


def spec_from_args(args, model_name, eps_list):
    """The :class:`~nanosgm.experiments.network.NetworkSpec` that ``python -m nanosgm.train``'s flags describe."""
    from .network import NetworkSpec
    return NetworkSpec(dataset=args.dataset, model=model_name, seed=args.seed, epochs=args.epochs,
                       batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, constant_lr=args.constant_lr,
                       method=method_label(args), augment=args.augment, limit=args.limit, eval_limit=args.eval_limit,
                       val_size=args.val_size, eps=tuple(eps_list), pgd=args.pgd, backend=backend.name(),
                       data_dir=args.data_dir)


def method_label(args) -> str:
    """The arm-grammar label of the training method the flags ask for."""
    if args.published:
        return "published"
    if args.adv:
        return f"{ARM_NAMES[args.adv]}:{args.adv_eps!r}" + (f":{args.adv_steps}" if args.adv == "pgd" else "")
    if args.input_lr == 0:
        return "control"
    return f"sgm:{args.input_lr!r}" + (":per-sample" if args.per_sample else "")


RUN_FILES = ("results.json", "checkpoint.npz", "model.npz")


def _claim_folder(args, out) -> bool:
    """Decide what to do with an earlier run in ``out`` (we hold its lock); True: it is complete, leave it."""
    for tmp in glob.glob(os.path.join(out, ".tmp-*")):      # a save killed half-way (we hold the lock)
        os.remove(tmp)
    earlier = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if not earlier:
        return False
    if args.overwrite:
        for f in earlier:
            os.remove(os.path.join(out, f))
        return False
    if not args.resume:
        raise CliError(f"{out} already holds a run ({', '.join(earlier)}); use --resume to continue it, --overwrite "
                       f"to replace it, or --out to write elsewhere")
    done = os.path.exists(os.path.join(out, "results.json")) and \
        ckpt.saved_epoch(os.path.join(out, "checkpoint.npz")) >= args.epochs
    return done and not args.reevaluate


def _print_results(record) -> None:
    r = record["results"]
    k = r["pgd_images"]
    print(f"\nclean test accuracy: {r['clean_pct']:.2f}%  (best epoch {record['best_epoch']}, "
          f"training {record['train_seconds']:.0f}s, evaluation {record['eval_seconds']:.0f}s)")
    if k:
        print(f"(the last two columns: FGSM and {r['pgd_steps']}-step PGD on the first {k} test images, side by "
              f"side; PGD is the stronger attack)")
    header = f"{'eps':>8} | {'FGSM acc':>9}" + (f" | {f'first {k}: FGSM':>15} | {'PGD':>7}" if k else "")
    print(header)
    print("-" * len(header))
    for e, a in r["fgsm_pct"].items():
        line = f"{format_number(float(e)):>8} | {a:8.2f}%"       # exact: close budgets keep their own rows
        if k:
            line += f" | {r['fgsm_pgd_images_pct'][e]:14.2f}% | {r['pgd_pct'][e]:6.2f}%"
        print(line)


def _train(args, spec, out, model_name) -> int:
    from ..plumbing.runlock import RunLock
    prov = recipe.provenance("nanosgm.train", args.argv)
    lock = RunLock(out)
    if os.path.isdir(out):               # hold an existing folder from the start; a new one once the data loaded
        lock.acquire()
    try:
        if lock.held and _claim_folder(args, out):
            print(f"{out} holds a finished run of {args.epochs} epoch(s) ({out}/results.json); nothing to do "
                  f"(add --reevaluate to measure it again)")
            return 0
        from .network import dataset_for
        print(dataset_for(spec, progress=not args.no_progress)[0])
        if not lock.held:
            lock.acquire()
            _claim_folder(args, out)
        return _train_locked(args, spec, out, model_name, prov)
    finally:
        lock.release()


def _train_locked(args, spec, out, model_name, prov) -> int:
    from ..plumbing.files import write_json_atomic
    from .network import train_network
    print(f"{model_name} | optimizer {args.optimizer} | method {spec.method} | seed {spec.seed} | "
          f"backend {backend.name()} | out {out}", flush=True)
    try:
        record = train_network(spec, checkpoint=os.path.join(out, "checkpoint.npz"), resume=args.resume,
                               model_path=os.path.join(out, "model.npz"), progress=not args.no_progress, log=print)
    except Interrupted as exc:
        if exc.saved_epoch >= spec.epochs:
            raise CliError(f"interrupted during the final evaluation; training is complete in {out}/checkpoint.npz: "
                           f"run the same command with --resume to evaluate it", code=130) from None
        kept = f"epoch {exc.saved_epoch} is saved" if exc.saved_epoch else "no epoch was finished and saved yet"
        raise CliError(f"interrupted: {kept} in {out}/checkpoint.npz; run the same command with --resume to "
                       f"continue", code=130) from None
    except KeyboardInterrupt:            # during the final evaluation (fit had returned)
        raise CliError(f"interrupted during the final evaluation; training is complete in {out}/checkpoint.npz: "
                       f"run the same command with --resume to evaluate it", code=130) from None
    record.pop("snapshots", None)
    _print_results(record)
    write_json_atomic(os.path.join(out, "results.json"), {"provenance": dict(prov, finished=recipe.now()), **record})
    print(f"wrote {out}/results.json, {out}/model.npz and {out}/checkpoint.npz")
    return 0


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    eps_list, model_name = common_setup(args)
    if (args.published or args.adv) and args.per_sample:
        raise CliError("--published and --adv never move the stored inputs, so --per-sample has no meaning with them")
    if args.published and args.adv:
        raise CliError("choose one of --published and --adv")
    try:
        recipe.optimizer_and_schedule(args.epochs, args.optimizer, args.lr, constant=args.constant_lr)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    out = args.out or default_out(args, model_name)
    check_out_folder(out)
    spec = spec_from_args(args, model_name, eps_list)
    return _train(args, spec, out, model_name)


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
