"""Tokenizer audit, round 15: the gaps a transformers 4.57 user who changed only the import line found. Each test
failed before its fix. Each class is compared with its transformers namesake, built offline from the bundled
vocabulary under HF's file names (the `files` fixture of test_tokenizer_audit.py)."""
import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
if int(transformers.__version__.split(".")[0]) >= 5:
    pytest.skip("compares with transformers 4.x's slow and fast GPT-2 tokenizers", allow_module_level=True)

from test_tokenizer_audit import BOTH, files, pair_of, plain  # noqa: E402,F401 (files: a fixture; the same helpers)


def test_fast_decode_ignores_spaces_between_special_tokens(files):
    """HF's fast decode takes spaces_between_special_tokens and ignores it (only the slow join uses it)."""
    ours, theirs = pair_of(files, True)
    for tokenizer in (ours, theirs):
        tokenizer.add_tokens(["<new>"])
        tokenizer.add_special_tokens({"additional_special_tokens": ["<sp>"]})
    ids = theirs.encode("a<new>b <sp> c<|endoftext|>")
    for options in ({}, {"skip_special_tokens": True}, {"clean_up_tokenization_spaces": True}):
        for spaces in (True, False):
            assert ours.decode(ids, spaces_between_special_tokens=spaces, **options) == \
                theirs.decode(ids, spaces_between_special_tokens=spaces, **options)
        assert ours.batch_decode([ids], spaces_between_special_tokens=True, **options) == \
            theirs.batch_decode([ids], spaces_between_special_tokens=True, **options)


def test_slow_encode_takes_tokens_and_ids_as_transformers_does(files):
    """HF's slow encode / encode_plus take a text already tokenized: tokenize's tokens (an unknown one becomes the
    unk id) or ids; minigpt2 said "text must be a str, got list"."""
    for bos in (False, True):
        ours, theirs = pair_of(files, False, add_bos_token=bos, pad_token="<|endoftext|>")
        tokens = theirs.tokenize("Hello world, a test of <|endoftext|> things")
        ids = theirs.convert_tokens_to_ids(tokens)
        calls = [lambda t: t.encode(ids), lambda t: t.encode(tokens + ["not-a-token"]), lambda t: t.encode("x", ids[:3]),
                 lambda t: t.encode_plus(ids, "a pair", truncation="only_first", max_length=5,
                                         return_overflowing_tokens=True, stride=1),
                 lambda t: t.encode_plus(ids, tokens, padding="max_length", max_length=40,
                                         return_special_tokens_mask=True, return_length=True),
                 lambda t: t.encode_plus(ids, return_tensors="np")]
        for call in calls:
            assert plain(call(ours)) == plain(call(theirs))
        for bad in ([], [1.5], ["a", 1]):  # transformers: ValueError, ValueError, "a" then unk for 1
            with pytest.raises(TypeError, match="a list of tokens .str. or a list of ids .int."):
                ours.encode(bad)


@pytest.mark.parametrize("strategy, texts, advice", [
    ("only_first", ("a", "b c d e f g"), "for instance 'longest_first' or 'only_second'"),
    ("only_second", ("a b c d e f", "b"), "for instance 'longest_first' or 'only_first'")])
def test_slow_truncation_of_a_too_short_sequence_logs_transformers_advice(files, caplog, strategy, texts, advice):
    """The slow class cannot take enough ids from the sequence it may truncate: transformers logs an error saying
    which strategies to use instead; minigpt2 logged only the numbers. Both return the ids untruncated."""
    ours, theirs = pair_of(files, False)
    with caplog.at_level("ERROR"):
        theirs_out = theirs(*texts, truncation=strategy, max_length=3)
        theirs_log, _ = caplog.text, caplog.clear()
        ours_out = ours(*texts, truncation=strategy, max_length=3)
    assert plain(ours_out) == plain(theirs_out)
    assert advice in theirs_log and advice in caplog.text
