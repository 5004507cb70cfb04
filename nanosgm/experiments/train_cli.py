"""``python -m nanosgm.train``: train one of the paper's networks and measure it.

The command line around :func:`nanosgm.experiments.network.train_network`: flags, the run folder (its
lock, resuming, replacing an earlier run), and the printed table. The training loop itself is
:func:`nanosgm.methods.fit`.

The run folder holds ``checkpoint.npz`` while the run trains (every finished epoch), then ``model.npz``
and ``results.json``, sealed with the sha256 of its content (:mod:`nanosgm.plumbing.seal`), so that an edit
is refused where it is read (``--resume``, ``nanosgm plot``, the robustness audit); the checkpoint is removed
once the results are written (``--keep-checkpoint`` keeps it, to measure the run again or continue it to
more epochs). ``--resume`` of a finished run checks that its ``results.json`` is unedited and describes the
run the flags ask for. ``--overwrite`` removes the earlier run only once the new one has saved its first
epoch, so a new run that fails before that leaves it as it was.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import backend
from ..methods.adversarial import ARM_NAMES
from ..methods.base import format_number
from ..plumbing import checkpoint as ckpt
from ..plumbing.argparser import Parser
from ..plumbing.cli import CliError, check_out_folder, interruption, interruption_status, run_cli
from ..plumbing.flags import named, number, whole
from ..plumbing.seal import RecordEdited, check_seal, is_sealed, seal, unsealed_note
from . import recipe
from .cli_args import add_common_arguments, common_setup

if TYPE_CHECKING:
    from .network import NetworkSpec

__all__ = ["main", "build_parser", "default_out", "spec_from_args", "RUN_FILES"]


PROG = "python -m nanosgm.train"


def build_parser(prog: str = PROG) -> Parser:
    """The flags; ``prog`` is the command in the usage line and messages (``nanosgm train`` from
    :mod:`nanosgm.commands`)."""
    p = Parser(
        prog=prog,
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
    p.add_argument("--out", type=named("--out"), default=None, help="output folder (default runs/<dataset>-<model>-<optimizer>-e<epochs>-ilr<input-lr>-s<seed>, "
                   "plus -n<limit>, -v<val-size>, -ps, -pub and -aug when given)")
    p.add_argument("--pgd", type=whole("--pgd", least=0), default=500, metavar="N", help="also run PGD (10 steps) "
                   "on the first N test images at each eps, as a check against gradient masking (0 = skip; default 500)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.npz if it exists")
    p.add_argument("--reevaluate", action="store_true", help="with --resume on a finished run: measure it again "
                   "(needs the checkpoint: --keep-checkpoint)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out (it is removed once "
                   "the new run has saved its first epoch)")
    p.add_argument("--keep-checkpoint", action="store_true", help="keep <out>/checkpoint.npz when the run finishes "
                   "(default: removed once results.json is written; the model and results stay)")
    p.add_argument("--threads", type=whole("--threads", least=1), default=None, metavar="N", help="BLAS threads "
                   "(and nanosgm's own) for this run (default: what the environment gives, all cores unless "
                   "OPENBLAS_NUM_THREADS / NANOSGM_THREADS say otherwise); float32 results depend on the BLAS "
                   "thread count, so a run resumes only with the count it was trained with")
    return p


def default_out(args: argparse.Namespace, model_name: str) -> str:
    """The run folder named after the settings that change the result, so that runs do not collide."""
    ilr = format_number(args.input_lr)                      # exact: close rates get their own folders
    name = f"{args.dataset}-{model_name}-{args.optimizer}-e{args.epochs}-ilr{ilr}-s{args.seed}"
    for flag, suffix in ((args.limit is not None, f"-n{args.limit}"), (args.val_size is not None, f"-v{args.val_size}"),
                         (args.per_sample, "-ps"), (args.published, "-pub"),
                         (bool(args.adv), f"-{args.adv}{format_number(args.adv_eps)}"), (args.augment, "-aug")):
        name += suffix if flag else ""
    return os.path.join("runs", name)


def spec_from_args(args: argparse.Namespace, model_name: str, eps_list: list[float]) -> NetworkSpec:
    """The :class:`~nanosgm.experiments.network.NetworkSpec` that ``python -m nanosgm.train``'s flags describe."""
    from .network import NetworkSpec
    return NetworkSpec(dataset=args.dataset, model=model_name, seed=args.seed, epochs=args.epochs,
                       batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, constant_lr=args.constant_lr,
                       method=method_label(args), augment=args.augment, limit=args.limit, eval_limit=args.eval_limit,
                       val_size=args.val_size, eps=tuple(eps_list), pgd=args.pgd, backend=backend.name(),
                       data_dir=args.data_dir)


def method_label(args: argparse.Namespace) -> str:
    """The arm-grammar label of the training method the flags ask for."""
    if args.published:
        return "published"
    if args.adv:
        return f"{ARM_NAMES[args.adv]}:{args.adv_eps!r}" + (f":{args.adv_steps}" if args.adv == "pgd" else "")
    if args.input_lr == 0:
        return "control"
    return f"sgm:{args.input_lr!r}" + (":per-sample" if args.per_sample else "")


RUN_FILES = ("results.json", "checkpoint.npz", "model.npz")


@dataclass(frozen=True)
class Plan:
    """What to do with the run folder: ``finished``: it holds this run, finished (nothing to do);
    ``replaces``: the earlier run's files that the new run replaces (--overwrite)."""
    finished: bool = False
    replaces: tuple = ()


def _claim_folder(args: argparse.Namespace, spec: NetworkSpec, out: str) -> Plan:
    """Decide what to do with an earlier run in ``out`` (we hold its lock); CliError when it cannot be
    resumed as asked. Nothing of the earlier run is removed here."""
    for tmp in glob.glob(os.path.join(out, ".tmp-*")):      # a save killed half-way (we hold the lock)
        os.remove(tmp)
    earlier = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if not earlier:
        return Plan()
    if args.overwrite:
        return Plan(replaces=tuple(earlier))
    if not args.resume:
        raise CliError(f"{out} already holds a run ({', '.join(earlier)}); use --resume to continue it, --overwrite "
                       f"to replace it, or --out to write elsewhere")
    if "results.json" in earlier:
        return _finished_run(args, spec, out)
    return Plan()


def _finished_run(args: argparse.Namespace, spec: NetworkSpec, out: str) -> Plan:
    """The plan for --resume of the finished run in ``out``, after checking that its results.json
    describes the run the flags ask for (CliError / ConfigMismatch naming what differs)."""
    path, ck = os.path.join(out, "results.json"), os.path.join(out, "checkpoint.npz")
    saved = _read_results(path, ck)["spec"]
    ckpt.check_config(path, saved, json.loads(json.dumps(spec.identity())), free=("epochs",))
    done = saved["epochs"]
    if args.epochs < done:
        raise CliError(f"{out} holds a finished run of {done} epoch(s), more than --epochs {args.epochs}; resume it "
                       f"with --epochs {done}, or use another --out folder")
    if args.epochs == done and not args.reevaluate:
        if not os.path.exists(os.path.join(out, "model.npz")):
            raise CliError(f"{out} holds the results of a finished run but not its model.npz; restore it, or train "
                           f"the run again with --overwrite")
        return Plan(finished=True)
    if not os.path.exists(ck):
        what = "measured again" if args.epochs == done else f"continued to {args.epochs} epochs"
        raise CliError(f"{out} holds a finished run of {done} epoch(s) whose checkpoint was removed when it finished, "
                       f"so it cannot be {what}; train it again with --overwrite (--keep-checkpoint keeps a "
                       f"finished run's checkpoint)")
    return Plan()


def _read_results(path: str, ck: str) -> dict:
    """The results.json of a finished run, its seal checked (:mod:`nanosgm.plumbing.seal`; one written
    before results were sealed is read with a note), or CliError saying it is damaged and what to do."""
    again = f"delete it and run the same command: --resume measures {ck} again" if os.path.exists(ck) else \
        "train the run again with --overwrite"
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"not valid JSON: {exc}"
        record, problem = None, f"cannot be read ({why})"
    else:
        problem = "is not the results record of a nanosgm.train run (no spec with its epochs)"
    sealed = is_sealed(record)
    if sealed:
        try:
            record = check_seal(record, path, fix=f"restore it from a copy, or {again}")
        except RecordEdited as exc:
            raise CliError(str(exc)) from None
    spec = record.get("spec") if isinstance(record, dict) else None
    if not (isinstance(spec, dict) and isinstance(spec.get("epochs"), int)):
        raise CliError(f"{path} {problem}; restore it from a copy, or {again}")
    if not sealed:
        print(unsealed_note(path, "read as it is"), file=sys.stderr)
    return record


def _print_results(record: dict) -> None:
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


def _train(args: argparse.Namespace, spec: NetworkSpec, out: str, model_name: str) -> int:
    from ..plumbing.runlock import RunLock
    prov = recipe.provenance("nanosgm.train", args.argv)
    lock = RunLock(out)
    if os.path.isdir(out):               # hold an existing folder from the start; a new one once the data loaded
        lock.acquire()
    try:
        plan = _claim_folder(args, spec, out) if lock.held else Plan()
        if not plan.finished:
            from .network import dataset_for
            print(dataset_for(spec, progress=not args.no_progress)[0])
            if not lock.held:
                lock.acquire()
                plan = _claim_folder(args, spec, out)
        if plan.finished:
            print(f"{out} holds a finished run of {args.epochs} epoch(s) ({out}/results.json); nothing to do"
                  + (" (add --reevaluate to measure it again)" if os.path.exists(os.path.join(out, "checkpoint.npz"))
                     else ""))
            return 0
        return _train_locked(args, spec, out, model_name, prov, plan)
    finally:
        lock.release()


class _Replacement:
    """The earlier run's files that a new run (--overwrite) replaces, removed once the new run's first epoch
    is on disk: a new run that fails before (its data, its model, its first epoch) leaves the earlier run
    as it was.

    ``log`` is the new run's log. fit logs an epoch only once its checkpoint is on disk, and a run that
    does not resume logs nothing else, so its first line means that the new checkpoint has replaced the
    earlier one; the earlier results and model are removed then."""

    def __init__(self, out: str, files: tuple[str, ...]) -> None:
        self.out, self.files = out, [f for f in files if f != "checkpoint.npz"]
        self.done = not files             # True: the folder holds the new run only

    def log(self, line: str) -> None:
        if not self.done:
            for f in self.files:
                if os.path.exists(os.path.join(self.out, f)):
                    os.remove(os.path.join(self.out, f))
            self.done = True
        print(line)


def _train_locked(args: argparse.Namespace, spec: NetworkSpec, out: str, model_name: str, prov: dict,
                  plan: Plan) -> int:
    from .network import train_network
    print(f"{model_name} | optimizer {args.optimizer} | method {spec.method} | seed {spec.seed} | "
          f"backend {backend.name()} | out {out}", flush=True)
    ck = os.path.join(out, "checkpoint.npz")
    run = _Replacement(out, plan.replaces)
    try:
        record = train_network(spec, checkpoint=ck, resume=args.resume and not args.overwrite,
                               model_path=os.path.join(out, "model.npz"), progress=not args.no_progress, log=run.log)
    except KeyboardInterrupt:            # Ctrl-C, SIGTERM, SIGHUP: in training (fit's Interrupted) or evaluation
        saved = ckpt.saved_epoch(ck) if run.done else 0
        during = " during the final evaluation" if saved >= spec.epochs else ""
        raise CliError(f"{interruption()}{during}; {_kept(args, out, spec, run)}",
                       code=interruption_status()) from None
    except OSError as exc:               # a full disk, ...: the checkpoint's write, or the model's once trained
        raise CliError(f"{_failed_write(exc, out, spec, run)}; {_kept(args, out, spec, run, fix=True)}") from None
    record.pop("snapshots", None)
    _print_results(record)
    _finish(args, out, spec, run, {"provenance": dict(prov, finished=recipe.now()), **record})
    return 0


def _kept(args: argparse.Namespace, out: str, spec: NetworkSpec, run: _Replacement, fix: bool = False) -> str:
    """What the run folder keeps after a run stopped early, and the command that goes on from there."""
    ck = os.path.join(out, "checkpoint.npz")
    if not run.done:
        return f"no epoch of the new run was saved; the earlier run in {out} is left as it was"
    saved = ckpt.saved_epoch(ck)
    again = "the command again with --resume in place of --overwrite" if args.overwrite else \
        "the same command with --resume"
    then = "free space (or fix the cause), then run" if fix else "run"
    if saved >= spec.epochs:
        return f"training is complete in {ck}: {then} {again} to evaluate it"
    kept = f"epoch {saved} is saved" if saved else "no epoch was finished and saved yet"
    return f"{kept} in {ck}; {then} {again} to continue"


def _failed_write(exc: OSError, out: str, spec: NetworkSpec, run: _Replacement) -> str:
    """Which file could not be written, and why."""
    if isinstance(exc, ckpt.CheckpointWriteError) or exc.filename:
        return str(exc) if not exc.filename else f"could not write {exc.filename}: {exc.strerror or exc}"
    if run.done and ckpt.saved_epoch(os.path.join(out, "checkpoint.npz")) >= spec.epochs:
        return f"could not write {out}/model.npz: {exc.strerror or exc}"     # the only file written once trained
    return str(exc)


def _finish(args: argparse.Namespace, out: str, spec: NetworkSpec, run: _Replacement, record: dict) -> None:
    """Write results.json, sealed (:mod:`nanosgm.plumbing.seal`), then remove the checkpoint unless
    --keep-checkpoint (the model and results stay)."""
    from ..plumbing.files import write_json_atomic
    path, ck = os.path.join(out, "results.json"), os.path.join(out, "checkpoint.npz")
    try:
        write_json_atomic(path, seal(record))
    except OSError as exc:
        raise CliError(f"could not write {path}: {exc.strerror or exc}; {_kept(args, out, spec, run, fix=True)}") \
            from None
    if not args.keep_checkpoint and os.path.exists(ck):
        os.remove(ck)
    kept = f", {out}/model.npz and {ck}" if args.keep_checkpoint else f" and {out}/model.npz"
    print(f"wrote {path}{kept}")


def _main(argv: list[str] | None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
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
    if args.threads is None:
        return _train(args, spec, out, model_name)
    from ..plumbing.threads import set_threads
    restore, _ = set_threads(args.threads)
    try:
        return _train(args, spec, out, model_name)
    finally:
        restore()


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """``python -m nanosgm.train`` (``prog`` names the command in its help and messages); the exit status."""
    return run_cli(lambda a: _main(a, prog), argv)


if __name__ == "__main__":
    sys.exit(main())
