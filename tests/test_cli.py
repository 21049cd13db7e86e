"""The command line, as a user meets it: output, exit codes, stdin, streaming, Ctrl-C, and the commands.

Most tests call ``minigpt2.cli.main(argv)`` in-process (fast); the ones about processes (exit status, piped
stdin, signals, streaming) run ``python -m minigpt2``. The model is a small random checkpoint in a local
directory (GPT-2's vocabulary, so the bundled tokenizer fits): no network.
"""
from __future__ import annotations

import io
import os
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import save_tiny_model
from hubserver import tiny_checkpoint_files
from minigpt2 import GPT2LMHeadModel, backend
from minigpt2.cli import main
from minigpt2.tokenizer import AutoTokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A checkpoint saved with its tokenizer, as save_pretrained users do; 1024 positions for long runs."""
    return save_tiny_model(tmp_path_factory.mktemp("cli_model"), 1024)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained("gpt2")


@pytest.fixture(scope="module")
def model(model_dir):
    return GPT2LMHeadModel.from_pretrained(model_dir)


@pytest.fixture(autouse=True)
def keep_backend():
    """--backend and --threads change process-wide settings; put them back for the other tests."""
    before = backend.get_backend()
    threads = backend.get_num_threads() if hasattr(backend, "get_num_threads") else None
    yield
    backend.set_backend(before)
    if threads is not None:
        backend.set_num_threads(threads)


@pytest.fixture
def stdin_is_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(""))


def run(argv, capsys):
    """main(argv) -> (exit code, stdout, stderr); argparse's own exits count too."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# -- generating ------------------------------------------------------------------------------------------

def test_greedy_prints_what_generate_returns(model_dir, model, tokenizer, capsys, stdin_is_a_terminal):
    code, out, err = run(["-m", model_dir, "--greedy", "-n", "8", "Hello world"], capsys)
    assert code == 0, err
    ids = tokenizer("Hello world", return_tensors="np").input_ids
    expected = model.generate(ids, max_new_tokens=8, pad_token_id=model.config.eos_token_id)
    assert out == tokenizer.decode(expected[0], skip_special_tokens=True) + "\n"


def test_sampling_is_reproducible_with_a_seed(model_dir, capsys, stdin_is_a_terminal):
    outputs = [run(["-m", model_dir, "-n", "10", "-s", str(seed), "The cat"], capsys)[1] for seed in (1, 1, 2)]
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]
    assert all(o.startswith("The cat") for o in outputs)


def test_several_sequences_and_beams(model_dir, model, tokenizer, capsys, stdin_is_a_terminal):
    code, out, _ = run(["-m", model_dir, "-n", "6", "-N", "3", "-s", "0", "Hi"], capsys)
    assert code == 0 and out.count("---\n") == 2 and out.count("Hi") >= 3
    code, out, _ = run(["-m", model_dir, "-n", "6", "--beams", "3", "-N", "2", "Hi"], capsys)
    beams = model.generate(np.array([tokenizer("Hi").input_ids]), max_new_tokens=6, num_beams=3,
                           num_return_sequences=2, pad_token_id=model.config.eos_token_id)
    assert code == 0 and out == "\n---\n".join(tokenizer.decode(b, skip_special_tokens=True) for b in beams) + "\n"


def test_prompt_from_stdin(model_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Once upon a time\n"))
    piped = run(["-m", model_dir, "--greedy", "-n", "5"], capsys)
    monkeypatch.setattr(sys, "stdin", io.StringIO("Once upon a time\n"))
    dash = run(["-m", model_dir, "--greedy", "-n", "5", "-"], capsys)
    typed = run(["-m", model_dir, "--greedy", "-n", "5", "Once", "upon", "a", "time"], capsys)
    assert piped == dash == typed and piped[0] == 0 and piped[1].startswith("Once upon a time")


def test_a_word_that_names_a_command_is_a_prompt(model_dir, capsys, stdin_is_a_terminal):
    code, out, _ = run(["-m", model_dir, "--greedy", "-n", "3", "tokenize"], capsys)
    assert code == 0 and out.startswith("tokenize") and "index" not in out


def test_empty_prompt_starts_a_new_text(model_dir, capsys, stdin_is_a_terminal):
    code, out, err = run(["-m", model_dir, "--greedy", "-n", "5", ""], capsys)
    assert code == 0 and out.strip(), err


def test_stats_go_to_stderr(model_dir, capsys, stdin_is_a_terminal):
    code, out, err = run(["-m", model_dir, "--greedy", "-n", "6", "--stats", "Hi"], capsys)
    assert code == 0 and "time to first token" in err and "tokens/s" in err and "time to first" not in out


def test_candidates_show_each_step(model_dir, tokenizer, capsys, stdin_is_a_terminal):
    code, out, _ = run(["-m", model_dir, "--greedy", "-n", "4", "--candidates", "3", "The cat"], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0] == "prompt: 'The cat'" and lines[-1].startswith("text: The cat")
    steps = lines[1:-1]
    assert len(steps) == 4
    for line in steps:
        shown, chosen = line.split("   -> ")
        first_candidate = shown.split("%")[0].rsplit(" ", 1)[0].split(maxsplit=1)[1].strip()
        percentages = [float(p.split()[-1]) for p in shown.split("%")[:-1]]
        assert chosen == f"{first_candidate} ({percentages[0]:.1f}%)", "greedy takes the likeliest candidate"
        assert percentages == sorted(percentages, reverse=True) and len(percentages) == 3


def test_backend_and_threads_flags(model_dir, capsys, stdin_is_a_terminal):
    code, _, err = run(["-m", model_dir, "--greedy", "-n", "2", "--backend", "numpy", "Hi"], capsys)
    assert code == 0 and backend.get_backend() == "numpy", err
    if hasattr(backend, "set_num_threads"):
        code, _, err = run(["-m", model_dir, "--greedy", "-n", "2", "--threads", "1", "Hi"], capsys)
        assert code == 0 and backend.get_num_threads() == 1, err


def test_directory_without_tokenizer_files_uses_gpt2s(tmp_path, capsys, stdin_is_a_terminal):
    tiny_checkpoint_files(tmp_path)
    code, out, err = run(["-m", str(tmp_path), "--greedy", "-n", "3", "Hi"], capsys)
    assert code == 0 and out.startswith("Hi") and "using GPT-2's vocabulary" in err


def test_long_prompts_are_cut_to_fit(tmp_path, capsys, stdin_is_a_terminal):
    tiny_checkpoint_files(tmp_path, n_positions=16)
    code, out, err = run(["-m", str(tmp_path), "--greedy", "-n", "50", "one two three four five"], capsys)
    assert code == 0 and "generating 11 new tokens, not 50" in err
    code, _, err = run(["-m", str(tmp_path), "--greedy", " ".join(["word"] * 20)], capsys)
    assert code == 1 and "reads at most 16" in err


def test_a_prompt_longer_than_the_tokenizer_allows_is_one_line(model_dir):
    # In a process of its own: the tokenizer's own warning would go through logging, which pytest captures.
    done = subprocess.run(cli("-m", model_dir, "--greedy", " ".join(["word"] * 1100)), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "reads at most 1024" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- the other commands ----------------------------------------------------------------------------------

def test_tokenize(capsys, tokenizer):
    code, out, _ = run(["--tokenize", "Hello world!"], capsys)
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert code == 0 and [int(r[1]) for r in rows] == tokenizer("Hello world!").input_ids
    assert rows[1][2] == "Ġworld" and out.splitlines()[-1].startswith("3 tokens for 12 characters")


def test_info(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    code, out, _ = run(["--info"], capsys)
    assert code == 0 and "https://mirror.example" in out and str(tmp_path) in out and "backend:" in out


def test_download_of_a_directory_needs_nothing(model_dir, capsys):
    code, out, _ = run(["--download", "-m", model_dir], capsys)
    assert code == 0 and "nothing to download" in out


def test_help(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    words = " ".join(out.split())  # (the help is filled to the terminal's width: a phrase may span two lines)
    for part in ("examples:", "--tokenize", "--download", "--info", "--candidates", "never words", "exit codes"):
        assert part in words


# -- errors ----------------------------------------------------------------------------------------------

def test_bad_backend_variables_are_one_line_and_the_flags_replace_them(model_dir, capsys, stdin_is_a_terminal,
                                                                        monkeypatch):
    # What a bad MINIGPT2_BACKEND or MINIGPT2_NUM_THREADS leaves behind at import (see minigpt2/backend.py).
    problem = ValueError("MINIGPT2_BACKEND='fortran' is not a backend; choose one of numpy, c, auto")
    monkeypatch.setitem(backend._environment_problems, "backend", problem)
    code, out, err = run(["-m", model_dir, "--greedy", "-n", "3", "Hello"], capsys)
    assert code == 1 and "MINIGPT2_BACKEND='fortran'" in err and "Traceback" not in err
    code, out, err = run(["-m", model_dir, "--backend", "numpy", "--greedy", "-n", "3", "Hello"], capsys)
    assert code == 0 and out.startswith("Hello"), err
    assert run(["--help"], capsys)[0] == 0


USAGE_ERRORS = [
    (["--greedy", "-t", "0.5", "hi"], "--greedy does not sample"),
    (["--beams", "2", "-k", "5", "hi"], "--beams does not sample"),
    (["--greedy", "--beams", "2", "hi"], "choose one"),
    (["--beams", "2", "-N", "3", "hi"], "must be <= --beams"),
    (["--greedy", "-N", "2", "hi"], "only one answer"),
    (["--greedy", "-s", "4", "hi"], "--seed shapes random sampling, but --greedy does not sample"),
    (["--greedy", "-t", "0.5", "-s", "4", "hi"], "--temperature, --seed shape random sampling, but --greedy does not"),
    (["--beams", "2", "-s", "4", "hi"], "--beams does not sample"),
    (["--beams", "2", "--candidates", "3", "hi"], "--candidates"),
    (["-t", "0", "hi"], "expected a number > 0"),
    (["-p", "1.5", "hi"], r"expected a number in (0, 1]"),
    (["-k", "-1", "hi"], "expected an integer >= 0"),
    (["-n", "0", "hi"], "expected an integer >= 1"),
    (["-n", "many", "hi"], "is not a number"),
    (["--backend", "fortran", "hi"], "invalid choice"),
    (["--tokenize", "a", "b"], "--tokenize takes no prompt"),
    (["--download", "gpt2-medium"], "choose the model with --model"),
    (["--info", "--download"], "not allowed with"),
    (["--no-such-flag"], "unrecognized arguments"),
    ([], "give a prompt"),
]


@pytest.mark.parametrize("argv,message", USAGE_ERRORS, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_usage_errors_exit_2(argv, message, capsys, stdin_is_a_terminal):
    code, out, err = run(argv, capsys)
    assert code == 2 and message in err and "Traceback" not in err and out == ""


def test_runtime_errors_exit_1_with_one_line(tmp_path, capsys, stdin_is_a_terminal):
    (tmp_path / "config.json").write_text("{}")
    for argv, message in [(["-m", str(tmp_path / "missing"), "hi"], "is not a directory"),
                          (["-m", str(tmp_path), "hi"], "has no model.safetensors")]:
        code, out, err = run(argv, capsys)
        assert code == 1 and message in err and len(err.splitlines()) == 1 and out == ""


# -- as a process ----------------------------------------------------------------------------------------

def cli(*args, **kwargs):
    return [sys.executable, "-m", "minigpt2", *args]


def test_exit_codes_and_piped_stdin_as_a_process(model_dir):
    ok = subprocess.run(cli("-m", model_dir, "--greedy", "-n", "4"), input="Hello\n", capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("Hello"), ok.stderr
    usage = subprocess.run(cli("-t", "0", "hi"), capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2
    failure = subprocess.run(cli("-m", os.path.join(model_dir, "nope"), "hi"), capture_output=True, text=True,
                             timeout=120)
    assert failure.returncode == 1 and "Traceback" not in failure.stderr


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory):
    """A model that takes seconds for 1000 tokens (its head alone is 100 MB to read per token), so that Ctrl-C
    always arrives mid-generation, even on a loaded machine (the tiny one finished first there)."""
    directory = tmp_path_factory.mktemp("cli_slow_model")
    tiny_checkpoint_files(directory, n_positions=1024, n_embd=512, n_head=8, n_layer=2, seed=2)
    AutoTokenizer.from_pretrained("gpt2").save_pretrained(directory)
    return str(directory)


def default_ctrl_c():
    """In the child: Ctrl-C as a terminal gives it. A test run started in the background of a shell inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the signal would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_streams_and_ctrl_c_keeps_the_text(slow_model_dir):
    """Text appears while generation runs; Ctrl-C then ends it with exit code 130, keeping what was printed."""
    process = subprocess.Popen(cli("-m", slow_model_dir, "-n", "1000", "-s", "0", "Streaming test:"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               preexec_fn=default_ctrl_c)
    printed, deadline = b"", time.monotonic() + 60
    try:
        while len(printed) < len("Streaming test:") + 20:  # the prompt and some generated text
            assert time.monotonic() < deadline, "no output within 60 s"
            ready, _, _ = select.select([process.stdout], [], [], 1)
            if ready:
                chunk = os.read(process.stdout.fileno(), 4096)
                assert chunk, f"the process ended early: {process.communicate()[1]}"
                printed += chunk
        assert process.poll() is None, "generation finished before it could be interrupted"
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    text = (printed + rest).decode()
    assert process.returncode == 130
    assert text.startswith("Streaming test:") and text.endswith("\n") and len(text) > len(printed.decode())
    assert "Traceback" not in err.decode() and "[interrupted]" in err.decode()


def test_ctrl_c_while_minigpt2_is_imported_exits_130_without_a_traceback():
    """Importing minigpt2 (NumPy, the C core, ...) takes a while on a cold laptop; Ctrl-C then must not print a
    traceback from deep inside an import (or NumPy's "bad install" advice, which wraps it). The signal is sent
    when -X importtime reports the first minigpt2 module done: the package's own imports are under way."""
    process = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "minigpt2", "--info"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               preexec_fn=default_ctrl_c, env={**os.environ, "MINIGPT2_KERNEL": "numpy"})
    try:
        for line in process.stderr:
            if line.rstrip().endswith(b" minigpt2.checks"):
                process.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail("minigpt2.checks was never imported")
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and out == b"", err
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err and b"[interrupted]" in err


def test_doctor_on_an_install_that_is_not_a_checkout_skips_the_tutorial_checks(tmp_path):
    """Installed with pip there is no tutorials/ folder: the checks for the tutorials (their packages, figures) say
    "skipped: not a checkout" instead of failing with a fix that names tutorials/requirements-workshop.txt."""
    import shutil

    import minigpt2

    shutil.copytree(os.path.dirname(minigpt2.__file__), tmp_path / "site-packages" / "minigpt2",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site-packages"), "MINIGPT2_KERNEL": "numpy",
           "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    done = subprocess.run(cli("--doctor"), capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert "FAIL" not in done.stdout and done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if "skipped: not a checkout" in line] == ["[skip] tutorials",
                                                                                          "[skip] figures"]
    assert "requirements-workshop" not in done.stdout and "2 skipped" in lines[-1]


def test_train_help_shows_plain_text():
    """train --help is made from the module's docstring: its reST markup (``python -m minigpt2 train``) must not
    show up literally."""
    done = subprocess.run(cli("train", "--help"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "python -m minigpt2 train --data" in done.stdout, done.stderr
    assert "``" not in done.stdout and "python -m minigpt2 -- train" in done.stdout
