"""generate() against transformers, fifth round: how beam search breaks ties between candidates of equal score.

transformers picks beams with ``torch.topk``, which on the CPU is not a stable sort: among equal scores its order
is that of libstdc++'s ``std::nth_element`` / ``std::partial_sort``. Ties are common in beam search: at max_length
every candidate ends and the running beams all score -1e9 in float32 (which decides the rows of the returned cache),
and constraints that leave fewer than 2 * num_beams tokens (prefix_allowed_tokens_fn, suppress_tokens) leave
candidates of -1e9 or -inf (which decides the rows of later steps' scores and logits, and beam_indices). minigpt2
took the lower index first; it now replays torch's order (minigpt2/generation/beam.py, _best).

Ids are compared token for token; keys, values, scores and logits within 1e-5 * max(1, max|ref|)
(tests/conftest.py's assert_close).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from minigpt2 import GPT2LMHeadModel
from minigpt2.generation.beam import _best

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, write_hf_checkpoint  # noqa: E402
from test_generation_more import _close, _hf_generate, _same  # noqa: E402
from test_generation_parity2 import _hf_cache, _pairs  # noqa: E402

HF5 = int(transformers.__version__.split(".")[0]) >= 5


def _models(directory, vocab_size, seed):
    hf = write_hf_checkpoint(directory, seed=seed, vocab_size=vocab_size, n_positions=64, eos_token_id=0,
                             bos_token_id=0)
    return hf, GPT2LMHeadModel.from_pretrained(directory)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A vocabulary of 64 with eos 0 (torch.topk over num_beams * 64 candidates: its std::nth_element path)."""
    return _models(tmp_path_factory.mktemp("small_parity5"), 64, seed=1)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A vocabulary of 200 with eos 0 (over num_beams * 200 candidates: torch.topk's std::partial_sort path)."""
    return _models(tmp_path_factory.mktemp("wide_parity5"), 200, seed=4)


PROMPTS = np.array([[3, 5, 7, 8, 9, 21], [10, 11, 12, 13, 14, 40]])
LEFT_PADDED = np.array([[0, 0, 7, 8, 9, 21], [10, 11, 12, 13, 14, 40]]), np.array([[0, 0, 1, 1, 1, 1], [1] * 6])


# -- 1. the order itself ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [4, 6, 9, 12, 30, 64, 200, 1000, 2500])
def test_best_breaks_ties_as_torch_topk(n):
    """_best(scores, k) is torch.topk(scores, k).indices, ties included (both of torch's CPU paths: k * 64 > n
    and k * 64 <= n). Before: ties kept the lower index first, which torch.topk does not."""
    rng = np.random.default_rng(n)
    tie_prone = np.float32([-np.inf, -1e9, -1e9 - 64, -5, -3, 0])
    for trial in range(150):
        k = int(rng.integers(1, min(n, 17) + 1))
        scores = rng.choice(tie_prone, (3, n)).astype(np.float32)
        if trial % 5 == 0:
            scores = rng.normal(size=(3, n)).astype(np.float32)  # no ties: a plain sort
        want = torch.topk(torch.from_numpy(scores), k).indices.numpy()
        got = _best(scores, k)
        assert (got == want).all(), f"k={k}\nscores {scores.tolist()}\nours {got}\ntorch {want}"


# -- 2. max_length: the returned cache holds transformers' running beams ----------------------------------------

MAX_LENGTH_CASES = [dict(num_beams=3, num_return_sequences=2, max_new_tokens=5),
                    dict(num_beams=4, max_new_tokens=6), dict(num_beams=2, max_new_tokens=3),
                    dict(num_beams=5, num_return_sequences=5, max_new_tokens=7),
                    dict(num_beams=8, num_return_sequences=2, max_new_tokens=4)]


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("kwargs", MAX_LENGTH_CASES, ids=lambda kw: f"{kw['num_beams']}beams")
def test_beam_search_cache_at_max_length_is_transformers(small, kwargs, padded):
    """At max_length every candidate ends, the running beams tie at -1e9 and transformers keeps them in
    torch.topk's order; the cache is then reordered by them. Before: minigpt2 kept the lower index first, and
    most rows of the returned cache held other beams than transformers' (e.g. rows [-1, 1, -1, 4, 4, -1] of
    transformers' 6 found nowhere, or in another row, of minigpt2's for 3 beams returning 2)."""
    if padded and HF5:
        pytest.skip("transformers 5.x computes the keys and values of padding positions differently")
    hf, ours = small
    ids, mask = LEFT_PADDED if padded else (PROMPTS, None)
    kwargs = {"pad_token_id": 0, "return_dict_in_generate": True, **kwargs}
    want = _hf_generate(hf, ids, mask, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours.generate(ids, attention_mask=mask, **kwargs)
    _same(got.sequences, want.sequences)
    theirs, mine = _pairs(_hf_cache(want)), _pairs(got.past_key_values)
    assert theirs[0][0].shape[2] == ids.shape[1] + kwargs["max_new_tokens"] - 1, "the search ended before max_length"
    for layer, ((k0, v0), (k1, v1)) in enumerate(zip(theirs, mine)):
        assert_close(k1, k0, f"layer {layer} keys")
        assert_close(v1, v0, f"layer {layer} values")


# -- 3. constraints leaving fewer than 2 * num_beams tokens: tied candidates at every step ----------------------

CONSTRAINED = [  # (fixture, settings): candidates of -1e9 (from beams 1.. at the first step) or -inf tie
    ("small", dict(num_beams=3, prefix_allowed_tokens_fn=lambda batch, ids: [5, 9])),
    ("small", dict(num_beams=3, num_return_sequences=3, prefix_allowed_tokens_fn=lambda batch, ids: [7])),
    ("small", dict(num_beams=3, num_return_sequences=3, suppress_tokens=list(range(2, 64)))),
    ("wide", dict(num_beams=3, prefix_allowed_tokens_fn=lambda batch, ids: [5, 9])),
    ("wide", dict(num_beams=3, num_return_sequences=3, prefix_allowed_tokens_fn=lambda batch, ids: [7])),
    ("wide", dict(num_beams=3, num_return_sequences=3, suppress_tokens=list(range(2, 200)))),
]


@pytest.mark.parametrize("model, kwargs", CONSTRAINED,
                         ids=["64_two_tokens", "64_one_token", "64_suppress", "200_two_tokens", "200_one_token",
                              "200_suppress"])
def test_tied_candidates_give_transformers_scores_and_beam_indices(request, model, kwargs):
    """Before: the same ids, but beam_indices (e.g. [1, 1, 1, ...] where transformers has [2, 1, 2, 1, ...]) and,
    from the second step on, the rows of scores and logits (max difference 2 to 9) were not transformers'."""
    hf, ours = request.getfixturevalue(model)
    ids, mask = LEFT_PADDED
    kwargs = dict(pad_token_id=0, max_new_tokens=8, return_dict_in_generate=True, output_scores=True,
                  output_logits=True, **kwargs)
    want = _hf_generate(hf, ids, mask, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours.generate(ids, attention_mask=mask, **kwargs)
    _same(got.sequences, want.sequences)
    _same(got.beam_indices, want.beam_indices)
    assert_close(got.sequences_scores, want.sequences_scores.numpy(), "sequences_scores")
    for name in ("scores", "logits"):
        assert len(getattr(got, name)) == len(getattr(want, name))
        for t, (a, b) in enumerate(zip(getattr(got, name), getattr(want, name))):
            _close(a, b.numpy(), f"{name}[{t}]")
