"""A file of the HF cache that another process links again while this one reads it (minigpt2/snapshots.py).

huggingface_hub names a cached file snapshots/<commit>/<filename>, a symbolic link it makes by removing the old
link first; a second process downloading the same file at once does that after the first was handed the path
(huggingface_hub 0.23 for every process that waited for the download: CI's stage of the oldest releases failed
so once in three processes, tests/test_hub_newuser6.py). Here that other process is simulated: each path
resolve_file hands out is unlinked and linked again 50 ms later, and the model and its tokenizer must load as
if nothing happened. A file really missing from a snapshot still fails, after about a second; elsewhere at once.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import minigpt2.hub
import minigpt2.pretrained
import minigpt2.tokenizer.files
from hubserver import HubServer, tiny_checkpoint_files, tiny_checkpoint_with_tokenizer
from minigpt2 import AutoTokenizer, GPT2LMHeadModel
from minigpt2.bpe import VocabularyFileError, read_text
from minigpt2.checkpoint import read_safetensors
from minigpt2.config import read_json_object

REPO = "owner/repo"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return tiny_checkpoint_with_tokenizer(str(tmp_path_factory.mktemp("relinking13")))


@pytest.fixture
def hub_cache(served, tmp_path, monkeypatch):
    """The loopback Hub serving owner/repo, and an empty cache of this test's own."""
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    with HubServer({REPO: served}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        yield tmp_path / "hf_home" / "hub"


def relinked_later(path, delay=0.05):
    """Do what another process's huggingface_hub does to ``path``: remove the link, link it again ``delay`` s on."""
    target = os.readlink(path)
    os.remove(path)
    timer = threading.Timer(delay, os.symlink, (target, path))
    timer.start()
    return timer


def test_a_model_and_tokenizer_load_while_another_process_relinks_their_files(hub_cache, monkeypatch):
    model = GPT2LMHeadModel.from_pretrained(REPO)
    tokenizer = AutoTokenizer.from_pretrained(REPO)
    expected = np.asarray(model(**tokenizer("Hello world", return_tensors="np")).logits)

    real, timers, relinked = minigpt2.hub.resolve_file, [], []

    def resolve_then_relink(*args, **kwargs):
        path = real(*args, **kwargs)
        if path is not None and os.path.islink(path):
            timers.append(relinked_later(path))
            relinked.append(os.path.basename(path))
        return path

    for module in (minigpt2.hub, minigpt2.pretrained, minigpt2.tokenizer.files):
        monkeypatch.setattr(module, "resolve_file", resolve_then_relink)
    try:
        model = GPT2LMHeadModel.from_pretrained(REPO)
        tokenizer = AutoTokenizer.from_pretrained(REPO)
    finally:
        for timer in timers:
            timer.join()
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= set(relinked)
    np.testing.assert_array_equal(np.asarray(model(**tokenizer("Hello world", return_tensors="np")).logits), expected)


@pytest.fixture
def snapshot(tmp_path):
    """A snapshot folder as the HF cache lays it out, with a config.json, a vocab.json and a model.safetensors."""
    blobs = tmp_path / "models--owner--repo" / "blobs"
    folder = tmp_path / "models--owner--repo" / "snapshots" / ("a" * 40)
    blobs.mkdir(parents=True)
    folder.mkdir(parents=True)
    tiny_checkpoint_files(tmp_path / "model")
    contents = {"config.json": (tmp_path / "model" / "config.json").read_bytes(), "vocab.json": b'{"a": 0}',
                "model.safetensors": (tmp_path / "model" / "model.safetensors").read_bytes()}
    for i, (name, data) in enumerate(contents.items()):
        (blobs / f"blob{i}").write_bytes(data)
        os.symlink(os.path.join("..", "..", "blobs", f"blob{i}"), folder / name)
    return folder


READERS = {"config.json": read_json_object, "vocab.json": read_text, "model.safetensors": read_safetensors}


@pytest.mark.parametrize("name", sorted(READERS))
def test_each_reader_waits_for_a_snapshot_file_being_linked_again(snapshot, name):
    path = str(snapshot / name)
    before = READERS[name](path)
    timer = relinked_later(path, delay=0.2)
    try:
        after = READERS[name](path)
    finally:
        timer.join()
    if name == "model.safetensors":
        assert sorted(after) == sorted(before)
        for key in before:
            np.testing.assert_array_equal(np.asarray(after[key]), np.asarray(before[key]))
    else:
        assert after == before


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_file_really_missing_from_a_snapshot_fails_after_about_a_second(snapshot, name):
    path = str(snapshot / name)
    os.remove(path)
    start = time.monotonic()
    with pytest.raises((FileNotFoundError, VocabularyFileError), match=name):
        READERS[name](path)
    assert 0.9 < time.monotonic() - start < 5


@pytest.mark.parametrize("folder", ["", "snapshots/run1"])  # (a folder of one's own named snapshots is not the cache)
@pytest.mark.parametrize("name", sorted(READERS))
def test_a_file_missing_outside_a_snapshot_fails_at_once(tmp_path, name, folder):
    start = time.monotonic()
    with pytest.raises((FileNotFoundError, VocabularyFileError), match=name):
        READERS[name](str(tmp_path / folder / name))
    assert time.monotonic() - start < 0.5
