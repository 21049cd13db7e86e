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
#
# **Exercises** (✎ 2.1, 2.2): in `02_embeddings_and_positions.ipynb` the key lines are blank (`...`); the check
# under each says whether your answer matches minigpt2 and, if not, how it differs. Solutions:
# `02_embeddings_and_positions_solution.ipynb` (and this `.py` file).

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
print(f"wte (one row per token id) has shape {wte.shape}; wpe (one row per position) has shape {wpe.shape}")

# %% [markdown]
# ## Looking up token vectors
#
# An embedding lookup is row indexing: token id 3290 gets row 3290 of `wte`. It is the same as multiplying
# a one-hot vector by the table, which is why it is called a (linear) embedding *layer*; indexing just skips
# the multiplications by zero.

# %%
text = "Hello, my dog is cute"
ids = np.array([tokenizer.encode(text)])  # [B=1, T]
print(f"{text!r} is the ids {ids[0].tolist()}, tokens {tokenizer.convert_ids_to_tokens(ids[0].tolist())}")

token_vectors = wte[ids]  # [1, T, E]
one_hot = np.zeros((ids.shape[1], config.vocab_size), np.float32)
one_hot[np.arange(ids.shape[1]), ids[0]] = 1.0
_workshop.check_close("wte[ids] == one_hot @ wte", token_vectors[0], one_hot @ wte)

# %% [markdown]
# ## Adding positions
#
# Attention (tutorial 04) treats its inputs as a *set*: shuffle the tokens and, apart from the mask, it
# computes the same thing. The order reaches the model only through `wpe`: position t adds row t.
#
# **✎ Exercise 2.1 · the embeddings.** Write `my_embeddings`, shape `[1, T, E]`: each token's row of `wte` plus
# the row of `wpe` for its position 0, 1, ..., T − 1. The check compares it with the input of the first block,
# as `minigpt2.trace()` records it.

# %%
T = ids.shape[1]
with minigpt2.trace() as t:
    model(ids)

# BLANK my_embeddings = ...  # exercise 2.1: your code here
### BEGIN SOLUTION 2.1
position_ids = np.arange(T)[None, :]  # [1, T]: 0, 1, ..., T-1
my_embeddings = wte[ids] + wpe[position_ids]  # [1, T, E]
### END SOLUTION 2.1
my_embeddings = _workshop.check_answer("2.1", "token + position embeddings", my_embeddings, t["embeddings"])

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


print(f"the tokens nearest to ' dog' ({_workshop.model_label(model)}), with their cosine similarity:",
      nearest_tokens(" dog"))
_workshop.say_if_random(model, "these neighbours")

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
print(f"mean cosine similarity of the embeddings of positions t and t+1: {neighbour:.3f}; "
      f"of t and t+{n_show // 2}: {far:.3f} ({_workshop.model_label(model)})")
_workshop.say_if_random(model, "these similarities")

if plt:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    image = left.imshow(wpe[:n_show, :min(config.n_embd, 128)].T, aspect="auto", cmap="RdBu_r")
    left.set_xlabel("position (token index)"); left.set_ylabel("embedding dimension")
    left.set_title(f"wpe, first {min(config.n_embd, 128)} dimensions ({_workshop.model_label(model)})")
    fig.colorbar(image, ax=left, label="value of the embedding")
    image = right.imshow(position_similarity, cmap="viridis", vmin=-1, vmax=1)
    right.set_xlabel("position (token index)"); right.set_ylabel("position (token index)")
    right.set_title("cosine similarity between position embeddings")
    fig.colorbar(image, ax=right, label="cosine similarity")
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
# With **left** padding the same prompt (2 tokens, after 4 pads) sits at positions 4 and 5 instead of 0 and 1,
# so it gets different position vectors and the model computes something else:

# %%
left_padded = np.array([[pad] * (len(long) - n) + short, long])
left_mask = np.array([[0] * (len(long) - n) + [1] * n, [1] * len(long)])
print(f"left-padded, the short prompt's {n} tokens sit at positions {list(range(len(long) - n, len(long)))}")
shifted = model(left_padded, attention_mask=left_mask).logits[0, -n:]
print(f"left padding with the default positions changes the short prompt's logits by up to "
      f"{np.abs(shifted - alone).max():.2e} (against the prompt run alone): not the same computation")
assert np.abs(shifted - alone).max() > 1e-4

# %% [markdown]
# Left padding is still what generation wants for a batch (every prompt's last token then lines up in the
# last column, where the next token is read). It works if the positions are given explicitly, counting only
# real tokens, which is how transformers' `generate()` builds `position_ids` from the mask (the value at a
# pad does not matter: no real token attends to it).
#
# **✎ Exercise 2.2 · positions under left padding.** Write `my_position_ids(mask)`: for a `[B, T]` mask of 0s
# (pads) and 1s, the position of each real token counting only the real tokens of its row (0, 1, 2, ...); any
# value for a pad (0 is customary). Hint: `np.cumsum`. The check runs the left-padded batch with your
# positions and compares the short prompt's logits with the prompt run alone.

# %%
def my_position_ids(mask):
    # BLANK return ...  # exercise 2.2: your code here
    ### BEGIN SOLUTION 2.2
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)  # pads get 0; real tokens 0, 1, 2, ...
    ### END SOLUTION 2.2


def logits_with_my_positions(mask):  # the short prompt's logits in the left-padded batch
    return model(left_padded, attention_mask=mask, position_ids=my_position_ids(mask)).logits[0, -n:]


_workshop.check_function("2.2", "positions under left padding", logits_with_my_positions, lambda mask: alone,
                         {"the left-padded batch": (left_mask,)}, atol=1e-4)

# %% [markdown]
# ## What we built
#
# - `wte[ids] + wpe[arange(T)]` (+ `wte[token_type_ids]`) equals the model's traced `"embeddings"`.
# - Positions are absolute. Right padding leaves them alone; left padding needs `position_ids` that count
#   only the real tokens. The 1e-4 tolerance above is for float32 sums taken in a different order (a batch
#   of two rows instead of one); tutorial 05 and docs/numerics.md say more about tolerances.
#
# Next: `03_layer_norm_and_gelu`.
