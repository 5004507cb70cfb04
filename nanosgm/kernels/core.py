"""One device kernel per function: a plain reference that any backend runs, and a compiled CuPy twin.

A fused operation is written once as its **reference**, plain array operations on ``xp`` (NumPy, CuPy or
the stand-in), and marked with :func:`kernel`, which may name a ``cuda`` factory: a function that, given
the ``cupy`` module, builds the compiled version (``ElementwiseKernel``, ``ReductionKernel``, ``RawKernel``)
and returns a callable with the reference's signature. Calling the marked function then runs:

    NumPy arrays       the reference (the arithmetic the tests and the committed records rely on)
    stand-in arrays    the reference on the underlying NumPy arrays, counted as the twin's launches (one,
                       unless ``launches`` says more) when a ``cuda`` twin exists (what the GPU would pay),
                       else each operation counted as usual
    CuPy arrays        the compiled twin when there is one (built once per process), else the reference

``f.reference`` is always the plain version, so a test can compare the two on any backend:

    >>> import numpy as np
    >>> from nanosgm import standin
    >>> from nanosgm.kernels import kernel
    >>> @kernel(cuda=lambda cp: cp.ElementwiseKernel("T x", "T y", "y = x * x + 1", "square_plus_one"))
    ... def square_plus_one(x):
    ...     return x * x + 1
    >>> square_plus_one(np.arange(3.0))
    array([1., 2., 5.])
    >>> with standin.counting() as c:
    ...     y = square_plus_one(standin.asarray(np.arange(3.0)))
    >>> c.launches, c.kernels["square_plus_one"]
    (1, 1)

Precision: a compiled twin does the reference's operations in the same order, but NVRTC contracts
``a * b + c`` into one fused multiply-add unless a kernel is built with ``options=("--fmad=false",)``, so
each kernel's docstring says whether its twin promises bit equality with the reference or a tolerance.
``NANOSGM_KERNELS=reference`` (or :func:`use_reference`) makes CuPy run the references too, to compare.
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

from .. import backend

__all__ = ["kernel", "Kernel", "use_reference", "compiled_twins"]

_REFERENCE_ONLY = [os.environ.get("NANOSGM_KERNELS", "") == "reference"]
_REGISTRY: dict[str, Callable] = {}


@contextlib.contextmanager
def use_reference() -> Iterator[None]:
    """Inside the block, CuPy arrays run each kernel's reference instead of its compiled twin."""
    before = _REFERENCE_ONLY[0]
    _REFERENCE_ONLY[0] = True
    try:
        yield
    finally:
        _REFERENCE_ONLY[0] = before


def compiled_twins() -> dict[str, Callable]:
    """{kernel name: its reference function} for every kernel with a CuPy twin (for the GPU tests)."""
    return dict(_REGISTRY)


class Kernel(Protocol):
    """What :func:`kernel` makes of a reference function: callable as the reference is, with ``reference`` (the
    plain version), ``has_twin`` (whether a compiled CuPy twin exists) and ``launches`` (the twin's per call)."""
    reference: Callable[..., Any]
    has_twin: bool
    launches: int

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def _first_array(args: tuple, kwargs: dict) -> Any:
    for v in (*args, *kwargs.values()):
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            return v
    raise TypeError("a kernel needs at least one array argument")


def kernel(cuda: Callable[[Any], Callable] | None = None, name: str | None = None,
           launches: int = 1) -> Callable[[Callable], Kernel]:
    """Mark a reference function as one device kernel (see the module docstring); ``cuda(cupy)`` builds the
    compiled twin; ``name`` defaults to the function's name; ``launches``: the CUDA kernels the twin launches
    per call (a twin made of several CuPy calls says so), what the stand-in counts for it."""
    def mark(reference: Callable) -> Kernel:
        label = name or reference.__name__
        built: list = []

        def compiled(factory: Callable[[Any], Callable]) -> Callable:
            if not built:
                import cupy
                built.append(factory(cupy))
            return built[0]

        @functools.wraps(reference)
        def run(*args, **kwargs):
            if cuda is None:
                return reference(*args, **kwargs)
            module = backend.array_module(_first_array(args, kwargs))
            if module.__name__ == "nanosgm.standin":
                return module.one_kernel(label, reference, args, kwargs, launches=launches)
            if module.__name__ == "cupy" and not _REFERENCE_ONLY[0]:
                return compiled(cuda)(*args, **kwargs)
            return reference(*args, **kwargs)

        marked = cast(Kernel, run)          # the attributes Kernel declares are set here
        marked.reference = reference
        marked.has_twin = cuda is not None
        marked.launches = launches
        if cuda is not None:
            _REGISTRY[label] = reference
        return marked
    return mark
