"""What the model writes reaches a terminal as text, never as commands to the terminal.

GPT-2's vocabulary has a token for every byte, control characters included, and a model (a random one, a
workshop's half-trained one) makes them as readily as letters. A terminal obeys them: ESC starts sequences that
recolour the text, move the cursor or retitle the window, \\r goes back to the line's start and overwrites it. So
`python -m minigpt2` shows them as escapes (\\x1b, \\r) when its output is a terminal, in every view, and writes
them exactly into a file or a pipe. The model here always says ESC: its last layer norm outputs one constant
vector and only ESC's embedding points along it.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from minigpt2 import AutoTokenizer, GPT2Config, GPT2LMHeadModel

pty = pytest.importorskip("pty")  # (the terminal is a pseudo-terminal: not on Windows)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def escaping_model(tmp_path_factory):
    (esc,) = AutoTokenizer.from_pretrained("gpt2").encode("\x1b")
    model = GPT2LMHeadModel(GPT2Config(n_positions=32, n_embd=16, n_layer=1, n_head=2), seed=0)
    direction = np.zeros(16, np.float32)
    direction[0] = 1
    model.params["ln_f"]["weight"][:] = 0
    model.params["ln_f"]["bias"][:] = direction  # every position's output is `direction`
    model.params["wte"]["weight"][esc] = 50 * direction  # (the tied head: ESC's logit 50, every other about 0)
    folder = tmp_path_factory.mktemp("escaping") / "model"
    model.save_pretrained(folder)
    return str(folder)


def run(args, terminal):
    """python -m minigpt2 ARGS with stdout a terminal (a pseudo-terminal) or a pipe -> (exit code, stdout bytes)."""
    command = [sys.executable, "-m", "minigpt2", *args]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    if not terminal:
        done = subprocess.run(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        return done.returncode, done.stdout
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=follower,
                               stderr=subprocess.PIPE)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # (EIO: the other end closed)
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    process.communicate(timeout=120)
    return process.returncode, out.replace(b"\r\n", b"\n")  # (the terminal's own line ends)


VIEWS = {"streamed": ["--greedy"], "beams": ["--beams", "2"], "workshop": ["--greedy", "--candidates", "2"]}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_a_terminal_shows_the_models_control_characters_as_escapes(escaping_model, view):
    code, out = run(["-m", escaping_model, "-n", "3", *VIEWS[view], "Hi"], terminal=True)
    assert code == 0, out
    assert b"\x1b" not in out and b"\r" not in out, out
    text = out.decode()
    assert ("text: Hi\\x1b\\x1b\\x1b\n" if view == "workshop" else "Hi\\x1b\\x1b\\x1b\n") in text, text


@pytest.mark.parametrize("view", ["streamed", "beams"])
def test_a_pipe_gets_the_text_exactly(escaping_model, view):
    code, out = run(["-m", escaping_model, "-n", "3", *VIEWS[view], "Hi"], terminal=False)
    assert code == 0 and out == b"Hi\x1b\x1b\x1b\n", out
