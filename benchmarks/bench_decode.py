"""GPT-2 124M speed: minigpt2's C backend and NumPy backend against HF transformers + torch, in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_decode.py            # ~6 minutes
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_decode.py --busy     # + a busy process
    python benchmarks/bench_decode.py --quick                                                 # smoke run
    python benchmarks/bench_decode.py --profile --systems c,numpy                             # one step, per kernel
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_decode.py --matmul   # C matmul vs BLAS

(Some machines set OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which make NumPy's OpenBLAS pick slower kernels;
unset both for the benchmark command only. The JSON records which OpenBLAS kernel each run used.)

The model is the 124M architecture with random weights (speed does not depend on the values), written once
as config.json + model.safetensors that both libraries load (--checkpoint DIR uses real weights instead), then
dropped from the page cache, so that it is read from disk as a checkpoint is after a reboot (Linux keeps the pages a
write leaves in 4 KiB pieces, which decode slower: docs/kernels.md, "Pages"; each round says how much of the
worker's memory was mapped in 2 MiB pages).
Each measurement runs in a fresh process, so that its peak RSS is its own:
  decode b1    greedy decoding of 128 new tokens after a 16-token prompt, batch 1, with the KV cache;
               tokens per second, the prompt's forward pass excluded
  prefill 512  one forward pass over 512 tokens (the best of 2), tokens per second
  decode b8    8 sequences decoded together (16-token prompts, 64 steps), tokens per second over all 8
  RSS          the process's peak resident memory after loading and decoding (before the prefill), next to
               the size of the weights file
  memory read  the yardstick (benchmarks/memread.c, built with cffi: it needs setuptools and a C compiler; without
               them one line says so and these two columns are left out): a plain threaded read of 512 MiB just
               before and after each measurement (the faster of the two), and decode b1 as a share of the speed
               that bandwidth allows (every weight read once per token); shared machines' bandwidth changes from
               minute to minute. Where a system's weights fit in the last-level cache (as the OS reports it, or
               --cache-mib), they may be read from cache: its share is marked *, with a note under the table
--profile splits a decode step by kernel for each system of --systems but hf, in this process, at one thread count.
Systems: "c" (minigpt2, C backend, with the kernel variants chosen for this machine: minigpt2/_tuning.py),
"numpy" (minigpt2, NumPy backend), "hf" (transformers with attn_implementation="eager",
torch.inference_mode); "c:avx2" and the like force one variant of the C core (MINIGPT2_KERNEL), e.g.
--systems c,c:generic,c:avx2,numpy. "@dtype" loads the weights in 16 or 8 bits (from_pretrained(torch_dtype=...),
load_in_8bit's format for int8): c@bfloat16, c@float16 and c@int8 run by default, each shown as a ratio to "c"
(float32, the default) and with its own memory limit (its own bytes per token); hf@bfloat16 is HF with torch's
bfloat16 weights. The header says which CPU, which compiler and baseline the C core was built with, and what
serves each kind of kernel call at each thread count. Each runs at the default thread count (the cores this
process may use) and at 1 thread: MINIGPT2_NUM_THREADS, OPENBLAS_NUM_THREADS and torch.set_num_threads
are set alike. Repeats are interleaved (every system once per round, in a rotating order); the table shows
the median and [min - max], and each figure's ratio to HF at the same thread count. --busy runs a busy loop
in another process throughout (a machine where something else is running). JSON goes to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
SYSTEMS = ("c", "numpy", "hf", "c@bfloat16", "c@float16", "c@int8")
VARIANTS = ("generic", "avx2", "avx512", "neon")  # the C core's variants, for c:VARIANT
DTYPES = {"c": ("float32", "bfloat16", "float16", "int8"), "numpy": ("float32", "bfloat16", "float16", "int8"),
          "hf": ("float32", "bfloat16", "float16")}  # the weight formats each system loads (@DTYPE)


def loading_options(dtype):
    """from_pretrained's keywords for weights in ``dtype`` ("int8": load_in_8bit's format)."""
    return {"load_in_8bit": True} if dtype == "int8" else {"torch_dtype": dtype}


# -- the command line -------------------------------------------------------------------------------------------

def parse_systems(text):
    """--systems "c,numpy,c@int8" -> ["c", "numpy", "c@int8"]; a ValueError names what is wrong and what is allowed."""
    systems = []
    for system in text.split(","):
        base, _, dtype = system.strip().partition("@")
        name, _, variant = base.partition(":")
        if name not in DTYPES or (variant and name != "c"):
            raise ValueError(f"{system.strip()!r} is not a system; use c, numpy, hf or c:VARIANT "
                             f"({', '.join(VARIANTS)}), each with an optional @DTYPE, e.g. {','.join(SYSTEMS)}")
        if ":" in base and variant not in VARIANTS:
            raise ValueError(f"{system.strip()!r}: no C variant {variant!r}; use one of {', '.join(VARIANTS)}")
        if "@" in system and dtype not in DTYPES[name]:
            raise ValueError(f"{system.strip()!r}: {name} cannot load weights as {dtype!r}; use @"
                             + ", @".join(DTYPES[name]))
        systems.append(system.strip())
    return list(dict.fromkeys(systems))  # (each once)


def parse_threads(text):
    """--threads "2,1" -> [2, 1]; each a whole number from 1 to 256 (MINIGPT2_NUM_THREADS's range)."""
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        counts = []
    if not counts or not all(1 <= t <= 256 for t in counts):
        raise ValueError(f"--threads {text!r}: give comma-separated whole numbers from 1 to 256, e.g. 2,1")
    return list(dict.fromkeys(counts))


def c_core():
    """(the variants this CPU runs, None) if minigpt2's C core loads here, else ((), why not)."""
    sys.path.insert(0, str(ROOT))
    from minigpt2 import backend

    variants = backend.kernel_variants()
    return variants, None if variants else backend._c_problem


def can_write(path):
    """None if a file can be written at ``path`` (its folder made if need be), else why not: checked before
    anything is measured rather than after."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as e:
        return str(e)
    return None


# -- one measurement, in its own process --------------------------------------------------------------------

def worker(system, checkpoint, prompt, new_tokens, prefill, batch, batch_steps):
    """Load the model, measure, and print one JSON line."""
    import numpy as np

    threads = int(os.environ["MINIGPT2_NUM_THREADS"])
    system_name, _, dtype = system.partition("@")
    dtype = dtype or "float32"
    if system_name == "hf":
        import torch
        import transformers

        torch.set_num_threads(threads)
        model = transformers.GPT2LMHeadModel.from_pretrained(checkpoint, attn_implementation="eager",
                                                             torch_dtype=getattr(torch, dtype)).eval()
        bytes_per_token = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "wpe" not in n)
        context = torch.inference_mode

        def forward(ids, past=None):
            out = model(torch.from_numpy(ids), past_key_values=past, use_cache=True)
            return out.logits[:, -1].numpy(), out.past_key_values
    else:
        sys.path.insert(0, str(ROOT))
        import contextlib

        import minigpt2

        backend_name = system_name.split(":")[0]
        assert minigpt2.backend.name == backend_name, f"asked for backend {system}, got {minigpt2.backend.name}"
        model = minigpt2.GPT2LMHeadModel.from_pretrained(checkpoint, **loading_options(dtype))
        bytes_per_token = sum(minigpt2.weights.nbytes(w) for name, w in model.named_parameters() if "wpe" not in name)
        context = contextlib.nullcontext

        def forward(ids, past=None):
            out = model(ids, past_key_values=past, use_cache=True)
            return out.logits[:, -1], out.past_key_values

    vocab = model.config.vocab_size  # (a --checkpoint's own; GPT-2's 50257 by default)

    def decode(batch_size, steps):
        ids = np.random.default_rng(0).integers(0, vocab, (batch_size, prompt))
        logits, past = forward(ids)
        start = time.perf_counter()
        for _ in range(steps):
            logits, past = forward(logits.argmax(-1)[:, None], past)
        return batch_size * steps / (time.perf_counter() - start)

    result = {"system": system, "threads": threads, "bytes_per_token": bytes_per_token}
    if system.startswith("c"):  # decided before anything is timed (measured now if not yet cached)
        import minigpt2

        result["kernel_choice"] = minigpt2.backend.kernel_choice()
        forget_peak_rss()  # (the measuring's buffers are not the model's memory)
    with context():
        forward(np.zeros((1, 4), np.int64))  # warm up: first calls load code and thread pools
        result["decode_b1"] = decode(1, new_tokens)
        result["rss_mb"] = peak_rss_mb()
        result["huge_mb"] = huge_page_mb()  # (of the weights and everything else, while they are mapped)
        ids = np.random.default_rng(1).integers(0, vocab, (1, prefill))
        times = []
        for _ in range(2):
            start = time.perf_counter()
            forward(ids)
            times.append(time.perf_counter() - start)
        result["prefill"] = prefill / min(times)
        result["decode_b8"] = decode(batch, batch_steps)
    if system.startswith("c"):  # windows of OpenBLAS's jobs the pool found crowded (csrc/parallel.c)
        result["blas_crowded_windows"] = minigpt2.backend._ckernels.lib.mg_blas_crowded_calls()
    try:
        from threadpoolctl import threadpool_info

        result["blas"] = [f"{i['internal_api']} {i.get('architecture')} x{i['num_threads']}" for i in threadpool_info()]
    except ImportError:
        pass
    print(json.dumps(result))


def drop_from_page_cache(path):
    """Write the file out and drop its pages from memory, so that the first worker reads it from disk as a
    user's downloaded checkpoint is read once it is no longer in memory. The pages a write leaves behind are
    kept in 4 KiB pieces, and a model mapped in 4 KiB pages decodes more slowly (docs/kernels.md, "Pages");
    read from disk after minigpt2's madvise they come mostly in 2 MiB pages (on Linux with huge pages)."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def huge_page_mb():
    """Memory of this process mapped in 2 MiB pages (files and anonymous), MB; None off Linux."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    return sum(int(fields.get(k, "0 kB").split()[0]) for k in ("FilePmdMapped", "AnonHugePages")) / 1024


def peak_rss_mb():
    """This process's peak resident memory. On Linux from /proc (VmHWM): ru_maxrss survives exec, so a worker
    started by a parent holding the 512 MiB yardstick buffer would report the parent's size."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forget_peak_rss():
    """Start this process's peak RSS afresh from what it holds now (Linux; elsewhere nothing happens)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def run_worker(system, threads, checkpoint, sizes):
    backend_name, _, variant = system.partition("@")[0].partition(":")
    env = dict(os.environ, MINIGPT2_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), MINIGPT2_BACKEND=backend_name if system != "hf" else "auto",
               MINIGPT2_KERNEL=variant or os.environ.get("MINIGPT2_KERNEL", "auto"))
    command = [sys.executable, __file__, "--worker", system, "--checkpoint", checkpoint, "--sizes", json.dumps(sizes)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{system} x{threads} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- where a decode step's time goes ---------------------------------------------------------------------------

PROFILE_PROMPT, PROFILE_WARM, PROFILE_STEPS = 128, 16, 32  # --profile: positions 128 + 16 + 2 x 32 = 208


def profile(checkpoint, dtype="float32", systems=("c", "numpy"), steps=PROFILE_STEPS):
    """Time each kernel inside decode steps (batch 1, ~140-210 cached tokens) for each of ``systems`` ("c",
    "numpy", "c:VARIANT"), with the weights in ``dtype``, in this process."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    import minigpt2
    from minigpt2 import activations, backend, layers, weights
    from minigpt2 import checkpoint as checkpoint_io

    model = minigpt2.GPT2LMHeadModel.from_pretrained(checkpoint, **loading_options(dtype))
    flat = checkpoint_io.flatten(model.params)  # {"h.0.attn.c_attn.weight": weight, ...}, each in its format
    head_bytes = weights.nbytes(flat["wte.weight"])  # (the tied head is wte)
    vocab = flat["wte.weight"].shape[0]
    linear_bytes = sum(weights.nbytes(w) for name, w in flat.items() if name.startswith("h."))
    reference = {"linear": layers.linear.reference, "layer_norm": layers.layer_norm.reference,
                 "gelu_new": activations.gelu_new.reference, "attention": layers.attention.reference}
    for system in systems:
        name, _, variant = system.partition(":")
        backend.set_backend(name)
        if name == "c":  # c:VARIANT forces that variant (as MINIGPT2_KERNEL does for the timed runs); c: as set
            backend._ckernels._tuning.choose(variant or None)
        impls = dict(backend._active) or {}
        spent = {}

        def timed(kernel, fn):
            def run(*args, **kwargs):
                start = time.perf_counter()
                result = fn(*args, **kwargs)
                if result is NotImplemented:
                    result = reference[kernel](*args, **kwargs)
                weight = args[1] if len(args) > 1 else kwargs.get("weight")
                key = "linear (lm_head)" if kernel == "linear" and weight.shape[1] == vocab else kernel
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
                return result
            return run

        ids = np.arange(PROFILE_PROMPT)[None] % vocab
        out = model(ids)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1)[:, None]
        for _ in range(PROFILE_WARM):  # untimed: OpenBLAS's threads, busy after the prompt, go back to sleep
            out = model(nxt, past_key_values=past)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1)[:, None]
        fused = None
        if "transformer_block" in impls:  # the C core's blocks as one call: timed whole, then kernel by kernel
            served = backend._ckernels.calls["transformer_block"]
            start = time.perf_counter()
            for _ in range(steps):
                out = model(nxt, past_key_values=past)
                past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1)[:, None]
            fused = (time.perf_counter() - start) / steps
            served = backend._ckernels.calls["transformer_block"] > served  # (counted from this model's steps only)
            for fused_kernel in ("transformer_block", "transformer_blocks"):
                backend._active.pop(fused_kernel, None)
        for kernel in reference:
            backend._active[kernel] = timed(kernel, impls.get(kernel, reference[kernel]))
        cached = past.get_seq_length() if hasattr(past, "get_seq_length") else None
        start = time.perf_counter()
        for _ in range(steps):
            out = model(nxt, past_key_values=past)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1)[:, None]
        total = (time.perf_counter() - start) / steps
        backend.set_backend(name)  # drop the timers
        if name == "c":
            backend._ckernels._tuning.choose(None)  # (back to MINIGPT2_KERNEL, or auto)
        where = f"{cached}-{cached + steps} cached" if cached is not None else f"{steps} steps"
        print(f"\nbackend {system}, weights in {dtype}, {backend.get_num_threads()} thread(s): {total * 1e3:.2f} ms "
              f"per token ({1 / total:.1f} tok/s), batch 1, {where}, each kernel a call from Python (timed below)")
        if fused is not None:
            declined = "" if served else " (it declined: NumPy serves a kernel of it)"
            print(f"with the step's blocks as one C call, as the model runs: {fused * 1e3:.2f} ms per token "
                  f"({1 / fused:.1f} tok/s){declined}")
        print("| part | ms/token | share | weights read at |")
        print("|---|---:|---:|---:|")
        for key, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
            per = seconds / steps
            rate = {"linear": linear_bytes, "linear (lm_head)": head_bytes}.get(key)
            gbs = rate / per / 1e9 if rate else None
            bandwidth = "" if gbs is None else f"{gbs:.0f} GB/s" if gbs >= 10 else f"{gbs:.1f} GB/s"
            print(f"| {key} | {per * 1e3:.2f} | {per / total:.0%} | {bandwidth} |")
        rest = total - sum(spent.values()) / steps
        print(f"| everything else (Python, embeddings, residual adds, cache, argmax) | {rest * 1e3:.2f} | "
              f"{rest / total:.0%} | |")


# -- the C matmul against NumPy's BLAS --------------------------------------------------------------------------

def matmul(rows_list=(1, 8, 13, 16, 32, 64, 128, 512), repeats=4):
    """Time the 124M model's 49 matrix products (12 blocks + the tied head) at several row counts, with the C
    kernel (the widest variant this CPU runs, forced whatever the calibration chose and whatever
    _ckernels.BLAS_ROWS says) and with NumPy's BLAS, in this process. Each timed pass follows a warm-up pass
    after a pause, so that neither library's idle threads are still spinning."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from minigpt2 import _ckernels, _tuning, backend, layers

    def c_linear(x, w):  # a C call that declined (NotImplemented) would time nothing
        y = _ckernels.linear(x, w)
        if y is NotImplemented:
            raise SystemExit(f"the C kernel declined a {x.shape} @ {w.shape} product")
        return y

    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
               for shape in [(768, 2304), (768, 768), (768, 3072), (3072, 768)]]
    wte = rng.standard_normal((50257, 768), dtype=np.float32) * np.float32(0.02)

    def one_pass(f, rows):
        xs = {768: np.ones((rows, 768), np.float32), 3072: np.ones((rows, 3072), np.float32)}
        start = time.perf_counter()
        for _ in range(12):
            for w in weights:
                f(xs[w.shape[0]], w)
        f(xs[768], wte.T)
        return time.perf_counter() - start

    saved, _ckernels.BLAS_ROWS = _ckernels.BLAS_ROWS, 10 ** 9
    if not backend.kernel_variants():
        raise SystemExit("--matmul compares the C core with BLAS, and the C core does not load here")
    # the calibration's C choice for each kind of product; where it chose BLAS, its fastest C candidate
    plan = _tuning.current()
    choice = dict(plan.choice)
    for cls in choice:
        if cls.startswith("linear") and choice[cls] == _tuning.NUMPY:
            times = {c: t for c, t in plan.measured.get(cls, {}).items() if c != _tuning.NUMPY}
            choice[cls] = min(times, key=times.get) if times else f"{backend.kernel_variants()[-1]}/nta"
    _tuning._plan = _tuning.Plan(choice, "bench_decode.py --matmul: C for every product")
    print(f"C threads {backend.get_num_threads()}; BLAS_ROWS is {saved}; C's kernels: "
          + ", ".join(f"{cls} {choice[cls]}" for cls in choice if cls.startswith("linear")))
    print("| rows | C ms | BLAS ms | C speed / BLAS speed |")
    print("|---:|---:|---:|---:|")
    try:
        for rows in rows_list:
            times = {"C": [], "BLAS": []}
            for _ in range(repeats):
                for name, f in (("C", c_linear), ("BLAS", layers.linear.reference)):
                    time.sleep(0.3)
                    one_pass(f, rows)
                    times[name].append(one_pass(f, rows))
            c, b = statistics.median(times["C"]), statistics.median(times["BLAS"])
            print(f"| {rows} | {c * 1e3:.1f} | {b * 1e3:.1f} | {b / c:.2f} |", flush=True)
    finally:
        _ckernels.BLAS_ROWS = saved
        _tuning.reset()


# -- the yardstick: how fast this machine reads memory --------------------------------------------------------

NOT_MEASURED = "memory read and decode b1 / memory limit not measured"


def memory_reader(tmp):
    """Build benchmarks/memread.c with cffi. Returns (read_gbs, None), read_gbs(threads) being the GB/s of a plain
    threaded read of 512 MiB, the best of 3; or (None, one line: what was not measured, why, and what to install)
    where it cannot be built (no setuptools, no C compiler, no Python headers): the rest is measured without it."""
    import sysconfig

    sys.path.insert(0, str(ROOT / "csrc"))
    try:
        import setuptools  # noqa: F401  (cffi compiles with it)
    except ImportError:
        return None, (f"{NOT_MEASURED}: building their yardstick, benchmarks/memread.c, with cffi needs setuptools, "
                      "which venvs of Python 3.12 and later come without: pip install setuptools")
    try:
        import numpy as np
        from cffi import FFI
    except ImportError as e:
        return None, (f"{NOT_MEASURED}: building their yardstick, benchmarks/memread.c, needs {e.name}: "
                      f"pip install {e.name}")
    build = importlib.import_module("build_kernels")
    if not build.compiler_accepts([]):
        cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
        return None, (f"{NOT_MEASURED}: their yardstick, benchmarks/memread.c, needs a C compiler, and {cc!r} cannot "
                      "compile and link an empty program: install one (Debian/Ubuntu: apt-get install build-essential "
                      "python3-dev; macOS: xcode-select --install) or set CC to one")
    headers = sysconfig.get_paths().get("include") or ""
    if not os.path.isfile(os.path.join(headers, "Python.h")):
        return None, (f"{NOT_MEASURED}: their yardstick, benchmarks/memread.c, is built as a Python extension, and "
                      f"Python's headers are not installed ({headers or '?'}/Python.h): install them (Debian/Ubuntu: "
                      "apt-get install python3-dev; Fedora: dnf install python3-devel)")
    try:
        compile_flags, link_flags = build.compiler_flags()
        if build.compiler_accepts(["-march=native"]):  # the yardstick runs where it is built: let it use
            compile_flags = compile_flags + ["-march=native"]  # the widest loads (it is not part of minigpt2)
        builder = FFI()
        builder.cdef("double memread_seconds(const float *p, long n, int threads, float *sum);")
        builder.set_source("_memread", "double memread_seconds(const float *p, long n, int threads, float *sum);",
                           sources=[str(ROOT / "benchmarks" / "memread.c")], extra_compile_args=compile_flags,
                           extra_link_args=link_flags)
        library = builder.compile(tmpdir=tmp)
        spec = importlib.util.spec_from_file_location("_memread", library)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the benchmark runs without its yardstick
        why = " ".join(str(e).split())
        return None, (f"{NOT_MEASURED}: their yardstick, benchmarks/memread.c, did not build ({type(e).__name__}: "
                      f"{why}; the compiler's messages are above): CC=gcc or CC=clang chooses another compiler")
    buffer = np.ones(128 * 2 ** 20, np.float32)
    pointer, total = module.ffi.from_buffer("float[]", buffer), module.ffi.new("float *")

    def read_gbs(threads):
        seconds = min(module.lib.memread_seconds(pointer, buffer.size, threads, total) for _ in range(3))
        return buffer.nbytes / seconds / 1e9 if seconds > 0 else float("nan")

    return read_gbs, None


def last_level_cache():
    """The last-level cache's size in bytes as the OS reports it, 0 if unknown: minigpt2's own reading (Linux's
    sysfs), else macOS's sysctl: the L3 (Intel Macs), or the performance cores' L2 (Apple chips report no L3)."""
    sys.path.insert(0, str(ROOT))
    from minigpt2._tuning import _l3_bytes

    return _l3_bytes() or sysctl_bytes("hw.l3cachesize") or sysctl_bytes("hw.perflevel0.l2cachesize")


def sysctl_bytes(name) -> int:
    """``sysctl -n name`` as a number, 0 where there is no such command or value (Linux's knows no hw.* names)."""
    try:
        done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=10)
        return max(int(done.stdout.strip()), 0) if done.returncode == 0 else 0
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


# -- the run --------------------------------------------------------------------------------------------------

def machine():
    from importlib import metadata

    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cores": os.cpu_count(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
    for package in ("numpy", "torch", "transformers"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    sys.path.insert(0, str(ROOT))
    try:
        from minigpt2 import _ckernels as ck, _tuning

        info["cpu_id"] = _tuning.cache_key(1)["cpu"]
        info["c_build"] = ck.ffi.string(ck.lib.mg_build_info()).decode()
        info["c_variants"] = list(_tuning.variant_names())
        info["c_variants_runnable"] = list(_tuning.supported_variants())
    except ImportError as e:
        from minigpt2 import backend

        info["c_build"] = f"not built ({backend._c_problem or e})"
    return info


def summarize(results, figures):
    """{(system, threads): {figure: (median, min, max)}}"""
    table = {}
    for r in results:
        table.setdefault((r["system"], r["threads"]), []).append(r)
    return {key: {f: (statistics.median(x[f] for x in rs), min(x[f] for x in rs), max(x[f] for x in rs))
                  for f in figures} for key, rs in table.items()}


def machine_line(info):
    """The CPU, and how the C core was built and which of its variants run here (or why there is none)."""
    if "c_variants" not in info:
        return f"CPU: {info['cpu']}; C core {info['c_build']}"
    return (f"CPU: {info['cpu']} ({info['cpu_id']}); C core built with {info['c_build']}; variants "
            f"{', '.join(info['c_variants'])}, runnable here: {', '.join(info['c_variants_runnable'])}")


def model_line(checkpoint, default):
    """What was decoded: GPT-2 124M's architecture (the default), or the --checkpoint's own."""
    if default:
        return "GPT-2 124M (random weights)"
    try:
        with open(os.path.join(checkpoint, "config.json")) as f:
            config = json.load(f)
        return f"{checkpoint} ({config['n_layer']} layers, n_embd {config['n_embd']}, vocab {config['vocab_size']})"
    except (OSError, ValueError, KeyError):
        return checkpoint


def print_table(summary, weights_mb, title, sizes, in_cache=(), cache_note=None):
    """The Markdown table; ``in_cache``: the (system, threads) whose weights fit in the last-level cache, whose
    share of the memory limit is marked * (explained by ``cache_note`` under the table)."""
    figures = [("decode_b1", "decode b1 tok/s"), ("prefill", f"prefill {sizes['prefill']} tok/s"),
               ("decode_b8", "decode b8 tok/s"), ("rss_mb", "peak RSS MB")]
    if any("read_gbs" in s for s in summary.values()):
        figures += [("read_gbs", "memory read GB/s"), ("of_limit", "decode b1 / memory limit")]
    print(f"\n{title}\n")
    print("| system | threads | " + " | ".join(label for _, label in figures) + " |")
    print("|---|---:|" + "---:|" * len(figures))
    order = {name: i for i, name in enumerate(SYSTEMS)}  # (c@bfloat16 and the like: weights in that dtype)
    for (system, threads), s in sorted(summary.items(), key=lambda kv: (-kv[0][1], order.get(kv[0][0], 0.5), kv[0][0])):
        hf = summary.get(("hf", threads))
        cells = []
        for f, _ in figures:
            median, low, high = s[f]
            cell = f"{median:.0f} [{low:.0f}-{high:.0f}]"
            if f == "of_limit":
                cell = f"{median:.0%} [{low:.0%}-{high:.0%}]" + (" *" if (system, threads) in in_cache else "")
            elif f == "rss_mb":
                cell += f" ({median / weights_mb:.2f}x weights)"
            elif "@" in system and f != "read_gbs" and summary.get(("c", threads)):  # vs float32, the default
                cell += f" ({median / summary[('c', threads)][f][0]:.2f}x c)"
            elif hf and system != "hf" and f != "read_gbs":
                cell += f" ({median / hf[f][0]:.2f}x HF)"
            cells.append(cell)
        print(f"| {system} | {threads} | " + " | ".join(cells) + " |")
    if in_cache and cache_note:
        print(f"\n* {cache_note}")


def checkpoint_problem(checkpoint, positions, why, quicker=""):
    """None if ``checkpoint`` (a folder) holds a model with at least ``positions`` positions (for ``why``), else what
    is wrong; ``quicker``: an option that needs fewer."""
    if not os.path.isfile(os.path.join(checkpoint, "model.safetensors")):
        return (f"--checkpoint {checkpoint}: no model.safetensors there; give a folder that save_pretrained wrote "
                "(config.json + model.safetensors)")
    try:
        with open(os.path.join(checkpoint, "config.json")) as f:
            n_positions = json.load(f).get("n_positions", 1024)
    except (OSError, ValueError, AttributeError) as e:
        return (f"--checkpoint {checkpoint}: no readable config.json there ({e}); give a folder that "
                "save_pretrained wrote")
    if isinstance(n_positions, int) and n_positions < positions:
        return (f"--checkpoint {checkpoint}: its model has n_positions={n_positions}, and {why} needs {positions} "
                f"positions; give a checkpoint with more{quicker}")
    return None


def refuse_what_a_mode_ignores(parser, args):
    """A usage error for flags --profile or --matmul would ignore (a --profile --busy looked like a busy profile)."""
    if args.profile and args.matmul:
        parser.error("--profile and --matmul are two separate measurements: give one")
    ignored = {"--quick": args.quick, "--busy": args.busy, "--repeats": args.repeats is not None,
               "--cache-mib": args.cache_mib is not None,  # (not --json: scripts give it to every run)
               "--systems": args.matmul and args.systems != parser.get_default("systems"),
               "--checkpoint": args.matmul and args.checkpoint is not None}
    given = [flag for flag, on in ignored.items() if on] if args.profile or args.matmul else []
    if given:
        does = ("--profile times one decode step per kernel, in this process" if args.profile else
                "--matmul times the C matmul against NumPy's BLAS on random matrices")
        parser.error(f"{', '.join(given)}: not used by --{'profile' if args.profile else 'matmul'} ({does}); drop "
                     f"{'it' if len(given) == 1 else 'them'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens, one round: a smoke run")
    parser.add_argument("--busy", action="store_true", help="run a busy loop in another process throughout")
    parser.add_argument("--profile", action="store_true",
                        help="print where a decode step's time goes for each of --systems (but hf), and stop")
    parser.add_argument("--matmul", action="store_true", help="compare the C matmul with NumPy's BLAS, and stop")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 5, --quick 1)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated; c, numpy, hf, c:VARIANT, and @DTYPE for weights in bfloat16, float16 or "
                             f"int8 (e.g. c@int8, numpy@bfloat16, hf@bfloat16); default {','.join(SYSTEMS)}")
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts (default: the cores this process may use, and 1); "
                             "one count with --profile or --matmul")
    parser.add_argument("--checkpoint", default=None, help="a GPT-2 checkpoint folder, as save_pretrained writes "
                        "(default: GPT-2 124M with random weights)")
    parser.add_argument("--cache-mib", type=int, default=None, metavar="MIB",
                        help="the last-level cache to assume, in MiB (default: as the OS reports it); where a "
                             "system's weights fit in it, its share of the memory limit is marked *. 0: mark none")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bench_decode.json"),
                        help="where the results go (default benchmarks/results/bench_decode.json; --busy adds _busy)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        return worker(args.worker, args.checkpoint, **json.loads(args.sizes))
    refuse_what_a_mode_ignores(parser, args)
    try:
        systems = parse_systems(args.systems)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        thread_counts = parse_threads(args.threads) if args.threads else sorted({cores, 1}, reverse=True)
    except ValueError as e:
        parser.error(str(e))
    if (args.profile or args.matmul) and args.threads:
        if len(thread_counts) > 1:
            parser.error(f"--threads {args.threads}: {'--profile' if args.profile else '--matmul'} runs in this "
                         "process, at one thread count: give one")
        for name in ("MINIGPT2_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # (before NumPy loads)
            os.environ[name] = str(thread_counts[0])
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give 1 or more rounds")
    if args.cache_mib is not None and args.cache_mib < 0:
        parser.error(f"--cache-mib {args.cache_mib}: give a size in MiB, 0 or more")
    sizes = dict(prompt=16, new_tokens=128, prefill=512, batch=8, batch_steps=64)
    if args.quick:
        sizes.update(new_tokens=24, prefill=128, batch_steps=8)
    if args.checkpoint is not None:
        if args.profile:
            positions, why = PROFILE_PROMPT + PROFILE_WARM + 2 * PROFILE_STEPS, "--profile"
        else:
            positions = max(sizes["prompt"] + max(sizes["new_tokens"], sizes["batch_steps"]), sizes["prefill"])
            why = (f"decoding {sizes['new_tokens']} tokens after {sizes['prompt']} and a prefill of "
                   f"{sizes['prefill']}" + (" (--quick)" if args.quick else ""))
        quicker = ", or --quick" if not (args.quick or args.profile) else ""
        problem = None if args.matmul else checkpoint_problem(args.checkpoint, positions, why, quicker)
        if problem:
            parser.error(problem)
    out = pathlib.Path(args.json)
    if args.busy:
        out = out.with_name(out.stem + "_busy" + out.suffix)
    problem = None if args.profile or args.matmul else can_write(out)
    if problem:
        parser.error(f"--json {out}: cannot write there ({problem}); give a path you can write")
    with warnings.catch_warnings():  # (our own line below says it, once)
        warnings.simplefilter("ignore", RuntimeWarning)
        variants, no_c = c_core()
    if args.matmul:
        if no_c:
            sys.exit(f"--matmul compares the C core with NumPy's BLAS, and the C core does not load here: {no_c}")
        print(machine_line(machine()))
        return matmul()

    repeats = args.repeats or (1 if args.quick else 5)
    skipped = []  # (what, why, [system, ...])
    hf = [system for system in systems if system.startswith("hf")]
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if hf and args.profile:
        skipped.append(("not profiled", "--profile splits minigpt2's decode step by kernel", hf))
    elif hf and missing:  # (test-time references, not dependencies)
        skipped.append(("skipped", f"{' and '.join(missing)} not installed; pip install -e '.[reference]' brings them",
                        hf))
    if no_c and any(system.startswith("c") for system in systems):
        skipped.append(("skipped", f"no C core: {no_c}", [system for system in systems if system.startswith("c")]))
    unrunnable = [system for system in systems if ":" in system and not no_c
                  and system.partition("@")[0].partition(":")[2] not in variants]
    if unrunnable:
        skipped.append(("skipped", f"this CPU runs the variants {', '.join(variants)} only", unrunnable))
    for what, why, names in skipped:
        print(f"({', '.join(names)} {what}: {why})", file=sys.stderr)
        systems = [system for system in systems if system not in names]
    if not systems:
        sys.exit(f"nothing left to {'profile' if args.profile else 'measure on this machine'} (see above)")

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            sys.path.insert(0, str(ROOT))
            import minigpt2

            checkpoint = tmp
            minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(), seed=0).save_pretrained(checkpoint)
            drop_from_page_cache(os.path.join(checkpoint, "model.safetensors"))
        weights_mb = os.path.getsize(os.path.join(checkpoint, "model.safetensors")) / 2 ** 20
        if args.profile:
            by_dtype = {}  # {dtype: [system, ...]}, in the order of --systems
            for system in systems:
                base, _, dtype = system.partition("@")
                by_dtype.setdefault(dtype or "float32", []).append(base)
            print(f"{model_line(checkpoint, args.checkpoint is None)}; {machine_line(machine())}")
            for dtype, names in by_dtype.items():
                profile(checkpoint, dtype, names)
            return None

        read_gbs, no_reader = memory_reader(tmp)
        if no_reader:
            print(f"({no_reader})", file=sys.stderr)
        cache = args.cache_mib * 2 ** 20 if args.cache_mib is not None else last_level_cache()
        # Decoding reads every weight once per token: all of the weights file but the position table.
        bytes_per_token = os.path.getsize(os.path.join(checkpoint, "model.safetensors")) - 1024 * 768 * 4
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
        results = []
        try:
            runs = [(s, t) for t in thread_counts for s in systems]
            for round_ in range(repeats):
                shift = round_ % len(runs)
                for system, threads in runs[shift:] + runs[:shift]:
                    before = read_gbs(threads) if read_gbs else None  # the machine right now
                    r = run_worker(system, threads, checkpoint, sizes)
                    bandwidth = max(before, read_gbs(threads)) if read_gbs else None  # (it may change meanwhile)
                    memory = ""
                    huge = f" ({r['huge_mb']:.0f} MB in 2 MiB pages)" if r.get("huge_mb") is not None else ""
                    if bandwidth:
                        r["read_gbs"] = bandwidth
                        r["of_limit"] = r["decode_b1"] / (bandwidth * 1e9 / r.get("bytes_per_token", bytes_per_token))
                        r["in_cache"] = bool(cache) and r.get("bytes_per_token", bytes_per_token) <= cache
                        memory = (f", memory read {bandwidth:.0f} GB/s (decode b1 at {r['of_limit']:.0%} of its limit"
                                  + (f"; * the weights fit in the {cache / 2 ** 20:.0f} MiB last-level cache)"
                                     if r["in_cache"] else ")"))
                    print(f"round {round_ + 1}/{repeats}: {system} x{threads}: decode b1 {r['decode_b1']:.1f} tok/s, "
                          f"prefill {r['prefill']:.0f} tok/s, decode b8 {r['decode_b8']:.1f} tok/s, "
                          f"RSS {r['rss_mb']:.0f} MB{huge}{memory}", flush=True)
                    results.append(r)
        finally:
            if busy is not None:
                busy.kill()

    figures = ["decode_b1", "prefill", "decode_b8", "rss_mb"] + (["read_gbs", "of_limit"] if read_gbs else [])
    summary = summarize(results, figures)
    in_cache = {(r["system"], r["threads"]) for r in results if r.get("in_cache")}
    cache_note = None
    if in_cache:
        largest = max(r["bytes_per_token"] for r in results if r.get("in_cache")) / 2 ** 20
        cache_note = (f"the weights read per token ({'up to ' if len({s for s, _ in in_cache}) > 1 else ''}"
                      f"{largest:.0f} MiB) fit in the last-level cache ({cache / 2 ** 20:.0f} MiB, "
                      + ("--cache-mib" if args.cache_mib is not None else "as the OS reports it") +
                      "), so decoding may read them from cache, faster than from memory: the memory read may not "
                      "bound it, and the share may pass 100% (a VM may keep far less of its host's cache than it "
                      "reports: --cache-mib sets the size to assume)")
    info = machine()
    blas = sorted({b for r in results for b in r.get("blas", []) if b.startswith("openblas")})
    print("\n" + machine_line(info))
    for threads in thread_counts:
        # (the last run's: the run after a calibration may change a close call, _tuning._second_look)
        choices = [r["kernel_choice"] for r in results
                   if r["threads"] == threads and r["system"].partition("@")[0] == "c"]
        if choices:
            changed = [line.strip() for line in choices[-1][1:] if line not in choices[0][1:]]
            print(f"at {threads} thread(s), " + "\n".join(choices[-1])
                  + (f"\n  (changed by the second look at the close calls: {'; '.join(changed)})" if changed else ""))
    openblas = "".join(f", {name}={info[name]} set" for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if info[name])
    title = (f"{model_line(checkpoint, args.checkpoint is None)}, {info['cpu']}, {cores} cores, {repeats} round(s)"
             f"{', with a busy process' if args.busy else ''}; weights file {weights_mb:.0f} MB; decode b1: "
             f"{sizes['new_tokens']} tokens after {sizes['prompt']}, decode b8: {sizes['batch']} x "
             f"{sizes['batch_steps']} steps; numpy {info['numpy']} ({', '.join(blas) or 'BLAS unknown'}{openblas}), "
             + ", ".join(f"{name} {info[name] or 'not installed'}" for name in ("torch", "transformers"))
             + "; median [min-max]")
    print_table(summary, weights_mb, title, sizes, in_cache, cache_note)
    if no_reader:
        print(f"\n({no_reader})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "sizes": sizes, "busy": args.busy, "weights_mb": weights_mb,
                               "last_level_cache_bytes": cache, "memory_read_not_measured": no_reader,
                               "results": results,
                               "summary": {f"{s} x{t}": v for (s, t), v in summary.items()}}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
