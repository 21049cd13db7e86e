"""One pool of threads for the C core and NumPy's BLAS.

NumPy's OpenBLAS has threads of its own. After each product they keep spinning on the cores for a while
(about 0.1 s) in case another product comes, so a C kernel that runs right after one (attention after the
query/key/value product of a prompt) shares its cores with them: measured on a 2-core Intel Xeon, a
prompt's attention took 66-69 ms inside the model against 42 ms alone (docs/kernels.md).

OpenBLAS (0.3.27 and later) can hand its parallel jobs to the program instead
(``openblas_set_threads_callback_function``). The C core's pool then runs them (csrc/parallel.c,
mg_blas_threads), OpenBLAS's own threads sleep for good, and one set of threads serves both. Other BLAS
libraries (MKL, Apple's Accelerate, an OpenBLAS without that entry point) are left as they are.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

# The setter under the names OpenBLAS builds export it: NumPy's wheels prefix "scipy_" and (64-bit integers)
# suffix "64_"; a plain OpenBLAS (a Linux distribution's, conda's) has neither.
_SETTERS = ("scipy_openblas_set_threads_callback_function64_", "scipy_openblas_set_threads_callback_function",
            "openblas_set_threads_callback_function64_", "openblas_set_threads_callback_function")


def _loaded_openblas():
    """Paths of the OpenBLAS libraries this process has loaded: NumPy's bundled one, or one from /proc's map."""
    numpy_dir = os.path.dirname(np.__file__)
    paths = glob.glob(os.path.join(numpy_dir + ".libs", "*openblas*")) + glob.glob(
        os.path.join(numpy_dir, ".dylibs", "*openblas*"))
    try:
        with open("/proc/self/maps") as f:
            paths += [line.split(None, 5)[5].strip() for line in f if "openblas" in line and len(line.split()) == 6]
    except OSError:  # (not Linux)
        pass
    return list(dict.fromkeys(os.path.realpath(p) for p in paths))


def install(address: int) -> list[str]:
    """Hand the parallel jobs of every loaded OpenBLAS to the C function at ``address``; returns their paths."""
    installed = []
    for path in _loaded_openblas():
        try:  # RTLD_NOLOAD: only a library already loaded (the same handle as NumPy's); never load another
            library = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_NOW | os.RTLD_LOCAL)
        except OSError:
            continue
        setter = next((getattr(library, name) for name in _SETTERS if hasattr(library, name)), None)
        if setter is not None:
            setter.argtypes, setter.restype = [ctypes.c_void_p], None
            setter(address)
            installed.append(path)
    return installed
