"""pipeline("text-generation") with chats, the streamers' clean-up of spaces and the Auto classes' from_config, used
as transformers 4.57's users use them; every expected value is computed here by transformers on the same tiny
random checkpoint (greedy decoding, so the texts are compared exactly).
"""
from __future__ import annotations

import gzip
import io
import json
import pathlib
from contextlib import redirect_stdout

import numpy as np
import pytest

import minigpt2

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import write_hf_checkpoint  # noqa: E402

# transformers 5 changed TextStreamer's cutting of the text (letters print at once; a newline keeps its last token)
# and its pipeline crashes on a message without "content"; minigpt2 follows 4.57 there.
as_in_4 = pytest.mark.skipif(int(transformers.__version__.split(".")[0]) >= 5,
                             reason="TextStreamer and chat checks changed in transformers 5; reference: 4.57")

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
CHAT = [{"role": "user", "content": "Hi there"}]
PREFILLED = CHAT + [{"role": "assistant", "content": "Well"}]


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory):
    """A tiny GPT-2 with the whole vocabulary and a chat template: (directory, transformers' pipeline with a pad
    token and left padding so that it can batch, minigpt2's pipeline)."""
    pytest.importorskip("jinja2")
    from minigpt2 import bpe

    d = tmp_path_factory.mktemp("chat")
    write_hf_checkpoint(d, seed=4, vocab_size=50257, n_positions=128, n_embd=16, n_layer=2, n_head=2)
    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (d / theirs).write_bytes(gzip.decompress(pathlib.Path(bpe.DATA_DIR, ours + ".gz").read_bytes()))
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    hf = transformers.pipeline("text-generation", model=str(d), device="cpu")
    hf.tokenizer.pad_token_id, hf.tokenizer.padding_side = hf.model.config.eos_token_id, "left"
    return d, hf, minigpt2.pipeline("text-generation", model=str(d))


def hf_call(pipe, *args, **kwargs):
    with torch.no_grad():
        return pipe(*args, **kwargs)


# -- 1. chats: transformers formats them with the tokenizer's chat template; minigpt2 refused every chat --------------

@pytest.mark.parametrize("inputs, kwargs", [
    (CHAT, {}), (CHAT, dict(return_full_text=False)), (CHAT, dict(return_tensors=True)),
    (PREFILLED, {}),  # ends in an assistant message: continued by default
    (PREFILLED, dict(continue_final_message=False)), (CHAT, dict(continue_final_message=True)),
    (CHAT, dict(num_beams=2, num_return_sequences=2)), (tuple(CHAT), {}),
    ([CHAT, PREFILLED], {}), ([CHAT, PREFILLED], dict(batch_size=2)),
], ids=["chat", "new text", "ids", "prefilled", "prefilled, not continued", "continued", "beams", "tuple",
        "two chats", "two chats batched"])
def test_chats_are_formatted_with_the_chat_template(chat_lm, inputs, kwargs):
    """minigpt2 raised "minigpt2 does not format chat messages" for every chat, template or not."""
    kwargs = dict(do_sample=False, max_new_tokens=4, **kwargs)
    assert chat_lm[2](inputs, **kwargs) == hf_call(chat_lm[1], inputs, **kwargs)


def test_a_generator_of_chats(chat_lm):
    want = list(hf_call(chat_lm[1], (c for c in [CHAT, PREFILLED]), do_sample=False, max_new_tokens=3))
    got = chat_lm[2]((c for c in [CHAT, PREFILLED]), do_sample=False, max_new_tokens=3, batch_size=2)
    assert list(got) == want


@as_in_4
def test_a_message_without_role_or_content_says_what_transformers_says(chat_lm):
    with pytest.raises(ValueError) as theirs:
        hf_call(chat_lm[1], [{"role": "user"}], max_new_tokens=3)
    with pytest.raises(ValueError) as ours:
        chat_lm[2]([{"role": "user"}], max_new_tokens=3)
    assert str(ours.value) == str(theirs.value)


# -- 2. streamers with clean_up_tokenization_spaces: minigpt2 ignored it, printing " ." where transformers prints "." --

PROMPT = "Hello , world 's me ."


@pytest.fixture(scope="module")
def lm(chat_lm):
    d = chat_lm[0]
    return (transformers.GPT2LMHeadModel.from_pretrained(d).eval(), transformers.AutoTokenizer.from_pretrained(d),
            minigpt2.GPT2LMHeadModel.from_pretrained(d), minigpt2.AutoTokenizer.from_pretrained(d))


def printed(generate, ids, streamer):
    out = io.StringIO()
    with redirect_stdout(out), torch.no_grad():
        generate(ids, max_new_tokens=8, do_sample=False, streamer=streamer)
    return out.getvalue()


@as_in_4
@pytest.mark.parametrize("options", [dict(clean_up_tokenization_spaces=True),
                                     dict(clean_up_tokenization_spaces=True, skip_prompt=True),
                                     dict(clean_up_tokenization_spaces=True, skip_special_tokens=True)])
@pytest.mark.parametrize("which", ["minigpt2's tokenizer", "transformers' tokenizer"])
def test_text_streamer_cleans_up_spaces_as_transformers(lm, options, which):
    hf_model, hf_tok, model, tok = lm
    ids = hf_tok(PROMPT).input_ids
    want = printed(hf_model.generate, torch.tensor([ids]), transformers.TextStreamer(hf_tok, **options))
    assert "Hello, world's me." in want or options.get("skip_prompt")
    streamer_tok = tok if which == "minigpt2's tokenizer" else hf_tok
    assert printed(model.generate, np.array([ids]), minigpt2.TextStreamer(streamer_tok, **options)) == want


@as_in_4
def test_the_tokenizers_own_clean_up_setting_is_the_streamers_default(lm, chat_lm):
    """A checkpoint saved with "clean_up_tokenization_spaces": true (transformers before 4.45 wrote it)."""
    hf_model, _, model, _ = lm
    hf_tok = transformers.AutoTokenizer.from_pretrained(chat_lm[0], clean_up_tokenization_spaces=True)
    tok = minigpt2.AutoTokenizer.from_pretrained(chat_lm[0], clean_up_tokenization_spaces=True)
    ids = hf_tok(PROMPT).input_ids
    want = printed(hf_model.generate, torch.tensor([ids]), transformers.TextStreamer(hf_tok))
    assert printed(model.generate, np.array([ids]), minigpt2.TextStreamer(tok)) == want


def chunks(streamer_class, tokenizer, ids, tensor, **options):
    """The pieces a streamer hands to on_finalized_text (transformers' empty pieces left out), fed as generate
    feeds it: the first two ids as the prompt, then one id at a time."""
    got = []

    class Recording(streamer_class):
        def on_finalized_text(self, text, stream_end=False):
            if text or stream_end:
                got.append((text, stream_end))

    streamer = Recording(tokenizer, **options)
    streamer.put(tensor([ids[:2]]))
    for i in ids[2:]:
        streamer.put(tensor([i]))
    streamer.end()
    return got


@as_in_4
@pytest.mark.parametrize("text", ["Hello , world 's n't .", "line one .\nline two , 日本語 and 中文 ."])
@pytest.mark.parametrize("which", ["minigpt2's tokenizer", "transformers' tokenizer"])
def test_cleaned_up_text_comes_in_transformers_pieces(lm, text, which):
    """transformers cuts the cleaned-up text at its last space (all of it after a CJK character or a newline),
    which even drops characters ("'s n't" -> "s 't"); minigpt2 gives those same pieces."""
    _, hf_tok, _, tok = lm
    ids = hf_tok(text).input_ids
    want = chunks(transformers.TextStreamer, hf_tok, ids, torch.tensor, clean_up_tokenization_spaces=True)
    streamer_tok = tok if which == "minigpt2's tokenizer" else hf_tok
    assert chunks(minigpt2.TextStreamer, streamer_tok, ids, np.array, clean_up_tokenization_spaces=True) == want


# -- 3. the Auto classes' from_config with a transformers config ------------------------------------------------------

@pytest.mark.parametrize("auto", ["AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification"])
def test_from_config_takes_a_transformers_gpt2_config(auto):
    """minigpt2 said "config must be a GPT2Config, got GPT2Config"."""
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, num_labels=3, dtype="float16")
    want = getattr(transformers, auto).from_config(config)
    got = getattr(minigpt2, auto).from_config(config)
    assert type(got).__name__ == type(want).__name__
    assert got.dtype == str(want.dtype).replace("torch.", "")
    assert {n: tuple(p.shape) for n, p in want.state_dict().items() if n.split(".")[-2:] != ["attn", "bias"]} == \
        {n: tuple(np.shape(p)) for n, p in got.state_dict().items()}


def test_from_config_refuses_another_model_type_naming_it():
    with pytest.raises(ValueError, match="model_type 'bert' is not GPT-2"):
        minigpt2.AutoModelForCausalLM.from_config(transformers.BertConfig())
    with pytest.raises(TypeError, match="from_config takes a GPT2Config"):
        minigpt2.AutoModel.from_config({"n_layer": 1})
