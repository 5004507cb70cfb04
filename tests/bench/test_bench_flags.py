"""nanosgm.bench checks its numbers where they are parsed: `--seconds nan` looped forever (no step time is ever
>= NaN), `--threads 0` silently meant every core. Each bad value is one line `error: ...` and nothing runs."""
import pytest

from nanosgm.bench import bench


@pytest.mark.parametrize("flags, message", [
    (["--seconds", "nan"], "--seconds must be a finite number >= 0, got 'nan'"),
    (["--seconds", "inf"], "--seconds must be a finite number >= 0, got 'inf'"),
    (["--seconds", "-1"], "--seconds must be a finite number >= 0"),
    (["--warmup", "-1"], "--warmup must be a whole number >= 0, got '-1'"),
    (["--warmup", "1.5"], "--warmup must be a whole number >= 0"),
    (["--batch-size", "1"], "--batch-size must be a whole number >= 2, got '1'"),
    (["--batch-size", "nan"], "--batch-size must be a whole number >= 2"),
    (["--threads", "0"], "--threads must be a whole number >= 1, got '0'"),
    (["--threads", "-2"], "--threads must be a whole number >= 1"),
    (["--seed", "-1"], "--seed must be a whole number >= 0"),
])
def test_a_bad_number_is_one_line_and_nothing_runs(monkeypatch, capsys, flags, message):
    monkeypatch.setattr(bench, "_run", lambda *a, **k: pytest.fail("the bench ran"))
    monkeypatch.setattr(bench, "_profile", lambda *a, **k: pytest.fail("the bench ran"))
    assert bench.main(["--models", "dnn"] + flags) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_good_numbers_still_run(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "_run", lambda args, names, threads, *a: seen.append((args.seconds, args.warmup,
                                                                                       args.batch_size, threads)) or 0)
    assert bench.main(["--models", "dnn", "--seconds", "0", "--warmup", "0", "--batch-size", "2", "--threads", "1"]) == 0
    assert seen == [(0.0, 0, 2, 1)]


def test_the_torch_comparison_runs_in_full_float32_precision():
    """TF32 off for matrix products and cuDNN: the GPU comparison is float32 against float32."""
    torch = pytest.importorskip("torch")
    from nanosgm.bench import cells
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        assert cells.import_full_precision() is torch
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
