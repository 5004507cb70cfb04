"""nanosgm.bench: the torch translation is the same network, and the CLI runs end to end.

No timing assertions: speed is measured by running the bench, never asserted.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nanosgm import attacks, backend, models
from nanosgm.bench import bench
from nanosgm.layers import BatchNorm, Layer, Sequential

TINY = ["--models", "cnn", "--seconds", "0.01", "--batch-size", "4", "--warmup", "1"]


def _randomise_bn(model, rng):
    """Non-trivial gamma, beta and running statistics, so the BatchNorm translation is really tested."""
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            f = layer.num_features
            layer.params["gamma"][...] = rng.uniform(0.5, 1.5, f)
            layer.params["beta"][...] = rng.standard_normal(f) * 0.1
            layer.buffers["running_mean"][...] = rng.standard_normal(f) * 0.1
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, f)


@pytest.mark.parametrize("name", ["dnn", "cnn", "cifar_cnn"])
def test_torch_translation_computes_the_same_logits(name, numpy_backend):
    torch = pytest.importorskip("torch")
    backend.seed(1)
    model = models.build(name, dtype="float64")
    rng = np.random.default_rng(2)
    _randomise_bn(model, rng)
    shape = bench.INPUT_SHAPES[name]
    tmodel = bench.to_torch(model, shape)
    assert next(tmodel.parameters()).dtype == torch.float64
    # the same architecture: one torch parameter tensor per nanosgm parameter, same sizes
    ours = sorted(int(p.size) for _, p, _ in model.parameters())
    theirs = sorted(int(p.numel()) for p in tmodel.parameters())
    assert ours == theirs
    kinds = [type(m).__name__ for m in tmodel]
    if name == "cnn":
        assert kinds[:4] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"] and "BatchNorm1d" in kinds
        assert kinds.count("Dropout") == 1
    if name == "cifar_cnn":
        assert kinds[-2:] == ["AdaptiveAvgPool2d", "Flatten"] and "BatchNorm1d" not in kinds
        strides = [m.stride for m in tmodel if type(m).__name__ == "Conv2d"]
        assert strides.count((2, 2)) == 2
    if name == "dnn":
        assert kinds.count("BatchNorm1d") == 5 and kinds.count("Linear") == 6

    x = rng.random((3,) + shape)
    logits = model.forward(x, training=False)
    tmodel.eval()
    with torch.no_grad():
        tlogits = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, tlogits, rtol=1e-9, atol=1e-11)


def test_float32_translation_agrees_to_float32_precision(numpy_backend):
    torch = pytest.importorskip("torch")
    backend.seed(4)
    model = models.build("cnn")                       # float32, as the bench runs it
    _randomise_bn(model, np.random.default_rng(5))
    tmodel = bench.to_torch(model, models.MNIST_SHAPE).eval()
    assert next(tmodel.parameters()).dtype == torch.float32
    x = np.random.default_rng(6).random((4,) + models.MNIST_SHAPE, dtype=np.float32)
    with torch.no_grad():
        t = tmodel(torch.from_numpy(x)).numpy()
    y = model.forward(x, training=False)
    np.testing.assert_allclose(y, t, rtol=1e-4, atol=1e-4 * np.abs(t).max())


def test_torch_cells_do_what_the_nanosgm_cells_do(numpy_backend):
    """The torch FGSM cell gives nanosgm's FGSM example; the training cell fills dE/dX and moves the weights."""
    torch = pytest.importorskip("torch")
    backend.seed(7)
    model = models.build("cnn", dtype="float64")
    _randomise_bn(model, np.random.default_rng(8))
    tmodel = bench.to_torch(model, models.MNIST_SHAPE)
    g = np.random.default_rng(9)
    x = g.random((5,) + models.MNIST_SHAPE)
    y = g.integers(0, 10, 5)
    cells = bench.torch_cells(tmodel, torch.from_numpy(x), torch.from_numpy(y))
    assert set(cells) == set(bench.TORCH_COLUMNS)
    x_adv = cells["fgsm"]().detach().numpy()
    np.testing.assert_array_equal(x_adv, attacks.fgsm(model, x, y, bench.FGSM_EPS))
    w0 = tmodel[0].weight.detach().clone()
    dx = cells["train_adam"]()
    assert dx is not None and tuple(dx.shape) == x.shape and float(dx.abs().sum()) > 0
    assert not torch.equal(w0, tmodel[0].weight.detach())

    ours = bench.nanosgm_cells(model, x, y)
    assert list(ours) == list(bench.COLUMNS)
    before = model.state_dict()
    ours["infer"]()
    ours["fgsm"]()
    for k, v in model.state_dict().items():           # inference cells change nothing
        np.testing.assert_array_equal(v, before[k])
    ours["train_wame"]()
    assert any(not np.array_equal(v, before[k]) for k, v in model.state_dict().items())


def test_unknown_layer_is_a_clear_error(numpy_backend):
    pytest.importorskip("torch")

    class Odd(Layer):
        def forward(self, x, training=True):
            return x

        def backward(self, dy):
            return dy

    with pytest.raises(TypeError, match="cannot translate Odd"):
        bench.to_torch(Sequential([Odd()]), (3,))


def test_one_translation_shared_by_bench_and_tests():
    """bench.to_torch is a re-export of nanosgm.bench.torch_bridge.to_torch, not a second copy."""
    from nanosgm.bench import torch_bridge
    assert bench.to_torch is torch_bridge.to_torch and bench.TorchMissing is torch_bridge.TorchMissing


def test_measure_counts_steps_and_calls_sync():
    calls = {"fn": 0, "sync": 0}
    fn = lambda: calls.__setitem__("fn", calls["fn"] + 1)            # noqa: E731
    sync = lambda: calls.__setitem__("sync", calls["sync"] + 1)      # noqa: E731
    m = bench.measure(fn, 0.02, warmup=2, sync=sync)                 # fast calls: the full warm-up
    assert m["warmup"] == 2 and m["reps"] >= 1 and calls["fn"] == calls["sync"] == 2 + m["reps"]
    assert 0 <= m["min_s"] <= m["median_s"]
    calls.update(fn=0, sync=0)
    m = bench.measure(fn, 0.0, warmup=2, sync=sync)                  # a warm-up over budget stops after one
    assert m["warmup"] == 1 and m["reps"] == 1 and calls == {"fn": 2, "sync": 2}


def test_cli_tiny_run_prints_the_table(capsys, numpy_backend):
    assert bench.main(TINY) == 0
    out = capsys.readouterr().out
    for word in ("load average", "backend numpy", "numpy " + np.__version__, "threads", "batch 4", "GFLOP/s",
                 "model", "train img/s (Adam)", "train img/s (WAME)", "infer img/s", "FGSM img/s"):
        assert word in out, word
    row = [line for line in out.splitlines() if line.startswith("cnn ") and "| nanosgm " in line]
    assert len(row) == 1 + 4                      # the throughput table, then one details row per column
    assert len(row[0].split("|")) == 6 and all(len(r.split("|")) == 10 for r in row[1:])
    for word in ("median ms", "min ms", "max ms", "IQR/median", "GEMM GFLOP/s", "of peak", "load average",
                 "at start", "at end"):
        assert word in out, word


def test_cli_json(tmp_path, capsys, numpy_backend):
    path = tmp_path / "sub" / "bench.json"
    assert bench.main(TINY + ["--json", str(path)]) == 0
    d = json.loads(path.read_text())
    assert set(d) == {"meta", "columns", "results"}
    assert d["columns"] == list(bench.COLUMNS)
    for key in ("backend", "device", "numpy", "threads", "batch_size", "seconds", "blas_gflops", "wall_s",
                "gemm_peak_gflops", "load_avg_1min_at_start", "load_avg_1min_at_end", "warnings"):
        assert key in d["meta"], key
    assert d["meta"]["batch_size"] == 4 and d["meta"]["backend"] == "numpy"
    r = d["results"]["cnn"]
    assert set(r["nanosgm"]) == set(bench.COLUMNS)
    for col, cell in r["nanosgm"].items():
        assert cell["img_per_s"] > 0 and cell["reps"] >= 1 and cell["median_s"] > 0
        assert cell["min_s"] <= cell["q1_s"] <= cell["median_s"] <= cell["q3_s"] <= cell["max_s"]
        assert cell["gemm_gflops"] == pytest.approx(r["gemm_gflop_per_step"][col] / cell["median_s"])
    assert r["gemm_gflop_per_step"]["train_adam"] == pytest.approx(3 * r["gemm_gflop_per_step"]["infer"])
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]     # no temporary file left


def test_cli_compare_torch_tiny(capsys, numpy_backend, tmp_path):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    path = tmp_path / "b.json"
    assert bench.main(TINY + ["--compare-torch", "--threads", "1", "--json", str(path)]) == 0
    assert torch.get_num_threads() == threads           # restored
    out = capsys.readouterr().out
    assert "torch (cpu)" in out and "nanosgm/torch" in out and "torch threads 1" in out
    r = json.loads(path.read_text())["results"]["cnn"]
    assert set(r["torch"]) == set(bench.TORCH_COLUMNS) == set(r["ratio"])
    assert all(v > 0 for v in r["ratio"].values())


def test_threads_flag_also_sets_nanosgms_own_pool_and_restores_it(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "_run", lambda *a, **k: seen.append(os.environ.get("NANOSGM_THREADS")) or 0)
    monkeypatch.setenv("NANOSGM_THREADS", "5")
    assert bench.main(TINY + ["--threads", "1"]) == 0
    assert seen == ["1"] and os.environ["NANOSGM_THREADS"] == "5"


def test_unknown_model_is_a_clear_error(capsys):
    assert bench.main(["--models", "cnn,resnet", "--seconds", "0"]) != 0
    err = capsys.readouterr().err
    assert "unknown model 'resnet'" in err and "cifar_cnn" in err


def test_bad_batch_size_is_a_clear_error(capsys):
    assert bench.main(["--models", "cnn", "--batch-size", "1"]) != 0
    assert "batch-size" in capsys.readouterr().err


def test_compare_torch_without_torch(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)      # `import torch` now raises ImportError
    assert bench.main(TINY + ["--compare-torch"]) != 0
    err = capsys.readouterr().err
    assert "--compare-torch needs PyTorch" in err and "pip install" in err


def test_importing_nanosgm_bench_does_not_import_torch():
    code = "import sys, nanosgm, nanosgm.bench; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_measure_pair_alternates_blocks_and_times_each_side():
    calls = []
    a = lambda: calls.append("a")                                       # noqa: E731
    b = lambda: calls.append("b")                                       # noqa: E731
    ma, mb = bench.measure_pair(a, b, 0.0, warmup=1, sync_a=lambda: None, sync_b=lambda: None, rounds=3)
    runs = "".join(calls)
    # three blocks per side, in the order a b a b a b, each an untimed step then at least one timed one
    assert [block[0] for block in __import__("itertools").groupby(runs)] == list("ababab")
    assert ma["reps"] == runs.count("a") - 3 and mb["reps"] == runs.count("b") - 3
    assert ma["median_s"] >= 0 and "times" not in ma


# ----------------------------------------------------------------------------------------------- honesty
def cell(median, lo=None, hi=None, q1=None, q3=None, reps=20):
    lo, hi = median if lo is None else lo, median if hi is None else hi
    return {"median_s": median, "min_s": lo, "max_s": hi, "q1_s": median if q1 is None else q1,
            "q3_s": median if q3 is None else q3, "reps": reps, "warmup": 1}


def test_summary_of_step_times():
    m = bench.summary([0.4, 0.1, 0.2, 0.3, 0.5], warmup=2)
    assert (m["min_s"], m["q1_s"], m["median_s"], m["q3_s"], m["max_s"]) == (0.1, 0.2, 0.3, 0.4, 0.5)
    assert m["reps"] == 5 and m["warmup"] == 2
    one = bench.summary([0.7], warmup=0)
    assert one["q1_s"] == one["q3_s"] == one["median_s"] == 0.7


def test_cell_warnings_flag_spread_and_few_steps_only():
    assert bench.cell_warnings("x", cell(1.0, 0.9, 3.0, 0.95, 1.05)) == []    # one slow outlier is no spread
    (w,) = bench.cell_warnings("x", cell(1.0, 0.5, 2.0, 0.8, 1.3))
    assert "x:" in w and "50%" in w
    (w,) = bench.cell_warnings("x", cell(1.0, reps=3))
    assert "only 3 timed step" in w and "--seconds" in w


def test_ratio_warnings_when_median_and_best_steps_disagree():
    steady_a, steady_b = cell(1.0, 0.95), cell(2.0, 1.9)
    assert bench.ratio_warnings("cnn infer", steady_a, steady_b) == []      # 2.00x both ways
    ws = bench.ratio_warnings("cnn infer", cell(1.0, 0.5), cell(2.0, 1.9))   # 2.00x by medians, 3.80x by minima
    assert len(ws) == 1 and "2.00x from median steps but 3.80x" in ws[0]


def test_load_warnings_before_and_beyond_the_bench_threads():
    assert bench.load_warnings(0.1, 2.2, cpus=4, threads=2) == []        # after: the bench's own 2 threads
    (w,) = bench.load_warnings(1.5, None, cpus=4, threads=2)
    assert "before the run" in w and "1.50" in w
    (w,) = bench.load_warnings(None, 4.0, cpus=4, threads=2)
    assert "after the run" in w and "2 thread" in w
    assert bench.load_warnings(None, None, cpus=4, threads=2) == []


def _results(ratio_warning):
    m = {**cell(0.01, 0.009, 0.02), "img_per_s": 1000.0, "gemm_gflops": 45.0}
    t = {**cell(0.02, 0.019, 0.03), "img_per_s": 500.0, "gemm_gflops": 22.5}
    return {"cnn": {"nanosgm": {c: dict(m) for c in bench.COLUMNS}, "torch": {c: dict(t) for c in bench.TORCH_COLUMNS},
                    "torch_device": "cpu", "ratio": {c: 2.0 for c in bench.TORCH_COLUMNS},
                    "ratio_warnings": {c: (["noisy"] if ratio_warning and c == "infer" else []) for c in bench.TORCH_COLUMNS}}}


def test_table_marks_only_the_unreliable_ratio():
    ratio_row = [line for line in bench.format_table(_results(True), True).splitlines() if "nanosgm/torch" in line]
    cells = [c.strip() for c in ratio_row[0].split("|")]
    assert cells[2:] == ["2.00x", "-", "2.00x?", "2.00x"]
    assert "?" not in bench.format_table(_results(False), True)


def test_details_give_times_and_share_of_the_gemm_peak():
    text = bench.format_details(_results(False), peak_gflops=90.0)
    rows = [[c.strip() for c in line.split("|")] for line in text.splitlines()[2:]]
    assert len(rows) == len(bench.COLUMNS) + len(bench.TORCH_COLUMNS)
    assert rows[0] == ["cnn", "nanosgm", "train_adam", "10.00", "9.00", "20.00", "0%", "20", "45.0", "50%"]
    assert rows[-1][1] == "torch" and rows[-1][-1] == "25%"
    assert bench.format_details(_results(False), None).splitlines()[2].endswith("-")


def test_help_gives_every_default():
    """Every option that takes a value says its default, once, in words (not argparse's "(default: None)")."""
    p = bench.parser()
    for action in p._actions:
        if action.nargs != 0 and action.dest != "json":     # not --help, an on/off flag, or the optional --json
            assert action.help.count("(default") == 1, action.dest
    text = p.format_help()
    assert "(default 128;" in text and "(default 3)" in text and "(default: None)" not in text


def test_profile_prints_per_layer_times(capsys, numpy_backend, tmp_path):
    path = tmp_path / "p.json"
    assert bench.main(["--models", "cnn", "--profile", "--batch-size", "4", "--warmup", "0", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    for word in ("Conv2D(1, 64", "Dense(1024, 10)", "BatchNorm", "fwd ms", "bwd ms", "forward + backward",
                 "adam step", "wame step", "GEMM peak"):
        assert word in out, word
    assert "train img/s" not in out                                     # the profile replaces the table
    d = json.loads(path.read_text())
    assert len(d["rows"]) == 14 + 1 and set(d["optimizer_steps_s"]) == {"adam step", "wame step"}
    assert all(r["fwd_s"] >= 0 and r["bwd_s"] >= 0 for r in d["rows"])
