"""The paper's protocol (nanosgm.experiments) and figures (nanosgm.figures): lock-step runs, medians,
Wilcoxon tests, resuming, Tables 4-5 formatting, Figures 1-6, and the CLI on a tiny real-MNIST run."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from scipy import stats

from nanosgm import backend, experiments, figures, train
from nanosgm.data import Dataset
from nanosgm.layers import BatchNorm, Dense, Dropout, Flatten, ReLU, Sequential

from conftest import require_real_data


# ------------------------------------------------------------------------------------------ helpers
def tiny_net(ds):
    """A small network with dropout (so lock-step must also share the dropout masks)."""
    d = int(np.prod(ds.input_shape))
    return Sequential([Flatten(), Dense(d, 16), BatchNorm(16), ReLU(), Dropout(0.5), Dense(16, ds.num_classes)])


def synthetic(n_train=96, n_eval=40, seed=0, name="mnist"):
    """Learnable 3-class 1x8x8 data in [0, 1], named like MNIST (so the paper's row names apply)."""
    g = np.random.default_rng(seed)

    def make(n):
        y = g.integers(0, 3, n)
        X = (g.random((n, 1, 8, 8)) * 0.5).astype(np.float32)
        X[np.arange(n), 0, y, y] += 0.5
        return X, y.astype(np.int64)

    (Xtr, ytr), (Xv, yv), (Xt, yt) = make(n_train), make(n_eval), make(n_eval)
    return Dataset(name, Xtr, ytr, Xv, yv, Xt, yt, 3, (1, 8, 8))


def run(ds=None, **kw):
    args = dict(runs=2, epochs=2, batch_size=32, eps_list=(0.01, 0.1), progress=False)
    args.update(kw)
    return experiments.run_protocol(ds if ds is not None else synthetic(), tiny_net, **args)


@pytest.fixture(autouse=True)
def _numpy_backend():
    prev = backend.name()
    backend.use("numpy")
    yield
    backend.use(prev)


def hand_made_result(clean_c, clean_u, fgsm_c, fgsm_u, eps=(0.1,), dataset="mnist", model="cnn", augment=False):
    runs = []
    for i in range(len(clean_c)):
        runs.append({"run": i, "seed": i,
                     "control": {"clean_accuracy": clean_c[i], "fgsm_accuracy": {repr(e): fgsm_c[i] for e in eps},
                                 "history": [{"test_error": 1 - clean_c[i]}]},
                     "updates": {"clean_accuracy": clean_u[i], "fgsm_accuracy": {repr(e): fgsm_u[i] for e in eps},
                                 "history": [{"test_error": 1 - clean_u[i]}]}})
    return {"format": experiments.PROTOCOL_FORMAT, "runs": runs,
            "config": {"dataset": dataset, "model": model, "augment": augment, "eps": list(eps), "epochs": 50,
                       "input_lr": 0.2, "seed0": 0, "n_train": 50000, "n_test": 10000, "eval_limit": None, "pgd": 0}}


# ------------------------------------------------------------------------------------------ lock-step
def test_lock_step_same_initial_weights_batches_and_masks(monkeypatch):
    seen = []
    real_fit = train.fit

    def spy(model, *a, **kw):
        seen.append((kw["seed"], kw["input_lr"], model.state_dict()))
        return real_fit(model, *a, **kw)

    monkeypatch.setattr(train, "fit", spy)
    res = run(runs=2, epochs=2)
    assert [(s, lr) for s, lr, _ in seen] == [(0, 0.0), (0, 0.2), (1, 0.0), (1, 0.2)]
    for k in (0, 2):                     # control and updates of one run: the very same initial weights
        a, b = seen[k][2], seen[k + 1][2]
        assert a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)
    w0, w1 = seen[0][2], seen[2][2]      # ... and another seed gives other weights
    assert any(not np.array_equal(w0[n], w1[n]) for n in w0)
    for r in res["runs"]:
        c, u = r["control"], r["updates"]
        assert c["init_sha256"] == u["init_sha256"]
        # epoch 1 sees the same batches and dropout masks, and no updated input yet: identical losses
        assert c["history"][0]["train_loss"] == u["history"][0]["train_loss"]
        # from epoch 2 on the SGM network trains on X_1 != X_0
        assert c["history"][1]["train_loss"] != u["history"][1]["train_loss"]
    assert res["runs"][0]["control"]["init_sha256"] != res["runs"][1]["control"]["init_sha256"]


def test_one_epoch_control_and_updates_coincide_and_snapshots_are_recorded():
    res = run(runs=1, epochs=1)
    r = res["runs"][0]
    assert r["control"]["clean_accuracy"] == r["updates"]["clean_accuracy"]
    assert r["control"]["fgsm_accuracy"] == r["updates"]["fgsm_accuracy"]
    s = res["snapshots"]
    assert s["epochs"] == [1] and s["X0"].shape == (8, 1, 8, 8) and len(s["deltas"]) == 1
    assert np.abs(s["deltas"][0]).max() > 0          # SGM moved the training images


# ------------------------------------------------------------------------------------------ statistics
def test_medians_and_wilcoxon_match_hand_computation_and_scipy():
    cc = [0.990, 0.992, 0.991, 0.989, 0.993]
    cu = [0.991, 0.992, 0.993, 0.990, 0.996]           # diffs +.001, 0, +.002, +.001, +.003
    fc = [0.80, 0.82, 0.79, 0.85, 0.81]
    fu = [0.86, 0.81, 0.88, 0.84, 0.90]                # diffs +.06, -.01, +.09, -.01, +.09
    s = experiments.summarize(hand_made_result(cc, cu, fc, fu))
    assert s["n_runs"] == 5
    assert s["clean"]["control"] == pytest.approx(0.991) and s["clean"]["updates"] == pytest.approx(0.992)
    assert s["fgsm"][0.1]["control"] == pytest.approx(0.81) and s["fgsm"][0.1]["updates"] == pytest.approx(0.86)
    ref = stats.wilcoxon(fu, fc, alternative="two-sided")
    assert s["fgsm"][0.1]["wilcoxon"]["p"] == pytest.approx(ref.pvalue)
    assert s["fgsm"][0.1]["wilcoxon"]["statistic"] == pytest.approx(ref.statistic)
    assert s["clean"]["wilcoxon"]["note"].startswith("1 zero")
    # all five differences of one sign: the smallest exact two-sided p of five pairs, 2/2^5
    w = experiments.wilcoxon_paired([1, 2, 3, 4, 5], [1.5, 2.7, 3.1, 4.9, 5.3])
    assert w["p"] == pytest.approx(0.0625) and w["statistic"] == 0 and w["min_exact_p"] == 0.0625


def test_wilcoxon_all_zero_differences_is_no_difference_not_a_crash():
    w = experiments.wilcoxon_paired([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert w["p"] == 1.0 and "no difference" in w["note"]
    s = experiments.summarize(hand_made_result([0.5] * 5, [0.5] * 5, [0.3] * 5, [0.3] * 5))
    assert s["clean"]["wilcoxon"]["p"] == 1.0
    with pytest.raises(ValueError, match="paired"):
        experiments.wilcoxon_paired([1, 2], [1, 2, 3])


# ------------------------------------------------------------------------------------------ resume
def test_resume_skips_finished_runs_and_writes_after_each_run(tmp_path, monkeypatch):
    out = tmp_path / "p"
    first = run(runs=2, out=out)
    saved = json.loads((out / "protocol.json").read_text())
    assert [r["run"] for r in saved["runs"]] == [0, 1]
    assert (out / "snapshots.npz").exists() and (out / "run0_updates.npz").exists()
    assert not list(out.glob("ckpt-*"))                  # checkpoints of finished runs are removed

    calls = []
    real_fit = train.fit

    def counting(*a, **kw):
        calls.append((kw["seed"], kw["input_lr"]))
        if len(calls) == 2:
            raise KeyboardInterrupt                      # interrupted in run 2's SGM network
        return real_fit(*a, **kw)

    monkeypatch.setattr(train, "fit", counting)
    with pytest.raises(KeyboardInterrupt):
        run(runs=4, out=out)
    assert calls == [(2, 0.0), (2, 0.2)]                 # runs 0 and 1 were skipped
    assert len(json.loads((out / "protocol.json").read_text())["runs"]) == 2

    calls.clear()
    monkeypatch.setattr(train, "fit", lambda *a, **kw: (calls.append(kw["seed"]), real_fit(*a, **kw))[1])
    res = run(runs=3, out=out)
    assert calls == [2, 2]
    assert [r["run"] for r in res["runs"]] == [0, 1, 2]
    assert res["runs"][:2] == first["runs"]              # the recorded runs are kept as they were
    assert res["summary"]["n_runs"] == 3
    assert experiments.load_protocol(out)["snapshots"]["epochs"] == [1, 2]


def test_config_mismatch_is_a_clear_error(tmp_path):
    out = tmp_path / "p"
    run(runs=1, epochs=1, out=out)
    with pytest.raises(experiments.ConfigMismatch, match="input_lr"):
        run(runs=1, epochs=1, out=out, input_lr=0.1)
    with pytest.raises(ValueError, match="input_lr = 0"):
        run(runs=1, epochs=1, input_lr=0.0)


# ------------------------------------------------------------------------------------------ tables
def write_paper_csvs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table4_clean_accuracy.csv").write_text(
        "experiment,control,with_updates\nMNIST-CNN,11.11,22.22\nCIFAR-10-CNN,33.33,44.44\n")
    (folder / "table5_fgsm_accuracy.csv").write_text(
        "experiment,variant,eps_0.001,eps_0.01,eps_0.1,eps_0.2\n"
        "MNIST-CNN,control,1.01,1.02,55.55,1.04\nMNIST-CNN,updates,2.01,2.02,66.66,2.04\n"
        "CIFAR-10,control,3.01,3.02,77.77,3.04\nCIFAR-10,updates,4.01,4.02,88.88,4.04\n")
    return folder


def test_format_tables_rows_and_the_papers_numbers(tmp_path):
    res = hand_made_result([0.99, 0.98, 0.97], [0.99, 0.99, 0.99], [0.5, 0.6, 0.7], [0.6, 0.7, 0.8])
    pdir = write_paper_csvs(tmp_path / "paper")
    text = experiments.format_tables(res, paper=True, paper_dir=pdir)
    assert "Table 4" in text and "Table 5" in text
    row4 = next(line for line in text.splitlines() if line.startswith("MNIST-CNN "))
    assert "98.00" in row4 and "99.00" in row4 and "11.11" in row4 and "22.22" in row4
    row5 = next(line for line in text.splitlines() if line.startswith("0.1 "))
    assert "60.00" in row5 and "70.00" in row5 and "55.55" in row5 and "66.66" in row5
    assert "0.0625" in text                               # the five-run floor of the exact p-value
    plain = experiments.format_tables(res, paper=False)
    assert "11.11" not in plain and "55.55" not in plain and "paper control" not in plain
    # CIFAR: Table 5's CSV calls the row "CIFAR-10", Table 4's "CIFAR-10-CNN"
    cif = hand_made_result([0.9] * 2, [0.9] * 2, [0.5] * 2, [0.5] * 2, dataset="cifar10", model="cifar_cnn")
    ctext = experiments.format_tables(cif, paper_dir=pdir)
    assert "33.33" in ctext and "44.44" in ctext and "77.77" in ctext and "88.88" in ctext
    missing = experiments.format_tables(res, paper=True, paper_dir=tmp_path / "nowhere")
    assert "11.11" not in missing and "not found" in missing


def test_paper_experiment_names():
    assert experiments.paper_experiment_name("mnist", "dnn", True) == "MNIST-DNN-AUG"
    assert experiments.paper_experiment_name("cifar100", "cifar_cnn", False) == "CIFAR-100-CNN"
    assert experiments.paper_experiment_name("fashion-mnist", "cnn", False) is None


# ------------------------------------------------------------------------------------------ figures
def test_test_error_curves_median_and_band():
    res = hand_made_result([0.9, 0.8, 0.7], [0.95, 0.85, 0.6], [0] * 3, [0] * 3)
    for r, extra in zip(res["runs"], (0.1, 0.3, 0.2)):
        for v in ("control", "updates"):
            r[v]["history"].append({"test_error": extra})
    fig = figures.test_error_curves(res)
    assert len(fig.axes) == 1
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    assert np.allclose(lines[0].get_ydata(), [20.0, 20.0])     # control: median(10, 20, 30), median(10, 30, 20)
    assert np.allclose(lines[1].get_ydata(), [15.0, 20.0])     # updates: median(5, 15, 40)
    assert len(fig.axes[0].collections) == 2                   # the two min-max bands


def test_adversarial_examples_grid():
    ds = synthetic()
    backend.seed(0)
    model = tiny_net(ds)
    fig = figures.adversarial_examples(model, ds.X_test, ds.y_test, eps_list=(0.001, 0.1), n=3)
    assert len(fig.axes) == 3 * (1 + 2 * 2)
    ax_pert = fig.axes[2]                                       # row 0: clean, adv 0.001, pert 0.001, ...
    img = np.asarray(ax_pert.images[0].get_array())
    # the sign pattern sgn(dE/dx): black and white (grey only where the [0, 1] clip cut the step)
    assert np.isin(img, [0.0, 1.0]).mean() > 0.9 and (img == 0).any() and (img == 1).any()


def test_input_updates_mapping_grey_white_black():
    X0 = np.full((2, 1, 4, 4), 0.3)
    deltas = [np.zeros((2, 1, 4, 4)), np.ones((2, 1, 4, 4)), -5 * np.ones((2, 1, 4, 4))]
    fig = figures.input_updates({"epochs": [1, 2, 3], "X0": X0, "deltas": deltas})
    assert len(fig.axes) == 2 * (1 + 3)
    zero, white, black = (fig.axes[k].images[0] for k in (1, 2, 3))
    assert np.all(zero.get_array() == 0.5) and zero.get_clim() == (0, 1) and zero.get_cmap().name == "gray"
    assert np.all(white.get_array() == 1.0) and np.all(black.get_array() == 0.0)
    rgb = np.zeros((3, 2, 2))
    rgb[0] = 1.0
    assert np.allclose(figures.update_to_grey(rgb), 0.5 + 0.5 / 3)          # channels averaged
    assert figures.update_to_grey(rgb, channels="rgb").shape == (2, 2, 3)
    amp = figures.input_updates({"epochs": [1], "X0": X0, "deltas": [np.full((2, 1, 4, 4), 0.01)]}, gain=50)
    assert np.allclose(amp.axes[1].images[0].get_array(), 0.75)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_end_to_end_on_real_mnist(tmp_path, capsys):
    data_dir = require_real_data("mnist")
    pdir = write_paper_csvs(tmp_path / "paper")
    out = tmp_path / "proto"
    rc = experiments.main(["mnist", "--model", "cnn", "--runs", "2", "--epochs", "1", "--limit", "64",
                           "--eval-limit", "50", "--batch-size", "32", "--eps", "0.01,0.1", "--data-dir",
                           str(data_dir), "--out", str(out), "--paper-dir", str(pdir), "--no-progress",
                           "--figures"])
    text = capsys.readouterr().out
    assert rc == 0
    saved = json.loads((out / "protocol.json").read_text())
    assert len(saved["runs"]) == 2 and saved["config"]["n_train"] == 64 and saved["config"]["n_test"] == 50
    assert saved["config"]["clip"] == [0.0, 1.0]
    assert "Table 4" in text and "55.55" in text and "identical" in text
    for name in ("fig1-2_test_error.png", "fig3-4_adversarial_updates.png", "fig5-6_input_updates.png"):
        assert (out / name).stat().st_size > 1000


def test_cli_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        experiments.main(["imagenet"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert experiments.main(["mnist", "--eps", "0.1,abc", "--out", str(tmp_path)]) == 1
    assert "--eps" in capsys.readouterr().err
    assert experiments.main(["mnist", "--runs", "0", "--out", str(tmp_path)]) == 1
    assert experiments.main(["mnist", "--model", "resnet", "--out", str(tmp_path)]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert experiments.main(["mnist", "--input-lr", "0", "--out", str(tmp_path)]) == 1
