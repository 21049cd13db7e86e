"""Messages and parity, third round: a cached private model with a wrong token, a broken HF_HOME, damaged
checkpoint files, extreme temperatures, and the streaming decoder's skip_special_tokens."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from hubserver import HubServer, tiny_checkpoint_files
from minigpt2 import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
from minigpt2.hub import resolve_file

PRIVATE = "someone/private"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny")
    return str(directory), tiny_checkpoint_files(directory)


@pytest.fixture
def hub(checkpoint, tmp_path, monkeypatch):
    with HubServer({PRIVATE: checkpoint[1]}, private={PRIVATE: "hf_secret"}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
            monkeypatch.delenv(name, raising=False)
        yield server


# -- 1. a cached private model, then a wrong or missing token: the model and its tokenizer agree ----------------

@pytest.mark.parametrize("token", ["wrong", None])
def test_cached_private_model_and_its_tokenizer_load_alike_with_a_bad_token(hub, monkeypatch, caplog, token):
    from minigpt2.tokenizer import AutoTokenizer, MissingTokenizerFiles

    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    GPT2LMHeadModel.from_pretrained(PRIVATE)
    with pytest.raises(MissingTokenizerFiles):  # the repository has none: the cache records it (.no_exist)
        AutoTokenizer.from_pretrained(PRIVATE)
    if token is None:
        monkeypatch.delenv("HF_TOKEN")
    else:
        monkeypatch.setenv("HF_TOKEN", token)
    GPT2LMHeadModel.from_pretrained(PRIVATE)  # huggingface_hub serves the cached files
    with caplog.at_level(logging.WARNING, logger="minigpt2.hub"):
        with pytest.raises(MissingTokenizerFiles):  # as offline (the CLI then uses GPT-2's), not a token error
            AutoTokenizer.from_pretrained(PRIVATE)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingTokenizerFiles):  # the same answer offline
        AutoTokenizer.from_pretrained(PRIVATE)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    # a file the cache knows nothing about still needs access
    with pytest.raises(OSError, match="HF_TOKEN"):
        resolve_file(PRIVATE, "never-looked-for.json", required=False)


# -- 2. HF_HOME that is a file: its token file is the cause, not the cache --------------------------------------

def test_broken_hf_home_is_named_not_the_cache(tmp_path):
    # (a new process: huggingface_hub reads HF_HOME, for its token file, when it is imported)
    (tmp_path / "home_file").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                                                            "HF_TOKEN_PATH")}
    env.update(HF_HOME=str(tmp_path / "home_file"), HF_HUB_CACHE=str(tmp_path / "cache"),
               HF_ENDPOINT="http://127.0.0.1:9")  # (nothing listens there: only the cache is looked at)
    code = "from minigpt2.hub import resolve_file\ntry: resolve_file('gpt2', 'config.json')\nexcept OSError as e: print(e)"
    message = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=60).stdout
    assert f"HF_HOME={tmp_path / 'home_file'} cannot be used" in message and "token" in message
    assert "Set HF_HOME" in message and "Set HF_HUB_CACHE" not in message


# -- 3. damaged files -----------------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    directory = tmp_path / "model"
    GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=1, n_head=2, n_positions=16)).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
@pytest.mark.parametrize("kind,message", [("link", "is a broken link"), ("fifo", "is not a regular file"),
                                          ("dir", "is not a regular file")])
def test_a_checkpoint_file_that_is_not_a_file_is_named_so(saved, name, kind, message):
    path = saved / name
    path.unlink()
    if kind == "link":
        os.symlink(saved / "gone", path)
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(OSError) as info:
        GPT2LMHeadModel.from_pretrained(saved)
    assert message in str(info.value) and str(path) in str(info.value) and "has no" not in str(info.value)


def test_damaged_cached_file_offline_says_to_unset_hf_hub_offline(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    GPT2LMHeadModel.from_pretrained(PRIVATE)
    cached = [os.path.join(d, f) for d, _, fs in os.walk(os.environ["HF_HUB_CACHE"]) for f in fs
              if f == "model.safetensors"]
    blob = os.path.realpath(cached[0])
    with open(blob, "r+b") as f:
        f.truncate(100)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises((OSError, ValueError), match="unset HF_HUB_OFFLINE"):
        GPT2LMHeadModel.from_pretrained(PRIVATE)


def test_unwritable_xdg_message_does_not_suggest_the_directory_that_failed(tmp_path, monkeypatch, caplog):
    from minigpt2 import _tuning

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(_tuning, "_told", [])
    with caplog.at_level(logging.WARNING, logger="minigpt2.kernels"):
        _tuning._say_not_saved(str(tmp_path / ".cache" / "minigpt2" / "kernels-x.json"), "read-only")
    assert "XDG_CACHE_HOME" in caplog.text and "$HOME/.cache" not in caplog.text
    caplog.clear()
    monkeypatch.setattr(_tuning, "_told", [])
    with caplog.at_level(logging.WARNING, logger="minigpt2.kernels"):
        _tuning._say_not_saved(str(tmp_path / "xdg" / "minigpt2" / "kernels-x.json"), "read-only")
    assert "$HOME/.cache" in caplog.text


# -- 4. temperatures float32 cannot divide by -----------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=1, n_head=2, n_positions=32, vocab_size=64,
                                      bos_token_id=63, eos_token_id=63), seed=0)


@pytest.mark.parametrize("temperature", [1e-40, 1e-46, 1e39, 5e38])
def test_unusable_temperature_is_a_clear_error_before_generating(model, temperature):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy RuntimeWarning either
        with pytest.raises(ValueError, match=r"temperature=.*float32.*\[1\.175e-38, 3\.403e\+38\]"):
            model.generate(np.array([[1, 2]]), do_sample=True, temperature=temperature, max_new_tokens=2)


@pytest.mark.parametrize("temperature", [1e-4, 0.7, 1e4, 1e-37])
def test_usable_temperatures_sample_without_warnings(model, temperature):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model.generate(np.array([[1, 2]]), do_sample=True, temperature=temperature, max_new_tokens=3, seed=0)
    assert out.shape == (1, 5)


def test_temperature_warper_keeps_huge_scores_finite():
    from minigpt2.generation.processors import TemperatureLogitsWarper

    scores = np.array([[100.0, 99.0, -np.inf], [1.0, 2.0, 3.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = TemperatureLogitsWarper(1e-37)(None, scores)
    assert np.all(out[:, :2] != np.inf) and not np.isnan(out).any()
    assert out[0].argmax() == 0 and out[1].argmax() == 2
    np.testing.assert_array_equal(TemperatureLogitsWarper(0.5)(None, scores[1:]), scores[1:] / np.float32(0.5))


# -- 5. the stream decoder skips what decode(skip_special_tokens=True) skips ---------------------------------

def test_stream_decoder_skips_added_tokens_marked_special_like_decode(tmp_path):
    from minigpt2.streamers import TextIteratorStreamer, decode_stream

    GPT2TokenizerFast.from_pretrained("gpt2").save_pretrained(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    merges = [line for line in (tmp_path / "merges.txt").read_text(encoding="utf-8").split("\n")[1:] if line]

    def added(i, content):
        return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True}

    data = {"version": "1.0", "added_tokens": [added(50256, "<|endoftext|>"), added(50257, "<sp1>")],
            "normalizer": None, "post_processor": None, "decoder": {"type": "ByteLevel"},
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "vocab": vocab, "merges": merges}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    tokenizer = GPT2TokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    ids = tokenizer.encode("a<sp1>b<|endoftext|>")
    assert 50257 not in tokenizer.all_special_ids  # special only in tokenizer.json
    expected = tokenizer.decode(ids, skip_special_tokens=True)
    assert expected == "ab"
    assert "".join(decode_stream(ids, tokenizer, skip_special_tokens=True)) == expected
    streamer = TextIteratorStreamer(tokenizer, skip_special_tokens=True)
    streamer.put(np.array([ids]))
    streamer.end()
    assert "".join(streamer) == expected
    assert "".join(decode_stream(ids, tokenizer)) == tokenizer.decode(ids) == "a<sp1>b<|endoftext|>"
