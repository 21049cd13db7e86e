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
# # 10 · Training
#
# So far the weights were given. Here we find out where they come from: the **backward pass** turns the
# loss into a gradient for every weight, and an **optimizer** moves each weight a little against its
# gradient. We derive the backward of each layer, check every formula against finite differences, and
# then train a small GPT-2 from scratch on a text every Python installation carries: the docstrings of
# its own standard library. In under a minute on a laptop the model goes from noise to English-shaped text.
#
# Everything is plain NumPy: `minigpt2/backward.py` holds one backward function per layer, and
# `minigpt2/training/` the loop. The tests check every gradient against PyTorch's autograd.

# %%
MODEL = "gpt2"  # only for the comparison at the end: the real GPT-2 when available, else the tiny random one

import ast
import glob
import os
import tempfile
import time

import numpy as np

import _workshop
import minigpt2
from minigpt2 import backward as bw
from minigpt2 import layers
from minigpt2.activations import gelu_new
from minigpt2.training import Trainer, TrainingArguments, prepare_tokens

plt = _workshop.pyplot()
tokenizer = _workshop.tokenizer()
TRAIN_SECONDS = _workshop.seconds_setting("MINIGPT2_TRAIN_SECONDS", 50)  # the training budget below

# %% [markdown]
# ## Checking a gradient: finite differences
#
# Every backward function takes `dy`, the gradient of the loss with respect to the layer's output, and
# returns the gradient with respect to its inputs. To check one, pick a random `R` and the scalar
# loss `L = sum(f(x) * R)`: then `dL/dy = R`, and the backward fed `R` must give `dL/dx`. The numerical
# answer is the central difference `(L(x + h) - L(x - h)) / 2h`, one coordinate at a time. In float64
# with `h = 1e-6` it is good to about 1e-9, so a right formula agrees to ~1e-8 and a wrong one is off by
# far more.

# %%
rng = np.random.default_rng(0)


def numerical_grad(loss, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = loss()
        x[i] = old - h
        down = loss()
        x[i] = old
        g[i] = (up - down) / (2 * h)
    return g


def check(name, analytic, x, loss):
    diff = np.abs(analytic - numerical_grad(loss, x)).max()
    print(f"{name:28s} max |analytic - numerical| = {diff:.1e}")
    assert diff < 1e-6, name


# %% [markdown]
# ## Linear: `y = x W + b`
#
# Each `y_j = sum_i x_i W_ij + b_j`. So `dL/dx_i = sum_j dy_j W_ij` (that is `dy Wᵀ`), `W_ij` collects
# `x_i dy_j` over every row (`xᵀ dy`), and `b_j` the sum of `dy_j` over the rows.

# %%
x, W, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
R = rng.standard_normal((2, 3, 5))
loss = lambda: float((layers.linear.reference(x, W, b) * R).sum())  # noqa: E731
dx, dW, db = bw.linear_backward(R, x, W)
check("linear: x", dx, x, loss)
check("linear: W", dW, W, loss)
check("linear: b", db, b, loss)

# %% [markdown]
# ## Layer norm
#
# `y = xhat * w + b` with `xhat = (x - mean) * r` and `r = 1 / sqrt(var + eps)`. Let `g = dy * w`, the
# gradient reaching `xhat`. Moving one `x_i` moves `xhat_i` directly (by `r`), and every `xhat_j` through
# the mean (by `-r/E`) and through the variance (by `-r xhat_i xhat_j / E`). Summing the three:
#
# `dx = r (g - mean(g) - xhat * mean(g * xhat))`

# %%
x, w, b = rng.standard_normal((3, 6)) * 2 + 1, 1 + 0.3 * rng.standard_normal(6), rng.standard_normal(6)
R = rng.standard_normal((3, 6))
loss = lambda: float((layers.layer_norm.reference(x, w, b) * R).sum())  # noqa: E731
dx, dw, db = bw.layer_norm_backward(R, x, w)
check("layer norm: x", dx, x, loss)
check("layer norm: weight", dw, w, loss)
check("layer norm: bias", db, b, loss)

# %% [markdown]
# ## `gelu_new`
#
# `y = 0.5 x (1 + tanh u)` with `u = c (x + 0.044715 x³)`, `c = sqrt(2/π)`. The product rule and
# `tanh' = 1 - tanh²` give `dy/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh² u) c (1 + 3·0.044715 x²)`.

# %%
x = rng.standard_normal((4, 5)) * 2
R = rng.standard_normal((4, 5))
loss = lambda: float((gelu_new.reference(x) * R).sum())  # noqa: E731
check("gelu_new", bw.gelu_new_backward(R, x), x, loss)

# %% [markdown]
# ## Attention: softmax and two matrix products
#
# `out = P v` with `P = softmax(S)` and `S = q kᵀ · scale` (future keys masked). The products give
# `dv = Pᵀ dout` and `dP = dout vᵀ`. Softmax couples a row: `dP_j/dS_i = P_j (1[i=j] - P_i)`, so
# `dS = P * (dP - sum(dP * P))` along the row. The causal mask *replaced* the future scores by a
# constant, so their gradient is zero; then `dq = dS k · scale` and `dk = dSᵀ q · scale`.

# %%
B, H, T, D = 1, 2, 4, 3
q, k, v = (rng.standard_normal((B, H, T, D)) for _ in range(3))
R = rng.standard_normal((B, H, T, D))
scale = 1 / np.sqrt(D)


def attention_out():
    out = layers.attention.reference(q, k, v, scale=scale, causal=True)
    return out[0] if isinstance(out, tuple) else out


scores = np.where(layers.causal_mask(T, T), q @ k.swapaxes(-1, -2) * scale, layers.MASK_VALUE)
P = layers.softmax(scores)
dq, dk, dv = bw.attention_backward(R, q, k, v, P, scale=scale, causal=True)
loss = lambda: float((attention_out() * R).sum())  # noqa: E731
check("attention: q", dq, q, loss)
check("attention: k", dk, k, loss)
check("attention: v", dv, v, loss)

# %% [markdown]
# ## The tied head and the cross-entropy
#
# `logits = h wteᵀ` (the head *is* the token table) and `loss = mean(-log softmax(logits)[label])` over
# the labels that are not -100. `d(-log softmax_y)/dlogits = softmax - onehot(y)`, divided by the number
# of counted labels. `wte` gets gradient twice: here (`dlogitsᵀ h`) and from the embedding lookup at the
# input (each row gets the sum of the gradients of the positions that used it).

# %%
h, wte = rng.standard_normal((5, 3)), rng.standard_normal((7, 3))
labels = np.array([1, -100, 6, 0, -100])


def ce():
    logp = layers.log_softmax(h @ wte.T)
    keep = labels != -100
    return float(-logp[keep, labels[keep]].mean())


loss_sum, dlogits = bw.cross_entropy_backward(h @ wte.T, labels, n_counted=3)
dh, dwte = bw.lm_head_backward(dlogits, h, wte)
check("head + cross-entropy: h", dh, h, ce)
check("head + cross-entropy: wte", dwte, wte, ce)

# %% [markdown]
# ## The whole model: `loss_and_grad`
#
# `model.loss_and_grad(ids)` runs the forward pass keeping what the backward needs, then calls these
# functions in reverse order (`minigpt2/training/grad.py`, ~250 lines). The result is a dict keyed exactly
# like `model.state_dict()`. Spot-check a few coordinates of a tiny model against finite differences of
# its own loss (float32 here, so a bigger step and a looser bound: ~1e-3 relative).

# %%
tiny = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2,
                                                    n_head=2), seed=0)
ids = rng.integers(0, 50, (2, 8))
loss0, grads = tiny.loss_and_grad(ids)
print(f"loss {loss0:.4f}; {len(grads)} gradients, e.g. {list(grads)[:3]}")
for name in ("transformer.h.1.mlp.c_fc.weight", "transformer.h.0.attn.c_attn.weight", "transformer.wte.weight"):
    array = tiny.state_dict()[name]
    i = np.unravel_index(np.abs(grads[name]).argmax(), array.shape)  # the largest entry of each
    old, step = array[i], np.float32(1e-2)
    array[i] = old + step
    up = float(tiny(ids, labels=ids).loss)
    array[i] = old - step
    down = float(tiny(ids, labels=ids).loss)
    array[i] = old
    numeric = (up - down) / (2 * step)
    print(f"{name:36s} {i}: analytic {grads[name][i]:+.5f}, numerical {numeric:+.5f}")
    assert abs(numeric - grads[name][i]) <= 1e-3 * abs(grads[name][i]) + 2e-4

# %% [markdown]
# ## A corpus every machine has
#
# No download: the docstrings of the Python standard library on this machine (the `*.py` files beside
# `os.py`), about a megabyte of English written by Python's developers, under the PSF License
# (https://docs.python.org/3/license.html). `prepare_tokens` encodes the text once with GPT-2's
# tokenizer into a memory-mapped file of uint16 ids (`train.bin`, `val.bin`: the last 10% for
# validation), as nanoGPT does (a second or so).

# %%
def stdlib_docstrings():
    docs = []
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py"))):
        try:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text and len(text) > 80:  # skip the one-liners
                    docs.append(text)
    return "\n\n".join(docs)


work = tempfile.mkdtemp(prefix="minigpt2-training-")  # this run's own folder: other runs and users keep theirs
print(f"this run's corpus, tokens and checkpoint go to {work} (delete it when you are done)")
corpus = os.path.join(work, "stdlib_docstrings.txt")
text = stdlib_docstrings()
with open(corpus, "w", encoding="utf-8") as f:
    f.write(text)
print(f"{len(text):,} characters, e.g.:\n{text[20000:20300]}\n")
tokens = prepare_tokens(corpus, os.path.join(work, "data"), tokenizer)
print({name: f"{len(array):,} tokens ({array.dtype})" for name, array in tokens.items()})

# %% [markdown]
# ## A small GPT-2, from scratch
#
# GPT-2's vocabulary (50257 tokens) with a small body: 3 layers, 3 heads, 96 dimensions, 64 tokens of
# context. Most of its ~5M parameters are the token table, and most of the work of a step is the head
# (`h wteᵀ` over the whole vocabulary). Random weights give every token a probability near 1/50257:
# the loss starts near `ln 50257 ≈ 10.8`.
#
# One training step (`Trainer.train_step`): draw 8 random windows of 64 tokens, `loss_and_grad`, clip
# the gradient's norm to 1, and an AdamW step (weight decay on matrices only) at the learning rate of a
# warmup + cosine schedule. We run steps for `TRAIN_SECONDS` (50 by default; set MINIGPT2_TRAIN_SECONDS for longer).

# %%
config = minigpt2.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=96, n_layer=3, n_head=3,
                             resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
model = minigpt2.GPT2LMHeadModel(config, seed=0)
args = TrainingArguments(out_dir=os.path.join(work, "model"), max_steps=400, batch_size=8, seq_len=64,
                         lr=2e-3, warmup_steps=10, eval_batches=4, prompt="This function returns",
                         sample_tokens=25)
trainer = Trainer(model, tokenizer, tokens, args)
initial = trainer.evaluate()
print(f"{model.num_parameters():,} parameters; loss before training: {initial:.3f} (ln 50257 = {np.log(50257):.3f})")
before = trainer.sample(seed=1)
print("sample before training:", repr(before))

# %%
curve, start = [], time.perf_counter()
while trainer.step < args.max_steps and time.perf_counter() - start < TRAIN_SECONDS:
    loss, norm, lr = trainer.train_step()
    curve.append(loss)
    if trainer.step % 20 == 0:
        seconds = time.perf_counter() - start
        print(f"step {trainer.step:4d}  loss {loss:.3f}  lr {lr:.1e}  "
              f"{trainer.step * args.batch_size * args.seq_len / seconds:,.0f} tokens/s")
val = trainer.evaluate()
print(f"{trainer.step} steps in {time.perf_counter() - start:.0f} s; validation loss {val:.3f}")
# On an idle 2-core laptop the budget buys a few hundred steps and a validation loss near 6; a busy machine
# gets fewer steps, but the loss must fall.
assert val < initial - 0.5, "training should lower the validation loss"

# %%
after = trainer.sample(seed=1)
print("before:", repr(before))
print("after: ", repr(after))

# %% [markdown]
# The model has learned the frequent tokens, then common pairs and phrases of docstring English:
# with more steps (`python -m minigpt2 train`, below) it keeps improving.

# %%
if plt is not None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(np.arange(1, len(curve) + 1), curve, label="training loss (each step's batch)")
    ax.axhline(val, color="C1", linestyle="--", label=f"validation loss at the end ({val:.2f})")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("A 3-layer GPT-2 learning the stdlib's docstrings")
    ax.legend()
    _workshop.show(fig, "10_loss_curve")
else:
    print("matplotlib is not installed: no figure (pip install matplotlib)")

# %% [markdown]
# For scale: the published GPT-2 (124M parameters, trained for weeks on 40 GB of web text) on the same
# validation batches, when it is available here (otherwise the tiny random model stands in, near 10.8).

# %%
reference = _workshop.load_model(MODEL)
if reference.config.n_positions >= args.seq_len:
    print(f"{_workshop.model_label(reference)}: validation loss "
          f"{trainer.evaluate(reference):.3f}; ours: {val:.3f}")

# %% [markdown]
# ## Keep it, load it, go on from the command line
#
# `trainer.save()` writes an ordinary Hugging Face checkpoint (config.json + model.safetensors + the
# tokenizer), plus the optimizer's state for resuming. transformers loads it; so does minigpt2:

# %%
trainer.save()
reloaded = minigpt2.GPT2LMHeadModel.from_pretrained(args.out_dir)
ids = np.array([tokenizer.encode("Return the")])
assert np.array_equal(reloaded(ids).logits, model(ids).logits)
print(sorted(os.listdir(args.out_dir)))

# %% [markdown]
# The same loop from the command line, with a progress line, validation, samples, checkpoints and
# Ctrl-C that saves:
#
# ```bash
# python -m minigpt2 train --data corpus.txt --out my-gpt --max-steps 2000 --n-layer 4 --n-head 4 --n-embd 128
# python -m minigpt2 train --out my-gpt --resume --max-steps 4000     # continue where it stopped
# python -m minigpt2 -m my-gpt "This function returns"                  # sample from it
# python -m minigpt2 train --data notes/ --out tuned --model gpt2 --max-steps 200 --lr 1e-4   # fine-tune GPT-2
# ```
