"""An independent oracle: the same layers and the paper's MNIST CNN (Table 2) against torch autograd, float64.

torch is a test dependency only; nothing under nanosgm/ imports it.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch (CPU) is the test oracle: pip install -e .[test]")
F = torch.nn.functional

from nanosgm import backend, models
from nanosgm.bench import torch_bridge  # noqa: E402
from nanosgm.layers import (BatchNorm, Conv2D, Dense, Dropout, GlobalAvgPool2D, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy)

RTOL, ATOL = 1e-10, 1e-12


def t(a, grad=False):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64, requires_grad=grad)


def close(ours, theirs, what):
    np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=what)


def translate(model, in_shape):
    """The network in torch, float64, dropping the units nanosgm drops (nanosgm.bench.torch_bridge: the one translation)."""
    return torch_bridge.to_torch(model, in_shape, dtype="float64", nanosgm_masks=True)


def close_counterparts(net, what, grads=False, **tol):
    """Every nanosgm parameter and buffer (or, with grads, every parameter gradient) equals torch's."""
    for layer, slot, tensor in torch_bridge.counterparts(net):
        if grads and slot not in layer.params:
            continue
        ours = layer.grads[slot] if grads else torch_bridge.layer_array(layer, slot)
        theirs = torch_bridge.as_nanosgm(layer, slot, tensor.grad if grads else tensor)
        np.testing.assert_allclose(np.asarray(ours), theirs, **({"rtol": RTOL, "atol": ATOL} | tol),
                                   err_msg=f"{what}: {layer!r}.{slot}{' gradient' if grads else ''}")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("make", [
    lambda: Dense(7, 5, dtype="float64"),
    lambda: Conv2D(3, 4, 3, stride=2, padding=1, dtype="float64"),
    lambda: Conv2D(2, 3, (2, 3), dtype="float64"),
    lambda: MaxPool2D(2),
    lambda: MaxPool2D(3, stride=2),
    lambda: BatchNorm(3, dtype="float64"),
    lambda: ReLU(),
    lambda: GlobalAvgPool2D(),
    lambda: Dropout(0.4),
], ids=["dense", "conv-s2-p1", "conv-2x3", "maxpool2", "maxpool3s2", "batchnorm", "relu", "gap", "dropout"])
def test_layer_matches_torch(make, training):
    backend.seed(3)
    layer = make()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 7) if isinstance(layer, Dense) else (4, 3 if not isinstance(layer, Conv2D) or layer.in_channels == 3 else 2, 7, 6))
    for k in layer.params:                       # non-trivial parameters (biases, gamma, beta)
        layer.params[k][...] = rng.standard_normal(layer.params[k].shape)
    if isinstance(layer, BatchNorm):
        layer.buffers["running_mean"][...] = rng.standard_normal(3)
        layer.buffers["running_var"][...] = rng.uniform(0.5, 2, 3)
    if isinstance(layer, Dropout):
        layer.hold_mask = True
    net = translate(Sequential([layer]), x.shape[1:]).train(training)

    y = layer.forward(x, training=training)      # draws the dropout mask torch reuses
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)

    xt = t(x, grad=True)
    yt = net(xt)
    yt.backward(t(dy))
    close(y, yt, "forward")
    close(dx, xt.grad, "dE/dx")
    close_counterparts(net, "after one step", grads=True)     # dE/dW, dE/db, dE/dgamma, dE/dbeta
    close_counterparts(net, "after one step")                 # parameters and running statistics


@pytest.mark.parametrize("training", [True, False])
def test_mnist_cnn_table2_matches_torch(training):
    """The whole Table 2 network with random weights: logits, loss, dE/dX, every grad, running stats."""
    backend.seed(11)
    model = models.mnist_cnn(dtype="float64")
    rng = np.random.default_rng(1)
    for layer in model.layers:
        for k in layer.params:
            if k in ("b", "beta", "gamma"):
                layer.params[k][...] = rng.standard_normal(layer.params[k].shape) * 0.1 + (k == "gamma")
        if isinstance(layer, BatchNorm) and not training:
            layer.buffers["running_mean"][...] = rng.standard_normal(layer.num_features) * 0.1
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2, layer.num_features)
        if isinstance(layer, Dropout):
            layer.hold_mask = True
    x = rng.uniform(0, 1, (6, 1, 28, 28))
    labels = rng.integers(0, 10, 6)
    net = translate(model, x.shape[1:]).train(training)
    assert len(torch_bridge.counterparts(net)) == 4 * 2 + 3 * 4       # 4 weight layers, 3 BatchNorms

    loss_fn = SoftmaxCrossEntropy()
    logits = model.forward(x, training=training)          # draws the dropout masks torch will reuse
    loss = loss_fn.forward(logits, labels)
    dx = model.backward(loss_fn.backward())

    xt = t(x, grad=True)
    h = net(xt)
    loss_t = F.cross_entropy(h, torch.tensor(labels))
    loss_t.backward()

    close(logits, h, "logits")
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    close(dx, xt.grad, "dE/dX (Eq. 14)")
    close_counterparts(net, "Table 2 CNN", grads=True)
    close_counterparts(net, "Table 2 CNN")                # running statistics (and the untouched weights)


@pytest.mark.parametrize("name", ["dnn", "dnn-keras"])
def test_mnist_dnn_table1_adam_training_steps_match_torch(name):
    """Training, not just one gradient: the whole Table 1 network (BatchNorm, 50% dropout; "dnn-keras":
    BatchNorm on the logits too, Keras's constants) takes 8 Adam steps in nanosgm and in torch from the same
    weights, with the same mini-batches and the dropout masks nanosgm drew; every weight, every running
    statistic and the inference-mode logits must agree afterwards. (A systematic difference in any layer or
    in Adam would show here.)"""
    from nanosgm.optim import Adam

    backend.seed(5)
    model = models.build(name, dtype="float64")
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 1, (8 * 16, 784))
    labels = rng.integers(0, 10, len(X))

    net = translate(model, (784,)).train()
    opt, loss_fn = Adam(lr=1e-3), SoftmaxCrossEntropy()
    topt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for step in range(8):
        xb, yb = X[16 * step:16 * (step + 1)], labels[16 * step:16 * (step + 1)]
        loss = loss_fn.forward(model.forward(xb, training=True), yb)   # draws the masks torch reuses
        model.backward(loss_fn.backward())
        opt.step(model)
        loss_t = F.cross_entropy(net(t(xb)), torch.tensor(yb))
        topt.zero_grad()
        loss_t.backward()
        topt.step()
        assert loss == pytest.approx(loss_t.item(), rel=1e-9), f"loss at step {step}"

    close_counterparts(net, "after 8 Adam steps", rtol=1e-8, atol=1e-10)
    with torch.no_grad():
        h = net.eval()(t(X[:32]))
    np.testing.assert_allclose(model.forward(X[:32], training=False), h.numpy(), rtol=1e-8, atol=1e-9)


@pytest.mark.slow
def test_torch_reference_script_trains_the_cli_setup(mnist_real):
    """tests/torch_reference.py (the accuracy reference quoted in the README) runs and learns: on 5,000
    training images, one epoch of the Table 1 DNN in torch is far above chance (10 %)."""
    from conftest import require_real_data
    from torch_reference import train_reference

    acc, _ = train_reference("mnist", "dnn", epochs=1, limit=5000, data_dir=require_real_data("mnist"), threads=2)
    assert acc > 0.8
