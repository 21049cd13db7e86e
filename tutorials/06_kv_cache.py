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
# # 06 · The KV cache
#
# Generating text means running the model, picking a next token, appending it, and running the model
# again. Done naively, step n recomputes all n tokens, though only the newest one is new. The **KV cache**
# (`past_key_values`) keeps each layer's keys and values from earlier steps, so a step feeds the model just
# the new token.
#
# We look at what the cache holds, write a cached decoding step in NumPy, show why it gives the same
# result as recomputing everything, and measure the speed-up.

# %%
MODEL = "gpt2"  # the real 124M GPT-2 when available; otherwise the tiny random model (it says so)

import math
import time

import numpy as np

import _workshop
import minigpt2
from minigpt2 import layers

model = _workshop.load_model(MODEL)
config = model.config
params = model.params
plt = _workshop.pyplot()
tokenizer = _workshop.tokenizer()
L, H, D = config.n_layer, config.n_head, config.head_dim

prompt = np.array([tokenizer.encode("The KV cache makes generation fast because")])
P = prompt.shape[1]
print("prompt:", P, "tokens")

# %% [markdown]
# ## What `past_key_values` holds
#
# A tuple with one `(key, value)` pair per layer; each is `[B, H, P, D]`: for every cached position, every
# head's key and value vector. Nothing else. The keys are exactly what attention computed from `ln_1`'s
# output with `c_attn`:

# %%
with minigpt2.trace() as t:
    out = model(prompt, use_cache=True)
past = out.past_key_values
print(f"{len(past)} layers × (key, value), each {past[0][0].shape}  [B, H, P, D]")
cache_bytes = sum(k.nbytes + v.nbytes for k, v in past)
print(f"{cache_bytes / 1024:.0f} KiB for {P} tokens = 2 × L × H × D × 4 bytes = "
      f"{2 * L * H * D * 4} bytes per token; at n_positions={config.n_positions}: "
      f"{2 * L * H * D * 4 * config.n_positions / 2**20:.0f} MiB")

layer = L - 1
w = params["h"][layer]["attn"]["c_attn"]
qkv = t[f"h.{layer}.ln_1"] @ w["weight"] + w["bias"]  # [B, P, 3E]
_, k, v = (layers.split_heads(a, H) for a in np.split(qkv, 3, axis=-1))
_workshop.check_close(f"layer {layer} keys == k_proj(ln_1(x))", past[layer][0], k)
_workshop.check_close(f"layer {layer} values == v_proj(ln_1(x))", past[layer][1], v)

# %% [markdown]
# ## Why reusing them is exact
#
# Three facts make a cached step compute the same numbers as a full recompute:
#
# 1. **Causality.** Position i only attends to positions ≤ i. Appending a token changes nothing at earlier
#    positions: not their hidden states, and so not their keys and values in any layer. They can be stored.
# 2. **Positions continue.** The new token is position P, so it gets `wpe[P]`; minigpt2 starts
#    `position_ids` at the cache length.
# 3. **The mask is anchored at the lower-right.** The new query (row P) sees all P + 1 keys.
#
# Here is a decoding step written in NumPy with our own cache (plain lists of arrays, grown with
# `np.concatenate`), checked against minigpt2's step with `past_key_values` and against a full recompute.

# %%
def my_step(new_ids, cache):
    """Run the T new tokens after the cached ones. cache: list of [k, v] per layer, each [B, H, P, D]."""
    B, T = new_ids.shape
    P = cache[0][0].shape[2] if cache else 0
    x = params["wte"]["weight"][new_ids] + params["wpe"]["weight"][np.arange(P, P + T)]  # fact 2
    new_cache = []
    for i, p in enumerate(params["h"]):
        h = layers.layer_norm(x, **p["ln_1"], eps=config.layer_norm_epsilon)
        q, k, v = (layers.split_heads(a, H) for a in np.split(h @ p["attn"]["c_attn"]["weight"]
                                                             + p["attn"]["c_attn"]["bias"], 3, axis=-1))
        if cache:  # append the new keys and values to the stored ones (fact 1)
            k = np.concatenate([cache[i][0], k], axis=2)  # [B, H, P + T, D]
            v = np.concatenate([cache[i][1], v], axis=2)
        new_cache.append([k, v])
        scores = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / math.sqrt(D))  # [B, H, T, P + T]
        scores = np.where(layers.causal_mask(T, P + T), scores, layers.MASK_VALUE)  # fact 3
        a = layers.merge_heads(layers.softmax(scores) @ v)
        x = x + a @ p["attn"]["c_proj"]["weight"] + p["attn"]["c_proj"]["bias"]
        h = layers.layer_norm(x, **p["ln_2"], eps=config.layer_norm_epsilon)
        x = x + layers.mlp(h, **p["mlp"], act=minigpt2.activations.gelu_new)
    x = layers.layer_norm(x, **params["ln_f"], eps=config.layer_norm_epsilon)
    return x @ params["wte"]["weight"].T, new_cache


my_logits, my_cache = my_step(prompt, [])
next_id = np.array([[my_logits[0, -1].argmax()]])
print("next token:", repr(tokenizer.decode(next_id[0])))

step_logits, _ = my_step(next_id, my_cache)  # one token in, P cached
library_step = model(next_id, past_key_values=past).logits  # the same with minigpt2's cache
full = model(np.concatenate([prompt, next_id], axis=1)).logits  # recompute all P + 1 tokens

_workshop.check_close("my cached step == model(..., past_key_values)", step_logits, library_step)
_workshop.check_close("cached step == last row of a full recompute", library_step[:, -1], full[:, -1],
                      rtol=1e-4, atol=1e-4)

# %% [markdown]
# The cached and the recomputed logits agree to float32 rounding, not bit for bit: with the cache, the new
# token's query is a `[1, D]` matrix times a `[D, P + 1]` one; recomputing, it is one row of a `[P + 1, D]`
# product, and BLAS may sum the same products in a different order for different shapes. Each is as
# accurate as the other.
#
# ## minigpt2's cache appends in place
#
# `np.concatenate` copies the whole cache at every step, O(n²) copying over n steps. minigpt2's `KVCache`
# preallocates buffers with room to grow and writes the new keys and values into them, doubling when full.
# What you get back behaves like HF's tuple, but its arrays are read-only views, so nobody can change a
# cache another step still uses:

# %%
print(type(past).__name__, "is a tuple:", isinstance(past, tuple), "| writeable:", past[0][0].flags.writeable,
      "| get_seq_length():", past.get_seq_length())

# %% [markdown]
# ## Decoding with and without the cache
#
# Greedy decoding, N new tokens, twice: recomputing the whole sequence at every step, and feeding one token
# at a time with `past_key_values`. Same tokens, different cost.

# %%
N = 30


def decode_recompute(ids, n):
    for _ in range(n):
        logits = model(ids, use_cache=False).logits
        ids = np.concatenate([ids, logits[:, -1:].argmax(-1)], axis=1)
    return ids


def decode_cached(ids, n):
    past, new = None, ids
    for _ in range(n):
        out = model(new, past_key_values=past, use_cache=True)
        past, new = out.past_key_values, out.logits[:, -1:].argmax(-1)
        ids = np.concatenate([ids, new], axis=1)
    return ids


decode_recompute(prompt, 2), decode_cached(prompt, 2)  # warm up (first calls touch memory-mapped weights)
start = time.perf_counter(); ids_full = decode_recompute(prompt, N); seconds_full = time.perf_counter() - start
start = time.perf_counter(); ids_cached = decode_cached(prompt, N); seconds_cached = time.perf_counter() - start
assert np.array_equal(ids_full, ids_cached), "greedy tokens must not depend on the cache"
print("generated:", repr(tokenizer.decode(ids_cached[0, P:])))
print(f"{N} tokens after a {P}-token prompt: recompute {seconds_full:.2f} s, with the KV cache "
      f"{seconds_cached:.2f} s -> {seconds_full / seconds_cached:.1f}x faster")

# %% [markdown]
# How the cost of one step grows with the length of the sequence: a full forward pass over n tokens,
# against one cached step after n − 1 tokens. Each point is the fastest of a few runs (two full passes,
# three cached steps), which filters out the noise of a busy laptop. (Feeding the same cache again is allowed: minigpt2 then copies it first, so
# no cache a caller holds ever changes; the fastest run is the one without that copy.)

# %%
long_ids = np.resize(ids_cached[0], min(256, config.n_positions))[None, :]  # any tokens will do for timing
lengths = np.unique(np.linspace(8, long_ids.shape[1], 6).astype(int))
t_recompute, t_step = [], []
for n in lengths:
    t_recompute.append(_workshop.best_time(lambda: model(long_ids[:, :n], use_cache=False), repeat=2))
    past = model(long_ids[:, : n - 1]).past_key_values  # fill the cache once (not timed)
    t_step.append(_workshop.best_time(lambda: model(long_ids[:, n - 1: n], past_key_values=past), repeat=3))
    print(f"n = {n:>4}: full forward {t_recompute[-1] * 1e3:8.1f} ms, cached step {t_step[-1] * 1e3:6.1f} ms "
          f"({t_recompute[-1] / t_step[-1]:5.1f}x)")

# %% [markdown]
# A full forward pass grows with n (roughly linearly while the matrix products dominate); a cached step
# grows only through attention over the cache, a small part of the work at these lengths.

# %%
if plt:
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(lengths, np.array(t_recompute) * 1e3, marker="o", label="recompute all n tokens")
    ax.plot(lengths, np.array(t_step) * 1e3, marker="o", label="KV cache: one new token")
    ax.set_xlabel("sequence length n"); ax.set_ylabel("ms per generated token (best of a few runs)")
    ax.set_ylim(bottom=0); ax.grid(alpha=0.3); ax.legend()
    ax.set_title(f"cost of one decoding step ({model.workshop_name}, backend {minigpt2.backend.name})")
    _workshop.show(fig, "06_kv_cache_step_time")

# %% [markdown]
# ## What we built
#
# - `past_key_values` holds, per layer, the keys and values of every earlier position: `[B, H, P, D]` each.
# - A cached step embeds the new token at position P, appends its keys and values, and attends with the
#   mask anchored at the lower-right. Our NumPy `my_step` equals minigpt2's, and both equal a full recompute
#   to float32 rounding, so greedy decoding picks identical tokens.
# - The speed-ups printed above are this machine's measurements; they grow with the sequence length.
#
# Next: `07_decoding`, how the next token is chosen from the logits.
