"""The C core's robustness from the Python side (audit 15): inputs a user can build that the C core must either
serve like the NumPy reference or leave to it, and a damaged kernel-choice cache file, which only means measuring
again (docs/kernels.md, "Variants, and which one serves a call")."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import minigpt2
from minigpt2 import backend, layers
from minigpt2.weights import BFloat16Weight, Int8Weight

ck = pytest.importorskip("minigpt2._ckernels", reason="the C extension is not built (see test_backend.py)")
from minigpt2 import _tuning  # noqa: E402

CONFIG = dict(vocab_size=99, n_positions=32, n_embd=32, n_layer=2, n_head=4)


def off_a_2_byte_boundary(a):
    """A copy of ``a`` (same values, same order) whose first byte lies at an odd address."""
    buffer = np.empty(a.nbytes + 1, np.uint8)
    view = buffer[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


@pytest.fixture
def widest():
    saved = _tuning._requested
    _tuning.choose(_tuning.supported_variants()[-1])
    yield
    _tuning.choose(saved)


@pytest.mark.parametrize("rows", [1, 3, 20])
def test_int8_scales_off_a_2_byte_boundary_go_to_numpy(widest, rows):
    """The C core reads an int8 weight's float16 scales as uint16_t, which C may load only from an even address
    (UBSan: "load of misaligned address ... for type 'const uint16_t'", csrc/dots_i8.h). Scales an Int8Weight was
    built with by hand may lie anywhere: C declines them (it served them before), NumPy computes the same product."""
    rng = np.random.default_rng(0)
    q = Int8Weight.quantize(rng.standard_normal((64, 48), dtype=np.float32))
    odd = Int8Weight(q.q, off_a_2_byte_boundary(q.scales.T).T, 0)  # (still column by column, as quantize stores it)
    assert not odd.scales.flags.aligned and odd.scales.flags.f_contiguous
    x = rng.standard_normal((rows, 64), dtype=np.float32)
    assert ck.linear(x, odd) is NotImplemented
    np.testing.assert_array_equal(layers.linear(x, odd), layers.linear.reference(x, q))
    table = Int8Weight.quantize(rng.standard_normal((48, 64), dtype=np.float32), axis=-1)  # the tied head: wte.T
    assert ck.linear(x, Int8Weight(table.q, off_a_2_byte_boundary(table.scales), -1).T) is NotImplemented


def test_a_decoding_block_with_a_c_fc_weight_c_does_not_read_runs_in_python(backend_restored):
    """A weight NumPy takes but C does not (a nested list, as model.params[...] = w.tolist()) in a block's mlp.c_fc:
    the decoding block is NumPy's, with the reference's numbers. It was AttributeError: 'list' object has no
    attribute 'shape', raised from _ckernels._block_arguments before any check had declined the block."""
    ids = np.arange(10).reshape(2, 5)

    def decode(name):
        backend.set_backend(name)
        model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**CONFIG), seed=0)
        c_fc = model.params["h"][1]["mlp"]["c_fc"]
        c_fc["weight"] = c_fc["weight"].tolist()
        out = model(ids[:, :4], use_cache=True)
        return model(ids[:, 4:], past_key_values=out.past_key_values).logits

    np.testing.assert_allclose(decode("c"), decode("numpy"), rtol=1e-5, atol=1e-5)


def _cache_file(tmp_path, content):
    path = tmp_path / "kernels.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def _saved(key, measured):
    choice = {cls: _tuning.NUMPY for cls in list(_tuning.CLASSES) + _tuning._narrow_classes()}
    return {"key": key, "choice": choice, "measured": measured}


@pytest.mark.parametrize("timing", ["garbage", "avx2/zzz", "avx2/nta/zzz", "avx2"])
def test_a_cached_choice_whose_timings_name_no_choice_is_measured_again(tmp_path, timing):
    """A file whose choice is NumPy for a product class and whose timings for that class name something that is
    no choice: the plan made from it looks its weights' narrow formats up in those timings (Plan.narrow_pick), so
    every kernel call raised ValueError ("not enough values to unpack") or KeyError ('zzz') until the file was
    deleted by hand. Such a file is now damaged like any other: measured again."""
    key = _tuning.cache_key(backend.get_num_threads())
    good = _saved(key, {"linear_1": {"numpy": 1.0, "generic/none": 2.0}, "linear_1+head": {"c": 1.0, "mixed": 2.0}})
    assert _tuning._read_cache(_cache_file(tmp_path, good), key) is not None
    _tuning.Plan(good["choice"], "test", good["measured"])  # (what a file that is read becomes)
    bad = _saved(key, {"linear_1": {timing: 1.0}})
    assert _tuning._read_cache(_cache_file(tmp_path, bad), key) is None


def test_a_cache_file_nested_too_deep_for_json_is_measured_again(tmp_path):
    """RecursionError from json.load (a file of 100,000 "[") escaped _read_cache and every kernel call raised it."""
    key = _tuning.cache_key(backend.get_num_threads())
    assert _tuning._read_cache(_cache_file(tmp_path, "[" * 100_000), key) is None


def test_a_weight_whose_arrays_were_replaced_after_it_was_made_is_not_read_by_c(widest):
    """The constructors check dtype and shape; a user could replace the arrays afterwards (``w.bits = ...``,
    ``w.scales = ...``). C took the format from the class and read 2 bytes per uint8 value or scales past a too
    short array's end: past the memory NumPy holds. C declined them; now the arrays cannot be replaced at all
    (weights.py), and C still declines arrays changed in place (tests/test_weights_audit16.py)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 64), dtype=np.float32)
    bf16 = BFloat16Weight.from_float32(rng.standard_normal((64, 48), dtype=np.float32))
    assert ck.linear(x, bf16) is not NotImplemented  # (the weight as made: C serves it)
    with pytest.raises(AttributeError, match="bits cannot be set"):
        bf16.bits = bf16.bits.view(np.uint8)[:, :48]  # half the bytes per value
    q = Int8Weight.quantize(rng.standard_normal((64, 48), dtype=np.float32))
    assert ck.linear(x, q) is not NotImplemented
    with pytest.raises(AttributeError, match="scales cannot be set"):
        q.scales = q.scales[:1]  # scales for 32 of the 64 rows
    with pytest.raises(AttributeError, match="scales cannot be set"):
        q.scales = q.scales.astype(np.float32)
    assert ck.linear(x, bf16) is not NotImplemented and ck.linear(x, q) is not NotImplemented


PROBE = """
import os, resource
import numpy as np
threads = len(os.listdir("/proc/self/task"))  # the interpreter and OpenBLAS's own threads
resource.setrlimit(resource.RLIMIT_NPROC, (threads, threads))  # this user may start no thread more
from minigpt2 import _blas_threads, _ckernels
a = np.ones((600, 600))
print(_ckernels.blas_on_pool != [], [started for _, started in _blas_threads._libraries.values()], (a @ a)[0, 0])
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="runs a process as another user (setpriv): root only, as CI runs")
def test_a_process_limit_that_refuses_the_pools_threads_leaves_numpy_working(tmp_path):
    """A shared server limits each user's processes (ulimit -u, RLIMIT_NPROC, counting threads). The pool started
    its threads only when NumPy's OpenBLAS first handed it a product of two jobs, and when it could not, it
    stopped the process ('could not start the threads NumPy's BLAS asked for', SIGABRT: a matrix product of a
    user's NumPy code killed Python). Now the pool starts them when it takes OpenBLAS's jobs, and caps OpenBLAS at
    the jobs it can run: here 1, and the product works. Run as a user id of no one (the limit does not bind root),
    with a copy of what it imports that anyone may read."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    python = next((p for p in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}") if os.path.isfile(p)),
                  None)
    if python is None:
        pytest.skip(f"no Python {version} outside /root that another user may run")
    import regex

    root = tempfile.mkdtemp(prefix="minigpt2-nproc-")
    try:
        os.chmod(root, 0o755)
        for module in (np, regex, minigpt2):
            folder = os.path.dirname(module.__file__)
            shutil.copytree(folder, os.path.join(root, os.path.basename(folder)),
                            ignore=shutil.ignore_patterns("__pycache__", "tests"))
        import _cffi_backend
        shutil.copy(_cffi_backend.__file__, root)
        libs = os.path.dirname(np.__file__) + ".libs"  # (the wheel's OpenBLAS)
        if os.path.isdir(libs):
            shutil.copytree(libs, os.path.join(root, os.path.basename(libs)))
        for where, _, files in os.walk(root):
            os.chmod(where, 0o755)
            for name in files:
                os.chmod(os.path.join(where, name), 0o755)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": root, "OPENBLAS_NUM_THREADS": "2", "MINIGPT2_KERNEL": "generic",
               "HOME": root}
        done = subprocess.run(["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups", python, "-c", PROBE],
                              env=env, cwd=root, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if done.returncode == 1 and "ModuleNotFoundError" in done.stderr:
        pytest.skip(f"the copy does not import under {python}: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.split() == ["True", "[1]", "600.0"], done.stdout
