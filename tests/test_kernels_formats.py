"""The C core's linear on 16- and 8-bit weights against its NumPy twin, ``x @ widen(w) + b`` (layers.py).

The C kernels read float16, bfloat16 and int8 weights (minigpt2/weights.py) and widen each one in a register
just before its multiply-add. Widening is exact (float16 and bfloat16 are subsets of float32), so for 16 bits C
and NumPy multiply the same float32 values and differ only in the order of the additions: each is within
gamma(n_in + 1) of the exact sum (n_in products and the bias), and |c - ref| <= 2 gamma(n_in + 1) (|x| @
|widen(w)| + |b|), with gamma(n) = n u / (1 - n u), u = 2**-24, float32's bound (tests/test_kernels.py).
int8: the reference multiplies x by fl(q * scale), within u of q * scale; C multiplies x by q and, four rows of a
block at a time (csrc/decode.h, GROUP4), their sum by the scale: a product of the first group of n_in = 4g rows
passes through 4 roundings in its group, 1 for the scale, g - 1 for the groups after and 1 for the bias, at most
n_in + 2 in all (rows used alone: q * scale rounded, then float32's n_in + 1). Against the exact sum of x q s
both are then within gamma(n_in + 2), and the bound is 2 gamma(n_in + 2) (the C checker's, csrc/check_kernels.c).
Every test runs once per variant this CPU can run, forced in turn.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minigpt2 import backend, layers, weights

ck = pytest.importorskip("minigpt2._ckernels", reason="the C extension is not built (see test_backend.py)")
from test_kernels import SETTINGS, blas_rows, each_variant, gamma, kernel_variant, served_by_c, sizes  # noqa: E402

from minigpt2 import _tuning  # noqa: E402

FORMATS = ("float16", "bfloat16", "int8")


def stored(w, fmt, head):
    """w [n_in, n_out] in format ``fmt`` as the model keeps it: a Conv1D weight (blocks down its columns), or
    (head) the transpose of a table [n_out, n_in] (wte: blocks along its rows), as the tied head uses it."""
    if head:
        return weights.to_format(np.ascontiguousarray(w.T), fmt, axis=-1).T
    return weights.to_format(w, fmt, axis=0)


def roundings(w):
    """How many roundings a product may pass through, C's or the reference's (see the module's docstring)."""
    return w.shape[0] + (2 if weights.format_name(w) == "int8" else 1)


def check(x, w, b):
    ours = served_by_c("linear", ck.linear, x, w, b)
    ref = layers.linear.reference(x, w, b)
    wide = weights.widen(w).astype(np.float64)
    magnitude = np.abs(x.astype(np.float64)) @ np.abs(wide) + (0 if b is None else np.abs(b))
    excess = np.abs(ours.astype(np.float64) - ref) - 2 * gamma(roundings(w)) * magnitude
    assert excess.max() <= 0, f"{weights.format_name(w)} linear exceeds its bound by {excess.max():.3g}"


@each_variant
@SETTINGS
@given(fmt=st.sampled_from(FORMATS), rows=st.integers(1, 40), n_in=sizes, n_out=sizes, head=st.booleans(),
       with_bias=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_narrow_linear_matches_numpy(fmt, rows, n_in, n_out, head, with_bias, seed):
    """Every format, both layouts, the decode (<= 12 rows) and tiled paths, shapes off every tile and block."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n_in), dtype=np.float32)
    w = stored(rng.standard_normal((n_in, n_out), dtype=np.float32) * np.float32(0.1), fmt, head)
    b = rng.standard_normal(n_out, dtype=np.float32) if with_bias else None
    check(x, w, b)


@each_variant
@SETTINGS
@given(fmt=st.sampled_from(FORMATS), rows=st.integers(1, 40), n_in=sizes, n_out=sizes, head=st.booleans(),
       seed=st.integers(0, 2 ** 32 - 1))
def test_narrow_linear_is_exact_on_small_integers(fmt, rows, n_in, n_out, head, seed):
    """Small integers are exact in every format (int8 with scale 1), and so is every partial sum: any order of
    the additions gives the reference's bits. This catches a weight read from the wrong place, a dropped or
    doubled block, or a scale applied to the wrong block, which the rounding bound is too loose to see."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, (rows, n_in)).astype(np.float32)
    values = rng.integers(-8, 9, (n_in, n_out)).astype(np.float32)
    if fmt == "int8":
        # int8 rounds x to int16 steps of its block's largest / 32767: with a +-32767 in each block of 32 the step
        # is 1 and x stays as it is; those rows of W are -1, 0 or 1, so that the sums stay below 2^24 (exact)
        x[:, ::weights.BLOCK] = rng.choice(np.float32([-32767, 32767]), (rows, len(range(0, n_in, weights.BLOCK))))
        values[::weights.BLOCK] = rng.integers(-1, 2, values[::weights.BLOCK].shape)
        np.testing.assert_array_equal(weights.round_int16(x), x)
    if fmt == "int8":  # scales of 1 and 2 (exact products), different per block
        blocks = -(-n_in // weights.BLOCK)
        scales = rng.integers(1, 3, (blocks, n_out)).astype(np.float16)
        q = values.astype(np.int8)
        w = weights.Int8Weight(q, scales, 0)
        if head:
            w = weights.Int8Weight(np.ascontiguousarray(q.T), np.ascontiguousarray(scales.T), -1).T
    else:
        w = stored(values, fmt, head)
    b = rng.integers(-8, 9, n_out).astype(np.float32)
    np.testing.assert_array_equal(served_by_c("linear", ck.linear, x, w, b), layers.linear.reference(x, w, b))


@each_variant
@SETTINGS
@given(fmt=st.sampled_from(FORMATS), rows=st.integers(1, 12), n_in=sizes, n_out=sizes, head=st.booleans(),
       seed=st.integers(0, 2 ** 32 - 1))
def test_narrow_walks_prefetch_kinds_and_threads_change_no_bit(fmt, rows, n_in, n_out, head, seed):
    """Whatever the calibration picked for float32 serves the narrow formats too: every walk, prefetch kind and
    thread count must give the same bits."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n_in), dtype=np.float32)
    w = stored(rng.standard_normal((n_in, n_out), dtype=np.float32), fmt, head)
    variant = _tuning.variant_names().index(kernel_variant.forced)
    saved = backend.get_num_threads()
    try:
        results = []
        seq = _tuning.STREAM_ROWS | _tuning.STREAM_SEQ
        for threads, mode in ((1, 0), (2, 1), (3, 2), (2, _tuning.STREAM_ROWS), (1, 1 | _tuning.STREAM_ROWS),
                              (1, seq), (2, 2 | seq)):
            backend.set_num_threads(threads)
            results.append(run(variant, mode, x, w))
    finally:
        backend.set_num_threads(saved)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def run(variant, mode, x, w):
    """ck.linear with one variant and mode (prefetch kind | walk), by way of a forced plan; after the other walk
    on other values, whose sums stay in the scratch the kernels reuse, so that a sum this walk misses shows."""
    saved = _tuning._plan
    try:
        other = (mode & 3) | (0 if mode & _tuning.STREAM_ROWS else _tuning.STREAM_ROWS)
        for m, values in ((other, 2 * x + 1), (mode, x)):
            plan = _tuning.Plan({cls: "numpy" for cls in _tuning.CLASSES}, "forced (test)")
            pick = (variant, m, _tuning.variant_names()[variant])
            plan.narrow_linear = {kind: [[pick] * (_tuning.DECODE_MAX_ROWS + 2) for _ in range(2)]
                                  for kind in _tuning.NARROW}
            _tuning._plan = plan
            y = served_by_c("linear", ck.linear, values, w, None)
        return y
    finally:
        _tuning._plan = saved


@each_variant
def test_gpt2_shapes_without_a_float32_copy(monkeypatch):
    """The 124M model's matrices and its tied head, at decode and prompt sizes, in every format: served by C,
    and never widened in NumPy (no float32 copy of a matrix is made)."""
    def no_widen(w):
        raise AssertionError("a narrow matrix was widened in NumPy")

    rng = np.random.default_rng(0)
    mats = [(768, 2304), (768, 3072), (3072, 768)]
    for fmt in FORMATS:
        ws = [stored(rng.standard_normal(s, dtype=np.float32) * np.float32(0.02), fmt, False) for s in mats]
        head = stored(rng.standard_normal((768, 50257), dtype=np.float32) * np.float32(0.02), fmt, True)
        expected = {}
        for i, w in enumerate(ws + [head]):
            size = np.abs(weights.widen(w))
            for rows in (1, 8, 40):
                x = rng.standard_normal((rows, w.shape[0]), dtype=np.float32)
                bound = 2 * gamma(roundings(w)) * (np.abs(x) @ size)
                expected[i, rows] = (x, layers.linear.reference(x, w), bound)
        with monkeypatch.context() as m:
            m.setattr(layers, "widen", no_widen)
            for (i, rows), (x, ref, bound) in expected.items():
                ours = served_by_c("linear", ck.linear, x, (ws + [head])[i], None)
                assert (np.abs(ours - ref) <= bound).all(), (fmt, i, rows)


def test_what_the_c_core_declines_goes_to_numpy():
    """int8 blocks along the wrong axis (a table used untransposed), a float64 matrix, non-contiguous narrow
    views: the C core declines them and NumPy's reference serves (its numbers, its errors)."""
    rng = np.random.default_rng(3)
    table = weights.to_format(rng.standard_normal((16, 64), dtype=np.float32), "int8", axis=-1)
    x = rng.standard_normal((2, 16), dtype=np.float32)
    assert ck.linear(x, table) is NotImplemented  # blocks run along the outputs: not a summed axis
    assert ck.linear(x, rng.standard_normal((16, 64))) is NotImplemented
    half = rng.standard_normal((16, 128), dtype=np.float32).astype(np.float16)[:, ::2]
    assert ck.linear(x, half) is NotImplemented
    np.testing.assert_array_equal(layers.linear(x, half), x @ half.astype(np.float32))  # the reference itself


def test_narrow_weights_take_their_own_measurement_else_float32s_walk_in_the_widest_variant():
    """Narrow weights are served as the calibration measured them, per kind (16-bit, int8): the one-row classes
    as measured, a batch and a prompt with the same walk and prefetch kind. A plan without that measurement (made
    by hand, or forced) takes float32's walk and prefetch kind in the widest variant this CPU runs (where NumPy won
    float32, the fastest C candidate's); a forced variant serves everything; forced NumPy, nothing."""
    widest = _tuning.supported_variants()[-1]
    index = _tuning.variant_names().index(widest)
    keep_rows = (index, _tuning.PREFETCH["keep"] | _tuning.STREAM_ROWS, widest)
    choice = {cls: "numpy" for cls in _tuning.CLASSES}
    choice["linear_1"] = "generic/keep/rows"
    measured = {"linear_1_head": {"numpy": 1.0, "generic/none": 2.0, f"{widest}/nta": 3.0}}
    plan = _tuning.Plan(choice, "measured (test)", measured)
    for kind in _tuning.NARROW:
        assert plan.narrow_linear[kind][0][1] == keep_rows
        assert plan.narrow_linear[kind][1][1] == (index, _tuning.PREFETCH["none"], widest)
    assert plan.linear[0][1][2] == "generic" and plan.linear[1][1] is None  # float32 as measured
    assert _tuning.forced("generic").narrow_linear["int8"][0][1][2] == "generic"
    assert _tuning.forced("numpy").narrow_linear["bfloat16"][0][1] is None

    choice.update({"linear_1@int8": f"{widest}/nta/rows", "linear_1_head@int8": f"{widest}/keep",
                   "linear_1@bfloat16": f"{widest}/none", "linear_1_head@bfloat16": f"{widest}/nta"})
    plan = _tuning.Plan(choice, "measured (test)", measured)
    nta_rows = (index, _tuning.PREFETCH["nta"] | _tuning.STREAM_ROWS, widest)
    int8, sixteen = plan.narrow_linear["int8"], plan.narrow_linear["bfloat16"]
    assert int8[0][1] == int8[0][8] == nta_rows
    assert int8[0][_tuning.DECODE_MAX_ROWS + 1] == (index, _tuning.PREFETCH["nta"], widest)  # (prompts: no walk)
    assert int8[1][1] == int8[1][8] == (index, _tuning.PREFETCH["keep"], widest)
    assert sixteen[0][1] == (index, _tuning.PREFETCH["none"], widest)
    assert sixteen[1][8] == (index, _tuning.PREFETCH["nta"], widest)
    assert plan.linear[0][1][2] == "generic"  # float32's own choice untouched
    # the one-row walk passes to every class but a prompt's, which has no walk (a batch of x walks four rows of W
    # at a time whatever it is sent: csrc/decode.h decode_tile)
    choice["linear_1@bfloat16"] = "avx2/keep/seq" if "avx2" in _tuning.supported_variants() else f"{widest}/keep/seq"
    sixteen = _tuning.Plan(choice, "measured (test)", measured).narrow_linear["bfloat16"]
    v = choice["linear_1@bfloat16"].split("/")[0]
    seq = (_tuning.variant_names().index(v), _tuning.PREFETCH["keep"] | _tuning.STREAM_ROWS | _tuning.STREAM_SEQ, v)
    assert sixteen[0][1] == seq
    assert sixteen[0][2] == sixteen[0][8] == seq
    assert sixteen[0][_tuning.DECODE_MAX_ROWS + 1] == (seq[0], _tuning.PREFETCH["keep"], v)


def test_the_calibration_measures_narrow_weights_and_caches_the_choice(tmp_path, monkeypatch):
    """A calibration times the narrow kinds' one-row classes itself (every variant, walk and prefetch kind) and
    the cache keeps them; a cached file without them is measured again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_tuning, "_plan", None)
    monkeypatch.setattr(_tuning, "_l3_bytes", lambda: 16 << 20)  # 64 MiB examples (test_backend: SMALL_L3)
    plan = _tuning.calibrated()
    runnable = _tuning.narrow_variants()  # (the baseline only where no wider variant runs)
    assert runnable == (_tuning.supported_variants()[1:] or _tuning.supported_variants())
    for kind in ("bfloat16", "float16"):  # (measured apart: their widenings differ)
        times = plan.measured[f"linear_1@{kind}"]
        assert set(times) == {f"{v}/{p}{walk}" for v in runnable for p in _tuning.PREFETCH
                              for walk in ("", "/rows", "/seq")}
        assert plan.choice[f"linear_1@{kind}"] == min(times, key=times.get)
        assert set(plan.measured[f"linear_1_head@{kind}"]) == {f"{v}/{p}{walk}" for v in runnable
                                                               for p in _tuning.PREFETCH for walk in ("", "/rows")}
    # int8: every matrix stored by columns, one walk (integer dot products): the prefetch kinds
    times = plan.measured["linear_1_head@int8"]
    assert set(times) == {f"{v}/{p}" for v in runnable for p in _tuning.PREFETCH}
    assert "linear_1@int8" not in plan.measured
    assert plan.choice["linear_1_head@int8"] == min(times, key=times.get)
    looked = _tuning.calibrated()  # the next run: its close calls raced once more (_second_look)
    assert set(looked.choice) == set(plan.choice)
    again = _tuning.calibrated()
    assert again.choice == looked.choice and again.how.startswith("measured on this machine, cached in")
    path = _tuning.cache_path(_tuning.cache_key(backend.get_num_threads()))
    saved = json.loads(open(path).read())
    saved["choice"] = {c: p for c, p in saved["choice"].items() if "@" not in c}  # an older scheme's file
    open(path, "w").write(json.dumps(saved))
    assert "just now" in _tuning.calibrated().how

@SETTINGS
@given(rows=st.integers(1, 4), n=sizes, seed=st.integers(0, 2 ** 32 - 1), scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e4]))
def test_round_int16_is_within_half_a_step(rows, n, seed, scale):
    """int8 products take x rounded per block of 32 to int16 steps of the block's largest / 32767: every value
    within half a step (plus the step's own float32 rounding, 2^-24 of a value), the largest kept within that,
    a block's zeros kept zeros."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, n)) * scale).astype(np.float32)
    x[:, 1::3] = 0
    rounded = weights.round_int16(x)
    assert rounded.shape == x.shape and rounded.dtype == np.float32
    padded = np.zeros((rows, -(-n // 32) * 32))
    padded[:, :n] = x
    step = np.abs(padded.reshape(rows, -1, 32)).max(-1) / 32767  # [rows, blocks]
    step = np.repeat(step, 32, axis=1)[:, :n]
    err = np.abs(rounded.astype(np.float64) - x)
    assert (err <= step / 2 * (1 + 2 ** -20) + np.abs(x) * 2 ** -23).all()
    assert (rounded[:, 1::3] == 0).all()


def test_round_int16_edge_blocks():
    """A block of zeros, or of values too small for a nonzero step, stays 0; one holding NaN or infinity becomes
    all NaN (so every output it enters is NaN, in C as in NumPy); the other blocks of the row are untouched."""
    x = np.ones((1, 160), np.float32)
    x[0, :32] = 0
    x[0, 32:64] = 1e-44  # subnormal: the largest / 32767 rounds to 0
    x[0, 70] = np.nan
    x[0, 100] = -np.inf
    rounded = weights.round_int16(x)
    assert (rounded[0, :64] == 0).all()
    assert np.isnan(rounded[0, 64:128]).all()
    assert (rounded[0, 128:] == 1).all()


@each_variant
@pytest.mark.parametrize("rows", [1, 3, 13])
@pytest.mark.parametrize("head", [False, True])
def test_int8_products_of_unusual_activations_follow_numpy(rows, head):
    """Zeros, values below any int16 step, NaN and infinity in x: the C kernels (integer dots for few rows, the
    float kernels on the rounded x for more) give NaN exactly where NumPy's reference does, and its values
    elsewhere (within the rounding bound)."""
    rng = np.random.default_rng(0)
    n_in, n_out = 96, 40
    x = rng.standard_normal((rows, n_in), dtype=np.float32)
    x[:, :32] = 0
    x[0, 32:64] = 1e-44
    if rows > 1:
        x[1, 40] = np.nan
        x[-1, 70] = np.inf
    w = stored(rng.standard_normal((n_in, n_out), dtype=np.float32) * np.float32(0.1), "int8", head)
    ours = served_by_c("linear", ck.linear, x, w, None)
    ref = layers.linear.reference(x, w, None)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    assert np.isnan(ref).any() == (rows > 1)
    ok = ~np.isnan(ref)
    magnitude = np.abs(weights.round_int16(x).astype(np.float64)) @ np.abs(weights.widen(w).astype(np.float64))
    assert (np.abs(ours[ok].astype(np.float64) - ref[ok]) <= 2 * gamma(roundings(w)) * magnitude[ok]).all()
