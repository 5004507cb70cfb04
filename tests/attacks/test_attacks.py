"""Tests for nanosgm.attacks: FGSM (Eq. 20), PGD (+ restarts), APGD, Square, transfer, accuracy and evaluate."""
import numpy as np
import pytest
from hypothesis import given, settings

from nanosgm import attacks, backend
from nanosgm.attacks import (PAPER_EPS, accuracy, apgd, correct_under_attack, evaluate, fgsm, input_gradient, pgd, square)
from nanosgm.attacks.apgd import _apgd_checkpoint, _ApgdState
from nanosgm.attacks.square import _square_proposal
from strategies import attack_eps, blob_images, seeds, train_small
from nanosgm.layers import (BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy)
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
    assert attacks.PAPER_EPS == (0.001, 0.01, 0.1, 0.2) and set(attacks.ATTACKS) == {"fgsm", "pgd", "apgd", "square"}


def test_evaluate_rejects_unknown_attack_and_accepts_callables(trained_mlp):
    model, X, y = trained_mlp
    with pytest.raises(ValueError, match="apgd, fgsm, pgd, square"):
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


# ------------------------------------------- device backends: CuPy (skipped without a GPU) and the CPU stand-in
def test_attacks_on_cupy_match_numpy(batch, device):
    xp = device.xp
    x, y = batch
    host_model = small_cnn()
    state = host_model.state_dict()
    fgsm_np = fgsm(host_model, x, y, 0.1)
    acc_np = evaluate(host_model, x, y, (0.0, 0.1), progress=False)
    device.use()
    try:
        model = small_cnn(randomise=False)
        model.load_state_dict(state)
        adv = fgsm(model, x, y, 0.1)                   # host inputs are moved to the device
        assert isinstance(adv, xp.ndarray)
        np.testing.assert_allclose(xp.asnumpy(adv), fgsm_np, atol=1e-12)
        assert evaluate(model, x, y, (0.0, 0.1), progress=False) == acc_np
        p = pgd(model, xp.asarray(x), xp.asarray(y), 0.05, rng=0)
        assert float(xp.abs(p - xp.asarray(x)).max()) <= 0.05 + 1e-12
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(v, state[k])
    finally:
        backend.use("numpy")


def test_evaluate_pgd_is_deterministic_with_a_seed(trained_mlp):
    model, X, y = trained_mlp
    runs = [evaluate(model, X[:120], y[:120], (0.05, 0.1), attack="pgd", batch_size=50, progress=False,
                     rng=seed, steps=3) for seed in (7, 7)]
    assert runs[0] == runs[1]


# ============================================================================ stronger attacks (issue 9)
# A small trained network on 6x6 "images" of three classes (float64): attacks succeed on part of the
# set at eps ~ 0.05-0.1, so accuracies are neither 0 nor 1 there.
def blob_net(seed=0):
    from nanosgm.layers import Flatten
    rng = np.random.default_rng(seed)
    return Sequential([Flatten(), Dense(36, 16, dtype="float64", rng=rng), ReLU(), Dense(16, 3, dtype="float64", rng=rng)])


@pytest.fixture(scope="module")
def blobs():
    X, y = blob_images(0, 300)
    return train_small(blob_net(), X, y), X, y


def torch_twin(model, in_shape):
    """The same network in torch (nanosgm.bench.to_torch: weights and running statistics copied), eval mode."""
    from nanosgm.bench.bench import to_torch
    return to_torch(model, in_shape).eval()


def torch_loss(logits, y, loss):
    """Per-example CE or DLR (Croce & Hein 2020, Eq. 5) written directly in torch."""
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    top = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -np.inf).max(dim=1).values
    return -(z_y - other) / (top[:, 0] - top[:, 2] + 1e-12)


def torch_grad(net, z, y, loss):
    """(per-example loss, logits, d(sum of losses)/dz) by torch autograd."""
    z = z.detach().clone().requires_grad_(True)
    logits = net(z)
    per = torch_loss(logits, y, loss)
    per.sum().backward()
    return per.detach(), logits.detach(), z.grad


def torch_pgd_run(net, x, y, eps, steps, alpha, u, clip=(0.0, 1.0)):
    """Madry et al. PGD in torch from the random start u (U[0, 1) values)."""
    z = torch.clamp(x + (2 * u - 1) * eps, *clip)
    for _ in range(steps):
        _, _, g = torch_grad(net, z, y, "ce")
        z = torch.clamp(torch.min(torch.max(z + alpha * g.sign(), x - eps), x + eps), *clip)
    return z


def torch_apgd(net, x, y, eps, steps, loss, x0, clip=(0.0, 1.0)):
    """Croce & Hein 2020, Algorithm 1, written independently in torch (per example, float64)."""
    proj = lambda z: torch.clamp(torch.min(torch.max(z, x - eps), x + eps), *clip)
    col = lambda v: v.reshape(-1, *([1] * (x.dim() - 1)))
    W = attacks.apgd_checkpoints(steps)                        # the schedule is hand-checked below
    f, logits, g = torch_grad(net, x0, y, loss)
    fooled = logits.argmax(1) != y
    x_fool = x0.clone()
    eta = torch.full((len(x),), 2.0 * eps, dtype=torch.float64)
    x_k, x_prev, f_k = x0, x0, f
    x_max, f_max, g_max = x0.clone(), f.clone(), g.clone()
    ups = torch.zeros(len(x))
    eta_last, fmax_last, w_last = eta.clone(), f_max.clone(), 0
    for k in range(steps):
        z = proj(x_k + col(eta) * g.sign())
        x_new = z if k == 0 else proj(x_k + 0.75 * (z - x_k) + 0.25 * (x_k - x_prev))
        f_new, logits, g_new = torch_grad(net, x_new, y, loss)
        ups += (f_new > f_k).double()
        newly = (logits.argmax(1) != y) & ~fooled
        x_fool[newly] = x_new[newly]
        fooled |= newly
        better = f_new > f_max
        x_max[better], f_max[better], g_max[better] = x_new[better], f_new[better], g_new[better]
        x_prev, x_k, f_k, g = x_k, x_new, f_new, g_new
        if k + 1 in W and k + 1 > 0:
            eta_before = eta.clone()
            halve = (ups < 0.75 * (k + 1 - w_last)) | ((eta_last == eta) & (fmax_last == f_max))
            eta = torch.where(halve, eta / 2, eta)
            x_k = torch.where(col(halve), x_max, x_k)
            g = torch.where(col(halve), g_max, g)
            f_k = torch.where(halve, f_max, f_k)
            eta_last, fmax_last, w_last = eta_before, f_max.clone(), k + 1
            ups = torch.zeros(len(x))
    return torch.where(col(fooled), x_fool, x_max)


def model_state(model):
    """Parameters, buffers and the weight gradients the layers hold, as copies."""
    grads = {f"{i}.{k}": np.array(v) for i, layer in enumerate(model.layers) for k, v in layer.grads.items()}
    return snapshot(model), grads


def assert_state_unchanged(model, before):
    state, grads = before
    assert_model_unchanged(model, state)
    _, now = model_state(model)
    assert set(now) == set(grads)
    for k in grads:
        np.testing.assert_array_equal(now[k], grads[k], err_msg=k)


# ---------------------------------------------------------------------------- losses against torch
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_loss_and_input_gradient_match_torch(loss, batch):
    x, y = batch
    model = small_cnn()
    net = torch_twin(model, (1, 8, 8))
    values, logits, g = attacks.loss_and_input_gradient(model, x, y, loss)
    v_t, l_t, g_t = torch_grad(net, torch.tensor(x), torch.tensor(y), loss)
    np.testing.assert_allclose(logits, l_t.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(values, v_t.numpy(), rtol=1e-10, atol=1e-12)
    scale = len(x) if loss == "ce" else 1          # CE: the gradient of the batch mean, as in training
    np.testing.assert_allclose(g * scale, g_t.numpy(), rtol=1e-8, atol=1e-13)


def test_dlr_loss_hand_checked():
    """z = (3, 1, 0) with y = 1: gap = 1 - 3 = -2, spread = 3 - 0: DLR = 2/3; misclassified -> positive."""
    z = np.array([[3.0, 1.0, 0.0], [3.0, 1.0, 0.0]])
    loss, d = attacks.dlr_loss(z, np.array([1, 0]))
    np.testing.assert_allclose(loss, [2 / 3, -2 / 3], atol=1e-12)
    # y = 1: d/dz_1 = -1/3, d/dz_0 (best other AND pi1) = 1/3 + (-2)/9, d/dz_2 (pi3) = 2/9
    np.testing.assert_allclose(d[0], [1 / 3 - 2 / 9, -1 / 3, 2 / 9], atol=1e-12)
    np.testing.assert_allclose(attacks.margin(z, np.array([1, 0])), [-2.0, 2.0])
    with pytest.raises(ValueError, match="3 classes"):
        attacks.dlr_loss(z[:, :2], np.array([0, 1]))


# ---------------------------------------------------------------------------- PGD with restarts
def test_pgd_steps_match_torch(blobs):
    model, X, y = blobs
    x, yy = X[:40], y[:40]
    eps, steps = 0.08, 6
    net = torch_twin(model, (1, 6, 6))
    ours = pgd(model, x, yy, eps, steps=steps, rng=3)
    u = np.random.default_rng(3).random(x.shape)           # the start pgd draws from the same seed
    theirs = torch_pgd_run(net, torch.tensor(x), torch.tensor(yy), eps, steps, 2.5 * eps / steps, torch.tensor(u))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-12)


def test_pgd_restarts_keep_the_worst_start_per_example(blobs):
    model, X, y = blobs
    x, yy = X[:120], y[:120]
    eps = 0.07
    np.testing.assert_array_equal(pgd(model, x, yy, eps, steps=3, restarts=1, rng=5), pgd(model, x, yy, eps, steps=3, rng=5))
    g = np.random.default_rng(5)
    runs = [pgd(model, x, yy, eps, steps=3, rng=g) for _ in range(3)]     # the three starts, one stream
    best = pgd(model, x, yy, eps, steps=3, restarts=3, rng=5)
    fooled = np.array([np.argmax(model.forward(r, training=False), 1) != yy for r in runs])
    losses = np.array([SoftmaxCrossEntropy() for _ in runs])
    ce = []
    for r, f in zip(runs, losses):
        f.forward(model.forward(r, training=False), yy)
        ce.append(f.losses())
    ce = np.array(ce)
    for i in range(len(x)):
        match = [k for k in range(3) if np.array_equal(best[i], runs[k][i])]
        assert match, i                                                   # one of the starts, as it was
        k = match[0]
        if fooled[:, i].any():
            assert fooled[k, i]                                           # misclassified if any start was
        else:
            assert ce[k, i] == ce[:, i].max()                             # else the highest loss
    acc_best = accuracy(model, best, yy)
    assert all(acc_best <= accuracy(model, r, yy) for r in runs)
    assert acc_best < max(accuracy(model, r, yy) for r in runs)           # restarts really help here
    with pytest.raises(ValueError, match="restarts"):
        pgd(model, x, yy, eps, restarts=2, random_start=False)


@pytest.mark.parametrize("eps", [0.07, 0.1])      # 39 % and 95 % of the examples fooled
def test_pgd_restarts_skipping_fooled_examples_match_the_reference(blobs, eps):
    """The speed trick (a restart runs on the examples no earlier one fooled) against every restart on
    every example: the same examples end misclassified, the unfooled ones at the same points, and a fooled
    one at its first misclassified start."""
    model, X, y = blobs
    fast = pgd(model, X, y, eps, steps=3, restarts=3, rng=5)
    ref = pgd(model, X, y, eps, steps=3, restarts=3, rng=5, skip_fooled=False)
    wrong = lambda a: np.argmax(model.forward(a, training=False), 1) != y
    np.testing.assert_array_equal(wrong(fast), wrong(ref))
    assert wrong(ref).any() and not wrong(ref).all()
    np.testing.assert_allclose(fast[~wrong(ref)], ref[~wrong(ref)], rtol=0, atol=1e-12)
    g = np.random.default_rng(5)
    runs = [pgd(model, X, y, eps, steps=3, rng=g) for _ in range(3)]
    first = np.argmax(np.array([wrong(r) for r in runs]), axis=0)         # the first start that fooled each
    for i in np.nonzero(wrong(ref))[0]:
        np.testing.assert_allclose(fast[i], runs[first[i]][i], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- APGD
def test_apgd_checkpoints_hand_checked():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (then 1.05 > 1)
    assert attacks.apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert attacks.apgd_checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]      # ceil(2.2), ceil(4.1), ...; 9.3, 9.9 -> 10
    assert attacks.apgd_checkpoints(1000)[:4] == [0, 220, 410, 570]


def test_apgd_checkpoint_conditions_hand_checked():
    """Four examples at checkpoint w = 22 after w_prev = 0 (22 steps; rho * 22 = 16.5 increases needed):
    0: 20 increases, f_max improved          -> keep eta, keep x
    1: 10 increases (Condition 1)            -> halve, restart from x_max
    2: 20 increases, f_max unchanged, eta not halved last time (Condition 2) -> halve, restart
    3: 20 increases, f_max unchanged, but eta was halved last time          -> keep"""
    x = np.zeros((4, 1, 1, 2))
    s = _ApgdState(x, np.zeros(4), np.ones_like(x), eps=0.1)
    s.x, s.g, s.f = x + 0.05, -np.ones_like(x), np.full(4, 1.0)
    s.x_max, s.g_max, s.f_max = x + 0.02, np.ones_like(x), np.array([2.0, 2.0, 0.0, 0.0])
    s.f_max_last = np.array([1.0, 1.0, 0.0, 0.0])
    s.halved_last = np.array([False, False, False, True])
    s.increases = np.array([20, 10, 20, 20])
    _apgd_checkpoint(s, 22, 0)
    np.testing.assert_allclose(s.eta, [0.2, 0.1, 0.1, 0.2])
    halved = np.array([False, True, True, False])
    np.testing.assert_allclose(s.x[:, 0, 0, 0], np.where(halved, 0.02, 0.05))
    np.testing.assert_allclose(s.g[:, 0, 0, 0], np.where(halved, 1.0, -1.0))
    np.testing.assert_allclose(s.f, np.where(halved, s.f_max, 1.0))
    np.testing.assert_array_equal(s.halved_last, halved)
    np.testing.assert_array_equal(s.f_max_last, [2.0, 2.0, 0.0, 0.0])
    assert s.increases.sum() == 0


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_matches_torch(blobs, loss):
    """Every step (momentum, projections, checkpoints, restarts, the returned point) against an
    independent torch float64 version of Algorithm 1 from the same start."""
    model, X, y = blobs
    x, yy = X[:60], y[:60]
    eps, steps = 0.06, 25
    ours = apgd(model, x, yy, eps, steps=steps, loss=loss, rng=2)
    x0 = attacks.apgd_start(x, eps, np.random.default_rng(2))
    assert np.abs(x0 - x).max() <= eps + 1e-12 and x0.min() >= 0 and x0.max() <= 1
    theirs = torch_apgd(torch_twin(model, (1, 6, 6)), torch.tensor(x), torch.tensor(yy), eps, steps, loss,
                        torch.tensor(x0))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-12)
    assert accuracy(model, ours, yy) < accuracy(model, x, yy)


@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("eps", [0.06, 0.3])
def test_apgd_skipping_fooled_examples_matches_the_reference(blobs, loss, eps):
    """The speed trick (later steps on the not-yet-fooled examples only) against every example every step:
    the same points in float64, at an eps where some and one where nearly all examples fall early."""
    model, X, y = blobs
    fast = apgd(model, X, y, eps, steps=30, loss=loss, rng=5)
    ref = apgd(model, X, y, eps, steps=30, loss=loss, rng=5, skip_fooled=False)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)
    fooled = accuracy(model, X, y) - accuracy(model, ref, y)
    assert fooled > 0                                   # the attack did something to compare


def test_apgd_at_least_as_strong_as_pgd_here(blobs):
    model, X, y = blobs
    for eps in (0.06, 0.1):
        a = evaluate(model, X, y, (eps,), "apgd", progress=False, rng=0, steps=50)[eps]
        p = evaluate(model, X, y, (eps,), "pgd", progress=False, rng=0)[eps]
        assert a <= p, (eps, a, p)


# ---------------------------------------------------------------------------- Square
def test_square_schedule_hand_checked():
    assert attacks.square_p(0.8, 0, 1000) == 0.8
    assert attacks.square_p(0.8, 1, 1000) == 0.8          # 1/1000 of 10,000 = 10: not yet past 10
    assert attacks.square_p(0.8, 2, 1000) == 0.4          # 20
    assert attacks.square_p(0.8, 5, 1000) == 0.4          # 50
    assert attacks.square_p(0.8, 6, 1000) == 0.2          # 60
    assert attacks.square_p(1.0, 8001, 10000) == 1 / 512
    assert attacks.square_p(0.8, 999, 1000) == 0.8 / 512
    assert attacks.square_side(0.8, 1, 28, 28) == 25       # round(sqrt(627.2))
    assert attacks.square_side(0.8 / 512, 1, 28, 28) == 1  # round(sqrt(1.225))
    assert attacks.square_side(1.0, 3, 4, 4) == 3          # 4, capped at h - 1


def test_square_proposal_changes_one_window():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (5, 2, 6, 6))
    eps, s = 0.1, 3
    x_best = np.clip(x + eps * np.where(rng.random((5, 2, 1, 6)) < 0.5, -1, 1), 0, 1)
    new = _square_proposal(x, x_best, eps, s, np.random.default_rng(1), (0.0, 1.0))
    for i in range(5):
        changed = (np.abs(new[i] - x_best[i]) > 1e-12).any(axis=0)          # (6, 6), over the channels
        rows, cols = np.nonzero(changed)
        assert changed.any()
        assert rows.max() - rows.min() < s and cols.max() - cols.min() < s  # inside one s x s window
        for c in range(2):
            d = new[i, c, rows, cols] - x[i, c, rows, cols]
            assert np.allclose(np.abs(d), eps) and np.allclose(d, d[0])      # one colour +-eps per channel
    np.testing.assert_array_less(np.abs(new - x), eps + 1e-12)


def test_square_finds_the_corner_of_a_linear_model():
    """Linear two-class models whose margin is 100 -+ sum(x) (never fooled within eps): random search
    accepts exactly the squares that lower the margin, so every pixel ends at x + eps where the margin
    falls with sum(x) and at x - eps where it rises, each example on its own; an example misclassified
    from the start is left at its vertical stripes."""
    from nanosgm.layers import Flatten
    d = 9
    model = Sequential([Flatten(), Dense(d, 2, dtype="float64")])
    model[1].params["W"][...] = np.stack([np.zeros(d), np.ones(d)], axis=1)
    model[1].params["b"][...] = [100.0, 0.0]               # z_0 = 100, z_1 = sum(x): class 0 always wins
    x = np.full((3, 1, 3, 3), 0.5)
    out = square(model, x[:2], np.array([1, 1]) * 0, 0.1, queries=300, rng=0)   # margin 100 - sum(x)
    np.testing.assert_allclose(out, 0.6, atol=1e-12)
    flip = Sequential([Flatten(), Dense(d, 2, dtype="float64")])
    flip[1].params["W"][...] = np.stack([np.ones(d), np.zeros(d)], axis=1)
    flip[1].params["b"][...] = [-100.0, 0.0]                 # z_0 = sum(x) - 100, z_1 = 0: class 1 wins
    out = square(flip, x[:2], np.array([1, 1]), 0.1, queries=300, rng=0)       # margin 100 - sum(x) again
    np.testing.assert_allclose(out, 0.6, atol=1e-12)
    model[1].params["b"][...] = [0.0, 100.0]               # z_0 = 0, z_1 = sum(x) + 100: class 1 wins
    y = np.array([1, 0, 1])                                  # margins sum(x) + 100, -sum(x) - 100 (fooled), ...
    out = square(model, x, y, 0.1, queries=300, rng=4)
    np.testing.assert_allclose(out[[0, 2]], 0.4, atol=1e-12)  # class 1: margin lowered by lowering sum(x)
    stripes = out[1]
    assert np.allclose(np.abs(stripes - 0.5), 0.1) and np.allclose(stripes, stripes[:, :1, :])  # columns
    with pytest.raises(ValueError, match="images"):
        square(model, x.reshape(3, 9), y, 0.1)


# ---------------------------------------------------------------------------- properties of every attack
ALL_ATTACKS = {
    "fgsm": lambda m, x, y, e, r: fgsm(m, x, y, e),
    "pgd": lambda m, x, y, e, r: pgd(m, x, y, e, steps=3, restarts=2, rng=r),
    "apgd-ce": lambda m, x, y, e, r: apgd(m, x, y, e, steps=6, rng=r),
    "apgd-dlr": lambda m, x, y, e, r: apgd(m, x, y, e, steps=6, loss="dlr", rng=r),
    "square": lambda m, x, y, e, r: square(m, x, y, e, queries=30, rng=r),
}


@pytest.mark.parametrize("name", sorted(ALL_ATTACKS))
@settings(max_examples=6, deadline=None)
@given(seed=seeds, eps=attack_eps)
def test_attack_in_ball_and_range_reproducible_model_unchanged(blobs, name, seed, eps):
    model, X, y = blobs
    attack = ALL_ATTACKS[name]
    idx = np.random.default_rng(seed).choice(len(X), 16, replace=False)
    x, yy = X[idx].copy(), y[idx]
    x[:2] = np.round(x[:2])                                   # pixels at the range's edges
    x_before = x.copy()
    loss_fn = SoftmaxCrossEntropy()                           # weight gradients the layers hold
    loss_fn.forward(model.forward(X[:20], training=True), y[:20])
    model.backward(loss_fn.backward())
    before = model_state(model)
    a = attack(model, x, yy, eps, seed)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert np.abs(a - x).max() <= eps + 1e-12
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, attack(model, x, yy, eps, seed))     # seeded: reproducible
    np.testing.assert_array_equal(x, x_before)
    assert_state_unchanged(model, before)


@pytest.mark.parametrize("attack, budgets", [
    ("pgd", [dict(steps=1), dict(steps=2), dict(steps=5), dict(steps=20)]),
    ("apgd", [dict(steps=1), dict(steps=3), dict(steps=20)]),
    ("apgd", [dict(steps=1, loss="dlr"), dict(steps=3, loss="dlr"), dict(steps=20, loss="dlr")]),
    ("square", [dict(queries=20), dict(queries=100), dict(queries=400)]),
])
def test_more_steps_never_raise_accuracy(blobs, attack, budgets):
    model, X, y = blobs
    eps = (0.07,)
    accs = [evaluate(model, X, y, eps, attack, progress=False, rng=11, **b)[0.07] for b in budgets]
    assert accs == sorted(accs, reverse=True), accs
    assert accs[-1] < accs[0] or accs[0] == 0, accs            # the extra budget does something here


# ---------------------------------------------------------------------------- transfer and the bar
def test_transfer_accuracy(blobs):
    model, X, y = blobs
    other = train_small(blob_net(seed=1), X, y, seed=1)
    eps = (0.05, 0.1)
    own = evaluate(model, X, y, eps, "pgd", progress=False, rng=3, steps=5)
    assert attacks.transfer_accuracy(model, model, X, y, eps, "pgd", progress=False, rng=3, steps=5) == own
    crossed = attacks.transfer_accuracy(other, model, X, y, eps, "pgd", progress=False, rng=3, steps=5)
    g = np.random.default_rng(3)
    by_hand = {}
    for e in eps:                                               # batch of 100: eps inner, as evaluate does
        by_hand[e] = []
    for start in range(0, len(X), 100):
        for e in eps:
            adv = pgd(other, X[start:start + 100], y[start:start + 100], e, steps=5, rng=g)
            by_hand[e].append(np.argmax(model.forward(adv, training=False), 1) == y[start:start + 100])
    assert crossed == {e: float(np.concatenate(by_hand[e]).mean()) for e in eps}
    assert crossed[0.1] > own[0.1]                              # black-box transfer is weaker here


def test_progress_bar_counts_batches_times_eps(trained_mlp):
    model, X, y = trained_mlp

    class Count:
        n = 0

        def update(self, k=1):
            self.n += k

    for attack, kw, per in (("fgsm", {}, 500), ("pgd", dict(steps=1, rng=0), 100)):
        bar = Count()
        got = correct_under_attack(model, X, y, (0.0, 0.05, 0.1), attack, bar=bar, **kw)
        assert bar.n == attacks.n_steps(len(X), (0.0, 0.05, 0.1), attack) == -(-len(X) // per) * 3
        assert all(v.shape == (len(X),) and v.dtype == bool for v in got.values())
        assert got[0.0].mean() == accuracy(model, X, y)


def test_stronger_attacks_on_cupy_match_numpy(blobs, device):
    """PGD with restarts, APGD (CE, DLR) and Square on a device backend give NumPy's examples (host generators)."""
    xp = device.xp
    model, X, y = blobs
    x, yy = X[:50], y[:50]
    runs = {"pgd": lambda m, a, b: pgd(m, a, b, 0.07, steps=4, restarts=2, rng=np.random.default_rng(1)),
            "apgd": lambda m, a, b: apgd(m, a, b, 0.07, steps=10, rng=np.random.default_rng(1)),
            "dlr": lambda m, a, b: apgd(m, a, b, 0.07, steps=10, loss="dlr", rng=np.random.default_rng(1)),
            "square": lambda m, a, b: square(m, a, b, 0.07, queries=50, rng=1)}
    on_host = {k: f(model, x, yy) for k, f in runs.items()}
    acc_host = evaluate(model, x, yy, (0.07,), "apgd", progress=False, rng=0, steps=5)   # before the switch:
    state = model.state_dict()                  # a NumPy-built model cannot take device inputs (issue 23)
    device.use()
    try:
        dev = blob_net()
        dev.load_state_dict(state)
        for k, f in runs.items():
            got = f(dev, xp.asarray(x), xp.asarray(yy))
            assert isinstance(got, xp.ndarray), k
            np.testing.assert_allclose(xp.asnumpy(got), on_host[k], atol=1e-9, err_msg=k)
        assert evaluate(dev, x, yy, (0.07,), "apgd", progress=False, rng=0, steps=5) == acc_host
        with pytest.raises(backend.BackendError, match=r"input is a \w+ array but its weights are numpy arrays"):
            evaluate(model, x, yy, (0.07,), "apgd", progress=False, rng=0, steps=5)   # the mix, refused clearly
    finally:
        backend.use("numpy")
