"""nanosgm.backend: choosing numpy/cupy, clear errors when cupy cannot be used, seeded generators,
He initialisation drawn reproducibly from the backend's seed."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from nanosgm import backend
from nanosgm.layers import Conv2D, Dense


@pytest.fixture(autouse=True)
def numpy_backend_afterwards():
    yield
    backend.use("numpy")


# --- choosing a backend --------------------------------------------------------------------------
def test_use_numpy_sets_name_and_array_module():
    backend.use("numpy")
    assert backend.name() == "numpy"
    assert backend.xp() is np


@pytest.mark.parametrize("alias", ["NumPy", " np ", "cpu"])
def test_numpy_aliases(alias):
    backend.use(alias)
    assert backend.name() == "numpy" and backend.xp() is np


def test_unknown_backend_is_a_backend_error_naming_the_choices():
    with pytest.raises(backend.BackendError, match=r"unknown backend 'bogus'.*'numpy' or 'cupy'"):
        backend.use("bogus")
    assert backend.name() == "numpy"


def test_backend_error_is_a_runtime_error():
    assert issubclass(backend.BackendError, RuntimeError)


def test_cupy_not_importable_says_how_to_install_and_how_to_run_on_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)          # `import cupy` now raises ImportError
    ok, why = backend.cupy_available()
    assert not ok and "[gpu]" in why
    with pytest.raises(backend.BackendError) as info:
        backend.use("cupy")
    msg = str(info.value)
    assert 'pip install -e ".[gpu]"' in msg, msg
    assert "--backend numpy" in msg and "NANOSGM_BACKEND=numpy" in msg and "CPU" in msg, msg
    assert backend.name() == "numpy" and backend.xp() is np       # a failed switch changes nothing


@pytest.mark.parametrize("alias", ["gpu", "cuda", "cp"])
def test_cupy_aliases_fail_the_same_way_without_cupy(monkeypatch, alias):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(backend.BackendError, match=r"\[gpu\]"):
        backend.use(alias)


def _run_with_backend_env(value, code):
    env = dict(os.environ, NANOSGM_BACKEND=value)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_bad_environment_variable_lets_import_succeed_and_fails_at_first_use():
    proc = _run_with_backend_env("bogus", (
        "import nanosgm, nanosgm.backend as b\n"
        "print('imported')\n"
        "for f in (b.name, b.xp, b.host_rng, b.device_rng, lambda: b.seed(1), lambda: b.to_device([1.0])):\n"
        "    try:\n"
        "        f(); print('no error')\n"
        "    except b.BackendError as exc:\n"
        "        print('BackendError:', exc)\n"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "imported"
    assert len(lines) == 7 and all(line.startswith("BackendError: NANOSGM_BACKEND='bogus'") for line in lines[1:]), lines
    assert "unknown backend 'bogus'" in lines[1] and "'numpy' or 'cupy'" in lines[1]


def test_an_explicit_use_overrides_a_bad_environment_variable():
    proc = _run_with_backend_env("bogus", "import nanosgm.backend as b; b.use('numpy'); print(b.name())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "numpy"


def test_cupy_from_the_environment_without_cupy_fails_at_first_use_naming_the_variable():
    code = ("import sys; sys.modules['cupy'] = None\n"       # cupy not importable, whatever is installed
            "import nanosgm.backend as b\n"
            "try:\n    b.xp()\nexcept b.BackendError as exc:\n    print(exc)\n")
    proc = _run_with_backend_env("cupy", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("NANOSGM_BACKEND='cupy': backend 'cupy' was asked for"), proc.stdout


def test_numpy_environment_variable_imports_cleanly():
    env = dict(os.environ, NANOSGM_BACKEND="numpy")
    proc = subprocess.run([sys.executable, "-c", "import nanosgm.backend as b; print(b.name())"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "numpy"


# --- host / device arrays --------------------------------------------------------------------------
def test_to_host_returns_numpy():
    a = np.arange(4.0)
    assert backend.to_host(a) is a
    h = backend.to_host([1.0, 2.0])
    assert isinstance(h, np.ndarray)
    np.testing.assert_array_equal(h, [1.0, 2.0])


def test_to_device_on_numpy_casts():
    d = backend.to_device([1, 2], dtype="float32")
    assert isinstance(d, np.ndarray) and d.dtype == np.float32


def test_numpy_arrays_are_not_gpu_arrays():
    a = np.zeros(2)
    assert not backend.is_gpu_array(a)
    assert backend.array_module(a) is np


def test_synchronize_on_numpy_touches_neither_cupy_nor_the_generators(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)          # any use of cupy would now raise ImportError
    backend.use("numpy")
    backend.seed(3)
    expected = _draws()
    backend.seed(3)
    assert backend.synchronize() is None
    got = _draws()
    for a, b in zip(expected, got):                          # the generators did not advance
        np.testing.assert_array_equal(a, b)


# --- random numbers --------------------------------------------------------------------------------
def _draws():
    return backend.host_rng().standard_normal(8), backend.device_rng().random(8)


def test_seed_makes_host_and_device_draws_reproducible():
    backend.seed(1234)
    h1, d1 = _draws()
    backend.seed(1234)
    h2, d2 = _draws()
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(d1, d2)


def test_different_seeds_give_different_draws():
    backend.seed(1)
    h1, d1 = _draws()
    backend.seed(2)
    h2, d2 = _draws()
    assert not np.array_equal(h1, h2)
    assert not np.array_equal(d1, d2)


def test_host_and_device_streams_are_not_the_same_stream():
    """Dropout masks must not be the same numbers as the weight initialisation."""
    backend.seed(5)
    assert not np.array_equal(backend.host_rng().random(8), backend.device_rng().random(8))


def test_use_reseeds_from_the_last_seed():
    backend.seed(42)
    first = backend.host_rng().random(4)
    backend.use("numpy")
    np.testing.assert_array_equal(backend.host_rng().random(4), first)


# --- He initialisation -----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: Dense(30, 20), lambda: Conv2D(3, 4, 5)], ids=["dense", "conv"])
def test_he_init_is_reproducible_from_the_seed(make):
    backend.seed(3)
    a = make().params["W"].copy()
    backend.seed(3)
    b = make().params["W"]
    backend.seed(4)
    c = make().params["W"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_explicit_rng_overrides_the_global_generator():
    backend.seed(0)
    a = Dense(10, 10, rng=np.random.default_rng(9)).params["W"]
    backend.seed(1)
    b = Dense(10, 10, rng=np.random.default_rng(9)).params["W"]
    np.testing.assert_array_equal(a, b)


def _assert_he_statistics(w, fan_in):
    """std = sqrt(2 / fan_in) and mean 0, within ~6 standard errors of the sample statistics."""
    w = np.asarray(w, dtype=np.float64).ravel()
    n, target = w.size, math.sqrt(2.0 / fan_in)
    assert abs(w.mean()) < 6 * target / math.sqrt(n)
    # the sample std of n normals has relative standard error 1 / sqrt(2 n)
    assert abs(w.std() / target - 1) < 6 / math.sqrt(2 * n), f"std {w.std():.5f}, expected {target:.5f}"


def test_dense_he_init_std_uses_fan_in():
    backend.seed(0)
    layer = Dense(2000, 500)                                  # fan_in 2000 vs fan_out 500: a 2x different std
    assert layer.params["W"].dtype == np.float32
    _assert_he_statistics(layer.params["W"], fan_in=2000)
    np.testing.assert_array_equal(layer.params["b"], 0.0)


def test_conv_he_init_std_uses_fan_in_channels_times_kernel():
    backend.seed(0)
    layer = Conv2D(64, 16, 5, dtype="float64")               # fan_in 64*25 = 1600, fan_out 16*25 = 400
    _assert_he_statistics(layer.params["W"], fan_in=64 * 5 * 5)
    np.testing.assert_array_equal(layer.params["b"], 0.0)
