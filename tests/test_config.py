"""GPT2Config: HF's fields, defaults and aliases, its printed JSON, serialisation, and clear errors.

The expected defaults come from HF's own documentation of GPT2Config (../shared/seed/gpt2-notes.txt,
section 2.2: the printed ``GPT2Config()``), copied below; with transformers installed (pinned at 4.46.3)
the tests also compare against its GPT2Config directly, and exchange config.json files with it.
"""
from __future__ import annotations

import copy
import inspect
import json
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt2 import GPT2Config

# HF's printed GPT2Config() (gpt2-notes.txt section 2.2), without "transformers_version", which names
# the library that printed it.
HF_DEFAULT_JSON = """{
  "activation_function": "gelu_new",
  "attn_pdrop": 0.1,
  "bos_token_id": 50256,
  "embd_pdrop": 0.1,
  "eos_token_id": 50256,
  "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05,
  "model_type": "gpt2",
  "n_embd": 768,
  "n_head": 12,
  "n_inner": null,
  "n_layer": 12,
  "n_positions": 1024,
  "reorder_and_upcast_attn": false,
  "resid_pdrop": 0.1,
  "scale_attn_by_inverse_layer_idx": false,
  "scale_attn_weights": true,
  "summary_activation": null,
  "summary_first_dropout": 0.1,
  "summary_proj_to_labels": true,
  "summary_type": "cls_index",
  "summary_use_proj": true,
  "use_cache": true,
  "vocab_size": 50257
}"""

ALIASES = {"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head",
           "num_hidden_layers": "n_layer"}


def printed_json(config):
    """The JSON part of repr(config) ("GPT2Config {...}"), as a dict without transformers_version."""
    name, _, text = repr(config).partition(" ")
    assert name == "GPT2Config"
    d = json.loads(text)
    d.pop("transformers_version", None)
    return d


# -- fields, defaults, aliases -------------------------------------------------------------------------

def test_defaults_print_like_hf():
    config = GPT2Config()
    assert printed_json(config) == json.loads(HF_DEFAULT_JSON)
    assert repr(config).startswith("GPT2Config {\n  \"activation_function\"")
    assert repr(config).endswith("}\n")


def test_defaults_as_attributes():
    config = GPT2Config()
    for key, value in json.loads(HF_DEFAULT_JSON).items():
        assert getattr(config, key) == value, key
    assert config.n_inner is None and config.inner_dim == 4 * 768
    assert config.head_dim == 64
    assert config.num_labels == 2 and config.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert config.add_cross_attention is False and config.pad_token_id is None
    assert config.output_hidden_states is False and config.output_attentions is False and config.return_dict is True


def test_aliases_read_write_and_construct():
    config = GPT2Config(hidden_size=64, num_attention_heads=8, num_hidden_layers=3, max_position_embeddings=20)
    assert (config.n_embd, config.n_head, config.n_layer, config.n_positions) == (64, 8, 3, 20)
    for alias, field in ALIASES.items():
        assert getattr(config, alias) == getattr(config, field)
    config.hidden_size = 128
    assert config.n_embd == 128 and "hidden_size" not in config.to_dict()
    assert "n_embd" in config.to_dict()


def test_num_labels_rebuilds_the_label_maps():
    config = GPT2Config(num_labels=3)
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert config.label2id == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    config.num_labels = 1
    assert config.id2label == {0: "LABEL_0"} and config.num_labels == 1
    named = GPT2Config(id2label={"0": "neg", "1": "pos"})  # JSON keys are strings
    assert named.id2label == {0: "neg", 1: "pos"} and named.num_labels == 2


def test_presets():
    assert GPT2Config.from_preset("gpt2-medium").n_layer == 24
    assert GPT2Config.from_preset("gpt2-xl", vocab_size=100).vocab_size == 100
    with pytest.raises(ValueError, match="unknown preset 'gpt3'.*gpt2-large"):
        GPT2Config.from_preset("gpt3")


# -- serialisation -------------------------------------------------------------------------------------

def test_to_dict_from_dict_round_trip():
    config = GPT2Config(n_embd=64, n_head=4, n_layer=3, activation_function="relu", pad_token_id=0, num_labels=4,
                        my_extra_field={"kept": [1, 2]})
    d = config.to_dict()
    assert d["model_type"] == "gpt2" and d["my_extra_field"] == {"kept": [1, 2]}
    again = GPT2Config.from_dict(d)
    assert again == config and again.to_dict() == d
    assert GPT2Config.from_dict(d, n_layer=5).n_layer == 5  # keyword arguments override the dict


def test_json_string_round_trip_and_diff():
    config = GPT2Config(n_layer=2, pad_token_id=7)
    assert json.loads(config.to_json_string()) == config.to_diff_dict()
    assert json.loads(config.to_json_string(use_diff=False)) == json.loads(json.dumps(config.to_dict()))
    assert "pad_token_id" in config.to_diff_dict()  # differs from the default
    assert "output_attentions" not in config.to_diff_dict()  # a common field at its default
    assert "n_inner" in config.to_diff_dict()  # GPT-2's own fields always show


def test_save_and_load(tmp_path):
    config = GPT2Config(n_embd=32, n_head=2, n_layer=1, scale_attn_by_inverse_layer_idx=True, unknown_key=3)
    config.save_pretrained(tmp_path)
    assert os.listdir(tmp_path) == ["config.json"]
    loaded = GPT2Config.from_pretrained(tmp_path)
    assert loaded == config and loaded.unknown_key == 3
    assert GPT2Config.from_pretrained(os.path.join(tmp_path, "config.json")) == config
    assert GPT2Config.from_pretrained(tmp_path, n_layer=4).n_layer == 4
    # As HF: keyword arguments that are not attributes are not stored; return_unused_kwargs hands them back.
    loaded, unused = GPT2Config.from_pretrained(tmp_path, return_unused_kwargs=True, n_head=4, hidden_size=64, foo=1)
    assert (loaded.n_head, loaded.n_embd, unused) == (4, 64, {"foo": 1})
    assert not hasattr(GPT2Config.from_pretrained(tmp_path, foo=1), "foo")
    assert "return_unused_kwargs" not in loaded.to_dict()


def test_unknown_keys_are_kept(tmp_path):
    d = json.loads(HF_DEFAULT_JSON)
    d.update({"transformers_version": "4.46.3", "_name_or_path": "someone/gpt2-finetune",
              "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
              "a_field_from_the_future": [1, "two"]})
    (tmp_path / "config.json").write_text(json.dumps(d))
    config = GPT2Config.from_pretrained(tmp_path)
    assert config.a_field_from_the_future == [1, "two"]
    assert config.task_specific_params["text-generation"]["max_length"] == 50
    config.save_pretrained(tmp_path / "again")
    written = json.loads((tmp_path / "again" / "config.json").read_text())
    assert written["a_field_from_the_future"] == [1, "two"] and written["_name_or_path"] == "someone/gpt2-finetune"


def test_use_return_dict():
    assert GPT2Config().use_return_dict is True and GPT2Config(return_dict=False).use_return_dict is False


def test_copy_and_pickle():
    config = GPT2Config(n_layer=3, id2label={0: "a", 1: "b", 2: "c"})
    for clone in (copy.deepcopy(config), pickle.loads(pickle.dumps(config))):
        assert clone == config and clone is not config
        assert clone.hidden_size == config.n_embd
    clone = copy.deepcopy(config)
    clone.n_layer = 4
    assert config.n_layer == 3


def test_numpy_scalars_are_accepted_as_plain_numbers():
    """Sizes computed with NumPy (np.int64, np.float32) are honoured and serialise as JSON numbers."""
    config = GPT2Config(vocab_size=np.int64(99), n_embd=np.int32(32), n_head=np.int64(4),
                        layer_norm_epsilon=np.float32(1e-5), attn_pdrop=np.float64(0.0))
    assert config.vocab_size == 99 and type(config.vocab_size) is int
    assert json.loads(config.to_json_string())["n_embd"] == 32
    assert json.loads(config.to_json_string())["layer_norm_epsilon"] == pytest.approx(1e-5)


# -- invalid values ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field, allowed", [
    (dict(vocab_size=0), "vocab_size", "positive integer"),
    (dict(n_positions=-1), "n_positions", "positive integer"),
    (dict(n_embd=2.5), "n_embd", "positive integer"),
    (dict(n_layer=True), "n_layer", "positive integer"),
    (dict(n_head=0), "n_head", "positive integer"),
    (dict(n_inner=0), "n_inner", "positive integer or None"),
    (dict(n_embd=10, n_head=3), "n_embd", "divisible by n_head"),
    (dict(hidden_size=10, num_attention_heads=4), "n_embd", "divisible by n_head"),
    (dict(activation_function="prelu"), "activation_function", "gelu_new"),
    (dict(activation_function=None), "activation_function", "relu"),
    (dict(summary_activation="softmax"), "summary_activation", "None or one of"),
    (dict(summary_type="attn"), "summary_type", "cls_index"),
    (dict(layer_norm_epsilon=-1e-5), "layer_norm_epsilon", "non-negative number"),
    (dict(layer_norm_epsilon="1e-5"), "layer_norm_epsilon", "non-negative number"),
    (dict(resid_pdrop=1.5), "resid_pdrop", "probability in [0, 1]"),
    (dict(attn_pdrop=-0.1), "attn_pdrop", "probability in [0, 1]"),
    (dict(initializer_range=-0.02), "initializer_range", "non-negative"),
    (dict(num_labels=-1), "num_labels", "non-negative integer"),
    (dict(problem_type="foo"), "problem_type", "single_label_classification"),
])
def test_invalid_values_name_the_field_and_what_is_allowed(kwargs, field, allowed):
    with pytest.raises(ValueError) as raised:
        GPT2Config(**kwargs)
    message = str(raised.value)
    assert field in message and allowed in message, message


def test_invalid_files(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        GPT2Config.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object, found list"):
        GPT2Config.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(ValueError, match="model_type 'llama' is not GPT-2"):
        GPT2Config.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"n_embd": 30, "n_head": 4}))
    with pytest.raises(ValueError, match="n_embd.*divisible by n_head"):
        GPT2Config.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT2Config.from_pretrained(tmp_path / "nowhere" / "deeper")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="needs a directory"):
        GPT2Config().save_pretrained(a_file)


# -- against transformers ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("transformers")


def test_every_hf_field_and_default(hf):
    """Every parameter of transformers' GPT2Config.__init__ exists here with the same default."""
    ours, theirs = GPT2Config(), hf.GPT2Config()
    parameters = [p for p in inspect.signature(hf.GPT2Config.__init__).parameters if p not in ("self", "kwargs")]
    assert len(parameters) > 20
    for name in parameters:
        assert getattr(ours, name) == getattr(theirs, name), name
    for alias, field in ALIASES.items():
        assert theirs.attribute_map[alias] == field
    common = hf.PretrainedConfig()
    for name in ("output_hidden_states", "output_attentions", "return_dict", "add_cross_attention",
                 "tie_word_embeddings", "pad_token_id", "problem_type", "id2label", "label2id", "is_decoder"):
        assert getattr(ours, name) == getattr(common, name), name


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3), max_leaves=4)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_printed_json_and_dicts_match_hf(hf, data):
    n_head = data.draw(st.sampled_from([1, 2, 4]))
    kwargs = data.draw(st.fixed_dictionaries({}, optional={
        "n_embd": st.sampled_from([8, 16, 64]),
        "n_layer": st.integers(1, 48),
        "vocab_size": st.integers(1, 60000),
        "n_positions": st.integers(1, 4096),
        "n_inner": st.none() | st.integers(1, 100),
        "activation_function": st.sampled_from(["gelu_new", "gelu", "relu", "silu", "tanh", "quick_gelu"]),
        "layer_norm_epsilon": st.sampled_from([1e-5, 1e-6, 0.1]),
        "scale_attn_weights": st.booleans(),
        "scale_attn_by_inverse_layer_idx": st.booleans(),
        "reorder_and_upcast_attn": st.booleans(),
        "add_cross_attention": st.booleans(),
        "use_cache": st.booleans(),
        "pad_token_id": st.none() | st.integers(0, 100),
        "bos_token_id": st.integers(0, 100),
        "num_labels": st.integers(1, 5),
        "problem_type": st.sampled_from([None, "regression", "single_label_classification"]),
        "summary_activation": st.sampled_from([None, "tanh"]),
        "summary_type": st.sampled_from(["cls_index", "last", "mean"]),
        "tie_word_embeddings": st.booleans(),
        "output_hidden_states": st.booleans(),
        "architectures": st.none() | st.just(["GPT2LMHeadModel"]),
        "an_unknown_key": JSON_VALUES,
    }))
    kwargs["n_head"] = n_head
    ours, theirs = GPT2Config(**kwargs), hf.GPT2Config(**kwargs)
    assert printed_json(ours) == printed_json(theirs)
    assert json.loads(ours.to_json_string()) == {k: v for k, v in json.loads(theirs.to_json_string()).items()
                                                 if k != "transformers_version"}
    hf_dict = json.loads(json.dumps(theirs.to_dict()))
    for key, value in json.loads(json.dumps(ours.to_dict())).items():
        assert hf_dict.get(key, "<absent>") == value, key


def test_transformers_config_json_loads_here(hf, tmp_path):
    theirs = hf.GPT2Config(n_embd=64, n_head=4, n_layer=3, n_inner=100, activation_function="quick_gelu",
                           scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True, num_labels=3,
                           pad_token_id=0, summary_activation="tanh", custom_thing={"a": 1})
    theirs.save_pretrained(tmp_path)
    ours = GPT2Config.from_pretrained(tmp_path)
    assert printed_json(ours) == printed_json(theirs)
    assert ours.custom_thing == {"a": 1} and ours.id2label == theirs.id2label


def test_our_config_json_loads_in_transformers(hf, tmp_path):
    ours = GPT2Config(n_embd=64, n_head=4, n_layer=3, n_inner=100, activation_function="silu",
                      reorder_and_upcast_attn=True, num_labels=3, pad_token_id=0, add_cross_attention=True,
                      custom_thing=[1, 2])
    ours.save_pretrained(tmp_path)
    theirs = hf.GPT2Config.from_pretrained(tmp_path)
    assert printed_json(theirs) == printed_json(ours)
    assert theirs.custom_thing == [1, 2] and theirs.id2label == ours.id2label
    assert hf.AutoConfig.from_pretrained(tmp_path).model_type == "gpt2"


# PretrainedConfig's fields for HF's other code paths (TorchScript, head pruning, chunked feed-forward, TensorFlow,
# encoder-decoder models), each set away from its default in CHANGED.
FRAMEWORK_FIELDS = ("torchscript", "pruned_heads", "chunk_size_feed_forward", "use_bfloat16", "tf_legacy_loss",
                    "tie_encoder_decoder", "cross_attention_hidden_size")
CHANGED = dict(torchscript=True, pruned_heads={0: [1, 2], 2: [3]}, chunk_size_feed_forward=4, use_bfloat16=True,
               tf_legacy_loss=True, tie_encoder_decoder=True, cross_attention_hidden_size=32)


def framework_fields_as_written(config, directory):
    """The FRAMEWORK_FIELDS in each form a config takes (to_dict, to_diff_dict, the JSON strings, config.json)."""
    config.save_pretrained(directory)
    forms = {"to_dict": config.to_dict(), "to_diff_dict": config.to_diff_dict(),
             "to_json_string": json.loads(config.to_json_string()),
             "to_json_string(use_diff=False)": json.loads(config.to_json_string(use_diff=False)),
             "config.json": json.loads((directory / "config.json").read_text())}
    return {form: {k: v for k, v in d.items() if k in FRAMEWORK_FIELDS} for form, d in forms.items()}


@pytest.mark.parametrize("kwargs", [{}, CHANGED], ids=["defaults", "changed"])
def test_framework_fields_match_hf(hf, tmp_path, kwargs):
    """As transformers: the same values, in to_dict() always, in the printed JSON, to_diff_dict() and config.json
    only where they differ from the default; config.json carries them both ways, pruned_heads' keys back as ints."""
    ours, theirs = GPT2Config(**kwargs), hf.GPT2Config(**kwargs)
    for name in FRAMEWORK_FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert set(FRAMEWORK_FIELDS) <= set(theirs.to_dict())
    assert framework_fields_as_written(ours, tmp_path / "ours") == framework_fields_as_written(theirs, tmp_path / "hf")
    from_ours = hf.GPT2Config.from_pretrained(tmp_path / "ours")
    from_theirs = GPT2Config.from_pretrained(tmp_path / "hf")
    for name in FRAMEWORK_FIELDS:
        assert getattr(from_ours, name) == getattr(theirs, name), name
        assert getattr(from_theirs, name) == getattr(theirs, name), name


def test_framework_fields_as_hf_reads_them(hf, tmp_path):
    """Keyword arguments of from_pretrained set them (none is left unused); pruned_heads=None is {}; from_dict reads
    pruned_heads' JSON keys ("0") as ints, as HF's does; each config gets its own pruned_heads."""
    GPT2Config().save_pretrained(tmp_path)
    ours = GPT2Config.from_pretrained(tmp_path, return_unused_kwargs=True, **CHANGED)
    theirs = hf.GPT2Config.from_pretrained(tmp_path, return_unused_kwargs=True, **CHANGED)
    assert ours[1] == theirs[1] == {}
    for name in FRAMEWORK_FIELDS:
        assert getattr(ours[0], name) == getattr(theirs[0], name), name
    assert GPT2Config(pruned_heads=None).pruned_heads == hf.GPT2Config(pruned_heads=None).pruned_heads
    as_json = {"pruned_heads": {"0": [1], "3": [0, 2]}}
    assert GPT2Config.from_dict(as_json).pruned_heads == hf.GPT2Config.from_dict(as_json).pruned_heads
    GPT2Config().pruned_heads[0] = [1]
    assert GPT2Config().pruned_heads == {}
    import minigpt2

    # A model is never made with heads that should have been pruned (transformers prunes them; running every head
    # would silently be another model): the config loads, the model says why it cannot.
    pruned = tmp_path / "pruned"
    GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, pruned_heads={0: [1]}).save_pretrained(pruned)
    assert GPT2Config.from_pretrained(pruned).pruned_heads == {0: [1]}
    with pytest.raises(ValueError, match=r"pruned_heads is \{0: \[1\]\}: minigpt2 does not prune attention heads"):
        minigpt2.GPT2LMHeadModel(GPT2Config.from_pretrained(pruned))
    for return_dict in (True, False):  # torchscript: models return tuples, as HF's use_return_dict says
        for torchscript in (False, True):
            assert (GPT2Config(return_dict=return_dict, torchscript=torchscript).use_return_dict
                    == hf.GPT2Config(return_dict=return_dict, torchscript=torchscript).use_return_dict)

    model = minigpt2.GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, torchscript=True), seed=0)
    assert isinstance(model([[1, 2]]), tuple) and not isinstance(model([[1, 2]], return_dict=True), tuple)


def test_config_json_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """save_pretrained writes config.json beside and renames it over the old one: a save cut short (here the
    rename fails, as on a full disk) leaves the old file whole and no partial file behind."""
    import minigpt2.config

    GPT2Config(n_layer=1).save_pretrained(tmp_path)
    before = (tmp_path / "config.json").read_text()

    def cut_short(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(minigpt2.config.os, "replace", cut_short)
    with pytest.raises(OSError):
        GPT2Config(n_layer=2).save_pretrained(tmp_path)
    assert (tmp_path / "config.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    monkeypatch.undo()  # generation_config.json is written the same way
    minigpt2.GenerationConfig(max_new_tokens=5).save_pretrained(tmp_path)
    before = (tmp_path / "generation_config.json").read_text()
    monkeypatch.setattr(minigpt2.config.os, "replace", cut_short)
    with pytest.raises(OSError):
        minigpt2.GenerationConfig(max_new_tokens=7).save_pretrained(tmp_path)
    assert (tmp_path / "generation_config.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "generation_config.json"]
