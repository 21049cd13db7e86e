"""The command line, second round of a new user's findings: a failed C build, config.json values that HF allows or
that are wrong, flag values that cannot work (a temperature float32 cannot use, more beams than memory holds),
the first run's kernel measuring, flags that commands ignore, --version, and ``| head``.

In-process through ``minigpt2.cli.main`` where the process does not matter, ``python -m minigpt2`` where it does; the
model is a tiny random checkpoint in a tmp dir.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from test_cli import run
from test_cli import stdin_is_a_terminal as terminal  # noqa: F401 (a fixture)
from test_cli_new_user import QUICK_CALIBRATION
from minigpt2 import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def with_config(tiny_model_dir, tmp_path, **changes):
    """A copy of the checkpoint whose config.json has ``changes``; None removes a key."""
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    with open(target / "config.json", encoding="utf-8") as f:
        config = json.load(f)
    for key, value in changes.items():
        config[key] = value
    (target / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return str(target)




def minigpt2(*args, env=None, timeout=120, **kwargs):
    """python -m minigpt2 ARGS in a new process. Its kernels are NumPy's unless env says otherwise: these tests read
    stderr line by line, where a first run of a new build of the C core would add the note that it measures them."""
    env = {**os.environ, "MINIGPT2_KERNEL": "numpy", **(env or {})}
    return subprocess.run([sys.executable, "-m", "minigpt2", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env, **kwargs)


# -- 1. a C build that fails leaves no older library to install ----------------------------------------------

CLEANUP = r"""
import os, runpy, sys
sys.argv = ["setup.py", "--name"]  # setup() only prints the name: the namespace holds OptionalBuildExt
space = runpy.run_path("setup.py", run_name="setup_for_test")
from setuptools.dist import Distribution
dist = Distribution({"name": "minigpt2"})
from cffi.setuptools_ext import add_cffi_module
add_cffi_module(dist, "csrc/build_kernels.py:ffibuilder")
command = space["OptionalBuildExt"](dist)
command.initialize_options()
command.build_lib, command.build_temp = sys.argv_build_lib, sys.argv_build_lib + "/temp"
command.finalize_options()
stale = os.path.join(command.build_lib, "minigpt2")
os.makedirs(stale, exist_ok=True)
for name in ("_kernels.abi3.so", "_kernels.cpython-311-x86_64-linux-gnu.so", "other.so"):
    open(os.path.join(stale, name), "w").close()
command._skip(RuntimeError("no compiler"))
print(sorted(os.listdir(stale)))
"""


def test_a_failed_c_build_removes_the_library_an_earlier_build_left(tmp_path):
    script = CLEANUP.replace("sys.argv_build_lib", repr(str(tmp_path / "lib")))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CC": "false"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['other.so']", done.stdout + done.stderr
    assert "C core was not built" in done.stdout and "removed" in done.stdout


def test_no_compiler_says_nothing_about_threads():
    done = subprocess.run([sys.executable, "-c", "import build_kernels"], cwd=os.path.join(ROOT, "csrc"),
                          capture_output=True, text=True, timeout=60, env={**os.environ, "CC": "false"})
    assert done.returncode == 0, done.stderr
    assert "POSIX threads" not in done.stderr + done.stdout


# -- 2, 7. config.json values: HF's list of EOS ids; a bad one names config.json and the key ---------------------

def test_eos_token_id_as_a_list_works_and_a_bad_one_names_the_key(tiny_model_dir, tmp_path, capsys, terminal):
    listed = with_config(tiny_model_dir, tmp_path / "a", eos_token_id=[50256, 13])
    code, out, err = run(["-m", listed, "-n", "3", "-s", "0", "Hi"], capsys)
    assert code == 0 and out.startswith("Hi"), err
    code, out, err = run(["-m", listed, "--beams", "2", "-n", "3", "Hi"], capsys)
    assert code == 0 and out.startswith("Hi"), err
    for i, value in enumerate(("abc", 999999, [50256, "x"], [])):
        bad = with_config(tiny_model_dir, tmp_path / f"b{i}", eos_token_id=value)
        code, out, err = run(["-m", bad, "-n", "3", "-s", "0", "Hi"], capsys)
        assert code == 1 and "eos_token_id" in err and os.path.join(bad, "config.json") in err, err
        assert "pad_token_id" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("value", [None, 99999999, "x"])
def test_a_bos_token_id_an_empty_prompt_cannot_start_from_names_the_key(tiny_model_dir, tmp_path, capsys, terminal, value):
    bad = with_config(tiny_model_dir, tmp_path, bos_token_id=value)
    code, out, err = run(["-m", bad, "-n", "3", "-s", "0", ""], capsys)
    assert code == 1 and "bos_token_id" in err and os.path.join(bad, "config.json") in err, err
    assert "starting a new text from ]" not in err


def test_a_config_value_error_names_the_file_and_the_key(tiny_model_dir, tmp_path, capsys, terminal):
    bad = with_config(tiny_model_dir, tmp_path, n_layer="two")
    code, out, err = run(["-m", bad, "-n", "3", "Hi"], capsys)
    assert code == 1 and "n_layer" in err and os.path.join(bad, "config.json") in err, err


def test_warnings_are_one_line_without_python_source(tiny_model_dir, tmp_path):
    untied = with_config(tiny_model_dir, tmp_path / "a", tie_word_embeddings=False)  # no lm_head in the file
    for directory, what in ((untied, "lm_head.weight"),):
        done = minigpt2("-m", directory, "-n", "3", "-s", "0", "Hi", env={"PYTHONWARNINGS": "default"})
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stderr.splitlines() if what in line]
        assert lines and all(line.startswith("minigpt2: ") for line in lines), done.stderr
        assert ".py:" not in done.stderr and "Warning:" not in done.stderr, done.stderr
        assert len(done.stderr.splitlines()) == len(lines), done.stderr


# -- 3, 4. values that cannot work: a temperature float32 cannot use, more beams than memory --------------------

@pytest.mark.parametrize("value", ["1e-40", "1e-5", "2e4", "1e39"])
def test_a_temperature_float32_sampling_cannot_use_is_a_usage_error(tiny_model_dir, capsys, terminal, value):
    code, out, err = run(["-m", tiny_model_dir, "-t", value, "-n", "3", "-s", "0", "Hi"], capsys)
    assert code == 2 and "--temperature" in err and "0.0001" in err and "10000" in err, err
    assert "RuntimeWarning" not in err and out == ""


@pytest.mark.parametrize("value", ["1e-4", "1e4"])
def test_the_ends_of_the_temperature_range_work(tiny_model_dir, capsys, terminal, value):
    code, out, err = run(["-m", tiny_model_dir, "-t", value, "-n", "3", "-s", "0", "Hi"], capsys)
    assert code == 0 and out.startswith("Hi") and "Warning" not in err, err


def _limit_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))  # (before the fix: MemoryError, not the OOM killer)


def test_more_beams_than_memory_holds_is_a_usage_error(tiny_model_dir):
    done = minigpt2("-m", tiny_model_dir, "--beams", "100000", "-n", "3", "Hi", preexec_fn=_limit_memory, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "--beams 100000" in done.stderr and "memory" in done.stderr and "at most --beams" in done.stderr


def test_more_candidates_than_tokens_is_a_usage_error(tiny_model_dir, capsys, terminal):
    code, out, err = run(["-m", tiny_model_dir, "--candidates", "100000", "-n", "2", "Hi"], capsys)
    assert code == 2 and "--candidates" in err and "50257" in err and out == "", err


# -- 5. the first run's kernel measuring is announced; doctor does not call a slow first pass ok -----------------



def test_the_first_run_says_it_measures_the_kernels_once(tiny_model_dir, tmp_path):
    if not backend.c_available():
        pytest.skip("no C core: nothing to measure")
    env = {k: v for k, v in os.environ.items() if k not in ("MINIGPT2_KERNEL", "MINIGPT2_BACKEND")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    runs = [subprocess.run([sys.executable, "-c", QUICK_CALIBRATION, "-m", tiny_model_dir, "--greedy", "-n", "2", "Hi"],
                           capture_output=True, text=True, timeout=120, env=env) for _ in range(2)]
    first, again = runs
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    notes = [line for line in first.stderr.splitlines() if line.startswith("[measuring")]
    assert len(notes) == 1 and str(tmp_path / "xdg" / "minigpt2") in notes[0], first.stderr
    assert first.stderr.index("[measuring") < first.stderr.index("[test: calibrating]")
    assert "[measuring" not in again.stderr and "[test: calibrating]" not in again.stderr, again.stderr


def test_doctor_does_not_call_a_slow_first_forward_pass_ok(monkeypatch):
    from minigpt2 import doctor

    monkeypatch.setattr(doctor, "SLOW_FIRST_PASS_SECONDS", 0.0)
    status, text, fix = doctor.check_model_runs()
    assert status == doctor.WARN and fix, text


# -- 13. flags that a command would ignore ---------------------------------------------------------------------

@pytest.mark.parametrize("argv, flags", [
    (["--tokenize", "hi", "-n", "5", "--greedy", "-t", "0.5"], "--max-new-tokens, --temperature, --greedy"),
    (["--download", "--beams", "3", "-t", "0.5"], "--temperature, --beams"),
    (["--info", "--greedy"], "--greedy"),
    (["--doctor", "-s", "1"], "--seed"),
    (["--tokenize", "hi", "--stats"], "--stats"),
])
def test_generation_flags_with_a_command_are_refused(tiny_model_dir, capsys, argv, flags):
    if "--download" in argv:
        argv = [*argv, "-m", tiny_model_dir]
    code, out, err = run(argv, capsys)
    assert code == 2 and flags in err and out == "", err


# -- 14. the usage line, --version, | head -------------------------------------------------------------------

def test_usage_names_doctor_and_version_prints_it(capsys):
    from minigpt2 import __version__

    code, out, err = run(["--help"], capsys)
    assert code == 0 and "--doctor" in out.split("\n\n")[0]
    code, out, err = run(["--version"], capsys)
    assert code == 0 and out == f"minigpt2 {__version__}\n"


@pytest.mark.parametrize("argv, message", [
    (["--info", "--version"], "argument --version: not allowed with argument --info"),
    (["--version", "--doctor"], "not allowed with"),
    (["--version", "hello"], "--version takes no prompt (got 'hello'); drop one of them"),
    (["--version", "-n", "7"], "--version does not use --max-new-tokens"),
    (["--version", "--greedy"], "--version does not use --greedy"),
    (["--version", "--backend", "c"], "--version does not use --backend"),
])
def test_version_is_a_command_like_the_others(capsys, argv, message):
    code, out, err = run(argv, capsys)
    assert code == 2 and message in err and out == "", err


def test_version_alone_prints_only_the_version():
    from minigpt2 import __version__

    done = subprocess.run([sys.executable, "-m", "minigpt2", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"minigpt2 {__version__}\n", "")


def test_a_reader_that_goes_away_is_a_quiet_sigpipe_exit(tiny_model_dir):
    """More output than a pipe holds (so the writer surely meets the closed pipe), read by head: exit 141, as a
    program killed by SIGPIPE reports it, and nothing on stderr."""
    done = subprocess.run(["bash", "-c", f"yes 'hello world' | head -c 100000 | {sys.executable} -m minigpt2 "
                                         f"--tokenize - | head -c 5; echo \" ${{PIPESTATUS[2]}}\""],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout == "index 141\n" and done.stderr == "", done


# -- 10, 12. the MINIGPT2_* variables on the command line ----------------------------------------------------------

def test_a_bad_backend_variable_gives_the_command_line_fix_only(tiny_model_dir):
    done = minigpt2("-m", tiny_model_dir, "-n", "2", "Hi", env={"MINIGPT2_BACKEND": "foo"})
    assert done.returncode == 1 and "--backend" in done.stderr and "set_backend" not in done.stderr, done.stderr
    assert done.stderr.count("(") == 1, done.stderr


def test_a_kernel_variant_without_the_c_core_is_an_error(tiny_model_dir, capsys, terminal, monkeypatch):
    monkeypatch.setenv("MINIGPT2_KERNEL", "avx2")
    monkeypatch.setattr(backend, "c_available", lambda: False)
    code, out, err = run(["-m", tiny_model_dir, "-n", "2", "Hi"], capsys)
    assert code == 1 and "MINIGPT2_KERNEL='avx2'" in err and "not built" in err and out == "", err
