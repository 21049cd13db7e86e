"""The model classes' forward passes as a transformers user switching the import calls them: what the earlier passes
(test_models_hf, test_forward_audit, test_cache_audit, test_attention_mask_4d, ...) left out, each checked against
transformers 4.57 itself (fp32, eager attention) on the same tiny checkpoint.

Numbers are compared with conftest.assert_close: 1e-5 * max(1, max|ref|), the float32 bound of the whole suite (float32
rounding through two layers and a head, summed in another order than torch's).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

import minigpt2
from conftest import assert_close, write_hf_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

IDS = np.array([[5, 6, 7, 8, 9, 11], [0, 0, 3, 4, 10, 12], [0, 2, 3, 4, 5, 6]])  # rows 1 and 2 left-padded (pad id 0)
MASK = (IDS != 0).astype(np.int64)
NEW = np.array([[13], [14], [15]])


def pair(tmp_path_factory, class_name, **config):
    directory = tmp_path_factory.mktemp(class_name)
    write_hf_checkpoint(directory, class_name, **config)
    ours = getattr(minigpt2, class_name).from_pretrained(directory)
    theirs = getattr(transformers, class_name).from_pretrained(directory, attn_implementation="eager").eval()
    return ours, theirs


def tensors(kwargs):
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


def leaves(x):
    """Every array in an output (nested tuples, a cache) as NumPy, in order; None stays None."""
    if x is None or isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, torch.Tensor):
        return [x.numpy()]
    if hasattr(x, "to_legacy_cache") and not isinstance(x, tuple):
        return leaves(x.to_legacy_cache())
    if isinstance(x, (tuple, list)):
        return [a for item in x for a in leaves(item)]
    return [np.asarray(x)]


def assert_same_outputs(ours, theirs, what):
    ours, theirs = leaves(tuple(ours)), leaves(tuple(theirs))
    assert len(ours) == len(theirs), f"{what}: {len(ours)} arrays, transformers {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert (a is None) == (b is None), f"{what}[{i}]"
        if a is not None:
            assert a.dtype == b.dtype, f"{what}[{i}]: dtype {a.dtype}, transformers {b.dtype}"
            assert_close(a, b, f"{what}[{i}]")


# -- GPT2DoubleHeadsModel with logits_to_keep, and the old name num_logits_to_keep -------------------------------

@pytest.fixture(scope="module")
def double_heads(tmp_path_factory):
    return pair(tmp_path_factory, "GPT2DoubleHeadsModel")


def test_double_heads_labels_with_logits_to_keep_name_logits_to_keep(double_heads):
    """GPT2DoubleHeadsModel takes logits_to_keep (transformers' does not: it ignores it). With labels, the LM loss needs
    every position's logits: the error named the labels' shape, (3, 2, 6), as if they were wrong; it now says that
    logits_to_keep kept too few, as GPT2LMHeadModel's does. Without logits_to_keep, loss and logits are transformers'."""
    ours, theirs = double_heads
    ids = np.stack([IDS + 1, IDS + 2], axis=1)  # [B, choices, T]
    with pytest.raises(ValueError, match=r"labels need the logits of every position, but logits_to_keep=1 keeps 1 "
                                         r"of the 6: leave logits_to_keep at 0"):
        ours(ids, labels=ids, logits_to_keep=1)
    with torch.no_grad():
        ref = theirs(**tensors(dict(input_ids=ids, labels=ids)))
    got = ours(ids, labels=ids)
    assert_close(got.loss, ref.loss.item(), "loss")
    assert_close(got.logits, ref.logits.numpy(), "logits")
    assert_close(ours(ids, logits_to_keep=1).logits, ref.logits.numpy()[..., -1:, :], "logits_to_keep=1")


def test_num_logits_to_keep_is_named_as_the_old_name_of_logits_to_keep(tmp_path_factory):
    """transformers 4.57 ignores num_logits_to_keep (an earlier name of logits_to_keep) and computes every logit;
    minigpt2 refuses unknown keywords, and for this one now says what it is called."""
    ours, theirs = pair(tmp_path_factory, "GPT2LMHeadModel")
    with torch.no_grad():
        assert theirs(torch.tensor(IDS), num_logits_to_keep=1).logits.shape[1] == IDS.shape[1]  # (ignored there)
    with pytest.raises(TypeError, match="num_logits_to_keep is the old name of logits_to_keep"):
        ours(IDS, num_logits_to_keep=1)


# -- a model with cross-attention continuing transformers' EncoderDecoderCache ------------------------------------

def test_cross_attention_continues_transformers_encoder_decoder_cache(tmp_path_factory):
    """With add_cross_attention, transformers returns an EncoderDecoderCache, whose legacy form holds four arrays per
    layer (self-attention key and value, then the encoder's). minigpt2 refused both ('past_key_values[0] must be a
    (key, value) pair'); it now continues the self-attention part (computing the encoder's keys and values again from
    encoder_hidden_states, the same numbers), and grows the EncoderDecoderCache it is given in place, as transformers
    does, so transformers can continue from it too."""
    ours, theirs = pair(tmp_path_factory, "GPT2LMHeadModel", add_cross_attention=True)
    encoder = np.random.default_rng(0).standard_normal((3, 5, 32)).astype(np.float32)
    encoder_mask = np.array([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    prompt = dict(encoder_hidden_states=encoder, encoder_attention_mask=encoder_mask)
    with torch.no_grad():
        cache = theirs(**tensors(dict(input_ids=IDS, attention_mask=MASK, use_cache=True, **prompt))).past_key_values
    assert type(cache).__name__ == "EncoderDecoderCache"
    legacy = tuple(tuple(a.numpy().copy() for a in layer) for layer in cache.to_legacy_cache())
    assert len(legacy[0]) == 4
    given = copy.deepcopy(cache)
    step = dict(input_ids=NEW, attention_mask=np.concatenate([MASK, np.ones_like(NEW)], 1), output_attentions=True,
                **prompt)
    with torch.no_grad():
        ref = theirs(**tensors(step), past_key_values=cache)

    for past in (legacy, given):
        got = ours(**step, past_key_values=past)
        for name in ("logits", "attentions", "cross_attentions"):
            assert_close(np.stack(leaves(got[name])), np.stack(leaves(ref[name])), name)
    assert got.past_key_values is given and given.get_seq_length() == IDS.shape[1] + 1
    with torch.no_grad():  # transformers continues the cache minigpt2 grew as the one it grew itself
        after_ours = theirs(**tensors(dict(input_ids=NEW + 1, **prompt)), past_key_values=given).logits.numpy()
        after_theirs = theirs(**tensors(dict(input_ids=NEW + 1, **prompt)), past_key_values=cache).logits.numpy()
    assert_close(after_ours, after_theirs, "transformers after minigpt2's step")


# -- the task heads continuing a cache -----------------------------------------------------------------------------

@pytest.mark.parametrize("class_name", ["GPT2DoubleHeadsModel", "GPT2ForSequenceClassification",
                                        "GPT2ForTokenClassification"])
def test_task_heads_continue_each_kind_of_cache_as_transformers(tmp_path_factory, class_name):
    """The heads other than the LM head take past_key_values too (test_cache_audit covers GPT2LMHeadModel): a left-padded
    batch of 3 continued from transformers' legacy tuples, from minigpt2's KVCache and from transformers' DynamicCache,
    with attentions and hidden states, as return_dict=False tuples in transformers' order. 9 cases."""
    ours, theirs = pair(tmp_path_factory, class_name, pad_token_id=0)
    shape = (lambda a: a[:, None, :]) if class_name == "GPT2DoubleHeadsModel" else (lambda a: a)  # [B, choices=1, T]
    base = theirs.transformer
    with torch.no_grad():
        prompt_cache = base(torch.tensor(IDS), attention_mask=torch.tensor(MASK), use_cache=True).past_key_values
    legacy = tuple(tuple(a.numpy().copy() for a in layer) for layer in prompt_cache.to_legacy_cache())
    step = dict(input_ids=shape(NEW), attention_mask=shape(np.concatenate([MASK, np.ones_like(NEW)], 1)),
                output_attentions=True, output_hidden_states=True, return_dict=False)
    with torch.no_grad():
        ref = theirs(**tensors(step), past_key_values=transformers.DynamicCache.from_legacy_cache(
            tuple(tuple(torch.tensor(a) for a in layer) for layer in legacy)))
    for kind, past in [("legacy tuples", legacy), ("KVCache", minigpt2.KVCache.from_legacy_cache(legacy)),
                       ("DynamicCache", transformers.DynamicCache.from_legacy_cache(
                           tuple(tuple(torch.tensor(a) for a in layer) for layer in legacy)))]:
        got = ours(**step, past_key_values=past)
        assert isinstance(got, tuple)
        assert_same_outputs(got, ref, f"{class_name} from {kind}")


# -- outputs as HF's ModelOutput ------------------------------------------------------------------------------------

def test_outputs_take_item_assignment_and_rebuild_from_their_items_as_transformers(tmp_path_factory):
    """HF code sets fields by key (``out["logits"] = out.logits[..., :k]``) and rebuilds outputs from their items
    (``type(out)({k: f(v) for k, v in out.items()})``, as accelerate does). The first was an AttributeError (no
    __setitem__); the second put the whole dict into the first field (keys ['loss']); reversed(out) gave the values."""
    ours, theirs = pair(tmp_path_factory, "GPT2LMHeadModel")
    ids = IDS[:1]
    ref = theirs(**tensors(dict(input_ids=ids, labels=ids)))
    got = ours(ids, labels=ids)
    for out, cut in ((got, got.logits[:, -1:]), (ref, ref.logits[:, -1:])):
        out["logits"] = cut
        assert out.logits is cut and out["logits"] is cut and out[1] is cut
    assert list(reversed(got)) == list(reversed(ref))
    rebuilt, ref_rebuilt = type(got)(dict(got.items())), type(ref)(dict(ref.items()))
    assert list(rebuilt.keys()) == list(ref_rebuilt.keys()) == ["loss", "logits", "past_key_values"]
    assert all(rebuilt[k] is got[k] for k in got.keys())
    with pytest.raises(KeyError, match=r"no field 'logit'; its fields are \['loss', 'logits'"):
        got["logit"] = cut


# -- every forward argument at once, per class --------------------------------------------------------------------

CLASSES = ["GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2ForSequenceClassification",
           "GPT2ForTokenClassification", "GPT2ForQuestionAnswering"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return {name: pair(tmp_path_factory, name, pad_token_id=0) for name in CLASSES}


def every_argument(class_name, padding):
    """A batch of 3 padded on one side (pad id 0) with token types, positions, a head mask, attentions, hidden states
    and each class's labels (-100 at padding)."""
    rng = np.random.default_rng(len(class_name))
    ids = rng.integers(1, 99, size=(3, 6))
    mask = np.ones_like(ids)
    for row, n in ((1, 2), (2, 1)):  # row 1: 2 pads, row 2: 1 pad
        mask[row, slice(0, n) if padding == "left" else slice(6 - n, 6)] = 0
    ids = ids * mask
    if class_name == "GPT2DoubleHeadsModel":  # [B, choices, T]
        ids, mask = np.stack([ids, (ids + 1) * mask], 1), np.stack([mask, mask], 1)
    kwargs = dict(input_ids=ids, attention_mask=mask, token_type_ids=rng.integers(0, 3, ids.shape),
                  head_mask=(rng.random((2, 4)) > 0.3).astype(np.float32), output_attentions=True,
                  output_hidden_states=True)
    if class_name != "GPT2DoubleHeadsModel":  # (transformers' double heads model cannot take [B, choices, T] positions)
        kwargs["position_ids"] = np.maximum(np.cumsum(mask, -1) - 1, 0)
    labels = np.where(mask == 0, -100, ids)
    kwargs.update({
        "GPT2Model": {},
        "GPT2LMHeadModel": dict(labels=labels),
        "GPT2DoubleHeadsModel": dict(labels=labels, mc_token_ids=mask.sum(-1) - 1 if padding == "right" else
                                     np.full((3, 2), 5), mc_labels=np.array([0, 1, 1])),
        "GPT2ForSequenceClassification": dict(labels=np.array([1, 0, 1])),
        "GPT2ForTokenClassification": dict(labels=np.where(mask == 0, -100, ids % 2)),
        "GPT2ForQuestionAnswering": dict(start_positions=np.array([0, 3, 9]), end_positions=np.array([-1, 5, 2])),
    }[class_name])
    return kwargs


@pytest.mark.parametrize("return_dict", [True, False])
@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("class_name", CLASSES)
def test_every_forward_argument_at_once_as_transformers(models, class_name, padding, return_dict):
    """Each class with all of its forward arguments together on a padded batch of 3: every output (losses, logits,
    the cache, hidden states, attentions) in transformers' order, as an output object and as a return_dict=False
    tuple. 24 cases; the argument sweeps behind this note found them all matching already."""
    ours, theirs = models[class_name]
    kwargs = every_argument(class_name, padding)
    got = ours(**kwargs, return_dict=return_dict)
    with torch.no_grad():
        ref = theirs(**tensors(kwargs), return_dict=return_dict)
    assert isinstance(got, tuple) == (not return_dict)
    if return_dict:
        assert list(got.keys()) == list(ref.keys())
        got, ref = got.to_tuple(), ref.to_tuple()
    assert_same_outputs(got, ref, class_name)


# -- head_mask in transformers' 5-D form -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 4, 6, 6), (2, 1, 4, 1, 1), (2, 3, 4, 1, 6), (2, 1, 4, 6, 1)])
def test_a_five_dimensional_head_mask_as_transformers(models, shape):
    """transformers takes head_mask as [H], [L, H] or [L, B, H, T, K] (per layer, a multiplier of each sequence's,
    head's, query's and key's attention probability; axes of size 1 broadcast). The 5-D form was refused ('head_mask
    must have shape (n_head=4,) or (n_layer=2, n_head=4)'); it now gives transformers' outputs, on a prompt and on a
    decoding step after a cache (K = cached + new)."""
    ours, theirs = models["GPT2LMHeadModel"]
    rng = np.random.default_rng(sum(shape))
    head_mask = rng.random(shape).astype(np.float32)
    step_mask = rng.random(shape[:3] + (1, 1 if shape[4] == 1 else 7)).astype(np.float32)
    prompt = dict(input_ids=IDS, attention_mask=MASK, head_mask=head_mask, output_attentions=True)
    got = ours(**prompt)
    with torch.no_grad():
        ref = theirs(**tensors(prompt))
    assert_same_outputs(got.to_tuple(), ref.to_tuple(), f"prompt, head_mask {shape}")
    step = dict(input_ids=NEW, attention_mask=np.concatenate([MASK, np.ones_like(NEW)], 1), head_mask=step_mask,
                output_attentions=True)
    got = ours(**step, past_key_values=got.past_key_values)
    with torch.no_grad():
        ref = theirs(**tensors(step), past_key_values=ref.past_key_values)
    assert_same_outputs(got.to_tuple(), ref.to_tuple(), f"decoding step, head_mask {step_mask.shape}")


@pytest.mark.parametrize("shape, allowed", [
    ((2, 3, 4, 6, 5), r"\(n_layer=2, batch=3 or 1, n_head=4, query=6 or 1, key=6 or 1\), got \(2, 3, 4, 6, 5\)"),
    ((1, 1, 4, 1, 1), r"got \(1, 1, 4, 1, 1\)"),
    ((2, 3, 3, 1, 1), r"got \(2, 3, 3, 1, 1\)"),
])
def test_a_head_mask_that_does_not_fit_names_the_shapes_allowed(models, shape, allowed):
    """transformers fails inside its attention (RuntimeError: The size of tensor a ... must match ...); minigpt2 names
    every shape it takes."""
    ours, _ = models["GPT2LMHeadModel"]
    with pytest.raises(ValueError, match=r"head_mask must have shape \(n_head=4,\) or \(n_layer=2, n_head=4\), or "
                                         + (allowed if "n_layer" in allowed else ".*" + allowed)):
        ours(IDS, head_mask=np.ones(shape, np.float32))


def test_with_cross_attention_a_five_dimensional_head_mask_has_no_key_axis(tmp_path_factory):
    """One head mask scales self- and cross-attention, whose keys differ (P + T and the encoder's S): a per-key mask
    fits only one of them. It was NumPy's 'operands could not be broadcast together with shapes (3,4,6,5) (3,4,6,6)'
    from inside cross-attention (transformers' is the same kind of error); it is refused naming key=1, and a mask
    without a key axis gives transformers' outputs."""
    ours, theirs = pair(tmp_path_factory, "GPT2LMHeadModel", add_cross_attention=True)
    encoder = np.random.default_rng(1).standard_normal((3, 5, 32)).astype(np.float32)
    with pytest.raises(ValueError, match=r"n_head=4, query=6 or 1, key=1\), got \(2, 3, 4, 6, 6\)"):
        ours(IDS, encoder_hidden_states=encoder, head_mask=np.ones((2, 3, 4, 6, 6), np.float32))
    kwargs = dict(input_ids=IDS, encoder_hidden_states=encoder, output_attentions=True,
                  head_mask=np.random.default_rng(2).random((2, 3, 4, 6, 1)).astype(np.float32))
    got = ours(**kwargs)
    with torch.no_grad():
        ref = theirs(**tensors(kwargs))
    for name in ("logits", "attentions", "cross_attentions"):
        assert_close(np.stack(leaves(got[name])), np.stack(leaves(ref[name])), name)


# -- legacy caches of torch tensors in bfloat16; layouts that do not fit ----------------------------------------------

def test_a_legacy_cache_of_bfloat16_tensors_is_read_as_float32(models):
    """A cache of torch bfloat16 tensors (a bfloat16 model's) was refused as 'key must be a numpy array, got Tensor',
    while float16 ones were read (NumPy has no bfloat16); it is widened to float32 as every other bfloat16 input is,
    giving transformers' logits for the same cache in float32."""
    ours, theirs = models["GPT2LMHeadModel"]
    with torch.no_grad():
        cache = theirs(torch.tensor(IDS), attention_mask=torch.tensor(MASK), use_cache=True).past_key_values
    bf16 = tuple(tuple(a.to(torch.bfloat16) for a in layer) for layer in cache.to_legacy_cache())
    step = dict(input_ids=NEW, attention_mask=np.concatenate([MASK, np.ones_like(NEW)], 1))
    with torch.no_grad():
        ref = theirs(**tensors(step), past_key_values=transformers.DynamicCache.from_legacy_cache(
            tuple(tuple(a.float() for a in layer) for layer in bf16))).logits.numpy()
    assert_close(ours(**step, past_key_values=bf16).logits, ref, "logits after a bfloat16 cache")


@pytest.mark.parametrize("layer, got", [((), "0 item"), ("kv", "str"), ((1, 2, 3), "3 item")])
def test_a_cache_layer_that_is_not_a_pair_says_what_it_got(models, layer, got):
    """'past_key_values[0] must be a (key, value) pair' said neither what a pair holds nor what was passed."""
    ours, _ = models["GPT2LMHeadModel"]
    with pytest.raises(ValueError, match=rf"past_key_values\[0\] must be a \(key, value\) pair of arrays \[batch, "
                                         rf"n_head, past_length, head_dim\].*got {got}"):
        ours(IDS, past_key_values=(layer, layer))


@pytest.mark.parametrize("class_name", ["GPT2LMHeadModel", "GPT2DoubleHeadsModel"])
@pytest.mark.parametrize("tie", [True, False])
def test_tie_weights_after_setting_the_flag_as_transformers(tmp_path_factory, class_name, tie):
    """config.tie_word_embeddings changed, then tie_weights(): the head follows the flag, as transformers' does, and
    save_pretrained writes the model that runs (it wrote an untied head's model as tied: logits changed by ~8)."""
    ours, theirs = pair(tmp_path_factory, class_name, tie_word_embeddings=not tie)
    for model in (ours, theirs):
        model.config.tie_word_embeddings = tie
        model.tie_weights()
    with torch.no_grad():
        expected = theirs(torch.tensor(IDS)).logits.numpy()
    assert_close(ours(IDS).logits, expected, "logits")
    directory = tmp_path_factory.mktemp("retied")
    ours.save_pretrained(directory)
    again = getattr(minigpt2, class_name).from_pretrained(directory)
    np.testing.assert_array_equal(again(IDS).logits, ours(IDS).logits)
    if not tie:  # the head has its own copy now, to change apart from wte
        assert not np.shares_memory(ours.lm_head.weight, ours.transformer.wte.weight)
