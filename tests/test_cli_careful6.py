"""The command line as a careful user runs it, sixth round: Ctrl-C pressed again and again, stdin / stdout / stderr
closed by the shell (``<&-``, ``>&-``, ``2>&-``, as cron jobs, service managers and some CI runners start programs),
a prompt file with a byte order mark (Windows editors write one), and numbers that start with "-" but do not look
like "-5" to argparse (``-t -1e-3``). Then what was right already and stays so: broken model directories, ``| head``
during generation, the same text for a seed whatever the threads and backend, stdout holding only the text.

Every run is ``python -m minigpt2`` in a process of its own, as a user starts it; the model is a tiny random
checkpoint in a tmp dir (GPT-2's vocabulary, so the bundled tokenizer fits): no network.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hubserver import tiny_checkpoint_files
from minigpt2 import backend
from minigpt2.cli import build_parser
from minigpt2.tokenizer import AutoTokenizer

USAGE_LINES = len(build_parser().format_usage().splitlines())  # the usage argparse prints before an error (exit 2)
PROG = "python -m minigpt2: error: "


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory):
    """Slow enough (a 50 MB head read per token) that 1000 tokens are still being generated when Ctrl-C comes."""
    directory = tmp_path_factory.mktemp("careful6_slow")
    tiny_checkpoint_files(directory, n_positions=1024, n_embd=256, n_head=4, n_layer=2, seed=2)
    AutoTokenizer.from_pretrained("gpt2").save_pretrained(directory)
    return str(directory)


ENV = {**os.environ, "MINIGPT2_KERNEL": "numpy"}  # (no first-run note about measuring the kernels on stderr)


def closing(*fds):
    """In the child, before Python starts: the shell's ``<&-`` / ``>&-`` / ``2>&-``."""
    def close():
        for fd in fds:
            os.close(fd)
    return close


def minigpt2(*args, close=(), stdin=b"", **kwargs):
    """python -m minigpt2 ARGS -> CompletedProcess (bytes); ``close``: the standard fds the shell closed."""
    if 0 in close:
        kwargs["stdin"] = subprocess.DEVNULL
    else:
        kwargs["input"] = stdin
    return subprocess.run([sys.executable, "-m", "minigpt2", *args], capture_output=True, timeout=120, env=ENV,
                          preexec_fn=closing(*close) if close else None, **kwargs)


def one_line_error(done, code, *parts):
    err = done.stderr.decode()
    assert done.returncode == code and done.stdout == b"", (done.returncode, done.stdout, err)
    assert "Traceback" not in err and err.splitlines()[-1].startswith(PROG), err
    assert len(err.splitlines()) == (1 if code == 1 else 1 + USAGE_LINES), err  # exit 2: argparse's usage first
    for part in parts:
        assert part in err, err


# -- 1. Ctrl-C pressed several times ---------------------------------------------------------------------------

def default_ctrl_c():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # (a test run in a shell's background inherits SIGINT ignored)


def test_ctrl_c_pressed_again_and_again_exits_130_with_one_line(slow_model_dir):
    """An impatient user presses Ctrl-C several times. The first ends the run (the text so far, "[interrupted]",
    exit 130); the others, arriving while that ending runs, used to raise a KeyboardInterrupt inside it: a traceback
    ("lost sys.stderr" at worst) and exit status -2, every time."""
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-m", "minigpt2", "-m", slow_model_dir, "-n", "1000", "-s", "0",
                                    "Press again:"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, preexec_fn=default_ctrl_c, env=ENV)
        try:
            printed = process.stdout.read(len("Press again:") + 5)  # generation is under way
            assert process.poll() is None, "generation finished before it could be interrupted"
            for _ in range(5):
                process.send_signal(signal.SIGINT)
                time.sleep(0.0002)  # (a burst: the ending takes well under a millisecond)
            rest, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        err = err.decode()
        assert process.returncode == 130, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err and err.strip() == "[interrupted]", err
        assert (printed + rest).decode().startswith("Press again:") and rest.endswith(b"\n")


# -- 2. stdin, stdout or stderr closed -------------------------------------------------------------------------

def test_a_closed_stdin_is_a_one_line_error(tiny_model_dir):
    """``<&-``: Python's sys.stdin is None. The command asked sys.stdin.isatty() and read it: AttributeError tracebacks.
    With no prompt it is the usage error of no prompt at all; "-" (read the prompt from stdin) cannot be served."""
    one_line_error(minigpt2("-m", tiny_model_dir, "-n", "2", close=[0]), 2, "give a prompt")
    one_line_error(minigpt2("-m", tiny_model_dir, "-n", "2", "-", close=[0]), 1, "stdin is closed")
    one_line_error(minigpt2("--tokenize", "-", close=[0]), 1, "stdin is closed")
    typed = minigpt2("-m", tiny_model_dir, "-n", "2", "--greedy", "Hi", close=[0])  # a prompt given: stdin is not needed
    assert typed.returncode == 0 and typed.stdout.startswith(b"Hi"), typed.stderr


def test_a_closed_stderr_keeps_everything_else_off_stdout(tiny_model_dir, tmp_path):
    """``2>&-``: Python's sys.stderr is None, and print(..., file=None) prints to stdout: the --stats line and the
    error message landed in the file that should hold the generated text only."""
    with open(tmp_path / "out.txt", "wb") as out:
        done = subprocess.run([sys.executable, "-m", "minigpt2", "-m", tiny_model_dir, "-n", "3", "--greedy", "--stats",
                               "Hi"], stdout=out, stdin=subprocess.DEVNULL, env=ENV, timeout=120,
                              preexec_fn=closing(2))
    text = (tmp_path / "out.txt").read_text()
    assert done.returncode == 0 and text.startswith("Hi") and len(text.splitlines()) == 1, text
    assert "tokens/s" not in text
    failed = minigpt2("-m", os.path.join(tiny_model_dir, "missing"), "-n", "2", "Hi", close=[2])
    assert failed.returncode == 1 and failed.stdout == b"", failed.stdout
    usage = minigpt2("-m", tiny_model_dir, "-t", "0", "Hi", close=[2])
    assert usage.returncode == 2 and usage.stdout == b"", usage.stdout


def test_a_closed_stdout_is_an_error_not_a_silent_success(tiny_model_dir):
    """``>&-``: print() to a None sys.stdout does nothing, so the run generated, printed nothing and exited 0. As
    cat or echo there: an error (exit 1), and before the model is loaded."""
    one_line_error(minigpt2("-m", tiny_model_dir, "-n", "2", "Hi", close=[1]), 1, "stdout is closed", "/dev/null")


# -- 3. a byte order mark ------------------------------------------------------------------------------------

def test_a_byte_order_mark_on_stdin_is_not_part_of_the_prompt(tiny_model_dir):
    """A prompt saved by Notepad (or PowerShell's Out-File) starts with the UTF-8 byte order mark, EF BB BF: it was
    tokenized as three byte tokens in front of the text, and changed the continuation."""
    tokens = minigpt2("--tokenize", "-", stdin=b"\xef\xbb\xbfHello\r\n")
    assert tokens.returncode == 0, tokens.stderr
    assert tokens.stdout.decode().splitlines()[-1].startswith("1 token for 5 characters"), tokens.stdout
    piped = minigpt2("-m", tiny_model_dir, "-n", "4", "--greedy", "-", stdin=b"\xef\xbb\xbfHello\r\n")
    typed = minigpt2("-m", tiny_model_dir, "-n", "4", "--greedy", "Hello")
    assert piped.returncode == typed.returncode == 0 and piped.stdout == typed.stdout, piped.stderr
    inside = minigpt2("--tokenize", "-", stdin="a\ufeffb".encode())  # one that is not at the start is text
    assert inside.stdout.decode().splitlines()[-1].startswith("5 tokens for 3 characters"), inside.stdout


# -- 4. values that start with "-" -----------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["-t", "-1e-3"], "argument -t/--temperature: -1e-3 is not allowed; expected a number > 0"),
    (["--temperature", "-inf"], "argument -t/--temperature: -inf is not a finite number; expected a number > 0"),
    (["-n", "-1e3"], "argument -n/--max-new-tokens: '-1e3' is not a whole number; expected an integer >= 1"),
    (["-p", "-nan"], "argument -p/--top-p: -nan is not a finite number; expected a number in (0, 1]"),
    (["--threads", "-inf"], "argument --threads: '-inf' is not a finite whole number; expected an integer from 1"),
], ids=["t-1e-3", "temperature-inf", "n-1e3", "p-nan", "threads-inf"])
def test_a_negative_value_argparse_takes_for_a_flag_is_named_with_what_is_allowed(tiny_model_dir, args, message):
    """argparse reads "-5" and "-.5" as values, but "-1e-3" and "-inf" as flags, and said only "argument
    -t/--temperature: expected one argument": neither the value nor what is allowed."""
    one_line_error(minigpt2("-m", tiny_model_dir, *args, "Hi"), 2, message)


# -- 5. what was right already ------------------------------------------------------------------------------------

def broken_copies(tiny_model_dir, root):
    """Checkpoint directories a user may point --model at, with what the one-line error must say."""
    def copy(name):
        target = root / name
        shutil.copytree(tiny_model_dir, target)
        return target

    cases = []
    llama = copy("llama")
    config = json.loads((llama / "config.json").read_text())
    (llama / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    cases.append((llama, "model_type 'llama' is not GPT-2"))
    truncated = copy("truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[:len(data) // 3])
    cases.append((truncated, "model.safetensors is truncated"))
    corrupt = copy("corrupt")
    (corrupt / "config.json").write_text('{"n_layer": 1,')
    cases.append((corrupt, "config.json is not valid JSON"))
    cases.append((root / "missing", "is not a directory"))
    return cases


def test_broken_model_directories_are_one_line_errors(tiny_model_dir, tmp_path):
    for directory, message in broken_copies(tiny_model_dir, tmp_path):
        one_line_error(minigpt2("-m", str(directory), "-n", "2", "Hi"), 1, message)


def test_a_reader_that_goes_away_during_generation_is_a_quiet_sigpipe_exit(tiny_model_dir):
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m minigpt2 -m {tiny_model_dir} -n 60 -N 300 -s 0 Hello "
                                         f"| head -c 5; echo \" ${{PIPESTATUS[0]}}\""],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert done.stdout == "Hello 141\n" and done.stderr == "", done


def test_a_seed_gives_the_same_text_whatever_the_threads_and_backend_and_stdout_holds_only_it(tiny_model_dir, tmp_path):
    runs = [["--backend", "numpy"]]
    if backend.c_available():
        runs += [["--backend", "c", "--threads", "1"], ["--backend", "c", "--threads", "2"]]
    texts = []
    for i, flags in enumerate(runs):
        path = tmp_path / f"out{i}.txt"
        with open(path, "wb") as out:
            done = subprocess.run([sys.executable, "-m", "minigpt2", "-m", tiny_model_dir, "-n", "12", "-s", "7",
                                   "--stats", *flags, "The cat"], stdout=out, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, timeout=120, env=ENV)
        assert done.returncode == 0 and "tokens/s" in done.stderr.decode(), done.stderr
        texts.append(path.read_text())
    assert texts[0].startswith("The cat") and texts[0].endswith("\n") and len(texts[0].splitlines()) == 1
    assert all(text == texts[0] for text in texts), texts


def test_a_reader_that_goes_away_during_training_is_a_quiet_sigpipe_exit(tmp_path):
    """`python -m minigpt2 train ... | head -1`: the log's reader leaves after a line; training stops as a program
    SIGPIPE ended (141), with nothing on stderr (it printed "error: [Errno 32] Broken pipe" and exited 1)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sat on the mat. A dog ran in the park. " * 200, encoding="utf-8")
    command = (f"{sys.executable} -m minigpt2 train --data {corpus} --out {tmp_path / 'out'} --max-steps 400 "
               f"--n-layer 1 --n-head 2 --n-embd 16 --seq-len 8 --batch-size 2 --log-interval 1 --eval-interval 1000 "
               f"--sample-tokens 0 | head -1; echo \"exit ${{PIPESTATUS[0]}}\"")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, env=ENV)
    assert done.stdout.splitlines()[-1] == "exit 141" and done.stderr == "", done


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux), a device every write to fails")
def test_a_stdout_that_cannot_take_the_text_is_an_error_naming_stdout(tiny_model_dir, tmp_path):
    """`> /dev/full`, as a full disk: exit 1 with one line that says stdout could not be written. It said only
    "[Errno 28] No space left on device" (which reads like the model cache's disk), and --help exited 0 (argparse
    ignores a failed write), train's --help too."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sat on the mat. " * 50, encoding="utf-8")
    commands = [["--help"], ["--version"], ["--tokenize", "Hello"], ["-m", tiny_model_dir, "-n", "3", "-s", "0", "Hi"],
                ["-m", tiny_model_dir, "-n", "3", "--beams", "2", "Hi"], ["train", "--help"],
                ["train", "--data", str(corpus), "--out", str(tmp_path / "out"), "--max-steps", "2", "--n-layer", "1",
                 "--n-head", "2", "--n-embd", "16", "--seq-len", "8", "--batch-size", "2", "--sample-tokens", "0"]]
    for args in commands:
        with open("/dev/full", "wb") as full:
            done = subprocess.run([sys.executable, "-m", "minigpt2", *args], stdout=full, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, timeout=120, env=ENV)
        err = done.stderr.decode()
        assert done.returncode == 1 and "Traceback" not in err, (args, done.returncode, err)
        assert err.splitlines()[-1].endswith("error: cannot write to stdout: No space left on device"), \
            (args, err)


def test_help_with_stdout_closed_is_one_line_naming_stdout():
    """`--help >&-`: the help cannot be printed; one line says so (exit 1). Since argparse's own ignoring of a failed
    write was replaced (above), it was an AttributeError traceback; before that, exit 0 and nothing."""
    one_line_error(minigpt2("--help", close=(1,)), 1, "cannot write to stdout: it is closed")
    done = minigpt2("train", "--help", close=(1,))
    assert done.returncode == 1 and done.stderr.decode().splitlines() == [
        "python -m minigpt2 train: error: cannot write to stdout: it is closed (redirect it to a file, or "
        "to /dev/null to discard what is printed)"], done


def test_ctrl_c_while_the_training_command_imports_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C in the moment `python -m minigpt2 train` imports its code printed a traceback (the training
    command's own handler was not there yet); now the line every other Ctrl-C prints, and 130."""
    import sys
    import types

    from minigpt2 import cli

    class Importing(types.ModuleType):
        def __getattr__(self, name):  # `from .training.cli import main` asks for main: the key is pressed then
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "minigpt2.training.cli", Importing("minigpt2.training.cli"))
    assert cli.main(["train", "--help"]) == 130
    assert capsys.readouterr().err == "\n[interrupted]\n"


def test_the_first_info_on_a_machine_says_it_measures_the_kernels_before_it_does(tmp_path):
    """--info with no kernel choice cached measured the kernels for seconds without a word (generating says so
    first): now the same one line, before the choice it prints."""
    if not backend.c_available():
        pytest.skip("no C core: nothing to measure")
    env = {k: v for k, v in os.environ.items() if k != "MINIGPT2_KERNEL"}
    done = subprocess.run([sys.executable, "-m", "minigpt2", "--info"], capture_output=True, text=True, timeout=300,
                          env={**env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("[measuring this CPU's kernels once ("), done.stderr
    assert f"the choice is cached in {tmp_path / 'cache' / 'minigpt2'}]" in done.stderr, done.stderr
    assert "kernel choice: measured on this machine just now" in done.stdout, done.stdout


def test_info_says_a_token_another_user_saved_in_a_shared_hf_home_is_not_sent(tmp_path, monkeypatch, capsys):
    """A room's shared HF_HOME, where one participant's login saved their token: downloads do not send it
    (minigpt2.hub), but --info said 'token set (in the file ...)' as if it were this user's."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root, to give the token file to another user")
    from minigpt2 import cli

    home = tmp_path / "hf"
    home.mkdir()
    (home / "token").write_text("hf_theirs")
    os.chown(home / "token", 54321, 54321)  # (a uid with no user: named as "user 54321")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    cli.main(["--info"])
    hub_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Hub: "))
    assert f"token in the file {home / 'token'}, user 54321's (HF_HOME is shared): not sent;" in hub_line, hub_line
