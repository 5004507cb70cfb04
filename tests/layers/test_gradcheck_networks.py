"""Property-based gradient checks of small whole networks: dE/dX (Eq. 14) and every parameter, float64."""
import numpy as np
from hypothesis import assume, given, strategies as st

from nanosgm import backend
from nanosgm.layers.gradcheck import check_model, numerical_gradient
from nanosgm.layers.pool import maxpool2d_reference
from nanosgm.layers import (BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy)
from strategies import GRADCHECK, NETWORK_FLOOR, NETWORK_TOL, batch, normal, seeds


def hold_dropout_masks(model):
    for layer in model.layers:
        if isinstance(layer, Dropout):
            layer.hold_mask = True


class KinkWatch:
    """Records each ReLU's and max-pool's switching pattern on every forward pass of the network.

    Finite differences are only valid if no perturbation flips a ReLU or changes a max-pool winner;
    an example where one did is discarded (``assume``), not counted as a pass or a failure.
    """

    def __init__(self, model):
        self.first, self.crossed = {}, False
        for i, layer in enumerate(model.layers):
            if isinstance(layer, (ReLU, MaxPool2D)):
                layer.forward = self._wrap(i, layer, layer.forward)

    def _wrap(self, i, layer, forward):
        def watched(x, training=True):
            y = forward(x, training=training)
            if isinstance(layer, ReLU):
                pattern = x > 0
            else:                                   # where each window's gradient goes (its winner)
                _, pattern = maxpool2d_reference(x, layer.k, layer.stride, dy=np.ones(y.shape))
            if i not in self.first:
                self.first[i] = pattern
            elif not np.array_equal(pattern, self.first[i]):
                self.crossed = True
            return y
        return watched


def assert_network_close(model, x, labels):
    """dE/dX and every parameter gradient match central differences to NETWORK_TOL (floor NETWORK_FLOOR)."""
    watch = KinkWatch(model)
    errors = check_model(model, SoftmaxCrossEntropy(), x, labels, floor=NETWORK_FLOOR)
    assume(not watch.crossed)
    worst = max(errors, key=errors.get)
    assert errors[worst] < NETWORK_TOL, f"relative error {errors[worst]:.2e} at {worst!r}"


def test_bias_before_batchnorm_has_zero_gradient_numerically_too():
    backend.seed(0)
    model = Sequential([Dense(3, 4, dtype="float64"), BatchNorm(4, dtype="float64"), Dense(4, 2, dtype="float64")])
    x, labels = normal(1, (5, 3)), np.array([0, 1, 1, 0, 1])
    loss = SoftmaxCrossEntropy()
    b = model.layers[0].params["b"]
    numeric = numerical_gradient(lambda: loss.forward(model.forward(x), labels), b)
    assert np.abs(numeric).max() < 1e-12


@GRADCHECK
@given(seeds, st.integers(4, 6), st.integers(2, 5), st.integers(2, 4))
def test_small_mlp_with_batchnorm_and_dropout(seed, n, hidden, classes):
    backend.seed(seed)
    model = Sequential([Flatten(), Dense(6, hidden, dtype="float64"), BatchNorm(hidden, dtype="float64"), ReLU(),
                        Dropout(0.3), Dense(hidden, classes, dtype="float64")])
    hold_dropout_masks(model)
    x = normal(seed, (n, 1, 2, 3))
    labels = np.random.default_rng(seed).integers(0, classes, n)
    assert_network_close(model, x, labels)


@GRADCHECK
@given(seeds, batch, st.integers(1, 2), st.integers(1, 3))
def test_small_cnn_like_table2(seed, n, cin, cmid):
    """Conv -> MaxPool -> BatchNorm -> ReLU -> Flatten -> Dense, the block structure of the MNIST CNN."""
    backend.seed(seed)
    model = Sequential([Conv2D(cin, cmid, 3, dtype="float64"), MaxPool2D(2), BatchNorm(cmid, dtype="float64"), ReLU(),
                        Flatten(), Dense(cmid * 2 * 2, 3, dtype="float64")])
    x = normal(seed, (n + 1, cin, 6, 6))
    labels = np.random.default_rng(seed).integers(0, 3, n + 1)
    assert_network_close(model, x, labels)


@GRADCHECK
@given(seeds, batch)
def test_small_all_convolutional_like_table3(seed, n):
    """Strided and padded convolutions, 1x1 convolutions and global average pooling (Table 3's pieces)."""
    backend.seed(seed)
    model = Sequential([Conv2D(2, 3, 3, stride=2, padding=1, dtype="float64"), BatchNorm(3, dtype="float64"), ReLU(),
                        Conv2D(3, 4, 1, dtype="float64"), GlobalAvgPool2D()])
    x = normal(seed, (n + 1, 2, 5, 5))
    labels = np.random.default_rng(seed).integers(0, 4, n + 1)
    assert_network_close(model, x, labels)
