"""4-D attention masks [batch, 1, query, key] in the forward pass, against transformers 4.57 on the same checkpoint
(fp32, attn_implementation="eager", the reference of tests/conftest.py).

What transformers does with such a mask for GPT-2, and these tests pin: it is the bias itself ("inverted": 0 to
attend, a large negative number to mask), added to the scores as it is, with GPT-2's causal mask on top; with a
cache the key axis covers cached + new positions. Boolean and integer 4-D masks are refused (eager attention would
add their 1s and 0s, which masks nothing). Logits, hidden states and attentions within 1e-5 * max(1, max|ref|)
(conftest.assert_close): float32 rounding through two layers.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigpt2 import GPT2LMHeadModel, GPT2Model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close  # noqa: E402

MIN = np.finfo(np.float32).min  # what transformers masks with


@pytest.fixture(scope="module")
def pair(hf_tiny_checkpoint):
    """(transformers model, minigpt2 model) of conftest's tiny checkpoint: vocabulary 99, 16 positions, width 32."""
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_checkpoint, attn_implementation="eager").eval()
    return hf, GPT2LMHeadModel.from_pretrained(hf_tiny_checkpoint)


def _hf(model, **kwargs):
    inputs = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with torch.no_grad():
        return model(**inputs)


def inverted(allowed):
    """transformers' form of a mask: 0 where a query may attend to a key, the float32 minimum elsewhere."""
    return np.where(allowed, 0.0, MIN).astype(np.float32)


def causal_padding_mask(padding):
    """The mask transformers builds itself from a 2-D padding mask [B, K]: causal and padding.  # -> [B, 1, K, K]"""
    K = padding.shape[1]
    return inverted(np.tril(np.ones((K, K), bool))[None, None] & (padding[:, None, None, :] == 1))


IDS = np.random.default_rng(0).integers(0, 99, (2, 7))
PADDING = np.array([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])


def test_the_causal_padding_mask_transformers_builds(pair):
    """Every position, every layer's hidden state and attention; the same as the 2-D mask it stands for."""
    hf, ours = pair
    mask = causal_padding_mask(PADDING)
    flags = dict(output_hidden_states=True, output_attentions=True)
    got, ref = ours(IDS, attention_mask=mask, **flags), _hf(hf, input_ids=IDS, attention_mask=mask, **flags)
    assert_close(got.logits, ref.logits.numpy(), "logits")
    for i, (h, r) in enumerate(zip(got.hidden_states, ref.hidden_states)):
        assert_close(h, r.numpy(), f"hidden_states[{i}]")
    for i, (a, r) in enumerate(zip(got.attentions, ref.attentions)):
        assert_close(a, r.numpy(), f"attentions[{i}]")
    assert_close(got.logits, ours(IDS, attention_mask=PADDING).logits, "the 2-D mask's logits")


def test_packed_sequences_block_diagonal(pair):
    """Two documents in one row (a block-diagonal causal mask, positions restarting): each reads as if alone."""
    hf, ours = pair
    doc = np.array([0, 0, 0, 1, 1, 1, 1])
    mask = inverted((np.tril(np.ones((7, 7), bool)) & (doc[:, None] == doc[None, :]))[None, None])
    positions = np.array([[0, 1, 2, 0, 1, 2, 3]])
    ids = IDS[:1]
    got = ours(ids, attention_mask=mask, position_ids=positions).logits
    assert_close(got, _hf(hf, input_ids=ids, attention_mask=mask, position_ids=positions).logits.numpy(), "logits")
    assert_close(got[:, 3:], ours(ids[:, 3:]).logits, "the second document alone")


def test_with_a_cache(pair):
    """3 cached positions, 4 new: the mask's key axis covers all 7; the model is GPT2Model (last_hidden_state)."""
    hf, ours = pair
    hf_base, our_base = hf.transformer, GPT2Model(ours.config, ours.params)
    mask = causal_padding_mask(PADDING)[:, :, 3:, :]  # [2, 1, 4, 7]
    ref_past = _hf(hf_base, input_ids=IDS[:, :3], attention_mask=PADDING[:, :3], use_cache=True).past_key_values
    our_past = our_base(IDS[:, :3], attention_mask=PADDING[:, :3], use_cache=True).past_key_values
    positions = np.cumsum(PADDING, -1)[:, 3:] - 1
    got = our_base(IDS[:, 3:], past_key_values=our_past, attention_mask=mask, position_ids=positions)
    ref = _hf(hf_base, input_ids=IDS[:, 3:], past_key_values=ref_past, attention_mask=mask, position_ids=positions)
    assert_close(got.last_hidden_state, ref.last_hidden_state.numpy(), "last_hidden_state")


def test_one_decoding_step_on_both_backends(pair, kernel_backend):
    """One new token over 6 cached positions, a [B, 1, 1, 7] mask: the shape the C core's decoding block takes."""
    hf, ours = pair
    mask = causal_padding_mask(PADDING)[:, :, 6:, :]
    ref_past = _hf(hf, input_ids=IDS[:, :6], attention_mask=PADDING[:, :6], use_cache=True).past_key_values
    our_past = ours(IDS[:, :6], attention_mask=PADDING[:, :6], use_cache=True).past_key_values
    positions = np.cumsum(PADDING, -1)[:, 6:] - 1
    got = ours(IDS[:, 6:], past_key_values=our_past, attention_mask=mask, position_ids=positions).logits
    ref = _hf(hf, input_ids=IDS[:, 6:], past_key_values=ref_past, attention_mask=mask, position_ids=positions).logits
    assert_close(got, ref.numpy(), f"logits ({kernel_backend})")


@pytest.mark.parametrize("name", ["biases", "batch 1 broadcast", "query 1 broadcast", "float16", "float64"])
def test_what_transformers_adds_as_it_is(pair, name):
    """Any float values are biases (transformers adds them); a batch or query axis of 1 broadcasts; float16 and
    float64 masks are read as float32. transformers computes with a float64 mask in float64, where its minimum
    does not overflow when added to the causal mask's: the two pads of row 0, which have no key to attend to, then
    attend to later tokens (see test_a_mask_that_leaves_later_keys_open); every token's logits agree."""
    hf, ours = pair
    rng = np.random.default_rng(1)
    mask = {
        "biases": rng.normal(0, 2, (2, 1, 7, 7)).astype(np.float32),
        "batch 1 broadcast": rng.normal(0, 2, (1, 1, 7, 7)).astype(np.float32),
        "query 1 broadcast": rng.normal(0, 2, (2, 1, 1, 7)).astype(np.float32),
        "float16": np.where(causal_padding_mask(PADDING) < 0, np.finfo(np.float16).min, 0).astype(np.float16),
        "float64": np.where(causal_padding_mask(PADDING) < 0, np.finfo(np.float64).min, 0.0),
    }[name]
    got = ours(IDS, attention_mask=mask).logits
    ref = _hf(hf, input_ids=IDS, attention_mask=mask).logits.numpy()
    compared = PADDING == 1 if name == "float64" else np.ones(PADDING.shape, bool)
    assert_close(got[compared], ref[compared], "logits")
    if name == "float64":  # its minimum is read as the float32 minimum, the 2-D mask's bias
        assert_close(got, ours(IDS, attention_mask=PADDING).logits, "the 2-D mask's logits")


def test_minus_infinity_is_the_float32_minimum(pair):
    """-inf in a mask gives what the float32 minimum gives, and where every key of a query is masked (the two pads
    of row 0) that query spreads its attention, as with a 2-D mask: transformers' eager attention is NaN there,
    and the NaN then reaches every position of the row."""
    hf, ours = pair
    mask = causal_padding_mask(PADDING)
    with_inf = np.where(mask < 0, -np.inf, 0.0).astype(np.float32)
    got = ours(IDS, attention_mask=with_inf).logits
    assert np.isfinite(got).all()
    assert_close(got, ours(IDS, attention_mask=mask).logits, "the float32 minimum's logits")
    assert np.isnan(_hf(hf, input_ids=IDS, attention_mask=with_inf).logits[0].numpy()).all()
    no_padding = causal_padding_mask(np.ones_like(PADDING))  # no query without a key: transformers agrees
    no_padding_inf = np.where(no_padding < 0, -np.inf, 0.0).astype(np.float32)
    assert_close(ours(IDS, attention_mask=no_padding_inf).logits,
                 _hf(hf, input_ids=IDS, attention_mask=no_padding_inf).logits.numpy(), "logits")


def test_a_mask_that_leaves_later_keys_open(pair):
    """A padding-only mask [B, 1, T, K] (not causal itself): GPT-2's causal mask applies on top, as in transformers'
    eager attention. The two pads of row 0 have no key to attend to: there transformers spreads their attention over
    later tokens too, minigpt2 over the keys up to each pad (the 2-D mask's rule); no other position reads them."""
    hf, ours = pair
    mask = inverted(np.broadcast_to(PADDING[:, None, None, :] == 1, (2, 1, 7, 7)))
    got, ref = ours(IDS, attention_mask=mask).logits, _hf(hf, input_ids=IDS, attention_mask=mask).logits.numpy()
    real = PADDING == 1
    assert_close(got[real], ref[real], "logits at the tokens")
    assert_close(got, ours(IDS, attention_mask=PADDING).logits, "the 2-D mask's logits, pads too")
    assert not np.allclose(got[~real], ref[~real], atol=1e-3)  # the pads: the one place the rules differ


@pytest.mark.parametrize("mask, message", [
    (np.ones((2, 1, 7, 7), bool), "must be floats.*got dtype bool"),
    (np.ones((2, 1, 7, 7), np.int64), "must be floats.*got dtype int64"),
    (np.zeros((2, 4, 7, 7), np.float32), r"must have shape \(batch=2 or 1, 1, query=7 or 1, key=7.*got \(2, 4, 7, 7\)"),
    (np.zeros((2, 1, 7, 9), np.float32), r"key=7: cached \+ new tokens\), got \(2, 1, 7, 9\)"),
    (np.zeros((3, 1, 7, 7), np.float32), r"batch=2 or 1"),
    (np.full((2, 1, 7, 7), np.nan, np.float32), "contains NaN or \\+inf"),
    (np.full((2, 1, 7, 7), np.inf, np.float32), "contains NaN or \\+inf"),
    (np.zeros((2, 7, 7), np.float32),
     r"expected \(batch=2, cached \+ new tokens=7\).*4-D float bias \(batch, 1, 7, 7\)"),
])
def test_refused_with_what_is_allowed(pair, mask, message):
    _, ours = pair
    with pytest.raises(ValueError, match=message):
        ours(IDS, attention_mask=mask)
