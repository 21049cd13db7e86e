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
# # 06 · The KV cache
#
# Generating text means running the model, picking a next token, appending it, and running the model
# again. Done naively, step n recomputes all n tokens, though only the newest one is new. The **KV cache**
# (`past_key_values`) keeps each layer's keys and values from earlier steps, so a step feeds the model just
# the new token.
#
# We look at what the cache holds, write a cached decoding step in NumPy, show why it gives the same
# result as recomputing everything, and measure the speed-up.
#
# **Exercises** (✎ 6.1 to 6.3): in `06_kv_cache.ipynb` the key lines are blank (`...`); the check under each
# says whether your answer matches minigpt2 and, if not, how it differs. Solutions:
# `06_kv_cache_solution.ipynb` (and this `.py` file).

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
print(f"the prompt is {P} tokens long")

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
print(f"past_key_values: {len(past)} layers × (key, value), each of shape {past[0][0].shape} ([B, H, P, D])")
cache_bytes = sum(k.nbytes + v.nbytes for k, v in past)

# %% [markdown]
# **✎ Exercise 6.1 · the cache's size.** How many bytes does the cache hold *per token*? Write it from `L`,
# `H` and `D` (a float32 is 4 bytes; remember there are keys *and* values). The check compares it with the
# bytes the arrays above actually hold, divided by P.

# %%
# BLANK bytes_per_token = ...  # exercise 6.1: your code here
### BEGIN SOLUTION 6.1
bytes_per_token = 2 * L * H * D * 4  # keys and values, L layers, H heads, D floats of 4 bytes
### END SOLUTION 6.1
bytes_per_token = _workshop.check_answer("6.1", "cache bytes per token", bytes_per_token, cache_bytes // P)
print(f"the cache holds {cache_bytes / 1024:.0f} KiB for {P} tokens, {bytes_per_token} bytes per token; "
      f"filled to n_positions = {config.n_positions} tokens it would take "
      f"{bytes_per_token * config.n_positions / 2**20:.2f} MiB")

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
#
# **✎ Exercise 6.2 · the mask with a cache.** Write `my_cached_mask(T, K)`: `[T, K]` booleans for T new
# queries that are the *last* T of K positions; new query i (position K − T + i) sees keys 0 .. K − T + i.
# Hint: `np.tri(T, K, k=...)`, or `np.tril` with an offset.

# %%
def my_cached_mask(T, K):
    # BLANK return ...  # exercise 6.2: your code here
    ### BEGIN SOLUTION 6.2
    return np.tri(T, K, k=K - T, dtype=bool)
    ### END SOLUTION 6.2


my_cached_mask = _workshop.check_function("6.2", "the mask with a cache", my_cached_mask, layers.causal_mask,
                                          {"T=1, K=5": (1, 5), "T=2, K=5": (2, 5), "T=4, K=4 (no cache)": (4, 4)})

# %% [markdown]
# **✎ Exercise 6.3 · the cache append.** In `my_step`, when there is a cache, put the stored keys of layer i
# (`cache[i][0]`, `[B, H, P, D]`) in front of the new ones (`k`, `[B, H, T, D]`), and the same for the
# values, so that `k` and `v` become `[B, H, P + T, D]`. The check runs one cached step and compares its
# logits with minigpt2's step with `past_key_values`.

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
            # BLANK k, v = ...  # exercise 6.3: your code here
            ### BEGIN SOLUTION 6.3
            k = np.concatenate([cache[i][0], k], axis=2)  # [B, H, P + T, D]
            v = np.concatenate([cache[i][1], v], axis=2)
            ### END SOLUTION 6.3
        new_cache.append([k, v])
        scores = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / math.sqrt(D))  # [B, H, T, P + T]
        scores = np.where(my_cached_mask(T, P + T), scores, layers.MASK_VALUE)  # fact 3
        a = layers.merge_heads(layers.softmax(scores) @ v)
        x = x + a @ p["attn"]["c_proj"]["weight"] + p["attn"]["c_proj"]["bias"]
        h = layers.layer_norm(x, **p["ln_2"], eps=config.layer_norm_epsilon)
        x = x + layers.mlp(h, **p["mlp"], act=minigpt2.activations.gelu_new)
    x = layers.layer_norm(x, **params["ln_f"], eps=config.layer_norm_epsilon)
    return x @ params["wte"]["weight"].T, new_cache


my_logits, my_cache = my_step(prompt, [])  # the prompt, no cache yet
next_id = np.array([[my_logits[0, -1].argmax()]])
print(f"the next token ({_workshop.model_label(model)}): {tokenizer.decode(next_id[0])!r}")


def my_cached_step_logits(new_ids):  # one token in, P cached
    return my_step(new_ids, my_cache)[0]


_workshop.check_function("6.3", "the cache append", my_cached_step_logits,
                         lambda new_ids: model(new_ids, past_key_values=past).logits,  # minigpt2's cache
                         {"one token after the prompt": (next_id,)})
library_step = model(next_id, past_key_values=past).logits
full = model(np.concatenate([prompt, next_id], axis=1)).logits  # recompute all P + 1 tokens
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
# writes the new keys and values into buffers with room to grow: the first time a cache is continued, its
# buffers are remade once with room for all `n_positions`, and the operating system supplies their memory only
# as positions are written, so no later step copies anything. What you get back behaves like HF's tuple, but
# its arrays are read-only views, so nobody can change a cache another step still uses:

# %%
print(f"past_key_values is a {type(past).__name__}; a tuple: {isinstance(past, tuple)}; its arrays writeable: "
      f"{past[0][0].flags.writeable}; get_seq_length() = {past.get_seq_length()} tokens")

# %% [markdown]
# ## Decoding with and without the cache
#
# Greedy decoding, N new tokens, twice: recomputing the whole sequence at every step, and feeding one token
# at a time with `past_key_values`. Same tokens, different cost.

# %%
N = 20


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
ids_full, ids_cached = decode_recompute(prompt, N), decode_cached(prompt, N)
assert np.array_equal(ids_full, ids_cached), "greedy tokens must not depend on the cache"
print(f"generated ({_workshop.model_label(model)}): {tokenizer.decode(ids_cached[0, P:])!r}")
seconds_full = _workshop.run_times(lambda: decode_recompute(prompt, N), repeat=3)
seconds_cached = _workshop.run_times(lambda: decode_cached(prompt, N), repeat=3)
print(f"{N} tokens after a {P}-token prompt, three runs each, on {_workshop.machine()}:")
print(f"  recomputing everything: {_workshop.spread(seconds_full, 1, 's')}")
print(f"  with the KV cache:      {_workshop.spread(seconds_cached, 1, 's')}")
print("  " + _workshop.ratio_words(np.median(seconds_full), np.median(seconds_cached), "decoding with the cache",
                                   "recomputing") + f" (median against median; the ratio of the extremes spans "
      f"{seconds_full.min() / seconds_cached.max():.1f}x to {seconds_full.max() / seconds_cached.min():.1f}x)")

# %% [markdown]
# How the cost of one step grows with the length of the sequence: a full forward pass over n tokens,
# against one cached step after n − 1 tokens. Each point is the median of three runs, and the bars span
# the fastest to the slowest, so the noise of a busy laptop shows. (Feeding the same cache again is allowed:
# minigpt2 then copies it first, so no cache a caller holds ever changes.)

# %%
long_ids = np.resize(ids_cached[0], min(256, config.n_positions))[None, :]  # any tokens will do for timing
lengths = np.unique(np.linspace(8, long_ids.shape[1], 6).astype(int))
t_recompute, t_step = [], []
for n in lengths:
    t_recompute.append(_workshop.run_times(lambda: model(long_ids[:, :n], use_cache=False), repeat=3))
    past = model(long_ids[:, : n - 1]).past_key_values  # fill the cache once (not timed)
    t_step.append(_workshop.run_times(lambda: model(long_ids[:, n - 1: n], past_key_values=past), repeat=3))
    print(f"n = {n:>4}: full forward {_workshop.spread(t_recompute[-1])}, cached step {_workshop.spread(t_step[-1])}")
t_recompute, t_step = np.array(t_recompute), np.array(t_step)  # [lengths, runs], seconds

# %% [markdown]
# A full forward pass grows with n (roughly linearly while the matrix products dominate); a cached step
# grows only through attention over the cache, a small part of the work at these lengths.

# %%
if plt:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for times, label in ((t_recompute, "recompute all n tokens"), (t_step, "KV cache: one new token")):
        median = np.median(times, axis=1) * 1e3
        ax.errorbar(lengths, median, yerr=[median - times.min(1) * 1e3, times.max(1) * 1e3 - median],
                    marker="o", capsize=3, label=label)
    ax.set_xlabel("sequence length n (tokens)"); ax.set_ylabel("ms per generated token (median, min to max)")
    ax.set_ylim(bottom=0); ax.grid(alpha=0.3); ax.legend()
    ax.set_title(f"cost of one decoding step ({_workshop.model_label(model)}, backend {minigpt2.backend.name})\n"
                 f"{_workshop.machine()}", fontsize=9)
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
