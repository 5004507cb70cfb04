"""Hand-written layers: each a forward/backward pair that also returns the gradient at its inputs.

    Dense (Eq. 6-10)         Conv2D (Eq. 11-13)        MaxPool2D, GlobalAvgPool2D
    BatchNorm                Dropout                   ReLU, Flatten
    SoftmaxCrossEntropy      Sequential (backward to the inputs: Eq. 14)
    gradcheck                central differences, to check every backward pass
"""
from .activations import Flatten, ReLU
from .base import Layer
from .batchnorm import BatchNorm
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .loss import SoftmaxCrossEntropy
from .pool import GlobalAvgPool2D, MaxPool2D
from .sequential import Sequential

__all__ = [
    "Layer", "Dense", "Conv2D", "MaxPool2D", "GlobalAvgPool2D", "BatchNorm", "Dropout", "ReLU", "Flatten",
    "SoftmaxCrossEntropy", "Sequential",
]
