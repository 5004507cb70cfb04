"""nanosgm.kernels.loss: softmax cross-entropy, its gradient and log-softmax as one kernel.

The kernel's reference is compared bit for bit with the arithmetic it replaced (copied below as it was), on
NumPy and on the stand-in (one launch there), for 1, 10 and 100 classes, row counts that are not multiples
of 32, float32 and float64, and non-contiguous logits; the layer that uses it keeps its results, its label
refusals and its messages, and with ``known_labels`` reads nothing back. The ``gpu`` test runs the
compiled twin on a device against the reference, to the tolerance its docstring promises.
"""
import numpy as np
import pytest

from nanosgm import backend, standin
from nanosgm.kernels import compiled_twins
from nanosgm.kernels import loss as kloss
from nanosgm.kernels.loss import softmax_cross_entropy
from nanosgm.layers import SoftmaxCrossEntropy

ROWS = [1, 5, 31, 33, 100, 129]
CLASSES = [1, 10, 100]
DTYPES = [np.float32, np.float64]
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-15)}   # the twin's


def sample(n, k, dtype, seed=0, strided=False):
    """Logits (n, k) of spread 3 with one large value (the stability case), and labels in [0, k)."""
    g = np.random.default_rng(seed)
    z = (g.standard_normal((n, 2 * k if strided else k)) * 3).astype(dtype)
    z[0, 0] = 1e4 if dtype == np.float64 else 80.0
    return (z[:, ::2] if strided else z), g.integers(0, k, n)


# --- the code the kernel replaced, as it was (SoftmaxCrossEntropy.forward, .backward, .losses) ----------
def old_loss(logits, labels):
    """(float loss, dE/dz, per-sample losses, log p)."""
    xp = backend.array_module(logits)
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    rows = xp.arange(n)
    loss = float(-log_p[rows, labels].mean())
    d = xp.exp(log_p)
    d[rows, labels] -= 1
    d /= log_p.shape[0]
    return loss, d, -log_p[rows, labels], log_p


def same_bits(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
    assert a.tobytes() == b.tobytes(), f"{what}: differs"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_the_kernel_is_the_old_arithmetic_bit_for_bit_on_numpy_and_the_standin(n, k, dtype, strided):
    z, y = sample(n, k, dtype, seed=n + k, strided=strided)
    loss0, d0, _, log_p0 = old_loss(z, y)
    loss, d, log_p = softmax_cross_entropy(z, y)
    assert loss.shape == () and loss.dtype == np.float64 and float(loss) == loss0
    same_bits(d, d0, "dE/dz")
    same_bits(log_p, log_p0, "log p")
    zd, yd = (standin.asarray(z.base)[:, ::2] if strided else standin.asarray(z)), standin.asarray(y)
    assert zd.strides == z.strides                                 # the device array is the same view
    with standin.counting() as c:
        loss_s, d_s, log_p_s = softmax_cross_entropy(zd, yd)
    assert (c.launches, c.host_reads) == (1, 0) and c.kernels["softmax_cross_entropy"] == 1
    same_bits(loss_s.get(), loss, "loss on the stand-in")
    same_bits(d_s.get(), d0, "dE/dz on the stand-in")
    same_bits(log_p_s.get(), log_p0, "log p on the stand-in")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", [(1, 1), (33, 10), (100, 100)])
def test_the_layer_keeps_its_results_on_numpy_and_the_standin(n, k, dtype):
    z, y = sample(n, k, dtype, seed=7)
    loss0, d0, per0, log_p0 = old_loss(z, y)
    f = SoftmaxCrossEntropy()
    loss = f.forward(z, y)
    assert type(loss) is float and loss == loss0
    same_bits(f.backward(), d0, "backward")
    same_bits(f.losses(), per0, "losses")
    direction = np.random.default_rng(1).standard_normal((n, k)).astype(dtype)
    p = np.exp(log_p0)
    same_bits(f.backward_dot(direction), p * (direction - (p * direction).sum(axis=1, keepdims=True)) / n, "R{dE/dz}")
    g = SoftmaxCrossEntropy()
    assert g.forward(standin.asarray(z), standin.asarray(y)) == loss0          # a float, read back
    same_bits(g.backward().get(), d0, "backward on the stand-in")
    same_bits(g.losses().get(), per0, "losses on the stand-in")


def test_forward_and_backward_cost_one_launch_and_no_read_with_known_labels():
    z, y = sample(128, 10, np.float32)
    zd, yd = standin.asarray(z), standin.asarray(y)
    f = SoftmaxCrossEntropy(loss_on_device=True)
    f.known_labels(yd, (int(y.min()), int(y.max())))
    with standin.counting() as c:
        loss = f.forward(zd, yd)
        d = f.backward()
    assert (c.launches, c.host_reads) == (1, 0)
    assert backend.is_gpu_array(loss) and loss.shape == () and loss.dtype == np.float64
    assert float(loss) == old_loss(z, y)[0]                      # the value float(loss) gave, read later
    same_bits(d.get(), old_loss(z, y)[1], "backward")
    with standin.counting() as c:                                 # other labels: checked by reading them
        f.forward(zd, standin.asarray(y))
    assert c.reads == {"tolist": 1}                               # their min and max, in one read
    assert type(SoftmaxCrossEntropy(loss_on_device=True).forward(z, y)) is float    # NumPy: always a float


@pytest.mark.parametrize("bounds, message", [
    ((0, 4), r"labels must lie in \[0, 4\); got values in \[0, 4\]"),
    ((-1, 2), r"labels must lie in \[0, 4\); got values in \[-1, 2\]"),
])
def test_known_labels_are_refused_as_read_ones_are(bounds, message):
    """The bounds the caller found are checked against K with the message the device read would give."""
    y = standin.asarray(np.array([0, 1, 2]))
    f = SoftmaxCrossEntropy(loss_on_device=True)
    f.known_labels(y, bounds)
    with standin.counting() as c, pytest.raises(ValueError, match=message):
        f.forward(standin.zeros((3, 4)), y)
    assert c.host_reads == 0
    with pytest.raises(ValueError, match=message):                # the same labels read from the device
        SoftmaxCrossEntropy().forward(np.zeros((3, 4)), np.array([bounds[0], 1, bounds[1]]))
    with pytest.raises(ValueError, match=r"labels must be shaped \(2,\)"):
        f.forward(standin.zeros((2, 4)), y)                       # the shape is still checked


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_logits_give_a_nan_loss(dtype):
    """What the training loop's divergence check reads: NaN in a row, or inf, makes the loss NaN."""
    for bad in (np.nan, np.inf):
        z, y = sample(40, 10, dtype)
        z[17, 3] = bad
        with np.errstate(invalid="ignore"):
            loss, d, _ = softmax_cross_entropy(standin.asarray(z), standin.asarray(y))
        assert np.isnan(float(loss)) and np.isnan(d.get()[17]).all() and np.isfinite(d.get()[:17]).all()


def twin_transcribed(z, y, threads=kloss.THREADS):
    """The twin's loops (nanosgm/kernels/loss.py) in NumPy scalars of z's dtype: thread r % threads takes
    row r, then the block's tree sum of the threads' partial sums."""
    t, (n, k) = z.dtype.type, z.shape
    log_p, d, part = np.empty_like(z), np.empty_like(z), np.zeros(threads, z.dtype)
    for r in range(n):
        row, m = z[r], z[r, 0]
        for v in row[1:]:
            m = v if (v > m or v != v) else m
        s = t(0)
        for v in row:
            s = t(s + np.exp(t(v - m)))
        lse = np.log(s)
        for j in range(k):
            lp = t(t(row[j] - m) - lse)
            e = np.exp(lp) - (t(1) if j == y[r] else t(0))
            log_p[r, j], d[r, j] = lp, t(e / t(n))
        part[r % threads] = t(part[r % threads] + t(t(row[y[r]] - m) - lse))
    half = threads // 2
    while half:
        part[:half] = part[:half] + part[half:2 * half]
        half //= 2
    return np.float64(-(part[0] / t(n))), d, log_p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", [(1, 1), (33, 10), (300, 10), (40, 100)])
def test_the_twins_loops_agree_with_the_reference_to_its_promise(n, k, dtype):
    """The CUDA source can't run here; its algorithm, transcribed, is within the promised tolerance
    (NumPy's exp/log on both sides: what differs is the order of the sums)."""
    z, y = sample(n, k, dtype, seed=5)
    loss0, d0, log_p0 = softmax_cross_entropy(z, y)
    loss, d, log_p = twin_transcribed(z, y)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(float(loss), float(loss0), rtol=tol["rtol"])
    np.testing.assert_allclose(d, d0, **tol)
    np.testing.assert_allclose(log_p, log_p0, rtol=tol["rtol"], atol=tol["atol"] * 100)


def test_the_kernel_has_a_compiled_twin():
    assert softmax_cross_entropy.has_twin
    assert compiled_twins()["softmax_cross_entropy"] is softmax_cross_entropy.reference


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", [(1, 1), (33, 10), (129, 100), (300, 10)])
def test_the_twin_matches_the_reference_on_the_device(device, n, k, dtype):
    """Not bit equality on a GPU (the twin's promise: CUDA's exp/log, other summation orders): TOLERANCE."""
    xp = device.xp
    z, y = sample(n, k, dtype, seed=3)
    loss0, d0, log_p0 = softmax_cross_entropy.reference(z, y)
    loss, d, log_p = softmax_cross_entropy(xp.asarray(z), xp.asarray(y))
    assert loss.dtype == np.float64 and d.dtype == dtype and log_p.dtype == dtype
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(float(loss), float(loss0), rtol=tol["rtol"])
    np.testing.assert_allclose(d.get(), d0, **tol)
    np.testing.assert_allclose(log_p.get(), log_p0, rtol=tol["rtol"], atol=tol["atol"] * 100)
    strided = xp.asarray(np.repeat(z, 2, axis=1))[:, ::2]          # a non-contiguous view of the same logits
    np.testing.assert_allclose(softmax_cross_entropy(strided, xp.asarray(y))[1].get(), d0, **tol)
