"""Device backends: every layer, the MNIST CNN and a gradient check give the NumPy results on the device (float64).

Each test runs on CuPy (marked ``gpu``; skipped, with the reason, where cupy or a CUDA device is missing; run
just those with ``pytest -m gpu``) and on the CPU stand-in for CuPy (nanosgm.standin, every run): the
``device`` fixture of conftest.py. The stand-in refuses host arrays where CuPy does, so a host/device mix-up
fails here on any machine.
"""
import numpy as np
import pytest

from nanosgm import backend, models
from nanosgm.layers.gradcheck import check_model
from nanosgm.layers import (BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy)
from strategies import NETWORK_FLOOR, NETWORK_TOL, away_from_zero, distinct, normal

F64 = "float64"


def assert_matches(gpu, cpu, what=""):
    """``gpu`` is a device array holding ``cpu``'s values to 1e-10 (relative to the array's scale)."""
    assert backend.is_gpu_array(gpu), f"{what}: expected a device array, got {type(gpu).__name__}"
    g = gpu.get()
    cpu = np.asarray(cpu)
    assert g.shape == cpu.shape and g.dtype == cpu.dtype, f"{what}: {g.shape} {g.dtype} vs {cpu.shape} {cpu.dtype}"
    scale = max(1.0, float(np.abs(cpu).max(initial=0.0)))
    np.testing.assert_allclose(g, cpu, rtol=1e-10, atol=1e-10 * scale, err_msg=what)


def snapshot(layer):
    return {group: {k: np.array(v) for k, v in getattr(layer, group).items()} for group in ("params", "buffers")}


def copy_state(state, gpu_layer, cp):
    """Copy a snapshot's params and buffers into the device layer's own arrays (of module ``cp``), in place."""
    for group, arrays in state.items():
        dst = getattr(gpu_layer, group)
        assert arrays.keys() == dst.keys()
        for k, v in arrays.items():
            assert isinstance(dst[k], cp.ndarray), f"{group}[{k!r}] of a layer built on {cp.__name__} is not its array"
            dst[k][...] = cp.asarray(v)


def compare_layer(device, make, x, *, training=True, setup=None, before_gpu=None, seed=0):
    """Build the layer on each backend from the same seed, give both the same state, run forward and
    backward on the same data, and compare the output, dE/dx, every grad and every buffer."""
    cp = device.xp
    backend.use("numpy")
    backend.seed(seed)
    cpu = make()
    init = snapshot(cpu)
    if setup is not None:
        setup(cpu)
    state = snapshot(cpu)                                  # before forward moves BatchNorm's running stats
    y_cpu = np.array(cpu.forward(x, training=training))
    dy = normal(seed + 7, y_cpu.shape)
    dx_cpu = np.array(cpu.backward(dy))

    device.use()
    backend.seed(seed)
    gpu = make()
    for k, v in init["params"].items():    # He initialisation is drawn on the host: identical weights
        np.testing.assert_array_equal(backend.to_host(gpu.params[k]), v, err_msg=f"initial {k!r}")
    copy_state(state, gpu, cp)
    if before_gpu is not None:
        before_gpu(cpu, gpu)
    y_gpu = gpu.forward(cp.asarray(x), training=training)
    assert_matches(y_gpu, y_cpu, "forward")
    assert_matches(gpu.backward(cp.asarray(dy)), dx_cpu, "dE/dx")
    assert gpu.grads.keys() == cpu.grads.keys()
    for k in cpu.grads:
        assert_matches(gpu.grads[k], cpu.grads[k], f"grads[{k!r}]")
    for k in cpu.buffers:
        assert_matches(gpu.buffers[k], cpu.buffers[k], f"buffers[{k!r}]")


# --- the backend itself ----------------------------------------------------------------------------
def test_use_switches_the_array_module(device):
    cp = device.xp
    device.use()
    assert backend.name() == device.name and backend.xp() is cp
    a = backend.to_device(np.arange(3.0))
    assert isinstance(a, cp.ndarray) and backend.is_gpu_array(a) and backend.array_module(a) is cp
    h = backend.to_host(a)
    assert isinstance(h, np.ndarray)
    np.testing.assert_array_equal(h, [0.0, 1.0, 2.0])
    backend.synchronize()


def test_device_rng_is_on_the_gpu_and_seeded(device):
    cp = device.xp
    device.use()
    backend.seed(3)
    a = backend.device_rng().random(16)
    assert isinstance(a, cp.ndarray)
    backend.seed(3)
    np.testing.assert_array_equal(backend.device_rng().random(16).get(), a.get())
    assert isinstance(backend.host_rng(), np.random.Generator)


def test_dropout_mask_on_gpu_is_reproducible_from_the_seed(device):
    cp = device.xp
    device.use()
    x = cp.ones((64, 32))
    backend.seed(11)
    a = Dropout(0.5).forward(x).get()
    backend.seed(11)
    b = Dropout(0.5).forward(x).get()
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 2.0} and 0.3 < (a != 0).mean() < 0.7


# --- every layer, float64, against NumPy -------------------------------------------------------------
def test_dense_matches_numpy(device):
    def setup(layer):
        layer.params["b"][...] = normal(1, 4)
    compare_layer(device, lambda: Dense(6, 4, dtype=F64), normal(0, (5, 6)), setup=setup)


def test_dense_init_is_identical_on_both_backends(device):
    compare_layer(device, lambda: Dense(6, 4, dtype=F64), normal(0, (5, 6)))


@pytest.mark.parametrize("cin,cout,k,stride,padding,h,w", [
    (2, 3, 3, 1, 0, 7, 6),
    (2, 3, 3, 2, 1, 7, 6),          # strided and padded (Table 3)
    (1, 4, 5, 1, 0, 12, 12),        # the MNIST CNN's 5x5 (Table 2)
    (3, 2, 1, 1, 0, 4, 5),          # 1x1
    (2, 2, 4, 3, 2, 5, 7),
])
def test_conv2d_matches_numpy(cin, cout, k, stride, padding, h, w, device):
    def setup(layer):
        layer.params["b"][...] = normal(1, cout)
    compare_layer(device, lambda: Conv2D(cin, cout, k, stride, padding, dtype=F64), normal(0, (2, cin, h, w)),
                  setup=setup)


def test_conv2d_init_is_identical_on_both_backends(device):
    compare_layer(device, lambda: Conv2D(2, 3, 3, dtype=F64), normal(0, (2, 2, 5, 5)))


@pytest.mark.parametrize("k,stride", [(2, None), (3, 2), (2, 1)])
def test_maxpool_matches_numpy(k, stride, device):
    compare_layer(device, lambda: MaxPool2D(k, stride), distinct(0, (2, 3, 7, 6)))


def test_maxpool_tie_rule_matches_numpy(device):
    compare_layer(device, lambda: MaxPool2D(2), np.round(normal(0, (2, 2, 6, 6))))     # many exact ties


@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_numpy(shape, training, device):
    f = shape[1]

    def setup(layer):
        layer.params["gamma"][...] = normal(1, f)
        layer.params["beta"][...] = normal(2, f)
        layer.buffers["running_mean"][...] = normal(3, f)
        layer.buffers["running_var"][...] = 0.5 + np.abs(normal(4, f))
    compare_layer(device, lambda: BatchNorm(f, dtype=F64), normal(0, shape) * 2 + 1, training=training, setup=setup)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4, 4)])
def test_dropout_with_the_mask_copied_matches_numpy(shape, device):
    cp = device.xp

    def make():
        layer = Dropout(0.4)
        layer.hold_mask = True
        return layer

    def before_gpu(cpu, gpu):
        gpu.mask = cp.asarray(cpu.mask)

    compare_layer(device, make, normal(0, shape), before_gpu=before_gpu)


def test_dropout_inference_is_the_identity_on_gpu(device):
    compare_layer(device, lambda: Dropout(0.4), normal(0, (5, 7)), training=False)


def test_relu_matches_numpy(device):
    compare_layer(device, ReLU, away_from_zero(0, (3, 4, 5)))


def test_global_avg_pool_matches_numpy(device):
    compare_layer(device, GlobalAvgPool2D, normal(0, (2, 3, 4, 5)))


def test_flatten_matches_numpy(device):
    compare_layer(device, Flatten, normal(0, (2, 3, 4, 5)))


@pytest.mark.parametrize("labels_on_gpu", [True, False])
def test_softmax_cross_entropy_matches_numpy(labels_on_gpu, device):
    cp = device.xp
    logits = normal(0, (6, 5)) * 3
    logits[0, 2] = 1e4                                   # stability on the GPU too
    labels = np.array([2, 0, 4, 1, 1, 3])
    cpu = SoftmaxCrossEntropy()
    loss_cpu = cpu.forward(logits, labels)
    device.use()
    gpu = SoftmaxCrossEntropy()
    loss_gpu = gpu.forward(cp.asarray(logits), cp.asarray(labels) if labels_on_gpu else labels)
    assert isinstance(loss_gpu, float)
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-12)
    assert_matches(gpu.backward(), cpu.backward(), "dE/dlogits")
    assert_matches(gpu.losses(), cpu.losses(), "per-sample losses")


def test_softmax_cross_entropy_checks_labels_on_gpu(device):
    cp = device.xp
    device.use()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        SoftmaxCrossEntropy().forward(cp.zeros((2, 3)), cp.asarray([0, 3]))


# --- whole networks ------------------------------------------------------------------------------------
def _dropouts(model):
    return [layer for layer in model.layers if isinstance(layer, Dropout)]


def test_mnist_cnn_forward_backward_matches_numpy(device):
    cp = device.xp
    x, labels = normal(0, (4, 1, 28, 28)), np.array([3, 1, 4, 1])

    backend.use("numpy")
    backend.seed(0)
    cpu = models.mnist_cnn(dtype=F64)
    for d in _dropouts(cpu):
        d.hold_mask = True
    loss_cpu = SoftmaxCrossEntropy()
    value_cpu = loss_cpu.forward(cpu.forward(x, training=True), labels)
    dx_cpu = cpu.backward(loss_cpu.backward())

    device.use()
    backend.seed(0)
    gpu = models.mnist_cnn(dtype=F64)
    init_gpu = gpu.state_dict()
    backend.use("numpy")
    backend.seed(0)
    init_cpu = models.mnist_cnn(dtype=F64).state_dict()     # cpu's own running stats have moved on
    device.use()
    assert init_gpu.keys() == init_cpu.keys()
    for name, v in init_cpu.items():                         # same seed, same initial network
        np.testing.assert_array_equal(init_gpu[name], v, err_msg=f"initial {name!r}")
    gpu.load_state_dict(init_cpu)
    for dc, dg in zip(_dropouts(cpu), _dropouts(gpu)):
        dg.hold_mask = True
        dg.mask = cp.asarray(dc.mask)
    loss_gpu = SoftmaxCrossEntropy()
    value_gpu = loss_gpu.forward(gpu.forward(cp.asarray(x), training=True), cp.asarray(labels))
    dx_gpu = gpu.backward(loss_gpu.backward())

    assert value_gpu == pytest.approx(value_cpu, rel=1e-10)
    assert_matches(dx_gpu, dx_cpu, "dE/dX")
    grads_cpu = {name: g for name, _, g in cpu.parameters()}
    for name, _, g in gpu.parameters():
        assert_matches(g, grads_cpu[name], f"grad {name}")
    state_cpu = cpu.state_dict()
    for name, v in gpu.state_dict().items():
        np.testing.assert_allclose(v, state_cpu[name], rtol=1e-10, atol=1e-12, err_msg=name)
    assert_matches(gpu.forward(cp.asarray(x), training=False), cpu.forward(x, training=False), "inference logits")


def _small_conv_net():
    return Sequential([Conv2D(1, 2, 3, dtype=F64), MaxPool2D(2), BatchNorm(2, dtype=F64), ReLU(),
                       Flatten(), Dense(2 * 2 * 2, 3, dtype=F64)])


# A seed for which no finite-difference step flips a ReLU or a max-pool winner (checked on the CPU).
GRADCHECK_SEED = 0


def test_gradcheck_of_a_small_conv_net_on_gpu(device):
    cp = device.xp
    x, labels = normal(GRADCHECK_SEED, (3, 1, 6, 6)), np.random.default_rng(GRADCHECK_SEED).integers(0, 3, 3)
    backend.use("numpy")
    backend.seed(GRADCHECK_SEED)
    _, analytic_cpu, _ = check_model(_small_conv_net(), SoftmaxCrossEntropy(), x, labels, floor=NETWORK_FLOOR,
                                     return_gradients=True)
    device.use()
    backend.seed(GRADCHECK_SEED)
    model = _small_conv_net()
    xg = cp.ascontiguousarray(cp.asarray(x))            # numerical_gradient perturbs in place: C-contiguous
    for _, p, _ in model.parameters():
        assert isinstance(p, cp.ndarray) and p.flags.c_contiguous
    errors, analytic, _ = check_model(model, SoftmaxCrossEntropy(), xg, cp.asarray(labels), floor=NETWORK_FLOOR,
                                      return_gradients=True)
    worst = max(errors, key=errors.get)
    assert errors[worst] < NETWORK_TOL, f"relative error {errors[worst]:.2e} at {worst!r} (all: {errors})"
    for name, g in analytic.items():
        assert_matches(g, analytic_cpu[name], f"analytic {name}")


def test_save_on_gpu_load_on_cpu(tmp_path, device):
    cp = device.xp
    path = tmp_path / "gpu.npz"
    x = normal(0, (4, 1, 6, 6))
    device.use()
    backend.seed(1)
    gpu = _small_conv_net()
    gpu.forward(cp.asarray(x), training=True)           # move the running statistics off their defaults
    state_gpu = gpu.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state_gpu.values())
    gpu.save(path)
    logits_gpu = gpu.forward(cp.asarray(x), training=False).get()

    backend.use("numpy")
    backend.seed(2)
    cpu = _small_conv_net()
    cpu.load(path)
    state_cpu = cpu.state_dict()
    assert state_cpu.keys() == state_gpu.keys()
    for k, v in state_gpu.items():
        np.testing.assert_array_equal(state_cpu[k], v, err_msg=k)
    assert not np.allclose(state_cpu["2.running_var"], 1.0)
    np.testing.assert_allclose(cpu.forward(x, training=False), logits_gpu, rtol=1e-10, atol=1e-12)


def test_load_on_gpu_from_a_cpu_checkpoint(tmp_path, device):
    cp = device.xp
    path = tmp_path / "cpu.npz"
    backend.use("numpy")
    backend.seed(4)
    cpu = _small_conv_net()
    cpu.forward(normal(0, (4, 1, 6, 6)), training=True)
    cpu.save(path)
    device.use()
    backend.seed(5)
    gpu = _small_conv_net()
    gpu.load(path)
    for _, p, _ in gpu.parameters():
        assert isinstance(p, cp.ndarray)
    for k, v in cpu.state_dict().items():
        np.testing.assert_array_equal(gpu.state_dict()[k], v, err_msg=k)
