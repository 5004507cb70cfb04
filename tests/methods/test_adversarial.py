"""Tests for nanosgm.methods.adversarial: the adversarial-training passes against torch float64 autograd, the
eps = 0 identity with the plain pass, lock-step dropout masks and frozen running statistics."""
import pickle

import numpy as np
import pytest

from nanosgm import backend
from nanosgm.methods.adversarial import AdversarialTraining
from nanosgm.layers import BatchNorm, Dense, Dropout, ReLU, Sequential, SoftmaxCrossEntropy

torch = pytest.importorskip("torch")
F = torch.nn.functional


def tiny(seed=0, p=0.3):
    """Dense -> BatchNorm -> ReLU -> Dropout -> Dense, float64, 3 classes, non-trivial BN parameters."""
    rng = np.random.default_rng(seed)
    model = Sequential([Dense(6, 5, dtype="float64", rng=rng), BatchNorm(5, dtype="float64"), ReLU(), Dropout(p),
                        Dense(5, 3, dtype="float64", rng=rng)])
    model[1].params["gamma"][...] = rng.uniform(0.5, 1.5, 5)
    model[1].params["beta"][...] = rng.uniform(-0.2, 0.2, 5)
    model[1].buffers["running_mean"][...] = rng.normal(0, 0.1, 5)
    return model


@pytest.fixture
def batch():
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, (12, 6)), rng.integers(0, 3, 12)


class TorchTwin:
    """The tiny network in torch with nanosgm's weights, the dropout mask nanosgm used, batch statistics."""

    def __init__(self, model):
        t = lambda a: torch.tensor(np.array(a), dtype=torch.float64, requires_grad=True)
        self.model = model
        self.p = {f"{i}.{k}": t(v) for i, layer in enumerate(model.layers) for k, v in layer.params.items()}
        self.rm = torch.tensor(np.array(model[1].buffers["running_mean"]))
        self.rv = torch.tensor(np.array(model[1].buffers["running_var"]))

    def __call__(self, x, mask, update_stats):
        p, bn = self.p, self.model[1]
        h = x @ p["0.W"] + p["0.b"]
        h = F.batch_norm(h, self.rm if update_stats else None, self.rv if update_stats else None, p["1.gamma"],
                         p["1.beta"], training=True, momentum=bn.momentum, eps=bn.eps)
        h = F.relu(h) * torch.tensor(mask)
        return h @ p["4.W"] + p["4.b"]

    def input_grad(self, x, y, mask):
        x = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(self(x, mask, False), y)
        (g,) = torch.autograd.grad(loss, x)
        return g


def torch_adv_pass(model, cfg, x, y, mask, u=None):
    """(loss, dE/dX at the clean batch or None, {param: grad}, running stats) of the same mixed loss."""
    net = TorchTwin(model)
    xt, yt = torch.tensor(x), torch.tensor(y)
    eps, lo, hi = cfg.eps, 0.0, 1.0
    clean_loss, dX = None, None
    if cfg.mode == "fgsm":
        dX = net.input_grad(xt, yt, mask)
        x_adv = torch.clamp(xt + eps * dX.sign(), lo, hi)
        clean_loss = F.cross_entropy(net(xt, mask, True), yt)
    else:
        x_adv = torch.clamp(xt + (2 * torch.tensor(u) - 1) * eps, lo, hi)
        for _ in range(1 if cfg.mode == "fgsm-rs" else cfg.steps):
            g = net.input_grad(x_adv, yt, mask)
            x_adv = torch.clamp(torch.min(torch.max(x_adv + cfg.step_size * g.sign(), xt - eps), xt + eps), lo, hi)
    adv_loss = F.cross_entropy(net(x_adv.detach(), mask, True), yt)
    w = cfg.clean_weight
    loss = adv_loss if clean_loss is None else w * clean_loss + (1 - w) * adv_loss
    loss.backward()
    return loss.item(), dX, {k: v.grad.numpy() for k, v in net.p.items()}, (net.rm.numpy(), net.rv.numpy())


@pytest.mark.parametrize("cfg", [AdversarialTraining("fgsm", 0.1), AdversarialTraining("fgsm", 0.2, mix=0.3),
                                 AdversarialTraining("fgsm-rs", 0.1), AdversarialTraining("pgd", 0.1, steps=4)],
                         ids=["fgsm", "fgsm-mix0.3", "fgsm-rs", "pgd"])
def test_training_pass_matches_torch(cfg, batch):
    x, y = batch
    model = tiny()
    backend.seed(3)
    loss, dX = cfg.training_pass(model, SoftmaxCrossEntropy(), x, y, np.random.default_rng(9))
    mask = np.array(model[3].mask)                                      # the one mask of this batch
    assert mask.shape == (12, 5) and set(np.unique(mask)) <= {0.0, 1 / 0.7}
    after = (model[1].buffers["running_mean"].copy(), model[1].buffers["running_var"].copy())
    fresh = tiny()                                                       # the same weights, before the pass
    u = np.random.default_rng(9).random(x.shape)                         # the random start pgd draws
    loss_t, dX_t, grads_t, stats_t = torch_adv_pass(fresh, cfg, x, y, mask, u)
    assert loss == pytest.approx(loss_t, rel=1e-12)
    if cfg.mode == "fgsm":
        np.testing.assert_allclose(dX, dX_t.numpy(), rtol=1e-9, atol=1e-14)   # of the clean batch-mean loss
    else:
        assert dX is None
    for name, p, g in model.parameters():
        np.testing.assert_allclose(g, grads_t[name], rtol=1e-9, atol=1e-13, err_msg=name)
    # running statistics: updated by the trained passes only (x_adv; for "fgsm" the clean batch, then x_adv)
    np.testing.assert_allclose(after[0], stats_t[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(after[1], stats_t[1], rtol=1e-12, atol=1e-15)


def test_fgsm_with_eps_zero_is_the_plain_pass(batch):
    x, y = batch
    model = tiny()
    state = model.state_dict()
    loss_fn = SoftmaxCrossEntropy()
    backend.seed(5)
    loss = loss_fn.forward(model.forward(x, training=True), y)
    dX = model.backward(loss_fn.backward())
    plain = {name: np.array(g) for name, _, g in model.parameters()}
    after_plain = float(backend.device_rng().random())
    model.load_state_dict(state)
    backend.seed(5)
    loss2, dX2 = AdversarialTraining("fgsm", 0.0).training_pass(model, SoftmaxCrossEntropy(), x, y, None)
    assert float(backend.device_rng().random()) == after_plain          # the same draws: lock-step masks
    assert loss2 == loss
    np.testing.assert_array_equal(dX2, dX)
    for name, _, g in model.parameters():
        np.testing.assert_array_equal(g, plain[name], err_msg=name)     # 0.5 g + 0.5 g = g exactly


@pytest.mark.parametrize("mode", ["fgsm-rs", "pgd"])
def test_random_start_modes_keep_the_backend_generator_in_lock_step(mode, batch):
    x, y = batch
    model = tiny()
    backend.seed(2)
    AdversarialTraining(mode, 0.1, steps=3).training_pass(model, SoftmaxCrossEntropy(), x, y, np.random.default_rng(0))
    got = float(backend.device_rng().random())
    backend.seed(2)
    tiny().forward(x, training=True)                                    # a plain pass draws one mask
    assert got == float(backend.device_rng().random())
    assert model[3].hold_mask is False
    with pytest.raises(ValueError, match="needs an rng"):
        AdversarialTraining(mode, 0.1).training_pass(model, SoftmaxCrossEntropy(), x, y, None)


def test_config_is_plain_checked_and_picklable():
    cfg = AdversarialTraining("pgd", 0.1, steps=7)
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert cfg.step_size == pytest.approx(2.5 * 0.1 / 7) and cfg.clean_weight == 0.0
    assert AdversarialTraining("fgsm-rs", 0.1).step_size == pytest.approx(0.125)
    assert AdversarialTraining("fgsm", 0.1).clean_weight == 0.5
    assert "pgd: eps 0.1" in cfg.describe()
    for bad in (dict(mode="cw", eps=0.1), dict(mode="pgd", eps=-1), dict(mode="pgd", eps=0.1, steps=0),
                dict(mode="fgsm", eps=0.1, mix=1.0)):
        with pytest.raises(ValueError):
            AdversarialTraining(**bad)


def test_adversarial_training_raises_robustness():
    """A few epochs of PGD training on the blobs: PGD accuracy at eps 0.07 beats plain training's."""
    from nanosgm.attacks import evaluate
    from nanosgm.layers import Flatten
    from nanosgm.optim import Adam
    from strategies import blob_images, train_small
    X, y = blob_images(0, 400)

    def net():
        rng = np.random.default_rng(0)
        return Sequential([Flatten(), Dense(36, 16, dtype="float64", rng=rng), ReLU(), Dense(16, 3, dtype="float64", rng=rng)])

    plain = train_small(net(), X[:300], y[:300])
    robust, opt, cfg, rng = net(), Adam(lr=0.01), AdversarialTraining("pgd", 0.07, steps=5), np.random.default_rng(0)
    order = np.random.default_rng(0)
    for _ in range(20):
        perm = order.permutation(300)
        for i in range(0, 300, 50):
            idx = perm[i:i + 50]
            cfg.training_pass(robust, SoftmaxCrossEntropy(), X[idx], y[idx], rng)
            opt.step(robust)
    acc = {name: evaluate(m, X[300:], y[300:], (0.07,), "pgd", progress=False, rng=1)[0.07]
           for name, m in (("plain", plain), ("robust", robust))}
    assert acc["robust"] > acc["plain"] + 0.1, acc
