"""The benchmarks run: benchmarks/bench_decode.py end to end on a small checkpoint (the figures themselves are the
benchmark's business, not the tests'; here: every system ran, and the table and the JSON say what they should)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

import minigpt2

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_decode.py"


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """GPT-2's vocabulary and positions (the benchmark draws token ids below 50257 and prefills 128 tokens in its
    quick run), with a narrow, shallow body: 13 MB."""
    directory = tmp_path_factory.mktemp("bench_checkpoint")
    config = minigpt2.GPT2Config(n_embd=64, n_layer=2, n_head=2)
    minigpt2.GPT2LMHeadModel(config, seed=0).save_pretrained(directory)
    return directory


def run(*arguments, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))  # (the kernel choice: measured once here)
    done = subprocess.run([sys.executable, str(BENCH), *arguments], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_quick_run_measures_every_system_and_writes_the_json(small_checkpoint, tmp_path):
    systems = ["c", "numpy", "c@int8"] if minigpt2.backend.c_available() else ["numpy", "numpy@bfloat16"]
    out = run("--quick", "--threads", "1", "--systems", ",".join(systems), "--checkpoint", str(small_checkpoint),
              "--json", str(tmp_path / "bench.json"), tmp_path=tmp_path)
    report = json.loads((tmp_path / "bench.json").read_text())
    assert sorted(r["system"] for r in report["results"]) == sorted(systems)
    for r in report["results"]:
        assert r["threads"] == 1 and r["decode_b1"] > 0 and r["prefill"] > 0 and r["decode_b8"] > 0, r
        assert r["bytes_per_token"] > 0 and r["rss_mb"] > 0, r
    for system in systems:  # the table: one line per system
        assert any(line.startswith(f"| {system} | 1 |") for line in out.splitlines()), out
    assert "CPU:" in out
    # it says what it decoded and how much: this checkpoint, not GPT-2 124M; --quick's 128-token prefill
    assert "GPT-2 124M" not in out and "2 layers, n_embd 64" in out and "| prefill 128 tok/s |" in out, out
    rss = {r["system"]: r["rss_mb"] for r in report["results"]}
    if "c" in rss:  # the first C process chose its kernels (a fresh cache): that is not the model's memory
        assert rss["c"] < 2 * rss["numpy"], rss


@pytest.mark.parametrize("arguments, allowed", [
    (["--systems", "c,cuda"], "use c, numpy, hf or c:VARIANT"),
    (["--systems", "c:sse9"], "use one of generic, avx2, avx512, neon"),
    (["--systems", "c@int4"], "use @float32, @bfloat16, @float16, @int8"),
    (["--systems", "hf@int8"], "use @float32, @bfloat16, @float16"),
    (["--systems", "c,"], "use c, numpy, hf or c:VARIANT"),
    (["--repeats", "0"], "give 1 or more rounds"),
    (["--threads", "0"], "whole numbers from 1 to 256"),
    (["--threads", "two"], "whole numbers from 1 to 256"),
    (["--checkpoint", "no-such-folder"], "no model.safetensors there"),
])
def test_a_bad_option_is_a_usage_error_that_says_what_is_allowed(arguments, allowed, tmp_path):
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(tmp_path / "bench.json"),
                           *arguments], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and allowed in done.stderr.splitlines()[-1], done.stderr[-3000:]
    assert "Traceback" not in done.stderr and not (tmp_path / "bench.json").exists()


def test_a_json_path_that_cannot_be_written_is_refused_before_anything_is_measured(small_checkpoint, tmp_path):
    (tmp_path / "a-file").write_text("")
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--checkpoint", str(small_checkpoint),
                           "--json", str(tmp_path / "a-file" / "bench.json")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "--json" in done.stderr and "round 1/1" not in done.stdout, done.stderr[-3000:]


# python -c WITHOUT_C_CORE SCRIPT ARGUMENTS: SCRIPT as if minigpt2 had been installed without a C compiler
WITHOUT_C_CORE = ("import runpy, sys; sys.modules['minigpt2._kernels'] = None; sys.argv = sys.argv[1:]; "
                  "runpy.run_path(sys.argv[0], run_name='__main__')")


def test_without_the_c_core_the_c_systems_are_skipped_in_one_line_and_numpy_is_measured(small_checkpoint, tmp_path):
    """As a user who installed without a C compiler runs it: the C systems are left out, saying why once."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", WITHOUT_C_CORE, str(BENCH), "--quick", "--threads", "1",
                           "--systems", "c,numpy,c@int8", "--checkpoint", str(small_checkpoint),
                           "--json", str(tmp_path / "bench.json")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "(c, c@int8 skipped: no C core: " in done.stderr, done.stderr
    assert [r["system"] for r in json.loads((tmp_path / "bench.json").read_text())["results"]] == ["numpy"]
    assert "C core not built" in done.stdout, done.stdout
    matmul = subprocess.run([sys.executable, "-c", WITHOUT_C_CORE, str(BENCH), "--matmul"], capture_output=True,
                            text=True, timeout=120, env=env)
    assert matmul.returncode == 1 and "Traceback" not in matmul.stderr, matmul.stderr[-3000:]
    assert "the C core does not load here" in matmul.stderr, matmul.stderr


def test_the_profile_splits_a_step_for_each_weight_format(small_checkpoint, tmp_path):
    """Each system of --systems, in its weight format (only those: tests/test_benchmarks_newuser10.py)."""
    out = run("--profile", "--systems", "c,numpy,c@bfloat16,numpy@bfloat16,c@int8,numpy@int8", "--checkpoint",
              str(small_checkpoint), tmp_path=tmp_path)
    for dtype in ("float32", "bfloat16", "int8"):
        assert f"backend numpy, weights in {dtype}, " in out, out
        if minigpt2.backend.c_available():
            assert f"backend c, weights in {dtype}, " in out, out
    if minigpt2.backend.c_available():
        assert out.count("with the step's blocks as one C call, as the model runs:") == 3, out
    assert out.count("| linear |") >= 3


def test_the_int8_probe_builds_with_the_library_and_runs(tmp_path):
    """benchmarks/int8_probe.c (integer dot products against the library's own mg_linear) still compiles against
    csrc/ and prints its table: a smoke run, on an x86-64 CPU with AVX2 and a C compiler."""
    import platform
    import shutil
    import sysconfig

    if platform.machine().lower() not in ("x86_64", "amd64") or sys.platform == "win32":
        pytest.skip("the probe is for x86-64 (AVX2)")
    if not minigpt2.backend.c_available() or "avx2" not in minigpt2.backend.kernel_variants():
        pytest.skip("this CPU has no AVX2 (or there is no C core to tell)")
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if not shutil.which(cc.split()[0]):
        pytest.skip(f"no C compiler ({cc})")
    csrc = ROOT / "csrc"
    sources = [ROOT / "benchmarks" / "int8_probe.c", *sorted(csrc.glob("variant_*.c")),
               *(csrc / name for name in ("dispatch.c", "parallel.c", "block.c"))]
    probe = tmp_path / "int8_probe"
    built = subprocess.run([*cc.split(), "-O2", "-march=x86-64-v3", "-pthread", f"-I{csrc}", *map(str, sources),
                            "-lm", "-o", str(probe)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    done = subprocess.run([str(probe), "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| path")]
    assert [row.split("|")[1].strip() for row in rows] == [
        "minigpt2 (mg_linear), stored by rows: widened to float", "minigpt2 (mg_linear), stored by columns: int16 dots",
        "int16 dots", "int16 dots, pairs stored", "int16 dots by columns, 4 side by side",
        "int16 dots by columns, one at a time", "the same, 2 KiB ahead", "read only, the same walk",
        "read only, sequential"], done.stdout
    for row in rows:  # three positive speeds each
        assert all(float(cell) > 0 for cell in row.split("|")[2:5]), row
    refused = subprocess.run([str(probe), "--qiuck"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "usage:" in refused.stderr, refused.stdout  # (it ran the full probe)
    helped = subprocess.run([str(probe), "--help"], capture_output=True, text=True, timeout=300)
    assert helped.returncode == 0 and helped.stdout.startswith("usage:"), helped  # (a usage error, exit 2)


def build_widen_probe(tmp_path):
    """benchmarks/widen_probe.c built for the portable variant (any CPU with a C compiler), or the test skipped."""
    import shutil
    import sysconfig

    if sys.platform == "win32":
        pytest.skip("the probe uses POSIX threads")
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if not shutil.which(cc.split()[0]):
        pytest.skip(f"no C compiler ({cc})")
    probe = tmp_path / "widen_probe"
    built = subprocess.run([*cc.split(), "-O2", "-pthread", f"-I{ROOT / 'csrc'}", "-include", "target_generic.h",
                            str(ROOT / "benchmarks" / "widen_probe.c"), "-o", str(probe)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    return probe


def test_the_widen_probe_builds_with_the_library_headers_and_runs(tmp_path):
    """benchmarks/widen_probe.c (16-bit weights widened as csrc/widen.h does, read from memory against a float32
    read) still compiles against csrc/'s headers and prints a speed for every way and thread count: a smoke run of
    one round."""
    probe = build_widen_probe(tmp_path)
    done = subprocess.run([str(probe), "2", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    ways = ["float32 read", "float32 + 2 int ops", "float32 multiply-add", "bfloat16 widened",
            "bfloat16 multiply-add", "float16 multiply-add", "bfloat16 fma, asking ahead", "float32 read, asking ahead"]
    assert [" ".join(row[2:-3]) for row in rows] == ways * 2, done.stdout
    assert [row[0] for row in rows] == ["1"] * 8 + ["2"] * 8 and all(float(row[-3]) > 0 for row in rows), done.stdout
    assert subprocess.run([str(probe), "0"], capture_output=True, timeout=60).returncode == 2  # (a bad thread count)


TRAIN = ROOT / "benchmarks" / "bench_train.py"


@pytest.mark.parametrize("arguments, allowed", [
    (["--rounds", "0"], "--rounds 0: give a whole number of 1 or more"),
    (["--threads", "0"], "--threads 0: give a whole number of 1 or more"),
    (["--n-head", "3"], "--n-embd 64 is not a multiple of --n-head 3"),
])
def test_bench_train_refuses_a_bad_option_in_one_line(arguments, allowed):
    done = subprocess.run([sys.executable, str(TRAIN), "--quick", *arguments], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and allowed in done.stderr.splitlines()[-1], done.stderr[-3000:]


def test_bench_train_without_torch_times_minigpt2_alone_and_honours_the_options_given_with_quick(tmp_path):
    """A plain `pip install -e .` has no torch: it says so in one line and times minigpt2; --rounds 1 is one round
    even with --quick (which set its own counts over the user's)."""
    blocked = "sys.modules['torch'] = None; sys.modules['transformers'] = None; "
    done = subprocess.run([sys.executable, "-c", WITHOUT_C_CORE.replace("sys.argv =", blocked + "sys.argv ="),
                           str(TRAIN), "--quick", "--rounds", "1", "--n-layer", "1"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "(torch skipped: " in done.stderr and "torch" not in done.stdout.split("tokens/s")[1], done.stdout
    assert "config: n_layer 1, n_embd 64" in done.stdout and "1 rounds x 1 steps" in done.stdout, done.stdout


def test_bench_train_profile_leaves_no_file_behind(tmp_path):
    """--profile wrote /tmp/bench_train.prof and left it there."""
    left = pathlib.Path("/tmp/bench_train.prof")
    before = left.stat().st_mtime_ns if left.exists() else None
    done = subprocess.run([sys.executable, str(TRAIN), "--quick", "--profile"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and "Ordered by: internal time" in done.stdout, done.stderr[-3000:]
    assert (left.stat().st_mtime_ns if left.exists() else None) == before and not list(tmp_path.iterdir())


TOKENIZER = ROOT / "benchmarks" / "bench_tokenizer.py"


@pytest.mark.parametrize("arguments, allowed", [
    (["--repeats", "0"], "give 1 or more of each"),
    (["--size", "-5"], "give 1 or more of each"),
    (["--json", "{a_file}/bench.json"], "cannot write there"),
])
def test_bench_tokenizer_refuses_a_bad_option_before_measuring(arguments, allowed, tmp_path):
    (tmp_path / "a-file").write_text("")
    arguments = [a.format(a_file=tmp_path / "a-file") for a in arguments]
    done = subprocess.run([sys.executable, str(TOKENIZER), "--quick", *arguments], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and allowed in done.stderr.splitlines()[-1], done.stderr[-3000:]
