"""minigpt2's tokenizer on its own: known ids, the algorithm's invariants, the API, errors, files, streaming.

Comparisons with HF transformers / tiktoken / tokenizers are in test_tokenizer_parity.py (here only labels:
text_target, which transformers' tokenizers produce from the same vocabulary).
"""
import gzip
import hashlib
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt2 import bpe as B
from minigpt2.tokenizer import (
    AddedToken,
    AutoTokenizer,
    BatchEncoding,
    GPT2Tokenizer,
    GPT2TokenizerFast,
    TokenStreamDecoder,
    VocabularyFileError,
    decode_stream,
    show_work,
)

FAST = settings(max_examples=200, deadline=None)


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_pretrained("gpt2")


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    """The bundled files, decompressed, under OpenAI's names."""
    d = tmp_path_factory.mktemp("openai_vocab")
    for name in ("encoder.json", "vocab.bpe"):
        (d / name).write_bytes(gzip.decompress(open(os.path.join(B.DATA_DIR, name + ".gz"), "rb").read()))
    return d


def test_no_reference_library_is_imported():
    """The package never imports torch, transformers, tokenizers or tiktoken (they are test references only)."""
    code = ("import sys; from minigpt2.tokenizer import GPT2Tokenizer, decode_stream, show_work; "
            "t = GPT2Tokenizer.from_pretrained('gpt2'); t.decode(t('Hello world', return_tensors='pt').input_ids[0]); "
            "list(decode_stream(t.encode('hi 😀'), t)); show_work('hi'); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'tokenizers', 'tiktoken'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- the bundled vocabulary ---------------------------------------------------------------------------------------
def test_bundled_files_match_published_hashes():
    for name, digest in (("encoder.json", B.GPT2_ENCODER_SHA256), ("vocab.bpe", B.GPT2_MERGES_SHA256)):
        raw = gzip.decompress(open(os.path.join(B.DATA_DIR, name + ".gz"), "rb").read())
        assert hashlib.sha256(raw).hexdigest() == digest
    encoder, merges = B.gpt2_vocabulary()
    assert len(encoder) == 50257 and len(merges) == 50000
    assert B.merges_digest(merges) == B.GPT2_MERGES_SHA256


def test_corrupt_bundle_is_a_clear_error(tmp_path, monkeypatch):
    for name in ("encoder.json", "vocab.bpe"):
        (tmp_path / (name + ".gz")).write_bytes(open(os.path.join(B.DATA_DIR, name + ".gz"), "rb").read())
    (tmp_path / "vocab.bpe.gz").write_bytes(gzip.compress(b"#version: 0.2\na b\n"))
    monkeypatch.setattr(B, "DATA_DIR", str(tmp_path))
    B.gpt2_vocabulary.cache_clear()
    try:
        with pytest.raises(VocabularyFileError, match=r"vocab\.bpe\.gz.*SHA-256"):
            B.gpt2_vocabulary()
    finally:
        monkeypatch.undo()
        B.gpt2_vocabulary.cache_clear()


def test_bytes_to_unicode_is_a_bijection_onto_printable_characters():
    table = B.bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    data = bytes(range(256))
    assert B.from_byte_chars(data.decode("latin-1").translate(B._LATIN1_TO_BYTE_CHAR)) == data


# -- known ids (the seed's examples and the vocabulary README) ----------------------------------------------------
@pytest.mark.parametrize("text, ids", [
    ("Hello world", [15496, 995]),
    (" Hello world", [18435, 995]),
    ("<|endoftext|>", [50256]),
    ("Hello, my dog is cute", [15496, 11, 616, 3290, 318, 13779]),
    ("", []),
])
def test_known_ids(tok, text, ids):
    assert tok.encode(text) == ids
    assert tok(text) == {"input_ids": ids, "attention_mask": [1] * len(ids)}
    assert tok.decode(ids) == text


def test_seed_examples_run_with_only_the_import_changed():
    tokenizer = AutoTokenizer.from_pretrained("gpt2")
    input_ids = tokenizer("GPT2 is a model developed by OpenAI.", return_tensors="pt").input_ids
    assert type(input_ids) is np.ndarray and input_ids.shape == (1, 11) and input_ids.dtype == np.int64
    gen_tokens = np.concatenate([input_ids, [[632, 5419]]], axis=1)  # what generate returns: (batch, length)
    assert tokenizer.batch_decode(gen_tokens)[0] == "GPT2 is a model developed by OpenAI. It helps"
    for cls in (GPT2Tokenizer, GPT2TokenizerFast):
        tokenizer = cls.from_pretrained("openai-community/gpt2")
        assert (tokenizer("Hello world"), tokenizer(" Hello world")) == (
            {"input_ids": [15496, 995], "attention_mask": [1, 1]},
            {"input_ids": [18435, 995], "attention_mask": [1, 1]})
    inputs = AutoTokenizer.from_pretrained("openai-community/gpt2")("Hello, my dog is cute", return_tensors="pt")
    assert set(inputs) == {"input_ids", "attention_mask"} and type(inputs["input_ids"]) is np.ndarray
    assert inputs["input_ids"].tolist() == [[15496, 11, 616, 3290, 318, 13779]]


@pytest.mark.parametrize("name", sorted(
    {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2", "openai-community/gpt2-xl",
     "distilbert/distilgpt2"}))
def test_bundled_names_load_offline(name):
    tokenizer = AutoTokenizer.from_pretrained(name)
    assert isinstance(tokenizer, GPT2TokenizerFast) and tokenizer.model_max_length == 1024
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert type(AutoTokenizer.from_pretrained(name, use_fast=False)) is GPT2Tokenizer


def test_properties(tok):
    assert tok.vocab_size == len(tok) == 50257
    assert tok.eos_token == tok.bos_token == tok.unk_token == "<|endoftext|>"
    assert tok.eos_token_id == tok.bos_token_id == tok.unk_token_id == 50256
    assert tok.pad_token is None and tok.pad_token_id is None
    assert tok.model_max_length == 1024 and tok.padding_side == "right"
    assert tok.all_special_tokens == ["<|endoftext|>"] and tok.all_special_ids == [50256]
    assert tok.special_tokens_map == {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                                      "unk_token": "<|endoftext|>"}
    assert tok.get_vocab()["Ġworld"] == 995 and len(tok.get_vocab()) == 50257
    assert tok.tokenize("Hello world") == ["Hello", "Ġworld"]
    assert tok.convert_tokens_to_ids(["Hello", "Ġworld", "no such token"]) == [15496, 995, 50256]
    assert tok.convert_tokens_to_ids("Hello") == 15496
    assert tok.convert_ids_to_tokens([15496, 995, 50256]) == ["Hello", "Ġworld", "<|endoftext|>"]
    assert tok.convert_ids_to_tokens(np.int64(995)) == "Ġworld"
    assert tok.convert_tokens_to_string(["Hello", "Ġworld"]) == "Hello world"
    assert "GPT2Tokenizer" in repr(tok)


# -- the algorithm --------------------------------------------------------------------------------------------------
def _merge_ids(word, ranks):
    """Run bpe_merge_ids on a byte-character string with tables built from `ranks`; return token strings."""
    symbols = sorted({c for pair in ranks for part in pair for c in part} | set(word)
                     | {x for pair in ranks for x in (*pair, pair[0] + pair[1])})
    encoder = {t: i for i, t in enumerate(symbols)}
    shift = len(symbols).bit_length()
    merge_of = {encoder[a] << shift | encoder[b]: r << shift | encoder[a + b] for (a, b), r in ranks.items()}
    return [symbols[i] for i in B.bpe_merge_ids([encoder[c] for c in word], merge_of, shift)]


def test_every_merge_made_token_encodes_to_itself():
    """Justifies ByteLevelBPE's whole-token shortcut: BPE never splits a string that is a GPT-2 token."""
    bpe = B.gpt2_bpe()
    assert len(bpe.whole_tokens) == 50256 and "<|endoftext|>" not in bpe.whole_tokens
    assert B.ranks_are_monotone(bpe.merges) and bpe.merge_of is not None
    for token, index in bpe.whole_tokens.items():
        byte_ids = [bpe.byte_ids[B.CHAR_TO_BYTE[c]] for c in token]
        assert B.bpe_merge_ids(byte_ids, bpe.merge_of, bpe.shift) == [index], token
    for text, ids in bpe.cache_seed.items():
        assert bpe.encode_piece(text) == ids


@st.composite
def byte_words(draw, max_size=120):
    """Byte-character strings that merge a lot: drawn from a few letters, or from real UTF-8."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.text(alphabet="aeinorstlĠ", min_size=1, max_size=max_size))
    if kind == 1:
        return B.to_byte_chars(draw(st.text(min_size=1, max_size=max_size // 3)))
    unit = draw(st.text(alphabet="abĠe", min_size=1, max_size=4))
    return unit * draw(st.integers(1, max_size // len(unit)))


@FAST
@given(byte_words(max_size=300))
def test_the_three_merge_loops_agree(word):
    ranks = B.gpt2_bpe().ranks
    expected = B.bpe_merge(word, ranks)
    bpe = B.gpt2_bpe()
    ids = B.bpe_merge_ids([bpe.byte_ids[B.CHAR_TO_BYTE[c]] for c in word], bpe.merge_of, bpe.shift)
    assert [bpe.decoder[i] for i in ids] == expected
    assert B.bpe_merge_long(word, ranks) == expected
    assert bpe.bpe(word) == expected


@st.composite
def toy_merges(draw):
    """Random merge lists over a small alphabet, including non-monotone ones (a token used before it is made)."""
    symbols = list("abcd")
    merges = []
    for _ in range(draw(st.integers(1, 12))):
        a, b = draw(st.sampled_from(symbols)), draw(st.sampled_from(symbols))
        merges.append((a, b))
        if a + b not in symbols and len(a + b) <= 4:
            symbols.append(a + b)
    return draw(st.permutations(merges)) if draw(st.booleans()) else merges


@settings(max_examples=300, deadline=None)
@given(toy_merges(), st.text(alphabet="abcd", min_size=1, max_size=60))
def test_long_merge_is_exact_for_any_merge_list(merges, word):
    ranks = dict(zip(merges, range(len(merges))))
    expected = B.bpe_merge(word, ranks)
    assert B.bpe_merge_long(word, ranks) == expected
    if B.ranks_are_monotone(merges):
        assert _merge_ids(word, ranks) == expected


def test_non_monotone_merges_use_the_exact_loop():
    merges = [("x", "ab"), ("a", "b"), ("ab", "ab")]
    assert not B.ranks_are_monotone(merges)
    encoder = {c: i for i, c in enumerate(["a", "b", "x", "ab", "xab", "abab"])}
    bpe = B.ByteLevelBPE(encoder, merges)
    assert bpe.merge_of is None and bpe.whole_tokens == {}
    assert bpe.bpe("xabab") == B.bpe_merge("xabab", bpe.ranks) == ["xab", "ab"]


def test_long_pieces_are_not_cached_and_cache_is_bounded(tok):
    bpe = tok._bpe.fresh()
    bpe.encode_ordinary("a" * 10_000 + " hello")
    assert " hello" in bpe.cache and not any(len(k) > B.MAX_CACHED_PIECE for k in bpe.cache)


def test_pretokenize_round_trips_and_matches_gpt2_rules():
    # "\n\n" before a word: the whitespace rule leaves the last "\n" to stand alone (it is not a space)
    assert B.pretokenize("I'm  here\n\nDON'T 123abc!") == ["I", "'m", " ", " here", "\n", "\n", "DON", "'", "T",
                                                          " 123", "abc", "!"]
    assert B.pretokenize("a   b") == ["a", "  ", " b"]
    assert B.pretokenize("end  \n") == ["end", "  \n"]


@st.composite
def mixed_texts(draw):
    """ASCII prose with the odd non-ASCII character and unusual white space, long enough for several chunks."""
    parts = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", "\x1c", "\x0b", " \u3000", "\xa0", "é", "中文", "😀",
                             "word", " word", "'s", "'LL", "123", " 45", "!?", "\r\n"]) | st.text(max_size=3)
    return "".join(draw(st.lists(parts, max_size=120)))


@settings(max_examples=300, deadline=None)
@given(mixed_texts(), st.sampled_from([1, 3, 8, 256]))
def test_chunked_ascii_pretokenize_equals_the_regex(text, chunk):
    saved = B.CHUNK
    B.CHUNK = chunk
    try:
        assert B.pretokenize(text) == B.PRETOKENIZER.findall(text)
        ascii_text = text.encode("ascii", "replace").decode()
        assert B.pretokenize(ascii_text) == B.PRETOKENIZER.findall(ascii_text)
    finally:
        B.CHUNK = saved
    assert "".join(B.pretokenize(text)) == text


def test_ascii_pattern_equals_the_regex_on_every_ascii_character():
    for c in map(chr, range(128)):
        for text in (c, c * 3, f"a{c}b", f" {c}1", f"{c} x", f"{c}  \n", f"x{c}{c} "):
            assert B.ASCII_PRETOKENIZER.findall(text) == B.PRETOKENIZER.findall(text), repr(text)


# -- round trip and bad input ----------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text())
def test_decode_encode_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


@FAST
@given(st.lists(st.text(max_size=3) | st.sampled_from(["<|endoftext|>", " ", "😀", "é"])).map("".join))
def test_round_trip_with_special_text_and_options(text):
    tokenizer = GPT2Tokenizer(add_prefix_space=True)
    assert tokenizer.decode(tokenizer.encode(text)) == " " + text
    assert tokenizer.decode(tokenizer.encode(text, split_special_tokens=True)) == " " + text


def test_bad_input(tok):
    for bad in (123, None, b"bytes", 1.5, ["a", 2]):
        with pytest.raises(TypeError):
            tok.encode(bad)
    with pytest.raises(TypeError, match="decode bytes"):
        tok(b"hello")
    with pytest.raises(TypeError, match="item 1"):
        tok(["a", 2])
    with pytest.raises(ValueError, match="position 3"):
        tok.encode("abc\udc80def")
    with pytest.raises(ValueError, match="position 0"):
        tok(["fine", "\ud800"])
    with pytest.raises(ValueError, match="50257"):
        tok.decode([15496, 50257])
    with pytest.raises(ValueError, match="-5"):
        tok.decode([-5])
    with pytest.raises(TypeError, match="item 1"):
        tok.decode([1, 2.5])
    with pytest.raises(TypeError):
        tok.decode("Hello")
    with pytest.raises(TypeError, match="batch_decode"):
        tok.decode(np.array([[1, 2]]))
    assert tok.convert_ids_to_tokens(99999) is None  # as HF's (test_tokenizer_audit16 compares)
    for framework in ("tf", "jax", "mlx"):  # "pt" gives NumPy arrays: test_return_tensors_pt_gives_numpy_arrays
        with pytest.raises(ValueError, match="NumPy-only"):
            tok("x", return_tensors=framework)
    with pytest.raises(ValueError, match="None, 'np' or 'pt'"):
        tok("x", return_tensors="torch")
    with pytest.raises(ValueError, match="padding token"):
        tok(["a", "b c"], padding=True)
    with pytest.raises(ValueError, match="padding"):
        tok.__class__(pad_token="<|endoftext|>")("a", padding="sideways")
    with pytest.raises(TypeError):
        tok("x", no_such_option=True)
    # Offsets (compared with HF's in test_tokenizer_parity): one per token, and their slices rebuild the text.
    encoded = tok("héllo wörld", return_offsets_mapping=True)
    assert len(encoded["offset_mapping"]) == len(encoded["input_ids"])
    assert "".join("héllo wörld"[a:b] for a, b in encoded["offset_mapping"]) == "héllo wörld"


def test_decode_accepts_ints_lists_tuples_arrays(tok):
    ids = [15496, 995]
    for value in (ids, tuple(ids), np.array(ids), np.array(ids, dtype=np.int32), [np.int64(i) for i in ids]):
        assert tok.decode(value) == "Hello world"
    assert tok.decode(15496) == tok.decode(np.int64(15496)) == tok.decode(np.array(15496)) == "Hello"
    assert tok.decode([]) == ""
    assert tok.batch_decode([[15496], [995]]) == tok.batch_decode(np.array([[15496], [995]])) == ["Hello", " world"]


def test_decode_of_invalid_utf8_replaces(tok):
    emoji = tok.encode("😀")
    assert len(emoji) > 1
    assert "\ufffd" in tok.decode(emoji[:-1])
    assert tok.decode(emoji[:-1], errors="ignore") == ""
    assert tok.token_bytes(emoji[0]) + b"".join(tok.token_bytes(i) for i in emoji[1:]) == "😀".encode()


def test_decode_all_ids_matches_byte_table(tok):
    """Every id decodes to the bytes bytes_to_unicode says (against tiktoken/HF in the parity tests)."""
    texts = tok.batch_decode([[i] for i in range(tok.vocab_size)])
    for i, text in enumerate(texts):
        token = tok.convert_ids_to_tokens(i)
        expected = bytes(B.CHAR_TO_BYTE[c] for c in token).decode("utf-8", "replace")
        assert text == expected, i


def test_skip_special_tokens_and_cleanup(tok):
    ids = tok.encode("Hello<|endoftext|> , world")
    assert 50256 in ids
    assert tok.decode(ids, skip_special_tokens=True) == "Hello , world"
    assert tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True) == "Hello, world"
    assert tok.convert_ids_to_tokens(ids, skip_special_tokens=True)[0] == "Hello"


def test_add_prefix_space_and_bos(tok):
    assert GPT2Tokenizer(add_prefix_space=True).encode("Hello world") == [18435, 995]
    assert tok.encode("Hello", add_prefix_space=True) == [18435]
    assert tok.tokenize("Hello", add_prefix_space=True) == ["ĠHello"]
    bos = GPT2Tokenizer(add_bos_token=True)
    assert bos.encode("Hello") == [50256, 15496]
    assert bos.encode("Hello", add_special_tokens=False) == [15496]
    assert bos("Hello", return_special_tokens_mask=True)["special_tokens_mask"] == [1, 0]
    assert bos.decode(bos.encode("Hello"), skip_special_tokens=True) == "Hello"


def test_split_special_tokens(tok):
    assert tok.encode("a<|endoftext|>b") == [64, 50256, 65]
    plain = [64, 27, 91, 437, 1659, 5239, 91, 29, 65]
    assert tok.encode("a<|endoftext|>b", split_special_tokens=True) == plain
    assert GPT2Tokenizer(split_special_tokens=True).encode("a<|endoftext|>b") == plain
    assert tok._bpe.encode_ordinary("a<|endoftext|>b") == plain


# -- batches, padding, truncation, tensors -------------------------------------------------------------------------
def test_padding_truncation_and_numpy():
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == 50256
    batch = tok(["a b c", "d"], padding=True, return_tensors="np")
    assert isinstance(batch, BatchEncoding) and isinstance(batch, dict)
    np.testing.assert_array_equal(batch.input_ids, [[64, 275, 269], [67, 50256, 50256]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1], [1, 0, 0]])
    assert batch.input_ids.dtype == np.int64
    left = tok(["a b c", "d"], padding="max_length", max_length=5, padding_side="left")
    assert left.input_ids == [[50256, 50256, 64, 275, 269], [50256] * 4 + [67]]
    assert left.attention_mask == [[0, 0, 1, 1, 1], [0, 0, 0, 0, 1]]
    assert tok("a b c d e f", truncation=True, max_length=3).input_ids == [64, 275, 269]
    assert tok("a b c d e f", max_length=3).input_ids == [64, 275, 269]  # HF: max_length alone truncates
    assert len(tok("a " * 2000, truncation=True).input_ids) == 1024
    assert tok(["a b c", "x"], padding=True, pad_to_multiple_of=4).input_ids == [[64, 275, 269, 50256],
                                                                              [87, 50256, 50256, 50256]]
    assert tok(["a b", "c"], padding=True, return_attention_mask=False) == {"input_ids": [[64, 275], [66, 50256]]}
    with pytest.raises(ValueError, match="different lengths"):
        tok(["a b c", "d"], return_tensors="np")
    single = tok("a b", return_tensors="np", padding="max_length", max_length=4)
    assert single.input_ids.shape == (1, 4)
    assert tok.encode("Hello world", return_tensors="np").tolist() == [[15496, 995]]
    assert tok([]) == {"input_ids": [], "attention_mask": []}
    pad = tok.pad([{"input_ids": [1, 2, 3]}, {"input_ids": [4]}], return_tensors="np")
    np.testing.assert_array_equal(pad["input_ids"], [[1, 2, 3], [4, 50256, 50256]])
    np.testing.assert_array_equal(pad["attention_mask"], [[1, 1, 1], [1, 0, 0]])


class _TensorType:
    """Stands for transformers' TensorType enum (its .value is the string), without importing transformers."""
    value = "pt"


@pytest.mark.parametrize("cls", [GPT2Tokenizer, GPT2TokenizerFast])
@pytest.mark.parametrize("pt", ["pt", _TensorType()])
def test_return_tensors_pt_gives_numpy_arrays(cls, pt):
    """HF's examples say return_tensors="pt"; minigpt2's models take NumPy arrays, so "pt" gives exactly what "np"
    gives, at every entry point (torch is never imported: test_no_reference_library_is_imported)."""
    tok = cls.from_pretrained("gpt2", pad_token="<|endoftext|>")
    calls = [lambda rt: tok("Hello world", return_tensors=rt),
             lambda rt: tok(["a b c", "d"], padding=True, return_tensors=rt),
             lambda rt: tok("Hello", "world", return_tensors=rt, return_token_type_ids=True),
             lambda rt: tok.encode_plus("Hello world", return_tensors=rt),
             lambda rt: tok.batch_encode_plus(["a b", "c"], padding=True, return_tensors=rt),
             lambda rt: tok.prepare_for_model([1, 2], return_tensors=rt, prepend_batch_axis=True),
             lambda rt: tok.pad([{"input_ids": [1, 2, 3]}, {"input_ids": [4]}], return_tensors=rt),
             lambda rt: {"ids": tok.encode("Hello world", return_tensors=rt)},
             lambda rt: tok("Hello world", return_tensors=None).convert_to_tensors(rt, prepend_batch_axis=True)]
    for call in calls:
        got, expected = call(pt), call("np")
        assert set(got) == set(expected)
        for key in expected:
            assert type(got[key]) is np.ndarray and got[key].dtype == np.int64
            np.testing.assert_array_equal(got[key], expected[key])
    with pytest.raises(ValueError, match="different lengths"):
        tok(["a b c", "d"], return_tensors=pt)


def test_batch_encoding_behaves_like_a_dict(tok):
    enc = tok(["Hello world", "Hi"], padding=False)
    assert enc.input_ids == enc["input_ids"] == [[15496, 995], [17250]]
    assert dict(**enc) == dict(enc) and list(enc.keys()) == ["input_ids", "attention_mask"]
    assert json.loads(json.dumps(enc)) == dict(enc)
    assert pickle.loads(pickle.dumps(enc)) == enc
    assert enc.to("cpu") is enc
    with pytest.raises(AttributeError):
        enc.token_type_ids
    with pytest.raises(KeyError, match="integer"):
        enc[0]


# -- added tokens -------------------------------------------------------------------------------------------------
def test_add_tokens_and_special_tokens():
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    assert tok.add_tokens(["<new>", "hello"]) == 1  # "hello" is already in the vocabulary
    assert tok.convert_tokens_to_ids("<new>") == 50257 and len(tok) == 50258
    assert tok.encode("say<new>hello") == [16706, 50257, 31373]
    assert tok.decode(tok.encode("say<new> hello <new>")) == "say<new> hello <new>"
    assert tok.decode(tok.encode("a<new>b"), spaces_between_special_tokens=True) == "a <new> b"  # HF slow's quirk
    assert tok.add_special_tokens({"pad_token": "[PAD]"}) == 1
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == 50258 and 50258 in tok.all_special_ids
    assert tok.decode(tok.encode("x[PAD]"), skip_special_tokens=True) == "x"
    assert tok.add_special_tokens({"additional_special_tokens": ["<|user|>"]}) == 1
    assert tok.additional_special_tokens == ["<|user|>"] and tok.encode("<|user|>") == [50259]
    stripping = GPT2Tokenizer()
    stripping.add_tokens([AddedToken("<s>", lstrip=True, rstrip=True)])
    assert stripping.encode("a  <s>  b") == stripping.encode("a<s>b")
    # setting pad_token to an unknown string does not add it: its id falls back to unk, as in HF
    loose = GPT2Tokenizer()
    loose.pad_token = "[NOT IN VOCAB]"
    assert loose.pad_token_id == 50256 and len(loose) == 50257
    loose.pad_token_id = 15496
    assert loose.pad_token == "Hello"


# -- files ------------------------------------------------------------------------------------------------------------
def test_constructor_with_openai_and_hf_file_names(vocab_dir, tmp_path):
    a = GPT2Tokenizer(str(vocab_dir / "encoder.json"), str(vocab_dir / "vocab.bpe"))
    assert a.encode("Hello world") == [15496, 995] and a._bpe.whole_tokens  # recognised as GPT-2's: shortcut on
    assert GPT2Tokenizer.from_pretrained(vocab_dir).encode(" Hello world") == [18435, 995]
    gz = tmp_path / "gz"
    gz.mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        (gz / (name + ".gz")).write_bytes(open(os.path.join(B.DATA_DIR, name + ".gz"), "rb").read())
    assert GPT2Tokenizer(str(gz / "encoder.json.gz"), str(gz / "vocab.bpe.gz")).encode("hi") == [5303]


def test_corrupt_and_mismatched_files_name_the_file(vocab_dir, tmp_path):
    broken = tmp_path / "vocab.json"
    broken.write_text('{"a": 0, "b": ')
    with pytest.raises(VocabularyFileError, match="vocab.json"):
        GPT2Tokenizer(str(broken), str(vocab_dir / "vocab.bpe"))
    other = tmp_path / "merges.txt"
    other.write_text("#version: 0.2\nq z\n")
    with pytest.raises(VocabularyFileError, match="merges.txt does not match"):
        GPT2Tokenizer(str(vocab_dir / "encoder.json"), str(other))
    bad_line = tmp_path / "bad.txt"
    bad_line.write_text("#version: 0.2\nĠ t\nthree parts here\n")
    with pytest.raises(VocabularyFileError, match="bad.txt, line 3"):
        GPT2Tokenizer(str(vocab_dir / "encoder.json"), str(bad_line))
    with pytest.raises(VocabularyFileError, match="not found"):
        GPT2Tokenizer(str(tmp_path / "missing.json"), str(vocab_dir / "vocab.bpe"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VocabularyFileError, match="no GPT-2 vocabulary"):
        GPT2Tokenizer.from_pretrained(tmp_path / "empty")


def test_save_and_reload(tmp_path):
    tok = GPT2Tokenizer.from_pretrained("gpt2", add_prefix_space=True)
    tok.add_tokens(["<new>"])
    tok.add_special_tokens({"pad_token": "[PAD]"})
    files = tok.save_pretrained(tmp_path)
    assert {os.path.basename(f) for f in files} == {"vocab.json", "merges.txt", "tokenizer_config.json",
                                                    "special_tokens_map.json", "added_tokens.json"}
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Hello<new>[PAD] world"
    assert again.encode(text) == tok.encode(text)
    assert again.pad_token == "[PAD]" and len(again) == len(tok) == 50259 and again.add_prefix_space
    assert again._bpe.whole_tokens  # still recognised as GPT-2's merges


def test_pickle_and_independent_caches():
    a = GPT2Tokenizer()
    a.encode("zqxjvk warms the cache")
    assert "zqxjvk" in a._bpe.cache
    b = pickle.loads(pickle.dumps(a))
    assert b.encode("Hello world") == [15496, 995]
    fresh = GPT2Tokenizer()._bpe.cache  # a new tokenizer starts cold: only the vocabulary's own entries
    assert fresh == fresh.seed and len(fresh) > 49_000


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A loopback Hub (tests/hubserver.py) reached through HF_ENDPOINT, serving a fine-tuned GPT-2 tokenizer
    (vocab.json + merges.txt + configs with a pad token) and one that only has a tokenizer.json."""
    pytest.importorskip("huggingface_hub")
    from hubserver import HubServer

    saved = tmp_path / "saved"
    GPT2Tokenizer(pad_token="<|endoftext|>", add_prefix_space=True).save_pretrained(saved)
    files = {p.name: p.read_bytes() for p in saved.iterdir()}
    only_json = {"tokenizer.json": _tokenizer_json(files["vocab.json"], files["merges.txt"])}
    with HubServer({"someone/finetuned-gpt2": files, "someone/rust-only": only_json,
                    "someone/no-tokenizer": {"config.json": b"{}"}}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def _tokenizer_json(vocab: bytes, merges: bytes) -> bytes:
    return json.dumps({
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "special": True}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
        "model": {"type": "BPE", "vocab": json.loads(vocab),
                  "merges": [m.split(" ") for m in merges.decode().split("\n")[1:] if m]},
    }).encode()


def test_from_pretrained_downloads_other_repositories(hub):
    tok = AutoTokenizer.from_pretrained("someone/finetuned-gpt2")
    assert tok.pad_token == "<|endoftext|>" and tok.add_prefix_space
    assert tok.encode("Hello world") == [18435, 995]
    assert any(path.endswith("/vocab.json") for _, path, _ in hub.requests)
    assert GPT2Tokenizer.from_pretrained("someone/rust-only").encode("Hello world<|endoftext|>") == [15496, 995, 50256]
    with pytest.raises(OSError, match="someone/no-tokenizer.*no GPT-2 tokenizer files"):
        GPT2Tokenizer.from_pretrained("someone/no-tokenizer")
    with pytest.raises(OSError, match="someone/missing.*work offline"):
        GPT2Tokenizer.from_pretrained("someone/missing")
    assert len(GPT2Tokenizer.from_pretrained("gpt2")) == 50257  # bundled: the server is never asked
    assert not any("gpt2/" in path and "finetuned" not in path for _, path, _ in hub.requests)


def test_from_pretrained_passes_hub_options_on(hub):
    """force_download fetches the files again (it was dropped before); the other options reach the Hub too."""
    AutoTokenizer.from_pretrained("someone/finetuned-gpt2")
    before = len(hub.downloads())
    AutoTokenizer.from_pretrained("someone/finetuned-gpt2")
    assert len(hub.downloads()) == before  # cached
    AutoTokenizer.from_pretrained("someone/finetuned-gpt2", force_download=True)
    assert any(path.endswith("/vocab.json") for _, path, _ in hub.downloads()[before:])
    with pytest.raises(OSError, match="no revision 'nope'"):
        AutoTokenizer.from_pretrained("someone/finetuned-gpt2", revision="nope")


def test_from_pretrained_without_network_fails_fast(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(OSError, match="someone/other.*gpt2.*work offline"):
        GPT2Tokenizer.from_pretrained("someone/other")
    assert GPT2Tokenizer.from_pretrained("openai-community/gpt2").encode("Hello world") == [15496, 995]


def test_tokenizer_json(tmp_path, vocab_dir):
    encoder = json.loads((vocab_dir / "encoder.json").read_text("utf-8"))
    merges = (vocab_dir / "vocab.bpe").read_text("utf-8").split("\n")[1:-1]
    (tmp_path / "tokenizer.json").write_text(json.dumps({
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "special": True}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
        "model": {"type": "BPE", "vocab": encoder, "merges": [m.split(" ") for m in merges]},
    }), "utf-8")
    tok = GPT2TokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert tok.encode("Hello world<|endoftext|>") == [15496, 995, 50256]
    assert GPT2Tokenizer.from_pretrained(tmp_path).encode(" Hello") == [18435]


# -- streaming and teaching ------------------------------------------------------------------------------------------
def test_stream_decoder_holds_back_partial_characters(tok):
    ids = tok.encode("ok 😀!")
    decoder = TokenStreamDecoder(tok)
    pieces = [decoder.step(i) for i in ids]
    assert "".join(pieces) + decoder.flush() == "ok 😀!"
    assert all("\ufffd" not in p for p in pieces)
    assert "😀" in pieces  # the emoji came out whole, in one step
    partial = TokenStreamDecoder(tok)
    assert partial.feed(tok.encode("😀")[:-1]) == "" and partial.pending_bytes
    assert partial.flush() == "\ufffd"


_STREAM_TOK = GPT2Tokenizer()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 50256), max_size=40) | st.text().map(_STREAM_TOK.encode))
def test_stream_equals_decode(tok, ids):
    assert "".join(decode_stream(ids, tok)) == tok.decode(ids)
    decoder = tok.stream_decoder(skip_special_tokens=True)
    assert decoder.feed(np.array(ids, dtype=np.int64)) + decoder.flush() == tok.decode(ids, skip_special_tokens=True)


def test_show_work():
    work = show_work("Hello world!")
    assert [p.text for p in work.pieces] == ["Hello", " world", "!"]
    assert work.ids == [15496, 995, 0] and work.tokens == ["Hello", "Ġworld", "!"]
    world = work.pieces[1]
    assert world.utf8 == b" world" and world.byte_chars == "Ġworld"
    assert [m.rank for m in world.merges] == sorted(m.rank for m in world.merges)
    assert world.merges[0].pair == ("Ġ", "w") and world.merges[-1].symbols == ["Ġworld"]
    report = str(work)
    assert "rank" in report and "Ġworld" in report and "[15496, 995, 0]" in report
    assert GPT2Tokenizer().show_work("é").pieces[0].byte_chars == "Ã©"
    with pytest.raises(TypeError):
        show_work(42)


# -- labels: text_target / text_pair_target, against transformers 4.57 -----------------------------------------

@pytest.fixture(scope="module")
def hf_tokenizers(vocab_dir):
    """transformers' GPT2Tokenizer and GPT2TokenizerFast on the bundled vocabulary (skipped without transformers)."""
    transformers = pytest.importorskip("transformers")
    files = (str(vocab_dir / "encoder.json"), str(vocab_dir / "vocab.bpe"))
    made = {}
    for name in ("GPT2Tokenizer", "GPT2TokenizerFast"):
        if name == "GPT2TokenizerFast":
            pytest.importorskip("tokenizers")
        made[name] = getattr(transformers, name)(*files, model_max_length=1024)
        made[name].pad_token = made[name].eos_token
    return made


def _plain(encoding):
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in encoding.items()}


TARGET_CALLS = [
    (("Hello world",), dict(text_target="Bye now")),
    ((), dict(text_target="Bye now")),
    ((), dict(text_target=["Bye now", "x"], padding=True, return_tensors="np")),
    ((["Hello world", "a"],), dict(text_target=["Bye now", "x y z w"])),
    ((["Hello world", "a"],), dict(text_target=["Bye", "x y z w"], padding=True, return_tensors="pt")),
    (("Hello", "world"), dict(text_target="Bye", text_pair_target="now")),
    (("Hello world is here",), dict(text_target="Bye now you all", max_length=2, truncation=True)),
    (("Hello world",), dict(text_target="Bye now", return_attention_mask=False)),
    (("a",), dict(text_pair_target="b")),  # without text_target, text_pair_target is not read (as HF)
]


@pytest.mark.parametrize("args,kwargs", TARGET_CALLS, ids=str)
@pytest.mark.parametrize("name", ["GPT2Tokenizer", "GPT2TokenizerFast"])
def test_text_target_gives_labels_as_in_transformers(hf_tokenizers, name, args, kwargs):
    """tok(text, text_target=t): text's inputs plus "labels", t's input_ids (encoded, padded and truncated with
    the same options); tok(text_target=t): t's own encoding."""
    ours = {"GPT2Tokenizer": GPT2Tokenizer, "GPT2TokenizerFast": GPT2TokenizerFast}[name]
    got = ours.from_pretrained("gpt2", pad_token="<|endoftext|>")(*args, **kwargs)
    want = hf_tokenizers[name](*args, **kwargs)
    assert type(got["input_ids"]) is type(got.get("labels", got["input_ids"]))
    assert _plain(got) == _plain(want)


def test_no_text_and_no_target(tok):
    with pytest.raises(ValueError, match="no text given.*text_target"):
        tok()
    with pytest.warns(UserWarning, match="as_target_tokenizer.*deprecated"):
        with tok.as_target_tokenizer():
            assert tok("Hello").input_ids == [15496]
