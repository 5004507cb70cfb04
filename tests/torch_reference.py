"""The accuracy oracle: train a paper network in PyTorch exactly as ``python -m nanosgm.train`` sets it up.

    python tests/torch_reference.py mnist --model dnn --epochs 1 [--val-size 0] [--seed 0]

Same data and split (``nanosgm.experiments.recipe.load_data``), the same initial weights (nanosgm builds the model
after ``backend.seed(seed)``, ``nanosgm.bench.torch_bridge.to_torch`` copies it), the same mini-batch order (the
permutation ``fit`` draws for each epoch), batch 128, Adam at 1e-3 with the authors' schedule scaled to the
run (as the CLI does); dropout masks are torch's own. It prints the clean test accuracy of the last
epoch, to set nanosgm's one-epoch figures beside what PyTorch reaches in the same setting. Compare with
``python -m nanosgm.train mnist --model dnn --epochs 1 --optimizer adam`` (same seed): the two differ only
by the dropout masks and float32 rounding. tests/test_torch_oracle.py checks that the computations agree.

A script, not a test module (pytest does not collect it); torch is a test dependency only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # run from a checkout without installing

from nanosgm import backend, models  # noqa: E402
from nanosgm.bench.bench import INPUT_SHAPES  # noqa: E402
from nanosgm.optim.schedules import paper_schedule  # noqa: E402
from nanosgm.bench.torch_bridge import to_torch  # noqa: E402
from nanosgm.experiments.recipe import build_model, load_data  # noqa: E402
from nanosgm.methods.loop import epoch_seed  # noqa: E402


def train_reference(dataset="mnist", model_name="dnn", *, epochs=1, seed=0, val_size=None, limit=None,
                    batch_size=128, lr=1e-3, threads=None, data_dir=None):
    """Train in torch as described above; returns (test accuracy, seconds of training)."""
    import torch
    F = torch.nn.functional
    if threads:
        torch.set_num_threads(threads)
    ds, _ = load_data(dataset, data_dir=data_dir, limit=limit, val_size=val_size, progress=False)
    backend.seed(seed)
    model = build_model(model_name, ds)
    net = to_torch(model, INPUT_SHAPES[models.ALIASES.get(model_name, model_name)])
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = paper_schedule(epochs)
    X, y = ds.X_train, ds.y_train.astype(np.int64)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr * schedule.lr_at(epoch) / schedule.lr_at(0)
        net.train()
        order = np.random.default_rng(epoch_seed(seed, epoch, 1)).permutation(len(X))
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(net(torch.from_numpy(X[idx])), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    net.eval()
    with torch.no_grad():
        pred = np.concatenate([net(torch.from_numpy(ds.X_test[i:i + 1000])).argmax(1).numpy()
                               for i in range(0, len(ds.X_test), 1000)])
    return float((pred == ds.y_test).mean()), seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tests/torch_reference.py", description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", nargs="?", default="mnist", help="as nanosgm.train: mnist (default), fashion-mnist, "
                   "cifar10, cifar100")
    p.add_argument("--model", default="dnn", help="dnn (Table 1, default), cnn (Table 2) or cifar_cnn (Table 3)")
    p.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    p.add_argument("--seed", type=int, default=0, help="the nanosgm.train seed to mirror: initial weights and batch "
                   "order (default 0)")
    p.add_argument("--val-size", type=int, default=None, help="as nanosgm.train (0: all official training images)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--data-dir", default=None, help="as nanosgm.train (else NANOSGM_DATA, the cache, ...)")
    a = p.parse_args(argv)
    acc, seconds = train_reference(a.dataset, a.model, epochs=a.epochs, seed=a.seed, val_size=a.val_size,
                                   limit=a.limit, threads=a.threads, data_dir=a.data_dir)
    print(f"torch reference: {a.dataset} {a.model}, {a.epochs} epoch(s), Adam, seed {a.seed}: "
          f"clean test accuracy {100 * acc:.2f}% (training {seconds:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
