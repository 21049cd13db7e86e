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
# # 07 · Decoding: from logits to text
#
# The model gives a score (a logit) for every one of the 50,257 tokens. *Decoding* is the rule that turns
# those scores into the next token: take the best one (**greedy**), or reshape the distribution
# (**temperature**, **top-k**, **top-p**) and draw from it (**sampling**), or keep several candidate
# continuations alive at once (**beam search**).
#
# Each rule is written here in a few lines of NumPy and checked against `model.generate()`, which implements
# the same rules with Hugging Face's arguments and defaults.
#
# **Exercises** (✎ 7.1 to 7.3): in `07_decoding.ipynb` the key lines are blank (`...`); the check under each
# says whether your answer matches minigpt2 and, if not, how it differs. Solutions: `07_decoding_solution.ipynb`
# (and this `.py` file).

# %%
MODEL = "gpt2"  # the real 124M GPT-2 when available; otherwise the tiny random model (it says so)

import numpy as np

import _workshop
from minigpt2 import generation

model = _workshop.load_model(MODEL)
plt = _workshop.pyplot()
tokenizer = _workshop.tokenizer()

prompt_text = "The best thing about living by the sea is"
prompt = np.array([tokenizer.encode(prompt_text)])
N = 12  # new tokens per run

logits = model(prompt).logits[0, -1]  # [V]: scores for the token after the prompt


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def show_top(probs, k=8, label=""):
    top = np.argsort(-probs)[:k]
    print(label + ", ".join(f"{tokenizer.decode([i])!r} {probs[i]:.3g}" for i in top))


show_top(softmax(logits), label=f"the 8 likeliest next tokens after {prompt_text!r} ({_workshop.model_label(model)}): ")
_workshop.say_if_random(model, "the tokens, texts and probabilities of this tutorial")

# %% [markdown]
# ## Greedy
#
# Take the most likely token, append it, repeat. With the KV cache (tutorial 06) each step feeds one token.

# %%
def my_greedy(ids, n):
    out = model(ids, use_cache=True)
    for _ in range(n):
        next_id = out.logits[:, -1].argmax(-1)[:, None]  # [B, 1]
        ids = np.concatenate([ids, next_id], axis=1)
        out = model(next_id, past_key_values=out.past_key_values, use_cache=True)
    return ids


ours = my_greedy(prompt, N)
library = model.generate(prompt, do_sample=False, max_new_tokens=N, eos_token_id=None)
assert np.array_equal(ours, library), "greedy decoding must match generate()"
print(f"greedy continuation ({_workshop.model_label(model)}): {tokenizer.decode(ours[0, prompt.shape[1]:])!r}")

# %% [markdown]
# Greedy text is often dull or repetitive: the most likely token at every step does not make the most likely
# (let alone the most interesting) sentence. Sampling draws from the distribution instead, after reshaping it.
#
# ## Temperature
#
# Divide the logits by T before softmax. T < 1 sharpens the distribution (towards greedy), T > 1 flattens it
# (towards uniform). Entropy, in bits, measures how spread out it is.

# %%
def my_temperature(scores, t):
    return scores / np.float32(t)


def entropy_bits(p):
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


scores = logits[None, :]  # processors work on [batch, V]
for t in [0.5, 1.0, 2.0]:
    _workshop.check_close(f"temperature {t}", my_temperature(scores, t),
                          generation.TemperatureLogitsWarper(t)(prompt, scores))
    print(f"  at temperature {t} the next-token distribution has an entropy of "
          f"{entropy_bits(softmax(my_temperature(logits, t))):.2f} bits")

# %% [markdown]
# ## Top-k
#
# Keep the k highest scores and set the others to −inf, so softmax gives them probability 0.
#
# **✎ Exercise 7.1 · top-k.** Complete `my_top_k(scores, k)` for `scores` of shape `[batch, V]`: find each
# row's k-th highest score `kth` (shape `[batch, 1]`; `np.sort` sorts ascending), then return the scores with
# every score below it replaced by `-np.inf`.

# %%
def my_top_k(scores, k):
    # BLANK return ...  # exercise 7.1: your code here
    ### BEGIN SOLUTION 7.1
    kth = np.sort(scores, axis=-1)[:, -k][:, None]  # the k-th highest score of each row
    return np.where(scores < kth, -np.inf, scores)
    ### END SOLUTION 7.1


my_top_k = _workshop.check_function("7.1", "top-k", my_top_k, lambda s, k: generation.TopKLogitsWarper(k)(prompt, s),
                                    {f"k = {k}": (scores, k) for k in (1, 10, 50)})

# %% [markdown]
# ## Top-p (nucleus)
#
# Keep the smallest set of most likely tokens whose probabilities add up to at least p. Unlike top-k, the
# number kept adapts: few tokens when the model is sure, many when it is not. In code: sort descending;
# a token stays if the probability of the tokens ranked *above* it is still below p.
#
# **✎ Exercise 7.2 · top-p.** In `my_top_p`, `probs` are the probabilities sorted from the most likely down.
# Write `keep_sorted`, booleans in the same sorted order: True for a token when the total probability of the
# tokens ranked *above* it is still below p (so the most likely token is always kept). Hint: `np.cumsum`.

# %%
def my_top_p(scores, p):
    order = np.argsort(-scores, axis=-1)  # most likely first
    probs = softmax(np.take_along_axis(scores, order, axis=-1).astype(np.float64))  # (why float64: below)
    # BLANK keep_sorted = ...  # exercise 7.2: your code here
    ### BEGIN SOLUTION 7.2
    mass_before = np.cumsum(probs, axis=-1) - probs  # the probability of everything ranked above
    keep_sorted = mass_before < p
    ### END SOLUTION 7.2
    keep = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(keep, order, np.asarray(keep_sorted, dtype=bool), axis=-1)  # back to vocabulary order
    return np.where(keep, scores, -np.inf)


# (The library adds the probabilities up from the least likely token, as transformers does; you add them from the
# most likely. In float32, over 50257 tokens, the two running totals differ by rounding, enough to move the cut by
# a token when the probabilities are nearly flat; in float64 they agree to ~1e-12, so both are checked in float64.)
my_top_p = _workshop.check_function("7.2", "top-p", my_top_p,
                                    lambda s, p: generation.TopPLogitsWarper(p)(prompt, s.astype(np.float64)),
                                    {f"p = {p}": (scores, p) for p in (0.5, 0.9, 0.99)})
for p in [0.5, 0.9]:
    print(f"  top-p {p} keeps the {np.isfinite(my_top_p(scores, p)).sum()} likeliest tokens")

# %% [markdown]
# The three knobs on the same next-token distribution (the 30 most likely tokens; a log scale, so that both
# the model's own probabilities and the renormalised ones are visible):

# %%
if plt:
    order = np.argsort(-logits)[:30]
    labels = [tokenizer.decode([i]) for i in order]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=False)
    for t in [0.5, 1.0, 2.0]:
        axes[0].plot(softmax(my_temperature(logits, t))[order], marker=".", label=f"T = {t}")
    axes[0].set_title("temperature"); axes[0].legend()
    base = softmax(logits)[order]
    for ax, (name, warped) in zip(axes[1:], [("top-k, k = 10", my_top_k(scores, 10)[0]),
                                             ("top-p, p = 0.9", my_top_p(scores, 0.9)[0])]):
        kept = np.isfinite(warped[order])
        ax.bar(range(30), base, color=np.where(kept, "tab:blue", "lightgray"), label="before")
        after = softmax(warped)[order]
        ax.plot(np.flatnonzero(kept), after[kept], "o", color="tab:red", ms=4, label="after (renormalised)")
        ax.set_title(f"{name}: {np.isfinite(warped).sum()} tokens kept"); ax.legend()
    for ax in axes:
        ax.set_xticks(range(30)); ax.set_xticklabels(labels, rotation=90, fontsize=7)
        ax.set_xlabel("the 30 likeliest next tokens, most likely first")
        ax.set_ylabel("probability (log scale)"); ax.set_yscale("log")
    fig.suptitle(f"next token after {prompt_text!r} ({_workshop.model_label(model)})", y=1.02)
    _workshop.show(fig, "07_temperature_top_k_top_p")

# %% [markdown]
# ## Sampling
#
# Draw a token with those probabilities. The inverse-CDF method: lay the probabilities end to end on [0, 1),
# throw a uniform random number u, and take the token whose interval it lands in. minigpt2 draws the same way
# with NumPy's generator, so with the same seed our loop reproduces `generate(do_sample=True, seed=...)` token
# for token (the draws differ from transformers', which uses torch's generator).
#
# **✎ Exercise 7.3 · inverse-CDF sampling.** `cdf` is the running sum of each row's probabilities and `u` one
# uniform number per row below its total. Return, per row, the index of the interval `u` lands in: the number
# of cdf values that are `<= u`. The check compares your draws with minigpt2's `generation.sample` for the
# same random generator; then a whole sampling loop with your `my_sample` must give the tokens of
# `generate(do_sample=True, seed=...)`.

# %%
def my_sample(probs, rng):  # [B, V] -> [B]
    cdf = np.cumsum(probs, axis=-1, dtype=np.float64)
    u = rng.random((len(probs), 1)) * cdf[:, -1:]
    # BLANK return ...  # exercise 7.3: your code here
    ### BEGIN SOLUTION 7.3
    return (cdf <= u).sum(axis=-1)  # the number of intervals entirely below u = the index of u's interval
    ### END SOLUTION 7.3


top_k_probs = softmax(my_top_k(scores, 10))  # [1, V], 10 tokens possible
my_sample = _workshop.check_function(
    "7.3", "inverse-CDF sampling", my_sample, generation.sample,
    {**{f"top-10 probabilities, seed {seed}": (lambda seed=seed: (top_k_probs, np.random.default_rng(seed)))
        for seed in (0, 1, 2)},
     "all 50,257 probabilities, 3 rows": lambda: (softmax(np.repeat(scores, 3, axis=0)), np.random.default_rng(7))})


def my_generate_sample(ids, n, temperature, top_k, top_p, seed):
    rng = np.random.default_rng(seed)
    out = model(ids, use_cache=True)
    for _ in range(n):
        s = my_top_p(my_top_k(my_temperature(out.logits[:, -1], temperature), top_k), top_p)  # HF's order
        next_id = my_sample(softmax(s), rng)[:, None]
        ids = np.concatenate([ids, next_id], axis=1)
        out = model(next_id, past_key_values=out.past_key_values, use_cache=True)
    return ids


settings = dict(temperature=0.8, top_k=50, top_p=0.9)


print(f"sampled continuations ({_workshop.model_label(model)}, {settings}):")
for seed in [0, 1, 2]:
    ours = my_generate_sample(prompt, N, seed=seed, **settings)
    library = model.generate(prompt, do_sample=True, max_new_tokens=N, seed=seed, eos_token_id=None, **settings)
    assert np.array_equal(ours, library), f"seed {seed}: our sampling loop differs from generate()"
    print(f"  seed {seed}: {tokenizer.decode(ours[0, prompt.shape[1]:])!r} (the same tokens as generate())")

# %% [markdown]
# Is `my_sample` really drawing with the right probabilities? Draw 20,000 next tokens and compare how often
# each appears with its probability:

# %%
probs = top_k_probs
rng = np.random.default_rng(0)
top10 = np.argsort(-probs[0])[:10]
# 20,000 rows, one draw each; only the 10 possible tokens' columns (20,000 full rows of 50,257 float32 probabilities
# would take 4 GB, and a cumulative sum of them as much again or more)
draws = top10[my_sample(np.repeat(probs[:, top10], 20000, axis=0), rng)]
frequency = np.array([(draws == i).mean() for i in top10])
print(f"in 20,000 draws, each token's frequency is within {np.abs(frequency - probs[0, top10]).max():.4f} of its "
      f"probability")
assert np.abs(frequency - probs[0, top10]).max() < 0.02 and set(draws) <= set(top10)

if plt:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(10)
    ax.bar(x - 0.2, probs[0, top10], width=0.4, label="probability (top-k 10)")
    ax.bar(x + 0.2, frequency, width=0.4, label="frequency in 20,000 draws")
    ax.set_xticks(x); ax.set_xticklabels([repr(tokenizer.decode([i])) for i in top10], rotation=45, ha="right")
    ax.set_xlabel("the 10 tokens top-k keeps"); ax.set_ylabel("probability / frequency")
    ax.legend(); ax.set_title(f"inverse-CDF sampling draws each token as often as its probability says\n"
                              f"({_workshop.model_label(model)})", fontsize=10)
    _workshop.show(fig, "07_sampling_frequencies")

# %% [markdown]
# ## Beam search
#
# Greedy commits to one token per step. Beam search keeps the K best partial sequences (by total
# log-probability); at each step it extends every beam by every token and keeps the K best of all those
# candidates. With no end-of-sequence token in play and the same length for all beams, this is all there is
# to it; `generate(num_beams=K)` adds the bookkeeping for sequences that end early and a length penalty.

# %%
def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def my_beam_search(ids, n, K):
    out = model(ids, use_cache=True)
    beams = ids  # [1, T]
    totals = np.zeros(1, np.float32)  # summed log-probability per beam
    past = out.past_key_values
    logp = log_softmax(out.logits[:, -1])  # [beams, V]
    for step in range(n):
        candidates = (totals[:, None] + logp).reshape(-1)  # [beams * V]
        best = np.argsort(-candidates, kind="stable")[:K]  # the K best (beam, token) pairs
        beam, token = np.divmod(best, logp.shape[-1])
        beams = np.concatenate([beams[beam], token[:, None]], axis=1)
        totals = candidates[best]
        if step == n - 1:
            break
        out = model(token[:, None], past_key_values=past.reorder(beam), use_cache=True)  # caches follow their beams
        past, logp = out.past_key_values, log_softmax(out.logits[:, -1])
    return beams, totals


K = 4
beams, totals = my_beam_search(prompt, N, K)
library = model.generate(prompt, num_beams=K, num_return_sequences=K, max_new_tokens=N, eos_token_id=None,
                         do_sample=False, return_dict_in_generate=True, output_scores=True)
assert np.array_equal(beams, library.sequences), "our beams (best first) must equal generate()'s"
_workshop.check_close("beam scores = total log-prob / length", totals / N, library.sequences_scores, rtol=1e-4)
print(f"the {K} beams, best first, with the log-probability of their {N} new tokens "
      f"({_workshop.model_label(model)}):")
for b, total in zip(beams, totals):
    print(f"  log p = {total:7.2f}  {tokenizer.decode(b[prompt.shape[1]:])!r}")

greedy_ids = my_greedy(prompt, N)
greedy_logp = model(greedy_ids).logits[0, prompt.shape[1] - 1:-1]  # the logits that chose each new token
greedy_total = float(np.sum(log_softmax(greedy_logp)[np.arange(N), greedy_ids[0, prompt.shape[1]:]]))
print(f"greedy, for comparison:\n  log p = {greedy_total:7.2f}  {tokenizer.decode(greedy_ids[0, prompt.shape[1]:])!r}")
_workshop.say_if_random(model, "these continuations and log-probabilities")

if plt:
    fig, ax = plt.subplots(figsize=(7, 3))
    names = ["greedy"] + [f"beam {i}" for i in range(K)]
    values = [greedy_total] + list(totals)
    ax.barh(names[::-1], values[::-1], color=["tab:gray"] * K + ["tab:orange"])
    ax.set_xlabel(f"log-probability of the {N} new tokens, in nats (higher is more likely)")
    ax.set_title(f"beam search, K = {K}, against greedy ({_workshop.model_label(model)})")
    _workshop.show(fig, "07_beam_vs_greedy")

# %% [markdown]
# Beam search usually finds a more likely sequence than greedy (compare the log-probabilities above), though
# that is not guaranteed; "more likely" is also not "better": for open-ended text, beams tend to be bland
# and repetitive, which is why chat and story generation sample instead.
#
# ## What we built
#
# Greedy, temperature, top-k, top-p, inverse-CDF sampling and beam search, each a few lines of NumPy, each
# equal to minigpt2's `generate()`: same tokens for greedy and beams, the same draws for the same seed.
# Next: `08_c_kernels`, where the time goes and how the C core makes it shorter.
