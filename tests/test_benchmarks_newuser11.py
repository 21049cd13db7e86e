"""The benchmarks as a careful user runs them (an eleventh pass): bench_train without transformers' loss_type
warning, bench_decode refusing the flags --profile and --matmul would ignore, and the last-level cache of a Mac
(sysctl) marking the shares of weights that fit in it. sysctl is faked: a script on PATH answering as macOS does."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from test_benchmarks_newuser10 import (BENCH, ROOT, TRAIN, environment, quick_numpy_run,  # noqa: F401 (a fixture)
                                       small_checkpoint, yardstick_builds)


def test_bench_train_prints_no_loss_type_warning(tmp_path):
    """transformers 4.5x said "`loss_type=None` was set in the config but it is unrecognized. Using the default loss:
    `ForCausalLMLoss`." before the table: nothing the user set, nothing to do."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    done = subprocess.run([sys.executable, str(TRAIN), "--quick", "--rounds", "1", "--n-layer", "1", "--threads", "1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and "minigpt2 / torch:" in done.stdout, done.stderr[-3000:]
    assert "loss_type" not in done.stderr and done.stderr.strip() == "", done.stderr


@pytest.mark.parametrize("arguments, says", [
    (["--profile", "--quick"], "--quick: not used by --profile (--profile times one decode step per kernel, in this "
                               "process); drop it"),
    (["--profile", "--busy", "--repeats", "2"], "--busy, --repeats: not used by --profile"),
    (["--profile", "--cache-mib", "8", "--json", "{tmp}/b.json"], "--cache-mib: not used by --profile"),
    (["--matmul", "--quick", "--systems", "numpy"], "--quick, --systems: not used by --matmul (--matmul times the C "
                                                    "matmul against NumPy's BLAS on random matrices); drop them"),
    (["--profile", "--matmul"], "--profile and --matmul are two separate measurements: give one"),
])
def test_bench_decode_refuses_the_flags_profile_and_matmul_would_ignore(arguments, says, tmp_path):
    """--profile --quick profiled as without --quick, and --profile --busy profiled an idle machine, without a word."""
    done = subprocess.run([sys.executable, str(BENCH), *[a.format(tmp=tmp_path) for a in arguments]],
                          capture_output=True, text=True, timeout=120, env=environment(tmp_path))
    last = done.stderr.splitlines()[-1] if done.stderr else ""
    assert done.returncode == 2 and last.startswith("bench_decode.py: error: ") and says in last, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and done.stdout == ""


# -- a Mac's last-level cache ------------------------------------------------------------------------------------------

def fake_sysctl(folder, values):
    """A ``sysctl`` on PATH that answers ``sysctl -n NAME`` with values[NAME], else fails as macOS's does."""
    folder.mkdir(exist_ok=True)
    cases = "".join(f"  {name}) echo {value} ;;\n" for name, value in values.items())
    script = folder / "sysctl"
    script.write_text(f"#!/bin/sh\ncase \"$2\" in\n{cases}  *) echo \"sysctl: unknown oid '$2'\" >&2; exit 1 ;;\n"
                      f"esac\n")
    script.chmod(0o755)
    return str(folder)


def bench_decode_module():
    spec = importlib.util.spec_from_file_location("bench_decode_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MIB = 2 ** 20


@pytest.mark.parametrize("values, expected", [
    ({"hw.l3cachesize": 12 * MIB, "hw.l2cachesize": 256 * 1024}, 12 * MIB),  # an Intel Mac
    ({"hw.perflevel0.l2cachesize": 16 * MIB, "hw.perflevel1.l2cachesize": 4 * MIB}, 16 * MIB),  # an Apple chip
    ({"hw.l3cachesize": 0, "hw.perflevel0.l2cachesize": 4 * MIB}, 4 * MIB),  # (0: none reported)
    ({}, 0),  # a sysctl that knows none of them (Linux's)
], ids=["intel-mac", "apple-chip", "l3-zero", "unknown"])
def test_without_sysfs_the_last_level_cache_comes_from_sysctl(tmp_path, monkeypatch, values, expected):
    import minigpt2._tuning

    monkeypatch.setattr(minigpt2._tuning, "_l3_bytes", lambda *a: 0)  # (macOS: no /sys, no SC_LEVEL3_CACHE_SIZE)
    monkeypatch.setenv("PATH", fake_sysctl(tmp_path / "bin", values) + os.pathsep + os.environ["PATH"])
    assert bench_decode_module().last_level_cache() == expected


def test_no_sysctl_command_is_an_unknown_cache_and_sysfs_comes_first(tmp_path, monkeypatch):
    import minigpt2._tuning

    bench = bench_decode_module()
    monkeypatch.setenv("PATH", fake_sysctl(tmp_path / "bin", {"hw.l3cachesize": 12345}))
    assert bench.last_level_cache() == (minigpt2._tuning._l3_bytes() or 12345)  # (Linux's sysfs, where it reports)
    monkeypatch.setattr(minigpt2._tuning, "_l3_bytes", lambda *a: 0)
    assert bench.last_level_cache() == 12345
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # (no sysctl at all)
    assert bench.last_level_cache() == 0


def test_on_a_mac_the_share_of_weights_that_fit_in_the_cache_is_marked(small_checkpoint, tmp_path):
    """An Apple chip (no L3 reported, a 16 MiB L2): the 13 MB checkpoint fits, so its share is marked * with the
    note; it printed unmarked, the cache being unknown without Linux's sysfs."""
    if not yardstick_builds():
        pytest.skip("benchmarks/memread.c cannot be built here (setuptools, a C compiler and Python.h)")
    path = fake_sysctl(tmp_path / "bin", {"hw.perflevel0.l2cachesize": 16 * MIB}) + os.pathsep + os.environ["PATH"]
    as_a_mac = ("import runpy, sys, minigpt2._tuning; minigpt2._tuning._l3_bytes = lambda *a: 0; "
                "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", as_a_mac, str(BENCH), "--quick", "--threads", "1", "--systems",
                           "numpy", "--checkpoint", str(small_checkpoint), "--json", str(tmp_path / "bench.json")],
                          capture_output=True, text=True, timeout=600, env=environment(tmp_path, PATH=path))
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| numpy | 1 |"))
    assert re.search(r"\| \d+% \[\d+%-\d+%\] \* \|$", row), done.stdout
    assert "\n* the weights read per token (13 MiB) fit in the last-level cache (16 MiB" in done.stdout, done.stdout


@pytest.mark.parametrize("arguments, says", [
    (["--seq", "1"], "--seq 1: give a whole number of 2 or more (no upper limit)"),
    (["--threads", "300"], "--threads 300: give a whole number of 1 or more, up to 256"),
    (["--threads", "0"], "--threads 0: give a whole number of 1 or more, up to 256"),
    (["--steps", "0"], "--steps 0: give a whole number of 1 or more (no upper limit)"),
    (["--profile", "--rounds", "2"], "--rounds: not used by --profile (it profiles three steps of minigpt2); drop it"),
])
def test_bench_train_refuses_what_it_cannot_time_naming_the_range(arguments, says, tmp_path):
    """--seq 1 ran the whole benchmark (5 rounds by default) on sequences with no next token to predict (torch's
    loss NaN); the ranges' other ends were not said; --profile ignored --rounds and --steps."""
    done = subprocess.run([sys.executable, str(TRAIN), *arguments], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == f"bench_train.py: error: {says}", done.stderr
    assert done.stdout == ""
