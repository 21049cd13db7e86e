"""The command line as a careful new user runs it, eighth round: fresh venvs (Python 3.9 and 3.13, newest releases, also
without a C compiler), every flag with bad values, and ``python -m minigpt2 train``. What was found wrong:

- without the C core, ``MINIGPT2_KERNEL=avx2`` made generating fail (exit 1), while ``--info`` and ``--doctor`` showed
  nothing wrong (exit 0); ``--threads N`` silently changed nothing there; ``--info`` told a bad MINIGPT2_BACKEND's fix
  for Python ("or call minigpt2.backend.set_backend") next to the command line's;
- not enough memory (``ulimit -v``, too many beams, a model too large to train) was a MemoryError traceback;
- ``train``: ``--lr -1e-3`` was "expected one argument" (the generator checks such a number as the flag's value);
  ``--threads 9999`` an exit 1 that did not name --threads; ``--prompt`` not UTF-8, or typed in a C locale without
  UTF-8 mode, failed after the data was tokenized, with a message about "lone surrogates"; samples holding a character
  an ASCII stdout cannot show stopped the run with a UnicodeEncodeError; an --out that cannot be written gave
  Python's "[Errno 20] Not a directory"; warnings came with Python's file, line and source line.

Every run is ``python -m minigpt2`` in a process of its own, as a user starts it; the model is a tiny random checkpoint
in a tmp dir (no network).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys

import pytest

from minigpt2 import backend

PROG = "python -m minigpt2: error: "

# python -m minigpt2 in a process where the C core does not import, as in an install made without a C compiler
WITHOUT_C_CORE = ("import runpy, sys; sys.modules['minigpt2._kernels'] = None; sys.argv[0] = 'minigpt2'; "
                  "runpy.run_module('minigpt2', run_name='__main__', alter_sys=True)")


def minigpt2(*args, env=None, without_c_core=False, memory=None, cwd=None):
    """python -m minigpt2 ARGS -> CompletedProcess (text); ``memory``: the bytes of address space it may use
    (``ulimit -v``)."""
    env = {**os.environ, "MINIGPT2_KERNEL": "numpy", **(env or {})}
    command = ["-c", WITHOUT_C_CORE] if without_c_core else ["-m", "minigpt2"]
    limit = None if memory is None else lambda: resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    return subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL, preexec_fn=limit, cwd=cwd, errors="backslashreplace")


def one_line_error(done, code, prog=PROG):
    """Exit ``code``, nothing on stdout, the error as the last line of stderr, no traceback; returns that line."""
    assert done.returncode == code and done.stdout == "" and "Traceback" not in done.stderr, done
    line = done.stderr.splitlines()[-1]
    assert line.startswith(prog), done.stderr
    return line


TRAIN = "python -m minigpt2 train: error: "


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("newuser8_corpus") / "corpus.txt"
    path.write_text("the cat sat on the mat, and the dog ran far away. " * 60, encoding="utf-8")
    return str(path)


def train(corpus, out, *args, **kwargs):
    """A tiny training run: one step of a one-layer model."""
    return minigpt2("train", "--data", corpus, "--out", str(out), "--max-steps", "1", "--n-layer", "1", "--n-head", "2",
                    "--n-embd", "16", "--seq-len", "16", "--batch-size", "2", "--sample-tokens", "3", *args, **kwargs)


# -- 1. MINIGPT2_KERNEL without the C core ---------------------------------------------------------------------

def test_info_and_doctor_say_what_generating_refuses_a_kernel_variant_without_the_c_core(tiny_model_dir, tmp_path):
    """Where the C core is not built, MINIGPT2_KERNEL=avx2 chooses nothing and generating refuses it (exit 1); --info
    and --doctor, which a user runs to find out why, showed no problem and exited 0."""
    env = {"MINIGPT2_KERNEL": "avx2", "HF_HOME": str(tmp_path / "hf")}
    generating = minigpt2("-m", tiny_model_dir, "-n", "2", "Hi", env=env, without_c_core=True)
    assert generating.returncode == 1 and "MINIGPT2_KERNEL='avx2'" in generating.stderr, generating.stderr
    info = minigpt2("--info", env=env, without_c_core=True)
    assert info.returncode == 1, info
    assert "kernel choice: INVALID SETTING\n  error: MINIGPT2_KERNEL='avx2' chooses a variant of the C core, which is " \
           "not built here (only auto and numpy can be used)" in info.stdout, info.stdout
    doctor = minigpt2("--doctor", env=env, without_c_core=True)
    assert doctor.returncode == 1 and "[FAIL] kernels: MINIGPT2_KERNEL='avx2'" in doctor.stdout, doctor.stdout
    fine = minigpt2("--info", env={**env, "MINIGPT2_KERNEL": "numpy"}, without_c_core=True)
    assert fine.returncode == 0 and "INVALID" not in fine.stdout, fine


def test_threads_without_the_c_core_says_it_changes_nothing(tiny_model_dir, corpus, tmp_path):
    """--threads sets the C kernels' threads (and NumPy's BLAS's through them): without the C core it did nothing,
    silently, where a user meant to limit the threads."""
    note = ("[--threads 1 changes nothing here: it sets the threads of the C core, which is not built; NumPy's BLAS "
            "takes OPENBLAS_NUM_THREADS, set before Python starts]")
    done = minigpt2("--threads", "1", "-m", tiny_model_dir, "-n", "2", "--greedy", "Hi", without_c_core=True)
    assert done.returncode == 0 and done.stdout.startswith("Hi") and note in done.stderr.splitlines(), done
    trained = train(corpus, tmp_path / "out", "--threads", "1", without_c_core=True)
    assert trained.returncode == 0 and note in trained.stderr.splitlines(), trained
    with_c = minigpt2("--threads", "1", "-m", tiny_model_dir, "-n", "2", "--greedy", "Hi")
    assert with_c.returncode == 0 and ("changes nothing" in with_c.stderr) == (not backend.c_available()), with_c


def test_info_gives_a_bad_backend_variable_the_command_lines_fix_only():
    done = minigpt2("--info", env={"MINIGPT2_BACKEND": "gpu"})
    assert done.returncode == 1, done
    assert "  error: MINIGPT2_BACKEND='gpu' is not a backend; choose one of numpy, c, auto; --backend overrides it" \
        in done.stdout.splitlines(), done.stdout


# -- 2. not enough memory ---------------------------------------------------------------------------------------

def test_not_enough_memory_is_one_line_naming_the_array_and_what_takes_less(tiny_model_dir, corpus, tmp_path):
    """Under ``ulimit -v`` (or on a small machine whose MemAvailable overstates what a process may take), 1000 beams,
    or a model too large to train, raised NumPy's MemoryError as a traceback."""
    limit = 1500 * 2 ** 20  # (the interpreter, NumPy and OpenBLAS start well within it)
    beams = minigpt2("-m", tiny_model_dir, "--beams", "1000", "-n", "2", "Hi", memory=limit)
    line = one_line_error(beams, 1)
    assert line.startswith(PROG + "not enough memory: Unable to allocate") and "fewer --beams" in line, line
    big = train(corpus, tmp_path / "big", "--n-embd", "100000", memory=limit)
    line = one_line_error(big, 1, TRAIN)
    assert line.startswith(TRAIN + "not enough memory: Unable to allocate 18.7 GiB") and "--n-embd" in line, line


# -- 3. train: flag values as the generator checks them ----------------------------------------------------------

def test_train_checks_a_negative_number_as_the_flags_value(corpus, tmp_path):
    """argparse takes "-1e-3" for a flag ("expected one argument"); the generator gives such a number to its flag,
    whose check then names it and what is allowed. train does the same now."""
    line = one_line_error(train(corpus, tmp_path / "out", "--lr", "-1e-3"), 2, TRAIN)
    assert line == TRAIN + ("argument --lr: -0.001 is not allowed (must be finite and > 0 and < 3.4028234663852886e+38, "
                            "float32's largest value: the weights are float32)"), line
    assert not os.path.exists(tmp_path / "out")


def test_train_threads_out_of_range_is_a_usage_error_naming_the_flag(corpus, tmp_path):
    line = one_line_error(train(corpus, tmp_path / "out", "--threads", "9999"), 2, TRAIN)
    assert line == TRAIN + "argument --threads: 9999 is not allowed (must be an integer from 1 to 256)", line


def test_train_prompt_not_utf8_is_a_usage_error_before_anything_is_written(corpus, tmp_path):
    """A --prompt with bytes that are not UTF-8 failed only after the data was tokenized into --out, with "text
    contains a lone surrogate '\\udce9'" (exit 1)."""
    line = one_line_error(train(corpus, tmp_path / "out", "--prompt", os.fsdecode(b"caf\xe9")), 2, TRAIN)
    assert line == TRAIN + "--prompt is not UTF-8 text (the bytes b'\\xe9' at byte 3); minigpt2 reads prompts as UTF-8"
    assert not os.path.exists(tmp_path / "out")


def test_train_in_a_c_locale_without_utf8_mode_takes_a_utf8_prompt_and_prints_escapes(corpus, tmp_path):
    """LC_ALL=C PYTHONUTF8=0: Python decodes the command line as ASCII (keeping "é" as surrogates) and stdout is ASCII.
    The prompt "café ☕" failed with the lone-surrogate error; recovered as UTF-8, its samples then stopped the run
    with "'ascii' codec can't encode character". The generator shows such characters as escapes; train does too."""
    env = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    done = train(corpus, tmp_path / "out", "--prompt", "café ☕", env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done
    assert done.stdout.splitlines()[-1] == f'saved to {tmp_path / "out"}: python -m minigpt2 -m {tmp_path / "out"} ' \
                                           f'"caf\\xe9 \\u2615"', done.stdout


def test_train_out_that_cannot_be_written_names_out_and_the_way_out(corpus, tmp_path):
    """--out in a folder that cannot be written (read-only, inside a file, /proc) gave Python's "[Errno 20] Not a
    directory: 'a-file/run'", which names neither --out nor what to do."""
    (tmp_path / "a-file").write_text("")
    out = str(tmp_path / "a-file" / "run")
    line = one_line_error(train(corpus, out), 1, TRAIN)
    assert line == TRAIN + f"--out {out} cannot be used: Not a directory ({out}); give --out a directory you can " \
                           f"write, on a disk with room for the checkpoints", line


def test_train_shows_a_warning_as_one_minigpt2_line(tiny_model_dir, corpus, tmp_path):
    """Fine-tuning a checkpoint without its lm_head: the warning came as Python shows it, "/…/training/cli.py:242:
    UserWarning: ..." and the source line under it; the generator (and docs/cli.md) show one line, "minigpt2: ..."."""
    untied = tmp_path / "untied"
    shutil.copytree(tiny_model_dir, untied)
    config = json.loads((untied / "config.json").read_text(encoding="utf-8"))
    (untied / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}), encoding="utf-8")
    done = minigpt2("train", "--model", str(untied), "--data", corpus, "--out", str(tmp_path / "out"), "--max-steps", "1",
                    "--seq-len", "16", "--sample-tokens", "2")
    assert done.returncode == 0, done
    assert "minigpt2: GPT2LMHeadModel: weights lm_head.weight are not in the checkpoint and were initialised randomly; " \
           "train them before use" in done.stderr.splitlines(), done.stderr
    assert "UserWarning" not in done.stderr and ".py:" not in done.stderr, done.stderr  # (nor the source line)


def test_candidates_that_sampling_leaves_out_are_the_next_likeliest_not_the_first_ids(tiny_model_dir):
    """--candidates K lists the K likeliest tokens. When top-k (or a low temperature) gives all but a few tokens
    probability 0, the others were shown in id order: '!' (id 0), '"' (id 1), ..., which are not the next likeliest
    tokens. They follow the model's scores now; the reference is the model's own logits for the prompt."""
    import numpy as np

    from minigpt2 import AutoModelForCausalLM, AutoTokenizer
    from minigpt2.cli import _token_text

    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained("gpt2")
    logits = model(np.array([tokenizer("Hi").input_ids])).logits[0, -1]
    likeliest = [_token_text(tokenizer, t) for t in np.argsort(-logits, kind="stable")[:4]]
    done = minigpt2("-m", tiny_model_dir, "--candidates", "4", "-k", "2", "-n", "1", "-s", "0", "Hi")
    assert done.returncode == 0, done
    step = done.stdout.splitlines()[1]
    shown = step.split("->")[0]
    positions = [shown.find(text) for text in likeliest]
    assert -1 not in positions and positions == sorted(positions), (likeliest, step)
    assert shown.count(" 0.0%") == 2, step  # (top-k 2: the two after them cannot be drawn)


@pytest.mark.parametrize("flags, kept", [((), 0.1), (("--dropout", "0.25"), 0.25)])
def test_train_model_keeps_the_checkpoints_dropouts_unless_dropout_is_given(corpus, tmp_path, flags, kept):
    """Fine-tuning with --model: the checkpoint's dropouts (GPT-2's 0.1), as transformers' Trainer keeps them; the
    default of --dropout (0) is for a new model. Before, --model DIR trained and saved with dropout 0."""
    from minigpt2 import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    source = tmp_path / "source"
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32)  # (HF's defaults: every dropout 0.1)
    GPT2LMHeadModel(config, seed=0).save_pretrained(source)
    GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(str(source))
    done = minigpt2("train", "--data", corpus, "--out", str(tmp_path / "out"), "--model", str(source), "--max-steps",
                    "1", "--seq-len", "16", "--batch-size", "2", "--sample-tokens", "0", *flags)
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (saved["resid_pdrop"], saved["embd_pdrop"], saved["attn_pdrop"]) == (kept, kept, kept)


def test_a_folder_named_minigpt2_that_hides_the_package_is_one_line(tmp_path):
    """`cd ~ && python -m minigpt2` beside the clone ~/minigpt2 (with an editable install, Python finds that folder
    first, as a namespace package): one line saying so, not an ImportError traceback. An install that Python finds
    before such a folder (a regular one) just runs."""
    (tmp_path / "minigpt2").mkdir()
    done = minigpt2("--version", cwd=str(tmp_path))
    if done.returncode == 0:
        assert done.stdout.startswith("minigpt2 "), done.stdout
        return
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == (f"python -m minigpt2: error: the folder {tmp_path / 'minigpt2'} is named minigpt2 "
                                   f"and hides the installed package from Python; run the command from another "
                                   f"directory (cd ..), or rename that folder")


def test_dtype_auto_keeps_the_format_the_checkpoint_stores(tmp_path):
    """--dtype auto: a bfloat16 checkpoint runs in bfloat16 (transformers' torch_dtype="auto"); the default stays
    float32. Before, 'auto' was a usage error."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=32)
    transformers.GPT2LMHeadModel(config).to(torch.bfloat16).save_pretrained(tmp_path)
    for flags, weights in (((), "weights float32"), (("--dtype", "auto"), "weights bfloat16")):
        done = minigpt2("-m", str(tmp_path), "-n", "2", "--stats", "--seed", "0", "Hi", *flags)
        assert done.returncode == 0 and weights in done.stderr, done.stderr


def test_train_refuses_a_min_lr_above_lr(corpus, tmp_path):
    """The cosine schedule decays from --lr to --min-lr: one above the other made the learning rate grow, silently."""
    done = train(corpus, tmp_path / "out", "--lr", "1e-4", "--min-lr", "1e-3")
    assert done.returncode == 2 and not (tmp_path / "out").exists(), done.stderr
    assert done.stderr.strip().splitlines()[-1] == (f"{TRAIN}--min-lr 0.001 is above --lr 0.0001: the learning rate "
                                                    f"decays from --lr down to --min-lr (default --lr / 10)")
