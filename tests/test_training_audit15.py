"""Training audit against torch / transformers 4.57: what the other training tests left open.

- AdamW.step with a gradient that does not fit its parameter: torch refuses it when it is assigned (``p.grad =``),
  before any update. Before: NumPy's broadcast error half-way through the loop, after the step count and the
  first parameters had moved; a gradient that broadcasts (a row, a scalar) was taken silently.
- AdamW's betas must be a pair (before: a TypeError or "too many values to unpack" at the first step).
- AdamW.load_state_dict gave float64 parameters float32 moments: a resumed float64 run was not the uninterrupted one.
- loss_and_grad's labels of shape (B*T,) for input_ids (B, T), B > 1: transformers reads them as one long row
  (label t+1 across the rows), model(...).loss refuses them; loss_and_grad silently cut them into rows (a third
  answer). Now refused as the forward refuses them.
- loss_and_grad's rng: a seed NumPy cannot take named ``rng`` (before: NumPy's "expected non-negative integer").
- loss_and_grad(num_items_in_batch=n): transformers' forward takes it (its Trainer passes it so that accumulated
  micro-batches with different numbers of -100 labels give the mean over all of them), as does model(...).loss;
  loss_and_grad did not (TypeError).

Tolerances: GRAD_RTOL of test_training.py (max|ours - torch| <= 1e-4 x max|torch| per tensor; derived there from
float32's unit roundoff u = 6e-8, sums of ~1200 terms and a few chained layers); losses to 1e-5 relative (one
float32 reduction of ~30 terms in another order: a few u). The accumulated gradient (two micro-batches, each
weighted n_i / n, added in float32) adds one rounding per entry: far inside the same bound.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigpt2.training import AdamW
from minigpt2.training.grad import model_loss_and_grad
from test_training import GRAD_RTOL, batch, torch_model
from test_training_more import ours_from

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


# -- AdamW -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.ones(3, np.float32), np.ones(4, np.float32), np.float32(1.0), None, [1.0] * 4])
def test_adamw_refuses_a_gradient_that_does_not_fit_before_any_update(bad):
    params = {"a.weight": np.ones((3, 4), np.float32), "a.bias": np.ones(4, np.float32),
              "b.weight": np.ones((3, 4), np.float32)}
    opt = AdamW(params, lr=0.1)
    grads = {"a.weight": np.ones((3, 4), np.float32), "a.bias": np.ones(4, np.float32), "b.weight": bad}
    if isinstance(bad, list):
        grads["a.bias"], grads["b.weight"] = bad, np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"AdamW.step: the gradient of (b.weight|a.bias) .*no weight was changed"):
        opt.step(grads)
    assert opt.t == 0
    assert all((p == 1).all() for p in params.values())
    assert all((m == 0).all() for m in opt.m.values())


@pytest.mark.parametrize("betas", [(0.9,), (0.9, 0.99, 0.999), 0.9])
def test_adamw_betas_must_be_a_pair(betas):
    with pytest.raises(ValueError, match="betas must be a pair"):
        AdamW({"w": np.ones((2, 2), np.float32)}, betas=betas)


# -- loss_and_grad's inputs --------------------------------------------------------------------------------------

def test_labels_flattened_over_the_batch_are_refused_as_the_forward_refuses_them():
    hf = torch_model(30)
    model = ours_from(hf)
    ids, labels, _ = batch(30, padding=False)
    with pytest.raises(ValueError, match=r"labels must have shape \(3, 11\)"):
        model(ids, labels=labels.reshape(-1))
    with pytest.raises(ValueError, match=r"labels must have the shape of input_ids \(3, 11\), got \(33,\)"):
        model.loss_and_grad(ids, labels=labels.reshape(-1))
    loss, _ = model.loss_and_grad(ids[0], labels=labels[0])  # one row: ids and labels (T,) as the forward takes
    ref = hf(torch.tensor(ids[:1]), labels=torch.tensor(labels[:1])).loss.item()
    assert abs(loss - ref) <= 1e-5 * ref


@pytest.mark.parametrize("rng", [-1, "seed", 1.5])
def test_a_seed_numpy_cannot_take_names_rng(rng):
    model = ours_from(torch_model(31)).train()
    ids, _, _ = batch(31, padding=False)
    with pytest.raises((TypeError, ValueError), match=r"rng must be a numpy Generator or an integer seed >= 0"):
        model.loss_and_grad(ids, rng=rng)


def test_num_items_in_batch_accumulates_micro_batches_as_transformers():
    """Two micro-batches with different numbers of -100 labels: transformers' forward with num_items_in_batch = the
    labels of both, backward on each, the gradients added (as its Trainer does) against loss_and_grad with the same
    num_items_in_batch, the gradients added; and both against the whole batch at once."""
    hf = torch_model(32)
    model = ours_from(hf)
    ids, labels, _ = batch(32, padding=False, B=4)
    labels[0, 2:] = -100  # the first micro-batch counts far fewer labels than the second
    n = int((labels[:, 1:] != -100).sum())
    hf.zero_grad()
    ref_loss = 0.0
    for rows in (slice(0, 2), slice(2, 4)):
        out = hf(torch.tensor(ids[rows]), labels=torch.tensor(labels[rows]), num_items_in_batch=n)
        out.loss.backward()
        ref_loss += out.loss.item()
    whole, whole_grads = model_loss_and_grad(model, ids, labels=labels)
    total, grads = 0.0, None
    for rows in (slice(0, 2), slice(2, 4)):
        loss, g = model.loss_and_grad(ids[rows], labels=labels[rows], num_items_in_batch=n)
        assert abs(float(model(ids[rows], labels=labels[rows], num_items_in_batch=n).loss) - loss) <= 1e-5 * loss
        total += float(loss)
        grads = g if grads is None else {k: grads[k] + g[k] if k != "lm_head.weight" else grads[k] for k in g}
    assert abs(total - ref_loss) <= 1e-5 * ref_loss and abs(whole - ref_loss) <= 1e-5 * ref_loss
    for name, p in hf.named_parameters():
        r = p.grad.numpy()
        bound = GRAD_RTOL * float(np.abs(r).max())
        assert float(np.abs(grads[name] - r).max()) <= bound, name
        assert float(np.abs(whole_grads[name] - r).max()) <= bound, name


def test_adamw_resumes_float64_parameters_exactly():
    """AdamW takes float64 parameters (its moments float64 too); state_dict() then load_state_dict() in a new AdamW
    continues the very run, bit for bit, as it does in float32. Before: the moments came back as float32, 2e-10 off
    after 3 more steps."""
    rng = np.random.default_rng(0)
    start, grads = rng.normal(size=(5, 7)), [rng.normal(size=(5, 7)) * 1e-3 for _ in range(6)]
    whole, halves = {"w": start.copy()}, {"w": start.copy()}
    one = AdamW(whole)
    for g in grads:
        one.step({"w": g})
    first = AdamW(halves)
    for g in grads[:3]:
        first.step({"w": g})
    second = AdamW(halves)
    second.load_state_dict({k: v.copy() for k, v in first.state_dict().items()})
    for g in grads[3:]:
        second.step({"w": g})
    assert second.m["w"].dtype == np.float64
    assert np.array_equal(whole["w"], halves["w"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_with_a_gradient_that_is_not_finite_does_as_torch(bad):
    """A NaN in a gradient makes the norm NaN: torch scales every gradient by NaN (max_norm / NaN, clamped); this
    clip left them as they were, so a hand-written loop stepped with the finite parts. An infinity: factor 0, both."""
    import torch

    from minigpt2.training import clip_grad_norm

    rng = np.random.default_rng(15)
    grads = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float32)}
    grads["b"][2] = bad
    tensors = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g)
    want_norm = float(torch.nn.utils.clip_grad_norm_(tensors, 1.0))
    norm = clip_grad_norm(grads, 1.0)
    assert np.isnan(norm) == np.isnan(want_norm) and (np.isnan(norm) or norm == want_norm)
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_array_equal(g, t.grad.numpy())  # (NaN where torch has NaN, bit for bit elsewhere)


def test_lr_at_a_negative_step_is_named():
    """lr_at(-1, warmup_steps=0, ...) was a ZeroDivisionError from the warmup's formula."""
    from minigpt2.training import lr_at

    with pytest.raises(ValueError, match=r"lr_at: step must be >= 0 \(steps count from 0\), got -1$"):
        lr_at(-1, max_lr=1e-3, warmup_steps=0, max_steps=10)
    assert lr_at(0, max_lr=1e-3, warmup_steps=0, max_steps=10) == 1e-3
