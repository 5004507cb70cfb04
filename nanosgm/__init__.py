"""nanosgm: a from-scratch NumPy/CuPy framework for "Hardening against adversarial examples with the
Smooth Gradient Method" (Mosca & Magoulas).

The house, in the paper's order (a learner reads the first five; the last two are plumbing):
    * ``backend``: NumPy or CuPy, seeded generators
    * ``layers/``: hand-written forward/backward pairs that backpropagate to the inputs (Eq. 6-14),
      ``Sequential``, gradient checking
    * ``optim/``: WAME (Eq. 1-2), Adam, SGD and the authors' learning-rate schedule
    * ``models``: the paper's networks (Tables 1-3)
    * ``data/``: MNIST / Fashion-MNIST / CIFAR loading, preprocessing and augmentation (Eq. 22-35)
    * ``methods/``: how a network is trained: ``fit`` and the methods (control, SGM Eq. 15/21, the
      authors' published code path, adversarial training)
    * ``attacks/``: FGSM (Eq. 20), PGD, APGD, Square, accuracy under attack
    * ``experiments/``: the protocol: lock-step runs, statistics, Tables 4-5, verdicts, figures, the audit
    * ``bench/``: speed against PyTorch, per-layer profiles
    * ``plumbing/``: files, locks, state checks, checkpoints, command-line error reporting, threads

The names a learner uses are importable from here, loaded on first use (``import nanosgm`` itself loads
no NumPy and sets nothing):

    >>> import nanosgm
    >>> model = nanosgm.Sequential([nanosgm.Flatten(), nanosgm.Dense(4, 3)])
    >>> type(nanosgm.WAME()).__name__, callable(nanosgm.fit), callable(nanosgm.fgsm)
    ('WAME', True, True)
"""
import importlib

__version__ = "0.1.0"

_NAMES = {name: "layers" for name in ("Layer", "Dense", "Conv2D", "ReLU", "Flatten", "Dropout", "BatchNorm",
                                       "MaxPool2D", "GlobalAvgPool2D", "SoftmaxCrossEntropy", "Sequential")}
_NAMES.update({name: "optim" for name in ("WAME", "Adam", "SGD", "build_optimizer")})
_NAMES.update({name: "methods" for name in ("fit", "FitResult", "RunKeeping", "Method", "Control", "SGM",
                                         "SmoothGradient", "Published", "AdversarialTraining", "parse_arm")})
_NAMES.update({name: "attacks" for name in ("fgsm", "pgd", "accuracy", "evaluate", "input_gradient")})
_MODULES = ("backend", "layers", "optim", "models", "data", "methods", "attacks", "experiments", "bench",
            "plumbing")

__all__ = sorted(_NAMES) + list(_MODULES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
