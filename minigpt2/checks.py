"""Checking what callers pass in: one place, so every entry point says the same thing about the same mistake.

Each check returns the value in the form the code wants (a Python int, a float32 array, ...) or raises a
TypeError (the wrong kind of thing) or ValueError (the right kind, a value outside what is allowed) whose
message names the argument, what it got, and what is allowed:

    check_int("max_new_tokens", n, low=1)      # -> n, or "max_new_tokens must be a positive integer, got 0"
    int_array("input_ids", ids, high=vocab)    # -> int64 array with values in [0, vocab)
"""
from __future__ import annotations

import math
import sys

import numpy as np

__all__ = [
    "is_int", "is_number", "check_int", "check_number", "check_choice",
    "from_torch", "as_array", "int_array", "float_array", "mask_array", "nonempty", "reshape_to", "short_list",
]


# -- single values ----------------------------------------------------------------------------------------------

def is_int(x) -> bool:
    """An integer (Python's or NumPy's), and not a bool (True is an int to Python, never a size to us)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def is_number(x) -> bool:
    """A real number (int or float, Python's or NumPy's), not a bool."""
    return is_int(x) or isinstance(x, (float, np.floating))


def _int_range(low, high) -> str:
    if high is None:
        return {0: "a non-negative integer", 1: "a positive integer"}.get(low, "an integer" if low is None
                                                                         else f"an integer >= {low}")
    return f"an integer in [{'-inf' if low is None else low}, {high}]"


def check_int(name, x, *, low=None, high=None, allow_none=False):
    """``x`` as a Python int in [low, high] (either end may be None: unbounded), or a clear error."""
    if x is None and allow_none:
        return None
    allowed = _int_range(low, high) + (" or None" if allow_none else "")
    if not is_int(x):
        raise ValueError(f"{name} must be {allowed}, got {x!r}")
    if (low is not None and x < low) or (high is not None and x > high):
        raise ValueError(f"{name} must be {allowed}, got {x!r}")
    return int(x)


def check_number(name, x, *, low=None, high=None, low_open=False, high_open=False, what=None):
    """``x`` as a Python float in the interval (open or closed at each end, None = unbounded), or a clear error.
    NaN is never allowed. ``what`` replaces the generated description ("a number in [0, 1]")."""
    if what is None:
        if low == 0 and high is None:
            what = "a positive number" if low_open else "a non-negative number"
        elif low is None and high is None:
            what = "a number"
        else:
            what = (f"a number in {'(' if low_open else '['}{'-inf' if low is None else low}, "
                    f"{'inf' if high is None else high}{')' if high_open else ']'}")
    if not is_number(x) or math.isnan(x):
        raise ValueError(f"{name} must be {what}, got {x!r}")
    below = low is not None and (x <= low if low_open else x < low)
    above = high is not None and (x >= high if high_open else x > high)
    if below or above:
        raise ValueError(f"{name} must be {what}, got {x!r}")
    return float(x)


def check_choice(name, x, choices):
    """``x`` if it is one of ``choices``, else a ValueError listing them."""
    if x not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {x!r}")
    return x


def short_list(names, n=5) -> str:
    """The first ``n`` names, and how many more: for messages about long lists."""
    names = list(names)
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


# -- arrays -----------------------------------------------------------------------------------------------------

def from_torch(x):
    """A torch tensor as NumPy can read it: detached (minigpt2 computes in NumPy, outside torch's autograd) and
    bfloat16 widened to float32 (NumPy has no bfloat16); anything else unchanged. torch is never imported here:
    a tensor exists only if the caller imported torch. A tensor on another device keeps torch's own error
    ("use Tensor.cpu()"): minigpt2 runs on the CPU."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(x, getattr(torch, "Tensor", ())):
        return x
    x = x.detach()
    return x.float() if x.dtype == torch.bfloat16 else x


def as_array(name, x):
    """``x`` as a NumPy array (lists, tuples, arrays and torch tensors, see from_torch; not strings or None), or a
    TypeError."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}")
    try:
        return np.asarray(from_torch(x))
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} must be an array of numbers: {e}") from None


def int_array(name, x, *, high, ignore_index=None, min_ndim=0):
    """An int64 array with values in [0, high) (or equal to ignore_index), or a clear error."""
    a = as_array(name, x)
    if a.size == 0:
        a = a.astype(np.int64)  # an empty list is float64 to NumPy; the caller says what empty means
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {a.shape}")
    bad = ((a < 0) | (a >= high)) & (a != ignore_index)
    if bad.any():
        allowed = f"[0, {high})" + ("" if ignore_index is None else f" or {ignore_index} (ignored)")
        raise ValueError(f"{name} holds {a[bad].flat[0]}, outside the allowed values {allowed}")
    return a.astype(np.int64, copy=False)


def float_array(name, x):
    """A float32 array of finite numbers, or a clear error."""
    a = as_array(name, x)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    with np.errstate(over="ignore"):  # a number beyond float32's range becomes inf, which the check names
        a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinity (or numbers too large for float32)")
    return a


def mask_array(name, x):
    """A float32 mask with values in [0, 1] (1 attend, 0 ignore), or a clear error."""
    a = float_array(name, x)
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"{name} holds {a.min() if a.min() < 0 else a.max():g}; allowed values are 0 (padding) "
                         f"and 1 (attend to), or in between")
    return a


def nonempty(name, shape):
    """The shape of token ids, checked to hold at least one token."""
    if shape[-1] == 0:
        raise ValueError(f"{name} holds no tokens (shape {shape}); pass at least one")
    return shape


def reshape_to(name, a, shape):
    """Broadcast a per-token array ([T], [1, T] or [B, T]) to ``shape``, or explain what fits."""
    try:
        flattened = a.ndim > len(shape) and a.shape[-1] == shape[-1]  # e.g. [B, choices, T] -> [B * choices, T]
        return np.broadcast_to(a.reshape(-1, shape[-1]) if flattened else a, shape)
    except ValueError:
        raise ValueError(f"{name} has shape {a.shape}; expected {shape} (or a shape that broadcasts to it)") from None
