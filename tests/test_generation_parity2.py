"""generate() against transformers 4.57, second round: the gaps of an exploratory comparison (beam search's final
cache, beam search without a cache, length budgets past n_positions, seeding through NumPy's global generator,
transformers' logits processors and tokenizers given to minigpt2, GenerationConfig's JSON methods, model.cpu()).

Ids are compared token for token; keys, values, attentions and hidden states within 1e-5 * max(1, max|ref|)
(tests/conftest.py's assert_close).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import minigpt2
from minigpt2 import GPT2LMHeadModel, GenerationConfig

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, write_hf_checkpoint  # noqa: E402
from test_generation_more import _hf_generate, _same  # noqa: E402

HF5 = int(transformers.__version__.split(".")[0]) >= 5


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A vocabulary of 64 with eos 0: (transformers model, minigpt2 model)."""
    d = tmp_path_factory.mktemp("small_parity2")
    hf = write_hf_checkpoint(d, seed=1, vocab_size=64, n_positions=64, eos_token_id=0, bos_token_id=0)
    return hf, GPT2LMHeadModel.from_pretrained(d)


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """n_positions=24, eos 0, weights with which greedy and beam search reach eos early from some prompts:
    (transformers model, minigpt2 model)."""
    d = tmp_path_factory.mktemp("short_parity2")
    hf = write_hf_checkpoint(d, seed=3, vocab_size=64, n_positions=24, eos_token_id=0, bos_token_id=0)
    return hf, GPT2LMHeadModel.from_pretrained(d)


# Prompts for `short`: greedy search reaches eos before 25 tokens from ENDING, beam search (with the settings
# BEAM_ENDING pairs them with) from theirs; neither from RUNNING (transformers raises IndexError there).
_PROMPTS = np.random.default_rng(0).integers(1, 64, (12, 5))
ENDING, RUNNING = _PROMPTS[[2, 4, 10]], _PROMPTS[:1]
BEAM_ENDING = [(_PROMPTS[[4, 10]], dict(num_beams=3, early_stopping=True)), (_PROMPTS[[1, 10]], dict(num_beams=3)),
               (_PROMPTS[[4, 10]], dict(num_beams=3, num_return_sequences=2, early_stopping=True)),
               (_PROMPTS[[4, 10]], dict(num_beams=2, early_stopping=True))]

LEFT_PADDED = np.array([[0, 0, 7, 8, 9, 21], [10, 11, 12, 13, 14, 40]]), np.array([[0, 0, 1, 1, 1, 1], [1] * 6])



def _pairs(cache):
    """A cache's (key, value) per layer as NumPy: minigpt2's KVCache, or transformers' (4.57's and 5.x's layers)."""
    if hasattr(cache, "layers") and not isinstance(cache, tuple):
        return [(layer.keys.numpy(), layer.values.numpy()) for layer in cache.layers]
    return [(np.asarray(k), np.asarray(v)) for k, v in cache]


def _hf_cache(output):
    return output.past_key_values if hasattr(output, "past_key_values") else output.cache  # (5.x: .cache)


# -- 1. beam search's final past_key_values: reordered at every step, the last one included -------------------

BEAM_CASES = [  # (model, prompts, attention mask, settings): each search ends before max_length (checked)
    ("small", *LEFT_PADDED, dict(num_beams=3, early_stopping=True, max_new_tokens=50)),
    ("small", *LEFT_PADDED, dict(num_beams=5, num_return_sequences=3, early_stopping=True, max_new_tokens=50)),
    ("short", _PROMPTS[[4, 10]], None, dict(num_beams=3, early_stopping=True, max_new_tokens=19)),
]


@pytest.mark.skipif(HF5, reason="transformers 5.x keeps its beam cache by its own bookkeeping (minigpt2 follows 4.57)")
@pytest.mark.parametrize("given", [None, "DynamicCache"])
@pytest.mark.parametrize("model, ids, mask, kwargs", BEAM_CASES, ids=["left_padded", "3_of_5", "no_padding"])
def test_beam_search_returns_the_cache_transformers_returns(request, model, ids, mask, kwargs, given):
    """transformers 4.57 reorders the cache by the running beams after every step, the last one too; minigpt2
    stopped before the last reorder, so its final cache's rows followed the previous step's beams."""
    hf, ours = request.getfixturevalue(model)
    kwargs = {"pad_token_id": 0, "return_dict_in_generate": True, **kwargs}
    theirs_cache = mine = None
    if given:
        theirs_cache, mine = transformers.DynamicCache(), transformers.DynamicCache()
    want = _hf_generate(hf, ids, mask, past_key_values=theirs_cache, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours.generate(ids, attention_mask=mask, past_key_values=mine, **kwargs)
    _same(got.sequences, want.sequences)
    if given:
        assert got.past_key_values is mine
    theirs, ours_pairs = _pairs(_hf_cache(want)), _pairs(got.past_key_values)
    assert theirs[0][0].shape[2] < ids.shape[1] + kwargs["max_new_tokens"] - 1, "the search ran to max_length"
    assert len(ours_pairs) == len(theirs)
    for layer, ((k0, v0), (k1, v1)) in enumerate(zip(theirs, ours_pairs)):
        assert_close(k1, k0, f"layer {layer} keys")
        assert_close(v1, v0, f"layer {layer} values")


def test_beam_search_cache_at_max_length_has_transformers_shape(small):
    """At max_length every candidate ends, so the last step's running beams are a tie (scores of -1e9 in float32),
    which transformers breaks in torch.topk's internal order: shape and ids here; the rows' values, now that
    minigpt2 breaks ties as torch does (generation/ties.py), in test_generation_parity5.py."""
    hf, ours = small
    ids, mask = LEFT_PADDED
    kwargs = dict(num_beams=3, num_return_sequences=2, max_new_tokens=5, pad_token_id=0, return_dict_in_generate=True)
    want, got = _hf_generate(hf, ids, mask, **kwargs), ours.generate(ids, attention_mask=mask, **kwargs)
    _same(got.sequences, want.sequences)
    for (k0, v0), (k1, v1) in zip(_pairs(_hf_cache(want)), _pairs(got.past_key_values)):
        assert k1.shape == k0.shape == (6, 4, 10, 8) and v1.shape == v0.shape


# -- 2. beam search honours use_cache=False --------------------------------------------------------------------

def _same_steps(ours, theirs, name, queries=slice(None)):
    assert len(ours) == len(theirs), f"{name}: {len(ours)} steps, transformers {len(theirs)}"
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert len(a) == len(b), f"{name}[{t}]: {len(a)} layers, transformers {len(b)}"
        for layer, (x, y) in enumerate(zip(a, b)):
            y = y.numpy()
            assert x.shape == y.shape, f"{name}[{t}][{layer}]: shape {x.shape}, transformers {y.shape}"
            assert_close(x[..., queries, :], y[..., queries, :], f"{name}[{t}][{layer}]")


@pytest.mark.parametrize("kwargs", [dict(num_beams=2), dict(num_beams=3, num_return_sequences=2, do_sample=False)])
def test_beam_search_without_a_cache_recomputes_the_whole_sequence(small, kwargs):
    """use_cache=False: every step runs the whole sequence (attentions [N, H, L, L], hidden states [N, L, E])
    and no cache is returned, as with greedy search and as transformers does. minigpt2 used the cache anyway."""
    hf, ours = small
    ids = np.random.default_rng(31).integers(1, 64, (2, 5))
    common = dict(max_new_tokens=4, use_cache=False, return_dict_in_generate=True, output_attentions=True,
                  output_hidden_states=True, output_scores=True, pad_token_id=0, **kwargs)
    got, want = ours.generate(ids, **common), _hf_generate(hf, ids, **common)
    _same(got.sequences, want.sequences)
    assert got.past_key_values is None and _hf_cache(want) is None
    rows = 2 * kwargs["num_beams"]
    assert [a[0].shape for a in got.attentions] == [(rows, 4, L, L) for L in range(5, 5 + len(got.attentions))]
    _same_steps(got.attentions, want.attentions, "attentions")
    _same_steps(got.hidden_states, want.hidden_states, "hidden_states")


def test_beam_search_without_a_cache_on_a_left_padded_batch(small):
    hf, ours = small
    ids, mask = LEFT_PADDED
    common = dict(max_new_tokens=3, num_beams=2, use_cache=False, return_dict_in_generate=True,
                  output_attentions=True, pad_token_id=0)
    got, want = ours.generate(ids, attention_mask=mask, **common), _hf_generate(hf, ids, mask, **common)
    _same(got.sequences, want.sequences)
    assert got.past_key_values is None
    # the padded query rows of the first prompt are no one's concern (4.57 and 5.x fill them differently)
    _same_steps(got.attentions, want.attentions, "attentions", queries=slice(2, None))


# -- 3. a length budget past n_positions: refused only where it is certain to be used ------------------------

@pytest.mark.parametrize("prompts, kwargs", [(ENDING, dict(max_new_tokens=100)), (ENDING, dict(max_length=200))] +
                         [(p, dict(max_new_tokens=100, **k)) for p, k in BEAM_ENDING])
def test_a_budget_past_n_positions_runs_when_eos_comes_first(short, prompts, kwargs):
    """transformers generates until eos; only a step that needs a position past n_positions fails. minigpt2
    refused such a budget before starting ("max_length is 105 ..., n_positions=24")."""
    hf, ours = short
    want = _hf_generate(hf, prompts, pad_token_id=0, **kwargs)
    assert want.shape[1] <= 25
    _same(ours.generate(prompts, pad_token_id=0, **kwargs), want)


def test_a_sequence_may_be_one_longer_than_n_positions(short):
    """The last token is never run through the model: n_positions + 1 tokens need positions < n_positions only,
    and transformers returns them (also when nothing but the budget can end generation)."""
    hf, ours = short
    want = _hf_generate(hf, RUNNING, max_new_tokens=20, eos_token_id=None, pad_token_id=0)
    assert want.shape == (1, 25)
    _same(ours.generate(RUNNING, max_new_tokens=20, eos_token_id=None, pad_token_id=0), want)


class _Recorder:
    """A streamer that keeps what it is given: nothing at all when generate refused to start."""

    def __init__(self):
        self.puts = []

    def put(self, value):
        self.puts.append(np.asarray(value))

    def end(self):
        pass


@pytest.mark.parametrize("kwargs", [dict(max_new_tokens=100), dict(max_new_tokens=100, num_beams=2)])
def test_running_past_n_positions_fails_at_that_step_with_a_clear_error(short, kwargs):
    """transformers raises IndexError inside the position embedding; minigpt2 says what happened and what to do."""
    hf, ours = short
    with pytest.raises(IndexError):
        _hf_generate(hf, RUNNING, pad_token_id=0, **kwargs)
    streamer = _Recorder() if kwargs.get("num_beams") is None else None
    with pytest.raises(ValueError) as error:
        ours.generate(RUNNING, pad_token_id=0, streamer=streamer, **kwargs)
    message = str(error.value)
    for part in ("n_positions=24", "prompt of 5 tokens", "20 new tokens", "max_new_tokens"):
        assert part in message, message
    if streamer is not None:
        assert len(streamer.puts) == 21  # the prompt and the 20 tokens it could generate


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_new_tokens=21, eos_token_id=None), r"max_length is 26 \(prompt 5 \+ new tokens\).*n_positions=24"),
    (dict(max_new_tokens=21, eos_token_id=70), "no eos_token_id"),  # eos outside the vocabulary: never generated
    (dict(max_new_tokens=100, min_new_tokens=30), r"min_length is 35 \(prompt 5 \+ min_new_tokens\)"),
    (dict(max_length=40, min_length=30, num_beams=2), r"min_length is 30"),
])
def test_a_budget_that_must_pass_n_positions_is_refused_before_starting(short, kwargs, message):
    _, ours = short
    streamer = _Recorder() if kwargs.get("num_beams") is None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=message) as error:
            ours.generate(ENDING[:1], pad_token_id=0, streamer=streamer, **kwargs)
    assert "n_positions=24" in str(error.value)
    if streamer is not None:
        assert streamer.puts == []


def test_stop_strings_or_criteria_may_end_a_long_budget(short):
    """With a stopping criterion that may end generation, an eos-less budget is not refused up front either."""
    _, ours = short
    criteria = [lambda ids, scores: np.full(len(ids), ids.shape[1] >= 12)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours.generate(RUNNING, max_new_tokens=100, eos_token_id=None, pad_token_id=0, stopping_criteria=criteria)
    assert got.shape == (1, 12)


# -- 4. np.random.seed (and so transformers.set_seed) makes sampling reproducible ---------------------------------

def test_numpy_global_seed_makes_sampling_reproducible(small):
    """transformers.set_seed seeds NumPy's global generator (and torch's): with no seed= and no minigpt2.set_seed,
    generate now draws its generator from NumPy's global one, so that seeding it makes sampling reproducible."""
    _, ours = small
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    runs = []
    for seeding in (np.random.seed, np.random.seed, transformers.set_seed, transformers.set_seed):
        seeding(0)
        runs.append(ours.generate(ids, do_sample=True, max_new_tokens=12, top_k=0))
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
    assert not np.array_equal(runs[0], ours.generate(ids, do_sample=True, max_new_tokens=12, top_k=0))
    # the latest seeding wins: after minigpt2.set_seed, np.random.seed still decides the next draws
    minigpt2.set_seed(5)
    np.random.seed(0)
    assert np.array_equal(runs[0], ours.generate(ids, do_sample=True, max_new_tokens=12, top_k=0))


def test_seed_argument_and_set_seed_still_work(small):
    _, ours = small
    ids = np.array([[1, 2, 3]])
    a = ours.generate(ids, do_sample=True, max_new_tokens=12, top_k=0, seed=7)
    np.random.seed(1)  # seed= ignores the global generator
    assert np.array_equal(a, ours.generate(ids, do_sample=True, max_new_tokens=12, top_k=0, seed=7))
    minigpt2.set_seed(3)
    b = ours.generate(ids, do_sample=True, max_new_tokens=12, top_k=0)
    minigpt2.set_seed(3)
    assert np.array_equal(b, ours.generate(ids, do_sample=True, max_new_tokens=12, top_k=0))


# -- 5. transformers' logits processors and tokenizers given to minigpt2 ----------------------------------------

def test_a_transformers_logits_processor_works_as_in_transformers(small):
    """It works on torch tensors: minigpt2 hands it the ids and scores as tensors and takes the scores back. One
    of a built-in's class replaces that built-in, as in transformers 4.57."""
    hf, ours = small
    ids = np.random.default_rng(32).integers(1, 64, (2, 5))
    for settings in (dict(), dict(repetition_penalty=1.1), dict(num_beams=2), dict(no_repeat_ngram_size=2)):
        processors = [transformers.RepetitionPenaltyLogitsProcessor(3.0),
                      transformers.SuppressTokensLogitsProcessor([5, 9])]
        kwargs = dict(max_new_tokens=8, pad_token_id=0, **settings)
        want = _hf_generate(hf, ids, logits_processor=transformers.LogitsProcessorList(processors), **kwargs)
        _same(ours.generate(ids, logits_processor=processors, **kwargs), want)


class _StopAfter(transformers.StoppingCriteria if not HF5 else object):
    """A user's transformers criterion: a row is done once its last token is ``token`` (torch in, torch out)."""

    def __init__(self, token):
        self.token = token

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids[:, -1] == self.token


def test_transformers_stopping_criteria_work_as_in_transformers(small):
    """transformers' own criteria (MaxLengthCriteria, EosTokenCriteria, MaxTimeCriteria) and a user's subclass of
    its StoppingCriteria, written for torch tensors: the same ids as transformers 4.57 gives with them."""
    if HF5:
        pytest.skip("compared with transformers 4.x's generate")
    hf, ours = small
    ids = np.random.default_rng(33).integers(1, 64, (2, 5))
    greedy = ours.generate(ids, max_new_tokens=12, pad_token_id=0)
    stop_token = int(greedy[0, 6])  # (row 0's second new token: a stop the criterion surely meets)
    assert stop_token != 0 and greedy.shape[1] > 7  # (not eos, and before it)
    for criteria, settings in (([transformers.MaxLengthCriteria(max_length=9)], dict(max_length=20)),
                               ([transformers.EosTokenCriteria(eos_token_id=stop_token)], dict(max_new_tokens=12)),
                               ([transformers.MaxTimeCriteria(max_time=100.0)], dict(max_new_tokens=6)),
                               ([_StopAfter(stop_token)], dict(max_new_tokens=12)),
                               ([_StopAfter(stop_token)], dict(max_new_tokens=12, num_beams=2))):
        kwargs = dict(pad_token_id=0, **settings)
        want = _hf_generate(hf, ids, stopping_criteria=transformers.StoppingCriteriaList(criteria), **kwargs)
        _same(ours.generate(ids, stopping_criteria=criteria, **kwargs), want)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """GPT-2's vocabulary (bundled files), a tiny random model: (hf, ours, transformers' tokenizer)."""
    import gzip
    import pathlib

    from minigpt2 import bpe

    d = tmp_path_factory.mktemp("full_parity2")
    hf = write_hf_checkpoint(d, seed=2, vocab_size=50257, n_positions=64, n_embd=16, n_layer=2, n_head=2)
    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (d / theirs).write_bytes(gzip.decompress(pathlib.Path(bpe.DATA_DIR, ours + ".gz").read_bytes()))
    hf_tok = transformers.GPT2TokenizerFast(str(d / "vocab.json"), str(d / "merges.txt"))
    return hf, GPT2LMHeadModel.from_pretrained(d), hf_tok


@pytest.mark.parametrize("options", [dict(), dict(skip_prompt=True), dict(skip_special_tokens=True)])
def test_text_streamer_takes_a_transformers_tokenizer(full, capsys, options):
    """minigpt2's TextStreamer with transformers' tokenizer prints what transformers' TextStreamer prints (it
    failed: 'GPT2TokenizerFast has no attribute stream_decoder')."""
    hf, ours, hf_tok = full
    ids = np.array([hf_tok("The weather today is").input_ids])
    with torch.no_grad():
        hf.generate(torch.tensor(ids), max_new_tokens=12, streamer=transformers.TextStreamer(hf_tok, **options))
    want = capsys.readouterr().out
    ours.generate(ids, max_new_tokens=12, streamer=minigpt2.TextStreamer(hf_tok, **options))
    assert capsys.readouterr().out == want
    streamer = minigpt2.TextIteratorStreamer(hf_tok, **options)
    ours.generate(ids, max_new_tokens=12, streamer=streamer)
    assert "".join(streamer) + "\n" == want


def test_a_streamer_without_a_tokenizer_says_what_to_pass():
    with pytest.raises(TypeError, match="tokenizer"):
        minigpt2.TextStreamer(object())


# -- 6. small API gaps: model.cpu(), GenerationConfig's JSON methods --------------------------------------------

def test_model_cpu_returns_the_model(small):
    hf, ours = small
    assert ours.cpu() is ours and hf.cpu() is hf


@pytest.mark.parametrize("settings", [dict(), dict(max_new_tokens=5, do_sample=True, top_k=10, eos_token_id=[1, 2]),
                                      dict(num_beams=4, length_penalty=0.5, early_stopping="never", pad_token_id=0)])
def test_generation_config_json_methods_as_in_transformers(tmp_path, settings):
    ours, theirs = GenerationConfig(**settings), transformers.GenerationConfig(**settings)
    version = {"transformers_version": transformers.__version__}
    assert ours.to_diff_dict() == {k: v for k, v in theirs.to_diff_dict().items() if k not in version}
    assert json.loads(ours.to_json_string()) == json.loads(theirs.to_json_string(ignore_metadata=True))
    assert ours.to_json_string(use_diff=False).startswith("{\n  \"")
    assert json.loads(ours.to_json_string(use_diff=False)) == ours.to_dict()
    ours.to_json_file(tmp_path / "g.json")
    assert transformers.GenerationConfig.from_pretrained(tmp_path, "g.json").to_diff_dict() == \
        {**theirs.to_diff_dict(), **version}
    assert repr(ours) == repr(theirs)


@pytest.mark.skipif(HF5, reason="transformers 5.x's from_model_config keeps use_cache and output_* too (4.57's rule)")
def test_generation_config_made_from_a_model_config_says_so(small):
    hf, ours = small
    assert ours.generation_config.to_diff_dict() == \
        {k: v for k, v in hf.generation_config.to_diff_dict().items() if k != "transformers_version"}
