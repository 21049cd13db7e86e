"""Code written for transformers 5 (the newest 5.x), with ``from transformers import`` swapped for ``from minigpt2
import``: what the last pass (tests/test_hf5_newuser9.py) left undone, checked against transformers itself on the
same tiny random checkpoint (fp32, eager attention).

    forward(..., cache=...)         model.forward itself takes transformers 5's name (only model(...) did)
    Output(..., cache=...)          the output classes are built with it, as transformers 5's are
    KVCache members of 5.x          is_compileable, is_croppable, batch_size, get_query_offset, is_linear, is_dummy
                                    (what 5.x's attention masks and generate read from a cache)
    top_h                           Top-H sampling (5.x's TopHLogitsWarper), which minigpt2 refused by name

The main suite's transformers is 4.57: there each test compares with 4.57's form of the same call (past_key_values=
for cache=) and what 4.57 lacks (top_h, the newer Cache members) skips, saying so; .ci/transformers5.sh runs this
file against the newest 5.x. Numbers are compared with conftest.assert_close (the suite's float32 bound).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigpt2
from minigpt2 import outputs as our_outputs
from minigpt2.generation import outputs as our_generation_outputs
from minigpt2.generation import processors
from conftest import assert_close, write_hf_checkpoint
from test_hf5_newuser9 import CACHE, HF5, cache_of, hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

only_hf5 = pytest.mark.skipif(not HF5, reason="transformers 5 only (4.57 has no such member or setting): run by "
                                              ".ci/transformers5.sh")

IDS = np.array([[5, 6, 7, 8, 9, 11], [1, 2, 3, 4, 10, 12]])
CHAIN_RTOL = 64 * float(np.finfo(np.float32).eps)  # as tests/test_generation_parity6.py: scores over 64 tokens


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One directory per model class, each with transformers' model: {class name: (directory, transformers')}."""
    made = {}
    for name in ("GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2ForSequenceClassification",
                 "GPT2ForTokenClassification"):
        directory = tmp_path_factory.mktemp(name)
        theirs = write_hf_checkpoint(directory, name, vocab_size=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
        made[name] = directory, theirs
    return made


@pytest.fixture(scope="module")
def lm(checkpoints):
    directory, theirs = checkpoints["GPT2LMHeadModel"]
    return minigpt2.GPT2LMHeadModel.from_pretrained(directory), theirs




# -- model.forward(..., cache=...) ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel",
                                  "GPT2ForSequenceClassification", "GPT2ForTokenClassification"])
def test_forward_itself_takes_the_cache_as_cache_as_transformers_5(checkpoints, name):
    """transformers 5's forward names its cache ``cache`` (past_key_values is deprecated); minigpt2's model(...)
    renamed it, but model.forward(..., cache=...) was "unexpected keyword argument 'cache'". Now forward takes it:
    a minigpt2 cache of the first 4 tokens, and a transformers DynamicCache that forward grows in place, give
    transformers' outputs (4.57: given as past_key_values). Both names at once are refused, as model(...) and
    generate refuse them (transformers 5 warns and takes cache)."""
    directory, theirs = checkpoints[name]
    ours = getattr(minigpt2, name).from_pretrained(directory)
    ids = IDS[:, None] if name == "GPT2DoubleHeadsModel" else IDS  # (one choice per row: [B, 1, T])
    first, rest = ids[..., :4], ids[..., 4:]
    field = "last_hidden_state" if name == "GPT2Model" else "logits"

    theirs_grown = transformers.DynamicCache()  # (grown in place: token classification returns no cache)
    hf(theirs, input_ids=first, use_cache=True, **{CACHE: theirs_grown})
    expected = getattr(hf(theirs, input_ids=rest, **{CACHE: theirs_grown}), field).numpy()
    if name != "GPT2ForTokenClassification":
        prompt = ours.forward(first, use_cache=True).past_key_values
        assert_close(getattr(ours.forward(rest, cache=prompt), field), expected, f"{name}.forward(cache=a KVCache)")
        with pytest.raises(ValueError, match=r"pass the cache once: past_key_values \(transformers 4's name\) or "
                                             r"cache"):
            ours.forward(rest, past_key_values=prompt, cache=prompt)

    mine = transformers.DynamicCache()
    ours.forward(first, cache=mine)
    out = ours.forward(rest, cache=mine, use_cache=True)
    assert mine.get_seq_length() == 6 and getattr(out, "past_key_values", mine) is mine
    assert_close(getattr(out, field), expected, f"{name}.forward(cache=a DynamicCache)")


# -- the output classes, built with cache= --------------------------------------------------------------------

def _their_output_class(name):
    for module in (transformers.modeling_outputs, transformers.models.gpt2.modeling_gpt2, transformers.generation):
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"transformers has no {name}")


@pytest.mark.parametrize("name, first", [
    ("BaseModelOutputWithPastAndCrossAttentions", "last_hidden_state"), ("CausalLMOutputWithCrossAttentions", "logits"),
    ("GPT2DoubleHeadsModelOutput", "logits"), ("SequenceClassifierOutputWithPast", "logits"),
    ("GenerateDecoderOnlyOutput", "sequences"), ("GenerateBeamDecoderOnlyOutput", "sequences")])
def test_output_classes_are_built_with_cache_as_transformers_5s(name, first):
    """transformers 5's output classes have a field ``cache`` (and take past_key_values= for it); minigpt2's,
    built with cache=, raised "unexpected keyword argument 'cache'" (code that builds an output itself, e.g. a
    wrapper returning ``CausalLMOutputWithCrossAttentions(logits=..., cache=...)``). Now cache= fills
    past_key_values: the output holds it where transformers' does (4.57: built with past_key_values=). Both names
    at once are a ValueError in both; an output without a cache still refuses cache= with transformers' TypeError."""
    ours_class = getattr(our_outputs, name, None) or getattr(our_generation_outputs, name)
    theirs_class = _their_output_class(name)
    value, cache = np.arange(3.0), ("the", "cache")
    mine = ours_class(**{first: value, "cache": cache})
    ref = theirs_class(**{first: torch.tensor(value), CACHE: cache})
    assert mine.cache is mine.past_key_values is mine["cache"] is ref[CACHE] is cache
    assert len(mine.to_tuple()) == len(ref.to_tuple()) == 2 and mine[1] is ref[1] is cache
    assert np.array_equal(mine[0], ref[0].numpy())
    with pytest.raises(ValueError, match=rf"{name}: pass the cache once"):
        ours_class(cache=cache, past_key_values=cache)
    if HF5:
        with pytest.raises(ValueError, match="cannot specify both `cache` and `past_key_values`"):
            theirs_class(cache=cache, past_key_values=cache)
    for without_cache in (our_outputs.TokenClassifierOutput, transformers.modeling_outputs.TokenClassifierOutput):
        with pytest.raises(TypeError, match="unexpected keyword argument 'cache'"):
            without_cache(logits=value, cache=cache)


# -- the cache: the members transformers 5's DynamicCache added -------------------------------------------------

def test_the_cache_answers_transformers_5s_newer_members_as_its_dynamic_cache(lm):
    """KVCache lacked is_croppable, batch_size, get_query_offset, is_linear and is_dummy (transformers 5's Cache
    API, which its generate and attention masks read) and is_compileable (4.57 has it too). Each answers as 5.x's
    DynamicCache on the same model and inputs, for a model's cache and for the empty one: batch_size is -1 there
    (its layers record none). A layer the cache has not holds 0 positions, as transformers' get_seq_length and
    get_mask_sizes say (4.57 too; minigpt2 said P)."""
    ours, theirs = lm
    mine, ref = ours(IDS, use_cache=True).past_key_values, cache_of(hf(theirs, input_ids=IDS, use_cache=True))
    empty, ref_empty = minigpt2.KVCache.from_legacy_cache(()), transformers.DynamicCache()
    assert mine.is_compileable is ref.is_compileable is empty.is_compileable is ref_empty.is_compileable is False
    assert mine.get_seq_length(5) == ref.get_seq_length(5) == 0
    query = 3 if HF5 else torch.arange(6, 9)  # the form this transformers takes
    assert mine.get_mask_sizes(query, 5) == ref.get_mask_sizes(query, 5) == (3, 0)
    if not HF5:
        return
    for cache, reference in ((mine, ref), (empty, ref_empty)):
        assert cache.is_croppable is reference.is_croppable is True
        assert cache.batch_size == reference.batch_size == -1
        assert cache.is_linear == reference.is_linear and cache.is_dummy == reference.is_dummy
    assert mine.is_linear == mine.is_dummy == [False, False] and empty.is_linear == empty.is_dummy == []
    for layer in (0, 1, 5):
        assert mine.get_query_offset(layer) == ref.get_query_offset(layer) == (6 if layer < 2 else 0)
    assert empty.get_query_offset() == ref_empty.get_query_offset() == 0


@only_hf5
def test_transformers_5s_attention_mask_builder_reads_the_cache(lm):
    """transformers 5's create_causal_mask (what its models call, and code building masks for a cache) asks the cache
    for get_query_offset, get_mask_sizes and is_sliding: given minigpt2's cache it raised AttributeError; now its
    mask is the one it builds from its own DynamicCache of the same tokens (a left-padded row included)."""
    from transformers.masking_utils import create_causal_mask

    ours, theirs = lm
    mine = ours(IDS[:, :4], use_cache=True).past_key_values
    ref = cache_of(hf(theirs, input_ids=IDS[:, :4], use_cache=True))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[0, 0] = 0
    settings = dict(config=theirs.config, inputs_embeds=torch.empty(2, 2, 0), attention_mask=mask,
                    position_ids=torch.arange(4, 6)[None])
    expected = create_causal_mask(cache=ref, **settings)
    got = create_causal_mask(cache=mine, **settings)
    assert got.shape == expected.shape == (2, 1, 2, 6) and torch.equal(got, expected)


# -- top_h: Top-H sampling ------------------------------------------------------------------------------------

def _random_scores(rows, V, seed):
    """Logits of every sharpness (a near-uniform row to one token of p ~ 1), some tokens already ruled out."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((rows, V)) * rng.choice([0.3, 1, 3, 10, 40], (rows, 1))
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    return scores.astype(np.float32)


@only_hf5
@pytest.mark.parametrize("V", [64, 1000, 50257])
@pytest.mark.parametrize("top_h", [0.1, 0.4, 0.7, 0.9])
def test_top_h_warper_rules_out_what_transformers_5s_does(V, top_h):
    """minigpt2 had no Top-H (transformers 5's TopHLogitsWarper). On the same float32 scores its warper rules out
    exactly the tokens transformers' does and leaves the others' scores as they were (400 rows of all sharpnesses,
    or 60 of GPT-2's vocabulary; vocabularies below and above its cap of 100 tokens). (top_h = 1 is not compared:
    there the last tokens' running entropy equals the whole entropy, and float rounding alone keeps or drops them,
    in transformers too.)"""
    scores = _random_scores(60 if V > 1000 else 400, V, seed=V + int(top_h * 10))
    expected = transformers.TopHLogitsWarper(top_h)(None, torch.tensor(scores)).numpy()
    got = minigpt2.TopHLogitsWarper(top_h)(None, scores)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    np.testing.assert_array_equal(got, expected)


@only_hf5
@pytest.mark.parametrize("bad, error", [(0, ValueError), (-0.2, ValueError), (1.5, ValueError),
                                        (float("nan"), ValueError), ("0.4", TypeError)])
def test_top_h_is_refused_where_transformers_5_refuses_it(lm, bad, error):
    """top_h must be in (0, 1]: transformers 5 raises a ValueError when it builds the warper (so when sampling),
    a TypeError for a string. minigpt2 the same, naming top_h and its range (a bool, which transformers takes as a
    number, is a TypeError here, as for every number setting)."""
    ours, theirs = lm
    with pytest.raises(error):
        transformers.TopHLogitsWarper(bad)
    with pytest.raises(error):
        hf(theirs, input_ids=IDS, generate=True, do_sample=True, top_h=bad, max_new_tokens=2)
    named = r"top_h must be (in \(0, 1\] \(the share of the entropy kept\)|a number|finite)"
    with pytest.raises(error, match=named):
        ours.generate(IDS, do_sample=True, top_h=bad, max_new_tokens=2)
    if error is ValueError:
        with pytest.raises(error, match=named):
            processors.TopHLogitsWarper(bad)


@only_hf5
@pytest.mark.parametrize("settings", [dict(top_h=0.4), dict(top_h=0.6, temperature=0.7, top_k=20, top_p=0.9),
                                      dict(top_h=0.5, num_beams=2), dict(top_h=0.9, top_k=None)], ids=str)
def test_sampling_with_top_h_draws_from_transformers_5s_chain(lm, settings):
    """generate(do_sample=True, top_h=...) refused "Top-H sampling ... does not implement". Draws differ from
    transformers' (NumPy's generator, not torch's), so what is drawn from is compared: each step's scores
    (output_scores) against transformers 5's own processors (its _get_logits_processor: temperature, top-h, top-k,
    top-p, in its order) on that step's logits and ids, and every drawn token is one they keep. Beam sampling's
    scores add each beam's running score to the processed log-probabilities: one number per row apart. The same
    settings in a transformers GenerationConfig give the same tokens. (top_h = 1: see the warper's test.)"""
    ours, theirs = lm
    T = IDS.shape[1]
    kwargs = dict(do_sample=True, max_new_tokens=5, pad_token_id=0, **settings)
    out = ours.generate(IDS, return_dict_in_generate=True, output_scores=True, output_logits=True, seed=3, **kwargs)
    config = transformers.GenerationConfig(**{**theirs.generation_config.to_dict(), **kwargs})
    theirs._prepare_special_tokens(config, True, device="cpu")
    chain = theirs._get_logits_processor(generation_config=config, input_ids_seq_length=T, device="cpu")
    assert "TopHLogitsWarper" in [type(p).__name__ for p in chain]
    beams = settings.get("num_beams", 1) > 1
    for t, (scores, logits) in enumerate(zip(out.scores, out.logits)):
        if not beams:
            ref = chain(torch.tensor(out.sequences[:, :T + t]), torch.tensor(logits)).numpy()
            assert (np.isneginf(ref) == np.isneginf(scores)).all(), f"step {t}: other tokens ruled out"
            assert_close(np.where(np.isneginf(ref), 0, scores), np.where(np.isneginf(ref), 0, ref), f"step {t}",
                         rtol=CHAIN_RTOL)
            assert np.isfinite(ref[np.arange(len(ref)), out.sequences[:, T + t]]).all(), f"step {t}: drew a ruled-out"
        else:
            ref = chain(torch.zeros((len(logits), T + t), dtype=torch.long),
                        torch.log_softmax(torch.tensor(logits), -1)).numpy()
            assert (np.isneginf(ref) == np.isneginf(scores)).all(), f"step {t}: other tokens ruled out"
            with np.errstate(invalid="ignore"):  # (-inf - -inf: the ruled-out tokens, left out)
                shift = np.where(np.isfinite(ref), scores.astype(np.float64) - ref, np.nan)
            spread = np.nanmax(shift, axis=1) - np.nanmin(shift, axis=1)
            assert (spread <= CHAIN_RTOL * np.maximum(1, np.nanmax(np.abs(scores), axis=1))).all(), (t, spread)
    same = ours.generate(IDS, generation_config=transformers.GenerationConfig(**kwargs), seed=3)
    np.testing.assert_array_equal(same, out.sequences)


@only_hf5
def test_top_h_without_sampling_changes_nothing_and_is_named_as_transformers_5_names_it(lm):
    """Greedy decoding never reads top_h (transformers 5 builds its warper only when sampling): the ids are
    transformers', and both say top_h is set without do_sample (transformers' strict validation lists it; minigpt2
    warns, as for temperature or top_p)."""
    ours, theirs = lm
    expected = hf(theirs, input_ids=IDS, generate=True, max_new_tokens=4, top_h=0.4).numpy()
    with pytest.warns(UserWarning, match=r"top_h=0.4 only matter\(s\) when sampling"):
        np.testing.assert_array_equal(ours.generate(IDS, max_new_tokens=4, top_h=0.4), expected)
    with pytest.raises(ValueError, match=r"`top_h`: `do_sample` is not set to `True`"):
        transformers.GenerationConfig(top_h=0.4).validate(strict=True)
