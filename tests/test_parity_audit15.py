"""Audit 15: code ported from transformers 4.57 by changing only the import line, against transformers itself on the
same tiny checkpoint (float32, attn_implementation="eager"). Where transformers fails with a torch error or silently
computes something else for a misuse, minigpt2 raises a ValueError that names what was wrong and what to pass.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from minigpt2 import GPT2LMHeadModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, write_hf_checkpoint  # noqa: E402

EOS, PAD = 98, 97  # in the vocabulary of 99 (conftest.TINY)
PROMPT = np.array([[5, 6, 7, 8], [PAD, PAD, 9, 10]])
MASK = np.array([[1, 1, 1, 1], [0, 0, 1, 1]])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(transformers model, minigpt2 model): 32 positions, eos 98, pad 97."""
    d = tmp_path_factory.mktemp("audit15")
    hf = write_hf_checkpoint(d, seed=15, n_positions=32, eos_token_id=EOS, bos_token_id=EOS, pad_token_id=PAD)
    return hf, GPT2LMHeadModel.from_pretrained(d)


def _both_generate(models, **kwargs):
    hf, ours = models
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = hf.generate(torch.tensor(PROMPT), attention_mask=torch.tensor(MASK), return_dict_in_generate=True,
                           output_scores=True, **kwargs)
        got = ours.generate(PROMPT, attention_mask=MASK, return_dict_in_generate=True, output_scores=True, **kwargs)
    return want, got


# -- compute_transition_scores: inputs from different outputs --------------------------------------------------

def test_transition_scores_of_beams_still_match(models):
    want, got = _both_generate(models, max_new_tokens=5, num_beams=3, num_return_sequences=2)
    assert got.sequences.tolist() == want.sequences.tolist()
    for normalize in (False, True):
        assert_close(models[1].compute_transition_scores(got.sequences, got.scores, got.beam_indices, normalize),
                     models[0].compute_transition_scores(want.sequences, want.scores, want.beam_indices,
                                                         normalize).numpy(), f"transition normalize={normalize}")


def test_transition_scores_of_beams_without_beam_indices_says_to_pass_them(models):
    """transformers: a torch size-mismatch RuntimeError; minigpt2 was NumPy's 'operands could not be broadcast'."""
    want, got = _both_generate(models, max_new_tokens=4, num_beams=3, num_return_sequences=2)
    with pytest.raises(RuntimeError):
        models[0].compute_transition_scores(want.sequences, want.scores)
    with pytest.raises(ValueError, match="beam_indices"):
        models[1].compute_transition_scores(got.sequences, got.scores)


@pytest.mark.parametrize("case", ["empty", "cut vocabulary", "sequence 1-D", "beam indices of another output"])
def test_transition_scores_mismatched_inputs_are_named(models, case):
    """transformers fails inside torch (IndexError, RuntimeError); minigpt2 failed inside NumPy."""
    greedy = _both_generate(models, max_new_tokens=4)[1]
    beams = _both_generate(models, max_new_tokens=4, num_beams=3, num_return_sequences=2)[1]
    args = {"empty": (greedy.sequences, ()),
            "cut vocabulary": (greedy.sequences, tuple(s[:, :50] for s in greedy.scores)),
            "sequence 1-D": (greedy.sequences[0], greedy.scores),
            "beam indices of another output": (beams.sequences, beams.scores, beams.beam_indices[:1])}[case]
    said = {"empty": r"^scores must be generate\(\)'s tuple of per-step scores, each \[rows, vocab_size=99\]",
            "cut vocabulary": r"^scores must be generate\(\)'s tuple of per-step scores, .* of shapes \[\(2, 50\)",
            "sequence 1-D": r"^sequences \(shape \(\d+,\)\) must have one row per row of scores \(2\)",
            "beam indices of another output": r"^beam_indices \(shape \(1, \d+\)\) must come from the same "
                                              r"generate\(\) output"}[case]
    with pytest.raises(ValueError, match="scores|sequences|beam_indices") as caught:
        models[1].compute_transition_scores(*args)
    assert "generate()" in str(caught.value) or "beam_indices" in str(caught.value)
    assert re.search(said, str(caught.value)), str(caught.value)  # (each case its own message)


# -- beam search with NaN scores: exponential_decay_length_penalty on an eos that min_length rules out ---------

DECAY_BEFORE_MIN_LENGTH = dict(max_new_tokens=8, min_length=12, exponential_decay_length_penalty=(2, 1.5),
                               eos_token_id=EOS, pad_token_id=PAD)


def test_decay_before_min_length_greedy_matches(models):
    """-inf + inf is NaN at eos in both libraries; greedy search's argmax takes it in both (as transformers)."""
    want, got = _both_generate(models, **DECAY_BEFORE_MIN_LENGTH)
    assert got.sequences.tolist() == want.sequences.tolist()


def test_decay_before_min_length_beam_search_refuses_nan(models):
    """transformers' topk ranks the NaN eos first: NaN sequences_scores, and min_length broken. minigpt2 ranked NaN
    last (other tokens, finite scores); now it says why the scores are NaN."""
    hf, ours = models
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = hf.generate(torch.tensor(PROMPT), attention_mask=torch.tensor(MASK), num_beams=2,
                           return_dict_in_generate=True, output_scores=True, **DECAY_BEFORE_MIN_LENGTH)
        assert torch.isnan(want.sequences_scores).all()
        with pytest.raises(ValueError, match="NaN.*exponential_decay_length_penalty.*min_length"):
            ours.generate(PROMPT, attention_mask=MASK, num_beams=2, **DECAY_BEFORE_MIN_LENGTH)


@pytest.mark.parametrize("settings", [{}, {"do_sample": True}, {"num_beams": 3}, {"num_beams": 3, "do_sample": True},
                                      {"num_beams": 1, "top_k": 5}])
def test_get_generation_mode_names_the_strategy_as_transformers(settings):
    """GenerationConfig.get_generation_mode() returns the mode transformers' does, compared by its string value."""
    from minigpt2 import GenerationConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = transformers.GenerationConfig(**settings).get_generation_mode()
    got = GenerationConfig(**settings).get_generation_mode()
    assert got == want.value and got.value == want.value


def test_a_max_new_tokens_below_one_is_refused_when_the_config_is_made():
    """transformers refuses max_new_tokens <= 0 in GenerationConfig(...) itself (the one setting it checks there);
    minigpt2 used to take it and refuse it only in generate()."""
    from minigpt2 import GenerationConfig

    for n in (0, -1):
        with pytest.raises(ValueError, match="max_new_tokens"):
            transformers.GenerationConfig(max_new_tokens=n)
        with pytest.raises(ValueError, match=f"max_new_tokens must be >= 1, got {n}$"):
            GenerationConfig(max_new_tokens=n)
    assert GenerationConfig(max_new_tokens=1).max_new_tokens == 1


def _head_mask(config, shape):
    mask = np.ones((config.n_layer, config.n_head), np.float32)
    mask[0, 1] = mask[-1, 0] = 0.0
    return mask if shape == "per layer and head" else mask[0]


@pytest.mark.parametrize("shape", ["per head", "per layer and head"])
def test_generate_applies_a_head_mask_at_every_step_as_transformers(models, shape):
    """generate(head_mask=...) passes the mask to every step's forward, as transformers does ([n_head] for every
    layer, or [n_layer, n_head]); it used to refuse the argument. Greedy search: tokens equal, scores within the
    suite's float32 tolerance (conftest.RTOL)."""
    hf, ours = models
    mask = _head_mask(ours.config, shape)
    want, got = _both_generate(models, max_new_tokens=8, head_mask=torch.tensor(mask), pad_token_id=PAD)
    unmasked = ours.generate(PROMPT, attention_mask=MASK, max_new_tokens=1, pad_token_id=PAD, output_scores=True,
                             return_dict_in_generate=True)
    assert np.abs(got.scores[0] - unmasked.scores[0]).max() > 1e-2  # (the mask does change the model's output)
    np.testing.assert_array_equal(got.sequences, want.sequences.numpy())
    for i, (g, w) in enumerate(zip(got.scores, want.scores)):
        assert_close(g, w.numpy(), f"scores of new token {i + 1}")


@pytest.mark.parametrize("shape", ["per head", "per layer and head"])
def test_beam_search_with_a_head_mask_matches_the_heads_removed_from_the_weights(models, shape):
    """transformers' beam search fails with a head_mask (it repeats every model input per beam, the mask's first
    dimension too), so the reference here is transformers' beam search on the same weights with the masked heads
    cut out: a head's output enters the block through its rows of attn.c_proj, zeroed."""
    import copy

    hf, ours = models
    mask = np.broadcast_to(_head_mask(ours.config, shape), (ours.config.n_layer, ours.config.n_head))
    cut = copy.deepcopy(hf)
    D = ours.config.n_embd // ours.config.n_head
    with torch.no_grad():
        for layer, head in zip(*np.nonzero(mask == 0)):
            cut.transformer.h[layer].attn.c_proj.weight[head * D:(head + 1) * D] = 0.0
        want = cut.generate(torch.tensor(PROMPT), attention_mask=torch.tensor(MASK), num_beams=2, max_new_tokens=8,
                            pad_token_id=PAD, return_dict_in_generate=True, output_scores=True)
    got = ours.generate(PROMPT, attention_mask=MASK, num_beams=2, max_new_tokens=8, pad_token_id=PAD,
                        head_mask=np.array(mask), return_dict_in_generate=True, output_scores=True)
    np.testing.assert_array_equal(got.sequences, want.sequences.numpy())
    assert_close(got.sequences_scores, want.sequences_scores.numpy(), "sequences_scores")
