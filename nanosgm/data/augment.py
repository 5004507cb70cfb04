"""Preprocessing and data augmentation as the paper uses them (Section 5, "Experiments").

* MNIST (and Fashion-MNIST): elastic distortions (Simard, Steinkraus and Platt, "Best practices for
  convolutional neural networks applied to visual document analysis", ICDAR 2003), drawn afresh
  every epoch: :func:`elastic_distort`.
* CIFAR-10 / CIFAR-100: ZCA whitening fitted on the training split and applied to every split
  (:class:`ZCA`, :func:`zca_whiten`), then light augmentation -- random rotations, zoom and
  horizontal flips, no random cropping (:func:`random_affine`, :func:`hflip`).

Every function works on a batch ``X`` of shape (N, C, H, W) (or (N, H, W)) on the backend that owns
it (NumPy, or CuPy via ``cupyx.scipy.ndimage``), is vectorised over the batch (one
``map_coordinates`` call per chunk of images), returns a new array and never modifies its input.
Random draws come from a NumPy generator on the host, so a seed gives the same augmentation on both
backends; pass an int seed or a ``numpy.random.Generator`` as ``rng`` (``None`` uses
``nanosgm.backend.host_rng()``). Calling again with the same generator gives a new draw: that is
how the training loop gets different distortions every epoch.

The stored training set is never touched here; the SGM input updates (Eq. 21) are applied to the
stored set by :mod:`nanosgm.methods.sgm`, and augmentation is applied on top, per epoch (Eq. 22: the
random term epsilon_t).
"""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend

if TYPE_CHECKING:
    from ..layers.base import Array
    from .dataset import Dataset

__all__ = ["as_generator", "elastic_distort", "hflip", "random_affine", "ZCA", "zca_whiten", "augmenter_for",
           "warp"]

# Chunk size for map_coordinates: the coordinate array is 4 x (elements) float64.
_CHUNK_ELEMENTS = 1 << 22


def as_generator(rng: int | np.random.Generator | None) -> np.random.Generator:
    """A NumPy Generator from ``rng``: None (the global host generator), an int seed, or a Generator."""
    if rng is None:
        return backend.host_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def _ndimage(xp: ModuleType) -> Any:
    if xp is np:
        import scipy.ndimage as ndi
    elif hasattr(xp, "ndimage"):               # nanosgm.standin: its own cupyx.scipy.ndimage
        ndi = xp.ndimage
    else:
        import cupyx.scipy.ndimage as ndi
    return ndi


def _as_nchw(X: Array) -> tuple[Array, bool]:
    if X.ndim == 3:
        return X[:, None], True
    if X.ndim == 4:
        return X, False
    raise ValueError(f"expected images of shape (N, C, H, W) or (N, H, W), got {tuple(X.shape)}")


def _float_dtype(X: Array) -> np.dtype:
    return X.dtype if X.dtype.kind == "f" else np.dtype(np.float32)


def warp(X: Array, src_y: Array, src_x: Array, order: int = 1, mode: str = "constant", cval: float = 0.0) -> Array:
    """Resample every image of ``X`` (N, C, H, W) at per-image source coordinates.

    ``src_y``, ``src_x``: (N, H, W) arrays giving, for each output pixel, where in the input image
    to read (shared by all channels). Bilinear for ``order=1``. One batched ``map_coordinates`` call
    per chunk: the (image, channel) index is passed as an exact integer coordinate of a 3-D stack.
    """
    xp = backend.array_module(X)
    ndi = _ndimage(xp)
    N, C, H, W = X.shape
    flat = X.reshape(N * C, H, W)  # image and channel share one (exact, integer) coordinate axis
    out = xp.empty((N * C, H, W), dtype=_float_dtype(X))
    step = max(1, _CHUNK_ELEMENTS // max(1, C * H * W))
    for s in range(0, N, step):
        e = min(N, s + step)
        n = e - s
        coords = xp.empty((3, n, C, H, W), dtype=xp.float64)
        coords[0] = xp.arange(n * C, dtype=xp.float64).reshape(n, C, 1, 1)
        coords[1] = src_y[s:e, None]
        coords[2] = src_x[s:e, None]
        out[s * C:e * C] = ndi.map_coordinates(flat[s * C:e * C], coords.reshape(3, n * C, H, W),
                                               order=order, mode=mode, cval=cval)
    return out.reshape(N, C, H, W)


def elastic_distort(X: Array, alpha: float = 34.0, sigma: float = 4.0, rng: int | np.random.Generator | None = None,
                    order: int = 1, mode: str = "constant", cval: float = 0.0) -> Array:
    """Elastic distortion of every image in ``X`` (Simard et al. 2003, Section 2).

    For each image, two fields ``dx, dy`` of independent uniform(-1, 1) values are smoothed by a
    Gaussian of standard deviation ``sigma`` pixels and scaled by ``alpha``; the image is resampled
    at ``(y + dy, x + dx)`` by bilinear interpolation (``order=1``), zero outside (``mode="constant"``).
    Defaults ``alpha=34, sigma=4`` are the values Simard et al. report for 28x28 MNIST and that
    common MNIST implementations use. ``alpha=0`` is the identity. One field per image, shared by
    its channels. Call once per epoch to regenerate the distortions.
    """
    Xn, squeeze = _as_nchw(X)
    xp = backend.array_module(Xn)
    ndi = _ndimage(xp)
    g = as_generator(rng)
    N, C, H, W = Xn.shape
    field = g.random((N, 2, H, W), dtype=np.float32)  # host draw: same fields on both backends
    field = xp.asarray(field)
    field = 2 * field - 1  # uniform(-1, 1)
    if sigma > 0:
        field = ndi.gaussian_filter(field, sigma=(0, 0, float(sigma), float(sigma)), mode="constant", cval=0.0)
    field *= np.float32(alpha)
    yy, xx = xp.meshgrid(xp.arange(H, dtype=xp.float32), xp.arange(W, dtype=xp.float32), indexing="ij")
    out = warp(Xn, yy[None] + field[:, 0], xx[None] + field[:, 1], order=order, mode=mode, cval=cval)
    return out[:, 0] if squeeze else out


def hflip(X: Array) -> Array:
    """Mirror every image left-right (a new array); ``hflip(hflip(X))`` equals ``X``."""
    xp = backend.array_module(X)
    return xp.ascontiguousarray(X[..., ::-1])


def random_affine(X: Array, rng: int | np.random.Generator | None = None, max_rotation_deg: float = 10.0,
                  max_zoom: float = 0.1, flip: bool = True, order: int = 1, mode: str = "nearest",
                  cval: float = 0.0) -> Array:
    """The paper's CIFAR augmentation: random rotation, zoom and horizontal flip; no cropping.

    Per image: an angle uniform in [-max_rotation_deg, max_rotation_deg], a zoom factor uniform in
    [1 - max_zoom, 1 + max_zoom] (> 1 magnifies), and, if ``flip``, a left-right mirror with
    probability 1/2, all about the image centre, applied in one bilinear resampling; pixels that
    come from outside the image repeat the nearest edge (``mode="nearest"``, as Keras'
    ImageDataGenerator does). The paper names the transformations but not their ranges; 10 degrees
    and 10% are our choice of "light" augmentation.
    """
    Xn, squeeze = _as_nchw(X)
    xp = backend.array_module(Xn)
    g = as_generator(rng)
    N, C, H, W = Xn.shape
    theta = np.deg2rad(g.uniform(-max_rotation_deg, max_rotation_deg, size=N))
    zoom = g.uniform(1.0 - max_zoom, 1.0 + max_zoom, size=N)
    mirror = np.where(g.random(N) < 0.5, -1.0, 1.0) if flip else np.ones(N)
    # source = centre + R(theta) @ (v, mirror * u) / zoom, with (v, u) the centred output coordinates
    cos, sin = np.cos(theta) / zoom, np.sin(theta) / zoom
    a, b = xp.asarray(cos)[:, None, None], xp.asarray(-sin * mirror)[:, None, None]
    c, d = xp.asarray(sin)[:, None, None], xp.asarray(cos * mirror)[:, None, None]
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    v = (xp.arange(H, dtype=xp.float64) - cy)[None, :, None]
    u = (xp.arange(W, dtype=xp.float64) - cx)[None, None, :]
    src_y = cy + a * v + b * u
    src_x = cx + c * v + d * u
    out = warp(Xn, src_y, src_x, order=order, mode=mode, cval=cval)
    return out[:, 0] if squeeze else out


class ZCA:
    """ZCA whitening (Bell and Sejnowski 1997; as used for CIFAR by Goodfellow et al. 2013 and
    Springenberg et al. 2015, the paper's Ref [15]).

    ``fit`` computes, on the flattened training images, the mean ``mu`` and the covariance
    ``Sigma = U diag(S) U^T``; the whitening matrix is ``W = U diag(1 / sqrt(S + eps)) U^T`` and
    ``transform(X) = (X - mu) W``. ``eps`` regularises the small eigenvalues (on [0, 1] pixel data,
    eps = 1e-2 keeps noise amplification moderate; eps -> 0 gives exactly identity covariance).
    Statistics are computed in float64 on the backend that owns the training data; ``transform``
    works on either backend and returns ``X``'s float dtype.
    """

    def __init__(self, eps: float = 1e-2) -> None:
        self.eps = float(eps)
        self.mean: np.ndarray | None = None           # host arrays, set by fit
        self.W: np.ndarray | None = None
        self.W_inv: np.ndarray | None = None
        self.eigenvalues: np.ndarray | None = None
        self._device: dict[tuple[str, str], tuple[Array, Array, Array]] = {}  # (module, dtype) -> (mean, W, W_inv)

    def fit(self, X: Array, eps: float | None = None) -> "ZCA":
        if eps is not None:
            self.eps = float(eps)
        xp = backend.array_module(X)
        N = X.shape[0]
        flat = X.reshape(N, -1)
        mean = flat.mean(axis=0, dtype=xp.float64)
        D = flat.shape[1]
        if N < D:
            # Fewer images than dimensions: the covariance has rank <= N. A thin SVD of the centred
            # data gives its non-zero eigenpairs exactly; the null space gets eigenvalue 0, i.e.
            # scale 1/sqrt(eps). Much cheaper than a D x D eigendecomposition (plots, quick runs).
            _, sv, Vt = xp.linalg.svd(flat.astype(xp.float64) - mean, full_matrices=False)
            S = sv ** 2 / N
            P = xp.eye(D) - Vt.T @ Vt
            W = (Vt.T * (1.0 / xp.sqrt(S + self.eps))) @ Vt + P / np.sqrt(self.eps)
            W_inv = (Vt.T * xp.sqrt(S + self.eps)) @ Vt + P * np.sqrt(self.eps)
            S = xp.concatenate([xp.zeros(D - S.shape[0]), S[::-1]])
        else:
            cov = xp.zeros((D, D), dtype=xp.float64)
            step = max(1, (1 << 24) // D)
            for s in range(0, N, step):
                chunk = flat[s:s + step].astype(xp.float64) - mean
                cov += chunk.T @ chunk
            cov /= N
            if xp is np:  # LAPACK's MRRR driver (evr), the faster one for a large dense covariance
                import scipy.linalg
                S, U = scipy.linalg.eigh(cov, driver="evr", overwrite_a=True)
            else:
                S, U = xp.linalg.eigh(cov)
            S = xp.clip(S, 0.0, None)
            W = (U * (1.0 / xp.sqrt(S + self.eps))) @ U.T
            W_inv = (U * xp.sqrt(S + self.eps)) @ U.T
        self.mean = backend.to_host(mean)
        self.eigenvalues = backend.to_host(S)
        self.W = backend.to_host(W)
        self.W_inv = backend.to_host(W_inv)
        self.shape = tuple(X.shape[1:])
        self._device = {}
        return self

    def _params(self, xp: ModuleType, dtype: np.dtype) -> tuple[Array, Array, Array]:
        if self.W is None:
            raise RuntimeError("ZCA.transform called before fit")
        key = (xp.__name__, np.dtype(dtype).str)
        if key not in self._device:
            mean, W, W_inv = (xp.asarray(a, dtype=dtype) for a in (self.mean, self.W, self.W_inv))
            self._device[key] = (mean, W, W_inv)
        return self._device[key]

    def transform(self, X: Array) -> Array:
        """Whitened copy of ``X`` (same shape)."""
        xp = backend.array_module(X)
        dtype = _float_dtype(X)
        mean, W, _ = self._params(xp, dtype)
        flat = X.reshape(X.shape[0], -1).astype(dtype, copy=False)
        return ((flat - mean) @ W).reshape(X.shape)

    def inverse_transform(self, Z: Array) -> Array:
        """Undo :meth:`transform` (for plotting whitened or augmented images in pixel space)."""
        xp = backend.array_module(Z)
        dtype = _float_dtype(Z)
        mean, _, W_inv = self._params(xp, dtype)
        return (Z.reshape(Z.shape[0], -1).astype(dtype, copy=False) @ W_inv + mean).reshape(Z.shape)

    def fit_transform(self, X: Array, eps: float | None = None) -> Array:
        return self.fit(X, eps).transform(X)


def zca_whiten(dataset: Dataset, eps: float = 1e-2) -> tuple[Dataset, ZCA]:
    """(new Dataset with every split ZCA-whitened, the fitted ZCA): fitted on the training split only."""
    zca = ZCA(eps).fit(dataset.X_train)
    new = dataset.replace(X_train=zca.transform(dataset.X_train), X_val=zca.transform(dataset.X_val),
                          X_test=zca.transform(dataset.X_test), info={**dataset.info, "zca_eps": eps})
    return new, zca


def augmenter_for(name: str, **options) -> Callable[..., Array]:
    """The paper's per-epoch augmentation for dataset ``name`` as a callable ``f(X, rng) -> X_aug``.

    "mnist" / "fashion-mnist": :func:`elastic_distort` (options: alpha, sigma, ...);
    "cifar10" / "cifar100": :func:`random_affine` (options: max_rotation_deg, max_zoom, flip, ...).
    ZCA is preprocessing, not augmentation: apply :func:`zca_whiten` once after loading.
    """
    from .registry import canonical_name

    key = canonical_name(name)
    if key in ("mnist", "fashion-mnist"):
        def augment(X: Array, rng: int | np.random.Generator | None = None) -> Array:
            return elastic_distort(X, rng=rng, **options)
    else:
        def augment(X: Array, rng: int | np.random.Generator | None = None) -> Array:
            return random_affine(X, rng=rng, **options)
    augment.__name__ = f"augment_{key.replace('-', '_')}"
    augment.__doc__ = f"Per-epoch augmentation for {key} ({options or 'defaults'})."
    return augment
