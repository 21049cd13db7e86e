"""Model classes, config and loading as an HF user who changes only the import line, checked against transformers on
the same checkpoint (fp32, eager attention): the config's keyword arguments (from_dict, id2label alone), loading a
classifier with another number of labels (ignore_mismatched_sizes), transformers 5's name for the cache (``cache``),
and the errors of a sequence classifier's loss and of labels with logits_to_keep.

Numbers are compared with conftest.assert_close: 1e-5 * max(1, max|ref|), the float32 bound of the suite (a few float32
roundings of sums over at most n_embd terms, each ~6e-8 relative).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import minigpt2
from conftest import TINY, assert_close, write_hf_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

IDS = np.array([[5, 17, 42, 8, 60], [3, 9, 77, 21, 4]])


def hf(model, ids, **kwargs):
    with torch.no_grad():
        return model(torch.tensor(ids), **kwargs)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A GPT2ForSequenceClassification checkpoint with 3 labels, written by transformers."""
    directory = tmp_path_factory.mktemp("classifier3")
    write_hf_checkpoint(directory, "GPT2ForSequenceClassification", num_labels=3, pad_token_id=0)
    return str(directory)


# -- GPT2Config ------------------------------------------------------------------------------------------------

def test_from_dict_keyword_arguments_as_in_transformers():
    """from_dict sets the keywords that name attributes and returns the others with return_unused_kwargs, as HF's;
    it used to store every keyword, return_unused_kwargs itself included, in the config (and so in config.json)."""
    d = {"n_embd": 32, "n_head": 4}
    for lib in (minigpt2, transformers):
        config, unused = lib.GPT2Config.from_dict(d, n_layer=3, hidden_size=64, foo=1, return_unused_kwargs=True)
        assert unused == {"foo": 1}, lib.__name__
        assert (config.n_layer, config.n_embd) == (3, 64)
        assert not hasattr(config, "foo") and not hasattr(config, "return_unused_kwargs")
        plain = lib.GPT2Config.from_dict(d, n_layer=3, foo=1)
        assert isinstance(plain, lib.GPT2Config) and plain.n_layer == 3 and not hasattr(plain, "foo")
    saved = json.loads(minigpt2.GPT2Config.from_dict(d, foo=1, return_unused_kwargs=True)[0].to_json_string())
    assert "foo" not in saved and "return_unused_kwargs" not in saved


def test_id2label_alone_leaves_no_contradicting_label2id(tmp_path):
    """GPT2Config(id2label=...) without label2id: HF leaves label2id None; ours kept the default
    {"LABEL_0": 0, "LABEL_1": 1}, which names labels the config does not have."""
    labels = {"0": "neg", "1": "neutral", "2": "pos"}
    ours, theirs = minigpt2.GPT2Config(id2label=labels), transformers.GPT2Config(id2label=labels)
    assert ours.id2label == theirs.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    assert ours.num_labels == theirs.num_labels == 3
    assert ours.label2id == theirs.label2id
    ours.save_pretrained(tmp_path)
    again = transformers.GPT2Config.from_pretrained(tmp_path)
    assert again.label2id == theirs.label2id and again.id2label == theirs.id2label
    both = {"id2label": labels, "label2id": {"neg": 0, "neutral": 1, "pos": 2}}
    assert minigpt2.GPT2Config(**both).label2id == transformers.GPT2Config(**both).label2id


def test_small_class_attributes_hf_code_reads():
    assert minigpt2.GPT2LMHeadModel.config_class is minigpt2.GPT2Config
    assert transformers.GPT2LMHeadModel.config_class is transformers.GPT2Config
    assert minigpt2.GPT2ForSequenceClassification.config_class is minigpt2.GPT2Config
    # transformers 4.57's (HF's Trainer leaves these output fields out of predictions; 5.x dropped the attribute)
    assert minigpt2.GPT2Config.keys_to_ignore_at_inference == ["past_key_values"]
    assert getattr(transformers.GPT2Config, "keys_to_ignore_at_inference", ["past_key_values"]) == ["past_key_values"]


# -- loading a classifier with another number of labels ---------------------------------------------------------

def test_ignore_mismatched_sizes_reinitialises_the_head_as_transformers(classifier_dir):
    """The usual fine-tuning start, a 3-label classifier loaded with num_labels=5: HF's ignore_mismatched_sizes=True
    re-initialises score.weight (with a warning) and keeps the transformer; minigpt2 refused the keyword."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = minigpt2.GPT2ForSequenceClassification.from_pretrained(classifier_dir, num_labels=5,
                                                                      ignore_mismatched_sizes=True)
    assert any("score.weight" in str(w.message) and "(3, 32)" in str(w.message) for w in caught), \
        [str(w.message) for w in caught]
    theirs = transformers.GPT2ForSequenceClassification.from_pretrained(
        classifier_dir, num_labels=5, ignore_mismatched_sizes=True, attn_implementation="eager").eval()
    assert ours.config.num_labels == theirs.config.num_labels == 5
    assert ours.params["score"]["weight"].shape == tuple(theirs.score.weight.shape) == (5, TINY["n_embd"])
    assert_close(ours.transformer(IDS).last_hidden_state, hf(theirs.transformer, IDS).last_hidden_state.numpy(),
                 "last_hidden_state")
    ours.params["score"]["weight"] = theirs.score.weight.detach().numpy().copy()  # the same random head: same logits
    assert_close(ours(IDS).logits, hf(theirs, IDS).logits.numpy(), "logits")


def test_a_head_of_another_size_names_ignore_mismatched_sizes(classifier_dir):
    with pytest.raises(ValueError, match=r"score\.weight.*\(3, 32\).*ignore_mismatched_sizes=True"):
        minigpt2.GPT2ForSequenceClassification.from_pretrained(classifier_dir, num_labels=5)


# -- transformers 5's name for the cache ---------------------------------------------------------------------

def test_cache_is_transformers_5s_name_for_past_key_values(hf_tiny_checkpoint):
    """transformers 5 renamed past_key_values to ``cache`` (keyword and output field; the old name still works there):
    code written for it passes ``cache=`` and reads ``out.cache``, which minigpt2 refused."""
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(hf_tiny_checkpoint)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_checkpoint, attn_implementation="eager").eval()
    prompt = ours(IDS[:, :3])
    assert prompt.cache is prompt.past_key_values
    step = ours(IDS[:, 3:], cache=prompt.cache)
    assert step.cache.get_seq_length() == 5
    assert_close(step.logits, hf(theirs, IDS).logits.numpy()[:, 3:], "logits continued from cache=")
    assert minigpt2.GPT2Model.from_pretrained(hf_tiny_checkpoint)(IDS, cache=None).cache.get_seq_length() == 5
    with pytest.raises(ValueError, match="past_key_values .* or cache"):
        ours(IDS[:, 3:], cache=prompt.cache, past_key_values=prompt.cache)
    qa = minigpt2.GPT2ForQuestionAnswering(minigpt2.GPT2Config(**TINY), seed=0)
    with pytest.raises(TypeError, match="GPT2ForQuestionAnswering takes no cache"):
        qa(IDS, cache=None)


# -- messages ------------------------------------------------------------------------------------------------

def test_a_sequence_classifiers_labels_that_do_not_fit_its_problem_type_say_so(classifier_dir):
    """problem_type is inferred from the first labels and then kept (as in HF): multi-label targets given as integers,
    or given after integer labels, used to get "labels must hold integers" or a shape message naming neither
    problem_type nor how to change it (HF: a batch-size mismatch from torch)."""
    model = minigpt2.GPT2ForSequenceClassification.from_pretrained(classifier_dir)
    with pytest.raises(ValueError, match="problem_type.*single_label_classification.*multi_label_classification"):
        model(IDS, labels=np.array([[0, 1, 1], [1, 0, 0]]))  # integers: inferred single-label
    model = minigpt2.GPT2ForSequenceClassification.from_pretrained(classifier_dir)
    model(IDS, labels=np.array([0, 2]))
    with pytest.raises(ValueError, match="problem_type.*single_label_classification.*multi_label_classification"):
        model(IDS, labels=np.array([[0, 1, 1], [1, 0, 0]], np.float32))


def test_labels_with_logits_to_keep_name_logits_to_keep(hf_tiny_checkpoint):
    """The loss needs every position's logits; with logits_to_keep=1 the message said labels must have shape (2, 1)
    "one per input token", which they are not (HF: a batch-size mismatch)."""
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(hf_tiny_checkpoint)
    with pytest.raises(ValueError, match="logits_to_keep=1 keeps 1 of the 5"):
        ours(IDS, labels=IDS, logits_to_keep=1)
