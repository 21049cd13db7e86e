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
# # 04 · Masked multi-head attention
#
# Attention is where tokens exchange information. Each token asks a question (its **query**), every token
# offers a label (its **key**) and a message (its **value**); a token receives the average of the messages,
# weighted by how well its query matches each key. "Masked": a token may only look at itself and the tokens
# before it. "Multi-head": the vectors are cut into H slices that attend independently.
#
# We compute GPT-2's first attention layer by hand, shape by shape, check every step against minigpt2,
# and draw the attention patterns.
#
# **Exercises** (✎ 4.1 to 4.3): in `04_attention.ipynb` the key lines are blank (`...`); the check under each
# says whether your answer matches minigpt2 and, if not, how it differs (shape, values, which position).
# Solutions: `04_attention_solution.ipynb` (and this `.py` file).

# %%
MODEL = "gpt2"  # the real 124M GPT-2 when available; otherwise the tiny random model (it says so)

import numpy as np

import _workshop
import minigpt2
from minigpt2 import GPT2Config, GPT2LMHeadModel, layers

model = _workshop.load_model(MODEL)
config = model.config
plt = _workshop.pyplot()
tokenizer = _workshop.tokenizer()

B, H, E = 1, config.n_head, config.n_embd
D = E // H  # head_dim
print(f"this model has H = {H} heads, E = {E} features per token, so each head works on D = E / H = {D}")

text = "The cat sat on the mat because it was tired."
ids = np.array([tokenizer.encode(text)])
tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
T = ids.shape[1]
with minigpt2.trace() as t:
    model(ids)
x = t["h.0.ln_1"]  # the input of the first attention layer: [B, T, E]
print(f"{T} tokens: {tokens}")
print(f"the attention layer's input has shape {x.shape} ([batch, tokens, features])")

# %% [markdown]
# ## Queries, keys and values
#
# One linear layer (`c_attn`, weight `[E, 3E]`) makes all three at once; we cut its output in three.

# %%
attn_params = model.params["h"][0]["attn"]
qkv = x @ attn_params["c_attn"]["weight"] + attn_params["c_attn"]["bias"]  # [B, T, 3E]
q, k, v = np.split(qkv, 3, axis=-1)  # 3 x [B, T, E]
print(f"c_attn's output {qkv.shape} is cut into q, k and v of shape {q.shape} each")

# %% [markdown]
# ## Heads
#
# Head h gets dimensions `h*D ... (h+1)*D - 1` of each vector. Reshaping `[B, T, E]` to `[B, T, H, D]` and
# moving the head axis forward gives `[B, H, T, D]`: H independent attention problems.

# %%
def my_split_heads(a):  # [B, T, E] -> [B, H, T, D]
    return a.reshape(B, T, H, D).transpose(0, 2, 1, 3)


q, k, v = my_split_heads(q), my_split_heads(k), my_split_heads(v)
print(f"split into heads, q, k and v have shape {q.shape} ([batch, heads, tokens, head_dim])")
_workshop.check_close("my_split_heads == layers.split_heads", q,
                      layers.split_heads(np.split(qkv, 3, axis=-1)[0], H))

# %% [markdown]
# ## Scores, the causal mask, softmax
#
# `scores[b, h, i, j]` = how much query i matches key j, scaled by $1/\sqrt{D}$ so the scores do not grow
# with the head size. Then the **causal mask**: query i may see keys 0..i only. Masked scores are set to a
# huge negative number, so that softmax gives them probability 0.
#
# Which number? For the causal mask alone any will do, even `-inf` (what `layers.attention_probs` uses): every
# query sees at least itself, so each row keeps a real score and `exp(MASK - max)` is exactly 0. Padding is
# different (below): a query can have nothing but padding in view, and with `-inf` that row would become
# `exp(-inf) / sum(exp(-inf)) = 0/0 = NaN`, and the NaN would spread. So padding gets the most negative float32,
# `layers.MASK_VALUE`, *added* to its scores, as HF does: such a row turns into a harmless uniform distribution
# over the keys it sees. Here we use MASK_VALUE for the causal mask too; the probabilities are the same.
#
# **✎ Exercise 4.1 · the causal mask.** Make `causal`, a `[T, T]` array of booleans, True where query i may
# see key j (j ≤ i). Hint: `np.tril`.

# %%
# BLANK causal = ...  # exercise 4.1: your code here
### BEGIN SOLUTION 4.1
causal = np.tril(np.ones((T, T), dtype=bool))  # causal[i, j]: may query i see key j?
### END SOLUTION 4.1
causal = _workshop.check_answer("4.1", "the causal mask", causal, layers.causal_mask(T, T))
print(f"MASK_VALUE = {layers.MASK_VALUE:.4g}, the most negative float32")

# %% [markdown]
# **✎ Exercise 4.2 · the attention probabilities.** Complete `my_attention_probs(q, k)`: the scores
# $q k^\top / \sqrt{D}$ (`[B, H, T, T]`: transpose the last two axes of `k`), then `layers.MASK_VALUE`
# wherever `causal` is False, then `my_softmax`. The check compares them with the probabilities minigpt2
# computed in its own forward pass (`trace()`'s `h.0.attn_probs`).

# %%
scale = 1.0 / np.sqrt(D)


def my_softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))  # subtracting the max keeps exp from overflowing
    return e / e.sum(axis=-1, keepdims=True)


def my_attention_probs(q, k):
    # BLANK scores = ...  # exercise 4.2: your code here (the scaled scores, then the mask)
    ### BEGIN SOLUTION 4.2
    scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(scale)  # [B, H, T, T]
    scores = np.where(causal, scores, layers.MASK_VALUE)
    ### END SOLUTION 4.2
    return my_softmax(scores)  # [B, H, T, T]; each row sums to 1


my_attention_probs = _workshop.check_function("4.2", "the attention probabilities", my_attention_probs,
                                              lambda q, k: t["h.0.attn_probs"], {"layer 0 of the sentence": (q, k)})
probs = my_attention_probs(q, k)
assert np.allclose(probs.sum(-1), 1.0, atol=1e-5) and np.all(probs[..., ~causal] == 0)

with np.errstate(invalid="ignore"):
    all_masked = np.full(4, -np.inf, np.float32)
    print("softmax of a fully masked row, masked with -inf:      ", my_softmax(all_masked))
    print("softmax of a fully masked row, masked with MASK_VALUE:", my_softmax(np.full(4, layers.MASK_VALUE, np.float32)))

# %% [markdown]
# ## Weighted values, heads merged, output projection
#
# **✎ Exercise 4.3 · merging the heads.** `out = probs @ v` is `[B, H, T, D]`. Put the heads side by side
# again: `merged`, `[B, T, E]`, where token t's features h·D ... (h+1)·D − 1 come from head h. (The reverse of
# `my_split_heads`: a transpose, then a reshape.)

# %%
out = probs @ v  # [B, H, T, D]
# BLANK merged = ...  # exercise 4.3: your code here
### BEGIN SOLUTION 4.3
merged = out.transpose(0, 2, 1, 3).reshape(B, T, E)  # [B, T, E], heads side by side again
### END SOLUTION 4.3
merged = _workshop.check_answer("4.3", "merging the heads", merged, layers.merge_heads(out))
attn_out = merged @ attn_params["c_proj"]["weight"] + attn_params["c_proj"]["bias"]  # [B, T, E]
_workshop.check_close("my attention output == traced h.0.attn", attn_out, t["h.0.attn"])

library_out = layers.attention(q, k, v, scale=np.float32(scale), causal=True)
_workshop.check_close("probs @ v == layers.attention", out, library_out)

# %% [markdown]
# ## Attention patterns
#
# Each head of each layer has its own `[T, T]` matrix of probabilities. Row i shows where token i looks; the
# upper triangle is empty because of the causal mask. With the real gpt2, look for heads with a pattern:
# one that always attends to the previous token (a bright line just below the diagonal), one that piles
# its attention on the first token (a bright first column), one that finds an earlier copy of a word. With
# the tiny random model every visible key gets about the same weight, 1 / (i + 1) in row i.

# %%
def draw_heads(layer, name):
    p = t[f"h.{layer}.attn_probs"][0]  # [H, T, T]
    cols = min(H, 4)
    rows = -(-H // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 1, 3.4 * rows + 0.6), squeeze=False,
                             constrained_layout=True)
    for head, ax in enumerate(axes.flat):
        if head >= H:
            ax.axis("off")
            continue
        image = ax.imshow(p[head], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"layer {layer}, head {head}", fontsize=9)
        first_column, last_row = head % cols == 0, head // cols == rows - 1 or head + cols >= H
        ax.set_xticks(range(T)); ax.set_yticks(range(T))
        ax.set_xticklabels(tokens if last_row else [], rotation=90, fontsize=6)
        ax.set_yticklabels(tokens if first_column else [], fontsize=6)
        if last_row:
            ax.set_xlabel("key (attended to)", fontsize=8)
        if first_column:
            ax.set_ylabel("query (attending)", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention probability")
    fig.suptitle(f"attention probabilities of every head in layer {layer} ({_workshop.model_label(model)})")
    _workshop.show(fig, name)


if plt:
    draw_heads(0, "04_attention_heads_layer0")
    draw_heads(config.n_layer - 1, "04_attention_heads_last_layer")

    head = 0
    fig, ax = plt.subplots(figsize=(6.5, 5))
    image = ax.imshow(t[f"h.{config.n_layer - 1}.attn_probs"][0, head], cmap="Blues", vmin=0, vmax=1)
    _workshop.token_axes(ax, tokens)
    fig.colorbar(image, ax=ax, label="attention probability")
    ax.set_title(f"layer {config.n_layer - 1}, head {head} ({_workshop.model_label(model)})")
    _workshop.show(fig, "04_attention_one_head_with_tokens")
_workshop.say_if_random(model, "the attention patterns in these figures")

# %% [markdown]
# How far back does each layer look? The average distance between a query and the keys it attends to,
# $\sum_j p_{ij}\,(i - j)$, per head, averaged over queries:

# %%
distance = np.arange(T)[:, None] - np.arange(T)[None, :]  # [T, T]: i - j
mean_distance = np.stack([(t[f"h.{i}.attn_probs"][0] * distance).sum(-1).mean(-1) for i in range(config.n_layer)])
print(f"mean attention distance in tokens (rows: layers, columns: heads; {_workshop.model_label(model)}):\n",
      np.round(mean_distance, 2))
_workshop.say_if_random(model, "these distances")

# %% [markdown]
# ## The padding mask
#
# In a batch, `attention_mask` marks padding with 0. The model turns it into an additive bias on the
# scores, 0 for real tokens and MASK_VALUE for pads, so no query attends to a pad:

# %%
short = tokenizer.encode("The cat sat")
pad = tokenizer.eos_token_id
batch = np.array([short + [pad] * (T - len(short)), ids[0]])
attention_mask = np.array([[1] * len(short) + [0] * (T - len(short)), [1] * T])
key_bias = ((1.0 - attention_mask) * layers.MASK_VALUE)[:, None, None, :].astype(np.float32)  # [B, 1, 1, T]
print("the bias added to the padded row's scores, per key:", key_bias[0, 0, 0] + 0.0)  # + 0.0: -0.0 prints as 0.0

with minigpt2.trace() as tb:
    model(batch, attention_mask=attention_mask)
padded_probs = tb["h.0.attn_probs"]  # [2, H, T, T]
assert np.all(padded_probs[0, :, :, len(short):][:, : len(short)] == 0), "a real token attended to a pad"
print(f"the largest probability a real token gives to a pad: {padded_probs[0, :, : len(short), len(short):].max()}")

if plt:
    combined = causal[None] & attention_mask[:, None, :].astype(bool)  # [2, T, T]
    padded_tokens = tokenizer.convert_ids_to_tokens(batch[0].tolist())
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), constrained_layout=True)
    for ax, m, title in zip(axes, (causal, combined[0], padded_probs[0, 0]),
                            ("causal mask (1 = may attend)", "causal & padding mask, padded row",
                             "probabilities, head 0, padded row")):
        image = ax.imshow(m.astype(np.float32), cmap="Blues", vmin=0, vmax=1)
        _workshop.token_axes(ax, padded_tokens if ax is not axes[0] else tokens, fontsize=7)
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8, label="mask (0 or 1) / attention probability")
    _workshop.show(fig, "04_masks")

# %% [markdown]
# The padded queries (rows after "sat") still compute something, over the real tokens, but no real token
# ever reads from them, and their outputs are ignored.
#
# ## The mask when keys come from a cache
#
# During generation (tutorial 06) the keys include P cached positions and only the last T are new queries.
# The triangle is then anchored at the lower-right corner: new query i sees keys 0 .. P + i.

# %%
print(layers.causal_mask(2, 5).astype(int))
assert np.array_equal(layers.causal_mask(2, 5), np.tri(5, 5, dtype=bool)[-2:])

# %% [markdown]
# ## The three scale flags of GPT2Config
#
# - `scale_attn_weights` (default True): multiply scores by $1/\sqrt{D}$.
# - `scale_attn_by_inverse_layer_idx` (default False; from Stanford's Mistral runs): also by $1/(\ell + 1)$
#   in layer ℓ.
# - `reorder_and_upcast_attn` (default False): in HF, computes the scores in float32 even in a float16 model,
#   with the scaling applied earlier. In float32, where minigpt2 always computes, the result is the same.
#
# `layers.attention_scale` computes the factor; here is what it gives, and a check that a model with the
# second flag scales layer ℓ's scores by exactly 1/(ℓ + 1) more.

# %%
print("the factor the scores are multiplied by:")
for flags in [(True, False), (False, False), (True, True)]:
    print(f"  scale_attn_weights={flags[0]!s:5}, by_inverse_layer_idx={flags[1]!s:5}: "
          + ", ".join(f"layer {i}: {layers.attention_scale(D, i, *flags):.4f}" for i in range(3)))

flagged = GPT2LMHeadModel(GPT2Config(**{**config.to_dict(), "scale_attn_by_inverse_layer_idx": True}),
                          model.params)
with minigpt2.trace() as tf:
    flagged(ids)
layer = min(1, config.n_layer - 1)  # the second layer, whose scale the flag changes (a 1-layer model: its only one)
xl = tf[f"h.{layer}.ln_1"]
w = model.params["h"][layer]["attn"]["c_attn"]
ql, kl, _ = (my_split_heads(a) for a in np.split(xl @ w["weight"] + w["bias"], 3, axis=-1))
scores_l = (ql @ kl.transpose(0, 1, 3, 2)) * np.float32(1.0 / np.sqrt(D) / (layer + 1))
_workshop.check_close(f"scores × 1/(layer+1), layer {layer} == flagged model",
                      my_softmax(np.where(causal, scores_l, layers.MASK_VALUE)), tf[f"h.{layer}.attn_probs"])

reordered = GPT2LMHeadModel(GPT2Config(**{**config.to_dict(), "reorder_and_upcast_attn": True}), model.params)
_workshop.check_close("reorder_and_upcast_attn=True == default (float32)", reordered(ids).logits, model(ids).logits,
                      rtol=0, atol=0)

# %% [markdown]
# ## What we built
#
# `c_attn` → split into q, k, v → split heads → $qk^\top/\sqrt{D}$ → causal (and padding) mask with
# MASK_VALUE → softmax → weighted sum of v → merge heads → `c_proj`. Every step equals minigpt2's traced
# tensors. Next: `05_mlp_block_forward`, where this joins the MLP to make a block, and blocks make GPT-2.
