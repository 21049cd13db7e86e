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
# # 05 · The MLP, the block, and the whole forward pass
#
# Tutorials 02-04 built the embeddings, layer norm, `gelu_new` and attention. Here we add the last piece,
# the MLP, assemble a transformer block, stack the blocks into GPT-2, and check our NumPy forward pass
# against minigpt2 tensor by tensor, from the embeddings to the logits. With the real gpt2 we also compare
# with the activations that Hugging Face's documentation prints for the same input.
#
# Everything below uses only NumPy and the model's parameter dict: `model.params["h"][i]["mlp"]["c_fc"]`
# is block i's first MLP weight, named exactly as in the checkpoint file.
#
# **Exercises** (✎ 5.1 to 5.3): in `05_mlp_block_forward.ipynb` the key lines are blank (`...`); the check
# under each says whether your answer matches minigpt2 and, if not, how it differs. Solutions:
# `05_mlp_block_forward_solution.ipynb` (and this `.py` file).

# %%
MODEL = "gpt2"  # the real 124M GPT-2 when available; otherwise the tiny random model (it says so)

import math

import numpy as np

import _workshop
import minigpt2
from minigpt2 import GPT2Model, layers

model = _workshop.load_model(MODEL)
config = model.config
params = model.params
plt = _workshop.pyplot()
tokenizer = _workshop.tokenizer()

text = "Hello, my dog is cute"
ids = np.array([tokenizer.encode(text)])
print(f"{text!r} is the ids {ids[0].tolist()}")

# %% [markdown]
# ## The pieces from the earlier tutorials, in a few lines each

# %%
def layer_norm(x, weight, bias, eps=config.layer_norm_epsilon):  # [..., E] -> [..., E]
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(eps)) * weight + bias


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def linear(x, weight, bias):  # [..., in] -> [..., out]; HF's Conv1D keeps the weight as [in, out]
    return x @ weight + bias


def softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(x, c_attn, c_proj, n_head=config.n_head):  # [B, T, E] -> [B, T, E], probs [B, H, T, T]
    B, T, E = x.shape
    D = E // n_head
    heads = lambda a: a.reshape(B, T, n_head, D).transpose(0, 2, 1, 3)  # [B, T, E] -> [B, H, T, D]
    q, k, v = (heads(a) for a in np.split(linear(x, **c_attn), 3, axis=-1))
    scores = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / math.sqrt(D))  # [B, H, T, T]
    scores = np.where(np.tril(np.ones((T, T), bool)), scores, np.finfo(np.float32).min)
    probs = softmax(scores)
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, E)
    return linear(out, **c_proj), probs

# %% [markdown]
# ## The MLP
#
# Position by position, the MLP widens each vector to 4E, applies `gelu_new`, and narrows it back. Attention
# moves information *between* tokens; the MLP transforms each token's vector *on its own*.
#
# **✎ Exercise 5.1 · the MLP.** Write `mlp(x, c_fc, c_proj)` with `linear` and `gelu_new` from above: widen
# with `c_fc` (each is a dict `{"weight", "bias"}`, so `linear(x, **c_fc)`), apply `gelu_new`, narrow with
# `c_proj`. The check compares it with block 0's MLP output as minigpt2 traced it.

# %%
def mlp(x, c_fc, c_proj):  # [B, T, E] -> [B, T, 4E] -> [B, T, E]
    # BLANK return ...  # exercise 5.1: your code here
    ### BEGIN SOLUTION 5.1
    return linear(gelu_new(linear(x, **c_fc)), **c_proj)
    ### END SOLUTION 5.1


with minigpt2.trace() as t:
    library_logits = model(ids).logits
print(f"c_fc's weight is {params['h'][0]['mlp']['c_fc']['weight'].shape} (E to 4E), "
      f"c_proj's {params['h'][0]['mlp']['c_proj']['weight'].shape} (4E back to E)")
mlp = _workshop.check_function("5.1", "the MLP", mlp, lambda x, c_fc, c_proj: layers.mlp(x, c_fc, c_proj, gelu_new),
                               {"block 0's input": (t["h.0.ln_2"], params["h"][0]["mlp"]["c_fc"],
                                                    params["h"][0]["mlp"]["c_proj"])})

# %% [markdown]
# ## The block
#
# GPT-2's block is *pre-norm*: each sub-layer sees a normalised copy of the running vector `x` (the
# **residual stream**) and *adds* its result back to it:
#
#     x = x + attention(layer_norm_1(x))
#     x = x + mlp(layer_norm_2(x))
#
# The stream itself is never normalised inside the blocks; only the final `ln_f` normalises it.
#
# **✎ Exercise 5.2 · the block.** Write the two residual lines of `block(x, p)` with `attention`, `mlp` and
# `layer_norm` (`p["ln_1"]`, `p["attn"]`, `p["ln_2"]`, `p["mlp"]` hold each part's parameters; `attention`
# returns the output and the probabilities).

# %%
def block(x, p):  # [B, T, E] -> [B, T, E]
    # BLANK x = ...  # exercise 5.2: your code here (two lines: attention, then the MLP)
    ### BEGIN SOLUTION 5.2
    a, probs = attention(layer_norm(x, **p["ln_1"]), **p["attn"])
    x = x + a
    x = x + mlp(layer_norm(x, **p["ln_2"]), **p["mlp"])
    ### END SOLUTION 5.2
    return x


block = _workshop.check_function("5.2", "the block", block, lambda x, p: t["h.0.out"],
                                 {"block 0 on the embeddings": (t["embeddings"], params["h"][0])}, rtol=1e-4, atol=1e-4)

# %% [markdown]
# ## The whole forward pass, checked tensor by tensor
#
# embeddings → n_layer blocks → `ln_f` → logits. The logits reuse the token table: `logits = h @ wteᵀ`
# (the LM head is *tied* to the embeddings, so the checkpoint stores it once). We keep every intermediate
# under the names minigpt2's trace uses and compare them all, printing the largest difference of each.
# Our functions do the same float32 operations in the same order as minigpt2's, so the differences are
# usually exactly zero; a different order of summation (another BLAS, the C kernels of tutorial 08) would
# leave differences at the level of float32 rounding, which the tolerance allows.

# %%
def gpt2_forward(ids, params):
    ours = {}
    B, T = ids.shape
    x = ours["embeddings"] = params["wte"]["weight"][ids] + params["wpe"]["weight"][np.arange(T)]
    for i, p in enumerate(params["h"]):
        h = ours[f"h.{i}.ln_1"] = layer_norm(x, **p["ln_1"])
        a, ours[f"h.{i}.attn_probs"] = attention(h, **p["attn"])
        ours[f"h.{i}.attn"] = a
        x = ours[f"h.{i}.resid_mid"] = x + a
        h = ours[f"h.{i}.ln_2"] = layer_norm(x, **p["ln_2"])
        m = ours[f"h.{i}.mlp"] = mlp(h, **p["mlp"])
        x = ours[f"h.{i}.out"] = x + m
    h = ours["ln_f"] = layer_norm(x, **params["ln_f"])
    logits = h @ params["wte"]["weight"].T  # [B, T, V]
    return logits, ours


logits, ours = gpt2_forward(ids, params)
assert list(ours) == list(t), "our names follow the trace's order"
for name in t:
    _workshop.check_close(name, ours[name], t[name], rtol=1e-4, atol=1e-4)
_workshop.check_close("logits", logits, library_logits, rtol=1e-4, atol=1e-4)

# %% [markdown]
# Why 1e-4 here and 1e-5 elsewhere? Each check compares two float32 computations that add the same numbers in
# a different order. Their difference is rounding noise that grows with the size of the values (the
# figure of residual-stream norms below shows how large they get) and with depth. docs/numerics.md gives the tolerances
# minigpt2 keeps against transformers and the reasons.
#
# ## Against the published numbers
#
# Hugging Face's GPT-2 documentation prints `GPT2Model.from_pretrained("openai-community/gpt2")` on
# "Hello, my dog is cute": the first three and last three values of each row of `last_hidden_state[0]`
# (shape 6 × 768), to about four significant digits. They are copied here; our NumPy forward must reproduce
# them. `last_hidden_state` is the output of `ln_f`, before the LM head. With another model (the tiny random
# one) ours are printed beside them, to see that they differ: they are what *those* weights compute.

# %%
PUBLISHED_IDS = [15496, 11, 616, 3290, 318, 13779]
PUBLISHED_COLUMNS = [0, 1, 2, 765, 766, 767]
PUBLISHED = np.array([
    [-9.3295e-06, -1.4021e-01, -2.0845e-01, -1.5329e-01, -6.7826e-02, -1.9630e-01],
    [4.1949e-01, 2.3525e-01, 3.4816e-01, 4.5321e-02, 1.5447e-01, 1.9546e-02],
    [-7.0056e-02, 2.6082e-01, -2.9146e-01, 9.0979e-02, 4.9659e-01, -4.1824e-01],
    [-1.9695e-01, -2.9247e-01, -1.4119e-01, -8.9255e-02, -2.2392e-01, 1.2212e-01],
    [-6.4193e-01, -1.0236e-01, -4.2129e-01, 6.8697e-02, -5.1117e-01, 5.0044e-01],
    [4.1290e-03, -3.1455e-02, -1.0823e+00, -5.0159e-02, -3.0878e-02, 4.3480e-01],
], dtype=np.float32)

assert ids[0].tolist() == PUBLISHED_IDS, "the tokenizer gives the documented ids"
hidden = ours["ln_f"][0][:, [0, 1, 2, -3, -2, -1]]  # [6, 6]: the first three and last three columns
print(f"last_hidden_state[0], the first three and last three columns: published for gpt2 | ours "
      f"({_workshop.model_label(model)}, {config.n_embd} columns)")
for token, published_row, our_row in zip(tokenizer.convert_ids_to_tokens(PUBLISHED_IDS), PUBLISHED, hidden):
    print(f"  {token:>6} " + " ".join(f"{v:+.4f}" for v in published_row) + "  |  "
          + " ".join(f"{v:+.4f}" for v in our_row))
if _workshop.is_published_gpt2(model):
    # Four significant digits: a relative error below 5e-4, with an absolute floor for the tiny first value.
    _workshop.check_close("our last_hidden_state == HF's documentation", hidden, PUBLISHED, rtol=5e-4, atol=1e-5)
    _workshop.check_close("GPT2Model(ids).last_hidden_state == documentation",
                          GPT2Model(config, params)(ids).last_hidden_state[0][:, PUBLISHED_COLUMNS], PUBLISHED,
                          rtol=5e-4, atol=1e-5)
else:
    this = (_workshop.model_label(model) if not _workshop.is_real(model) else
            f"{_workshop.model_label(model)} with {config.n_layer} layers of {config.n_embd} dimensions")
    print(f"not compared: the published values belong to the real 124M gpt2 checkpoint (12 layers of 768 "
          f"dimensions), and this run uses the {this}, so ours differ. Rerun with the real gpt2 (internet access, "
          f"or its weights in the HF cache) and the two columns agree to the 4 digits printed.")

# %% [markdown]
# ## The next token, and the loss
#
# The logits of the last position score every vocabulary entry as the next token. Softmax makes them
# probabilities. Training minimised the cross-entropy: the mean over positions t of
# $-\log p(\text{token}_{t+1} \mid \text{tokens}_{\le t})$. `labels=ids` asks the model for the same number.

# %%
probs = softmax(logits[0, -1])
top = np.argsort(-probs)[:5]
print(f"after {text!r}, the most likely next tokens ({_workshop.model_label(model)}):")
for i in top:
    print(f"  {tokenizer.decode([i])!r:>14}  p = {probs[i]:.3g}")
_workshop.say_if_random(model, "these next tokens")

# %% [markdown]
# **✎ Exercise 5.3 · the loss.** `log_probs[t, v]` is log p(token v at position t + 1 | tokens up to t). Write
# `my_loss`: minus the mean, over positions t = 0 .. T − 2, of the log-probability of the token that actually
# came next, `ids[0, t + 1]`. (Fancy indexing: `log_probs[np.arange(T - 1), ids[0, 1:]]`.)

# %%
T = ids.shape[1]
log_probs = logits[0] - logits[0].max(-1, keepdims=True)
log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))  # log softmax, [T, V]
# BLANK my_loss = ...  # exercise 5.3: your code here
### BEGIN SOLUTION 5.3
my_loss = -np.mean(log_probs[np.arange(T - 1), ids[0, 1:]])
### END SOLUTION 5.3
my_loss = _workshop.check_answer("5.3", "the cross-entropy loss", my_loss, model(ids, labels=ids).loss,
                                 rtol=1e-4, atol=1e-4)
print(f"loss {float(my_loss):.3f} nats per token ({_workshop.model_label(model)}); a uniform guess over the "
      f"vocabulary would give {math.log(config.vocab_size):.3f}")
_workshop.say_if_random(model, "this loss (near the uniform guess)")

# %% [markdown]
# ## A logit lens: what each layer would predict
#
# The residual stream after block i has the same shape as the final one, so we can apply `ln_f` and the LM
# head to it early and ask which token it would predict. `trace.stack("out")` gives every block's output at
# once, `[n_layer, B, T, E]`. With the real gpt2, watch at which layer each position's guess settles on the
# final prediction; with the tiny random model the guesses are noise.

# %%
stream = t.stack("out")[:, 0]  # [L, T, E]
lens_logits = layer_norm(stream, **params["ln_f"]) @ params["wte"]["weight"].T  # [L, T, V]
lens_probs = softmax(lens_logits)
final_choice = lens_logits[-1].argmax(-1)  # [T]: the model's own prediction at each position
_workshop.check_close("lens at the last layer == the model's logits", lens_logits[-1], library_logits[0],
                      rtol=1e-4, atol=1e-4)

tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
print(f"the token each layer would predict next, at each position ({_workshop.model_label(model)}):")
for layer in range(config.n_layer):
    guesses = [tokenizer.decode([i]) for i in lens_logits[layer].argmax(-1)]
    print(f"  after block {layer:>2}: " + " | ".join(f"{g!r:>9}" for g in guesses))
_workshop.say_if_random(model, "these guesses")

if plt:
    p_final = lens_probs[:, np.arange(len(tokens)), final_choice]  # [L, T]: p(final choice) at each layer
    fig, ax = plt.subplots(figsize=(8, 0.35 * config.n_layer + 2.5))
    # A fixed 0..1 scale: with random weights every probability is ~1e-5 and the picture is honestly dark.
    image = ax.imshow(p_final, aspect="auto", cmap="magma", vmin=0, vmax=1)
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels([f"{a}\n→{tokenizer.decode([b])!r}" for a, b in zip(tokens, final_choice)], fontsize=8)
    ax.set_yticks(range(config.n_layer))
    ax.set_xlabel("position: input token → the model's final prediction")
    ax.set_ylabel("after block")
    ax.set_title(f"logit lens: probability of the final prediction, layer by layer\n({_workshop.model_label(model)})")
    fig.colorbar(image, ax=ax, label="probability")
    for (layer, position), value in np.ndenumerate(p_final):  # the numbers too: random weights give ~1e-5
        ax.text(position, layer, f"{value:.2g}", ha="center", va="center", fontsize=7,
                color="white" if value < 0.5 else "black")
    _workshop.show(fig, "05_logit_lens")

    norms = np.linalg.norm(np.concatenate([t["embeddings"][None, 0], stream]), axis=-1)  # [L + 1, T]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for j, token in enumerate(tokens):
        ax.plot(norms[:, j], marker="o", label=token)
    ax.set_xticks(range(config.n_layer + 1))
    ax.set_xticklabels(["emb"] + [str(i) for i in range(config.n_layer)])
    ax.set_xlabel("residual stream after: the embeddings (emb), then block 0, 1, ...")
    ax.set_ylabel("Euclidean norm |x| of the token's vector")
    ax.set_ylim(bottom=0); ax.grid(alpha=0.3)
    ax.set_title(f"size of the residual stream through the blocks ({_workshop.model_label(model)})")
    ax.legend(fontsize=7, title="token", title_fontsize=7)
    _workshop.show(fig, "05_residual_norms")

# %% [markdown]
# ## What we built
#
# GPT-2 in about forty lines of NumPy: `gpt2_forward` reproduces every tensor minigpt2 traces and the logits,
# and with the real weights the numbers Hugging Face publishes. Next: `06_kv_cache`, why generation does not
# rerun all of this for every new token.
