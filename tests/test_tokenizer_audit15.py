"""Tokenizer audit, round 15: the gaps a transformers 4.57 user who changed only the import line found. Each test
failed before its fix. Each class is compared with its transformers namesake, built offline from the bundled
vocabulary under HF's file names (the `files` fixture of test_tokenizer_audit.py)."""
import json

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
if int(transformers.__version__.split(".")[0]) >= 5:
    pytest.skip("compares with transformers 4.x's slow and fast GPT-2 tokenizers", allow_module_level=True)

from minigpt2.tokenizer import GPT2TokenizerFast  # noqa: E402
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
        calls = [lambda t: t.encode(ids), lambda t: t.encode(tokens + ["not-a-token"]),
                 lambda t: t.encode("x", ids[:3]),
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


def tokens_of(tokenizer):
    """added_tokens_decoder as (id, content and every flag), comparable across the two libraries."""
    return {i: (t.content, t.lstrip, t.rstrip, t.single_word, t.normalized, t.special)
            for i, t in tokenizer.added_tokens_decoder.items()}


@BOTH
def test_special_tokens_are_listed_in_transformers_order(files, fast):
    """sep_token comes before pad_token in special_tokens_map and all_special_tokens (HF's attribute order);
    minigpt2 listed pad first."""
    ours, theirs = pair_of(files, fast)
    named = {"mask_token": "<m>", "pad_token": "<p>", "sep_token": "<s>", "cls_token": "<c>"}
    assert ours.add_special_tokens(named) == theirs.add_special_tokens(named)
    for view in (lambda t: t.all_special_tokens, lambda t: t.all_special_ids, lambda t: list(t.special_tokens_map)):
        assert view(ours) == view(theirs)


@BOTH
def test_additional_special_tokens_given_as_str_and_an_empty_list(files, fast):
    """A str in additional_special_tokens becomes a normalized=False special token, as in transformers (minigpt2:
    normalized=True); an empty list replaces nothing (minigpt2 emptied the list)."""
    ours, theirs = pair_of(files, fast)
    for tokenizer in (ours, theirs):
        tokenizer.add_special_tokens({"additional_special_tokens": ["<a>", "Hello"]})
        tokenizer.add_special_tokens({"additional_special_tokens": []})
    assert tokens_of(ours) == tokens_of(theirs)
    assert ours.additional_special_tokens == theirs.additional_special_tokens == ["<a>", "Hello"]


@pytest.mark.parametrize("first", [{"pad_token": "<|endoftext|>"}, {"bos_token": "<|endoftext|>"},
                                   {"additional_special_tokens": ["<|endoftext|>", "<a>"]}])
def test_fast_counts_added_tokens_as_the_rust_library(files, first):
    """HF's fast add_tokens / add_special_tokens count every token unless the very same one (content and flags)
    is already there: add_special_tokens({"pad_token": tokenizer.eos_token}) is 1 (minigpt2: 0), the same call
    again 0, and a str already added is re-registered with the flags of the call."""
    ours, theirs = pair_of(files, True)
    calls = [lambda t: t.add_special_tokens(first), lambda t: t.add_special_tokens(first),
             lambda t: t.add_tokens(["<a>", "x<y", "<|endoftext|>"]), lambda t: t.add_tokens(["<a>"]),
             lambda t: t.add_tokens(["<a>"], special_tokens=True)]
    assert [call(ours) for call in calls] == [call(theirs) for call in calls]
    assert tokens_of(ours) == tokens_of(theirs)
    text = "a<a>b<|endoftext|>x<y"
    assert ours.encode(text) == theirs.encode(text)
    assert ours.decode(theirs.encode(text), skip_special_tokens=True) == theirs.decode(theirs.encode(text),
                                                                                      skip_special_tokens=True)


@pytest.mark.parametrize("config_side", [None, "right"])
def test_fast_from_pretrained_reads_the_sides_in_tokenizer_json(files, tmp_path, config_side):
    """A tokenizer.json saved after a padded, truncated call records padding and truncation; HF's fast tokenizer
    takes padding_side, truncation_side and pad_token from there unless tokenizer_config.json says otherwise.
    minigpt2 ignored them: padding on the right a batch that transformers pads on the left."""
    _, theirs = pair_of(files, True)
    theirs.pad_token, theirs.padding_side, theirs.truncation_side = "<|endoftext|>", "left", "left"
    theirs(["a b c d", "e"], padding=True, truncation=True, max_length=3)  # (the Rust state now holds both)
    theirs.save_pretrained(tmp_path)
    if config_side is not None:
        config = json.loads((tmp_path / "tokenizer_config.json").read_text())
        config.update(padding_side=config_side, truncation_side=config_side)
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ours = GPT2TokenizerFast.from_pretrained(tmp_path)
    theirs = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    assert (ours.padding_side, ours.truncation_side, ours.pad_token) == \
        (theirs.padding_side, theirs.truncation_side, theirs.pad_token)
    batch = ["a b c d e f", "g"]
    assert plain(ours(batch, padding=True, truncation=True, max_length=4)) == \
        plain(theirs(batch, padding=True, truncation=True, max_length=4))


def test_slow_overflowing_tokens_of_different_lengths_as_tensors_is_a_clear_error(files):
    """transformers' slow class cannot make tensors of overflowing tokens of different lengths either ("pt":
    "see if a fast version of this tokenizer is available"); minigpt2 said to pass padding=True, which was
    already passed and does not pad them."""
    ours, theirs = pair_of(files, False, pad_token="<|endoftext|>")
    options = dict(truncation=True, max_length=3, stride=1, padding=True, return_overflowing_tokens=True)
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="overflowing tokens of different lengths.*fast version"):
        theirs(["a b c d e f g", "h"], return_tensors="pt", **options)
    for tensors in ("pt", "np"):
        with pytest.raises(ValueError, match="overflowing_tokens.*return_tensors=None, or GPT2TokenizerFast"):
            ours(["a b c d e f g", "h"], return_tensors=tensors, **options)


def test_n_sequences_of_each_class_as_transformers(files):
    """BatchEncoding.n_sequences: None from HF's slow class (it has no Rust encodings), 1 or 2 from the fast one;
    minigpt2's slow class said 1 for a batch."""
    for fast in (False, True):
        ours, theirs = pair_of(files, fast)
        for args in (("hi",), (["hi", "a b"],), ("hi", "yo")):
            assert ours(*args).n_sequences == theirs(*args).n_sequences, (fast, args)


def test_fast_tokenize_warns_once_of_a_text_too_long_for_the_model(files, caplog):
    """HF's fast tokenize() encodes the text, so it logs "Token indices sequence length is longer than the specified
    maximum sequence length" once, as a call does; its slow tokenize() does not. minigpt2's fast one did not."""
    import logging

    for fast in (False, True):
        ours, theirs = pair_of(files, fast, model_max_length=8)
        for tokenizer in (theirs, ours):
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                assert len(tokenizer.tokenize("a " * 20)) == 21 and len(tokenizer.tokenize("b " * 20)) == 21
            said = [r.getMessage() for r in caplog.records if "Token indices sequence length" in r.getMessage()]
            assert said == (["Token indices sequence length is longer than the specified maximum sequence length "
                             "for this model (21 > 8). Running this sequence through the model will result in "
                             "indexing errors"] if fast else []), (fast, tokenizer, said)
