"""minigpt2.pipeline("text-generation", ...) against transformers 4.57's pipeline on the same checkpoint.

Greedy and beam search settings give the same text (ids are compared through the decoded text); with the
pipeline's default sampling only the output's form is compared (the draws come from different generators).
"""
from __future__ import annotations

import gzip
import pathlib

import numpy as np
import pytest

import minigpt2

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from conftest import write_hf_checkpoint  # noqa: E402

# transformers 5 changed how the pipeline's max_new_tokens=256 default meets a max_length (passed or from
# task_specific_params); minigpt2 follows 4.57 there, so those tests are 4.x-only.
lengths_as_in_4 = pytest.mark.skipif(int(transformers.__version__.split(".")[0]) >= 5,
                                     reason="pipeline length defaults changed in transformers 5; reference: 4.57")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random GPT-2 with the whole vocabulary and the tokenizer files: (directory, hf pipeline)."""
    d = tmp_path_factory.mktemp("pipe")
    write_hf_checkpoint(d, seed=4, vocab_size=50257, n_positions=320, n_embd=16, n_layer=2, n_head=2)
    from minigpt2 import bpe

    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (d / theirs).write_bytes(gzip.decompress(pathlib.Path(bpe.DATA_DIR, ours + ".gz").read_bytes()))
    hf_tok = transformers.GPT2Tokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(d, attn_implementation="eager").eval()
    return str(d), transformers.pipeline("text-generation", model=hf_model, tokenizer=hf_tok, device="cpu")


@pytest.fixture(scope="module")
def ours(checkpoint):
    model = minigpt2.GPT2LMHeadModel.from_pretrained(checkpoint[0])
    return minigpt2.pipeline("text-generation", model=model, tokenizer=minigpt2.GPT2Tokenizer.from_pretrained(
        checkpoint[0]))


PROMPT = "Hello, I'm a language model,"
GREEDY_CASES = [
    dict(do_sample=False, max_new_tokens=10),
    pytest.param(dict(do_sample=False, max_length=20), marks=lengths_as_in_4),
    dict(do_sample=False, max_new_tokens=8, return_full_text=False),
    dict(do_sample=False, max_new_tokens=8, num_beams=3, num_return_sequences=2),
    dict(do_sample=False, max_new_tokens=6, clean_up_tokenization_spaces=False),
    dict(do_sample=False, max_new_tokens=6, return_tensors=True),
    dict(do_sample=False, max_new_tokens=12, stop_sequence=" the"),
]


@pytest.mark.parametrize("kwargs", GREEDY_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items())
                         if isinstance(k, dict) else None)
def test_greedy_and_beam_outputs_equal_transformers(checkpoint, ours, kwargs):
    with torch.no_grad():
        want = checkpoint[1](PROMPT, **kwargs)
    assert ours(PROMPT, **kwargs) == want


def test_a_list_of_prompts_gives_a_list_of_lists(checkpoint, ours):
    prompts = [PROMPT, "The weather today", ""]  # an empty prompt starts from the bos token, as transformers
    with torch.no_grad():
        want = checkpoint[1](prompts, do_sample=False, max_new_tokens=5)
    assert ours(prompts, do_sample=False, max_new_tokens=5) == want


@lengths_as_in_4
def test_the_pipeline_defaults_and_the_model_card_snippet(checkpoint, ours):
    """transformers 4.57's defaults: sampling (temperature 0.7) and 256 new tokens; max_length= as the model card
    passes it. Draws differ between the libraries; the form and the lengths do not (no eos is ever reached in
    so few tokens unless drawn, so lengths are compared only when neither stopped early)."""
    minigpt2.set_seed(42)
    got = ours(PROMPT, max_length=30, num_return_sequences=5)
    transformers.set_seed(42)
    with torch.no_grad():
        want = checkpoint[1](PROMPT, max_length=30, num_return_sequences=5)
    assert len(got) == len(want) == 5 and all(set(r) == {"generated_text"} for r in got)
    assert all(r["generated_text"].startswith(PROMPT) for r in got)
    cfg = ours.generation_config
    assert (cfg.do_sample, cfg.temperature, cfg.max_new_tokens) == (True, 0.7, 256)
    hf_cfg = checkpoint[1].generation_config
    assert (hf_cfg.do_sample, hf_cfg.temperature, hf_cfg.max_new_tokens) == (True, 0.7, 256)


def test_set_seed_makes_the_pipeline_reproducible(ours):
    minigpt2.set_seed(7)
    a = ours(PROMPT, max_new_tokens=12)
    minigpt2.set_seed(7)
    b = ours(PROMPT, max_new_tokens=12)
    c = ours(PROMPT, max_new_tokens=12)
    assert a == b and a != c


def test_the_model_and_tokenizer_by_path(checkpoint, ours):
    by_path = minigpt2.pipeline("text-generation", model=checkpoint[0])
    assert by_path(PROMPT, do_sample=False, max_new_tokens=6) == ours(PROMPT, do_sample=False, max_new_tokens=6)


@lengths_as_in_4
def test_task_specific_params_are_the_defaults(tmp_path):
    """The config's task_specific_params["text-generation"] set the pipeline's defaults, as in transformers
    (openai-community/gpt2 has {"do_sample": true, "max_length": 50}). Their max_length does not beat the
    pipeline's max_new_tokens=256 in 4.57: 256 tokens are generated (past n_positions transformers crashes;
    minigpt2 says so)."""
    write_hf_checkpoint(tmp_path, vocab_size=50257, n_positions=280, n_embd=16, n_layer=1, n_head=2,
                        task_specific_params={"text-generation": {"do_sample": False, "max_length": 25}})
    tok = minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
    pipe = minigpt2.pipeline("text-generation", model=minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path),
                             tokenizer=tok)
    hf = transformers.pipeline("text-generation", model=transformers.GPT2LMHeadModel.from_pretrained(tmp_path),
                               tokenizer=transformers.GPT2TokenizerFast.from_pretrained(str(_vocab(tmp_path))))
    with torch.no_grad():
        assert pipe(PROMPT) == hf(PROMPT)


def _vocab(directory):
    from minigpt2 import bpe

    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (directory / theirs).write_bytes(gzip.decompress(pathlib.Path(bpe.DATA_DIR, ours + ".gz").read_bytes()))
    return directory


@pytest.mark.parametrize("task", ["fill-mask", "summarization", "text-classification", "text2text-generation"])
def test_other_tasks_name_the_supported_one(ours, task):
    with pytest.raises(ValueError, match="'text-generation'"):
        minigpt2.pipeline(task, model=ours.model, tokenizer=ours.tokenizer)


def test_bad_inputs(ours):
    with pytest.raises(TypeError, match="string or a list of strings"):
        ours(np.array([1, 2]))
    with pytest.raises(ValueError, match="mutually exclusive"):
        ours(PROMPT, return_full_text=False, return_tensors=True)
