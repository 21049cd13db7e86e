"""A transformers 4.57 user's generate() settings computed with arrays, and GPT2Config.get_config_dict, against
transformers on the same tiny random checkpoint.

Reference: transformers 4.57 (float32, attn_implementation="eager"). Ids are compared exactly (greedy and beam
search on a widely spread random model, whose best scores are far apart).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from minigpt2 import GPT2Config, GPT2LMHeadModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import write_hf_checkpoint  # noqa: E402

V = 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(directory, transformers model, minigpt2 model): vocabulary 64, eos = bos = 0, 64 positions."""
    d = tmp_path_factory.mktemp("newuser8")
    hf = write_hf_checkpoint(d, seed=0, vocab_size=V, n_positions=64, n_head=2, eos_token_id=0, bos_token_id=0)
    return d, hf, GPT2LMHeadModel.from_pretrained(d)


# A setting computed with arrays is a 0-d array or tensor (lengths.max(), torch.tensor(5)): transformers takes
# it as the number it holds. Each case: the settings, as Python numbers.
SETTINGS = [
    dict(max_new_tokens=5),
    dict(max_length=11),
    dict(max_new_tokens=4, num_beams=3, num_return_sequences=2),
    dict(max_new_tokens=4, num_beams=2, length_penalty=0.5),
]  # (transformers 4.57 refuses min_new_tokens, repetition_penalty, no_repeat_ngram_size, top_k as arrays; minigpt2
#     takes them too: one rule for every setting)


@pytest.mark.parametrize("wrap", ["numpy 0-d", "torch 0-d"])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s))
def test_settings_as_0d_arrays_generate_what_transformers_does(checkpoint, settings, wrap):
    _, hf, ours = checkpoint
    ids = np.random.default_rng(2).integers(1, V, (2, 6))
    as_array = np.array if wrap == "numpy 0-d" else torch.tensor
    wrapped = {name: as_array(value) for name, value in settings.items()}
    with torch.no_grad():
        expected = hf.generate(torch.tensor(ids), attention_mask=torch.ones(2, 6, dtype=torch.long),
                               pad_token_id=0, **wrapped).numpy()
    got = ours.generate(ids, attention_mask=np.ones((2, 6), np.int64), pad_token_id=0, **wrapped)
    np.testing.assert_array_equal(got, expected)


def test_a_setting_that_is_not_one_number_is_still_refused(checkpoint):
    ours = checkpoint[2]
    with pytest.raises(TypeError, match=r"max_new_tokens must be an integer or None, got array\(\[5, 6\]\)"):
        ours.generate(np.array([[1, 2]]), max_new_tokens=np.array([5, 6]), pad_token_id=0)
    with pytest.raises(TypeError, match="num_beams must be an integer, got True"):
        ours.generate(np.array([[1, 2]]), max_new_tokens=2, num_beams=True, pad_token_id=0)


def test_get_config_dict_as_transformers(checkpoint):
    d = checkpoint[0]
    ours, unused = GPT2Config.get_config_dict(str(d), revision="main", cache_dir=None, foo=1)
    theirs, their_unused = transformers.GPT2Config.get_config_dict(str(d), revision="main", cache_dir=None, foo=1)
    theirs.pop("_commit_hash")  # transformers' bookkeeping of the Hub revision (None for a directory)
    assert ours == theirs == json.loads((d / "config.json").read_text())
    assert unused == their_unused == {"foo": 1}
    assert GPT2Config.get_config_dict(str(d / "config.json"))[0] == ours  # the file itself, as transformers
    ours["n_layer"] = 1  # the usual use: edit the settings, then make the config
    assert GPT2Config.from_dict(ours).n_layer == 1
    with pytest.raises(OSError, match="config.json"):
        GPT2Config.get_config_dict(str(d / "missing"))


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    """(transformers model, minigpt2 model) built with add_cross_attention (GPT-2 as an encoder-decoder's decoder)."""
    d = tmp_path_factory.mktemp("crossing")
    hf = write_hf_checkpoint(d, seed=1, vocab_size=V, n_positions=64, n_head=2, eos_token_id=0, bos_token_id=0,
                             add_cross_attention=True)
    return hf, GPT2LMHeadModel.from_pretrained(d)


@pytest.mark.parametrize("settings", [dict(), dict(num_beams=3, num_return_sequences=2), dict(use_cache=False)],
                         ids=["greedy", "beams", "no cache"])
@pytest.mark.parametrize("masked", [False, True])
def test_generate_cross_attends_to_encoder_hidden_states_as_transformers(crossing, settings, masked):
    hf, ours = crossing
    rng = np.random.default_rng(3)
    ids, states = rng.integers(1, V, (2, 4)), rng.standard_normal((2, 5, hf.config.n_embd)).astype(np.float32)
    encoder_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]) if masked else None
    extra = {} if encoder_mask is None else {"encoder_attention_mask": encoder_mask}
    with torch.no_grad():
        expected = hf.generate(torch.tensor(ids), encoder_hidden_states=torch.tensor(states), pad_token_id=0,
                               max_new_tokens=5, **{k: torch.tensor(v) for k, v in extra.items()}, **settings).numpy()
    got = ours.generate(ids, encoder_hidden_states=states, pad_token_id=0, max_new_tokens=5, **extra, **settings)
    np.testing.assert_array_equal(got, expected)


def test_encoder_hidden_states_of_another_batch_are_named(crossing):
    with pytest.raises(ValueError, match=r"encoder_hidden_states must be \[batch, encoder_length, n_embd\] with "
                                         r"the prompts' batch of 2, got \(3, 5, 32\)"):
        crossing[1].generate(np.ones((2, 3), np.int64), encoder_hidden_states=np.zeros((3, 5, 32), np.float32),
                             max_new_tokens=2, pad_token_id=0)


def test_a_bad_setting_in_generation_config_json_names_the_file(tmp_path):
    """transformers refuses the file too; the error must say that the file holds it (the CLI user typed -n 3)."""
    write_hf_checkpoint(tmp_path, seed=0, vocab_size=V, n_positions=32, n_head=2)
    (tmp_path / "generation_config.json").write_text(json.dumps({"max_new_tokens": -5}))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'generation_config.json'))}: max_new_tokens "
                                         r"must be >= 1, got -5$"):
        GPT2LMHeadModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError):  # (the reference refuses it as well)
        transformers.GenerationConfig.from_pretrained(tmp_path)
