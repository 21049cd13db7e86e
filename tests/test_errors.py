"""Bad input to forward: a ValueError or TypeError that says what was wrong and what is allowed.

Each case names the argument, the offending value or shape, and the allowed range or shape; none may
surface as an IndexError or a reshape error from deep inside NumPy.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigpt2

CONFIG = dict(vocab_size=20, n_positions=8, n_embd=8, n_head=2, n_layer=2)


@pytest.fixture(scope="module")
def lm():
    return minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**CONFIG), seed=0)


@pytest.fixture(scope="module")
def ids():
    return np.array([[1, 2, 3], [4, 5, 6]])


@pytest.fixture(scope="module")
def past(lm, ids):
    return lm(ids).past_key_values


def check(call, error, *fragments):
    """call() raises ``error`` whose message contains every fragment."""
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# -- token ids -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, shown", [(20, "20"), (-1, "-1"), (10**9, "1000000000")])
def test_ids_outside_the_vocabulary(lm, bad, shown):
    check(lambda: lm(np.array([[1, bad, 2]])), ValueError, "input_ids", shown, "[0, 20)")


@pytest.mark.parametrize("value, dtype", [
    (np.array([[1.0, 2.0]]), "float64"),
    (np.array([[True, False]]), "bool"),
    (np.array([["a", "b"]]), "<U1"),
])
def test_ids_of_the_wrong_dtype(lm, value, dtype):
    check(lambda: lm(value), TypeError, "input_ids", "integers", dtype)


@pytest.mark.parametrize("value, fragments", [
    ("hello", ("input_ids", "array of numbers", "str")),
    ([[1, 2], [3]], ("input_ids", "array of numbers")),
    ({"input_ids": [1]}, ("input_ids",)),
])
def test_ids_that_are_not_arrays(lm, value, fragments):
    check(lambda: lm(value), TypeError, *fragments)


def test_ids_without_tokens(lm):
    check(lambda: lm(np.array(3)), ValueError, "input_ids", "at least 1 dimension", "()")
    check(lambda: lm(np.zeros((1, 0), np.int64)), ValueError, "input_ids", "no tokens", "(1, 0)")
    check(lambda: lm(inputs_embeds=np.zeros((1, 0, 8), np.float32)), ValueError, "inputs_embeds", "no tokens")


def test_lists_are_fine(lm):
    assert lm([[1, 2, 3]]).logits.shape == (1, 3, 20)


# -- length --------------------------------------------------------------------------------------------

def test_longer_than_n_positions(lm):
    check(lambda: lm(np.zeros((1, 9), np.int64)), ValueError, "9 tokens", "n_positions=8")


def test_longer_than_n_positions_counting_the_cache(lm, ids, past):
    check(lambda: lm(np.zeros((2, 6), np.int64), past_key_values=past), ValueError,
          "9 tokens", "3 cached + 6 new", "n_positions=8")
    assert lm(np.zeros((2, 5), np.int64), past_key_values=past).logits.shape == (2, 5, 20)  # exactly 8 is fine


@pytest.mark.parametrize("bad", [
    dict(input_ids=np.zeros((2, 5), np.int64)),  # 4 cached + 5 new > n_positions=8
    dict(input_ids=np.zeros((2, 1), np.int64), attention_mask=np.ones((2, 3))),  # the mask leaves out the cache
    dict(input_ids=np.zeros((2, 1), np.int64), head_mask=np.ones(3)),  # 3 heads' mask for 2 heads
    dict(input_ids=np.zeros((2, 1), np.int64), position_ids=np.array([[8], [8]])),  # past n_positions
], ids=["too long", "attention_mask", "head_mask", "position_ids"])
def test_a_rejected_call_leaves_the_cache_to_be_continued_in_place(lm, ids, bad):
    """A call rejected for its input takes nothing from the cache it was given: the next good call continues
    that cache in place (space left claimed would make every later step copy the cache)."""
    past = lm(ids).past_key_values
    past = lm(np.zeros((2, 1), np.int64), past_key_values=past).past_key_values  # continued: room for 8 made
    buffers = past._buffers
    with pytest.raises((ValueError, TypeError)):
        lm(past_key_values=past, **bad)
    after = lm(np.zeros((2, 1), np.int64), past_key_values=past).past_key_values
    assert after._buffers is buffers, "the rejected call left the cache's space claimed: it was copied"


# -- masks and ids of the wrong shape ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 4), (2, 2), (3, 2), (1, 3), (6,), (2, 3, 1)])
def test_attention_mask_of_the_wrong_shape(lm, ids, shape):
    check(lambda: lm(ids, attention_mask=np.ones(shape)), ValueError,
          "attention_mask", str(shape), "batch=2", "cached + new tokens=3")


def test_attention_mask_must_cover_the_cache(lm, ids, past):
    check(lambda: lm(ids, past_key_values=past, attention_mask=np.ones((2, 3))), ValueError,
          "attention_mask", "(2, 3)", "cached + new tokens=6")


@pytest.mark.parametrize("values, shown", [([[1, 1, 2], [1, 1, 1]], "2"), ([[1, -1, 1], [1, 1, 1]], "-1")])
def test_attention_mask_values_outside_0_1(lm, ids, values, shown):
    check(lambda: lm(ids, attention_mask=np.array(values)), ValueError, "attention_mask", shown, "0", "1")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_attention_mask_not_finite(lm, ids, value):
    check(lambda: lm(ids, attention_mask=np.full((2, 3), value)), ValueError, "attention_mask", "NaN or infinity")


def test_attention_mask_of_the_wrong_dtype(lm, ids):
    check(lambda: lm(ids, attention_mask=np.array([["a", "b", "c"]] * 2)), TypeError, "attention_mask", "numbers")


def test_masks_of_any_numeric_dtype_work(lm, ids):
    ref = lm(ids, attention_mask=np.array([[1, 1, 1], [1, 1, 0]])).logits
    for mask in (np.array([[True, True, True], [True, True, False]]), np.array([[1.0, 1, 1], [1, 1, 0]])):
        assert np.array_equal(lm(ids, attention_mask=mask).logits, ref)


@pytest.mark.parametrize("shape", [(4,), (2, 4), (3, 3), (2, 3, 1)])
def test_position_ids_of_the_wrong_shape(lm, ids, shape):
    check(lambda: lm(ids, position_ids=np.zeros(shape, np.int64)), ValueError, "position_ids", str(shape), "(2, 3)")


def test_position_ids_out_of_range_or_not_integers(lm, ids):
    check(lambda: lm(ids, position_ids=np.array([0, 1, 8])), ValueError, "position_ids", "8", "[0, 8)")
    check(lambda: lm(ids, position_ids=np.array([0, -1, 2])), ValueError, "position_ids", "-1", "[0, 8)")
    check(lambda: lm(ids, position_ids=np.arange(3.0)), TypeError, "position_ids", "integers", "float64")


def test_token_type_ids(lm, ids):
    check(lambda: lm(ids, token_type_ids=np.full((2, 3), 20)), ValueError, "token_type_ids", "20", "[0, 20)")
    check(lambda: lm(ids, token_type_ids=np.zeros((2, 4), np.int64)), ValueError, "token_type_ids", "(2, 4)")


def test_head_mask(lm, ids):
    check(lambda: lm(ids, head_mask=np.ones(3)), ValueError,
          "head_mask", "(3,)", "(n_head=2,)", "(n_layer=2, n_head=2)")
    check(lambda: lm(ids, head_mask=np.full(2, np.nan)), ValueError, "head_mask", "NaN")


# -- inputs_embeds -------------------------------------------------------------------------------------

def test_both_or_neither_of_input_ids_and_inputs_embeds(lm, ids):
    for call in (lambda: lm(ids, inputs_embeds=np.zeros((2, 3, 8), np.float32)), lambda: lm()):
        check(call, ValueError, "exactly one of input_ids and inputs_embeds")


@pytest.mark.parametrize("shape", [(2, 3, 7), (8,), (2, 3, 9)])
def test_inputs_embeds_of_the_wrong_shape(lm, shape):
    check(lambda: lm(inputs_embeds=np.zeros(shape, np.float32)), ValueError,
          "inputs_embeds", str(shape), "n_embd=8")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e39])
def test_inputs_embeds_not_finite(lm, value):
    embeds = np.zeros((1, 3, 8))
    embeds[0, 1, 2] = value
    check(lambda: lm(inputs_embeds=embeds), ValueError, "inputs_embeds", "NaN or infinity")


@pytest.mark.parametrize("dtype", [np.complex64, object, np.str_])
def test_inputs_embeds_of_the_wrong_dtype(lm, dtype):
    check(lambda: lm(inputs_embeds=np.zeros((1, 3, 8), dtype)), TypeError, "inputs_embeds", "numbers")


# -- past_key_values -----------------------------------------------------------------------------------

def test_past_with_the_wrong_number_of_layers(lm, ids, past):
    check(lambda: lm(ids, past_key_values=past[:1]), ValueError, "past_key_values", "per layer (2)", "1 entries")
    check(lambda: lm(ids, past_key_values={"a": 1}), ValueError, "past_key_values", "dict")


def test_past_of_the_wrong_shape(lm, ids, past):
    check(lambda: lm(ids[:1], past_key_values=past), ValueError,
          "past_key_values[0] key", "(2, 2, 3, 4)", "batch=1", "n_head=2", "head_dim=4")
    halved = tuple((k[..., :2], v[..., :2]) for k, v in past)
    check(lambda: lm(ids, past_key_values=halved), ValueError, "past_key_values[0] key", "head_dim=4")
    ragged = tuple((k, v[:, :, :2]) for k, v in past)
    check(lambda: lm(ids, past_key_values=ragged), ValueError, "past_key_values[0] value", "2 positions", "3")


def test_past_entries_that_are_not_pairs_of_float_arrays(lm, ids, past):
    check(lambda: lm(ids, past_key_values=tuple((k,) for k, _ in past)), ValueError, "past_key_values[0]", "pair")
    check(lambda: lm(ids, past_key_values=tuple((k.tolist(), v) for k, v in past)), TypeError,
          "past_key_values[0] key", "numpy array", "list")
    check(lambda: lm(ids, past_key_values=tuple((k.astype(np.int64), v) for k, v in past)), TypeError,
          "past_key_values[0] key", "float", "int64")


def test_a_failed_call_leaves_the_cache_usable(lm, ids):
    """An error after the cache was prepared (a bad mask) must not spoil the cache for the next call."""
    past = lm(ids).past_key_values
    snapshot = [(k.copy(), v.copy()) for k, v in past]
    nxt = np.array([[7], [8]])
    with pytest.raises(ValueError, match="attention_mask"):
        lm(nxt, past_key_values=past, attention_mask=np.ones((2, 9)))
    with pytest.raises(ValueError, match="n_positions"):
        lm(np.zeros((2, 6), np.int64), past_key_values=past)
    assert all(np.array_equal(k, k0) and np.array_equal(v, v0) for (k, v), (k0, v0) in zip(past, snapshot))
    expected = lm(np.concatenate([ids, nxt], axis=1)).logits[:, -1:]
    np.testing.assert_allclose(lm(nxt, past_key_values=past).logits, expected, rtol=0, atol=1e-5)


# -- labels and heads ----------------------------------------------------------------------------------

def test_lm_labels(lm, ids):
    check(lambda: lm(ids, labels=np.zeros((2, 4), np.int64)), ValueError, "labels", "(2, 3)", "(2, 4)")
    check(lambda: lm(ids, labels=np.full((2, 3), 20)), ValueError, "labels", "20", "[0, 20)", "-100")
    check(lambda: lm(ids, labels=np.zeros((2, 3))), TypeError, "labels", "integers", "float64")


def test_encoder_states_need_cross_attention(lm, ids):
    check(lambda: lm(ids, encoder_hidden_states=np.zeros((2, 3, 8), np.float32)), ValueError,
          "encoder_hidden_states", "add_cross_attention=True")


def test_encoder_states_and_mask_of_the_wrong_shape(ids):
    model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**CONFIG, add_cross_attention=True), seed=0)
    check(lambda: model(ids, encoder_hidden_states=np.zeros((2, 4, 7), np.float32)), ValueError,
          "encoder_hidden_states", "(2, 4, 7)", "n_embd=8")
    check(lambda: model(ids, encoder_hidden_states=np.zeros((3, 4, 8), np.float32)), ValueError,
          "encoder_hidden_states", "batch=2")
    check(lambda: model(ids, encoder_hidden_states=np.zeros((2, 4, 8), np.float32),
                        encoder_attention_mask=np.ones((2, 5))), ValueError, "encoder_attention_mask", "(2, 5)")
    check(lambda: model(ids, encoder_hidden_states=np.full((2, 4, 8), np.nan)), ValueError,
          "encoder_hidden_states", "NaN")


@pytest.fixture(scope="module")
def double_heads():
    return minigpt2.GPT2DoubleHeadsModel(minigpt2.GPT2Config(**CONFIG), seed=0)


def test_double_heads_mc_token_ids(double_heads):
    ids = np.zeros((1, 2, 3), np.int64)
    check(lambda: double_heads(ids, mc_token_ids=np.array([[0, 3]])), ValueError, "mc_token_ids", "3", "[0, 3)")
    check(lambda: double_heads(ids, mc_token_ids=np.array([[0, 1, 2]])), ValueError, "mc_token_ids", "(1, 3)", "(1, 2)")
    check(lambda: double_heads(ids, mc_token_ids=np.array([[0.0, 1.0]])), TypeError, "mc_token_ids", "integers")


def test_double_heads_mc_labels(double_heads):
    ids = np.zeros((1, 2, 3), np.int64)
    check(lambda: double_heads(ids, mc_labels=np.array([2])), ValueError, "mc_labels", "2", "[0, 2)")
    check(lambda: double_heads(ids, mc_labels=np.array([0, 1])), ValueError, "mc_labels", "(2,)", "(1,)")


@pytest.fixture(scope="module")
def classifier():
    return minigpt2.GPT2ForSequenceClassification(minigpt2.GPT2Config(**CONFIG, num_labels=3, pad_token_id=19),
                                                  seed=0)


def test_classification_labels(classifier, ids):
    check(lambda: classifier(ids, labels=np.array([0, 5])), ValueError, "labels", "5", "[0, 3)")
    check(lambda: classifier(ids, labels=np.array([0, 1, 2])), ValueError, "labels", "(3,)", "(2,)")
    multi = minigpt2.GPT2ForSequenceClassification(
        minigpt2.GPT2Config(**CONFIG, num_labels=3, pad_token_id=19, problem_type="multi_label_classification"),
        seed=0)
    check(lambda: multi(ids, labels=np.ones((2, 2))), ValueError, "labels", "(2, 2)", "(2, 3)")
    regression = minigpt2.GPT2ForSequenceClassification(minigpt2.GPT2Config(**CONFIG, num_labels=1, pad_token_id=19),
                                                        seed=0)
    check(lambda: regression(ids, labels=np.ones(3)), ValueError, "labels", "(3,)", "(2, 1)")


def test_classification_of_one_sequence_without_a_batch_axis(classifier, ids):
    # Like the other heads, a 1-D input is one sequence: its scores are the batch's first row, not a score per
    # position (an earlier version read (T, num_labels) as (batch, seq)).
    padded = np.array([3, 4, 5, 19, 19])
    batched = classifier(padded[None]).logits
    single = classifier(padded).logits
    assert single.shape == (3,)
    np.testing.assert_array_equal(single, batched[0])
    np.testing.assert_array_equal(classifier(padded, labels=1).loss, classifier(padded[None], labels=[1]).loss)
    check(lambda: classifier(np.zeros((2, 2, 3), np.int64)), ValueError, "(batch, seq) or (seq,)", "(2, 2, 3)")


def test_classification_of_a_batch_needs_a_pad_token(ids):
    model = minigpt2.GPT2ForSequenceClassification(minigpt2.GPT2Config(**CONFIG), seed=0)
    check(lambda: model(ids), ValueError, "pad_token_id")
    assert model(ids[:1]).logits.shape == (1, 2)  # one row: its last token


def test_unknown_arguments(lm, ids):
    check(lambda: lm(ids, not_an_argument=1), TypeError, "not_an_argument")
