"""The tokenizer and the pipeline used as a transformers user uses them, against transformers 4.57: the gaps
such a user found (each test failed before its fix). Slow class against transformers' slow class, fast against
fast, both built offline from the bundled vocabulary under HF's file names.
"""
import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
if int(transformers.__version__.split(".")[0]) >= 5:
    pytest.skip("compares with transformers 4.x's slow and fast GPT-2 tokenizers", allow_module_level=True)

from test_tokenizer_audit import files, pair_of, plain  # noqa: E402,F401 (files: a fixture; the same helpers)


# -- pre-split words in pairs ---------------------------------------------------------------------------------
WORDS = [["Hello", "world"], ["short"], ["a", "b", "c"]]


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("call", ["text_and_pair", "batch_of_tuples", "batch_of_lists"])
def test_batches_of_pre_split_pairs(files, fast, call):
    """tok(words_batch, pair_words_batch, is_split_into_words=True) and batch_encode_plus([(words, pair_words)])
    encode pairs, as in transformers (each was 'each word must be a str, got list')."""
    kwargs = dict(is_split_into_words=True, padding=True, truncation="only_second", max_length=4,
                  return_token_type_ids=True)
    results = []
    for tok in pair_of(files, fast, add_prefix_space=True, pad_token="<|endoftext|>"):
        if call == "text_and_pair":
            results.append(plain(tok(WORDS, WORDS[::-1], **kwargs)))
        else:
            items = [(a, b) if call == "batch_of_tuples" else [a, b] for a, b in zip(WORDS, WORDS[::-1])]
            results.append(plain(tok.batch_encode_plus(items, **kwargs)))
    assert results[0] == results[1]


# -- added tokens -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [False, True])
def test_add_tokens_as_special_lists_them_as_the_namesake_does(files, fast):
    """add_tokens([...], special_tokens=True): transformers' slow class lists the tokens among
    additional_special_tokens, its fast class only marks them special in the vocabulary (the fast class listed
    them too)."""
    seen = []
    for tok in pair_of(files, fast):
        added = tok.add_tokens(["<sp1>", "<sp2>"], special_tokens=True)
        ids = tok.encode("a<sp1>b<sp2>")
        seen.append((added, tok.additional_special_tokens, tok.all_special_tokens, tok.all_special_ids,
                     tok.special_tokens_map, len(tok), ids, tok.decode(ids, skip_special_tokens=True),
                     tok.get_special_tokens_mask(ids, already_has_special_tokens=True)))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("fast", [False, True])
def test_an_added_token_already_in_the_vocabulary_shows_bpe_tokens_as_bpe_made_them(files, fast):
    """add_tokens(["Ġworld"]) keeps id 995; " world" still becomes id 995 through BPE, whose token is "Ġworld"
    (the fast class showed the text it covered, " world")."""
    text = " world x Ġworld"
    seen = []
    for tok in pair_of(files, fast):
        tok.add_tokens(["Ġworld"])
        seen.append((tok.encode(text), tok.tokenize(text), tok(text).tokens() if fast else None))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("fast", [False, True])
def test_the_extended_special_token_views(files, fast):
    """special_tokens_map_extended and all_special_tokens_extended (AddedToken objects) list the tokens of
    special_tokens_map and all_special_tokens, as in transformers (they were AttributeErrors)."""
    seen = []
    for tok in pair_of(files, fast):
        tok.add_special_tokens({"pad_token": "[PAD]", "additional_special_tokens": ["<a>", "<b>"]})
        extended = tok.special_tokens_map_extended
        seen.append(({k: [str(t) for t in v] if isinstance(v, list) else str(v) for k, v in extended.items()},
                     [str(t) for t in tok.all_special_tokens_extended],
                     all(hasattr(t, "special") for t in tok.all_special_tokens_extended),
                     getattr(tok, "can_save_slow_tokenizer", None)))
    assert seen[0] == seen[1]


# -- max_length, padding and truncation: HF's warnings and its "no predefined maximum length" ------------------
def logged(tokenizer, logger_name, calls):
    """The warnings `calls(tokenizer)` logs to `logger_name` (transformers' loggers do not propagate)."""
    import io
    import logging

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        calls(tokenizer)
    finally:
        logger.removeHandler(handler)
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("fast", [False, True])
def test_max_length_alone_warns_once_and_do_not_pad_by_name_does_not_truncate(files, fast):
    """tok(text, max_length=n) truncates and logs transformers' 'Truncation was not explicitly activated' warning,
    once per tokenizer; padding="do_not_pad" given by name with max_length does not truncate (as in
    transformers; minigpt2 truncated, silently)."""
    text = "one two three four five"

    def calls(tok):
        return [tok(text, max_length=2)["input_ids"], tok([text], max_length=3)["input_ids"],
                tok(text, max_length=2, padding="do_not_pad")["input_ids"]]

    ours, theirs = pair_of(files, fast)
    transformers.logging.set_verbosity_warning()
    seen = []
    for tok, logger_name in ((ours, "minigpt2.tokenizer"), (theirs, "transformers")):
        results = []
        lines = logged(tok, logger_name, lambda t: results.append(calls(t)))
        seen.append((results, lines))
    assert seen[0] == seen[1]
    assert len(seen[0][1]) == 1


@pytest.mark.parametrize("fast", [False, True])
def test_padding_true_with_max_length_and_no_truncation_warns(files, fast):
    """padding=True with max_length and no truncation: max_length is ignored, with transformers' UserWarning."""
    import warnings

    seen = []
    for tok in pair_of(files, fast, pad_token="<|endoftext|>"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids = tok(["a b c", "d"], padding=True, max_length=2, truncation=False)["input_ids"]
        seen.append((ids, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]))
    assert seen[0] == seen[1]
    assert seen[0][1]


@pytest.mark.parametrize("fast", [False, True])
def test_a_model_max_length_of_1e30_is_no_limit(files, fast):
    """model_max_length 1000000000000000019884624838656 (HF's "no predefined maximum", found in many
    tokenizer_config.json files): padding="max_length" and truncation=True without max_length do nothing, with
    transformers' warnings (padding raised OverflowError)."""
    texts = ["hello world", "x"]

    def calls(tok):
        return [tok(texts, padding="max_length")["input_ids"], tok(texts, truncation=True)["input_ids"],
                tok(texts, padding="max_length", truncation=True)["input_ids"]]

    transformers.logging.set_verbosity_warning()
    seen = []
    for tok, logger_name in zip(pair_of(files, fast, model_max_length=int(1e30), pad_token="<|endoftext|>"),
                                ("minigpt2.tokenizer", "transformers")):
        results = []
        lines = logged(tok, logger_name, lambda t: results.append(calls(t)))
        seen.append((results, lines))
    assert seen[0] == seen[1]
