"""More of a new user's mistakes, run as the user runs them (``python -m minigpt2 ...`` in a process of its own),
each checked by its exit code and its message: training into a directory that already holds a model, training on
no text, the C backend asked for where it was not built, a bad MINIGPT2_KERNEL, empty MINIGPT2_* variables, a
prompt that fills the model, half a tokenizer, and a damaged file in the Hugging Face cache.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from hubserver import HubServer, tiny_checkpoint_files
from minigpt2 import backend
from minigpt2.tokenizer import AutoTokenizer

N_POSITIONS = 64


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("user_errors_model")
    tiny_checkpoint_files(directory, n_positions=N_POSITIONS, seed=3)
    AutoTokenizer.from_pretrained("gpt2").save_pretrained(directory)
    return str(directory)


def minigpt2(*args, env=None, stdin=b"", timeout=180):
    """python -m minigpt2 ``args`` -> CompletedProcess with text stdout / stderr."""
    return subprocess.run([sys.executable, "-m", "minigpt2", *args], input=stdin, capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def text(done):
    return done.stdout.decode(), done.stderr.decode()


def one_line_error(done, code, *parts):
    """Exit ``code``, nothing on stdout, no traceback, the error as the last line (exit 2: argparse's usage first)."""
    out, err = text(done)
    assert done.returncode == code and out == "", err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("python -m minigpt2"), err
    assert len(err.splitlines()) == (1 if code == 1 else 3), err
    for part in parts:
        assert part in err, err
    return err


# -- 1. train: never overwrite a model or a run; no text, no files ---------------------------------------------

TINY_TRAIN = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--seq-len", "8", "--batch-size", "1",
              "--eval-interval", "1", "--eval-batches", "1", "--sample-tokens", "0"]
CORPUS = "The cat sat on the mat. The dog sat on the log. " * 20


def train(*args):
    return minigpt2("train", *args, *TINY_TRAIN)


def contents(directory):
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))
            if os.path.isfile(os.path.join(directory, name))}


def test_train_refuses_to_overwrite_a_run_or_a_model_and_names_resume(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    out = str(tmp_path / "run")
    first = train("--data", str(corpus), "--out", out, "--max-steps", "1")
    assert first.returncode == 0, first.stderr
    before = contents(out)
    again = train("--data", str(corpus), "--out", out, "--max-steps", "2", "--seed", "1")
    one_line_error(again, 1, f"--out {out} already holds a training run", "trainer_state.json",
                   f"python -m minigpt2 train --out {out} --resume --max-steps N (N above its step 1)",
                   "a new or empty directory")
    assert contents(out) == before, "nothing was written"
    # What the message says works: --resume continues the run.
    resumed = minigpt2("train", "--out", out, "--resume", "--max-steps", "2")
    assert resumed.returncode == 0 and "step 2/2" in resumed.stdout.decode(), resumed.stderr
    # A model without a run (a checkpoint saved elsewhere): not resumable, so --model and a new directory.
    for name in ("trainer_state.json", "optimizer.safetensors"):
        os.remove(os.path.join(out, name))
    before = contents(out)
    err = one_line_error(train("--data", str(corpus), "--out", out, "--max-steps", "1"), 1,
                         f"--out {out} already holds a model (config.json, model.safetensors)",
                         f"pass --model {out} and a new or empty --out directory")
    assert "--resume" not in err
    assert contents(out) == before
    # An empty directory that exists is fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train("--data", str(corpus), "--out", str(empty), "--max-steps", "1").returncode == 0


@pytest.mark.parametrize("files,problem", [
    ({"empty.txt": b""}, "1 empty"),
    ({"latin1.txt": "café au lait".encode("latin-1")}, "1 not readable as UTF-8 text, e.g."),
    ({"a.txt": b"  \n", "b.txt": b"\xff\xfe\x80"}, "1 empty, 1 not readable as UTF-8 text"),
], ids=["empty", "latin-1", "folder"])
def test_train_on_no_text_fails_before_writing_anything(tmp_path, files, problem):
    folder = tmp_path / "texts"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    data = str(folder) if len(files) > 1 else str(folder / next(iter(files)))
    out = tmp_path / "out"
    done = train("--data", data, "--out", str(out), "--max-steps", "1", "--sample-tokens", "5")
    one_line_error(done, 1, f"--data {data}: no text to train on ({len(files)} file(s): {problem}")
    assert not out.exists(), "no OUT/data was written"

# -- 6. half a tokenizer ----------------------------------------------------------------------------------------
# transformers loads none of these (GPT2Tokenizer and AutoTokenizer fail on each; the tokenizers library says
# "Missing vocab/merges" for tokenizer.json): an error naming the missing part, never GPT-2's vocabulary instead.

def model_with(tmp_path, model_dir, *names, tokenizer_json=None):
    directory = tmp_path / "model"
    directory.mkdir()
    for name in ("config.json", "model.safetensors") + names:
        (directory / name).write_bytes(open(os.path.join(model_dir, name), "rb").read())
    if tokenizer_json is not None:
        (directory / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    return str(directory)


@pytest.mark.parametrize("present,missing", [("vocab.json", "merges.txt"), ("merges.txt", "vocab.json")])
def test_half_a_tokenizer_is_an_error_naming_the_missing_file(tmp_path, model_dir, present, missing):
    directory = model_with(tmp_path, model_dir, present)
    for args in (["-n", "2", "Hi"], ["--tokenize", "Hi"]):
        err = one_line_error(minigpt2("-m", directory, *args), 1, f"{directory} has {present} but no {missing}")
        assert "GPT-2's vocabulary" not in err.split("error:")[0]  # (no silent fall-back before the error)


def test_a_tokenizer_json_without_its_vocabulary_says_what_is_missing(tmp_path, model_dir):
    directory = model_with(tmp_path, model_dir, tokenizer_json='{"version": "1.0", "model": {"type": "BPE"}}')
    err = one_line_error(minigpt2("-m", directory, "-n", "2", "Hi"), 1,
                         "tokenizer.json: its BPE model has no 'vocab' and no 'merges'")
    assert "not a BPE tokenizer" not in err
