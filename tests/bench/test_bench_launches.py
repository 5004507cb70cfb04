"""``python -m nanosgm.bench --launches``: per step of each bench column, the kernel launches, host reads and
uploads counted on the CPU stand-in for CuPy, as a table (and JSON); the active backend is left as it was."""
import json

from nanosgm import backend
from nanosgm.bench import bench

ROWS = ["train (Adam)", "train (WAME)", "infer", "FGSM"]


def test_launches_table_for_the_dnn(capsys, tmp_path, numpy_backend):
    out = tmp_path / "launches.json"
    assert bench.main(["--launches", "--models", "dnn", "--batch-size", "2", "--json", str(out)]) == 0
    assert backend.name() == "numpy"
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("model"))
    assert [c.strip() for c in lines[head].split("|")] == ["model", "step", "launches", "host reads", "uploads"]
    rows = [[c.strip() for c in line.split("|")] for line in lines[head + 2:head + 2 + len(ROWS)]]
    assert [r[:2] for r in rows] == [["dnn", step] for step in ROWS]
    for r in rows:
        launches, reads, uploads = (int(v) for v in r[2:])     # whole numbers, as printed
        assert launches > 0 and reads >= 0 and uploads >= 0, r
    counts = json.loads(out.read_text())["results"]["dnn"]
    assert [[str(counts[c][m]) for m in ("launches", "host_reads", "uploads")]
            for c in ("train_adam", "train_wame", "infer", "fgsm")] == [r[2:] for r in rows]
    assert counts["train_adam"]["launches"] > counts["infer"]["launches"]    # forward + backward + step > forward


def test_an_fgsm_step_reads_back_the_inputs_range_only(numpy_backend):
    """The bench's FGSM is given the labels' bounds found on the host (as evaluate finds them): its one
    read is the inputs' min and max, which fgsm checks against the clip range before it attacks."""
    import argparse
    from nanosgm.bench.launches import count_network
    backend.use("standin")
    try:
        counts = count_network("dnn", argparse.Namespace(batch_size=16, seed=0))
    finally:
        backend.use("numpy")
    assert counts["fgsm"]["host_reads"] == 1 and counts["fgsm"]["reads"] == {"tolist": 1}
