"""More of transformers 4.57's surface, each against transformers itself on the same tiny checkpoint (fp32, eager
attention): the generation classes a user imports from the top level and subclasses, generation settings kept in
an old config.json, generate() continuing a cache, right-padded batches, checkpoints with an untied LM head, and
GPT2Config's HF attributes. Ids must be equal; logits within 1e-5 * max(1, max|ref|) (tests/conftest.py).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import minigpt2
from minigpt2 import GPT2LMHeadModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, write_hf_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(transformers model, minigpt2 model, checkpoint directory): vocabulary 99, eos = bos = 98, 32 positions."""
    d = tmp_path_factory.mktemp("pair")
    hf = write_hf_checkpoint(d, seed=5, n_positions=32, eos_token_id=98, bos_token_id=98)
    return hf, GPT2LMHeadModel.from_pretrained(d), d


def _hf_generate(hf, ids, attention_mask=None, **kwargs):
    mask = np.ones_like(ids) if attention_mask is None else attention_mask
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), **kwargs).numpy()


def _same_ids(ours, theirs):
    assert ours.shape == theirs.shape and (ours == theirs).all(), f"minigpt2\n{ours}\ntransformers\n{theirs}"


PROMPTS = np.array([[5, 17, 42, 8, 63, 21], [70, 3, 3, 91, 12, 40]])


# -- 1. the generation classes, imported from the top level and subclassed as HF's documentation does ----------

GENERATION_EXPORTS = ["GenerationConfig", "GenerationMixin", "TextStreamer", "TextIteratorStreamer",
                      "LogitsProcessor", "LogitsProcessorList", "StoppingCriteria", "StoppingCriteriaList",
                      "MaxLengthCriteria", "MaxTimeCriteria", "EosTokenCriteria", "StopStringCriteria",
                      "RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "MinLengthLogitsProcessor",
                      "MinNewTokensLengthLogitsProcessor", "NoBadWordsLogitsProcessor", "SequenceBiasLogitsProcessor",
                      "PrefixConstrainedLogitsProcessor", "ForcedBOSTokenLogitsProcessor",
                      "ForcedEOSTokenLogitsProcessor", "InfNanRemoveLogitsProcessor", "ExponentialDecayLengthPenalty",
                      "SuppressTokensLogitsProcessor", "SuppressTokensAtBeginLogitsProcessor", "LogitNormalization",
                      "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
                      "TypicalLogitsWarper", "EpsilonLogitsWarper", "EtaLogitsWarper"]


@pytest.mark.parametrize("name", GENERATION_EXPORTS)
def test_generation_names_import_from_the_top_level_as_in_transformers(name):
    assert hasattr(transformers, name)  # (the list is transformers' own)
    assert name in minigpt2.__all__ and getattr(minigpt2, name) is not None
    ours = getattr(minigpt2, name)
    if name.endswith(("Processor", "Warper", "Penalty", "Normalization")) and name != "LogitsProcessor":
        assert issubclass(ours, minigpt2.LogitsProcessor)  # as in HF: isinstance(p, LogitsProcessor) holds
    if name.endswith("Criteria") and name != "StoppingCriteria":
        assert issubclass(ours, minigpt2.StoppingCriteria)


def _custom_classes(lib):
    """HF's documented pattern, written once for both libraries: numpy arrays and torch tensors alike."""

    class StopOnToken(lib.StoppingCriteria):
        def __init__(self, token_id):
            self.token_id = token_id

        def __call__(self, input_ids, scores, **kwargs):
            return input_ids[:, -1] == self.token_id

    class BanToken(lib.LogitsProcessor):
        def __init__(self, token_id):
            self.token_id = token_id

        def __call__(self, input_ids, scores):
            scores[:, self.token_id] = -float("inf")  # in place, as HF's examples do
            return scores

    return StopOnToken, BanToken


@pytest.mark.parametrize("kwargs", [dict(), dict(num_beams=3), dict(num_beams=2, num_return_sequences=2)])
def test_custom_stopping_criteria_and_logits_processor_subclasses(pair, kwargs):
    hf, ours, _ = pair
    plain = ours.generate(PROMPTS, max_new_tokens=8, **kwargs)
    banned, stop = int(plain[0, 7]), int(plain[1, 9])  # tokens the plain run makes, so both classes change it
    results = []
    for lib, run in ((transformers, lambda **kw: _hf_generate(hf, PROMPTS, **kw)),
                     (minigpt2, lambda **kw: ours.generate(PROMPTS, **kw))):
        StopOnToken, BanToken = _custom_classes(lib)
        results.append(run(max_new_tokens=8, stopping_criteria=lib.StoppingCriteriaList([StopOnToken(stop)]),
                           logits_processor=lib.LogitsProcessorList([BanToken(banned)]), **kwargs))
    theirs, got = results
    _same_ids(got, theirs)
    assert not (got[:, PROMPTS.shape[1]:] == banned).any()
    assert not np.array_equal(got, plain[:, :got.shape[1]]) or got.shape != plain.shape


# (transformers' beam search sizes its buffers by max_length: a longer MaxLengthCriteria fails there, so greedy only)
@pytest.mark.parametrize("criterion, argument, num_beams", [("MaxLengthCriteria", 9, 1), ("MaxLengthCriteria", 9, 3),
                                                            ("MaxLengthCriteria", 17, 1), ("EosTokenCriteria", [33, 61], 1),
                                                            ("EosTokenCriteria", [33, 61], 3)])
def test_max_length_and_eos_criteria_replace_generates_own(pair, criterion, argument, num_beams):
    """As in HF, the caller's MaxLengthCriteria / EosTokenCriteria replaces generate's length / eos check."""
    hf, ours, _ = pair
    results = [run(max_new_tokens=8, num_beams=num_beams,
                   stopping_criteria=lib.StoppingCriteriaList([getattr(lib, criterion)(argument)]))
               for lib, run in ((transformers, lambda **kw: _hf_generate(hf, PROMPTS, **kw)),
                                (minigpt2, lambda **kw: ours.generate(PROMPTS, **kw)))]
    _same_ids(results[1], results[0])


def test_an_abstract_logits_processor_says_what_to_define(pair):
    _, ours, _ = pair
    with pytest.raises(NotImplementedError, match=r"__call__\(input_ids, scores\) -> scores"):
        ours.generate(PROMPTS, max_new_tokens=2, logits_processor=[minigpt2.LogitsProcessor()])
