"""What the bench times: one zero-argument step function per column (a training step with Adam or WAME, an
inference batch, an FGSM batch) for a nanosgm network and for its torch translation, on one random batch.

``python -m nanosgm.bench`` (:mod:`nanosgm.bench.bench`) times these steps; ``--launches``
(:mod:`nanosgm.bench.launches`) counts what the same steps ask of a GPU on the CPU stand-in.
"""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from .. import attacks, backend, models
from ..layers import Sequential, SoftmaxCrossEntropy
from ..optim import build_optimizer
from .torch_bridge import import_torch

if TYPE_CHECKING:
    import torch as _torch

    from ..backend import Array
    from ..optim import Optimizer

__all__ = ["INPUT_SHAPES", "COLUMNS", "HEADERS", "TORCH_COLUMNS", "FGSM_EPS", "LR", "make_batch", "nanosgm_cells",
           "torch_cells", "import_full_precision", "full_precision", "grid"]

INPUT_SHAPES = {"dnn": models.MNIST_SHAPE, "dnn-keras": models.MNIST_SHAPE, "cnn": models.MNIST_SHAPE, "cifar_cnn": models.CIFAR_SHAPE}
COLUMNS = ("train_adam", "train_wame", "infer", "fgsm")          # JSON keys, in table order
HEADERS = {"train_adam": "train img/s (Adam)", "train_wame": "train img/s (WAME)",
           "infer": "infer img/s", "fgsm": "FGSM img/s"}
TORCH_COLUMNS = ("train_adam", "infer", "fgsm")                    # torch has no WAME
FGSM_EPS = 0.1
LR = 1e-3


def import_full_precision() -> ModuleType:
    """torch, imported on demand (TorchMissing, saying what to do, when it is not installed), with TF32
    off (:func:`full_precision`)."""
    return full_precision(import_torch("--compare-torch"))


def full_precision(torch: ModuleType) -> ModuleType:
    """``torch`` with TF32 turned off for matrix products and cuDNN convolutions, so that on an Ampere or
    newer GPU torch computes in float32 as nanosgm does (TF32 keeps 10 mantissa bits: a faster, less
    precise comparison). No effect on the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


# ----------------------------------------------------------------------------------------------- nanosgm
def nanosgm_cells(model: Sequential, x: Array, y: Array) -> dict:
    """{column: zero-argument step function} for the nanosgm network ``model`` on backend arrays x, y.
    The training steps treat the loss as :func:`nanosgm.fit` does: kept on the device, the labels checked
    from host bounds (found here, once), so a step reads nothing back. FGSM gets the same bounds (as
    :func:`nanosgm.attacks.evaluate` finds them on the host); it reads back the inputs' min and max."""
    loss_fn = SoftmaxCrossEntropy(loss_on_device=True)
    y_host = np.asarray(backend.to_host(y))
    y_bounds = (int(y_host.min()), int(y_host.max())) if y_host.size else None
    loss_fn.known_labels(y, y_bounds)

    def train_with(opt: Optimizer) -> Callable[[], None]:
        def step() -> None:
            logits = model.forward(x, training=True)
            loss_fn.forward(logits, y)
            model.backward(loss_fn.backward())         # dE/dX at the inputs + every weight gradient
            opt.step(model)
        return step

    return {
        "train_adam": train_with(build_optimizer("adam", LR)),
        "train_wame": train_with(build_optimizer("wame", LR)),
        "infer": lambda: model.forward(x, training=False),
        "fgsm": lambda: attacks.fgsm(model, x, y, FGSM_EPS, y_bounds=y_bounds),
    }


# ----------------------------------------------------------------------------------------------- torch
def torch_cells(tmodel: _torch.nn.Module, x: _torch.Tensor, y: _torch.Tensor) -> dict:
    """{column: zero-argument step function} for the torch network ``tmodel`` on tensors x, y."""
    torch = import_full_precision()
    F = torch.nn.functional
    opt = torch.optim.Adam(tmodel.parameters(), lr=LR)

    def train_adam() -> _torch.Tensor | None:
        tmodel.train()
        opt.zero_grad(set_to_none=True)
        xi = x.detach().requires_grad_(True)          # so backward also computes dE/dX, as nanosgm
        loss = F.cross_entropy(tmodel(xi), y)
        loss.backward()
        opt.step()
        return xi.grad

    def infer() -> _torch.Tensor:
        tmodel.eval()
        with torch.no_grad():
            return tmodel(x)

    def fgsm() -> _torch.Tensor:
        tmodel.eval()
        xi = x.detach().requires_grad_(True)
        loss = F.cross_entropy(tmodel(xi), y)
        (g,) = torch.autograd.grad(loss, xi)
        return torch.clamp(x + FGSM_EPS * torch.sign(g), 0.0, 1.0)

    return {"train_adam": train_adam, "infer": infer, "fgsm": fgsm}


def make_batch(name: str, batch_size: int, seed: int) -> tuple[Sequential, Array, Array, np.ndarray, np.ndarray]:
    """(model, x, y, x_host, y_host): a fresh float32 paper network and a random batch on the backend."""
    shape = INPUT_SHAPES[name]
    g = np.random.default_rng(seed)
    x_host = g.random((batch_size,) + tuple(shape), dtype=np.float32)
    y_host = g.integers(0, 10, batch_size).astype(np.int64)
    backend.seed(seed)
    model = models.build(name, dtype="float32")
    return model, backend.to_device(x_host), backend.to_device(y_host), x_host, y_host


# ----------------------------------------------------------------------------------------------- report
def grid(head: list[str], rows: list[list[str]], left: int = 2) -> str:
    """The rows under the head as a plain-text table: the first ``left`` columns left-aligned, the rest right."""
    widths = [max(len(str(row[i])) for row in rows + [head]) for i in range(len(head))]

    def line(row: list[str]) -> str:
        return " | ".join(str(v).ljust(w) if i < left else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
    return "\n".join([line(head), "-+-".join("-" * w for w in widths)] + [line(r) for r in rows])
