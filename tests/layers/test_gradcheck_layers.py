"""Property-based gradient checks: every layer's dE/dx and dE/dparams against central differences (float64)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nanosgm import backend
from nanosgm.layers.gradcheck import check_layer, numerical_gradient, relative_error
from nanosgm.layers import BatchNorm, Dense, Dropout, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU, SoftmaxCrossEntropy
from strategies import (GRADCHECK, LAYER_TOL, any_shapes, away_from_zero, batchnorm_shapes, conv_configs,
                        conv_input_shape, conv_layer, dense_configs, distinct, normal, pool_configs, seeds)


def assert_close(errors, tol=LAYER_TOL):
    worst = max(errors, key=errors.get)
    assert errors[worst] < tol, f"relative error {errors[worst]:.2e} for {worst!r} (all: {errors})"


@GRADCHECK
@given(dense_configs(), seeds)
def test_dense_gradients(cfg, seed):
    backend.seed(seed)
    layer = Dense(cfg["fin"], cfg["fout"], dtype="float64")
    layer.params["b"][...] = normal(seed + 1, cfg["fout"])
    assert_close(check_layer(layer, normal(seed, (cfg["n"], cfg["fin"]))))


@GRADCHECK
@given(conv_configs(), seeds)
def test_conv2d_gradients(cfg, seed):
    assert_close(check_layer(conv_layer(cfg, seed), normal(seed, conv_input_shape(cfg))))


@GRADCHECK
@given(pool_configs(), seeds)
def test_maxpool_gradients(cfg, seed):
    layer = MaxPool2D(cfg["k"], cfg["stride"])
    x = distinct(seed, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    assert_close(check_layer(layer, x))


@GRADCHECK
@given(batchnorm_shapes(), seeds)
def test_batchnorm_gradients_training(shape, seed):
    layer = BatchNorm(shape[1], dtype="float64")
    layer.params["gamma"][...] = normal(seed + 1, shape[1])
    layer.params["beta"][...] = normal(seed + 2, shape[1])
    assert_close(check_layer(layer, normal(seed, shape) * 2 + 0.5, training=True))


@GRADCHECK
@given(batchnorm_shapes(), seeds)
def test_batchnorm_gradients_inference(shape, seed):
    layer = BatchNorm(shape[1], dtype="float64")
    layer.params["gamma"][...] = normal(seed + 1, shape[1])
    layer.buffers["running_mean"][...] = normal(seed + 2, shape[1])
    layer.buffers["running_var"][...] = np.abs(normal(seed + 3, shape[1])) + 0.1
    assert_close(check_layer(layer, normal(seed, shape), training=False))


@GRADCHECK
@given(any_shapes(), seeds)
def test_relu_gradients(shape, seed):
    assert_close(check_layer(ReLU(), away_from_zero(seed, shape)))


@GRADCHECK
@given(any_shapes(), seeds, st.sampled_from([0.1, 0.5, 0.8]))
def test_dropout_gradients_with_mask_held(shape, seed, p):
    backend.seed(seed)
    layer = Dropout(p)
    layer.hold_mask = True
    assert_close(check_layer(layer, normal(seed, shape)))
    kept = layer.mask != 0
    np.testing.assert_allclose(layer.mask[kept], 1.0 / (1.0 - p))      # inverted dropout scaling


@GRADCHECK
@given(any_shapes(), seeds)
def test_flatten_and_global_avg_pool_gradients(shape, seed):
    assert_close(check_layer(Flatten(), normal(seed, (2,) + shape)))
    x4 = normal(seed, (2, shape[0], 3, 2))
    assert_close(check_layer(GlobalAvgPool2D(), x4))


@GRADCHECK
@given(dense_configs(), seeds)
def test_softmax_cross_entropy_gradient(cfg, seed):
    n, k = cfg["n"], cfg["fout"] + 1
    logits = normal(seed, (n, k))
    labels = np.random.default_rng(seed).integers(0, k, n)
    f = SoftmaxCrossEntropy()
    f.forward(logits, labels)
    analytic = f.backward()
    numeric = numerical_gradient(lambda: f.forward(logits, labels), logits)
    assert relative_error(analytic, numeric) < LAYER_TOL


def test_relative_error_definition():
    assert relative_error(np.array([1.0]), np.array([1.0])) == 0.0
    assert relative_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    assert relative_error(np.array([0.0]), np.array([1e-10])) == pytest.approx(1e-2)   # the 1e-8 floor


def test_gradcheck_catches_a_wrong_backward():
    """The checker itself must fail on a layer whose backward is off by a factor."""
    class Broken(ReLU):
        def backward(self, dy):
            return 1.01 * super().backward(dy)
    errors = check_layer(Broken(), away_from_zero(0, (3, 4)))
    assert errors["x"] > 1e-3
