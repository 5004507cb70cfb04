"""Fused device kernels, each a named function with its plain reference beside it (:mod:`.core`)."""
from .core import compiled_twins, kernel, use_reference

__all__ = ["kernel", "use_reference", "compiled_twins"]
