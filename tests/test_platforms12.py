"""minigpt2 on macOS (Apple M-series) and Windows, simulated on Linux: what those systems lack is taken away and a
user's session runs on what is left.

macOS: no /proc or /sys, no os.sched_getaffinity or os.getxattr, no Linux-only madvise advice (MADV_HUGEPAGE,
MADV_NOHUGEPAGE), os.sysconf without SC_LEVEL3_CACHE_SIZE or SC_AVPHYS_PAGES. Windows, besides: no os.getuid and
friends, no os.sysconf, no os.RTLD_* names, no fcntl, pwd, grp or resource modules, and mmap without MAP_*/PROT_*/
MADV_* names, without a ``flags`` argument and without ``madvise``. The in-process tests take these away with
monkeypatch; the command-line tests run ``python -m minigpt2`` in an interpreter that lost them before importing
minigpt2 (SIMULATE below), with and without the C core. Numbers are checked against transformers (float32, eager
attention) on the same checkpoint.
"""
from __future__ import annotations

import errno
import functools
import json
import logging
import mmap
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINUX_FOLDERS = ("/proc", "/sys")
LINUX_ONLY_ADVICE = ("MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_DONTDUMP", "MADV_DODUMP", "MADV_REMOVE",
                     "MADV_MERGEABLE", "MADV_UNMERGEABLE", "MADV_COLD", "MADV_PAGEOUT", "MADV_POPULATE_READ",
                     "MADV_POPULATE_WRITE")
POSIX_USERS = ("getuid", "geteuid", "getgid", "getegid", "getgroups", "chown", "lchown", "fchown")


# -- the simulated systems, in this process --------------------------------------------------------------------------

def _linux_path(path) -> bool:
    if isinstance(path, int):
        return False
    try:
        path = os.path.abspath(os.fsdecode(path))
    except TypeError:
        return False
    return path in LINUX_FOLDERS or path.startswith(tuple(folder + "/" for folder in LINUX_FOLDERS))


def _without_linux_folders(real):
    def call(path=".", *args, **kwargs):
        if _linux_path(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", os.fsdecode(path))
        return real(path, *args, **kwargs)
    return call


@pytest.fixture
def macos(monkeypatch):
    """What macOS lacks: /proc and /sys, Linux's system calls and madvise advice, glibc's sysconf names."""
    import builtins
    import io

    for module, name in ((builtins, "open"), (io, "open"), (os, "stat"), (os, "lstat"), (os, "scandir"),
                         (os, "listdir")):
        monkeypatch.setattr(module, name, _without_linux_folders(getattr(module, name)))
    for name in ("sched_getaffinity", "sched_setaffinity", "getxattr", "setxattr", "listxattr", "posix_fadvise"):
        monkeypatch.delattr(os, name, raising=False)
    for name in LINUX_ONLY_ADVICE:
        monkeypatch.delattr(mmap, name, raising=False)
    real_sysconf = os.sysconf

    def sysconf(name):
        if name in ("SC_LEVEL3_CACHE_SIZE", "SC_AVPHYS_PAGES"):  # (glibc's; macOS's sysconf knows neither)
            raise ValueError("unrecognized configuration name")
        return real_sysconf(name)
    monkeypatch.setattr(os, "sysconf", sysconf)


class WindowsMmap(mmap.mmap):
    """mmap.mmap as Windows has it: no flags or prot arguments, no madvise."""

    def __new__(cls, fileno, length, tagname=None, access=mmap.ACCESS_DEFAULT, offset=0):
        return super().__new__(cls, fileno, length, access=access, offset=offset)

    @property
    def madvise(self):
        raise AttributeError("'mmap.mmap' object has no attribute 'madvise'")


@pytest.fixture
def windows(monkeypatch, macos):
    """What Windows lacks besides: users and groups as numbers, sysconf, dlopen's modes, POSIX-only modules, and
    mmap's POSIX names."""
    for name in POSIX_USERS + ("sysconf", "sysconf_names") + tuple(n for n in dir(os) if n.startswith("RTLD_")):
        monkeypatch.delattr(os, name, raising=False)
    for name in [n for n in dir(mmap) if n.startswith(("MAP_", "PROT_", "MADV_"))]:
        monkeypatch.delattr(mmap, name)
    monkeypatch.setattr(mmap, "mmap", WindowsMmap)
    for name in ("fcntl", "pwd", "grp", "resource", "termios"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture(params=["macos", "windows"])
def elsewhere(request):
    request.getfixturevalue(request.param)
    return request.param


# -- a tiny checkpoint, and transformers' numbers for it --------------------------------------------------------------

PROMPT = "Hello world, this is a test of the tokenizer on a machine that is not the one it was written on, and more"
NEW_TOKENS = 20
INT8_RTOL = 0.05  # (int8 weights with per-column scales: measured 0.016 of the largest logit here)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random GPT-2 saved with save_pretrained (GPT-2's vocabulary, 512 positions: a continued key/value cache
    is then 64 KiB per layer and tensor, the size from which cache.py maps its buffers)."""
    from minigpt2 import GPT2Config, GPT2LMHeadModel

    directory = str(tmp_path_factory.mktemp("platforms12"))
    config = GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=512, initializer_range=0.3)
    GPT2LMHeadModel(config, seed=3).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def transformers():
    """transformers, imported before any test takes a system's parts away."""
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def reference(checkpoint, transformers):
    """transformers' logits for the prompt and greedy ids, and its logits with the weights rounded to 16 bits."""
    import torch

    from minigpt2 import AutoTokenizer

    ids = np.array([AutoTokenizer.from_pretrained("gpt2").encode(PROMPT)])
    model = transformers.GPT2LMHeadModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
    out = {"ids": ids}
    with torch.no_grad():
        x = torch.tensor(ids)
        out["float32"] = model(x).logits.numpy()
        out["greedy"] = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS,
                                       do_sample=False, pad_token_id=0).numpy()
        for dtype in ("bfloat16", "float16"):  # the 16-bit weights, in float32 arithmetic (as minigpt2 computes)
            rounded = transformers.GPT2LMHeadModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
            out[dtype] = rounded.to(getattr(torch, dtype)).to(torch.float32)(x).logits.numpy()
    return out


@pytest.fixture
def numpy_backend(backend_restored):
    from minigpt2 import backend

    backend.set_backend("numpy")


# -- a user's session --------------------------------------------------------------------------------------------------

def test_cores_and_memory_are_found_without_linux_interfaces(macos):
    """Threads default to os.cpu_count() without sched_getaffinity; the last-level cache and the free memory are
    unknown (0, None), not an error: the calibration keeps its floor and --beams is not refused on a guess."""
    from minigpt2 import _tuning, backend, cli_checks

    assert backend._cores_available() == max(1, os.cpu_count() or 1)
    assert _tuning._l3_bytes() == 0
    assert cli_checks._available_memory() is None


@pytest.mark.parametrize("load", [{}, {"torch_dtype": "bfloat16"}, {"torch_dtype": "float16"},
                                  {"load_in_8bit": True}], ids=["float32", "bfloat16", "float16", "int8"])
def test_loading_and_generating_elsewhere(elsewhere, load, checkpoint, reference, backend_restored):
    """from_pretrained in every weight format, a forward pass, and greedy generate (its key/value cache grown into
    mapped buffers) on each system, against transformers."""
    from minigpt2 import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(checkpoint, **load)
    logits = model(reference["ids"]).logits
    if "load_in_8bit" in load:  # (no int8 reference here: transformers needs bitsandbytes and a GPU for it)
        assert_close(logits, reference["float32"], f"{elsewhere} int8 logits", rtol=INT8_RTOL)
        return
    dtype = load.get("torch_dtype", "float32")
    assert_close(logits, reference[dtype], f"{elsewhere} {dtype} logits", rtol=1e-4)
    if dtype == "float32":
        greedy = model.generate(reference["ids"], max_new_tokens=NEW_TOKENS, do_sample=False)
        assert greedy.tolist() == reference["greedy"].tolist()


def test_tokenizer_elsewhere(elsewhere, transformers, tmp_path):
    """The bundled tokenizer encodes as transformers' does with the files it saves, and decodes back exactly."""
    from minigpt2 import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained("gpt2")
    tokenizer.save_pretrained(str(tmp_path))
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(tmp_path))
    text = "naïve café 🙂 — 東京\n  two  spaces"
    assert tokenizer.encode(text) == theirs.encode(text)
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_kv_cache_where_madvise_refuses_the_advice(monkeypatch, checkpoint, reference, numpy_backend):
    """A Linux built without transparent huge pages answers MADV_NOHUGEPAGE with EINVAL. It is only a hint, so the
    key/value cache is made all the same. It was a MemoryError ("could not be allocated ([Errno 22] Invalid
    argument)") wherever even the smaller room tried next was 64 KiB or more (GPT-2 124M: a prompt of 11 tokens), so
    generate failed."""
    from minigpt2 import GPT2LMHeadModel

    made = []

    class NoHugePages(mmap.mmap):
        def __new__(cls, *args, **kwargs):
            made.append(args[1])
            return super().__new__(cls, *args, **kwargs)

        def madvise(self, *args):
            raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(mmap, "MADV_NOHUGEPAGE", getattr(mmap, "MADV_NOHUGEPAGE", 15), raising=False)
    monkeypatch.setattr(mmap, "mmap", NoHugePages)
    model = GPT2LMHeadModel.from_pretrained(checkpoint)
    batch = np.repeat(reference["ids"], 16, axis=0)  # (16 rows: even the smaller room tried next is 64 KiB or more)
    greedy = model.generate(batch, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert greedy.tolist() == np.repeat(reference["greedy"], 16, axis=0).tolist()
    assert 16 * 4 * 512 * 8 * 4 in made  # (the grown cache: rows x heads x positions x values x 4 bytes, a map)


def test_blas_pool_opens_numpy_openblas_without_dlopen_modes(windows, monkeypatch):
    """Windows has no os.RTLD_NOW / RTLD_LOCAL / RTLD_NOLOAD (ctypes ignores the mode there). Handing NumPy's OpenBLAS
    to the C core's pool (done when the C core is imported) raised AttributeError, so a C core built on Windows
    made every kernel call fail."""
    from minigpt2 import _blas_threads

    opened = []

    class NoOpenBLAS:  # (a library without OpenBLAS's entry points: install() passes it by)
        def __init__(self, path, mode=0):
            opened.append((path, mode))

    monkeypatch.setattr(_blas_threads.ctypes, "CDLL", NoOpenBLAS)
    monkeypatch.setattr(_blas_threads, "_loaded_openblas", lambda: ["C:/numpy.libs/libscipy_openblas64_.dll"])
    before = dict(_blas_threads._libraries)
    assert _blas_threads.install(12345) == []
    assert opened == [("C:/numpy.libs/libscipy_openblas64_.dll", 0)]
    assert _blas_threads._libraries == before


def test_hub_permission_warning_is_kept_on_windows(windows, tmp_path):
    """huggingface_hub warns "Could not set the permissions on the file ..." when its chmod fails; minigpt2's filter
    for another user's partial download asked os.getuid(), which Windows lacks: the AttributeError came out of
    logger.warning, inside huggingface_hub's download. Now the warning is kept as huggingface_hub says it."""
    from minigpt2.shared_cache import quiet_about_others_partial_files

    blob = tmp_path / "blob.incomplete"
    blob.write_bytes(b"x")
    hub_logger, seen = logging.getLogger("huggingface_hub.file_download"), []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    hub_logger.addHandler(handler)
    try:
        with quiet_about_others_partial_files():
            hub_logger.warning(f"Could not set the permissions on the file '{blob}'. Error: [WinError 5] Access is "
                               f"denied.\nContinuing without setting permissions.")
    finally:
        hub_logger.removeHandler(handler)
    assert len(seen) == 1 and str(blob) in seen[0]


def test_training_lock_without_fcntl(windows, tmp_path):
    """Windows has no advisory locks: --out is not locked (None), and nothing is made there yet."""
    from minigpt2.training.cli import hold_out_dir, refuse_to_overwrite

    out = tmp_path / "run"
    refuse_to_overwrite(str(out))  # (another user's folder cannot be told without os.getuid: no error)
    assert hold_out_dir(str(out)) is None
    assert not out.exists()


def test_kernel_choice_is_cached_under_xdg_cache_home(elsewhere, monkeypatch, tmp_path):
    """The calibration's choice is written as JSON under $XDG_CACHE_HOME/minigpt2 and read back by the next run,
    without /proc/cpuinfo (the CPU named otherwise) and, on Windows, without a user id."""
    from minigpt2 import backend

    if not backend.c_available():
        pytest.skip("the C core is not built: there is no kernel choice to cache")
    tuning = backend._ckernels._tuning
    choice = {cls: tuning.NUMPY for cls in list(tuning.CLASSES) + tuning._narrow_classes()}
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(tuning, "calibrate", lambda: (dict(choice), {}))
    first = tuning.calibrated()
    files = os.listdir(tmp_path / "minigpt2")
    assert len(files) == 1 and files[0].startswith("kernels-") and files[0].endswith(".json")
    with open(tmp_path / "minigpt2" / files[0], encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["choice"] == choice and saved["key"]["cpu"]
    assert saved["key"]["user"] == (None if elsewhere == "windows" else os.getuid())
    assert "just now, cached in" in first.how
    monkeypatch.setattr(tuning, "calibrate", lambda: pytest.fail("measured again: the cached choice was not read"))
    assert tuning.calibrated().how.startswith("measured on this machine, cached in")


# -- the command line, in an interpreter without what the system lacks ------------------------------------------------

SIMULATE = r"""
import builtins, io, mmap, os, runpy, sys
system = os.environ["PLATFORMS12"]
real = {name: getattr(os, name) for name in ("stat", "lstat", "scandir", "listdir")}
real_open = builtins.open

def linux_path(path):
    if isinstance(path, int):
        return False
    path = os.path.abspath(os.fsdecode(path))
    return path in ("/proc", "/sys") or path.startswith(("/proc/", "/sys/"))

def without(call):
    def f(path=".", *args, **kwargs):
        if linux_path(path):
            raise FileNotFoundError(2, "No such file or directory", os.fsdecode(path))
        return call(path, *args, **kwargs)
    return f

builtins.open = io.open = without(real_open)
for name, call in real.items():
    setattr(os, name, without(call))
gone = ["sched_getaffinity", "getxattr", "setxattr", "listxattr", "posix_fadvise"]
advice = [n for n in dir(mmap) if n.startswith("MADV_")]
if system == "windows":
    gone += ["getuid", "geteuid", "getgid", "getegid", "getgroups", "chown", "sysconf", "sysconf_names"]
    gone += [n for n in dir(os) if n.startswith("RTLD_")]
    for n in [n for n in dir(mmap) if n.startswith(("MAP_", "PROT_", "MADV_"))]:
        delattr(mmap, n)
    class WindowsMmap(mmap.mmap):
        def __new__(cls, fileno, length, tagname=None, access=mmap.ACCESS_DEFAULT, offset=0):
            return super().__new__(cls, fileno, length, access=access, offset=offset)
        @property
        def madvise(self):
            raise AttributeError("madvise")
    mmap.mmap = WindowsMmap
    for n in ("fcntl", "pwd", "grp", "resource", "termios"):
        sys.modules[n] = None
else:
    for n in %(advice)r:
        if hasattr(mmap, n):
            delattr(mmap, n)
    real_sysconf = os.sysconf
    def sysconf(name):
        if name in ("SC_LEVEL3_CACHE_SIZE", "SC_AVPHYS_PAGES"):
            raise ValueError("unrecognized configuration name")
        return real_sysconf(name)
    os.sysconf = sysconf
for n in gone:
    if hasattr(os, n):
        delattr(os, n)
if os.environ.get("PLATFORMS12_NO_C_CORE"):
    sys.modules["minigpt2._kernels"] = None
sys.argv = ["minigpt2"] + sys.argv[1:]
runpy.run_module("minigpt2", run_name="__main__", alter_sys=True)
""" % {"advice": LINUX_ONLY_ADVICE}


@functools.lru_cache(maxsize=None)
def shadows_an_installed_copy() -> bool:
    """True where minigpt2 imported from ROOT, as run_minigpt2's processes import it, shadows an installed copy (CI's
    stage of the oldest releases installs the package and runs the tests from its source): --info and --doctor then
    say that the C core is not loaded, with how to load it, rather than not built. Asked of such a process."""
    ask = "from minigpt2 import backend; print(backend.shadowed_copy() is not None)"
    done = subprocess.run([sys.executable, "-c", ask], env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split() == ["True"]


def run_minigpt2(system, *args, c_core=True, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIGPT2_", "HF_"))}
    env.update(PLATFORMS12=system, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "xdg"),
               HF_HOME=str(tmp_path / "hf"), MINIGPT2_WORKSHOP_CACHE=str(tmp_path / "workshop"),
               MINIGPT2_FIGURES=str(tmp_path / "figures"), MINIGPT2_KERNEL="generic")  # (no 10 s calibration)
    if not c_core:
        env.update(PLATFORMS12_NO_C_CORE="1")
        del env["MINIGPT2_KERNEL"]
    done = subprocess.run([sys.executable, "-c", SIMULATE, *args], env=env, cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(params=[True, False], ids=["c-core", "no-c-core"])
def c_core(request):
    if request.param:
        from minigpt2 import backend

        if not backend.c_available():
            pytest.skip("the C core is not built here")
    return request.param


@pytest.mark.parametrize("system", ["macos", "windows"])
def test_info_elsewhere(system, c_core, tmp_path):
    code, out, err = run_minigpt2(system, "--info", c_core=c_core, tmp_path=tmp_path)
    assert code == 0, err[-3000:]
    assert ("backend: c (C core available" if c_core else "backend: numpy (C core not available)") in out
    assert "Traceback" not in err
    if not c_core:  # (said once, with how to get it; "not loaded" where this source folder shadows an installed copy,
        # as in CI's stage of the oldest releases, which runs the tests from the source beside the installed package)
        if shadows_an_installed_copy():
            assert "the C core is not loaded" in err and "which builds the C core" in err, err
        else:
            assert "the C core is not built" in err and "C compiler" in err, err


@pytest.mark.parametrize("system", ["macos", "windows"])
def test_doctor_elsewhere(system, c_core, tmp_path):
    code, out, err = run_minigpt2(system, "--doctor", c_core=c_core, tmp_path=tmp_path)
    assert "Traceback" not in err, err[-3000:]
    assert "the check itself failed" not in out, out
    assert "[ ok ] a tiny model runs" in out
    if c_core:
        assert "[ ok ] C core built" in out, out
    else:  # ("not loaded" where this source folder shadows an installed copy: CI's stage of the oldest releases)
        assert ("[warn] C core not loaded" if shadows_an_installed_copy() else "[warn] C core not built") in out, out
    assert f"threads: {os.cpu_count()} logical cores" in out
    assert "caches writable" in out and code in (0, 1)


@pytest.mark.parametrize("system", ["macos", "windows"])
def test_generating_and_training_from_the_command_line_elsewhere(system, tmp_path, checkpoint):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat and the dog ran off to see it\n" * 60, encoding="utf-8")
    code, out, err = run_minigpt2(system, "train", "--data", str(corpus), "--out", str(tmp_path / "run"),
                                  "--max-steps", "2", "--n-layer", "1", "--n-embd", "16", "--n-head", "2",
                                  "--seq-len", "16", "--batch-size", "2", "--sample-tokens", "0", tmp_path=tmp_path)
    assert code == 0, err[-3000:]
    assert {"model.safetensors", "trainer_state.json"} <= set(os.listdir(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / ".train.lock")
    code, out, err = run_minigpt2(system, "-m", checkpoint, "--max-new-tokens", "3", "--dtype", "bfloat16",
                                  "Hello", tmp_path=tmp_path)
    assert code == 0 and out.startswith("Hello"), err[-3000:]
