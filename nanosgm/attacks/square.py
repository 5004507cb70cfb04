"""The Square attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search", Algorithm 1 and 2), L-inf: random search over square patches
of colour +-eps, accepted per example when the margin loss drops. Forward passes only: it never looks
at a gradient, so gradient masking cannot fool it.

Batched (`square_each_eps`): every eps of a list and every image run as one batch of E * N rows
(eps-major), so one query is one forward pass of E * N rows. The random draws of `CHUNK_QUERIES`
queries are made on the host (one NumPy generator: NumPy, CuPy and the stand-in attack with the same
numbers) and sent to the device in one copy; inside a chunk a query reads nothing back (acceptance is
a mask). Between chunks one host read drops the rows already fooled.

Each query draws, per row, three uniforms: the window's row, its column, and its colour. The colour is
uniform over the 2^C colours (+-eps per channel) that change the row's current image -- the
distribution of the paper's "re-draw until it differs" loop (Algorithm 2), drawn in one go.

Before issue 23 the attack ran one eps at a time (the evaluation: 100 images a batch) and drew, per
query, as many numbers as it had rows still unfooled (and colours again for rows whose colour changed
nothing): counts known only on the device. The numbers drawn now differ, so a Square column recomputed now differs from
one computed before, as a different seed would (the same distribution; `tests/attacks/test_square_batched.py`
compares the two). With one eps, the start (the stripes) is still the same, bit for bit.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from ..layers.base import Array
from .checks import check_clip, check_count, check_eps_list, check_inputs, label_shape
from .fgsm import clip_to_range
from .gradients import margin
from .state import as_rng, on_backend

if TYPE_CHECKING:
    from ..layers import Sequential


SQUARE_P_INIT = 0.8       # the fraction of pixels the first squares cover (AutoAttack's L-inf setting)
_SQUARE_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)   # on a 10,000-query scale
CHUNK_QUERIES = 25        # queries drawn and run between two host reads (which drop the fooled rows)
MAX_CHANNELS = 8          # a square's colour is picked among the 2^C colours of C channels


def square_p(p_init: float, it: int, n_iters: int) -> float:
    """The Square attack's schedule of p, the fraction of the image a square covers: iteration `it` of
    `n_iters` is rescaled to 10,000 queries; p is halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000
    and 8000 of them (p_init / 512 from 8000 to 10000), as in the authors' `p_selection`."""
    t = int(it / n_iters * 10000)
    if t > 10000:
        return p_init
    return p_init / 2 ** sum(t > b for b in _SQUARE_HALVINGS)


def square_side(p: float, c: int, h: int, w: int) -> int:
    """Side s of the square: round(sqrt(p * c*h*w / c)), at least 1 and at most h - 1."""
    s = int(round(math.sqrt(p * c * h * w / c)))
    return min(max(s, 1), h - 1)


@dataclass
class _Rows:
    """The rows under attack, one per (eps, image), eps-major, R of them.

    xpm (R, 2, C, H, W): clip(x - eps) and clip(x + eps), the two values each pixel can take;
    x_best (R, C, H, W) and loss (R,): the best image so far and its margin; y (R,) labels;
    onehot (R, K) bool, y as one-hot; ids (R,) host ints: each row's place among all rows."""
    xpm: Array
    x_best: Array
    loss: Array
    y: Array
    onehot: Array
    ids: np.ndarray

    def take(self, keep: np.ndarray) -> _Rows:
        """The rows `keep` (host indices into these rows)."""
        k = on_backend(keep, like=self.x_best)
        return _Rows(self.xpm[k], self.x_best[k], self.loss[k], self.y[k], self.onehot[k], self.ids[keep])


@dataclass(frozen=True)
class _Grid:
    """Constants of one attack, on the device: pixel coordinates rows (H,), cols (W,) (float64), and the
    2^C colours of a square: sign (2^C, C) int64 (per channel 0: -eps, 1: +eps), plus (2^C, C) bool
    (the same as truth values), channels (C,) int64."""
    rows: Array
    cols: Array
    sign: Array
    plus: Array
    channels: Array


def _grid(x: Array) -> _Grid:
    """The `_Grid` of images shaped like x (N, C, H, W); colour k has bit ch of k as channel ch's sign."""
    _, c, h, w = x.shape
    sign = (np.arange(2 ** c)[:, None] >> np.arange(c)[None, :]) & 1
    dev = functools.partial(on_backend, like=x)
    return _Grid(dev(np.arange(h, dtype=np.float64)), dev(np.arange(w, dtype=np.float64)), dev(sign),
                 dev(sign.astype(bool)), dev(np.arange(c)))


def _colour_images(x: Array, eps_col: Array, clip: tuple[float, float] | None) -> Array:
    """(R, 2, C, H, W): clip(x - eps) and clip(x + eps) for x (R, C, H, W) and eps_col (R, 1, 1, 1) in
    x's dtype -- every pixel of the attack is one of the two (Algorithm 2's colours, L-inf)."""
    xp = backend.array_module(x)
    return xp.stack([clip_to_range(x - eps_col, clip), clip_to_range(x + eps_col, clip)], axis=1)


def _stripes(xpm: Array, rng: np.random.Generator) -> Array:
    """Algorithm 1's start: vertical stripes, x + eps * (+-1 per column and channel), clipped; -eps where
    the host draw u (R, C, 1, W) is < 0.5. Returns x_best (R, C, H, W)."""
    r, _, c, _, w = xpm.shape
    plus = backend.to_host(rng.random((r, c, 1, w))) >= 0.5
    return backend.array_module(xpm).where(on_backend(plus, like=xpm), xpm[:, 1], xpm[:, 0])


def _margin(logits: Array, y: Array, onehot: Array) -> Array:
    """`gradients.margin` without its label check (made once, before the queries): z_y - max_{k != y} z_k
    per row. logits (R, K), y (R,), onehot (R, K) bool -> (R,)."""
    xp = backend.array_module(logits)
    others = xp.where(onehot, logits.dtype.type(-np.inf), logits)
    return xp.take_along_axis(logits, y[:, None], axis=1)[:, 0] - others.max(axis=1)


def _start(model: Sequential, x: Array, y: Array, eps: list[float], rng: np.random.Generator,
           clip: tuple[float, float] | None) -> _Rows:
    """The E * N rows (eps-major) of x (N, C, H, W) at the E budgets `eps`, at their stripes (`_stripes`)
    with their margins; the labels are checked here, once, by `gradients.margin`."""
    xp = backend.array_module(x)
    n = x.shape[0]
    eps_col = on_backend(np.repeat(np.asarray(eps, dtype=x.dtype), n).reshape(-1, 1, 1, 1), like=x)
    xpm = _colour_images(xp.concatenate([x] * len(eps)), eps_col, clip)
    x_best = _stripes(xpm, rng)
    ys = xp.concatenate([y] * len(eps))
    logits = model.forward(x_best, training=False)
    onehot = xp.arange(logits.shape[1]) == ys[:, None]
    return _Rows(xpm, x_best, margin(logits, ys), ys, onehot, np.arange(len(eps) * n))


def _window_draws(u: np.ndarray, sides: np.ndarray, h: int, w: int) -> np.ndarray:
    """Host draws u (q, 3, R) in [0, 1) made ready for queries with square sides `sides` (q,): u[:, 0]
    becomes the window's centre row top + (s - 1) / 2 with top = floor(u * (h - s + 1)), uniform over
    all h - s + 1 positions as the paper says (the authors' randint(0, h - s) never reaches the last
    row), u[:, 1] likewise the centre column; u[:, 2] stays the colour's uniform. In place; returns u."""
    half = (sides[:, None] - 1) / 2
    u[:, 0] = np.floor(u[:, 0] * (h - sides[:, None] + 1)) + half
    u[:, 1] = np.floor(u[:, 1] * (w - sides[:, None] + 1)) + half
    return u


def _draw_chunk(rng: np.random.Generator, its: range, queries: int, p_init: float, shape: tuple, n_rows: int,
                ids: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The draws of queries `its` on the host, before they run: ((q, 3, len(ids)) float64 from
    `_window_draws`, the half-sides (s - 1) / 2 per query as floats). Drawn for all `n_rows` rows, then
    the rows `ids` kept, so the numbers a row gets do not depend on when fooled rows are dropped."""
    c, h, w = shape
    sides = np.array([square_side(square_p(p_init, it, queries), c, h, w) for it in its])
    u = backend.to_host(rng.random((len(its), 3, n_rows)))[:, :, ids]
    return _window_draws(u, sides, h, w), ((sides - 1) / 2).tolist()


def _window(grid: _Grid, centre_r: Array, centre_c: Array, half: float) -> Array:
    """(R, 1, H, W) bool: each row's s x s window, the pixels within `half` = (s - 1) / 2 of its centre
    (centre_r, centre_c (R,)) in both directions -- the same position in every channel."""
    xp = backend.array_module(centre_r)
    in_r = xp.abs(grid.rows - centre_r[:, None]) <= half          # (R, H)
    in_c = xp.abs(grid.cols - centre_c[:, None]) <= half          # (R, W)
    return in_r[:, None, :, None] & in_c[:, None, None, :]


def _changed(xpm: Array, x_best: Array, window: Array) -> Array:
    """(R, 2, C) bool: whether colouring channel ch of the window -eps (index 0) or +eps (index 1)
    changes x_best, i.e. some window pixel of x_best differs from clip(x -+ eps) there."""
    return ((x_best[:, None] != xpm) & window[:, None]).any(axis=(3, 4))


def _pick_colour(grid: _Grid, changed: Array, v: Array) -> Array:
    """(R, C) bool, +eps per channel: the colour of each row's square, uniform over the colours that
    change its image (Algorithm 2's re-draw loop, in one go): colour k changes it iff one channel does;
    with M such colours, u = floor(v * M) picks the (u + 1)-th of them. v (R,) in [0, 1). With M = 0
    (no colour changes the image) colour 0; the query is then wasted, as after the loop's last try."""
    xp = backend.array_module(changed)
    moves = changed[:, grid.sign, grid.channels].any(axis=2)      # (R, 2^C)
    target = xp.floor(v * moves.sum(axis=1))                       # uniform in 0 .. M - 1
    pick = (xp.cumsum(moves, axis=1) > target[:, None]).argmax(axis=1)
    return grid.plus[pick]


def _propose(xpm: Array, x_best: Array, window: Array, plus: Array) -> Array:
    """Algorithm 2's proposal: x_best with its window set to clip(x + eps * colour), colour (R, C) bool
    (+eps where True) the same over the window; x_best elsewhere. Returns (R, C, H, W)."""
    xp = backend.array_module(x_best)
    coloured = xp.where(plus[:, :, None, None], xpm[:, 1], xpm[:, 0])
    return xp.where(window, coloured, x_best)


def _accept(rows: _Rows, x_new: Array, loss_new: Array) -> None:
    """Algorithm 1's acceptance, per row and by mask: x_new replaces x_best where its margin is lower and
    the row is not yet fooled (margin > 0); a fooled row stays as it is."""
    xp = backend.array_module(loss_new)
    better = (loss_new < rows.loss) & (rows.loss > 0)
    rows.x_best = xp.where(better[:, None, None, None], x_new, rows.x_best)
    rows.loss = xp.where(better, loss_new, rows.loss)


def _run_queries(model: Sequential, rows: _Rows, grid: _Grid, draws: Array, halves: list[float]) -> None:
    """One query per entry of `halves` on every row, in place: draws (q, 3, R) on the device from
    `_draw_chunk`. No host read and no copy to the device: acceptance is a mask (`_accept`)."""
    for j, half in enumerate(halves):
        centre_r, centre_c, v = draws[j]
        window = _window(grid, centre_r, centre_c, half)
        plus = _pick_colour(grid, _changed(rows.xpm, rows.x_best, window), v)
        x_new = _propose(rows.xpm, rows.x_best, window, plus)
        _accept(rows, x_new, _margin(model.forward(x_new, training=False), rows.y, rows.onehot))


def _drop_fooled(rows: _Rows, out: Array) -> _Rows:
    """The rows still to attack (margin > 0), after writing the others' x_best into `out` (all rows):
    one host read."""
    alive = backend.to_host(rows.loss > 0)
    if alive.all():
        return rows
    done = np.flatnonzero(~alive)
    out[on_backend(rows.ids[done], like=out)] = rows.x_best[on_backend(done, like=out)]
    return rows.take(np.flatnonzero(alive))


def _attack(model: Sequential, x: Array, y: Array, eps: list[float], queries: int, p_init: float,
            rng: np.random.Generator, clip: tuple[float, float] | None) -> Array:
    """(E, N, C, H, W): x (N, C, H, W) under the Square attack at each of the E budgets `eps` (> 0), as
    one batch of E * N rows: the stripes, then `queries - 1` queries in chunks of `CHUNK_QUERIES`."""
    n, c, h, w = x.shape
    rows = _start(model, x, y, eps, rng, clip)
    grid, out = _grid(x), rows.x_best.copy()
    for start in range(0, queries - 1, CHUNK_QUERIES):
        rows = _drop_fooled(rows, out)
        if rows.ids.size == 0:
            break
        its = range(start, min(start + CHUNK_QUERIES, queries - 1))
        draws, halves = _draw_chunk(rng, its, queries, p_init, (c, h, w), len(out), rows.ids)
        _run_queries(model, rows, grid, on_backend(draws, like=x), halves)
    out[on_backend(rows.ids, like=out)] = rows.x_best
    return out.reshape(len(eps), n, c, h, w)


def _check(x: Array, y: Array, eps_list: Iterable[float], queries: int, p_init: float,
           clip: tuple[float, float] | None) -> list[float]:
    """What `square` refuses, in its order (ValueError, one line); returns the eps as floats."""
    if x.ndim != 4 or min(x.shape[2:]) < 2:
        raise ValueError(f"square needs images shaped (N, C, H, W) with H, W >= 2, got {tuple(x.shape)}")
    if x.shape[1] > MAX_CHANNELS:
        raise ValueError(f"square picks a square's colour among the 2^C colours of C channels, so C <= "
                         f"{MAX_CHANNELS}; got C = {x.shape[1]} (images shaped (N, C, H, W), channels first?)")
    eps_list = check_eps_list(eps_list, "square")
    check_clip(clip, "square")
    label_shape(y, x.shape[0])
    check_inputs(x, clip, "square")
    check_count(queries, "queries", "square")
    if not 0 < p_init <= 1:           # False for NaN too
        raise ValueError(f"square: p_init must be a number in (0, 1] (the fraction of the image the first squares "
                         f"cover), got {p_init!r}")
    return eps_list


def square_each_eps(model: Sequential, x: Array, y: Array, eps_list: Iterable[float], *, queries: int = 1000,
                    p_init: float = SQUARE_P_INIT, rng: int | np.random.Generator | None = None,
                    clip: tuple[float, float] | None = (0.0, 1.0)) -> dict:
    """{eps: x_best (N, C, H, W)}: the Square attack (`square`) at every eps of `eps_list`, all E eps and
    N images as one batch of E * N rows (eps-major); eps 0 gives a copy of x. Draws: the stripes
    (E * N, C, 1, W), then per chunk of queries (q, 3, E * N) uniforms, from `rng` (see `square`)."""
    x = on_backend(x)
    y = on_backend(y, like=x)
    eps_list = _check(x, y, eps_list, queries, p_init, clip)
    attacked = [e for e in eps_list if e != 0]
    out = {}
    if attacked:
        adv = _attack(model, x, y, attacked, int(queries), p_init, as_rng(rng, backend.host_rng), clip)
        out = dict(zip(attacked, adv))
    return {e: out[e] if e != 0 else x.copy() for e in eps_list}


def square(model: Sequential, x: Array, y: Array, eps: float, *, queries: int = 1000,
           p_init: float = SQUARE_P_INIT, rng: int | np.random.Generator | None = None,
           clip: tuple[float, float] | None = (0.0, 1.0)) -> Array:
    """The Square attack (Andriushchenko et al. 2020), L-inf, untargeted, gradient-free.

    Start: vertical stripes, x + eps * (+-1 per column and channel), clipped. Then `queries - 1` times,
    for the examples not yet misclassified: propose x_best with one s x s square (side from `square_p`
    and `square_side`) recoloured to +-eps per channel, the colour uniform over those that change the
    image (`_pick_colour`), and accept it per example when the margin loss z_y - max_{k != y} z_k
    (logits, inference mode) goes down. An example stops as soon as its margin is negative. Each query
    is one forward pass. x: (N, C, H, W) images, H, W >= 2, C <= `MAX_CHANNELS`. `rng`: None (the
    backend's host generator), an int seed, or a Generator. Returns x_best. Runs as `square_each_eps`
    with one eps. Refused (ValueError): what `fgsm` refuses, `queries` not a whole number >= 1,
    `p_init` outside (0, 1].
    """
    return next(iter(square_each_eps(model, x, y, [eps], queries=queries, p_init=p_init, rng=rng,
                                     clip=clip).values()))


def _square_proposal(x: Array, x_best: Array, eps: float, s: int, rng: np.random.Generator,
                     clip: tuple[float, float] | None) -> Array:
    """One query's proposal for every row of x (N, C, H, W) with square side s: x_best with one random
    s x s window (the same position in every channel) set to clip(x + eps * colour), the colour +-eps
    per channel and uniform over those that change x_best (`_pick_colour`); drawn from `rng` (3 uniforms
    per row). The steps `square_each_eps` runs on draws made a chunk ahead."""
    n, c, h, w = x.shape
    xpm = _colour_images(x, on_backend(np.full((n, 1, 1, 1), eps, dtype=x.dtype), like=x), clip)
    u = _window_draws(backend.to_host(rng.random((1, 3, n))), np.array([s]), h, w)
    centre_r, centre_c, v = on_backend(u[0], like=x)
    grid = _grid(x)
    window = _window(grid, centre_r, centre_c, (s - 1) / 2)
    return _propose(xpm, x_best, window, _pick_colour(grid, _changed(xpm, x_best, window), v))
