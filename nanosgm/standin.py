"""A CPU stand-in for CuPy: device arrays that live in NumPy, refuse to mix with host arrays, and count.

``backend.use("standin")`` (or ``NANOSGM_BACKEND=standin``) makes this module the array module, as
``backend.use("cupy")`` makes it ``cupy``. Every nanosgm code path then runs on the CPU with CuPy's rules,
so a GPU-only bug fails on any machine, and the cost a GPU would pay can be counted:

    >>> import numpy as np
    >>> from nanosgm import standin
    >>> a = standin.asarray(np.arange(4.0))              # host -> device: one upload
    >>> with standin.counting() as c:
    ...     b = standin.exp(a) * 2                        # two element-wise kernels
    ...     total = float(b.sum())                        # one reduction, one device -> host read
    >>> (c.launches, c.host_reads, c.uploads)
    (3, 1, 0)
    >>> a + np.ones(4)                                    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: add: got a numpy.ndarray (host memory) where a nanosgm.standin.ndarray (device memory) is needed, ...

What it models (from CuPy's own code, ``cupy/_core/core.pyx`` and ``_kernel.pyx``)
-------------------------------------------------------------------------------------
* **Separate memory.** :class:`ndarray` is not a ``numpy.ndarray``; ``np.asarray(a)`` raises ``TypeError``
  with CuPy's message. Going to the host is explicit: ``a.get()`` or :func:`asnumpy`.
* **No mixing.** A ufunc, an operator (``+``, ``@``, ``>`` ...), a NumPy function (``np.where(a, ...)``), a
  function of this module (``standin.maximum``) or a generator draw refuses a ``numpy.ndarray`` operand with a
  ``TypeError`` naming both types; a list or tuple operand of a ufunc too. Python and NumPy scalars
  (``np.float32(2)``) are fine. As in CuPy, a 0-d ``numpy.ndarray`` is refused as well, except by the six
  comparisons (CuPy reads it with ``.item()`` there).
* **Host data accepted where CuPy accepts it**, each counted as an *upload*: :func:`asarray` / :func:`array`
  of host data, ``a[k] = host_array`` (and ``host_list``), NumPy integer or boolean index arrays, ``a.set(h)``.
* **CuPy's results**: a reduction, a full integer index or a draw without ``size`` gives a 0-d device array,
  not a NumPy scalar; ``bool``/``float``/``int`` of it is a host read. ``ndarray`` has no ``__index__``.

What it counts (:func:`counting`)
---------------------------------
``launches``: one per ufunc call (operators and in-place operators included; also ``reduce``, ``accumulate``,
``outer``, ``at``), per array-method or array-function call that computes (``a.sum()``, ``np.where``,
``standin.zeros``, ``a.copy()``, ``a.astype(t)``, a generator draw, an ``ndimage`` filter), per fancy-index
get and per index set (any ``a[k] = v``). No launch: a view (basic slicing, ``reshape``/``transpose``/``.T``/
``astype(copy=False)``/``ascontiguousarray`` when NumPy returns a view of the input), metadata (``shape``,
``dtype``, ``ndim``, ``result_type`` ...), ``empty`` and ``empty_like``.
``host_reads``: device -> host reads: ``float()``, ``int()``, ``complex()``, ``bool()`` (a truth value, e.g.
``if (a > 0).any():``), ``.item()``, ``.tolist()``, ``.get()``, :func:`asnumpy`, and printing (``repr``,
``str``, ``format``). ``uploads``: host -> device copies, as listed above.

What it does not model
----------------------
* Time, memory, streams and asynchrony: every operation runs at once, in NumPy, on the CPU.
* The exact kernel count of one call. The stand-in counts one per call; CuPy may launch several (``var``/
  ``std``, ``argsort``, ``nonzero``, a matmul that first copies a non-contiguous operand, a separable
  ``gaussian_filter`` with one pass per axis, cuBLAS's own kernels) or fuse several (``cupy.fuse``,
  ``ElementwiseKernel``). Read the counts as "calls that would each launch at least one kernel".
* Layout: CuPy's element-wise results are C-contiguous, NumPy keeps the input's order; the stand-in keeps
  NumPy's, so a copy CuPy would make for a transposed operand is not counted.
* Numerics: the numbers are NumPy's. CuPy's reductions and GEMMs may differ in the last bits, and its random
  generator draws different numbers: ``standin.random.default_rng(s)`` gives NumPy's ``default_rng(s)``
  numbers, so stand-in and NumPy runs can be compared exactly.
* Coverage: any NumPy function is delegated, including the few CuPy lacks; out-of-bounds fancy indices raise
  (CuPy wraps them around).
"""
from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, Protocol, TypeAlias

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = ["ndarray", "asarray", "array", "asnumpy", "counting", "Counts", "random", "linalg", "ndimage",
           "cuda", "__version__"]

__version__ = f"0.0+standin.numpy{np.__version__}"

_Order = Literal["K", "A", "C", "F"]        # the memory layouts NumPy's ``order=`` takes

_COMPARISONS = frozenset({"less", "less_equal", "equal", "not_equal", "greater", "greater_equal"})
# NumPy functions and methods that only read metadata or allocate without writing: no kernel.
_NO_KERNEL = frozenset({"empty", "empty_like", "shape", "ndim", "size", "result_type", "can_cast",
                        "may_share_memory", "shares_memory", "min_scalar_type", "broadcast_shapes", "isscalar",
                        "iscomplexobj", "isrealobj", "iterable"})


# ------------------------------------------------------------------------------------------ counting
@dataclass
class Counts:
    """What a block of code asked of the (pretend) device; see the module docstring for what each counts.

    ``kernels`` and ``reads`` break ``launches`` and ``host_reads`` down by operation name."""
    launches: int = 0
    host_reads: int = 0
    uploads: int = 0
    kernels: Counter = field(default_factory=Counter)
    reads: Counter = field(default_factory=Counter)


_ACTIVE: list = []          # the Counts of every open counting() block (they nest)


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """``with counting() as c:`` -- ``c`` (a :class:`Counts`) holds the launches, host reads and uploads of
    the block. Blocks nest: an inner block's work counts in the outer one too."""
    c = Counts()
    _ACTIVE.append(c)
    try:
        yield c
    finally:
        _ACTIVE.remove(c)


def _launch(op: str, n: int = 1) -> None:
    if not n:
        return
    for c in _ACTIVE:
        c.launches += n
        c.kernels[op] += n


def _read(kind: str) -> None:
    for c in _ACTIVE:
        c.host_reads += 1
        c.reads[kind] += 1


def _upload(n: int = 1) -> None:
    for c in _ACTIVE:
        c.uploads += n


# ------------------------------------------------------------------------------------------ mixing rules
def _mixing_error(op: str, host: object) -> TypeError:
    return TypeError(f"{op}: got a {type(host).__module__}.{type(host).__name__} (host memory) where a "
                     f"nanosgm.standin.ndarray (device memory) is needed, as CuPy refuses host arrays here; move "
                     f"it with xp.asarray(...), or bring the device arrays back with .get()")


def _refuse_host(values: Iterable, op: str, allow_0d: bool = False, allow_sequences: bool = True) -> None:
    """TypeError when ``values`` (walked through lists, tuples and dicts) hold a host ``numpy.ndarray``."""
    for v in values:
        if isinstance(v, np.ndarray):
            if not (allow_0d and v.ndim == 0):
                raise _mixing_error(op, v)
        elif isinstance(v, (list, tuple)):
            if not allow_sequences:
                raise _mixing_error(op, v)
            _refuse_host(v, op, allow_0d)
        elif isinstance(v, dict):
            _refuse_host(v.values(), op, allow_0d)


def _unwrap(v: object) -> Any:
    """``v`` with every stand-in array replaced by its NumPy array (through lists, tuples and dicts)."""
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, list):
        return [_unwrap(x) for x in v]
    if isinstance(v, tuple):
        return type(v)(*map(_unwrap, v)) if hasattr(v, "_fields") else tuple(map(_unwrap, v))
    if isinstance(v, dict):
        return {k: _unwrap(x) for k, x in v.items()}
    return v


def _wrap(v: object) -> Any:
    """NumPy results as stand-in arrays: arrays and NumPy scalars (as 0-d arrays, CuPy's results)."""
    if isinstance(v, np.ndarray):
        return ndarray(v)
    if isinstance(v, np.generic):
        return ndarray(np.asarray(v))
    if isinstance(v, list):
        return [_wrap(x) for x in v]
    if isinstance(v, tuple):
        return type(v)(*map(_wrap, v)) if hasattr(v, "_fields") else tuple(map(_wrap, v))
    return v


def _arrays(v: object) -> list:
    """The NumPy arrays in ``v`` (through lists, tuples and dicts)."""
    if isinstance(v, np.ndarray):
        return [v]
    if isinstance(v, (list, tuple)):
        return [a for x in v for a in _arrays(x)]
    if isinstance(v, dict):
        return _arrays(list(v.values()))
    return []


def _kernels(name: str, result: object, inputs: list, has_out: bool) -> int:
    """0 for metadata, allocation without writing and views of an input; else 1 (see the module docstring)."""
    if name in _NO_KERNEL:
        return 0
    outs = _arrays(result)
    if outs and not has_out and all(any(np.may_share_memory(o, i) for i in inputs) for o in outs):
        return 0
    return 1


def _run(name: str, func: Callable, args: tuple, kwargs: dict) -> Any:
    """Call NumPy's ``func`` on the unwrapped arguments, count its kernel, wrap its result."""
    raw_args, raw_kwargs = _unwrap(args), _unwrap(kwargs)
    result = func(*raw_args, **raw_kwargs)
    _launch(name, _kernels(name, result, _arrays(raw_args) + _arrays(raw_kwargs), "out" in kwargs))
    return _wrap(result)


def _is_advanced(key: tuple) -> bool:
    """Whether an index tuple uses integer or boolean arrays (a gather/scatter kernel), not just views."""
    return any(isinstance(k, (np.ndarray, ndarray, list)) or isinstance(k, (bool, np.bool_)) for k in key)


def _host_key(key: tuple) -> tuple:
    """The index with stand-in index arrays unwrapped; NumPy index arrays and lists are uploads (as in CuPy)."""
    _upload(sum(isinstance(k, (np.ndarray, list)) for k in key))
    return tuple(_unwrap(k) for k in key)


# ------------------------------------------------------------------------------------------ the array
class ndarray(NDArrayOperatorsMixin):
    """A device array of the stand-in (CuPy's ``cupy.ndarray``): a NumPy array the host may not touch.

    Made by :func:`asarray`, :func:`array`, this module's functions and operations on other stand-in arrays;
    ``ndarray(a)`` wraps the NumPy array ``a`` without copying or counting (for this module's own use).
    Attributes and methods are NumPy's (``shape``, ``dtype``, ``sum``, ``reshape`` ...), counted and with
    results wrapped as the module docstring says."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__: ClassVar[None] = None     # type: ignore[assignment]  # unhashable, as numpy.ndarray (typeshed's idiom)

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    # -- host access: refused implicitly, counted explicitly --------------------------------------------
    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> NoReturn:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly. (nanosgm.standin, as CuPy)")

    def get(self, stream: Any = None, order: _Order = "C", out: np.ndarray | None = None) -> np.ndarray:
        """A NumPy copy of the array (a device -> host read)."""
        _read("get")
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    def set(self, arr: np.ndarray, stream: Any = None) -> None:
        """Copy the host array ``arr`` into this array (an upload)."""
        _upload()
        self._a[...] = arr

    def item(self, *args: int) -> Any:
        _read("item")
        return self._a.item(*args)

    def tolist(self) -> Any:
        _read("tolist")
        return self._a.tolist()

    def __float__(self) -> float:
        _read("float")
        return float(self._a)

    def __int__(self) -> int:
        _read("int")
        return int(self._a)

    def __complex__(self) -> complex:
        _read("complex")
        return complex(self._a)

    def __bool__(self) -> bool:
        value = bool(self._a)                  # ValueError for more than one element, as CuPy
        _read("bool")
        return value

    def __repr__(self) -> str:
        _read("repr")
        return repr(self._a).replace("array(", "standin.array(", 1)

    def __str__(self) -> str:
        _read("str")
        return str(self._a)

    def __format__(self, spec: str) -> str:
        _read("format")
        return format(self._a, spec) if self._a.ndim else format(self._a.item(), spec)

    # -- container ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    def __iter__(self) -> Iterator[ndarray]:
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __getitem__(self, key: Any) -> ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if not _is_advanced(key):
            out = self._a[key]                               # a view: no kernel
            return ndarray(np.asarray(out) if isinstance(out, np.generic) else out)
        _launch("getitem")                                   # a gather kernel
        return _wrap(self._a[_host_key(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        key = key if isinstance(key, tuple) else (key,)
        key = _host_key(key) if _is_advanced(key) else key
        if isinstance(value, (np.ndarray, list)):
            _upload()                                        # CuPy copies host values to the device first
        _launch("setitem")                                   # a copy, fill or scatter kernel
        self._a[key] = _unwrap(value)

    # -- NumPy's protocols: every ufunc and array function lands here ---------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out", ())
        for x in inputs + tuple(out):
            if hasattr(x, "__array_ufunc__") and not isinstance(x, (ndarray, np.ndarray, np.generic)):
                return NotImplemented
        op = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        _refuse_host(inputs + tuple(out), op, allow_0d=ufunc.__name__ in _COMPARISONS, allow_sequences=False)
        inputs = tuple(x.item() if isinstance(x, np.ndarray) else x for x in inputs)   # 0-d, comparisons only
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        _launch(op)
        if method == "at":
            return None
        if out:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func: Callable, types: Collection[type], args: tuple, kwargs: dict) -> Any:
        if not all(issubclass(t, (ndarray, np.ndarray)) for t in types):
            return NotImplemented
        _refuse_host((args, kwargs), func.__name__)
        return _run(func.__name__, func, args, kwargs)

    # -- everything else: NumPy's attribute, counted and wrapped --------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("flat", "ctypes", "data", "tofile", "dump", "dumps"):
            raise AttributeError(f"nanosgm.standin.ndarray has no attribute {name!r} (host memory access; "
                                 f"use .get() first)")
        value = getattr(self._a, name)
        if not callable(value):
            return _wrap(value) if isinstance(value, np.ndarray) else value      # .T, .real: views
        return functools.partial(_method, name, value)


class _BoundMethod(Protocol):
    """A NumPy array's bound method (``a.sum``): callable, and ``__self__`` is the array."""
    __self__: np.ndarray

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def _method(name: str, bound: _BoundMethod, *args: Any, **kwargs: Any) -> Any:
    """A NumPy array method called on a stand-in array (``a.sum(axis=0)``, ``a.reshape(...)``)."""
    _refuse_host((args, kwargs), name)
    raw_args, raw_kwargs = _unwrap(args), _unwrap(kwargs)
    result = bound(*raw_args, **raw_kwargs)
    inputs = [bound.__self__] + _arrays(raw_args) + _arrays(raw_kwargs)
    _launch(name, _kernels(name, result, inputs, "out" in kwargs))
    return _wrap(result)


# ------------------------------------------------------------------------------------------ module functions
def _holds_device_arrays(a: object) -> bool:
    """Whether ``a`` is a list or tuple with a stand-in array in it (``asarray([d0, d1])``)."""
    return isinstance(a, (list, tuple)) and any(isinstance(x, ndarray) or _holds_device_arrays(x) for x in a)


def asarray(a: Any, dtype: DTypeLike | None = None, order: _Order | None = None, *,
            blocking: bool = False) -> ndarray:
    """``a`` on the device: a stand-in array as it is (cast if ``dtype`` differs: one kernel); host data
    (NumPy arrays, lists, scalars) copied to new device memory: one upload."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    if _holds_device_arrays(a):
        return _run("asarray", np.array, (a,), dict(dtype=dtype))      # stacked on the device: one kernel
    _upload()
    return ndarray(np.array(a, dtype=dtype, order="K" if order is None else order, copy=True))


def array(a: Any, dtype: DTypeLike | None = None, copy: bool | None = True, order: _Order = "K", subok: bool = False,
          ndmin: int = 0, *, blocking: bool = False) -> ndarray:
    """As :func:`asarray`, but a stand-in array is copied (one kernel) unless ``copy=False`` allows a view."""
    if isinstance(a, ndarray) or _holds_device_arrays(a):
        return _run("array", np.array, (a,), dict(dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    _upload()
    return ndarray(np.array(a, dtype=dtype, order=order, ndmin=ndmin, copy=True))


def asnumpy(a: Any, stream: Any = None, order: _Order = "C", out: np.ndarray | None = None, *,
            blocking: bool = True) -> np.ndarray:
    """A NumPy array of ``a``: a device -> host read for a stand-in array; host data is returned as NumPy."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


class _Ufunc:
    """A NumPy ufunc as this module's function (``standin.exp``): host array operands refused, as CuPy does."""

    def __init__(self, ufunc: np.ufunc) -> None:
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __repr__(self) -> str:
        return f"<standin ufunc {self.__name__!r}>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ufunc, name)              # nin, nout, identity, ...

    def _apply(self, method: str, args: tuple, kwargs: dict) -> Any:
        out = kwargs.get("out", ())
        _refuse_host(args + (out if isinstance(out, tuple) else (out,)), self.__name__,
                     allow_0d=self.__name__ in _COMPARISONS, allow_sequences=False)
        if not any(isinstance(x, ndarray) for x in args + (out if isinstance(out, tuple) else (out,))):
            args = (ndarray(np.asarray(args[0])),) + args[1:]     # scalars only: a 0-d device operand
        return getattr(self._ufunc, method)(*args, **kwargs)   # -> ndarray.__array_ufunc__, which counts

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._apply("__call__", args, kwargs)

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        return self._apply("reduce", args, kwargs)

    def accumulate(self, *args: Any, **kwargs: Any) -> Any:
        return self._apply("accumulate", args, kwargs)

    def outer(self, *args: Any, **kwargs: Any) -> Any:
        return self._apply("outer", args, kwargs)

    def at(self, *args: Any, **kwargs: Any) -> None:
        return self._apply("at", args, kwargs)


def _function(name: str, func: Callable) -> Callable:
    """A NumPy function as this module's function: host array operands refused, counted, results wrapped."""
    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        _refuse_host((args, kwargs), name)
        return _run(name, func, args, kwargs)
    return call


def _delegate(source: ModuleType, name: str) -> Any:
    """``source.name`` (NumPy or a NumPy/SciPy submodule) as the stand-in would have it."""
    value = getattr(source, name)
    if isinstance(value, np.ufunc):
        return _Ufunc(value)
    if callable(value) and not isinstance(value, type):
        return _function(name, value)
    return value                                        # dtypes, types, constants: NumPy's own


class _Namespace:
    """A NumPy or SciPy submodule (``linalg``, ``ndimage``) as the stand-in's: functions wrapped on first use."""

    def __init__(self, name: str, load: Callable[[], ModuleType]) -> None:
        self.__name__ = f"nanosgm.standin.{name}"
        self._load = load

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = _delegate(self._load(), name)
        setattr(self, name, value)
        return value


def _scipy_ndimage() -> ModuleType:
    import scipy.ndimage
    return scipy.ndimage


linalg = _Namespace("linalg", lambda: np.linalg)
ndimage = _Namespace("ndimage", _scipy_ndimage)    # what cupyx.scipy.ndimage is to cupy


def __getattr__(name: str) -> Any:
    """Everything else of NumPy's namespace (``standin.zeros``, ``standin.where``, ``standin.float32``)."""
    if name.startswith("__") or not hasattr(np, name):
        raise AttributeError(f"module 'nanosgm.standin' has no attribute {name!r}")
    value = _delegate(np, name)
    globals()[name] = value
    return value


# ------------------------------------------------------------------------------------------ random numbers
class Generator:
    """CuPy's ``cupy.random.Generator`` on the stand-in: NumPy's ``default_rng`` numbers, as device arrays.

    Every draw is one kernel and returns a stand-in array (a 0-d one without ``size``); a host array
    parameter is refused. ``shuffle`` works in place on a stand-in array."""

    def __init__(self, seed: int | None = None) -> None:
        self._g = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"standin.random.Generator({self._g.bit_generator!r})"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._g, name)
        if not callable(value):
            return value

        def draw(*args: Any, **kwargs: Any) -> Any:
            _refuse_host((args, kwargs), f"Generator.{name}")
            result = value(*_unwrap(args), **_unwrap(kwargs))
            _launch(f"random.{name}")
            return _wrap(np.asarray(result) if isinstance(result, (int, float, complex)) else result)
        return draw


class _Random:
    """``standin.random``: what nanosgm uses of ``cupy.random``."""
    __name__ = "nanosgm.standin.random"
    Generator: TypeAlias = Generator

    @staticmethod
    def default_rng(seed: int | None = None) -> Generator:
        return Generator(seed)


random = _Random()


# ------------------------------------------------------------------------------------------ cuda
class _Stream:
    @staticmethod
    def synchronize() -> None:
        """Nothing to wait for: the stand-in runs every operation at once."""


class _StreamClass:
    null = _Stream()


class _Runtime:
    @staticmethod
    def getDeviceCount() -> int:
        return 1

    @staticmethod
    def getDeviceProperties(device: int = 0) -> dict:
        return {"name": b"nanosgm CPU stand-in", "multiProcessorCount": 1, "totalGlobalMem": 0}


class _Device:
    def __init__(self, device: int = 0) -> None:
        self.id = int(device)

    def synchronize(self) -> None:
        """Nothing to wait for."""


class _Cuda:
    """``standin.cuda``: what nanosgm uses of ``cupy.cuda`` (one pretend device, a stream with nothing queued)."""
    Stream = _StreamClass
    runtime = _Runtime()
    Device = _Device


cuda = _Cuda()


# ------------------------------------------------------------------------------------------ fused kernels
def one_kernel(name: str, func: Callable, args: tuple, kwargs: dict, launches: int = 1) -> Any:
    """Run ``func`` (a NumPy reference of one device kernel) on the unwrapped arguments and count
    ``launches`` (one by default) named ``name``, whatever NumPy does inside: what
    :func:`nanosgm.kernels.kernel` calls for a kernel that has a compiled CuPy twin. Host arrays are refused as for any device operation; in-place
    writes into argument arrays reach the stand-in arrays (they share memory); results are wrapped."""
    _refuse_host((args, kwargs), name)
    result = func(*_unwrap(args), **_unwrap(kwargs))
    _launch(name, launches)
    return _wrap(result)
