"""save_pretrained into the folder a model was loaded from, where the files cannot be replaced: on Windows a file a
process has open cannot be replaced or removed, and a loaded model keeps its weights file memory-mapped (not tried on
Windows itself: os.replace and os.remove are made to fail as Windows' do, "[WinError 32] The process cannot access
the file because it is being used by another process"). The error must name the file and say what to do, and the
checkpoint already there must stay whole: no temporary file left, the same bytes, the same logits."""
from __future__ import annotations

import os

import numpy as np
import pytest

from minigpt2 import GPT2Config, GPT2LMHeadModel

IN_USE = "The process cannot access the file because it is being used by another process"


def in_use(real, names):
    def call(*args):
        if os.path.basename(os.fspath(args[-1])) in names:
            raise PermissionError(13, IN_USE)
        return real(*args)
    return call


@pytest.fixture
def saved(tmp_path):
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=2), seed=0)
    folder = tmp_path / "model"
    model.save_pretrained(folder, max_shard_size="20KB")  # shards and an index: an earlier save to remove later
    return folder


def files_of(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def logits(model):
    return np.asarray(model(np.array([[1, 2, 3]])).logits)


def test_replacing_a_weights_file_in_use_is_a_clear_error_and_the_checkpoint_stays(saved, monkeypatch):
    model = GPT2LMHeadModel.from_pretrained(saved)
    before, expected = files_of(saved), logits(model)
    shard = sorted(name for name in before if name.endswith(".safetensors"))[0]
    monkeypatch.setattr(os, "replace", in_use(os.replace, {shard}))
    with pytest.raises(PermissionError) as error:
        model.save_pretrained(saved, max_shard_size="20KB")
    message = str(error.value)
    assert f"cannot replace {os.path.join(saved, shard)}" in message and IN_USE in message
    assert "Windows" in message and "Save to another folder" in message
    monkeypatch.undo()
    assert files_of(saved) == before  # (no .tmp- file left, nothing changed)
    np.testing.assert_array_equal(logits(GPT2LMHeadModel.from_pretrained(saved)), expected)


def test_removing_an_earlier_save_in_use_is_a_clear_error_and_what_loads_is_the_new_save(saved, monkeypatch):
    model = GPT2LMHeadModel.from_pretrained(saved)
    expected = logits(model)
    shards = {name for name in os.listdir(saved) if name.startswith("model-")}
    monkeypatch.setattr(os, "remove", in_use(os.remove, shards))
    with pytest.raises(PermissionError, match="cannot remove the earlier save .*model-0000") as error:
        model.save_pretrained(saved)  # one file now: the shards of the earlier save are stale
    assert IN_USE in str(error.value)
    monkeypatch.undo()
    assert not [name for name in os.listdir(saved) if name.startswith(".tmp-")]
    assert "model.safetensors" in os.listdir(saved)  # (loaders take it before an index: the new save loads)
    np.testing.assert_array_equal(logits(GPT2LMHeadModel.from_pretrained(saved)), expected)


def test_a_file_not_in_use_saves_as_before(saved):
    model = GPT2LMHeadModel.from_pretrained(saved)
    model.save_pretrained(saved)
    assert sorted(os.listdir(saved)) == ["config.json", "generation_config.json", "model.safetensors"]
    np.testing.assert_array_equal(logits(GPT2LMHeadModel.from_pretrained(saved)), logits(model))
