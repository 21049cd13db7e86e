"""Edges a transformers 4.57 user porting code meets, against transformers itself on the same tiny checkpoints
(float32, attn_implementation="eager"): the very last position, left-padded batches of very different lengths with
beams and returned sequences, a two-turn chat continuing generate's own cache, explicit position and token type ids
with a cache, prompts given as embeddings with the processors that count the prompt, combined processors, the
sequence classifier on padded batches, the double-heads model's choice tokens, the attention config flags and
activations (both kernel backends), head masks in a decoding step, cross-attention under beam search, bad words
whose prefix is the whole sequence so far, a prompt of one embedded position (where transformers' generate is wrong:
the reference is its forward), and equal beam scores among more than 17 kept candidates.

Tolerances, from float32 rounding (unit roundoff u = 2**-24 = 6e-8): every compared number is a float32 product of
the same model with sums in another order (NumPy's BLAS or the C core vs. torch). A sum of n terms in another order
differs by at most about n * u of the sum of its terms' magnitudes; the widest sums here have n = 4 * n_embd = 128
(the MLP's projection), 128 * 6e-8 = 7.7e-6 of the largest value, and layer norms keep that from growing through
two or three layers: 1e-5 * max(1, max|ref|), conftest's assert_close (docs/numerics.md). Scores that processors set
to -inf must be -inf at the same places in both (that is no rounding). Ids are compared exactly: the checkpoints are
widely spread random models (conftest.randomize_torch_model), whose best candidates are far apart. A beam's score
against 4 log-probabilities summed here keeps the same bound: each log-probability is off by ~1e-6 as measured (the
logits' rounding, plus the log-softmax's sum of 99 terms, 99 * u = 6e-6 relative at most), 4e-6 for the four.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import minigpt2
from minigpt2 import GPT2LMHeadModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, write_hf_checkpoint  # noqa: E402

EOS, PAD = 98, 97  # in the vocabulary of 99 (conftest.TINY)


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """(transformers model, minigpt2 model): 16 positions, eos 98, pad 97."""
    d = tmp_path_factory.mktemp("edges12_short")
    hf = write_hf_checkpoint(d, seed=5, n_positions=16, eos_token_id=EOS, bos_token_id=EOS, pad_token_id=PAD)
    return hf, GPT2LMHeadModel.from_pretrained(d)


@pytest.fixture(scope="module")
def roomy(tmp_path_factory):
    """(transformers model, minigpt2 model): 40 positions, eos 98, pad 97."""
    d = tmp_path_factory.mktemp("edges12_roomy")
    hf = write_hf_checkpoint(d, seed=24, n_positions=40, eos_token_id=EOS, bos_token_id=EOS, pad_token_id=PAD)
    return hf, GPT2LMHeadModel.from_pretrained(d)


def _torch(value):
    return torch.tensor(value) if isinstance(value, np.ndarray) else value


def _hf_generate(hf, *args, **kwargs):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.generate(*map(_torch, args), **{k: _torch(v) for k, v in kwargs.items()})


def _hf_forward(hf, *args, **kwargs):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf(*map(_torch, args), **{k: _torch(v) for k, v in kwargs.items()})


def _numpy(value):
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


def _same_ids(ours, theirs, name="ids"):
    ours, theirs = np.asarray(ours), _numpy(theirs)
    assert ours.shape == theirs.shape and (ours == theirs).all(), f"{name}: minigpt2\n{ours}\ntransformers\n{theirs}"


def _close(ours, theirs, name):
    """assert_close, with processors' -inf required at the same places (and left out of the difference)."""
    ours, theirs = np.asarray(ours, np.float32), _numpy(theirs)
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape}, transformers {theirs.shape}"
    masked = np.isneginf(theirs)
    assert (np.isneginf(ours) == masked).all(), f"{name}: -inf at other places than transformers'"
    assert_close(np.where(masked, 0, ours), np.where(masked, 0, theirs), name)


def _same_output(got, want):
    """generate's dict output against transformers': ids, and every per-step and per-sequence number it holds."""
    _same_ids(got.sequences, want.sequences, "sequences")
    for field in ("scores", "logits"):
        if getattr(want, field, None) is not None:
            assert len(getattr(got, field)) == len(getattr(want, field)), field
            for i, (a, b) in enumerate(zip(getattr(got, field), getattr(want, field))):
                _close(a, b, f"{field}[{i}]")
    if getattr(want, "sequences_scores", None) is not None:
        _close(got.sequences_scores, want.sequences_scores, "sequences_scores")
    if getattr(want, "beam_indices", None) is not None:
        _same_ids(got.beam_indices, want.beam_indices, "beam_indices")


DICT = dict(output_scores=True, output_logits=True, return_dict_in_generate=True)


# -- 1. the very last position: prompt + new tokens = n_positions exactly -----------------------------------------

@pytest.mark.parametrize("kwargs", [dict(max_length=16), dict(max_new_tokens=10, num_beams=3, num_return_sequences=3),
                                    dict(max_new_tokens=10, num_beams=2, num_return_sequences=2, **DICT)], ids=str)
def test_generating_up_to_the_last_position_of_a_left_padded_batch(short, kwargs):
    hf, ours = short
    ids = np.array([[PAD, PAD, PAD, 5, 6, 7], [8, 9, 10, 11, 12, 13]])
    mask = (ids != PAD).astype(int)
    got = ours.generate(ids, attention_mask=mask, eos_token_id=None, **kwargs)
    want = _hf_generate(hf, ids, attention_mask=mask, eos_token_id=None, **kwargs)
    if kwargs.get("return_dict_in_generate"):
        _same_output(got, want)
        assert got.sequences.shape[1] == 16
    else:
        _same_ids(got, want)
        assert got.shape[1] == 16


def test_the_last_position_fed_from_a_cache(short):
    hf, ours = short
    ids = np.random.default_rng(0).integers(0, 99, (2, 16))
    want = _hf_forward(hf, ids).logits
    assert_close(ours(ids).logits, want.numpy(), "16 positions at once")
    cached = ours(ids[:, :15]).past_key_values
    assert_close(ours(ids[:, 15:], past_key_values=cached).logits, want[:, 15:].numpy(), "position 15 from a cache")


# -- 2. left padding, rows of very different lengths, beams and returned sequences together -------------------------

@pytest.mark.parametrize("kwargs", [
    dict(max_new_tokens=5, num_beams=3, num_return_sequences=3),
    dict(max_new_tokens=5, num_beams=2, num_return_sequences=2, length_penalty=0.5, **DICT),
    dict(max_new_tokens=6, num_beams=3, num_return_sequences=2, early_stopping=True, eos_token_id=[EOS, 3, 7], **DICT),
    dict(max_new_tokens=7, num_beams=3, num_return_sequences=2, early_stopping="never", length_penalty=-0.5,
         eos_token_id=list(range(30, 70)), **DICT),
], ids=str)
def test_very_different_lengths_with_beams_and_returned_sequences(short, kwargs):
    hf, ours = short
    ids = np.array([[PAD] * 6 + [5, 6], list(range(7, 15)), [PAD] * 7 + [33]])  # 2, 8 and 1 tokens
    mask = (ids != PAD).astype(int)
    got = ours.generate(ids, attention_mask=mask, **kwargs)
    want = _hf_generate(hf, ids, attention_mask=mask, **kwargs)
    if not kwargs.get("return_dict_in_generate"):
        return _same_ids(got, want)
    _same_output(got, want)
    for normalize in (False, True):
        assert_close(ours.compute_transition_scores(got.sequences, got.scores, got.beam_indices, normalize),
                     hf.compute_transition_scores(want.sequences, want.scores, want.beam_indices, normalize).numpy(),
                     f"transition scores, normalize_logits={normalize}")


# -- 3. a two-turn chat: the second turn continues the first turn's returned cache ---------------------------------

def test_second_turn_continues_the_returned_cache_with_a_longer_mask(roomy):
    hf, ours = roomy
    prompts = np.array([[PAD, PAD, PAD, 5, 6, 7], [8, 9, 10, 11, 12, 13], [PAD] * 5 + [40]])
    mask = (prompts != PAD).astype(int)
    first = dict(max_new_tokens=6, eos_token_id=[EOS] + list(range(20, 60)), output_scores=True,
                 return_dict_in_generate=True)  # rows end early: their tails are pad tokens
    got, want = ours.generate(prompts, attention_mask=mask, **first), _hf_generate(hf, prompts, attention_mask=mask,
                                                                                      **first)
    _same_output(got, want)
    assert (got.sequences[:, -1] == PAD).any()
    user = np.array([[30, 31], [32, 33], [34, 35]])  # the user's next message, appended to every row
    sequences = np.concatenate([got.sequences, user], 1)
    mask2 = np.concatenate([mask, (got.sequences[:, 6:] != PAD).astype(int), np.ones_like(user)], 1)
    second = dict(max_new_tokens=5, eos_token_id=EOS, output_scores=True, return_dict_in_generate=True)
    got2 = ours.generate(sequences, attention_mask=mask2, past_key_values=got.past_key_values, **second)
    _same_output(got2, _hf_generate(hf, sequences, attention_mask=mask2, past_key_values=want.past_key_values,
                                    **second))
    _same_ids(got2.sequences, ours.generate(sequences, attention_mask=mask2, **second).sequences, "without the cache")


# -- 4. explicit position_ids and token_type_ids in forward, with a cache --------------------------------------------

def test_position_and_token_type_ids_with_a_cache(roomy):
    hf, ours = roomy
    rng = np.random.default_rng(1)
    ids, types = rng.integers(1, 97, (2, 9)), rng.integers(0, 99, (2, 9))
    ids[0, :3] = PAD
    mask = (ids != PAD).astype(int)
    positions = np.clip(np.cumsum(mask, -1) - 1, 0, None)
    first = dict(attention_mask=mask[:, :6], position_ids=positions[:, :6], token_type_ids=types[:, :6])
    rest = dict(attention_mask=mask, position_ids=positions[:, 6:], token_type_ids=types[:, 6:],
                output_hidden_states=True, output_attentions=True)
    want = _hf_forward(hf, ids[:, 6:], past_key_values=_hf_forward(hf, ids[:, :6], **first).past_key_values, **rest)
    got = ours(ids[:, 6:], past_key_values=ours(ids[:, :6], **first).past_key_values, **rest)
    assert_close(got.logits, want.logits.numpy(), "logits")
    for name in ("hidden_states", "attentions"):
        for i, (a, b) in enumerate(zip(getattr(got, name), getattr(want, name), strict=True)):
            assert_close(a, b.numpy(), f"{name}[{i}]")


@pytest.mark.parametrize("num_beams", [1, 2])
def test_generate_extends_token_type_ids_as_transformers(roomy, num_beams):
    hf, ours = roomy
    ids = np.array([[PAD, PAD, PAD, 5, 6, 7], [8, 9, 10, 11, 12, 13]])
    types = np.array([[1, 1, 1, 2, 2, 3], [4, 4, 4, 5, 5, 5]])
    kwargs = dict(attention_mask=(ids != PAD).astype(int), token_type_ids=types, max_new_tokens=4,
                  num_beams=num_beams, num_return_sequences=num_beams, output_scores=True, return_dict_in_generate=True)
    _same_output(ours.generate(ids, **kwargs), _hf_generate(hf, ids, **kwargs))


# -- 5. a prompt given as inputs_embeds alone: the processors that count the prompt ---------------------------------

@pytest.mark.parametrize("kwargs", [
    dict(max_length=10),
    dict(max_new_tokens=6, num_beams=3, num_return_sequences=2, eos_token_id=[EOS, 3, 4, 5]),
    dict(max_new_tokens=6, min_length=9, eos_token_id=list(range(3, 11)) + [EOS]),
    dict(max_new_tokens=4, begin_suppress_tokens=list(range(60)), forced_bos_token_id=7),
    dict(max_new_tokens=6, exponential_decay_length_penalty=(1, 3.0), repetition_penalty=5.0),
    dict(max_length=9, num_beams=2, forced_eos_token_id=3),
], ids=str)
def test_inputs_embeds_alone_with_length_counting_processors(roomy, kwargs):
    hf, ours = roomy
    ids = np.random.default_rng(15).integers(0, 97, (2, 5))
    embeds = hf.transformer.wte.weight.detach().numpy()[ids]
    args = dict(inputs_embeds=embeds, attention_mask=np.ones_like(ids), **kwargs, **DICT)
    got = ours.generate(**args)
    _same_output(got, _hf_generate(hf, **args))
    assert got.sequences.shape[0] == 2 * kwargs.get("num_return_sequences", 1)


# -- 6. processors combined ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    dict(repetition_penalty=1.3, no_repeat_ngram_size=2, bad_words_ids=[[5], [7, 8]], min_new_tokens=4,
         eos_token_id=[EOS, 3]),
    dict(num_beams=3, num_return_sequences=2, repetition_penalty=0.7, no_repeat_ngram_size=1, bad_words_ids=[[5, 6]],
         min_new_tokens=3, eos_token_id=[EOS, 3, 11]),
    dict(min_length=9, eos_token_id=[EOS, 3], forced_eos_token_id=EOS, begin_suppress_tokens=[4], suppress_tokens=[2]),
    dict(num_beams=2, sequence_bias={(4,): -5.0, (3, 4): 10.0}, renormalize_logits=True),
], ids=str)
def test_combined_processors_with_left_padding(short, kwargs):
    hf, ours = short
    ids = np.array([[PAD, PAD, 5, 6, 5], [8, 9, 8, 9, 12]])  # repeated n-grams, and pads the penalties count
    args = dict(attention_mask=(ids != PAD).astype(int), max_new_tokens=8, **kwargs, **DICT)
    _same_output(ours.generate(ids, **args), _hf_generate(hf, ids, **args))


# -- 7. the sequence classifier on padded batches ------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    d = tmp_path_factory.mktemp("edges12_classifier")
    hf = write_hf_checkpoint(d, "GPT2ForSequenceClassification", seed=8, n_positions=32, pad_token_id=0, num_labels=3)
    return hf, minigpt2.GPT2ForSequenceClassification.from_pretrained(d)


def test_sequence_classifier_reads_the_last_token_that_is_not_padding(classifier):
    hf, ours = classifier
    ids = np.random.default_rng(3).integers(1, 98, (4, 7))
    ids[0, :3] = 0  # left padded
    ids[1, 4:] = 0  # right padded
    ids[2, 2] = 0  # a pad token inside the text
    ids[3, :] = 0  # nothing but padding: transformers reads position 0
    mask = (ids != 0).astype(int)
    mask[3, -1] = 1
    labels = np.array([0, 2, 1, -100])
    got = ours(ids, attention_mask=mask, labels=labels)
    want = _hf_forward(hf, ids, attention_mask=mask, labels=labels)
    assert_close(got.logits, want.logits.numpy(), "logits")
    assert_close(got.loss, want.loss.numpy(), "loss")
    cached = _hf_forward(hf, ids[:, :4], use_cache=True).past_key_values
    assert_close(ours(ids[:, 4:], past_key_values=ours(ids[:, :4]).past_key_values).logits,
                 _hf_forward(hf, ids[:, 4:], past_key_values=cached).logits.numpy(), "logits from a cache")


# -- 8. the double-heads model: a choice token per choice ----------------------------------------------------------

@pytest.mark.parametrize("config", [dict(), dict(summary_type="mean"), dict(summary_activation="tanh"),
                                    dict(summary_proj_to_labels=False)], ids=str)
def test_double_heads_choice_tokens_and_losses(tmp_path, config):
    hf = write_hf_checkpoint(tmp_path, "GPT2DoubleHeadsModel", seed=10, n_positions=32, **config)
    ours = minigpt2.GPT2DoubleHeadsModel.from_pretrained(tmp_path)
    ids = np.random.default_rng(4).integers(0, 98, (2, 3, 6))
    labels = ids.copy()
    labels[..., :2] = -100
    mask = np.ones_like(ids)
    mask[0, 1, :2] = 0
    kwargs = dict(mc_token_ids=np.array([[5, 2, 0], [3, 3, 4]]), labels=labels, attention_mask=mask,
                  token_type_ids=ids[..., ::-1].copy())
    if not config:
        kwargs["mc_labels"] = np.array([1, 2])
    got, want = ours(ids, **kwargs), _hf_forward(hf, ids, **kwargs)
    for name in ("logits", "mc_logits", "loss", "mc_loss"):
        if getattr(want, name) is not None:
            assert_close(getattr(got, name), getattr(want, name).numpy(), name)


# -- 9. the attention flags, n_inner, activations, odd head sizes: forward, cached and beam search, both backends -----

@pytest.mark.parametrize("config", [
    dict(scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True),
    dict(scale_attn_by_inverse_layer_idx=True, scale_attn_weights=False, n_layer=3),
    dict(n_inner=48, activation_function="gelu"),
    dict(activation_function="relu", layer_norm_epsilon=1e-2),
    dict(activation_function="quick_gelu"),
    dict(n_embd=33, n_head=3, n_inner=37, activation_function="silu", vocab_size=101),
], ids=str)
def test_config_options_forward_cached_and_generated(tmp_path, kernel_backend, config):
    hf = write_hf_checkpoint(tmp_path, seed=7, n_positions=32, **config)
    ours = GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = np.random.default_rng(2).integers(1, hf.config.vocab_size, (3, 8))
    ids[0, :3] = 0
    mask = (ids != 0).astype(int)
    want = _hf_forward(hf, ids, attention_mask=mask).logits.numpy()
    assert_close(ours(ids, attention_mask=mask).logits, want, "logits")
    cached = ours(ids[:, :5], attention_mask=mask[:, :5]).past_key_values
    assert_close(ours(ids[:, 5:], attention_mask=mask, past_key_values=cached).logits, want[:, 5:], "cached logits")
    kwargs = dict(attention_mask=mask, max_new_tokens=5, num_beams=2, pad_token_id=0, eos_token_id=None)
    _same_ids(ours.generate(ids, **kwargs), _hf_generate(hf, ids, **kwargs))


# -- 10. labels with -100 (the shift), logits_to_keep, head masks in a decoding step -------------------------------

def test_labels_with_ignored_positions_and_logits_to_keep(roomy):
    hf, ours = roomy
    ids = np.random.default_rng(6).integers(1, 97, (2, 9))
    ids[0, :3] = PAD
    mask = (ids != PAD).astype(int)
    labels = np.where(mask == 1, ids, -100)
    labels[1, 4] = -100
    got, want = ours(ids, attention_mask=mask, labels=labels), _hf_forward(hf, ids, attention_mask=mask, labels=labels)
    assert_close(got.loss, want.loss.numpy(), "loss")
    assert_close(got.logits, want.logits.numpy(), "logits")
    for keep in (1, 3, 20, np.array([0, 4, -1])):
        assert_close(ours(ids, attention_mask=mask, logits_to_keep=keep).logits,
                     _hf_forward(hf, ids, attention_mask=mask, logits_to_keep=keep).logits.numpy(),
                     f"logits_to_keep={keep}")


@pytest.mark.parametrize("head_mask", [np.array([[1, 0, 0.5, 1], [0, 1, 1, 2]], np.float32),
                                       np.array([0.5, 1, 0, 1], np.float32)], ids=["per_layer", "every_layer"])
def test_head_mask_in_a_one_token_decoding_step(tmp_path, kernel_backend, head_mask):
    hf = write_hf_checkpoint(tmp_path, seed=23, n_positions=32, scale_attn_by_inverse_layer_idx=True)
    ours = GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = np.random.default_rng(13).integers(0, 99, (2, 8))
    mask = np.ones_like(ids)
    mask[0, :2] = 0
    past = _hf_forward(hf, ids[:, :7], attention_mask=mask[:, :7], head_mask=head_mask).past_key_values
    want = _hf_forward(hf, ids[:, 7:], past_key_values=past, attention_mask=mask, head_mask=head_mask,
                       output_attentions=True)
    cache = ours(ids[:, :7], attention_mask=mask[:, :7], head_mask=head_mask).past_key_values
    got = ours(ids[:, 7:], past_key_values=cache, attention_mask=mask, head_mask=head_mask, output_attentions=True)
    assert_close(got.logits, want.logits.numpy(), "logits")
    for i, (a, b) in enumerate(zip(got.attentions, want.attentions, strict=True)):
        assert_close(a, b.numpy(), f"attentions[{i}]")


# -- 11. cross-attention (add_cross_attention) under beam search -----------------------------------------------------

def test_cross_attention_generate_with_beams_and_returned_sequences(tmp_path):
    hf = write_hf_checkpoint(tmp_path, seed=18, n_positions=24, add_cross_attention=True, eos_token_id=EOS,
                             pad_token_id=PAD)
    ours = GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = np.array([[PAD, PAD, PAD, 5, 6, 7], [8, 9, 10, 11, 12, 13]])
    encoder = np.random.default_rng(9).standard_normal((2, 4, 32)).astype(np.float32)
    kwargs = dict(attention_mask=(ids != PAD).astype(int), encoder_hidden_states=encoder,
                  encoder_attention_mask=np.array([[1, 1, 0, 0], [1, 1, 1, 1]]), max_new_tokens=4, num_beams=3,
                  num_return_sequences=2, output_scores=True, return_dict_in_generate=True)
    _same_output(ours.generate(ids, **kwargs), _hf_generate(hf, ids, **kwargs))


# -- 12. bad_words_ids whose prefix is the whole sequence so far -----------------------------------------------------

def test_bad_words_processor_skips_a_word_longer_than_the_sequence_as_transformers():
    """transformers 4.57 skips a word longer than the sequence so far, even when the sequence is all of the word but
    its last token (a one-token prompt; the first new token after a prompt given as inputs_embeds alone)."""
    from minigpt2.generation import NoBadWordsLogitsProcessor

    words = [[3], [5, 7], [1, 2, 9], [4, 8, 6]]
    scores = np.random.default_rng(0).standard_normal((3, 12)).astype(np.float32)
    for ids in (np.array([[5], [1], [4]]), np.array([[1, 2], [4, 8], [0, 5]]), np.zeros((3, 0), np.int64)):
        want = transformers.NoBadWordsLogitsProcessor(words, eos_token_id=11)(torch.tensor(ids), torch.tensor(scores))
        _same_ids(NoBadWordsLogitsProcessor(words, eos_token_id=11)(ids, scores), want, f"scores after {ids.tolist()}")


@pytest.mark.parametrize("num_beams", [1, 2])
def test_bad_words_after_a_one_token_prompt_and_after_embeddings(short, num_beams):
    hf, ours = short
    prompts = np.array([[5], [9]])
    first = ours.generate(prompts, max_new_tokens=1, num_beams=num_beams)[:, -1]
    bad = [[5, int(first[0])], [9, int(first[1])], [int(first[0]), 44]]  # what the prompts would be followed by
    kwargs = dict(max_new_tokens=3, num_beams=num_beams, bad_words_ids=bad, **DICT)
    _same_output(ours.generate(prompts, **kwargs), _hf_generate(hf, prompts, **kwargs))
    embeds = hf.transformer.wte.weight.detach().numpy()[np.array([[3, 5], [3, 9]])]
    kwargs["max_new_tokens"] = 2  # (embeds of two positions: transformers' one-position prompt is test 13's)
    _same_output(ours.generate(inputs_embeds=embeds, **kwargs), _hf_generate(hf, inputs_embeds=embeds, **kwargs))


# -- 13. a prompt of one embedded position: the recomputed sequence, not transformers 4.57's generate ----------------

@pytest.mark.parametrize("num_beams", [1, 2])
def test_a_one_position_embedded_prompt_continues_with_the_new_tokens(short, num_beams):
    """transformers 4.57's generate feeds inputs_embeds at every step whose new positions number as many as the
    embedded ones (prepare_inputs_for_generation: len(cache_position) == inputs_embeds.shape[1]), so a prompt of one
    embedded position goes in again at every step, in place of the token just generated. minigpt2 feeds the new
    tokens, as for longer prompts (a difference on purpose): its results are those of transformers' forward on the
    prompt's embedding followed by the new tokens' embeddings."""
    hf, ours = short
    wte = hf.transformer.wte.weight.detach().numpy()
    embeds = wte[np.array([[9], [7], [8]])]
    kwargs = dict(inputs_embeds=embeds, max_new_tokens=4, num_beams=num_beams, eos_token_id=None)
    got = ours.generate(**kwargs, output_scores=True, return_dict_in_generate=True)
    rows = np.repeat(np.arange(3), len(got.sequences) // 3)
    whole = np.concatenate([embeds[rows], wte[got.sequences[:, :-1]]], axis=1)  # [N, 1 + 3, E]
    logits = _hf_forward(hf, inputs_embeds=whole).logits  # at position t: the scores of new token t
    if num_beams == 1:  # greedy: the scores are the logits, the tokens their argmax
        for t, scores in enumerate(got.scores):
            assert_close(scores, logits[:, t].numpy(), f"scores of new token {t}")
        _same_ids(got.sequences, logits.argmax(-1))
    else:  # beam search: a returned sequence's score is its summed log-probability / its length (length_penalty 1)
        logprobs = torch.log_softmax(logits, -1).numpy()
        summed = np.take_along_axis(logprobs, got.sequences[:, :, None], -1)[..., 0].sum(-1)
        assert_close(got.sequences_scores, summed / got.sequences.shape[1], "sequences_scores")


# -- 14. equal beam scores with more than 17 candidates kept (a list of eos tokens) ----------------------------------

ALLOWED = [20, 21]  # all that suppress_tokens leaves: with 3 beams, the third is one of many equal ones


@pytest.mark.parametrize("kwargs", [
    dict(max_new_tokens=1, num_beams=3, num_return_sequences=3, forced_eos_token_id=EOS),  # every candidate ends
    dict(max_new_tokens=4, num_beams=3, num_return_sequences=2,
         suppress_tokens=[t for t in range(99) if t not in ALLOWED]),
    dict(max_new_tokens=4, num_beams=6, num_return_sequences=2, eos_token_id=[90, 91],
         suppress_tokens=[t for t in range(99) if t not in ALLOWED + [40, 41]]),
], ids=["forced_eos", "suppressed_3_beams", "suppressed_6_beams"])
def test_equal_beam_scores_with_many_candidates_are_ordered_as_torch_topk(short, kwargs):
    """Beam search keeps the best max(2, 1 + len(eos)) * num_beams candidates each step: 21 here (3 beams, 6 eos
    tokens) and 18 (6 beams, 2 eos tokens). Among equal scores (dead beams at -1e9, ruled-out tokens at -inf) the
    ones torch.topk puts first run on and fill beam_indices, the rows of the next step's scores and the cache."""
    hf, ours = short
    ids = np.array([[PAD, PAD, 5, 6, 7], [8, 9, 10, 11, 12]])
    args = dict(attention_mask=(ids != PAD).astype(int), output_scores=True, return_dict_in_generate=True,
                **{"eos_token_id": [90, 91, 92, 93, 94, 95], **kwargs})
    _same_output(ours.generate(ids, **args), _hf_generate(hf, ids, **args))
