"""Properties of the preprocessing and augmentation (Section 5): ZCA, elastic distortions,
rotations/zoom/flips. Seeded, vectorised, never in place."""
from __future__ import annotations

import numpy as np
import pytest

import nanosgm.data as data
from conftest import synthetic_cifar_images
from nanosgm import backend


@pytest.fixture
def digits():
    """Small MNIST-like batch: strokes on a zero background (no real data needed)."""
    g = np.random.default_rng(1)
    X = np.zeros((6, 1, 28, 28), np.float32)
    X[:, :, 6:22, 12:16] = 1.0
    X[:, :, 10:13, 6:22] = g.uniform(0.5, 1.0, (6, 1, 1, 1))
    return X


@pytest.fixture
def cifar_like():
    return synthetic_cifar_images(10, seed=2).astype(np.float32) / 255


# --- ZCA ----------------------------------------------------------------------------------------------

def test_zca_whitened_training_data_has_identity_covariance():
    g = np.random.default_rng(0)
    A = g.normal(size=(48, 48))
    X = (g.normal(size=(4000, 48)) @ A * 0.1 + 0.5).reshape(4000, 3, 4, 4)  # strongly correlated pixels
    zca = data.ZCA(eps=1e-9).fit(X)
    Z = zca.transform(X).reshape(4000, -1)
    cov = np.cov(Z, rowvar=False, bias=True)
    assert np.abs(Z.mean(axis=0)).max() < 1e-6
    assert np.abs(cov - np.eye(48)).max() < 1e-4
    assert np.abs(np.cov(X.reshape(4000, -1), rowvar=False) - np.eye(48)).max() > 0.5  # it was not white before
    # ZCA, unlike PCA whitening, stays close to the input (symmetric W): inverse recovers it
    assert np.allclose(zca.inverse_transform(zca.transform(X)), X, atol=1e-6)


def test_zca_eps_shrinks_and_fit_on_train_applies_to_all_splits(cifar_like):
    X = np.ascontiguousarray(cifar_like[:, :, 8:16, 8:16])  # 192 dimensions keep the eigendecomposition quick
    zca = data.ZCA(eps=1e-2).fit(X)
    Z = zca.transform(X).reshape(len(X), -1)
    assert np.all(np.linalg.eigvalsh(np.cov(Z, rowvar=False, bias=True)) < 1.0 + 1e-6)  # eps: eigenvalues S/(S+eps)
    assert zca.transform(X).dtype == np.float32 and np.array_equal(X, cifar_like[:, :, 8:16, 8:16])  # untouched
    ds = data.Dataset("cifar10", X[:6], np.zeros(6, np.int64), X[6:8], np.zeros(2, np.int64), X[8:], np.zeros(2, np.int64),
                      10, (3, 8, 8))
    white, zca2 = data.zca_whiten(ds, eps=1e-2)
    assert np.allclose(zca2.mean, X[:6].reshape(6, -1).mean(axis=0))  # fitted on the training split only
    assert np.allclose(white.X_test, zca2.transform(X[8:])) and np.array_equal(ds.X_test, X[8:])


# --- elastic distortions -----------------------------------------------------------------------------

def test_elastic_with_alpha_zero_is_the_identity(digits):
    out = data.elastic_distort(digits, alpha=0.0, sigma=4.0, rng=0)
    assert np.array_equal(out, digits)
    assert np.array_equal(data.elastic_distort(digits[:, 0], alpha=0.0, rng=0), digits[:, 0])  # (N, H, W) too


def test_elastic_is_seeded_differs_between_epochs_and_not_in_place(digits):
    before = digits.copy()
    a = data.elastic_distort(digits, rng=7)
    b = data.elastic_distort(digits, rng=7)
    assert np.array_equal(a, b)
    g = np.random.default_rng(7)
    epoch1, epoch2 = data.elastic_distort(digits, rng=g), data.elastic_distort(digits, rng=g)
    assert np.array_equal(epoch1, a) and not np.allclose(epoch1, epoch2)
    assert np.array_equal(digits, before)
    assert a.shape == digits.shape and a.dtype == np.float32
    assert not np.allclose(a, digits)
    # a smooth, moderate deformation: mass roughly preserved, values stay in range, images differ from each other's fields
    assert 0.0 <= a.min() and a.max() <= 1.0 + 1e-6
    assert np.allclose(a.sum(axis=(1, 2, 3)), digits.sum(axis=(1, 2, 3)), rtol=0.2)
    assert not np.allclose(a[0], a[1])


def test_elastic_matches_a_per_image_reference(digits):
    """The batched implementation equals Simard's recipe written out image by image with scipy."""
    from scipy import ndimage

    alpha, sigma = 34.0, 4.0
    batched = data.elastic_distort(digits, alpha=alpha, sigma=sigma, rng=3)
    fields = 2 * np.random.default_rng(3).random((len(digits), 2, 28, 28), dtype=np.float32) - 1
    yy, xx = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    for i, img in enumerate(digits[:, 0]):
        dy = ndimage.gaussian_filter(fields[i, 0], sigma, mode="constant") * alpha
        dx = ndimage.gaussian_filter(fields[i, 1], sigma, mode="constant") * alpha
        ref = ndimage.map_coordinates(img, [yy + dy, xx + dx], order=1, mode="constant", cval=0.0)
        assert np.allclose(batched[i, 0], ref, atol=1e-5)
    # displacements of a pixel or two: the regime Simard et al. describe for alpha=34, sigma=4
    d = np.hypot(ndimage.gaussian_filter(fields[:, 0], (0, sigma, sigma), mode="constant") * alpha,
                 ndimage.gaussian_filter(fields[:, 1], (0, sigma, sigma), mode="constant") * alpha)
    assert 0.5 < np.median(d) < 4.0


# --- flips and affine ---------------------------------------------------------------------------------

def test_two_horizontal_flips_are_the_identity(cifar_like):
    f = data.hflip(cifar_like)
    assert np.array_equal(f[..., 0], cifar_like[..., -1]) and not np.array_equal(f, cifar_like)
    assert np.array_equal(data.hflip(f), cifar_like)
    f[0, 0, 0, 0] = 99.0
    assert cifar_like[0, 0, 0, 0] != 99.0  # a copy, not a view


def test_affine_identity_and_pure_flip(cifar_like):
    ident = data.random_affine(cifar_like, rng=0, max_rotation_deg=0, max_zoom=0, flip=False)
    assert np.allclose(ident, cifar_like, atol=1e-6)
    g = np.random.default_rng(5)
    flipped = data.random_affine(cifar_like, rng=5, max_rotation_deg=0, max_zoom=0, flip=True)
    g.uniform(size=len(cifar_like)), g.uniform(size=len(cifar_like))
    which = g.random(len(cifar_like)) < 0.5
    assert 0 < which.sum() < len(which)
    assert np.allclose(flipped[which], data.hflip(cifar_like[which]), atol=1e-6)
    assert np.allclose(flipped[~which], cifar_like[~which], atol=1e-6)


def test_affine_is_seeded_differs_between_epochs_and_not_in_place(cifar_like):
    before = cifar_like.copy()
    a = data.random_affine(cifar_like, rng=11)
    assert np.array_equal(a, data.random_affine(cifar_like, rng=11))
    g = np.random.default_rng(11)
    e1, e2 = data.random_affine(cifar_like, rng=g), data.random_affine(cifar_like, rng=g)
    assert np.array_equal(e1, a) and not np.allclose(e1, e2)
    assert np.array_equal(cifar_like, before) and a.shape == cifar_like.shape
    # light augmentation: the images stay recognisably close to the originals
    assert np.abs(a - cifar_like).mean() < 0.15


def test_rotation_and_zoom_match_scipy_reference():
    """Per image, the drawn rotation equals scipy.ndimage.rotate (about the centre) and the drawn zoom
    equals scipy.ndimage.zoom's magnification about the centre (checked on the image interior)."""
    from scipy import ndimage

    X = synthetic_cifar_images(4, seed=4).astype(np.float32) / 255
    out = data.random_affine(X, rng=9, max_rotation_deg=30, max_zoom=0, flip=False)
    angles = np.random.default_rng(9).uniform(-30, 30, 4)
    for img, res, ang in zip(X, out, angles):
        ref = ndimage.rotate(img, -ang, axes=(1, 2), reshape=False, order=1, mode="nearest")
        assert np.allclose(res[:, 4:-4, 4:-4], ref[:, 4:-4, 4:-4], atol=1e-4)
    # a vanishing rotation range (no zoom, no flip) is the identity
    out90 = data.random_affine(X, rng=0, max_rotation_deg=1e-12, flip=False, max_zoom=0)
    assert np.allclose(out90, X, atol=1e-5)
    zoomed = data.random_affine(X, rng=2, max_rotation_deg=0, max_zoom=0.25, flip=False)
    g = np.random.default_rng(2)
    g.uniform(0, 0, 4)
    z = g.uniform(0.75, 1.25, 4)
    for img, res, f in zip(X, zoomed, z):
        # output pixel p reads input at c + (p - c) / f
        c = 15.5
        p = np.arange(32.0)
        src = c + (p - c) / f
        ref = ndimage.map_coordinates(img, np.meshgrid(np.arange(3.0), src, src, indexing="ij"), order=1, mode="nearest")
        assert np.allclose(res, ref, atol=1e-5)


def test_augmenter_for_each_dataset(digits, cifar_like):
    mn = data.augmenter_for("mnist")
    assert np.array_equal(mn(digits, 1), data.elastic_distort(digits, rng=1))
    ci = data.augmenter_for("CIFAR-10", max_rotation_deg=5)
    assert np.array_equal(ci(cifar_like, 1), data.random_affine(cifar_like, rng=1, max_rotation_deg=5))
    assert data.augmenter_for("fashion-mnist", alpha=0)(digits, 0).tobytes() == digits.tobytes()
    with pytest.raises(ValueError):
        data.augmenter_for("svhn")
    with pytest.raises(TypeError):
        data.elastic_distort(digits, rng="seed")


def test_global_host_rng_is_used_when_no_rng_is_given(digits):
    backend.seed(123)
    a = data.elastic_distort(digits)
    backend.seed(123)
    assert np.array_equal(a, data.elastic_distort(digits))


def test_real_mnist_epoch_sample(mnist_real):
    X = mnist_real.X_train[:256]
    out = data.elastic_distort(X, rng=0)
    assert out.shape == X.shape and not np.shares_memory(out, X)
    assert np.array_equal(X, mnist_real.X_train[:256])
    # the distorted digit keeps most of its overlap with the original
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(out, X)]
    assert 0.5 < np.median(corr) < 0.999


def test_zca_low_rank_path_matches_the_eigendecomposition():
    """With fewer images than dimensions the SVD shortcut gives the same whitening matrix."""
    X = synthetic_cifar_images(40, seed=6).astype(np.float32)[:, :, :6, :6] / 255  # 40 images, 108 dims
    low = data.ZCA(eps=1e-2).fit(X)
    full = data.ZCA(eps=1e-2)
    Xbig = np.concatenate([X] * 3)  # same covariance, N > D: takes the eigendecomposition path
    full.fit(Xbig)
    assert np.allclose(low.W, full.W, atol=1e-6) and np.allclose(low.W_inv, full.W_inv, atol=1e-8)
    assert np.allclose(np.sort(low.eigenvalues), np.sort(full.eigenvalues), atol=1e-10)


def test_cupy_backend_matches_numpy(digits, cifar_like, device):
    """On a device (CuPy: cupyx.scipy.ndimage; the stand-in: scipy.ndimage behind its mixing rules) the same
    seed gives the same augmentation as on the CPU."""
    xp = device.xp
    gd, gc = xp.asarray(digits), xp.asarray(cifar_like)
    el = data.elastic_distort(gd, rng=5)
    assert isinstance(el, xp.ndarray) and np.allclose(el.get(), data.elastic_distort(digits, rng=5), atol=1e-4)
    af = data.random_affine(gc, rng=5)
    assert isinstance(af, xp.ndarray) and np.allclose(af.get(), data.random_affine(cifar_like, rng=5), atol=1e-4)
    assert np.array_equal(data.hflip(gc).get(), data.hflip(cifar_like))
    small = np.ascontiguousarray(cifar_like[:, :, :4, :4])
    z_gpu = data.ZCA(1e-2).fit(xp.asarray(small))
    z_cpu = data.ZCA(1e-2).fit(small)
    assert np.allclose(z_gpu.W, z_cpu.W, atol=1e-6)
    assert np.allclose(z_gpu.transform(xp.asarray(small)).get(), z_cpu.transform(small), atol=1e-4)
