"""minigpt2.DynamicCache: HF code that makes one cache object and keeps passing it, with ``from transformers import
DynamicCache`` swapped for ``from minigpt2 import DynamicCache`` (it was an ImportError). Each test makes the same
calls on transformers' DynamicCache with transformers' model, on the same tiny random checkpoint (fp32, eager
attention), and compares logits, sequences and the cached keys and values (conftest.RTOL, float32's bound).

Written for the main suite's transformers 4.57; in 5.x (.ci/transformers5.sh) the forward's cache argument is
``cache=`` and crop takes only a negative count, so the positive form is compared under 4.57 alone.
"""
from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest

import minigpt2
from conftest import assert_close, write_hf_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HF5 = int(transformers.__version__.split(".")[0]) >= 5
CACHE = "cache" if HF5 else "past_key_values"  # transformers' name for the forward's cache argument

IDS = np.array([[5, 6, 7, 8, 9, 11, 13, 3], [1, 2, 3, 4, 10, 12, 14, 15]])


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lm")
    theirs = write_hf_checkpoint(directory, "GPT2LMHeadModel", vocab_size=64, n_positions=64, eos_token_id=0,
                                 bos_token_id=0)
    return minigpt2.GPT2LMHeadModel.from_pretrained(directory), theirs


def hf(model, cache, ids, **kwargs):
    """transformers' forward with ``cache``: the logits as NumPy."""
    kwargs = {k: torch.tensor(v) for k, v in kwargs.items()}
    with torch.no_grad():
        return model(torch.tensor(ids), **{CACHE: cache}, **kwargs).logits.numpy()


def their_pairs(cache):
    """transformers' cache as (key, value) NumPy arrays per layer, read as 4.57 and 5.x both keep them."""
    return [(layer.keys.numpy(), layer.values.numpy()) for layer in cache.layers]


def same_cache(mine, theirs):
    """The same positions, layers and keys and values."""
    assert mine.get_seq_length() == theirs.get_seq_length()
    assert len(mine.layers) == len(theirs.layers)
    for i, ((k0, v0), (k1, v1)) in enumerate(zip(their_pairs(theirs), mine.to_legacy_cache())):
        assert k1.shape == k0.shape
        assert_close(k1, k0, f"layer {i} keys")
        assert_close(v1, v0, f"layer {i} values")


def test_one_cache_object_through_several_forwards_gives_transformers_logits(lm):
    """HF's loop: ``cache = DynamicCache()``, then the prompt and each next token with that same object. The output's
    past_key_values is the object; after the first continuation its buffers are reused, not copied per step."""
    ours, theirs = lm
    mine, ref = minigpt2.DynamicCache(), transformers.DynamicCache()
    assert mine.get_seq_length() == 0 and len(mine) == 0 and list(mine) == []
    buffers = []
    for start, stop in [(0, 3), (3, 4), (4, 5), (5, 7), (7, 8)]:
        want = hf(theirs, ref, IDS[:, start:stop], use_cache=True)
        out = ours(IDS[:, start:stop], past_key_values=mine, use_cache=True)
        assert out.past_key_values is mine
        assert_close(out.logits, want, f"logits of positions {start}..{stop - 1}")
        same_cache(mine, ref)
        buffers.append(mine[0][0].base if mine[0][0].base is not None else mine[0][0])
    assert all(b is buffers[1] for b in buffers[2:]), "the cache was copied while continuing from the latest"
    assert len(mine) == len(ref) and mine.get_seq_length(len(mine)) == 0
    for (k, v), layer, (k0, v0) in zip(mine, mine.layers, their_pairs(ref)):  # iteration, .layers, indexing
        assert layer.keys is not None and np.array_equal(layer.keys, k) and np.array_equal(layer.values, v)
        assert k.shape == k0.shape
    assert np.array_equal(mine[1][1], mine.to_legacy_cache()[1][1])
    with pytest.raises(KeyError):
        mine[len(mine)]
    assert mine.get_max_cache_shape() == -1 and mine.is_initialized and mine.get_mask_sizes(2, 0) == (10, 0)


def test_use_cache_false_still_grows_the_object_as_transformers(lm):
    """transformers appends to the cache it is given even with use_cache=False, and returns no cache."""
    ours, theirs = lm
    mine, ref = minigpt2.DynamicCache(), transformers.DynamicCache()
    hf(theirs, ref, IDS[:, :3], use_cache=False)
    assert ours(IDS[:, :3], past_key_values=mine, use_cache=False).past_key_values is None
    same_cache(mine, ref)


def test_a_padded_batch_with_attention_mask(lm):
    """Left padding: the mask grows with the cache at each step, positions from the mask (as generate does)."""
    ours, theirs = lm
    mask = np.array([[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]])
    positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    mine, ref = minigpt2.DynamicCache(), transformers.DynamicCache()
    for start, stop in [(0, 4), (4, 5), (5, 8)]:
        step = dict(attention_mask=mask[:, :stop], position_ids=positions[:, start:stop])
        want = hf(theirs, ref, IDS[:, start:stop], **step)
        got = ours(IDS[:, start:stop], past_key_values=mine, **step).logits
        assert_close(got[mask[:, start:stop] == 1], want[mask[:, start:stop] == 1], f"logits {start}..{stop - 1}")
    assert mine.get_seq_length() == ref.get_seq_length() == 8
    first_real = (mask == 0).sum(axis=1)  # (a pad's keys past layer 0 are each library's own: left out)
    for i, ((k0, v0), (k1, v1)) in enumerate(zip(their_pairs(ref), mine.to_legacy_cache())):
        for row, first in enumerate(first_real):
            assert_close(k1[row, :, first:], k0[row, :, first:], f"layer {i} keys, row {row}")
            assert_close(v1[row, :, first:], v0[row, :, first:], f"layer {i} values, row {row}")


@pytest.mark.parametrize("crop", [-2, 4, 6, 9, 0, -20])
def test_crop_then_continue(lm, crop):
    """crop(n) keeps n positions, crop(-n) drops n (4.57's meaning; 5.x only the negative); then continuing gives
    transformers' logits. A legacy tuple taken before the crop does not change when the cropped cache continues."""
    if HF5 and crop >= 0:
        pytest.skip("transformers 5's crop takes only a negative count")
    ours, theirs = lm
    mine, ref = minigpt2.DynamicCache(), transformers.DynamicCache()
    hf(theirs, ref, IDS[:, :6])
    ours(IDS[:, :6], past_key_values=mine)
    before = [(k.copy(), v.copy()) for k, v in mine.to_legacy_cache()]
    held = mine.to_legacy_cache()
    ref.crop(crop)
    mine.crop(crop)
    assert mine.get_seq_length() == ref.get_seq_length()
    kept = mine.get_seq_length()
    want = hf(theirs, ref, IDS[:, kept:kept + 2])
    assert_close(ours(IDS[:, kept:kept + 2], past_key_values=mine).logits, want, "logits after the crop")
    same_cache(mine, ref)
    for (k, v), (k0, v0) in zip(held, before):
        assert np.array_equal(k, k0) and np.array_equal(v, v0), "an array taken before the crop changed"


@pytest.mark.parametrize("how", ["reorder_cache", "batch_select_indices", "batch_repeat_interleave"])
def test_rows_reordered_selected_repeated_then_continued(lm, how):
    """The batch methods change the rows in place; the next forward, with the rows to match, gives transformers'
    logits (torch index tensors are taken, as beam search passes them)."""
    ours, theirs = lm
    mine, ref = minigpt2.DynamicCache(), transformers.DynamicCache()
    hf(theirs, ref, IDS[:, :4])
    ours(IDS[:, :4], past_key_values=mine)
    arg, rows = {"reorder_cache": (torch.tensor([1, 0]), [1, 0]), "batch_select_indices": (torch.tensor([1]), [1]),
                 "batch_repeat_interleave": (2, [0, 0, 1, 1])}[how]
    getattr(ref, how)(arg)
    getattr(mine, how)(arg)
    same_cache(mine, ref)
    next_ids = IDS[rows, 4:6]
    assert_close(ours(next_ids, past_key_values=mine).logits, hf(theirs, ref, next_ids), f"logits after {how}")
    same_cache(mine, ref)


@pytest.mark.parametrize("kwargs", [dict(), dict(return_dict_in_generate=True),
                                    dict(do_sample=True, top_k=1, num_return_sequences=2), dict(num_beams=3)])
@pytest.mark.parametrize("cached", [0, 3])
def test_generate_fills_the_cache_it_is_given(lm, kwargs, cached):
    """generate(past_key_values=DynamicCache()) leaves in that object what transformers leaves in its own: every
    position but the last token's, one row per returned sequence or beam (for beams, the running beams' rows
    follow each library's bookkeeping: compared by shape). A cache of the prompt's first tokens is continued."""
    ours, theirs = lm
    if cached and (kwargs.get("num_beams") or kwargs.get("num_return_sequences")):
        pytest.skip("transformers needs a given cache expanded to one row per beam or returned sequence")
    prompts = IDS[:, :5]
    kwargs = {"max_new_tokens": 4, "pad_token_id": 0, **kwargs}
    mine, ref = minigpt2.DynamicCache(), transformers.DynamicCache()
    if cached:
        hf(theirs, ref, prompts[:, :cached])
        ours(prompts[:, :cached], past_key_values=mine)
    with torch.no_grad():
        want = theirs.generate(torch.tensor(prompts), attention_mask=torch.ones(prompts.shape, dtype=torch.long),
                               past_key_values=ref, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours.generate(prompts, past_key_values=mine, **kwargs)
    if kwargs.get("return_dict_in_generate"):
        assert got.past_key_values is mine
        got, want = got.sequences, want.sequences
    assert np.array_equal(got, want.numpy())
    assert mine.get_seq_length() == ref.get_seq_length() == got.shape[1] - 1
    if kwargs.get("num_beams"):
        assert [k.shape for k, _ in mine.to_legacy_cache()] == [k.shape for k, _ in their_pairs(ref)]
    else:
        same_cache(mine, ref)


def test_legacy_tuples_both_ways_and_copies(lm):
    """from_legacy_cache of transformers' tensors or NumPy arrays, continued, gives transformers' logits;
    to_legacy_cache gives the tuples back; copies and pickles hold their own arrays; reset empties it."""
    ours, theirs = lm
    ref = transformers.DynamicCache()
    hf(theirs, ref, IDS[:, :4])
    legacy = tuple((k, v) for k, v in (
        (layer.keys.clone(), layer.values.clone()) for layer in ref.layers))
    mine = minigpt2.DynamicCache.from_legacy_cache(legacy)
    same_cache(mine, ref)
    again = minigpt2.DynamicCache.from_legacy_cache(mine.to_legacy_cache())
    assert isinstance(mine.to_legacy_cache(), tuple) and len(mine.to_legacy_cache()) == len(ref.layers)
    want = hf(theirs, ref, IDS[:, 4:6])
    for cache in (mine, again, copy.deepcopy(again), pickle.loads(pickle.dumps(again))):
        before = cache.get_seq_length()
        assert_close(ours(IDS[:, 4:6], past_key_values=cache).logits, want, "logits from a legacy cache")
        assert cache.get_seq_length() == before + 2
    assert again.get_seq_length() == 6  # (its copies grew alone)
    empty = minigpt2.DynamicCache.from_legacy_cache(None)
    assert len(empty) == 0 and empty.to_legacy_cache() == ()
    mine.reset()
    assert mine.get_seq_length() == 0 and len(mine) == 0
    fresh = transformers.DynamicCache()
    assert_close(ours(IDS[:, :3], past_key_values=mine).logits, hf(theirs, fresh, IDS[:, :3]), "after reset")
    with pytest.raises(NotImplementedError, match="from_legacy_cache"):
        mine.update(None, None, 0)


def test_kvcache_and_transformers_cache_are_unchanged(lm):
    """KVCache stays immutable (each forward a new one) and transformers' DynamicCache still grows in place."""
    ours, theirs = lm
    past = ours(IDS[:, :3]).past_key_values
    assert type(past) is minigpt2.KVCache
    grown = ours(IDS[:, 3:4], past_key_values=past).past_key_values
    assert type(grown) is minigpt2.KVCache and past.get_seq_length() == 3 and grown.get_seq_length() == 4
    ref, theirs_in_ours = transformers.DynamicCache(), transformers.DynamicCache()
    hf(theirs, ref, IDS[:, :3])
    assert ours(IDS[:, :3], past_key_values=theirs_in_ours).past_key_values is theirs_in_ours
    same_cache(minigpt2.DynamicCache.from_legacy_cache(their_pairs(theirs_in_ours)), ref)
