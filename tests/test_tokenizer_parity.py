"""minigpt2's tokenizer against the references: HF transformers 4.x GPT2Tokenizer (pure Python, THE reference),
HF GPT2TokenizerFast (Rust `tokenizers`) and tiktoken, all built offline from the bundled vocabulary files.

Exact ids on hypothesis-generated text over all of Unicode, on a corpus of real text (English prose, Python source,
mixed scripts) and on long pieces; the bytes of every one of the 50,257 ids; padding / truncation / batches; files.
"""
import gzip
import inspect
import pathlib
import sysconfig
import unicodedata

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt2 import bpe as B
from minigpt2.tokenizer import AddedToken, GPT2Tokenizer

transformers = pytest.importorskip("transformers")
GPT2_PATTERN_TIKTOKEN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The bundled vocabulary decompressed under HF's names (merges.txt is byte-identical to vocab.bpe)."""
    d = tmp_path_factory.mktemp("hf_vocab")
    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (d / theirs).write_bytes(gzip.decompress(pathlib.Path(B.DATA_DIR, ours + ".gz").read_bytes()))
    return d


@pytest.fixture(scope="module")
def hf(files):
    return transformers.GPT2Tokenizer(str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=1024)


@pytest.fixture(scope="module")
def hf_fast(files):
    pytest.importorskip("tokenizers")
    return transformers.GPT2TokenizerFast(str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=1024)


@pytest.fixture(scope="module")
def tik(files):
    """tiktoken's "gpt2" encoding, built from the local files (get_encoding("gpt2") would download them)."""
    tiktoken = pytest.importorskip("tiktoken")
    import tiktoken.load

    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(files / "merges.txt"), str(files / "vocab.json"))
    return tiktoken.Encoding("gpt2-offline", pat_str=GPT2_PATTERN_TIKTOKEN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_pretrained("gpt2")


# Pieces that exercise every branch of the pre-split pattern and the byte-level encoding.
FRAGMENTS = [
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "'", "’s",
    "don't", "DON'T", "we'll", "I'M", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\x0b", "\x0c",
    "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000", "\u2028", "\u3000", "\u200b", "\ufeff", "\x00", "\x7f",
    "😀", "👩‍👩‍👧", "🇯🇵", "👍🏽", "中文", "日本語のテキスト", "한국어", "Ελληνικά", "русский", "עברית", "العربية",
    "हिन्दी", "e\u0301", "\u0301", "ﬁ", "½", "²", "٣", "Ⅻ", "𝟘", "1,000.5", "123456789", "<|endoftext|>",
    "<|endoftext", "endoftext|>", "Hello", " world", "__init__", "$x", "\ufffd", "\U0010ffff", "\U000e0001",
]
texts = st.lists(
    st.sampled_from(FRAGMENTS) | st.text(max_size=4) | st.characters(codec="utf-8"), max_size=25
).map("".join)
PARITY = settings(max_examples=400, deadline=None)


@PARITY
@given(texts)
def test_ids_match_hf_slow(tok, hf, text):
    assert tok.encode(text) == hf.encode(text)


def _letters_new_to_rust_tokenizers(text: str) -> bool:
    """True if text has a letter, digit or space that Unicode 3.2 did not assign. The Rust `tokenizers` library
    (HF's fast tokenizer) uses older Unicode tables than `regex` (HF's slow tokenizer, minigpt2) and tiktoken:
    to it, a letter added in Unicode 15 (e.g. U+11F02, Kawi) is punctuation. Checked: on every code point Unicode
    14 assigns, in letter/digit/space context, the fast tokenizer agrees with minigpt2."""
    return any(unicodedata.ucd_3_2_0.category(c) == "Cn" and NEW_CLASSES.match(c) for c in text)


NEW_CLASSES = regex.compile(r"[\p{L}\p{N}\s]")


def _letters_newer_than_this_python(text: str) -> bool:
    """True if text has a letter, digit or space that this Python's Unicode tables (unicodedata: 14.0 on Python
    3.11) do not assign. `regex` (minigpt2 and HF's slow tokenizer) follows Unicode release by release (regex
    2026.9.29 knows Unicode 17's letters, e.g. U+3D000) and can be ahead of tiktoken's Rust tables; such a letter
    then splits differently. (Found by this test in CI, which installs the newest regex.)"""
    return any(unicodedata.category(c) == "Cn" and NEW_CLASSES.match(c) for c in text)


@PARITY
@given(texts)
def test_ids_match_tiktoken_and_hf_fast(tok, tik, hf_fast, text):
    ids = tok.encode(text)
    if not _letters_newer_than_this_python(text):
        assert ids == tik.encode(text, allowed_special="all")
        assert tok.encode(text, split_special_tokens=True) == tik.encode_ordinary(text)
    if not _letters_new_to_rust_tokenizers(text):
        assert ids == hf_fast.encode(text)


def test_hf_fast_differs_only_on_newer_unicode(tok, hf, hf_fast, tik):
    text = "\U00011f02's"  # KAWI SIGN REPHA (Unicode 15, a letter): "'s" is a contraction after a letter run
    assert tok.encode(text) == hf.encode(text) == tik.encode(text)
    import tokenizers  # the fast tokenizer's Unicode tables: 0.20.3 (transformers 4.46) lacks Kawi, 0.22.2 has it
    knows_unicode_15 = tuple(int(x) for x in tokenizers.__version__.split(".")[:2]) >= (0, 22)
    assert (hf_fast.encode(text) == tok.encode(text)) == knows_unicode_15


def test_letters_newer_than_the_rust_tables_follow_hf_slow(tok, hf):
    # U+323B0 and U+3D000: letters in recent Unicode (and so to recent `regex`), unassigned to tiktoken's and the
    # fast tokenizer's tables. HF's slow tokenizer uses `regex`, as minigpt2 does: the two always agree.
    for text in ("\U000323b0's", "\U0003d000's", "a\U00031350 1"):
        assert tok.encode(text) == hf.encode(text)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from("aeinorstl") | st.characters(codec="utf-8"), min_size=1, max_size=300))
def test_tokenize_and_decode_match_hf_slow(tok, hf, text):
    assert tok.tokenize(text) == hf.tokenize(text)
    ids = hf.encode(text)
    assert tok.decode(ids) == hf.decode(ids)
    assert tok.decode(ids[:-1]) == hf.decode(ids[:-1])  # maybe ending mid-character: U+FFFD like HF
    assert tok.encode(text, add_prefix_space=True) == hf.encode(text, add_prefix_space=True)


def test_code_point_sweep_matches_references(tok, hf, tik):
    """Every 61st code point of all of Unicode (surrogates excepted), next to letters, digits and spaces: the
    character classes of `regex`, Python's ASCII fast path and the Rust regex engines agree."""
    chars = [chr(c) for c in range(0, 0x110000, 61) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(f"a{c}1{c}{c} {c} x{c}\n" for c in chars)
    ids = tok.encode(text)
    assert ids == tik.encode_ordinary(text)
    assert ids == hf.encode(text)
    assert tok.decode(ids) == text


# -- long pieces: bpe_merge_long against the references --------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcdeilnorstu"), min_size=40, max_size=400))
def test_long_words_match_hf_slow(tok, hf, word):
    assert tok.encode(word) == hf.encode(word)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcdeilnorstu"), min_size=1, max_size=8), st.integers(100, 3000))
def test_repeated_units_match_tiktoken(tok, tik, unit, repeat):
    text = unit * repeat
    assert tok.encode(text) == tik.encode_ordinary(text)


@pytest.mark.parametrize("unit", ["a", "ab", "é", "7", " ", "\n", "😀", "中文", "abcdefghijklmnopqrstuvwxyz", "!?"])
def test_100k_pieces_match_tiktoken(tok, tik, unit):
    text = unit * (100_000 // len(unit))
    assert tok.encode(text) == tik.encode_ordinary(text)


# -- real text ------------------------------------------------------------------------------------------------------
def _corpus():
    """~1.2 MB of local text: Python's documentation topics, standard-library source, mixed scripts."""
    from pydoc_data.topics import topics

    prose = "\n\n".join(topics[k] for k in sorted(topics))
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    source = "".join(p.read_text("utf-8", "replace") for p in sorted(stdlib.glob("[a-h]*.py"))[:40])[:400_000]
    mixed = "".join(f"{f} {prose[i * 97:i * 97 + 60]} " for i, f in enumerate(FRAGMENTS * 40))
    return {"prose": prose, "source": source, "mixed": mixed, "signatures": inspect.getsource(inspect)}


@pytest.mark.parametrize("name", ["prose", "source", "mixed", "signatures"])
def test_corpus_matches_all_references(tok, hf, hf_fast, tik, name):
    text = _corpus()[name]
    assert len(text) > 50_000
    ids = tok.encode(text)
    assert ids == tik.encode(text, allowed_special="all")
    assert ids == hf.encode(text)
    assert ids == hf_fast.encode(text)
    assert tok.decode(ids) == text


# -- decoding every id -------------------------------------------------------------------------------------------------
def test_every_id_decodes_to_the_reference_bytes(tok, hf, tik):
    for i in range(tok.vocab_size):
        expected = tik.decode_single_token_bytes(i)
        assert tok.token_bytes(i) == expected, i
    texts = tok.batch_decode(np.arange(tok.vocab_size).reshape(-1, 1))
    assert texts == [hf.convert_tokens_to_string([hf.convert_ids_to_tokens(i)]) for i in range(tok.vocab_size)]
    assert [tok.convert_ids_to_tokens(i) for i in range(tok.vocab_size)] == hf.convert_ids_to_tokens(
        list(range(tok.vocab_size)))


# -- padding, truncation, batches ----------------------------------------------------------------------------------------
TEXTS = ["Hello world", "a b c d e f g", "x", "", "Don't stop 😀 now<|endoftext|>!"]
PAIRS = ["second one here", "y", "z z", "w", "q r s t u v"]


def _lists(encoding):
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in dict(encoding).items()}


def _outcome(call):
    """The result as plain lists, or the exception type: both tokenizers must agree on either."""
    try:
        result = call()
    except ValueError as e:
        return type(e)
    return _lists(result) if hasattr(result, "keys") else result  # HF: BatchEncoding is a UserDict


@pytest.fixture(scope="module")
def padded(files):
    ours = GPT2Tokenizer.from_pretrained("gpt2", pad_token="<|endoftext|>")
    theirs = transformers.GPT2Tokenizer(str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=1024,
                                        pad_token="<|endoftext|>")
    return ours, theirs


@pytest.mark.filterwarnings("ignore:`max_length` is ignored")  # HF's own warning, when padding=True
@pytest.mark.parametrize("padding", [False, True, "longest", "max_length"])
@pytest.mark.parametrize("truncation", [None, False, True, "only_first", "only_second"])
@pytest.mark.parametrize("max_length", [None, 3, 7])
@pytest.mark.parametrize("pairs", [False, True])
def test_padding_truncation_batches_match_hf(padded, padding, truncation, max_length, pairs):
    ours, theirs = padded
    for options in ({}, {"padding_side": "left", "return_token_type_ids": True, "return_length": True},
                    {"return_attention_mask": False, "return_special_tokens_mask": True, "pad_to_multiple_of": 2}):
        kwargs = dict(padding=padding, truncation=truncation, max_length=max_length, **options)
        if padding == "max_length" and max_length is None:
            kwargs["max_length"] = 9
        batch_pair, one_pair = (PAIRS, PAIRS[1]) if pairs else (None, None)
        for args in ((TEXTS, batch_pair), (TEXTS[1], one_pair), (TEXTS[4], one_pair)):
            expected = _outcome(lambda: theirs(*args, **kwargs))
            assert _outcome(lambda: ours(*args, **kwargs)) == expected, (args, kwargs)
        assert _outcome(lambda: ours.encode(TEXTS[4], one_pair, **kwargs)) == _outcome(
            lambda: theirs.encode(TEXTS[4], one_pair, **kwargs)), kwargs


def test_numpy_batches_match_hf(padded):
    ours, theirs = padded
    for kwargs in ({"padding": True}, {"padding": "max_length", "max_length": 12, "padding_side": "left"},
                   {"padding": True, "truncation": True, "max_length": 2}):
        a, b = ours(TEXTS, return_tensors="np", **kwargs), theirs(TEXTS, return_tensors="np", **kwargs)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
            assert a[key].dtype == np.int64


@pytest.mark.parametrize("truncation", ["longest_first", True, "only_first", "only_second"])
def test_overflowing_tokens_of_pairs_match_hf(padded, truncation):
    ours, theirs = padded  # HF refuses overflow with longest_first on pairs, even when nothing overflows
    for max_length in (5, 50):
        kwargs = dict(truncation=truncation, max_length=max_length, return_overflowing_tokens=True)
        assert _outcome(lambda: ours(["a b c d e f g"], ["f g"], **kwargs)) == _outcome(
            lambda: theirs(["a b c d e f g"], ["f g"], **kwargs))


def test_offsets_mapping_matches_hf_fast(tok, hf_fast, files):
    """return_offsets_mapping: the (start, end) characters of each token, as HF's Rust tokenizer gives them,
    on the fragments (every branch of the pattern, multi-byte characters, special tokens) and random mixes."""
    import random

    rng = random.Random(0)
    texts = FRAGMENTS + ["".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 8))) for _ in range(300)]
    for text in texts:
        ours = tok(text, return_offsets_mapping=True)
        theirs = hf_fast(text, return_offsets_mapping=True)
        assert ours["input_ids"] == theirs["input_ids"], repr(text)
        assert [tuple(o) for o in ours["offset_mapping"]] == [tuple(o) for o in theirs["offset_mapping"]], repr(text)
    # In a padded batch and as arrays; with add_prefix_space; with is_split_into_words (offsets within each word).
    batch = ["Hello wörld 😀", "x", "a<|endoftext|>b"]
    for options in ({"padding": True}, {"padding": "max_length", "max_length": 12, "padding_side": "left"},
                    {"padding": True, "return_tensors": "np"}):
        ours = GPT2Tokenizer.from_pretrained("gpt2", pad_token="<|endoftext|>")(
            batch, return_offsets_mapping=True, **options)
        theirs = transformers.GPT2TokenizerFast(str(files / "vocab.json"), str(files / "merges.txt"),
                                                pad_token="<|endoftext|>")(batch, return_offsets_mapping=True,
                                                                           **options)
        np.testing.assert_array_equal(np.asarray(ours["offset_mapping"]), np.asarray(theirs["offset_mapping"]))
    spaced = transformers.GPT2TokenizerFast(str(files / "vocab.json"), str(files / "merges.txt"),
                                            add_prefix_space=True)
    for text in ("Hello wörld", ["Hello", "wörld", "😀"]):
        split = isinstance(text, list)
        ours = GPT2Tokenizer.from_pretrained("gpt2", add_prefix_space=True)(
            text, is_split_into_words=split, return_offsets_mapping=True)
        theirs = spaced(text, is_split_into_words=split, return_offsets_mapping=True)
        assert [tuple(o) for o in ours["offset_mapping"]] == [tuple(o) for o in theirs["offset_mapping"]], text


def test_pad_returns_arrays_for_arrays_like_hf(padded):
    ours, theirs = padded
    for inputs in ({"input_ids": np.array([[5, 6, 7]]), "attention_mask": np.array([[1, 1, 1]])},
                   [{"input_ids": np.array([5, 6])}, {"input_ids": np.array([7, 8, 9])}],
                   {"input_ids": [[5, 6], [7, 8, 9]]}):
        a = ours.pad(inputs, padding="max_length", max_length=5, padding_side="left")
        b = theirs.pad(inputs, padding="max_length", max_length=5, padding_side="left")
        assert a.keys() == b.keys()
        for key in a:
            assert type(a[key]) is type(b[key]), (key, inputs)
            np.testing.assert_array_equal(a[key], b[key])


def test_add_bos_token_matches_hf(files):
    ours = GPT2Tokenizer(add_bos_token=True, pad_token="<|endoftext|>")
    theirs = transformers.GPT2Tokenizer(str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=1024,
                                        add_bos_token=True, pad_token="<|endoftext|>")
    for kwargs in ({}, {"truncation": True, "max_length": 4}, {"padding": True, "return_special_tokens_mask": True},
                   {"add_special_tokens": False}):
        assert _lists(ours(TEXTS, **kwargs)) == _lists(theirs(TEXTS, **kwargs)), kwargs
        assert _lists(ours(TEXTS[:2], PAIRS[:2], **kwargs)) == _lists(theirs(TEXTS[:2], PAIRS[:2], **kwargs)), kwargs
    ids = ours.encode("Hello")
    assert ours.decode(ids) == theirs.decode(ids) and ours.decode(ids, True) == theirs.decode(ids, True)


def test_is_split_into_words_matches_hf(tok, hf):
    words = ["Hello", "world", "don't", "😀"]
    assert tok(words, is_split_into_words=True) == hf(words, is_split_into_words=True)
    assert _lists(tok([words, words[:2]], is_split_into_words=True)) == _lists(
        hf([words, words[:2]], is_split_into_words=True))


# -- added tokens ---------------------------------------------------------------------------------------------------
ADDED = ["<new>", "<ne", "[PAD]", "<sp>", "ab"]


@pytest.fixture(scope="module")
def with_added(files):
    ours = GPT2Tokenizer()
    theirs = transformers.GPT2Tokenizer(str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=1024)
    for tokenizer, token_class in ((ours, AddedToken), (theirs, transformers.AddedToken)):
        tokenizer.add_tokens(["<new>", "<ne", "ab"])
        tokenizer.add_tokens([token_class("<sp>", lstrip=True, rstrip=True)])
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    return ours, theirs


@PARITY
@given(st.lists(st.sampled_from(ADDED + FRAGMENTS[:30]) | st.text(alphabet=" ab<>ne\n", max_size=4), max_size=15)
       .map("".join))
def test_added_tokens_match_hf(with_added, text):
    ours, theirs = with_added
    ids = ours.encode(text)
    assert ids == theirs.encode(text)
    assert ours.tokenize(text) == theirs.tokenize(text)
    assert ours.decode(ids, spaces_between_special_tokens=True) == theirs.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True, spaces_between_special_tokens=True) == theirs.decode(
        ids, skip_special_tokens=True)
    assert ours.encode(text, split_special_tokens=True) == theirs.encode(text, split_special_tokens=True)


def test_added_token_vocabulary_matches_hf(with_added):
    ours, theirs = with_added
    assert len(ours) == len(theirs) and ours.get_vocab() == theirs.get_vocab()
    assert ours.all_special_tokens == theirs.all_special_tokens and ours.all_special_ids == theirs.all_special_ids
    assert ours.special_tokens_map == theirs.special_tokens_map
    assert {i: str(t) for i, t in ours.added_tokens_decoder.items()} == {
        i: str(t) for i, t in theirs.added_tokens_decoder.items()}


def test_decode_without_spaces_matches_hf_fast(files):
    pytest.importorskip("tokenizers")
    fast = transformers.GPT2TokenizerFast(str(files / "vocab.json"), str(files / "merges.txt"))
    ours = GPT2Tokenizer()
    for tokenizer in (ours, fast):
        tokenizer.add_tokens(["<new>"])
    text = "hello<new>world <new> x"
    assert ours.encode(text) == fast.encode(text)
    assert ours.decode(ours.encode(text)) == fast.decode(fast.encode(text)) == text


# -- files -------------------------------------------------------------------------------------------------------------
def test_save_pretrained_loads_in_transformers(tmp_path):
    ours = GPT2Tokenizer.from_pretrained("gpt2", add_prefix_space=True)
    ours.add_tokens(["<new>"])
    ours.add_special_tokens({"pad_token": "[PAD]", "additional_special_tokens": ["<|user|>"]})
    ours.save_pretrained(tmp_path)
    for cls in (transformers.GPT2Tokenizer, transformers.AutoTokenizer):
        theirs = cls.from_pretrained(str(tmp_path))
        text = "Hello<new> world[PAD]<|user|> <|endoftext|>"
        assert theirs.encode(text) == ours.encode(text), cls
        assert len(theirs) == len(ours) and theirs.pad_token_id == ours.pad_token_id
        assert theirs.model_max_length == 1024 and theirs.all_special_ids == ours.all_special_ids


def test_loads_what_transformers_saves(tmp_path, files):
    theirs = transformers.GPT2Tokenizer(str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=1024,
                                        add_bos_token=True)
    theirs.add_tokens(["<new>"])
    theirs.add_special_tokens({"pad_token": "[PAD]"})
    theirs.save_pretrained(tmp_path)
    ours = GPT2Tokenizer.from_pretrained(tmp_path)
    text = "Hello<new> world[PAD]"
    assert ours.encode(text) == theirs.encode(text)
    assert ours.pad_token == "[PAD]" and ours.add_bos_token and len(ours) == len(theirs)
    assert ours.get_vocab() == theirs.get_vocab()
    # the legacy layout: added_tokens.json and special_tokens_map.json without added_tokens_decoder
    config = tmp_path / "tokenizer_config.json"
    config.write_text('{"model_max_length": 1024}')
    legacy = GPT2Tokenizer.from_pretrained(tmp_path)
    assert legacy.encode(text) == theirs.encode(text, add_special_tokens=False)
