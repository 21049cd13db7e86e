"""generate(): token-identical to transformers for greedy and beam search, and sampling that does what it says.

Parity is checked twice: against committed fixtures (ids written by transformers 4.57.6 on a tiny checkpoint,
see tests/make_generation_fixtures.py; runs with NumPy only), and live against transformers when installed.
Ids must be equal, token for token: greedy and beam search only compare scores, and the fixtures' cases were
checked to decide the same in float64 as in float32, so float32 rounding differences (~1e-6) cannot flip them.
"""
from __future__ import annotations

import json
import os
import threading
import warnings

import numpy as np
import pytest

from minigpt2 import GPT2Config, GPT2DoubleHeadsModel, GPT2LMHeadModel
from minigpt2.generation import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    ForcedEOSTokenLogitsProcessor,
    GenerationConfig,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    sample,
    softmax,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "generation")
with open(os.path.join(FIXTURES, "cases.json"), encoding="utf-8") as f:
    MANIFEST = json.load(f)
CASES = {case["name"]: case for case in MANIFEST["cases"]}


@pytest.fixture(scope="module")
def fixture_model():
    return GPT2LMHeadModel.from_pretrained(os.path.join(FIXTURES, "checkpoint"))


@pytest.fixture(scope="module")
def model():
    """A small random model with a vocabulary of 64 and non-degenerate distributions (wide weights)."""
    config = GPT2Config(vocab_size=64, n_positions=64, n_embd=16, n_layer=2, n_head=2, initializer_range=0.4,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config, seed=3)


def prompt(*rows):
    return np.array(rows, dtype=np.int64)


# -- parity ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_parity(fixture_model, name):
    """The ids transformers' generate produced on the fixture checkpoint, token for token."""
    case = CASES[name]
    mask = None if case["attention_mask"] is None else np.array(case["attention_mask"])
    ours = fixture_model.generate(np.array(case["input_ids"]), attention_mask=mask,
                                  pad_token_id=MANIFEST["pad_token_id"], **case["kwargs"])
    expected = np.array(case["sequences"])
    assert ours.shape == expected.shape, f"{name}: shape {ours.shape}, transformers gave {expected.shape}"
    diff = np.argwhere(ours != expected)
    assert diff.size == 0, (f"{name}: first difference at row {diff[0][0]}, position {diff[0][1]}:\n"
                            f"ours {ours[diff[0][0]].tolist()}\nref  {expected[diff[0][0]].tolist()}\n"
                            f"(stale fixtures? regenerate: {MANIFEST['regenerate']})")


def test_fixtures_cover_what_matters():
    """The fixture set exercises early stopping, batches, several return sequences and every beam rule."""
    beams = [c for c in CASES.values() if c["kwargs"].get("num_beams", 1) > 1]
    assert any(c["ended_early"] for c in beams) and any(c["ended_early"] for c in CASES.values() if c not in beams)
    assert {c["kwargs"].get("early_stopping", False) for c in beams} == {False, True, "never"}
    assert any(c["kwargs"].get("num_return_sequences", 1) > 1 for c in beams)
    assert all(c["min_margin"] > 1e-3 for c in CASES.values() if "min_margin" in c)


LIVE_CASES = [
    dict(max_new_tokens=12),
    dict(max_new_tokens=12, min_length=12, min_new_tokens=0),  # min_new_tokens replaces min_length
    dict(max_new_tokens=12, min_length=3, min_new_tokens=7),
    # None: unset. (num_beams=None too in minigpt2; transformers 4.57 raises TypeError for it, 4.46 did not.)
    dict(max_new_tokens=12, temperature=None, top_p=None, repetition_penalty=None),
    dict(max_new_tokens=12, num_beams=3),
    dict(max_new_tokens=12, num_beams=4, num_return_sequences=4, length_penalty=0.0),
    dict(max_new_tokens=12, repetition_penalty=1.4, no_repeat_ngram_size=2, num_beams=2),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kwargs", LIVE_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_live_parity_with_transformers(tmp_path, seed, kwargs):
    """Same checkpoint, same arguments: the same ids as transformers' generate (left-padded batch, eos list)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from conftest import write_hf_checkpoint

    if int(transformers.__version__.split(".")[0]) >= 5 and kwargs.get("repetition_penalty"):
        pytest.skip("transformers 5 gives other tokens for the left-padded row here (penalties under beam search); "
                    "the reference for this case is 4.57")
    hf = write_hf_checkpoint(tmp_path, seed=seed, vocab_size=64, n_positions=32, eos_token_id=0, bos_token_id=0)
    ours = GPT2LMHeadModel.from_pretrained(tmp_path)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 64, (3, 6))
    mask = np.ones_like(ids)
    mask[0, :2] = 0
    ids[0, :2] = 0
    eos = [int(t) for t in rng.choice(np.arange(1, 64), 4, replace=False)]
    with torch.no_grad():
        expected = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), eos_token_id=eos,
                               pad_token_id=0, do_sample=False, **kwargs).numpy()
    got = ours.generate(ids, attention_mask=mask, eos_token_id=eos, pad_token_id=0, **kwargs)
    assert got.shape == expected.shape and (got == expected).all(), f"ours\n{got}\ntransformers\n{expected}"


def test_a_generation_config_takes_special_tokens_from_the_model(tmp_path):
    """HF: the special tokens that a GenerationConfig passed to generate leaves unset come from the model."""
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=64,
                                       eos_token_id=None, bos_token_id=None), seed=3)
    free = model.generate(prompt([5, 6, 7]), generation_config=GenerationConfig(max_new_tokens=10))
    eos = int(free[0, 5])  # the third new token: make it the model's end of sequence
    model.generation_config.eos_token_id = eos
    stopped = model.generate(prompt([5, 6, 7]), generation_config=GenerationConfig(max_new_tokens=10))
    first = 3 + int(np.argmax(free[0, 3:] == eos))
    np.testing.assert_array_equal(stopped, free[:, :first + 1])


def test_generation_config_json_sets_the_defaults_like_hf(tmp_path):
    """A checkpoint's generation_config.json gives generate() its defaults (HF reads it in from_pretrained)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from conftest import write_hf_checkpoint

    hf = write_hf_checkpoint(tmp_path, vocab_size=64, n_positions=32, eos_token_id=3, bos_token_id=3)
    hf.generation_config = transformers.GenerationConfig(max_new_tokens=6, num_beams=2, eos_token_id=[3, 9],
                                                         bos_token_id=3, pad_token_id=0)
    hf.generation_config.save_pretrained(tmp_path)
    ours = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert (ours.generation_config.max_new_tokens, ours.generation_config.num_beams) == (6, 2)
    ids = np.random.default_rng(0).integers(0, 64, (2, 4))
    with torch.no_grad():
        expected = hf.generate(torch.tensor(ids), attention_mask=torch.ones(2, 4, dtype=torch.long)).numpy()
    got = ours.generate(ids)
    assert got.shape == expected.shape and (got == expected).all(), f"ours\n{got}\ntransformers\n{expected}"

    # Saving writes it back, and transformers reads ours.
    ours.save_pretrained(tmp_path / "again")
    again = transformers.GenerationConfig.from_pretrained(tmp_path / "again")
    assert (again.max_new_tokens, again.num_beams, again.eos_token_id, again.pad_token_id) == (6, 2, [3, 9], 0)
    assert GPT2LMHeadModel.from_pretrained(tmp_path / "again").generation_config == ours.generation_config


def test_generation_config_json_is_optional_and_unknown_settings_warn(tmp_path):
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=64), seed=0)
    model.save_pretrained(tmp_path)
    os.remove(tmp_path / "generation_config.json")
    assert GPT2LMHeadModel.from_pretrained(tmp_path).generation_config == GenerationConfig.from_model_config(
        model.config)
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"max_new_tokens": 4, "diversity_penalty": 0.5, "transformers_version": "4.46.3", "_from_model_config": False}))
    with pytest.warns(UserWarning, match=r"\['diversity_penalty'\] are not implemented"):
        loaded = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert loaded.generation_config.max_new_tokens == 4
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="generation_config.json is not valid JSON"):
        GPT2LMHeadModel.from_pretrained(tmp_path)


def test_beam_sampling_keeps_two_candidates_per_beam_without_eos(model):
    out = model.generate(prompt([5, 6, 7]), do_sample=True, num_beams=2, top_k=1, eos_token_id=None, seed=0,
                         max_new_tokens=4, return_dict_in_generate=True, output_scores=True)
    assert all(np.isfinite(s).sum(-1).max() == 2 for s in out.scores)  # HF's min_tokens_to_keep=2


# -- logits processors against transformers' classes ------------------------------------------------------

def _random_scores(seed, n=4, vocab=50):
    rng = np.random.default_rng(seed)
    scores = (rng.standard_normal((n, vocab)) * 3).astype(np.float32)
    ids = rng.integers(0, vocab, (n, 9))
    ids[:, 5:7] = ids[:, 1:3]  # repeated bigrams, for no_repeat_ngram
    return ids, scores


PROCESSORS = [
    ("TemperatureLogitsWarper", (0.7,), TemperatureLogitsWarper, (0.7,)),
    ("TopKLogitsWarper", (5,), TopKLogitsWarper, (5,)),
    ("TopKLogitsWarper", (2, float("-inf"), 4), TopKLogitsWarper, (2, 4)),
    ("TopPLogitsWarper", (0.8,), TopPLogitsWarper, (0.8,)),
    ("TopPLogitsWarper", (0.1, float("-inf"), 3), TopPLogitsWarper, (0.1, 3)),
    ("RepetitionPenaltyLogitsProcessor", (1.3,), RepetitionPenaltyLogitsProcessor, (1.3,)),
    ("RepetitionPenaltyLogitsProcessor", (0.5,), RepetitionPenaltyLogitsProcessor, (0.5,)),
    ("NoRepeatNGramLogitsProcessor", (2,), NoRepeatNGramLogitsProcessor, (2,)),
    ("NoRepeatNGramLogitsProcessor", (1,), NoRepeatNGramLogitsProcessor, (1,)),
    ("MinLengthLogitsProcessor", (12, [3, 7]), MinLengthLogitsProcessor, (12, [3, 7])),
    ("MinNewTokensLengthLogitsProcessor", (5, 6, 3), MinNewTokensLengthLogitsProcessor, (5, 6, 3)),
    ("ForcedEOSTokenLogitsProcessor", (10, [3, 7]), ForcedEOSTokenLogitsProcessor, (10, [3, 7])),
    ("ForcedEOSTokenLogitsProcessor", (12, 3), ForcedEOSTokenLogitsProcessor, (12, 3)),
    ("MinPLogitsWarper", (0.1,), MinPLogitsWarper, (0.1,)),
    ("MinPLogitsWarper", (0.9, float("-inf"), 3), MinPLogitsWarper, (0.9, 3)),
    ("TypicalLogitsWarper", (0.7,), TypicalLogitsWarper, (0.7,)),
    ("TypicalLogitsWarper", (0.05, float("-inf"), 3), TypicalLogitsWarper, (0.05, 3)),
    ("EpsilonLogitsWarper", (0.03,), EpsilonLogitsWarper, (0.03,)),
    ("EpsilonLogitsWarper", (0.5, float("-inf"), 3), EpsilonLogitsWarper, (0.5, 3)),
    ("EtaLogitsWarper", (0.05,), EtaLogitsWarper, (0.05,)),
    ("EtaLogitsWarper", (0.9, float("-inf"), 3), EtaLogitsWarper, (0.9, 3)),
]


@pytest.mark.parametrize("hf_name,hf_args,ours,our_args", PROCESSORS, ids=lambda x: str(x))
@pytest.mark.parametrize("seed", range(3))
def test_processors_match_transformers(hf_name, hf_args, ours, our_args, seed):
    torch = pytest.importorskip("torch")
    generation = pytest.importorskip("transformers.generation")
    ids, scores = _random_scores(seed)
    expected = getattr(generation, hf_name)(*hf_args)(torch.tensor(ids), torch.tensor(scores)).numpy()
    got = ours(*our_args)(ids, scores)
    assert got.dtype == np.float32
    assert (np.isneginf(got) == np.isneginf(expected)).all(), f"{hf_name}: different tokens ruled out"
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-6, atol=0)


def test_bad_words_match_transformers():
    torch = pytest.importorskip("torch")
    generation = pytest.importorskip("transformers.generation")
    ids = np.array([[4, 5, 6], [9, 1, 2], [0, 0, 5], [1, 2, 0]])
    scores = np.random.default_rng(0).standard_normal((4, 12)).astype(np.float32)
    words = [[3], [5, 7], [1, 2, 9], [6, 6, 6, 6, 6], [11]]  # [11] is the eos token: HF does not ban it
    expected = generation.NoBadWordsLogitsProcessor(words, eos_token_id=11)(torch.tensor(ids),
                                                                            torch.tensor(scores)).numpy()
    got = NoBadWordsLogitsProcessor(words, eos_token_id=11)(ids, scores)
    np.testing.assert_array_equal(got, expected)
    assert np.isneginf(got[:, 3]).all() and np.isneginf(got[2, 7]) and np.isneginf(got[1, 9])
    assert np.isfinite(got[:, 11]).all() and np.isfinite(got[0, 7])


def test_new_decoding_options_match_transformers(tmp_path):
    """bad_words_ids and forced_eos_token_id in greedy and beam search give HF's tokens; output_logits HF's logits."""
    torch = pytest.importorskip("torch")
    from conftest import write_hf_checkpoint

    hf = write_hf_checkpoint(tmp_path, vocab_size=64, n_positions=32, eos_token_id=0, bos_token_id=0)
    ours = GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = np.random.default_rng(1).integers(1, 64, (2, 5))
    free = ours.generate(ids, max_new_tokens=8, eos_token_id=None, pad_token_id=0)
    bad = [[int(free[0, 6])], [int(free[1, 5]), int(free[1, 6])]]  # words greedy decoding would produce
    for kwargs in (dict(bad_words_ids=bad), dict(forced_eos_token_id=[5, 9]), dict(bad_words_ids=bad, num_beams=3),
                   dict(forced_eos_token_id=5, num_beams=2)):
        kwargs.update(max_new_tokens=8, eos_token_id=None, pad_token_id=0)
        with torch.no_grad():
            expected = hf.generate(torch.tensor(ids), attention_mask=torch.ones_like(torch.tensor(ids)),
                                   **kwargs).numpy()
        got = ours.generate(ids, **kwargs)
        assert (got == expected).all(), f"{kwargs}\nours\n{got}\ntransformers\n{expected}"
        assert not (got == free).all()
    with torch.no_grad():
        expected = hf.generate(torch.tensor(ids), attention_mask=torch.ones_like(torch.tensor(ids)), max_new_tokens=4,
                               return_dict_in_generate=True, output_logits=True, output_scores=True)
    got = ours.generate(ids, max_new_tokens=4, return_dict_in_generate=True, output_logits=True, output_scores=True)
    assert len(got.logits) == len(expected.logits) == 4 and got.past_key_values is not None
    for a, b in zip(got.logits, expected.logits):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-5 * max(1.0, float(b.abs().max())))


def test_sampling_warpers_chain_matches_transformers():
    """Temperature, then top-k, then top-p, as generate chains them, on random scores and settings."""
    torch = pytest.importorskip("torch")
    generation = pytest.importorskip("transformers.generation")
    from hypothesis import given, settings, strategies as st

    compared = []

    @settings(max_examples=30, deadline=None, derandomize=True)
    @given(seed=st.integers(0, 2 ** 16), temperature=st.floats(0.05, 5.0), top_k=st.integers(1, 60),
           top_p=st.floats(0.01, 1.0), spread=st.floats(0.1, 20.0))
    def check(seed, temperature, top_k, top_p, spread):
        rng = np.random.default_rng(seed)
        scores = (rng.standard_normal((3, 50)) * spread).astype(np.float32)
        ids = rng.integers(0, 50, (3, 4))
        hf = generation.LogitsProcessorList([generation.TemperatureLogitsWarper(temperature),
                                             generation.TopKLogitsWarper(top_k), generation.TopPLogitsWarper(top_p)])
        ours = [TemperatureLogitsWarper(temperature), TopKLogitsWarper(top_k), TopPLogitsWarper(top_p)]
        expected = hf(torch.tensor(ids), torch.tensor(scores)).numpy()
        got = scores
        for warper in ours:
            got = warper(ids, got)
        kept, kept_hf = np.isfinite(got), np.isfinite(expected)
        # A token exactly at the top-p boundary may go either way under float32 rounding of the running sum.
        cumulative = np.cumsum(np.sort(softmax(np.where(kept_hf, expected, -np.inf).astype(np.float64)))[:, ::-1],
                               axis=-1)
        near_boundary = np.abs(cumulative - top_p).min() < 1e-5
        if not near_boundary:
            assert (kept == kept_hf).all()
            np.testing.assert_allclose(got[kept], expected[kept_hf], rtol=1e-6)
            compared.append(seed)

    check()
    assert len(compared) >= 22, "almost every example fell on a top-p boundary: the test checked too little"


def test_repetition_penalty_formula():
    """CTRL's rule, by hand: a used token's positive score is divided, a negative one multiplied, once."""
    scores = np.array([[2.0, -2.0, 1.0, -1.0]], np.float32)
    got = RepetitionPenaltyLogitsProcessor(2.0)(np.array([[0, 1, 0, 0]]), scores)
    np.testing.assert_array_equal(got, [[1.0, -4.0, 1.0, -1.0]])
    assert scores[0, 0] == 2.0  # the input is not modified


def test_no_repeat_ngram_by_hand():
    ids = np.array([[1, 2, 3, 1, 2]])  # "1 2" was followed by 3, so after "... 1 2" the token 3 is banned
    got = NoRepeatNGramLogitsProcessor(3)(ids, np.zeros((1, 5), np.float32))
    assert np.isneginf(got).tolist() == [[False, False, False, True, False]]


# -- sampling --------------------------------------------------------------------------------------------

def test_sample_never_draws_zero_probability_tokens():
    rng = np.random.default_rng(0)
    probs = np.array([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0]] * 4000, np.float32)
    drawn = sample(probs, rng)
    counts = np.bincount(drawn, minlength=6) / len(drawn)
    assert set(np.unique(drawn)) == {1, 3, 4}
    # 4000 draws: each frequency within 5 standard deviations of its probability.
    assert np.all(np.abs(counts - probs[0]) <= 5 * np.sqrt(probs[0] * (1 - probs[0]) / len(drawn)) + 1e-9)


def test_sample_edges():
    """A distribution on the last token only, and on the first only; u = 0 and u close to 1."""

    class Fixed:
        def __init__(self, u):
            self.u = u

        def random(self, shape):
            return np.full(shape, self.u)

    last = np.array([[0.0, 0.0, 1.0]], np.float32)
    first = np.array([[1.0, 0.0, 0.0]], np.float32)
    for u in (0.0, 0.5, 1 - 2 ** -53):
        assert sample(last, Fixed(u)).tolist() == [2]
        assert sample(first, Fixed(u)).tolist() == [0]
    assert sample(np.array([[0.0, 1.0, 0.0]], np.float32), Fixed(1 - 2 ** -53)).tolist() == [1]


def test_sampling_is_reproducible(model):
    ids = prompt([5, 6, 7])
    a = model.generate(ids, do_sample=True, max_new_tokens=15, seed=123, num_return_sequences=3)
    b = model.generate(ids, do_sample=True, max_new_tokens=15, seed=123, num_return_sequences=3)
    c = model.generate(ids, do_sample=True, max_new_tokens=15, seed=np.random.default_rng(123),
                       num_return_sequences=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    others = [model.generate(ids, do_sample=True, max_new_tokens=15, seed=s) for s in range(5)]
    assert len({tuple(o[0]) for o in others}) > 1, "different seeds never differ: is it sampling at all?"


class Spy:
    """A logits processor that records the scores it sees (before temperature/top-k/top-p) and the ids."""

    def __init__(self):
        self.steps = []

    def __call__(self, input_ids, scores):
        self.steps.append(scores.copy())
        return scores


def _chosen_and_seen(model, **kwargs):
    spy = Spy()
    ids = prompt([5, 6, 7])
    out = model.generate(ids, logits_processor=[spy], max_new_tokens=20, num_return_sequences=16, **kwargs)
    chosen = out[:, 3:].T  # [steps, rows]
    return chosen, spy.steps


def test_top_k_draws_only_from_the_k_best(model):
    chosen, seen = _chosen_and_seen(model, do_sample=True, top_k=3, temperature=2.0, seed=0)
    ranks = [np.argsort(np.argsort(-scores, axis=-1), axis=-1)[np.arange(len(c)), c] for c, scores in
             zip(chosen, seen)]
    ranks = np.concatenate(ranks)
    assert ranks.max() <= 2
    assert len(set(ranks.tolist())) == 3, "with temperature 2 all three candidates should turn up"


def test_top_p_draws_only_from_the_nucleus(model):
    top_p = 0.6
    chosen, seen = _chosen_and_seen(model, do_sample=True, top_k=0, top_p=top_p, seed=1)
    outside = 0
    for c, scores in zip(chosen, seen):
        probs = softmax(scores.astype(np.float64))
        for row, token in enumerate(c):
            # The nucleus: the most likely tokens, up to and including the one that brings the total to top_p.
            order = np.argsort(-probs[row])
            before = np.cumsum(probs[row][order]) - probs[row][order]  # the mass ranked above each token
            nucleus = set(order[before < top_p].tolist())
            outside += token not in nucleus
    assert outside == 0
    assert len(np.unique(chosen)) > 3


def test_low_temperature_equals_greedy(model):
    """temperature -> 0 is greedy: with the top-1 logit ahead by at least m at every step, temperature m / 50
    gives the others together at most V * exp(-50) ~ 1e-20 of the probability, so every draw is the argmax."""
    ids = prompt([5, 6, 7], [9, 10, 11])
    spy = Spy()
    greedy = model.generate(ids, max_new_tokens=20, logits_processor=[spy])
    margin = min(float(np.min(np.diff(np.sort(s, axis=-1)[:, -2:], axis=-1))) for s in spy.steps)
    assert margin > 1e-3, "a near-tie in the test model; pick another seed"
    for seed in range(3):
        sampled = model.generate(ids, max_new_tokens=20, do_sample=True, temperature=margin / 50, seed=seed)
        np.testing.assert_array_equal(sampled, greedy)


@pytest.mark.parametrize("option", [dict(min_p=1.0), dict(epsilon_cutoff=0.99, top_k=0), dict(typical_p=1e-6)])
def test_strict_filters_keep_one_token(model, option):
    """Each filter, set as strictly as it goes, keeps one token per step (its min_tokens_to_keep), so sampling
    no longer depends on the seed; for min_p and epsilon that token is the argmax."""
    ids = prompt([5, 6, 7], [9, 10, 11])
    runs = [model.generate(ids, max_new_tokens=10, do_sample=True, seed=seed, **option) for seed in range(3)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])
    if "typical_p" not in option:  # (the most typical token need not be the likeliest)
        np.testing.assert_array_equal(runs[0], model.generate(ids, max_new_tokens=10))


def test_beam_sampling_runs_and_is_reproducible(model):
    ids = prompt([5, 6, 7])
    a = model.generate(ids, do_sample=True, num_beams=3, max_new_tokens=10, seed=4, top_k=10)
    b = model.generate(ids, do_sample=True, num_beams=3, max_new_tokens=10, seed=4, top_k=10)
    np.testing.assert_array_equal(a, b)
    assert a.shape[0] == 1 and a.shape[1] <= 13 and (a[0, :3] == ids[0]).all()


# -- the loop: cache, padding, stopping -------------------------------------------------------------------

def test_each_new_token_costs_one_token_forward(model, monkeypatch):
    calls = []
    forward = model.transformer.forward

    def counting(**kwargs):
        calls.append(kwargs["input_ids"].shape)
        return forward(**kwargs)

    monkeypatch.setattr(model.transformer, "forward", counting)
    model.generate(prompt([5, 6, 7, 8], [1, 2, 3, 4]), max_new_tokens=10)
    assert calls == [(2, 4)] + [(2, 1)] * 9  # the prompt once; the 10th token needs no forward after it
    calls.clear()
    model.generate(prompt([5, 6, 7, 8]), max_new_tokens=5, num_beams=3)
    assert calls == [(1, 4)] + [(3, 1)] * 4  # the prompt runs once, not once per beam


def test_use_cache_false_gives_the_same_tokens(model):
    ids = prompt([5, 6, 7, 8], [1, 2, 3, 4])
    np.testing.assert_array_equal(model.generate(ids, max_new_tokens=8, use_cache=False),
                                  model.generate(ids, max_new_tokens=8))


def test_left_padded_batch_equals_each_prompt_alone(model):
    long, short = [11, 12, 13, 14, 15, 16], [21, 22, 23]
    batch = prompt(long, [0, 0, 0] + short)
    mask = np.array([[1] * 6, [0, 0, 0, 1, 1, 1]])
    for kwargs in (dict(eos_token_id=None), dict(eos_token_id=None, num_beams=3)):
        together = model.generate(batch, attention_mask=mask, max_new_tokens=10, **kwargs)
        alone_long = model.generate(prompt(long), max_new_tokens=10, **kwargs)
        alone_short = model.generate(prompt(short), max_new_tokens=10, **kwargs)
        np.testing.assert_array_equal(together[0], alone_long[0])
        np.testing.assert_array_equal(together[1, 3:], alone_short[0])


def test_pad_tokens_are_inferred_only_when_pad_differs_from_eos(model):
    batch = prompt([7, 7, 11, 12, 13], [21, 22, 23, 24, 25])
    inferred = model.generate(batch, max_new_tokens=6, pad_token_id=7, eos_token_id=1)
    explicit = model.generate(batch, attention_mask=(batch != 7).astype(int), max_new_tokens=6, pad_token_id=7,
                              eos_token_id=1)
    np.testing.assert_array_equal(inferred, explicit)


def test_right_padding_without_a_mask_warns_like_hf(model):
    # GPT-2 has no pad token: like HF, the check uses eos (here 1) in its place.
    with pytest.warns(UserWarning, match="some prompts end in the pad token"):
        model.generate(prompt([5, 6, 1], [7, 8, 9]), max_new_tokens=2, eos_token_id=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate(prompt([5, 6, 1]), max_new_tokens=2, eos_token_id=1)  # one prompt: nothing to pad


def test_right_padding_is_warned_about_naming_the_fix(model):
    """As transformers 4.57: a right-padded batch generates (tests/test_hf_compat_more.py compares the ids), with a
    warning that names padding_side='left'."""
    with pytest.warns(UserWarning, match="padding_side='left'"):
        out = model.generate(prompt([5, 6, 0], [5, 6, 7]), attention_mask=np.array([[1, 1, 0], [1, 1, 1]]),
                             max_new_tokens=3)
    assert out.shape == (2, 6)


def test_finished_sequences_are_padded(fixture_model):
    case = CASES["greedy_eos_list"]
    out = fixture_model.generate(np.array(case["input_ids"]), attention_mask=np.array(case["attention_mask"]),
                                 max_new_tokens=16, eos_token_id=[38, 48, 3], pad_token_id=63)
    new = out[:, 6:]
    for row in new:
        ends = np.flatnonzero(np.isin(row, [38, 48, 3]))
        if ends.size:
            assert (row[ends[0] + 1:] == 63).all()
    assert any(np.isin(row, [38, 48, 3]).any() for row in new)


def test_no_prompt_starts_from_bos(model):
    out = model.generate(max_new_tokens=4)
    assert out.shape == (1, 5) and out[0, 0] == model.config.bos_token_id


def test_double_heads_model_generates_like_the_lm_head(model):
    double = GPT2DoubleHeadsModel(model.config, {**model.params})
    ids = prompt([5, 6, 7])
    np.testing.assert_array_equal(double.generate(ids, max_new_tokens=6), model.generate(ids, max_new_tokens=6))


def test_return_dict_in_generate(model):
    ids = prompt([5, 6, 7])
    out = model.generate(ids, max_new_tokens=5, return_dict_in_generate=True, output_scores=True)
    np.testing.assert_array_equal(out.sequences, model.generate(ids, max_new_tokens=5))
    assert len(out.scores) == 5 and out.scores[0].shape == (1, 64)
    np.testing.assert_array_equal(np.argmax(np.stack(out.scores), -1)[:, 0], out.sequences[0, 3:])
    beams = model.generate(ids, max_new_tokens=5, num_beams=3, num_return_sequences=2, return_dict_in_generate=True)
    assert beams.sequences_scores is None and beams.beam_indices.shape == (2, 5)  # scores: with output_scores (4.57)
    beams = model.generate(ids, max_new_tokens=5, num_beams=3, num_return_sequences=2, return_dict_in_generate=True,
                           output_scores=True)
    assert beams.sequences.shape == (2, 8) and beams.sequences_scores.shape == (2,)
    assert beams.sequences_scores[0] >= beams.sequences_scores[1]


def test_generation_config_defaults_are_hfs(model):
    cfg = model.generation_config
    assert (cfg.max_length, cfg.top_k, cfg.top_p, cfg.temperature, cfg.num_beams, cfg.do_sample) == \
           (20, 50, 1.0, 1.0, 1, False)
    assert cfg.eos_token_id == model.config.eos_token_id and cfg.pad_token_id is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 4.57 does not warn once the default means 20 new tokens
        out = model.generate(prompt([5, 6, 7]))
    assert out.shape == (1, 23)  # transformers 4.57: 20 new tokens (4.46: 20 in all)
    custom = GenerationConfig(max_new_tokens=3, eos_token_id=None)
    assert model.generate(prompt([5, 6, 7]), generation_config=custom).shape == (1, 6)


def test_settings_that_do_nothing_warn(model):
    with pytest.warns(UserWarning, match="temperature"):
        model.generate(prompt([5, 6, 7]), max_new_tokens=2, temperature=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate(prompt([5, 6, 7]), max_new_tokens=2, temperature=0.5, do_sample=True, seed=0)


# -- bad arguments ---------------------------------------------------------------------------------------

BAD = [
    (dict(do_sample=True, temperature=0.0), ValueError, "temperature must be > 0"),
    (dict(do_sample=True, temperature=-1), ValueError, "temperature must be > 0"),
    # sampling settings are judged when sampling (greedy ignores them, as HF): see test_generation_more.py
    (dict(do_sample=True, top_p=-0.1), ValueError, r"top_p must be in \[0, 1\]"),
    (dict(do_sample=True, top_k=-1), ValueError, "top_k must be a positive integer when sampling"),
    (dict(do_sample=True, top_k=2.5), ValueError, "top_k must be a positive integer when sampling"),
    (dict(top_k="2"), TypeError, "top_k must be an integer"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens must be >= 1"),
    (dict(max_new_tokens=100), ValueError, "n_positions=64"),
    (dict(max_length=5, max_new_tokens=None), ValueError, "set max_new_tokens"),
    (dict(num_beams=2, num_return_sequences=3), ValueError, "num_return_sequences .* must be <= num_beams"),
    (dict(num_return_sequences=2), ValueError, "needs sampling"),
    (dict(repetition_penalty=0.0), ValueError, "repetition_penalty must be > 0"),
    (dict(early_stopping="sometimes"), ValueError, "early_stopping must be True, False or 'never'"),
    (dict(do_sample=True, seed="abc"), TypeError, "seed must be"),
    (dict(eos_token_id=[1, 2.5]), TypeError, "eos_token_id must be an integer"),
    (dict(tempreature=0.5), TypeError, "did you mean 'temperature'"),
    (dict(do_sample="yes"), TypeError, "do_sample must be True or False"),
    (dict(do_sample=True, typical_p=0.0), ValueError, r"typical_p must be in \(0, 1\]"),
    (dict(do_sample=True, min_p=1.5), ValueError, r"min_p must be in \[0, 1\]"),
    (dict(do_sample=True, epsilon_cutoff=1.0), ValueError, r"epsilon_cutoff must be in \[0, 1\)"),
    (dict(do_sample=True, eta_cutoff=-0.1), ValueError, r"eta_cutoff must be in \[0, 1\)"),
    (dict(bad_words_ids=[[]]), ValueError, "bad_words_ids must be a non-empty list of non-empty lists"),
    (dict(bad_words_ids=[3, 4]), ValueError, "bad_words_ids must be a non-empty list of non-empty lists"),
    (dict(bad_words_ids=[[3, 64]]), ValueError, "bad_words_ids=.* outside this model's vocabulary"),
    (dict(forced_eos_token_id=-1), ValueError, "forced_eos_token_id must be >= 0"),
    (dict(output_logits="yes"), TypeError, "output_logits must be True or False"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD, ids=lambda x: str(x))
def test_bad_arguments(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        model.generate(prompt([5, 6, 7, 8, 9, 10]), **{"max_new_tokens": 5, **kwargs})


@pytest.mark.parametrize("inputs,error,message", [
    (np.zeros((1, 0), np.int64), ValueError, "empty"),
    (np.zeros((0, 3), np.int64), ValueError, "empty"),
    ([5, 6, 7], ValueError, r"shape \(batch, sequence_length\)"),
    ([[5.0, 6.0]], TypeError, "integer token ids"),
    ([[5, 64]], ValueError, "outside this model's vocabulary"),
    ([[5, -1]], ValueError, "outside this model's vocabulary"),
    ("Hello", TypeError, "not text"),
    ([[5, 6, 7], [8, 9]], ValueError, "different lengths: pad them on the left"),
])
def test_bad_inputs(model, inputs, error, message):
    with pytest.raises(error, match=message):
        model.generate(inputs, max_new_tokens=3)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(logits_processor=[5]), TypeError, "list of callables"),
    (dict(logits_processor=lambda ids, scores: scores), TypeError, "list of callables"),
    (dict(logits_processor=[lambda ids, scores: None]), TypeError, "returned NoneType"),
    (dict(logits_processor=[lambda ids, scores: scores[:, :3]]), TypeError, r"shape \(1, 64\)"),
    (dict(logits_processor=[lambda ids, scores: scores * np.nan], do_sample=True, seed=0), ValueError,
     "cannot sample"),
    (dict(logits_processor=[lambda ids, scores: np.full_like(scores, -np.inf)], do_sample=True, seed=0),
     ValueError, "cannot sample"),
    (dict(generation_config=object()), TypeError, "must be a minigpt2.GenerationConfig, got builtins.object"),
])
def test_bad_processors_and_configs(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        model.generate(prompt([5, 6, 7]), max_new_tokens=3, **kwargs)


def test_eos_token_id_as_an_array_or_tensor(model):
    expected = model.generate(prompt([5, 6, 7]), max_new_tokens=6, eos_token_id=[3, 4])
    np.testing.assert_array_equal(model.generate(prompt([5, 6, 7]), max_new_tokens=6, eos_token_id=np.array([3, 4])),
                                  expected)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(model.generate(prompt([5, 6, 7]), max_new_tokens=6,
                                                 eos_token_id=torch.tensor([3, 4])), expected)


def test_bad_attention_mask(model):
    with pytest.raises(ValueError, match="shape"):
        model.generate(prompt([5, 6]), attention_mask=np.ones((1, 3)), max_new_tokens=2)
    with pytest.raises(ValueError, match="only 0"):
        model.generate(prompt([5, 6]), attention_mask=np.array([[2, 1]]), max_new_tokens=2)


# -- streamers -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    from minigpt2.tokenizer import AutoTokenizer

    return AutoTokenizer.from_pretrained("gpt2")


@pytest.fixture(scope="module")
def full_vocab_model():
    config = GPT2Config(n_positions=64, n_embd=8, n_layer=1, n_head=2, initializer_range=0.3)
    return GPT2LMHeadModel(config, seed=1)


def test_text_streamer_prints_what_generate_returns(full_vocab_model, tokenizer, capsys):
    from minigpt2.streamers import TextStreamer

    ids = tokenizer("The cat sat", return_tensors="np").input_ids
    out = full_vocab_model.generate(ids, max_new_tokens=12, streamer=TextStreamer(tokenizer))
    assert capsys.readouterr().out == tokenizer.decode(out[0]) + "\n"
    out = full_vocab_model.generate(ids, max_new_tokens=12, streamer=TextStreamer(tokenizer, skip_prompt=True))
    assert capsys.readouterr().out == tokenizer.decode(out[0, ids.shape[1]:]) + "\n"


def test_iterator_streamer_in_a_thread(full_vocab_model, tokenizer):
    from minigpt2.streamers import TextIteratorStreamer

    ids = tokenizer("Hello there", return_tensors="np").input_ids
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, timeout=30)
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        out=full_vocab_model.generate(ids, max_new_tokens=10, streamer=streamer)))
    thread.start()
    pieces = list(streamer)
    thread.join(timeout=30)
    assert "".join(pieces) == tokenizer.decode(result["out"][0, ids.shape[1]:])
    assert len(pieces) > 1  # it arrived in pieces, not at the end


def test_streamer_never_splits_a_character(tokenizer):
    """An emoji spread over several tokens is printed whole, once its last byte has arrived."""
    from minigpt2.streamers import TextIteratorStreamer

    ids = tokenizer("Hi 🐈‍⬛ 日本").input_ids
    assert len(ids) > len("Hi 🐈‍⬛ 日本".split())  # the characters really do span several tokens
    streamer = TextIteratorStreamer(tokenizer, timeout=5)
    streamer.put(np.array([ids[:1]]))
    for token in ids[1:]:
        streamer.put(np.array([token]))
    streamer.end()
    pieces = list(streamer)
    assert "".join(pieces) == "Hi 🐈‍⬛ 日本" and not any("\ufffd" in p for p in pieces)


def test_streamer_refuses_batches_and_beams(full_vocab_model, tokenizer):
    from minigpt2.streamers import TextStreamer

    with pytest.raises(ValueError, match="streamer"):
        full_vocab_model.generate(np.array([[1, 2]]), num_beams=2, max_new_tokens=2, streamer=TextStreamer(tokenizer))
    with pytest.raises(ValueError, match="batch size 1"):
        TextStreamer(tokenizer).put(np.array([[1, 2], [3, 4]]))
