"""Which variant serves a prompt's product with 16- or 8-bit weights (Plan.narrow_pick, "linear_tiled").

A prompt's product is bound by the arithmetic, one row's product by the memory. The calibration races the
one-row product of each narrow format, where variants come out near even, and a prompt used to take that race's
variant: on the Emerald Rapids VM, one thread, bfloat16's one-row race chose avx2 by 5% and its 512-token prompts
ran at 285 tok/s against 359 in avx512. Now a prompt takes the variant that float32's prompt product (the
calibration's linear_tiled race) was fastest in, of those wider than the baseline, with the format's own prefetch
kind; the decoding classes keep their own race's pick."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("minigpt2._ckernels", reason="the C extension is not built (see test_backend.py)")
from minigpt2 import _ckernels, _tuning, weights  # noqa: E402
from test_kernels import gamma  # noqa: E402

WIDE = _tuning.supported_variants()[1:]  # the variants wider than the baseline this CPU runs


def plan(measured_tiled, narrow_one_row):
    choice = {cls: _tuning.NUMPY for cls in _tuning.CLASSES}
    choice.update({f"linear_1@{kind}": narrow_one_row for kind in ("bfloat16", "float16")})
    choice["linear_1_head@int8"] = narrow_one_row.replace("/rows", "")
    return _tuning.Plan(choice, "test", {"linear_tiled": measured_tiled})


@pytest.mark.skipif(len(WIDE) < 2, reason="needs two variants wider than the baseline (avx2 and avx512)")
def test_a_prompt_takes_the_variant_float32_prompts_were_fastest_in():
    slower, faster = WIDE[-1], WIDE[-2]  # (here the narrower variant won float32's prompt race)
    p = plan({"numpy": 1.0, f"{faster}/keep": 2.0, f"{slower}/keep": 3.0, "generic/keep": 0.5},
             narrow_one_row=f"{slower}/none/rows")
    for kind in ("bfloat16", "float16"):
        assert p.narrow_pick("linear_tiled", kind) == f"{faster}/none"  # (the kind's own prefetch kind, no walk)
        assert p.narrow_pick("linear_1", kind) == f"{slower}/none/rows"  # (decoding: its own race)
        assert p.narrow_pick("linear_few", kind) == f"{slower}/none/rows"
        for transposed in (0, 1):
            assert p.narrow_linear[kind][transposed][_tuning.DECODE_MAX_ROWS + 1][2] == faster
            assert p.narrow_linear[kind][transposed][1][2] == slower
    assert p.narrow_pick("linear_tiled", "int8") == f"{faster}/keep"


@pytest.mark.skipif(not WIDE, reason="this CPU runs the baseline variant only")
def test_the_baseline_never_serves_narrow_weights_where_a_wider_variant_runs():
    """(widening is arithmetic that only the wider variants have instructions for)"""
    p = plan({"generic/keep": 1.0, f"{WIDE[-1]}/keep": 2.0}, narrow_one_row=f"{WIDE[-1]}/keep/rows")
    assert p.narrow_pick("linear_tiled", "bfloat16") == f"{WIDE[-1]}/keep"


@pytest.mark.skipif(len(WIDE) < 2, reason="needs two variants wider than the baseline (avx2 and avx512)")
def test_a_bfloat16_prompt_runs_in_that_variant(monkeypatch):
    """The plan's pick is what the kernel call runs (and its result is the NumPy twin's, as each variant's is)."""
    faster = WIDE[-2]
    monkeypatch.setattr(_tuning, "_plan", plan({"numpy": 1.0, f"{faster}/keep": 2.0, f"{WIDE[-1]}/keep": 3.0},
                                               narrow_one_row=f"{WIDE[-1]}/keep/rows"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((_tuning.DECODE_MAX_ROWS + 20, 64), np.float32)
    w = weights.to_format(rng.standard_normal((64, 48), np.float32), "bfloat16", axis=0)
    before = _ckernels.calls["linear"]
    y = _ckernels.linear(x, w)
    assert _ckernels.calls["linear"] == before + 1 and _ckernels.last_variant["linear"] == faster
    wide = weights.widen(w)  # (exact: bfloat16 is float32's top half) the same products, added in another order
    bound = 2 * gamma(x.shape[1] + 1) * (np.abs(x) @ np.abs(wide))  # (tests/test_kernels_formats.py)
    assert (np.abs(y - x @ wide) <= bound).all()
