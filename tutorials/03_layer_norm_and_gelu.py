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
# # 03 · Layer norm and `gelu_new`
#
# Two small functions appear in every GPT-2 block: **layer norm**, which rescales each token's vector
# before attention and before the MLP, and **`gelu_new`**, the non-linearity inside the MLP.
# We write both in NumPy, check them against minigpt2's own functions on the model's real activations,
# and then look at why GPT-2's `gelu_new` (a tanh formula) must not be swapped for the "exact" GELU.
#
# Run it as a script (`python tutorials/03_layer_norm_and_gelu.py`) or open the notebook beside it.
#
# **Exercises** (✎ 3.1, 3.2): in `03_layer_norm_and_gelu.ipynb` the key lines are blank (`...`); the check
# under each says whether your answer matches minigpt2 and, if not, how it differs. Solutions:
# `03_layer_norm_and_gelu_solution.ipynb` (and this `.py` file).

# %%
MODEL = "gpt2"  # the real 124M GPT-2 when available; otherwise the tiny random model (it says so)

import math

import numpy as np

import _workshop
import minigpt2
from minigpt2 import activations, layers

model = _workshop.load_model(MODEL)
config = model.config
plt = _workshop.pyplot()
tokenizer = _workshop.tokenizer()
print(f"this model: n_embd = {config.n_embd} features per token, n_layer = {config.n_layer} blocks, "
      f"layer_norm_epsilon = {config.layer_norm_epsilon}")

# %% [markdown]
# ## Real inputs to normalise
#
# `minigpt2.trace()` records every named intermediate tensor of a forward pass. The input of the first
# layer norm is `"embeddings"` (token + position embeddings); its output is `"h.0.ln_1"`.

# %%
ids = np.array([tokenizer.encode("The quick brown fox jumps over the lazy dog.")])
with minigpt2.trace() as t:
    model(ids)
print(t)  # every recorded name with its shape

x = t["embeddings"]  # [B, T, E]
print(f"the input of the first layer norm has shape {x.shape} ([batch, tokens, features]), dtype {x.dtype}")

# %% [markdown]
# ## Layer norm, step by step
#
# For each token separately (along the last axis, the E features):
#
# $$\mathrm{LN}(x) = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}} \cdot \gamma + \beta,
# \qquad \mu = \tfrac1E\sum_i x_i, \quad \sigma^2 = \tfrac1E\sum_i (x_i-\mu)^2$$
#
# Two details decide whether we match PyTorch to the last bits: the variance is the *biased* one
# (divide by E, not E − 1), and ε = 1e-5 sits *inside* the square root.
#
# **✎ Exercise 3.1 · layer norm.** Complete `my_layer_norm`: the per-token mean `mu` and biased variance `var`
# (both `[B, T, 1]`: `keepdims=True`), then `x_hat`, normalised to mean 0 and variance 1. The check compares
# the result with `minigpt2.layers.layer_norm` on the model's embeddings and on random numbers.

# %%
def my_layer_norm(x, gamma, beta, eps):
    # BLANK x_hat = ...  # exercise 3.1: your code here (mu, var, then x_hat)
    ### BEGIN SOLUTION 3.1
    mu = x.mean(axis=-1, keepdims=True)  # [B, T, 1]
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # [B, T, 1], divided by E (biased)
    x_hat = (x - mu) / np.sqrt(var + np.float32(eps))  # mean 0, variance 1 per token
    ### END SOLUTION 3.1
    return x_hat * gamma + beta  # [B, T, E]


ln_1 = model.params["h"][0]["ln_1"]  # {"weight": gamma [E], "bias": beta [E]}
eps = config.layer_norm_epsilon
wide = np.random.default_rng(0).normal(3.0, 2.0, (2, 5, config.n_embd)).astype(np.float32)
my_layer_norm = _workshop.check_function(
    "3.1", "layer norm", my_layer_norm, lambda x, gamma, beta, eps: layers.layer_norm(x, gamma, beta, eps=eps),
    {"the embeddings": (x, ln_1["weight"], ln_1["bias"], eps), "random numbers, mean 3, std 2": (wide, 1.0, 0.0, eps)})
ours = my_layer_norm(x, ln_1["weight"], ln_1["bias"], eps)
_workshop.check_close("my_layer_norm == traced h.0.ln_1", ours, t["h.0.ln_1"])

# %% [markdown]
# Before γ and β, every token vector has mean 0 and a standard deviation of almost exactly 1. "Almost":
# ε makes it $\sqrt{\sigma^2 / (\sigma^2 + \varepsilon)}$, which is visibly below 1 only when the vector
# is small (σ² not much larger than 1e-5), as for the tiny model's random embeddings.

# %%
x_hat = my_layer_norm(x, 1.0, 0.0, config.layer_norm_epsilon)
var = x.var(axis=-1)
print("standard deviation of each of the first 6 tokens, before:", np.round(np.sqrt(var[0, :6]), 4))
print("mean of each token after normalising:              ", np.round(x_hat[0].mean(axis=-1)[:6], 6))
print("standard deviation of each token after normalising:", np.round(x_hat[0].std(axis=-1)[:6], 4))
print("sqrt(var / (var + eps)), what ε predicts for it:   ", np.round(np.sqrt(var / (var + config.layer_norm_epsilon))[0, :6], 4))
assert np.allclose(x_hat.mean(axis=-1), 0, atol=1e-5)
assert np.allclose(x_hat.std(axis=-1), np.sqrt(var / (var + config.layer_norm_epsilon)), rtol=1e-4)

# %% [markdown]
# The biased variance matters. With the unbiased one (divide by E − 1) the result is off by a factor
# $\sqrt{(E-1)/E}$: 0.07% for E = 768, 0.8% for E = 64. Either is far larger than the 1e-5 within which
# minigpt2 agrees with transformers.

# %%
unbiased = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, ddof=1, keepdims=True) + 1e-5) * ln_1["weight"] + ln_1["bias"]
print(f"layer norm with the unbiased variance differs from GPT-2's by up to {np.abs(unbiased - ours).max():.2e}")
assert np.abs(unbiased - ours).max() > 1e-5, "the unbiased variance should be told apart at minigpt2's tolerance"

# %% [markdown]
# A picture of what the normalisation does: the distribution of one token's E features before layer norm,
# after normalising, and after the learned scale γ and shift β. (For the tiny random model γ = 1 and β = 0,
# so the last two panels coincide.)

# %%
if plt:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3), sharey=True)
    token = 3
    for ax, values, title in zip(axes, (x[0, token], x_hat[0, token], ours[0, token]),
                                 ("embeddings (input)", "normalised: mean 0, var 1", "× γ + β (= ln_1 output)")):
        ax.hist(values, bins=min(60, config.n_embd // 2), color="tab:blue")
        ax.set_title(f"{title}\nmean {values.mean():.3f}, std {values.std():.3f}", fontsize=9)
        ax.set_xlabel("feature value")
    axes[0].set_ylabel(f"number of features (of {config.n_embd})")
    fig.suptitle(f"Layer norm of token {token}, {tokenizer.decode([int(ids[0, token])])!r} "
                 f"({_workshop.model_label(model)})", y=1.08)
    _workshop.show(fig, "03_layer_norm_histograms")

# %% [markdown]
# ## `gelu_new`: GPT-2's GELU
#
# GELU is $x\,\Phi(x)$, where Φ is the normal CDF: the input times the probability that a standard normal
# variable is below it. OpenAI's GPT-2 code used a tanh approximation of Φ, and the weights were trained with
# it, so that approximation *is* the model's activation. Hugging Face calls it `gelu_new`:
#
# $$\mathrm{gelu\_new}(x) = \tfrac12 x\Bigl(1 + \tanh\bigl(\sqrt{2/\pi}\,(x + 0.044715\,x^3)\bigr)\Bigr)$$
#
# **✎ Exercise 3.2 · `gelu_new`.** Write the formula above in NumPy (`np.tanh`, `math.sqrt`, `math.pi`). The
# check compares it with `minigpt2.activations.gelu_new` on the MLP's real inputs and on a range of numbers.

# %%
def my_gelu_new(x):
    # BLANK return ...  # exercise 3.2: your code here
    ### BEGIN SOLUTION 3.2
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    ### END SOLUTION 3.2


h = t["h.0.ln_2"] @ model.params["h"][0]["mlp"]["c_fc"]["weight"] + model.params["h"][0]["mlp"]["c_fc"]["bias"]
print(f"the MLP's input to gelu_new has shape {h.shape} ([batch, tokens, 4 × n_embd])")
my_gelu_new = _workshop.check_function("3.2", "gelu_new", my_gelu_new, activations.gelu_new,
                                       {"the MLP's input": (h,), "x from -6 to 6": (np.linspace(-6, 6, 121, dtype=np.float32),)})

# %% [markdown]
# The exact GELU uses the error function: $x\,\Phi(x) = \tfrac12 x\,(1 + \mathrm{erf}(x/\sqrt2))$. NumPy has no
# `erf`, so we evaluate Python's `math.erf` element by element in float64 (slow, but exact to the last bit)
# and check minigpt2's vectorised `activations.gelu` against it.

# %%
xs = np.linspace(-5, 5, 2001, dtype=np.float32)
erf64 = np.vectorize(math.erf)(xs.astype(np.float64) / math.sqrt(2.0))
exact = (0.5 * xs * (1.0 + erf64)).astype(np.float32)
_workshop.check_close("exact gelu (math.erf) == activations.gelu", exact, activations.gelu(xs), atol=1e-6)

tanh_form = my_gelu_new(xs)
gap = np.abs(tanh_form - exact)
print(f"largest |gelu_new - gelu| on [-5, 5]: {gap.max():.2e} at x = {xs[gap.argmax()]:+.2f}")

# %% [markdown]
# The two curves are indistinguishable by eye, but their difference (printed above, a few times 1e-4 at
# its largest) is thousands of times the float32 rounding error of the values themselves:

# %%
if plt:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    left.plot(xs, exact, label="gelu (exact, erf)", lw=3, alpha=0.5)
    left.plot(xs, tanh_form, "--", label="gelu_new (tanh)", lw=1.5)
    left.plot(xs, np.maximum(xs, 0), ":", label="relu", color="gray")
    left.set_xlim(-4, 3); left.set_ylim(-0.5, 3)
    left.set_xlabel("x"); left.set_ylabel("activation(x)")
    left.set_title("GELU and its tanh approximation"); left.legend(); left.grid(alpha=0.3)
    right.plot(xs, tanh_form - exact, color="tab:red")
    right.set_xlabel("x"); right.set_ylabel("difference")
    right.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    right.set_title("gelu_new − gelu (exact)"); right.grid(alpha=0.3)
    right.axhline(0, color="black", lw=0.5)
    _workshop.show(fig, "03_gelu_new_vs_gelu")

# %% [markdown]
# ## Why the approximation must stay
#
# A gap of a few 1e-4 sounds harmless. Run the whole model with the exact GELU instead and compare the
# logits with the 1e-5 tolerance minigpt2 keeps against transformers. The change is above it even for
# the tiny random model, whose MLPs barely move the residual stream; a randomly initialised model of gpt2's
# size moved its logits by about 7e-4 when we tried, and trained weights, whose MLPs do more, should move
# further. Run it with the real gpt2 and see. (nanoGPT once swapped one for the other and got outputs
# "close but not the same".)
# So GPT-2 checkpoints carry `"activation_function": "gelu_new"` in their config, and the model must
# honour it.

# %%
logits_new = model(ids).logits
model.config.activation_function = "gelu"  # the exact GELU, just to see the difference
logits_exact = model(ids).logits
model.config.activation_function = "gelu_new"  # and back
change = np.abs(logits_exact - logits_new).max()
print(f"running the model with the exact GELU moves its logits by up to {change:.2e} "
      f"({_workshop.model_label(model)}; minigpt2's tolerance against transformers is 1e-5)")
assert change > 1e-5, "the exact GELU should give measurably different logits"
_workshop.check_close("restored model == first run", model(ids).logits, logits_new, rtol=0, atol=0)

# %% [markdown]
# ## What we built
#
# - `my_layer_norm`: mean and *biased* variance per token, ε inside the root, then γ and β. Equals
#   `minigpt2.layers.layer_norm` and the traced `h.0.ln_1`.
# - `my_gelu_new`: the tanh formula. Equals `minigpt2.activations.gelu_new`, and differs from the exact GELU
#   by a few 1e-4, enough to move the logits past the 1e-5 tolerance.
#
# Next: `04_attention`, masked multi-head attention.
