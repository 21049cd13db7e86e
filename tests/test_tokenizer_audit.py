"""Audit of minigpt2's tokenizers against transformers, as a transformers user calls them: each class against its
namesake (GPT2Tokenizer against the pure-Python GPT2Tokenizer, GPT2TokenizerFast against the Rust-backed one),
built offline from the bundled vocabulary. Every expected value is computed by transformers in the test."""
import gzip
import pathlib

import pytest

from minigpt2 import bpe as B
from minigpt2.tokenizer import AddedToken, GPT2Tokenizer, GPT2TokenizerFast

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_vocab_audit")
    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (d / theirs).write_bytes(gzip.decompress(pathlib.Path(B.DATA_DIR, ours + ".gz").read_bytes()))
    return d


def pair_of(files, fast, **kwargs):
    """(minigpt2's, transformers') tokenizer of the same kind, from the same files with the same options."""
    ours_cls, theirs_cls = ((GPT2TokenizerFast, transformers.GPT2TokenizerFast) if fast
                            else (GPT2Tokenizer, transformers.GPT2Tokenizer))
    vocab, merges = str(files / "vocab.json"), str(files / "merges.txt")
    kwargs.setdefault("model_max_length", 1024)
    return ours_cls(vocab, merges, **kwargs), theirs_cls(vocab, merges, **kwargs)


def plain(value):
    """A BatchEncoding / arrays / tuples as plain lists, for comparing outputs."""
    if isinstance(value, dict) or hasattr(value, "keys"):
        return {k: plain(value[k]) for k in value.keys()}
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


BOTH = pytest.mark.parametrize("fast", [False, True], ids=["slow", "fast"])


@BOTH
def test_chat_template_is_none_as_in_transformers(files, fast):
    ours, theirs = pair_of(files, fast)
    assert ours.chat_template is theirs.chat_template is None  # `if tokenizer.chat_template is None:` works
    for tokenizer in (ours, theirs):
        with pytest.raises(ValueError, match="chat_template is not set"):
            tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])


@BOTH
def test_a_batch_item_given_as_a_two_item_list_is_a_pair(files, fast):
    """transformers reads [text, pair] in a batch as a pair, as it reads (text, pair)."""
    ours, theirs = pair_of(files, fast, pad_token="<|endoftext|>")
    batch = [["Hello world", "and its pair"], ("a tuple", "pair"), "alone"]
    for options in ({}, {"padding": True, "return_token_type_ids": True}):
        assert plain(ours(batch, **options)) == plain(theirs(batch, **options))
        assert plain(ours.batch_encode_plus(batch, **options)) == plain(theirs.batch_encode_plus(batch, **options))


@BOTH
def test_a_padding_side_that_is_not_left_or_right_is_an_error_when_padding(files, fast):
    ours, theirs = pair_of(files, fast, pad_token="<|endoftext|>")
    texts = ["a", "bb"]  # equal lengths: nothing to pad, the side must be checked all the same
    if fast:
        with pytest.raises(ValueError, match="middle"):
            theirs(texts, padding=True, padding_side="middle")
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right', got 'middle'"):
        ours(texts, padding=True, padding_side="middle")
    assert plain(ours(texts, padding_side="middle")) == plain(theirs(texts, padding_side="middle"))  # not padding


def test_fast_only_second_truncation_without_a_pair_is_an_error(files):
    ours, theirs = pair_of(files, True)
    text = "a text of more than four tokens, to be truncated"
    with pytest.raises(Exception, match="Second sequence not provided"):
        theirs(text, truncation="only_second", max_length=4)
    with pytest.raises(ValueError, match="only_second.*text_pair"):
        ours(text, truncation="only_second", max_length=4)
    assert plain(ours("short", truncation="only_second", max_length=4)) == plain(
        theirs("short", truncation="only_second", max_length=4))  # nothing to truncate: no error


@BOTH
def test_convert_ids_to_tokens_of_a_nested_list_names_the_problem(files, fast):
    ours, _ = pair_of(files, fast)
    with pytest.raises(TypeError, match="item 0 is a sequence"):
        ours.convert_ids_to_tokens([[15496, 995]])


PREFIX_TEXTS = ["", " ", "Hello", " Hello world", "\n<new>\n", "a<new>b", "<new> x", " a <new>  b", "<|endoftext|>x",
                "<new>", "x <|endoftext|>  y", "😀<new>😀"]
PREFIX_WORDS = [["Hello", " world", "x"], ["a", "<new>", "", "  b"], ["\n", "😀", "<|endoftext|>"]]


def test_fast_add_prefix_space_puts_a_space_before_each_plain_part(files):
    """HF's Rust pre-tokenizer adds the space to each part between added tokens, and only where the part does not
    start with one (ids, tokens and offsets); is_split_into_words needs add_prefix_space=True."""
    ours, theirs = pair_of(files, True, add_prefix_space=True)
    for tokenizer in (ours, theirs):
        tokenizer.add_tokens(["<new>"])
    for text in PREFIX_TEXTS:
        expected = theirs(text, return_offsets_mapping=True)
        got = ours(text, return_offsets_mapping=True)
        assert plain(got) == plain(expected), text
        assert got.tokens() == expected.tokens() and ours.tokenize(text) == theirs.tokenize(text), text
    for words in PREFIX_WORDS:
        expected = theirs(words, is_split_into_words=True, return_offsets_mapping=True)
        got = ours(words, is_split_into_words=True, return_offsets_mapping=True)
        assert plain(got) == plain(expected) and got.word_ids() == expected.word_ids(), words
    without_ours, without_theirs = pair_of(files, True)
    with pytest.raises(AssertionError, match="add_prefix_space=True"):
        without_theirs(PREFIX_WORDS[0], is_split_into_words=True)
    with pytest.raises(ValueError, match="add_prefix_space=True"):
        without_ours(PREFIX_WORDS[0], is_split_into_words=True)
