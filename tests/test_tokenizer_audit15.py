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
