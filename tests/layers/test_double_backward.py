"""Double backpropagation (issue 24): every layer's third pass against torch autograd, float64, and the
regularised weight gradient of whole networks against torch and against central differences.

For a layer y = f(x; theta) and an output gradient dy, the backward pass is the map
(x, dy) -> (dx, dtheta). The R-operator along (x_dot, dy_dot) (nanosgm/layers/base.py) is its
directional derivative:

    R{y} = J x_dot,   R{dx} = d/dr [J(x + r x_dot)^T (dy + r dy_dot)] at r = 0,   R{dtheta} likewise

torch gives the same numbers as ``torch.autograd.functional.jvp`` of the function
(x, dy) -> (y, autograd.grad(y, (x, theta), dy, create_graph=True)) along (x_dot, dy_dot).
The layers are translated by nanosgm.bench.torch_bridge (the one translation; dropout multiplies
by the mask nanosgm drew).
"""
import copy
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

torch = pytest.importorskip("torch", reason="torch (CPU) is the test oracle: pip install -e .[test]")
F = torch.nn.functional

from nanosgm import backend, models  # noqa: E402
from nanosgm.bench import torch_bridge  # noqa: E402
from nanosgm.layers import (BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU,  # noqa: E402
                            Sequential, SoftmaxCrossEntropy)
from nanosgm.layers import conv as conv_module  # noqa: E402
from nanosgm.layers.gradcheck import numerical_gradient, relative_error  # noqa: E402
from nanosgm.methods import Control  # noqa: E402
from nanosgm.methods.gradreg import finite_difference_pass, regularised_pass  # noqa: E402
from strategies import (GRADCHECK, any_shapes, away_from_zero, batchnorm_shapes, conv_configs,  # noqa: E402
                        conv_layer, dense_configs, distinct, normal, pool_configs, seeds)
from test_torch_oracle import close_counterparts, t, translate  # noqa: E402

pytestmark = pytest.mark.usefixtures("numpy_backend")

# float64 throughout; the double backward adds a few more products than the backward, hence a little
# more room than test_torch_oracle's 1e-10 / 1e-12.
RTOL, ATOL = 1e-9, 1e-11


# --------------------------------------------------------------------------------------------------------
# one layer
# --------------------------------------------------------------------------------------------------------
def torch_r_operator(net, x, dy, x_dot, dy_dot):
    """torch's (values, R{values}) of (y, dx, *dtheta) along (x_dot, dy_dot); dtheta in net.parameters() order."""
    params = list(net.parameters())

    def passes(xt, dyt):
        y = net(xt)
        grads = torch.autograd.grad(y, (xt, *params), grad_outputs=dyt, create_graph=True)
        return (y, *grads)

    values, dots = torch.autograd.functional.jvp(passes, (t(x), t(dy)), (t(x_dot), t(dy_dot)), strict=False)
    return values, dots, params


def nanosgm_r_operator(layer, x, dy, x_dot, dy_dot, training):
    """nanosgm's forward, backward, forward_dot and backward_dot of one layer: two dicts of host arrays."""
    y = layer.forward(x, training=training)
    dx = layer.backward(dy)
    grads = {k: np.array(g) for k, g in layer.grads.items()}
    y_dot = layer.forward_dot(x_dot)
    dx_dot = layer.backward_dot(dy, dy_dot)
    return ({"y": np.array(y), "dx": np.array(dx), **grads},
            {"y": np.array(y_dot), "dx": np.array(dx_dot), **{k: np.array(g) for k, g in layer.grads_dot.items()}})


def check_layer_against_torch(layer, x, seed, training=True):
    """Random dy, x_dot, dy_dot from ``seed``; R{y}, R{dx} and every R{dtheta} (and y, dx, dtheta) equal torch's."""
    net = translate(Sequential([layer]), x.shape[1:]).train(training)     # before nanosgm's forward (caches)
    y_shape = layer.forward(x, training=training).shape                    # draws a dropout mask, if any
    rng = np.random.default_rng([seed, 0xD0D])
    dy, x_dot, dy_dot = rng.standard_normal(y_shape), rng.standard_normal(x.shape), rng.standard_normal(y_shape)
    ours, ours_dot = nanosgm_r_operator(layer, x, dy, x_dot, dy_dot, training)
    values, dots, params = torch_r_operator(net, x, dy, x_dot, dy_dot)

    def compare(what, mine, theirs):
        np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=ATOL, err_msg=f"{layer!r} {what}")

    compare("y", ours["y"], values[0].detach().numpy())
    compare("dx", ours["dx"], values[1].detach().numpy())
    compare("R{y}", ours_dot["y"], torch.autograd.functional.jvp(net, t(x), t(x_dot))[1].numpy())
    compare("R{dx}", ours_dot["dx"], dots[1].numpy())
    slots = [(slot, tensor) for lay, slot, tensor in torch_bridge.counterparts(net) if slot in lay.params]
    filled = sorted(k for k in ours_dot if k not in ("y", "dx"))                    # grads_dot's names
    assert sorted(slot for slot, _ in slots) == sorted(layer.params) == filled
    for slot, tensor in slots:
        i = next(j for j, p in enumerate(params) if p is tensor)
        compare(f"d{slot}", ours[slot], torch_bridge.as_nanosgm(layer, slot, values[2 + i]))
        compare(f"R{{d{slot}}}", ours_dot[slot], torch_bridge.as_nanosgm(layer, slot, dots[2 + i]))
    return ours_dot


@GRADCHECK
@given(dense_configs(), seeds)
def test_dense_double_backward_matches_torch(cfg, seed):
    backend.seed(seed)
    layer = Dense(cfg["fin"], cfg["fout"], dtype="float64")
    layer.params["b"][...] = normal(seed + 1, cfg["fout"])
    check_layer_against_torch(layer, normal(seed, (cfg["n"], cfg["fin"])), seed)


@pytest.mark.parametrize("layout", ["channels-first", "channels-last"])
@GRADCHECK
@given(conv_configs(), seeds, st.integers(0, 2))
def test_conv2d_double_backward_matches_torch_in_both_column_layouts(layout, cfg, seed, extra):
    """in_channels below FEW_CHANNELS uses im2col_cf's transposed columns, at or above it im2col's rows."""
    if layout == "channels-last":
        cfg = dict(cfg, cin=conv_module.FEW_CHANNELS + extra)
    layer = conv_layer(cfg, seed)
    assert (layer.in_channels < conv_module.FEW_CHANNELS) == (layout == "channels-first")
    check_layer_against_torch(layer, normal(seed, (cfg["n"], cfg["cin"], cfg["h"], cfg["w"])), seed)


@pytest.mark.parametrize("few_channels", [0, 100], ids=["forced-channels-last", "forced-channels-first"])
def test_conv2d_double_backward_is_the_same_in_either_layout(few_channels, monkeypatch):
    """The same layer (4 channels) with the layout forced each way: R{y}, R{dx}, R{dW}, R{db} agree with torch."""
    monkeypatch.setattr(conv_module, "FEW_CHANNELS", few_channels)
    cfg = dict(n=3, cin=4, cout=5, h=7, w=6, k=3, stride=2, padding=1)
    check_layer_against_torch(conv_layer(cfg, 4), normal(4, (3, 4, 7, 6)), 4)


@GRADCHECK
@given(pool_configs(), seeds)
def test_maxpool_double_backward_matches_torch(cfg, seed):
    """Distinct values: no ties, so the arg-max (and torch's) is unique and fixed under a small move."""
    x = distinct(seed, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    check_layer_against_torch(MaxPool2D(cfg["k"], cfg["stride"]), x, seed)


@GRADCHECK
@given(st.tuples(*[st.integers(1, 4)] * 4), seeds)
def test_global_avg_pool_double_backward_matches_torch(shape, seed):
    check_layer_against_torch(GlobalAvgPool2D(), normal(seed, shape), seed)


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@GRADCHECK
@given(batchnorm_shapes(), seeds)
def test_batchnorm_double_backward_matches_torch(training, shape, seed):
    """Training mode: the batch statistics move with the inputs; inference mode: the running ones do not."""
    layer = BatchNorm(shape[1], dtype="float64")
    rng = np.random.default_rng([seed, 7])
    layer.params["gamma"][...] = rng.uniform(0.5, 2.0, shape[1]) * rng.choice([-1.0, 1.0], shape[1])
    layer.params["beta"][...] = rng.standard_normal(shape[1])
    layer.buffers["running_mean"][...] = rng.standard_normal(shape[1])
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, shape[1])
    dot = check_layer_against_torch(layer, normal(seed, shape) * 2 + 0.5, seed, training=training)
    if training:      # the batch statistics move: R{y} has no component along the constant direction
        per_feature = dot["y"].sum(axis=0) if dot["y"].ndim == 2 else dot["y"].sum(axis=(0, 2, 3))
        np.testing.assert_allclose(per_feature, 0.0, atol=1e-9)


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@GRADCHECK
@given(any_shapes(), seeds, st.sampled_from([0.0, 0.3, 0.5]))
def test_dropout_double_backward_matches_torch_with_the_held_mask(training, shape, seed, p):
    """torch multiplies by the mask nanosgm drew (torch_bridge, nanosgm_masks=True)."""
    backend.seed(seed)
    layer = Dropout(p)
    x = normal(seed, (2,) + shape)
    dot = check_layer_against_torch(layer, x, seed, training=training)
    if training and p > 0:
        np.testing.assert_array_equal(dot["dx"] == 0, layer.mask == 0)      # the dropped units stay dropped


@GRADCHECK
@given(any_shapes(), seeds)
def test_relu_double_backward_matches_torch(shape, seed):
    """Inputs away from the kink, where phi'' = 0 and the mask does not move."""
    check_layer_against_torch(ReLU(), away_from_zero(seed, (2,) + shape), seed)


@GRADCHECK
@given(st.tuples(*[st.integers(1, 4)] * 4), seeds)
def test_flatten_double_backward_matches_torch(shape, seed):
    check_layer_against_torch(Flatten(), normal(seed, shape), seed)


@GRADCHECK
@given(st.integers(1, 6), st.integers(2, 7), seeds, st.sampled_from([1.0, 10.0]))
def test_softmax_cross_entropy_backward_dot_matches_torch(n, k, seed, scale):
    """R{dE/dz} = the Jacobian of dE/dz = (softmax(z) - onehot) / N applied to z_dot (also for large logits)."""
    rng = np.random.default_rng([seed, 5])
    z, z_dot, labels = rng.standard_normal((n, k)) * scale, rng.standard_normal((n, k)), rng.integers(0, k, n)
    loss = SoftmaxCrossEntropy()
    loss.forward(z, labels)
    ours = loss.backward_dot(z_dot)

    def dE_dz(zt):
        return torch.autograd.grad(F.cross_entropy(zt, torch.tensor(labels)), zt, create_graph=True)[0]

    theirs = torch.autograd.functional.jvp(dE_dz, t(z), t(z_dot))[1]
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ours.sum(axis=1), 0.0, atol=1e-12)          # the softmax's rows sum to 1


def test_the_third_pass_needs_the_first_two():
    """backward_dot before forward_dot, and Sequential.backward_dot without backward(keep=True): clear errors."""
    layer = Dense(3, 2, dtype="float64")
    x = np.ones((2, 3))
    layer.forward(x)
    with pytest.raises(RuntimeError, match="forward_dot"):
        layer.backward_dot(np.ones((2, 2)), np.ones((2, 2)))
    model = Sequential([Dense(3, 2, dtype="float64")])
    model.forward(x)
    model.backward(np.ones((2, 2)))
    model.forward_dot(x)
    with pytest.raises(RuntimeError, match="keep=True"):
        model.backward_dot(np.ones((2, 2)))


# --------------------------------------------------------------------------------------------------------
# whole networks: the weight gradient of L = E + mu * N * sum((dE/dX)^2)
# --------------------------------------------------------------------------------------------------------
def small_cnn(dtype="float64", dropout=0.3):
    """Conv-BN-ReLU-MaxPool, Dropout, Flatten, Dense-BN-ReLU-Dropout, Dense: every layer kind but GAP."""
    return Sequential([
        Conv2D(1, 3, 3, padding=1, dtype=dtype), BatchNorm(3, dtype=dtype), ReLU(), MaxPool2D(2), Dropout(dropout),
        Flatten(), Dense(3 * 4 * 4, 6, dtype=dtype), BatchNorm(6, dtype=dtype), ReLU(), Dropout(dropout),
        Dense(6, 3, dtype=dtype),
    ])


def all_cnn_tiny(dtype="float64"):
    """Table 3's shape in miniature: stride-2 convolutions, BatchNorm, global average pooling."""
    return Sequential([
        Conv2D(2, 4, 3, 1, 1, dtype=dtype), BatchNorm(4, dtype=dtype), ReLU(),
        Conv2D(4, 9, 3, 2, 1, dtype=dtype), BatchNorm(9, dtype=dtype), ReLU(),
        Conv2D(9, 3, 1, dtype=dtype), GlobalAvgPool2D(),                         # 9 >= FEW_CHANNELS: rows layout
    ])


def randomise(model, seed):
    """Non-trivial biases, gamma and beta (their gradients are checked too)."""
    rng = np.random.default_rng([seed, 11])
    for layer in model.layers:
        for k in ("b", "beta", "gamma"):
            if k in layer.params:
                layer.params[k][...] = rng.standard_normal(layer.params[k].shape) * 0.1 + (k == "gamma")
    return model


def torch_regularised_gradient(net, x, labels, mu):
    """torch's (E, dE/dX, penalty) with every parameter's .grad = d(E + mu N sum((dE/dX)^2)) / d(param)."""
    xt = t(x, grad=True)
    E = F.cross_entropy(net(xt), torch.tensor(labels))
    (dX,) = torch.autograd.grad(E, xt, create_graph=True)
    penalty = mu * len(x) * (dX ** 2).sum()
    net.zero_grad()
    (E + penalty).backward()
    return E.item(), dX.detach().numpy(), penalty.item()


NETWORKS = {
    "table2-cnn": (lambda: models.mnist_cnn(dtype="float64", dropout=0.5), (1, 28, 28), 4),
    "table1-dnn": (lambda: models.mnist_dnn(dtype="float64", in_features=20, dropout=0.5), (20,), 6),
    "small-cnn": (small_cnn, (1, 8, 8), 6),
    "all-cnn-tiny": (all_cnn_tiny, (2, 6, 6), 5),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_regularised_weight_gradient_matches_torch(name):
    """regularised_pass leaves d(E + mu N sum((dE/dX)^2))/dtheta in every layer's grads, as torch's double
    backward does: training mode (batch statistics), the same dropout masks, float64."""
    make, in_shape, n = NETWORKS[name]
    backend.seed(3)
    model = randomise(make(), 3)
    rng = np.random.default_rng(4)
    x, labels = rng.uniform(0, 1, (n,) + in_shape), rng.integers(0, 3, n)
    mu = 0.05
    net = translate(model, in_shape).train()       # the weights now; dropout reads nanosgm's masks when it runs

    E, dX, penalty = regularised_pass(model, SoftmaxCrossEntropy(), x, labels, mu)   # draws the masks
    E_t, dX_t, penalty_t = torch_regularised_gradient(net, x, labels, mu)

    assert E == pytest.approx(E_t, rel=1e-12)
    np.testing.assert_allclose(dX, dX_t, rtol=1e-10, atol=1e-14)
    assert penalty == pytest.approx(penalty_t, rel=1e-10) and penalty > 0
    close_counterparts(net, name, grads=True, rtol=1e-8, atol=1e-12)
    # the penalty's share of the gradient is material, so a wrong double backward could not hide in it
    full = {id(p): p.grad.clone() for p in net.parameters()}
    net.zero_grad()
    F.cross_entropy(net(t(x)), torch.tensor(labels)).backward()           # dE/dtheta alone, the same masks
    moved = sum(float(((full[id(p)] - p.grad) ** 2).sum()) for p in net.parameters())
    assert math.sqrt(moved) > 0.01 * math.sqrt(sum(float((g ** 2).sum()) for g in full.values()))


# --------------------------------------------------------------------------------------------------------
# no torch: central differences of L(theta), and the finite-difference pass of Finlay & Oberman
# --------------------------------------------------------------------------------------------------------
def tiny_network(seed, dropout=0.3):
    backend.seed(seed)
    model = randomise(Sequential([
        Conv2D(1, 2, 3, dtype="float64"), BatchNorm(2, dtype="float64"), ReLU(), MaxPool2D(2), Flatten(),
        Dense(2 * 2 * 2, 5, dtype="float64"), BatchNorm(5, dtype="float64"), ReLU(), Dropout(dropout),
        Dense(5, 3, dtype="float64"),
    ]), seed)
    rng = np.random.default_rng([seed, 1])
    return model, rng.uniform(0, 1, (5, 1, 6, 6)), rng.integers(0, 3, 5)


def regularised_loss(model, loss_fn, x, labels, mu):
    """L = E + mu * N * sum((dE/dX)^2): one training forward and one backward."""
    E = loss_fn.forward(model.forward(x, training=True), labels)
    dX = model.backward(loss_fn.backward())
    return E + mu * len(x) * float((dX ** 2).sum())


def test_regularised_weight_gradient_matches_central_differences():
    """Every parameter element of a tiny network (dropout with a held mask): dL/dtheta from regularised_pass
    against 4th-order central differences of L(theta), computed from forward and backward passes only.

    The differences are accurate to ~5e-11 in absolute terms (gradients here are of order 1-20; the biases
    that feed a training-mode BatchNorm have gradient 0), so elements below 1e-3 are compared absolutely."""
    model, x, labels = tiny_network(seed=2)
    dropout = [layer for layer in model.layers if isinstance(layer, Dropout)][0]
    dropout.hold_mask = True
    loss_fn, mu = SoftmaxCrossEntropy(), 0.1
    regularised_pass(model, loss_fn, x, labels, mu)                 # draws the mask every evaluation holds
    analytic = {name: np.array(g) for name, _, g in model.parameters()}
    assert dropout.mask is not None and (dropout.mask == 0).any()
    worst = {}
    for name, p, _ in model.parameters():
        numeric = numerical_gradient(lambda: regularised_loss(model, loss_fn, x, labels, mu), p, h=1e-4)
        worst[name] = relative_error(analytic[name], numeric, floor=1e-3)
    assert max(worst.values()) < 1e-6, worst
    # and the penalty matters: the plain gradient E alone is far from dL/dtheta
    regularised_loss(model, loss_fn, x, labels, 0.0)
    plain = {name: np.array(g) for name, _, g in model.parameters()}
    assert max(relative_error(analytic[k], plain[k]) for k in plain) > 1e-2


def fd_errors(model, x, labels, mu, steps, seed=5):
    """{H: |g_fd - g_exact| / |g_exact|} over all weights, each pass from a copy of ``model`` with the same masks."""
    def gradient(pass_fn, *extra):
        m = copy.deepcopy(model)
        backend.seed(seed)                                           # the same dropout masks in every pass
        pass_fn(m, SoftmaxCrossEntropy(), x, labels, mu, *extra)
        return np.concatenate([np.ravel(g) for _, _, g in m.parameters()])

    exact = gradient(regularised_pass)
    return {h: float(np.linalg.norm(gradient(finite_difference_pass, h) - exact) / np.linalg.norm(exact))
            for h in steps}


def test_finite_difference_pass_converges_to_the_exact_double_backward():
    """Finlay & Oberman's one-sided difference is first order in H: its error falls tenfold per decade of H.
    Measured (this network, mu 0.1, the penalty ~97 % of the gradient's norm): 5.9e-2, 5.7e-3, 5.7e-4 at
    H = 1e-2, 1e-3, 1e-4 (and still 5.7e-7 at 1e-7: no round-off floor in float64 yet)."""
    model, x, labels = tiny_network(seed=2)
    errors = fd_errors(model, x, labels, mu=0.1, steps=(1e-2, 1e-3, 1e-4))
    print("exact vs finite-difference relative error:", {h: f"{e:.2e}" for h, e in errors.items()})
    assert errors[1e-4] < errors[1e-3] < errors[1e-2]
    assert errors[1e-4] < 1e-3 and errors[1e-4] < errors[1e-2] / 10
    for h in (1e-2, 1e-3):
        assert 5 < errors[h] / errors[h / 10] < 20, errors          # first order: error proportional to H


@pytest.mark.parametrize("pass_name", ["finite-difference", "exact"])
def test_regularised_passes_leave_running_statistics_as_one_training_pass(pass_name):
    """The FD pass runs two training forwards but updates BatchNorm's running statistics once, as the
    control's plain pass does (compared bit for bit on a copy); the exact pass's forward_dot touches none."""
    model, x, labels = tiny_network(seed=6)
    control = copy.deepcopy(model)
    backend.seed(9)
    Control().training_pass(control, SoftmaxCrossEntropy(), x, labels, None)
    backend.seed(9)
    if pass_name == "exact":
        regularised_pass(model, SoftmaxCrossEntropy(), x, labels, 0.1)
    else:
        finite_difference_pass(model, SoftmaxCrossEntropy(), x, labels, 0.1, 1e-3)
    ours, theirs = model.state_dict(), control.state_dict()
    assert any(k.endswith("running_mean") for k in ours)
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
    assert not np.array_equal(ours["1.running_mean"], tiny_network(seed=6)[0].state_dict()["1.running_mean"])
