"""What a new user met on a fresh machine (newuser pass 11: Python 3.9 and 3.13 venvs with the newest numpy, regex
and huggingface_hub, one without a C compiler, the local Hub server standing in for huggingface.co).

- the CLI cutting the new tokens to the one that fits said "generating 1 new tokens";
- the workshop compared a model served as "gpt2" that is not the 124M checkpoint (a mirror, or HF_ENDPOINT at a
  test server) with HF's published activations, and tutorial 05 stopped with an AssertionError;
- TextIteratorStreamer took any timeout, and a negative one failed only when the reader first waited, in its
  own thread, while generate went on;
- the text-generation pipeline called with do_sample=False warned "temperature=0.7 only matter(s) when
  sampling; set do_sample=True", about a temperature the user never set (the pipeline's default);
- decode(a batch, skip_special_tokens=True) said "unhashable type: 'list'" (without the option: use batch_decode).
"""
from __future__ import annotations

import gzip
import pathlib
import queue
import types
import warnings

import pytest

import minigpt2
from conftest import save_tiny_model
from hubserver import tiny_checkpoint_files
from minigpt2 import GPT2Config, GPT2LMHeadModel, TextIteratorStreamer, bpe, pipeline
from minigpt2.tokenizer import AutoTokenizer
from test_cli import run, stdin_is_a_terminal  # noqa: F401 (a fixture)
from test_workshop_parity4 import workshop  # noqa: F401 (a fixture; it puts tutorials/ on the path)


def test_room_for_one_new_token_is_said_in_the_singular(tmp_path, capsys, stdin_is_a_terminal):  # noqa: F811
    tiny_checkpoint_files(tmp_path, n_positions=16)
    prompt = " ".join(["word"] * 15)
    assert len(AutoTokenizer.from_pretrained("gpt2")(prompt).input_ids) == 15
    code, out, err = run(["-m", str(tmp_path), "--greedy", "-n", "50", prompt], capsys)
    assert code == 0 and "generating 1 new token, not 50]" in err, err
    code, out, err = run(["-m", str(tmp_path), "--greedy", "-n", "50", " ".join(["word"] * 14)], capsys)
    assert code == 0 and "generating 2 new tokens, not 50]" in err, err


def test_only_the_124m_gpt2_is_compared_with_the_published_activations(workshop, tmp_path):  # noqa: F811
    """load_model names a model by what it was asked for: "gpt2" from a server that serves another model is
    still "gpt2", but its activations are not the ones HF's documentation prints."""
    served = GPT2LMHeadModel.from_pretrained(save_tiny_model(tmp_path, 64))
    served.workshop_name = "gpt2"
    assert workshop.is_real(served) and not workshop.is_published_gpt2(served)
    real_shape = types.SimpleNamespace(config=GPT2Config(), workshop_name="openai-community/gpt2")
    assert workshop.is_published_gpt2(real_shape)
    other = types.SimpleNamespace(config=GPT2Config(), workshop_name="gpt2-finetuned")
    assert not workshop.is_published_gpt2(other)


@pytest.mark.parametrize("timeout,error", [(-1, ValueError), ("5", TypeError), (float("nan"), ValueError),
                                           (True, TypeError)])
def test_iterator_streamer_refuses_a_timeout_the_queue_cannot_wait(timeout, error):
    """-1 and "5": the exception queue.Queue's wait raises, but at once, in the caller's thread. NaN and True,
    which the queue takes (no wait at all, and 1 s), are not what anyone meant either."""
    if not isinstance(timeout, (bool, float)):
        with pytest.raises(error):
            queue.Queue().get(timeout=timeout)
    with pytest.raises(error, match="timeout must be None .* or a number of seconds >= 0"):
        TextIteratorStreamer(AutoTokenizer.from_pretrained("gpt2"), timeout=timeout)
    assert TextIteratorStreamer(AutoTokenizer.from_pretrained("gpt2"), timeout=0).timeout == 0


def test_greedy_pipeline_call_gives_transformers_text_without_a_warning_about_its_own_temperature(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    directory = save_tiny_model(tmp_path / "model", 64)
    theirs = transformers.pipeline("text-generation", model=directory)
    ours = pipeline("text-generation", model=directory)
    for options in (dict(do_sample=False), dict(do_sample=False, num_beams=2)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = ours("The cat", max_new_tokens=4, **options)
        assert got == theirs("The cat", max_new_tokens=4, **options)
    greedy = pipeline("text-generation", model=directory, do_sample=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert greedy("The cat", max_new_tokens=4) == theirs("The cat", max_new_tokens=4, do_sample=False)
    config = minigpt2.GPT2Config.from_pretrained(directory)
    config.task_specific_params = {"text-generation": {"do_sample": False}}
    config.save_pretrained(directory)
    with warnings.catch_warnings():  # greedy as the model's config asks, the pipeline's temperature unused
        warnings.simplefilter("error")
        got = pipeline("text-generation", model=directory)("The cat", max_new_tokens=4)
    assert got == transformers.pipeline("text-generation", model=directory)("The cat", max_new_tokens=4)
    with pytest.warns(UserWarning, match="temperature=0.5 only matter"):  # one the user chose is still reported
        ours("The cat", max_new_tokens=2, do_sample=False, temperature=0.5)


@pytest.fixture(scope="module")
def hf_fast_tokenizer(tmp_path_factory):
    """transformers' fast GPT-2 tokenizer, from the bundled vocabulary (offline)."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from test_tokenizer_parity2 import hf_tokenizer

    files = tmp_path_factory.mktemp("hf_vocab")
    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (files / theirs).write_bytes(gzip.decompress(pathlib.Path(bpe.DATA_DIR, ours + ".gz").read_bytes()))
    return hf_tokenizer(files, True)


@pytest.mark.parametrize("options", [dict(), dict(skip_special_tokens=True), dict(spaces_between_special_tokens=True)])
def test_decoding_a_batch_is_refused_the_same_way_with_every_option(hf_fast_tokenizer, options):
    """transformers raises TypeError for a batch given to decode; so did minigpt2, but with skip_special_tokens its
    message was "unhashable type: 'list'" instead of pointing to batch_decode."""
    ours = AutoTokenizer.from_pretrained("gpt2")
    batch = ours(["Hello world", "Hi there"], return_tensors="np").input_ids
    for ids in (batch, batch.tolist()):
        with pytest.raises(TypeError):
            hf_fast_tokenizer.decode(ids, **options)
        with pytest.raises(TypeError, match="item 0 is a sequence; use batch_decode"):
            ours.decode(ids, **options)
