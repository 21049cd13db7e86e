"""The command line in a new user's environment: a terminal that is not UTF-8, an unusable cache, bad MINIGPT2_*
variables, a proxy that is down, a file passed as the model, empty stdin. Each test runs what the user ran (most
as a process: the locale, stdin and the environment are the process's) and checks the one-line answer.
"""
from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys

import pytest

from minigpt2.cli import build_parser

USAGE_LINES = len(build_parser().format_usage().splitlines())  # the usage argparse prints before an error (exit 2)


def minigpt2(*args, env=None, stdin=b"", timeout=120):
    """Run python -m minigpt2 with ``args`` (str or bytes) -> CompletedProcess with bytes stdout / stderr."""
    return subprocess.run([sys.executable, "-m", "minigpt2", *args], input=stdin, capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def without(env, *names):
    return {k: v for k, v in env.items() if k not in names}


# -- 1. a terminal that is not UTF-8 ----------------------------------------------------------------------------

C_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


def c_locale(*args, stdin=b""):
    """As in a C locale without UTF-8 mode: Python's stdout is ASCII, argv and stdin arrive surrogate-escaped."""
    env = without({**os.environ, **C_LOCALE}, "PYTHONIOENCODING")
    return subprocess.run([sys.executable, "-m", "minigpt2", *args], input=stdin, capture_output=True, env=env,
                          timeout=120)


def test_a_non_ascii_prompt_in_the_c_locale_is_read_as_utf8_and_shown_escaped(tiny_model_dir):
    done = c_locale("-m", tiny_model_dir, "--greedy", "-n", "3", "Café ☕".encode())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"Caf\\xe9 \\u2615"), done.stdout  # what ASCII cannot show, as escapes
    utf8 = minigpt2("-m", tiny_model_dir, "--greedy", "-n", "3", "Café ☕", env={"PYTHONIOENCODING": "utf-8"})
    shown = utf8.stdout.decode()
    assert done.stdout.decode("ascii").encode().decode("unicode_escape") == shown, "the same text, escaped"


def test_tokenize_in_the_c_locale(tiny_model_dir):
    done = c_locale("--tokenize", "Hello 1")
    assert done.returncode == 0, done.stderr
    assert b"\\u01201" in done.stdout and done.stdout.splitlines()[-1].startswith(b"2 tokens for 7 characters")


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_generated_text_the_encoding_cannot_show_does_not_stop_generation(tiny_model_dir, encoding):
    done = minigpt2("-m", tiny_model_dir, "--greedy", "-n", "3", "naïve ☕ 猫", env={"PYTHONIOENCODING": encoding})
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
    assert b"\\u2615 \\u732b" in done.stdout and done.stdout.endswith(b"\n")


def test_utf8_stdin_in_the_c_locale_and_bytes_that_are_not_utf8(tiny_model_dir):
    done = c_locale("-m", tiny_model_dir, "--greedy", "-n", "3", stdin="Café\n".encode())
    assert done.returncode == 0 and done.stdout.startswith(b"Caf\\xe9"), done.stderr
    for run in (c_locale, minigpt2):
        bad = run("-m", tiny_model_dir, "--greedy", "-n", "3", stdin=b"\xff\xfe random \x80 bytes")
        assert bad.returncode == 1 and bad.stdout == b"", bad.stderr
        assert bad.stderr.decode().startswith("python -m minigpt2: error: stdin is not UTF-8 text")
        assert len(bad.stderr.splitlines()) == 1 and b"surrogate" not in bad.stderr


def test_an_argument_that_is_not_utf8_is_a_usage_error(tiny_model_dir):
    done = c_locale("-m", tiny_model_dir, "-n", "3", b"caf\xe9")  # latin-1 bytes on the command line
    assert done.returncode == 2 and b"the prompt is not UTF-8 text" in done.stderr, done.stderr
    assert b"surrogate" not in done.stderr and b"Traceback" not in done.stderr


# -- 3. bad MINIGPT2_BACKEND / MINIGPT2_NUM_THREADS in --info and --doctor ------------------------------------------

BAD_SETTINGS = {"MINIGPT2_BACKEND": "fortran", "MINIGPT2_NUM_THREADS": "x"}


@pytest.mark.parametrize("variable", sorted(BAD_SETTINGS))
def test_info_names_a_bad_backend_variable(variable):
    done = minigpt2("--info", env={variable: BAD_SETTINGS[variable]})
    out = done.stdout.decode()
    assert done.returncode == 1, out
    line = [line for line in out.splitlines() if line.startswith("  error:")]
    assert len(line) == 1 and (f"{variable}=" in line[0] or f"{variable} must" in line[0]), out
    assert repr(BAD_SETTINGS[variable]) in line[0]
    assert ("numpy, c, auto" if variable == "MINIGPT2_BACKEND" else "at most 256") in line[0]
    assert "INVALID SETTING" in out.splitlines()[1]
    assert "hub" in out.lower(), "the rest of --info is still shown"


def test_doctor_names_a_bad_backend_variable_instead_of_asking_for_a_bug_report():
    done = minigpt2("--doctor", env=BAD_SETTINGS)
    out = done.stdout.decode()
    assert done.returncode == 1 and "report this" not in out and "the check itself failed" not in out, out
    assert "MINIGPT2_BACKEND='fortran' is not a backend; choose one of numpy, c, auto" in out
    assert "MINIGPT2_NUM_THREADS must be a positive whole number" in out and "got 'x'" in out
    assert "fix: unset MINIGPT2_BACKEND" in out and "fix: unset MINIGPT2_NUM_THREADS" in out


# -- 5. a file as the model, and config.json files that cannot be a config ------------------------------------

def one_line_error(done, code, *parts):
    err = done.stderr.decode()
    assert done.returncode == code and done.stdout == b"", err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("python -m minigpt2: error: "), err
    assert len(err.splitlines()) == (1 if code == 1 else 1 + USAGE_LINES), err  # exit 2: argparse's usage first
    for part in parts:
        assert part in err, err


def test_a_file_as_the_model_is_a_usage_error_naming_its_directory(tiny_model_dir):
    for name in ("model.safetensors", "config.json"):
        path = os.path.join(tiny_model_dir, name)
        one_line_error(minigpt2("-m", path, "-n", "2", "Hi"), 2, f"--model {path} is a file",
                       f"(-m {tiny_model_dir})")
    one_line_error(minigpt2("--tokenize", "Hi", "-m", os.path.join(tiny_model_dir, "vocab.json")), 2, "is a file")


@pytest.mark.parametrize("content,problem", [
    ('{"n_layer": 1, "self": 1}', "the key 'self' cannot be a config setting"),
    ('{"n_layer": 1, "__class__": "x", "to_dict": 2}', "the keys '__class__', 'to_dict' cannot be a config setting"),
    ('{"n_layer": 1, "note": "café"}'.encode("latin-1"), "is not UTF-8 text (the byte b'\\xe9' at byte 27)"),
    ('[{"n_layer": 1}]', "must hold a JSON object, found list"),
], ids=["self", "methods", "latin-1", "list"])
def test_a_config_json_that_cannot_be_a_config_is_one_line_naming_it(tiny_model_dir, tmp_path, content, problem):
    import shutil

    shutil.copy(os.path.join(tiny_model_dir, "model.safetensors"), tmp_path)
    config = tmp_path / "config.json"
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    one_line_error(minigpt2("-m", str(tmp_path), "-n", "2", "Hi"), 1, f"{config}{':' if problem[0] == 't' else ''} "
                   f"{problem}")


# -- 6. a per-user cache that cannot be written -----------------------------------------------------------------

# The calibration measures for ~10 s; these runs replace it by an instant one that still goes through the cache.
QUICK_CALIBRATION = """
import sys
from minigpt2 import _tuning
def calibrate():
    print("[test: calibrating]", file=sys.stderr)
    widest = _tuning.supported_variants()[-1] + "/nta"
    return {**{c: "numpy" for c in _tuning.CLASSES}, **{c: widest for c in _tuning._narrow_classes()}}, {}
_tuning.calibrate = calibrate
from minigpt2.__main__ import run
sys.argv[0] = "minigpt2"
sys.exit(run())
"""


def with_quick_calibration(*args, env):
    return subprocess.run([sys.executable, "-c", QUICK_CALIBRATION, *args], capture_output=True, timeout=120,
                          env={**without(os.environ, "MINIGPT2_KERNEL", "MINIGPT2_BACKEND"), **env})


def test_a_kernel_cache_that_cannot_be_written_is_said_once_with_the_fix(tiny_model_dir, tmp_path):
    from minigpt2 import backend

    if not backend.c_available():
        pytest.skip("no C core: no kernel choice to cache")
    (tmp_path / "a-file").write_text("")
    for xdg in (str(tmp_path / "a-file"), str(tmp_path / "a-file" / "below")):  # ENOTDIR, as read-only as root gets
        info = with_quick_calibration("--info", env={"XDG_CACHE_HOME": xdg})
        out, err = info.stdout.decode(), info.stderr.decode()
        assert info.returncode == 0, err
        choice = next(line for line in out.splitlines() if line.startswith("kernel choice:"))
        assert "cached in" not in choice and "not saved" in choice and "XDG_CACHE_HOME" in choice, choice
        notes = [line for line in err.splitlines() if "cannot be saved" in line]
        assert len(notes) == 1 and "XDG_CACHE_HOME" in notes[0] and os.path.join(xdg, "minigpt2") in notes[0], err
        assert err.index("cannot be saved") < err.index("[test: calibrating]"), "said before the measuring"
    generated = with_quick_calibration("-m", tiny_model_dir, "--greedy", "-n", "2", "Hi", env={"XDG_CACHE_HOME": xdg})
    assert generated.returncode == 0 and generated.stdout.startswith(b"Hi"), generated.stderr
    assert generated.stderr.decode().count("cannot be saved") == 1, generated.stderr
    writable = {"XDG_CACHE_HOME": str(tmp_path / "mine")}
    first, again = (with_quick_calibration("--info", env=writable) for _ in range(2))
    assert b"cannot be saved" not in first.stderr + again.stderr and b"[test: calibrating]" not in again.stderr
    assert f"cached in {tmp_path / 'mine' / 'minigpt2'}".encode() in again.stdout


# -- 8. empty stdin --------------------------------------------------------------------------------------------

def test_no_prompt_and_empty_stdin_is_a_usage_error_but_an_empty_prompt_starts_a_new_text(tiny_model_dir):
    """Nothing at all (no PROMPT, stdin empty or /dev/null) is a usage error; an empty prompt asked for ("" as the
    argument, or "-" with empty stdin) starts from <|endoftext|>, the same text either way, and says so."""
    nothing = minigpt2("-m", tiny_model_dir, "-n", "3", stdin=b"\n")  # (echo "" |: the newline ends the text, not in it)
    one_line_error(nothing, 2, "no prompt: nothing was given and stdin was empty", 'echo "Once upon a time" |')
    with open(os.devnull, "rb") as devnull:
        done = subprocess.run([sys.executable, "-m", "minigpt2", "-m", tiny_model_dir, "-n", "3"], stdin=devnull,
                              capture_output=True, timeout=120)
    one_line_error(done, 2, "stdin was empty")
    argument = minigpt2("-m", tiny_model_dir, "--greedy", "-n", "3", "")
    dash = minigpt2("-m", tiny_model_dir, "--greedy", "-n", "3", "-", stdin=b"")
    assert argument.returncode == dash.returncode == 0 and argument.stdout == dash.stdout, dash.stderr
    assert argument.stdout.strip()
    assert argument.stderr == dash.stderr == b"[the prompt is empty: starting a new text from <|endoftext|>]\n"


# -- 9. numbers out of range ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--threads", "1000"], "argument --threads: 1000 is not allowed; expected an integer from 1 to 256"),
    (["-t", "inf"], "argument -t/--temperature: inf is not a finite number; expected a number > 0"),
    (["-t", "nan"], "argument -t/--temperature: nan is not a finite number"),
    (["--threads", "inf"], "'inf' is not a finite whole number; expected an integer from 1 to 256"),
], ids=["threads-1000", "t-inf", "t-nan", "threads-inf"])
def test_numbers_out_of_range_are_usage_errors_naming_the_range(tiny_model_dir, args, message):
    one_line_error(minigpt2("-m", tiny_model_dir, "-n", "2", *args, "Hi"), 2, message)


# -- 7. a source folder that shadows the installed copy -----------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def checkout_without_c_core(tmp_path_factory):
    """A copy of the checkout (setup.py, csrc/, the package without its compiled C core): a source folder whose C
    core was never built. (Copied, not taken from git: CI's stages run the tests from copies with no .git.)"""
    dest = tmp_path_factory.mktemp("src")
    shutil.copy(os.path.join(ROOT, "setup.py"), dest)
    shutil.copytree(os.path.join(ROOT, "csrc"), dest / "csrc", ignore=shutil.ignore_patterns("*.so", "*.o"))
    shutil.copytree(os.path.join(ROOT, "minigpt2"), dest / "minigpt2",
                    ignore=shutil.ignore_patterns("_kernels*", "__pycache__"))
    return dest


def from_the_checkout(checkout, *args, installed=None):
    """python -m minigpt2 run in the checkout's folder, with ``installed`` (a folder holding another minigpt2, as
    site-packages does) on sys.path after it. -S and this process's sys.path as PYTHONPATH: the packages minigpt2
    needs, but no .pth file, so that no editable install of minigpt2 lends the checkout its C core."""
    paths = ([str(installed)] if installed is not None else []) + LIBRARIES
    env = without({**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(paths)}, "MINIGPT2_BACKEND")
    return subprocess.run([sys.executable, "-S", "-m", "minigpt2", *args], cwd=checkout, capture_output=True,
                          text=True, env=env, timeout=180)


LIBRARIES = [p for p in sys.path if p and os.path.realpath(p) != os.path.realpath(ROOT) and os.path.isdir(p)]


def test_a_source_folder_shadowing_the_installed_copy_is_named_not_a_missing_compiler(checkout_without_c_core,
                                                                                      tmp_path):
    site = tmp_path / "site-packages"
    (site / "minigpt2").mkdir(parents=True)
    (site / "minigpt2" / "__init__.py").write_text("")
    doctor = from_the_checkout(checkout_without_c_core, "--doctor", installed=site)
    line = [line for line in doctor.stdout.splitlines() if "C core" in line and line.startswith("[warn]")]
    assert len(line) == 1, doctor.stdout
    fix = doctor.stdout.splitlines()[doctor.stdout.splitlines().index(line[0]) + 1]
    for text in (line[0], doctor.stderr):
        assert f"source folder {checkout_without_c_core / 'minigpt2'}" in text, text
        assert f"installed copy at {site / 'minigpt2'}" in text, text
    assert "build-essential" not in fix and "another directory" in fix and "pip install -e ." in fix, doctor.stdout
    run = from_the_checkout(checkout_without_c_core, "--tokenize", "Hi", installed=site)
    warning = [line for line in run.stderr.splitlines() if "C core" in line]
    assert run.returncode == 0 and len(warning) == 1 and len(run.stderr.splitlines()) == 1, run.stderr
    assert f"shadows the installed copy at {site / 'minigpt2'}" in warning[0]
    assert "another directory" in warning[0] and "pip install -e ." in warning[0]


def test_a_checkout_whose_c_core_was_never_built_says_how_to_build_it(checkout_without_c_core):
    if importlib.machinery.PathFinder.find_spec("minigpt2", LIBRARIES) is not None:
        pytest.skip("minigpt2 is installed (not editable) in this Python: every checkout shadows it")
    run = from_the_checkout(checkout_without_c_core, "--tokenize", "Hi")
    assert run.returncode == 0 and len(run.stderr.splitlines()) == 1, run.stderr
    assert "the C core is not built" in run.stderr and "shadow" not in run.stderr
    assert "pip install -e ." in run.stderr and "python csrc/build_kernels.py" in run.stderr
    doctor = from_the_checkout(checkout_without_c_core, "--doctor")
    assert "[warn] C core not built" in doctor.stdout and "shadow" not in doctor.stdout
    assert "pip install -e ." in doctor.stdout, doctor.stdout
