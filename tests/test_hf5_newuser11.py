"""Code written for transformers (4.57 and the newest 5.x), with ``from transformers import`` swapped for ``from
minigpt2 import``: what the earlier passes (tests/test_hf5_newuser9.py, tests/test_hf5_newuser10.py) left, checked
against transformers itself on the same tiny random checkpoint (fp32, eager attention).

    past_key_values= and cache= at once    refused, saying what transformers 5 and 4.57 would do with each
    top_h=True                             a bool for a number setting: named, with what transformers reads

The main suite's transformers is 4.57: there each test compares with 4.57's form of the same call and leaves out what
only 5.x has, saying so; .ci/transformers5.sh runs this file against the newest 5.x. Logits are compared within
1e-5 * max(1, max|logit|), the suite's float32 bound (conftest.RTOL).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import minigpt2
from conftest import assert_close, write_hf_checkpoint
from test_hf5_newuser9 import CACHE, HF5, hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

IDS = np.array([[5, 6, 7, 8, 9, 11], [1, 2, 3, 4, 10, 12]])


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lm")
    write_hf_checkpoint(directory, "GPT2LMHeadModel", vocab_size=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(directory, attn_implementation="eager").eval()
    return minigpt2.GPT2LMHeadModel.from_pretrained(directory), theirs


# -- past_key_values and cache, both given ------------------------------------------------------------------------

def test_both_cache_names_are_refused_saying_what_each_transformers_would_do(lm):
    """Two caches, one under each name, to forward or generate: transformers 5 uses ``cache`` and ignores
    past_key_values (a FutureWarning), transformers 4.57's forward ignores ``cache`` (an unknown keyword: its logits
    are those of past_key_values) and its generate refuses ``cache``. Ported code that passes both meant one of them
    for nothing, and which depends on the version it was written for, so minigpt2 refuses the call; its message said
    only "pass the cache once", now it also says what each version would do. (Each name alone: the other tests.)"""
    ours, theirs = lm
    mine = {name: ours(IDS[:, :n], use_cache=True).past_key_values for name, n in (("cache", 3), ("past", 2))}
    refs = {}
    for name, n in (("cache", 3), ("past", 2)):
        refs[name] = transformers.DynamicCache()
        hf(theirs, input_ids=IDS[:, :n], use_cache=True, **{CACHE: refs[name]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        both = hf(theirs, input_ids=IDS[:, 3:4], cache=refs["cache"], past_key_values=refs["past"]).logits.numpy()
    used = ours(IDS[:, 3:4], past_key_values=mine["cache" if HF5 else "past"]).logits
    assert_close(used, both, "the cache transformers used of the two")
    if HF5:
        assert any(w.category is FutureWarning and "Both `past_key_values` and `cache` are set" in str(w.message)
                   for w in caught)
    else:
        with pytest.raises(ValueError, match=r"model_kwargs` are not used by the model: \['cache'\]"):
            hf(theirs, input_ids=IDS, generate=True, max_new_tokens=1, cache=refs["cache"])

    said = (r"pass the cache once: past_key_values \(transformers 4's name\) or cache \(transformers 5's\), not both "
            r"\(transformers 5 would use cache and ignore past_key_values, 4.57's forward would ignore cache\)")
    for call in (lambda: ours.forward(IDS[:, 3:4], past_key_values=mine["past"], cache=mine["cache"]),
                 lambda: ours.generate(IDS, max_new_tokens=1, past_key_values=mine["past"], cache=mine["cache"])):
        with pytest.raises(ValueError, match=said):
            call()


def test_a_cache_beside_the_other_name_given_as_none_is_the_cache(lm):
    """``model(ids, cache=c, past_key_values=None)`` (a wrapper that passes every argument by name) runs as
    transformers 5.25 runs it, with cache c (and 4.57, whose forward takes ``cache`` into its unused kwargs, with
    past_key_values c): calling the model said "pass the cache once" where ``model.forward`` took the same call."""
    ours, theirs = lm
    mine = ours(IDS[:, :3], use_cache=True).past_key_values
    ref = transformers.DynamicCache()
    hf(theirs, input_ids=IDS[:, :3], use_cache=True, **{CACHE: ref})
    expected = hf(theirs, input_ids=IDS[:, 3:4], **{CACHE: ref}).logits.numpy()
    for given in (dict(cache=mine, past_key_values=None), dict(cache=None, past_key_values=mine)):
        assert_close(ours(IDS[:, 3:4], **given).logits, expected, f"model(..., {', '.join(given)})")


# -- a bool for a number setting (top_h=True) -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["top_h", "top_p", "temperature"])
def test_a_bool_for_a_number_setting_is_named_with_what_transformers_reads(lm, name):
    """generate(do_sample=True, top_h=True) (Top-H taken for a switch, as do_sample is) was "top_h must be a number,
    got True". transformers 5 reads True as 1.0, where Top-H keeps about every token: the tokens it draws are those of
    top_h=1.0 (temperature and top_p likewise, in 4.57 too; 4.57 has no top_h at all). minigpt2 still refuses a bool
    (a switch is not a setting), now saying so and naming the number transformers reads."""
    ours, theirs = lm
    if name != "top_h" or HF5:
        drawn = []
        for value in (True, 1.0):
            torch.manual_seed(0)
            drawn.append(hf(theirs, input_ids=IDS, generate=True, do_sample=True, max_new_tokens=4, **{name: value}))
        assert torch.equal(*drawn)
    else:
        with pytest.raises(ValueError, match=r"model_kwargs` are not used by the model: \['top_h'\]"):
            hf(theirs, input_ids=IDS, generate=True, do_sample=True, max_new_tokens=4, top_h=True)
    said = rf"{name} must be a number, got {name}=True: it is not a switch but the setting itself, a number "
    with pytest.raises(TypeError, match=said + r"\(transformers would read True as 1.0"):
        ours.generate(IDS, do_sample=True, max_new_tokens=4, **{name: True})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (1.0 is a value like any other: no warning)
        assert ours.generate(IDS, do_sample=True, max_new_tokens=4, seed=0, **{name: 1.0}).shape == (2, 10)


# -- Top-H among equal scores -------------------------------------------------------------------------------------

def _scores_with_ties(rows, V, seed):
    """Rows of float32 scores whose best ones are equal: a group of 2 to 95 tokens at one score (as a processor that
    flattens the allowed tokens leaves them, or logits of coarse precision), the rest lower, some ruled out. (With
    100 or more equal, Top-H's 100 tokens are all alike, and top_h * 100 tokens is a whole number: see the test.)"""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((rows, V)).astype(np.float32)
    for row in scores:
        tied = rng.choice(V, size=min(V - 1, rng.integers(2, 96)), replace=False)
        row[tied] = row.max() + rng.choice([0.0, 0.5, 3.0])
        row[rng.random(V) < 0.05] = -np.inf
    return scores


@pytest.mark.skipif(not HF5, reason="transformers 5 only (4.57 has no Top-H): run by .ci/transformers5.sh")
@pytest.mark.parametrize("V", [64, 1000, 50257])
@pytest.mark.parametrize("top_h", [0.3, 0.55, 0.85])
def test_top_h_keeps_the_equal_scores_transformers_5_keeps(V, top_h):
    """Where Top-H's cut falls inside a group of equal scores, which of them are kept follows their order.
    transformers 5 takes them in torch.topk's order; minigpt2 took the lowest ids first, and kept other tokens in
    most such rows. Now it replays torch.topk's order (ties.py: std::nth_element and
    std::sort below 6400 tokens, std::partial_sort from there) for the rows with equal scores: the same tokens are
    ruled out and the others keep their scores, bit for bit, on 40 rows (vocabularies below and above the 100 tokens
    Top-H looks at, and GPT-2's). (When all 100 tokens Top-H looks at are equal and top_h * 100 is a whole number,
    the cut lands exactly on one of them and float rounding decides, in transformers too: the groups here hold
    fewer.)"""
    scores = _scores_with_ties(40, V, seed=V + int(top_h * 100))
    expected = transformers.TopHLogitsWarper(top_h)(None, torch.tensor(scores)).numpy()
    got = minigpt2.TopHLogitsWarper(top_h)(None, scores)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    np.testing.assert_array_equal(got, expected)


# -- GenerationConfig(**settings) with transformers' names ----------------------------------------------------------

def test_generation_config_takes_what_transformers_generation_config_takes(lm):
    """``GenerationConfig(**settings)`` with the settings of a transformers GenerationConfig (its to_dict(), or a
    generation_config.json read with json.load) raised "unexpected keyword argument 'transformers_version'" (then
    '_from_model_config', 'cache_implementation', ...): minigpt2's dataclass took only its fields, where
    transformers' takes any name. Now it takes transformers' metadata (skipped) and its settings minigpt2 has no
    field for (inert ones accepted, one that would act refused by generate, as given to generate itself), and the
    ids are transformers' from the same settings. A name neither knows is still a TypeError, naming the field it
    looks like (transformers keeps it: a misspelt setting does nothing there)."""
    ours, theirs = lm
    settings = {**theirs.generation_config.to_dict(), "max_new_tokens": 4, "num_beams": 2, "pad_token_id": 0,
                "cache_implementation": "dynamic"}
    expected = hf(theirs, input_ids=IDS, generate=True, generation_config=transformers.GenerationConfig(**settings))
    np.testing.assert_array_equal(ours.generate(IDS, generation_config=minigpt2.GenerationConfig(**settings)),
                                  expected.numpy())

    group = minigpt2.GenerationConfig(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"num_beam_groups=2 asks for group \(diverse\) beam search"):
        ours.generate(IDS, generation_config=group)
    assert transformers.GenerationConfig(max_new_token=4).max_new_token == 4  # (kept, and never read)
    with pytest.raises(TypeError, match=r"GenerationConfig got unexpected setting\(s\) 'max_new_token' \(did you mean "
                                        r"'max_new_tokens'\?\)"):
        minigpt2.GenerationConfig(max_new_token=4)


@pytest.mark.parametrize("settings", [dict(temperature=0.5), dict(top_k=10, top_p=0.9), dict(length_penalty=2.0),
                                      dict(max_new_tokens=4), dict(do_sample=True, temperature=0.5),
                                      dict(num_beams=2, length_penalty=2.0), dict(top_h=0.4)], ids=str)
def test_validate_strict_refuses_what_transformers_strict_validation_refuses(settings):
    """``generation_config.validate(strict=True)`` (transformers 4.57 and 5.x: a setting the strategy ignores is an
    error, not a warning) was "unexpected keyword argument 'strict'". Now the same settings are refused, a ValueError
    naming each (what generate warns about), and the others pass, as in transformers. (top_h: 5.x only.)"""
    if "top_h" in settings and not HF5:
        pytest.skip("transformers 5 only (4.57 has no top_h): run by .ci/transformers5.sh")
    try:
        transformers.GenerationConfig(**settings).validate(strict=True)
        refused = False
    except ValueError:
        refused = True
    ours = minigpt2.GenerationConfig(**settings)
    if not refused:
        ours.validate(strict=True)
        return
    ignored = [name for name in settings if name not in ("do_sample", "num_beams")]
    named = "".join(f"(?=.*{name}=)" for name in ignored)  # (each, in any order)
    with pytest.raises(ValueError, match=r"GenerationConfig is invalid \(strict\): " + named):
        ours.validate(strict=True)
    ours.validate()  # (not strict: generate only warns)


# -- the tokenizer's whole output as generate's prompt --------------------------------------------------------------

def test_the_tokenizers_output_as_the_prompt_is_named(lm):
    """``model.generate(inputs)`` with ``inputs = tokenizer(text, return_tensors=...)`` (``**`` forgotten): transformers
    (4.57 and 5.x) fails inside, with a bare AttributeError; minigpt2 said "input_ids must be integer token ids, got
    dtype object". Now a TypeError says it got the tokenizer's output and to unpack it (its ids and mask, unpacked,
    give transformers' tokens), for minigpt2's and transformers' BatchEncoding and a plain dict."""
    ours, theirs = lm
    ids, mask = IDS[:1, 1:], np.ones((1, 5), np.int64)
    theirs_encoding = transformers.BatchEncoding({"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)})
    with pytest.raises(AttributeError):
        hf(theirs, inputs=theirs_encoding, generate=True, max_new_tokens=2)
    expected = hf(theirs, generate=True, max_new_tokens=2, **theirs_encoding).numpy()
    ours_encoding = minigpt2.tokenizer.BatchEncoding({"input_ids": ids, "attention_mask": mask})
    np.testing.assert_array_equal(ours.generate(**ours_encoding, max_new_tokens=2), expected)
    for given in (ours_encoding, theirs_encoding, {"input_ids": ids}):
        with pytest.raises(TypeError, match=r"generate\(\) got the tokenizer's output \((BatchEncoding|dict) of "
                                            r"input_ids.*\) as its prompt: unpack it, generate\(\*\*inputs\)"):
            ours.generate(given, max_new_tokens=2)


@pytest.mark.parametrize("name", ["GPT2Model", "GPT2LMHeadModel", "GPT2ForSequenceClassification"])
def test_the_tokenizers_output_as_input_ids_is_named(tmp_path, name):
    """``model(inputs)`` with the tokenizer's output (``**`` forgotten): transformers fails with an AttributeError or
    a KeyError that do not say why, minigpt2 said "input_ids must hold integers, got dtype object". Now every model's
    forward says it got the tokenizer's output and to unpack it; unpacked, the outputs are transformers' (within
    conftest's float32 bound)."""
    theirs = write_hf_checkpoint(tmp_path, name, vocab_size=64, pad_token_id=0)
    ours = getattr(minigpt2, name).from_pretrained(tmp_path)
    ids, mask = IDS[:, 1:], np.ones((2, 5), np.int64)
    theirs_encoding = transformers.BatchEncoding({"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)})
    with pytest.raises((AttributeError, KeyError)), torch.no_grad():  # (KeyError: a BatchEncoding built by hand)
        theirs(theirs_encoding)
    field = "last_hidden_state" if name == "GPT2Model" else "logits"
    ours_encoding = minigpt2.tokenizer.BatchEncoding({"input_ids": ids, "attention_mask": mask})
    assert_close(getattr(ours(**ours_encoding), field), getattr(hf(theirs, **theirs_encoding), field).numpy(), field)
    for given in (ours_encoding, theirs_encoding):
        with pytest.raises(TypeError, match=r"input_ids is the tokenizer's output \(BatchEncoding of input_ids, "
                                            r"attention_mask\): unpack it, model\(\*\*inputs\)"):
            ours(given)
