"""Which implementation runs the hot-path kernels: the NumPy reference or the C core.

Every hot-path function in minigpt2 (``linear``, ``layer_norm``, ``gelu_new``, ``attention``, and
``modeling.transformer_block`` and ``modeling.transformer_blocks``, which the C core runs as one call when
decoding) is written
once in plain NumPy and decorated with ``@kernel``. The decorator looks the name up in the active
backend: if the C core provides it, the C version runs; otherwise (or if the C version declines a case
by returning ``NotImplemented``) the NumPy body runs. The NumPy body is always available as
``fn.reference`` and is what the C kernels are tested against.

    minigpt2.backend.name                  # "numpy" or "c"
    minigpt2.backend.set_backend("numpy")  # or "c", or "auto": C if it was built, else NumPy
    minigpt2.backend.set_num_threads(1)    # threads of the C kernels
    minigpt2.backend.set_kernel("avx2")    # which compiled variant of the C core (default "auto")

The environment chooses the starting point: MINIGPT2_BACKEND=numpy|c|auto (default auto) and
MINIGPT2_NUM_THREADS (default: the cores this process may run on) and MINIGPT2_KERNEL (default auto: see
``set_kernel``). The C core is the extension
``minigpt2._kernels``, compiled from csrc/ when minigpt2 is installed with a C compiler present
(or by ``python csrc/build_kernels.py`` in a checkout); "auto" without it says so once and runs NumPy.
An empty variable counts as unset. A bad setting (an unknown backend, a thread count that is not a
positive number, "c" without the extension, a kernel variant this CPU cannot run) does not stop
``import minigpt2``: the first kernel call raises it, unless ``set_backend``, ``set_num_threads`` or
``set_kernel`` has replaced it by then (``setting_problems()`` lists what is still wrong, for --info).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import warnings

import numpy as np
from ._starting import starting_the_command
from .checks import is_int

__all__ = ["kernel", "set_backend", "get_backend", "name", "c_available", "set_num_threads", "get_num_threads",
           "set_kernel", "kernel_variants", "kernel_choice", "setting_problems", "same_bits"]

BACKENDS = ("numpy", "c", "auto")

# name -> C implementation, filled by set_backend() when the C core is active.
_active: dict = {}
# "backend" / "threads" -> the error a bad MINIGPT2_BACKEND / MINIGPT2_NUM_THREADS makes. Raised by the first
# kernel call rather than at import, so that `import minigpt2` works and set_backend() / set_num_threads()
# (and the CLI's --backend / --threads) can replace the bad setting.
_environment_problems: dict = {}
name = "numpy"


def kernel(fn):
    """Mark a NumPy function as a hot-path kernel that the C backend may replace.

    The NumPy function runs with NumPy's floating-point warnings off, as torch's operations have none: on Arm CPUs
    with SME, the BLAS NumPy calls sets every floating-point flag on finite data (Apple M4's Accelerate, NumPy's
    AArch64 OpenBLAS under qemu's "max" CPU: numpy/numpy#28687), and each product then printed "divide by zero /
    overflow / invalid value encountered in matmul". A real overflow shows as inf or NaN in the result either way."""
    kernel_name = fn.__name__

    @functools.wraps(fn)
    def dispatch(*args, **kwargs):
        if _environment_problems:  # a bad MINIGPT2_* variable: the first kernel call says so
            raise next(iter(_environment_problems.values()))
        impl = _active.get(kernel_name)
        if impl is not None:
            result = impl(*args, **kwargs)
            if result is not NotImplemented:
                return result
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    dispatch.reference = fn
    return dispatch


# -- the C core ------------------------------------------------------------------------------------

_ckernels = None  # the module minigpt2._ckernels once the extension loaded
_c_problem = None  # why it did not load
_warned = False
_fell_back = False  # "auto" was asked for and found no C core
# While `python -m minigpt2` starts, "no C core: running on NumPy" waits until the command line has been read
# (say_fallback): `--backend c` or `--backend numpy` would contradict it.
_hold_fallback_warning = False


def _load_c():
    """Import the C core once; returns the wrapper module or None (and remembers why)."""
    global _ckernels, _c_problem
    if _ckernels is None and _c_problem is None:
        try:
            from . import _ckernels as module
        except ImportError as e:  # (also a library built from other sources: _ckernels checks the interface)
            _c_problem = f"{type(e).__name__}: {e}"
            if _no_extension():  # (where Python's message would speak of a "circular import")
                _c_problem = no_extension_reason()
        else:
            _ckernels = module
            _ckernels.lib.mg_set_num_threads(_num_threads)
            _ckernels.follow_pool()
    return _ckernels


def _no_extension() -> bool:
    """True if no file of the extension minigpt2._kernels exists (installed without a C compiler)."""
    try:
        return importlib.util.find_spec(f"{__package__}._kernels") is None
    except (ValueError, ImportError):  # (a module put in its place, e.g. by a test)
        return False


def _checkout() -> str | None:
    """The source checkout this minigpt2 is imported from (the folder that holds setup.py and csrc/), or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    is_checkout = os.path.isfile(os.path.join(root, "setup.py")) and os.path.isdir(os.path.join(root, "csrc"))
    return root if is_checkout else None


def shadowed_copy() -> str | None:
    """Where another copy of minigpt2 is installed (e.g. site-packages), when this one is a source checkout that
    comes first on sys.path (run from the checkout's folder): that copy's C core may be built, this one's is not.
    None otherwise. Found with PathFinder over the other sys.path entries, without importing it."""
    import importlib.machinery
    import sys

    root = _checkout()
    if root is None:
        return None
    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    others = [p for p in sys.path if isinstance(p, str) and os.path.realpath(p or os.curdir) != os.path.realpath(root)]
    try:
        spec = importlib.machinery.PathFinder.find_spec(__package__, others)
    except (ImportError, ValueError):
        return None
    where = list(spec.submodule_search_locations or []) if spec is not None else []
    return where[0] if where and os.path.realpath(where[0]) != here else None


def no_extension_reason() -> str:
    """Why there is no compiled minigpt2._kernels, and what builds it, in one line."""
    here, root, installed = os.path.dirname(os.path.abspath(__file__)), _checkout(), shadowed_copy()
    if installed is not None:
        where = "the current directory" if os.path.realpath(os.getcwd()) == os.path.realpath(root) else root
        return (f"minigpt2 is imported from the source folder {here}, which has no compiled minigpt2._kernels: "
                f"{where} shadows the installed copy at {installed}, whose C core may be built; run from another "
                f"directory, or `pip install -e .` in {root} (which builds the C core in place)")
    if root is not None:
        return ("there is no compiled minigpt2._kernels in this checkout: build it with a C compiler present, by "
                "`pip install -e .` or `python csrc/build_kernels.py`")
    return "there is no compiled minigpt2._kernels: it is built when minigpt2 is installed with a C compiler present"


def c_available() -> bool:
    """True if the C extension is built and loads."""
    return _load_c() is not None


def get_backend() -> str:
    return name


def set_backend(backend: str = "auto") -> str:
    """Select the backend ("numpy", "c" or "auto"); returns the name of the one now active.

    "c" raises RuntimeError if the extension is not built; "auto" then falls back to NumPy,
    warning once.
    """
    global name, _fell_back
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(map(repr, BACKENDS))}")
    c = _load_c() if backend in ("c", "auto") else None
    if backend == "c" and c is None:
        build = "" if "compiler" in _c_problem else (  # (no_extension_reason says how to build it already)
            "Build it with a C compiler present (pip install -e ., or python csrc/build_kernels.py in a checkout), or ")
        raise RuntimeError(f"the C backend was asked for, but the extension minigpt2._kernels does not load "
                           f"({_c_problem}). {build or 'Or '}choose the 'numpy' or 'auto' backend")
    _active.clear()
    if c is not None:
        _active.update(c.KERNELS)
    name = "c" if c is not None else "numpy"
    _fell_back = backend == "auto" and c is None
    _environment_problems.pop("backend", None)
    if not _hold_fallback_warning:
        say_fallback(_stacklevel=3)
    return name


def say_fallback(_stacklevel=2) -> None:
    """Warn (once) that the C core is missing and NumPy runs, if "auto" fell back to NumPy. The command line
    calls it once it has read its flags (the warning was held until then)."""
    global _warned, _hold_fallback_warning
    _hold_fallback_warning = False
    if _fell_back and not _warned:
        _warned = True
        what = "is not loaded" if shadowed_copy() is not None else "is not built"
        warnings.warn(f"minigpt2: the C core {what} ({_c_problem}); running on the NumPy backend, "
                      f"which is correct but slower", RuntimeWarning, stacklevel=_stacklevel)


# -- which compiled variant of the C core -------------------------------------------------------------

def set_kernel(variant: str = "auto") -> None:
    """Choose what serves the C backend's kernels: "auto" (the default: each kind of call goes to the
    fastest of the variants this CPU runs and NumPy, measured once per machine and cached, see
    minigpt2/_tuning.py), "numpy", or one variant this CPU runs (``kernel_variants()``, e.g. "avx2").
    ValueError names the allowed values. Without the C core everything runs on NumPy already: "auto" and
    "numpy" are accepted (and change nothing), a variant is a RuntimeError. The environment's
    MINIGPT2_KERNEL sets the starting point."""
    c = _load_c()
    if c is None:
        if variant in ("auto", "numpy"):
            return
        raise RuntimeError(f"set_kernel({variant!r}) needs the C core, and the extension minigpt2._kernels does not "
                           f"load ({_c_problem}); without it only 'auto' and 'numpy' can be chosen")
    c._tuning.choose(variant)


def _kernel_setting_problem():
    """The ValueError a bad MINIGPT2_KERNEL will raise at the first C kernel call, or None (no C core, the
    variable unset or valid, or replaced by set_kernel)."""
    c = _ckernels
    value = os.environ.get("MINIGPT2_KERNEL", "").strip()
    if c is None or not value or c._tuning._requested is not None:
        return None
    try:
        c._tuning.check_name(value, "MINIGPT2_KERNEL")
    except ValueError as e:
        return e
    return None


def setting_problems() -> dict:
    """What is wrong with the MINIGPT2_* variables now, as {"backend" | "threads" | "kernel": the exception a
    model call raises}, for --info and --doctor; {} when nothing is."""
    problems = dict(_environment_problems)
    kernel_problem = _kernel_setting_problem()
    if kernel_problem is not None:
        problems["kernel"] = kernel_problem
    return problems


def kernel_variants() -> tuple:
    """The compiled variants of the C core this CPU can run (narrowest first); () without the C core."""
    c = _load_c()
    return c._tuning.supported_variants() if c is not None else ()


def kernel_choice() -> list:
    """Lines that say what serves each kind of kernel call (deciding it now if it was not yet decided)."""
    c = _load_c()
    if c is None or name != "c":
        return [f"kernel choice: numpy (the {name} backend)" + ("" if c is not None else f"; no C core: {_c_problem}")]
    return c._tuning.describe()


# -- threads ---------------------------------------------------------------------------------------

def _cores_available() -> int:
    """The number of cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


MAX_THREADS = 256  # as the C core's pool (csrc/parallel.c)


def _threads_from_environment() -> int:
    value = os.environ.get("MINIGPT2_NUM_THREADS", "").strip()
    if not value:
        return _cores_available()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_THREADS:
        raise ValueError(f"MINIGPT2_NUM_THREADS must be a positive whole number of threads, at most {MAX_THREADS}, "
                         f"got {value!r}")
    return int(value)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 to 256) in the C kernels, and in NumPy's OpenBLAS when its jobs run on them."""
    global _num_threads
    if not is_int(n) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"the number of threads must be a positive whole number, at most {MAX_THREADS}, "
                         f"got {n!r}")
    _num_threads = int(n)
    if _ckernels is not None:
        _ckernels.lib.mg_set_num_threads(_num_threads)
        _ckernels.follow_pool()
        _ckernels._tuning.reset()  # the fastest choice may differ with the thread count: decide again
    _environment_problems.pop("threads", None)


def get_num_threads() -> int:
    return _num_threads


@contextlib.contextmanager
def same_bits():
    """Inside, NumPy's OpenBLAS splits every product into as many jobs as the thread count, however busy the cores.

    Outside, it takes one job while other programs crowd the cores (csrc/parallel.c, "Crowded cores"): faster
    then, and the same bits for the model's forward products, but not for a product with a long sum such as a
    gradient over the vocabulary (``dlogits @ wte``, 50257 terms), which OpenBLAS adds in another order with one
    job than with two. Training holds it (Trainer.train_step), so that one seed gives the same bytes on a busy
    machine as on an idle one, and a resumed run those of the run it continues."""
    if _ckernels is None:
        yield
        return
    _ckernels._steady[0] += 1
    _ckernels.follow_pool()
    try:
        yield
    finally:
        _ckernels._steady[0] -= 1
        _ckernels.follow_pool()


def _start_from_the_environment():
    global _num_threads
    problems = {}
    try:
        _num_threads = _threads_from_environment()
    except ValueError as e:
        _num_threads, problems["threads"] = _cores_available(), e
    requested = os.environ.get("MINIGPT2_BACKEND", "").strip() or "auto"  # (empty: unset, as MINIGPT2_KERNEL)
    if requested not in BACKENDS:
        problems["backend"] = ValueError(f"MINIGPT2_BACKEND={requested!r} is not a backend; choose one of "
                                         f"{', '.join(BACKENDS)} (or call minigpt2.backend.set_backend)")
        requested = "auto"
    try:
        set_backend(requested)
    except RuntimeError as e:  # MINIGPT2_BACKEND=c without the extension
        set_backend("numpy")
        problems["backend"] = RuntimeError(f"MINIGPT2_BACKEND=c: {e}")
    _environment_problems.update(problems)


_num_threads = 1
_hold_fallback_warning = starting_the_command()
_start_from_the_environment()
