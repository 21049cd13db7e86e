"""GPT2TokenizerFast against HF's GPT2TokenizerFast (Rust `tokenizers`), and everyday tokenizer snippets against
transformers (slow class against slow class, fast against fast), all built offline from the bundled vocabulary.

The fast API (word_ids, tokens, sequence_ids, char_to_token, token_to_chars, word_to_tokens, ...) is compared
question by question on every token, character and word of each row; overflowing windows row by row.
"""
import gzip
import pathlib
import pickle
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt2 import bpe as B
from minigpt2.tokenizer import BatchEncoding, GPT2Tokenizer, GPT2TokenizerFast

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_vocab_fast")
    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (d / theirs).write_bytes(gzip.decompress(pathlib.Path(B.DATA_DIR, ours + ".gz").read_bytes()))
    return d


def pair_of(files, fast=True, **kwargs):
    """(minigpt2's, transformers') tokenizer of the same class, built from the same files with the same options."""
    ours_cls, theirs_cls = ((GPT2TokenizerFast, transformers.GPT2TokenizerFast) if fast
                            else (GPT2Tokenizer, transformers.GPT2Tokenizer))
    vocab, merges = str(files / "vocab.json"), str(files / "merges.txt")
    kwargs.setdefault("model_max_length", 1024)
    return ours_cls(vocab, merges, **kwargs), theirs_cls(vocab, merges, **kwargs)


@pytest.fixture(scope="module")
def fast(files):
    ours, theirs = pair_of(files, pad_token="<|endoftext|>")
    for t in (ours, theirs):
        t.add_tokens(["<new>"])
    return ours, theirs


def plain(value):
    """A BatchEncoding / arrays / tuples as plain lists, for comparing outputs."""
    if isinstance(value, dict) or hasattr(value, "keys"):
        return {k: plain(value[k]) for k in value.keys()}
    if isinstance(value, np.ndarray) or hasattr(value, "tolist"):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def rows_of(enc):
    ids = plain(enc["input_ids"])
    return 1 if not ids or not isinstance(ids[0], list) else len(ids)


def assert_same_fast_api(ours, theirs, texts):
    """Every question of the fast API, on every row, token, character and word."""
    assert ours.is_fast and theirs.is_fast
    assert ours.n_sequences == theirs.n_sequences
    for b in range(rows_of(theirs)):
        assert ours.tokens(b) == theirs.tokens(b)
        assert ours.word_ids(b) == theirs.word_ids(b)
        assert ours.sequence_ids(b) == theirs.sequence_ids(b)
        n = len(theirs.tokens(b))
        for t in range(n):
            assert ours.token_to_chars(b, t) == theirs.token_to_chars(b, t), (b, t)
            assert ours.token_to_word(b, t) == theirs.token_to_word(b, t), (b, t)
            assert ours.token_to_sequence(b, t) == theirs.token_to_sequence(b, t), (b, t)
        assert ours.token_to_chars(b, n) is None is theirs.token_to_chars(b, n)
        for seq in (0, 1) if theirs.n_sequences == 2 else (0,):
            length = max(len(t) for t in texts) + 2
            for c in range(length):
                assert ours.char_to_token(b, c, sequence_index=seq) == theirs.char_to_token(b, c, sequence_index=seq)
                assert ours.char_to_word(b, c, sequence_index=seq) == theirs.char_to_word(b, c, sequence_index=seq)
            for w in range(max([x for x in theirs.word_ids(b) if x is not None], default=0) + 2):
                assert ours.word_to_tokens(b, w, sequence_index=seq) == theirs.word_to_tokens(b, w, sequence_index=seq)
                if theirs.word_to_tokens(b, w, sequence_index=seq) is not None:
                    assert ours.word_to_chars(b, w, sequence_index=seq) == theirs.word_to_chars(b, w, sequence_index=seq)
    ids = plain(theirs["input_ids"])
    if not ids or not isinstance(ids[0], list):  # one text: the index alone
        assert ours.word_ids() == theirs.word_ids() and ours.tokens() == theirs.tokens()
        assert [ours.token_to_chars(t) for t in range(len(ours.tokens()))] == [
            theirs.token_to_chars(t) for t in range(len(theirs.tokens()))]


TEXTS = ["Hello world, it's  me<new>x 😀", "a b", "", " leading", "trailing  ", "tabs\tand\nlines\n\n", "1,000.5 km²",
         "don't DON'T we'll", "中文 日本語のテキスト", "e\u0301 ﬁ", "<|endoftext|>between<|endoftext|>", "$x = __init__()"]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_fast_api_matches_hf(fast, padding_side):
    ours, theirs = fast
    kwargs = dict(padding=True, padding_side=padding_side, return_offsets_mapping=True)
    a, b = ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs)
    assert plain(a) == plain(b)
    assert_same_fast_api(a, b, TEXTS)
    pairs = (TEXTS[:6], TEXTS[6:])
    a, b = ours(*pairs, **kwargs), theirs(*pairs, **kwargs)
    assert plain(a) == plain(b)
    assert_same_fast_api(a, b, TEXTS)
    for text in TEXTS:
        assert_same_fast_api(ours(text), theirs(text), [text])


FRAGMENTS = ["'s", "don't", " ", "  ", "\t", "\n", "😀", "中文", "é", "<new>", "<|endoftext|>", "Hello", " world",
             "1,000", "$x", "a", "  b", "!", "...", "ﬁ"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join), min_size=1, max_size=3),
       st.booleans())
def test_fast_api_matches_hf_on_random_mixes(fast, texts, with_pair):
    ours, theirs = fast
    pair = texts[::-1] if with_pair else None
    a, b = ours(texts, pair, padding=True, return_offsets_mapping=True), theirs(
        texts, pair, padding=True, return_offsets_mapping=True)
    assert plain(a) == plain(b)
    assert_same_fast_api(a, b, texts)


def test_fast_api_with_split_words_and_bos(files):
    ours, theirs = pair_of(files, add_prefix_space=True)
    words = [["hello", "worldly things!"], ["a", "b c", "😀x"]]
    a, b = ours(words, is_split_into_words=True), theirs(words, is_split_into_words=True)
    assert plain(a) == plain(b)
    assert_same_fast_api(a, b, ["worldly things!"])
    a, b = ours(words[0], words[1], is_split_into_words=True), theirs(words[0], words[1], is_split_into_words=True)
    assert_same_fast_api(a, b, ["worldly things!"])
    ours, theirs = pair_of(files, add_bos_token=True)
    a, b = ours("hi there", "you"), theirs("hi there", "you")
    assert plain(a) == plain(b)
    assert_same_fast_api(a, b, ["hi there"])


OVERFLOW = [
    dict(max_length=4, stride=1),
    dict(max_length=4, stride=0),
    dict(max_length=5, stride=2, padding=True),
    dict(max_length=4, stride=1, padding=True, return_tensors="np"),
    dict(max_length=4, stride=2, return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True),
    dict(max_length=64, stride=3),  # shorter than max_length: one window
    dict(stride=0, truncation=False),  # no truncation: one window
]


@pytest.mark.parametrize("kwargs", OVERFLOW)
@pytest.mark.parametrize("side", ["right", "left"])
def test_overflowing_windows_match_hf_fast(files, kwargs, side):
    ours, theirs = pair_of(files, pad_token="<|endoftext|>", truncation_side=side)
    kwargs = dict({"truncation": True}, **kwargs)
    texts = ["one two three four five six seven", "a b", "Hello world, it's 😀 time"]
    for text in (texts[0], texts):
        a = ours(text, return_overflowing_tokens=True, **kwargs)
        b = theirs(text, return_overflowing_tokens=True, **kwargs)
        assert plain(a) == plain(b)
        assert_same_fast_api(a, b, texts)


@pytest.mark.parametrize("strategy", ["only_first", "only_second", "longest_first"])
@pytest.mark.parametrize("bos", [False, True])
def test_overflowing_windows_of_pairs_match_hf_fast(files, strategy, bos):
    ours, theirs = pair_of(files, add_bos_token=bos)
    first, second = "a b c d e f g", "h i j k l m n o p"
    for max_length in (11, 12, 14):
        kwargs = dict(max_length=max_length, truncation=strategy, stride=1, return_overflowing_tokens=True)
        try:
            b = theirs(first, second, **kwargs)
        except BaseException:  # the Rust code panics when the stride leaves a window no room
            with pytest.raises(ValueError, match="stride|cannot truncate"):
                ours(first, second, **kwargs)
            continue
        a = ours(first, second, **kwargs)
        assert plain(a) == plain(b), max_length
        assert_same_fast_api(a, b, [second])


def test_fast_truncation_of_pairs_splits_as_the_rust_code(files):
    """Without overflow, HF's fast tokenizer keeps 3 + 4 of two 10-token texts at max_length=7 (the slow one 4 + 3)."""
    first, second = "a b c d e f g h i j", "k l m n o p q r s t"
    for fast in (True, False):
        ours, theirs = pair_of(files, fast=fast)
        for max_length in (7, 8, 15, 25):
            assert ours(first, second, max_length=max_length, truncation=True) == theirs(
                first, second, max_length=max_length, truncation=True).data, (fast, max_length)


def test_stride_too_large_is_a_clear_error(files):
    ours, _ = pair_of(files)
    with pytest.raises(ValueError, match="stride .4. must be smaller"):
        ours("one two three four five six", max_length=4, truncation=True, stride=4, return_overflowing_tokens=True)


def test_slow_tokenizer_keeps_the_slow_formats(files):
    ours, theirs = pair_of(files, fast=False)
    assert not ours.is_fast and not theirs.is_fast and GPT2TokenizerFast.is_fast
    kwargs = dict(max_length=4, truncation=True, stride=1, return_overflowing_tokens=True)
    text = "one two three four five six seven"
    assert plain(ours(text, **kwargs)) == plain(theirs(text, **kwargs))
    a, b = ours(text), theirs(text)
    assert not a.is_fast and not b.is_fast
    for name in ("word_ids", "tokens", "sequence_ids"):
        with pytest.raises(ValueError) as mine:
            getattr(a, name)()
        with pytest.raises(ValueError) as hf:
            getattr(b, name)()
        assert str(mine.value) == str(hf.value)


def test_max_len_single_sentence_and_pair(files):
    for bos in (False, True):
        for fast in (False, True):
            ours, theirs = pair_of(files, fast=fast, add_bos_token=bos)
            assert ours.max_len_single_sentence == theirs.max_len_single_sentence
            assert ours.max_len_sentences_pair == theirs.max_len_sentences_pair


def test_batch_encoding_to_device(fast):
    enc = fast[0]("Hello world", return_tensors="np")
    assert enc.to("cpu") is enc
    torch = pytest.importorskip("torch")
    assert enc.to(torch.device("cpu")) is enc
    with pytest.raises(ValueError, match="only device is 'cpu'"):
        enc.to("cuda")


def test_fast_batch_encoding_pickles_with_its_alignment(fast):
    enc = fast[0](["Hello world", "a"], padding=True)
    again = pickle.loads(pickle.dumps(enc))
    assert again == enc and again.word_ids(1) == enc.word_ids(1) == [0, None] and again.tokens(0) == ["Hello", "Ġworld"]
    assert isinstance(again, BatchEncoding) and again.is_fast


def test_decode_of_an_id_past_the_vocabulary_follows_the_class(files):
    """After resize_token_embeddings(pad_to_multiple_of=64) a model can sample an id the tokenizer lacks: HF's fast
    tokenizer leaves it out, its slow one fails (a TypeError from inside join; minigpt2: a ValueError naming it)."""
    ours, theirs = pair_of(files)
    for ids in ([15496, 50300], [50300], [15496, 50257, 995], np.array([15496, 50300])):
        assert ours.decode(ids) == theirs.decode(ids)
    assert ours.batch_decode([[15496, 50300], [995]]) == theirs.batch_decode([[15496, 50300], [995]])
    slow, hf_slow = pair_of(files, fast=False)
    with pytest.raises(TypeError):
        hf_slow.decode([15496, 50300])
    with pytest.raises(ValueError, match="token id 50300 .item 1. is not in the vocabulary"):
        slow.decode([15496, 50300])
    with pytest.raises(ValueError, match="token id -1"):
        ours.decode([15496, -1])  # HF: OverflowError


@pytest.mark.parametrize("fast_class", [False, True])
def test_apply_chat_template_is_a_value_error(files, fast_class):
    ours, theirs = pair_of(files, fast=fast_class)
    chat = [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError) as hf:
        theirs.apply_chat_template(chat)
    with pytest.raises(ValueError) as mine:
        ours.apply_chat_template(chat)
    head = "Cannot use chat template functions because tokenizer.chat_template is not set"
    assert str(hf.value).startswith(head) and str(mine.value).startswith(head)


# -- everyday snippets, each run with minigpt2 and with transformers (slow class against slow, fast against fast) ---
def make(lib, fast, files, **kwargs):
    """lib's slow or fast class with GPT-2's vocabulary (minigpt2: the bundled tables, shared, quick to build)."""
    cls = getattr(lib, "GPT2TokenizerFast" if fast else "GPT2Tokenizer")
    kwargs.setdefault("model_max_length", 1024)
    t = cls(**kwargs) if lib.__name__ == "minigpt2" else cls(str(files / "vocab.json"), str(files / "merges.txt"),
                                                            **kwargs)
    t.again = lambda **options: make(lib, fast, files, **options)  # the same class, other options
    return t


def padded(t):
    t.pad_token = t.eos_token
    return t


SNIPPETS = {
 "pad_eos": lambda t: padded(t)(["a", "bb cc dd"], padding=True),
 "left": lambda t: (setattr(padded(t), "padding_side", "left"), t(["a", "bb cc dd"], padding=True))[1],
 "no_mask": lambda t: t("Hello", return_attention_mask=False),
 "trunc1": lambda t: t(["Hello world"] * 2, truncation=True, max_length=1),
 "maxlen_pad": lambda t: padded(t)("x " * 10, padding="max_length", max_length=16),
 "pair": lambda t: t("a", "b c"),
 "pair_tt": lambda t: t("a", "b c", return_token_type_ids=True),
 "only_second": lambda t: t(["a", "b"], ["c d e", "d e"], truncation="only_second", max_length=3),
 "only_first": lambda t: t(["a b c d", "b"], ["c", "d e"], truncation="only_first", max_length=3),
 "longest_first": lambda t: t(["a b c d", "b"], ["c e f g h", "d e"], truncation="longest_first", max_length=5),
 "add_tokens": lambda t: (t.add_tokens(["<new>", "hello"]), len(t), t("a<new>b hello")),  # (decode: test_tokenizer)
 "add_special_pad": lambda t: (t.add_special_tokens({"pad_token": "[PAD]"}), t.pad_token_id, t(["a", "b c"], padding=True), len(t)),
 "add_special_additional": lambda t: (t.add_special_tokens({"additional_special_tokens": ["<|user|>"]}), t.additional_special_tokens, t("<|user|>hi"), t.decode(t("<|user|>hi")["input_ids"], skip_special_tokens=True)),
 "batch_decode_skip": lambda t: t.batch_decode([[15496, 50256, 995], [50256]], skip_special_tokens=True),
 "decode_eot": lambda t: t.decode(t.encode("Hello <|endoftext|>"), skip_special_tokens=True),
 "ids_to_tokens": lambda t: t.convert_ids_to_tokens(t.encode("Hello world")),
 "tokenize": lambda t: t.tokenize("Hello world, don't"),
 "special_map": lambda t: (t.special_tokens_map, t.all_special_tokens, t.all_special_ids),
 "special_ids": lambda t: (t.eos_token_id, t.bos_token_id, t.pad_token_id, t.unk_token_id, t.sep_token, t.cls_token_id),
 "np": lambda t: t("Hello", return_tensors="np"),
 "np_len": lambda t: padded(t)(["Hello", "Hi there"], padding=True, return_tensors="np", return_length=True),
 "no_special": lambda t: t.encode("Hello", add_special_tokens=False),
 "multiple": lambda t: padded(t)("hello", padding=True, pad_to_multiple_of=8),
 "pad_fn": lambda t: padded(t).pad({"input_ids": [[1, 2], [3]]}),
 "pad_fn_np": lambda t: padded(t).pad({"input_ids": [[1, 2], [3]]}, return_tensors="np"),
 "pad_list_of_dicts": lambda t: padded(t).pad([{"input_ids": [1, 2]}, {"input_ids": [3]}]),
 "stm": lambda t: t("Hello world", return_special_tokens_mask=True),
 "sizes": lambda t: (t.model_max_length, len(t), t.vocab_size, t.padding_side, t.truncation_side),
 "vocab": lambda t: (t.get_vocab()["hello"], len(t.get_vocab())),
 "decode_np": lambda t: t.decode(np.array([15496, 995])),
 "decode_np_2d_batch": lambda t: t.batch_decode(np.array([[15496, 995], [995, 15496]])),
 "encode_plus": lambda t: padded(t).encode_plus("Hello", max_length=10, padding="max_length"),
 "batch_encode_plus": lambda t: padded(t).batch_encode_plus(["a", "b c"], padding=True),
 "trunc_left": lambda t: (setattr(t, "truncation_side", "left"), t("one two three", truncation=True, max_length=2))[1],
 "tokens_to_string": lambda t: t.convert_tokens_to_string(["Hello", "Ġworld"]),
 "cleanup": lambda t: (t.clean_up_tokenization_spaces, t.decode(t.encode("Hello , world ."), clean_up_tokenization_spaces=True)),
 "num_special": lambda t: (t.num_special_tokens_to_add(), t.num_special_tokens_to_add(pair=True)),
 "bos": lambda t: (lambda b: (b("hi"), b("hi", "there"), b.decode(b("hi")["input_ids"], skip_special_tokens=True)))(t.again(add_bos_token=True)),
 "prefix_space": lambda t: (lambda b: (b("Hello world"), b(["a", "b"], is_split_into_words=True)))(t.again(add_prefix_space=True)),
 "encode_max_length": lambda t: t.encode("one two three four", max_length=2, truncation=True),
 "call_max_length_only": lambda t: t("one two three four", max_length=2),
 "convert_tokens_to_ids": lambda t: (t.convert_tokens_to_ids(["Hello", "nope-not-a-token"]), t.convert_tokens_to_ids("Ġworld")),
 "get_added_vocab": lambda t: (t.add_tokens(["<x>"]), t.get_added_vocab()),
 "added_tokens_encoder": lambda t: t.added_tokens_encoder,
 "pad_token_type": lambda t: (t.pad_token_type_id, t.model_input_names),
 "empty": lambda t: t(""),
 "empty_batch_pad": lambda t: padded(t)(["", "a"], padding=True),
 "return_length_batch": lambda t: t(["a", "b c d"], return_length=True),
 "return_length_batch_pad": lambda t: padded(t)(["a", "b c d"], return_length=True, padding=True),
 "len_single_pad": lambda t: padded(t)("a", return_length=True, padding="max_length", max_length=4),
}
def save_load(src, dst, fast, files):
    """Save with src (after add_tokens and a new pad token), load with dst: what the loaded tokenizer does."""
    a = make(src, fast, files); a.add_tokens(["<new>"]); a.add_special_tokens({"pad_token": "[PAD]"})
    d = tempfile.mkdtemp()
    a.save_pretrained(d)
    b = getattr(dst, "GPT2TokenizerFast" if fast else "GPT2Tokenizer").from_pretrained(d)
    return (b("x<new>y [PAD]")["input_ids"], b.pad_token, len(b), b.special_tokens_map, b.padding_side, b.model_max_length)


@pytest.mark.parametrize("fast_class", [False, True])
@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_everyday_snippets_match_transformers(files, name, fast_class):
    snippet = SNIPPETS[name]
    assert plain(snippet(make(__import__("minigpt2"), fast_class, files))) == plain(
        snippet(make(transformers, fast_class, files)))


@pytest.mark.parametrize("fast_class", [False, True])
def test_save_and_load_round_trips_both_ways(files, fast_class):
    import minigpt2
    for src, dst in ((minigpt2, transformers), (transformers, minigpt2), (minigpt2, minigpt2)):
        assert plain(save_load(src, dst, fast_class, files)) == plain(save_load(transformers, transformers, fast_class,
                                                                               files)), (src.__name__, dst.__name__)
