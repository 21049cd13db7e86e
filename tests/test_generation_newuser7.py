"""generate() as a transformers 4.57 user calls it after switching the import line, against transformers' own
generate on the same tiny random checkpoint: the corners the other generation tests leave out.

Reference: transformers 4.57 (float32, attn_implementation="eager"). Ids are compared exactly (greedy and beam
search; the checkpoint is a widely spread random model whose best scores are far apart); dtypes exactly.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from minigpt2 import GPT2LMHeadModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import write_hf_checkpoint  # noqa: E402

V = 64


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(transformers model, minigpt2 model): vocabulary 64, eos = bos = 0, 64 positions, two heads."""
    d = tmp_path_factory.mktemp("newuser7")
    hf = write_hf_checkpoint(d, seed=0, vocab_size=V, n_positions=64, n_head=2, eos_token_id=0, bos_token_id=0)
    return hf, GPT2LMHeadModel.from_pretrained(d)


def _prompts(padded):
    """Two prompts of 6 tokens; ``padded``: the first one left-padded by 2."""
    rng = np.random.default_rng(1)
    ids = rng.integers(1, V, (2, 6))
    mask = np.ones_like(ids)
    if padded:
        ids[0, :2], mask[0, :2] = 0, 0
    return ids, mask


def _both(pair, **kwargs):
    """(ours, transformers') generate on the same arguments, NumPy arrays given as torch tensors to transformers."""
    hf, ours = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            theirs = hf.generate(**{k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})
        return ours.generate(**kwargs), theirs


def _same_ids(ours, theirs):
    theirs = theirs.numpy()
    assert ours.shape == theirs.shape and (ours == theirs).all(), f"minigpt2\n{ours}\ntransformers\n{theirs}"


# -- beam_indices is int32, as transformers returns it ------------------------------------------------------------

@pytest.mark.parametrize("settings", [dict(num_beams=3), dict(num_beams=3, num_return_sequences=2, output_scores=True),
                                      dict(num_beams=2, do_sample=True)], ids=str)
def test_beam_output_dtypes_are_transformers(pair, settings):
    ids, mask = _prompts(padded=True)
    ours, theirs = _both(pair, input_ids=ids, attention_mask=mask, max_new_tokens=5, return_dict_in_generate=True,
                         **settings)
    for name in ("sequences", "beam_indices", "sequences_scores"):
        mine, ref = getattr(ours, name), getattr(theirs, name)
        assert (mine is None) == (ref is None), name
        if ref is not None:
            mine = np.asarray(mine)
            assert mine.dtype == ref.numpy().dtype, f"{name}: {mine.dtype}, transformers {ref.dtype}"
            assert np.shape(mine) == tuple(ref.shape), name
    if not settings.get("do_sample"):
        _same_ids(ours.sequences, theirs.sequences)
        assert (ours.beam_indices == theirs.beam_indices.numpy()).all()


# -- begin_suppress_tokens after a forced bos, with a prompt given as inputs_embeds alone -------------------------
# transformers counts the ids generate returns: none for the prompt, so the forced bos comes second (ids of length
# 1), and begin_suppress_tokens, which it moves past the forced bos when the ids are at most one token long, acts
# there too (where the forced bos leaves nothing to suppress): the first new token is free.

@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("strategy", [dict(), dict(num_beams=2), dict(do_sample=True, top_k=1)], ids=str)
def test_begin_suppress_tokens_after_a_forced_bos_with_inputs_embeds(pair, strategy, padded):
    hf, _ = pair
    ids, mask = _prompts(padded)
    embeds = hf.transformer.wte.weight.detach().numpy()[ids]
    free, _ = _both(pair, inputs_embeds=embeds, attention_mask=mask, max_new_tokens=1)
    settings = dict(max_new_tokens=6, forced_bos_token_id=7, begin_suppress_tokens=sorted(set(free[:, 0].tolist())))
    ours, theirs = _both(pair, inputs_embeds=embeds, attention_mask=mask, **settings, **strategy)
    _same_ids(ours, theirs)


# -- suppress_tokens and begin_suppress_tokens as an array of ids ---------------------------------------------------
# transformers takes any sequence torch.tensor() reads: a NumPy array or a torch tensor too, as for eos_token_id.

@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("name", ["suppress_tokens", "begin_suppress_tokens"])
def test_suppress_tokens_as_an_array(pair, name, kind):
    ids, mask = _prompts(padded=True)
    free, _ = _both(pair, input_ids=ids, attention_mask=mask, max_new_tokens=1)
    tokens = np.unique(free[:, -1])  # the tokens greedy decoding would pick first: suppressing them shows
    tokens = torch.tensor(tokens) if kind == "torch" else tokens
    hf, ours = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours.generate(ids, attention_mask=mask, max_new_tokens=4, **{name: tokens})
        with torch.no_grad():
            want = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=4,
                               **{name: tokens})
    _same_ids(got, want)
    assert not np.isin(got[:, ids.shape[1]], free[:, -1]).any()
