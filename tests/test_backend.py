"""Backend selection (NumPy or the C core), threads, and the whole model against transformers on both.

The model-level bound is the project's: max|ours - ref| <= 1e-5 * max(1, max|ref|) per tensor
(conftest.assert_close). The C kernels add and multiply in other orders than NumPy's BLAS, which moves
results by a few float32 ulps per layer (see test_kernels.py for the per-kernel bounds).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minigpt2
from minigpt2 import backend

from conftest import assert_close, write_hf_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRE_C = os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("MINIGPT2_REQUIRE_C") == "1"
needs_c = pytest.mark.skipif(not backend.c_available(), reason="the C extension is not built")


def test_the_c_extension_is_built_where_required():
    """In CI (CI=true) or with MINIGPT2_REQUIRE_C=1, a missing C core is a failure, not a skip."""
    if not REQUIRE_C and not backend.c_available():
        pytest.skip(f"the C extension is not built ({backend._c_problem}); CI requires it")
    assert backend.c_available(), f"the C extension minigpt2._kernels did not build or load: {backend._c_problem}"
    assert run_python("import minigpt2; print(minigpt2.backend.name)") == "c"


def run_python(code, env=None, expect_failure=False):
    """Run ``code`` in a fresh interpreter (the backend is chosen at import); return its stripped stdout."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MINIGPT2_")}
    environ.update(env or {})
    environ["PYTHONPATH"] = ROOT + os.pathsep + environ.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True, text=True,
                          timeout=120)
    if expect_failure:
        assert done.returncode != 0, done.stdout
        return done.stderr
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# -- choosing the backend --------------------------------------------------------------------------------

@needs_c
def test_environment_chooses_the_backend():
    assert run_python("import minigpt2; print(minigpt2.backend.name)", {"MINIGPT2_BACKEND": "numpy"}) == "numpy"
    assert run_python("import minigpt2; print(minigpt2.backend.name)", {"MINIGPT2_BACKEND": "c"}) == "c"
    assert run_python("import minigpt2; print(minigpt2.backend.name)", {"MINIGPT2_BACKEND": "auto"}) == "c"
    forward = "import minigpt2; minigpt2.GPT2Model(minigpt2.GPT2Config.from_preset('tiny'), seed=0)([[1, 2]])"
    error = run_python(forward, {"MINIGPT2_BACKEND": "fortran"}, expect_failure=True)
    assert "ValueError: MINIGPT2_BACKEND='fortran'" in error and "numpy, c, auto" in error
    # The import works, and choosing a backend in code replaces the bad setting.
    fixed = "import minigpt2; minigpt2.backend.set_backend('numpy'); " + forward.split("; ", 1)[1] + "; print('ok')"
    assert run_python(fixed, {"MINIGPT2_BACKEND": "fortran"}) == "ok"


@needs_c
def test_set_backend():
    saved = backend.name
    try:
        assert backend.set_backend("numpy") == "numpy" == backend.name == backend.get_backend()
        assert not backend._active
        assert backend.set_backend("c") == "c" == minigpt2.backend.name
        assert set(backend._active) == {"linear", "layer_norm", "gelu_new", "attention", "transformer_block",
                                        "transformer_blocks"}
        assert backend.set_backend("auto") == "c"
        with pytest.raises(ValueError, match="unknown backend 'C'.*'numpy', 'c', 'auto'"):
            backend.set_backend("C")
    finally:
        backend.set_backend(saved)


WITHOUT_EXTENSION = """
import sys, warnings
sys.modules["minigpt2._kernels"] = None  # as if it had not been built: importing it raises ImportError
"""


def test_an_extension_built_from_other_sources_is_refused_not_called():
    """A checkout updated since its C core was built (pip install -e ., then git pull): the library's interface
    (csrc/kernels.h MG_INTERFACE) differs from the wrappers', so minigpt2 runs on NumPy and says to rebuild,
    instead of calling C functions whose arguments have changed (or crashing on a missing constant)."""
    out = run_python("""
import sys, types, warnings
old = types.ModuleType("minigpt2._kernels")  # an older build: no MG_INTERFACE, other constants
old.ffi, old.lib = None, types.SimpleNamespace(MG_OK=0)
sys.modules["minigpt2._kernels"] = old
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import minigpt2
print(minigpt2.backend.name)
print(caught[0].message)
""")
    name, message = out.splitlines()
    assert name == "numpy"
    assert "has interface 1, these sources need" in message and "rebuild it" in message


def test_without_the_extension_auto_falls_back_and_says_so_once():
    out = run_python(WITHOUT_EXTENSION + """
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import minigpt2
    minigpt2.backend.set_backend("auto")
    minigpt2.backend.set_backend("auto")
print(minigpt2.backend.name, minigpt2.backend.c_available(), len(caught))
print(caught[0].message)
try:
    minigpt2.backend.set_backend("c")
except RuntimeError as e:
    print("RuntimeError:", e)
print(minigpt2.backend.name)
""")
    lines = out.splitlines()
    assert lines[0] == "numpy False 1"
    assert "no compiled minigpt2._kernels" in lines[1] and "NumPy backend" in lines[1]  # (not Python's "circular import")
    # The subprocess imports this checkout (PYTHONPATH); where this process imported another, installed copy (CI's
    # oldest stage: pip install ., tests run from outside), the checkout shadows it, and the warning says so.
    shadows = os.path.realpath(os.path.dirname(minigpt2.__file__)) != os.path.realpath(os.path.join(ROOT, "minigpt2"))
    if shadows:
        assert "C core is not loaded" in lines[1] and "shadows the installed copy" in lines[1], lines[1]
    else:
        assert "C core is not built" in lines[1] and "C compiler" in lines[1], lines[1]
    assert lines[2].startswith("RuntimeError: the C backend was asked for") and "python csrc/build_kernels.py" in lines[2]
    assert lines[3] == "numpy"


def test_asking_for_c_without_the_extension_is_an_error_at_first_use():
    code = "import minigpt2; minigpt2.GPT2Model(minigpt2.GPT2Config.from_preset('tiny'), seed=0)([[1, 2]])"
    error = run_python(WITHOUT_EXTENSION + code, {"MINIGPT2_BACKEND": "c"}, expect_failure=True)
    assert "RuntimeError: MINIGPT2_BACKEND=c: the C backend was asked for" in error


# -- threads -------------------------------------------------------------------------------------------

@needs_c
def test_thread_count_from_the_environment_and_the_affinity():
    code = "import minigpt2; print(minigpt2.backend.get_num_threads(), minigpt2.backend._ckernels.lib.mg_get_num_threads())"
    assert run_python(code, {"MINIGPT2_NUM_THREADS": "3"}) == "3 3"
    if hasattr(os, "sched_setaffinity"):
        one_core = "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); " + code
        assert run_python(one_core) == "1 1"
    forward = "; minigpt2.GPT2Model(minigpt2.GPT2Config.from_preset('tiny'), seed=0)([[1, 2]])"
    for bad in ("0", "two", "-1", "257", "99999999999", "\u00b2"):  # (the last: a superscript 2)
        error = run_python(code + forward, {"MINIGPT2_NUM_THREADS": bad}, expect_failure=True)
        assert "MINIGPT2_NUM_THREADS must be a positive whole number" in error
    fixed = "import minigpt2; minigpt2.backend.set_num_threads(1)" + forward + "; print('ok')"
    assert run_python(fixed, {"MINIGPT2_NUM_THREADS": "two"}) == "ok"


def test_set_num_threads():
    saved = backend.get_num_threads()
    try:
        backend.set_num_threads(1)
        assert backend.get_num_threads() == 1
        if backend.c_available():
            assert backend._ckernels.lib.mg_get_num_threads() == 1
        for bad in (0, -2, 1.5, "2", True, None, 257, 10 ** 6, 2 ** 40):
            with pytest.raises(ValueError, match="positive whole number, at most 256"):
                backend.set_num_threads(bad)
        assert backend.get_num_threads() == 1
        backend.set_num_threads(256)
        assert backend.get_num_threads() == 256
    finally:
        backend.set_num_threads(saved)


# -- the whole model, both backends, against transformers ----------------------------------------------------

CONFIG = dict(vocab_size=300, n_positions=128, n_embd=64, n_layer=2, n_head=4)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("backend_parity")
    write_hf_checkpoint(directory, **CONFIG)
    return str(directory)


VARIANTS = backend.kernel_variants()  # the compiled variants of the C core this CPU runs


@pytest.fixture(params=["numpy"] + [pytest.param(f"c:{v}", marks=needs_c) for v in VARIANTS])
def backend_name(request):
    """The NumPy backend, and the C backend with each variant this CPU runs forced in turn."""
    saved = backend.name
    name, _, variant = request.param.partition(":")
    backend.set_backend(name)
    if variant:
        saved_variant = backend._ckernels._tuning._requested
        backend.set_kernel(variant)
    yield request.param
    if variant:
        backend._ckernels._tuning.choose(saved_variant)
    backend.set_backend(saved)


def _hf(checkpoint_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2LMHeadModel.from_pretrained(checkpoint_dir, attn_implementation="eager").eval()


@pytest.mark.parametrize("length", [5, 12, 80])  # rows 10, 24, 160: C decode path, C tiled path, BLAS
def test_prompt_logits_match_transformers(checkpoint_dir, backend_name, length):
    torch = pytest.importorskip("torch")
    ids = np.random.default_rng(length).integers(0, CONFIG["vocab_size"], (2, length))
    with torch.no_grad():
        ref = _hf(checkpoint_dir)(torch.from_numpy(ids)).logits.numpy()
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(checkpoint_dir)(ids).logits
    assert_close(ours, ref, f"logits[{backend_name}, T={length}]")


def test_padded_batch_and_cached_decoding_match_transformers(checkpoint_dir, backend_name):
    """Left padding (with fully padded query rows), a head mask, then greedy steps through the cache."""
    torch = pytest.importorskip("torch")
    hf, ours = _hf(checkpoint_dir), minigpt2.GPT2LMHeadModel.from_pretrained(checkpoint_dir)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, CONFIG["vocab_size"], (3, 9))
    mask = np.ones((3, 9), np.int64)
    mask[0, :4] = 0
    mask[2, :1] = 0
    head_mask = np.array([[1, 0, 1, 0.5], [1, 1, 0, 1]], np.float32)
    with torch.no_grad():
        out_hf = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), head_mask=torch.from_numpy(head_mask))
    out = ours(ids, attention_mask=mask, head_mask=head_mask)
    # Every position, padded ones included (a padded query spreads its attention over the padded keys up to
    # itself, as transformers 4.57 does).
    assert_close(out.logits, out_hf.logits.numpy(), f"padded prompt logits [{backend_name}]")
    past, past_hf = out.past_key_values, out_hf.past_key_values
    for step in range(4):
        nxt = out.logits[:, -1].argmax(-1)[:, None]
        np.testing.assert_array_equal(nxt, out_hf.logits[:, -1].argmax(-1)[:, None].numpy())
        mask = np.concatenate([mask, np.ones((3, 1), np.int64)], axis=1)
        with torch.no_grad():
            out_hf = hf(torch.from_numpy(nxt), past_key_values=past_hf, attention_mask=torch.from_numpy(mask),
                        use_cache=True)
        out = ours(nxt, past_key_values=past, attention_mask=mask, use_cache=True)
        past, past_hf = out.past_key_values, out_hf.past_key_values
        assert_close(out.logits, out_hf.logits.numpy(), f"decode step {step} logits [{backend_name}]")
    real = mask[:, None, :, None].astype(bool)  # [B, 1, T, 1]: keys and values of real tokens only
    for i, ((k, v), (k_hf, v_hf)) in enumerate(zip(past, past_hf)):
        assert_close(k * real, k_hf.numpy() * real, f"past key {i}")
        assert_close(v * real, v_hf.numpy() * real, f"past value {i}")


@needs_c
def test_the_c_path_runs_in_a_whole_model_forward():
    """Counters in minigpt2._ckernels prove that every C kernel served calls of a real forward pass,
    and that the NumPy backend leaves them alone."""
    ck = backend._ckernels
    model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**CONFIG), seed=0)
    ids = np.arange(6)[None]
    saved, saved_variant = backend.name, ck._tuning._requested
    try:
        backend.set_backend("c")
        backend.set_kernel(VARIANTS[-1])  # (with "auto", a CPU could measure NumPy faster for some calls)
        before = dict(ck.calls)
        out = model(ids, use_cache=True)
        model(out.logits[:, -1].argmax(-1)[:, None], past_key_values=out.past_key_values)
        ran = {name: ck.calls[name] - before.get(name, 0) for name in ck.KERNELS}
        L = CONFIG["n_layer"]
        # (the decoding step's blocks are one C call, counted as the blocks and kernels they run, too)
        assert ran == {"linear": 2 * (4 * L + 1), "layer_norm": 2 * (2 * L + 1), "gelu_new": 2 * L, "attention": 2 * L,
                       "transformer_block": L, "transformer_blocks": 1}
        backend.set_backend("numpy")
        before = dict(ck.calls)
        model(ids)
        assert dict(ck.calls) == before
        backend.set_backend("c")
        backend.set_kernel("numpy")  # the C backend with every call sent to NumPy
        model(ids)
        assert dict(ck.calls) == before
    finally:
        ck._tuning.choose(saved_variant)
        backend.set_backend(saved)


@needs_c
def test_a_product_left_to_blas_first_sends_the_c_pools_idle_workers_to_sleep(monkeypatch):
    """A product the C backend leaves to NumPy's BLAS (a float32 prompt of BLAS_ROWS rows or more, or a kind of
    call the plan gives NumPy) first calls mg_pool_rest, so that the pool's spinning workers leave the cores to
    BLAS's own threads (csrc/parallel.c); a product C serves does not, and the results stay the reference's."""
    ck = backend._ckernels
    real, rests = ck.lib, []

    class CountingLib:  # the extension, with its calls of mg_pool_rest counted
        def __getattr__(self, name):
            return getattr(real, name)

        def mg_pool_rest(self):
            rests.append(1)
            real.mg_pool_rest()

    monkeypatch.setattr(ck, "lib", CountingLib())
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((64, 48), dtype=np.float32), rng.standard_normal(48, dtype=np.float32)
    x1, prompt = rng.standard_normal((1, 64), dtype=np.float32), rng.standard_normal((ck.BLAS_ROWS, 64), dtype=np.float32)
    saved, saved_variant = backend.name, ck._tuning._requested
    try:
        backend.set_backend("c")
        backend.set_kernel(VARIANTS[-1])  # every kind of call in C, but prompts of BLAS_ROWS rows go to BLAS
        calls = ck.calls["linear"]
        assert_close(minigpt2.layers.linear(x1, w, b), minigpt2.layers.linear.reference(x1, w, b))
        assert (ck.calls["linear"] - calls, len(rests)) == (1, 0)
        assert_close(minigpt2.layers.linear(prompt, w, b), minigpt2.layers.linear.reference(prompt, w, b))
        assert (ck.calls["linear"] - calls, len(rests)) == (1, 1)
        backend.set_kernel("numpy")  # every kind of call to NumPy
        minigpt2.layers.linear(x1, w, b)
        assert (ck.calls["linear"] - calls, len(rests)) == (1, 2)
    finally:
        ck._tuning.choose(saved_variant)
        backend.set_backend(saved)


def test_a_near_tie_with_numpy_goes_to_c_with_threads_and_to_numpy_with_one():
    """The calibration's rule (_tuning._fastest): within TIE of NumPy, C serves with more than one thread (one
    thread pool keeps the cores) and NumPy with one, but for the kernels that decide whether the decoding block is one
    C call, where C serves at one thread too; beyond TIE the faster serves at any thread count."""
    from minigpt2 import _tuning as tuning  # (importable without the C core)

    saved = backend.get_num_threads()
    tie = tuning.TIE

    def fastest(c_time):
        return tuning._fastest({"numpy": [1.0, 1.0, 1.0], "avx2/nta": [c_time] * 3, "generic/nta": [c_time * 1.5] * 3})

    try:
        backend.set_num_threads(2)
        assert [fastest(t) for t in (1 - 2 * tie, 1 + tie / 2, 1 + 2 * tie)] == ["avx2/nta", "avx2/nta", "numpy"]
        backend.set_num_threads(1)
        assert [fastest(t) for t in (1 - 2 * tie, 1 - tie / 2, 1 + tie / 2)] == ["avx2/nta", "numpy", "numpy"]
        assert tuning._fastest({"avx2/nta": [2.0], "generic/nta": [1.0]}) == "generic/nta"  # no NumPy in the race
        # the block's kernels decide whether a decoding step's blocks are one C call: a near tie goes to C
        assert [tuning._fastest({"numpy": [1.0], "avx2/nta": [t]}, decides_the_block=True)
                for t in (1 - tie / 2, 1 + tie / 2, 1 + 2 * tie)] == ["avx2/nta", "avx2/nta", "numpy"]
    finally:
        backend.set_num_threads(saved)


def test_the_race_lets_blas_threads_settle_after_numpy_with_threads(monkeypatch):
    """OpenBLAS's idle threads spin for about 0.1 s after a call; with more than one thread of ours, the race waits
    BLAS_SETTLE after each run of a candidate that called BLAS, so the candidate timed next does not share the
    cores with them (without it the race was biased against C: docs/kernels.md). With one thread it never waits."""
    from minigpt2 import _tuning as tuning

    events = []
    monkeypatch.setattr(tuning.time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    monkeypatch.setattr(tuning, "STILL_IN", float("inf"))  # (no candidate leaves: these take no time)
    candidates = {name: (lambda name=name: events.append(name)) for name in ("avx2/nta", "numpy", "mixed")}
    saved = backend.get_num_threads()
    try:
        backend.set_num_threads(2)
        tuning._race(candidates, rounds=3, blas=("numpy", "mixed"))
        sleeps = [i for i, e in enumerate(events) if isinstance(e, tuple)]
        assert len(sleeps) == 6 and all(events[i] == ("sleep", tuning.BLAS_SETTLE) for i in sleeps)
        assert all(events[i - 1] in ("numpy", "mixed") and events[i - 2] == events[i - 1] for i in sleeps)
        assert tuning.BLAS_SETTLE >= 0.1  # OpenBLAS's default spin: 2**28 time-stamp ticks, 0.1 s at 2.7 GHz
        events.clear()
        backend.set_num_threads(1)
        tuning._race(candidates, rounds=3, blas=("numpy", "mixed"))
        assert not [e for e in events if isinstance(e, tuple)] and len(events) == 18
    finally:
        backend.set_num_threads(saved)


def test_a_race_drops_after_its_first_round_the_candidates_that_cannot_win(monkeypatch):
    """After the first round, a candidate slower than STILL_IN times that round's best runs no more (it can neither
    win nor tie), NumPy included; the others run every round, and each reports the median of its runs."""
    from minigpt2 import _tuning as tuning

    clock, runs = [0.0], []
    monkeypatch.setattr(tuning.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(tuning.time, "sleep", lambda seconds: None)

    def taking(name, seconds):
        def run():
            clock[0] += seconds
            runs.append(name)
        return run

    cost = {"avx512/keep": 1.0, "avx2/keep": 1.1, "numpy": 1.3, "generic/keep": 3.0}
    winner, medians = tuning._race({name: taking(name, t) for name, t in cost.items()}, rounds=3, blas=("numpy",))
    assert winner == "avx512/keep" and medians == pytest.approx(cost)
    assert 1.1 <= tuning.STILL_IN < 1.3
    assert {name: runs.count(name) for name in cost} == {"avx512/keep": 6, "avx2/keep": 6, "numpy": 2,
                                                         "generic/keep": 2}  # (each run after a warm-up run)


def test_the_pair_race_runs_whenever_numpy_won_either_product_alone():
    """The block products and the head are timed together, as a decoding step runs them, whenever NumPy won either
    alone, both included: each was timed alone with no C kernel next to it for long, and NumPy alone for both
    decoded 15% slower than C alone for both on Zen 5 (docs/kernels.md). Both in C: nothing to race."""
    from minigpt2 import _tuning as tuning

    fastest = ("avx2/nta", "avx2/keep/rows")
    assert tuning._pair_options(("avx2/nta", "avx2/none/rows"), fastest) == {}
    assert tuning._pair_options(("numpy", "numpy"), fastest) == {"c": fastest, "numpy": ("numpy", "numpy")}
    assert tuning._pair_options(("avx2/nta", "numpy"), fastest) == {
        "c": fastest, "numpy": ("numpy", "numpy"), "mixed": ("avx2/nta", "numpy")}
    assert tuning._pair_options(("numpy", "avx2/none/rows"), fastest)["mixed"] == ("numpy", "avx2/none/rows")


def test_the_last_level_cache_size_comes_from_sysfs(tmp_path):
    """The calibration's example is at least twice the last-level cache (_tuning._l3_bytes): read from Linux's sysfs
    (os.sysconf has no SC_LEVEL3_CACHE_SIZE in CPython on Linux), L3 if there is one, else the largest level."""
    from minigpt2 import _tuning as tuning

    def caches(*levels):
        root = tmp_path / "-".join(size for _, size in levels)
        for i, (level, size) in enumerate(levels):
            (root / f"index{i}").mkdir(parents=True)
            (root / f"index{i}" / "level").write_text(f"{level}\n")
            (root / f"index{i}" / "size").write_text(f"{size}\n")
        return str(root)

    assert tuning._l3_bytes(caches((1, "32K"), (1, "32K"), (2, "512K"), (3, "32768K"))) == 32 << 20
    assert tuning._l3_bytes(caches((1, "64K"), (2, "16M"))) == 16 << 20  # no L3 (some ARM servers)
    assert tuning._l3_bytes(caches((1, "48K"), (2, "2048K"), (3, "105M"))) == 105 << 20


# -- the kernel variant: MINIGPT2_KERNEL, set_kernel, the calibration and its cache -----------------------------

FORWARD = "import minigpt2; minigpt2.GPT2Model(minigpt2.GPT2Config.from_preset('tiny'), seed=0)([[1, 2]])"


@needs_c
def test_a_bad_kernel_variant_is_a_clear_error_at_first_use():
    error = run_python(FORWARD, {"MINIGPT2_KERNEL": "sse9"}, expect_failure=True)
    allowed = ", ".join(("auto", "numpy") + VARIANTS)
    assert f"ValueError: MINIGPT2_KERNEL 'sse9' is not a kernel variant; choose one of {allowed}" in error
    fixed = "import minigpt2; minigpt2.backend.set_kernel('numpy'); " + FORWARD.split("; ", 1)[1] + "; print('ok')"
    assert run_python(fixed, {"MINIGPT2_KERNEL": "sse9"}) == "ok"
    with pytest.raises(ValueError, match="choose one of auto, numpy"):
        backend.set_kernel("AVX2")
    names = backend._ckernels._tuning.variant_names()
    missing = [v for v in names if v not in VARIANTS] or [v for v in ("avx512", "neon") if v not in names]
    error = run_python(FORWARD, {"MINIGPT2_KERNEL": missing[0]}, expect_failure=True)
    assert f"MINIGPT2_KERNEL {missing[0]!r}: " in error and f"this machine can use {allowed}" in error


@needs_c
def test_the_environment_forces_a_variant_and_info_shows_it():
    code = "import minigpt2; print('\\n'.join(minigpt2.backend.kernel_choice()))"
    for variant in VARIANTS + ("numpy",):
        lines = run_python(code, {"MINIGPT2_KERNEL": variant}).splitlines()
        assert lines[0] == f"kernel choice: forced ({variant})"
        expected = "numpy" if variant == "numpy" else f"{variant}/nta"
        assert all(line.endswith(f": {expected}") for line in lines[1:10]) and len(lines) == 14
        fused = "no" if variant == "numpy" else "yes"
        assert lines[13] == (f"  a decoding block as one C call (one sequence), by weights: float32 {fused}, "
                             f"bfloat16 {fused}, float16 {fused}, int8 {fused}")
        for line, what, kinds in zip(lines[10:13], ("bfloat16", "float16", "int8"), (5, 5, 3)):
            narrow = line.split(": ", 1)[1].split(", ")  # the 16/8-bit weights' picks, one per kind of call
            assert line.startswith(f"  linear with {what} weights") and len(narrow) == kinds  # (int8: by columns)
            assert all(pick.split()[-1] == expected for pick in narrow)
    code = ("import minigpt2, numpy as np; from minigpt2 import _ckernels as ck; "
            "minigpt2.GPT2Model(minigpt2.GPT2Config.from_preset('tiny'), seed=0)([[1, 2]]); "
            "print(sorted(set(ck.last_variant.values())))")
    for variant in VARIANTS:
        assert run_python(code, {"MINIGPT2_KERNEL": variant}) == str([variant])


# The calibration's examples are sized from the L3 cache, up to 128 MiB where sysfs reports a server's (300 MiB on an
# Emerald Rapids VM). The tests of what a calibration does size them from a laptop's L3
# (64 MiB examples); test_the_last_level_cache_size_comes_from_sysfs tests the sizing.
SMALL_L3 = "from minigpt2 import _tuning; _tuning._l3_bytes = lambda: 16 << 20; "


@needs_c
@pytest.mark.skipif(not backend.c_available(), reason="the C core is not built")
def test_numpys_thread_cap_is_part_of_the_calibrations_key():
    """A first run with OPENBLAS_NUM_THREADS=1 (tutorial 08 sets it) races NumPy's products on one thread; the choice
    must not then serve the runs whose NumPy splits its products over both of the pool's threads."""
    from minigpt2 import _ckernels

    if not _ckernels.blas_on_pool:
        pytest.skip("NumPy's BLAS runs its own threads here (no OpenBLAS with the callback to put on the pool)")
    code = "import json, minigpt2; from minigpt2 import _tuning; print(json.dumps(_tuning.cache_key(2)))"
    import json

    capped, free = (json.loads(run_python(code, {"OPENBLAS_NUM_THREADS": n})) for n in ("1", "2"))
    assert (capped["blas_threads"], free["blas_threads"]) == (1, 2)
    from minigpt2 import _tuning

    assert _tuning.cache_path(capped) != _tuning.cache_path(free)


def test_the_calibration_is_measured_once_and_cached_for_other_users(tmp_path):
    """The first auto run measures and writes the cache file atomically (no partial file left), readable as
    the umask allows (022: by everyone); the next run reads it and does not measure again."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "MINIGPT2_KERNEL": "auto", "MINIGPT2_NUM_THREADS": "1"}
    first = run_python("import os; os.umask(0o022); import minigpt2; " + SMALL_L3 +
                       "print('\\n'.join(minigpt2.backend.kernel_choice()))", env)
    files = os.listdir(tmp_path / "minigpt2")
    assert len(files) == 1 and files[0].startswith("kernels-") and files[0].endswith(".json"), files
    path = tmp_path / "minigpt2" / files[0]
    assert first.splitlines()[0] == f"kernel choice: measured on this machine just now, cached in {path}"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    import json

    saved = json.loads(path.read_text())
    from minigpt2 import _tuning

    assert set(saved["choice"]) == set(_tuning.CLASSES) | set(_tuning._narrow_classes()) and saved["key"]["threads"] == 1
    for cls, pick in saved["choice"].items():
        assert pick == "numpy" or (pick.split("/")[0] in VARIANTS and pick.split("/")[1] in _tuning.PREFETCH), pick
        assert set(saved["measured"][cls]) >= {pick}
    # The head's classes race every variant with every prefetch kind and both walks (columns side by side, or one
    # after another), and NumPy (8 rows want another kind than 1).
    for cls in ("linear_1_head", "linear_few_head"):
        assert set(saved["measured"][cls]) == {f"{v}/{p}{walk}" for v in VARIANTS for p in _tuning.PREFETCH
                                               for walk in ("", "/rows")} | {"numpy"}, cls
    # The block matrices: one row of x races the three walks, a batch two (it walks "/seq" as "/rows").
    assert {c[c.index("/", c.index("/") + 1):] for c in saved["measured"]["linear_1"] if c.count("/") == 2} == {
        "/rows", "/seq"}
    assert {c[c.index("/", c.index("/") + 1):] for c in saved["measured"]["linear_few"] if c.count("/") == 2} == {
        "/rows"}
    # Attention for one query reads its keys and values from memory in the model: every prefetch kind is raced.
    assert set(saved["measured"]["attention_decode"]) == {f"{v}/{p}" for v in VARIANTS
                                                          for p in _tuning.PREFETCH} | {"numpy"}
    # The next run races the close calls of the classes that decide decoding once more, and only those (_second_look);
    # the run after that measures nothing.
    second = run_python("import minigpt2; from minigpt2 import _tuning\n"
                        "real = _tuning.calibrate\n"
                        "def again(only=None):\n"
                        "    deciding = set(_tuning.DECIDING + tuple(_tuning._narrow_classes()))\n"
                        "    assert only and set(only) <= deciding, only\n"
                        "    return real(only)\n"
                        "_tuning.calibrate = again\n"
                        "print('\\n'.join(minigpt2.backend.kernel_choice()))", env)
    assert second.splitlines()[0] in (f"kernel choice: measured on this machine, cached in {path}",
                                      f"kernel choice: measured on this machine, its close calls again just now, "
                                      f"cached in {path}")
    assert json.loads(path.read_text())["second_look"]
    again = run_python("import minigpt2; from minigpt2 import _tuning\n"
                       "def refuse(only=None): raise AssertionError('measured again')\n"
                       "_tuning.calibrate = refuse\n"
                       "print('\\n'.join(minigpt2.backend.kernel_choice()))", env)
    assert again.splitlines()[0] == f"kernel choice: measured on this machine, cached in {path}"
    assert again.splitlines()[1:] == second.splitlines()[1:]
    # Another thread count is another key: measured anew, in its own file.
    run_python("import minigpt2; " + SMALL_L3 + "minigpt2.backend.kernel_choice()", dict(env, MINIGPT2_NUM_THREADS="2"))
    assert len(os.listdir(tmp_path / "minigpt2")) == 2
