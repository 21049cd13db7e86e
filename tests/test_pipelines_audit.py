"""pipeline("text-generation") and the task heads called as a transformers user calls them, against transformers 4.57.

Every expected value, text and message is computed here by transformers on the same tiny random checkpoint.
Greedy text is compared exactly; logits and losses within conftest's bound, 1e-5 * max(1, max|ref|): float32
products summed in another order differ by a few ulps (2**-24 ~ 6e-8 relative) per accumulation, and through two
layers and a head that stays well under 1e-5 of the largest magnitude.
"""
from __future__ import annotations

import gzip
import json
import pathlib

import numpy as np
import pytest

import minigpt2

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import assert_close, tolerance, write_hf_checkpoint  # noqa: E402

PROMPT = "Hello, I'm a language model,"


def _with_vocabulary(directory):
    """GPT-2's vocabulary files beside a checkpoint, so transformers' tokenizer loads from the same directory."""
    from minigpt2 import bpe

    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (directory / theirs).write_bytes(gzip.decompress(pathlib.Path(bpe.DATA_DIR, ours + ".gz").read_bytes()))
    return directory


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A tiny GPT-2 with the whole vocabulary, tokenizer files and model_max_length 40 (so "hole" can cut):
    (directory, transformers' pipeline, minigpt2's pipeline)."""
    d = tmp_path_factory.mktemp("lm")
    write_hf_checkpoint(d, seed=4, vocab_size=50257, n_positions=320, n_embd=16, n_layer=2, n_head=2)
    _with_vocabulary(d)
    (d / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 40}))
    hf = transformers.pipeline("text-generation", model=str(d), tokenizer=str(d), device="cpu")
    return d, hf, minigpt2.pipeline("text-generation", model=str(d))


def hf_call(pipe, *args, **kwargs):
    """transformers' result, or the exception it raised."""
    try:
        with torch.no_grad():
            return pipe(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 (the reference's failure is the expected value)
        return e


# -- task heads -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    d = tmp_path_factory.mktemp("seqcls")
    hf = write_hf_checkpoint(d, model_class="GPT2ForSequenceClassification", seed=3, num_labels=3)
    return d, hf


def test_sequence_classification_without_pad_token_says_what_transformers_says(classifier):
    """A batch of two without config.pad_token_id: transformers' ValueError, its message first."""
    d, hf = classifier
    ids = np.array([[5, 6, 7], [8, 9, 10]])
    with pytest.raises(ValueError) as theirs:
        hf(torch.tensor(ids))
    model = minigpt2.GPT2ForSequenceClassification.from_pretrained(d)
    with pytest.raises(ValueError, match="pad_token_id") as ours:
        model(ids)
    assert str(ours.value).startswith(str(theirs.value))
    assert_close(model(ids[:1]).logits, hf(torch.tensor(ids[:1])).logits.detach().numpy(), "one row, no pad token")


def test_sequence_classification_warns_that_inputs_embeds_hide_padding(classifier):
    """With config.pad_token_id set, inputs_embeds are scored at their last position, with transformers' warning."""
    d, hf = classifier
    model = minigpt2.GPT2ForSequenceClassification.from_pretrained(d, pad_token_id=0)
    hf.config.pad_token_id = 0
    embeds = np.random.default_rng(0).standard_normal((2, 4, model.config.n_embd)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"will not detect padding tokens in `inputs_embeds`") as record:
        got = model(inputs_embeds=embeds).logits
    assert str(record[0].message) == ("GPT2ForSequenceClassification will not detect padding tokens in "
                                      "`inputs_embeds`. Results may be unexpected if using padding tokens in "
                                      "conjunction with `inputs_embeds.`")
    assert record[0].filename == __file__
    with torch.no_grad():
        assert_close(got, hf(inputs_embeds=torch.tensor(embeds)).logits.numpy(), "logits from inputs_embeds")


# -- text generation ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(return_tensors=False), dict(return_tensors=True, return_text=True),
                                    dict(return_tensors=False, return_text=False), dict(return_text=False)],
                         ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_return_tensors_and_return_text_as_transformers_reads_them(lm, kwargs):
    """transformers returns token ids whenever return_tensors is given, even False, and refuses it beside
    return_text; minigpt2 returned text for return_tensors=False and ids for both."""
    want = hf_call(lm[1], PROMPT, do_sample=False, max_new_tokens=4, **kwargs)
    if isinstance(want, Exception):
        with pytest.raises(type(want), match="mutually exclusive"):
            lm[2](PROMPT, do_sample=False, max_new_tokens=4, **kwargs)
    else:
        assert lm[2](PROMPT, do_sample=False, max_new_tokens=4, **kwargs) == want


@pytest.mark.parametrize("chat", [[{"role": "user", "content": "Hi"}], [[{"role": "user", "content": "Hi"}]],
                                  ({"role": "user", "content": "Hi"},)], ids=["chat", "list of chats", "tuple"])
def test_chat_messages_raise_transformers_error(lm, chat):
    """GPT-2 has no chat template: transformers' pipeline raises its tokenizer's ValueError; minigpt2 raised a
    TypeError of its own, which `except ValueError` (what transformers code catches) missed."""
    want = hf_call(lm[1], chat, max_new_tokens=3)
    assert isinstance(want, ValueError) and "chat_template is not set" in str(want)
    with pytest.raises(ValueError) as ours:
        lm[2](chat, max_new_tokens=3)
    assert str(ours.value).startswith(str(want).split("!")[0] + "!")
    assert "GPT-2 has no chat template" in str(ours.value)


@pytest.mark.parametrize("kwargs", [dict(max_new_tokens=5), dict(max_new_tokens=5, return_full_text=False),
                                    dict(max_new_tokens=5, prefix="Once upon a time. "), dict(max_new_tokens=45),
                                    dict(max_new_tokens=5, handle_long_generation="cut"), dict()],
                         ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "no max_new_tokens")
def test_handle_long_generation_hole(lm, kwargs):
    """A 45-token prompt, model_max_length 40: "hole" keeps its last 40 - max_new_tokens tokens (transformers'
    text exactly), or raises transformers' ValueError. minigpt2 refused handle_long_generation as unknown."""
    kwargs = {"handle_long_generation": "hole", **kwargs}
    want = hf_call(lm[1], PROMPT * 5, do_sample=False, **kwargs)
    if isinstance(want, Exception):
        assert isinstance(want, ValueError)
        with pytest.raises(ValueError) as ours:
            lm[2](PROMPT * 5, do_sample=False, **kwargs)
        assert str(ours.value).startswith(str(want))
    else:
        assert lm[2](PROMPT * 5, do_sample=False, **kwargs) == want
        assert lm[2](PROMPT, do_sample=False, **kwargs) == hf_call(lm[1], PROMPT, do_sample=False, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(max_length=5, max_new_tokens=3),
                                    dict(max_length=5, max_new_tokens=3, return_full_text=False),
                                    dict(max_length=12, max_new_tokens=2, prefix="Once upon a time. ")],
                         ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_a_call_max_length_shorter_than_the_prompt_cuts_it_as_transformers(lm, kwargs):
    """transformers' pipeline gives a call's max_length to the tokenizer too, which keeps the first max_length
    tokens (prefix included) and generates from them; minigpt2 generated from the whole prompt (other text)."""
    want = hf_call(lm[1], PROMPT, do_sample=False, **kwargs)
    with pytest.warns(UserWarning, match="prompt is cut to its first") as record:
        assert lm[2](PROMPT, do_sample=False, **kwargs) == want
    assert record[0].filename == __file__


@pytest.mark.parametrize("kwargs", [dict(), dict(max_new_tokens=3)], ids=["config alone", "and max_new_tokens"])
def test_a_generation_config_given_to_the_call(lm, kwargs):
    """transformers' pipeline takes generation_config= at the call (it replaces the pipeline's sampling defaults,
    keyword settings beside it still win); minigpt2 refused it as an unknown argument."""
    want = hf_call(lm[1], PROMPT, generation_config=transformers.GenerationConfig(max_new_tokens=5), **kwargs)
    assert lm[2](PROMPT, generation_config=minigpt2.GenerationConfig(max_new_tokens=5), **kwargs) == want
    assert lm[2](PROMPT, generation_config=transformers.GenerationConfig(max_new_tokens=5), **kwargs) == want


@pytest.mark.parametrize("prompt, kwargs", [
    (PROMPT * 5, dict(truncation=True)),  # to model_max_length, 40
    (PROMPT, dict(max_length=5, truncation=False)),
    (PROMPT, dict(add_special_tokens=True)), (PROMPT, dict(add_special_tokens=False)),
    (PROMPT, dict(padding=False)), (PROMPT, dict(tokenizer_encode_kwargs={"max_length": 4})),
    (PROMPT, dict(continue_final_message=False)),
], ids=lambda v: ",".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else f"{len(v)} chars")
def test_the_tokenizer_options_of_the_call(lm, prompt, kwargs):
    """transformers' pipeline takes the tokenizer's options (and continue_final_message, for chats) and encodes
    the prompt with them; minigpt2 refused each as an unknown argument."""
    want = hf_call(lm[1], prompt, do_sample=False, max_new_tokens=3, **kwargs)
    assert lm[2](prompt, do_sample=False, max_new_tokens=3, **kwargs) == want


def test_generate_kwargs_says_to_pass_the_settings_themselves(lm):
    """transformers' docstring lists generate_kwargs=, its text-generation pipeline refuses it (as a model kwarg);
    minigpt2 refuses it too, saying how to pass the settings (it only listed what is accepted)."""
    assert isinstance(hf_call(lm[1], PROMPT, generate_kwargs={"max_new_tokens": 3}), ValueError)
    for make in (lambda: lm[2](PROMPT, generate_kwargs={"max_new_tokens": 3}),
                 lambda: minigpt2.pipeline("text-generation", model=str(lm[0]), generate_kwargs={"max_new_tokens": 3})):
        with pytest.raises(TypeError, match=r"'generate_kwargs' \(pass generate\(\)'s settings as keyword arguments"):
            make()


def test_question_answering_clamps_negative_positions_as_transformers(tmp_path):
    """transformers clamps start/end positions to [0, T]: -1 or -100 counts as position 0, past T is ignored.
    minigpt2 refused negative positions, so a batch that trains in transformers raised here."""
    hf = write_hf_checkpoint(tmp_path, model_class="GPT2ForQuestionAnswering", seed=5)
    model = minigpt2.GPT2ForQuestionAnswering.from_pretrained(tmp_path)
    ids = np.random.default_rng(1).integers(0, 99, (4, 7))
    start, end = np.array([-1, 3, -100, 9]), np.array([2, -5, 6, 12])
    with torch.no_grad():
        want = hf(torch.tensor(ids), start_positions=torch.tensor(start), end_positions=torch.tensor(end))
    got = model(ids, start_positions=start, end_positions=end)
    assert_close(got.loss, want.loss.numpy(), "loss")
    assert_close(got.start_logits, want.start_logits.numpy(), "start_logits")
    with pytest.raises(TypeError, match="start_positions must hold integers"):
        model(ids, start_positions=start.astype(np.float32), end_positions=end)


@pytest.mark.parametrize("kwargs", [dict(output_scores=True), dict(output_logits=True, return_full_text=False),
                                    dict(num_beams=2, num_return_sequences=2, output_scores=True),
                                    dict(num_beams=2, output_scores=True, output_logits=True),
                                    dict(output_scores=True, return_tensors=True)],
                         ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_return_dict_in_generate_adds_generate_outputs_to_the_records(lm, kwargs):
    """With return_dict_in_generate=True transformers' pipeline puts generate()'s scores / logits (and, for one
    sequence per prompt, sequences_scores and beam_indices) in each text record; minigpt2 dropped them. Values
    within float32 rounding (the bound of this file's docstring); the text and the keys exactly."""
    kwargs = dict(do_sample=False, max_new_tokens=3, return_dict_in_generate=True, **kwargs)
    want = hf_call(lm[1], PROMPT, **kwargs)
    assert_records_close(lm[2](PROMPT, **kwargs), want)
    if kwargs.get("num_beams") is None:  # a batch (transformers fails there): each prompt's records as alone
        assert_records_close(lm[2]([PROMPT, "Hi"], batch_size=2, **kwargs)[0], want)


def assert_records_close(got, want):
    assert [list(r) for r in got] == [list(r) for r in want]
    for ours, theirs in zip(got, want):
        for key, ref in theirs.items():
            if key in ("generated_text", "generated_token_ids"):
                assert ours[key] == ref
            else:
                ref = np.array(ref, np.float64)
                np.testing.assert_allclose(ours[key], ref, rtol=0, atol=tolerance(ref), err_msg=key)


def test_device_may_be_torch_device_cpu(lm):
    """transformers' pipeline takes device=torch.device("cpu"); minigpt2 refused it (only None, "cpu", -1)."""
    hf = transformers.pipeline("text-generation", model=str(lm[0]), device=torch.device("cpu"))
    ours = minigpt2.pipeline("text-generation", model=str(lm[0]), device=torch.device("cpu"))
    assert ours(PROMPT, do_sample=False, max_new_tokens=3) == hf_call(hf, PROMPT, do_sample=False, max_new_tokens=3)
    with pytest.raises(ValueError, match="CPU only"):
        minigpt2.pipeline("text-generation", model=str(lm[0]), device=torch.device("meta"))


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_generator_of_prompts_gives_an_iterator(lm, batch_size):
    """transformers' pipeline takes a generator of prompts and returns an iterator of each prompt's records;
    minigpt2 raised 'takes a string or a list of strings, got generator'."""
    prompts = [PROMPT, "Hi", "The weather"]
    want = list(hf_call(lm[1], (p for p in prompts), do_sample=False, max_new_tokens=3))
    got = lm[2]((p for p in prompts), do_sample=False, max_new_tokens=3, batch_size=batch_size)
    assert not isinstance(got, list) and list(got) == want
