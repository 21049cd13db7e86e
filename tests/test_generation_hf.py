"""generate() as a transformers 4.57 user calls it, against transformers' own generate on the same checkpoint.

Ids are compared token for token (greedy and beam search only compare scores; the checkpoints are wide random
models whose best scores are far apart). Scores within 1e-5 * max(1, max|ref|), float32 rounding through two
layers and a log-softmax (as tests/conftest.py's assert_close).
"""
from __future__ import annotations

import gzip
import pathlib
import warnings

import numpy as np
import pytest

import minigpt2
from minigpt2 import GPT2LMHeadModel, LogitsProcessorList
from minigpt2.generation import RepetitionPenaltyLogitsProcessor

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, write_hf_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A vocabulary of 64 with eos 0: (transformers model, minigpt2 model)."""
    d = tmp_path_factory.mktemp("small")
    hf = write_hf_checkpoint(d, seed=1, vocab_size=64, n_positions=64, eos_token_id=0, bos_token_id=0)
    return hf, GPT2LMHeadModel.from_pretrained(d)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """GPT-2's whole vocabulary and tokenizer files (bundled), a tiny random model: (hf, ours, hf_tok, our_tok)."""
    d = tmp_path_factory.mktemp("full")
    hf = write_hf_checkpoint(d, seed=2, vocab_size=50257, n_positions=320, n_embd=16, n_layer=2, n_head=2)
    from minigpt2 import bpe

    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (d / theirs).write_bytes(gzip.decompress(pathlib.Path(bpe.DATA_DIR, ours + ".gz").read_bytes()))
    hf_tok = transformers.GPT2Tokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    return hf, GPT2LMHeadModel.from_pretrained(d), hf_tok, minigpt2.GPT2Tokenizer.from_pretrained(str(d))


def _hf_generate(hf, ids, **kwargs):
    with torch.no_grad():
        out = hf.generate(torch.tensor(ids), attention_mask=torch.ones(np.shape(ids), dtype=torch.long), **kwargs)
    return out


def _same(ours, theirs):
    theirs = theirs.numpy() if hasattr(theirs, "numpy") else np.asarray(theirs)
    assert ours.shape == theirs.shape and (ours == theirs).all(), f"ours\n{ours}\ntransformers\n{theirs}"


# -- issue 10: a small vocabulary with GPT2Config's default special tokens (eos 50256) --------------------

@pytest.mark.parametrize("kwargs", [dict(max_new_tokens=8), dict(max_new_tokens=6, num_beams=3),
                                    dict(max_new_tokens=6, min_new_tokens=3)])
def test_default_special_tokens_outside_a_small_vocabulary(tmp_path, kwargs):
    hf = write_hf_checkpoint(tmp_path, seed=3, vocab_size=64, n_positions=32)  # eos = bos = 50256
    ours = GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = np.random.default_rng(0).integers(0, 64, (2, 5))
    with pytest.warns(UserWarning, match="50256 is outside this model's vocabulary"):
        got = ours.generate(ids, **kwargs)
    _same(got, _hf_generate(hf, ids, **kwargs))


# -- issue 16 item 1: no length argument means 20 new tokens (transformers 4.57) --------------------------

@pytest.mark.parametrize("length", [1, 11, 22, 50])  # 50: 20 new tokens would pass n_positions=64: capped
def test_no_length_argument_gives_20_new_tokens(small, length):
    hf, ours = small
    ids = np.random.default_rng(length).integers(1, 64, (1, length))
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    got = ours.generate(**inputs, eos_token_id=None)
    _same(got, _hf_generate(hf, ids, eos_token_id=None))
    assert got.shape[1] == min(length + 20, 64)


def test_an_explicit_max_length_still_counts_the_prompt(small):
    hf, ours = small
    ids = np.random.default_rng(5).integers(1, 64, (1, 11))
    _same(ours.generate(ids, max_length=15, eos_token_id=None), _hf_generate(hf, ids, max_length=15, eos_token_id=None))


# -- issue 16 item 2: logits_processor=LogitsProcessorList([...]) -----------------------------------------

def test_logits_processor_list_as_in_transformers(small):
    hf, ours = small
    ids = np.random.default_rng(6).integers(1, 64, (2, 5))
    _same(ours.generate(ids, max_new_tokens=8, logits_processor=LogitsProcessorList()),
          _hf_generate(hf, ids, max_new_tokens=8, logits_processor=transformers.LogitsProcessorList()))
    _same(ours.generate(ids, max_new_tokens=8, logits_processor=LogitsProcessorList(
        [RepetitionPenaltyLogitsProcessor(3.0)])),
          _hf_generate(hf, ids, max_new_tokens=8, logits_processor=transformers.LogitsProcessorList(
              [transformers.RepetitionPenaltyLogitsProcessor(3.0)])))
    # One of the same class as a built-in replaces it (4.57; 4.46 raised ValueError).
    _same(ours.generate(ids, max_new_tokens=8, repetition_penalty=1.1,
                        logits_processor=[RepetitionPenaltyLogitsProcessor(3.0)]),
          _hf_generate(hf, ids, max_new_tokens=8, repetition_penalty=1.1,
                       logits_processor=transformers.LogitsProcessorList(
                           [transformers.RepetitionPenaltyLogitsProcessor(3.0)])))


# -- issue 16 item 6: compute_transition_scores and beam_indices ------------------------------------------

def test_transition_scores_greedy(small):
    hf, ours = small
    ids = np.random.default_rng(7).integers(1, 64, (2, 4))
    out = ours.generate(ids, max_new_tokens=6, return_dict_in_generate=True, output_scores=True)
    ref = _hf_generate(hf, ids, max_new_tokens=6, return_dict_in_generate=True, output_scores=True)
    _same(out.sequences, ref.sequences)
    for normalize in (False, True):
        got = ours.compute_transition_scores(out.sequences, out.scores, normalize_logits=normalize)
        want = hf.compute_transition_scores(ref.sequences, ref.scores, normalize_logits=normalize).numpy()
        assert_close(got, want, f"transition scores normalize_logits={normalize}")


@pytest.mark.parametrize("kwargs", [dict(num_beams=3, num_return_sequences=2),
                                    dict(num_beams=4, num_return_sequences=3, length_penalty=0.0)])
def test_transition_scores_and_beam_indices_beam_search(small, kwargs):
    hf, ours = small
    ids = np.random.default_rng(8).integers(1, 64, (2, 4))
    common = dict(max_new_tokens=9, return_dict_in_generate=True, output_scores=True, **kwargs)
    out, ref = ours.generate(ids, **common), _hf_generate(hf, ids, **common)
    _same(out.sequences, ref.sequences)
    _same(out.beam_indices, ref.beam_indices)
    assert_close(out.sequences_scores, ref.sequences_scores.numpy(), "sequences_scores")
    got = ours.compute_transition_scores(out.sequences, out.scores, out.beam_indices)
    want = hf.compute_transition_scores(ref.sequences, ref.scores, ref.beam_indices).numpy()
    assert_close(got, want, "beam transition scores")
    # transformers' documented identity: the summed transition scores, length-normalised, are the sequence scores
    lengths = (out.beam_indices >= 0).sum(axis=1)
    lp = kwargs.get("length_penalty", 1.0)
    assert_close(got.sum(axis=1) / lengths ** lp, out.sequences_scores, "sum of transition scores")


# -- issue 16 item 8: stop_strings ------------------------------------------------------------------------

def test_stop_strings_as_in_transformers(full):
    hf, ours, hf_tok, tok = full
    ids = np.array([list(row[:4]) for row in tok(["The quick brown fox", "Hello world, my"]).input_ids])
    free = ours.generate(ids, max_new_tokens=12, eos_token_id=None, pad_token_id=0)
    _same(free, _hf_generate(hf, ids, max_new_tokens=12, eos_token_id=None, pad_token_id=0))
    text = tok.decode(free[0, 4:])
    # Stop strings cut across token boundaries, sit inside a token, or never occur.
    stops = [text[5:9], text[len(text) // 2: len(text) // 2 + 2], "zq never occurs"]
    for stop in stops:
        for kwargs in (dict(), dict(num_beams=2)):
            got = ours.generate(ids, max_new_tokens=12, stop_strings=stop, tokenizer=tok, eos_token_id=None,
                                pad_token_id=0, **kwargs)
            want = _hf_generate(hf, ids, max_new_tokens=12, stop_strings=stop, tokenizer=hf_tok, eos_token_id=None,
                                pad_token_id=0, **kwargs)
            _same(got, want)
    # A batch runs until every row has stopped (rows that stopped go on, unpadded, without an eos: as HF).
    assert ours.generate(ids[:1], max_new_tokens=12, stop_strings=[stops[0]], tokenizer=tok, eos_token_id=None,
                         pad_token_id=0).shape[1] < 16


def test_stop_strings_need_the_tokenizer(small):
    with pytest.raises(ValueError, match="tokenizer"):
        small[1].generate(np.array([[1, 2]]), max_new_tokens=3, stop_strings=["x"])
    with pytest.raises(ValueError, match="stop_strings must be"):
        small[1].generate(np.array([[1, 2]]), max_new_tokens=3, stop_strings=[""], tokenizer=object())


def test_stop_string_rule_by_hand():
    """HF's documented examples for the stop string "stop" (StopStringCriteria's docstring)."""
    from minigpt2.generation import StopStringCriteria

    pieces = ["st", "op", "stop", "opera", "sto", "pper", "las", "topper", "s", "to", "pped", "at", "tion", "xstop"]

    class Tok:
        def decode(self, ids, **kwargs):
            return "".join(pieces[i] for i in ids)

    def stops(*words):
        return bool(StopStringCriteria(Tok(), ["stop"])(np.array([[pieces.index(w) for w in words]]))[0])

    for match in (["st", "op"], ["stop"], ["st", "opera"], ["sto", "pper"], ["las", "topper"], ["s", "to", "pped"],
                  ["xstop"]):  # (inside the last token: transformers 4.57 stops on "world" in ["Hello", " world"])
        assert stops(*match), match
    for no_match in (["stop", "at"], ["st", "op", "at"], ["st", "opera", "tion"]):
        assert not stops(*no_match), no_match


def test_stop_string_criteria_against_transformers(full):
    """Our criteria and transformers' StopStringCriteria on the same token ids, for stop strings that end in, lie
    inside, overhang or miss the last token (its text: " world", after "Hello" or "Hello, wonderful")."""
    import torch
    from transformers import StopStringCriteria as HFStopStringCriteria

    from minigpt2.generation import StopStringCriteria

    _, _, hf_tok, tok = full
    texts = ["Hello world", "Hello, wonderful world", "world", "xx", " world!"]
    stops = ["world", "orl", " world", "o world", "Hello", "lo", "ld", "d", "Hello w", "xworld", "l wo", "ful wor",
             "!", "d!", "x", "wonderful"]
    for stop in stops:  # (one criteria per stop string: transformers' reads the whole vocabulary when made)
        theirs, ours = HFStopStringCriteria(hf_tok, [stop]), StopStringCriteria(tok, [stop])
        for text in texts:
            ids = np.array([tok(text).input_ids])
            want = bool(theirs(torch.tensor(ids), None)[0])
            assert bool(ours(ids)[0]) == want, (text, stop, want)


# -- a sweep of everyday snippets ---------------------------------------------------------------------------

def test_everyday_generate_snippets(full):
    """Snippets from transformers' docs and model cards, run on both libraries."""
    hf, ours, hf_tok, tok = full
    text = "Hello, my dog is cute and"
    ours_in, hf_in = tok(text, return_tensors="np"), hf_tok(text, return_tensors="pt")
    with torch.no_grad():
        cases = [
            (ours.generate(**ours_in), hf.generate(**hf_in)),  # the quick tour: no length argument
            (ours.generate(**ours_in, max_new_tokens=15, num_beams=4, early_stopping=True),
             hf.generate(**hf_in, max_new_tokens=15, num_beams=4, early_stopping=True)),
            (ours.generate(**ours_in, max_new_tokens=15, no_repeat_ngram_size=2, num_beams=3),
             hf.generate(**hf_in, max_new_tokens=15, no_repeat_ngram_size=2, num_beams=3)),
            (ours.generate(**ours_in, max_new_tokens=10, pad_token_id=tok.eos_token_id),
             hf.generate(**hf_in, max_new_tokens=10, pad_token_id=hf_tok.eos_token_id)),
            (ours.generate(ours_in.input_ids, max_length=12), hf.generate(hf_in.input_ids, max_length=12)),
            (ours.generate(**ours_in, max_new_tokens=8, generation_config=minigpt2.GenerationConfig(num_beams=2)),
             hf.generate(**hf_in, max_new_tokens=8, generation_config=transformers.GenerationConfig(num_beams=2))),
        ]
    for got, want in cases:
        _same(got, want)
    assert tok.batch_decode(cases[0][0], skip_special_tokens=True) == \
        hf_tok.batch_decode(cases[0][1], skip_special_tokens=True)


def test_generation_config_from_the_model_fills_defaults_as_in_4_57(small):
    """generate(generation_config=...) takes the model's non-default settings where the given config has the
    library default (transformers >= 4.50 for a checkpoint saved by it)."""
    hf, ours = small
    ours.generation_config.no_repeat_ngram_size = hf.generation_config.no_repeat_ngram_size = 2
    try:
        ids = np.random.default_rng(9).integers(1, 64, (1, 5))
        _same(ours.generate(ids, generation_config=minigpt2.GenerationConfig(max_new_tokens=10)),
              _hf_generate(hf, ids, generation_config=transformers.GenerationConfig(max_new_tokens=10)))
    finally:
        ours.generation_config.no_repeat_ngram_size = hf.generation_config.no_repeat_ngram_size = 0


def test_set_seed_makes_sampling_reproducible(small):
    ours = small[1]
    ids = np.array([[1, 2, 3]])
    minigpt2.set_seed(123)
    a = ours.generate(ids, do_sample=True, max_new_tokens=20)
    minigpt2.set_seed(123)
    b = ours.generate(ids, do_sample=True, max_new_tokens=20)
    c = ours.generate(ids, do_sample=True, max_new_tokens=20)  # the generator moved on
    assert np.array_equal(a, b) and not np.array_equal(b, c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="seed"):
            minigpt2.set_seed(-1)


def test_logits_to_keep_as_in_transformers(small):
    """forward(logits_to_keep=n): the last n positions' logits (0: all; a 1-D array: those positions)."""
    hf, ours = small
    ids = np.random.default_rng(10).integers(0, 64, (2, 7))
    for keep in (0, 1, 3, np.array([0, 4, 6])):
        with torch.no_grad():
            want = hf(torch.tensor(ids), logits_to_keep=torch.tensor(keep) if isinstance(keep, np.ndarray)
                      else keep).logits.numpy()
        assert_close(ours(ids, logits_to_keep=keep).logits, want, f"logits_to_keep={keep}")
    double = minigpt2.GPT2DoubleHeadsModel(ours.config, ours.params)
    assert_close(double(ids, logits_to_keep=2).logits, ours(ids).logits[:, -2:], "double heads logits_to_keep")
    with pytest.raises(ValueError, match="logits_to_keep"):
        ours(ids, logits_to_keep=-1)


# -- transformers' DynamicCache given to generate: grown in place, as transformers does (4.x and 5.x) ----------

def _pairs(cache):
    """A transformers cache's (key, value) per layer, read the way both 4.57 and 5.x keep them."""
    return [(layer.keys.numpy(), layer.values.numpy()) for layer in cache.layers]


@pytest.mark.parametrize("kwargs", [dict(), dict(return_dict_in_generate=True), dict(max_new_tokens=1),
                                    dict(do_sample=True, top_k=1, num_return_sequences=2), dict(num_beams=3)])
@pytest.mark.parametrize("cached", [0, 2])
def test_generate_grows_the_dynamic_cache_it_is_given_as_transformers(small, kwargs, cached):
    """HF's generate(past_key_values=DynamicCache()) fills that object in place (every position but the last
    token's, one row per returned sequence or beam) and returns it as the output's past_key_values; an empty
    DynamicCache() is no cache yet. Keys and values are compared with the reference's (greedy and sampling; for
    beams, the running beams' rows at the end follow each library's own bookkeeping: the shape only)."""
    hf, ours = small
    if cached and (kwargs.get("num_beams") or kwargs.get("num_return_sequences")):
        pytest.skip("transformers needs a given cache expanded to one row per beam or returned sequence")
    prompts = np.array([[5, 17, 42, 8, 63, 21], [7, 3, 3, 51, 12, 40]])
    kwargs = {"max_new_tokens": 4, "pad_token_id": 0, **kwargs}

    def given():
        if not cached:
            return transformers.DynamicCache()
        with torch.no_grad():
            return hf(torch.tensor(prompts[:, :cached])).past_key_values

    theirs_cache, mine = given(), given()
    theirs = _hf_generate(hf, prompts, past_key_values=theirs_cache, **kwargs)
    theirs = theirs.sequences if hasattr(theirs, "sequences") else theirs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours.generate(prompts, past_key_values=mine, **kwargs)
    if kwargs.get("return_dict_in_generate"):
        assert got.past_key_values is mine, "the output's past_key_values is not the cache given"
        got = got.sequences
    _same(got, theirs)
    rows = len(prompts) * max(kwargs.get("num_beams", 1), kwargs.get("num_return_sequences", 1))
    length = theirs.shape[1] - 1  # (the last token is never run through the model)
    assert mine.get_seq_length() == theirs_cache.get_seq_length() == length
    for layer, ((k0, v0), (k1, v1)) in enumerate(zip(_pairs(theirs_cache), _pairs(mine))):
        assert k1.shape == k0.shape == (rows, ours.config.n_head, length, ours.config.head_dim)
        if not kwargs.get("num_beams"):
            assert_close(k1, k0, f"layer {layer} keys")
            assert_close(v1, v0, f"layer {layer} values")


def test_the_model_grows_a_dynamic_cache_in_place_step_by_step(small):
    """HF's decoding loop that keeps passing the DynamicCache it started with: the model grows that object, with
    transformers' logits at each step (4.x's cache has to_legacy_cache(), 5.x's only its layers)."""
    hf, ours = small
    ids = np.array([[5, 17, 42, 8], [7, 3, 3, 51]])
    mine, theirs = transformers.DynamicCache(), transformers.DynamicCache()
    with torch.no_grad():
        expected = [hf(torch.tensor(ids), past_key_values=theirs).logits.numpy()]
        expected += [hf(torch.tensor(ids[:, i:i + 1]), past_key_values=theirs).logits.numpy() for i in range(2)]
    out = ours(ids, past_key_values=mine)
    assert out.past_key_values is mine and mine.get_seq_length() == 4
    got = [out.logits] + [ours(ids[:, i:i + 1], past_key_values=mine).logits for i in range(2)]
    assert mine.get_seq_length() == theirs.get_seq_length() == 6
    for step, (a, b) in enumerate(zip(got, expected)):
        assert_close(a, b, f"logits at step {step}")
