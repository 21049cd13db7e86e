"""generate() arguments a transformers 4.57 user passes to GPT-2, beyond what the other generation tests cover:
the prompt ("encoder") penalties, GenerationConfig.from_pretrained / from_dict with settings, the sampling chain as
generate runs it, length warnings, unknown arguments, and the output classes' fields and shapes.

Reference: transformers 4.57.6 (float32, attn_implementation="eager") on the same random checkpoint.

Tolerances, from float32 rounding (eps = 2**-23 = 1.2e-7):
- generate's scores and logits against transformers': both run the same float32 model with sums in another order
  (BLAS vs torch), a few ulps per accumulation through two layers: 1e-5 * max(1, max|ref|), conftest's assert_close
  (docs/numerics.md). Ids are compared exactly: the checkpoints are widely spread random models whose best scores are
  far apart (the closest top-two gap along these paths is far above that bound).
- the sampling chain, transformers' processors on *our* logits: the inputs are identical, so only the processors'
  own float32 arithmetic differs; the widest is a log-softmax over V = 64 scores, whose sum in another order is off
  by at most V * eps relative, so its log by V * eps absolute: 64 * eps * max(1, max|ref|) = 7.6e-6 * max(1, |ref|).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import minigpt2
from minigpt2 import GenerationConfig, GPT2LMHeadModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, write_hf_checkpoint  # noqa: E402

V = 64
CHAIN_RTOL = V * float(np.finfo(np.float32).eps)  # see the module docstring


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(directory, transformers model, minigpt2 model): vocabulary 64, eos = bos = 0."""
    d = tmp_path_factory.mktemp("parity6")
    hf = write_hf_checkpoint(d, seed=6, vocab_size=V, n_positions=64, eos_token_id=0, bos_token_id=0)
    return d, hf, GPT2LMHeadModel.from_pretrained(d)


def _prompts(kind):
    """(ids, mask): two plain prompts, a left-padded batch, or three prompts of few distinct tokens (many repeated
    n-grams, so the n-gram bans act)."""
    rng = np.random.default_rng(60)
    if kind == "plain":
        ids = rng.integers(1, V, (2, 5))
        return ids, np.ones_like(ids)
    if kind == "left-padded":
        ids = rng.integers(1, V, (2, 6))
        mask = np.ones_like(ids)
        ids[0, :2], mask[0, :2] = 0, 0
        return ids, mask
    ids = rng.integers(1, 9, (3, 8))
    return ids, np.ones_like(ids)


def _hf(hf, ids, mask, **kwargs):
    with torch.no_grad():
        return hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), **kwargs)


def _same_ids(ours, theirs):
    theirs = theirs.numpy()
    assert ours.shape == theirs.shape and (ours == theirs).all(), f"ours\n{ours}\ntransformers\n{theirs}"


def _close_scores(ours, theirs, name):
    assert len(ours) == len(theirs), f"{name}: {len(ours)} steps, transformers {len(theirs)}"
    for t, (a, b) in enumerate(zip(ours, theirs)):
        b = b.numpy()
        assert a.shape == b.shape and (np.isneginf(a) == np.isneginf(b)).all(), f"{name}[{t}]: tokens ruled out"
        assert_close(np.where(np.isneginf(b), 0, a), np.where(np.isneginf(b), 0, b), f"{name}[{t}]")


# -- 1. encoder_repetition_penalty and encoder_no_repeat_ngram_size ------------------------------------------------
# transformers 4.57 applies both to a decoder-only model's prompt ids (they were refused here before).

ENCODER_CASES = [
    dict(encoder_repetition_penalty=3.0),        # > 1: the prompt's tokens become MORE likely
    dict(encoder_repetition_penalty=0.5),
    dict(encoder_repetition_penalty=1.7, repetition_penalty=1.3),
    dict(encoder_no_repeat_ngram_size=1),        # no token of the prompt
    dict(encoder_no_repeat_ngram_size=2),
    dict(encoder_no_repeat_ngram_size=3, no_repeat_ngram_size=2),
    dict(encoder_no_repeat_ngram_size=2, num_beams=3, num_return_sequences=2),
    dict(encoder_no_repeat_ngram_size=2, do_sample=True, top_k=1, num_return_sequences=2),  # top_k=1: the argmax
]


@pytest.mark.parametrize("kind", ["plain", "left-padded", "repetitive"])
@pytest.mark.parametrize("settings", ENCODER_CASES, ids=str)
def test_encoder_settings_as_in_transformers(pair, settings, kind):
    _, hf, ours = pair
    ids, mask = _prompts(kind)
    common = dict(max_new_tokens=8, pad_token_id=0, return_dict_in_generate=True, output_scores=True, **settings)
    want = _hf(hf, ids, mask, **common)
    got = ours.generate(ids, attention_mask=mask, **common)
    _same_ids(got.sequences, want.sequences)
    _close_scores(got.scores, want.scores, "scores")


def test_encoder_processors_match_transformers_classes():
    """The two processors on random scores [N, V], N = 3 prompts x 2 beams, against transformers' classes."""
    from transformers import generation

    rng = np.random.default_rng(61)
    prompts = rng.integers(0, 6, (3, 7))
    ids = np.concatenate([np.repeat(prompts, 2, axis=0), rng.integers(0, 6, (6, 4))], axis=1)
    scores = (rng.standard_normal((6, V)) * 3).astype(np.float32)
    for n in (1, 2, 3):
        want = generation.EncoderNoRepeatNGramLogitsProcessor(n, torch.tensor(prompts))(
            torch.tensor(ids), torch.tensor(scores)).numpy()
        got = minigpt2.EncoderNoRepeatNGramLogitsProcessor(n, prompts)(ids, scores)
        assert (np.isneginf(got) == np.isneginf(want)).all() and (got[np.isfinite(got)] == want[np.isfinite(want)]).all()
    for penalty in (3.0, 0.4):  # one row per prompt (what generate allows; see the next test)
        want = generation.EncoderRepetitionPenaltyLogitsProcessor(penalty, torch.tensor(prompts))(
            torch.tensor(ids[::2]), torch.tensor(scores[::2])).numpy()
        got = minigpt2.EncoderRepetitionPenaltyLogitsProcessor(penalty, prompts)(ids[::2], scores[::2])
        assert_close(got, want, f"encoder repetition penalty {penalty}", rtol=float(np.finfo(np.float32).eps))


@pytest.mark.parametrize("settings", [dict(num_beams=2), dict(do_sample=True, num_return_sequences=2)], ids=str)
def test_encoder_repetition_penalty_with_several_rows_per_prompt_is_refused(pair, settings):
    """transformers 4.57 hands the processor the prompts before they are repeated per beam, so it changes only the
    first B rows (beam 0 of prompt 0 gets prompt 0's tokens, beam 1 prompt 1's...): a ValueError naming the setting
    and what works there, instead of other tokens."""
    _, hf, ours = pair
    ids, mask = _prompts("plain")
    with pytest.raises(ValueError, match="encoder_repetition_penalty.*use repetition_penalty"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=3, encoder_repetition_penalty=2.0, **settings)
    # (the transformers behaviour that this refuses: the second beam's scores are left as they were)
    out = _hf(hf, ids[:1], mask[:1], max_new_tokens=1, num_beams=2, encoder_repetition_penalty=2.0, pad_token_id=0,
              return_dict_in_generate=True, output_scores=True, output_logits=True)
    shift = (out.scores[0] - torch.log_softmax(out.logits[0], -1))[:, ids[0]].numpy()
    assert (shift[0] > 0).all() and (shift[1] == 0).all()


def test_encoder_settings_with_inputs_embeds_warn_and_are_ignored_as_in_transformers(pair):
    _, hf, ours = pair
    ids, mask = _prompts("plain")
    embeds = ours.get_input_embeddings().weight[ids]
    for settings in (dict(encoder_repetition_penalty=3.0), dict(encoder_no_repeat_ngram_size=1)):
        name = next(iter(settings))
        with pytest.warns(UserWarning, match=name):
            with torch.no_grad():
                want = hf.generate(inputs_embeds=torch.tensor(embeds), attention_mask=torch.tensor(mask),
                                   max_new_tokens=5, pad_token_id=0, **settings)
        with pytest.warns(UserWarning, match=f"{name}.*inputs_embeds.*ignored"):
            got = ours.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=5, pad_token_id=0, **settings)
        _same_ids(got, want)


def test_encoder_settings_in_generation_configs(pair, tmp_path):
    """In a transformers GenerationConfig, in model.generation_config and in generation_config.json."""
    d, hf, ours = pair
    ids, mask = _prompts("repetitive")
    settings = dict(encoder_no_repeat_ngram_size=2, encoder_repetition_penalty=1.5, max_new_tokens=6, pad_token_id=0)
    want = _hf(hf, ids, mask, generation_config=transformers.GenerationConfig(**settings))
    _same_ids(ours.generate(ids, attention_mask=mask, generation_config=transformers.GenerationConfig(**settings)),
              want)
    _same_ids(ours.generate(ids, attention_mask=mask, generation_config=GenerationConfig(**settings)), want)
    transformers.GenerationConfig(**settings, bos_token_id=0, eos_token_id=0).save_pretrained(tmp_path)
    loaded = GenerationConfig.from_pretrained(tmp_path)
    assert (loaded.encoder_no_repeat_ngram_size, loaded.encoder_repetition_penalty) == (2, 1.5)
    loaded.save_pretrained(tmp_path / "again")
    again = transformers.GenerationConfig.from_pretrained(tmp_path / "again")
    assert (again.encoder_no_repeat_ngram_size, again.encoder_repetition_penalty) == (2, 1.5)
    model = GPT2LMHeadModel.from_pretrained(d)
    model.generation_config = loaded
    _same_ids(model.generate(ids, attention_mask=mask), want)
    defaults = transformers.GenerationConfig()
    assert GenerationConfig().encoder_repetition_penalty == defaults.encoder_repetition_penalty
    assert GenerationConfig().encoder_no_repeat_ngram_size == defaults.encoder_no_repeat_ngram_size


# -- 2. GenerationConfig.from_pretrained / from_dict with settings --------------------------------------------------

def test_generation_config_from_pretrained_takes_settings_as_in_transformers(tmp_path):
    """HF's documented call: GenerationConfig.from_pretrained(path, top_k=1, foo=False, do_sample=True,
    return_unused_kwargs=True); settings override the file's; Hub options still find the file."""
    transformers.GenerationConfig(max_new_tokens=7, do_sample=True, top_k=3, eos_token_id=0).save_pretrained(tmp_path)
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path, top_k=1, temperature=0.5, local_files_only=True)
    ours = GenerationConfig.from_pretrained(tmp_path, top_k=1, temperature=0.5, local_files_only=True)
    for name in ("max_new_tokens", "do_sample", "top_k", "temperature", "eos_token_id"):
        assert getattr(ours, name) == getattr(theirs, name), name
    config, unused = GenerationConfig.from_pretrained(tmp_path, top_k=1, foo=False, do_sample=True,
                                                      return_unused_kwargs=True)
    assert (config.top_k, config.do_sample, config.max_new_tokens, unused) == (1, True, 7, {"foo": False})
    assert GenerationConfig.from_pretrained(tmp_path, None).top_k == 3  # config_file_name=None: the default name
    with pytest.raises(ValueError, match="max_new_tokens"):  # settings are checked as the file's are
        GenerationConfig.from_pretrained(tmp_path, max_new_tokens=0)


def test_generation_config_from_dict_takes_settings_as_in_transformers():
    settings = {"top_k": 3, "transformers_version": "4.57.6"}
    theirs = transformers.GenerationConfig.from_dict(settings, max_new_tokens=4)
    ours = GenerationConfig.from_dict(settings, max_new_tokens=4)
    assert (ours.top_k, ours.max_new_tokens) == (theirs.top_k, theirs.max_new_tokens) == (3, 4)
    config, unused = GenerationConfig.from_dict(settings, max_new_tokens=4, return_unused_kwargs=True, foo=1)
    assert config == ours and unused == {"foo": 1}
    assert GenerationConfig.from_dict(settings) == GenerationConfig(top_k=3)


# -- 3. lengths, unknown arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [dict(min_new_tokens=6, max_new_tokens=4), dict(min_new_tokens=6, max_length=8),
                                      dict(min_length=30, max_new_tokens=4)], ids=str)
def test_unfeasible_minimum_lengths_warn_as_in_transformers(pair, settings):
    """transformers warns (UserWarning) when the minimum is past max_length, also when min_new_tokens sets it; the
    tokens are still transformers'."""
    _, hf, ours = pair
    ids, mask = _prompts("plain")
    with pytest.warns(UserWarning, match="Unfeasible length constraints"):
        want = _hf(hf, ids, mask, pad_token_id=0, **settings)
    name = "min_new_tokens" if "min_new_tokens" in settings else "min_length"
    with pytest.warns(UserWarning, match=rf"{name} \(\d+\).* is larger than max_length"):
        got = ours.generate(ids, attention_mask=mask, pad_token_id=0, **settings)
    _same_ids(got, want)


def test_an_unknown_argument_is_the_value_error_transformers_raises(pair):
    """transformers raises ValueError ("model_kwargs are not used"); minigpt2's error is that and a TypeError."""
    _, hf, ours = pair
    ids, mask = _prompts("plain")
    with pytest.raises(ValueError, match="foo"):
        _hf(hf, ids, mask, max_new_tokens=2, foo=1)
    for error in (ValueError, TypeError):
        with pytest.raises(error, match=r"'foo'"):
            ours.generate(ids, attention_mask=mask, max_new_tokens=2, foo=1)


# -- 4. the sampling chain inside generate ---------------------------------------------------------------------------

SAMPLING_CASES = [
    dict(temperature=0.7, top_k=10, top_p=0.8),
    dict(top_k=0, min_p=0.05, temperature=1.3),
    dict(typical_p=0.6, top_k=None),
    dict(epsilon_cutoff=0.02, top_k=20),
    dict(eta_cutoff=0.05, top_p=0.9),
    dict(repetition_penalty=1.4, no_repeat_ngram_size=2, top_k=5, renormalize_logits=True),
    dict(num_beams=2, top_k=3, eos_token_id=[5, 9]),  # beam sampling keeps len(eos) + 1 tokens
    dict(num_beams=3, top_p=0.3, temperature=0.5),
]


def _transformers_chain(hf, prompt_length, prompts, **settings):
    """transformers' own processor list for these settings (its _get_logits_processor, as its generate builds it)."""
    config = transformers.GenerationConfig(**{**hf.generation_config.to_dict(), **settings})
    hf._prepare_special_tokens(config, True, device="cpu")
    return hf._get_logits_processor(generation_config=config, input_ids_seq_length=prompt_length,
                                    encoder_input_ids=torch.tensor(prompts), device="cpu")


@pytest.mark.parametrize("settings", SAMPLING_CASES, ids=str)
def test_sampling_scores_are_transformers_chain_on_the_same_logits(pair, settings):
    """Draws differ from transformers' (NumPy's generator, not torch's), so compare what is drawn from: each step's
    scores (output_scores) against transformers' processors applied to that step's raw logits (output_logits) and
    the ids so far; a drawn token is never one they rule out. Beam sampling's scores add each beam's running score
    to the processed log-probabilities: the difference is one number per row."""
    _, hf, ours = pair
    ids, _ = _prompts("plain")
    T = ids.shape[1]
    out = ours.generate(ids, do_sample=True, max_new_tokens=6, return_dict_in_generate=True, output_scores=True,
                        output_logits=True, seed=3, pad_token_id=0, **settings)
    chain = _transformers_chain(hf, T, ids, do_sample=True, **settings)
    beams = settings.get("num_beams", 1) > 1
    finished = np.zeros(len(ids), bool)
    for t, (scores, logits) in enumerate(zip(out.scores, out.logits)):
        if not beams:
            ref = chain(torch.tensor(out.sequences[:, :T + t]), torch.tensor(logits)).numpy()
            assert (np.isneginf(ref) == np.isneginf(scores)).all(), f"step {t}: other tokens ruled out"
            assert_close(np.where(np.isneginf(ref), 0, scores), np.where(np.isneginf(ref), 0, ref), f"step {t}",
                         rtol=CHAIN_RTOL)
            drawn = out.sequences[:, T + t]
            assert (np.isfinite(ref[np.arange(len(ref)), drawn]) | finished).all(), f"step {t}: drew a ruled-out token"
            finished |= drawn == 0
        else:  # the processors see log-probabilities in beam search; the ids do not matter to these warpers
            ref = chain(torch.zeros((len(logits), T + t), dtype=torch.long),
                        torch.log_softmax(torch.tensor(logits), -1)).numpy()
            assert (np.isneginf(ref) == np.isneginf(scores)).all(), f"step {t}: other tokens ruled out"
            shift = np.full(ref.shape, np.nan)
            shift[np.isfinite(ref)] = scores[np.isfinite(ref)].astype(np.float64) - ref[np.isfinite(ref)]
            spread = np.nanmax(shift, axis=1) - np.nanmin(shift, axis=1)
            assert (spread <= CHAIN_RTOL * np.maximum(1, np.nanmax(np.abs(scores), axis=1))).all(), (t, spread)


def test_sampling_is_reproducible_and_the_cache_does_not_change_it(pair):
    _, _, ours = pair
    ids, mask = _prompts("left-padded")
    kwargs = dict(attention_mask=mask, do_sample=True, max_new_tokens=8, top_p=0.9, num_return_sequences=3,
                  pad_token_id=0)
    first = ours.generate(ids, seed=5, **kwargs)
    assert (ours.generate(ids, seed=5, **kwargs) == first).all()
    assert (ours.generate(ids, seed=5, use_cache=False, **kwargs) == first).all()
    assert (ours.generate(ids, seed=np.random.default_rng(5), **kwargs) == first).all()
    assert first.shape == (6, 14)


# -- 5. what return_dict_in_generate returns --------------------------------------------------------------------------

def _layout(out):
    """Class, keys in order, and per field: an array's shape, or a tuple's length and its first item's layout."""
    def shape(value):
        if isinstance(value, tuple):
            return (len(value), shape(value[0]) if value else None)
        return tuple(np.shape(value))
    return type(out).__name__, list(out.keys()), {k: shape(v) for k, v in out.items() if k != "past_key_values"}


@pytest.mark.parametrize("settings", [
    dict(),
    dict(output_scores=True, output_logits=True, output_attentions=True, output_hidden_states=True),
    dict(do_sample=True, num_return_sequences=2, output_scores=True),
    dict(num_beams=3),
    dict(num_beams=3, num_return_sequences=2, output_scores=True, output_logits=True),
    dict(num_beams=2, do_sample=True, output_scores=True, output_hidden_states=True),
    dict(num_beams=2, use_cache=False, output_attentions=True),
], ids=str)
def test_output_classes_fields_and_shapes_as_in_transformers(pair, settings):
    _, hf, ours = pair
    ids, mask = _prompts("left-padded")
    common = dict(max_new_tokens=4, return_dict_in_generate=True, pad_token_id=0, eos_token_id=None, **settings)
    want = _hf(hf, ids, mask, **common)
    got = ours.generate(ids, attention_mask=mask, **common)
    assert _layout(got) == _layout(want)
    assert ("past_key_values" in got) == ("past_key_values" in want)
    if "scores" in want:
        beams = (got.beam_indices, want.beam_indices) if "beam_indices" in want else (None, None)
        theirs = hf.compute_transition_scores(want.sequences, want.scores, beams[1], normalize_logits=beams[1] is None)
        mine = ours.compute_transition_scores(got.sequences, got.scores, beams[0], normalize_logits=beams[0] is None)
        assert mine.shape == tuple(theirs.shape)
        if not settings.get("do_sample"):  # the numbers too (sampled tokens differ from transformers')
            assert_close(mine, theirs.numpy(), "transition scores")
            if "sequences_scores" in want:
                assert_close(got.sequences_scores, want.sequences_scores.numpy(), "sequences_scores")
