"""The forward pass of GPT2LMHeadModel and GPT2Model as a transformers user calls it, and the model helpers such a
user touches, each checked against transformers 4.57 itself (fp32, eager attention) on the same tiny checkpoint.

Numbers are compared with conftest.assert_close: 1e-5 * max(1, max|ref|), the float32 bound of the whole suite
(float32 rounding through two layers and the head, summed in another order than torch's).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigpt2
from conftest import assert_close, write_hf_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

IDS = np.array([[5, 6, 7, 8, 9], [1, 2, 3, 4, 10]])
LABELS = np.array([[-100, -100, 7, 8, 9], [1, 2, 3, -100, 10]])


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("forward_audit")
    write_hf_checkpoint(directory)
    return directory


@pytest.fixture
def ours(checkpoint_dir):
    return minigpt2.GPT2LMHeadModel.from_pretrained(checkpoint_dir)


@pytest.fixture
def theirs(checkpoint_dir):
    return transformers.GPT2LMHeadModel.from_pretrained(checkpoint_dir, attn_implementation="eager").eval()


def run(model, **kwargs):
    """A transformers model called with the arrays of ``kwargs`` as tensors, without autograd."""
    with torch.no_grad():
        return model(**{k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})


# -- the loss -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [3, 9, torch.tensor(9)])
def test_loss_with_num_items_in_batch_is_the_sum_over_that_count(ours, theirs, n):
    """transformers' Trainer passes num_items_in_batch (the targets of a whole gradient-accumulation step, an int or
    a tensor): the loss is the summed cross-entropy divided by it. minigpt2 refused the keyword (TypeError)."""
    ref = run(theirs, input_ids=IDS, labels=LABELS, num_items_in_batch=n).loss.item()
    assert_close(ours(IDS, labels=LABELS, num_items_in_batch=n).loss, ref, "loss / num_items_in_batch")


def test_loss_with_shift_labels_and_ignore_index(ours, theirs):
    """HF's other loss options: shift_labels (already shifted: the target of each position; labels then only say
    that a loss is wanted) and ignore_index."""
    shifted = np.array([[6, 7, -100, 9, -100], [2, 3, 4, 10, -100]])
    ref = run(theirs, input_ids=IDS, labels=IDS, shift_labels=shifted).loss.item()
    assert_close(ours(IDS, labels=IDS, shift_labels=shifted).loss, ref, "loss with shift_labels")
    minus_one = np.where(LABELS == -100, -1, LABELS)
    ref = run(theirs, input_ids=IDS, labels=minus_one, ignore_index=-1).loss.item()
    assert_close(ours(IDS, labels=minus_one, ignore_index=-1).loss, ref, "loss with ignore_index=-1")


def test_unknown_keywords_are_named(ours, theirs):
    """transformers ignores any keyword its forward does not know (a typo changes nothing, silently); minigpt2
    names it and says which extra keywords it takes."""
    run(theirs, input_ids=IDS, labels=IDS, num_items_in_bach=3)  # (the typo passes in transformers)
    with pytest.raises(TypeError, match=r"num_items_in_bach.*num_items_in_batch, ignore_index, shift_labels"):
        ours(IDS, labels=IDS, num_items_in_bach=3)
    with pytest.raises(ValueError, match="num_items_in_batch must be a positive number"):
        ours(IDS, labels=IDS, num_items_in_batch=0)


# -- model helpers a transformers user calls -----------------------------------------------------------------------

def test_lm_head_is_there_as_in_transformers(ours, theirs, tmp_path):
    """model.lm_head (HF: nn.Linear(n_embd, vocab_size, bias=False)) was an AttributeError: its weight (wte itself
    when tied), its sizes, and calling it on hidden states; the bare GPT2Model has none, as in transformers."""
    head = ours.lm_head
    assert head.weight is ours.params["wte"]["weight"]
    assert (head.in_features, head.out_features) == (theirs.lm_head.in_features, theirs.lm_head.out_features)
    assert np.array_equal(head.weight, theirs.lm_head.weight.detach().numpy())
    hidden = run(theirs, input_ids=IDS, output_hidden_states=True).hidden_states[-1]
    assert_close(head(hidden), run(theirs.lm_head, input=hidden).numpy(), "lm_head(hidden states)")
    assert not hasattr(minigpt2.GPT2Model(ours.config, ours.params), "lm_head")
    assert not hasattr(transformers.GPT2Model(theirs.config), "lm_head")
    write_hf_checkpoint(tmp_path, tie_word_embeddings=False)  # an untied head: the checkpoint's own lm_head.weight
    untied = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path).lm_head.weight
    their_untied = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).lm_head.weight
    assert np.array_equal(untied, their_untied.detach().numpy())


def test_set_input_embeddings_takes_a_torch_embedding(ours, theirs):
    """model.set_input_embeddings(torch.nn.Embedding(...)), the transformers way, failed with "embeddings must hold
    numbers, got dtype object". The head stays tied to the new table (transformers ties it again at tie_weights())."""
    table = torch.nn.Embedding.from_pretrained(torch.randn(120, 32, generator=torch.Generator().manual_seed(0)))
    ours.set_input_embeddings(table)
    theirs.set_input_embeddings(table)
    theirs.resize_token_embeddings(120)  # (its config.vocab_size and lm_head follow the new table)
    assert ours.config.vocab_size == theirs.config.vocab_size == 120
    ids = np.array([[119, 3, 100, 7]])
    assert_close(ours(ids).logits, run(theirs, input_ids=ids).logits.numpy(), "logits with the new table")


def test_models_without_generate_have_no_generation_config(checkpoint_dir):
    """transformers' GPT2Model.generation_config is None (it cannot generate); minigpt2's was an AttributeError."""
    ours = minigpt2.GPT2Model.from_pretrained(checkpoint_dir)
    theirs = transformers.GPT2Model.from_pretrained(checkpoint_dir)
    assert ours.generation_config is None and theirs.generation_config is None
    assert ours.can_generate() is theirs.can_generate() is False


# -- forward arguments ---------------------------------------------------------------------------------------------

def test_logits_to_keep_positions_may_count_from_the_end(ours, theirs):
    """A 1-D logits_to_keep indexes the positions as torch does, so -1 is the last one; minigpt2 refused negatives
    ("holds -1, outside the allowed values [0, 5)")."""
    for keep in ([-1], [0, -2, 4], [-5]):
        ref = run(theirs, input_ids=IDS, logits_to_keep=torch.tensor(keep)).logits.numpy()
        assert_close(ours(IDS, logits_to_keep=np.array(keep)).logits, ref, f"logits_to_keep={keep}")
    with pytest.raises(ValueError, match=r"logits_to_keep holds -6, outside"):
        ours(IDS, logits_to_keep=np.array([-6]))


# -- what was found to match transformers already (kept so that it stays so) ---------------------------------------

def as_list(x):
    return list(x) if isinstance(x, tuple) else [x]


@pytest.mark.parametrize("kwargs", [dict(), dict(labels=LABELS), dict(use_cache=False, output_hidden_states=True),
                                    dict(labels=IDS, use_cache=False, output_attentions=True,
                                         output_hidden_states=True)])
def test_outputs_fields_tuples_and_values_as_transformers(ours, theirs, kwargs):
    """The fields that are set, in transformers' order, by name, by key, by position and as return_dict=False's
    tuple; n_layer + 1 hidden states (the last after ln_f), attentions [B, H, T, T], float32 throughout."""
    mask = np.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    out = ours(IDS, attention_mask=mask, **kwargs)
    ref = run(theirs, input_ids=IDS, attention_mask=mask, **kwargs)
    assert list(out.keys()) == list(ref.keys())
    as_tuple = ours(IDS, attention_mask=mask, return_dict=False, **kwargs)
    assert type(as_tuple) is tuple and len(as_tuple) == len(ref.to_tuple())
    for i, key in enumerate(ref.keys()):
        assert out[i] is out[key] is getattr(out, key)
        if key == "past_key_values":
            continue  # (a KVCache here, transformers' DynamicCache there: tests/test_cache_audit.py)
        for a, b, c in zip(as_list(out[key]), as_list(ref[key]), as_list(as_tuple[i])):
            assert np.asarray(a).dtype == np.float32 and np.shape(a) == tuple(b.shape), key
            assert_close(a, b.numpy(), key)
            assert_close(c, b.numpy(), f"{key} (return_dict=False)")
    if "hidden_states" in ref:
        assert len(out.hidden_states) == len(ref.hidden_states) == 3  # the embeddings and each of the 2 layers


def test_loss_semantics_as_transformers(ours, theirs):
    """Labels are shifted inside (labels=input_ids), -100 is ignored, every label ignored gives NaN as in torch, and
    labels that are not one per input token are a clear error (transformers: a batch-size mismatch deep in torch)."""
    assert np.isnan(ours(IDS, labels=np.full_like(IDS, -100)).loss)
    assert np.isnan(run(theirs, input_ids=IDS, labels=np.full_like(IDS, -100)).loss.item())
    for wrong in (IDS[:, :3], np.concatenate([IDS, IDS], axis=1)):
        with pytest.raises(ValueError, match=r"labels must have shape \(2, 5\) \(one per input token\)"):
            ours(IDS, labels=wrong)
    with pytest.raises(TypeError, match="labels must hold integers, got dtype float32"):
        ours(IDS, labels=IDS.astype(np.float32))


def test_output_embeddings_map_hidden_states_to_logits(ours, theirs):
    """get_output_embeddings() is the LM head in transformers (the Linear of model.lm_head): calling it on hidden
    states gives logits, as "logit lens" code does with each layer's output. minigpt2 gave an Embedding, which
    read them as token ids ("input_ids must hold integers")."""
    hidden = run(theirs, input_ids=IDS, output_hidden_states=True).hidden_states
    for i, h in enumerate(hidden):
        ref = run(theirs.get_output_embeddings(), input=h).numpy()
        assert_close(ours.get_output_embeddings()(h.numpy()), ref, f"head(hidden_states[{i}])")
    assert ours.get_output_embeddings().weight is ours.params["wte"]["weight"]


def test_the_head_names_a_wrong_hidden_size(ours):
    """Hidden states of another width are refused by name, not by NumPy's matmul ("mismatch in its core
    dimension 0, with gufunc signature ...")."""
    with pytest.raises(ValueError, match=r"hidden_states must have n_embd=32 numbers on their last axis, got "
                                         r"shape \(1, 2, 31\)"):
        ours.lm_head(np.zeros((1, 2, 31), np.float32))


def test_load_state_dict_of_a_path_says_what_it_takes(ours, theirs, checkpoint_dir):
    """Passing the checkpoint's path instead of its tensors gave "'str' object has no attribute 'items'"
    (transformers: TypeError, "Expected state_dict to be dict-like")."""
    path = str(checkpoint_dir / "model.safetensors")
    with pytest.raises(TypeError, match="dict-like"):
        theirs.load_state_dict(path)
    with pytest.raises(TypeError, match=r"load_state_dict takes a dict of name -> array .*load_file\(path\).*got str"):
        ours.load_state_dict(path)
