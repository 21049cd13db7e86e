"""One pool of threads for the C core and NumPy's BLAS.

NumPy's OpenBLAS has threads of its own. After each product they keep spinning on the cores for a while
(about 0.1 s) in case another product comes, so a C kernel that runs right after one (attention after the
query/key/value product of a prompt) shares its cores with them: measured on a 2-core Intel Xeon, a
prompt's attention took 66-69 ms inside the model against 42 ms alone (docs/kernels.md).

OpenBLAS (0.3.27 and later) can hand its parallel jobs to the program instead
(``openblas_set_threads_callback_function``). The C core's pool then runs them (csrc/parallel.c,
mg_blas_threads), OpenBLAS's own threads sleep for good, and one set of threads serves both. Other BLAS
libraries (MKL, Apple's Accelerate, an OpenBLAS without that entry point) are left as they are.

One pool also means one thread count: ``use(n)`` tells those OpenBLAS libraries to split their products into at
most ``n`` jobs (never more than they started with: ``OPENBLAS_NUM_THREADS`` still caps them). The C core calls
it before each product it leaves to BLAS, with the pool's advice (``minigpt2.backend.set_num_threads``, or one
thread while another program crowds the cores: csrc/parallel.c, "Crowded cores").
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
_COUNTS = ("scipy_openblas_{}_num_threads64_", "scipy_openblas_{}_num_threads", "openblas_{}_num_threads64_",
           "openblas_{}_num_threads")

_libraries = {}  # path -> (set_num_threads, the thread count it started with) of each OpenBLAS on the pool
_using = [None]  # the count last passed to use()


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


def install(address: int, reserve=None) -> list[str]:
    """Hand the parallel jobs of every loaded OpenBLAS to the C function at ``address``; returns their paths.

    ``reserve(n)`` (the C core's mg_blas_reserve) starts the pool's threads for n jobs at once and says how many it
    can run: OpenBLAS is capped at that first, since the jobs of one call wait for one another and a call asking
    for more threads than the pool has could never finish (a process limit on a shared server, more cores than
    the pool's 256)."""
    installed = []
    for path in _loaded_openblas():
        # RTLD_NOLOAD: only a library already loaded (the same handle as NumPy's); never load another. (Windows has
        # no os.RTLD_* names: ctypes ignores the mode there, and LoadLibrary of a loaded DLL returns that one.)
        mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_NOW", 0) | getattr(os, "RTLD_LOCAL", 0)
        try:
            library = ctypes.CDLL(path, mode=mode)
        except OSError:
            continue
        setter = next((getattr(library, name) for name in _SETTERS if hasattr(library, name)), None)
        counts = [next((getattr(library, name.format(verb)) for name in _COUNTS
                        if hasattr(library, name.format(verb))), None) for verb in ("set", "get")]
        if setter is None or None in counts:
            continue
        setter.argtypes, setter.restype = [ctypes.c_void_p], None
        counts[0].argtypes, counts[0].restype = [ctypes.c_int], None
        counts[1].argtypes, counts[1].restype = [], ctypes.c_int
        started = max(1, counts[1]())
        if address and reserve is not None and path not in _libraries:
            can = max(1, reserve(started))
            if can < started:  # (before the pool takes its jobs; install(0) then leaves OpenBLAS at it too)
                counts[0](can)
                started = can
        setter(address)
        installed.append(path)
        if address and path not in _libraries:
            _libraries[path] = (counts[0], started)
        elif not address and path in _libraries:  # OpenBLAS's own threads again, as many as it started with
            set_count, started = _libraries.pop(path)
            set_count(started)
    _using[0] = None
    return installed


def most_jobs(n: int) -> int:
    """The most jobs NumPy's products are split into on a pool of ``n`` threads: ``n``, capped by the thread count
    each OpenBLAS on the pool started with (OPENBLAS_NUM_THREADS=1 caps it at 1)."""
    return min([n] + [started for _, started in _libraries.values()])


def use(n: int) -> None:
    """Let each OpenBLAS on the pool split its products into at most ``n`` jobs."""
    if n != _using[0]:
        for set_count, started in _libraries.values():
            set_count(min(n, started))
        _using[0] = n
