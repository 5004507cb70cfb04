"""Training cost of each protocol arm relative to the control, measured side by side in one process.

The protocol's own ``train_seconds`` are wall times of networks that trained hours apart, under whatever
else shared the machine, so they cannot be divided by one another. This tool trains one short epoch of
every arm (the first ``--images`` training images, the same NetworkSpec path the protocol uses, nothing
evaluated) in interleaved rounds: control, arm 1, arm 2, ..., control, arm 1, ... so that every arm sees
the same load. It prints, per arm, the median seconds per training step and the median over rounds of its
time divided by the same round's control, as a Markdown table, with the load average before and after.

    python tools/arm_cost.py --arms sgm:0.2,sgm:0.2:per-sample,fgsm-at:0.1,fgsm-rs:0.1,pgd-at:0.1:7
"""
from __future__ import annotations

import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nanosgm.bench.bench import load_warnings, loadavg          # noqa: E402
from nanosgm.experiments.network import NetworkSpec, train_network     # noqa: E402
from nanosgm.experiments.protocol import arm_spec          # noqa: E402
from nanosgm.methods.arms import CONTROL, parse_arms       # noqa: E402
from nanosgm import models                                 # noqa: E402
from nanosgm.experiments.cli_args import dataset_name      # noqa: E402
from nanosgm.plumbing import threads                      # noqa: E402
from nanosgm.plumbing.argparser import Parser             # noqa: E402
from nanosgm.plumbing.cli import CliError, run_cli        # noqa: E402
from nanosgm.plumbing.flags import whole                  # noqa: E402


def epoch_seconds(spec: NetworkSpec) -> float:
    """Seconds of the one training epoch of ``spec`` (validation/test error over its tiny eval split included)."""
    record = train_network(spec)
    return sum(h["seconds"] for h in record["history"])


def measure(base: NetworkSpec, arms, rounds: int = 3) -> dict:
    """{arm label: [seconds of its epoch, per round]}, the arms (labels, control first) interleaved round by
    round; no snapshots are kept (the specs of a run other than 0)."""
    times = {label: [] for label in arms}
    for _ in range(rounds):
        for label in arms:
            times[label].append(epoch_seconds(arm_spec(base, label, base.seed, run=1)))
    return times


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Training steps in an epoch of `images`: fit skips a last batch of one sample (batch normalisation)."""
    return images // batch_size + (images % batch_size >= 2)


def table(times: dict, steps: int) -> str:
    """Markdown: arm, median s/step [range], and the median over rounds of arm / same-round control."""
    control = times[CONTROL]
    lines = ["| arm | s/step, median [range] | ÷ control, median [range] |", "| --- | --- | --- |"]
    for label, ts in times.items():
        ratios = [t / c for t, c in zip(ts, control)]
        lines.append(f"| {label} | {statistics.median(ts) / steps:.3f} [{min(ts) / steps:.3f}–{max(ts) / steps:.3f}] "
                     f"| {statistics.median(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}] |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """The command line; a bad flag, dataset or model is one line ``error: ...`` with exit status 1."""
    return run_cli(_main, argv)


def _main(argv: list) -> int:
    """Parse and check the flags (CliError), time the arms round by round, print the table; exit status 0."""
    p = Parser(prog="python tools/arm_cost.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", required=True, help="the arms beside the control, as python -m nanosgm.experiments takes them")
    p.add_argument("--dataset", type=dataset_name, default="mnist", help="default mnist")
    p.add_argument("--model", default="cnn", help="default cnn")
    p.add_argument("--images", type=whole("--images", least=2), default=2560,
                   help="training images per epoch (default 2560: 20 steps)")
    p.add_argument("--batch-size", type=whole("--batch-size", least=1), default=128, help="default 128, as the protocol")
    p.add_argument("--rounds", type=whole("--rounds", least=1), default=3, help="interleaved rounds (default 3)")
    p.add_argument("--threads", type=whole("--threads", least=1), default=1,
                   help="BLAS threads (default 1, as each protocol worker)")
    p.add_argument("--data-dir", default=None, help="where the dataset files are (else NANOSGM_DATA)")
    args = p.parse_args(argv)
    if args.images < 2 * args.batch_size:
        raise CliError(f"--images {args.images} must hold two batches of --batch-size {args.batch_size} or more")
    if models.ALIASES.get(args.model, args.model) not in models.MODELS:
        raise CliError(f"--model: unknown model {args.model!r}; choose one of {', '.join(sorted(models.MODELS))}")
    try:
        arms = parse_arms(args.arms)
    except ValueError as exc:
        raise CliError(f"--arms: {exc}") from None
    threads.set_threads(args.threads)
    base = NetworkSpec(dataset=args.dataset, model=args.model, epochs=1, batch_size=args.batch_size,
                       limit=args.images, eval_limit=2, eps=(), pgd=0, data_dir=args.data_dir)
    steps = steps_per_epoch(args.images, args.batch_size)
    before = loadavg()
    times = measure(base, arms, args.rounds)
    after = loadavg()
    print(f"{args.dataset} {args.model}: {args.images} images = {steps} steps of up to {args.batch_size} per "
          f"epoch, {args.rounds} interleaved rounds, {args.threads} BLAS thread(s); "
          f"load average {before:.2f} before, {after:.2f} after")
    print(table(times, steps))
    for w in load_warnings(before, after, os.cpu_count() or 1, args.threads):
        print(f"warning: {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
