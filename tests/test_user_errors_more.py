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
from minigpt2.cli import build_parser
from minigpt2.tokenizer import AutoTokenizer

USAGE_LINES = len(build_parser().format_usage().splitlines())  # the usage argparse prints before an error (exit 2)
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
    assert len(err.splitlines()) == (1 if code == 1 else 1 + USAGE_LINES), err  # exit 2: argparse's usage first
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


# -- 2. the C backend where it was not built -------------------------------------------------------------------

# As a machine without a C compiler: the extension cannot be imported. sys.argv[0] is set before the import, as
# `python -m minigpt2` has it while minigpt2 is imported.
WITHOUT_C = """
import sys
sys.modules["minigpt2._kernels"] = None
sys.argv[0] = "minigpt2"
from minigpt2.__main__ import run
sys.exit(run())
"""


def without_c(*args, env=None):
    environ = {k: v for k, v in os.environ.items() if k not in ("MINIGPT2_BACKEND", "MINIGPT2_KERNEL")}
    return subprocess.run([sys.executable, "-c", WITHOUT_C, *args], capture_output=True, timeout=180,
                          env={**environ, **(env or {})})


def test_asking_for_c_without_the_c_core_is_one_line_with_no_contradicting_warning(model_dir):
    flag = without_c("-m", model_dir, "-n", "2", "--backend", "c", "Hi")
    err = one_line_error(flag, 2, "error: --backend c: the C backend was asked for",
                         "choose the 'numpy' or 'auto' backend")
    assert "RuntimeWarning" not in err and "running on the NumPy backend" not in err
    # how to build it, once (a checkout: `pip install -e .` or `python csrc/build_kernels.py`; an installed copy:
    # installing with a C compiler present)
    assert err.lower().count("with a c compiler present") == 1, f"the build advice, once: {err}"
    if backend._checkout() is not None:  # (the subprocess imports the same minigpt2 as this test)
        assert "python csrc/build_kernels.py" in err, err
    variable = without_c("-m", model_dir, "-n", "2", "Hi", env={"MINIGPT2_BACKEND": "c"})
    err = one_line_error(variable, 1, "error: MINIGPT2_BACKEND=c: the C backend was asked for", "--backend")
    assert "RuntimeWarning" not in err
    chosen = without_c("-m", model_dir, "-n", "2", "--greedy", "--backend", "numpy", "Hi")
    assert chosen.returncode == 0 and b"Warning" not in chosen.stderr, chosen.stderr
    fallback = without_c("-m", model_dir, "-n", "2", "--greedy", "Hi")  # auto: still says it runs on NumPy, once
    assert fallback.returncode == 0 and fallback.stdout == chosen.stdout, fallback.stderr
    assert fallback.stderr.decode().count("running on the NumPy backend") == 1


def test_set_kernel_numpy_and_auto_work_without_the_c_core():
    code = """
import sys
sys.modules["minigpt2._kernels"] = None
import warnings; warnings.simplefilter("ignore")
import minigpt2
minigpt2.backend.set_kernel("numpy"); minigpt2.backend.set_kernel("auto")
try:
    minigpt2.backend.set_kernel("avx2")
except RuntimeError as e:
    print(e)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "set_kernel('avx2') needs the C core" in done.stdout and "only 'auto' and 'numpy'" in done.stdout


# -- 4. a bad MINIGPT2_KERNEL in --info and --doctor ------------------------------------------------------------

needs_c = pytest.mark.skipif(not backend.c_available(), reason="no C core: MINIGPT2_KERNEL chooses nothing")


@needs_c
def test_info_reports_a_bad_kernel_variable_and_goes_on():
    done = minigpt2("--info", env={"MINIGPT2_KERNEL": "bogus"})
    out, err = text(done)
    assert done.returncode == 1 and "Traceback" not in err and err == "", err
    assert "kernel choice: INVALID SETTING" in out
    assert "  error: MINIGPT2_KERNEL 'bogus' is not a kernel variant; choose one of auto, numpy" in out
    assert "models in the cache:" in out, "the rest of --info is still shown"


@needs_c
def test_doctor_reports_a_bad_kernel_variable_instead_of_asking_for_a_bug_report():
    done = minigpt2("--doctor", env={"MINIGPT2_KERNEL": "bogus"})
    out = done.stdout.decode()
    assert done.returncode == 1 and "report this" not in out and "the check itself failed" not in out, out
    assert "[FAIL] kernels: MINIGPT2_KERNEL 'bogus' is not a kernel variant; choose one of auto, numpy" in out
    assert "fix: unset MINIGPT2_KERNEL" in out
    assert "cannot run until MINIGPT2_KERNEL is fixed" in out


# -- 5. empty variables, a prompt that fills the model ----------------------------------------------------------

def test_empty_backend_and_kernel_variables_count_as_unset(model_dir):
    empty = {"MINIGPT2_BACKEND": "", "MINIGPT2_KERNEL": ""}
    info = minigpt2("--info", env=empty)
    assert info.returncode == 0 and b"INVALID" not in info.stdout, info.stdout
    done = minigpt2("-m", model_dir, "--greedy", "-n", "2", "Hi", env=empty)
    assert done.returncode == 0 and done.stdout.startswith(b"Hi"), done.stderr


def test_a_prompt_that_fills_every_position_says_there_is_no_room_left(model_dir):
    prompt = " ".join(["word"] * N_POSITIONS)
    assert len(AutoTokenizer.from_pretrained(model_dir)(prompt).input_ids) == N_POSITIONS
    one_line_error(minigpt2("-m", model_dir, "-n", "2", prompt), 1,
                   f"the prompt is {N_POSITIONS} tokens long, which fills all {N_POSITIONS} positions",
                   "no room is left for new tokens")


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


# -- 3. a damaged file in the Hugging Face cache ----------------------------------------------------------------

def test_a_damaged_cached_file_is_fetched_again_by_download(tmp_path):
    repo = "openai-community/gpt2"
    with HubServer({repo: tiny_checkpoint_files(tmp_path / "checkpoint")}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "cache"),
               "HF_HUB_OFFLINE": "0"}
        assert minigpt2("--download", "-m", repo, env=env).returncode == 0
        blob = os.path.realpath(glob.glob(str(tmp_path / "cache" / "*" / "snapshots" / "*" / "model.safetensors"))[0])
        size = os.path.getsize(blob)
        with open(blob, "r+b") as f:  # a copy of the cache cut short
            f.truncate(size // 2)
        one_line_error(minigpt2("-m", repo, "-n", "2", "Hi", env=env), 1, "is truncated",
                       f"fetch it again with `python -m minigpt2 --download -m {repo}`", f"or delete {blob}")
        one_line_error(minigpt2("-m", repo, "-n", "2", "Hi", env={**env, "HF_HUB_OFFLINE": "1"}), 1,
                       f"`python -m minigpt2 --download -m {repo}` once HF_HUB_OFFLINE is unset")  # (offline it can't)
        repaired = minigpt2("--download", "-m", repo, env=env)
        out, err = text(repaired)
        assert repaired.returncode == 0 and "works offline" in out, err
        assert "the cached model.safetensors cannot be loaded, downloading it again" in err
        assert os.path.getsize(blob) == size
        assert minigpt2("-m", repo, "--greedy", "-n", "2", "Hi", env=env).returncode == 0
