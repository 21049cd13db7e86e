"""Training data: text tokenized once into a memory-mapped file of token ids, and random batches from it.

    tokens = prepare_tokens("corpus.txt", "out/data", tokenizer)   # {"train": memmap, "val": memmap}
    ids = random_batch(tokens["train"], batch_size=8, seq_len=128, rng=rng)   # [8, 128] int64

A file, or a folder (every file under it whose name matches ``pattern``, in sorted order), is read as
UTF-8, each document tokenized with minigpt2's tokenizer and followed by <|endoftext|>, and the ids
written as uint16 (GPT-2's 50257 ids fit) to train.bin and val.bin: the last ``val_fraction`` of the
tokens is the validation set. A meta.json records what was tokenized; the next run reuses the files when
the sources (paths, sizes, modification times), the tokenizer's vocabulary size and the split are unchanged.
A file is read and tokenized a piece at a time (encode_stream: the ids of the whole text, in bounded memory), the
ids written to disk as they come; np.memmap reads only the pages a batch touches, so corpora larger than memory
work.
"""
from __future__ import annotations

import fnmatch
import functools
import json
import os

import numpy as np
import regex

__all__ = ["prepare_tokens", "load_tokens", "random_batch", "find_documents", "encode_stream"]

DTYPE = np.uint16


def find_documents(source, pattern="*", left_out=None):
    """The files to read: ``source`` itself, or every file under the folder ``source`` matching ``pattern``, but
    hidden ones (.train.lock, .DS_Store; unless ``pattern`` starts with a dot) and the folders of models and
    training runs (a checkpoint's vocab.json and merges.txt are not text to learn, nor tokenized data: --data .
    beside --out would read the run's own files). ``left_out``: a list to which those folders are added."""
    source = os.fspath(source)
    if os.path.isfile(source):
        return [source]
    if os.path.exists(source) and not os.path.isdir(source):  # (/dev/null, a pipe: no size, no modification time)
        raise ValueError(f"--data {source} is not a regular file or a folder; give a text file, or a folder of them")
    if not os.path.isdir(source):
        raise FileNotFoundError(f"--data {source}: no such file or folder")
    found, hidden = [], pattern.startswith(".")
    for root, dirs, files in os.walk(source):
        if root != source and _holds_a_run(files):
            dirs[:] = []
            if left_out is not None:
                left_out.append(root)
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files)
                  if fnmatch.fnmatch(f, pattern) and (hidden or not f.startswith("."))]
    if not found:
        raise ValueError(f"--data {source}: no files matching {pattern!r} in this folder" + (
            f" (besides the folders of models or tokenized data, left out: {', '.join(left_out)})" if left_out else ""))
    return found


def _holds_a_run(names) -> bool:
    """Whether a folder holding files ``names`` is a model's (save_pretrained), a training run's, or tokenized data."""
    names = set(names)
    return "trainer_state.json" in names or {"meta.json", "train.bin"} <= names or (
        "config.json" in names and bool(names & {"model.safetensors", "model.safetensors.index.json",
                                                  "pytorch_model.bin"}))


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
    left_out = []
    files = find_documents(source, pattern, left_out)
    if left_out:
        log(f"--data {source}: left out {len(left_out)} folder(s) of models, training runs or tokenized data: "
            f"{', '.join(left_out)}")
    signature = _signature(files, vocab_size, val_fraction)
    meta_path = os.path.join(directory, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("signature") == signature:
            return load_tokens(directory)
    made = not os.path.isdir(directory)
    os.makedirs(directory, exist_ok=True)
    every = os.path.join(directory, ".tokens.tmp")  # all the ids, then cut into train.bin and val.bin
    val_tmp = os.path.join(directory, ".val.bin.tmp")
    try:
        n_tokens, n_read = _tokenize_files(files, tokenizer, source, log, every)
        n_val = int(n_tokens * val_fraction)
        n_train = n_tokens - n_val
        if os.path.exists(meta_path):  # (the old record goes first: bins cut short by a Ctrl-C are never reused)
            os.unlink(meta_path)
        _copy_tail(every, n_train, val_tmp)
        with open(every, "r+b") as f:
            f.truncate(n_train * DTYPE().itemsize)
        os.replace(every, os.path.join(directory, "train.bin"))  # each file written whole, then renamed into place
        os.replace(val_tmp, os.path.join(directory, "val.bin"))
    except BaseException:  # (no text, a full disk, Ctrl-C: no half-written file left behind)
        for tmp in (every, val_tmp):
            if os.path.exists(tmp):
                os.unlink(tmp)
        if made and not os.listdir(directory):  # (data without text leaves no directory behind)
            os.rmdir(directory)
        raise
    tmp = meta_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"signature": signature, "tokens": {"train": n_train, "val": n_val}, "dtype": "uint16"}, f)
    os.replace(tmp, meta_path)
    log(f"tokenized {n_read} file(s): {n_train:,} training and {n_val:,} validation tokens -> {directory}")
    return load_tokens(directory)


def _copy_tail(path, start, dest, block=1 << 22):
    """Write the token ids of ``path`` from index ``start`` on into ``dest``, ``block`` ids at a time."""
    ids = np.memmap(path, dtype=DTYPE, mode="r") if os.path.getsize(path) else np.zeros(0, DTYPE)
    with open(dest, "wb") as f:
        for at in range(start, len(ids), block):
            f.write(ids[at:at + block].tobytes())
    del ids  # (the map is closed before the file is cut short)


def _tokenize_files(files, tokenizer, source, log, dest) -> tuple:
    """Write every readable file's tokens to ``dest`` (uint16), each document followed by <|endoftext|>; return
    how many tokens were written and how many files were read, or a ValueError if none holds text."""
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    skipped, empty, n_tokens = [], 0, 0
    with open(dest, "wb") as out:
        for path in files:
            n_file, has_text, failed = 0, False, None
            try:
                with open(path, encoding="utf-8") as f:
                    for ids, text in encode_stream(iter(functools.partial(f.read, PIECE_CHARS), ""), tokenizer):
                        out.write(np.asarray(ids, DTYPE).tobytes())
                        n_file += len(ids)
                        has_text = has_text or bool(text.strip())
            except (UnicodeDecodeError, OSError) as e:
                failed = f"{path} ({type(e).__name__})"
                skipped.append(failed)
            if has_text and not failed:
                out.write(np.asarray(eos, DTYPE).tobytes())
                n_tokens += n_file + len(eos)
            else:  # (an empty file, or one that is not UTF-8 half-way: its ids so far are taken back)
                empty += not failed
                out.seek(n_tokens * DTYPE().itemsize)
                out.truncate()
    if not n_tokens:
        why = ", ".join(part for part in (f"{empty} empty" if empty else "",
                                          f"{len(skipped)} not readable as UTF-8 text, e.g. {skipped[0]}"
                                          if skipped else "") if part)
        raise ValueError(f"--data {source}: no text to train on ({len(files)} file(s): {why}); give UTF-8 text "
                         f"files (convert others with e.g. iconv -t utf-8)")
    if skipped:
        log(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}")
    return n_tokens, len(files) - len(skipped)


# -- a long text, tokenized a piece at a time ----------------------------------------------------------------------
# A text of 1 GB read whole takes about 11 bytes of memory per character (the str, then a Python int per token).
# Read PIECE_CHARS characters at a time instead, and tokenize up to a cut that changes no token: the ids of the
# pieces, one after the other, are those of the whole text. A cut goes right after a character that is not white
# space and before one that is, the way minigpt2.bpe cuts its chunks: no pre-tokenizer piece holds a non-space
# followed by a space (its alternatives are letters, digits or other symbols with at most one space *in front*,
# contractions, or runs of white space), and the only look-ahead, (?!\S), sits inside runs of white space. \S and
# \s here are the `regex` module's, as in the pre-tokenizer. Besides, an added token (<|endoftext|>, a fine-tuned
# model's own) must not be within its length of the cut, so its lstrip / rstrip / single_word rules see the same
# neighbours; and a tokenizer that puts a space in front of the text gets it once: the fast class adds it to
# each plain part that does not start with a space (so a cut goes before a space " " only), the slow class to the
# whole text (so the pieces after the first are encoded with add_prefix_space=False).
PIECE_CHARS = 1 << 20
_CUT_BEFORE_WHITE_SPACE = regex.compile(r"\S(?=\s)", regex.REVERSE)  # (REVERSE: search() finds the last one)
_CUT_BEFORE_SPACE = regex.compile(r"\S(?= )", regex.REVERSE)


def encode_stream(texts, tokenizer):
    """(ids, text) for each piece of the concatenated ``texts`` (an iterable of str) that can be tokenized on its
    own: the ids, one after the other, are ``tokenizer.encode("".join(texts))``'s, without holding the whole."""
    added = [token for token in tokenizer.added_tokens_encoder if token]
    reach = max(map(len, added), default=0) + 1  # (a character either side: single_word looks at both)
    cuts = _CUT_BEFORE_SPACE if tokenizer.is_fast and tokenizer.add_prefix_space else _CUT_BEFORE_WHITE_SPACE
    held, first = "", True
    for text in texts:
        looked = max(0, len(held) - reach)  # (the places before it were looked at, and cannot be cut)
        held += text
        cut = _safe_cut(held, cuts, added, reach, looked)
        if cut:
            yield _encode_piece(tokenizer, held[:cut], first), held[:cut]
            held, first = held[cut:], False
    if held or first:
        yield _encode_piece(tokenizer, held, first), held


def _safe_cut(text, cuts, added, reach, start=0) -> int:
    """The last place in ``text`` after ``start`` where the tokens do not depend on what is on either side (0: none
    yet). The text after it must hold ``reach`` characters, to see an added token that would start there."""
    end = len(text) - reach
    while end > start:
        found = cuts.search(text, start, end + 1)  # (end + 1: the white space the look-ahead needs)
        if found is None:
            return 0
        near = text[max(0, found.end() - reach):found.end() + reach]
        if not any(token in near for token in added):
            return found.end()
        end = found.start()
    return 0


def _encode_piece(tokenizer, text, first):
    if first or tokenizer.is_fast:
        return tokenizer.encode(text, verbose=False)  # (a corpus is longer than the model reads: no warning)
    return tokenizer.encode(text, add_prefix_space=False, verbose=False)


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
