"""More of the tokenizer against transformers: the gaps a comparison with transformers 4.57 found.

single_word added tokens in the fast class (the Rust rules), convert_tokens_to_string of strings outside the
vocabulary, directories saved by transformers 5 (extra_special_tokens, "special" flags in tokenizer.json),
apply_chat_template with Jinja, tokenize(pair=, add_special_tokens=), NumPy integers as lengths, a negative stride,
model_input_names. Each class is compared with its transformers namesake (4.x; under transformers 5, which has no
slow class, the fast comparisons run and the slow ones are skipped). All offline, from the bundled vocabulary.
"""
import gzip
import json
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigpt2
from minigpt2 import bpe as B
from minigpt2.tokenizer import AddedToken, GPT2Tokenizer, GPT2TokenizerFast

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
HF5 = int(transformers.__version__.split(".")[0]) >= 5
from test_tokenizer_parity import files  # noqa: E402, F401 (a fixture: the bundled vocabulary under HF's names)




def hf_tokenizer(files, fast, **kwargs):
    """transformers' GPT-2 tokenizer of that kind (in transformers 5 GPT2Tokenizer is the fast one)."""
    if HF5:
        if not fast:
            pytest.skip("transformers 5 has no slow (pure-Python) GPT-2 tokenizer")
        return transformers.GPT2Tokenizer(str(files / "vocab.json"), str(files / "merges.txt"), **kwargs)
    cls = transformers.GPT2TokenizerFast if fast else transformers.GPT2Tokenizer
    return cls(str(files / "vocab.json"), str(files / "merges.txt"), **kwargs)


def pair_of(files, fast, **kwargs):
    """(minigpt2's, transformers') tokenizer of one kind, built with the same arguments."""
    ours = (GPT2TokenizerFast if fast else GPT2Tokenizer)(**kwargs)
    return ours, hf_tokenizer(files, fast, **kwargs)


def outcome(call):
    """What a call gives, or the class of error it raises (to compare "both refuse")."""
    try:
        return call()
    except Exception as e:  # noqa: BLE001 (comparing behaviours)
        return type(e)


# -- 1. single_word added tokens: the fast class follows the Rust rules, the slow class the Python ones ----------
ADDED = [("<x>", dict(single_word=True)), ("ab", dict(single_word=True)), ("<y>", dict(lstrip=True)),
         ("<z>", dict(rstrip=True, single_word=True)), (" sp", dict(rstrip=True)), ("\n\n", dict(rstrip=True)),
         ("<n>", dict(normalized=False, single_word=True)), ("<x>y", dict())]
SINGLE_WORD_TEXTS = ["<|endoftext|><x>", "Hi!<x>", "a\n<x>\nb", "word<x>", "<x>word", "a <x> b", "<x>", "ab",
                     "abc ab cab", "(ab)", "_ab", "ab_", "é<x>", "1<x>2", "<x><x>", "x sp\n\n\nc", "a\n\n<y>b",
                     "a <z>  b", "a<z>b", "<x>y z", "q<n>r <n> s", "<|endoftext|>ab<|endoftext|>", "ab\u0330"]


def with_added(tokenizer, lib):
    tokenizer.add_tokens([lib.AddedToken(content, **flags) for content, flags in ADDED])
    tokenizer.add_special_tokens({"additional_special_tokens": [lib.AddedToken("<s1>", single_word=True)]})
    return tokenizer


@pytest.fixture(scope="module")
def added_pairs(files):
    return {fast: (with_added(GPT2TokenizerFast() if fast else GPT2Tokenizer(), minigpt2),
                   None if HF5 and not fast else with_added(hf_tokenizer(files, fast), transformers))
            for fast in (False, True)}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
@pytest.mark.parametrize("text", SINGLE_WORD_TEXTS)
def test_single_word_and_stripping_tokens_match_their_namesake(added_pairs, fast, text):
    """The fast class once glued a single_word token to its neighbour (the slow rule), which broke
    "<|endoftext|><x>" into plain BPE; now it cuts the text as HF's Rust code does (two passes, word characters)."""
    ours, theirs = added_pairs[fast]
    if theirs is None:
        pytest.skip("transformers 5 has no slow GPT-2 tokenizer")
    assert ours.encode(text) == theirs.encode(text)
    want = theirs.tokenize(text)
    if fast and all(t in theirs.get_vocab() for t in want):  # (HF's strings of lstrip/rstrip tokens hold the
        assert ours.tokenize(text) == want                   # white space they took: a known difference)


def test_single_word_never_breaks_up_endoftext(added_pairs):
    ours, _ = added_pairs[True]
    assert ours.encode("<|endoftext|><x>") == [50256, ours.convert_tokens_to_ids("<x>")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["<x>", "ab", "<y>", "<z>", " sp", "\n\n", "<n>", "<x>y", "<s1>", "<|endoftext|>",
                                 " ", "  ", "\n", "\t", "a", "b", "y", "_", "!", "é", "1", "x", "Hello", " world"]),
                max_size=12).map("".join))
def test_fast_added_tokens_fuzzed_against_hf_fast(added_pairs, text):
    ours, theirs = added_pairs[True]
    assert ours.encode(text) == theirs.encode(text), text


# -- 2. convert_tokens_to_string --------------------------------------------------------------------------------
TOKEN_LISTS = [["HelloĠworld", "!"], ["ĠHELLOWORLDXYZ"], ["Hello", "Ġworld"], ["Hello", " world"], ["é", "x"],
               ["Ã", "©"], ["<|endoftext|>", "Hi"], ["ü€", "Ġ"], ["€Ġ"], [], ["ĠðŁĺ", "Ģ"], ["ĊĊ", "\u00a0"]]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
@pytest.mark.parametrize("tokens", TOKEN_LISTS, ids=range(len(TOKEN_LISTS)))
def test_convert_tokens_to_string_maps_characters_to_bytes(files, fast, tokens):
    """It went through token -> id, so a string outside the vocabulary became "<|endoftext|>" silently."""
    ours, theirs = pair_of(files, fast)
    want = outcome(lambda: theirs.convert_tokens_to_string(list(tokens)))
    if want is KeyError:  # HF's slow decoder: a character that stands for no byte
        with pytest.raises(ValueError, match="not one of the 256 characters"):
            ours.convert_tokens_to_string(tokens)
    else:
        assert ours.convert_tokens_to_string(tokens) == want
        assert "<|endoftext|>" not in want or "<|endoftext|>" in tokens


# -- 3. directories written by transformers 5, and tokenizer_file= ------------------------------------------------
def v5_directory(files, tmp_path, extra_key):
    """A directory as transformers 5's save_pretrained writes it (only tokenizer.json and tokenizer_config.json,
    the additional special tokens under "extra_special_tokens"); with extra_key="additional_special_tokens", the
    same tokenizer in transformers 4's words. Written by transformers itself where it can."""
    d = tmp_path / extra_key
    if HF5:
        hf = transformers.AutoTokenizer.from_pretrained(str(_plain_hf_dir(files, tmp_path)))
    else:
        hf = transformers.GPT2TokenizerFast(str(files / "vocab.json"), str(files / "merges.txt"))
    hf.add_tokens(["newtok", transformers.AddedToken("<ls>", lstrip=True)])
    hf.add_special_tokens({"pad_token": "[PAD]", "additional_special_tokens": ["<sp1>", "<sp2>"]})
    if HF5:
        hf.save_pretrained(str(d))
        assert "extra_special_tokens" in json.loads((d / "tokenizer_config.json").read_text())
        return d
    d.mkdir()
    hf.backend_tokenizer.save(str(d / "tokenizer.json"))
    config = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
              "pad_token": "[PAD]", extra_key: ["<sp1>", "<sp2>"], "add_prefix_space": False, "backend": "tokenizers",
              "model_max_length": 1024, "tokenizer_class": "GPT2Tokenizer", "clean_up_tokenization_spaces": False}
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    return d


def _plain_hf_dir(files, tmp_path):
    d = tmp_path / "plain"
    d.mkdir(exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        (d / name).write_bytes((files / name).read_bytes())
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    return d


SPECIAL_TEXT = "Hello newtok x <ls> y z<sp1>w [PAD]<|endoftext|><sp2>"


def special_behaviour(tokenizer):
    ids = tokenizer.encode(SPECIAL_TEXT)
    return (sorted(tokenizer.all_special_tokens), ids, tokenizer.decode(ids, skip_special_tokens=True),
            tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True),
            tokenizer(SPECIAL_TEXT, return_special_tokens_mask=True)["special_tokens_mask"])


def test_transformers5_directory_has_its_extra_special_tokens(files, tmp_path):
    """"extra_special_tokens" was ignored: <sp1> was not special, decode(skip_special_tokens=True) kept it. The
    reference is transformers 5 reading the same directory, or transformers 4 reading it in its own words."""
    v5 = v5_directory(files, tmp_path, "extra_special_tokens")
    ours = minigpt2.AutoTokenizer.from_pretrained(str(v5))
    if HF5:
        theirs = transformers.AutoTokenizer.from_pretrained(str(v5))
    else:
        theirs = transformers.AutoTokenizer.from_pretrained(str(v5_directory(files, tmp_path,
                                                                             "additional_special_tokens")))
    assert special_behaviour(ours) == special_behaviour(theirs)
    assert {"<sp1>", "<sp2>", "[PAD]"} <= set(ours.all_special_tokens)


def test_tokenizer_file_special_flags(files, tmp_path):
    """tokenizer_file=: HF's fast decode skips every added token marked "special" in tokenizer.json, though
    all_special_tokens lists only the ones it was told about."""
    path = v5_directory(files, tmp_path, "extra_special_tokens") / "tokenizer.json"
    ours = GPT2TokenizerFast(tokenizer_file=str(path))
    theirs = (transformers.GPT2Tokenizer if HF5 else transformers.GPT2TokenizerFast)(tokenizer_file=str(path))
    assert special_behaviour(ours) == special_behaviour(theirs)
    assert ours.decode(ours.encode("a<sp1>b"), skip_special_tokens=True) == "ab"


# -- 4. apply_chat_template ------------------------------------------------------------------------------------
jinja2 = pytest.importorskip("jinja2")
SIMPLE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
FULL = """{{ bos_token }}
{% for message in messages %}
    {% if message['role'] == 'system' and not loop.first %}{{ raise_exception('system first') }}{% endif %}
    {% if loop.index > 4 %}{% break %}{% endif %}
    <|{{ message['role'] }}|>{{ message['content'] | trim }}{{ eos_token }}
{% endfor %}
{% if tools %}{{ tools | tojson }}{% endif %}
{% if add_generation_prompt %}<|assistant|>{% endif %}"""
GENERATION = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}" \
             "{% else %}{{ m.content }}{% endif %}\n{% endfor %}"
CHAT = [{"role": "system", "content": "Be <b>brief</b> & kind."}, {"role": "user", "content": "  hi  "},
        {"role": "assistant", "content": "Hello, 'you' \"there\"!"}, {"role": "user", "content": "é 😀"}]


def hf_chat(tokenizer, conversation, **kwargs):
    """transformers' apply_chat_template with 4.x's default return_dict=False (5.x returns a dict by default)."""
    if kwargs.get("tokenize", True):
        kwargs.setdefault("return_dict", False)
    return tokenizer.apply_chat_template(conversation, **kwargs)


@pytest.mark.parametrize("template", [SIMPLE, FULL, GENERATION], ids=["simple", "full", "generation"])
@pytest.mark.parametrize("kwargs", [dict(tokenize=False), dict(tokenize=False, add_generation_prompt=True),
                                    dict(), dict(return_dict=True), dict(return_dict=True, return_tensors="np"),
                                    dict(tokenize=False, continue_final_message=True),
                                    dict(tokenize=False, tools=[{"name": "f", "parameters": {"<": ">"}}]),
                                    dict(tokenize=False, custom="x")], ids=str)
def test_apply_chat_template_renders_as_transformers(files, template, kwargs):
    """It raised "no template argument was passed" even when one was."""
    ours, theirs = pair_of(files, fast=True)
    got = ours.apply_chat_template(CHAT, chat_template=template, **kwargs)
    want = hf_chat(theirs, CHAT, chat_template=template, **kwargs)
    if isinstance(want, str) or (isinstance(want, list) and not kwargs.get("return_dict")):
        assert got == want
    else:
        assert sorted(got) == sorted(k for k in want if k in ("input_ids", "attention_mask"))
        for key in got:
            np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]))


def test_apply_chat_template_batch_and_errors(files):
    ours, theirs = pair_of(files, fast=True)
    batch = [CHAT[:2], CHAT[1:]]
    assert ours.apply_chat_template(batch, chat_template=FULL) == hf_chat(theirs, batch, chat_template=FULL)
    bad = [CHAT[1], CHAT[0]]
    with pytest.raises(jinja2.exceptions.TemplateError, match="system first"):
        theirs.apply_chat_template(bad, chat_template=FULL)
    with pytest.raises(jinja2.exceptions.TemplateError, match="system first"):
        ours.apply_chat_template(bad, chat_template=FULL)
    for tokenizer in (ours, theirs):
        with pytest.raises(ValueError, match="chat_template is not set and no template argument was passed"):
            tokenizer.apply_chat_template(CHAT)
        with pytest.raises(ValueError, match="not compatible"):
            tokenizer.apply_chat_template(CHAT, chat_template=SIMPLE, add_generation_prompt=True,
                                          continue_final_message=True)


def test_chat_template_from_files_and_kept_on_save(files, tmp_path):
    """A template saved by transformers (chat_template.jinja, or "chat_template" in tokenizer_config.json) is
    loaded, used by default, and written again by save_pretrained, where transformers finds it."""
    theirs = hf_tokenizer(files, fast=True)
    theirs.chat_template = FULL
    theirs.save_pretrained(str(tmp_path / "hf"))
    ours = minigpt2.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert ours.chat_template == FULL
    assert ours.apply_chat_template(CHAT, add_generation_prompt=True) == hf_chat(theirs, CHAT,
                                                                                 add_generation_prompt=True)
    ours.save_pretrained(str(tmp_path / "ours"))
    assert (tmp_path / "ours" / "chat_template.jinja").read_text() == FULL
    assert transformers.AutoTokenizer.from_pretrained(str(tmp_path / "ours")).chat_template == FULL
    # the older form: the template inside tokenizer_config.json; and several named templates
    config = json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": SIMPLE}, {"name": "other", "template": FULL}]
    (tmp_path / "ours" / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "ours" / "chat_template.jinja").unlink()
    again = GPT2Tokenizer.from_pretrained(str(tmp_path / "ours"))
    assert again.chat_template == {"default": SIMPLE, "other": FULL}
    assert again.apply_chat_template(CHAT, tokenize=False) == theirs.apply_chat_template(CHAT, chat_template=SIMPLE,
                                                                                          tokenize=False)
    assert again.apply_chat_template(CHAT, chat_template="other", tokenize=False) == theirs.apply_chat_template(
        CHAT, tokenize=False)
    again.save_pretrained(str(tmp_path / "multi"))
    assert minigpt2.AutoTokenizer.from_pretrained(str(tmp_path / "multi")).chat_template == again.chat_template


def test_without_jinja2_the_error_says_how_to_install_it(monkeypatch):
    from minigpt2.tokenizer import chat

    chat._compile.cache_clear()
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(ImportError, match="pip install jinja2"):
        GPT2TokenizerFast().apply_chat_template(CHAT, chat_template=SIMPLE + " ")
    chat._compile.cache_clear()


# -- 5. tokenize(text, pair=..., add_special_tokens=...) -------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize("kwargs", [dict(add_special_tokens=False), dict(add_special_tokens=True),
                                    dict(pair="Bye now"), dict(pair="Bye now", add_special_tokens=True)], ids=str)
def test_tokenize_takes_pair_and_add_special_tokens(files, fast, bos, kwargs):
    """tokenize(text, add_special_tokens=False) was a TypeError."""
    ours, theirs = pair_of(files, fast, add_bos_token=bos)
    if "pair" in kwargs and not fast:  # HF's slow tokenize ignores the pair (a warning): refused here
        with pytest.raises(TypeError, match="takes one text"):
            ours.tokenize("Hello world", **kwargs)
        return
    if HF5 and bos and "pair" in kwargs and kwargs.get("add_special_tokens"):
        pytest.skip("transformers 5 puts a BOS before each text of a pair; minigpt2 follows 4.x's fast tokenizer")
    assert ours.tokenize("Hello world", **kwargs) == theirs.tokenize("Hello world", **kwargs)


# -- 6., 7. lengths as NumPy integers; a negative stride ---------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
@pytest.mark.parametrize("kwargs", [dict(truncation=True, max_length=np.int64(2)),
                                    dict(max_length=np.int32(3)), dict(padding="max_length", max_length=np.int64(5)),
                                    dict(truncation=True, max_length=np.int64(2), stride=np.int64(1),
                                         return_overflowing_tokens=True),
                                    dict(padding=True, pad_to_multiple_of=np.int64(4)),
                                    dict(truncation=True, max_length=2, stride=True, return_overflowing_tokens=True)],
                         ids=range(6))
def test_numpy_integers_as_lengths(files, fast, kwargs):
    ours, theirs = pair_of(files, fast, pad_token="<|endoftext|>")
    got, want = ours("a b c d e", **kwargs), theirs("a b c d e", **kwargs)
    assert {k: got[k] for k in want if k != "num_truncated_tokens"} == {
        k: v for k, v in want.items() if k != "num_truncated_tokens"}
    assert all(type(i) is int for i in np.ravel(np.asarray(got["input_ids"], dtype=object)))


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
def test_bad_lengths_are_refused(fast):
    tokenizer = GPT2TokenizerFast() if fast else GPT2Tokenizer()
    for bad in (True, 2.0, "2", -1):
        with pytest.raises(ValueError, match="max_length must be a non-negative int"):
            tokenizer("a b c", truncation=True, max_length=bad)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
def test_negative_stride_is_an_error(files, fast):
    """The fast class dropped ids with stride=-1 (HF's fast tokenizer raises an OverflowError)."""
    ours = GPT2TokenizerFast() if fast else GPT2Tokenizer()
    call = dict(truncation=True, max_length=2, stride=-1, return_overflowing_tokens=True)
    if fast:
        with pytest.raises(OverflowError):
            hf_tokenizer(files, fast=True)("a b c d", **call)
    with pytest.raises(ValueError, match="stride must be a non-negative int, got -1"):
        ours("a b c d", **call)


# -- 8. model_input_names --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
def test_model_input_names(files, fast, tmp_path):
    ours, theirs = pair_of(files, fast, model_input_names=["input_ids"])
    assert dict(ours("Hello")) == dict(theirs("Hello")) == {"input_ids": [15496]}
    ours.pad_token = theirs.pad_token = "<|endoftext|>"
    assert dict(ours(["Hello", "a b"], padding=True)) == dict(theirs(["Hello", "a b"], padding=True))
    ours.save_pretrained(str(tmp_path))
    assert type(ours).from_pretrained(str(tmp_path)).model_input_names == ["input_ids"]
    assert (transformers.AutoTokenizer.from_pretrained(str(tmp_path)).model_input_names == ["input_ids"])
