"""Nothing silently wrong in nanosgm.attacks: a budget that is not a finite number >= 0, a step or query count
below 1, inputs outside the range the attack clips to (or not finite), and labels that are not one class
index per input are refused with a one-line ValueError -- not turned into NaN images, shifted inputs, random
noise, saturated images or an accuracy of 0."""
import numpy as np
import pytest

from nanosgm import attacks
from nanosgm.layers import Conv2D, Dense, Flatten, ReLU, Sequential

pytestmark = pytest.mark.usefixtures("numpy_backend")

NAN, INF = float("nan"), float("inf")


@pytest.fixture
def setup():
    """A small conv net (3 classes) and 6 images in [0, 1] with their labels."""
    rng = np.random.default_rng(0)
    model = Sequential([Conv2D(1, 2, 3, dtype="float64", rng=rng), ReLU(), Flatten(),
                        Dense(2 * 4 * 4, 3, dtype="float64", rng=rng)])
    x = rng.uniform(0, 1, (6, 1, 6, 6))
    y = np.array([0, 1, 2, 0, 1, 2])
    return model, x, y


ATTACK_CALLS = {
    "fgsm": lambda m, x, y, eps, **kw: attacks.fgsm(m, x, y, eps, **kw),
    "pgd": lambda m, x, y, eps, **kw: attacks.pgd(m, x, y, eps, steps=2, rng=0, **kw),
    "apgd": lambda m, x, y, eps, **kw: attacks.apgd(m, x, y, eps, steps=3, rng=0, **kw),
    "square": lambda m, x, y, eps, **kw: attacks.square(m, x, y, eps, queries=3, rng=0, **kw),
}


def _one_line(exc_info):
    assert "\n" not in str(exc_info.value)
    return str(exc_info.value)


# ------------------------------------------------------------------------------ item 6: budgets and counts
@pytest.mark.parametrize("name", list(ATTACK_CALLS))
@pytest.mark.parametrize("eps", [NAN, -0.3, -0.1, INF])
def test_every_attack_refuses_a_nan_negative_or_infinite_eps(setup, name, eps):
    model, x, y = setup
    with pytest.raises(ValueError, match="eps must be a finite number >= 0") as e:
        ATTACK_CALLS[name](model, x, y, eps)
    assert name in _one_line(e)


@pytest.mark.parametrize("name", list(ATTACK_CALLS))
def test_eps_zero_still_returns_the_inputs(setup, name):
    model, x, y = setup
    np.testing.assert_array_equal(ATTACK_CALLS[name](model, x, y, 0.0), x)


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, steps=0), "pgd: steps must be a whole number >= 1, got 0"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, steps=2.5), "pgd: steps must be a whole number >= 1, got 2.5"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, step_size=NAN), "pgd: step_size must be a finite number > 0"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, step_size=-0.01), "pgd: step_size must be a finite number > 0"),
    (lambda m, x, y: attacks.apgd(m, x, y, 0.1, steps=0), "apgd: steps must be a whole number >= 1, got 0"),
    (lambda m, x, y: attacks.square(m, x, y, 0.1, queries=0), "square: queries must be a whole number >= 1"),
    (lambda m, x, y: attacks.square(m, x, y, 0.1, p_init=NAN), "square: p_init must be a number in (0, 1]"),
])
def test_step_and_query_counts_below_one_are_refused(setup, call, message):
    model, x, y = setup
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")) as e:
        call(model, x, y)
    _one_line(e)


def test_pgd_with_zero_steps_is_not_random_noise(setup):
    """The issue's case: steps=0 returned the random start, i.e. noise, as if it were an attack."""
    model, x, y = setup
    with pytest.raises(ValueError, match="steps"):
        attacks.pgd(model, x, y, 0.1, steps=0, rng=0)


@pytest.mark.parametrize("run", [
    lambda m, x, y, eps: attacks.evaluate(m, x, y, eps, "fgsm", progress=False),
    lambda m, x, y, eps: attacks.evaluate(m, x, y, eps, "pgd", progress=False, steps=2, rng=0),
    lambda m, x, y, eps: attacks.correct_under_attack(m, x, y, eps, "square", queries=3, rng=0),
    lambda m, x, y, eps: attacks.fgsm_accuracy(m, x, y, eps),
    lambda m, x, y, eps: attacks.fgsm_accuracy(m, x, y, eps, "authors"),
])
@pytest.mark.parametrize("eps_list", [[0.0, NAN], [0.1, -0.1], [INF]])
def test_evaluation_refuses_a_bad_eps_before_attacking(setup, run, eps_list, monkeypatch):
    model, x, y = setup
    monkeypatch.setattr(attacks.evaluation, "_correct", lambda *a, **k: pytest.fail("an attack ran"))
    monkeypatch.setattr(attacks.conventions, "_correct", lambda *a, **k: pytest.fail("an attack ran"))
    with pytest.raises(ValueError, match="eps must be a finite number >= 0") as e:
        run(model, x, y, eps_list)
    _one_line(e)


def test_evaluation_refuses_the_same_eps_twice(setup):
    """{eps: accuracy} holds one entry per eps: a budget given twice would silently be one."""
    model, x, y = setup
    with pytest.raises(ValueError, match=r"0.1 is given twice \(0.1, 0.2, 0.1\); give each"):
        attacks.evaluate(model, x, y, [0.1, 0.2, 0.10], progress=False)


def test_fgsm_names_the_keywords_it_does_not_take(setup):
    model, x, y = setup
    with pytest.raises(TypeError, match="^fgsm got unexpected keyword arguments restarts, steps$"):
        attacks.evaluate(model, x, y, [0.1], "fgsm", steps=3, restarts=2, progress=False)


def test_a_nan_budget_no_longer_makes_nan_images_nor_a_negative_one_raises_accuracy(setup):
    """The issue's cases, as they were: fgsm(nan) gave NaN images, fgsm(-0.3) moved the inputs to LOWER the loss."""
    model, x, y = setup
    for eps in (NAN, -0.3):
        with pytest.raises(ValueError):
            attacks.fgsm(model, x, y, eps)
        with pytest.raises(ValueError):
            attacks.evaluate(model, x, y, [eps], progress=False)


# ------------------------------------------------------------------------------ item 7: the input range
@pytest.mark.parametrize("name", list(ATTACK_CALLS))
@pytest.mark.parametrize("shift, scale", [(-0.5, 1.0), (0.0, 255.0)])
def test_inputs_outside_the_clip_range_are_refused(setup, name, shift, scale):
    """Inputs normalised to mean 0, or 0-255 images: clipping them to [0, 1] would move them far away."""
    model, x, y = setup
    with pytest.raises(ValueError, match=r"inputs must lie in the clip range \[0.0, 1.0\]") as e:
        ATTACK_CALLS[name](model, (x + shift) * scale, y, 0.1)
    msg = _one_line(e)
    assert "clip=None" in msg and "ZCA" in msg


@pytest.mark.parametrize("name", list(ATTACK_CALLS))
@pytest.mark.parametrize("clip", [(0.0, 1.0), None])
def test_non_finite_inputs_are_refused_with_or_without_a_clip(setup, name, clip):
    model, x, y = setup
    x = x.copy()
    x[2, 0, 3, 3] = NAN
    with pytest.raises(ValueError, match="inputs must be finite") as e:
        ATTACK_CALLS[name](model, x, y, 0.1, clip=clip)
    _one_line(e)


@pytest.mark.parametrize("name", list(ATTACK_CALLS))
def test_clip_none_attacks_any_finite_input(setup, name):
    """clip=None: unbounded inputs (ZCA-whitened CIFAR) are attacked as they are, and not clipped."""
    model, x, y = setup
    z = (x - 0.5) * 40
    adv = ATTACK_CALLS[name](model, z, y, 0.1, clip=None)
    assert np.abs(adv - z).max() <= 0.1 + 1e-9 and (adv < 0).any() and (adv > 1).any()


def test_evaluation_refuses_out_of_range_inputs_and_the_authors_convention_accepts_them(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="clip range"):
        attacks.evaluate(model, x * 255, y, [0.1], progress=False)
    with pytest.raises(ValueError, match="clip range"):
        attacks.fgsm_accuracy(model, x - 0.5, y, [0.1])
    for data in (x - 0.5, x * 255):                        # the authors' convention uses no clip: any finite input
        got = attacks.fgsm_accuracy(model, data, y, [0.0, 0.1], "authors")
        assert set(got) == {0.0, 0.1}
    bad = x.copy()
    bad[0, 0, 0, 0] = INF
    with pytest.raises(ValueError, match="inputs must be finite"):
        attacks.fgsm_accuracy(model, bad, y, [0.1], "authors")


def test_an_inverted_or_non_finite_clip_range_is_refused(setup):
    model, x, y = setup
    for clip in ((1.0, 0.0), (0.0, NAN), (0.0,)):
        with pytest.raises(ValueError, match="clip must be None or"):
            attacks.fgsm(model, x, y, 0.1, clip=clip)


# ------------------------------------------------------------------------------ item 8: labels
@pytest.mark.parametrize("labels, message", [
    (lambda y: np.eye(3, dtype=np.int64)[y], r"labels must be shaped \(6,\)"),           # one-hot
    (lambda y: np.full(6, 3), r"labels must lie in \[0, 3\)"),                            # 3 classes: 3 is out
    (lambda y: np.full(6, 10), r"labels must lie in \[0, 3\)"),
    (lambda y: np.full(6, -1), r"labels must lie in \[0, (3|K)\); got values in \[-1, -1\]"),
    (lambda y: 3.7, r"labels must be shaped \(6,\)"),
    (lambda y: y.astype(np.float64), "labels must be integers"),
    (lambda y: y[:4], r"labels must be shaped \(6,\)"),                                   # the wrong count
])
def test_accuracy_checks_labels_as_the_loss_does(setup, labels, message):
    model, x, y = setup
    with pytest.raises(ValueError, match=message) as e:
        attacks.accuracy(model, x, labels(y))
    _one_line(e)
    with pytest.raises(ValueError, match=message):
        attacks.accuracy(model, x, labels(y), batch_size=2)      # the same on batches of 2
    with pytest.raises(ValueError, match=message):
        attacks.evaluate(model, x, labels(y), [0.0], progress=False)


@pytest.mark.parametrize("name", list(ATTACK_CALLS))
def test_every_attack_checks_labels(setup, name):
    """Square and APGD-DLR use no cross-entropy, so nothing else would look at the labels there."""
    model, x, y = setup
    for bad in (np.full(6, 3), np.full(6, -1), y[:4]):
        with pytest.raises(ValueError, match="labels must"):
            ATTACK_CALLS[name](model, x, bad, 0.1)
    with pytest.raises(ValueError, match="labels must"):
        attacks.apgd(model, x, np.full(6, -1), 0.1, steps=3, loss="dlr", rng=0)


def test_good_labels_still_give_the_accuracy(setup):
    model, x, y = setup
    acc = attacks.accuracy(model, x, y)
    pred = model.forward(x, training=False).argmax(axis=1)
    assert acc == float((pred == y).mean())
    assert attacks.accuracy(model, x, list(y)) == acc                  # a list of ints is fine
