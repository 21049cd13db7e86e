"""tokenizer.save_pretrained over an earlier save, on a disk that fills up midway: every file is whole, the old one or
the new one, never cut short (HF's save writes in place; a cut vocab.json is a tokenizer that no longer loads)."""
from __future__ import annotations

import builtins
import errno
import os

import pytest

import minigpt2
from minigpt2.tokenizer import files


class _FullDisk:
    """A file open for writing on a disk with ``room`` bytes left: writes what fits, then ENOSPC with no file name
    (as a real full disk does)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, text):
        if len(text) > self.room[0]:
            self.f.write(text[:self.room[0]])
            self.room[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room[0] -= len(text)
        return self.f.write(text)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("cls", [minigpt2.GPT2Tokenizer, minigpt2.GPT2TokenizerFast])
@pytest.mark.parametrize("share", [0.0, 0.001, 0.3, 0.6, 0.99])
def test_a_save_on_a_full_disk_leaves_every_earlier_file_whole(cls, share, tmp_path, monkeypatch):
    """The disk fills after ``share`` of the save's characters: each file is then the earlier save's or the new
    save's, whole, and the folder still loads."""
    tok = cls.from_pretrained("gpt2")
    out, whole = tmp_path / "out", tmp_path / "whole"
    tok.save_pretrained(out)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    tok.add_tokens(["<new token>"])
    tok.add_special_tokens({"pad_token": "<pad>"})
    tok.save_pretrained(whole)  # (what this save writes when there is room)
    new = {name: (whole / name).read_bytes() for name in os.listdir(whole)}
    left = [int(share * sum(len(c.decode()) for c in new.values()))]

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return _FullDisk(f, left) if "w" in mode else f

    monkeypatch.setattr(files, "open", open_on_a_full_disk, raising=False)
    with pytest.raises(OSError) as caught:
        tok.save_pretrained(out)
    assert caught.value.errno == errno.ENOSPC
    after = {name: (out / name).read_bytes() for name in os.listdir(out)}
    assert set(after) <= set(before) | set(new), "a partial file was left"
    for name, content in after.items():
        assert content in (before.get(name), new[name]), f"{name} is cut short"
    monkeypatch.undo()
    again = cls.from_pretrained(out)  # (still loads, and reads text as GPT-2 does)
    assert again("Hello world")["input_ids"] == [15496, 995] == tok("Hello world")["input_ids"]
