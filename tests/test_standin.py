"""nanosgm.standin, the CPU stand-in for CuPy: it refuses host arrays where CuPy does, counts kernel launches,
device -> host reads and uploads, draws NumPy's random numbers, and plugs into nanosgm.backend."""
import numpy as np
import pytest

from nanosgm import backend, standin
from nanosgm.layers import Dense, ReLU, Sequential

MIX = r"got a numpy\.ndarray \(host memory\) where a nanosgm\.standin\.ndarray \(device memory\) is needed"


@pytest.fixture
def a():
    """A (2, 3) float64 device array holding 0..5."""
    return standin.asarray(np.arange(6.0).reshape(2, 3))


# --- mixing: refused as CuPy refuses it -----------------------------------------------------------------
@pytest.mark.parametrize("op", [
    lambda a, h: a + h,                                  # device operand first
    lambda a, h: h * a,                                  # host operand first: NumPy defers to the stand-in
    lambda a, h: a @ h.reshape(3, 1),
    lambda a, h: np.maximum(a, h),                       # a NumPy ufunc
    lambda a, h: np.where(a > 1, a, h),                  # a NumPy array function
    lambda a, h: np.concatenate([a, h.reshape(1, 3)]),
    lambda a, h: standin.maximum(h, 0.0),                # the module's ufunc, on a host array alone
    lambda a, h: standin.where(a > 1, h, 0.0),           # the module's function
    lambda a, h: standin.random.default_rng(0).normal(h),
    lambda a, h: a + np.array(2.0),                      # CuPy refuses 0-d host arrays too
])
def test_mixing_with_a_host_array_raises_a_type_error_naming_both(a, op):
    with pytest.raises(TypeError, match=MIX):
        op(a, np.ones(3))


def test_host_operands_that_cupy_accepts(a):
    assert float((a * 2.0 + np.float32(1.0)).sum()) == 2 * 15 + 6      # Python and NumPy scalars
    assert (a > np.array(2.5)).get().tolist() == [[False, False, False], [True, True, True]]  # 0-d, comparison
    b = standin.asarray(np.zeros((2, 3)))
    b[0] = np.array([1.0, 2.0, 3.0])                     # a host value: uploaded
    assert b[np.array([0])].get().tolist() == [[1.0, 2.0, 3.0]]     # a host index array: uploaded


def test_no_implicit_conversion_to_the_host(a):
    with pytest.raises(TypeError, match=r"Implicit conversion to a NumPy array is not allowed.*\.get\(\)"):
        np.asarray(a)
    host = np.zeros(3)
    with pytest.raises(TypeError):
        host[...] = a[0]
    assert not isinstance(a, np.ndarray)
    with pytest.raises(AttributeError, match="use .get"):
        a.__array_interface__


def test_device_memory_is_separate_from_the_host():
    h = np.arange(3.0)
    d = standin.asarray(h)
    h[0] = 99.0
    g = d.get()
    g[1] = 99.0
    assert d.get().tolist() == [0.0, 1.0, 2.0]


def test_a_layer_with_host_weights_refuses_a_device_input():
    """The issue-23 bug in small: NumPy-built weights, a device batch. The layer fails (TypeError, as on CuPy);
    Sequential refuses first, saying what to do."""
    backend.seed(0)
    model = Sequential([Dense(3, 2, dtype="float64"), ReLU()])
    x = standin.asarray(np.ones((4, 3)))
    with pytest.raises(TypeError, match="matmul: " + MIX):
        model[0].forward(x)
    with pytest.raises(backend.BackendError, match=r"^Sequential's input is a standin array but its weights are "
                                                   r"numpy arrays; build or load the model after "
                                                   r"backend.use\('standin'\)"):
        model.forward(x)


# --- counting ------------------------------------------------------------------------------------------------
def test_counts_of_a_known_sequence(a):
    with standin.counting() as c:
        b = a * 2.0                         # 1
        b += 1.0                            # 1 (in place)
        m = b @ b.T                         # 1 (.T is a view)
        s = m.sum(axis=0)                   # 1
        v = m.reshape(-1)[1:]               # views: 0
        z = standin.zeros((2, 2))           # 1
        e = standin.empty((2, 2))           # 0
        g = b[np.array([1, 0])]             # gather: 1, and the index is uploaded
        b[0] = 7.0                          # fill: 1
        b[:, 1] = standin.asarray(np.ones(2))   # copy: 1, and an upload
        c32 = b.astype(np.float32)          # 1
        same = b.astype(np.float64, copy=False)   # a view: 0
        r = standin.random.default_rng(0).random(3)   # 1
    assert (c.launches, c.host_reads, c.uploads) == (10, 0, 2)
    assert c.kernels == {"multiply": 1, "add": 1, "matmul": 1, "sum": 1, "zeros": 1, "getitem": 1, "setitem": 2,
                         "astype": 1, "random.random": 1}
    assert all(isinstance(t, standin.ndarray) for t in (s, v, z, e, g, c32, same, r))


def test_host_reads_are_counted(a):
    with standin.counting() as c:
        total = a.sum()                     # a 0-d device array, as CuPy's reductions give: no read yet
        assert isinstance(total, standin.ndarray) and total.ndim == 0
        float(total)
        int(a[0, 1])
        bool((a > 0).any())
        if a[1, 2] > 4:                     # a truth value
            pass
        a.item(0)
        a.tolist()
        a.get()
        standin.asnumpy(a)
        f"{total:.1f}"
        backend.to_host(a)
    assert c.host_reads == 10
    assert c.reads == {"float": 1, "int": 1, "bool": 2, "item": 1, "tolist": 1, "get": 3, "format": 1}


def test_counting_blocks_nest_and_count_only_their_own_work(a):
    a + 1.0                                 # before any block: counted nowhere
    with standin.counting() as outer:
        a + 1.0
        with standin.counting() as inner:
            float(a.sum())
    assert (outer.launches, outer.host_reads) == (2, 1) and (inner.launches, inner.host_reads) == (1, 1)


# --- random numbers --------------------------------------------------------------------------------------------
def test_the_generator_gives_numpys_numbers_as_device_arrays():
    dev, host = standin.random.default_rng(7), np.random.default_rng(7)
    draws = [("random", ((3, 4),), {"dtype": np.float32}), ("standard_normal", ((5,),), {}),
             ("integers", (0, 10, 6), {}), ("uniform", (-1.0, 1.0, (2, 2)), {})]
    for method, args, kwargs in draws:
        got = getattr(dev, method)(*args, **kwargs)
        assert isinstance(got, standin.ndarray), method
        np.testing.assert_array_equal(got.get(), getattr(host, method)(*args, **kwargs), err_msg=method)
    scalar = dev.random()
    assert isinstance(scalar, standin.ndarray) and scalar.ndim == 0 and float(scalar) == host.random()


# --- the backend -----------------------------------------------------------------------------------------------
def test_the_backend_runs_on_the_stand_in(numpy_backend):
    backend.use("standin")
    assert backend.name() == "standin" and backend.xp() is standin
    d = backend.to_device(np.arange(3.0))
    assert isinstance(d, standin.ndarray) and backend.is_gpu_array(d) and backend.array_module(d) is standin
    assert not backend.is_gpu_array(np.arange(3.0)) and backend.array_module(np.arange(3.0)) is np
    assert backend.to_host(d).tolist() == [0.0, 1.0, 2.0]
    backend.seed(3)
    draw = backend.device_rng().random(4)
    assert isinstance(draw, standin.ndarray)
    np.testing.assert_array_equal(draw.get(), np.random.default_rng(4).random(4))   # device generator: seed + 1
    backend.synchronize()
    backend.check_same_backend(d, [d])
    with pytest.raises(backend.BackendError, match="input is a numpy array but its weights are standin arrays"):
        backend.check_same_backend(np.ones(3), [d])


def test_module_namespace_covers_what_nanosgm_uses():
    assert standin.float32 is np.float32 and standin.inf == np.inf and standin.dtype is np.dtype
    assert standin.cuda.runtime.getDeviceCount() == 1 and standin.cuda.Stream.null.synchronize() is None
    assert "standin" in standin.__version__
    w = standin.asarray(np.eye(3) * 2.0)
    s, u = standin.linalg.eigh(w)
    assert isinstance(s, standin.ndarray) and s.get().tolist() == [2.0, 2.0, 2.0]
    blurred = standin.ndimage.gaussian_filter(standin.asarray(np.ones((4, 4))), 1.0)
    assert isinstance(blurred, standin.ndarray)
    with pytest.raises(TypeError, match="gaussian_filter: " + MIX):
        standin.ndimage.gaussian_filter(np.ones((4, 4)), 1.0)
