"""The command line in awkward terminals, twelfth round: a narrow window (--help fitted to COLUMNS), a reader that is
gone before anything is written (every command, stderr in the same pipe too), Ctrl-C in the workshop view and in
an ASCII terminal, and a seed that gives the same text in the workshop view, for each of several sequences, and
whichever copy of a repeated flag came first.

Every run is ``python -m minigpt2`` in a process of its own, as a user starts it, with tests/test_cli_careful6.py's
environment and Ctrl-C set-up; the models are conftest's tiny checkpoint and careful6's slow one: no network.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from minigpt2.cli import EXAMPLES
from test_cli_careful6 import ENV, USAGE_LINES, default_ctrl_c, slow_model_dir  # noqa: F401 (slow_model_dir: a fixture)


def minigpt2(*args, env=None, **kwargs):
    """python -m minigpt2 ARGS -> CompletedProcess (bytes), stdin empty, in careful6's environment plus ``env``."""
    kwargs.setdefault("capture_output", "stdout" not in kwargs)
    return subprocess.run([sys.executable, "-m", "minigpt2", *args], stdin=subprocess.DEVNULL, timeout=120,
                          env={**ENV, **(env or {})}, **kwargs)


# -- 1. --help in a narrow terminal ------------------------------------------------------------------------------

def is_an_example_command(line) -> bool:
    """An example's command alone on its line (no note beside it, after a gap of spaces)."""
    return line.startswith(("  python -m minigpt2 ", "  echo ")) and "  " not in line.strip()


@pytest.mark.parametrize("columns", [40, 80])
def test_help_fits_the_width_of_the_terminal(columns):
    """argparse fills the options' help to COLUMNS, but the description and the examples were printed as written,
    in lines of up to 118 characters: in an 80-column terminal 20 lines (24 at 40 columns) broke mid-word, the
    examples' notes mixed into the commands. What may stay wider: the usage (argparse never breaks a usage given to
    it), argparse's own option lines, and an example's command, kept whole to be copied."""
    done = minigpt2("--help", env={"COLUMNS": str(columns)})
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0 and lines[0].startswith("usage:"), done.stderr
    too_wide = [line for line in lines[USAGE_LINES:] if len(line) > columns and not is_an_example_command(line)
                and not line.startswith("  -")]
    assert too_wide == [], too_wide
    if columns >= 80:  # (the usage's lines are written to fit 80 columns; the second was 86 wide)
        assert max(len(line) for line in lines[:USAGE_LINES]) <= columns, lines[:USAGE_LINES]
    text = " ".join(" ".join(lines).split())
    for row in EXAMPLES.splitlines():  # every example and its note, in full and in order
        assert " ".join(row.split()) in text, row
    assert "never words, so any text can be a prompt" in text and "130 interrupted (Ctrl-C keeps" in text


def test_help_in_a_wide_terminal_shows_the_examples_as_written():
    done = minigpt2("--help", env={"COLUMNS": "200"})
    assert done.returncode == 0 and EXAMPLES.strip() in done.stdout.decode(), done.stdout.decode()


# -- 2. a reader that is gone before anything is written ----------------------------------------------------------

def test_train_help_fits_80_columns():
    """train's help had its description and notes printed as written too (lines of up to 96 characters beside its
    examples); what may stay wider is an example's command, kept whole to be copied."""
    done = minigpt2("train", "--help", env={"COLUMNS": "80"})
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0 and lines[0].startswith("usage:"), done.stderr
    too_wide = [line for line in lines if len(line) > 80 and not line.lstrip().startswith("python -m minigpt2 ")]
    assert too_wide == [], too_wide
    assert "# continue a run" in done.stdout.decode()  # (the examples' notes are kept, under their commands)


def with_a_gone_reader(*args, stderr_too=False):
    """``python -m minigpt2 ARGS | true``, the reader gone first (so the first write meets the closed pipe, not only
    a long output): -> CompletedProcess; ``stderr_too``: ``2>&1 | true``."""
    read, write = os.pipe()
    os.close(read)
    try:
        return minigpt2(*args, stdout=write, stderr=write if stderr_too else subprocess.PIPE)
    finally:
        os.close(write)


def test_every_command_into_a_pipe_whose_reader_is_gone_is_a_quiet_sigpipe_exit(tiny_model_dir):
    """As cat and grep do: exit 141 (128 + SIGPIPE) and not a word, for the commands and the ways of generating that
    the tests of "| head" do not run (they read a long generation or --tokenize); the empty prompt's note on stderr
    comes first and stays."""
    model = ["-m", tiny_model_dir, "-n", "3"]
    runs = [["--help"], ["--version"], ["--info"], [*model, "--beams", "2", "Hi"],
            [*model, "-s", "0", "--candidates", "2", "Hi"], [*model, "-s", "0", "-N", "2", "--stats", "Hi"]]
    for args in runs:
        done = with_a_gone_reader(*args)
        assert (done.returncode, done.stderr) == (141, b""), (args, done.returncode, done.stderr.decode())
    done = with_a_gone_reader(*model, "-s", "0", "")
    assert done.returncode == 141 and done.stderr.decode().splitlines() == [
        "[the prompt is empty: starting a new text from <|endoftext|>]"], done.stderr.decode()
    for args in (["--help"], [*model, "-s", "0", "--stats", "Hi"], [*model, "-s", "0", ""]):  # 2>&1 | true
        assert with_a_gone_reader(*args, stderr_too=True).returncode == 141, args


# -- 3. Ctrl-C in the workshop view, in an ASCII terminal ---------------------------------------------------------

@pytest.mark.parametrize("view", [[], ["--candidates", "2"]])
def test_ctrl_c_in_an_ascii_terminal_keeps_the_text_escaped(slow_model_dir, view):
    """PYTHONIOENCODING=ascii and a prompt ASCII cannot show: Ctrl-C while generating keeps what was printed, shown
    as escapes, ends the line (the workshop view prints its "text:" line), says "[interrupted]" and nothing else,
    and exits 130."""
    process = subprocess.Popen([sys.executable, "-m", "minigpt2", "-m", slow_model_dir, "-n", "1000", "-s", "0", *view,
                                "Café ☕"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=default_ctrl_c, env={**ENV, "PYTHONIOENCODING": "ascii"})
    try:
        if view:  # the prompt's line, then a first step's
            printed = process.stdout.readline() + process.stdout.readline()
        else:  # the prompt and some generated text
            printed = process.stdout.read(len("Caf\\xe9 \\u2615") + 5)
        assert process.poll() is None, "generation finished before it could be interrupted"
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    text = (printed + rest).decode("ascii")
    assert process.returncode == 130 and err.decode().strip() == "[interrupted]", err.decode()
    assert text.endswith("\n") and text.splitlines()[-1].startswith(
        "text: Caf\\xe9 \\u2615" if view else "Caf\\xe9 \\u2615"), text


# -- 4. a seed, several sequences, the workshop view, repeated flags ---------------------------------------------

def test_a_seed_gives_the_same_texts_in_the_workshop_view_and_a_repeated_flag_counts_once(tiny_model_dir):
    """-s 5 -N 2 prints two different texts, the same on every run; the workshop view (--candidates) shows the same
    two texts, step by step; --stats changes nothing on stdout; and a flag given twice counts as its last copy
    (-s 1 -s 5 is -s 5, -n 30 -n 6 is -n 6), as in other Unix tools."""
    model = ["-m", tiny_model_dir, "-n", "6", "-N", "2"]
    plain = minigpt2(*model, "-s", "5", "The cat")
    texts = plain.stdout.decode().splitlines()[::2]  # (between them: "---")
    assert plain.returncode == 0 and plain.stdout.decode().splitlines()[1] == "---", plain
    assert len(texts) == 2 and texts[0] != texts[1] and texts[0].startswith("The cat"), texts
    assert minigpt2(*model, "-s", "1", "-n", "30", "-n", "6", "--stats", "-s", "5", "The cat").stdout == plain.stdout
    view = minigpt2(*model, "-s", "5", "--candidates", "1", "The cat")
    shown = [line[len("text: "):] for line in view.stdout.decode().splitlines() if line.startswith("text: ")]
    assert view.returncode == 0 and shown == texts, view.stdout.decode()
