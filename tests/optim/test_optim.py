"""Tests for nanosgm.optim (WAME, SGD, Adam) and nanosgm.optim.schedules."""
import io
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nanosgm import optim
from nanosgm.optim import schedules
from nanosgm.optim import SGD, WAME, Adam, build_optimizer


class FakeModel:
    """The smallest object honouring the optimizer contract: parameters() -> (name, param, grad)."""

    def __init__(self, shapes, dtype=np.float64, seed=0):
        rng = np.random.default_rng(seed)
        self.p = {n: rng.standard_normal(s).astype(dtype) for n, s in shapes.items()}
        self.g = {n: np.zeros(s, dtype=dtype) for n, s in shapes.items()}

    def parameters(self):
        for n in self.p:
            yield n, self.p[n], self.g[n]

    def set_grads(self, grads):
        for n, g in grads.items():
            self.g[n][...] = g


# ---------------------------------------------------------------------------- WAME reference
def wame_reference(w0, grads, lr=1e-3, alpha=0.9, eta_plus=1.2, eta_minus=0.1, zeta_min=0.01,
                   zeta_max=100.0, eps=1e-8, literal=False):
    """WAME written out weight by weight with Python floats, straight from the algorithm."""
    w = [float(v) for v in w0]
    n = len(w)
    zeta, Z, theta, gprev = [1.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    for g in grads:
        for i in range(n):
            gi = float(g[i])
            if gi * gprev[i] > 0:
                zeta[i] = min(zeta[i] * eta_plus, zeta_max)
            elif gi * gprev[i] < 0:
                zeta[i] = max(zeta[i] * eta_minus, zeta_min)
            Z[i] = alpha * Z[i] + (1 - alpha) * zeta[i]
            theta[i] = alpha * theta[i] + (1 - alpha) * gi * gi
            denom = (theta[i] if literal else math.sqrt(theta[i])) + eps
            w[i] = w[i] - lr * Z[i] * gi / denom
            gprev[i] = gi
    return np.array(w), np.array(zeta), np.array(Z), np.array(theta)


def run_wame(w0, grads, form="printed", **kw):
    m = FakeModel({"w": (len(w0),)})
    m.p["w"][...] = w0
    opt = WAME(form=form, **kw)
    for g in grads:
        m.set_grads({"w": g})
        opt.step(m)
    return m.p["w"], opt


HAND_GRADS = [  # sign flips, repeats, exact zeros, growth to the zeta cap and decay to the floor
    [1.0, -2.0, 0.0, 0.5, 3.0],
    [2.0, 1.0, 0.0, 0.5, -3.0],
    [0.5, 1.0, 1.0, 0.0, 3.0],
    [-1.0, 1.0, 2.0, 0.5, -3.0],
    [-1.0, 0.0, -2.0, 0.5, 3.0],
    [-0.1, -4.0, -2.0, 0.5, -3.0],
    [3.0, -4.0, 0.5, 0.5, 3.0],
]


@pytest.mark.parametrize("literal", [False, True])
def test_wame_matches_elementwise_reference(literal):
    w0 = np.array([0.3, -0.2, 1.0, 0.0, -1.5])
    grads = [np.array(g) for g in HAND_GRADS]
    w, opt = run_wame(w0, grads, lr=0.05, literal=literal)
    w_ref, zeta_ref, Z_ref, theta_ref = wame_reference(w0, grads, lr=0.05, literal=literal)
    np.testing.assert_allclose(w, w_ref, rtol=1e-13, atol=1e-15)
    s = opt.state["w"]
    np.testing.assert_allclose(s["zeta"], zeta_ref, rtol=1e-13)
    np.testing.assert_allclose(s["Z"], Z_ref, rtol=1e-13)
    np.testing.assert_allclose(s["theta"], theta_ref, rtol=1e-13)
    np.testing.assert_array_equal(s["g_sign"], np.sign(grads[-1]))      # the previous gradient's sign, int8


def test_wame_zeta_bounds_and_zero_rule():
    # Seven agreeing steps: 1.2^7 = 3.58; then clamp at zeta_max = 2 with a custom cap.
    grads = [np.array([1.0, 1.0, 0.0])] * 7
    _, opt = run_wame(np.zeros(3), grads, zeta_max=2.0)
    np.testing.assert_allclose(opt.state["w"]["zeta"], [2.0, 2.0, 1.0])  # zero gradient: unchanged
    # Alternating signs: 0.1, 0.01, then clamped at zeta_min = 0.01.
    grads = [np.array([(-1.0) ** k]) for k in range(5)]
    _, opt = run_wame(np.zeros(1), grads)
    np.testing.assert_allclose(opt.state["w"]["zeta"], [0.01])


finite = st.floats(min_value=-5, max_value=5, allow_nan=False).map(lambda v: 0.0 if abs(v) < 0.3 else v)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=12),
       st.booleans(), st.floats(1e-4, 0.5))
def test_wame_matches_reference_on_random_sequences(grads, literal, lr):
    grads = [np.array(g) for g in grads]
    w0 = np.array([0.1, -0.4, 2.0])
    w, _ = run_wame(w0, grads, lr=lr, literal=literal)
    w_ref, *_ = wame_reference(w0, grads, lr=lr, literal=literal)
    np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=1e-12)


def _wame_on_quadratic(literal, c, steps, lr=1e-3):
    """Minimise E(w) = c * w^2 / 2 from w = 1: returns |w| after every step."""
    w, g = np.array([1.0]), np.zeros(1)
    opt = WAME(lr=lr, literal=literal, form="printed")
    out = []
    for _ in range(steps):
        g[...] = c * w
        opt.step([("w", w, g)])
        out.append(abs(w[0]))
    return np.array(out)


def test_wame_printed_sqrt_vs_literal_on_a_quadratic():
    """The printed form's two denominators on E(w) = c w^2 / 2, lr = 1e-3, for loss scales c = 0.01, 1, 100.

    sqrt(theta) (used unless literal=True): the step is ~ lr * Z * sign(g), so the trajectory does not depend on the
    loss scale c (|w| = 0.017 after 50 steps for every c), and once at the minimum it oscillates
    inside a floor of about lr * zeta_min / 2 = 5e-6, again for every c.
    Literal (theta, as printed): the step is ~ lr * Z / g. With large gradients (c = 100) it barely
    moves (|w| still ~0.8 after 200 steps); with small ones it jumps, and near the minimum the
    vanishing gradient makes the step blow up, so it never settles closer than ~sqrt(lr zeta_min / c):
    0.02 for c = 0.01, 4000x the default's floor.
    """
    steps = 1500
    default = {c: _wame_on_quadratic(False, c, steps) for c in (0.01, 1.0, 100.0)}
    literal = {c: _wame_on_quadratic(True, c, steps) for c in (0.01, 1.0, 100.0)}
    # default: scale-free trajectory, converges to a tiny floor for every c
    for c in (0.01, 100.0):
        np.testing.assert_allclose(default[c][:50], default[1.0][:50], rtol=1e-3)
    for c, traj in default.items():
        assert traj[199] < 1e-100, c
        assert traj[-500:].max() < 1e-5, c
    # literal: depends on the loss scale; slow for large gradients, a large floor for small ones
    assert literal[100.0][199] > 0.5
    assert literal[0.01][-500:].max() > 1e-2
    assert literal[0.01][-500:].max() > 1000 * default[0.01][-500:].max()
    assert literal[1.0][49] < 1e-5 < literal[1.0][-500:].max()


def wame_authors_reference(w0, grads, lr=1e-3, alpha=0.9, eta_plus=1.2, eta_minus=0.1, zeta_min=0.01,
                           zeta_max=100.0, eps=1e-8, beta1=0.9, beta2=0.999):
    """The authors' published form, weight by weight with Python floats (zeta unclipped, Z from 1)."""
    w = [float(v) for v in w0]
    n = len(w)
    zeta, Z, theta, gprev = [1.0] * n, [1.0] * n, [0.0] * n, [0.0] * n
    for t, g in enumerate(grads, start=1):
        lr_t = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        for i in range(n):
            gi = float(g[i])
            if gi * gprev[i] > 0:
                zeta[i] *= eta_plus
            elif gi * gprev[i] < 0:
                zeta[i] *= eta_minus
            zc = min(max(zeta[i], zeta_min), zeta_max)
            Z[i] = alpha * Z[i] + (1 - alpha) * zc
            theta[i] = beta2 * theta[i] + (1 - beta2) * gi * gi
            w[i] = w[i] - lr_t * (zc / Z[i]) * gi / (math.sqrt(theta[i]) + eps)
            gprev[i] = gi
    return np.array(w), np.array(zeta), np.array(Z), np.array(theta)


def test_wame_authors_form_matches_elementwise_reference():
    w0 = np.array([0.3, -0.2, 1.0, 0.0, -1.5])
    grads = [np.array(g) for g in HAND_GRADS] * 3          # long enough for zeta to leave [zeta_min, zeta_max]
    w, opt = run_wame(w0, grads, form="authors", lr=0.05)
    w_ref, zeta_ref, Z_ref, theta_ref = wame_authors_reference(w0, grads, lr=0.05)
    np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=1e-14)
    s = opt.state["w"]
    for slot, ref in (("zeta", zeta_ref), ("Z", Z_ref), ("theta", theta_ref)):
        np.testing.assert_allclose(s[slot], ref, rtol=1e-12, err_msg=slot)
    assert s["zeta"].min() < 0.01                           # stored unclipped, as the authors' code does


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=12), st.floats(1e-4, 0.5))
def test_wame_authors_form_matches_reference_on_random_sequences(grads, lr):
    grads = [np.array(g) for g in grads]
    w0 = np.array([0.1, -0.4, 2.0])
    w, _ = run_wame(w0, grads, form="authors", lr=lr)
    np.testing.assert_allclose(w, wame_authors_reference(w0, grads, lr=lr)[0], rtol=1e-12, atol=1e-12)


def test_wame_forms_under_mini_batch_noise():
    """Why the default is the authors' form: with noisy gradients the printed form's step collapses.

    1,000 weights, E = sum w^2 / 2 seen through noise (g = w + N(0, 1), a mini-batch-like signal-to-noise),
    lr = 1e-3, 600 steps from w = 1. Random sign flips drive zeta (and Z) to zeta_min in the printed form,
    whose step is lr * Z: it moves w 12x less (0.028 vs 0.35) than the authors' form, whose ratio zc / Z
    stays near 1.
    """
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((600, 1000))
    moved = {}
    for form in WAME.FORMS:
        w, g = np.ones(1000), np.zeros(1000)
        opt = WAME(form=form)
        for k in range(600):
            g[...] = w + noise[k]
            opt.step([("w", w, g)])
        moved[form] = 1 - np.median(w)
        zeta = opt.state["w"]["zeta"]
        if form == "printed":
            assert np.median(zeta) < 0.02 and np.median(opt.state["w"]["Z"]) < 0.05
    assert moved["authors"] > 0.3
    assert moved["authors"] > 10 * moved["printed"]


def test_wame_authors_form_keeps_zeta_finite_in_float32():
    """Thousands of agreeing (or flipping) signs would overflow zeta to inf (or 0) in float32 and freeze it."""
    w, g = np.zeros(2, dtype=np.float32), np.zeros(2, dtype=np.float32)
    opt = WAME()
    with np.errstate(over="raise", under="raise"):
        for k in range(600):
            g[...] = (1.0, (-1.0) ** k)                     # weight 0 always agrees, weight 1 always flips
            opt.step([("w", w, g)])
    zeta = opt.state["w"]["zeta"]
    assert np.isfinite(zeta).all() and (zeta > 0).all()
    assert zeta[0] == np.float32(1e30) and zeta[1] == np.float32(1e-30)
    for _ in range(3):                                      # a flip now acts at once on the capped weight
        g[...] = (-g[0], 1.0)
        opt.step([("w", w, g)])
    assert opt.state["w"]["zeta"][0] < 1e30


def test_wame_rejects_literal_with_the_authors_form_and_unknown_forms():
    with pytest.raises(ValueError, match="printed"):
        WAME(literal=True)
    with pytest.raises(ValueError, match="^WAME form must be one of authors, printed, got 'rprop'$"):
        WAME(form="rprop")
    assert build_optimizer("wame").form == "authors"
    assert build_optimizer("wame-printed").form == "printed"


def test_wame_float32_state_follows_param():
    m = FakeModel({"W": (2, 3), "b": (3,)}, dtype=np.float32)
    opt = WAME()
    m.set_grads({"W": np.ones((2, 3)), "b": -np.ones(3)})
    W_before = m.p["W"]
    opt.step(m)
    assert m.p["W"] is W_before and m.p["W"].dtype == np.float32  # updated in place
    for slots in opt.state.values():
        assert all(a.dtype == (np.int8 if k == "g_sign" else np.float32) for k, a in slots.items())


# ---------------------------------------------------------------------------- SGD / Adam vs torch
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kind,kw,torch_cls,torch_kw", [
    ("sgd", dict(lr=0.1), "SGD", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9), "SGD", dict(lr=0.1, momentum=0.9)),
    ("adam", dict(lr=0.01), "Adam", dict(lr=0.01)),
    ("adam", dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6), "Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
])
def test_sgd_adam_match_torch(kind, kw, torch_cls, torch_kw):
    rng = np.random.default_rng(1)
    m = FakeModel({"W": (3, 4), "b": (4,)}, seed=2)
    tp = {n: torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True) for n, v in m.p.items()}
    opt = build_optimizer(kind, **kw)
    topt = getattr(torch.optim, torch_cls)(list(tp.values()), **torch_kw)
    for step in range(6):
        grads = {n: rng.standard_normal(v.shape) for n, v in m.p.items()}
        if step == 3:
            opt.lr = kw["lr"] / 2
            for group in topt.param_groups:
                group["lr"] = kw["lr"] / 2
        m.set_grads(grads)
        opt.step(m)
        for n, p in tp.items():
            p.grad = torch.tensor(grads[n], dtype=torch.float64)
        topt.step()
    for n in m.p:
        np.testing.assert_allclose(m.p[n], tp[n].detach().numpy(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", ["wame", "sgd", "adam"])
def test_state_dict_round_trip_through_npz(kind):
    kw = {"momentum": 0.9} if kind == "sgd" else {}
    rng = np.random.default_rng(3)
    grads = [{"0.W": rng.standard_normal((3, 2)), "1.gamma": rng.standard_normal(2)} for _ in range(8)]
    a = FakeModel({"0.W": (3, 2), "1.gamma": (2,)})
    opt_a = build_optimizer(kind, lr=0.01, **kw)
    for g in grads[:4]:
        a.set_grads(g)
        opt_a.step(a)
    buf = io.BytesIO()
    np.savez(buf, **opt_a.state_dict())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        loaded = {k: z[k] for k in z.files}
    # a fresh model with the same weights and a fresh optimizer continue exactly like the original
    b = FakeModel({"0.W": (3, 2), "1.gamma": (2,)})
    for n in b.p:
        b.p[n][...] = a.p[n]
    opt_b = build_optimizer(kind, lr=123.0)
    opt_b.load_state_dict(loaded)
    assert opt_b.lr == 0.01 and opt_b.t == 4
    if kind == "sgd":
        assert opt_b.momentum == 0.9
    assert set(opt_b.state_dict()) == set(opt_a.state_dict())  # pending state is still reported
    for g in grads[4:]:
        a.set_grads(g)
        b.set_grads(g)
        opt_a.step(a)
        opt_b.step(b)
    for n in a.p:
        np.testing.assert_array_equal(a.p[n], b.p[n])


def test_state_dict_is_flat_host_arrays_and_copies():
    m = FakeModel({"0.W": (2, 2)})
    opt = WAME(literal=True, form="printed")
    m.set_grads({"0.W": np.ones((2, 2))})
    opt.step(m)
    d = opt.state_dict()
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in d.items())
    assert d["kind"].dtype.kind == "U" and d["lr"].shape == ()
    d["state.0.W.zeta"][...] = 7.0  # a copy: the optimizer's own state is untouched
    assert float(opt.state["0.W"]["zeta"][0, 0]) == 1.0
    opt2 = WAME()
    opt2.load_state_dict(d)
    assert opt2.literal is True and opt2.form == "printed"


def test_load_rejects_wrong_kind_and_shape():
    m = FakeModel({"w": (3,)})
    opt = Adam()
    m.set_grads({"w": np.ones(3)})
    opt.step(m)
    with pytest.raises(ValueError, match="adam"):
        WAME().load_state_dict(opt.state_dict())
    other = Adam()
    other.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="shape"):
        other.step(FakeModel({"w": (4,)}))


def test_build_optimizer():
    assert isinstance(build_optimizer("WAME"), WAME)
    assert build_optimizer("wame").lr == 1e-3
    assert build_optimizer("adam", lr=0.5).lr == 0.5
    assert isinstance(build_optimizer("sgd", lr=0.1, momentum=0.5), SGD)
    with pytest.raises(ValueError, match="adam, sgd, wame"):
        build_optimizer("rmsprop")
    assert set(optim.OPTIMIZERS) == {"wame", "sgd", "adam"}


# ---------------------------------------------------------------------------- schedules
def test_step_schedule():
    s = schedules.StepSchedule({0: 1e-3, 10: 1e-4, 20: 1e-5})
    assert [s.lr_at(e) for e in (0, 9, 10, 19, 20, 49)] == [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5]
    opt = WAME(lr=5.0)
    assert s.apply(opt, 10) == 1e-4 and opt.lr == 1e-4
    with pytest.raises(ValueError, match="rate for epoch 0, got milestones 5, 10$"):
        schedules.StepSchedule({10: 1e-4, 5: 1e-3})
    with pytest.raises(ValueError):
        s.lr_at(-1)


def test_schedule_is_described_in_the_logs_epoch_numbers():
    paper_schedule, StepSchedule = schedules.paper_schedule, schedules.StepSchedule
    assert paper_schedule(5).describe(5) == "1e-03 in epochs 1-2, 1e-04 in epoch 3, 1e-05 in epochs 4-5"
    assert paper_schedule(50).describe(50) == "1e-03 in epochs 1-10, 1e-04 in epochs 11-20, 1e-05 in epochs 21-50"
    assert StepSchedule({0: 1e-3}).describe(1) == "1e-03 in epoch 1"


def test_paper_schedule():
    assert schedules.paper_schedule(50).milestones == {0: 1e-3, 10: 1e-4, 20: 1e-5}
    assert schedules.paper_schedule(80).milestones == {0: 1e-3, 10: 1e-4, 20: 1e-5}
    assert schedules.paper_schedule(25).milestones == {0: 1e-3, 5: 1e-4, 10: 1e-5}
    assert schedules.paper_schedule(10).milestones == {0: 1e-3, 2: 1e-4, 4: 1e-5}
    assert schedules.paper_schedule(5).milestones == {0: 1e-3, 2: 1e-4, 3: 1e-5}
    assert schedules.paper_schedule(3).milestones == {0: 1e-3, 2: 1e-4}
    assert schedules.paper_schedule(1).milestones == {0: 1e-3}
    for E in range(1, 60):
        ms = sorted(schedules.paper_schedule(E).milestones)
        assert ms[0] == 0 and all(m < E for m in ms) and (len(ms) == 1 or ms[1] >= 2)
    assert schedules.PAPER_EPOCHS == 50 and schedules.PAPER_BATCH_SIZE == 128


# ------------------------------------------- device backends: CuPy (skipped without a GPU) and the CPU stand-in
@pytest.mark.parametrize("kind", ["wame", "sgd", "adam"])
def test_optimizers_on_cupy_match_numpy(kind, device):
    xp = device.xp
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((4, 3)) for _ in range(5)]
    w_np, g_np = rng.standard_normal((4, 3)), np.zeros((4, 3))
    w_cp, g_cp = xp.asarray(w_np), xp.zeros((4, 3))
    a, b = build_optimizer(kind, lr=0.01), build_optimizer(kind, lr=0.01)
    for i, g in enumerate(grads):
        g_np[...] = g
        g_cp[...] = xp.asarray(g)
        a.step([("w", w_np, g_np)])
        b.step([("w", w_cp, g_cp)])
        if i == 2:  # checkpoint the GPU optimizer and continue from host arrays put back on the GPU
            d = b.state_dict()
            assert all(isinstance(v, np.ndarray) for v in d.values())
            b = build_optimizer(kind)
            b.load_state_dict(d)
    assert all(isinstance(s, xp.ndarray) for s in b.state["w"].values())
    np.testing.assert_allclose(xp.asnumpy(w_cp), w_np, rtol=1e-12)


# ---------------------------------------------------------------------------- the element-wise contract
def _norm_clipped_sgd(elementwise):
    """SGD whose gradient is clipped to norm 1 per parameter: a reduction, different on every slice."""
    def update(self, param, grad, state):
        norm = float(np.sqrt(np.sum(grad.astype(np.float64) ** 2)))
        param -= self.lr * grad / max(1.0, norm)

    return type("NormClippedSGD", (optim.Optimizer,), {"kind": "sgd-clip", "elementwise": elementwise,
                                                       "update": update})


def test_an_optimizer_must_declare_whether_it_is_elementwise():
    with pytest.raises(TypeError, match="must declare `elementwise = True`"):
        class Undeclared(optim.Optimizer):
            kind = "undeclared"
    with pytest.raises(TypeError, match="elementwise"):
        class WAMEVariant(WAME):                   # not inherited either: a subclass may add a reduction
            pass
    assert all(cls.elementwise is True for cls in (SGD, Adam, WAME))


@pytest.mark.parametrize("workers", ["1", "3"])
def test_a_reducing_update_runs_on_whole_arrays_not_slices(workers, monkeypatch):
    """A norm-clipping rule declared elementwise=False gives the whole-array result on the threaded
    machinery's sizes; the same rule (wrongly) declared elementwise=True is cut into slices and
    clipped per slice: the result differs, which is what the declaration prevents."""
    from nanosgm.plumbing import threads
    monkeypatch.setenv("NANOSGM_THREADS", workers)
    n = 3 * threads.CHUNK_THREADS + 5                     # several pieces whatever the worker count
    rng = np.random.default_rng(0)
    w0, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    expected = w0 - np.float32(0.1) * g / np.float32(np.sqrt(np.sum(g.astype(np.float64) ** 2)))

    def step_with(elementwise):
        w = w0.copy()
        _norm_clipped_sgd(elementwise)(lr=0.1).step([("w", w, g)])
        return w

    np.testing.assert_allclose(step_with(False), expected, rtol=1e-6, atol=1e-9)
    sliced = step_with(True)
    assert np.max(np.abs(sliced - expected)) > 1e-4       # clipped piece by piece: a different update


# ---------------------------------------------------------------------------- fused fast paths vs the readable rules
def _readable_run(opt, w, grads):
    """opt.update (the readable rule) on the whole arrays, one call per step, on opt's own state layout."""
    state = opt.init_state(w)
    for g in grads:
        opt.t += 1
        opt.update(w, g, state)
    return state


def _hard_grads(rng, n, steps, dtype):
    """Float32 gradients with sign flips, exact zeros, repeats and underflowing products."""
    out = []
    for k in range(steps):
        g = rng.standard_normal(n).astype(dtype)
        g[rng.random(n) < 0.1] = 0
        g[: n // 7] = 1e-30 * (-1) ** k                    # tiny: g * g_prev underflows, the signs do not
        if k % 3 == 2:
            g[n // 7: n // 3] = out[-1][n // 7: n // 3]     # same sign as last step: zeta grows
        out.append(g)
    return out


@pytest.mark.parametrize("form,literal", [("authors", False), ("printed", False), ("printed", True)])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_wame_fused_update_equals_the_readable_rule_bit_for_bit(form, literal, workers, monkeypatch):
    """`step` (the fused path, in threaded pieces) and `update` (the rule as written, whole arrays) give the
    same weights and the same state, bit for bit."""
    from nanosgm.plumbing import threads
    monkeypatch.setenv("NANOSGM_THREADS", workers)
    rng = np.random.default_rng(7)
    n = 2 * threads.CHUNK_THREADS + 11                      # several threaded pieces and a ragged end
    grads = _hard_grads(rng, n, 30, np.float32)
    w0 = rng.standard_normal(n).astype(np.float32)
    kw = dict(lr=0.01, form=form, literal=literal)
    fast, w_fast = WAME(**kw), w0.copy()
    for g in grads:
        fast.step([("w", w_fast, g)])
    ref, w_ref = WAME(**kw), w0.copy()
    state = _readable_run(ref, w_ref, grads)
    np.testing.assert_array_equal(w_fast, w_ref)
    assert set(fast.state["w"]) == set(state)                           # one state layout
    for slot in state:
        assert fast.state["w"][slot].dtype == state[slot].dtype, slot
        np.testing.assert_array_equal(fast.state["w"][slot], state[slot], err_msg=slot)
    np.testing.assert_array_equal(state["g_sign"], np.sign(grads[-1]).astype(np.int8))
    assert state["g_sign"].dtype == np.int8
    assert (fast.state["w"]["zeta"] != 1).mean() > 0.5                 # zeta really moved


@pytest.mark.parametrize("form", ["authors", "printed"])
def test_wame_readable_rule_through_step_is_the_fused_path(form, monkeypatch):
    """use_fused = False makes `step` run the readable rule, in the same threaded pieces: the same bits."""
    from nanosgm.plumbing import threads
    monkeypatch.setenv("NANOSGM_THREADS", "2")
    rng = np.random.default_rng(11)
    n = 3 * threads.CHUNK_THREADS + 5
    grads = _hard_grads(rng, n, 12, np.float32)
    w0 = rng.standard_normal(n).astype(np.float32)
    runs = []
    for use_fused in (True, False):
        opt, w = WAME(lr=0.01, form=form), w0.copy()
        opt.use_fused = use_fused
        for g in grads:
            opt.step([("w", w, g)])
        runs.append((w, opt.state["w"]))
    (w_a, s_a), (w_b, s_b) = runs
    np.testing.assert_array_equal(w_a, w_b)
    for slot in s_a:
        np.testing.assert_array_equal(s_a[slot], s_b[slot], err_msg=slot)
    assert not np.array_equal(w_a, w0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_adam_fused_update_equals_the_readable_rule_bit_for_bit(dtype, workers, monkeypatch):
    from nanosgm.plumbing import threads
    monkeypatch.setenv("NANOSGM_THREADS", workers)
    rng = np.random.default_rng(5)
    n = 2 * threads.CHUNK_THREADS + 11
    grads = _hard_grads(rng, n, 20, dtype)
    w0 = rng.standard_normal(n).astype(dtype)
    fast, w_fast = Adam(lr=0.01, beta1=0.8, beta2=0.99), w0.copy()
    for g in grads:
        fast.step([("w", w_fast, g)])
    ref, w_ref = Adam(lr=0.01, beta1=0.8, beta2=0.99), w0.copy()
    state = _readable_run(ref, w_ref, grads)
    np.testing.assert_array_equal(w_fast, w_ref)
    for slot in ("m", "v"):
        np.testing.assert_array_equal(fast.state["w"][slot], state[slot], err_msg=slot)
    assert not np.array_equal(w_fast, w0)


def test_wame_checkpoint_with_the_old_float_previous_gradient_still_loads():
    """A checkpoint of the earlier layout ("g_prev", the previous gradient itself as a float) loads into
    the one state layout ("g_sign") and continues exactly as the run that wrote it."""
    rng = np.random.default_rng(3)
    grads = _hard_grads(rng, 1000, 12, np.float32)
    w_run = rng.standard_normal(1000).astype(np.float32)
    run = WAME(lr=0.01)
    for g in grads[:6]:
        run.step([("w", w_run, g)])
    old = {k: v for k, v in run.state_dict().items() if k != "state.w.g_sign"}
    old["state.w.g_prev"] = grads[5].copy()                    # what the earlier layout saved: the float gradient
    assert old["state.w.g_prev"].dtype == np.float32 and (np.abs(old["state.w.g_prev"]) == 1e-30).any()
    w_new = w_run.copy()
    new = WAME()
    new.load_state_dict(old)
    for g in grads[6:]:
        new.step([("w", w_new, g)])
        run.step([("w", w_run, g)])
    np.testing.assert_array_equal(w_new, w_run)
    assert set(new.state["w"]) == {"zeta", "Z", "theta", "g_sign"}
    assert "state.w.g_sign" in new.state_dict() and "state.w.g_prev" not in new.state_dict()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("eta_plus, eta_minus", [(1.2, 0.1), (2.0, 0.5), (1.0001, 0.9999), (50.0, 1e-6)])
def test_zeta_factor_on_bit_patterns_is_exactly_the_where_version(dtype, eta_plus, eta_minus):
    from nanosgm.kernels.optim import zeta_factor, zeta_factor_reference
    agree = np.array([-1, 0, 1, 1, -1, 0, 0, 1], dtype=np.int8)
    out, scratch = np.empty(8, dtype), np.empty(8, dtype)
    fast = zeta_factor(agree, eta_plus, eta_minus, out, scratch)
    ref = zeta_factor_reference(agree, eta_plus, eta_minus, dtype)
    assert fast.dtype == np.dtype(dtype) and fast.tobytes() == ref.tobytes()
    assert fast[2] == np.dtype(dtype).type(eta_plus) and fast[0] == np.dtype(dtype).type(eta_minus) and fast[1] == 1
