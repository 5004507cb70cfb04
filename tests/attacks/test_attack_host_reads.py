"""What an attack reads back from the device (issue 23), counted on the stand-in, whose numbers are NumPy's.

    fgsm, pgd, apgd     the inputs' min and max (one read), and the labels' unless the caller gives their
                        bounds (``y_bounds``, found on the host): once per call, not once per step
    evaluate (FGSM)     a batch given on the host is checked there: per batch, only its results come back
    deferred_input_checks   the training loop's steps: the inputs' min and max stay on the device

The results and the refusals (with their messages) are those of NumPy."""
import numpy as np
import pytest

from nanosgm import backend, standin
from nanosgm.attacks import apgd, correct_under_attack, fgsm, fgsm_correct, pgd
from nanosgm.attacks.checks import check_inputs, deferred_input_checks
from standinkit import tiny_data, tiny_model

EPS = [0.0, 0.05, 0.1]


def on_standin(on, X, y):
    """(model, X, y) on the stand-in."""
    on("standin")
    return tiny_model(), standin.asarray(X), standin.asarray(y)


def test_fgsm_reads_the_inputs_range_once_and_the_labels_range_unless_given(on):
    X, y = tiny_data(10)
    expected = fgsm(tiny_model(), X, y, 0.1)
    model, xd, yd = on_standin(on, X, y)
    with standin.counting() as given:
        adv_given = fgsm(model, xd, yd, 0.1, y_bounds=(int(y.min()), int(y.max())))
    with standin.counting() as read:
        adv_read = fgsm(model, xd, yd, 0.1)
    assert given.reads == {"tolist": 1} and read.reads == {"tolist": 2}
    np.testing.assert_array_equal(adv_given.get(), expected)
    np.testing.assert_array_equal(adv_read.get(), expected)


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_an_iterative_attack_reads_its_checks_once_whatever_its_steps(on, attack):
    """PGD reads its two ranges once per call; APGD adds its own per-step test (all fooled?), no more."""
    X, y = tiny_data(10)
    run = {"pgd": lambda m, x, yy, k: pgd(m, x, yy, 0.1, steps=k, rng=0),
           "apgd": lambda m, x, yy, k: apgd(m, x, yy, 0.1, steps=k, rng=0, skip_fooled=False)}[attack]
    expected = run(tiny_model(), X, y, 4)
    model, xd, yd = on_standin(on, X, y)
    reads = {}
    for steps in (1, 4):
        with standin.counting() as c:
            adv = run(model, xd, yd, steps)
        reads[steps] = dict(c.reads)
    assert reads == {1: {"tolist": 2}, 4: {"tolist": 2}}
    np.testing.assert_array_equal(adv.get(), expected)


@pytest.mark.parametrize("convention", ["inference", "authors"])
def test_an_fgsm_batch_of_evaluate_reads_back_its_results_only(on, convention):
    """Host data: each batch is checked on the host; per (batch, eps) one read, which images are correct."""
    X, y = tiny_data(25)
    if convention == "inference":
        measure = lambda model: correct_under_attack(model, X, y, EPS, "fgsm", 10)
        batches = 3
    else:
        measure = lambda model: fgsm_correct(model, X, y, EPS, convention, seed=1)
        batches = 1                                                # the authors' batches of 128
    expected = measure(tiny_model())
    on("standin")
    model = tiny_model()
    with standin.counting() as c:
        got = measure(model)
    assert c.reads == {"get": batches * len(EPS)}
    assert got.keys() == expected.keys()
    for e in EPS:
        np.testing.assert_array_equal(got[e], expected[e])


def message(call):
    with pytest.raises(ValueError) as e:
        call()
    return str(e.value)


@pytest.mark.parametrize("where, bad", [("x", 1.5), ("x", np.nan), ("y", 3), ("y", -1)])
def test_the_refusals_are_numpys_word_for_word(on, where, bad):
    X, y = tiny_data(10)
    (X if where == "x" else y)[4] = bad
    eps = [0.1]
    expected = [message(lambda: fgsm(tiny_model(), X, y, 0.1)),
                message(lambda: correct_under_attack(tiny_model(), X, y, eps, "fgsm", 5))]
    model, xd, yd = on_standin(on, X, y)
    assert [message(lambda: fgsm(model, xd, yd, 0.1)),
            message(lambda: correct_under_attack(model, X, y, eps, "fgsm", 5)),
            message(lambda: correct_under_attack(model, xd, yd, eps, "fgsm", 5))] == expected + expected[1:]
    assert ("inputs must" if where == "x" else "labels must") in expected[0]


def test_a_deferred_input_check_reads_nothing_until_it_is_settled(on):
    on("standin")
    x = standin.asarray(np.array([[0.5, 1.5]]))
    now = message(lambda: check_inputs(x, (0.0, 1.0), "pgd"))
    with standin.counting() as c, deferred_input_checks() as block:
        check_inputs(x, (0.0, 1.0), "pgd")
        check_inputs(np.array([[0.2, 0.7]]), (0.0, 1.0), "pgd")    # a host array: checked at once
    assert c.host_reads == 0 and len(block.pending) == 1
    values = iter(backend.host_floats(block.values()))
    assert message(lambda: block.settle(values)) == now
    with pytest.raises(ValueError, match="inputs must lie in the clip range"), deferred_input_checks():
        check_inputs(np.array([[1.5]]), (0.0, 1.0), "pgd")         # host: refused inside the block


def test_a_block_that_raises_settles_its_input_checks_first(on):
    """An input that would have been refused is reported, not what came of attacking it."""
    on("standin")
    with pytest.raises(ValueError, match=r"^pgd: inputs must be finite") as e:
        with deferred_input_checks():
            check_inputs(standin.asarray(np.array([[np.nan]])), None, "pgd")
            raise RuntimeError("what came of attacking it")
    assert isinstance(e.value.__context__, RuntimeError)
    with pytest.raises(RuntimeError), deferred_input_checks():     # nothing refused: the error itself
        check_inputs(standin.asarray(np.array([[0.5]])), None, "pgd")
        raise RuntimeError("the error itself")
