"""FGSM measured the authors' way (nanosgm/attacks/conventions.py) against a computation by hand on a tiny
network with dropout and batch normalisation; and the inference convention is today's FGSM evaluation."""
import numpy as np
import pytest

from nanosgm import backend
from nanosgm.attacks import CONVENTIONS, evaluate, fgsm_accuracy, fgsm_correct, keras_cross_entropy_loss
from nanosgm.layers import BatchNorm, Dense, Dropout, ReLU, Sequential

pytestmark = pytest.mark.usefixtures("numpy_backend")


def tiny(mask_seed=5):
    """Dense(4, 6) -> BatchNorm -> ReLU -> Dropout(0.5, its own generator) -> Dense(6, 3), float64, with
    running statistics that differ from any batch's (so inference and training mode differ)."""
    backend.seed(0)
    model = Sequential([Dense(4, 6, dtype="float64"), BatchNorm(6, dtype="float64"), ReLU(),
                        Dropout(0.5, rng=np.random.default_rng(mask_seed)), Dense(6, 3, dtype="float64")])
    model.layers[1].buffers["running_mean"][...] = 0.3
    model.layers[1].buffers["running_var"][...] = 2.0
    return model


def by_hand(model, x, y, eps, mask, prob_clip=1e-7):
    """The authors' FGSM on one batch, written out: the training-mode forward pass (batch statistics, the
    given dropout draws), Keras's clipped cross-entropy, the backward pass to x, x + eps * sign(g) without
    any clip, classified in inference mode (running statistics, no dropout)."""
    d1, bn, _, _, d2 = model.layers
    W1, b1, W2, b2 = d1.params["W"], d1.params["b"], d2.params["W"], d2.params["b"]
    gamma, beta = bn.params["gamma"], bn.params["beta"]
    a = x @ W1 + b1
    mu, var = a.mean(axis=0), a.var(axis=0)
    xhat = (a - mu) / np.sqrt(var + bn.eps)
    h = np.maximum(gamma * xhat + beta, 0)
    keep = (mask >= 0.5) / 0.5
    z = (h * keep) @ W2 + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    n = len(x)
    dz = (p - np.eye(3)[y]) / n
    p_true = p[np.arange(n), y]
    dz[(p_true < prob_clip) | (p_true > 1 - prob_clip)] = 0          # Keras clips p: no gradient there
    dh = (dz @ W2.T) * keep * (gamma * xhat + beta > 0)
    dxhat = dh * gamma
    da = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / np.sqrt(var + bn.eps)
    g = da @ W1.T
    x_adv = x + eps * np.sign(g)
    h_inf = np.maximum(gamma * (x_adv @ W1 + b1 - 0.3) / np.sqrt(2.0 + bn.eps) + beta, 0)
    return np.argmax(h_inf @ W2 + b2, axis=1) == y, x_adv


def test_the_authors_fgsm_is_the_hand_computation():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1, (9, 4)), rng.integers(0, 3, 9)
    model = tiny()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    got = fgsm_correct(model, x, y, [0.3], "authors")[0.3]
    want, x_adv = by_hand(tiny(), x, y, 0.3, np.random.default_rng(5).random((9, 6)))
    np.testing.assert_array_equal(got, want)
    assert not want.all() and ((x_adv < 0).any() or (x_adv > 1).any())    # it bites, and it is not clipped
    for k, v in model.state_dict().items():                 # parameters and running statistics untouched
        np.testing.assert_array_equal(v, before[k])


def test_the_authors_fgsm_takes_the_statistics_of_each_128_image_batch():
    """200 images: batches of 128 and 72, each attacked with its own statistics and its own dropout draw
    (the layer's generator draws the two masks in batch order)."""
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 1, (200, 4)), rng.integers(0, 3, 200)
    got = fgsm_correct(tiny(), x, y, [0.2], "authors")[0.2]
    draws = np.random.default_rng(5)
    masks = [draws.random((128, 6)), draws.random((72, 6))]
    hand = [by_hand(tiny(), x[sl], y[sl], 0.2, m)[0] for sl, m in zip((slice(0, 128), slice(128, 200)), masks)]
    np.testing.assert_array_equal(got, np.concatenate(hand))
    whole = by_hand(tiny(), x, y, 0.2, np.random.default_rng(5).random((200, 6)))[0]
    assert not np.array_equal(got, whole)                   # one batch of 200 would give another answer


def test_a_confident_example_is_not_perturbed_the_authors_way():
    z = np.array([[50.0, 0.0, 0.0], [1.0, 0.5, 0.0]])
    _, d = keras_cross_entropy_loss(z, np.array([0, 0]))
    assert np.all(d[0] == 0) and np.all(d[1] != 0)
    _, d_wrong = keras_cross_entropy_loss(z, np.array([1, 0]))   # p_true ~ 2e-22 < 1e-7: clipped as well
    assert np.all(d_wrong[0] == 0)


def test_the_authors_draws_are_seeded_and_the_inference_convention_is_todays_fgsm():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 1, (300, 4)), rng.integers(0, 3, 300)
    model = Sequential([Dense(4, 6, dtype="float64"), BatchNorm(6, dtype="float64"), ReLU(), Dropout(0.5),
                        Dense(6, 3, dtype="float64")])
    a1 = fgsm_accuracy(model, x, y, [0.1, 0.5], "authors", seed=7)
    assert a1 == fgsm_accuracy(model, x, y, [0.1, 0.5], "authors", seed=7)
    draws = {tuple(fgsm_accuracy(model, x, y, [0.5], "authors", seed=s).values()) for s in range(6)}
    assert len(draws) > 1                                    # the dropout masks matter in training mode
    assert fgsm_accuracy(model, x, y, [0.1, 0.5], "inference") == evaluate(model, x, y, [0.1, 0.5], "fgsm",
                                                                            progress=False)
    assert CONVENTIONS["authors"].batch_size == 128 and not CONVENTIONS["authors"].clip_to_data
    with pytest.raises(ValueError, match="unknown FGSM convention"):
        fgsm_accuracy(model, x, y, [0.1], "keras")


def test_a_transfer_fgsm_crafts_on_one_network_and_asks_another():
    """``target=``: the examples the authors' FGSM makes on the tiny network (the hand computation's x_adv)
    are classified by another network, in inference mode; the inference convention through ``target``
    equals evaluate with a transfer attack crafted on the source; the source as its own target is the
    white-box number."""
    from nanosgm.attacks.transfer import crafted_on
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 1, (9, 4)), rng.integers(0, 3, 9)
    backend.seed(9)
    other = Sequential([Dense(4, 5, dtype="float64"), ReLU(), Dense(5, 3, dtype="float64")])
    got = fgsm_correct(tiny(), x, y, [0.3], "authors", target=other)[0.3]
    _, x_adv = by_hand(tiny(), x, y, 0.3, np.random.default_rng(5).random((9, 6)))
    np.testing.assert_array_equal(got, np.argmax(other.forward(x_adv, training=False), axis=1) == y)
    assert fgsm_correct(tiny(), x, y, [0.3], "authors", target=tiny())[0.3].tolist() == \
        fgsm_correct(tiny(), x, y, [0.3], "authors")[0.3].tolist()
    x, y = rng.uniform(0, 1, (300, 4)), rng.integers(0, 3, 300)
    source = tiny()
    want = evaluate(other, x, y, [0.1, 0.5], crafted_on(source, "fgsm"), progress=False)
    assert fgsm_accuracy(source, x, y, [0.1, 0.5], "inference", target=other) == want
    assert want != fgsm_accuracy(other, x, y, [0.1, 0.5], "inference")          # not other's white-box number
