"""generate()'s attentions and hidden states, the remaining logits processors and stopping criteria, against
transformers 4.57 on the same tiny random checkpoints (as tests/test_generation_hf.py).

Ids are compared token for token; scores, attentions and hidden states within 1e-5 * max(1, max|ref|) (float32
rounding through two layers, as tests/conftest.py's assert_close).
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import minigpt2
from minigpt2 import GPT2LMHeadModel
from minigpt2.generation import processors as ours_processors
from minigpt2.generation.stopping import MaxTimeCriteria, StoppingCriteriaList

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, write_hf_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A vocabulary of 64 with eos 0: (directory, transformers model, minigpt2 model)."""
    d = tmp_path_factory.mktemp("small_more")
    hf = write_hf_checkpoint(d, seed=1, vocab_size=64, n_positions=64, eos_token_id=0, bos_token_id=0)
    return d, hf, GPT2LMHeadModel.from_pretrained(d)


def _hf_generate(hf, ids, mask=None, **kwargs):
    mask = np.ones(np.shape(ids), np.int64) if mask is None else mask
    with torch.no_grad():
        return hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), **kwargs)


def _same(ours, theirs):
    theirs = theirs.numpy() if hasattr(theirs, "numpy") else np.asarray(theirs)
    assert ours.shape == theirs.shape and (ours == theirs).all(), f"ours\n{ours}\ntransformers\n{theirs}"


def _close(ours, ref, name):
    """The same tokens ruled out (-inf), the other values within the bound."""
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape}, transformers {ref.shape}"
    assert (np.isneginf(ours) == np.isneginf(ref)).all(), f"{name}: different tokens ruled out"
    assert_close(np.where(np.isneginf(ref), 0, ours), np.where(np.isneginf(ref), 0, ref), name)


def _same_steps(ours, theirs, name):
    """Per-step tuples (of per-layer tuples) of arrays: the same structure, each array within the bound."""
    assert theirs is not None and ours is not None, f"{name}: ours {type(ours)}, transformers {type(theirs)}"
    assert len(ours) == len(theirs), f"{name}: {len(ours)} steps, transformers {len(theirs)}"
    for t, (a, b) in enumerate(zip(ours, theirs)):
        if isinstance(b, tuple):
            assert isinstance(a, tuple) and len(a) == len(b), f"{name}[{t}]: {len(a)} layers, transformers {len(b)}"
            for layer, (x, y) in enumerate(zip(a, b)):
                _close(x, y.numpy(), f"{name}[{t}][{layer}]")
        else:
            _close(a, b.numpy(), f"{name}[{t}]")


# -- 1. attentions and hidden states ------------------------------------------------------------------------

OUTPUT_CASES = [
    dict(),                                           # greedy
    dict(use_cache=False),                            # greedy, the whole sequence every step
    dict(do_sample=True, top_k=1, num_return_sequences=2),  # sampling (top_k=1: the draw is the argmax)
    dict(num_beams=3, num_return_sequences=2),        # beam search
    dict(num_beams=2, output_scores=True, output_logits=True),
]


@pytest.mark.parametrize("kwargs", OUTPUT_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "greedy")
def test_attentions_and_hidden_states_as_in_transformers(small, kwargs):
    _, hf, ours = small
    ids = np.random.default_rng(11).integers(1, 64, (2, 5))
    common = dict(max_new_tokens=5, return_dict_in_generate=True, output_attentions=True, output_hidden_states=True,
                  eos_token_id=None, pad_token_id=0, **kwargs)
    got = ours.generate(ids, seed=0, **common)
    want = _hf_generate(hf, ids, **common)
    assert type(got).__name__ == type(want).__name__
    _same(got.sequences, want.sequences)
    _same_steps(got.attentions, want.attentions, "attentions")
    _same_steps(got.hidden_states, want.hidden_states, "hidden_states")
    # HF's structure: step one covers the prompt, later steps one position (with the cache)
    rows = len(want.sequences) if not kwargs.get("num_beams") else 2 * kwargs["num_beams"]
    assert got.attentions[0][0].shape == (rows, 4, 5, 5) and got.hidden_states[0][0].shape == (rows, 5, 32)
    assert len(got.hidden_states[0]) == 3 and len(got.attentions[0]) == 2
    if kwargs.get("output_scores"):
        _same_steps(got.scores, want.scores, "scores")
        _same_steps(got.logits, want.logits, "logits")


def test_attentions_of_a_left_padded_batch(small):
    _, hf, ours = small
    ids = np.random.default_rng(12).integers(1, 64, (2, 6))
    mask = np.ones_like(ids)
    mask[0, :2] = 0
    common = dict(max_new_tokens=3, return_dict_in_generate=True, output_attentions=True, output_hidden_states=True,
                  eos_token_id=None, pad_token_id=0)
    got, want = ours.generate(ids, attention_mask=mask, **common), _hf_generate(hf, ids, mask, **common)
    _same(got.sequences, want.sequences)
    # the padded query rows are no one's concern (HF fills them its own way); the real ones must agree
    _same_steps([tuple(a[:, :, 2:] for a in step) for step in got.attentions[:1]],
                [tuple(a[:, :, 2:] for a in step) for step in want.attentions[:1]], "prompt attentions")
    _same_steps(got.attentions[1:], want.attentions[1:], "attentions")


def test_attentions_are_not_kept_unless_asked(small):
    _, _, ours = small
    out = ours.generate(np.array([[1, 2, 3]]), max_new_tokens=3, return_dict_in_generate=True)
    assert out.attentions is None and out.hidden_states is None
    # without return_dict_in_generate the flags change nothing (as HF): the ids alone
    assert isinstance(ours.generate(np.array([[1, 2, 3]]), max_new_tokens=3, output_attentions=True), np.ndarray)


# -- 2. the other logits processors, class by class ----------------------------------------------------------

def _random_scores(seed, V=20):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (4, 7))
    ids[1, -2:] = [3, 4]  # ends with a biased pair
    return ids, (rng.standard_normal((4, V)) * 3).astype(np.float32)


PROCESSORS = [
    ("SequenceBiasLogitsProcessor", ({(5,): -4.0, (3, 4, 9): 2.5, (2,): 1.5, (4, 9): -1.0},), ()),
    ("SequenceBiasLogitsProcessor", ([[[7], 3.0], [[1, 2, 3, 4, 5, 6, 7, 8, 9], 1.0]],), ()),
    ("ForcedBOSTokenLogitsProcessor", (3,), ()),
    ("InfNanRemoveLogitsProcessor", (), ()),
    ("ExponentialDecayLengthPenalty", ((2, 1.7), [1, 6], 3), ()),
    ("ExponentialDecayLengthPenalty", ((9, 1.7), 1, 3), ()),  # not started yet
    ("SuppressTokensLogitsProcessor", ([1, 6, 19],), ()),
    ("SuppressTokensAtBeginLogitsProcessor", ([1, 6],), (7,)),
    ("SuppressTokensAtBeginLogitsProcessor", ([1, 6],), (5,)),
    ("LogitNormalization", (), ()),
]


@pytest.mark.parametrize("name,args,more", PROCESSORS, ids=lambda x: str(x)[:40])
@pytest.mark.parametrize("length", [1, 7])
@pytest.mark.parametrize("seed", range(2))
def test_processors_match_transformers(name, args, more, length, seed):
    from transformers import generation

    ids, scores = _random_scores(seed)
    ids = ids[:, -length:]
    scores[0, 2], scores[2, 5], scores[3, 1] = np.nan, np.inf, -np.inf  # for InfNanRemove (others keep them)
    if name != "InfNanRemoveLogitsProcessor":
        scores = np.nan_to_num(scores, nan=0.5, posinf=7.0, neginf=-7.0)
    hf_args = args if name != "SuppressTokensAtBeginLogitsProcessor" else args + more
    want = getattr(generation, name)(*hf_args)(torch.tensor(ids), torch.tensor(scores)).numpy()
    got = getattr(ours_processors, name)(*args, *more)(ids, scores.copy())
    assert got.dtype == np.float32 and got.shape == want.shape
    assert (np.isneginf(got) == np.isneginf(want)).all(), f"{name}: different tokens ruled out"
    finite = np.isfinite(want)
    assert_close(got[finite], want[finite], name)  # a log-softmax rounds to ulps of the largest score


def test_prefix_constrained_processor_matches_transformers():
    from transformers import generation

    ids, scores = _random_scores(0)

    def allowed(batch_id, row):  # works on a torch or a NumPy row
        return [int(row[-1]) % 20, (batch_id * 7 + 3) % 20]

    want = generation.PrefixConstrainedLogitsProcessor(allowed, 2)(torch.tensor(ids), torch.tensor(scores)).numpy()
    got = ours_processors.PrefixConstrainedLogitsProcessor(allowed, 2)(ids, scores)
    np.testing.assert_array_equal(got, want)


# -- 2. ... and through generate, where their order matters -------------------------------------------------

def _first_free_tokens(ours, ids, n=6):
    return ours.generate(ids, max_new_tokens=n, eos_token_id=None, pad_token_id=0)[:, ids.shape[1]:]


GENERATE_CASES = [
    lambda free: dict(suppress_tokens=[int(free[0, 0]), int(free[1, 2])]),
    lambda free: dict(begin_suppress_tokens=[int(free[0, 0]), int(free[1, 0])]),
    lambda free: dict(sequence_bias={(int(free[0, 1]),): -30.0, (int(free[1, 0]), int(free[1, 1])): -30.0}),
    lambda free: dict(sequence_bias=[[[int(free[0, 2])], 30.0]], repetition_penalty=1.5),  # bias, then penalty
    lambda free: dict(renormalize_logits=True, repetition_penalty=1.3),
    lambda free: dict(remove_invalid_values=True, suppress_tokens=[5]),
    lambda free: dict(exponential_decay_length_penalty=(2, 3.0), eos_token_id=0),
    lambda free: dict(exponential_decay_length_penalty=(1, 1.5), eos_token_id=[0, int(free[0, 3])],
                      sequence_bias={(0,): 2.0}, suppress_tokens=[int(free[1, 1])], renormalize_logits=True),
]


@pytest.mark.parametrize("case", range(len(GENERATE_CASES)))
@pytest.mark.parametrize("strategy", [dict(), dict(num_beams=3), dict(do_sample=True, top_k=1)])
def test_processor_settings_in_generate(small, case, strategy):
    _, hf, ours = small
    ids = np.random.default_rng(13).integers(1, 64, (2, 4))
    settings = GENERATE_CASES[case](_first_free_tokens(ours, ids))
    common = dict(max_new_tokens=6, pad_token_id=0, return_dict_in_generate=True, output_scores=True,
                  **{"eos_token_id": None, **settings}, **strategy)
    got, want = ours.generate(ids, seed=0, **common), _hf_generate(hf, ids, **common)
    _same(got.sequences, want.sequences)
    _same_steps(got.scores, want.scores, "scores")
    if not strategy and case < 4:  # each of these changes greedy's choice
        assert not np.array_equal(got.sequences, ours.generate(ids, max_new_tokens=6, eos_token_id=None,
                                                               pad_token_id=0))


@pytest.mark.parametrize("strategy", [dict(), dict(num_beams=2)])
def test_forced_bos_and_prefix_allowed_tokens_fn(small, strategy):
    _, hf, ours = small
    one = np.array([[7], [9]])  # forced_bos_token_id acts after a one-token prompt
    common = dict(max_new_tokens=4, eos_token_id=None, pad_token_id=0, **strategy)
    got = ours.generate(one, forced_bos_token_id=33, begin_suppress_tokens=[5], **common)
    _same(got, _hf_generate(hf, one, forced_bos_token_id=33, begin_suppress_tokens=[5], **common))
    assert (got[:, 1] == 33).all()

    def allowed(batch_id, row):  # the next token is within 3 of the last one, shifted by the prompt's index
        last = int(row[-1])
        return [(last + d + batch_id) % 64 for d in (1, 2, 3)]

    ids = np.random.default_rng(14).integers(1, 64, (2, 4))
    got = ours.generate(ids, prefix_allowed_tokens_fn=allowed, **common)
    _same(got, _hf_generate(hf, ids, prefix_allowed_tokens_fn=allowed, **common))
    steps = (got[:, 4:] - got[:, 3:-1]) % 64 - np.array([[0], [1]])
    assert ((steps >= 1) & (steps <= 3)).all()


def test_user_logits_processor_and_stopping_criteria(small):
    """The same objects work in both libraries: HF's call signatures, on NumPy arrays here and tensors there."""
    _, hf, ours = small
    ids = np.random.default_rng(15).integers(1, 64, (2, 4))
    free = _first_free_tokens(ours, ids, 8)

    def ban_two(input_ids, scores):
        scores = scores * 1
        scores[:, [int(free[0, 0]), int(free[1, 1])]] = -float("inf")
        return scores

    stop_token = int(free[0, 4])

    class StopAt:
        def __call__(self, input_ids, scores, **kwargs):
            return input_ids[:, -1] == stop_token

    for processors, criteria in (([ban_two], None), (None, [StopAt()]), ([ban_two], [StopAt()])):
        common = dict(max_new_tokens=8, eos_token_id=None, pad_token_id=0)
        got = ours.generate(ids, logits_processor=processors, stopping_criteria=criteria, **common)
        want = _hf_generate(hf, ids, logits_processor=transformers.LogitsProcessorList(processors or []),
                            stopping_criteria=transformers.StoppingCriteriaList(criteria or []), **common)
        _same(got, want)
        _same(ours.generate(ids, logits_processor=processors, stopping_criteria=criteria, num_beams=2, **common),
              _hf_generate(hf, ids, logits_processor=transformers.LogitsProcessorList(processors or []),
                           stopping_criteria=transformers.StoppingCriteriaList(criteria or []), num_beams=2,
                           **common))
    assert ours.generate(ids[:1], stopping_criteria=[StopAt()], **common).shape[1] == 4 + 5


def test_max_time(small):
    _, hf, ours = small
    ids = np.array([[1, 2, 3]])
    common = dict(max_new_tokens=20, eos_token_id=None, pad_token_id=0)
    for strategy in (dict(), dict(num_beams=2)):
        got = ours.generate(ids, max_time=1e-9, **strategy, **common)  # one step always runs
        _same(got, _hf_generate(hf, ids, max_time=1e-9, **strategy, **common))
        assert got.shape == (1, 4)
    assert ours.generate(ids, max_time=60.0, **common).shape == (1, 23)
    # a MaxTimeCriteria of the caller's replaces the built-in one (HF 4.57)
    assert ours.generate(ids, max_time=60.0, stopping_criteria=StoppingCriteriaList([MaxTimeCriteria(0.0)]),
                         **common).shape == (1, 4)


def test_generation_config_json_fields_are_honoured_and_saved(tmp_path, small):
    """A checkpoint's generation_config.json with these settings (written by transformers) loads without a warning,
    generates as transformers does with it, and survives save_pretrained."""
    directory, _, _ = small
    import shutil

    d = tmp_path / "ckpt"
    shutil.copytree(directory, d)
    settings = dict(suppress_tokens=[3, 7], begin_suppress_tokens=[11], sequence_bias=[[[12], -5.0], [[4, 5], 3.0]],
                    exponential_decay_length_penalty=(3, 1.2), renormalize_logits=True, remove_invalid_values=True,
                    max_time=100.0, forced_bos_token_id=9, output_attentions=True,
                    return_dict_in_generate=True)
    transformers.GenerationConfig(eos_token_id=0, bos_token_id=0, **settings).save_pretrained(d)
    hf = transformers.GPT2LMHeadModel.from_pretrained(d, attn_implementation="eager").eval()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = GPT2LMHeadModel.from_pretrained(d)
    for name, value in settings.items():
        value = {(12,): -5.0, (4, 5): 3.0} if name == "sequence_bias" else value
        assert getattr(ours.generation_config, name) == value, name
    ids = np.random.default_rng(16).integers(1, 64, (2, 1))
    common = dict(max_new_tokens=8, return_dict_in_generate=True, output_scores=True)
    got, want = ours.generate(ids, **common), _hf_generate(hf, ids, **common)
    _same(got.sequences, want.sequences)
    _same_steps(got.scores, want.scores, "scores")
    ours.save_pretrained(tmp_path / "again")
    saved = json.loads((tmp_path / "again" / "generation_config.json").read_text())
    assert {k: saved[k] for k in settings} == {**settings, "exponential_decay_length_penalty": [3, 1.2]}
    assert minigpt2.GenerationConfig.from_pretrained(tmp_path / "again") == ours.generation_config
    again = transformers.GenerationConfig.from_pretrained(tmp_path / "again")
    assert again.sequence_bias == [[[12], -5.0], [[4, 5], 3.0]] and again.suppress_tokens == [3, 7]


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(suppress_tokens=5), ValueError, "suppress_tokens must be a list of token ids"),
    (dict(begin_suppress_tokens=[-1]), ValueError, "begin_suppress_tokens must be a list"),
    (dict(sequence_bias={(1,): "a lot"}), ValueError, "sequence_bias must map token id sequences"),
    (dict(sequence_bias={(): 1.0}), ValueError, "sequence_bias must map"),
    (dict(sequence_bias={(99,): 1.0}), ValueError, r"sequence_bias names token\(s\) \[99\], outside"),
    (dict(exponential_decay_length_penalty=1.5), ValueError, r"must be \(start, factor\)"),
    (dict(exponential_decay_length_penalty=(2, 1.5), eos_token_id=None), ValueError, "needs an eos_token_id"),
    (dict(max_time=-1), ValueError, "max_time must be a number of seconds > 0"),
    (dict(max_time="soon"), TypeError, "max_time must be a number"),
    (dict(forced_bos_token_id=1.5), TypeError, "forced_bos_token_id must be an integer"),
    (dict(forced_bos_token_id=64), ValueError, r"forced_bos_token_id=64 is outside this model's vocabulary"),
    (dict(renormalize_logits="yes"), TypeError, "renormalize_logits must be True or False"),
    (dict(output_attentions=1), TypeError, "output_attentions must be True or False"),
    (dict(prefix_allowed_tokens_fn=[1, 2]), TypeError, "prefix_allowed_tokens_fn must be a function"),
    (dict(prefix_allowed_tokens_fn=lambda b, ids: []), ValueError, "returned no token for prompt 0"),
    (dict(stopping_criteria=lambda ids, scores: True), TypeError, "stopping_criteria must be a list"),
    (dict(stopping_criteria=[lambda ids, scores: np.array([1, 0])]), TypeError, "must return True/False or one bool"),
    (dict(stopping_criterion=[]), TypeError, "did you mean 'stopping_criteria'"),
])
def test_bad_settings_say_what_is_allowed(small, kwargs, error, message):
    with pytest.raises(error, match=message):
        small[2].generate(np.array([[1, 2]]), max_new_tokens=3, **kwargs)


# -- 3. the pipeline: its own options never reach generate() --------------------------------------------------

@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    """A tiny random GPT-2 with the whole vocabulary and the tokenizer files: (directory, ours, transformers')."""
    import gzip
    import pathlib

    from minigpt2 import bpe

    d = tmp_path_factory.mktemp("pipe_more")
    write_hf_checkpoint(d, seed=4, vocab_size=50257, n_positions=320, n_embd=16, n_layer=2, n_head=2)
    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (d / theirs).write_bytes(gzip.decompress(pathlib.Path(bpe.DATA_DIR, ours + ".gz").read_bytes()))
    hf_tok = transformers.GPT2Tokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(d, attn_implementation="eager").eval()
    hf = transformers.pipeline("text-generation", model=hf_model, tokenizer=hf_tok, device="cpu")
    ours = minigpt2.pipeline("text-generation", model=GPT2LMHeadModel.from_pretrained(d),
                             tokenizer=minigpt2.GPT2Tokenizer.from_pretrained(str(d)))
    return str(d), ours, hf


PROMPTS = ["Hello, I'm a language model,", "The weather today", "A"]


@pytest.mark.parametrize("kwargs", [dict(), dict(return_full_text=False), dict(return_tensors=True),
                                    dict(num_beams=2, num_return_sequences=2)], ids=str)
def test_pipeline_prefix_as_in_transformers(pipes, kwargs):
    """transformers puts the prefix before the prompt for the model and leaves it out of the text."""
    _, ours, hf = pipes
    common = dict(prefix="Once upon a time, there was", do_sample=False, max_new_tokens=6, **kwargs)
    with torch.no_grad():
        want = hf(PROMPTS[0], **common)
    got = ours(PROMPTS[0], **common)
    assert got == want
    if not kwargs:
        assert got[0]["generated_text"].startswith(PROMPTS[0])
        assert got != ours(PROMPTS[0], **{k: v for k, v in common.items() if k != "prefix"})


def test_pipeline_batch_size_generates_prompts_together(pipes):
    """batch_size=2: two prompts per generate() call (left-padded), with the text each gets alone (transformers'
    batch_size=1 text: its batching pads GPT-2 on the right)."""
    _, ours, hf = pipes
    calls = []
    generate = ours.model.generate

    def counting(ids, **kwargs):
        calls.append(None if ids is None else ids.shape)
        return generate(ids, **kwargs)

    ours.model.generate = counting
    try:
        common = dict(do_sample=False, max_new_tokens=7)
        got = ours(PROMPTS, batch_size=2, **common)
    finally:
        del ours.model.generate
    with torch.no_grad():
        assert got == hf(PROMPTS, batch_size=1, **common)
    assert [shape[0] for shape in calls] == [2, 1]


def test_pipeline_constructor_options(pipes):
    directory, ours, hf = pipes
    built = minigpt2.pipeline("text-generation", model=ours.model, tokenizer=ours.tokenizer, torch_dtype="float32",
                              framework="pt", batch_size=2, prefix="Once upon a time,", return_full_text=False,
                              do_sample=False, max_new_tokens=5)
    assert built(PROMPTS[:2]) == ours(PROMPTS[:2], batch_size=2, prefix="Once upon a time,",
                                      return_full_text=False, do_sample=False, max_new_tokens=5)
    by_path = minigpt2.pipeline("text-generation", model=directory, torch_dtype="float16", framework="pt")
    assert by_path(PROMPTS[0], do_sample=False, max_new_tokens=3)[0]["generated_text"].startswith(PROMPTS[0])
    with pytest.raises(ValueError, match="torch_dtype='float16'.*apply when loading"):
        minigpt2.pipeline("text-generation", model=ours.model, tokenizer=ours.tokenizer, torch_dtype="float16")
    with pytest.raises(ValueError, match="framework='tf'.*'pt' or 'np'"):
        minigpt2.pipeline("text-generation", model=ours.model, tokenizer=ours.tokenizer, framework="tf")
    with pytest.raises(TypeError, match=r"pipeline\(\) got unexpected argument\(s\) 'temprature' \(did you mean "
                                        r"'temperature'\?\).*prefix, .*batch_size"):
        minigpt2.pipeline("text-generation", model=ours.model, tokenizer=ours.tokenizer, temprature=0.5)
    with pytest.raises(TypeError, match=r"pipeline call got unexpected argument\(s\) 'batchsize' \(did you mean "
                                        r"'batch_size'\?\)"):
        ours(PROMPTS[0], batchsize=2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ours(PROMPTS, batch_size=0)


# -- 4. code written for transformers: its GenerationConfig, float lengths, off-strategy settings, token types -----

def _both(small, ids, **kwargs):
    """(ours, transformers') generate() on the same prompt and arguments; an exception is returned, not raised."""
    _, hf, ours = small
    results = []
    for run in (lambda: ours.generate(ids, **kwargs), lambda: _hf_generate(hf, ids, **kwargs)):
        try:
            results.append(run())
        except Exception as error:  # noqa: BLE001 - compared below
            results.append(error)
    return results


HF_CONFIGS = [
    dict(max_new_tokens=5),
    dict(max_new_tokens=5, repetition_penalty=1.5, no_repeat_ngram_size=2),
    dict(max_new_tokens=4, num_beams=3, num_return_sequences=2, length_penalty=0.5),
    dict(max_new_tokens=4, do_sample=True, top_p=0.0),  # top_p=0 keeps the best token: sampling is greedy
    dict(max_length=9, cache_implementation="static", return_legacy_cache=True, low_memory=True),  # inert
]


@pytest.mark.parametrize("settings", HF_CONFIGS, ids=str)
def test_a_transformers_generation_config_is_read(small, settings):
    """generate(generation_config=transformers.GenerationConfig(...)) and model.generation_config = it: the same
    tokens as transformers (which fills the settings left at their defaults from the model's, eos and bos here)."""
    _, hf, ours = small
    ids = np.random.default_rng(21).integers(1, 64, (2, 5))
    got, want = _both(small, ids, generation_config=transformers.GenerationConfig(**settings))
    _same(got, want)
    model = GPT2LMHeadModel.from_pretrained(small[0])
    model.generation_config = transformers.GenerationConfig(**settings, eos_token_id=0, pad_token_id=0)
    _same(model.generate(ids, attention_mask=np.ones_like(ids)), want)


def test_use_model_defaults_false_as_in_transformers(small):
    _, hf, ours = small
    ids = np.random.default_rng(22).integers(1, 64, (1, 5))
    hf_model, our_model = copy.deepcopy(hf), GPT2LMHeadModel.from_pretrained(small[0])
    for model in (hf_model, our_model):
        model.generation_config.repetition_penalty = 3.0
    for use in (None, False):
        config = transformers.GenerationConfig(max_new_tokens=6)
        with torch.no_grad():
            want = hf_model.generate(torch.tensor(ids), attention_mask=torch.ones(ids.shape, dtype=torch.long),
                                     generation_config=config, use_model_defaults=use)
        _same(our_model.generate(ids, generation_config=config, use_model_defaults=use), want)


@pytest.mark.parametrize("settings,name", [
    (dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0), "num_beam_groups"),  # HF: moved to the Hub
    (dict(penalty_alpha=0.6, top_k=4), "penalty_alpha"),  # contrastive search: moved to the Hub
    (dict(dola_layers="low"), "dola_layers"),
    (dict(num_beams=2, force_words_ids=[[5]]), "force_words_ids"),
    (dict(guidance_scale=3.0), "guidance_scale"),  # HF runs classifier-free guidance
    (dict(prompt_lookup_num_tokens=2), "prompt_lookup_num_tokens"),
    (dict(num_beams=2, low_memory=True), "low_memory"),  # HF refuses it too
], ids=str)
def test_a_strategy_minigpt2_lacks_is_a_clear_error(small, settings, name):
    """What transformers does with these is not what minigpt2's strategies do: an error naming the setting, as a
    generate() argument and inside a transformers GenerationConfig, never a silent fallback."""
    ids = np.random.default_rng(23).integers(1, 64, (1, 5))
    got, want = _both(small, ids, max_new_tokens=4, **settings)
    assert isinstance(got, ValueError) and f"{name}=" in str(got) and "minigpt2" in str(got), got
    if not isinstance(want, Exception):  # transformers ran it: its tokens are not greedy search's
        plain = _hf_generate(small[1], ids, max_new_tokens=4,
                             **{k: v for k, v in settings.items() if k in ("num_beams",)})
        assert name in ("prompt_lookup_num_tokens",) or not np.array_equal(want.numpy(), plain.numpy()), name
    with pytest.raises(ValueError, match=f"{name}="):
        small[2].generate(ids, generation_config=transformers.GenerationConfig(max_new_tokens=4, **settings))


@pytest.mark.parametrize("settings", [dict(guidance_scale=1.0), dict(penalty_alpha=0.6, do_sample=True),
                                      dict(num_beams=2, diversity_penalty=0.5), dict(synced_gpus=False),
                                      dict(use_cache=False, cache_implementation="dynamic")], ids=str)
def test_settings_that_do_not_act_are_accepted(small, settings):
    """Where transformers does not act on them (guidance_scale=1, penalty_alpha when sampling, ...), the result is
    transformers'."""
    ids = np.random.default_rng(24).integers(1, 64, (2, 5))
    got, want = _both(small, ids, max_new_tokens=4, **({"top_k": 1} if settings.get("do_sample") else {}),
                      **settings)
    _same(got, want)


def test_an_unknown_setting_of_a_foreign_config_is_refused(small):
    class Settings:  # duck-typed: anything with to_dict()
        def __init__(self, **settings):
            self.settings = settings

        def to_dict(self):
            return dict(self.settings, transformers_version="9.9", _from_model_config=True)

    ids = np.array([[3, 4, 5]])
    _same(small[2].generate(ids, generation_config=Settings(max_new_tokens=3, future_flag=None)),
          _hf_generate(small[1], ids, max_new_tokens=3))
    with pytest.raises(ValueError, match="future_flag=2.*does not know"):
        small[2].generate(ids, generation_config=Settings(max_new_tokens=3, future_flag=2))


@pytest.mark.parametrize("settings", [dict(max_new_tokens=3.0), dict(max_length=8.0), dict(max_new_tokens=np.float64(2)),
                                      dict(min_new_tokens=2.0, max_new_tokens=3)], ids=str)
def test_a_length_given_as_a_float(small, settings):
    """transformers 4.57 takes a whole float as a length (min lengths not: an error in both)."""
    ids = np.random.default_rng(25).integers(1, 64, (1, 5))
    got, want = _both(small, ids, **settings)
    if isinstance(want, Exception):
        assert isinstance(got, (TypeError, ValueError)) and "min_new_tokens" in str(got)
    else:
        _same(got, want)
    # transformers also runs max_length=8.5 (as 9): a fraction of a token is refused here
    with pytest.raises(TypeError, match="max_length must be a whole number of tokens, got 8.5"):
        small[2].generate(ids, max_length=8.5)


@pytest.mark.parametrize("settings", [dict(top_k=-1), dict(top_k=0), dict(top_p=0.0), dict(temperature=0),
                                      dict(temperature=0.0, top_p=2.0, typical_p=0.0, min_p=3.0)], ids=str)
def test_sampling_settings_are_ignored_by_greedy_and_beam_search(small, settings):
    ids = np.random.default_rng(26).integers(1, 64, (2, 5))
    for strategy in (dict(), dict(num_beams=2)):
        with pytest.warns(UserWarning, match="only matter"):
            got, want = _both(small, ids, max_new_tokens=4, **strategy, **settings)
        _same(got, want)


@pytest.mark.parametrize("settings", [dict(top_k=0), dict(top_k=None), dict(top_p=0.0), dict(top_p=0.0, top_k=0),
                                      dict(top_k=0, temperature=0.7), dict(top_p=1.5)], ids=str)
def test_sampling_settings_at_their_edges(small, settings):
    """top_k=0 (or None) turns top-k off, top_p=0 keeps the best token, top_p >= 1 keeps all: the first step's
    processed scores are transformers' (they do not depend on the draws)."""
    ids = np.random.default_rng(27).integers(1, 64, (2, 5))
    common = dict(do_sample=True, max_new_tokens=1, output_scores=True, return_dict_in_generate=True, **settings)
    got, want = _both(small, ids, **common)
    _close(got.scores[0], want.scores[0].numpy(), "scores")


@pytest.mark.parametrize("settings", [dict(top_k=-1), dict(temperature=0), dict(temperature=0.0), dict(top_k=4.0),
                                      dict(top_p=-0.5)], ids=str)
def test_sampling_settings_transformers_refuses(small, settings):
    got, want = _both(small, np.array([[3, 4, 5]]), do_sample=True, max_new_tokens=2, **settings)
    assert isinstance(want, ValueError) and isinstance(got, ValueError), (got, want)
    assert next(iter(settings)) in str(got)


@pytest.mark.parametrize("strategy", [dict(), dict(use_cache=False), dict(num_beams=3, num_return_sequences=2),
                                      dict(do_sample=True, top_k=1, num_return_sequences=2)], ids=str)
def test_token_type_ids_as_in_transformers(small, strategy):
    """generate(**inputs) with token_type_ids: each new token takes its prompt's last type (transformers' rule)."""
    ids = np.random.default_rng(28).integers(1, 64, (2, 5))
    types = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 2, 3]])
    got = small[2].generate(ids, token_type_ids=types, max_new_tokens=4, seed=0, **strategy)
    with torch.no_grad():
        want = small[1].generate(torch.tensor(ids), attention_mask=torch.ones(ids.shape, dtype=torch.long),
                                 token_type_ids=torch.tensor(types), max_new_tokens=4, **strategy)
    _same(got, want)
    assert not np.array_equal(got, small[2].generate(ids, max_new_tokens=4, seed=0, **strategy))
    with pytest.raises(ValueError, match="token_type_ids must be integers of the prompt's shape"):
        small[2].generate(ids, token_type_ids=types[:, 1:], max_new_tokens=2)


def test_pipeline_takes_what_generate_takes(pipes):
    """A transformers setting generate() accepts where it does not act (guidance_scale=1, synced_gpus) is accepted
    by the pipeline too, and one it refuses is refused with generate()'s message, not as an unknown name."""
    _, ours, hf = pipes
    common = dict(do_sample=False, max_new_tokens=4)
    with torch.no_grad():
        want = hf(PROMPTS[1], guidance_scale=1.0, synced_gpus=False, **common)
    assert ours(PROMPTS[1], guidance_scale=1.0, synced_gpus=False, use_model_defaults=True, **common) == want
    with pytest.raises(ValueError, match="guidance_scale=2.0 asks for classifier-free guidance"):
        ours(PROMPTS[1], guidance_scale=2.0, **common)


def test_a_generation_config_json_warns_only_of_settings_that_could_change_the_tokens(tmp_path):
    """transformers writes settings such as cache_implementation into generation_config.json; they cannot change
    the tokens, so reading them is silent; a strategy minigpt2 lacks (num_beam_groups) is named in a warning."""
    import json
    import warnings

    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "cache_implementation": "static", "return_legacy_cache": True,
         "transformers_version": "4.57.6"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert minigpt2.GenerationConfig.from_pretrained(tmp_path).bos_token_id == 1
    (tmp_path / "generation_config.json").write_text(json.dumps({"num_beam_groups": 2, "low_memory": True}))
    with pytest.warns(UserWarning, match=r"\['num_beam_groups'\] are not implemented"):
        minigpt2.GenerationConfig.from_pretrained(tmp_path)
