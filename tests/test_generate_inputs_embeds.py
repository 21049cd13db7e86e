"""generate(inputs_embeds=...) against transformers 4.57's generate on the same checkpoint (fp32, eager attention).

transformers' rules for a decoder-only model, which these tests pin:
  - inputs_embeds alone: the result holds only the new tokens; max_length (its default 20 too) and min_length
    count the embedded positions, max_new_tokens / min_new_tokens do not; use_cache=False is overridden;
  - inputs_embeds with input_ids of the same [B, T]: the embeddings replace the ids' at the first step, and the
    result is input_ids followed by the new tokens, with the lengths counted as for ids alone;
  - attention_mask (left padding) covers the embedded positions; positions come from it.
Ids (greedy and beam search) must be equal; scores within 1e-5 * max(1, max|ref|) (tests/conftest.py's
assert_close): float32 rounding through two layers and a log-softmax.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from minigpt2 import GPT2LMHeadModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, write_hf_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(transformers model, minigpt2 model): vocabulary 64, eos = bos = 0, 64 positions, width 32."""
    d = tmp_path_factory.mktemp("embeds")
    hf = write_hf_checkpoint(d, seed=11, vocab_size=64, n_positions=64, eos_token_id=0, bos_token_id=0)
    return hf, GPT2LMHeadModel.from_pretrained(d)


@pytest.fixture(scope="module")
def prompts(pair):
    """Two prompts of 5 positions: ids, their token embeddings moved off the table (a "soft prompt"), a left-padding
    mask."""
    hf, _ = pair
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 64, (2, 5))
    wte = hf.transformer.wte.weight.detach().numpy()
    embeds = (wte[ids] + rng.normal(0, 0.3, (2, 5, 32))).astype(np.float32)
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    return ids, embeds, mask


def _hf(hf, **kwargs):
    inputs = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.generate(**inputs)


def _ours(ours, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ours.generate(**kwargs)


def _same_ids(ours, theirs):
    theirs = theirs.numpy()
    assert ours.shape == theirs.shape and (ours == theirs).all(), f"minigpt2\n{ours}\ntransformers\n{theirs}"


CASES = {  # name: (uses input_ids, uses the mask, generate's settings); eos_token_id=None runs to the length
    "greedy": (False, False, dict(max_new_tokens=8, eos_token_id=None)),
    "default length: 20 counting the embeds": (False, False, dict(eos_token_id=None)),
    "max_length counts the embeds": (False, False, dict(max_length=12, eos_token_id=None)),
    "min_length counts the embeds": (False, False, dict(max_length=16, min_length=11, eos_token_id=51)),
    "min_new_tokens does not": (False, False, dict(max_new_tokens=9, min_new_tokens=6, eos_token_id=51)),
    "eos ends rows, padded with it": (False, False, dict(max_new_tokens=12, eos_token_id=1)),
    "left padding": (False, True, dict(max_new_tokens=8, eos_token_id=None)),
    "processors see the new ids only": (False, False, dict(max_new_tokens=10, repetition_penalty=1.8,
                                                           no_repeat_ngram_size=2, eos_token_id=None)),
    "use_cache=False is overridden": (False, False, dict(max_new_tokens=6, use_cache=False, eos_token_id=None)),
    "beams": (False, True, dict(max_new_tokens=8, num_beams=3, eos_token_id=None)),
    "beams, eos, num_return_sequences": (False, True, dict(max_new_tokens=10, num_beams=4, num_return_sequences=3)),
    "beams, length_penalty, never": (False, False, dict(max_new_tokens=7, num_beams=3, length_penalty=-0.5,
                                                        early_stopping="never")),
    "with input_ids": (True, True, dict(max_new_tokens=8, eos_token_id=None)),
    "with input_ids, default length": (True, False, dict(eos_token_id=None)),
    "with input_ids, max_length counts the ids": (True, False, dict(max_length=11, eos_token_id=None)),
    "with input_ids, beams": (True, True, dict(max_new_tokens=6, num_beams=2, num_return_sequences=2)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_ids_as_transformers(pair, prompts, name):
    hf, ours = pair
    ids, embeds, mask = prompts
    with_ids, with_mask, settings = CASES[name]
    inputs = dict(inputs_embeds=embeds, **({"input_ids": ids} if with_ids else {}),
                  **({"attention_mask": mask} if with_mask else {}))
    got, ref = _ours(ours, **inputs, **settings), _hf(hf, **inputs, **settings)
    _same_ids(got, ref)
    assert got.shape[1] > (ids.shape[1] if with_ids else 0) + 1  # the case generates more than a token or two


def test_the_embeddings_are_what_the_model_reads(pair, prompts):
    """The soft prompt changes the continuation (else the tests above could pass with the embeddings ignored), and
    the token table's own rows give the ids' continuation, as in transformers."""
    hf, ours = pair
    ids, embeds, _ = prompts
    wte = hf.transformer.wte.weight.detach().numpy()
    soft = _ours(ours, inputs_embeds=embeds, max_new_tokens=8, eos_token_id=None)
    table = _ours(ours, inputs_embeds=wte[ids], max_new_tokens=8, eos_token_id=None)
    _same_ids(table, _hf(hf, inputs_embeds=wte[ids], max_new_tokens=8, eos_token_id=None))
    assert (table == _ours(ours, input_ids=ids, max_new_tokens=8, eos_token_id=None)[:, 5:]).all()
    assert (soft != table).any()


@pytest.mark.parametrize("num_beams", [1, 3])
def test_scores_as_transformers(pair, prompts, num_beams):
    hf, ours = pair
    _, embeds, mask = prompts
    settings = dict(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=6, num_beams=num_beams,
                    return_dict_in_generate=True, output_scores=True, output_logits=True, eos_token_id=None)
    got, ref = _ours(ours, **settings), _hf(hf, **settings)
    _same_ids(got.sequences, ref.sequences)
    assert len(got.scores) == len(ref.scores) == 6
    for step, (s, r) in enumerate(zip(got.scores, ref.scores)):
        assert_close(s, r.numpy(), f"scores[{step}]")
        assert_close(got.logits[step], ref.logits[step].numpy(), f"logits[{step}]")
    if num_beams > 1:
        assert_close(got.sequences_scores, ref.sequences_scores.numpy(), "sequences_scores")
        _same_ids(got.beam_indices, ref.beam_indices)
        transition = ours.compute_transition_scores(got.sequences, got.scores, got.beam_indices)
        assert_close(transition, hf.compute_transition_scores(ref.sequences, ref.scores, ref.beam_indices).numpy(),
                     "transition scores")


def test_continuing_a_cache_of_the_first_positions(pair, prompts):
    """past_key_values of the embedded prompt's first 2 positions: generate runs the embeddings of the other 3."""
    hf, ours = pair
    _, embeds, mask = prompts
    ref_cache = hf(inputs_embeds=torch.tensor(embeds[:, :2]), attention_mask=torch.tensor(mask[:, :2]),
                   use_cache=True).past_key_values
    our_cache = ours(inputs_embeds=embeds[:, :2], attention_mask=mask[:, :2], use_cache=True).past_key_values
    settings = dict(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=7, eos_token_id=None)
    _same_ids(_ours(ours, past_key_values=our_cache, **settings), _hf(hf, past_key_values=ref_cache, **settings))


def test_token_type_ids_with_embeds(pair, prompts):
    hf, ours = pair
    _, embeds, _ = prompts
    types = np.random.default_rng(1).integers(0, 64, (2, 5))
    settings = dict(inputs_embeds=embeds, token_type_ids=types, max_new_tokens=6, eos_token_id=None)
    _same_ids(_ours(ours, **settings), _hf(hf, **settings))


def test_a_streamer_gets_the_empty_prompt_then_each_token(pair, prompts):
    """As transformers: put() first receives the prompt's ids, [1, 0] here, then each new token, then end()."""
    hf, ours = pair
    _, embeds, _ = prompts

    class Recorder:
        def __init__(self):
            self.calls = []

        def put(self, value):
            self.calls.append(np.asarray(value).tolist())

        def end(self):
            self.calls.append("end")

    got, ref = Recorder(), Recorder()
    settings = dict(inputs_embeds=embeds[:1], max_new_tokens=5, eos_token_id=None)
    _ours(ours, streamer=got, **settings)
    _hf(hf, streamer=ref, **settings)
    assert got.calls == ref.calls and got.calls[0] == [[]]


# -- what is refused, and why ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(inputs_embeds=np.zeros((2, 5, 16), np.float32)), r"inputs_embeds must have shape \(batch, sequence_length, "
                                                          r"n_embd=32\), got shape \(2, 5, 16\)"),
    (dict(inputs_embeds=np.zeros((5, 32), np.float32)), r"for a single prompt use embeds\[None\]"),
    (dict(inputs_embeds=np.zeros((2, 0, 32), np.float32)), "inputs_embeds is empty"),
    (dict(inputs_embeds=np.full((1, 2, 32), np.nan, np.float32)), "inputs_embeds contains NaN"),
    (dict(inputs_embeds=np.zeros((2, 5, 32), np.float32), input_ids=np.ones((2, 3), int)),
     r"inputs_embeds has shape \(2, 5, 32\) but input_ids has \(2, 3\).*pass inputs_embeds alone"),
    (dict(inputs_embeds=np.zeros((2, 5, 32), np.float32), attention_mask=np.ones((2, 4), int)),
     r"attention_mask has shape \(2, 4\) but the prompt has \(2, 5\)"),
    (dict(inputs_embeds=np.zeros((2, 5, 32), np.float32), max_length=5),
     "max_length is 5, which counts the prompt's 5 embedded positions"),
    (dict(inputs_embeds=np.zeros((2, 5, 32), np.float32), max_new_tokens=61, eos_token_id=None),
     r"max_length is 66 \(5 embedded positions \+ new tokens\).*n_positions=64"),  # (no eos: certain to run out)
    (dict(input_ids=np.zeros((2, 5, 32), np.float32)), "a prompt given as embeddings goes in inputs_embeds="),
    (dict(inputs_embeds=np.zeros((2, 5, 32), np.float32), attention_mask=np.zeros((2, 1, 5, 5), np.float32)),
     "generate takes the 2-D mask"),  # transformers: "attention_mask passed to generate must be 2D"
])
def test_bad_combinations_say_what_is_allowed(pair, kwargs, message):
    _, ours = pair
    with pytest.raises((ValueError, TypeError), match=message):
        ours.generate(**kwargs)


def test_transformers_refuses_max_length_within_the_embeds_too(pair, prompts):
    """The refusal above is transformers' own (its message speaks of input_ids of length 0)."""
    hf, _ = pair
    with pytest.raises(ValueError, match="max_length"):
        _hf(hf, inputs_embeds=prompts[1], max_length=5)
