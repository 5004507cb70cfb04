"""The contract every layer follows (shapes, dtypes, grads, errors) and the semantics of Dropout,
BatchNorm's running statistics and a numerically stable softmax cross-entropy."""
import math

import numpy as np
import pytest

from nanosgm import backend
from nanosgm.layers import (BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU, SoftmaxCrossEntropy)
from strategies import normal

# name -> (factory(dtype or None), input shape, output shape). dtype None = the default constructor.
LAYERS = {
    "dense": (lambda dt: Dense(6, 4, **dt), (5, 6), (5, 4)),
    "conv": (lambda dt: Conv2D(2, 3, 3, **dt), (2, 2, 6, 5), (2, 3, 4, 3)),
    "conv_strided_padded": (lambda dt: Conv2D(2, 3, 3, stride=2, padding=1, **dt), (2, 2, 6, 5), (2, 3, 3, 3)),
    "maxpool": (lambda dt: MaxPool2D(2), (2, 3, 6, 5), (2, 3, 3, 2)),
    "global_avg_pool": (lambda dt: GlobalAvgPool2D(), (2, 3, 4, 4), (2, 3)),
    "batchnorm_2d": (lambda dt: BatchNorm(6, **dt), (5, 6), (5, 6)),
    "batchnorm_4d": (lambda dt: BatchNorm(3, **dt), (2, 3, 4, 4), (2, 3, 4, 4)),
    "dropout": (lambda dt: Dropout(0.5), (4, 7), (4, 7)),
    "relu": (lambda dt: ReLU(), (2, 3, 4), (2, 3, 4)),
    "flatten": (lambda dt: Flatten(), (2, 3, 4, 4), (2, 48)),
}
names = pytest.mark.parametrize("name", list(LAYERS))


def build(name, dtype=None):
    make, in_shape, out_shape = LAYERS[name]
    backend.seed(0)
    return make({} if dtype is None else {"dtype": dtype}), in_shape, out_shape


def run(layer, in_shape, dtype, training=True):
    x = normal(1, in_shape).astype(dtype)
    y = layer.forward(x, training=training)
    dx = layer.backward(normal(2, y.shape).astype(dtype))
    return x, y, dx


# --- shapes, dtypes, grads -------------------------------------------------------------------------
@names
@pytest.mark.parametrize("dtype_arg, dtype", [(None, np.float32), ("float64", np.float64)],
                         ids=["default-float32", "float64"])
def test_layers_compute_in_their_dtype(name, dtype_arg, dtype):
    """Default constructors are float32 in, float32 out; dtype="float64" gives float64 throughout."""
    layer, in_shape, out_shape = build(name, dtype_arg)
    for p in list(layer.params.values()) + list(layer.buffers.values()):
        assert p.dtype == dtype
    x, y, dx = run(layer, in_shape, dtype)
    assert y.shape == out_shape and y.dtype == dtype
    assert dx.shape == x.shape and dx.dtype == dtype


@names
@pytest.mark.parametrize("training", [True, False])
def test_grads_keys_equal_params_keys_after_backward(name, training):
    layer, in_shape, _ = build(name, "float64")
    run(layer, in_shape, np.float64, training=training)
    assert layer.grads.keys() == layer.params.keys()
    for k, g in layer.grads.items():
        assert g.shape == layer.params[k].shape and g.dtype == layer.params[k].dtype, k


@pytest.mark.parametrize("name", LAYERS)
def test_backward_before_forward_is_a_helpful_runtime_error(name):
    layer, _, out_shape = build(name)
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward"):
        layer.backward(np.ones(out_shape, dtype=np.float32))


def test_loss_backward_before_forward_is_a_helpful_runtime_error():
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward"):
        SoftmaxCrossEntropy().backward()


@pytest.mark.parametrize("dtype", ["int32", "bool", "complex128"])
def test_non_float_dtypes_are_refused(dtype):
    with pytest.raises(ValueError, match="floating"):
        Dense(2, 2, dtype=dtype)


# --- clear ValueErrors -----------------------------------------------------------------------------
def test_dense_given_images_says_to_add_flatten():
    with pytest.raises(ValueError, match=r"Flatten\(\)") as info:
        Dense(784, 10).forward(np.zeros((2, 1, 28, 28), np.float32))
    assert "(2, 1, 28, 28)" in str(info.value)


def test_dense_given_the_wrong_width_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(N, 784\), got \(2, 100\)"):
        Dense(784, 10).forward(np.zeros((2, 100), np.float32))


def test_conv_given_flat_rows_says_to_reshape_to_nchw():
    with pytest.raises(ValueError, match=r"NCHW.*reshape\(-1, 1, 28, 28\)"):
        Conv2D(1, 4, 5).forward(np.zeros((3, 784), np.float32))


def test_conv_given_the_wrong_channel_count():
    with pytest.raises(ValueError, match=r"expected 3 input channels .*\(2, 1, 8, 8\)"):
        Conv2D(3, 4, 3).forward(np.zeros((2, 1, 8, 8), np.float32))


def test_conv_kernel_bigger_than_the_input():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        Conv2D(1, 1, 5).forward(np.zeros((1, 1, 3, 3), np.float32))
    Conv2D(1, 1, 5, padding=1).forward(np.zeros((1, 1, 3, 3), np.float32))    # padded to 5x5: fine


def test_conv_rejects_bad_stride_and_padding():
    with pytest.raises(ValueError, match="stride >= 1"):
        Conv2D(1, 1, 3, stride=0)
    with pytest.raises(ValueError, match="padding >= 0"):
        Conv2D(1, 1, 3, padding=-1)


def test_maxpool_window_bigger_than_the_input():
    with pytest.raises(ValueError, match="smaller than the pooling window"):
        MaxPool2D(3).forward(np.zeros((1, 1, 2, 5), np.float32))


def test_batchnorm_wrong_feature_count():
    with pytest.raises(ValueError, match=r"expected 4 features"):
        BatchNorm(4).forward(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected 4 features"):
        BatchNorm(4).forward(np.zeros((3, 2, 5, 5), np.float32))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1)])
def test_batchnorm_training_with_one_value_per_feature_is_refused(shape):
    layer = BatchNorm(3)
    with pytest.raises(ValueError, match="more than one value per feature"):
        layer.forward(np.ones(shape, np.float32), training=True)
    np.testing.assert_array_equal(layer.buffers["running_var"], 1.0)      # nothing updated
    assert layer.forward(np.ones(shape, np.float32), training=False).shape == shape   # inference is fine


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_probability_outside_unit_interval(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(p)


LOGITS = np.zeros((3, 4))


@pytest.mark.parametrize("labels", [[0, 1, 4], [0, -1, 2]], ids=["too_big", "negative"])
def test_loss_labels_out_of_range(labels):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        SoftmaxCrossEntropy().forward(LOGITS, np.array(labels))


@pytest.mark.parametrize("labels", [np.zeros((3, 1), int), np.zeros(2, int), np.zeros((3, 4), int)],
                         ids=["column", "too_few", "one_hot"])
def test_loss_labels_wrong_shape(labels):
    with pytest.raises(ValueError, match=r"labels must be shaped \(3,\)"):
        SoftmaxCrossEntropy().forward(LOGITS, labels)


def test_loss_float_labels():
    with pytest.raises(ValueError, match="labels must be integers"):
        SoftmaxCrossEntropy().forward(LOGITS, np.array([0.0, 1.0, 2.0]))


def test_loss_logits_must_be_2d():
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        SoftmaxCrossEntropy().forward(np.zeros(4), np.array([0]))


# --- Dropout -----------------------------------------------------------------------------------------
def test_dropout_is_the_identity_at_inference():
    layer = Dropout(0.7)
    x = normal(0, (50, 20))
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    dy = normal(1, x.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy)


def test_dropout_inverted_scaling_preserves_the_mean():
    backend.seed(0)
    p, n = 0.3, 400_000
    x = np.ones(n)
    y = Dropout(p).forward(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / (1 - p))
    # each unit is Bernoulli(1 - p) / (1 - p): mean 1, std sqrt(p / (1 - p)); allow 6 standard errors
    se = math.sqrt(p / (1 - p) / n)
    assert abs(y.mean() - 1.0) < 6 * se
    assert abs(kept.mean() - (1 - p)) < 6 * math.sqrt(p * (1 - p) / n)


def test_dropout_backward_uses_the_forward_mask():
    backend.seed(0)
    layer = Dropout(0.5)
    x = normal(0, (10, 10))
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx != 0, y != 0)
    np.testing.assert_array_equal(dx[dx != 0], 2.0)


def test_dropout_mask_is_reproducible_from_the_backend_seed():
    x = np.ones((64, 32))
    backend.seed(11)
    a = Dropout(0.5).forward(x)
    backend.seed(11)
    b = Dropout(0.5).forward(x)
    backend.seed(12)
    c = Dropout(0.5).forward(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_p_zero_is_the_identity_in_training():
    x = normal(0, (5, 5))
    np.testing.assert_array_equal(Dropout(0.0).forward(x, training=True), x)


# --- BatchNorm -----------------------------------------------------------------------------------------
def test_batchnorm_inference_uses_running_stats_and_leaves_them_alone():
    layer = BatchNorm(3, eps=1e-5, dtype="float64")
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1.0])
    g, b = np.array([1.5, -2.0, 0.5]), np.array([0.1, 0.2, 0.3])
    layer.buffers["running_mean"][...], layer.buffers["running_var"][...] = rm, rv
    layer.params["gamma"][...], layer.params["beta"][...] = g, b
    x = normal(0, (4, 3))
    y = layer.forward(x, training=False)
    np.testing.assert_allclose(y, (x - rm) / np.sqrt(rv + 1e-5) * g + b, rtol=1e-14)
    np.testing.assert_array_equal(layer.buffers["running_mean"], rm)
    np.testing.assert_array_equal(layer.buffers["running_var"], rv)
    dy = normal(1, y.shape)
    np.testing.assert_allclose(layer.backward(dy), dy * g / np.sqrt(rv + 1e-5), rtol=1e-14)


def test_batchnorm_training_normalises_with_the_biased_batch_variance():
    layer = BatchNorm(3, eps=0.0, dtype="float64")
    x = normal(0, (6, 3)) * 5 + 2
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, (x - x.mean(0)) / x.std(0), rtol=1e-12)


def test_batchnorm_running_stats_follow_pytorch_momentum_with_unbiased_variance():
    """running = (1 - momentum) * running + momentum * batch_stat, the variance with M - 1 (by hand)."""
    layer = BatchNorm(2, momentum=0.25, dtype="float64")
    b1 = np.array([[1.0, 10.0], [2.0, 20.0], [6.0, 0.0]])
    b2 = np.array([[0.0, 1.0], [4.0, 3.0]])
    layer.forward(b1, training=True)
    # b1: means (3, 10); unbiased variances ((4 + 1 + 9) / 2, (0 + 100 + 100) / 2) = (7, 100)
    rm1 = 0.75 * np.zeros(2) + 0.25 * np.array([3.0, 10.0])
    rv1 = 0.75 * np.ones(2) + 0.25 * np.array([7.0, 100.0])
    np.testing.assert_allclose(layer.buffers["running_mean"], rm1, rtol=1e-14)
    np.testing.assert_allclose(layer.buffers["running_var"], rv1, rtol=1e-14)
    layer.forward(b2, training=True)
    # b2: means (2, 2); unbiased variances (8, 2)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.75 * rm1 + 0.25 * np.array([2.0, 2.0]), rtol=1e-14)
    np.testing.assert_allclose(layer.buffers["running_var"], 0.75 * rv1 + 0.25 * np.array([8.0, 2.0]), rtol=1e-14)


def test_batchnorm_4d_running_stats_count_every_pixel():
    """For feature maps M = N * H * W values per channel enter the unbiased correction."""
    layer = BatchNorm(2, momentum=0.1, dtype="float64")
    x = normal(0, (3, 2, 2, 4))
    layer.forward(x, training=True)
    per_channel = x.transpose(1, 0, 2, 3).reshape(2, -1)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * per_channel.mean(1), rtol=1e-13)
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * per_channel.var(1, ddof=1), rtol=1e-13)


# --- SoftmaxCrossEntropy -------------------------------------------------------------------------------
def _loss_by_hand(logits, labels):
    """Mean of logsumexp(z) - z_y in extended precision, the maximum taken out by hand."""
    z = np.asarray(logits, dtype=np.longdouble)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_is_stable_on_huge_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 1e4 - 1, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    labels = np.array([1, 1, 2])
    f = SoftmaxCrossEntropy()
    loss = f.forward(logits, labels)
    # row 0: 1e4;  row 1: 1 + log(1 + e^-1);  row 2: log 3
    expected = (1e4 + 1 + math.log1p(math.exp(-1)) + math.log(3)) / 3
    assert math.isfinite(loss)
    assert loss == pytest.approx(expected, rel=1e-6 if dtype == np.float32 else 1e-12)
    assert loss == pytest.approx(_loss_by_hand(logits, labels), rel=1e-6 if dtype == np.float32 else 1e-12)
    d = f.backward()
    assert np.all(np.isfinite(d))
    np.testing.assert_allclose(d.sum(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(d[0], [1 / 3, -1 / 3, 0.0], atol=1e-7)


def test_loss_value_and_gradient_by_hand_on_ordinary_logits():
    logits = normal(0, (5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    f = SoftmaxCrossEntropy()
    assert f.forward(logits, labels) == pytest.approx(_loss_by_hand(logits, labels), rel=1e-13)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[np.arange(5), labels] -= 1
    np.testing.assert_allclose(f.backward(), p / 5, rtol=1e-12)
    np.testing.assert_allclose(f.losses(), -np.log((np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
                                                   [np.arange(5), labels]), rtol=1e-12)


def test_loss_returns_a_python_float():
    assert isinstance(SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0, 1])), float)
