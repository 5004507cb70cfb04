"""The paper's networks (Tables 1-3), built from nanosgm.layers.

Every hidden layer has batch normalisation, as the paper says ("batch normalisation on every layer").
Order inside a block: weights -> (max-pool) -> BatchNorm -> ReLU (-> Dropout). Putting the 2x2 max-pool
straight after the convolution, before BatchNorm and ReLU, is a reading, not the paper's words: ReLU
and max-pool commute, and normalising the pooled map costs a quarter of normalising the full one.
The output layer has no BatchNorm or ReLU: its outputs are the logits fed to the softmax.

``dnn-keras`` is Table 1 read through the authors' Keras code (nitbix/toupee, their MNIST model files): a
BatchNorm between the output layer and the softmax, Keras's batch-norm constants (momentum 0.99 there, 0.01 in
this library's convention; eps 1e-3) and Glorot-uniform initial weights. One of the readings that may explain
the gap between our DNN's FGSM accuracy and the paper's (issue 21).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Layer, MaxPool2D, ReLU, Sequential

if TYPE_CHECKING:
    import numpy as np

MNIST_SHAPE = (1, 28, 28)
CIFAR_SHAPE = (3, 32, 32)


def mnist_dnn(num_classes: int = 10, *, in_features: int = 784, dropout: float = 0.5, dtype="float32",
              rng: np.random.Generator | None = None, output_bn: bool = False, bn_momentum: float = 0.1,
              bn_eps: float = 1e-5, init: str = "he") -> Sequential:
    """Table 1: fully connected 2500-2000-1500-1000-500, each with BatchNorm, ReLU and 50% dropout; softmax.
    ``output_bn``: a BatchNorm on the logits too; ``bn_momentum``, ``bn_eps``: every BatchNorm's constants;
    ``init``: the Dense layers' initial weights ("he" or "glorot")."""
    def bn(n: int) -> BatchNorm:
        return BatchNorm(n, bn_momentum, bn_eps, dtype=dtype)

    layers: list[Layer] = [Flatten()]
    width = in_features
    for out in (2500, 2000, 1500, 1000, 500):
        layers += [Dense(width, out, dtype=dtype, rng=rng, init=init), bn(out), ReLU(), Dropout(dropout)]
        width = out
    layers.append(Dense(width, num_classes, dtype=dtype, rng=rng, init=init))
    if output_bn:
        layers.append(bn(num_classes))
    return Sequential(layers)


def mnist_dnn_keras(num_classes: int = 10, **kw) -> Sequential:
    """Table 1 as the authors' Keras code builds its MNIST models (module docstring): BatchNorm on the logits,
    momentum 0.01 (Keras 0.99), eps 1e-3, Glorot-uniform weights."""
    return mnist_dnn(num_classes, output_bn=True, bn_momentum=0.01, bn_eps=1e-3, init="glorot", **kw)


def mnist_cnn(num_classes: int = 10, *, in_channels: int = 1, dropout: float = 0.5, dtype="float32",
              rng: np.random.Generator | None = None) -> Sequential:
    """Table 2: 64 conv 5x5, 2x2 max-pool, 64 conv 5x5, 2x2 max-pool, 1024 fully connected with 50% dropout; softmax.

    Convolutions are "valid" (no padding), so 28x28 -> 24 -> 12 -> 8 -> 4 and the dense layer sees 64*4*4 = 1024 values.
    """
    return Sequential([
        Conv2D(in_channels, 64, 5, dtype=dtype, rng=rng), MaxPool2D(2), BatchNorm(64, dtype=dtype), ReLU(),
        Conv2D(64, 64, 5, dtype=dtype, rng=rng), MaxPool2D(2), BatchNorm(64, dtype=dtype), ReLU(),
        Flatten(),
        Dense(64 * 4 * 4, 1024, dtype=dtype, rng=rng), BatchNorm(1024, dtype=dtype), ReLU(), Dropout(dropout),
        Dense(1024, num_classes, dtype=dtype, rng=rng),
    ])


def cifar_cnn(num_classes: int = 10, *, in_channels: int = 3, dtype="float32",
              rng: np.random.Generator | None = None) -> Sequential:
    """Table 3, read as the all-convolutional "model C" of Springenberg et al. (2015), with BatchNorm.

    Table 3 as printed cannot be taken literally on 32x32 inputs (six stride-2 layers and two pools
    would shrink the map below 1x1; see EQUATIONS.md). The reading used here, an inference:
        96 3x3, 96 3x3, 96 3x3 stride 2          32 -> 32 -> 32 -> 16   (padding 1)
        192 3x3, 192 3x3, 192 3x3 stride 2       16 -> 16 -> 16 -> 8    (padding 1)
        192 3x3 (valid), 192 1x1, C 1x1          8 -> 6 -> 6 -> 6
        global average pooling, softmax
    The stride-2 convolutions play the role of the table's max-pools ("the max-pools may replace ...
    the stride-2 layers"). BatchNorm and ReLU follow every convolution but the last.
    """
    def block(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> list[Layer]:
        return [Conv2D(cin, cout, k, stride, padding, dtype=dtype, rng=rng), BatchNorm(cout, dtype=dtype), ReLU()]

    return Sequential(
        block(in_channels, 96, 3, 1, 1) + block(96, 96, 3, 1, 1) + block(96, 96, 3, 2, 1)
        + block(96, 192, 3, 1, 1) + block(192, 192, 3, 1, 1) + block(192, 192, 3, 2, 1)
        + block(192, 192, 3) + block(192, 192, 1)
        + [Conv2D(192, num_classes, 1, dtype=dtype, rng=rng), GlobalAvgPool2D()]
    )


MODELS: dict[str, Callable[..., Sequential]] = {
    "dnn": mnist_dnn, "dnn-keras": mnist_dnn_keras, "cnn": mnist_cnn, "cifar_cnn": cifar_cnn}
FLAT_INPUTS = ("dnn", "dnn-keras")          # the models that take in_features (the others: in_channels)
ALIASES = {"mnist_dnn": "dnn", "mnist_cnn": "cnn", "cifar": "cifar_cnn", "allcnn": "cifar_cnn"}


def build(name: str, num_classes: int = 10, **kw) -> Sequential:
    """Build a paper network by name: "dnn" (Table 1; "dnn-keras" in the authors' Keras reading), "cnn"
    (Table 2) or "cifar_cnn" (Table 3)."""
    key = ALIASES.get(name, name)
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))} "
                         f"(aliases: {', '.join(sorted(ALIASES))})")
    return MODELS[key](num_classes, **kw)
