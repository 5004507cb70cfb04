"""Every number stays the same: a tiny seven-arm protocol gives, record for record, what the committed
fixture holds (initial and final weight digests, per-epoch losses and errors, accuracies).

The fixture was written by the code before the package was rearranged (commit 279139a) and must only
ever be rewritten on purpose, when a change is meant to alter the numbers:

    NANOSGM_DATA=... python tests/experiments/test_records_unchanged.py --write

Float32 results depend on the CPU kernels (OpenBLAS picks AVX-512 ones where it can; NumPy's exp and log
too) and on the BLAS thread count, so the protocol runs in a new process under
``nanosgm.plumbing.blas.REFERENCE_NUMERICS`` (OpenBLAS's Haswell kernels, NumPy's AVX2 loops) with two
BLAS threads: the same numbers on every x86-64 machine with AVX2.
"""
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_protocol.json"
ARMS = "sgm:0.2,sgm:0.2:per-sample,published,fgsm-at:0.1,fgsm-rs:0.1,pgd-at:0.1:7"
SETTINGS = dict(dataset="mnist", model="cnn", epochs=2, limit=500, eval_limit=200, pgd=50)


def file_digest(path) -> str:
    """sha256 of every array of a saved model, in name order (the same rule as weights_digest)."""
    h = hashlib.sha256()
    with np.load(path, allow_pickle=False) as f:
        for k in sorted(f.files):
            h.update(k.encode())
            h.update(np.ascontiguousarray(f[k]).tobytes())
    return h.hexdigest()


def summary(out) -> dict:
    """What must not change, per network of the protocol in folder ``out``."""
    result = json.loads((Path(out) / "protocol.json").read_text())
    nets = {}
    for key, r in result["networks"].items():
        slug = key.split("/", 1)[1].replace(":", "_")
        nets[key] = {"init_sha256": r["init_sha256"],
                     "final_sha256": file_digest(Path(out) / "models" / f"run0-{slug}.npz"),
                     "history": [{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]],
                     "best_epoch": r["best_epoch"],
                     "results": {k: r["results"][k] for k in ("clean_pct", "fgsm_pct", "pgd_images", "pgd_steps",
                                                               "pgd_pct", "fgsm_pgd_images_pct")}}
    return {"arms": result["arms"], "networks": nets}


def run_tiny_protocol(out) -> None:
    """The protocol, in a new process under the reference numerics (module docstring)."""
    from nanosgm.plumbing.blas import REFERENCE_NUMERICS
    argv = [sys.executable, "-m", "nanosgm.experiments", "mnist", "--runs", "1", "--arms", ARMS, "--threads", "2",
            "--out", str(out), "--no-progress"] + [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()
                                                  if k != "dataset"]
    subprocess.run(argv, env={**os.environ, **REFERENCE_NUMERICS}, check=True, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the reference numerics are x86-64 (AVX2) kernels")
def test_a_tiny_seven_arm_protocol_gives_the_fixtures_records(mnist_real, tmp_path):
    expected = json.loads(FIXTURE.read_text())
    run_tiny_protocol(tmp_path / "tiny")
    record = json.loads((tmp_path / "tiny" / "protocol.json").read_text())["networks"]["run0/control"]
    assert record["versions"]["blas_kernels"] in ("Haswell", None) and "X86_V4" not in record["versions"]["numpy_simd"]
    got = summary(tmp_path / "tiny")
    assert got["arms"] == expected["arms"]
    for key, want in expected["networks"].items():
        for part in want:
            assert got["networks"][key][part] == want[part], f"{key}: {part} changed"


if __name__ == "__main__":
    if sys.argv[1:] not in (["--write"], ["--from", sys.argv[-1]]):
        sys.exit("usage: python tests/experiments/test_records_unchanged.py --write | --from PROTOCOL_FOLDER")
    if sys.argv[1] == "--write":
        import tempfile
        folder = tempfile.mkdtemp()
        run_tiny_protocol(folder)
    else:
        folder = sys.argv[2]
    FIXTURE.write_text(json.dumps(summary(folder), indent=1) + "\n")
    print(f"wrote {FIXTURE}")
