"""Which implementation runs the hot-path kernels: the NumPy reference or the C core.

Every hot-path function in minigpt2 (``linear``, ``layer_norm``, ``gelu_new``, ``attention``) is written
once in plain NumPy and decorated with ``@kernel``. The decorator looks the name up in the active
backend: if the C core provides it, the C version runs; otherwise (or if the C version declines a case
by returning ``NotImplemented``) the NumPy body runs. The NumPy body is always available as
``fn.reference`` and is what the C kernels are tested against.

    minigpt2.backend.name          # "numpy" or "c"
    minigpt2.backend.set_backend("numpy")
"""
from __future__ import annotations

import functools

__all__ = ["kernel", "set_backend", "get_backend", "name"]

# name -> C implementation, filled by set_backend() when the C core is active.
_active: dict = {}
name = "numpy"


def kernel(fn):
    """Mark a NumPy function as a hot-path kernel that the C backend may replace."""
    kernel_name = fn.__name__

    @functools.wraps(fn)
    def dispatch(*args, **kwargs):
        impl = _active.get(kernel_name)
        if impl is not None:
            result = impl(*args, **kwargs)
            if result is not NotImplemented:
                return result
        return fn(*args, **kwargs)

    dispatch.reference = fn
    return dispatch


def get_backend() -> str:
    return name


def set_backend(backend: str = "numpy") -> str:
    """Select the backend ("numpy", "c" or "auto"); returns the name of the one now active."""
    global name
    if backend not in ("numpy", "c", "auto"):
        raise ValueError(f"unknown backend {backend!r}; choose 'numpy', 'c' or 'auto'")
    if backend == "c":
        raise ValueError("the C backend is not built in this installation; use 'numpy' or 'auto'")
    _active.clear()
    name = "numpy"
    return name
