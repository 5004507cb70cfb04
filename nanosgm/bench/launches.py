"""``python -m nanosgm.bench --launches``: what one step of each bench column asks of a GPU, counted on the CPU.

For each network of ``--models`` (float32, batch ``--batch-size``, seed ``--seed``) the bench's own step
functions (:func:`nanosgm.bench.cells.nanosgm_cells`) run on the CPU stand-in for CuPy
(:mod:`nanosgm.standin`); after one untimed warm-up step (which allocates the optimizer slots and the
layers' buffers, as the first step of training does), one more step of each column runs inside
:func:`nanosgm.standin.counting`:

    train (Adam), train (WAME)   forward(training=True) + softmax cross-entropy + backward + optimizer step
    infer                        forward(training=False)
    FGSM                         attacks.fgsm at eps 0.1, the labels' bounds given (found on the host once)

The table gives, per step, the kernel launches, the device -> host reads (each one a synchronisation of
the GPU) and the host -> device copies, counted as :mod:`nanosgm.standin` says: one launch per array
operation (CuPy may launch more for a few, fewer where kernels are fused). No GPU is needed and nothing
is timed; ``--backend`` is ignored (the stand-in is the backend, and the previous one is restored).
"""
from __future__ import annotations

import argparse

from .. import backend, standin
from ..plumbing.files import write_json_atomic
from .cells import COLUMNS, grid, make_batch, nanosgm_cells

__all__ = ["count_network", "format_launches", "run"]

MEASURES = ("launches", "host_reads", "uploads")
STEPS = {"train_adam": "train (Adam)", "train_wame": "train (WAME)", "infer": "infer", "fgsm": "FGSM"}


def count_network(name: str, args: argparse.Namespace) -> dict:
    """{column: {"launches", "host_reads", "uploads": ints, "reads": {kind: count}}} for one step of each
    column of network ``name``, on the stand-in (which must be the active backend); ``args`` gives
    ``batch_size`` and ``seed``."""
    model, x, y, _, _ = make_batch(name, args.batch_size, args.seed)
    counts = {}
    for column, step in nanosgm_cells(model, x, y).items():
        step()                                   # warm-up: optimizer slots, buffers
        with standin.counting() as c:
            step()
        counts[column] = {"launches": c.launches, "host_reads": c.host_reads, "uploads": c.uploads,
                          "reads": dict(c.reads)}
    return counts


def format_launches(results: dict) -> str:
    """The table: one row per network and column (``train (Adam)`` ...), its launches, host reads, uploads."""
    rows = []
    for name, counts in results.items():
        for column in COLUMNS:
            rows.append([name, STEPS.get(column, column)] + [str(counts[column][m]) for m in MEASURES])
    return grid(["model", "step", "launches", "host reads", "uploads"], rows, left=2)


def run(args: argparse.Namespace, names: list) -> int:
    """``--launches``: count every network of ``names`` on the stand-in, print the table (and ``--json``)."""
    before = backend.name()
    backend.use("standin")
    try:
        results = {name: count_network(name, args) for name in names}
    finally:
        backend.use(before)
    print(f"nanosgm bench --launches | CPU stand-in for CuPy (nanosgm.standin) | batch {args.batch_size} | "
          f"float32 | one step after one warm-up step")
    print(format_launches(results))
    print("(launches: array operations that would each launch at least one CUDA kernel; host reads: device -> "
          "host reads, each a GPU synchronisation (float(), .item(), .get(), truth values); uploads: host -> "
          "device copies; see nanosgm/standin.py for what is and is not modelled)")
    if args.json:
        write_json_atomic(args.json, {"batch_size": args.batch_size, "backend": "standin", "results": results})
        print(f"wrote {args.json}")
    return 0
