# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Fewer bits per weight
#
# Decoding one token reads every weight of the model once, so a decoder that has to wait for memory runs at
# *memory bandwidth ÷ bytes of weights* tokens per second. GPT-2 124M in float32 is about 500 MB per token.
# Storing each weight in fewer bits reads fewer bytes, and costs a rounding of every weight. Here we build
# each of minigpt2's formats by hand, check it against `minigpt2.weights`, measure the error it causes in the
# model's output, and measure what it buys on this machine.
#
# | format | bits kept | bytes per weight | how a weight is rounded |
# |---|---|---|---|
# | float32 | 24 significant bits | 4 | (the reference) |
# | bfloat16 | 8 significant bits, float32's exponent | 2 | the top half of the float32, rounded to nearest |
# | float16 | 11 significant bits, 5-bit exponent | 2 | IEEE half precision, rounded to nearest |
# | int8 | 8-bit integers, a float16 scale per 32 weights | 1.0625 | to the nearest step of its block's scale |
#
# Only the weights change. Activations, sums, layer norms, softmax and the KV cache stay float32: where a
# weight is used it is widened back to the float32 number it stands for, `linear(x, w, b) = x @ widen(w) + b`.
# (int8 adds one rounding more, of a product's input, so that the CPU can multiply integers: below.)

# %%
MODEL = "gpt2"  # the real 124M GPT-2 when available; otherwise the tiny random model (it says so)

import copy
import platform
import time

import numpy as np

import _workshop
import minigpt2
from minigpt2 import backend, checkpoint, layers, weights
from minigpt2.weights import widen

model = _workshop.load_model(MODEL)
config = model.config
_workshop.require(model, config.n_embd % 32 == 0, "n_embd a multiple of 32 (int8 cuts a weight's input axis into "
                  "blocks of 32 rows)")
plt = _workshop.pyplot()
tokenizer = _workshop.tokenizer()
W = model.params["h"][0]["mlp"]["c_fc"]["weight"]  # a Conv1D weight, [n_embd, 4 n_embd] (in, out)
print(f"one weight matrix: mlp.c_fc of block 0, shape {W.shape}, {W.dtype}, {W.nbytes / 2**20:.1f} MiB")

# %% [markdown]
# ## bfloat16: the top half of a float32
#
# A float32 is 32 bits: 1 sign, 8 exponent, 23 fraction bits. bfloat16 keeps the first 16 of them: the sign,
# the whole exponent (so the same range as float32) and 7 fraction bits, 8 significant bits with the
# implicit leading one. Widening is exact: put the 16 bits back on top, zeros below.
#
# Narrowing must **round**. Cutting the low 16 bits off would always round towards zero: every weight would
# shrink a little, on average by half a step, and those shrinkages all point the same way. Round to nearest
# adds half a step (0x7FFF, plus one when the kept part is odd, so exact ties go to the even neighbour)
# before cutting.

# %%
u = np.ascontiguousarray(W, dtype=np.float32).view(np.uint32)  # the raw bits of each weight
truncated = (u >> 16).astype(np.uint16)
rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
as_float32 = lambda bits: (bits.astype(np.uint32) << 16).view(np.float32)  # bfloat16 bits -> float32, exact

library = weights.to_bfloat16(W)
assert np.array_equal(rounded, library.bits), "our rounding differs from minigpt2.weights.to_bfloat16"
assert np.array_equal(as_float32(rounded), widen(library)), "our widening differs from weights.widen"
print("ok  hand-built bfloat16 == weights.to_bfloat16, and its widening == weights.widen")

w = W.astype(np.float64)
nonzero = w != 0  # (a weight of exactly 0 stays 0; a relative error needs w != 0)
for name, bits in (("truncated", truncated), ("rounded to nearest", rounded)):
    relative = (as_float32(bits)[nonzero] - w[nonzero]) / np.abs(w[nonzero])
    print(f"{name:>19}: largest relative error {np.abs(relative).max():.2e} (2^-8 = {2**-8:.2e}), "
          f"mean error towards zero {-np.mean(relative * np.sign(w[nonzero])):+.1e}")
assert np.all(np.abs(as_float32(rounded) - w) <= 2.0 ** -8 * np.abs(w))

# %% [markdown]
# Rounding keeps every weight within 2⁻⁸ of itself (half a step of 8 significant bits), with no preferred
# direction; truncation is off by up to twice that, and always towards zero.
#
# ## float16: more precision, less range
#
# IEEE half precision has 11 significant bits (errors up to 2⁻¹¹, eight times smaller than bfloat16's) but
# only 5 exponent bits: its largest number is 65504, and below 2⁻¹⁴ ≈ 6e-5 it loses bits (subnormals).
# NumPy rounds to nearest itself.

# %%
half = W.astype(np.float16)
assert np.array_equal(half, weights.to_float16(W))
relative = (half.astype(np.float64) - w) / np.abs(w)
normal = np.abs(w) >= 2.0 ** -14
print(f"float16: largest relative error {np.abs(relative[normal]).max():.2e} for normal numbers "
      f"(2^-11 = {2**-11:.2e}); {np.mean(~normal):.2%} of this matrix is below 2^-14, with larger relative errors")
with np.errstate(over="ignore"):
    print("65504 ->", np.float32(65504).astype(np.float16), "  70000 ->", np.float32(70000).astype(np.float16))

# %% [markdown]
# Weights of a trained GPT-2 are far below 65504, so float16's range is no problem for them (activations
# would be another story, which is why they stay float32 here).
#
# ## int8: integers and a scale per block of 32
#
# Cut the input axis of `W [in, out]` into blocks of 32 rows. In each block and column, the scale is the
# largest magnitude / 127, stored as a float16 (2 bytes instead of 4): rounded *up* to one, so that no weight
# needs more than 127 steps. Each weight becomes the nearest integer multiple of the scale, an int8 in
# -127..127, within half a scale of its value. (llama.cpp's Q8_0 cuts and stores the same way.)

# %%
n_in, n_out = W.shape
blocks = W.reshape(n_in // 32, 32, n_out)  # [blocks, 32, out]
exact = np.abs(blocks).max(axis=1) / np.float32(127)  # [blocks, out], float32
half = exact.astype(np.float16)  # the nearest float16 ...
half = np.where(half.astype(np.float32) < exact, np.nextafter(half, np.float16(np.inf)), half)  # ... or the next up
scales = half.astype(np.float32)
q = np.rint(blocks / scales[:, None, :]).astype(np.int8).reshape(n_in, n_out)
widened = q.astype(np.float32) * np.repeat(scales, 32, axis=0)  # q * scale: 8 x 11 bits, exact in float32

library = weights.quantize_int8(W)  # axis 0: blocks along the input axis
assert np.array_equal(q, library.q) and np.array_equal(half, library.scales)
assert np.array_equal(widened, widen(library))
assert (np.abs(widened - W) <= np.repeat(scales, 32, axis=0) / 2 * (1 + 2**-20)).all()
print(f"ok  hand-built int8 == weights.quantize_int8; {library.nbytes / W.size:.4f} bytes per weight "
      f"(1 for the int8, 2/32 for the scale); scales at most {(scales / exact).max() - 1:.1e} above largest/127")

# %% [markdown]
# An int8 product rounds its *input* too. Widening every int8 weight to float32 before multiplying costs two
# instructions per vector of weights, enough to make int8's decoding a matter of arithmetic instead of memory.
# So each row of x, per block of 32, is rounded to int16 steps of the block's largest magnitude / 32767 (an
# error of at most 2^-16 of that largest, where the weights' is 2^-8 of theirs); then a block's 32 products
# are integers, which the CPU multiplies and sums 16 or 32 at a time, and one float multiply applies the two
# scales. In NumPy: `linear(x, w, b) = round_int16(x) @ widen(w) + b` for int8 weights.

# %%
x = np.random.default_rng(2).standard_normal((3, n_in)).astype(np.float32)
x_blocks = x.reshape(3, n_in // 32, 32)
step = np.abs(x_blocks).max(axis=-1, keepdims=True) / np.float32(32767)  # [rows, blocks, 1]
xi = np.rint(x_blocks / step).astype(np.int16)  # -32767 .. 32767
x_rounded = (xi * step).reshape(3, n_in)
assert np.array_equal(x_rounded, weights.round_int16(x))
assert (np.abs(x_rounded - x) <= np.repeat(step[..., 0], 32, axis=-1) / 2 * (1 + 2**-20)).all()
integer_sums = np.einsum("rbk,bko->rbo", xi.astype(np.int64), q.reshape(n_in // 32, 32, n_out).astype(np.int64))
by_blocks = (integer_sums * step * scales).sum(axis=1)  # each block's exact sum times its two scales
_workshop.check_close("int8: integer sums per block, times the scales", by_blocks, x_rounded @ widen(library))
print(f"ok  x rounded to int16 steps: largest change {np.abs(x_rounded - x).max():.1e} "
      f"(inputs up to {np.abs(x).max():.1f})")

# %% [markdown]
# Why blocks of 32, and not one scale per output column (fewer scales)? The scale follows the largest
# weight it covers. The largest magnitude among 32 Gaussian numbers is about 2.4 standard deviations, among 768
# about 3.4 (printed below): per-column steps are about 1.4 times as large. And trained weights have heavy tails
# and a few outsized input rows (GPT-2's residual stream has a few dimensions with huge values): such a row sets
# the scale of *every* column, but only of one block per column. We measure both groupings on the model's
# matrices, on Gaussian numbers, and on a stand-in for trained weights (Student-t with 4 degrees of freedom, four
# input rows 10x).

# %%
def per_column(a):
    s = np.abs(a).max(axis=0) / 127
    return np.rint(a / s) * s


def relative_rms(approx, exact):
    return float(np.sqrt(np.mean((approx - exact) ** 2) / np.mean(exact ** 2)))


largest = {n: np.abs(np.random.default_rng(n).standard_normal((2000, n))).max(axis=1).mean() for n in (32, 768)}
print(f"largest |x| of 32 Gaussian numbers, on average: {largest[32]:.2f} standard deviations; of 768: "
      f"{largest[768]:.2f}; ratio {largest[768] / largest[32]:.2f}")
rng = np.random.default_rng(0)
heavy = (rng.standard_t(4, W.shape) * 0.02).astype(np.float32)
heavy[rng.choice(W.shape[0], 4, replace=False)] *= 10
candidates = {"this model's mlp.c_fc": W, "Gaussian": rng.standard_normal(W.shape).astype(np.float32),
              "heavy tails + outlier rows": heavy}
grouping_error = {}
for name, a in candidates.items():
    grouping_error[name] = (relative_rms(widen(weights.quantize_int8(a)), a), relative_rms(per_column(a), a))
    print(f"{name:>28}: relative rms error, blocks of 32 {grouping_error[name][0]:.2e}, "
          f"per column {grouping_error[name][1]:.2e}")
assert all(block < column for block, column in grouping_error.values())
# (A tiny model's matrices have only 64 inputs, two blocks: there the two groupings are close.)

# %% [markdown]
# ## The error in the model's output
#
# Now whole models: the same weights in each format (`model.to(dtype)` converts in place; loading does the
# same with `from_pretrained(path, torch_dtype="bfloat16")` or `load_in_8bit=True`). First the NumPy reference
# by hand: a linear layer is `x @ widen(w) + b`, nothing more (int8: `round_int16(x) @ widen(w) + b`).

# %%
models = {"float32": model}
for fmt in ("bfloat16", "float16", "int8"):
    models[fmt] = copy.deepcopy(model).to(fmt)
    assert models[fmt].dtype == fmt

x = np.random.default_rng(1).standard_normal((3, config.n_embd)).astype(np.float32)
for fmt, m in models.items():
    c_fc = m.params["h"][0]["mlp"]["c_fc"]
    x_in = weights.round_int16(x) if fmt == "int8" else x
    by_hand = x_in @ widen(c_fc["weight"]) + c_fc["bias"]
    _workshop.check_close(f"{fmt}: x @ widen(w) + b == layers.linear", by_hand, layers.linear(x, **c_fc))

# %% [markdown]
# Then the outputs. For each format against float32: the largest logit difference, how often the likeliest
# next token is the same, and the KL divergence between the two next-token distributions
# (KL(p‖q) = Σ p log(p/q), in nats; 0 when they are equal).

# %%
text = ("The tower is 324 metres tall, about the same height as an 81-storey building, and the tallest "
        "structure in Paris. Its base is square, measuring 125 metres on each side.")
ids = np.array([tokenizer(text).input_ids])


def kl_divergence(logits_p, logits_q):
    lp = logits_p - np.logaddexp.reduce(logits_p.astype(np.float64), axis=-1, keepdims=True)
    lq = logits_q - np.logaddexp.reduce(logits_q.astype(np.float64), axis=-1, keepdims=True)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


logits = {fmt: m(ids).logits[0] for fmt, m in models.items()}
reference = logits["float32"]
error = {}
print(f"{ids.shape[1]} positions; largest |logit| {np.abs(reference).max():.2f}")
print(f"{'format':>9} {'max |logit diff|':>17} {'top-1 agrees':>13} {'KL mean':>9} {'KL max':>9}")
for fmt in ("bfloat16", "float16", "int8"):
    diff = np.abs(logits[fmt] - reference).max()
    agree = np.mean(logits[fmt].argmax(-1) == reference.argmax(-1))
    kl = kl_divergence(reference, logits[fmt])
    error[fmt] = diff
    print(f"{fmt:>9} {diff:17.2e} {agree:13.1%} {kl.mean():9.1e} {kl.max():9.1e}")
assert error["float16"] < error["bfloat16"]  # 3 more bits: about 8x less error

# %% [markdown]
# Greedy continuations, each format on its own tokens. Where float32's two likeliest tokens are nearly tied,
# a small rounding can pick the other one, and from there the texts go their own ways.

# %%
prompt = np.array([tokenizer("The meaning of life is").input_ids])
continuation = {fmt: m.generate(prompt, max_new_tokens=20, do_sample=False,
                                pad_token_id=config.eos_token_id)[0, prompt.shape[1]:]
                for fmt, m in models.items()}
for fmt, tokens in continuation.items():
    same = np.cumprod(tokens == continuation["float32"]).sum()
    print(f"{fmt:>9}: {same:2d}/20 tokens as float32  {tokenizer.decode(tokens)!r}")
if not _workshop.is_real(model):
    print("(the tiny model's weights are random: its text is noise, but the comparison holds all the same)")

# %% [markdown]
# Error against bits per weight (int8's scales make it 8.5 bits per weight):

# %%
bits = {"bfloat16": 16, "float16": 16, "int8": 8 * weights.quantize_int8(W).nbytes / W.size}
if plt:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for fmt in error:
        ax.scatter(bits[fmt], error[fmt], s=40)
        ax.annotate(fmt, (bits[fmt], error[fmt]), textcoords="offset points", xytext=(6, 4))
    ax.set_yscale("log")
    ax.set_xlim(6, 18)
    ax.set_xlabel("bits per weight")
    ax.set_ylabel("largest |logit difference| vs float32")
    ax.set_title("rounding error of the weights, seen in the logits")
    ax.grid(alpha=0.3)
    _workshop.show(fig, "09_error_vs_bits")

# %% [markdown]
# ## What it buys: bytes per token and tokens per second
#
# Decoding one token reads every weight matrix once (the blocks' four matrices and the tied LM head, wte),
# so the bytes per token are the bytes of those matrices. Memory delivers at some rate; we measure it by
# summing a 256 MiB array, and divide to get each format's ceiling in tokens per second. Then we time
# decoding. Be warned: **the NumPy path widens a matrix to float32 every time it uses it**, which writes a
# float32 copy and reads it again, so in NumPy the narrow formats are *slower* than float32. The speed comes
# only from kernels that widen in registers as they read: the C core's (csrc/widen.h), which reads each
# weight in its narrow format and widens it just before its multiply-add. The line above says which backend
# runs here; with `MINIGPT2_BACKEND=numpy` you can see the other side of the trade.

# %%
def bytes_per_token(m):
    flat = checkpoint.flatten(m.params)
    return sum(w.nbytes for name, w in flat.items() if weights.is_matrix(name, w) and name != "wpe.weight")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "an unknown CPU"


big = np.ones(2**26, np.float32)  # 256 MiB
bandwidth = big.nbytes / _workshop.best_time(lambda: big @ big, repeat=3)  # BLAS's dot streams it once
print(f"machine: {platform.machine()}, {cpu_name()}; backend {backend.get_backend()}; memory read by a dot "
      f"product: {bandwidth / 1e9:.1f} GB/s")

new_tokens = 8 if _workshop.is_real(model) else 32
speed = {}
print(f"{'format':>9} {'MiB/token':>10} {'ceiling tok/s':>14} {'measured tok/s':>15}")
for fmt, m in models.items():
    m.generate(prompt, max_new_tokens=2, do_sample=False, pad_token_id=config.eos_token_id)  # warm up
    start = time.perf_counter()
    m.generate(prompt, max_new_tokens=new_tokens, do_sample=False, pad_token_id=config.eos_token_id)
    speed[fmt] = new_tokens / (time.perf_counter() - start)
    print(f"{fmt:>9} {bytes_per_token(m) / 2**20:10.1f} {bandwidth / bytes_per_token(m):14.0f} {speed[fmt]:15.1f}")

if plt:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for i, fmt in enumerate(models):
        ax.scatter(bytes_per_token(models[fmt]) / 2**20, speed[fmt], s=40)
        ax.annotate(fmt, (bytes_per_token(models[fmt]) / 2**20, speed[fmt]), textcoords="offset points",
                    xytext=(6, 4 if i % 2 else -12))
    mib = np.linspace(0.25, 1.1, 50) * bytes_per_token(model) / 2**20
    ax.plot(mib, bandwidth / (mib * 2**20), color="gray", lw=1, label="memory ceiling")
    ax.set_xlabel("MiB of weights read per token")
    ax.set_ylabel("tokens / s (measured, prompt included)")
    ax.set_title(f"decoding on this machine ({backend.get_backend()} backend)")
    ax.legend()
    ax.grid(alpha=0.3)
    _workshop.show(fig, "09_bytes_vs_speed")

# %% [markdown]
# The ceiling line is where a kernel that only waits for memory would sit; on the tiny model everything else
# (Python, the attention, the small matrix products) dominates, so no format comes near it. Half the bytes can
# give up to twice the tokens per second only when the weights are streamed in their narrow format; the
# printed numbers say what this machine did today.
#
# ## In practice
#
# ```python
# model = minigpt2.GPT2LMHeadModel.from_pretrained("gpt2", torch_dtype="bfloat16")  # or "float16", "auto"
# model = minigpt2.GPT2LMHeadModel.from_pretrained("gpt2", load_in_8bit=True)        # int8, blocks of 32
# model.dtype                           # "bfloat16"
# model.save_pretrained("gpt2-bf16")    # BF16 tensors, which transformers loads as bfloat16
# ```
# and on the command line `python -m minigpt2 --dtype bfloat16 "Hello"`. docs/numerics.md has the error
# measured on larger models, and tests/test_dtypes.py bounds it by the rounding of the weights.
