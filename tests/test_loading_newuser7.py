"""Loading, converting and saving as a transformers user does it, after changing only the import line.

Each test runs the same calls in transformers 4.57 and in minigpt2 on the same tiny checkpoint, written by
transformers (conftest.write_hf_checkpoint), and compares what comes out: the config values, the loading report,
the weights (bit for bit) and the logits. Logits: the same float32 weights, only the order of float32 additions
differs, so conftest's bound, 1e-5 * max(1, max|reference|), holds (observed ~1e-6).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import minigpt2
from conftest import assert_close, write_hf_checkpoint

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

IDS = np.array([[5, 17, 3, 42, 8, 1], [9, 2, 77, 31, 0, 64]])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{"base": a 2-layer GPT2LMHeadModel checkpoint, "one_layer": another with 1 layer, "config_only": a directory
    holding only a config.json (the base's, with output_hidden_states=True)}, all written by transformers."""
    root = tmp_path_factory.mktemp("newuser7")
    write_hf_checkpoint(root / "base")
    write_hf_checkpoint(root / "one_layer", n_layer=1, seed=3)
    transformers.GPT2Config.from_pretrained(root / "base", output_hidden_states=True).save_pretrained(
        root / "config_only")
    return {name: root / name for name in ("base", "one_layer", "config_only")}


def load_both(cls_name, *args, **kwargs):
    """(minigpt2's model, transformers' model) of from_pretrained(*args, **kwargs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = getattr(minigpt2, cls_name).from_pretrained(*args, **kwargs)
        theirs = getattr(transformers, cls_name).from_pretrained(*args, attn_implementation="eager", **kwargs)
    return ours, theirs


def theirs_on(model, ids=IDS):
    with torch.no_grad():
        return model(torch.from_numpy(ids))


@pytest.mark.parametrize("where", ["directory", "config.json"])
def test_config_given_as_a_path_is_read_from_there_with_the_keyword_overrides(checkpoints, where):
    """from_pretrained(weights_dir, config=path): transformers reads config.json from ``path`` (a directory or the
    file) and applies the other keywords to it; minigpt2 took only config objects (AttributeError on a str)."""
    path = checkpoints["config_only"] if where == "directory" else checkpoints["config_only"] / "config.json"
    ours, theirs = load_both("GPT2LMHeadModel", checkpoints["base"], config=str(path), output_attentions=True)
    for field in ("output_hidden_states", "output_attentions", "n_layer", "name_or_path"):
        assert getattr(ours.config, field) == getattr(theirs.config, field), field
    out, ref = ours(IDS), theirs_on(theirs)
    assert len(out.hidden_states) == len(ref.hidden_states) and len(out.attentions) == len(ref.attentions)
    assert_close(out.logits, ref.logits.numpy(), "logits")


def test_config_path_of_another_size_loads_what_fits_as_transformers(checkpoints):
    """A one-layer config over a two-layer checkpoint: both load the first layer and report the second unused."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, info = minigpt2.GPT2LMHeadModel.from_pretrained(checkpoints["base"], config=checkpoints["one_layer"],
                                                              output_loading_info=True)
        theirs, expected = transformers.GPT2LMHeadModel.from_pretrained(
            checkpoints["base"], config=checkpoints["one_layer"], attn_implementation="eager",
            output_loading_info=True)
    assert info == expected
    assert ours.config.n_layer == theirs.config.n_layer == 1
    assert_close(ours(IDS).logits, theirs_on(theirs).logits.numpy(), "logits")


def test_a_config_object_is_copied_so_the_model_does_not_change_the_callers(checkpoints):
    """transformers deep-copies a config object given to from_pretrained: resizing the embeddings or converting
    the model leaves the caller's config (which may serve another model) as it was. minigpt2 kept the object itself,
    so the caller's vocab_size and dtype changed with the model."""
    ours_config = minigpt2.GPT2Config.from_pretrained(checkpoints["base"])
    theirs_config = transformers.GPT2Config.from_pretrained(checkpoints["base"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = minigpt2.GPT2LMHeadModel.from_pretrained(checkpoints["base"], config=ours_config)
        theirs = transformers.GPT2LMHeadModel.from_pretrained(checkpoints["base"], config=theirs_config)
        for model in (ours, theirs):
            model.resize_token_embeddings(128)
            model.half()
    assert (ours.config is ours_config) == (theirs.config is theirs_config) == False  # noqa: E712
    assert ours_config.vocab_size == theirs_config.vocab_size == 99
    assert ours_config.to_json_string() == minigpt2.GPT2Config.from_pretrained(checkpoints["base"]).to_json_string()


@pytest.mark.parametrize("make", ["init", "from_pretrained"])
def test_attn_implementation_is_not_a_config_field(checkpoints, make, tmp_path):
    """GPT2Config(attn_implementation=...) and GPT2Config.from_pretrained(path, attn_implementation=...): transformers
    keeps the choice as config._attn_implementation, out of to_dict() and config.json, and from_pretrained does not
    return it as unused. minigpt2 stored it as a field ``attn_implementation``, which save_pretrained wrote into
    config.json (where transformers would read it as its choice of attention code), and had no _attn_implementation."""
    def config(lib):
        if make == "init":
            return lib.GPT2Config(attn_implementation="sdpa", n_layer=1), {}
        return lib.GPT2Config.from_pretrained(checkpoints["base"], attn_implementation="sdpa",
                                              return_unused_kwargs=True)
    (ours, ours_unused), (theirs, theirs_unused) = config(minigpt2), config(transformers)
    assert ours_unused == theirs_unused
    assert ours._attn_implementation == theirs._attn_implementation == "sdpa"
    fields = lambda config: {k: v for k, v in config.to_diff_dict().items() if k != "transformers_version"}
    assert fields(ours) == fields(theirs)
    ours.save_pretrained(tmp_path)
    assert "attn_implementation" not in (tmp_path / "config.json").read_text()


def test_num_labels_that_contradicts_id2label_keeps_the_labels():
    """GPT2Config(num_labels=3, id2label={0: 'neg', 1: 'pos'}): transformers warns and keeps the two labels given;
    minigpt2 replaced them with LABEL_0..LABEL_2, losing the names."""
    labels = {0: "neg", 1: "pos"}
    theirs = transformers.GPT2Config(num_labels=3, id2label=labels)
    with pytest.warns(UserWarning, match=r"num_labels=3 does not fit the id2label given, which has 2 labels"):
        ours = minigpt2.GPT2Config(num_labels=3, id2label=labels)
    assert (ours.num_labels, ours.id2label, ours.label2id) == (theirs.num_labels, theirs.id2label, theirs.label2id)
