"""Training data: text tokenized once into a memory-mapped file of token ids, and random batches from it.

    tokens = prepare_tokens("corpus.txt", "out/data", tokenizer)   # {"train": memmap, "val": memmap}
    ids = random_batch(tokens["train"], batch_size=8, seq_len=128, rng=rng)   # [8, 128] int64

A file, or a folder (every file under it whose name matches ``pattern``, in sorted order), is read as
UTF-8, each document tokenized with minigpt2's tokenizer and followed by <|endoftext|>, and the ids
written as uint16 (GPT-2's 50257 ids fit) to train.bin and val.bin: the last ``val_fraction`` of the
tokens is the validation set. A meta.json records what was tokenized; the next run reuses the files when
the sources (paths, sizes, modification times), the tokenizer's vocabulary size and the split are unchanged.
np.memmap reads only the pages a batch touches, so corpora larger than memory work.
"""
from __future__ import annotations

import fnmatch
import json
import os

import numpy as np

__all__ = ["prepare_tokens", "load_tokens", "random_batch", "find_documents"]

DTYPE = np.uint16


def find_documents(source, pattern="*"):
    """The files to read: ``source`` itself, or every file under the folder ``source`` matching ``pattern``."""
    source = os.fspath(source)
    if os.path.isfile(source):
        return [source]
    if os.path.exists(source) and not os.path.isdir(source):  # (/dev/null, a pipe: no size, no modification time)
        raise ValueError(f"--data {source} is not a regular file or a folder; give a text file, or a folder of them")
    if not os.path.isdir(source):
        raise FileNotFoundError(f"--data {source}: no such file or folder")
    found = []
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if fnmatch.fnmatch(f, pattern)]
    if not found:
        raise ValueError(f"--data {source}: no files matching {pattern!r} in this folder")
    return found


def _signature(files, vocab_size, val_fraction):
    return {"files": [[f, os.path.getsize(f), int(os.path.getmtime(f))] for f in files],
            "vocab_size": vocab_size, "val_fraction": val_fraction}


def prepare_tokens(source, directory, tokenizer, *, val_fraction=0.1, pattern="*", log=print) -> dict:
    """Tokenize ``source`` into ``directory``/train.bin and val.bin (once); return both as memmaps."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    vocab_size = len(tokenizer)
    if vocab_size > np.iinfo(DTYPE).max + 1:
        raise ValueError(f"the tokenizer has {vocab_size} tokens, more than a uint16 token file holds (65536)")
    files = find_documents(source, pattern)
    signature = _signature(files, vocab_size, val_fraction)
    meta_path = os.path.join(directory, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("signature") == signature:
            return load_tokens(directory)
    tokens, n_read = _tokenize_files(files, tokenizer, source, log)
    os.makedirs(directory, exist_ok=True)  # (only now: data without text leaves no directory behind)
    n_val = int(len(tokens) * val_fraction)
    split = {"train": tokens[:len(tokens) - n_val], "val": tokens[len(tokens) - n_val:]}
    if os.path.exists(meta_path):  # (the old record goes first: bins cut short by a Ctrl-C are never reused)
        os.unlink(meta_path)
    for name, array in split.items():  # each file written whole, then renamed into place
        tmp = os.path.join(directory, f".{name}.bin.tmp")
        try:
            array.tofile(tmp)
            os.replace(tmp, os.path.join(directory, f"{name}.bin"))
        except BaseException:  # (a full disk, Ctrl-C: no half-written file left behind)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    tmp = meta_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"signature": signature, "tokens": {k: int(len(v)) for k, v in split.items()},
                   "dtype": "uint16"}, f)
    os.replace(tmp, meta_path)
    log(f"tokenized {n_read} file(s): {len(split['train']):,} training and {len(split['val']):,} validation "
        f"tokens -> {directory}")
    return load_tokens(directory)


def _tokenize_files(files, tokenizer, source, log) -> tuple:
    """Every readable file's tokens, each document followed by <|endoftext|>, and how many files were read; a
    ValueError if none holds text."""
    eos = tokenizer.eos_token_id
    chunks, skipped, empty = [], [], 0
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError) as e:
            skipped.append(f"{path} ({type(e).__name__})")
            continue
        if text.strip():
            ids = tokenizer.encode(text, verbose=False)  # (a corpus is longer than the model reads: no warning)
            chunks.append(np.asarray(ids + ([eos] if eos is not None else []), DTYPE))
        else:
            empty += 1
    if not chunks:
        why = ", ".join(part for part in (f"{empty} empty" if empty else "",
                                          f"{len(skipped)} not readable as UTF-8 text, e.g. {skipped[0]}"
                                          if skipped else "") if part)
        raise ValueError(f"--data {source}: no text to train on ({len(files)} file(s): {why}); give UTF-8 text "
                         f"files (convert others with e.g. iconv -t utf-8)")
    if skipped:
        log(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}")
    return np.concatenate(chunks), len(files) - len(skipped)


def load_tokens(directory) -> dict:
    """train.bin and val.bin of ``directory`` as read-only uint16 memmaps (an empty array for an empty file)."""
    out = {}
    for name in ("train", "val"):
        path = os.path.join(directory, f"{name}.bin")
        size = os.path.getsize(path)
        out[name] = np.memmap(path, dtype=DTYPE, mode="r") if size else np.zeros(0, DTYPE)
    return out


def random_batch(tokens, batch_size, seq_len, rng) -> np.ndarray:
    """``batch_size`` windows of ``seq_len`` consecutive tokens at random places.  # -> [B, T] int64"""
    if len(tokens) < seq_len:
        raise ValueError(f"the data holds {len(tokens)} tokens, fewer than one sequence of {seq_len}; use a "
                         f"shorter --seq-len or more data")
    starts = rng.integers(0, len(tokens) - seq_len + 1, batch_size)
    return np.stack([np.asarray(tokens[s:s + seq_len], np.int64) for s in starts])
