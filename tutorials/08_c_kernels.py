# ---
# jupyter:
#   jupytext:
#     text_representation:
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Inside the C kernels
#
# minigpt2's layers are NumPy functions, and they stay the reference. Four of them (`linear`, `layer_norm`,
# `gelu_new`, `attention`) also have a C version in `csrc/`, compiled with cffi when minigpt2 is installed
# (and when decoding, a whole transformer block is one C call that makes those four kernels' calls in order).
# `minigpt2.backend` says which one runs and lets you switch. Here we ask where the time of a forward pass
# goes, rebuild the two ideas behind the C code in NumPy (**cache blocking** for big matrix products, the
# **online softmax** for attention that never stores the score matrix), check them, and measure what the
# C core buys over the NumPy path on this machine.
#
# **Exercises** (✎ 8.1, 8.2): in `08_c_kernels.ipynb` the key lines are blank (`...`); the check under each
# says whether your answer matches minigpt2 and, if not, how it differs. Solutions: `08_c_kernels_solution.ipynb`
# (and this `.py` file).
#
# **Timing honestly.** Speeds are measured on *your* machine, several times: every comparison prints its
# spread (median, fastest, slowest) and the machine, and says "slower" when the C core loses. BLAS (which
# NumPy calls for matrix products) runs its own threads; if they spin while the C core's threads work, the two
# fight for the cores and both slow down. So this tutorial asks OpenBLAS for one thread before NumPy is
# imported (unless you set OPENBLAS_NUM_THREADS yourself): NumPy's big products are then single-threaded,
# which the comparisons say.

# %%
MODEL = "gpt2"  # the real 124M GPT-2 when available; otherwise the tiny random model (it says so)

import os
import sys

BLAS_THREADS_SET_HERE = "numpy" not in sys.modules and "OPENBLAS_NUM_THREADS" not in os.environ
if BLAS_THREADS_SET_HERE:  # read once, when NumPy loads OpenBLAS: it must come before `import numpy`
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import time

import numpy as np

import _workshop
import minigpt2
from minigpt2 import activations, backend, layers

model = _workshop.load_model(MODEL)
config = model.config
params = model.params
plt = _workshop.pyplot()
tokenizer = _workshop.tokenizer()

HAVE_C = backend.c_available()


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info  # optional: only to report what BLAS really uses
    except ImportError:
        return f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return ", ".join(f"{p['internal_api']} {p['num_threads']} thread(s)" for p in pools) or "no BLAS pool found"


print(f"machine: {_workshop.machine()}")
print(f"active backend: {backend.name}; C core built: {HAVE_C}; C threads: {backend.get_num_threads()}; "
      f"BLAS: {blas_threads()}" + (" (set by this tutorial)" if BLAS_THREADS_SET_HERE else
                                   " (NumPy was already imported or you chose it: left alone)"))
if not HAVE_C:
    print("The C core is not built here (no C compiler at install time?), so the comparisons below only time the "
          "NumPy path. docs/troubleshooting.md explains how to build it.")

# %% [markdown]
# ## Where the time goes
#
# Count the work of one block. A linear layer with an `[n_in, n_out]` weight does `2 · n_in · n_out` floating
# point operations per token and must read `4 · n_in · n_out` bytes of weights. Decoding one token, each
# weight is used once: the layer is limited by how fast memory delivers the weights. A prompt of T tokens
# uses each weight T times: now the arithmetic is the limit. We measure both on the NumPy path.

# %%
E, I, V = config.n_embd, config.inner_dim, config.vocab_size
block = params["h"][0]
matrices = {"attn.c_attn": block["attn"]["c_attn"], "attn.c_proj": block["attn"]["c_proj"],
            "mlp.c_fc": block["mlp"]["c_fc"], "mlp.c_proj": block["mlp"]["c_proj"]}
weight_bytes = sum(m["weight"].nbytes for m in matrices.values()) * config.n_layer + params["wte"]["weight"].nbytes
print(f"weights read per decoded token (blocks + LM head): {weight_bytes / 2**20:.0f} MiB")
print("one linear layer of block 0 on the NumPy path, the fastest of 5 runs of 3 calls:")

rng = np.random.default_rng(0)
linear_ref = layers.linear.reference  # the NumPy body, whatever the active backend
print(f"{'layer':12} {'rows':>5} {'ms':>8} {'GFLOP/s':>9} {'GB/s (weights)':>15}")
for rows in (1, 128):
    for name, m in matrices.items():
        x = rng.standard_normal((rows, m["weight"].shape[0]), dtype=np.float32)
        seconds = _workshop.best_time(lambda: linear_ref(x, **m), repeat=5, number=3)
        flops = 2 * rows * m["weight"].size
        print(f"{name:12} {rows:>5} {seconds * 1e3:8.3f} {flops / seconds / 1e9:9.1f} "
              f"{m['weight'].nbytes / seconds / 1e9:15.1f}")

# %% [markdown]
# With one row, the throughput in GFLOP/s is low and the weight bandwidth is the number to look at; with 128
# rows the same layers do many more GFLOP/s. (Your numbers depend on your machine: the cell prints them.)
#
# ## Cache blocking, in NumPy
#
# A matrix product `C = A @ B` with `A [M, K]` and `B [K, N]` touches every element of B once per row of A.
# If B does not fit in the CPU's caches, it is fetched from main memory M times. **Blocking** cuts the work
# into tiles: for an `MC × NC` tile of C, walk K in slices of KC, and multiply an `MC × KC` panel of A by a
# `KC × NC` panel of B, small enough to stay in cache while they are used. Each panel of B is then fetched
# M / MC times instead of M times. Here is the loop structure, with NumPy doing the small products:
#
# **✎ Exercise 8.1 · a blocked product.** In `blocked_matmul` below, write the innermost step: copy the
# `MC × KC` panel of A and the `KC × NC` panel of B for this tile and slice (`np.ascontiguousarray`: "packing"),
# multiply them and *add* the product into the tile of C. The check compares the result with `A @ W`.

# %%
def blocked_matmul(A, B, MC=64, NC=256, KC=128):
    M, K = A.shape
    N = B.shape[1]
    C = np.zeros((M, N), np.float32)
    for i0 in range(0, M, MC):  # a tile of rows of C
        for j0 in range(0, N, NC):  # a tile of columns: C[i0:i0+MC, j0:j0+NC] is one work item
            for k0 in range(0, K, KC):  # accumulate over the inner dimension, slice by slice
                # BLANK C[i0:i0 + MC, j0:j0 + NC] += ...  # exercise 8.1: your code here
                ### BEGIN SOLUTION 8.1
                a_panel = np.ascontiguousarray(A[i0:i0 + MC, k0:k0 + KC])  # "packing": copy to contiguous memory
                b_panel = np.ascontiguousarray(B[k0:k0 + KC, j0:j0 + NC])
                C[i0:i0 + MC, j0:j0 + NC] += a_panel @ b_panel
                ### END SOLUTION 8.1
    return C


A = rng.standard_normal((128, E), dtype=np.float32)
W = block["mlp"]["c_fc"]["weight"]
_workshop.check_function("8.1", "a blocked product", blocked_matmul, lambda a, b: a @ b,
                         {"[128, E] @ c_fc's weight": (A, W), "a ragged [70, 200] @ [200, 300]":
                          (rng.standard_normal((70, 200), dtype=np.float32), rng.standard_normal((200, 300), dtype=np.float32))},
                         rtol=1e-4, atol=1e-4)

# %% [markdown]
# The answer is the same up to float32 rounding (the sums are grouped differently). The benefit is memory
# traffic. A simple model of the bytes fetched from main memory for different tile sizes, assuming the
# panels stay in cache and everything else does not:

# %%
def traffic_bytes(M, K, N, MC, NC):
    reads_of_B = -(-M // MC)  # each panel of B is fetched once per tile row of C
    reads_of_A = -(-N // NC)  # each panel of A once per tile column
    return 4 * (reads_of_B * K * N + reads_of_A * M * K + M * N)


M_prompt = 512
tiles = [1, 4, 16, 64, 256]
print(f"the model's estimate of the bytes a [{M_prompt}, {E}] @ [{E}, {I}] product moves from main memory:")
for MC in tiles:
    mib = traffic_bytes(M_prompt, E, I, MC, 256) / 2**20
    print(f"  tiles of MC = {MC:>3} rows: {mib:8.1f} MiB")

if plt:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(tiles, [traffic_bytes(M_prompt, E, I, mc, 256) / 2**20 for mc in tiles], marker="o")
    ax.set_xscale("log", base=2); ax.set_yscale("log")
    ax.set_xticks(tiles); ax.set_xticklabels([str(t) for t in tiles])
    ax.set_xlabel("rows per tile (MC)"); ax.set_ylabel("MiB from main memory (a model, not measured)")
    ax.set_title(f"blocking: traffic of a [{M_prompt}, {E}] @ [{E}, {I}] product")
    ax.grid(alpha=0.3)
    _workshop.show(fig, "08_blocking_traffic_model")

# %% [markdown]
# With one row (decoding) there is nothing to reuse: each weight is needed once, and the best a kernel can do
# is to read W exactly once, in order, and keep all cores busy. That is what the C core's decode path does:
# W is cut into tiles that the threads share, each tile is streamed once into sums held in registers, and
# the partial sums are added in a fixed order (so the result does not depend on the thread count). For many rows, NumPy's BLAS is an
# expertly blocked and vectorised product; the C core hands prompts of 32 rows or more to it
# (`minigpt2._ckernels.BLAS_ROWS`) rather than compete (docs/kernels.md has the measurements).
#
# ## The online softmax, in NumPy
#
# Attention computes `softmax(q kᵀ · scale) v`. Written plainly it stores a `[T, K]` matrix of scores per head.
# The C kernel never does: it walks the keys in blocks and keeps, per query row, three running values:
#
# - `m`, the largest score so far;
# - `l`, the sum of `exp(score − m)` so far;
# - `o`, the sum of `exp(score − m) · v` so far (a vector of D numbers).
#
# When a block brings a larger maximum `m'`, the old `l` and `o` are rescaled by `exp(m − m')`. At the end,
# `o / l` is exactly the softmax-weighted average of the values.
#
# **✎ Exercise 8.2 · the online-softmax update.** In the loop below, `s` is a block of scores and `m` the
# running maximum. Write the three updates: `m_new` (the larger of `m` and the block's row maxima), then `l`
# and `o`, each rescaled by `rescale = exp(m − m_new)` before the block's `p = exp(s − m_new)` is added
# (`p.sum(axis=1)` to `l`, `p @ v_block` to `o`). The check compares each head with the reference attention.

# %%
def online_attention(q, k, v, scale, block=16):  # q [T, D], k and v [K, D]; causal, anchored lower-right
    T, K = q.shape[0], k.shape[0]
    visible = layers.causal_mask(T, K)
    m = np.full(T, -np.inf, np.float32)
    l = np.zeros(T, np.float32)
    o = np.zeros((T, q.shape[1]), np.float32)
    for j0 in range(0, K, block):
        s = (q @ k[j0:j0 + block].T) * scale  # [T, block]: one block of scores, never the whole matrix
        s = np.where(visible[:, j0:j0 + block], s, layers.MASK_VALUE)
        # BLANK m_new = l = o = ...  # exercise 8.2: your code here
        ### BEGIN SOLUTION 8.2
        m_new = np.maximum(m, s.max(axis=1))
        rescale = np.exp(m - m_new)  # how much the old sums shrink under the new maximum
        p = np.exp(s - m_new[:, None])
        l = l * rescale + p.sum(axis=1)
        o = o * rescale[:, None] + p @ v[j0:j0 + block]
        ### END SOLUTION 8.2
        m = m_new
    return o / l[:, None]


ids = np.array([tokenizer.encode("Online softmax: attention without the score matrix, block by block.")])
with minigpt2.trace() as t:
    model(ids)
qkv = layers.linear.reference(t["h.0.ln_1"], **block["attn"]["c_attn"])
q, k, v = (layers.split_heads(a, config.n_head) for a in np.split(qkv, 3, axis=-1))  # [1, H, T, D]
scale = layers.attention_scale(config.head_dim, 0)
reference_out = layers.attention.reference(q, k, v, scale=scale, causal=True)
_workshop.check_function("8.2", "the online-softmax update",
                         lambda h: online_attention(q[0, h], k[0, h], v[0, h], scale, block=4),
                         lambda h: reference_out[0, h], {f"head {h}": (h,) for h in range(config.n_head)}, atol=1e-6)

# %% [markdown]
# The C kernel does the same in a single pass over the keys of each block of queries. Let us check it
# directly (without probabilities requested, the C backend serves `attention`):

# %%
if HAVE_C:
    from minigpt2 import _ckernels

    backend.set_kernel(backend.kernel_variants()[-1])  # the C kernel itself: "auto" may have measured NumPy faster here
    c_out = _ckernels.attention(q, k, v, scale=scale, causal=True)
    backend.set_kernel(os.environ.get("MINIGPT2_KERNEL") or "auto")  # (back to the starting point)
    _workshop.check_close("C fused attention == reference", c_out, reference_out, atol=1e-6)

# %% [markdown]
# ## Measured: NumPy path vs. C core, kernel by kernel
#
# Each kernel runs on the shapes this model uses, once through its NumPy body (`fn.reference`) and once
# through the active backend; both results are compared, then timed (best of several runs).

# %%
def timed_pair(label, fn, *args, **kwargs):
    ours = fn(*args, **kwargs)
    ref = fn.reference(*args, **kwargs)
    ours, ref = (ours[0], ref[0]) if isinstance(ours, tuple) else (ours, ref)
    _workshop.check_close(label, ours, ref, rtol=1e-4, atol=1e-4)
    t_ref = _workshop.run_times(lambda: fn.reference(*args, **kwargs), repeat=5, number=3)
    if not HAVE_C:  # the backend would run the same NumPy code: nothing to compare
        return label, t_ref, None
    t_c = _workshop.run_times(lambda: fn(*args, **kwargs), repeat=5, number=3)
    return label, t_ref, t_c  # seconds per call, 5 runs each


K_cache = min(256, config.n_positions)
x1 = rng.standard_normal((1, 1, E), dtype=np.float32)
x128 = rng.standard_normal((1, 128, E), dtype=np.float32)
h1 = rng.standard_normal((1, 1, I), dtype=np.float32)
q1 = rng.standard_normal((1, config.n_head, 1, config.head_dim), dtype=np.float32)
kc = rng.standard_normal((1, config.n_head, K_cache, config.head_dim), dtype=np.float32)
vc = rng.standard_normal((1, config.n_head, K_cache, config.head_dim), dtype=np.float32)
q128, k128, v128 = (rng.standard_normal((1, config.n_head, 128, config.head_dim), dtype=np.float32) for _ in range(3))

cases = [
    timed_pair("linear c_attn, 1 row", layers.linear, x1, **block["attn"]["c_attn"]),
    timed_pair("linear c_fc, 1 row", layers.linear, x1, **block["mlp"]["c_fc"]),
    timed_pair("linear mlp.c_proj, 1 row", layers.linear, h1, **block["mlp"]["c_proj"]),
    timed_pair("LM head wte.T, 1 row", layers.linear, x1, params["wte"]["weight"].T),
    timed_pair("linear c_fc, 128 rows", layers.linear, x128, **block["mlp"]["c_fc"]),
    timed_pair(f"attention, 1 query, {K_cache} keys", layers.attention, q1, kc, vc, scale=scale, causal=True),
    timed_pair("attention, 128 x 128, causal", layers.attention, q128, k128, v128, scale=scale, causal=True),
    timed_pair("layer_norm, 128 rows", layers.layer_norm, x128, **block["ln_1"]),
    timed_pair("gelu_new, 128 x 4E", activations.gelu_new, rng.standard_normal((1, 128, I), dtype=np.float32)),
]
print(f"\nmedian ms per call over 5 runs of 3 calls (slowest run in brackets), on {_workshop.machine()}; "
      f"BLAS: {blas_threads()}")
if not HAVE_C:
    print("No C core here: only the NumPy path is timed, so this shows where its time goes, not a speed-up.")
header = f"{'kernel':36} {'NumPy ms':>17}"
if HAVE_C:
    header += f" {backend.name + ' ms':>17}  verdict (medians)"
print(header)
for label, t_ref, t_c in cases:
    line = f"{label:36} {np.median(t_ref) * 1e3:8.3f} [{t_ref.max() * 1e3:6.3f}]"
    if HAVE_C:
        line += (f" {np.median(t_c) * 1e3:8.3f} [{t_c.max() * 1e3:6.3f}]  "
                 + _workshop.ratio_words(np.median(t_ref), np.median(t_c), backend.name, "NumPy"))
    print(line)

if plt and not HAVE_C:  # nothing to compare with: the NumPy path's time per kernel instead
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    ax.barh([c[0] for c in cases][::-1], [np.median(c[1]) * 1e3 for c in cases][::-1], color="tab:gray")
    ax.set_xscale("log")
    ax.set_xlabel("NumPy path, ms per call (median of 5 runs), log scale")
    ax.set_title(f"NO C CORE BUILT: no speed-ups to show; the NumPy kernels on "
                 f"{_workshop.model_label(model)}'s shapes\n{_workshop.machine()}", fontsize=9)
    _workshop.show(fig, "08_kernel_speedups")
elif plt:
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    labels = [c[0] for c in cases][::-1]
    ratio = np.array([np.median(c[1]) / np.median(c[2]) for c in cases])[::-1]
    low = np.array([c[1].min() / c[2].max() for c in cases])[::-1]  # the least favourable pairing of runs
    high = np.array([c[1].max() / c[2].min() for c in cases])[::-1]
    ax.barh(labels, ratio - 1, left=1, color=np.where(ratio >= 1, "tab:green", "tab:red"))
    ax.errorbar(ratio, range(len(ratio)), xerr=[ratio - low, high - ratio], fmt="none", ecolor="black", capsize=3)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(f"NumPy time / {backend.name} time, log scale (>1: C faster, <1: C slower; bars: run-to-run spread)")
    ax.set_title(f"kernels on {_workshop.model_label(model)}'s shapes\n{_workshop.machine()}", fontsize=9)
    _workshop.show(fig, "08_kernel_speedups")

# %% [markdown]
# Read the table row by row; it is this machine's, so run it on yours. "Level": the C core does not serve
# that case (prompts of 32 rows or more go to BLAS) or both are equally fast. On a busy machine the
# per-kernel numbers swing from run to run (compare the slowest runs in brackets; threads wait for free
# cores; docs/troubleshooting.md has a note on threads), so the end-to-end time below is the one that counts.
#
# ## End to end: greedy decoding on both backends
#
# The same 20 greedy tokens with `set_backend("numpy")` and with the C core, three times each, alternating.
# The tokens must be identical; the time per token is what a workshop laptop feels.

# %%
prompt = np.array([tokenizer.encode("The C core of minigpt2 makes decoding")])
N = 20
names = ["numpy", "c"] if HAVE_C else ["numpy"]
per_token, outputs, initial_backend = {name: [] for name in names}, {}, backend.name
for name in names:  # warm up both
    backend.set_backend(name)
    model.generate(prompt, max_new_tokens=2, do_sample=False)
for run in range(3):
    for name in names:
        backend.set_backend(name)
        start = time.perf_counter()
        outputs[name] = model.generate(prompt, max_new_tokens=N, do_sample=False, eos_token_id=None)
        per_token[name].append((time.perf_counter() - start) / N)
backend.set_backend(initial_backend)
print(f"{N} greedy tokens, 3 runs per backend, on {_workshop.machine()}; BLAS: {blas_threads()}; "
      f"C threads: {backend.get_num_threads()}")
for name in names:
    print(f"  {name:>5}: {_workshop.spread(per_token[name])} per token")
if HAVE_C:
    assert np.array_equal(outputs["numpy"], outputs["c"]), "the backends must choose the same tokens"
    numpy_t, c_t = np.array(per_token["numpy"]), np.array(per_token["c"])
    print(f"same tokens; end to end, {_workshop.ratio_words(np.median(numpy_t), np.median(c_t))} "
          f"(medians; over the runs the ratio NumPy/C spans {numpy_t.min() / c_t.max():.2f} to "
          f"{numpy_t.max() / c_t.min():.2f})")
print(f"the text ({_workshop.model_label(model)}): {tokenizer.decode(outputs['numpy'][0, prompt.shape[1]:])!r}")

# %% [markdown]
# ## What we built
#
# - A blocked matrix product (tiles, panels, packing) in NumPy, equal to `A @ W`, and a model of why blocking
#   cuts memory traffic; decoding has no reuse, so its kernels stream each weight once.
# - The online softmax in NumPy, equal to the reference attention and to the C kernel, without ever storing
#   the `[T, K]` scores.
# - The C core against the NumPy path, kernel by kernel and end to end, measured on this machine with the
#   spread of several runs: faster where it streams weights once with all cores, level where it hands the
#   work to BLAS, and, on a busy or unusual machine, sometimes slower (the tables say so).
#
# That is the whole model, from bytes (01) to kernels (08).
