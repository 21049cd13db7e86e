"""GPT2TokenizerFast.save_pretrained writes tokenizer.json, as transformers' fast tokenizer does, and legacy_format
chooses the files as there.

Expected values come from transformers and the `tokenizers` library on the same tokenizer: the tokenizer.json
transformers writes for the vocabulary minigpt2 saved (its own conversion, GPT2Converter), and the ids the
`tokenizers` library and transformers compute from minigpt2's file. Offline: the bundled vocabulary.
"""
import json

import pytest

from minigpt2 import AddedToken, GPT2Tokenizer, GPT2TokenizerFast

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
from test_tokenizer_parity2 import HF5  # noqa: E402

TEXTS = ["Hello world", " leading space", "hi <x> there<y>  <s1>", "héllo\n\n wörld 123 ,,; '' it's",
         "<|endoftext|>tail", "日本語 🙂 \t tabs", ""]
CASES = {
    "plain": dict(),
    "add_prefix_space": dict(add_prefix_space=True),
    "add_bos_token": dict(add_bos_token=True),
    "added_tokens": dict(add_bos_token=True, add_prefix_space=True, added=True),
}


def tokenizer(case):
    options = dict(CASES[case])
    added = options.pop("added", False)
    tok = GPT2TokenizerFast.from_pretrained("gpt2", **options)
    if added:
        tok.add_tokens(["<x>", AddedToken("<y>", lstrip=True)])
        tok.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": ["<s1>"]})
    return tok


def merges_as_pairs(data):
    data["model"]["merges"] = [m.split(" ") if isinstance(m, str) else list(m) for m in data["model"]["merges"]]
    return data


@pytest.mark.parametrize("case", list(CASES))
def test_tokenizer_json_is_what_transformers_writes(tmp_path, case):
    """The same JSON as transformers' own conversion of the tokenizer (merges compared as pairs: minigpt2 writes
    them as "a b" strings, which older `tokenizers` versions read too)."""
    ours = tokenizer(case)
    written = ours.save_pretrained(tmp_path / "ours")
    assert str(tmp_path / "ours" / "tokenizer.json") in written
    ours.save_pretrained(tmp_path / "legacy", legacy_format=True)  # vocab.json + merges.txt: HF converts them
    assert not (tmp_path / "legacy" / "tokenizer.json").exists()
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(tmp_path / "legacy"))
    theirs.save_pretrained(str(tmp_path / "hf"))
    ours_json = merges_as_pairs(json.loads((tmp_path / "ours" / "tokenizer.json").read_text(encoding="utf-8")))
    their_json = merges_as_pairs(json.loads((tmp_path / "hf" / "tokenizer.json").read_text(encoding="utf-8")))
    if HF5:  # (transformers 5 writes its own layout; the ids below still must agree)
        assert ours_json["model"] == their_json["model"]
    else:
        assert ours_json == their_json


@pytest.mark.parametrize("case", list(CASES))
def test_tokenizer_json_encodes_as_minigpt2(tmp_path, case):
    ours = tokenizer(case)
    ours.save_pretrained(tmp_path)
    rust = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))  # (reads tokenizer.json first)
    for text in TEXTS:
        expected = ours(text)["input_ids"]
        assert rust.encode(text).ids == expected, text
        assert theirs(text)["input_ids"] == expected, text
        assert rust.decode(expected, skip_special_tokens=False) == ours.decode(expected), text


def test_legacy_format_false_writes_only_tokenizer_json(tmp_path):
    ours = tokenizer("added_tokens")
    written = {p.rsplit("/", 1)[-1] for p in map(str, ours.save_pretrained(tmp_path, legacy_format=False))}
    assert written == {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)
    again = GPT2TokenizerFast.from_pretrained(tmp_path)
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(tmp_path))
    for text in TEXTS:
        assert again(text)["input_ids"] == ours(text)["input_ids"] == theirs(text)["input_ids"], text


def test_slow_tokenizer_writes_no_tokenizer_json(tmp_path):
    """As transformers' slow GPT2Tokenizer: vocab.json and merges.txt only, and legacy_format=False refused."""
    GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(tmp_path)
    assert not (tmp_path / "tokenizer.json").exists() and (tmp_path / "vocab.json").exists()
    with pytest.raises(ValueError, match="only a fast tokenizer"):
        GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(tmp_path / "x", legacy_format=False)
    with pytest.raises(TypeError, match="legacy_format must be None, True or False"):
        GPT2TokenizerFast.from_pretrained("gpt2").save_pretrained(tmp_path / "y", legacy_format="no")
