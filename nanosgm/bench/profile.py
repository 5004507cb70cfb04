"""Where a training step spends its time: GEMM FLOP counts from the layer shapes, per-layer timings.

    flops = step_flops(model, (1, 28, 28), batch=128)      # {"train": ..., "infer": ..., "fgsm": ...}
    rows = profile_layers(model, x, y)                      # per layer: forward / backward seconds

FLOPs counted are those of the matrix products only (2 per multiply-add), the work a BLAS GEMM does;
element-wise layers (BatchNorm, ReLU, pooling, dropout) count 0, so the "fraction of the GEMM peak" a
step reaches says how much of the step is spent outside efficient matrix products.

    Dense  (Eq. 6, 7-9, 10)   forward 2 N in out; weight gradient the same; input gradient the same
    Conv2D (Eq. 11, 12, 13)   forward 2 N Ho Wo C_out C_in kh kw; each gradient the same

A training step computes the forward, the weight gradients and the input gradient of every layer,
the first included (dE/dX, Eq. 14): 3x the forward count. Inference is 1x; FGSM (input gradient
only, ``param_grads=False``) 2x.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, cast

from .. import backend
from ..layers import Conv2D, Dense, Layer, Sequential, SoftmaxCrossEntropy

if TYPE_CHECKING:
    from ..layers.base import Array

__all__ = ["layer_flops", "forward_flops", "step_flops", "median_time", "profile_layers", "format_profile"]

PASSES = {"train_adam": 3, "train_wame": 3, "infer": 1, "fgsm": 2}      # GEMM passes per step, see above


def layer_flops(layer: Layer, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """GEMM FLOPs of one layer's forward pass for ONE sample (input/output shapes without the batch axis)."""
    if isinstance(layer, Dense):
        return 2 * layer.in_features * layer.out_features
    if isinstance(layer, Conv2D):
        _, ho, wo = out_shape
        return 2 * ho * wo * layer.out_channels * layer.in_channels * layer.kh * layer.kw
    return 0


def _leaves(model: Layer) -> Iterator[Layer]:
    if isinstance(model, Sequential):
        for sub in model.layers:
            yield from _leaves(sub)
    else:
        yield model


def forward_flops(model: Layer, in_shape: tuple[int, ...], dtype="float32") -> list:
    """[(layer, per-sample forward GEMM FLOPs)] for every leaf layer, from a one-sample inference forward
    (zeros; changes no parameter, statistic or dropout mask)."""
    x = backend.xp().zeros((1,) + tuple(in_shape), dtype=dtype)
    out = []
    for layer in _leaves(model):
        y = layer.forward(x, training=False)
        out.append((layer, layer_flops(layer, x.shape[1:], y.shape[1:])))
        x = y
    return out


def step_flops(model: Layer, in_shape: tuple[int, ...], batch: int) -> dict:
    """{bench column: GEMM FLOPs of one step on ``batch`` samples} (see PASSES and the module docstring)."""
    fwd = sum(f for _, f in forward_flops(model, in_shape)) * int(batch)
    return {col: passes * fwd for col, passes in PASSES.items()}


def median_time(fn: Callable[[], object], reps: int) -> float:
    """Median seconds of ``reps`` calls of ``fn`` (after backend.synchronize)."""
    times = []
    for _ in range(max(int(reps), 1)):
        t0 = time.perf_counter()
        fn()
        backend.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def profile_layers(model: Layer, x: Array, y: Array, reps: int = 5) -> list:
    """Per-layer median times of one training step (forward training=True, backward with weight gradients).

    Each layer is timed on its own, on the input the previous layer gave (forward) and on the gradient
    the next layer gave (backward), ``reps`` times; forward and backward of a layer alternate so that
    backward always sees the cache of a fresh forward. Returns rows
    {"layer", "fwd_s", "bwd_s", "gflop"} (gflop: forward GEMM GFLOPs on this batch), plus the loss last.
    """
    layers = list(_leaves(model))
    in_shape = tuple(x.shape[1:])
    flops = [f * x.shape[0] / 1e9 for _, f in forward_flops(model, in_shape, dtype=x.dtype)]
    inputs, h = [], x
    for layer in layers:                                   # one pass to get every layer's input
        inputs.append(h)
        h = layer.forward(h, training=True)
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(h, y)
    grads, g = cast("list[Array]", [None] * len(layers)), loss_fn.backward()   # every slot set just below
    for i in reversed(range(len(layers))):                 # and every layer's output gradient
        grads[i] = g
        g = layers[i].backward(g)
    rows = []
    for layer, inp, dout, gf in zip(layers, inputs, grads, flops):
        fwd = median_time(lambda: layer.forward(inp, training=True), reps)
        bwd = median_time(lambda: (layer.forward(inp, training=True), layer.backward(dout)), reps) - fwd
        rows.append({"layer": repr(layer), "fwd_s": fwd, "bwd_s": max(bwd, 0.0), "gflop": gf})
    rows.append({"layer": "SoftmaxCrossEntropy", "fwd_s": median_time(lambda: loss_fn.forward(h, y), reps),
                 "bwd_s": median_time(loss_fn.backward, reps), "gflop": 0.0})
    return rows


def format_profile(rows: list[dict], peak_gflops: float | None = None,
                   extra: Iterable[tuple[str, float]] = ()) -> str:
    """A table of :func:`profile_layers` rows: ms forward / backward, share of the step, GEMM GFLOP/s
    (and its share of ``peak_gflops``); then ``extra`` (label, seconds) rows, e.g. optimizer steps,
    with their size relative to the forward + backward total."""
    total = sum(r["fwd_s"] + r["bwd_s"] for r in rows) or 1.0
    head = ["layer", "fwd ms", "bwd ms", "% of fwd+bwd", "GEMM GFLOP/s"] + (["% of GEMM peak"] if peak_gflops else [])
    lines = []
    for r in rows:
        t = r["fwd_s"] + r["bwd_s"]
        rate = 3 * r["gflop"] / t if r["gflop"] and t > 0 else None       # forward + two gradients
        cells = [r["layer"], f"{r['fwd_s'] * 1e3:.2f}", f"{r['bwd_s'] * 1e3:.2f}", f"{100 * t / total:.1f}",
                 "-" if rate is None else f"{rate:.1f}"]
        if peak_gflops:
            cells.append("-" if rate is None else f"{100 * rate / peak_gflops:.0f}")
        lines.append(cells)
    gflop = sum(r["gflop"] for r in rows)
    lines.append(["forward + backward", f"{sum(r['fwd_s'] for r in rows) * 1e3:.2f}",
                  f"{sum(r['bwd_s'] for r in rows) * 1e3:.2f}", "100.0", f"{3 * gflop / total:.1f}"]
                 + ([f"{100 * 3 * gflop / total / peak_gflops:.0f}"] if peak_gflops else []))
    for label, seconds in extra:
        lines.append([label, "", f"{seconds * 1e3:.2f}", f"+{100 * seconds / total:.1f}", ""] + ([""] if peak_gflops else []))
    widths = [max(len(row[i]) for row in lines + [head]) for i in range(len(head))]
    fmt = lambda row: " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    return "\n".join([fmt(head), "-+-".join("-" * w for w in widths)] + [fmt(r) for r in lines])
