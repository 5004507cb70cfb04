"""Shared pytest fixtures and helpers."""

# --- data tests (nanosgm.data): real-data guard and CIFAR-format fixtures -----------------------------
import os as _os
import pathlib as _pathlib

import numpy as _np
import pytest as _pytest

# fixtures shared by several modules (made, guarded_signals, deny_opening, deny_reading, no_data, on): a module uses them by
# name, without importing them
pytest_plugins = ("faultkit", "protokit", "standinkit")


def load_tool(name: str):
    """tools/<name>.py as a module (the tools are scripts, not part of the package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, _pathlib.Path(__file__).parents[1] / "tools" / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def require_real_data(name: str = "mnist") -> _pathlib.Path:
    """The folder to pass as ``data_dir`` for the real dataset ``name``.

    MNIST is found through ``NANOSGM_DATA`` (``.ci/run`` sets it to ../shared/data); Fashion-MNIST
    also in ``/usr/share/datasets`` (``apt-get install dataset-fashion-mnist``). When absent the test
    is skipped with the reason, or fails when ``CI=true`` (CI must have the data).
    """
    from nanosgm.data import locate, registry

    spec = registry.get_spec(name)
    roots = []
    env = _os.environ.get(locate.DATA_ENV)
    if env:
        roots.append(_pathlib.Path(env))
    if name == "fashion-mnist":
        roots.append(locate.SYSTEM_ROOT)
    for root in roots:
        for d in [root / f for f in spec.folders] + [root]:
            if d.is_dir() and len(locate._idx_files(spec, d)) == len(spec.files):
                return root
    where = f"{locate.DATA_ENV}={env!r}" if env else f"{locate.DATA_ENV} is not set"
    hint = ("apt-get install dataset-fashion-mnist" if name == "fashion-mnist"
            else f"set {locate.DATA_ENV} to a folder holding {spec.folders[0]}/ with the four IDX files")
    reason = f"real {spec.title} files not found ({where}); {hint}"
    if _os.environ.get("CI", "").lower() == "true":
        _pytest.fail(reason + " -- CI=true, so real data is required")
    _pytest.skip(reason)


@_pytest.fixture(scope="session")
def mnist_real():
    """Real MNIST, loaded once per session (through NANOSGM_DATA, never downloading)."""
    import nanosgm.data as data

    return data.load("mnist", data_dir=require_real_data("mnist"), download=False, progress=False)


def synthetic_cifar_images(n: int, seed: int = 0) -> _np.ndarray:
    """(n, 3, 32, 32) uint8 images with visible structure (gradient background, coloured bar and disc),
    so that rotations, zoom, flips and ZCA show up in plots; vectorised, deterministic."""
    g = _np.random.default_rng(seed)
    yy, xx = _np.meshgrid(_np.arange(32), _np.arange(32), indexing="ij")
    base = g.uniform(0.1, 0.5, (n, 3, 1, 1)) + g.uniform(-0.01, 0.01, (n, 3, 1, 1)) * (xx + yy)[None, None]
    cy, cx, r = g.uniform(8, 24, n), g.uniform(8, 24, n), g.uniform(4, 9, n)
    disc = ((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) < (r ** 2)[:, None, None]
    bar_y = g.integers(2, 26, n)
    bar = (yy[None] >= bar_y[:, None, None]) & (yy[None] < bar_y[:, None, None] + 4) & (xx[None] < 20)
    img = base + disc[:, None] * g.uniform(0.3, 0.5, (n, 3, 1, 1)) + bar[:, None] * _np.array([0.5, 0.1, 0.0])[None, :, None, None]
    img += g.normal(0, 0.02, img.shape)
    return (_np.clip(img, 0, 1) * 255).round().astype(_np.uint8)


def write_cifar_fixture(root, which: str = "cifar10", per_batch: int = 12, layout: str = "folder",
                        protocol: int = 2, seed: int = 0) -> dict:
    """Write a small dataset in exactly the CIFAR "python version" layout under ``root``.

    ``layout``: "folder" (``cifar-10-batches-py/``), "archive" (``cifar-10-python.tar.gz``) or "both".
    Returns ``{"checksums": {file: "md5:..."}, "train": (X, y), "test": (X, y), ...}`` -- the
    ``checksums`` dict is what ``load(..., checksums=...)`` needs to accept these non-official files.
    """
    import hashlib
    import io
    import pickle
    import tarfile
    import zlib

    from nanosgm.data import cifar, registry

    spec = registry.get_spec(which)
    archive_name, _, folder = spec.archive
    root = _pathlib.Path(root)
    g = _np.random.default_rng(seed + 1)
    members, out = {}, {"train": [], "test": []}
    for split, names in (("train", spec.train_files), ("test", spec.test_files)):
        n = per_batch * (5 if which == "cifar100" and split == "train" else 1)
        for k, name in enumerate(names):
            X = synthetic_cifar_images(n, seed=seed * 1000 + zlib.crc32(name.encode()) % 997)
            if which == "cifar100":
                fine = g.integers(0, 100, n)
                coarse = fine // 5
                members[name] = cifar.dump_batch(X, fine, label_key="fine_labels",
                                                 extra={"coarse_labels": [int(c) for c in coarse]}, protocol=protocol)
                out[split].append((X, fine, coarse))
            else:
                y = g.integers(0, 10, n)
                members[name] = cifar.dump_batch(X, y, protocol=protocol)
                out[split].append((X, y, None))
    if which == "cifar100":
        meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
    else:
        meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_cases_per_batch": per_batch,
                b"num_vis": 3072}
    members[spec.meta_file] = pickle.dumps(meta, protocol=protocol)
    checksums = {name: "md5:" + hashlib.md5(data).hexdigest() for name, data in members.items()}
    if layout in ("folder", "both"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, data in members.items():
            (root / folder / name).write_bytes(data)
    if layout in ("archive", "both"):
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(root / archive_name, "w:gz") as tar:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
            for name, data in members.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        checksums[archive_name] = "md5:" + hashlib.md5((root / archive_name).read_bytes()).hexdigest()

    def cat(parts, i):
        return _np.concatenate([p[i] for p in parts]) if parts[0][i] is not None else None

    return {"checksums": checksums, "root": root, "folder": root / folder, "archive": root / archive_name,
            "train": (cat(out["train"], 0), cat(out["train"], 1), cat(out["train"], 2)),
            "test": (cat(out["test"], 0), cat(out["test"], 1), cat(out["test"], 2))}


@_pytest.fixture(autouse=False)
def isolated_data_env(tmp_path, monkeypatch):
    """No NANOSGM_DATA, an empty per-test cache, an empty system folder and no network or npm."""
    from nanosgm.data import locate

    def offline(url, *a, **k):
        raise OSError(f"network disabled in tests ({url})")

    monkeypatch.delenv(locate.DATA_ENV, raising=False)
    monkeypatch.setenv(locate.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "SYSTEM_ROOT", tmp_path / "system")
    monkeypatch.setattr(locate, "urlopen", offline)
    monkeypatch.setattr(locate, "which", lambda cmd: None)
    return tmp_path


# --- the NumPy backend for a test module: `pytestmark = pytest.mark.usefixtures("numpy_backend")` ----------
@_pytest.fixture
def numpy_backend():
    """Run the test on the NumPy backend and restore the previous backend afterwards."""
    from nanosgm import backend
    before = backend.name()
    backend.use("numpy")
    yield
    backend.use(before)


# --- device backends for the `gpu` tests: real CuPy (marked gpu, skipped without a GPU) and the CPU stand-in ----
class DeviceBackend:
    """One device backend for a test: ``name`` ("cupy" or "standin") and ``xp``, its array module (``cupy`` or
    :mod:`nanosgm.standin`). ``use()`` makes it the active backend."""

    def __init__(self, name: str) -> None:
        import importlib
        self.name = name
        self.xp = importlib.import_module("cupy" if name == "cupy" else "nanosgm.standin")

    def __repr__(self) -> str:
        return f"DeviceBackend({self.name!r})"

    def use(self) -> None:
        from nanosgm import backend
        backend.use(self.name)


def _device_params():
    from nanosgm import backend
    ok, why = backend.cupy_available()
    return [_pytest.param("cupy", marks=[_pytest.mark.gpu, _pytest.mark.skipif(
                not ok, reason=f"needs cupy and a CUDA device: {why}")]),
            "standin"]


@_pytest.fixture(params=_device_params())
def device(request):
    """Each device backend in turn: CuPy on a GPU (marked ``gpu``; skipped, with the reason, without one) and the
    CPU stand-in (nanosgm.standin: refuses host arrays as CuPy does), so every GPU test also runs on any machine.
    Not made active (call ``device.use()``); the NumPy backend is restored afterwards."""
    from nanosgm import backend
    try:
        yield DeviceBackend(request.param)
    finally:
        backend.use("numpy")
