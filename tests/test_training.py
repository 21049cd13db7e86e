"""Training against torch: every parameter's gradient, and a whole training run, as llm.c's test_gpt2.c.

Gradients: transformers' GPT2LMHeadModel (float32, attn_implementation="eager", dropout off) with widely
spread random weights, loss.backward(), against model.loss_and_grad on the same weights and batch, for
configs covering every activation, both scale flags, reorder_and_upcast_attn, padding and ignored labels.
Tolerance, per tensor: max|ours - torch| <= GRAD_RTOL * max|torch|. Both sides compute in float32
(unit roundoff u = 6e-8) but sum in other orders (BLAS vs. torch's kernels). An entry of a gradient is a
sum of up to n = B*T*V = 1221 products (wte's), so one accumulation differs by ~sqrt(n) u = 2e-6 relative;
the two layers' backward passes chain a few such sums, amplified by softmax and layer norm's
conditioning (the spread weights give attention scores of ~10): ~10x. GRAD_RTOL = 1e-4 sits above that
(observed on these configs: at most 2.7e-6, loss differences <= 1e-6). A broken formula is off by 1e-2
or more.

The run: 50 AdamW steps (weight decay on matrices only, warmup + cosine, clipping at 1.0) from the same
initial weights on the same batches; the loss of every step must match torch's to 1e-5 relative
(float32 roundoff grows through Adam's updates, which normalise away the gradient's scale, so small
rounding differences in tiny gradients become lr-sized parameter differences; observed: 1.8e-7).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigpt2
from minigpt2 import checkpoint
from minigpt2.training import optim
from conftest import randomize_torch_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

GRAD_RTOL = 1e-4
LOSS_RTOL = 1e-5

CONFIGS = [  # (activation, scale_attn_weights, scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn, padding)
    ("gelu_new", True, False, False, False),
    ("gelu_new", True, True, True, True),
    ("gelu", False, False, False, True),
    ("gelu_fast", True, True, False, False),
    ("gelu_pytorch_tanh", True, False, True, True),
    ("relu", False, True, False, True),
    ("silu", True, False, False, True),
    ("quick_gelu", True, True, True, False),
    ("sigmoid", True, False, False, True),
    ("tanh", False, False, True, False),
    ("linear", True, False, False, True),
]


def torch_model(seed, spread=True, **config):
    cfg = transformers.GPT2Config(vocab_size=37, n_positions=16, n_embd=16, n_layer=2, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  attn_implementation="eager", **config)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(cfg)
    if spread:
        randomize_torch_model(model, seed)
    return model.eval()


def ours_from(hf):
    """A minigpt2 model holding copies of the torch model's weights."""
    config = minigpt2.GPT2Config.from_dict(hf.config.to_dict())
    flat = {k[len("transformer."):]: v.detach().numpy().copy() for k, v in hf.named_parameters()
            if k.startswith("transformer.")}
    return minigpt2.GPT2LMHeadModel(config, checkpoint.unflatten(flat))


def batch(seed, padding, B=3, T=11, V=37):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T))
    labels = ids.copy()
    labels[rng.random((B, T)) < 0.15] = -100
    mask = np.ones((B, T), np.int64)
    if padding:
        mask[1, :3] = 0  # left padding (its queries see only padding: torch's gradient there is kept too)
        mask[2, 8:] = 0  # right padding
        labels[mask == 0] = -100
    return ids, labels, mask


def torch_grads(hf, ids, labels, mask):
    hf.zero_grad()
    out = hf(torch.tensor(ids), labels=torch.tensor(labels), attention_mask=torch.tensor(mask))
    out.loss.backward()
    return float(out.loss.detach()), {k: p.grad.numpy().copy() for k, p in hf.named_parameters()}


@pytest.mark.parametrize("act,scale,inverse,reorder,padding", CONFIGS)
def test_every_gradient_matches_torch(act, scale, inverse, reorder, padding):
    seed = CONFIGS.index((act, scale, inverse, reorder, padding))
    hf = torch_model(seed, activation_function=act, scale_attn_weights=scale,
                     scale_attn_by_inverse_layer_idx=inverse, reorder_and_upcast_attn=reorder)
    model = ours_from(hf)
    ids, labels, mask = batch(seed, padding)
    ref_loss, ref = torch_grads(hf, ids, labels, mask)
    loss, grads = model.loss_and_grad(ids, labels=labels, attention_mask=mask if padding else None)
    assert set(grads) == set(model.state_dict())
    assert abs(loss - ref_loss) <= 1e-5 * max(1.0, abs(ref_loss)), (loss, ref_loss)
    report, failed = [], []
    for name, g in grads.items():
        r = ref[name]  # transformers names them the same way ("transformer.h.0.attn.c_attn.weight", ...)
        diff, bound = float(np.abs(g - r).max()), GRAD_RTOL * float(np.abs(r).max())
        report.append(f"{name:40s} max|ref| {np.abs(r).max():9.3g}  max|diff| {diff:9.3g}  bound {bound:9.3g}")
        if not diff <= bound:
            failed.append(name)
    assert not failed, "gradients differ from torch's:\n" + "\n".join(report)


def test_no_decay_on_biases_and_layer_norms():
    model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10,
                                                         n_positions=8), seed=0)
    decayed = {k for k, v in model.state_dict().items() if optim.decays(k, v)}
    assert decayed == {k for k in model.state_dict() if k.endswith("weight") and ".ln_" not in k
                       and not k.startswith("transformer.ln_f")}


def test_training_run_matches_torch():
    """50 steps of AdamW with warmup, cosine decay, clipping and weight decay: the same loss at every step."""
    hf = torch_model(0, spread=False, activation_function="gelu_new")  # GPT-2's own initialisation
    model = ours_from(hf)
    params = model.state_dict()
    kw = dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ours = optim.AdamW(params, **kw)
    named = dict(hf.named_parameters())
    groups = [{"params": [p for k, p in named.items() if p.ndim >= 2], "weight_decay": 0.1},
              {"params": [p for k, p in named.items() if p.ndim < 2], "weight_decay": 0.0}]
    theirs = torch.optim.AdamW(groups, lr=1e-3, betas=kw["betas"], eps=kw["eps"])
    rng = np.random.default_rng(0)
    data = rng.integers(0, 37, 400)  # a little "corpus" with structure: runs of repeated tokens
    data = np.repeat(data, 3)[:600]
    steps, curve = 50, []
    for step in range(steps):
        starts = rng.integers(0, len(data) - 12, 4)
        ids = np.stack([data[s:s + 12] for s in starts])
        lr = optim.lr_at(step, max_lr=1e-2, warmup_steps=5, max_steps=steps)
        loss, grads = model.loss_and_grad(ids, labels=ids)
        optim.clip_grad_norm(grads, 1.0)
        ours.step(grads, lr=lr)
        theirs.zero_grad()
        ref = hf(torch.tensor(ids), labels=torch.tensor(ids)).loss
        ref.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        for group in theirs.param_groups:
            group["lr"] = lr
        theirs.step()
        curve.append((float(loss), float(ref.detach())))
    diffs = [abs(a - b) / abs(b) for a, b in curve]
    print(f"loss {curve[0][1]:.4f} -> {curve[-1][1]:.4f}; max relative difference to torch {max(diffs):.3g}")
    assert curve[-1][1] < curve[0][1] - 1.0, "the run should learn something (else it tests little)"
    bad = [(i, a, b) for i, (a, b) in enumerate(curve) if abs(a - b) > LOSS_RTOL * abs(b)]
    assert not bad, f"losses differ from torch's at steps {bad[:5]} (max relative diff {max(diffs):.3g})"
