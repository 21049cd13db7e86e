"""Code written for transformers 5 (the newest 5.x), with ``from transformers import`` swapped for ``from minigpt2
import``: what it does that earlier passes left out, checked against transformers itself on the same tiny random
checkpoint (fp32, eager attention). The main suite's transformers is 4.57: there each test compares with 4.57's
form of the same call (``past_key_values=`` for ``cache=``, crop(n) for crop(-k), ...) and leaves out what only
5.x has; against the newest 5.x (.ci/transformers5.sh) it compares with 5.x's own calls.

Numbers are compared with conftest.assert_close: 1e-5 * max(1, max|ref|), the float32 bound of the whole suite.
No prompt here is padded: transformers 5 fills a fully padded query row with attention to every key, 4.57 (and
minigpt2) to the keys up to it, so outputs at padding positions differ between the two (nothing reads them).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigpt2
from conftest import assert_close, write_hf_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HF5 = int(transformers.__version__.split(".")[0]) >= 5
CACHE = "cache" if HF5 else "past_key_values"  # transformers' name for the cache argument (5.24 renamed it)

IDS = np.array([[5, 6, 7, 8, 9, 11], [1, 2, 3, 4, 10, 12]])


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lm")
    write_hf_checkpoint(directory, "GPT2LMHeadModel", bos_token_id=1, eos_token_id=2)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(directory, attn_implementation="eager").eval()
    return minigpt2.GPT2LMHeadModel.from_pretrained(directory), theirs


def hf(model, **kwargs):
    kwargs = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with torch.no_grad():
        return model(**kwargs) if not kwargs.pop("generate", False) else model.generate(**kwargs)


def cache_of(out):
    return out.cache if HF5 else out.past_key_values


# -- GPT2Config(layer_norm_epsilon=0) ----------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0])
def test_layer_norm_epsilon_zero_computes_what_transformers_does(tmp_path, eps):
    """transformers (4.57 and 5.x) takes layer_norm_epsilon=0.0 (4.57 the int 0 too; 5.x's strict fields want a
    float); minigpt2 refused it as "must be a positive number". With it, a layer norm divides by the standard
    deviation itself: the logits are transformers'."""
    theirs = write_hf_checkpoint(tmp_path, layer_norm_epsilon=0.0)
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert ours.config.layer_norm_epsilon == 0.0
    assert_close(ours(IDS).logits, hf(theirs, input_ids=IDS).logits.numpy(), "logits, layer_norm_epsilon=0")
    assert minigpt2.GPT2Config(layer_norm_epsilon=eps).layer_norm_epsilon == 0
    with pytest.raises(ValueError, match=r"layer_norm_epsilon must be a non-negative number, got -1e-05"):
        minigpt2.GPT2Config(layer_norm_epsilon=-1e-5)  # (a square root of a negative variance: NaN)


# -- the cache: what transformers 5's Cache API asks of it --------------------------------------------------------

def test_the_returned_cache_answers_is_initialized_is_sliding_and_get_mask_sizes_as_transformers(lm):
    """KVCache lacked is_initialized, is_sliding and get_mask_sizes, which transformers' DynamicCache has (4.57 and
    5.x), and get_max_length (5.x's name of get_max_cache_shape). get_mask_sizes takes the new tokens' count (5.x)
    or their cache_position (4.57): both give the DynamicCache's (P + T, 0)."""
    ours, theirs = lm
    mine, ref = ours(IDS, use_cache=True).past_key_values, cache_of(hf(theirs, input_ids=IDS, use_cache=True))
    assert mine.is_initialized is ref.is_initialized is True
    assert mine.is_sliding == ref.is_sliding == [False, False]
    query = 3 if HF5 else torch.arange(6, 9)  # the form this transformers takes
    assert mine.get_mask_sizes(query, 0) == ref.get_mask_sizes(query, 0) == (9, 0)
    assert mine.get_mask_sizes(3) == mine.get_mask_sizes(np.arange(6, 9), layer_idx=1) == (9, 0)
    assert mine.get_mask_sizes(torch.tensor(3)) == (9, 0)
    assert mine.get_max_length() == -1
    if HF5:
        assert ref.get_max_length() == -1
    empty, ref_empty = minigpt2.KVCache.from_legacy_cache(()), transformers.DynamicCache()
    assert empty.is_initialized is ref_empty.is_initialized is False
    assert empty.is_sliding == ref_empty.is_sliding == []
    for bad in (-1, 2.5, "3", None):
        with pytest.raises(ValueError, match=r"get_mask_sizes: query_length \(the number of new tokens\) must be a "
                                             r"non-negative integer, got"):
            mine.get_mask_sizes(bad)


def test_dynamic_cache_made_from_the_models_config_as_transformers(lm):
    """transformers 5's documented loop: ``cache = DynamicCache(config=model.config)``, then
    ``model(**inputs, cache=cache)``. With a minigpt2 config, transformers 5.20 on failed reading its
    per_layer_config (AttributeError); it is the per-layer view now (every layer alike). The model grows that
    cache in place as transformers' does; logits, keys and values are transformers'."""
    ours, theirs = lm
    mine, ref = transformers.DynamicCache(config=ours.config), transformers.DynamicCache(config=theirs.config)
    assert len(mine.layers) == len(ref.layers) and mine.get_seq_length() == ref.get_seq_length() == 0
    for start, stop in ((0, 4), (4, 5), (5, 6)):
        out = ours(IDS[:, start:stop], **{CACHE: mine}, use_cache=True)
        expected = hf(theirs, input_ids=IDS[:, start:stop], **{CACHE: ref}, use_cache=True)
        assert out.past_key_values is mine and mine.get_seq_length() == ref.get_seq_length() == stop
        assert_close(out.logits, expected.logits.numpy(), f"logits of tokens {start}..{stop - 1}")
    for i, (a, b) in enumerate(zip(mine.layers, ref.layers)):
        assert_close(a.keys.numpy(), b.keys.numpy(), f"layer {i} keys")
        assert_close(a.values.numpy(), b.values.numpy(), f"layer {i} values")
    assert minigpt2.GPT2Config(n_layer=3).per_layer_config == [minigpt2.GPT2Config(n_layer=3)] * 3
    with pytest.raises(ValueError, match=r"per_layer_config \(transformers 5's per-layer overrides\) is not "
                                         r"supported: every minigpt2 layer has the config's own sizes"):
        minigpt2.GPT2Config(per_layer_config={0: {"n_inner": 8}})
    assert "per_layer_config" not in minigpt2.GPT2Config(per_layer_config=None).to_dict()


def test_a_transformers_cache_the_model_grew_is_cropped_and_selected_as_transformers(lm):
    """Speculative decoding's and batch pruning's moves, on a transformers DynamicCache that the model grows: crop
    (5.x removes -n positions; 4.57 keeps n), batch_select_indices, reorder_cache, then continuing. The cache and
    the logits after each are transformers'."""
    ours, theirs = lm
    mine, ref = transformers.DynamicCache(), transformers.DynamicCache()
    ours(IDS, **{CACHE: mine})
    hf(theirs, input_ids=IDS, **{CACHE: ref})
    for cache in (mine, ref):
        cache.crop(-2 if HF5 else 4)
    assert mine.get_seq_length() == ref.get_seq_length() == 4
    expected = hf(theirs, input_ids=IDS[:, 4:], **{CACHE: ref}).logits.numpy()
    assert_close(ours(IDS[:, 4:], **{CACHE: mine}).logits, expected, "logits after crop")
    for cache in (mine, ref):
        cache.reorder_cache(torch.tensor([1, 0]))
        cache.batch_select_indices(torch.tensor([1]))
    new = np.array([[13]])
    assert_close(ours(new, **{CACHE: mine}).logits, hf(theirs, input_ids=new, **{CACHE: ref}).logits.numpy(),
                 "logits after reorder_cache and batch_select_indices")
    assert mine.get_seq_length() == ref.get_seq_length() == 7


# -- outputs: "cache", transformers 5's key ---------------------------------------------------------------------

@pytest.mark.parametrize("call", ["forward", "generate"])
def test_outputs_answer_to_the_key_cache_as_transformers_5(lm, call):
    """transformers 5's outputs hold the cache under "cache" (and read "past_key_values" as it). minigpt2's had the
    ``.cache`` attribute, but out["cache"] was a KeyError, "cache" in out False and out.get("cache") None. Now the
    key works as the attribute does; keys() still says past_key_values, as transformers 4's."""
    ours, theirs = lm
    settings = dict(max_new_tokens=2, return_dict_in_generate=True)
    out = ours(IDS, use_cache=True) if call == "forward" else ours.generate(IDS, **settings)
    assert out["cache"] is out.cache is out.past_key_values is out.get("cache") is out["past_key_values"]
    assert "cache" in out and "past_key_values" in out and "past_key_values" in out.keys()
    if HF5:
        ref = hf(theirs, input_ids=IDS, use_cache=True) if call == "forward" else \
            hf(theirs, input_ids=IDS, generate=True, **settings)
        assert ref["cache"] is ref.cache and "cache" in ref and "past_key_values" in ref
    out["cache"] = None
    assert out.past_key_values is None and "cache" not in out
    out.cache = "x"
    assert out.past_key_values == "x"
    with pytest.raises(KeyError, match="cache"):
        minigpt2.GPT2ForQuestionAnswering(ours.config, seed=0)(IDS)["cache"]


# -- generate(cache=...) --------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [dict(), dict(num_beams=2, num_return_sequences=2)], ids=["greedy", "beams"])
def test_generate_takes_the_cache_as_cache_as_transformers_5(lm, settings):
    """transformers 5's generate takes the prompt's cache as ``cache=`` (the name of its forward's argument since
    5.24; past_key_values is deprecated); minigpt2's said "unexpected argument 'cache'". Given a minigpt2 cache of
    the prompts' first 4 tokens, or a transformers DynamicCache that generate grows in place, the ids are
    transformers' (transformers 4.57: given as past_key_values). (transformers' beam search cannot start from a
    prompt's cache of one row per prompt: beams start from an empty one.)"""
    ours, theirs = lm
    kwargs = dict(max_new_tokens=4, do_sample=False, **settings)
    if not settings:
        ref_prompt = cache_of(hf(theirs, input_ids=IDS[:, :4], use_cache=True))
        expected = hf(theirs, input_ids=IDS, generate=True, **{CACHE: ref_prompt}, **kwargs).numpy()
        got = ours.generate(IDS, cache=ours(IDS[:, :4], use_cache=True).past_key_values, **kwargs)
        np.testing.assert_array_equal(got, expected)

    mine, ref = transformers.DynamicCache(), transformers.DynamicCache()
    got = ours.generate(IDS, cache=mine, **kwargs)
    expected = hf(theirs, input_ids=IDS, generate=True, **{CACHE: ref}, **kwargs).numpy()
    np.testing.assert_array_equal(got, expected)
    assert mine.get_seq_length() == ref.get_seq_length()
    # None under either name is no cache given (5.25 runs such a call; forward reads it alike); two caches are refused
    np.testing.assert_array_equal(ours.generate(IDS, cache=None, past_key_values=None, **kwargs),
                                  ours.generate(IDS, **kwargs))
    prompt = ours(IDS[:, :4], use_cache=True).past_key_values
    with pytest.raises(ValueError, match=r"pass the cache once: past_key_values \(transformers 4's name\) or cache"):
        ours.generate(IDS, cache=prompt, past_key_values=prompt, max_new_tokens=1)


# -- transformers 5's generation settings ---------------------------------------------------------------------

@pytest.mark.parametrize("setting", [dict(max_cache_len=32), dict(speculation_type="ngram"),
                                     dict(assistant_ensemble_weight=0.5), dict(top_h=0.4)], ids=str)
def test_transformers_5_settings_that_change_nothing_here_are_accepted(lm, setting):
    """transformers 5's new settings that cannot change these tokens (a cache's size, knobs of assisted decoding,
    which is not on; top_h without sampling, which transformers 5 ignores) were "unexpected argument"s: they are
    accepted, and the ids are transformers' (4.57 has none of them: there, the ids without the setting)."""
    ours, theirs = lm
    expected = hf(theirs, input_ids=IDS, generate=True, max_new_tokens=4, **(setting if HF5 else {})).numpy()
    np.testing.assert_array_equal(ours.generate(IDS, max_new_tokens=4, **setting), expected)


@pytest.mark.parametrize("setting, named", [
    (dict(use_mtp=True), r"use_mtp=True asks for multi-token-prediction decoding \(transformers 5\), which "
                         r"minigpt2's generate does not implement: remove it \(it needs MTP weights, which GPT-2"),
])
def test_transformers_5_strategies_minigpt2_lacks_are_named(lm, setting, named):
    """Multi-token prediction (transformers 5) would generate otherwise than minigpt2 can: a
    ValueError naming the setting, passed to generate or in a transformers GenerationConfig (5.x only: 4.57's has
    no such fields). transformers 5 itself refuses use_mtp for GPT-2, which has no MTP weights."""
    ours, theirs = lm
    with pytest.raises(ValueError, match=named):
        ours.generate(IDS, max_new_tokens=2, **setting)
    if HF5:
        with pytest.raises(ValueError, match=named):
            ours.generate(IDS, generation_config=transformers.GenerationConfig(max_new_tokens=2, **setting))
        if "use_mtp" in setting:
            with pytest.raises(ValueError, match="num_mtp_layers"):
                hf(theirs, input_ids=IDS, generate=True, max_new_tokens=2, **setting)


# -- forward's positional arguments ---------------------------------------------------------------------------

def test_the_first_five_positional_arguments_are_transformers_5s(lm):
    """transformers 5.4 on takes (input_ids, cache, attention_mask, token_type_ids, position_ids) positionally, as
    minigpt2 does (transformers 4.46's order): the same call gives the same logits (4.57 takes cache_position
    third: compared with its keyword call)."""
    ours, theirs = lm
    prompt = ours(IDS[:, :4], use_cache=True).past_key_values
    ref_prompt = cache_of(hf(theirs, input_ids=IDS[:, :4], use_cache=True))
    new, mask, types, positions = IDS[:, 4:], np.ones((2, 6), np.int64), IDS[:, :2] + 1, np.array([[4, 5], [5, 4]])
    got = ours(new, prompt, mask, types, positions).logits
    if HF5:
        with torch.no_grad():
            expected = theirs(torch.tensor(new), ref_prompt, torch.tensor(mask), torch.tensor(types),
                              torch.tensor(positions)).logits
    else:
        expected = hf(theirs, input_ids=new, past_key_values=ref_prompt, attention_mask=mask, token_type_ids=types,
                      position_ids=positions).logits
    assert_close(got, expected.numpy(), "logits of a positional call")


def test_arguments_given_in_another_versions_places_are_named(lm):
    """minigpt2 keeps transformers 4.46's order (5.4 on shares it for the first five; changing it would break those
    calls). Where a caller of 4.57 or 5.0-5.3 passes cache_position third, or a caller of 5.x passes inputs_embeds
    sixth (5.x has no head_mask), the error now says which argument sits there and to pass it by name (it said
    only that the mask held a 2, or that input_ids or inputs_embeds was missing). transformers 4.57 computes the
    cache_position call: by name, minigpt2 gives its logits."""
    ours, theirs = lm
    prompt = ours(IDS[:, :4], use_cache=True).past_key_values
    with pytest.raises(ValueError, match=r"It holds \[4, \.\.\., 5\], the new tokens' cache_position: transformers "
                                         r"4.57 \(and 5.0 to 5.3\) take cache_position third, .* pass "
                                         r"cache_position=\.\.\. by name"):
        ours(IDS[:, 4:], prompt, torch.arange(4, 6))
    got = ours(IDS[:, 4:], prompt, cache_position=np.arange(4, 6)).logits
    assert_close(got, hf(theirs, input_ids=IDS).logits.numpy()[:, 4:], "logits continued with cache_position")
    embeds = np.asarray(ours.params["wte"]["weight"], np.float32)[IDS]  # [2, 6, 32]
    with pytest.raises(ValueError, match=r"pass exactly one of input_ids and inputs_embeds; the head_mask given has "
                                         r"the shape of embeddings \(2, 6, 32\): transformers 5 takes inputs_embeds "
                                         r"sixth, .* pass inputs_embeds=\.\.\. by name"):
        ours(None, None, None, None, None, embeds)
    assert_close(ours(inputs_embeds=embeds).logits, hf(theirs, input_ids=IDS).logits.numpy(), "logits of embeddings")
