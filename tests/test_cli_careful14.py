"""The command line, as a careful user found it (round 14): a checkpoint whose weights are not finite numbers, a
special token typed in the prompt, the line a stopped stream leaves, the memory error's advice, and counts of one.

In-process (``minigpt2.cli.main``) on a small random checkpoint with GPT-2's vocabulary; no network.
"""
import numpy as np
import pytest

from minigpt2 import GPT2LMHeadModel, backend, cli
from minigpt2.cli import main
from minigpt2.tokenizer import AutoTokenizer

PROMPT = "Hello<|endoftext|>World"


@pytest.fixture(scope="module")
def nan_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny checkpoint with its token embeddings (and so its tied head) all NaN, as a damaged file holds them."""
    model = GPT2LMHeadModel.from_pretrained(tiny_model_dir)
    model.params["wte"]["weight"] = np.full_like(model.params["wte"]["weight"], np.nan)
    directory = tmp_path_factory.mktemp("nan_model")
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(directory)
    return str(directory)


@pytest.mark.parametrize("how", [["--greedy"], ["--beams", "2"], ["-s", "0"], ["--candidates", "3", "-s", "0"]],
                         ids=["greedy", "beams", "sampling", "candidates"])
def test_weights_that_are_not_finite_are_named_in_every_mode(nan_model_dir, capsys, how):
    """Greedy search and beams used to print a token silently (argmax of NaN is the first one, "!"), sampling
    blamed "the logits processors" a CLI user never gave."""
    code = main(["-m", nan_model_dir, "-n", "3", *how, "hi"])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert "are not all finite numbers (NaN or infinity)" in err and "weights" in err and "processor" not in err
    assert "!" not in out and (out == "" or out.endswith("\n")), out  # the stream's line ended before the error


def test_a_special_token_typed_in_the_prompt_is_shown_as_typed(tiny_model_dir, capsys):
    """Streamed and --beams views show the prompt as given, as the --candidates view does; the new text follows."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = GPT2LMHeadModel.from_pretrained(tiny_model_dir)
    ids = tokenizer(PROMPT).input_ids
    assert tokenizer.eos_token_id in ids  # (the prompt does hold the special token)
    greedy = model.generate(np.array([ids]), max_new_tokens=3, do_sample=False)[0, len(ids):]
    expected = PROMPT + tokenizer.decode(greedy, skip_special_tokens=True)
    assert main(["-m", tiny_model_dir, "-n", "3", "--greedy", PROMPT]) == 0
    assert capsys.readouterr().out == expected + "\n"
    assert main(["-m", tiny_model_dir, "-n", "3", "--beams", "2", PROMPT]) == 0
    assert capsys.readouterr().out.startswith(PROMPT)


def test_ctrl_c_after_an_ended_line_adds_no_blank_line(tiny_model_dir, capsys, monkeypatch):
    """The streamed line gets its newline when generation stops; "[interrupted]" then follows on stderr without a
    blank line before it."""
    calls = []

    def interrupt_at_the_third_token(self, input_ids, scores):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return scores

    monkeypatch.setattr(cli._FiniteScores, "__call__", interrupt_at_the_third_token)
    code = main(["-m", tiny_model_dir, "-n", "10", "--greedy", "hi"])
    out, err = capsys.readouterr()
    assert code == 130 and out.startswith("hi") and out.endswith("\n") and out.count("\n") == 1
    lines = err.splitlines()
    assert "[interrupted]" in lines and lines[lines.index("[interrupted]") - 1:lines.index("[interrupted]")] != [""]


@pytest.mark.parametrize("beams", [None, "2"])
def test_the_memory_error_suggests_fewer_beams_only_with_beams(tiny_model_dir, capsys, monkeypatch, beams):
    def out_of_memory(self, input_ids, scores):
        raise MemoryError("Unable to allocate 1.00 GiB for an array")

    monkeypatch.setattr(cli._FiniteScores, "__call__", out_of_memory)
    code = main(["-m", tiny_model_dir, "-n", "3", *(["--beams", beams] if beams else ["--greedy"]), "hi"])
    err = capsys.readouterr().err
    assert code == 1 and "not enough memory" in err and "a smaller model" in err
    assert ("fewer --beams" in err) == bool(beams), err


def test_counts_of_one_are_singular(tiny_model_dir, capsys):
    assert main(["--tokenize", "Hello"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("1 token for 5 characters")
    assert main(["-m", tiny_model_dir, "-n", "1", "--greedy", "--stats", "Hi"]) == 0
    assert "[prompt 1 token, 1 new token x 1;" in capsys.readouterr().err
    if backend.c_available():
        code = main(["--info", "--threads", "1"])
        assert code in (0, 1) and "C core available, 1 thread)" in capsys.readouterr().out


def test_control_characters_in_what_was_typed_reach_stderr_as_escapes(capsys):
    """A usage error or an error naming a path the user typed: ESC shown as \\x1b, never sent to the terminal."""
    with pytest.raises(SystemExit) as exit:
        main(["--bogus\x1b[31m"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "--bogus\\x1b[31m" in err and "\x1b" not in err
    assert main(["-m", "/nonexistent\x1b]0;title\x07", "hi"]) == 1
    err = capsys.readouterr().err
    assert "/nonexistent\\x1b]0;title\\x07" in err and "\x1b" not in err and "\x07" not in err


def test_the_minigpt2_command_names_itself_in_its_usage_and_errors(capsys):
    import os
    import shutil
    import subprocess
    import sys

    with pytest.raises(SystemExit):
        main(["--bogus"], prog="minigpt2")
    assert capsys.readouterr().err.splitlines()[-1] == "minigpt2: error: unrecognized arguments: --bogus"
    command = shutil.which("minigpt2", path=os.path.dirname(sys.executable))
    if command is None:
        pytest.skip("no minigpt2 command beside this Python (not installed with pip)")
    done = subprocess.run([command, "--bogus"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == "minigpt2: error: unrecognized arguments: --bogus"
    assert done.stderr.startswith("usage: minigpt2 ")
    done = subprocess.run([sys.executable, "-m", "minigpt2", "--bogus"], capture_output=True, text=True, timeout=120)
    assert done.stderr.splitlines()[-1] == "python -m minigpt2: error: unrecognized arguments: --bogus"
