"""The paper's protocol (nanosgm.experiments) and figures (nanosgm.experiments.figures): lock-step runs, medians,
Wilcoxon tests, resuming, Tables 4-5 formatting, Figures 1-6, and the CLI on a tiny real-MNIST run."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from scipy import stats

from pathlib import Path

from nanosgm import backend, experiments
from nanosgm.experiments import figures, network, protocol
from nanosgm.experiments.network import NetworkSpec
from nanosgm.data import Dataset
from nanosgm.layers import BatchNorm, Dense, Dropout, Flatten, ReLU, Sequential
from nanosgm.methods import SGM, AdversarialTraining, Control, Published

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


def syn():
    """The synthetic dataset as a module-level function, so a NetworkSpec can name it."""
    return synthetic()


def base(**kw):
    args = dict(dataset=syn, model=tiny_net, epochs=2, batch_size=32, eps=(0.01, 0.1))
    args.update(kw)
    return NetworkSpec(**args)


def copy_findable(made, tmp_path, monkeypatch):
    """A copy of the protocol folder ``made`` whose dataset and model the loaders (``recipe.load_data``,
    ``recipe.build_model``) find by the names protocol.json gives ("syn", "tiny_net": this file's functions)."""
    import shutil
    from nanosgm.experiments import recipe
    copy = tmp_path / "p"
    shutil.copytree(made, copy)
    load, build = recipe.load_data, recipe.build_model
    monkeypatch.setattr(recipe, "load_data", lambda name, **kw: load(syn() if name == "syn" else name, **kw))
    monkeypatch.setattr(recipe, "build_model", lambda m, ds: build(tiny_net if m == "tiny_net" else m, ds))
    return copy


def run(arms="sgm:0.2", runs=2, spec=None, **kw):
    return experiments.run_protocol(spec or base(), runs=runs, arms=arms, progress=False, bars=False, **kw)


pytestmark = pytest.mark.usefixtures("numpy_backend")


def net(clean, fgsm, eps, test_errors=None):
    return {"init_sha256": "x", "results": {"clean_pct": clean, "fgsm_pct": {repr(e): fgsm for e in eps}},
            "history": [{"test_error_pct": t} for t in (test_errors or [100 - clean])]}


def hand_made_result(clean_c, clean_u, fgsm_c, fgsm_u, eps=(0.1,), dataset="mnist", model="cnn", augment=False,
                     arm="sgm:0.2"):
    spec = NetworkSpec(dataset=dataset, model=model, augment=augment, eps=eps, epochs=50)
    config = protocol.protocol_config(spec, 0)
    nets = {}
    for i in range(len(clean_c)):
        for label, clean, fgsm in (("control", clean_c[i], fgsm_c[i]), (arm, clean_u[i], fgsm_u[i])):
            nets[f"run{i}/{label}"] = dict(net(clean, fgsm, eps), spec=protocol.expected_spec(config, i, label))
    return {"format": experiments.PROTOCOL_FORMAT, "arms": ["control", arm], "networks": nets, "config": config}


# ------------------------------------------------------------------------------------------ lock-step
def test_lock_step_same_initial_weights_batches_and_masks(monkeypatch):
    seen = []
    real_fit = network.fit

    def spy(model, *a, **kw):
        seen.append((kw["seed"], kw["method"].label, model.state_dict()))
        return real_fit(model, *a, **kw)

    monkeypatch.setattr(network, "fit", spy)
    res = run(arms="sgm:0.2,published")
    assert [s[:2] for s in seen] == [(0, "control"), (0, "sgm:0.2"), (0, "published"),
                                     (1, "control"), (1, "sgm:0.2"), (1, "published")]
    for k in (0, 3):                     # the three networks of one run: the very same initial weights
        for j in (1, 2):
            a, b = seen[k][2], seen[k + j][2]
            assert a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)
    w0, w1 = seen[0][2], seen[3][2]      # ... and another seed gives other weights
    assert any(not np.array_equal(w0[n], w1[n]) for n in w0)
    nets = res["networks"]
    for i in (0, 1):
        c, u = nets[f"run{i}/control"], nets[f"run{i}/sgm:0.2"]
        assert c["init_sha256"] == u["init_sha256"] == nets[f"run{i}/published"]["init_sha256"]
        # epoch 1 sees the same batches and dropout masks, and no updated input yet: identical losses
        assert c["history"][0]["train_loss"] == u["history"][0]["train_loss"]
        # from epoch 2 on the SGM network trains on X_1 != X_0
        assert c["history"][1]["train_loss"] != u["history"][1]["train_loss"]
    assert nets["run0/control"]["init_sha256"] != nets["run1/control"]["init_sha256"]


def test_a_broken_lock_step_is_detected():
    res = hand_made_result([99.0], [99.0], [50.0], [50.0])
    res["networks"]["run0/sgm:0.2"]["init_sha256"] = "y"
    with pytest.raises(RuntimeError, match="lock-step broken"):
        protocol.check_lockstep(res, 0)


def test_one_epoch_control_and_sgm_coincide_and_snapshots_are_recorded(tmp_path):
    res = run(runs=1, spec=base(epochs=1), out=tmp_path / "p")
    c, u = res["networks"]["run0/control"], res["networks"]["run0/sgm:0.2"]
    assert c["results"] == u["results"]
    s = res["snapshots"]["sgm:0.2"]
    assert s["epochs"] == [1] and s["X0"].shape == (8, 1, 8, 8) and len(s["deltas"]) == 1
    assert np.abs(s["deltas"][0]).max() > 0          # SGM moved the training images
    assert u["history"][0]["input_shift_max"] >= np.abs(s["deltas"][0]).max() * (1 - 1e-3)   # over all images


def test_arms_parse_and_refuse_clearly():
    arms = experiments.parse_arms("sgm:0.2, sgm:1:per-sample,published")
    assert arms == ["control", "sgm:0.2", "sgm:1:per-sample", "published"]          # canonical labels, control first
    methods = [experiments.parse_arm(a) for a in arms]
    assert [m.label for m in methods] == arms                                        # the labels round-trip
    assert isinstance(methods[2], SGM) and methods[2].input_lr == 1 and methods[2].per_sample
    assert isinstance(methods[1], SGM) and methods[1].input_lr == 0.2 and not methods[1].per_sample
    assert isinstance(methods[3], Published) and isinstance(methods[0], Control)
    assert [m.moves_inputs for m in methods] == [False, True, True, False]
    for bad in ("sgm", "sgm:x", "sgm:0", "sgm:0.2:batch", "adv", ""):
        with pytest.raises(ValueError):
            experiments.parse_arms(bad)
    with pytest.raises(ValueError, match="twice"):
        experiments.parse_arms("sgm:0.2,sgm:0.20")
    adv = experiments.parse_arms("fgsm-at:0.1,fgsm-rs:0.1,pgd-at:0.1:3")
    assert adv == ["control", "fgsm-at:0.1", "fgsm-rs:0.1", "pgd-at:0.1:3"]
    adv_methods = [experiments.parse_arm(a) for a in adv[1:]]
    assert all(isinstance(m, AdversarialTraining) and not m.moves_inputs for m in adv_methods)
    assert [(m.mode, m.eps, m.steps) for m in adv_methods] == [("fgsm", 0.1, 7), ("fgsm-rs", 0.1, 7), ("pgd", 0.1, 3)]
    assert experiments.parse_arm("pgd-at:0.1").label == "pgd-at:0.1:7"
    for bad in ("fgsm-at:0", "fgsm-at:0.1:3", "pgd-at:x", "pgd-at:0.1:0"):
        with pytest.raises(ValueError):
            experiments.parse_arm(bad)


def test_arm_spec_names_the_method_and_keeps_snapshots_of_run_0_of_a_method_that_moves_inputs():
    b = base()
    for label, run_, rows in (("sgm:0.2", 0, 8), ("sgm:0.2:per-sample", 0, 8), ("sgm:0.2", 1, 0), ("control", 0, 0),
                              ("published", 0, 0), ("pgd-at:0.1:2", 0, 0)):
        spec = experiments.arm_spec(b, label, seed=7 + run_, run=run_)
        assert (spec.method, spec.seed, spec.snapshot_rows) == (label, 7 + run_, rows)
        assert spec.with_(method="control", seed=b.seed, snapshot_rows=0) == b      # nothing else changes
    assert experiments.arm_spec(b, "PGD-AT:0.10", seed=0, run=0).method == "pgd-at:0.1:7"      # canonical spelling


def test_adversarial_training_arms_run_lock_step_and_leave_the_inputs_alone():
    res = run(runs=1, arms="fgsm-at:0.1,pgd-at:0.1:2")
    nets = res["networks"]
    assert len({r["init_sha256"] for r in nets.values()}) == 1
    assert nets["run0/pgd-at:0.1:2"]["spec"]["method"] == "pgd-at:0.1:2"             # the record names its method
    assert "input_shift_max" not in nets["run0/fgsm-at:0.1"]["history"][0]
    assert nets["run0/fgsm-at:0.1"]["history"][0]["train_loss"] != nets["run0/control"]["history"][0]["train_loss"]


def test_per_sample_steps_are_the_batch_size_times_larger():
    res = run(runs=1, arms="sgm:0.2,sgm:0.2:per-sample", spec=base(epochs=1, batch_size=96))   # one batch
    a = res["networks"]["run0/sgm:0.2"]["history"][0]["input_shift_max"]
    b = res["networks"]["run0/sgm:0.2:per-sample"]["history"][0]["input_shift_max"]
    assert b == pytest.approx(96 * a, rel=1e-3)


# ------------------------------------------------------------------------------------------ statistics
def test_medians_ranges_and_wilcoxon_match_hand_computation_and_scipy():
    cc = [99.0, 99.2, 99.1, 98.9, 99.3]
    cu = [99.1, 99.2, 99.3, 99.0, 99.6]           # diffs +.1, 0, +.2, +.1, +.3
    fc = [80.0, 82.0, 79.0, 85.0, 81.0]
    fu = [86.0, 81.0, 88.0, 84.0, 90.0]           # diffs +6, -1, +9, -1, +9
    s = experiments.summarize(hand_made_result(cc, cu, fc, fu))["sgm:0.2"]
    assert s["runs"] == [0, 1, 2, 3, 4]
    assert s["clean"]["control"]["median"] == pytest.approx(99.1) and s["clean"]["arm"]["median"] == pytest.approx(99.2)
    assert s["clean"]["control"]["min"] == 98.9 and s["clean"]["arm"]["max"] == 99.6
    f = s["fgsm"][0.1]
    assert f["control"]["median"] == 81.0 and f["arm"]["median"] == 86.0 and f["arm"]["per_run"] == fu
    ref = stats.wilcoxon(fu, fc, alternative="two-sided")
    assert f["wilcoxon"]["p"] == pytest.approx(ref.pvalue) and f["wilcoxon"]["statistic"] == pytest.approx(ref.statistic)
    assert s["clean"]["wilcoxon"]["note"].startswith("1 zero")
    # all five differences of one sign: the smallest exact two-sided p of five pairs, 2/2^5
    w = experiments.wilcoxon_paired([1, 2, 3, 4, 5], [1.5, 2.7, 3.1, 4.9, 5.3])
    assert w["p"] == pytest.approx(0.0625) and w["statistic"] == 0 and w["min_exact_p"] == 0.0625


def test_the_pooled_test_pairs_every_run_and_eps_cell():
    eps = (0.01, 0.1)
    res = hand_made_result([99.0] * 5, [99.0] * 5, [50.0, 51, 52, 53, 54], [51.0, 53, 55, 57, 59], eps=eps)
    pooled = experiments.summarize(res)["sgm:0.2"]["pooled_fgsm"]
    c = [50.0, 51, 52, 53, 54] * 2
    u = [51.0, 53, 55, 57, 59] * 2
    assert pooled["n"] == 10 and pooled["p"] == pytest.approx(stats.wilcoxon(u, c).pvalue)
    assert pooled["p"] < 0.0625 < experiments.summarize(res)["sgm:0.2"]["fgsm"][0.1]["wilcoxon"]["p"] + 1e-12


def test_only_complete_pairs_count():
    res = hand_made_result([99.0, 98.0], [99.5, 98.5], [50.0, 40.0], [55.0, 45.0])
    del res["networks"]["run1/sgm:0.2"]
    s = experiments.summarize(res)["sgm:0.2"]
    assert s["runs"] == [0] and s["clean"]["control"]["per_run"] == [99.0]


def test_wilcoxon_all_zero_differences_is_no_difference_not_a_crash():
    w = experiments.wilcoxon_paired([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert w["p"] == 1.0 and "no difference" in w["note"]
    s = experiments.summarize(hand_made_result([50.0] * 5, [50.0] * 5, [30.0] * 5, [30.0] * 5))
    assert s["sgm:0.2"]["clean"]["wilcoxon"]["p"] == 1.0
    with pytest.raises(ValueError, match="paired"):
        experiments.wilcoxon_paired([1, 2], [1, 2, 3])


# ------------------------------------------------------------------------------------------ resume
def test_resume_skips_finished_networks_and_records_each_as_it_finishes(tmp_path, monkeypatch):
    out = tmp_path / "p"
    first = run(runs=2, out=out)
    saved = json.loads((out / "protocol.json").read_text())
    assert list(saved["networks"]) == ["run0/control", "run0/sgm:0.2", "run1/control", "run1/sgm:0.2"]
    assert (out / "snapshots-sgm_0.2.npz").exists() and (out / "models" / "run1-sgm_0.2.npz").exists()
    assert not list((out / "ckpt").iterdir())            # checkpoints of recorded networks are removed

    calls = []
    real_fit = network.fit

    def counting(*a, **kw):
        calls.append((kw["seed"], kw["method"].label))
        if len(calls) == 2:
            raise KeyboardInterrupt                      # interrupted in run 2's SGM network
        return real_fit(*a, **kw)

    monkeypatch.setattr(network, "fit", counting)
    with pytest.raises(KeyboardInterrupt):
        run(runs=4, out=out)
    assert calls == [(2, "control"), (2, "sgm:0.2")]     # runs 0 and 1 were skipped
    assert len(json.loads((out / "protocol.json").read_text())["networks"]) == 5

    calls.clear()
    monkeypatch.setattr(network, "fit", lambda *a, **kw: (calls.append(kw["seed"]), real_fit(*a, **kw))[1])
    res = run(runs=3, out=out)
    assert calls == [2]
    assert len(res["networks"]) == 6
    for k, r in first["networks"].items():               # the recorded networks are kept as they were
        assert res["networks"][k] == r
    assert res["summary"]["sgm:0.2"]["runs"] == [0, 1, 2]
    assert experiments.load_protocol(out)["snapshots"]["sgm:0.2"]["epochs"] == [1, 2]


def test_a_new_arm_extends_a_protocol_and_shares_its_control(tmp_path, monkeypatch):
    out = tmp_path / "p"
    run(runs=1, out=out)
    calls = []
    real_fit = network.fit
    monkeypatch.setattr(network, "fit", lambda *a, **kw: (calls.append(kw["method"].label), real_fit(*a, **kw))[1])
    res = run(runs=1, arms="sgm:0.2,published", out=out)
    assert calls == ["published"] and res["arms"] == ["control", "sgm:0.2", "published"]
    assert set(res["summary"]) == {"sgm:0.2", "published"}


def test_records_whose_spec_predates_method_are_read_and_extended(tmp_path):
    """protocol.json files whose records' spec has input_lr/per_sample/published/adversarial instead of
    "method" (record format nanosgm-network/1, as committed under results/) give the same tables and
    summaries, and the protocol resumes and extends around them."""
    out = tmp_path / "p"
    run(runs=1, out=out)
    path = out / "protocol.json"
    text = experiments.format_tables(experiments.load_protocol(out), paper=False)
    saved = json.loads(path.read_text())
    for r in saved["networks"].values():
        del r["sha256"], r["versions"]["blas_threads"]        # records of that format carry neither
        label = r["spec"].pop("method")
        r["format"] = "nanosgm-network/1"
        r["spec"].update(input_lr=0.2 if label == "sgm:0.2" else 0.0, per_sample=False, published=False,
                         adversarial=None)
    del saved["blas_threads"]
    path.write_text(json.dumps(saved))
    old = experiments.load_protocol(out)
    assert experiments.format_tables(old, paper=False) == text
    assert experiments.summarize(old)["sgm:0.2"]["runs"] == [0]
    res = run(runs=2, out=out)
    assert list(res["networks"]) == ["run0/control", "run0/sgm:0.2", "run1/control", "run1/sgm:0.2"]
    assert res["networks"]["run0/sgm:0.2"] == saved["networks"]["run0/sgm:0.2"]          # kept as it was
    assert res["networks"]["run1/sgm:0.2"]["spec"]["method"] == "sgm:0.2"
    assert res["summary"]["sgm:0.2"]["runs"] == [0, 1]


def test_config_mismatch_is_a_clear_error(tmp_path):
    out = tmp_path / "p"
    run(runs=1, spec=base(epochs=1), out=out)
    with pytest.raises(experiments.ConfigMismatch, match="epochs"):
        run(runs=1, spec=base(epochs=2), out=out)


# ---------------------------------------------------------------------------- the same results anywhere
def _strip(record):
    r = {k: v for k, v in record.items() if k not in ("train_seconds", "eval_seconds", "started", "finished", "sha256")}
    r["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]]
    return r


def test_sequential_workers_and_a_dask_cluster_give_bit_identical_records(tmp_path):
    data_dir = require_real_data("mnist")
    spec = NetworkSpec(dataset="mnist", model="cnn", epochs=2, limit=128, eval_limit=40, batch_size=64,
                       eps=(0.1,), pgd=10, pgd_steps=3, data_dir=str(data_dir))
    seq = run(runs=2, spec=spec, threads=1)
    par = run(runs=2, spec=spec, threads=1, workers=2, out=tmp_path / "w")
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        dask = run(runs=2, spec=spec, threads=1, scheduler=client)
    assert list(seq["networks"]) == list(par["networks"]) == list(dask["networks"])
    for k in seq["networks"]:
        assert _strip(seq["networks"][k]) == _strip(par["networks"][k]) == _strip(dask["networks"][k])


def test_an_interrupted_parallel_protocol_resumes_to_the_same_result(tmp_path):
    """A worker process is killed in the middle of a network; running again finishes bit-identically.
    Three runs (six networks) on two workers: the interrupt follows the first "epoch 1" line (its checkpoint is
    written before the line), when no network has finished and four have not started. The child starts with
    Ctrl-C's default action whatever this process inherited: a test run launched in the background by a
    non-interactive shell ignores SIGINT, and so would the protocol (it then finished with exit 0)."""
    import signal
    import subprocess
    import sys
    data_dir = require_real_data("mnist")
    args = [sys.executable, "-m", "nanosgm.experiments", "mnist", "--runs", "3", "--epochs", "3", "--limit", "256",
            "--eval-limit", "40", "--batch-size", "64", "--eps", "0.1", "--pgd", "0", "--threads", "1",
            "--data-dir", str(data_dir), "--no-progress"]
    ref = tmp_path / "ref"
    assert subprocess.run(args + ["--out", str(ref)], capture_output=True, timeout=600).returncode == 0
    out = tmp_path / "par"
    p = subprocess.Popen(args + ["--out", str(out), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in p.stdout:                            # wait until some network has a checkpoint on disk
        if "epoch   1" in line:
            break
    assert p.poll() is None, "the protocol finished before it could be interrupted"
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    assert p.returncode == 130
    assert len(json.loads((out / "protocol.json").read_text())["networks"]) < 6
    done = subprocess.run(args + ["--out", str(out), "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed from" in done.stdout
    a, b = (json.loads((d / "protocol.json").read_text())["networks"] for d in (ref, out))
    assert list(a) == list(b) and all(_strip(a[k]) == _strip(b[k]) for k in a)


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
    res = hand_made_result([99.0, 98.0, 97.0], [99.0, 99.0, 99.0], [50.0, 60.0, 70.0], [60.0, 70.0, 80.0])
    pdir = write_paper_csvs(tmp_path / "paper")
    text = experiments.format_tables(res, paper=True, paper_dir=pdir)
    assert "Table 4" in text and "Table 5" in text
    row4 = next(line for line in text.splitlines() if line.startswith("clean "))
    assert "98.00 [97.00-99.00]" in row4 and "99.00 [99.00-99.00]" in row4 and "11.11" in row4 and "22.22" in row4
    row5 = next(line for line in text.splitlines() if line.startswith("eps 0.1 "))
    assert "60.00 [50.00-70.00]" in row5 and "70.00 [60.00-80.00]" in row5 and "55.55" in row5 and "66.66" in row5
    assert "+10.00" in row5 and "0.0625" in text and "pooled FGSM" in text
    plain = experiments.format_tables(res, paper=False)
    assert "11.11" not in plain and "55.55" not in plain and "paper control" not in plain
    # CIFAR: Table 5's CSV calls the row "CIFAR-10", Table 4's "CIFAR-10-CNN"
    cif = hand_made_result([90.0] * 2, [90.0] * 2, [50.0] * 2, [50.0] * 2, dataset="cifar10", model="cifar_cnn")
    ctext = experiments.format_tables(cif, paper_dir=pdir)
    assert "33.33" in ctext and "44.44" in ctext and "77.77" in ctext and "88.88" in ctext


def test_the_tables_print_the_papers_numbers():
    """The shipped numbers against the paper's CSVs: tests/experiments/test_paper_tables.py."""
    text = experiments.format_tables(hand_made_result([99.0], [99.0], [80.0], [80.0]))
    assert "99.48" in text and "89.01" in text and "Soft Computing" in text      # no folder needed


def test_paper_experiment_names():
    assert experiments.paper_experiment_name("mnist", "dnn", True) == "MNIST-DNN-AUG"
    assert experiments.paper_experiment_name("cifar100", "cifar_cnn", False) == "CIFAR-100-CNN"
    assert experiments.paper_experiment_name("fashion-mnist", "cnn", False) is None


# ------------------------------------------------------------------------------------------ figures
def test_test_error_curves_median_and_band():
    res = hand_made_result([90.0, 80.0, 70.0], [95.0, 85.0, 60.0], [0.0] * 3, [0.0] * 3)
    for i, extra in enumerate((10.0, 30.0, 20.0)):
        for arm in ("control", "sgm:0.2"):
            res["networks"][f"run{i}/{arm}"]["history"].append({"test_error_pct": extra})
    fig = figures.test_error_curves(res)
    assert len(fig.axes) == 1
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    assert np.allclose(lines[0].get_ydata(), [20.0, 20.0])     # control: median(10, 20, 30), median(10, 30, 20)
    assert np.allclose(lines[1].get_ydata(), [15.0, 20.0])     # sgm: median(5, 15, 40)
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
def test_cli_end_to_end_on_real_mnist_then_tables_only(tmp_path, capsys):
    data_dir = require_real_data("mnist")
    pdir = write_paper_csvs(tmp_path / "paper")
    out = tmp_path / "proto"
    argv = ["mnist", "--model", "cnn", "--runs", "2", "--epochs", "2", "--limit", "64", "--eval-limit", "50",
            "--batch-size", "32", "--eps", "0.01,0.1", "--data-dir", str(data_dir), "--out", str(out),
            "--paper-dir", str(pdir), "--no-progress", "--figures", "--arms", "sgm:0.2,published"]
    rc = experiments.main(argv)
    text = capsys.readouterr().out
    assert rc == 0
    saved = json.loads((out / "protocol.json").read_text())
    assert len(saved["networks"]) == 6 and saved["networks"]["run0/control"]["n_train"] == 64
    assert saved["sessions"][0]["command"].startswith("python -m nanosgm.experiments mnist")
    assert "Table 4" in text and "55.55" in text and "published" in text
    assert "run1/published done" in text                      # one line per finished network
    for name in ("fig1-2_test_error.png", "fig3-4_adversarial_sgm_0.2.png", "fig5-6_input_updates_sgm_0.2.png"):
        assert (out / name).stat().st_size > 1000
    assert experiments.main(["mnist", "--model", "cnn", "--out", str(out), "--tables-only", "--paper-dir", str(pdir)]) == 0
    again = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith(("clean ", "eps "))]
    assert rows and rows == [line for line in again.splitlines() if line.startswith(("clean ", "eps "))]
    assert experiments.main(["--tables-only", "--out", str(out), "--paper-dir", str(pdir)]) == 0   # no dataset named
    bare = capsys.readouterr().out
    assert rows == [line for line in bare.splitlines() if line.startswith(("clean ", "eps "))]
    assert experiments.main(["cifar10", "--tables-only", "--out", str(out)]) == 1       # not the protocol's dataset
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the protocol in {out} is of mnist, not cifar10" in err


def test_cli_errors(capsys, tmp_path):
    assert experiments.main(["imagenet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: argument dataset: unknown dataset 'imagenet'") and err.count("\n") == 1
    for argv, message in ((["--eps", "0.1,abc"], "--eps"), (["--runs", "0"], "--runs"),
                          (["--model", "resnet"], "unknown model"), (["--input-lr", "0"], "two control"),
                          (["--arms", "sgm:zero"], "arm 'sgm:zero'"), (["--workers", "0"], "--workers")):
        assert experiments.main(["mnist"] + argv + ["--out", str(tmp_path / "x")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert experiments.main(["mnist", "--tables-only", "--out", str(tmp_path / "none")]) == 1
    assert "protocol.json" in capsys.readouterr().err
    (tmp_path / "a.txt").write_text("x")
    assert experiments.main(["--tables-only", "--out", str(tmp_path / "a.txt")]) == 1
    assert "is a file, not a protocol's folder" in capsys.readouterr().err
    assert experiments.main(["--tables-only", "--out", str(tmp_path / "none"), "--paper-dir", str(tmp_path / "n")]) == 1
    assert "--paper-dir" in capsys.readouterr().err                       # checked before the protocol is read
    for argv in ([], ["--runs", "2"], ["--tables-only"]):                 # no folder to read the dataset from
        assert experiments.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: the dataset is missing") and err.count("\n") == 1


def test_tables_only_figures_refuse_a_folder_where_a_figure_goes_in_one_line(tmp_path, capsys):
    import shutil
    shutil.copy(Path(__file__).resolve().parents[2] / "results" / "mnist-dnn" / "protocol.json", tmp_path)
    (tmp_path / "fig1-2_test_error.png").mkdir()
    assert experiments.main(["--tables-only", "--out", str(tmp_path), "--figures"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a folder has that name; move it away" in err
    (tmp_path / "fig1-2_test_error.png").rmdir()
    assert experiments.main(["--tables-only", "--out", str(tmp_path), "--figures"]) == 0
    assert (tmp_path / "fig1-2_test_error.png").stat().st_size > 1000


def results_tables_tool():
    from conftest import load_tool
    return load_tool("results_tables")


def test_results_tables_tool_quotes_every_measured_cell_beside_the_paper(tmp_path):
    tool = results_tables_tool()
    res = hand_made_result([99.0, 98.0], [99.5, 98.5], [80.0, 82.0], [85.0, 86.0], eps=(0.1, 0.2))
    (tmp_path / "protocol.json").write_text(json.dumps(res))
    text = tool.tables(tmp_path)
    assert "| clean (Table 4) | sgm:0.2 | 2 | 98.50 [98.00–99.00] | 99.00 [98.50–99.50] | +0.50 |" in text
    assert "99.48 / 99.49 / +0.01" in text and "84.16 / 89.01 / +4.85" in text and "61.10 / 66.93 / +5.83" in text
    assert text.count("| FGSM ε=") == 2
    assert "| FGSM accuracy rises at ε = 0.1 (Table 5) | sgm:0.2 | +4.85 | 2 |" in text and "**not decidable yet**" in text


def test_a_failing_network_is_named_and_the_finished_ones_are_kept(tmp_path, monkeypatch):
    from nanosgm.methods import loop as train
    from nanosgm.experiments.parallel import TaskFailed
    real_fit = network.fit

    def diverge_on_sgm(*a, **kw):
        if isinstance(kw["method"], SGM):
            raise train.TrainingDiverged("the loss became nan at epoch 1, batch 1")
        return real_fit(*a, **kw)
    monkeypatch.setattr(network, "fit", diverge_on_sgm)
    with pytest.raises(TaskFailed, match=r"run0/sgm:0.2: the loss became nan"):
        run(runs=1, out=tmp_path / "p")
    assert list(json.loads((tmp_path / "p" / "protocol.json").read_text())["networks"]) == ["run0/control"]


# ------------------------------------------------------------------------------------------ verdicts
def test_verdict_rules_at_their_boundaries():
    from nanosgm.experiments.verdicts import verdict_gain, verdict_no_harm
    D = 4.0
    assert verdict_gain([2.0] * 5, D)[0] == "confirmed"                  # median exactly half: confirmed
    assert verdict_gain([2.0, 2.0, 2.0, 2.0, 0.0], D)[0] == "not decidable"   # one pair without a gain
    assert verdict_gain([1.99] * 5, D)[0] == "refuted"                   # every pair short of half
    assert verdict_gain([-1.0, 0.0, 1.0, 1.5, 2.5], D)[0] == "not decidable"  # one pair reaches half
    assert verdict_gain([9.0] * 4, D)[0] == "not decidable yet"          # four pairs never decide
    assert verdict_no_harm([-0.1, -0.1, -0.1, -0.1, -0.1])[0] == "confirmed"
    assert verdict_no_harm([-0.2, -0.3, -0.2, -0.5, -0.11])[0] == "refuted"
    assert verdict_no_harm([-0.2, -0.3, 0.0, -0.5, -0.11])[0] == "not decidable"


def test_claims_judge_the_papers_cells_of_a_protocol():
    from nanosgm.experiments.verdicts import claims
    # five pairs: clean unchanged, FGSM eps=0.1 up by 5 in every pair, eps=0.01 is not a claimed gain (D=+0.20)
    res = hand_made_result([99.0] * 5, [99.0] * 5, [80.0, 81.0, 82.0, 83.0, 84.0], [85.0, 86.0, 87.0, 88.0, 89.0],
                           eps=(0.01, 0.1))
    rows = claims(res)
    assert [(r["claim"], r["verdict"]) for r in rows] == [
        ("clean accuracy is not lowered (Table 4)", "confirmed"), ("FGSM accuracy rises at ε = 0.1 (Table 5)", "confirmed")]
    assert rows[1]["paper_diff"] == 4.85 and rows[1]["median_diff"] == 5.0 and rows[1]["range"] == [5.0, 5.0]
    # the verdict's median is the tables' (Wilcoxon median_diff), float noise and all: 0.42 and 0.63 -> +0.525
    res = hand_made_result([99.0] * 2, [99.0] * 2, [82.33, 83.64], [82.75, 84.27], eps=(0.1,))
    block = experiments.summarize(res)["sgm:0.2"]["fgsm"][0.1]
    assert claims(res)[1]["median_diff"] == block["wilcoxon"]["median_diff"] == 0.525
    res = hand_made_result([99.0] * 3, [99.0] * 3, [80.0] * 3, [80.5] * 3, dataset="fashion")   # not in the paper
    assert claims(res) == []
    res = hand_made_result([99.0] * 5, [99.0] * 5, [80.0] * 5, [90.0] * 5, arm="fgsm-at:0.1")    # not SGM: no claim
    assert claims(res) == []


def test_claims_are_judged_under_each_fgsm_convention_the_records_carry():
    from nanosgm.experiments.verdicts import claims
    res = hand_made_result([99.0] * 5, [99.0] * 5, [80.0, 81.0, 82.0, 83.0, 84.0], [85.0, 86.0, 87.0, 88.0, 89.0],
                           eps=(0.1,))
    for key, r in res["networks"].items():          # the authors' FGSM: every SGM network loses 3 points
        r["results"]["fgsm_authors_pct"] = {repr(0.1): r["results"]["fgsm_pct"][repr(0.1)] - (8.0 if "sgm" in key else 0.0)}
    rows = claims(res)
    got = [(r["claim"], r["convention"], r["verdict"]) for r in rows]
    assert got == [("clean accuracy is not lowered (Table 4)", None, "confirmed"),
                   ("FGSM accuracy rises at ε = 0.1 (Table 5)", "inference", "confirmed"),
                   ("FGSM accuracy rises at ε = 0.1 (Table 5, the authors' FGSM)", "authors", "refuted")]
    assert rows[2]["median_diff"] == -3.0


def test_results_tables_tool_rewrites_the_marked_blocks_and_keeps_the_prose(tmp_path):
    tool = results_tables_tool()
    (tmp_path / "row").mkdir()
    res = hand_made_result([99.0, 98.0], [99.5, 98.5], [80.0, 82.0], [85.0, 86.0], eps=(0.1,))
    (tmp_path / "row" / "protocol.json").write_text(json.dumps(res))
    md = tmp_path / "README.md"
    md.write_text("# prose before\n<!-- results_tables: row -->\nstale table\n<!-- /results_tables -->\nprose after\n")
    assert tool.main(["--update", str(md)]) == 0
    text = md.read_text()
    assert text.startswith("# prose before\n<!-- results_tables: row -->\n### MNIST-CNN") and text.endswith(
        "\n<!-- /results_tables -->\nprose after\n")
    assert "stale table" not in text and tool.tables(tmp_path / "row") in text
    md.write_text("<!-- results_tables: row -->\n<!-- /results_tables -->\n")            # an empty block is filled too
    assert tool.main(["--update", str(md)]) == 0 and tool.tables(tmp_path / "row") in md.read_text()
    assert tool.main(["--update", str(md)]) == 0 and md.read_text().count("### MNIST-CNN") == 1   # idempotent
    md.write_text("no blocks here\n")
    assert tool.main(["--update", str(md)]) == 1


def test_results_tables_tool_sets_the_two_fgsm_conventions_side_by_side(tmp_path):
    tool = results_tables_tool()
    eps = (0.1, 0.2)
    res = hand_made_result([99.0] * 5, [99.1] * 5, [80.0] * 5, [84.0, 85.0, 86.0, 87.0, 88.0], eps=eps)
    for key, rec in res["networks"].items():        # the authors' FGSM: the control higher, SGM below it
        rec["results"]["fgsm_authors_pct"] = {repr(e): 90.0 if key.endswith("/control") else 85.0 for e in eps}
    (tmp_path / "row").mkdir()
    (tmp_path / "row" / "protocol.json").write_text(json.dumps(res))
    text = tool.conventions_tables(tmp_path / "row", "row")
    assert text.startswith("### MNIST-CNN (`row/`)")
    assert ("| FGSM ε=0.1 (Table 5) | sgm:0.2 | 5 | 84.16 / 89.01 / +4.85 | 80.00 [80.00–80.00] | "
            "86.00 [84.00–88.00] | +6.00 | 90.00 [90.00–90.00] | 85.00 [85.00–85.00] | -5.00 |") in text
    assert ("| clean (Table 4) | sgm:0.2 | 5 | 99.48 / 99.49 / +0.01 | 99.00 [99.00–99.00] | 99.10 [99.10–99.10] | "
            "+0.10 | the same (no attack) |") in text
    rule = "| sgm:0.2 | FGSM accuracy rises at ε = 0.1 (Table 5) |"
    assert f"{rule} inference FGSM | +4.85 | 5 | +6.00 [+4.00 to +8.00] | **confirmed** |" in text
    assert f"{rule} the authors' FGSM | +4.85 | 5 | -5.00 [-5.00 to -5.00] | **refuted** |" in text
    lines = text.splitlines()                       # the two conventions of one claim on adjacent lines
    assert lines.index(next(x for x in lines if x.startswith(f"{rule} the authors'"))) == \
        lines.index(next(x for x in lines if x.startswith(f"{rule} inference"))) + 1
    assert tool.conventions_tables(tmp_path / "aug", "aug") == "### `aug/`: pending (no protocol.json yet)"
    md = tmp_path / "README.md"                     # a conventions block beside a tables block: both rewritten
    md.write_text("<!-- results_tables: row -->\n<!-- /results_tables -->\nprose\n"
                  "<!-- results_conventions: row aug -->\nstale\n<!-- /results_conventions -->\nend\n")
    assert tool.main(["--update", str(md)]) == 0
    out = md.read_text()
    assert tool.tables(tmp_path / "row") in out and f"{text}\n\n### `aug/`: pending (no protocol.json yet)\n" in out
    assert "stale" not in out and out.endswith("<!-- /results_conventions -->\nend\n")
    res["networks"] = {k: r for k, r in res["networks"].items() if k.endswith("/control") or k < "run2"}
    for r in res["networks"].values():             # the inference FGSM only, two pairs: said, and not judged
        del r["results"]["fgsm_authors_pct"]
    (tmp_path / "row" / "protocol.json").write_text(json.dumps(res))
    text = tool.conventions_tables(tmp_path / "row", "row")
    assert "| 84.50 [84.00–85.00] | +4.50 | not measured |  |  |" in text
    assert "the authors' FGSM |" not in text.split("| arm | claim |")[1] and "**not decidable yet**" in text


# ------------------------------------------------------------------------------- tools/arm_cost.py
def test_arm_cost_trains_every_arm_each_round_and_divides_by_the_same_rounds_control(monkeypatch):
    from conftest import load_tool
    tool = load_tool("arm_cost")
    arms = experiments.parse_arms("sgm:0.2,fgsm-at:0.1,pgd-at:0.1:2")
    seen = []
    real = tool.epoch_seconds
    monkeypatch.setattr(tool, "epoch_seconds", lambda spec: seen.append(spec) or real(spec))
    times = tool.measure(base(epochs=1), arms, rounds=2)
    assert [s.method for s in seen] == ["control", "sgm:0.2", "fgsm-at:0.1", "pgd-at:0.1:2"] * 2
    assert all(s.epochs == 1 and s.snapshot_rows == 0 for s in seen)
    assert list(times) == ["control", "sgm:0.2", "fgsm-at:0.1", "pgd-at:0.1:2"]
    assert all(len(ts) == 2 and min(ts) >= 0 for ts in times.values())      # fit rounds seconds to 0.01
    hand = {"control": [2.0, 4.0], "fgsm-at:0.1": [4.0, 12.0]}         # ratios 2 and 3 -> median 2.5
    rows = tool.table(hand, steps=2).splitlines()
    assert rows[2] == "| control | 1.500 [1.000–2.000] | 1.00 [1.00–1.00] |"
    assert rows[3] == "| fgsm-at:0.1 | 4.000 [2.000–6.000] | 2.50 [2.00–3.00] |"
    assert [tool.steps_per_epoch(n, 128) for n in (2560, 300, 257)] == [20, 3, 2]   # 257: the last sample sits out


@pytest.mark.parametrize("args, why", [
    (["--batch-size", "0"], "--batch-size must be a whole number >= 1, got '0'"),
    (["--batch-size", "-1"], "--batch-size must be a whole number >= 1, got '-1'"),
    (["--images", "100"], "--images 100 must hold two batches of --batch-size 128 or more"),
    (["--model", "bogus"], "--model: unknown model 'bogus'; choose one of"),
    (["--arms", "sgm:zero"], "--arms: "),
    (["--dataset", "bogus"], "argument --dataset: unknown dataset")])
def test_arm_cost_refuses_a_bad_flag_in_one_line_before_training(monkeypatch, capsys, args, why):
    from conftest import load_tool
    tool = load_tool("arm_cost")
    monkeypatch.setattr(tool, "measure", lambda *a, **k: pytest.fail("it started measuring"))
    flags = {"--arms": "sgm:0.2"} | dict(zip(args[::2], args[1::2]))
    code = tool.main([x for kv in flags.items() for x in kv])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and why in err and err.count("\n") == 1


def test_tables_give_fgsm_both_ways_and_the_last_epoch():
    result = run(arms="sgm:0.2", runs=2, spec=base(epochs=3))
    s = result["summary"]["sgm:0.2"]
    assert set(s["fgsm_authors"]) == set(s["fgsm"]) == {0.01, 0.1}
    assert s["last_epoch"]["fgsm_authors"] and s["last_epoch"]["clean"]["arm"]["per_run"]
    text = experiments.format_tables(result, paper=False)
    assert "Table 5, the authors' evaluation" in text and "Table 5, last epoch" in text
    authors = [r["results"]["fgsm_authors_pct"]["0.1"] for k, r in sorted(result["networks"].items())
               if k.endswith("/sgm:0.2")]
    assert s["fgsm_authors"][0.1]["arm"]["per_run"] == authors
