"""The batched Square attack (nanosgm.attacks.square, issue 23 item 4): every eps and image of a batch in one
run, the random draws made on the host a chunk of queries ahead, acceptance by mask.

It cannot draw the numbers today's per-eps attack drew (that one drew as many numbers per query as it had
rows still unfooled, re-drawing colours until they changed the image: counts only known on the device), so
the tests show that it draws from the same distribution (window positions, colours) and is as strong as
`reference_square`, today's code kept below; that dropping fooled rows between chunks changes nothing; and,
on the stand-in, that a query reads nothing back and what it launches."""
import importlib

import numpy as np
import pytest

from nanosgm import attacks, backend, standin
from nanosgm.attacks import correct_under_attack, margin
from nanosgm.attacks.checks import check_attack, check_count
from nanosgm.attacks.fgsm import clip_to_range
from nanosgm.attacks.square import (CHUNK_QUERIES, _margin, _square_proposal, _start, _grid, _draw_chunk,
                                    _run_queries, square, square_each_eps, square_p, square_side)
from nanosgm.attacks.state import as_rng, on_backend
from nanosgm.layers import Dense, Flatten, ReLU, Sequential
from strategies import blob_images, train_small

square_module = importlib.import_module("nanosgm.attacks.square")
# per query, besides the forward pass: window 7, changed colours 3, colour pick 9, proposal 2, margin 4,
# acceptance 5 (`_run_queries`)
QUERY_LAUNCHES = 30


# ---------------------------------------------------------------------------- today's per-eps attack
def reference_proposal(x, x_best, eps, s, rng, clip):
    """Today's `_square_proposal` (before issue 23), verbatim: colours re-drawn (up to 100 rounds, each a
    host read) until the window differs from x_best."""
    xp = backend.array_module(x)
    m, c, h, w = x.shape
    top = np.floor(backend.to_host(rng.random(m)) * (h - s + 1)).astype(np.int64)
    left = np.floor(backend.to_host(rng.random(m)) * (w - s + 1)).astype(np.int64)
    rows, cols = np.arange(h), np.arange(w)
    window = (((rows >= top[:, None]) & (rows < top[:, None] + s))[:, :, None]
              & ((cols >= left[:, None]) & (cols < left[:, None] + s))[:, None, :])[:, None]
    window = on_backend(window, like=x)
    delta = x_best - x
    todo = np.ones(m, dtype=bool)
    for _ in range(100):
        colour = np.where(backend.to_host(rng.random((m, c, 1, 1))) < 0.5, -eps, eps).astype(x.dtype)
        colour = on_backend(colour, like=x)
        keep = on_backend(~todo, like=x).reshape(-1, 1, 1, 1)
        delta = xp.where(window & ~keep, colour, delta)
        same = xp.abs(clip_to_range(x + delta, clip) - x_best) < 1e-7
        todo = backend.to_host((same | ~window).all(axis=(1, 2, 3)))
        if not todo.any():
            break
    return clip_to_range(x + delta, clip)


def reference_square(model, x, y, eps, *, queries=1000, p_init=0.8, rng=None, clip=(0.0, 1.0)):
    """Today's `square` (before issue 23), verbatim: one eps, the active rows gathered every query."""
    x = on_backend(x)
    y = on_backend(y, like=x)
    xp = backend.array_module(x)
    check_attack("square", x, y, eps, clip)
    check_count(queries, "queries", "square")
    if eps == 0:
        return x.copy()
    rng = as_rng(rng, backend.host_rng)
    n, c, h, w = x.shape
    stripes = np.where(backend.to_host(rng.random((n, c, 1, w))) < 0.5, -eps, eps).astype(x.dtype)
    x_best = clip_to_range(x + on_backend(stripes, like=x), clip)
    loss_best = margin(model.forward(x_best, training=False), y)
    for it in range(int(queries) - 1):
        active = xp.nonzero(loss_best > 0)[0]
        if active.size == 0:
            break
        s = square_side(square_p(p_init, it, int(queries)), c, h, w)
        x_new = reference_proposal(x[active], x_best[active], eps, s, rng, clip)
        loss_new = margin(model.forward(x_new, training=False), y[active])
        better = loss_new < loss_best[active]
        x_best[active] = xp.where(better.reshape(-1, 1, 1, 1), x_new, x_best[active])
        loss_best[active] = xp.where(better, loss_new, loss_best[active])
    return x_best


# ---------------------------------------------------------------------------- fixtures
def blob_net(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential([Flatten(), Dense(36, 16, dtype="float64", rng=rng), ReLU(),
                       Dense(16, 3, dtype="float64", rng=rng)])


@pytest.fixture(scope="module")
def blobs():
    """A small MLP trained on 300 blob images (1, 6, 6), 3 classes; 200 held-out images to attack."""
    X, y = blob_images(0, 500)
    return train_small(blob_net(), X[:300], y[:300]), X[300:], y[300:]


class RowWise:
    """Logits z_k = sum(x * W_k) computed row by row (one contiguous reduction per row), so a row's logits
    do not depend on which other rows are in the batch -- unlike a matrix product, whose rounding may."""

    def __init__(self, shape, k=3, seed=0):
        self.W = np.random.default_rng(seed).normal(0, 1, (k,) + tuple(shape))

    def forward(self, x, training=False):
        w = on_backend(self.W, like=x)
        return (x[:, None] * w[None]).reshape(x.shape[0], w.shape[0], -1).sum(axis=2)


def colours_and_corners(x, x_best, new):
    """Per row: the colour code sum_ch (new > x) * 2^ch of its square, read at the first pixel where new
    differs from x_best, and the corner of the pixels that differ."""
    changed = (np.abs(new - x_best) > 1e-12).any(axis=1)                   # (N, H, W)
    codes, corners = [], []
    for i in range(len(x)):
        r, c = np.nonzero(changed[i])
        codes.append(sum(int(new[i, ch, r[0], c[0]] > x[i, ch, r[0], c[0]]) << ch for ch in range(x.shape[1])))
        corners.append((r.min(), c.min()))
    return np.array(codes), corners


def assert_uniform(counts, n_draws, where):
    """Each count within 5 standard deviations of n_draws / len(counts) (a binomial's)."""
    p = 1 / len(counts)
    sd = np.sqrt(n_draws * p * (1 - p))
    assert np.all(np.abs(np.asarray(counts) - n_draws * p) < 5 * sd), (where, counts)


# ---------------------------------------------------------------------------- the draws: same distribution
@pytest.mark.parametrize("proposal", [_square_proposal, reference_proposal], ids=["batched", "today"])
def test_colour_is_uniform_over_the_colours_that_change_the_image(proposal):
    """Algorithm 2 re-draws a colour until it changes x_best: the colour is uniform over those that do.
    x_best at x + eps everywhere: all +eps changes nothing, the other 7 colours are equally likely. With one
    channel striped (any 2-wide window holds both colours), every colour changes it: all 8 equally likely."""
    n, eps = 7000, 0.1
    x = np.full((n, 3, 4, 4), 0.5)
    plus = np.clip(x + eps, 0, 1)
    codes, _ = colours_and_corners(x, plus, proposal(x, plus, eps, 2, np.random.default_rng(0), (0.0, 1.0)))
    counts = np.bincount(codes, minlength=8)
    assert counts[7] == 0
    assert_uniform(counts[:7], n, "7 colours")
    striped = plus.copy()
    striped[:, 1, :, ::2] = 0.5 - eps
    codes, _ = colours_and_corners(x, striped, proposal(x, striped, eps, 2, np.random.default_rng(1), (0.0, 1.0)))
    assert_uniform(np.bincount(codes, minlength=8), n, "8 colours")


@pytest.mark.parametrize("proposal", [_square_proposal, reference_proposal], ids=["batched", "today"])
def test_window_corner_is_uniform_over_all_positions(proposal):
    """An s x s window of an H x W image has (H - s + 1)(W - s + 1) corners, each equally likely (the paper;
    the authors' randint(0, h - s) never reaches the last one)."""
    n, eps, s = 4000, 0.1, 3
    x = np.full((n, 1, 6, 5), 0.5)
    plus = np.clip(x + eps, 0, 1)
    new = proposal(x, plus, eps, s, np.random.default_rng(2), (0.0, 1.0))
    _, corners = colours_and_corners(x, plus, new)
    counts = np.zeros((4, 3), dtype=int)
    for r, c in corners:
        counts[r, c] += 1
    assert_uniform(counts.ravel(), n, "12 corners")
    assert ((np.abs(new - plus) > 1e-12).sum(axis=(1, 2, 3)) == s * s).all()   # the whole window, nothing else


def test_batched_attack_is_as_strong_as_todays(blobs):
    """Over 6 seeds, accuracy under the batched attack and under today's differ by less than 3 points, and the
    margins left (how far from fooled the survivors are) by less than 5%: the same attack, other numbers."""
    model, X, y = blobs
    eps, q = 0.07, 100

    def acc_and_margin(adv):
        m = margin(model.forward(adv, training=False), y)
        return float((m > 0).mean()), float(np.maximum(m, 0).mean())

    new = np.mean([acc_and_margin(square(model, X, y, eps, queries=q, rng=s)) for s in range(6)], axis=0)
    old = np.mean([acc_and_margin(reference_square(model, X, y, eps, queries=q, rng=s)) for s in range(6)], axis=0)
    assert 0.3 < old[0] < 0.9                                   # the attack is half way: the comparison means something
    assert abs(new[0] - old[0]) < 0.03, (new, old)
    assert abs(new[1] - old[1]) < 0.05 * old[1], (new, old)


def test_start_is_todays_stripes(blobs):
    """With one eps the first draw and the start are today's, bit for bit (queries=1: the stripes alone)."""
    model, X, y = blobs
    np.testing.assert_array_equal(square(model, X, y, 0.07, queries=1, rng=5),
                                  reference_square(model, X, y, 0.07, queries=1, rng=5))


# ---------------------------------------------------------------------------- the batch
def test_every_eps_in_one_batch(blobs):
    """eps 0 is x; each eps its own ball; one forward pass of E * N rows per query, `queries` in all."""
    model, X, y = blobs
    calls = []

    class Counted:
        def forward(self, x, training=False):
            calls.append(x.shape[0])
            return model.forward(x, training=training)

    eps_list = [0.0, 0.03, 0.1]
    got = square_each_eps(Counted(), X, y, eps_list, queries=30, rng=0)
    assert list(got) == eps_list
    np.testing.assert_array_equal(got[0.0], X)
    for e in eps_list[1:]:
        assert got[e].shape == X.shape and got[e].dtype == X.dtype
        assert np.abs(got[e] - X).max() <= e + 1e-12 and got[e].min() >= 0 and got[e].max() <= 1
    assert calls[0] == 2 * len(X) and len(calls) <= 30 and all(c <= 2 * len(X) for c in calls)
    accs = {e: float((margin(model.forward(got[e], training=False), y) > 0).mean()) for e in eps_list}
    assert accs[0.1] < accs[0.03] <= accs[0.0]
    again = square_each_eps(model, X, y, eps_list, queries=30, rng=0)
    assert all(np.array_equal(got[e], again[e]) for e in eps_list)        # seeded: reproducible


def test_dropping_fooled_rows_changes_nothing(monkeypatch):
    """A row's draws do not depend on when fooled rows are dropped: with a model whose rows do not interact,
    checking after every query or never gives the same images, bit for bit."""
    X, y = blob_images(3, 60)
    model = RowWise(X.shape[1:])
    y = np.argmax(model.forward(X), axis=1)
    runs = []
    for every in (1, 7, 10 ** 6):
        monkeypatch.setattr(square_module, "CHUNK_QUERIES", every)
        runs.append(square_each_eps(model, X, y, [0.05, 0.2], queries=40, rng=1))
    fooled = margin(model.forward(runs[0][0.2]), y) <= 0
    assert 0 < fooled.mean() < 1                                # some rows dropped, some not
    for r in runs[1:]:
        for e in (0.05, 0.2):
            np.testing.assert_array_equal(r[e], runs[0][e])


def test_margin_without_check_is_margin():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        z = rng.normal(0, 3, (50, 7)).astype(dtype)
        y = rng.integers(0, 7, 50)
        np.testing.assert_array_equal(_margin(z, y, np.arange(7) == y[:, None]), margin(z, y))


def test_more_channels_than_colours_refused(blobs):
    model, _, _ = blobs
    with pytest.raises(ValueError, match=r"C <= 8; got C = 9") as e:
        square(model, np.full((2, 9, 4, 4), 0.5), np.array([0, 1]), 0.1)
    assert "\n" not in str(e.value)


def test_evaluation_runs_square_once_per_batch(blobs, monkeypatch):
    """`correct_under_attack` gives a batch all its eps at once: one batched run per batch, the batches
    sharing one generator (an int seed), the bar moving once per (batch, eps)."""
    model, X, y = blobs
    runs = []

    def counted(*a, **kw):
        runs.append(a[3])
        return square_each_eps(*a, **kw)

    monkeypatch.setattr(attacks.evaluation, "square_each_eps", counted)

    class Bar:
        n = 0

        def update(self, k=1):
            self.n += k

    bar, eps = Bar(), (0.0, 0.05, 0.1)
    got = correct_under_attack(model, X, y, eps, "square", 80, bar=bar, queries=12, rng=3)
    assert runs == [list(eps)] * 3 and bar.n == attacks.n_steps(len(X), eps, "square", 80) == 9
    g, by_hand = np.random.default_rng(3), {e: [] for e in eps}
    for start in range(0, len(X), 80):
        sl = slice(start, start + 80)
        adv = square_each_eps(model, X[sl], y[sl], eps, queries=12, rng=g)
        for e in eps:
            by_hand[e].append(np.argmax(model.forward(adv[e], training=False), axis=1) == y[sl])
    for e in eps:
        np.testing.assert_array_equal(got[e], np.concatenate(by_hand[e]))


# ---------------------------------------------------------------------------- the device
def test_device_gives_numpys_examples(blobs, device):
    """The host draws make NumPy, the stand-in (bit for bit) and CuPy (to rounding) attack alike."""
    model, X, y = blobs
    x, yy = X[:60], y[:60]
    on_host = square_each_eps(model, x, yy, [0.05, 0.1], queries=40, rng=2)
    state = model.state_dict()
    device.use()
    dev = blob_net()
    dev.load_state_dict(state)
    got = square_each_eps(dev, device.xp.asarray(x), device.xp.asarray(yy), [0.05, 0.1], queries=40, rng=2)
    for e in (0.05, 0.1):
        assert isinstance(got[e], device.xp.ndarray)
        if device.name == "standin":
            np.testing.assert_array_equal(got[e].get(), on_host[e])
        else:
            np.testing.assert_allclose(got[e].get(), on_host[e], atol=1e-9)


@pytest.fixture
def standin_net(blobs):
    """The blob MLP on the stand-in, 50 images and labels it predicts (so no row is fooled at eps 1e-4)."""
    model, X, _ = blobs
    backend.use("standin")
    try:
        dev = blob_net()
        dev.load_state_dict(model.state_dict())
        x = standin.asarray(X[:50])
        y = standin.asarray(np.argmax(model.forward(X[:50], training=False), axis=1))
        yield dev, x, y
    finally:
        backend.use("numpy")


def test_a_query_reads_nothing_back(standin_net):
    """Inside a chunk of queries: no device -> host read and no host -> device copy; one read per chunk."""
    model, x, y = standin_net
    counts = {}
    for q in (2, CHUNK_QUERIES + 1, 3 * CHUNK_QUERIES + 1):
        with standin.counting() as c:
            square_each_eps(model, x, y, [1e-4, 2e-4], queries=q, rng=0)
        counts[q] = c
    one, full, three = counts[2], counts[CHUNK_QUERIES + 1], counts[3 * CHUNK_QUERIES + 1]
    assert full.host_reads == one.host_reads and full.uploads == one.uploads
    assert three.host_reads == one.host_reads + 2 and three.uploads == one.uploads + 2
    rng = np.random.default_rng(0)
    rows, grid = _start(model, x, y, [1e-4, 2e-4], rng, (0.0, 1.0)), _grid(x)
    draws, halves = _draw_chunk(rng, range(10), 11, 0.8, (1, 6, 6), 100, rows.ids)
    draws = standin.asarray(draws)
    with standin.counting() as c:
        _run_queries(model, rows, grid, draws, halves)
    assert (c.host_reads, c.uploads) == (0, 0)


def test_launches_per_query(standin_net):
    """A query is the forward pass of all E * N rows and QUERY_LAUNCHES more launches, whatever E."""
    model, x, y = standin_net
    for eps in ([1e-4], [1e-4, 2e-4, 3e-4]):
        rows = standin.concatenate([x] * len(eps))
        with standin.counting() as fwd:
            model.forward(rows, training=False)
        launches = []
        for q in (2, CHUNK_QUERIES + 1):
            with standin.counting() as c:
                square_each_eps(model, x, y, eps, queries=q, rng=0)
            launches.append(c.launches)
        assert (launches[1] - launches[0]) == (CHUNK_QUERIES - 1) * (fwd.launches + QUERY_LAUNCHES), eps
