"""python -m minigpt2 train as a careful user and a learner runs it (helper pass 11):

1. every numeric flag's error names the whole allowed range (--lr -1 said "> 0", not the upper bound)
2. a run leaves no .train.lock in --out, however it ends, and taking the lock is safe against a run that removes it
3. one long text file is tokenized a piece at a time (it was read whole: about 11 bytes of memory per character),
   into exactly the ids of the whole text
"""
from __future__ import annotations

import json
import os
import random
import signal
import tracemalloc

import numpy as np
import pytest

import minigpt2
from test_training import corpus  # noqa: F401 (a fixture)

TRAIN = "python -m minigpt2 train: error: "
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--seq-len", "8", "--batch-size", "2",
        "--eval-batches", "1", "--sample-tokens", "0", "--log-interval", "1"]


def cli(*argv):
    from minigpt2.training.cli import main

    return main([str(a) for a in argv])


# -- 1. the allowed range, in every numeric flag's error ---------------------------------------------------------------

def numeric_flags():
    """(flag, low, high, is_int, open_low) of every flag whose type checks a number, read from the parser itself:
    a flag added later is covered too."""
    from minigpt2.training.cli import build_parser

    found = []
    for action in build_parser()._actions:
        parse = action.type
        if parse is None or not getattr(parse, "__closure__", None):
            continue
        bound = dict(zip(parse.__code__.co_freevars, (cell.cell_contents for cell in parse.__closure__)))
        if "low" in bound:
            found.append((action.option_strings[0], bound["low"], bound.get("high"), "open_low" not in bound,
                          bound.get("open_low", False)))
    return found


def test_the_numeric_flags_are_all_found():
    assert {f[0] for f in numeric_flags()} >= {"--lr", "--min-lr", "--weight-decay", "--grad-clip", "--val-fraction",
                                               "--dropout", "--n-layer", "--seq-len", "--threads", "--seed"}


@pytest.mark.parametrize("flag,low,high,is_int,open_low", numeric_flags())
def test_every_numeric_flags_error_names_the_lower_and_upper_bound(tmp_path, corpus, capsys, flag, low, high, is_int,
                                                                   open_low):
    """A value below the range, one above it (where there is an upper bound), and a word: each a usage error (exit
    2, nothing written) whose message says both ends: the upper bound, or that there is none."""
    below = str(low - 1) if is_int else ("-1" if low == 0 else repr(low - 1.0))
    tries = [below, "many"] + ([str(high + 1) if is_int else repr(high * 2)] if high is not None else [])
    for value in tries:
        with pytest.raises(SystemExit) as e:
            cli("--data", corpus, "--out", tmp_path / "out", "--max-steps", "2", *TINY, flag, value)
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert e.value.code == 2 and line.startswith(TRAIN + f"argument {flag}: "), line
        if is_int:
            assert f"from {low} to {high})" in line if high is not None else \
                f"an integer >= {low}, with no upper limit)" in line, line
        else:
            assert f"{'>' if open_low else '>='} {low} and < {high!r}" in line if high is not None else \
                f"{'>' if open_low else '>='} {low}, with no upper limit)" in line, line
        assert not (tmp_path / "out").exists()


# -- 2. no .train.lock left behind -------------------------------------------------------------------------------------

def interrupt_during_the_first_sample(monkeypatch):
    from minigpt2.training.trainer import Trainer

    sample = Trainer.sample

    def interrupted(self, *a, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        return sample(self, *a, **kw)
    monkeypatch.setattr(Trainer, "sample", interrupted)


def test_a_run_leaves_no_lock_file_however_it_ends(tmp_path, corpus, capsys, monkeypatch):
    """A finished run, a resumed one, one stopped by Ctrl-C before its first step (the tokens kept), and one that
    failed after tokenizing: --out holds what the next run reads and no .train.lock (it stayed in all of them, and
    went into a copy or an upload of the model folder)."""
    out = tmp_path / "out"
    interrupt_during_the_first_sample(monkeypatch)
    assert cli("--data", corpus, "--out", out, "--max-steps", "2", *TINY, "--sample-tokens", "2") == 130
    assert sorted(os.listdir(out)) == ["data"]
    monkeypatch.undo()
    assert cli("--out", out, "--resume", "--max-steps", "2") == 1  # (no run to continue: said so, nothing left)
    assert sorted(os.listdir(out)) == ["data"]
    assert cli("--out", out, "--max-steps", "2", *TINY) == 0  # (the kept tokens, without --data)
    assert ".train.lock" not in os.listdir(out) and "trainer_state.json" in os.listdir(out)
    assert cli("--out", out, "--resume", "--max-steps", "3") == 0
    assert ".train.lock" not in os.listdir(out)
    other = tmp_path / "other"
    assert cli("--data", corpus, "--out", other, "--max-steps", "2", *TINY[:-6], "--seq-len", "100000",
               "--n-positions", "100000", "--batch-size", "1") == 1  # (more than the data holds)
    assert "fewer than one sequence" in capsys.readouterr().err
    assert sorted(os.listdir(other)) == ["data"]


def test_the_lock_is_taken_on_the_file_in_out_not_on_one_a_finished_run_removed(tmp_path, monkeypatch):
    """A run that ends removes its .train.lock while holding it; another that opened the file just before locks
    the removed file then, which no third run sees: it must open the one now in --out instead. Without that, a
    third run could take --out at the same time."""
    fcntl = pytest.importorskip("fcntl")  # (Windows has no advisory locks: no lock file there)
    from minigpt2.training import cli as train_cli

    out = tmp_path / "out"
    let_go = train_cli.hold_out_dir(str(out))
    opened_before = open(out / ".train.lock", "a+")
    let_go()
    real_open, handed = open, []

    def first_the_old_file(path, *args, **kw):
        if not handed:
            handed.append(path)
            return opened_before
        return real_open(path, *args, **kw)
    monkeypatch.setattr(train_cli, "open", first_the_old_file, raising=False)
    let_go = train_cli.hold_out_dir(str(out))
    monkeypatch.undo()
    try:
        assert handed and opened_before.closed
        with open(out / ".train.lock", "a+") as third, pytest.raises(BlockingIOError):
            fcntl.flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        let_go()
    assert not out.exists()  # (made by the first hold, empty: removed with the lock)


# -- 3. a long text, a piece at a time ---------------------------------------------------------------------------------

# Characters and strings chosen to sit at the cuts: white space of every kind (\u00a0, \u3000 and \u2028 are
# white space to the pre-tokenizer, \x1c is not), contractions and apostrophes, letters, digits (also Arabic-Indic),
# symbols and emoji, and added tokens with each of HF's rules, whole and in part.
ADVERSARIAL = [" ", "  ", "\n", "\n\n", "\t", "\r", "\x0b", "\u00a0", "\u3000", "\u2028", "\x1c", "'s", "'", "'ll",
               "a", "Zq", "\u00e9t\u00e9", "7", "\u0663", "!", "?!", "\U0001f600", "w"]
NEAR_ADDED = ["<|endoftext|>", "<|endoftext", "|>", "<x>", "[Y]", "[Y", "zz", "z", "<x", "{w}"]  # (one in ten)
ADDED = ["<x>", "[Y]", "zz", "{w}"]


def tokenizers():
    """GPT-2's vocabulary: the slow and the fast class, with and without add_prefix_space, with added tokens that
    strip white space on either side or match single words only."""
    from minigpt2.tokenizer import AddedToken

    for cls in (minigpt2.GPT2Tokenizer, minigpt2.GPT2TokenizerFast):
        for prefix in (False, True):
            tok = cls.from_pretrained("gpt2", add_prefix_space=prefix)
            tok.add_tokens([AddedToken("<x>", lstrip=True), AddedToken("[Y]", rstrip=True),
                            AddedToken("zz", single_word=True), AddedToken("{w}", lstrip=True, rstrip=True)])
            yield pytest.param(tok, id=f"{cls.__name__}-prefix{prefix}")


@pytest.mark.parametrize("tok", list(tokenizers()))
def test_a_text_tokenized_in_pieces_gives_the_ids_of_the_whole(tok):
    """Random texts of the strings above, fed to encode_stream in random pieces of 1 to 40 characters: the ids,
    one after another, are tokenizer.encode(whole text)'s, and the text was indeed cut (many pieces)."""
    from minigpt2.training.data import encode_stream

    rng = random.Random(11)
    cuts = 0
    for _ in range(60):
        text = "".join(rng.choice(NEAR_ADDED if rng.random() < 0.1 else ADVERSARIAL)
                       for _ in range(rng.randrange(0, 300)))
        pieces, at = [], 0
        while at < len(text):
            step = rng.randrange(1, 41)
            pieces.append(text[at:at + step])
            at += step
        out = list(encode_stream(pieces, tok))
        assert "".join(part for _, part in out) == text
        assert [i for ids, _ in out for i in ids] == tok.encode(text, verbose=False), repr(text)
        cuts += len(out) - 1
    assert cuts > 100, cuts  # (the pieces were indeed cut: about 3 per text)


def test_a_long_file_is_tokenized_in_bounded_memory_into_the_same_ids(tmp_path, monkeypatch):
    """A 3 MB file, read 64 Ki characters at a time: the token files hold the whole text's ids + <|endoftext|>
    (split at the last 10%), and the memory tokenizing takes stays under one byte per character of the file (reading
    it whole took about 11: 30 MB; in pieces it is about 1.8 MB for any size of file)."""
    from minigpt2.training import data

    rng = np.random.default_rng(0)
    words = np.array("the cat sat on a mat , and 12 dogs ran far away ; while birds sang \u00e9t\u00e9 \n".split(" "))
    text = " ".join(rng.choice(words, 700_000)) + "<|endoftext|> end\n"
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    tok = minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
    expected = tok.encode(text, verbose=False) + [tok.eos_token_id]
    monkeypatch.setattr(data, "PIECE_CHARS", 1 << 16)
    tok.encode(text[:100_000], verbose=False)  # (the piece cache warm: what it holds is not the text's)
    tracemalloc.start()
    try:
        tokens = data.prepare_tokens(path, tmp_path / "data", tok, log=lambda *a: None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n_val = int(len(expected) * 0.1)
    assert tokens["train"].tolist() == expected[:len(expected) - n_val]
    assert tokens["val"].tolist() == expected[len(expected) - n_val:]
    assert peak < len(text), (peak, len(text))
    assert sorted(os.listdir(tmp_path / "data")) == ["meta.json", "train.bin", "val.bin"]


def test_a_file_that_is_not_utf8_half_way_adds_none_of_its_tokens(tmp_path):
    """Read in pieces, a file whose bytes stop being UTF-8 after its first piece has had ids written: they are taken
    back, the file is skipped as before, and the other files' tokens are those of each alone."""
    from minigpt2.training import data

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("first file. " * 10, encoding="utf-8")
    (folder / "b.txt").write_bytes(("good text " * 200_000).encode() + b"\xff\xfe bad")
    (folder / "c.txt").write_text("  \n\t ", encoding="utf-8")
    (folder / "d.txt").write_text("last one", encoding="utf-8")
    tok = minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
    said = []
    tokens = data.prepare_tokens(folder, tmp_path / "data", tok, val_fraction=0.0, log=said.append)
    expected = tok.encode("first file. " * 10) + [50256] + tok.encode("last one") + [50256]
    assert tokens["train"].tolist() == expected and len(tokens["val"]) == 0
    assert said[0].startswith("skipped 1 unreadable file(s), e.g. ") and "b.txt (UnicodeDecodeError)" in said[0]


def test_data_without_text_leaves_no_data_folder(tmp_path):
    from minigpt2.training import data

    (tmp_path / "empty.txt").write_text(" \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no text to train on \\(1 file\\(s\\): 1 empty\\)"):
        data.prepare_tokens(tmp_path / "empty.txt", tmp_path / "out" / "data", minigpt2.GPT2Tokenizer.from_pretrained(
            "gpt2"))
    assert not (tmp_path / "out" / "data").exists()


# -- 4. --data . beside --out ------------------------------------------------------------------------------------------

def test_a_data_folder_holding_the_runs_reads_only_the_text(tmp_path, capsys, monkeypatch):
    """A learner's project folder: their text, and the runs they train into it (--data . --out run). The first run
    tokenized its own .train.lock (its process id, as text to learn), the second the first run's checkpoint
    (vocab.json, merges.txt, config.json: 1.5 MB of JSON) and tokenized data, and each resume the run's own files
    again. Now hidden files and the folders of models, runs and tokenized data are left out, and said so."""
    from minigpt2.training.data import find_documents

    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    (project / ".DS_Store").write_bytes(b"Bud1\x00\x00")
    model = project / "downloaded"  # (a model saved with save_pretrained, in the same folder)
    minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(vocab_size=50257, n_positions=8, n_embd=8, n_layer=1, n_head=1),
                             seed=0).save_pretrained(model)
    minigpt2.GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(model)
    monkeypatch.chdir(project)
    assert cli("--data", ".", "--out", "run", "--max-steps", "1", *TINY) == 0
    assert cli("--data", ".", "--out", "run2", "--max-steps", "1", *TINY) == 0
    said = capsys.readouterr().out
    assert "--data .: left out 2 folder(s) of models, training runs or tokenized data: ./downloaded, ./run" in said
    assert cli("--data", ".", "--out", "run", "--resume", "--max-steps", "2") == 0
    expected = [os.path.join(".", "notes.txt")]
    for run in ("run", "run2"):
        with open(os.path.join(run, "data", "meta.json"), encoding="utf-8") as f:
            assert [path for path, *_ in json.load(f)["signature"]["files"]] == expected
    assert find_documents(".", ".*") == [os.path.join(".", ".DS_Store")]  # (asked for by name: read)
    os.unlink("notes.txt")
    with pytest.raises(ValueError, match="no files matching '\\*' in this folder \\(besides the folders of models"):
        find_documents(".", left_out=[])


def test_resume_into_a_folder_that_does_not_exist_says_so(tmp_path, capsys):
    """It said "--resume: nothere holds no trainer_state.json", as if the folder were there."""
    assert cli("--out", tmp_path / "nothere", "--resume", "--max-steps", "2") == 1
    assert capsys.readouterr().err.strip() == f"python -m minigpt2 train: error: --resume: there is no folder " \
                                              f"{tmp_path / 'nothere'} (so no trainer_state.json): no run to " \
                                              f"continue; to start a new run there, drop --resume"
    assert not (tmp_path / "nothere").exists()


@pytest.mark.parametrize("setting, says", [
    (dict(batch_size=0), "batch_size must be a positive integer (1 or more, no upper limit), got 0"),
    (dict(seed=-1), "seed must be an integer >= 0 (no upper limit), got -1"),
    (dict(warmup_steps=-2), "warmup_steps must be an integer >= 0 (no upper limit), got -2"),
    (dict(lr=-1.0), "lr must be a finite number > 0 and below {F32}, float32's largest, got -1.0"),
    (dict(weight_decay=float("nan")), "weight_decay must be a finite number >= 0 and below {F32}, float32's largest, "
                                      "got nan"),
    (dict(grad_clip=-1.0), "grad_clip must be a finite number >= 0 (no upper limit), got -1.0"),
])
def test_training_arguments_name_the_whole_range(setting, says):
    """The library's checks, as the CLI's: both ends of the range (float32's largest value as NumPy gives it)."""
    from minigpt2.training import TrainingArguments

    with pytest.raises(ValueError) as e:
        TrainingArguments(**setting).check()
    assert str(e.value) == says.format(F32=f"{float(np.finfo(np.float32).max):.4g}")
