"""The benchmarks as a careful new user runs them (a tenth pass): what bench_decode says when it cannot build its
memory-read yardstick, its n/a where the weights fit in the cache, --profile following --systems, a --checkpoint
too short for what is timed; bench_train's default threads from the CPU affinity; widen_probe's and dtype_error's
arguments. Each runs a script with a tiny checkpoint or --quick, and checks the exit status and the words the user
reads, not the figures."""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import sysconfig

import pytest

import minigpt2
from test_benchmarks import build_widen_probe

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_decode.py"
TRAIN = ROOT / "benchmarks" / "bench_train.py"
DTYPE_ERROR = ROOT / "benchmarks" / "dtype_error.py"
NOT_MEASURED = "(memory read and decode b1 / memory limit not measured: "

# python -c BLOCKING SCRIPT ARGUMENTS: SCRIPT with the modules named in {blocked} not importable
BLOCKING = ("import runpy, sys; sys.modules.update(dict.fromkeys({blocked!r})); sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """GPT-2's vocabulary and 1024 positions with a narrow, shallow body: 13 MB."""
    directory = tmp_path_factory.mktemp("bench_checkpoint")
    minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(n_embd=64, n_layer=2, n_head=2), seed=0).save_pretrained(directory)
    return directory


def environment(tmp_path, **extra):
    return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), **extra)


def quick_numpy_run(checkpoint, tmp_path, *arguments, blocked=(), **env):
    """bench_decode --quick on the NumPy backend at 1 thread (about ten seconds)."""
    command = [sys.executable, str(BENCH)] if not blocked else [sys.executable, "-c", BLOCKING.format(blocked=blocked),
                                                                str(BENCH)]
    return subprocess.run([*command, "--quick", "--threads", "1", "--systems", "numpy", "--checkpoint",
                           str(checkpoint), "--json", str(tmp_path / "bench.json"), *arguments],
                          capture_output=True, text=True, timeout=600, env=environment(tmp_path, **env))


@pytest.mark.parametrize("blocked, env, says", [
    (["setuptools"], {}, "needs setuptools, which venvs of Python 3.12 and later come without: pip install setuptools"),
    ([], {"CC": "false"}, "needs a C compiler, and 'false' cannot compile and link an empty program: install one"),
], ids=["no setuptools", "no compiler"])
def test_without_its_yardstick_bench_decode_says_in_one_line_what_was_not_measured_and_prints_the_table(
        small_checkpoint, tmp_path, blocked, env, says):
    """It said only "(no memory-read yardstick: ModuleNotFoundError: No module named 'setuptools')"."""
    done = quick_numpy_run(small_checkpoint, tmp_path, blocked=blocked, **env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith(NOT_MEASURED)]
    assert len(lines) == 1 and says in lines[0] and lines[0].endswith(")"), done.stderr
    assert lines[0] in done.stdout.split("| numpy | 1 |")[1], done.stdout  # (and again under the table)
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| system | threads | decode b1 tok/s |") and "memory" not in table[0], table
    assert len(table) == 2 and table[1].startswith("| numpy | 1 | "), table
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["memory_read_not_measured"] == lines[0][1:-1] and len(report["results"]) == 1


def yardstick_builds():
    sys.path.insert(0, str(ROOT / "csrc"))
    try:
        import setuptools  # noqa: F401
        from build_kernels import compiler_accepts
    except ImportError:
        return False
    return compiler_accepts([]) and os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))


def test_where_the_weights_fit_in_the_last_level_cache_the_share_of_the_memory_limit_is_marked(small_checkpoint, tmp_path):
    """A 13 MB checkpoint fits in a server's L3: its share of the memory-read limit said 300%+ on an idle machine
    (with no word of why); now marked *, with a note under the table. With the cache the OS reports where it holds
    13 MiB, else with --cache-mib (the size to assume)."""
    if not yardstick_builds():
        pytest.skip("benchmarks/memread.c cannot be built here (setuptools, a C compiler and Python.h)")
    sys.path.insert(0, str(ROOT))
    from minigpt2._tuning import _l3_bytes

    size = os.path.getsize(small_checkpoint / "model.safetensors")
    done = quick_numpy_run(small_checkpoint, tmp_path, *([] if _l3_bytes() > size else ["--cache-mib", "1024"]))
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| numpy | 1 |"))
    assert re.search(r"\| \d+% \[\d+%-\d+%\] \* \|$", row), done.stdout
    note = done.stdout.split(row)[1]
    assert "\n* the weights read per token (13 MiB) fit in the last-level cache (" in note, done.stdout
    assert "the memory read may not bound it" in note and "memory read" in done.stdout.splitlines()[0], done.stdout
    result = json.loads((tmp_path / "bench.json").read_text())["results"][0]
    assert result["in_cache"] is True and result["of_limit"] > 0, result  # (the share itself is kept in the JSON)


def test_the_profile_follows_systems(small_checkpoint, tmp_path):
    """--profile profiled the C and the NumPy backends whatever --systems said; hf is left out, saying so."""
    systems = "numpy,hf" + (",c:generic@int8" if "generic" in minigpt2.backend.kernel_variants() else "")
    done = subprocess.run([sys.executable, str(BENCH), "--profile", "--threads", "1", "--systems", systems,
                           "--checkpoint", str(small_checkpoint)], capture_output=True, text=True, timeout=600,
                          env=environment(tmp_path))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    profiled = [line.partition(": ")[0] for line in done.stdout.splitlines() if line.startswith("backend ")]
    expected = ["backend numpy, weights in float32, 1 thread(s)"]
    if "c:generic" in systems:
        expected.append("backend c:generic, weights in int8, 1 thread(s)")
    assert profiled == expected, done.stdout
    assert "(hf not profiled: --profile splits minigpt2's decode step by kernel)" in done.stderr, done.stderr


@pytest.mark.parametrize("arguments, says", [
    (["--checkpoint", "{tiny}"], "its model has n_positions=128, and decoding 128 tokens after 16 and a prefill of "
                                 "512 needs 512 positions; give a checkpoint with more, or --quick"),
    (["--checkpoint", "{tiny}", "--profile"], "its model has n_positions=128, and --profile needs 208 positions"),
    (["--profile", "--threads", "2,1"], "--profile runs in this process, at one thread count: give one"),
    (["--cache-mib", "-1"], "--cache-mib -1: give a size in MiB, 0 or more"),
])
def test_bench_decode_refuses_what_it_cannot_run_before_measuring(arguments, says, tmp_path):
    """A checkpoint of the tutorials' tiny preset (128 positions) ran, then every worker failed with a traceback."""
    tiny = tmp_path / "tiny"
    minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config.from_preset("tiny"), seed=0).save_pretrained(tiny)
    done = subprocess.run([sys.executable, str(BENCH), "--json", str(tmp_path / "bench.json"),
                           *[a.format(tiny=tiny) for a in arguments]], capture_output=True, text=True, timeout=120,
                          env=environment(tmp_path))
    assert done.returncode == 2 and says in done.stderr.splitlines()[-1], done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "round 1" not in done.stdout and not (tmp_path / "bench.json").exists()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to tell the affinity from the machine")
def test_bench_train_runs_at_the_cores_the_process_may_use_by_default(tmp_path):
    """Its default was --threads 2 whatever the affinity (taskset, a container's cpuset)."""
    one = min(os.sched_getaffinity(0))
    done = subprocess.run([sys.executable, "-c", BLOCKING.format(blocked=["torch", "transformers"]), str(TRAIN),
                           "--quick", "--rounds", "1", "--n-layer", "1"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, preexec_fn=lambda: os.sched_setaffinity(0, {one}))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "(1 this process may use); threads 1;" in done.stdout, done.stdout
    helped = subprocess.run([sys.executable, str(TRAIN), "--help"], capture_output=True, text=True, timeout=60)
    assert f"default: the cores this process may use (here {len(os.sched_getaffinity(0))})" in helped.stdout


def test_the_widen_probe_refuses_arguments_that_are_not_its_numbers(tmp_path):
    """atoi read "2x" as 2, "abc" as 0 and ignored a third argument: "2x" and "2 1 3" ran the whole probe."""
    probe = build_widen_probe(tmp_path)
    usage = "usage: " + str(probe) + " [threads 1-64, default 2] [rounds 1-1000, default 7]"
    for arguments, says in [(["2x"], "threads '2x' is not a whole number from 1 to 64"),
                            (["abc"], "threads 'abc' is not a whole number from 1 to 64"),
                            (["65"], "threads '65' is not a whole number from 1 to 64"),
                            (["9" * 20], f"threads '{'9' * 20}' is not a whole number from 1 to 64"),  # (overflow)
                            (["2", "0"], "rounds '0' is not a whole number from 1 to 1000"),
                            (["2", "1.5"], "rounds '1.5' is not a whole number from 1 to 1000"),
                            (["2", "1", "3"], "at most two arguments, got 3")]:
        done = subprocess.run([str(probe), *arguments], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stdout == "", (arguments, done.stdout)
        assert done.stderr.splitlines() == [f"{probe}: {says}", usage], (arguments, done.stderr)
    helped = subprocess.run([str(probe), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.strip() == usage, helped


@pytest.mark.parametrize("arguments, says", [
    (["--batch", "0"], "argument --batch: 0: give a whole number of 1 or more"),
    (["--length", "-3"], "argument --length: -3: give a whole number of 1 or more"),
    (["--new-tokens", "1.5"], "argument --new-tokens: '1.5' is not a whole number"),
    (["--window", "1"], "argument --window: 1: give a whole number of 2 or more"),
    (["--max-tokens", "0"], "argument --max-tokens: 0: give a whole number of 1 or more"),
    (["--length", "5000"], "--length 5000: tiny has n_positions=128; give at most that"),
    (["--new-tokens", "121"], "after the 8-token prompt, tiny has positions for 120 new tokens at most"),
    (["--perplexity", "{tmp}", "--text", "{tmp}"], "no readable config.json there"),
])
def test_dtype_error_refuses_a_bad_count_in_one_line(arguments, says, tmp_path):
    """Zero, negative or too many tokens crashed deep in NumPy or minigpt2 with a traceback (--window 1 printed a
    table of nan)."""
    done = subprocess.run([sys.executable, str(DTYPE_ERROR), "--models", "tiny",
                           *[a.format(tmp=tmp_path) for a in arguments]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert says in done.stderr.splitlines()[-1] and done.stdout == "", done.stderr
