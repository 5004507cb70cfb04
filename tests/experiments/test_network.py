"""One network = one task (nanosgm/experiments/network.py): its record measures the best epoch's weights and
the last epoch's, FGSM both ways (this project's and the authors'), and names its training method."""
import numpy as np
import pytest

from nanosgm import attacks
from nanosgm.data import Dataset
from nanosgm.experiments import network
from nanosgm.experiments.network import NetworkSpec, train_network
from nanosgm.layers import BatchNorm, Dense, Dropout, Flatten, ReLU, Sequential

pytestmark = pytest.mark.usefixtures("numpy_backend")


def net(ds):
    return Sequential([Flatten(), Dense(64, 16), BatchNorm(16), ReLU(), Dropout(0.5), Dense(16, 3)])


def noisy():
    """3-class 1x8x8 data with noisy labels in validation, so that the best validation epoch is rarely the last."""
    g = np.random.default_rng(4)

    def make(n, flip):
        y = g.integers(0, 3, n)
        X = (g.random((n, 1, 8, 8)) * 0.6).astype(np.float32)
        X[np.arange(n), 0, y, y] += 0.4
        y = np.where(g.random(n) < flip, g.integers(0, 3, n), y)
        return X, y.astype(np.int64)
    (a, b), (c, d), (e, f) = make(120, 0.0), make(60, 0.6), make(60, 0.0)
    return Dataset("mnist", a, b, c, d, e, f, 3, (1, 8, 8))


def test_a_record_measures_the_best_and_the_last_epoch_both_ways(tmp_path):
    spec = NetworkSpec(dataset=noisy, model=net, epochs=6, batch_size=16, eps=(0.05, 0.2), method="sgm:0.5",
                       optimizer="adam", constant_lr=True)
    record = train_network(spec, model_path=str(tmp_path / "m.npz"))
    assert record["spec"]["method"] == "sgm:0.5" and record["format"] == network.RECORD_FORMAT
    best, last = record["results"], record["results_last_epoch"]
    assert record["best_epoch"] != 6 and last["epoch"] == 6          # this data's validation peaks early
    assert set(best["fgsm_authors_pct"]) == set(best["fgsm_pct"]) == {"0.05", "0.2"}
    model = net(None)
    model.load(str(tmp_path / "m.npz"))                               # the saved model is the best epoch's
    ds = noisy()
    assert best["clean_pct"] == network.pct(attacks.accuracy(model, ds.X_test, ds.y_test))
    authors = attacks.fgsm_accuracy(model, ds.X_test, ds.y_test, [0.05, 0.2], "authors", seed=spec.seed)
    assert best["fgsm_authors_pct"] == {"0.05": network.pct(authors[0.05]), "0.2": network.pct(authors[0.2])}
    assert last != dict(best, epoch=6)                                # the last epoch's weights, measured


def test_the_spec_stores_the_canonical_label_and_refuses_unknown_methods():
    assert NetworkSpec(method="SGM:0.20:per-sample").method == "sgm:0.2:per-sample"
    assert NetworkSpec(method="pgd-at:0.1").identity()["method"] == "pgd-at:0.1:7"
    with pytest.raises(ValueError, match="unknown arm"):
        NetworkSpec(method="sgd:0.2")


# --- the FGSM watch (issue 27: the gain seen growing, or not, with training) ----------------------------------
def test_a_watched_run_trains_exactly_as_an_unwatched_one_and_records_fgsm_every_k_epochs():
    """watch_every=2 on 5 epochs: FGSM on the validation split both ways after epochs 2 and 4 only; the
    weights, the history's other entries and the record's results are those of the run without the watch
    (the watch draws dropout masks and uses batch statistics but leaves weights, buffers and the next
    epoch's randomness alone)."""
    base = NetworkSpec(dataset=noisy, model=net, epochs=5, batch_size=16, eps=(0.05, 0.2), method="sgm:0.5",
                       optimizer="adam", constant_lr=True)
    plain, watched = train_network(base), train_network(base.with_(watch_every=2))
    keys = {"val_fgsm_pct", "val_fgsm_authors_pct"}
    assert [sorted(keys & set(h)) for h in watched["history"]] == [[], sorted(keys), [], sorted(keys), []]
    for h in watched["history"]:
        for k in keys & set(h):
            assert set(h[k]) == {"0.05", "0.2"} and all(0 <= v <= 100 for v in h[k].values())
    strip = [{k: v for k, v in h.items() if k not in keys | {"seconds"}} for h in watched["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in plain["history"]]
    assert watched["results"] == plain["results"] and watched["best_epoch"] == plain["best_epoch"]
    assert watched["spec"]["watch_every"] == 2 and "watch_every" not in plain["spec"]


def test_the_watch_measures_the_validation_split_at_that_epoch():
    ds = noisy()
    model = net(ds)
    watch = network.fgsm_watch(3, ds.X_val, ds.y_val, [0.1], (0.0, 1.0), seed=7)
    assert watch(0, model) == {} and watch(1, model) == {}
    got = watch(2, model)
    inference = attacks.fgsm_accuracy(model, ds.X_val, ds.y_val, [0.1], "inference", clip=(0.0, 1.0))
    authors = attacks.fgsm_accuracy(model, ds.X_val, ds.y_val, [0.1], "authors", clip=(0.0, 1.0), seed=7)
    assert got == {"val_fgsm_pct": {"0.1": network.pct(inference[0.1])},
                   "val_fgsm_authors_pct": {"0.1": network.pct(authors[0.1])}}
