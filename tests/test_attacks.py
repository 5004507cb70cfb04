"""Tests for nanosgm.attacks: FGSM (Eq. 20), PGD, accuracy and evaluate."""
import numpy as np
import pytest

from nanosgm import attacks, backend
from nanosgm.attacks import PAPER_EPS, accuracy, evaluate, fgsm, input_gradient, pgd
from nanosgm.layers import (BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sequential,
                            SoftmaxCrossEntropy)
from nanosgm.optim import Adam

torch = pytest.importorskip("torch")
F = torch.nn.functional


def small_cnn(dropout=0.5, seed=0, randomise=True):
    """Conv -> BN -> ReLU -> pool -> Dense -> BN -> ReLU -> Dropout -> Dense, float64, 3 classes."""
    rng = np.random.default_rng(seed)
    model = Sequential([
        Conv2D(1, 2, 3, dtype="float64", rng=rng), BatchNorm(2, dtype="float64"), ReLU(), MaxPool2D(2), Flatten(),
        Dense(2 * 3 * 3, 6, dtype="float64", rng=rng), BatchNorm(6, dtype="float64"), ReLU(), Dropout(dropout),
        Dense(6, 3, dtype="float64", rng=rng),
    ])
    if not randomise:  # (on CuPy: the caller loads a state dict)
        return model
    # non-trivial BN parameters and running statistics, so inference mode differs from training mode
    for layer in (model[1], model[6]):
        layer.params["gamma"][...] = rng.uniform(0.5, 1.5, layer.num_features)
        layer.params["beta"][...] = rng.uniform(-0.2, 0.2, layer.num_features)
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"][...] = rng.uniform(-0.1, 0.1, layer.params["b"].shape)
    for _ in range(3):
        model.forward(rng.uniform(0, 1, (16, 1, 8, 8)), training=True)
    return model


def torch_input_grad(model, x, y, training):
    """The same network written in torch (weights copied), gradient of the mean CE at the input."""
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)
    conv, bn1, dense1, bn2, dense2 = model[0], model[1], model[5], model[6], model[9]
    xt = t(x).requires_grad_(True)

    def bn(h, layer):
        return F.batch_norm(h, t(layer.buffers["running_mean"]), t(layer.buffers["running_var"]),
                            t(layer.params["gamma"]), t(layer.params["beta"]), training=training,
                            momentum=layer.momentum, eps=layer.eps)

    h = F.conv2d(xt, t(conv.params["W"]), t(conv.params["b"]))
    h = F.max_pool2d(F.relu(bn(h, bn1)), 2).flatten(1)
    h = F.relu(bn(h @ t(dense1.params["W"]) + t(dense1.params["b"]), bn2))
    logits = h @ t(dense2.params["W"]) + t(dense2.params["b"])
    loss = F.cross_entropy(logits, torch.tensor(y))
    loss.backward()
    return loss.item(), xt.grad.numpy()


def snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_model_unchanged(model, before):
    after = model.state_dict()
    assert set(after) == set(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


@pytest.fixture
def batch():
    rng = np.random.default_rng(5)
    return rng.uniform(0, 1, (8, 1, 8, 8)), rng.integers(0, 3, 8)


# ---------------------------------------------------------------------------- FGSM
def test_input_gradient_matches_torch_in_inference_mode(batch):
    x, y = batch
    model = small_cnn()
    loss, g = input_gradient(model, x, y)
    loss_t, g_t = torch_input_grad(model, x, y, training=False)
    assert loss == pytest.approx(loss_t, rel=1e-12)
    np.testing.assert_allclose(g, g_t, rtol=1e-9, atol=1e-15)


def test_fgsm_matches_torch_and_stays_in_ball_and_range(batch):
    x, y = batch
    model = small_cnn()
    before = snapshot(model)
    x_copy = x.copy()
    _, g_t = torch_input_grad(model, x, y, training=False)
    for eps in PAPER_EPS:
        x_adv = fgsm(model, x, y, eps)
        expected = np.clip(x + eps * np.sign(g_t), 0.0, 1.0)
        sure = np.abs(g_t) > 1e-12            # where the sign is not decided by rounding
        np.testing.assert_allclose(x_adv[sure], expected[sure], rtol=0, atol=1e-15)
        assert np.abs(x_adv - x).max() <= eps + 1e-15
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        assert x_adv.dtype == x.dtype
    np.testing.assert_array_equal(x, x_copy)
    assert_model_unchanged(model, before)       # parameters AND batch-norm running statistics


def test_fgsm_without_clip_leaves_range():
    x = np.full((4, 1, 8, 8), 0.999)
    y = np.array([0, 1, 2, 0])
    adv = fgsm(small_cnn(), x, y, 0.2, clip=None)
    assert adv.max() > 1.0
    np.testing.assert_allclose(np.abs(adv - x)[np.abs(adv - x) > 0], 0.2)


def test_fgsm_training_mode_is_the_authors_script_and_restores_buffers(batch):
    """training=True, clip=None: batch statistics in the gradient (checked against torch in training
    mode, no dropout), and the running statistics are put back afterwards."""
    x, y = batch
    model = small_cnn(dropout=0.0)
    before = snapshot(model)
    _, g_train = input_gradient(model, x, y, training=True)
    assert_model_unchanged(model, before)
    _, g_t = torch_input_grad(model, x, y, training=True)
    np.testing.assert_allclose(g_train, g_t, rtol=1e-8, atol=1e-14)
    _, g_eval = input_gradient(model, x, y)
    assert not np.allclose(g_train, g_eval)   # the two modes really differ on this model
    adv = fgsm(model, x, y, 0.1, clip=None, training=True)
    sure = np.abs(g_t) > 1e-12
    np.testing.assert_allclose(adv[sure], (x + 0.1 * np.sign(g_t))[sure], atol=1e-15)
    # with dropout on, training mode still leaves every parameter and buffer as it was
    dropped = small_cnn(dropout=0.5)
    before = snapshot(dropped)
    fgsm(dropped, x, y, 0.1, training=True)
    assert_model_unchanged(dropped, before)


# ---------------------------------------------------------------------------- PGD
def _loss(model, x, y):
    return SoftmaxCrossEntropy().forward(model.forward(x, training=False), y)


def test_pgd_ball_range_determinism_and_loss(batch):
    x, y = batch
    model = small_cnn()
    before = snapshot(model)
    eps = 0.05
    a = pgd(model, x, y, eps, rng=0)
    b = pgd(model, x, y, eps, rng=np.random.default_rng(0))
    c = pgd(model, x, y, eps, rng=1)
    np.testing.assert_array_equal(a, b)          # deterministic with a seed
    assert not np.array_equal(a, c)
    for adv in (a, c, pgd(model, x, y, eps, random_start=False)):
        assert np.abs(adv - x).max() <= eps + 1e-12
        assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert _loss(model, a, y) >= _loss(model, x, y)
    assert_model_unchanged(model, before)


def test_pgd_one_step_without_random_start_is_fgsm(batch):
    x, y = batch
    model = small_cnn()
    for eps in (0.01, 0.1):
        np.testing.assert_array_equal(pgd(model, x, y, eps, steps=1, step_size=eps, random_start=False),
                                      fgsm(model, x, y, eps))


def test_pgd_default_step_size():
    model = small_cnn()
    x = np.full((2, 1, 8, 8), 0.5)
    y = np.array([0, 1])
    # one step of size 2.5 * eps / 1 from the centre, then projected back onto the eps-ball
    adv = pgd(model, x, y, 0.1, steps=1, random_start=False)
    moved = np.abs(adv - x)
    assert np.allclose(moved[moved > 0], 0.1)


@pytest.fixture(scope="module")
def trained_mlp():
    """A small MLP trained on two Gaussian blobs in [0, 1]^20 (separable; deterministic)."""
    rng = np.random.default_rng(0)
    n, d = 400, 20
    y = rng.integers(0, 2, n)
    centres = np.where(y[:, None] == 1, 0.6, 0.4)
    X = np.clip(centres + 0.05 * rng.standard_normal((n, d)), 0, 1)
    model = Sequential([Dense(d, 16, dtype="float64", rng=rng), ReLU(), Dense(16, 2, dtype="float64", rng=rng)])
    opt = Adam(lr=0.01)
    loss_fn = SoftmaxCrossEntropy()
    for epoch in range(30):
        perm = rng.permutation(n)
        for i in range(0, n, 50):
            idx = perm[i:i + 50]
            loss_fn.forward(model.forward(X[idx], training=True), y[idx])
            model.backward(loss_fn.backward())
            opt.step(model)
    return model, X, y


def test_trained_model_pgd_no_better_than_fgsm(trained_mlp):
    model, X, y = trained_mlp
    assert accuracy(model, X, y) > 0.97
    eps_list = (0.02, 0.05, 0.1)
    acc_fgsm = evaluate(model, X, y, eps_list, attack="fgsm", progress=False)
    acc_pgd = evaluate(model, X, y, eps_list, attack="pgd", progress=False, rng=0)
    for eps in eps_list:
        assert acc_pgd[eps] <= acc_fgsm[eps], (eps, acc_pgd, acc_fgsm)
    assert acc_fgsm[0.1] < 0.5   # a 0.1 step crosses the margin between the blobs (0.2 apart per coordinate)


# ---------------------------------------------------------------------------- accuracy / evaluate
def test_accuracy_batched_equals_one_shot(trained_mlp):
    model, X, y = trained_mlp
    pred = np.argmax(model.forward(X, training=False), axis=1)
    expected = float(np.mean(pred == y))
    for bs in (7, 100, 1000):
        assert accuracy(model, X, y, batch_size=bs) == expected


def test_evaluate_fgsm_matches_per_eps_attacks(trained_mlp):
    model, X, y = trained_mlp
    X, y = X[:130], y[:130]
    eps_list = (0.0,) + PAPER_EPS
    result = evaluate(model, X, y, eps_list, batch_size=50, progress=False)
    assert list(result) == list(eps_list)
    assert result[0.0] == accuracy(model, X, y)
    for eps in PAPER_EPS:
        # no batch norm here, so each row's gradient sign does not depend on its batch
        adv = fgsm(model, X, y, eps)
        assert result[eps] == accuracy(model, adv, y), eps
        assert 0.0 <= result[eps] <= 1.0
    assert result[0.2] <= result[0.001]
    assert attacks.PAPER_EPS == (0.001, 0.01, 0.1, 0.2) and set(attacks.ATTACKS) == {"fgsm", "pgd"}


def test_evaluate_rejects_unknown_attack_and_accepts_callables(trained_mlp):
    model, X, y = trained_mlp
    with pytest.raises(ValueError, match="fgsm, pgd"):
        evaluate(model, X, y, attack="cw", progress=False)
    identity = lambda m, x, yy, eps: x
    assert evaluate(model, X, y, (0.1,), attack=identity, progress=False)[0.1] == accuracy(model, X, y)


def test_evaluate_shows_progress_bar(trained_mlp, capsys, monkeypatch):
    """A bar on a terminal; none when stderr is a file or pipe (logs stay clean), and none with progress=False."""
    import sys
    model, X, y = trained_mlp
    evaluate(model, X[:20], y[:20], (0.1,), batch_size=10, progress=True)
    assert capsys.readouterr().err == ""                       # captured stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    evaluate(model, X[:20], y[:20], (0.1,), batch_size=10, progress=True)
    assert "batch" in capsys.readouterr().err
    evaluate(model, X[:20], y[:20], (0.1,), batch_size=10, progress=False)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------- CuPy (skipped without a GPU)
_cupy_ok, _cupy_why = backend.cupy_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cupy_ok, reason=_cupy_why)
def test_attacks_on_cupy_match_numpy(batch):
    import cupy

    x, y = batch
    host_model = small_cnn()
    state = host_model.state_dict()
    fgsm_np = fgsm(host_model, x, y, 0.1)
    acc_np = evaluate(host_model, x, y, (0.0, 0.1), progress=False)
    backend.use("cupy")
    try:
        model = small_cnn(randomise=False)
        model.load_state_dict(state)
        adv = fgsm(model, x, y, 0.1)                   # host inputs are moved to the device
        assert isinstance(adv, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(adv), fgsm_np, atol=1e-12)
        assert evaluate(model, x, y, (0.0, 0.1), progress=False) == acc_np
        p = pgd(model, cupy.asarray(x), cupy.asarray(y), 0.05, rng=0)
        assert float(cupy.abs(p - cupy.asarray(x)).max()) <= 0.05 + 1e-12
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(v, state[k])
    finally:
        backend.use("numpy")


def test_evaluate_pgd_is_deterministic_with_a_seed(trained_mlp):
    model, X, y = trained_mlp
    runs = [evaluate(model, X[:120], y[:120], (0.05, 0.1), attack="pgd", batch_size=50, progress=False,
                     rng=seed, steps=3) for seed in (7, 7)]
    assert runs[0] == runs[1]
