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
        out = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), **kwargs)
    return out.sequences.numpy() if hasattr(out, "sequences") else out.numpy()


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
@pytest.mark.parametrize("criterion, argument, num_beams", [
    ("MaxLengthCriteria", 9, 1), ("MaxLengthCriteria", 9, 3), ("MaxLengthCriteria", 17, 1),
    ("EosTokenCriteria", [33, 61], 1), ("EosTokenCriteria", [33, 61], 3)])
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


# -- 6. GPT2Config: name_or_path, the legacy generation settings, attribute_map, update_from_string ------------

LEGACY = {"num_beams": 3, "max_length": 12, "no_repeat_ngram_size": 2, "do_sample": False, "top_k": 7,
          "repetition_penalty": 1.3, "length_penalty": 0.5, "pad_token_id": 98}


@pytest.fixture(scope="module")
def legacy_dir(pair, tmp_path_factory):
    """The pair's checkpoint with generation settings in config.json and no generation_config.json."""
    _, _, source = pair
    d = tmp_path_factory.mktemp("legacy")
    (d / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
    config = json.loads((source / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, **LEGACY}))
    return d


GENERATION_ATTRIBUTES = ["max_length", "min_length", "do_sample", "early_stopping", "num_beams", "temperature", "top_k",
                         "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
                         "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
                         "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
                         "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
                         "begin_suppress_tokens", "num_beam_groups", "diversity_penalty"]


def _printed(config):
    """What print(config) shows, without the version of the library that wrote it."""
    return {k: v for k, v in json.loads(config.to_json_string()).items() if k != "transformers_version"}


@pytest.mark.parametrize("where", ["default", "legacy"])
def test_config_attributes_as_in_transformers(where, legacy_dir):
    if where == "default":
        ours, theirs = minigpt2.GPT2Config(), transformers.GPT2Config()
    else:
        ours = minigpt2.GPT2Config.from_pretrained(legacy_dir)
        theirs = transformers.GPT2Config.from_pretrained(legacy_dir)
    for name in GENERATION_ATTRIBUTES + ["name_or_path", "_name_or_path", "sep_token_id", "decoder_start_token_id",
                                         "tokenizer_class", "prefix"]:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert type(ours).attribute_map == type(theirs).attribute_map
    assert _printed(ours) == _printed(theirs)
    for key, value in json.loads(json.dumps(ours.to_dict())).items():
        assert json.loads(json.dumps(theirs.to_dict())).get(key, "<absent>") == value, key


@pytest.mark.parametrize("cls", ["GPT2Model", "GPT2LMHeadModel"])
def test_from_pretrained_sets_name_or_path_as_transformers(cls, legacy_dir, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(transformers, cls).from_pretrained(legacy_dir)
    ours = getattr(minigpt2, cls).from_pretrained(legacy_dir)
    assert ours.config.name_or_path == theirs.config.name_or_path == ours.name_or_path == str(legacy_dir)
    assert ours.config._name_or_path == theirs.config._name_or_path
    assert "_name_or_path" not in ours.config.to_json_string()  # (as in HF's printed config)
    # What minigpt2 writes loads in transformers with the same settings; defaults are not written out.
    ours.config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert "encoder_no_repeat_ngram_size" not in written and written["num_beams"] == 3
    again = transformers.GPT2Config.from_pretrained(tmp_path)
    for name in GENERATION_ATTRIBUTES:
        assert getattr(again, name) == getattr(theirs.config, name), name


def test_update_from_string_as_in_transformers():
    update = "n_layer=3,resid_pdrop=0.2,scale_attn_weights=false,summary_type=last,max_length=50,do_sample=true"
    ours, theirs = minigpt2.GPT2Config(), transformers.GPT2Config()
    ours.update_from_string(update)
    theirs.update_from_string(update)
    assert _printed(ours) == _printed(theirs)
    assert ours.do_sample is True and ours.n_layer == 3 and ours.scale_attn_weights is False
    for bad, error in (("no_such_key=1", ValueError), ("use_cache=maybe", ValueError), ("n_inner=5", TypeError)):
        for config in (minigpt2.GPT2Config(), transformers.GPT2Config()):
            with pytest.raises(error):
                config.update_from_string(bad)
    with pytest.raises(ValueError, match="n_layer='three': n_layer holds an integer"):
        minigpt2.GPT2Config().update_from_string("n_layer=three")


# -- 2. generation settings in an old config.json (no generation_config.json) ----------------------------------

def test_generation_settings_in_config_json_drive_generate(legacy_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.GPT2LMHeadModel.from_pretrained(legacy_dir, attn_implementation="eager").eval()
    ours = GPT2LMHeadModel.from_pretrained(legacy_dir)
    theirs_settings = hf.generation_config.to_dict()
    for name, value in ours.generation_config.to_dict().items():
        if name in theirs_settings and theirs_settings[name] is not None:  # (None: HF's "unset", e.g. output_logits)
            assert value == theirs_settings[name], name
    assert (ours.generation_config.num_beams, ours.generation_config.max_length) == (3, 12)
    with pytest.warns(UserWarning, match="top_k=7 only matter"):  # (HF warns too: top_k is for sampling)
        got = ours.generate(PROMPTS[:, :5])  # no arguments: beam search, 12 tokens in all, no repeated bigram
    _same_ids(got, _hf_generate(hf, PROMPTS[:, :5]))
    assert got.shape == (2, 12)


def test_output_flags_in_the_model_config_return_a_dict_as_in_transformers():
    config = dict(vocab_size=99, n_positions=16, n_embd=32, n_layer=2, n_head=4, output_hidden_states=True)
    theirs = transformers.GenerationConfig.from_model_config(transformers.GPT2Config(**config))
    ours = minigpt2.GenerationConfig.from_model_config(minigpt2.GPT2Config(**config))
    assert ours.return_dict_in_generate is theirs.return_dict_in_generate is True
    assert ours.output_hidden_states is theirs.output_hidden_states is True


def test_changing_generation_settings_in_model_config_after_loading(pair, tmp_path):
    """HF 4.57's legacy rule: a generation_config made from the model's config and left as it was follows
    settings changed later in model.config (with a warning); one set by the user does not."""
    _, _, source = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.GPT2LMHeadModel.from_pretrained(source, attn_implementation="eager").eval()
    ours = GPT2LMHeadModel.from_pretrained(source)
    for model in (hf, ours):
        model.config.num_beams, model.config.no_repeat_ngram_size = 3, 2
    with pytest.warns(UserWarning, match="modified the pretrained model configuration"):
        got = ours.generate(PROMPTS, max_new_tokens=6)
    _same_ids(got, _hf_generate(hf, PROMPTS, max_new_tokens=6))
    assert ours.generation_config.num_beams == 3
    mine = minigpt2.GenerationConfig(num_beams=2, eos_token_id=98, pad_token_id=98)
    ours.generation_config = mine
    ours.config.num_beams = 4
    assert ours.generate(PROMPTS, max_new_tokens=3).shape == (2, 9) and ours.generation_config.num_beams == 2


# -- 4. right-padded batches: transformers warns and generates; so does minigpt2, with the same ids -------------

RIGHT_PADDED = np.array([[1] * 6, [1, 1, 1, 1, 0, 0]])


@pytest.mark.parametrize("kwargs", [dict(), dict(num_beams=3), dict(num_beams=2, num_return_sequences=2),
                                    dict(repetition_penalty=1.5, no_repeat_ngram_size=2)])
def test_right_padded_batch_warns_and_generates_as_transformers(pair, kwargs):
    hf, ours, _ = pair
    ids = np.where(RIGHT_PADDED == 1, PROMPTS, 98)  # pads are the eos token, as GPT-2 tokenizers pad
    with pytest.warns(UserWarning, match="right-padding was detected.*padding_side='left'"):
        got = ours.generate(ids, attention_mask=RIGHT_PADDED, max_new_tokens=6, **kwargs)
    _same_ids(got, _hf_generate(hf, ids, attention_mask=RIGHT_PADDED, max_new_tokens=6, **kwargs))


# -- 3. generate(past_key_values=...): the cache of the prompts' first tokens ----------------------------------

def _hf_cache(hf, ids, repeat=1):
    with torch.no_grad():
        cache = hf(torch.tensor(ids)).past_key_values
    if repeat > 1:
        cache.batch_repeat_interleave(repeat)  # HF's layout for beams: one row per beam
    return cache


@pytest.mark.parametrize("kwargs", [dict(), dict(num_beams=3), dict(num_beams=3, num_return_sequences=2),
                                    dict(repetition_penalty=1.4, output_scores=True, return_dict_in_generate=True)])
@pytest.mark.parametrize("cached", [1, 4])
def test_generate_continues_a_prompt_cache_as_transformers(pair, kwargs, cached):
    hf, ours, _ = pair
    beams = kwargs.get("num_beams", 1)
    theirs = _hf_generate(hf, PROMPTS, max_new_tokens=6, past_key_values=_hf_cache(hf, PROMPTS[:, :cached], beams),
                          **kwargs)
    without = ours.generate(PROMPTS, max_new_tokens=6, **kwargs)
    for cache in (ours(PROMPTS[:, :cached]).past_key_values,  # minigpt2's own, one row per prompt
                  tuple((np.array(k), np.array(v)) for k, v in ours(PROMPTS[:, :cached]).past_key_values),  # tuples
                  _hf_cache(hf, PROMPTS[:, :cached], beams).to_legacy_cache(),  # HF's tuples of tensors, HF's rows
                  _hf_cache(hf, PROMPTS[:, :cached])):  # HF's DynamicCache
        got = ours.generate(PROMPTS, max_new_tokens=6, past_key_values=cache, **kwargs)
        if kwargs.get("return_dict_in_generate"):
            assert len(got.scores) == len(without.scores)
            for a, b in zip(got.scores, without.scores):
                assert_close(a, b, "scores with and without the cache")
            got, without_ids = got.sequences, without.sequences
        else:
            without_ids = without
        _same_ids(got, theirs)
        _same_ids(got, without_ids)


def test_sampling_from_a_prompt_cache_draws_as_without_it(pair):
    _, ours, _ = pair
    cache = ours(PROMPTS[:, :3]).past_key_values
    kept = [np.array(k) for k, _ in cache]
    kwargs = dict(max_new_tokens=6, do_sample=True, num_return_sequences=2, top_k=20)
    _same_ids(ours.generate(PROMPTS, past_key_values=cache, seed=7, **kwargs), ours.generate(PROMPTS, seed=7, **kwargs))
    assert all(np.array_equal(k, c[0]) for k, c in zip(kept, cache))  # the caller's cache is left as it was


def test_a_prompt_cache_that_does_not_fit_is_named(pair):
    _, ours, _ = pair
    with pytest.raises(ValueError, match="holds 6 positions, but the prompt has 6 tokens"):
        ours.generate(PROMPTS, max_new_tokens=2, past_key_values=ours(PROMPTS).past_key_values)
    with pytest.raises(ValueError, match="holds 1 rows, but the batch has 2 prompts"):
        ours.generate(PROMPTS, max_new_tokens=2, past_key_values=ours(PROMPTS[:1, :3]).past_key_values)
    with pytest.raises(TypeError, match="past_key_values must be the cache of the prompts' first tokens"):
        ours.generate(PROMPTS, max_new_tokens=2, past_key_values="cache")


@pytest.mark.parametrize("num_beams", [1, 3])
def test_the_given_cache_is_what_the_prompt_continues_from(pair, num_beams):
    """A cache of other tokens than the prompt's first ones: transformers uses it as given, so must minigpt2
    (recomputing the prompt instead would give the ids of a plain run)."""
    hf, ours, _ = pair
    other = (PROMPTS[:, :4] + 11) % 98
    theirs = _hf_generate(hf, PROMPTS, max_new_tokens=6, num_beams=num_beams,
                          past_key_values=_hf_cache(hf, other, num_beams))
    got = ours.generate(PROMPTS, max_new_tokens=6, num_beams=num_beams, past_key_values=ours(other).past_key_values)
    _same_ids(got, theirs)
    assert not np.array_equal(got, ours.generate(PROMPTS, max_new_tokens=6, num_beams=num_beams))


# -- 5. checkpoints whose LM head is not tied to wte (tie_word_embeddings=False, their own lm_head.weight) --------

@pytest.fixture(scope="module")
def untied(tmp_path_factory):
    """(transformers model, its checkpoint directory) with tie_word_embeddings false: lm_head.weight != wte."""
    d = tmp_path_factory.mktemp("untied")
    hf = write_hf_checkpoint(d, seed=9, n_positions=32, eos_token_id=98, bos_token_id=98, tie_word_embeddings=False)
    assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)
    return hf, d


@pytest.mark.parametrize("cls", ["GPT2LMHeadModel", "GPT2DoubleHeadsModel"])
def test_untied_head_gives_transformers_logits(untied, kernel_backend, cls):
    hf, d = untied
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the double-heads model's multiple-choice head is new: both warn)
        theirs_model = getattr(transformers, cls).from_pretrained(d, attn_implementation="eager").eval()
        ours = getattr(minigpt2, cls).from_pretrained(d)
    ids = PROMPTS if cls == "GPT2LMHeadModel" else PROMPTS[None]
    with torch.no_grad():
        theirs = theirs_model(torch.tensor(ids)).logits.numpy()
    assert_close(ours(ids).logits, theirs, f"{cls} logits ({kernel_backend})")
    assert list(ours.state_dict()) == list(theirs_model.state_dict())  # lm_head.weight listed in HF's place
    assert ours.num_parameters() == theirs_model.num_parameters()
    their_head = theirs_model.get_output_embeddings().weight.detach().numpy()
    assert np.array_equal(ours.get_output_embeddings().weight, their_head)


def test_untied_head_runs_in_c(untied):
    """The head's matrix [V, E] has wte's layout, so the C core's kernel for the tied head (wte.T) serves it."""
    from minigpt2 import backend

    if not backend.c_available():
        pytest.skip(f"the C extension is not built ({backend._c_problem})")
    from minigpt2 import _ckernels as ck, _tuning
    from minigpt2.modeling import lm_head

    _, d = untied
    ours = GPT2LMHeadModel.from_pretrained(d)
    h = np.random.default_rng(0).standard_normal((1, 1, 32), dtype=np.float32)
    expected = h @ ours.params["lm_head"]["weight"].T
    saved_backend, saved_variant = backend.name, _tuning._requested
    try:
        backend.set_backend("c")
        _tuning.choose(_tuning.supported_variants()[-1])  # a forced variant serves whatever the calibration chose
        before = ck.calls["linear"]
        got = lm_head(h, ours._lm_head_weight())
        assert ck.calls["linear"] == before + 1, "the C core declined the untied head"
    finally:
        _tuning.choose(saved_variant)
        backend.set_backend(saved_backend)
    assert_close(got, expected, "untied head in C")


@pytest.mark.parametrize("kwargs", [dict(), dict(num_beams=3)])
def test_untied_head_generates_as_transformers(untied, kwargs):
    hf, d = untied
    ours = GPT2LMHeadModel.from_pretrained(d)
    _same_ids(ours.generate(PROMPTS, max_new_tokens=8, **kwargs), _hf_generate(hf, PROMPTS, max_new_tokens=8, **kwargs))


def test_untied_head_is_saved_untied(untied, tmp_path):
    hf, d = untied
    ours = GPT2LMHeadModel.from_pretrained(d)
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert torch.equal(again.lm_head.weight, hf.lm_head.weight)
    assert not torch.equal(again.lm_head.weight, again.transformer.wte.weight)
    with torch.no_grad():
        assert_close(GPT2LMHeadModel.from_pretrained(tmp_path)(PROMPTS).logits,
                     again(torch.tensor(PROMPTS)).logits.numpy(), "logits after a round trip")


def test_untied_head_resizes_with_the_embeddings_as_in_transformers(untied):
    hf, d = untied
    ours = GPT2LMHeadModel.from_pretrained(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.GPT2LMHeadModel.from_pretrained(d).eval()
        theirs.resize_token_embeddings(104)
    ours.resize_token_embeddings(104)
    head, their_head = ours.get_output_embeddings().weight, theirs.get_output_embeddings().weight.detach().numpy()
    assert head.shape == their_head.shape == (104, 32)
    assert np.array_equal(head[:99], their_head[:99])
    assert_close(head[99:], their_head[99:], "new rows: the mean of the old ones", rtol=1e-3)  # (HF adds noise)
    _, grads = ours.loss_and_grad(PROMPTS)  # (checked against torch in test_training_more.py)
    assert grads["lm_head.weight"].shape == (104, 32) and grads["lm_head.weight"] is not grads["transformer.wte.weight"]


@pytest.mark.parametrize("name", ["GPT2Model", "GPT2LMHeadModel", "GPT2ForSequenceClassification",
                                  "GPT2ForTokenClassification", "GPT2ForQuestionAnswering", "GPT2DoubleHeadsModel"])
def test_submodules_by_hf_names_are_the_models_own_parameters(name, tmp_path):
    """HF's module paths reach the same parameters (model.transformer.h[0].attn.c_attn.weight, a head's score ...):
    every parameter transformers names, equal to its; the names HF's class lacks (a head model's wte) are missing
    here too; an in-place change changes the model's output; assigning is refused, saying what to do."""
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=99, n_positions=16, num_labels=3,
                                     pad_token_id=0)
    torch.manual_seed(0)
    hf = getattr(transformers, name)(config).eval()
    hf.save_pretrained(tmp_path)
    ours = getattr(minigpt2, name).from_pretrained(tmp_path)
    for path, parameter in hf.named_parameters():
        *parts, leaf = path.split(".")
        theirs, mine = hf, ours
        for part in parts:  # a block's index on the list of blocks (h), a name elsewhere
            theirs = theirs[int(part)] if part.isdigit() else getattr(theirs, part)
            mine = mine[int(part)] if part.isdigit() else getattr(mine, part)
        assert np.array_equal(getattr(mine, leaf), getattr(theirs, leaf).detach().numpy()), path
    for attribute in ("wte", "h", "ln_f", "transformer", "score", "classifier", "qa_outputs", "lm_head"):
        assert hasattr(ours, attribute) == hasattr(hf, attribute), attribute
    base = ours.transformer if hasattr(ours, "transformer") else ours
    assert len(base.h) == 2 and sorted(dir(base.h[0].mlp)) == ["c_fc", "c_proj"]
    made = getattr(minigpt2, name)(ours.config, seed=0)  # (writable arrays: from_pretrained's map the file)
    made_base = made.transformer if hasattr(made, "transformer") else made
    ids = np.array([[1, 2, 3]])
    before = made(ids)[0].copy()
    made_base.h[1].mlp.c_proj.bias[...] += 1
    assert not np.array_equal(made(ids)[0], before)
    with pytest.raises(AttributeError, match=r"h\.0\.attn\.c_attn\.weight cannot be assigned .* model\.load_state_dict"):
        base.h[0].attn.c_attn.weight = np.zeros((32, 96), np.float32)
    with pytest.raises(AttributeError, match=r"h\.0\.attn has no 'c_fc'; it has c_attn, c_proj"):
        base.h[0].attn.c_fc
