"""The KV cache as a transformers 4.57 user uses it, checked against transformers on the same checkpoint: what
``model(...).past_key_values`` offers (4.57's DynamicCache API), and what may be passed back (minigpt2's own cache,
HF's legacy tuples, a transformers DynamicCache, an empty cache, ``cache_position``), including the HF loop that
keeps using the cache object it passed in.

Numbers are compared with conftest.assert_close: 1e-5 * max(1, max|ref|), the float32 bound of the suite (a few
float32 roundings of sums over at most n_embd terms, each ~6e-8 relative).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

import minigpt2
from conftest import TINY, assert_close

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

IDS = np.array([[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14]])


@pytest.fixture(scope="module")
def models(hf_tiny_checkpoint):
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(hf_tiny_checkpoint)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_checkpoint, attn_implementation="eager").eval()
    return ours, theirs


def hf(model, ids, **kwargs):
    with torch.no_grad():
        return model(torch.tensor(ids), **kwargs)


def test_the_returned_cache_offers_what_a_dynamic_cache_offers(models):
    """4.57's DynamicCache: get_seq_length, get_max_cache_shape (-1: no maximum), len, cache[i] -> (k, v),
    iteration, layers[i].keys/.values, to_legacy_cache, the classmethod from_legacy_cache; [B, H, P, D]."""
    ours, theirs = models
    mine, ref = ours(IDS[:, :4]).past_key_values, hf(theirs, IDS[:, :4]).past_key_values
    assert mine.get_seq_length() == ref.get_seq_length() == 4
    assert mine.get_max_cache_shape() == ref.get_max_cache_shape() == -1
    assert len(mine) == len(ref) == TINY["n_layer"]
    for i, ((k, v), (rk, rv), layer, ref_layer) in enumerate(zip(mine, ref, mine.layers, ref.layers)):
        assert k.shape == tuple(rk.shape) == (2, TINY["n_head"], 4, TINY["n_embd"] // TINY["n_head"])
        assert_close(k, rk.numpy(), f"layer {i} keys")
        assert_close(v, rv.numpy(), f"layer {i} values")
        assert layer.keys is mine[i][0] and layer.values is mine[i][1]
        assert_close(layer.keys, ref_layer.keys.numpy(), f"layers[{i}].keys")
    legacy = mine.to_legacy_cache()
    assert type(legacy) is tuple and all(a is b for pair, mpair in zip(legacy, mine) for a, b in zip(pair, mpair))

    # from_legacy_cache: from transformers' own tensors, then continued as transformers continues its cache.
    rebuilt = minigpt2.KVCache.from_legacy_cache(ref.to_legacy_cache())
    assert isinstance(rebuilt, minigpt2.KVCache) and rebuilt.get_seq_length() == 4
    expected = hf(theirs, IDS[:, 4:], past_key_values=copy.deepcopy(ref)).logits.numpy()
    assert_close(ours(IDS[:, 4:], past_key_values=rebuilt).logits, expected, "continued from_legacy_cache")
    assert len(minigpt2.KVCache.from_legacy_cache(None)) == 0


@pytest.mark.parametrize("name, args, instead", [
    ("crop", (2,), "k[:, :, :n]"),
    ("reorder_cache", (np.array([1, 0]),), "past.reorder(beam_idx)"),
    ("batch_select_indices", (np.array([1]),), "past.reorder(indices)"),
    ("batch_repeat_interleave", (2,), "np.repeat"),
    ("update", (None, None, 0), "past_key_values"),
    ("reset", (), "None"),
])
def test_dynamic_cache_methods_that_change_it_in_place_are_refused_saying_what_to_use(models, name, args, instead):
    """transformers' DynamicCache.crop/reorder_cache/... change the cache in place and return None; a minigpt2
    cache never changes, so a method that returned a new cache would leave HF code (which ignores the result)
    with the old one: refused, naming the replacement; the cache is unchanged."""
    ours, _ = models
    past = ours(IDS[:, :4]).past_key_values
    before = [(k.copy(), v.copy()) for k, v in past]
    with pytest.raises(TypeError, match="never changes") as error:
        getattr(past, name)(*args)
    assert instead in str(error.value)
    assert past.get_seq_length() == 4
    for (k, v), (k0, v0) in zip(past, before):
        assert np.array_equal(k, k0) and np.array_equal(v, v0)


def test_the_model_takes_a_transformers_dynamic_cache_and_updates_it_in_place_like_transformers(models):
    """HF 4.57's loop: make a DynamicCache, keep passing that same object; the model appends to it in place and
    returns it. minigpt2 refused the object ('must be a tuple ... got DynamicCache')."""
    ours, theirs = models
    mine_cache, ref_cache = transformers.DynamicCache(), transformers.DynamicCache()
    for start, stop in [(0, 3), (3, 4), (4, 5), (5, 7)]:
        out = ours(IDS[:, start:stop], past_key_values=mine_cache, use_cache=True)
        ref = hf(theirs, IDS[:, start:stop], past_key_values=ref_cache, use_cache=True)
        assert out.past_key_values is mine_cache and ref.past_key_values is ref_cache
        assert mine_cache.get_seq_length() == ref_cache.get_seq_length() == stop
        assert_close(out.logits, ref.logits.numpy(), f"logits of tokens {start}:{stop}")
    for i, ((k, v), (rk, rv)) in enumerate(zip(mine_cache.to_legacy_cache(), ref_cache.to_legacy_cache())):
        assert_close(k.numpy(), rk.numpy(), f"layer {i} keys")
        assert_close(v.numpy(), rv.numpy(), f"layer {i} values")

    # use_cache=False with a DynamicCache: transformers still appends to it and returns None.
    mine_cache, ref_cache = transformers.DynamicCache(), transformers.DynamicCache()
    out = ours(IDS[:, :3], past_key_values=mine_cache, use_cache=False)
    ref = hf(theirs, IDS[:, :3], past_key_values=ref_cache, use_cache=False)
    assert out.past_key_values is None and ref.past_key_values is None
    assert mine_cache.get_seq_length() == ref_cache.get_seq_length() == 3


def test_an_empty_cache_is_no_cache(models):
    """past_key_values=() (an empty legacy cache): transformers runs as without a cache; minigpt2 said
    'one (key, value) pair per layer (2), got 0 entries'."""
    ours, theirs = models
    out = ours(IDS, past_key_values=())
    assert_close(out.logits, hf(theirs, IDS, past_key_values=()).logits.numpy(), "logits with ()")
    assert out.past_key_values.get_seq_length() == IDS.shape[1]


def test_cache_position_is_taken_when_it_says_where_the_new_tokens_go(models, hf_tiny_checkpoint):
    """transformers 4.57 takes cache_position (GPT2Model, GPT2LMHeadModel, GPT2DoubleHeadsModel); minigpt2 raised
    TypeError (unexpected keyword). It must be [P, ..., P + T - 1]: anything else is refused, naming both."""
    ours, theirs = models
    past = ours(IDS[:, :4]).past_key_values
    ref_past = hf(theirs, IDS[:, :4]).past_key_values
    ref = hf(theirs, IDS[:, 4:], past_key_values=ref_past, cache_position=torch.arange(4, 7)).logits.numpy()
    assert_close(ours(IDS[:, 4:], past_key_values=past, cache_position=np.arange(4, 7)).logits, ref, "logits")
    assert_close(ours(IDS[:, :4], cache_position=torch.arange(4)).logits, hf(theirs, IDS[:, :4]).logits.numpy(),
                 "logits without a cache")
    with pytest.raises(ValueError, match=r"cache_position is \[3, 4, 5\].*\[4, \.\.\., 6\]"):
        ours(IDS[:, 4:], past_key_values=past, cache_position=np.arange(3, 6))
    base = minigpt2.GPT2Model.from_pretrained(hf_tiny_checkpoint)
    assert base(IDS[:, :2], cache_position=np.arange(2)).last_hidden_state.shape == (2, 2, TINY["n_embd"])
    choices = minigpt2.GPT2DoubleHeadsModel(ours.config, seed=0)
    assert choices(IDS[None, :, :2], cache_position=np.arange(2)).logits.shape[:3] == (1, 2, 2)


def test_the_hf_loop_reusing_the_object_it_passed_in_says_what_to_do_where_it_can_tell(models):
    """In transformers the cache passed in grows in place, so HF code may keep passing the first call's cache. A
    minigpt2 cache never changes; passing one again is branching (tests/test_properties.py), so the model cannot
    tell this loop from a branch by the cache alone. When the loop also passes what it thinks the positions are
    (a growing attention_mask, cache_position), the error says what to do instead of a bare shape mismatch."""
    ours, _ = models
    past = ours(IDS[:, :3]).past_key_values
    ours(IDS[:, 3:4], past_key_values=past, attention_mask=np.ones((2, 4)))  # the first step is right
    with pytest.raises(ValueError, match="never changes, pass the last output's past_key_values"):
        ours(IDS[:, 4:5], past_key_values=past, attention_mask=np.ones((2, 5)))
    with pytest.raises(ValueError, match="never changes, pass the last output's past_key_values"):
        ours(IDS[:, 4:5], past_key_values=past, cache_position=np.array([4]))


# -- checked: behaviours minigpt2 already had like transformers (but for the DynamicCache, fixed above) ---------
def test_continuing_with_each_kind_of_cache_gives_transformers_logits(models):
    """The loop `out = model(ids, past_key_values=past); past = out.past_key_values` from minigpt2's cache, HF's
    legacy tuples (NumPy or torch) and a DynamicCache; use_cache=False with a cache gives no cache, as HF."""
    ours, theirs = models
    ref = hf(theirs, IDS).logits.numpy()
    ref_past = hf(theirs, IDS[:, :4]).past_key_values
    legacy_torch = ref_past.to_legacy_cache()
    legacy_numpy = tuple((k.numpy(), v.numpy()) for k, v in legacy_torch)
    for name, past in [("minigpt2", ours(IDS[:, :4]).past_key_values), ("legacy torch", legacy_torch),
                       ("legacy numpy", legacy_numpy), ("DynamicCache", copy.deepcopy(ref_past))]:
        out = ours(IDS[:, 4:5], past_key_values=past)
        past = out.past_key_values
        out = ours(IDS[:, 5:], past_key_values=past)
        assert_close(out.logits, ref[:, 5:], f"{name}: logits after two steps")
        assert out.past_key_values.get_seq_length() == IDS.shape[1]
    out = ours(IDS[:, 4:], past_key_values=ours(IDS[:, :4]).past_key_values, use_cache=False)
    assert out.past_key_values is None
    assert_close(out.logits, ref[:, 4:], "use_cache=False with a cache")


def test_position_ids_and_attention_mask_with_a_cache_give_transformers_logits(models):
    """Left padding: a [B, P + T] mask and explicit position_ids while continuing a cache."""
    ours, theirs = models
    mask = np.array([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    mine = ours(IDS[:, :4], attention_mask=mask[:, :4], position_ids=positions[:, :4]).past_key_values
    ref_past = hf(theirs, IDS[:, :4], attention_mask=torch.tensor(mask[:, :4]),
                  position_ids=torch.tensor(positions[:, :4])).past_key_values
    out = ours(IDS[:, 4:], past_key_values=mine, attention_mask=mask, position_ids=positions[:, 4:])
    ref = hf(theirs, IDS[:, 4:], past_key_values=ref_past, attention_mask=torch.tensor(mask),
             position_ids=torch.tensor(positions[:, 4:]))
    assert_close(out.logits[0], ref.logits[0].numpy(), "logits of the padded row")
    assert_close(out.logits[1], ref.logits[1].numpy(), "logits of the full row")


def test_a_cache_of_another_batch_size_or_head_count_is_refused_naming_the_shapes(models):
    ours, _ = models
    past = ours(IDS[:, :4]).past_key_values
    H, D = TINY["n_head"], TINY["n_embd"] // TINY["n_head"]
    with pytest.raises(ValueError, match=rf"shape \(2, {H}, 4, {D}\); expected \(batch=1, n_head={H}"):
        ours(IDS[:1, 4:], past_key_values=past)
    other_heads = tuple((k.reshape(2, H * 2, 4, D // 2), v.reshape(2, H * 2, 4, D // 2)) for k, v in past)
    with pytest.raises(ValueError, match=rf"shape \(2, {2 * H}, 4, {D // 2}\); expected \(batch=2, n_head={H}"):
        ours(IDS[:, 4:], past_key_values=other_heads)
