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
# # 02 · Embeddings and positions
#
# The tokenizer (tutorial 01) turns text into integer ids. The model's first step turns each id into a
# vector of `n_embd` numbers and adds a second vector that says *where* in the sequence the token is.
# Both come from lookup tables that were learned in training:
#
# - `wte` ("word token embeddings"), shape `[vocab_size, n_embd]`: one row per token id;
# - `wpe` ("word position embeddings"), shape `[n_positions, n_embd]`: one row per position 0, 1, 2, ...
#
# We build the embedding step in NumPy, check it against the model, then see what the position table
# implies: GPT-2 should be padded on the **right**.

# %%
MODEL = "gpt2"  # the real 124M GPT-2 when available; otherwise the tiny random model (it says so)

import numpy as np

import _workshop
import minigpt2

model = _workshop.load_model(MODEL)
config = model.config
plt = _workshop.pyplot()
tokenizer = _workshop.tokenizer()

wte = model.params["wte"]["weight"]  # [V, E]
wpe = model.params["wpe"]["weight"]  # [P, E]
print("wte", wte.shape, "  wpe", wpe.shape)

# %% [markdown]
# ## Looking up token vectors
#
# An embedding lookup is row indexing: token id 3290 gets row 3290 of `wte`. It is the same as multiplying
# a one-hot vector by the table, which is why it is called a (linear) embedding *layer*; indexing just skips
# the multiplications by zero.

# %%
text = "Hello, my dog is cute"
ids = np.array([tokenizer.encode(text)])  # [B=1, T]
print(ids, tokenizer.convert_ids_to_tokens(ids[0].tolist()))

token_vectors = wte[ids]  # [1, T, E]
one_hot = np.zeros((ids.shape[1], config.vocab_size), np.float32)
one_hot[np.arange(ids.shape[1]), ids[0]] = 1.0
_workshop.check_close("wte[ids] == one_hot @ wte", token_vectors[0], one_hot @ wte)

# %% [markdown]
# ## Adding positions
#
# Attention (tutorial 04) treats its inputs as a *set*: shuffle the tokens and, apart from the mask, it
# computes the same thing. The order reaches the model only through `wpe`: position t adds row t.

# %%
T = ids.shape[1]
position_ids = np.arange(T)[None, :]  # [1, T]: 0, 1, ..., T-1
my_embeddings = wte[ids] + wpe[position_ids]  # [1, T, E]

with minigpt2.trace() as t:
    model(ids)
_workshop.check_close("wte[ids] + wpe[positions] == traced 'embeddings'", my_embeddings, t["embeddings"])

# %% [markdown]
# ## Token types
#
# BERT-style models have a third table for "segment A / segment B". GPT-2 has none. transformers still
# accepts `token_type_ids` for GPT-2 and looks them up in the *token* table `wte`, so a token type is just
# another token's vector added on top. minigpt2 does the same:

# %%
token_type_ids = np.array([[0, 0, 0, 1, 1, 1]])[:, :T]
with minigpt2.trace() as t_types:
    model(ids, token_type_ids=token_type_ids)
_workshop.check_close("+ wte[token_type_ids] == traced 'embeddings'",
                      my_embeddings + wte[token_type_ids], t_types["embeddings"])

# %% [markdown]
# ## What the tables hold
#
# Neighbours in `wte`: the tokens whose vectors point most nearly the same way as " dog" (cosine
# similarity). With the real gpt2, see whether they are related words; with the tiny random model they
# are noise.

# %%
def nearest_tokens(token, k=8):
    (token_id,) = tokenizer.encode(token)
    unit = wte / np.linalg.norm(wte, axis=1, keepdims=True)
    similarity = unit @ unit[token_id]  # [V]
    best = np.argsort(-similarity)[1:k + 1]  # skip the token itself
    return [(tokenizer.decode([i]), round(float(similarity[i]), 3)) for i in best]


print(f"nearest to ' dog' ({model.workshop_name}):", nearest_tokens(" dog"))

# %% [markdown]
# Does the position table have structure? Nothing in training asks neighbouring positions to get similar
# vectors, so if they do, the model learned it. Compare the cosine similarity of positions t and t+1 with
# that of positions far apart (printed below), and look at the picture: on the right, any band along the
# diagonal means nearby positions look alike. The tiny model's random table has none: its similarities are
# about 0 everywhere except the diagonal itself.

# %%
n_show = min(config.n_positions, 256)
unit_pos = wpe[:n_show] / np.linalg.norm(wpe[:n_show], axis=1, keepdims=True)
position_similarity = unit_pos @ unit_pos.T  # [n_show, n_show]
neighbour = np.mean(np.sum(unit_pos[1:] * unit_pos[:-1], axis=1))
far = np.mean(np.sum(unit_pos[n_show // 2:] * unit_pos[:n_show - n_show // 2], axis=1))
print(f"mean cosine similarity of positions t and t+1: {neighbour:.3f}; of t and t+{n_show // 2}: {far:.3f}")

if plt:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    image = left.imshow(wpe[:n_show, :min(config.n_embd, 128)].T, aspect="auto", cmap="RdBu_r")
    left.set_xlabel("position"); left.set_ylabel("embedding dimension")
    left.set_title(f"wpe, first {min(config.n_embd, 128)} dimensions ({model.workshop_name})")
    fig.colorbar(image, ax=left)
    image = right.imshow(position_similarity, cmap="viridis", vmin=-1, vmax=1)
    right.set_xlabel("position"); right.set_ylabel("position")
    right.set_title("cosine similarity between position embeddings")
    fig.colorbar(image, ax=right)
    _workshop.show(fig, "02_position_embeddings")

# %% [markdown]
# ## Why GPT-2 pads on the right
#
# To run prompts of different lengths as one batch, the short ones are padded to the same length, and
# `attention_mask` (1 = real token, 0 = padding) keeps every real token from attending to the pads.
#
# With **right** padding the real tokens keep positions 0, 1, 2, ..., exactly as when the prompt runs
# alone. So their hidden states are the same as without padding:

# %%
short, long = tokenizer.encode("My dog"), tokenizer.encode("Hello, my dog is cute")
pad = tokenizer.eos_token_id  # GPT-2 has no pad token; any id works, because the mask hides it
n = len(short)
right_padded = np.array([short + [pad] * (len(long) - n), long])
right_mask = np.array([[1] * n + [0] * (len(long) - n), [1] * len(long)])

alone = model(np.array([short])).logits[0]  # [n, V]
batched = model(right_padded, attention_mask=right_mask).logits  # [2, T, V]
_workshop.check_close("right padding: short prompt == run alone", batched[0, :n], alone, atol=1e-4)

# %% [markdown]
# With **left** padding the same prompt sits at positions 3, 4, ... instead of 0, 1, ..., so it gets
# different position vectors and the model computes something else:

# %%
left_padded = np.array([[pad] * (len(long) - n) + short, long])
left_mask = np.array([[0] * (len(long) - n) + [1] * n, [1] * len(long)])
shifted = model(left_padded, attention_mask=left_mask).logits[0, -n:]
print(f"left padding, default positions: max |difference| from the prompt alone = {np.abs(shifted - alone).max():.2e}")
assert np.abs(shifted - alone).max() > 1e-4

# %% [markdown]
# Left padding is still what generation wants for a batch (every prompt's last token then lines up in the
# last column, where the next token is read). It works if the positions are given explicitly, counting only
# real tokens, which is how transformers' `generate()` builds `position_ids` from the mask (the value at a
# pad does not matter: no real token attends to it).

# %%
position_ids = np.maximum(np.cumsum(left_mask, axis=1) - 1, 0)  # pads get 0; real tokens 0, 1, 2, ...
print(position_ids)
fixed = model(left_padded, attention_mask=left_mask, position_ids=position_ids).logits[0, -n:]
_workshop.check_close("left padding + position_ids == run alone", fixed, alone, atol=1e-4)

# %% [markdown]
# ## What we built
#
# - `wte[ids] + wpe[arange(T)]` (+ `wte[token_type_ids]`) equals the model's traced `"embeddings"`.
# - Positions are absolute. Right padding leaves them alone; left padding needs `position_ids` that count
#   only the real tokens. The 1e-4 tolerance above is for float32 sums taken in a different order (a batch
#   of two rows instead of one); tutorial 05 and docs/numerics.md say more about tolerances.
#
# Next: `03_layer_norm_and_gelu`.
