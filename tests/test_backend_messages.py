"""What ``--backend cupy`` / ``NANOSGM_BACKEND=cupy`` say when cupy cannot run: one sentence per cause, the
fix once, no doubled punctuation. A machine without a GPU driver is named as such: the CUDA runtime reports
a missing driver as an "insufficient" one, which read as if an old driver were to blame."""
import sys
import types

import pytest

from nanosgm import backend

INSUFFICIENT = "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"


class FakeCudaError(RuntimeError):
    """What cupy raises from cudaGetDeviceCount: the CUDA status code under ``status``."""

    def __init__(self, status, text):
        super().__init__(text)
        self.status = status


def fake_cupy(count=None, error=None):
    def get_device_count():
        if error is not None:
            raise error
        return count
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=get_device_count)))


@pytest.fixture(autouse=True)
def numpy_backend_afterwards():
    yield
    backend.use("numpy")


def refusal(monkeypatch, cupy, driver: bool, *, from_env: bool) -> str:
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(backend, "_gpu_driver_found", lambda: driver)
    with pytest.raises(backend.BackendError) as info:
        if from_env:
            monkeypatch.setattr(backend, "_FROM_ENV", "cupy")
            backend.name()
        else:
            backend.use("cupy")
    msg = str(info.value)
    for doubled in (".;", ";;", "..", ". ;", ";."):
        assert doubled not in msg, msg
    assert msg.count("run on the CPU") == 1, msg
    return msg


@pytest.mark.parametrize("from_env", [True, False])
def test_no_gpu_driver_says_so_and_not_that_the_driver_is_old(monkeypatch, from_env):
    msg = refusal(monkeypatch, fake_cupy(error=FakeCudaError(35, INSUFFICIENT)), driver=False, from_env=from_env)
    assert "no GPU driver was found" in msg and "no GPU cupy can use" in msg, msg
    assert "insufficient" not in msg.lower() and "older" not in msg and "update the driver" not in msg, msg
    if from_env:
        assert msg.startswith("NANOSGM_BACKEND='cupy': ") and "unset NANOSGM_BACKEND or set it to numpy" in msg, msg
    else:
        assert "--backend numpy" in msg, msg


def test_an_old_driver_is_named_only_when_a_driver_is_there(monkeypatch):
    msg = refusal(monkeypatch, fake_cupy(error=FakeCudaError(35, INSUFFICIENT)), driver=True, from_env=False)
    assert "NVIDIA driver is older than cupy's CUDA runtime needs" in msg and "update the driver" in msg, msg


@pytest.mark.parametrize("cupy", [fake_cupy(count=0), fake_cupy(error=FakeCudaError(100, "cudaErrorNoDevice"))])
def test_no_cuda_gpu_says_so(monkeypatch, cupy):
    msg = refusal(monkeypatch, cupy, driver=True, from_env=True)
    assert "cupy found no CUDA GPU on this machine" in msg and "unset NANOSGM_BACKEND" in msg, msg


def test_cupy_not_importable_from_the_environment_reads_as_one_sentence(monkeypatch):
    msg = refusal(monkeypatch, None, driver=False, from_env=True)      # sys.modules["cupy"] = None: ImportError
    assert msg.startswith("NANOSGM_BACKEND='cupy': backend 'cupy' was asked for, but cupy is not importable"), msg
    assert msg.endswith('install it with `pip install -e ".[gpu]"`; unset NANOSGM_BACKEND or set it to numpy to '
                        "run on the CPU"), msg


def test_an_unknown_name_in_the_environment_says_how_to_fix_the_variable(monkeypatch):
    monkeypatch.setattr(backend, "_FROM_ENV", "bogus")
    with pytest.raises(backend.BackendError) as info:
        backend.name()
    assert str(info.value) == ("NANOSGM_BACKEND='bogus': unknown backend 'bogus'; set NANOSGM_BACKEND to 'numpy' or "
                               "'cupy', or unset it")
