"""More of the tokenizer against transformers (round 5): offsets of added tokens that strip white space, the slow
class with a white-space added token beside an rstrip one, and apply_chat_template's return_assistant_tokens_mask.

Expected values come from transformers (4.57; under transformers 5, which has no slow class, the fast comparisons
run and the slow ones are skipped), built from the bundled vocabulary, offline.
"""
import numpy as np
import pytest

import minigpt2.tokenizer as ours_lib
from minigpt2.tokenizer import GPT2Tokenizer, GPT2TokenizerFast

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
from test_tokenizer_parity import files  # noqa: E402, F401 (a fixture: the bundled vocabulary under HF's names)
from test_tokenizer_parity2 import HF5, hf_tokenizer, outcome, pair_of  # noqa: E402


def plain(value):
    """Lists from arrays, to compare BatchEncoding values whatever their type."""
    return value.tolist() if hasattr(value, "tolist") else value


# -- 1. offsets of added tokens with lstrip / rstrip (the fast class) ------------------------------------------
STRIP_TOKENS = [("<l>", dict(lstrip=True)), ("<r>", dict(rstrip=True)), ("<b>", dict(lstrip=True, rstrip=True)),
                ("<p>", dict()), (" sp", dict(rstrip=True)), ("\n\n", dict(rstrip=True))]
STRIP_TEXTS = ["<l>a", "a <l>b", "a  \n <l> b", "x <r>  y", "x<r>\n\ny", " <b> ", "a <b>  <b>  c", "<r> <l>",
               "a <l><l> b", "<r>", "  <l>", "<r>  ", "a <r> <r> b", "a\n\n<b>\n\nb", "<p> <l>", "<r> <p>",
               "\t<l>\u3000x", "é <b> é", "x sp\n\n\nc", "x sp \n\nc", "a\n\n\n<l>", "<r>\n\n\n\nz"]


def with_strip_tokens(tokenizer, lib):
    tokenizer.add_tokens([lib.AddedToken(content, **flags) for content, flags in STRIP_TOKENS])
    return tokenizer


@pytest.fixture(scope="module", params=[False, True], ids=["no_prefix", "add_prefix_space"])
def strip_pair(files, request):
    return (with_strip_tokens(GPT2TokenizerFast(add_prefix_space=request.param), ours_lib),
            with_strip_tokens(hf_tokenizer(files, True, add_prefix_space=request.param), transformers))


@pytest.mark.parametrize("text", STRIP_TEXTS)
def test_offsets_of_stripping_added_tokens_cover_the_white_space_they_took(strip_pair, text):
    """An lstrip / rstrip token's offsets were those of its own characters ("a <l>b" -> (2, 5)); HF's Rust code
    reports the span it matched, with the white space it took ((1, 5)), also where two matches overlap."""
    ours, theirs = strip_pair
    got, want = ours(text, return_offsets_mapping=True), theirs(text, return_offsets_mapping=True)
    assert got["input_ids"] == want["input_ids"]
    assert got["offset_mapping"] == want["offset_mapping"]
    assert [got.token_to_chars(t) for t in range(len(got["input_ids"]))] == [
        want.token_to_chars(t) for t in range(len(want["input_ids"]))]
    assert [got.char_to_token(c) for c in range(len(text))] == [want.char_to_token(c) for c in range(len(text))]


def test_offsets_of_stripping_added_tokens_in_a_batch_with_pairs_and_truncation(strip_pair):
    ours, theirs = strip_pair
    texts, pairs = ["a <l>b <r>  c", "<b> x"], ["y  <l>", "z <r>\n"]
    kwargs = dict(return_offsets_mapping=True, truncation=True, max_length=5, return_overflowing_tokens=True, stride=1)
    got, want = ours(texts, pairs, **kwargs), theirs(texts, pairs, **kwargs)
    assert got["input_ids"] == want["input_ids"]
    assert got["offset_mapping"] == want["offset_mapping"]


# -- 2. the slow class: a white-space added token beside an rstrip one ------------------------------------------
@pytest.mark.parametrize("text", ["x sp\n\n\nc", "x sp\n\nc", "x sp \n\nc", "\n\n sp\n\n\nq", "x sp\n\n\n\n\nc",
                                  "a sp\n\n sp\n\n\nb"])
def test_slow_rstrip_token_empties_a_white_space_token_beside_it(files, text):
    """HF's slow tokenize walks the list of pieces as it changes it: " sp"'s rstrip turns the "\\n\\n" after it
    into "", which then is no token and strips nothing ("x sp\\n\\n\\nc" -> x, " sp", "\\n", c). minigpt2 walked a
    copy, so "\\n\\n" still stripped "\\nc" and the "\\n" was lost."""
    ours, theirs = pair_of(files, False)
    for tokenizer, lib in ((ours, ours_lib), (theirs, transformers)):
        tokenizer.add_tokens([lib.AddedToken(" sp", rstrip=True), lib.AddedToken("\n\n", rstrip=True)])
    assert ours.encode(text) == theirs.encode(text)
    assert ours.tokenize(text) == theirs.tokenize(text)


# -- 3. apply_chat_template(return_assistant_tokens_mask=True) --------------------------------------------------
TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}<|assistant|>\n"
            "{% generation %}{{ m['content'] }}<|end|>{% endgeneration %}\n{% else %}<|{{ m['role'] }}|>\n"
            "{{ m['content'] }}<|end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
TEMPLATE_DASHES = ("{%- for m in messages -%}{{ m['role'] }}: {%- if m['role'] == 'assistant' -%}{%- generation -%} "
                   "{{ m['content'] }}{%- endgeneration -%}{%- else %} {{ m['content'] }}{%- endif %}\n{% endfor -%}")
TEMPLATE_NONE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
CHAT = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke"}, {"role": "assistant", "content": "Why did the é cross?"}]
MASK_CASES = [dict(), dict(return_tensors="np"), dict(truncation=True, max_length=12),
              dict(truncation=True, max_length=30), dict(batch=True, padding=True),
              dict(batch=True, padding=True, tokenizer_kwargs=dict(padding_side="left")),
              dict(batch=True), dict(add_generation_prompt=True), dict(chat=CHAT[:1])]


@pytest.mark.parametrize("template", [TEMPLATE, TEMPLATE_DASHES, TEMPLATE_NONE], ids=["plain", "dashes", "no_tag"])
@pytest.mark.parametrize("case", MASK_CASES, ids=range(len(MASK_CASES)))
def test_assistant_tokens_mask_matches_hf(files, template, case):
    """It was a NotImplementedError; now "assistant_masks" marks the tokens of each {% generation %} block."""
    pytest.importorskip("jinja2")
    ours, theirs = pair_of(files, True)
    case = dict(case)
    chat = case.pop("chat", CHAT)
    if case.pop("batch", False):
        chat = [CHAT, CHAT[:2]]
        ours.pad_token = theirs.pad_token = "<|endoftext|>"
    kwargs = dict(chat_template=template, return_dict=True, return_assistant_tokens_mask=True, **case)
    got, want = ours.apply_chat_template(chat, **kwargs), theirs.apply_chat_template(chat, **kwargs)
    assert sorted(got) == sorted(want)
    for key in want:
        assert plain(got[key]) == plain(want[key]), key
    if "return_tensors" in case:
        assert isinstance(got["assistant_masks"], np.ndarray)


def test_assistant_tokens_mask_refusals_match_hf(files):
    pytest.importorskip("jinja2")
    ours, theirs = pair_of(files, True)
    for kwargs in (dict(return_dict=False), dict(return_dict=True, continue_final_message=True)):
        kwargs = dict(chat_template=TEMPLATE, return_assistant_tokens_mask=True, **kwargs)
        assert outcome(lambda: ours.apply_chat_template(CHAT, **kwargs)) is ValueError
        assert outcome(lambda: theirs.apply_chat_template(CHAT, **kwargs)) is ValueError
    if not HF5:  # HF's slow class has no char_to_token: a ValueError; minigpt2's says to use the fast class
        slow = GPT2Tokenizer()
        kwargs = dict(chat_template=TEMPLATE, return_dict=True, return_assistant_tokens_mask=True)
        assert outcome(lambda: hf_tokenizer(files, False).apply_chat_template(CHAT, **kwargs)) is ValueError
        with pytest.raises(ValueError, match="GPT2TokenizerFast"):
            slow.apply_chat_template(CHAT, **kwargs)


@pytest.mark.parametrize("text", STRIP_TEXTS)
def test_stripping_added_tokens_show_the_text_their_match_took(strip_pair, text):
    """HF's fast tokenize() and tokens() show an lstrip / rstrip token as the text its match took ("a <l>b" -> "a",
    " <l>", "b"); minigpt2 showed the token's own characters ("<l>")."""
    ours, theirs = strip_pair
    assert ours.tokenize(text) == theirs.tokenize(text)
    assert ours.tokenize(text, pair="y <r> z", add_special_tokens=True) == theirs.tokenize(
        text, pair="y <r> z", add_special_tokens=True)
    assert ours(text, "y <r> z").tokens() == theirs(text, "y <r> z").tokens()
