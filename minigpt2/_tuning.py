"""Which implementation serves each kernel call: a C variant (and its prefetch kind) or NumPy.

The C core is compiled once per target of the architecture (x86-64: generic, avx2, avx512; AArch64:
neon; csrc/variant_*.c) and the library says which of them this CPU can run. What is fastest, though,
differs between CPUs in ways no feature flag tells: on one Intel VM the non-temporal prefetch hints that
won 15% on AMD Zen 5 halved the decode speed, and NumPy's BLAS beat an AVX2 build of our kernels. So,
as FFTW's planner does with its "wisdom", the choice is *measured* once per machine: every candidate (each
runnable variant with each prefetch kind, and NumPy) is timed on the model's kinds of call, interleaved,
the candidates that cannot win dropping out after a first round, and the fastest serves. By construction the default is then never slower than NumPy
on any call class, up to the noise of the measurement. The choice is cached under the user's cache
directory ($XDG_CACHE_HOME/minigpt2, else ~/.cache/minigpt2), keyed by the CPU model, the supported
variants, minigpt2's version, the build of the extension (a hash of the library), NumPy's version, the
thread count and the user (only one's own file is read, so a shared XDG_CACHE_HOME never passes one user's
choice to another); a file that cannot be read only means measuring again, and a cache that cannot be written
(read-only, not a directory) measuring at every run, which stderr says once per process, with the fix.

    MINIGPT2_KERNEL=auto (default) | numpy | generic | avx2 | avx512 | neon
    minigpt2.backend.set_kernel("avx2")      # the same, in code; "auto" measures (or reads the cache)

A forced variant serves every call the C core takes (with the non-temporal prefetch kind); "numpy" sends
every call to the NumPy reference. Forcing a variant this CPU cannot run is an error, never an illegal
instruction. ``python -m minigpt2 --info`` and ``benchmarks/bench_decode.py`` print the choice.

The call classes ("kinds of call") and the crossovers between them are all here:
"""
from __future__ import annotations

import glob
import json
import logging
import math
import os
import platform
import statistics
import threading
import time
import zlib

import numpy as np

from .shared_cache import cannot_write_beside, write_json_atomically

__all__ = ["BLAS_ROWS", "DECODE_MAX_ROWS", "CLASSES", "Plan", "choose", "current", "describe", "reset",
           "variant_names", "supported_variants", "cache_path", "measuring_ahead"]

# Products of at least this many rows (tokens x batch) always go to NumPy's BLAS: from 16-32 rows on its
# sgemm was at least as fast as our tiled kernel on every CPU measured (docs/kernels.md), and a prefill's
# time is arithmetic, where BLAS's hand-written kernels are hard to beat.
BLAS_ROWS = 32
# Up to this many rows, linear streams the weights (decoding); as csrc/linear.c's DECODE_MAX_ROWS.
DECODE_MAX_ROWS = 12
# A C candidate within this fraction of NumPy's time counts as fast as it. With more than one thread it is then
# preferred: it keeps all parallel work on one thread pool (mixing OpenBLAS's threads with ours costs the whole
# model more than a few percent on one kind of call: docs/kernels.md, "Things worth knowing"). With one thread
# NumPy is (see _fastest). 5% is about the noise of one measurement on a shared machine.
TIE = 0.05
# After each call OpenBLAS's idle threads spin for about 0.1 s (2**28 time-stamp ticks, its THREAD_TIMEOUT) before
# they sleep, holding cores our pool's workers need. In the model, decoding on C alone, they are asleep; in the
# calibration, the candidate timed right after NumPy's would share its cores with them. So the race waits this long
# after a candidate that called BLAS: the linear classes' NumPy runs (NumPy's attention, layer norm and gelu at
# these sizes left OpenBLAS's threads idle, measured by their CPU time on Zen 5; a 1 x 768 @ 768 x 3072 woke them).
# (Zen 5, 2 threads, decode steps of the model's kernels on its weights, C against NumPy: without the wait C took
# 7.1 ms against NumPy's 6.7, with it 5.8 against 6.5-7.1; the model itself, C alone against NumPy alone: 12.96
# against 14.69 ms a token.)
BLAS_SETTLE = 0.12
# A candidate more than this many times the best time of a race's first round runs no more rounds. Of the 19
# candidates of a one-row product, 5-8 came within 25% of the best (Xeon, one and two threads); the candidates
# were apart by far more than one round's noise (a few percent), and the races took a third of the time.
STILL_IN = 1.2

# class -> what it covers (the calibration measures each on a GPT-2-sized example)
CLASSES = {
    "linear_1": "linear, 1 row, Conv1D weight (decoding one sequence)",
    "linear_1_head": "linear, 1 row, tied head wte.T (decoding one sequence)",
    "linear_few": f"linear, 2-{DECODE_MAX_ROWS} rows, Conv1D weight (decoding a batch)",
    "linear_few_head": f"linear, 2-{DECODE_MAX_ROWS} rows, tied head",
    "linear_tiled": f"linear, {DECODE_MAX_ROWS + 1}-{BLAS_ROWS - 1} rows (short prompts)",
    "attention_decode": "attention, one query per sequence",
    "attention_prompt": "attention, several queries",
    "layer_norm": "layer_norm",
    "gelu_new": "gelu_new",
}
# Weights in 16 or 8 bits (weights.py) are always read by C (NumPy would first widen the whole matrix to float32),
# in the variants wider than the baseline where there are any (widening is arithmetic, which only the wider variants
# have instructions for; which of them is measured). Which walk and prefetch kind read them fastest is measured
# apart from float32's: a row of W is half or a quarter of the bytes, which changes what the CPU's prefetchers see
# (Zen 3, one thread, int8 blocks: 9.5 GB/s by rows without prefetching, 14 with it; float32 was level). Measured
# for decoding one sequence; the other classes take the winner's walk and prefetch kind ("NARROW_LIKE"), a
# prompt in the variant of float32's fastest prompt product (Plan.narrow_pick). int8
# matrices are all stored with their columns contiguous (weights.Int8Weight), and few rows of them take one kernel,
# integer dot products (csrc/dots_i8.h), whose prefetch kind is measured on GPT-2's block matrices as the head's
# class; a Conv1D int8 weight stored by rows (one built by hand) takes float32's choice (Plan.narrow_pick). bfloat16
# and float16 are measured apart: their widenings differ (a shift; x86's vcvtph2ps, NEON's fcvtl), and so can their
# fastest walks (Zen 4, one thread, one row at a time in AVX2: bfloat16 69, float16 43 tok/s).
NARROW = {"bfloat16": "bfloat16 weights (widened in registers)",
          "float16": "float16 weights (widened in registers)",
          "int8": "int8 weights (integer dot products)"}
NARROW_MEASURED = {"bfloat16": ("linear_1", "linear_1_head"), "float16": ("linear_1", "linear_1_head"),
                   "int8": ("linear_1_head",)}
NARROW_LIKE = {"linear_1": "linear_1", "linear_1_head": "linear_1_head", "linear_few": "linear_1",
               "linear_few_head": "linear_1_head", "linear_tiled": "linear_1"}
PREFETCH = {"none": 0, "nta": 1, "keep": 2}
SCHEME = 11  # what calibrate() measures: a cached choice made by another scheme is measured again
STREAM_ROWS = 4  # csrc/kernels.h MG_STREAM_ROWS ("/rows" in a choice): the other walk through W (see WALKS)
STREAM_SEQ = 8   # csrc/kernels.h MG_STREAM_SEQ, with STREAM_ROWS ("/seq" in a choice): that walk one row at a time
# The walks through a weight in the decode kernels: a Conv1D weight's tiles in register strips, row by row four
# rows side by side (sums in L1), or one row after another (one stream through the tile); the tied head's columns
# four side by side or one after another (HEAD_WALKS). The same sums every way.
WALKS = ("", "/rows", "/seq")
HEAD_WALKS = ("", "/rows")
BATCH_WALKS = ("", "/rows")  # (several rows of x: "/seq" walks as "/rows", csrc/decode.h decode_tile)
WALK_BITS = {"": 0, "/rows": STREAM_ROWS, "/seq": STREAM_ROWS | STREAM_SEQ}
NUMPY = "numpy"
# The classes a decoding step's block calls for one sequence (csrc/block.c): when C serves all of them, the step's
# blocks are one C call (for narrow weights, their own product class stands in for "linear_1").
BLOCK_KERNELS = ("linear_1", "attention_decode", "layer_norm", "gelu_new")
# The classes whose weights or keys stream from memory when decoding one sequence, with those of NARROW: their close
# calls are raced once more at the next run (_second_look).
DECIDING = ("linear_1", "linear_1_head", "attention_decode")


def _ck():
    from . import _ckernels

    return _ckernels


_names = _supported = None


def variant_names() -> tuple:
    """The variants compiled into this build of the C core, narrowest first."""
    global _names
    if _names is None:
        lib = _ck().lib
        _names = tuple(_ck().ffi.string(lib.mg_variant_name(i)).decode() for i in range(lib.mg_variant_count()))
    return _names


def narrow_variants() -> tuple:
    """The variants the calibration times for narrow weights: those this CPU runs, but the baseline only where it
    is the only one (see calibrate)."""
    runnable = supported_variants()
    return runnable[1:] if len(runnable) > 1 else runnable


def supported_variants() -> tuple:
    """The variants this CPU (and operating system) can run."""
    global _supported
    if _supported is None:
        lib = _ck().lib
        _supported = tuple(name for i, name in enumerate(variant_names()) if lib.mg_variant_supported(i))
    return _supported


def mode_of(pick: str) -> tuple:
    """("avx2", the mode the C kernels take) for a C choice such as "avx2/nta/rows": its prefetch kind plus its
    walk's bits."""
    variant, prefetch, *walk = pick.split("/")
    return variant, PREFETCH[prefetch] | WALK_BITS["".join("/" + w for w in walk)]


class Plan:
    """class -> choice ("numpy", or "variant/prefetch[/rows]" such as "avx2/nta" or "avx2/keep/rows"), with the
    lookups the kernels use: (variant index, prefetch kind | STREAM_ROWS, variant name) or None for NumPy."""

    def __init__(self, choice: dict, how: str, measured: dict | None = None):
        self.choice, self.how, self.measured = dict(choice), how, measured or {}
        index = {name: i for i, name in enumerate(variant_names())}

        def resolve(cls, pick=None):
            pick = pick or self.choice.get(cls, NUMPY)
            if pick == NUMPY:
                return None
            variant, mode = mode_of(pick)
            return index[variant], mode, variant

        self.by_class = {cls: resolve(cls) for cls in CLASSES}
        # linear: [transposed][min(rows, DECODE_MAX_ROWS + 1)] (the caller sends float32 products of rows >=
        # BLAS_ROWS to NumPy); narrow_linear: the same for each kind of NARROW
        self.linear = [[None] * (DECODE_MAX_ROWS + 2) for _ in range(2)]
        self.narrow_linear = {kind: [[None] * (DECODE_MAX_ROWS + 2) for _ in range(2)] for kind in NARROW}
        narrow = {kind: {cls: resolve(cls, self.narrow_pick(cls, kind)) for cls in NARROW_LIKE} for kind in NARROW}
        for rows in range(1, DECODE_MAX_ROWS + 2):
            for transposed, head in ((0, ""), (1, "_head")):
                cls = ("linear_1" + head if rows == 1 else "linear_few" + head if rows <= DECODE_MAX_ROWS
                       else "linear_tiled")
                self.linear[transposed][rows] = self.by_class[cls]
                for kind in NARROW:
                    self.narrow_linear[kind][transposed][rows] = narrow[kind][cls]
        self.attention_decode = self.by_class["attention_decode"]
        self.attention_prompt = self.by_class["attention_prompt"]
        self.layer_norm = self.by_class["layer_norm"]
        self.gelu_new = self.by_class["gelu_new"]

    def narrow_pick(self, cls, kind):
        """What serves the class for weights of a NARROW kind; None when NumPy was forced. The calibration's
        own measurement for the kind (choice["linear_1@int8"] ...) where there is one; else (a forced plan, or a
        plan made by hand) float32's walk and prefetch kind for the class in the widest variant (where NumPy won
        float32, those of the fastest C candidate measured there).

        A prompt's product (linear_tiled) is bound by the arithmetic, which the variant's vector width decides;
        one row's product is bound by the memory, and its variants come out near even. So a prompt takes the
        variant float32's prompts were fastest in, with the kind's own prefetch kind (a Xeon Emerald Rapids VM,
        one thread: bfloat16's one-row race chose avx2 by 5%, and its prompts ran at 285 tok/s, 359 in avx512)."""
        own = self.choice.get(f"{NARROW_LIKE[cls]}@{kind}")
        if own is not None and (cls != "linear_tiled" or own == NUMPY):
            return own
        pick = self.choice.get(cls, NUMPY)
        if pick == NUMPY:
            times = {c: t for c, t in self.measured.get(cls, {}).items() if c != NUMPY}
            if times:
                pick = min(times, key=times.get)
            elif self.how.startswith("forced"):
                return None
            else:
                pick = f"{supported_variants()[-1]}/nta"
        if self.how.startswith("forced"):  # a forced variant serves everything
            return pick
        variant = (own or supported_variants()[-1]).split("/")[0]
        if cls == "linear_tiled":
            variant = self.fastest_prompt_variant() or variant
        prefetch = (own or pick).split("/")[1]  # (a prompt has no walk)
        return "/".join([variant, prefetch] + pick.split("/")[2:])

    def fastest_prompt_variant(self):
        """The variant float32's prompt product (linear_tiled) was fastest in, of those wider than the baseline;
        None where that race was not run (a plan made by hand)."""
        times = {c: t for c, t in self.measured.get("linear_tiled", {}).items()
                 if c.split("/")[0] in supported_variants()[1:]}
        return min(times, key=times.get).split("/")[0] if times else None


def forced(name: str) -> Plan:
    """Every class served by one variant (or by NumPy)."""
    pick = NUMPY if name == NUMPY else f"{name}/nta"
    return Plan({cls: pick for cls in CLASSES}, f"forced ({name})")


# -- the choice in force ----------------------------------------------------------------------------------

_lock = threading.Lock()
_plan = None        # the Plan in force, once made
_requested = None   # set_kernel's argument (None: from MINIGPT2_KERNEL)


def check_name(name, source="kernel") -> str:
    """``name`` if it is a choice this machine can make, else a ValueError that lists the allowed ones."""
    names, runnable = variant_names(), supported_variants()
    allowed = ("auto", NUMPY) + runnable
    if name in allowed:
        return name
    if name in names or name in ("generic", "avx2", "avx512", "neon"):
        why = "this CPU cannot run it" if name in names else "this build of the C core has no such variant"
        raise ValueError(f"{source} {name!r}: {why}; this machine can use {', '.join(allowed)}")
    raise ValueError(f"{source} {name!r} is not a kernel variant; choose one of {', '.join(allowed)}")


def choose(name: str | None) -> None:
    """Use ``name`` ("auto", "numpy" or a variant) from the next kernel call on; None: MINIGPT2_KERNEL."""
    global _plan, _requested
    if name is not None:
        check_name(name)
    with _lock:
        _requested, _plan = name, None


def reset() -> None:
    """Forget the choice in force (the next call decides again, from the cache or by measuring)."""
    global _plan
    with _lock:
        _plan = None


def current() -> Plan:
    """The Plan in force, deciding it on first use (MINIGPT2_KERNEL, else the cache, else a calibration)."""
    global _plan
    plan = _plan
    if plan is not None:
        return plan
    with _lock:
        if _plan is None:
            name = _requested or os.environ.get("MINIGPT2_KERNEL", "").strip() or "auto"
            if _requested is None:
                check_name(name, "MINIGPT2_KERNEL")
            _plan = calibrated() if name == "auto" else forced(name)
        return _plan


def describe(plan: Plan | None = None) -> list:
    """Lines saying what serves each class, for --info and the benchmark."""
    plan = plan or current()
    lines = [f"kernel choice: {plan.how}"]
    for cls, what in CLASSES.items():
        lines.append(f"  {what}: {plan.choice.get(cls, NUMPY)}")
    for kind, what in NARROW.items():
        # (int8 matrices are all stored by columns, the head's layout: the head's classes serve them)
        classes = ("linear_1_head", "linear_few_head", "linear_tiled") if kind == "int8" else NARROW_LIKE
        picks = {cls.replace("linear_", "").replace("_head", "") if kind == "int8" else cls.replace("linear_", ""):
                 plan.narrow_pick(cls, kind) or NUMPY for cls in classes}
        lines.append(f"  linear with {what}: " + ", ".join(f"{name} {pick}" for name, pick in picks.items()))
    # A decoding step's block is one C call (csrc/block.c) when C serves every kernel it calls.
    rest_in_c = all(plan.choice.get(cls, NUMPY) != NUMPY for cls in BLOCK_KERNELS if cls != "linear_1")
    products = {"float32": plan.choice.get("linear_1", NUMPY),
                **{kind: plan.narrow_pick("linear_1_head" if kind == "int8" else "linear_1", kind) or NUMPY
                   for kind in NARROW}}
    lines.append("  a decoding block as one C call (one sequence), by weights: "
                 + ", ".join(f"{fmt} {'yes' if rest_in_c and pick != NUMPY else 'no'}"
                             for fmt, pick in products.items()))
    return lines


# -- the cache ---------------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        return " ".join(fields.get(k, "") for k in ("model name", "cpu family", "model", "stepping",
                                                    "CPU implementer", "CPU part")).strip() or platform.processor()
    except OSError:  # (no /proc: macOS, where uname says only "arm" or "i386" for every chip, so ask sysctl)
        return _sysctl("machdep.cpu.brand_string") or platform.processor() or platform.machine()


def _sysctl(name: str) -> str:
    """A BSD/macOS sysctl value as text ("Apple M2 Pro" for machdep.cpu.brand_string), "" where there is none."""
    import subprocess

    try:
        done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _digest(chunks) -> str:
    """16 hex digits that tell apart different bytes (a cache key, not a security check: CRC-32 and Adler-32
    together. zlib, not hashlib, whose OpenSSL would add 3.6 MB to every decoding process's memory)."""
    crc, adler = 0, 1
    for chunk in chunks:
        crc, adler = zlib.crc32(chunk, crc), zlib.adler32(chunk, adler)
    return f"{crc:08x}{adler:08x}"


def _build_id() -> str:
    path = _ck().library_path()
    try:
        with open(path, "rb") as f:
            return _digest(iter(lambda: f.read(1 << 16), b""))  # (not all at once: it would count in the RSS)
    except OSError:
        return _digest([path.encode()])


def cache_key(threads: int) -> dict:
    from . import __version__, _blas_threads

    # The user too: where XDG_CACHE_HOME names a folder several users share, each keeps a file of their own (their
    # runs measured at the same moment as someone else's, on the same cores, are theirs to redo) and never replaces
    # another's; _read_cache reads only one's own files.
    return {"cpu": _cpu_model(), "variants": list(supported_variants()), "minigpt2": __version__,
            "scheme": SCHEME, "build": _build_id(), "numpy": np.__version__, "threads": threads,
            "blas_threads": _blas_threads.most_jobs(threads),  # (NumPy's speed, which the races weigh, follows it)
            "user": os.getuid() if hasattr(os, "getuid") else None}


def cache_path(key: dict) -> str:
    # (a relative XDG_CACHE_HOME is invalid and ignored, as the XDG Base Directory specification says: it would
    # name a different folder in every working directory)
    xdg = os.environ.get("XDG_CACHE_HOME") or ""
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    digest = _digest([json.dumps(key, sort_keys=True).encode()])
    return os.path.join(base, "minigpt2", f"kernels-{digest}.json")


def _narrow_classes() -> list:
    """The classes calibrate() measures for NARROW weights: "linear_1@bfloat16", ..."""
    return [f"{cls}@{kind}" for kind in NARROW for cls in NARROW_MEASURED[kind]]


def _is_choice(pick, names) -> bool:
    """Whether ``pick`` is a choice a Plan can serve: "numpy", or "variant/prefetch" plus a walk of WALKS ("/rows",
    "/seq") with a variant this CPU runs."""
    parts = pick.split("/") if isinstance(pick, str) else []
    return pick == NUMPY or (len(parts) in (2, 3) and parts[0] in names and parts[1] in PREFETCH
                             and "".join("/" + p for p in parts[2:]) in WALKS)


def _read_cache(path: str, key: dict):
    """The saved choice for ``key``, or None when the file is missing, unreadable, another user's, made for another
    key, or not a choice through and through (valid JSON is not enough: a file edited by hand, or damaged, measures
    again)."""
    try:
        with open(path, encoding="utf-8") as f:
            if hasattr(os, "getuid") and os.fstat(f.fileno()).st_uid != os.getuid():
                return None  # another user's file, in a folder they let us write: not our choice to take
            saved = json.load(f)
        if not isinstance(saved, dict) or saved.get("key") != key or not isinstance(saved.get("choice"), dict):
            return None
        names = set(supported_variants())
        measured = saved.get("measured", {})
        if (set(saved["choice"]) == set(CLASSES) | set(_narrow_classes())
                and all(_is_choice(c, names) for c in saved["choice"].values())
                and isinstance(measured, dict) and all(
                    isinstance(times, dict) and all(isinstance(t, (int, float)) for t in times.values())
                    for times in measured.values())
                and all(_is_choice(c, names) for cls in (*CLASSES, *_narrow_classes())
                        for c in measured.get(cls, {}))):  # (Plan and _second_look read them)
            return saved
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):  # (JSON nested too deep)
        pass
    return None


_told = []  # whether stderr has said that the choice cannot be saved (once per process)


def _say_not_saved(path: str, why: str) -> None:
    if _told:
        return
    _told.append(why)
    home_cache = os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.abspath(os.path.dirname(path))
    # (no $HOME/.cache example when that is where saving failed: a read-only or full home)
    example = ("e.g. XDG_CACHE_HOME=/tmp/$USER-cache" if folder.startswith(os.path.abspath(home_cache) + os.sep)
               else "e.g. XDG_CACHE_HOME=$HOME/.cache")
    logging.getLogger("minigpt2.kernels").warning(
        f"[minigpt2: the kernel choice cannot be saved in {os.path.dirname(path)} ({why}), so it is measured "
        f"again at every run (up to about 10 s); set XDG_CACHE_HOME to a directory of your own that you can write, "
        f"{example}, or choose the kernels with MINIGPT2_KERNEL]")


def measuring_ahead():
    """(the cache file, why it cannot be saved or None) if the next kernel call will measure the kernels (no choice
    in force, MINIGPT2_KERNEL unset or "auto", no cached choice for this machine), else None: for a note before the
    seconds of measuring (the CLI's)."""
    from . import backend

    if _plan is not None or (_requested or os.environ.get("MINIGPT2_KERNEL", "").strip() or "auto") != "auto":
        return None
    key = cache_key(backend.get_num_threads())
    path = cache_path(key)
    return None if _read_cache(path, key) is not None else (path, cannot_write_beside(path))


def calibrated() -> Plan:
    from . import backend

    key = cache_key(backend.get_num_threads())
    path = cache_path(key)
    saved = _read_cache(path, key)
    if saved is not None and saved.get("second_look"):
        return Plan(saved["choice"], f"measured on this machine, cached in {path}", saved.get("measured"))
    if saved is not None:  # (the second run: a write that fails now leaves the look to the next)
        choice, measured, raced = _second_look(saved["choice"], saved["measured"])
        write_json_atomically(path, dict(saved, choice=choice, measured=measured,
                                         second_look=time.strftime("%Y-%m-%d %H:%M:%S")))
        again = ", its close calls again just now" if raced else ""
        return Plan(choice, f"measured on this machine{again}, cached in {path}", measured)
    why = cannot_write_beside(path)
    if why is not None:  # said before the seconds of measuring, not after
        _say_not_saved(path, why)
    choice, measured = calibrate()
    why = why or write_json_atomically(path, {"key": key, "choice": choice, "measured": measured,
                                              "when": time.strftime("%Y-%m-%d %H:%M:%S")})
    if why is not None:
        _say_not_saved(path, why)
        return Plan(choice, f"measured on this machine just now; not saved ({why}), so measured again at every "
                            f"run: set XDG_CACHE_HOME to a directory of your own", measured)
    return Plan(choice, f"measured on this machine just now, cached in {path}", measured)


# -- the calibration ---------------------------------------------------------------------------------------

def _second_look(choice: dict, measured: dict) -> tuple:
    """(choice, measured, whether anything was raced): the choice after racing its close calls (_close_calls) once
    more, at the next run; each of their candidates keeps the faster of its two times. A memory-bound race run while
    something else on the machine reads memory only slows, and can reorder, its candidates (Xeon Emerald Rapids VM,
    2 threads: one calibration timed every product and attention 1.4-3x slower than the others did and chose for
    bfloat16 weights `avx2/none/rows`, 9.9 ms against 10.9 for `avx512/keep/rows`; the model then decoded at 60
    tok/s, where the others' choice, `avx512/keep/rows` at 4.4 ms, decoded at 108). A race at another time seldom
    shares that moment, and a candidate's faster time is the nearer to what it does alone."""
    choice, measured = dict(choice), {cls: dict(times) for cls, times in measured.items()}
    close = _close_calls(choice, measured)
    if close:
        _, again = calibrate(only=close)
        for cls, names in close.items():
            measured[cls].update({c: min(measured[cls][c], again[cls].get(c, math.inf)) for c in names})
            choice[cls] = min(names, key=measured[cls].get)
    return choice, measured, bool(close)


def _close_calls(choice: dict, measured: dict) -> dict:
    """{class: [candidate, ...]}: for each class of DECIDING that C won, its C candidates within STILL_IN of the
    fastest, where there are two or more (whether C or NumPy serves a class stays as first measured)."""
    close = {}
    for cls in DECIDING + tuple(_narrow_classes()):
        times = {c: t for c, t in measured.get(cls, {}).items() if c != NUMPY}
        if choice.get(cls, NUMPY) != NUMPY and times:
            names = [c for c, t in times.items() if t <= min(times.values()) * STILL_IN]
            if len(names) > 1:
                close[cls] = names
    return close


def _l3_bytes(caches: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """The last-level cache's size in bytes (L3, else the largest level), 0 if unknown. Linux's sysfs first: CPython's
    os.sysconf knows no SC_LEVEL3_CACHE_SIZE there (ValueError), and the calibration's example, at least twice
    this, stayed at its 64 MiB floor on every CPU."""
    sizes = {}
    for index in glob.glob(os.path.join(caches, "index*")):
        try:
            with open(os.path.join(index, "level")) as f, open(os.path.join(index, "size")) as g:
                level, size = int(f.read()), g.read().strip().upper()
            sizes[level] = int(size.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(size[-1:], 0)
        except (OSError, ValueError):
            continue
    if sizes:
        return sizes.get(3) or sizes[max(sizes)]
    try:
        return max(os.sysconf("SC_LEVEL3_CACHE_SIZE"), 0)
    except (ValueError, OSError, AttributeError):
        return 0


def _fastest(times: dict, decides_the_block: bool = False) -> str:
    """The candidate with the least median time. A near tie (within TIE) with NumPy goes to C with more than one thread
    (one pool then keeps the cores) and to NumPy with one thread, where there is no pool to keep: a C kernel that
    only tied alone had run the model slower (Zen 3, 1 thread, float32: 33 against NumPy's 37 tok/s). But for the
    kernels a decoding block calls (``decides_the_block``: BLOCK_KERNELS), a near tie goes to C at one thread too: C
    for all of them makes a decoding step's blocks one C call (csrc/block.c), which saves the Python between the
    kernels that a kernel timed alone does not show (Xeon Sapphire Rapids, 1 thread, float32, three fresh
    calibrations: C 3.8% faster alone went to NumPy, 26.7 tok/s; the two where C won by more than TIE decoded at 28.8
    and 29.5. Xeon Emerald Rapids, 1 thread: the block matrices' product 4.9% slower in C alone and attention 3.5%
    faster had both gone to NumPy, 20.3 tok/s; with both in C, 23.9)."""
    median = {c: statistics.median(t) for c, t in times.items()}
    best = min(median, key=median.get)
    c_best = min((c for c in median if c != NUMPY), key=median.get, default=None)
    if NUMPY not in median or c_best is None:
        return best
    from . import backend  # (imported here: backend imports this module through _ckernels)
    if backend.get_num_threads() > 1 or decides_the_block:
        return c_best if median[c_best] <= median[NUMPY] * (1 + TIE) else NUMPY
    return c_best if median[c_best] * (1 + TIE) < median[NUMPY] else NUMPY


def _pair_options(pair: tuple, fastest_c: tuple) -> dict:
    """What the pair race (the block products and the head, timed as a decoding step runs them) compares, given
    the choices each made alone: nothing if both went to C; else all C (each one's fastest C candidate), all
    NumPy, and the mix as chosen if it is one."""
    if NUMPY not in pair:
        return {}
    options = {"c": tuple(fastest_c), NUMPY: (NUMPY, NUMPY)}
    if pair != (NUMPY, NUMPY):
        options["mixed"] = tuple(pair)
    return options


def _race(candidates: dict, rounds: int = 3, blas=(), decides_the_block: bool = False) -> tuple:
    """Time each candidate (name -> function of no arguments) ``rounds`` times, interleaved, in a rotating
    order, each run after one untimed run (below); returns (fastest, {name: median seconds}). After the first round
    only the candidates within STILL_IN of its best time run again: the others can neither win nor tie (TIE). After
    a candidate named in ``blas`` (one that calls NumPy's BLAS), with more than one thread, wait BLAS_SETTLE seconds.

    Each timed run follows an untimed run of the same candidate, which leaves the caches and the threads as that
    candidate's own steps would: the run before, another candidate's, leaves a part of the example in the caches or
    not, by its prefetch kind (Xeon Emerald Rapids VM, one thread, the block matrices from 128 MiB: NumPy's time
    was 1.20x its time after its own run when it followed a C run with non-temporal prefetches, 1.00x after C runs
    without them), and wakes threads or not (OpenBLAS's sleep after BLAS_SETTLE, the C pool's after NumPy's turn).

    NumPy's floating-point warnings are off inside: the examples are finite numbers and the results are thrown
    away, so a warning could only come from a BLAS that raises the CPU's flags on finite data, as Arm's SME does
    (entering its streaming mode sets every flag: Apple M4's Accelerate, numpy/numpy#28687; OpenBLAS under qemu's
    "max" CPU), and it would only alarm the user at their first run ("divide by zero encountered in matmul")."""
    from . import backend  # (imported here: backend imports this module through _ckernels)

    settle = BLAS_SETTLE if backend.get_num_threads() > 1 else 0.0
    times = {name: [] for name in candidates}
    names = list(candidates)
    with np.errstate(all="ignore"):
        for r in range(rounds):
            if r == 1:
                best = min(t[0] for t in times.values())
                names = [name for name in names if times[name][0] <= best * STILL_IN]
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn = candidates[name]
                fn()
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
                if name in blas and settle:
                    time.sleep(settle)
    return _fastest(times, decides_the_block), {name: statistics.median(t) for name, t in times.items()}


# The products of one GPT-2 124M block, in order: c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj.
BLOCK_SHAPES = ((768, 2304), (768, 768), (768, 3072), (3072, 768))


def _carve(flat, shapes) -> list:
    """Consecutive matrices of the given shapes, views of the flat array one after another."""
    mats, start = [], 0
    for rows, cols in shapes:
        mats.append(flat[start:start + rows * cols].reshape(rows, cols))
        start += rows * cols
    return mats


def calibrate(only: dict | None = None) -> tuple:
    """Measure every candidate on each class; returns ({class: choice}, {class: {candidate: microseconds}}).
    ``only`` ({class: [candidate, ...]}, classes of DECIDING): race just those (a second look, _second_look)."""
    ck = _ck()
    from . import activations, backend, layers

    index = {name: i for i, name in enumerate(variant_names())}
    runnable = supported_variants()
    rng = np.random.default_rng(0)
    # The decode classes stream weights from memory, so their example must not fit in the caches: the four
    # products of a GPT-2 124M block, in its order, repeated to fill at least 64 MiB and twice the L3 cache. All
    # four shapes: the walks read them at different speeds (Zen 3, one thread, by rows: 3072 x 768 at 16 GB/s, the
    # others at 22, where OpenBLAS read all four at 22-26; timed on 768 x 3072 alone, C won by 3%, and its
    # products then took 26% longer than NumPy's in the model). At most 128 MiB: a server VM's sysfs reports its
    # host's L3 (300 MiB on an Emerald Rapids VM), of which one VM keeps far less (there, NumPy's gemv read 64, 128,
    # 256 and 512 MiB at 9.5-10.9 GB/s, 32 MiB at 18); 256 MiB examples made a calibration 19 s with one thread.
    total = min(max(64 << 20, 2 * _l3_bytes()), 128 << 20)
    n_in = 768
    blocks = max(2, -(-total // (4 * sum(a * b for a, b in BLOCK_SHAPES))))  # (28 MB of float32 a block)
    memory = np.full(blocks * sum(a * b for a, b in BLOCK_SHAPES), 0.01, np.float32)
    mats = _carve(memory, BLOCK_SHAPES * blocks)
    head = memory.reshape(-1, n_in).T  # (768, N): the tied head's layout, columns contiguous
    xs = {(rows, n): rng.standard_normal((rows, n), dtype=np.float32) for rows in (1, 8, 24) for n in (768, 3072)}
    # In the model every product is followed by other kernels on the C core's thread pool. With more than one
    # thread that matters for NumPy: its BLAS has its own threads, which then compete with ours for the cores
    # (measured on Zen 3: OpenBLAS's gemv alone read 27 GB/s with 2 threads, yet decoding with it between our
    # kernels was slower than with 1 thread). So each timed product is followed, for every candidate, by an
    # interlude: a small job on the C core's pool (gelu_new over 3 x 8192 values: three items).
    interlude_x = rng.standard_normal(3 * 8192, dtype=np.float32)
    widest = index[runnable[-1]]

    def interlude():
        ck.run_gelu_new(widest, interlude_x)

    def c_linear(variant, prefetch, rows, transposed):
        v, p = mode_of(f"{variant}/{prefetch}")
        v = index[v]
        if transposed:
            return lambda: (ck.run_linear(v, p, xs[rows, n_in], head), interlude())
        return lambda: [(ck.run_linear(v, p, xs[rows, w.shape[0]], w), interlude()) for w in mats]

    def np_linear(rows, transposed):
        def reference(x, w):  # as the model calls NumPy: the C pool's idle workers sleep first (mg_pool_rest)
            ck.lib.mg_pool_rest()
            return layers.linear.reference(x, w)
        if transposed:
            return lambda: (reference(xs[rows, n_in], head), interlude())
        return lambda: [(reference(xs[rows, w.shape[0]], w), interlude()) for w in mats]

    choice, measured = {}, {}

    def race(cls, candidates, **how):
        if only is None or cls in only:
            candidates = {c: run for c, run in candidates.items() if only is None or c in only[cls]}
            choice[cls], measured[cls] = _race(candidates, **how)

    for cls, rows, transposed in (("linear_1", 1, False), ("linear_1_head", 1, True)):
        candidates = {f"{v}/{p}{walk}": c_linear(v, p + walk, rows, transposed)
                      for v in runnable for p in PREFETCH for walk in (HEAD_WALKS if transposed else WALKS)}
        candidates[NUMPY] = np_linear(rows, transposed)
        race(cls, candidates, blas=(NUMPY,), decides_the_block=cls in BLOCK_KERNELS)
    for cls, rows, transposed, like in () if only else (("linear_few", 8, False, "linear_1"),
                                                        ("linear_few_head", 8, True, "linear_1_head"),
                                                        ("linear_tiled", 24, False, "linear_1")):
        # with every variant: for the block matrices the prefetch kind that won the one-row class (or the fastest C
        # candidate there) and, for a batch, both walks; for the tied head, one product, every prefetch kind (8 rows
        # are more arithmetic per byte than one: Zen 3, 2 threads, the head's one-row winner "none" took 10.5 ms for
        # 8 rows where "nta" took 9.5 and NumPy 14.7, and with "none" alone the race had called it a tie for NumPy)
        best_c = min((c for c in measured[like] if c != NUMPY), key=measured[like].get)
        prefetches = tuple(PREFETCH) if transposed else (best_c.split("/")[1],)
        walks = ("",) if cls == "linear_tiled" else BATCH_WALKS
        candidates = {f"{v}/{prefetch}{walk}": c_linear(v, prefetch + walk, rows, transposed)
                      for v in runnable for prefetch in prefetches for walk in walks}
        candidates[NUMPY] = np_linear(rows, transposed)
        choice[cls], measured[cls] = _race(candidates, blas=(NUMPY,))

    # A decoding step calls the block matrices and then the head, one after the other. Where one of the pair
    # went to NumPy and the other to C, with more than one thread, the two thread pools then take turns: each
    # call wakes threads the other pool's spinning workers still hold the cores of. Measured on Zen 3 (2 threads):
    # each choice faster alone, the mix decoded at 38 tok/s where NumPy alone did 50. So the pair is also timed
    # as it runs in the model: all C, all NumPy, and mixed if so chosen; the fastest serves. (Also when both went
    # to NumPy: alone, each product was timed with no C kernel running next to it for long.)
    if backend.get_num_threads() > 1 and not only:
        for block, head_cls, rows in (("linear_1", "linear_1_head", 1), ("linear_few", "linear_few_head", 8)):
            fastest_c = tuple(min((c for c in measured[cls] if c != NUMPY), key=measured[cls].get)
                              for cls in (block, head_cls))
            options = _pair_options((choice[block], choice[head_cls]), fastest_c)
            if not options:
                continue

            def step(picks, rows=rows):
                run = [np_linear(rows, t) if p == NUMPY else c_linear(p.split("/")[0], "/".join(p.split("/")[1:]),
                                                                       rows, t) for p, t in zip(picks, (0, 1))]
                return lambda: (run[0](), run[1]())

            winner, times = _race({name: step(picks) for name, picks in options.items()}, blas=("mixed", NUMPY))
            winner = "c" if winner == "mixed" and times["c"] <= times["mixed"] * (1 + TIE) else winner
            choice[block], choice[head_cls] = options[winner]
            measured[f"{block}+head"] = times
    # Narrow weights (NARROW): the same bytes seen as bfloat16 or float16 (whose bits of 0.01 are normal numbers,
    # never subnormals that would slow a multiply), or as int8 with their scales (the block matrices stored by
    # columns, as Int8Weight.quantize stores them); every variant, walk and prefetch kind (int8's dot products have
    # one walk). Not only the widest variant: on AMD Zen 4, whose AVX-512 runs as two 256-bit halves, AVX2 read
    # bfloat16 weights faster (the block matrices from memory, one thread, one row at a time: 19 GB/s against 16).
    # But not the baseline where a wider variant runs: it has no instruction to widen with (SSE2: no F16C, no
    # pmovzx) and took 1.9-2x the time for bfloat16, 4-4.5x for float16 and 9-13x for int8 on Zen 4, a second of
    # the calibration for a candidate that cannot win.
    from .weights import BFloat16Weight, Int8Weight

    bits, q = memory.view(np.uint16), memory.view(np.int8)
    by_columns = _carve(q, [(cols, rows) for rows, cols in BLOCK_SHAPES * 4 * blocks])
    halves = bits.view(np.float16)  # (the bits of 0.01 as float16: normal numbers too)
    narrow = {"bfloat16": {"linear_1": [BFloat16Weight(m) for m in _carve(bits, BLOCK_SHAPES * 2 * blocks)],
                           "linear_1_head": [BFloat16Weight(bits.reshape(-1, n_in)).T]},
              "float16": {"linear_1": _carve(halves, BLOCK_SHAPES * 2 * blocks),
                          "linear_1_head": [halves.reshape(-1, n_in).T]},
              "int8": {"linear_1_head": [Int8Weight(m.T, np.full((m.shape[0], m.shape[1] // 32), 0.01, np.float16).T)
                                         for m in by_columns]}}
    for kind, classes in narrow.items():
        for cls, w in classes.items():
            def run(pick, w=w):
                v, p = mode_of(pick)
                v = index[v]
                return lambda: [(ck.run_linear(v, p, xs[1, m.shape[0]], m), interlude()) for m in w]

            walks = ("",) if kind == "int8" else HEAD_WALKS if cls.endswith("_head") else WALKS
            candidates = {f"{v}/{p}{walk}": run(f"{v}/{p}{walk}") for v in narrow_variants() for p in PREFETCH
                          for walk in walks}
            race(f"{cls}@{kind}", candidates)
    del mats, head, bits, halves, q, by_columns, narrow

    # Attention for one query per sequence: in the model its keys and values come from main memory (the weights
    # read since pushed them out of the caches), so the example is GPT-2 124M layers' caches at 256 positions, as
    # many as fill the same memory as the products' examples, one layer after another, with every prefetch kind
    # (Zen 5, 2 threads, 12 layers at 176 positions from memory: no prefetch hints 0.47 ms, hints 0.36-0.39).
    # The same memory, not a new block of it: in a VM the first touch of fresh memory can be slow (Xeon Emerald
    # Rapids VM: 0.4-1.0 s for 128 MiB, the same memory again 0.02 s), a second of the calibration spent on nothing.
    layer = 2 * 12 * 256 * 64  # (floats: a layer's keys and values)
    sets = min(max(2, -(-total // (4 * layer))), memory.size // layer)
    caches = memory[:sets * layer].reshape(sets, 2, 1, 12, 256, 64)
    q = rng.standard_normal((1, 12, 1, 64), dtype=np.float32)

    def c_attention(variant, prefetch):
        return lambda: [ck.run_attention(variant, prefetch, q, k, v, 0.125) for k, v in caches]

    candidates = {f"{v}/{p}": c_attention(index[v], PREFETCH[p]) for v in runnable for p in PREFETCH}
    candidates[NUMPY] = lambda: [layers.attention.reference(q, k, v, scale=np.float32(0.125), causal=True)
                                 for k, v in caches]
    race("attention_decode", candidates, decides_the_block=True)  # 3 rounds
    del caches, memory
    if only:
        return choice, _microseconds(measured)

    # attention for a prompt, layer norm, gelu: GPT-2 124M's shapes, in cache (small next to the weights' stream)
    prefetch = choice["linear_1"].split("/")[1] if choice["linear_1"] != NUMPY else "nta"
    q = rng.standard_normal((1, 12, 64, 64), dtype=np.float32)
    k = rng.standard_normal((1, 12, 64, 64), dtype=np.float32)
    candidates = {f"{v}/{prefetch}": (lambda i=index[v]: [ck.run_attention(i, PREFETCH[prefetch], q, k, k, 0.125)
                                                          for _ in range(4)]) for v in runnable}
    candidates[NUMPY] = lambda: [layers.attention.reference(q, k, k, scale=np.float32(0.125), causal=True)
                                 for _ in range(4)]
    choice["attention_prompt"], measured["attention_prompt"] = _race(candidates, rounds=5)
    x, g = rng.standard_normal((1, 768), dtype=np.float32), np.ones(768, np.float32)
    h = rng.standard_normal((1, 3072), dtype=np.float32)
    for cls, c_call, np_call in (
            ("layer_norm", lambda i: ck.run_layer_norm(i, x, g, g), lambda: layers.layer_norm.reference(x, g, g)),
            ("gelu_new", lambda i: ck.run_gelu_new(i, h), lambda: activations.gelu_new.reference(h))):
        candidates = {f"{v}/{prefetch}": (lambda i=index[v], f=c_call: [f(i) for _ in range(50)]) for v in runnable}
        candidates[NUMPY] = lambda f=np_call: [f() for _ in range(50)]
        choice[cls], measured[cls] = _race(candidates, rounds=5, decides_the_block=cls in BLOCK_KERNELS)
    return choice, _microseconds(measured)


def _microseconds(measured: dict) -> dict:
    return {cls: {c: round(t * 1e6, 1) for c, t in m.items()} for cls, m in measured.items()}
