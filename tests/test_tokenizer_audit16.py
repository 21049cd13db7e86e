"""Tokenizer audit, round 16: the token <-> id conversions and decode's input, at their edges (None, non-str tokens,
ids past the vocabulary or negative, str ids, NumPy arrays of the wrong rank), as a transformers 4.57 user porting
code meets them. Each class is compared with its transformers namesake, built offline from the bundled vocabulary
(the `files` fixture of test_tokenizer_audit.py); every expected value or exception type is transformers' own,
computed here. Each test failed before its fix."""
import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
if int(transformers.__version__.split(".")[0]) >= 5:
    pytest.skip("compares with transformers 4.x's slow and fast GPT-2 tokenizers", allow_module_level=True)

from test_tokenizer_audit import BOTH, files, pair_of  # noqa: E402,F401 (files: a fixture; the same helpers)


def outcome(call, tokenizer):
    """("ok", value) or ("error", the exception) of call(tokenizer)."""
    try:
        return "ok", call(tokenizer)
    except Exception as error:  # noqa: BLE001 (any exception: it is compared with transformers')
        return "error", error


def assert_same_outcome(ours, theirs, call, *message_parts):
    """The same value as transformers, or an exception of (a subclass of) transformers' exception type whose
    message names each of `message_parts`."""
    theirs_kind, theirs_value = outcome(call, theirs)
    ours_kind, ours_value = outcome(call, ours)
    if theirs_kind == "ok":
        assert (ours_kind, ours_value) == ("ok", theirs_value)
        return
    assert ours_kind == "error", f"transformers raised {theirs_value!r}, minigpt2 returned {ours_value!r}"
    assert isinstance(ours_value, type(theirs_value)), f"minigpt2 raised {ours_value!r}, transformers {theirs_value!r}"
    for part in message_parts:
        assert part in str(ours_value)


@BOTH
def test_convert_tokens_to_ids_of_none_and_of_non_str_tokens_follows_the_class(files, fast):
    """HF's slow class returns None for None and for a None in a list (an int gets the unk id); its fast class, whose
    vocabulary look-up takes only str, raises TypeError for both. minigpt2's fast class returned None, and both
    gave a None in a list the unk id."""
    ours, theirs = pair_of(files, fast)
    assert_same_outcome(ours, theirs, lambda t: t.convert_tokens_to_ids(None), "got None", "a token (str)")
    for tokens in ([None], ["a", None], [5], ["a", 5], b"a", [["a"]]):
        assert_same_outcome(ours, theirs, lambda t: t.convert_tokens_to_ids(tokens), "item", "str")
    for tokens in ([], "not-a-token", ["not-a-token", "a"], ("a", "b"), "<|endoftext|>", "", [""], {"a": 1},
                   np.array(["a", "Ġworld"])):
        assert_same_outcome(ours, theirs, lambda t: t.convert_tokens_to_ids(tokens))
    assert_same_outcome(ours, theirs, lambda t: t.convert_tokens_to_ids(token for token in ["a", "b"]))
    for bad in (5, 5.0):  # HF: "'int' object is not iterable"
        assert_same_outcome(ours, theirs, lambda t: t.convert_tokens_to_ids(bad), "a token (str)",
                            type(bad).__name__)


@BOTH
def test_convert_ids_to_tokens_of_an_id_without_a_token(files, fast):
    """HF gives None for an id past the vocabulary (a model's padded embedding can sample one); a negative id: None
    from the slow class, OverflowError from the fast one (its ids are u32). minigpt2 raised ValueError for all."""
    ours, theirs = pair_of(files, fast)
    for ids in (50257, [50257], [50256, 50257], [50257, 50256], 10**20, -1, [-1], [15496, -5], 2**32 - 1, 2**32):
        for skip in (False, True):
            assert_same_outcome(ours, theirs, lambda t: t.convert_ids_to_tokens(ids, skip_special_tokens=skip),
                                "token id", "from 0 to")


@BOTH
def test_setting_pad_token_id_to_an_id_without_a_token(files, fast):
    """HF: pad_token_id = an id past the vocabulary leaves pad_token None (the fast class: OverflowError for -1)."""
    ours, theirs = pair_of(files, fast)
    for index in (99999, -1):
        def set_pad_id(tokenizer):
            tokenizer.pad_token_id = index
            return tokenizer.pad_token, tokenizer.pad_token_id
        assert_same_outcome(ours, theirs, set_pad_id, "token id")


@BOTH
def test_convert_ids_to_tokens_of_str_ids_is_a_value_error(files, fast):
    """HF takes int(id) of each item: a str is a ValueError ("invalid literal for int()"); minigpt2 raised
    TypeError. A nested list with skip_special_tokens said "unhashable type: 'list'"."""
    ours, theirs = pair_of(files, fast)
    for ids in ("a", ["a"], [15496, "x"]):
        for skip in (False, True):
            assert_same_outcome(ours, theirs, lambda t: t.convert_ids_to_tokens(ids, skip_special_tokens=skip),
                                "ids")
    for ids in ([[15496, 995]], np.array([[15496, 995]]), [None]):
        for skip in (False, True):
            assert_same_outcome(ours, theirs, lambda t: t.convert_ids_to_tokens(ids, skip_special_tokens=skip),
                                "item 0")


@BOTH
def test_decode_of_a_bad_id_raises_transformers_exception_type(files, fast):
    """HF's slow decode of an id with no token fails with TypeError (inside its join), its fast decode of a negative
    id or one of 2**32 and more with OverflowError; a str id: ValueError (slow, int('a')) or TypeError (fast).
    minigpt2's ValueError (naming the id) is now also of transformers' type. The fast decode still leaves out ids
    past the vocabulary below 2**32, as HF's."""
    ours, theirs = pair_of(files, fast)
    for ids in ([15496, 50257], [-1], [15496, -5], [2**32 - 1], [2**32, 995], [10**20]):
        for skip in (False, True):
            assert_same_outcome(ours, theirs, lambda t: t.decode(ids, skip_special_tokens=skip), "token id")
            assert_same_outcome(ours, theirs, lambda t: t.batch_decode([ids], skip_special_tokens=skip), "token id")
    for ids in (["a"], [15496, "x"], "abc"):
        assert_same_outcome(ours, theirs, lambda t: t.decode(ids), "ids")


@BOTH
def test_batch_decode_of_a_one_dimensional_array_decodes_each_id(files, fast):
    """HF's batch_decode of a 1-D array (generate(...)[0] passed by mistake) decodes each id on its own, as it does
    for a list of ints; minigpt2 raised ValueError. Other ranks: TypeError in HF (iterating a 0-d array, or int()
    of a list); minigpt2 said ValueError."""
    ours, theirs = pair_of(files, fast)
    ids = [15496, 995, 50256]
    for batch in (np.array(ids), np.array(ids, dtype=np.int32), ids, np.zeros((0,), dtype=np.int64)):
        for skip in (False, True):
            assert_same_outcome(ours, theirs, lambda t: t.batch_decode(batch, skip_special_tokens=skip))
    for batch in (np.array(5), np.zeros((1, 1, 3), dtype=np.int64)):
        assert_same_outcome(ours, theirs, lambda t: t.batch_decode(batch), "batch_decode", "shape")
