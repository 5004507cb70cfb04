"""The flags ``python -m nanosgm.train`` and ``python -m nanosgm.experiments`` share, and their checks."""
from __future__ import annotations

import argparse

from .. import backend, models
from ..plumbing.errors import CliError
from ..plumbing.flags import named, number, numbers, whole

__all__ = ["dataset_name", "optimizer_name", "add_common_arguments", "check_common_args", "common_setup"]


def dataset_name(name: str) -> str:
    """argparse ``type=``: a dataset name in any accepted spelling ("MNIST", "cifar-10") -> its registry key."""
    from ..data.registry import canonical_name
    try:
        return canonical_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def optimizer_name(name: str) -> str:
    """argparse ``type=``: an optimizer :func:`nanosgm.optim.build_optimizer` knows (wame, wame-printed, adam,
    sgd), returned as given; any other name is a CliError before any data loads."""
    from ..optim import build_optimizer
    try:
        build_optimizer(name)
    except ValueError as exc:
        raise CliError(f"--optimizer: {exc}") from None
    return name


def add_common_arguments(p: argparse.ArgumentParser, what: str, dataset_optional: bool = False) -> None:
    """The flags ``python -m nanosgm.train`` and ``python -m nanosgm.experiments`` share (``what`` names
    the thing trained, for the help texts; ``dataset_optional``: the dataset positional may be left out, and is
    then None, for a command that can do without it)."""
    p.add_argument("dataset", type=dataset_name, nargs="?" if dataset_optional else None,
                   help="mnist, fashion-mnist, cifar10 or cifar100 (any spelling: MNIST, cifar-10, ...)"
                        + ("; not needed with --tables-only --out FOLDER" if dataset_optional else ""))
    p.add_argument("--model", default=None, help="dnn (Table 1; dnn-keras: the authors' Keras reading of it), "
                   "cnn (Table 2) or cifar_cnn (Table 3); default: cnn for MNIST-like data, cifar_cnn for CIFAR")
    p.add_argument("--epochs", type=whole("--epochs", least=1), default=5,
                   help=f"epochs {what} (default 5; the paper trains 50)")
    p.add_argument("--batch-size", type=whole("--batch-size", least=2), default=128,
                   help="mini-batch size (default 128, the authors'; at least 2: batch normalisation needs two samples)")
    p.add_argument("--input-lr", type=number("--input-lr"), default=0.2, help="SGM's lambda-bar (default 0.2, the "
                   "paper's; 0 = the control)")
    p.add_argument("--augment", action="store_true", help="elastic distortions (MNIST) or rotation/zoom/flip (CIFAR)")
    p.add_argument("--eps", type=numbers("--eps", least=0), default="0.001,0.01,0.1,0.2", help="comma-separated FGSM/PGD epsilons (Eq. 20; default: "
                   "the paper's 0.001,0.01,0.1,0.2)")
    p.add_argument("--limit", type=whole("--limit", least=2), default=None,
                   help="use only the first N training images (quick runs)")
    p.add_argument("--eval-limit", type=whole("--eval-limit", least=1), default=None,
                   help="use only the first N validation and test images")
    p.add_argument("--data-dir", type=named("--data-dir"), default=None, help="where the dataset files are (else NANOSGM_DATA, the cache, ...)")
    p.add_argument("--backend", default=None, choices=["numpy", "cupy"], help="array backend (default: "
                   "NANOSGM_BACKEND or numpy)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (result lines are still printed)")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def check_common_args(args: argparse.Namespace) -> list:
    """The eps list, after checking the flags ``train`` and ``experiments`` share (CliError if one is bad;
    the numbers were checked where they were parsed, by the ``type=`` of each flag: ``--eps`` by
    :func:`nanosgm.plumbing.flags.numbers`, finite budgets >= 0, none twice)."""
    return list(args.eps)


def common_setup(args: argparse.Namespace) -> tuple[list[float], str]:
    """(eps list, model name) for ``train`` and ``experiments``: checks the shared flags, switches to
    ``--backend`` and resolves ``--model`` (default by dataset). Raises CliError."""
    from .recipe import DEFAULT_MODEL
    eps_list = check_common_args(args)
    if args.backend:
        backend.use(args.backend)
    backend.name()                        # an unusable NANOSGM_BACKEND is refused here, before any data loads
    model_name = args.model or DEFAULT_MODEL[args.dataset]
    if models.ALIASES.get(model_name, model_name) not in models.MODELS:
        raise CliError(f"unknown model {model_name!r}; choose one of {', '.join(sorted(models.MODELS))}")
    return eps_list, model_name
