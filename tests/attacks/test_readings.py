"""The authors' FGSM taken apart (nanosgm/attacks/readings.py): each reading on a tiny network with dropout and
batch normalisation, the mixed modes against a computation by hand, and the gradient-masking check on a network
built to saturate."""
import numpy as np
import pytest

from nanosgm import backend
from nanosgm.attacks import (CONVENTIONS, READINGS, Convention, fgsm_correct, fgsm_readings, loss_and_input_gradient,
                             masking_shares, mixed_forward, parse_reading, reading)
from nanosgm.layers import BatchNorm, Dense, Dropout, ReLU, Sequential
from nanosgm.layers.dropout import _IDENTITY

pytestmark = pytest.mark.usefixtures("numpy_backend")


def tiny(mask_rng=None):
    """Dense(4, 6) -> BatchNorm -> ReLU -> Dropout(0.5) -> Dense(6, 3), float64, with running statistics
    (mean 0.3, variance 2) that differ from any batch's, so that every mode gives another gradient.
    ``mask_rng``: the dropout layer's own generator (None: the backend's, seeded by the readings)."""
    backend.seed(0)
    model = Sequential([Dense(4, 6, dtype="float64"), BatchNorm(6, dtype="float64"), ReLU(),
                        Dropout(0.5, rng=mask_rng), Dense(6, 3, dtype="float64")])
    model.layers[1].buffers["running_mean"][...] = 0.3
    model.layers[1].buffers["running_var"][...] = 2.0
    return model


def data(n=200, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 4)), rng.integers(0, 3, n)


def by_hand(model, x, y, *, batch_stats, keep=None):
    """(dE/dx, logits) of the tiny network written out in NumPy: BatchNorm on the batch's mean and (biased)
    variance or on the running ones, ReLU, dropout with the kept-unit scale ``keep`` (None: dropout off),
    the batch-mean softmax cross-entropy, and the backward pass to x."""
    d1, bn, _, _, d2 = model.layers
    W1, b1, W2, b2 = d1.params["W"], d1.params["b"], d2.params["W"], d2.params["b"]
    gamma, beta = bn.params["gamma"], bn.params["beta"]
    a = x @ W1 + b1
    if batch_stats:
        mu, var = a.mean(axis=0), a.var(axis=0)
    else:
        mu, var = bn.buffers["running_mean"], bn.buffers["running_var"]
    xhat = (a - mu) / np.sqrt(var + bn.eps)
    pre = gamma * xhat + beta
    keep = np.ones_like(pre) if keep is None else keep
    z = (np.maximum(pre, 0) * keep) @ W2 + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(3)[y]) / len(x)
    dxhat = (dz @ W2.T) * keep * (pre > 0) * gamma
    if batch_stats:
        da = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / np.sqrt(var + bn.eps)
    else:
        da = dxhat / np.sqrt(var + bn.eps)
    return da @ W1.T, z


def classify_by_hand(model, x):
    """Inference mode written out: running statistics, no dropout."""
    d1, bn, _, _, d2 = model.layers
    a = x @ d1.params["W"] + d1.params["b"]
    h = np.maximum(bn.params["gamma"] * (a - 0.3) / np.sqrt(2.0 + bn.eps) + bn.params["beta"], 0)
    return np.argmax(h @ d2.params["W"] + d2.params["b"], axis=1)


# ----------------------------------------------------------------------------------- the named readings
def test_the_readings_cover_every_factor_alone_in_pairs_the_authors_and_the_batch_sizes():
    names = list(READINGS)
    assert names[0] == "inference" and len(names) == 24 and len(set(names)) == 24
    for factor in ("dropout", "batch-stats", "no-clip", "keras-ce"):
        assert factor in READINGS
    assert {"dropout+batch-stats", "dropout+no-clip", "dropout+keras-ce", "batch-stats+no-clip",
            "batch-stats+keras-ce", "no-clip+keras-ce"} <= set(names)
    for name in ("batch-stats", "dropout+batch-stats", "authors-clipped", "authors"):
        assert {READINGS[f"{name}@{b}"].batch_size for b in (32, 512)} | {READINGS[name].batch_size} == {32, 128, 512}
    assert READINGS["inference"] == CONVENTIONS["inference"] and READINGS["authors"] == CONVENTIONS["authors"]
    clipped = READINGS["authors-clipped"]
    assert (clipped.dropout, clipped.batch_stats, clipped.clip_to_data, clipped.loss) == (True, True, True, "keras-ce")
    bs = READINGS["batch-stats"]
    assert (bs.dropout, bs.batch_stats, bs.training, bs.inference, bs.batch_size) == (False, True, False, False, 128)
    assert READINGS["dropout+batch-stats"].training and READINGS["keras-ce"].inference


def test_a_reading_is_parsed_from_its_factors_in_any_order():
    assert parse_reading("keras-ce+batch-stats@32") == reading("batch-stats", "keras-ce", batch_size=32)
    assert parse_reading("keras-ce+batch-stats@32").name == "batch-stats+keras-ce@32"
    assert parse_reading("authors@512") is READINGS["authors@512"]
    assert parse_reading("inference") is READINGS["inference"]
    assert parse_reading("no-clip+keras-ce+batch-stats+dropout").name == "authors"
    for bad in ("dropuot", "authors@0", "authors@x", "batch-stats+"):
        with pytest.raises(ValueError, match="unknown reading"):
            parse_reading(bad)
    with pytest.raises(ValueError, match="unknown loss"):
        Convention("x", dropout=False, batch_stats=False, clip_to_data=True, batch_size=8, loss="mse")
    with pytest.raises(ValueError, match="batch_size must be a whole number"):
        Convention("x", dropout=False, batch_stats=False, clip_to_data=True, batch_size=0)


# ------------------------------------------------------------------------------------- the mixed modes
def test_the_batch_statistics_reading_is_the_hand_computation():
    """BatchNorm on each 128-image batch's statistics, dropout off, plain cross-entropy, clipped to [0, 1]."""
    x, y = data()
    model = tiny()
    _, logits, g = loss_and_input_gradient(model, x[:128], y[:128], dropout=False, batch_stats=True)
    g_hand, z_hand = by_hand(model, x[:128], y[:128], batch_stats=True)
    np.testing.assert_allclose(g, g_hand, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(logits, z_hand, rtol=1e-10)
    assert model.layers[3]._cache is _IDENTITY                    # dropout was off
    want = []
    for sl in (slice(0, 128), slice(128, 200)):
        g_b, _ = by_hand(model, x[sl], y[sl], batch_stats=True)
        x_adv = np.clip(x[sl] + 0.3 * np.sign(g_b), 0, 1)
        want.append(classify_by_hand(model, x_adv) == y[sl])
    got = fgsm_correct(model, x, y, [0.3], READINGS["batch-stats"])[0.3]
    np.testing.assert_array_equal(got, np.concatenate(want))
    inference = fgsm_correct(model, x, y, [0.3], "inference")[0.3]
    assert not np.array_equal(got, inference)                     # the batch statistics move the answer


def test_the_dropout_reading_keeps_batch_normalisation_on_its_running_statistics():
    x, y = data(60)
    model = tiny(mask_rng=np.random.default_rng(5))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    _, _, g = loss_and_input_gradient(model, x, y, dropout=True, batch_stats=False)
    assert model.layers[1]._cache[0] == "inference"                # the running statistics were in use
    assert model.layers[3]._cache is not _IDENTITY                 # and dropout drew a mask
    keep = (np.random.default_rng(5).random((60, 6)) >= 0.5) / 0.5    # the layer's own generator, drawn again
    np.testing.assert_allclose(g, by_hand(model, x, y, batch_stats=False, keep=keep)[0], rtol=1e-10, atol=1e-14)
    for k, v in model.state_dict().items():                         # running statistics unchanged
        np.testing.assert_array_equal(v, before[k])
    model = tiny()
    fgsm_readings(model, x, y, [0.1], ["dropout", "batch-stats", "authors"])
    for k, v in model.state_dict().items():                         # batch statistics leave them as they were too
        np.testing.assert_array_equal(v, before[k])


def test_mixed_forward_with_one_flag_is_the_whole_network_in_that_mode():
    x, _ = data(30)
    model = tiny()
    np.testing.assert_array_equal(mixed_forward(model, x, dropout=False, batch_stats=False),
                                  model.forward(x, training=False))
    nested = Sequential([Sequential(model.layers[:2]), Sequential(model.layers[2:])])
    a = mixed_forward(nested, x, dropout=False, batch_stats=True)
    b = mixed_forward(model, x, dropout=False, batch_stats=True)
    np.testing.assert_array_equal(a, b)
    assert model.layers[1]._cache[0] == "training" and model.layers[3]._cache is _IDENTITY


# ------------------------------------------------------------------------------- every reading, seeded
def test_every_reading_runs_and_gives_what_fgsm_correct_gives_for_it():
    """One call for all 24 readings (shared gradient passes) against fgsm_correct reading by reading."""
    x, y = data()
    got = fgsm_readings(tiny(), x, y, [0.0, 0.2], list(READINGS), seed=4)
    assert list(got) == list(READINGS)
    for name, r in got.items():
        want = fgsm_correct(tiny(), x, y, [0.0, 0.2], READINGS[name], seed=4)
        for e in (0.0, 0.2):
            np.testing.assert_array_equal(r["correct"][e], want[e], err_msg=name)
        assert r["zero_gradient"].shape == r["saturated"].shape == (200,)
    accuracies = {name: r["correct"][0.2].mean() for name, r in got.items()}
    assert len(set(accuracies.values())) > 3                        # the readings are different measurements
    assert len({r["correct"][0.0].mean() for r in got.values()}) == 1      # eps 0: the clean accuracy in all


def test_readings_are_stable_for_a_seed_and_their_dropout_draws_follow_it():
    x, y = data()
    names = ["dropout", "authors", "authors@32", "batch-stats"]
    a = fgsm_readings(tiny(), x, y, [0.3], names, seed=7)
    b = fgsm_readings(tiny(), x, y, [0.3], names, seed=7)
    for name in names:
        np.testing.assert_array_equal(a[name]["correct"][0.3], b[name]["correct"][0.3])
        np.testing.assert_array_equal(a[name]["saturated"], b[name]["saturated"])
    draws = {tuple(fgsm_readings(tiny(), x, y, [0.3], ["dropout"], seed=s)["dropout"]["correct"][0.3])
             for s in range(5)}
    assert len(draws) > 1                                           # the masks matter, and the seed picks them
    no_dropout = {tuple(fgsm_readings(tiny(), x, y, [0.3], ["batch-stats"], seed=s)["batch-stats"]["correct"][0.3])
                  for s in range(3)}
    assert len(no_dropout) == 1                                     # without dropout the seed changes nothing
    with pytest.raises(ValueError, match="given twice"):
        fgsm_readings(tiny(), x, y, [0.3], ["authors", "no-clip+keras-ce+dropout+batch-stats"])


# ----------------------------------------------------------------------------------- the masking check
def saturating():
    """Dense(4, 3), float32, weights 200 * identity: an image t * e_k has logits t * 200 on class k, 0 elsewhere."""
    model = Sequential([Dense(4, 3)])
    W = np.zeros((4, 3), dtype=np.float32)
    W[[0, 1, 2], [0, 1, 2]] = 200.0
    model.layers[0].params["W"][...] = W
    model.layers[0].params["b"][...] = 0.0
    return model


def test_the_masking_check_reports_the_saturated_and_the_zero_gradient_shares():
    """Four kinds of image, 10 each: a logit gap of 200 on the true class (float32 softmax is exactly one-hot:
    saturated, and even the plain cross-entropy's gradient is exactly zero); a gap of 20 (p_y rounds to 1:
    saturated, but the plain gradient is not zero); a gap of 200 on a wrong class (p_y ~ 0: saturated, not
    zero); a gap of 0.2 (neither)."""
    e = np.eye(4, dtype=np.float32)[:3]
    X = np.concatenate([np.repeat(e[[0]], 10, 0), np.repeat(0.1 * e[[1]], 10, 0), np.repeat(e[[2]], 10, 0),
                        np.repeat(0.001 * e[[0]], 10, 0)]).astype(np.float32)
    y = np.array([0] * 10 + [1] * 10 + [0] * 10 + [0] * 10)
    model = saturating()
    shares = masking_shares(model, X, y)
    assert shares == {"inference": {"zero_gradient": 0.25, "saturated": 0.75}}
    both = masking_shares(model, X, y, ["inference", "keras-ce", "authors"])
    assert both["keras-ce"] == {"zero_gradient": 0.75, "saturated": 0.75}   # Keras's clip: no gradient there
    got = fgsm_readings(model, X, y, [0.3], ["inference", "keras-ce"])
    np.testing.assert_array_equal(got["keras-ce"]["zero_gradient"], got["keras-ce"]["saturated"])
    assert got["inference"]["zero_gradient"][:10].all() and not got["inference"]["zero_gradient"][10:].any()
