"""The C kernels against their NumPy twins, which are the reference (backend.kernel's ``.reference``).

Every C kernel takes the arguments of the NumPy function it replaces; hypothesis draws shapes that
include 1, odd sizes, sizes that are no multiple of any tile, long inner dimensions, batches and
sequences up to GPT-2's n_positions, with masks, padding and head masks. The C core is compiled once
per target (generic, avx2, avx512 on x86-64; neon on AArch64): every test that compares values runs
once for each variant this CPU can run, forced in turn (VARIANTS); the others run with the widest.

Tolerances are derived from float32 rounding (u = 2**-24), never tuned to pass:
  - a sum of n products, added in any order, is within gamma(n) = n u / (1 - n u) of the exact sum
    of their magnitudes; two such sums (C and NumPy add in different orders) differ by at most
    twice that. This bounds ``linear`` and the scores inside ``attention``.
  - softmax turns a score error of d into a relative probability error of at most about 2d.
  - exp and tanh are each within a few ulp in both libraries (we allow 4 ulp apiece).
Each test states its bound next to the assertion.
"""
from __future__ import annotations

import inspect
import multiprocessing
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigpt2 import activations, backend, checkpoint, layers

ck = pytest.importorskip("minigpt2._ckernels", reason="the C extension is not built (see test_backend.py)")
from minigpt2 import _tuning  # noqa: E402

VARIANTS = _tuning.supported_variants()

U = 2.0 ** -24  # float32 unit roundoff
MASK = float(layers.MASK_VALUE)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def gamma(n):
    return n * U / (1 - n * U)


class kernel_variant:
    """Force one compiled variant of the C core (as MINIGPT2_KERNEL does) for the duration."""

    forced = None

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.saved, self.saved_forced = _tuning._requested, kernel_variant.forced
        _tuning.choose(self.name)
        kernel_variant.forced = self.name

    def __exit__(self, *exc):
        _tuning.choose(self.saved)
        kernel_variant.forced = self.saved_forced


def each_variant(test):
    """Run ``test`` once for each variant this CPU can run, with that variant forced."""
    params = list(inspect.signature(test).parameters.values())

    def run(variant, *args, **kwargs):
        with kernel_variant(variant):
            test(*args, **kwargs)

    run.__name__, run.__qualname__, run.__doc__ = test.__name__, test.__qualname__, test.__doc__
    run.__signature__ = inspect.Signature([inspect.Parameter("variant", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
                                          + params)
    run.pytestmark = list(getattr(test, "pytestmark", []))
    return pytest.mark.parametrize("variant", VARIANTS)(run)


@pytest.fixture(autouse=True)
def widest_variant():
    """Every test runs with a forced variant (so that the C kernels serve whatever the calibration chose);
    tests parametrised over VARIANTS force theirs inside."""
    with kernel_variant(VARIANTS[-1]):
        yield


def served_by_c(name, fn, *args, **kwargs):
    """Call the C kernel directly and check that it did not decline and that the forced variant served."""
    before = ck.calls[name]
    result = fn(*args, **kwargs)
    assert result is not NotImplemented, f"the C kernel {name} declined a case it should serve"
    assert ck.calls[name] == before + 1
    assert ck.last_variant[name] == kernel_variant.forced
    return result


class blas_rows:
    """Temporarily move the row count from which linear hands prompts to NumPy's BLAS."""

    def __init__(self, rows):
        self.rows = rows

    def __enter__(self):
        self.saved, ck.BLAS_ROWS = ck.BLAS_ROWS, self.rows

    def __exit__(self, *exc):
        ck.BLAS_ROWS = self.saved


def random_floats(rng, shape, scale=1.0):
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)


# -- linear ------------------------------------------------------------------------------------------

def check_linear(x, w, b):
    """C linear vs NumPy: |c - ref| <= 2 gamma(n_in + 1) (|x| @ |w| + |b|), elementwise."""
    ours = served_by_c("linear", ck.linear, x, w, b)
    ref = layers.linear.reference(x, w, b)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    magnitude = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64))
    if b is not None:
        magnitude += np.abs(b)
    bound = 2 * gamma(w.shape[0] + 1) * magnitude
    excess = np.abs(ours.astype(np.float64) - ref) - bound
    assert excess.max() <= 0, f"linear exceeds its bound by {excess.max():.3g} (x {x.shape}, w {w.shape})"


sizes = st.one_of(st.integers(1, 70), st.sampled_from([95, 96, 97, 255, 256, 257, 383, 384, 385, 767, 768, 1025, 3072, 3073]))


@each_variant
@SETTINGS
@given(rows=st.integers(1, 130), n_in=sizes, n_out=sizes, transposed=st.booleans(), with_bias=st.booleans(),
       batched=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_linear_matches_numpy(rows, n_in, n_out, transposed, with_bias, batched, seed):
    """Both weight layouts (Conv1D rows, and wte.T whose columns are contiguous), the few-row (decode)
    and tiled (prompt) paths, with and without bias, 2-D and 3-D inputs."""
    rng = np.random.default_rng(seed)
    x = random_floats(rng, (rows, n_in))
    if batched and rows % 2 == 0:
        x = x.reshape(2, rows // 2, n_in)
    w = random_floats(rng, (n_out, n_in)).T if transposed else random_floats(rng, (n_in, n_out))
    b = random_floats(rng, n_out) if with_bias else None
    with blas_rows(10 ** 9):  # keep every row count on the C kernels
        check_linear(x, w, b)


@each_variant
@SETTINGS
@given(rows=st.integers(1, 130), n_in=sizes, n_out=sizes, transposed=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_linear_is_exact_on_small_integers(rows, n_in, n_out, transposed, seed):
    """With small integer values every partial sum is exact in float32 (|sum| < 2**24), so any summation
    order gives the same bits: this catches a dropped or repeated term that the rounding bound above is
    too loose to see in a 3000-term sum."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, (rows, n_in)).astype(np.float32)
    w = rng.integers(-8, 9, (n_out, n_in)).astype(np.float32).T if transposed else \
        rng.integers(-8, 9, (n_in, n_out)).astype(np.float32)
    b = rng.integers(-8, 9, n_out).astype(np.float32)
    with blas_rows(10 ** 9):
        np.testing.assert_array_equal(served_by_c("linear", ck.linear, x, w, b), layers.linear.reference(x, w, b))


@each_variant
@SETTINGS
@given(rows=st.integers(1, 20), n_in=sizes, n_out=sizes, transposed=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_linear_prefetch_kinds_and_walks_change_no_bit(rows, n_in, n_out, transposed, seed):
    """The calibration picks a prefetch kind (none, non-temporal, keep) and a walk through the tiles (register
    strips, or whole rows with the sums in L1: MG_STREAM_ROWS, four rows side by side or, with MG_STREAM_SEQ, one
    after another) per CPU; the results must not depend on them."""
    rng = np.random.default_rng(seed)
    x = random_floats(rng, (rows, n_in))
    w = random_floats(rng, (n_out, n_in)).T if transposed else random_floats(rng, (n_in, n_out))
    variant = _tuning.variant_names().index(kernel_variant.forced)
    def run(mode):  # after the other walk on other values, whose sums stay in the scratch the kernels reuse:
        other = (mode & 3) | (0 if mode & _tuning.STREAM_ROWS else _tuning.STREAM_ROWS)
        ck.run_linear(variant, other, 2 * x + 1, w)  # a sum this walk misses then shows
        return ck.run_linear(variant, mode, x, w)

    first = run(0)
    seq = _tuning.STREAM_ROWS | _tuning.STREAM_SEQ
    for mode in (1, 2, _tuning.STREAM_ROWS, 1 | _tuning.STREAM_ROWS, 2 | _tuning.STREAM_ROWS, seq, 1 | seq, 2 | seq):
        np.testing.assert_array_equal(run(mode), first)
    np.testing.assert_allclose(first, layers.linear.reference(x, w), rtol=0,
                               atol=2 * gamma(n_in) * (np.abs(x) @ np.abs(w)).max() + 1e-30)


@each_variant
def test_linear_gpt2_shapes():
    """The 124M model's matrices at decode (1 and 8 rows) and at prompts (20 and 40 rows), and the tied head."""
    rng = np.random.default_rng(0)
    for n_in, n_out in [(768, 2304), (768, 768), (768, 3072), (3072, 768)]:
        w, b = random_floats(rng, (n_in, n_out), 0.02), random_floats(rng, n_out)
        for rows in (1, 8, 20, 40):
            with blas_rows(10 ** 9):
                check_linear(random_floats(rng, (rows, n_in)), w, b)
    wte = random_floats(rng, (50257, 768), 0.02)
    for rows in (1, 3):
        check_linear(random_floats(rng, (rows, 768)), wte.T, None)


def test_linear_hands_large_prompts_to_blas():
    rng = np.random.default_rng(1)
    x, w = random_floats(rng, (ck.BLAS_ROWS, 16)), random_floats(rng, (16, 8))
    assert ck.linear(x, w) is NotImplemented
    assert ck.linear(x[:-1], w) is not NotImplemented


@each_variant
def test_linear_reads_memory_mapped_weights(tmp_path):
    """Weights as loaded: read-only views of a memory-mapped safetensors file."""
    rng = np.random.default_rng(2)
    path = tmp_path / "w.safetensors"
    checkpoint.write_safetensors(path, {"w": random_floats(rng, (64, 96)), "wte": random_floats(rng, (50, 64))})
    tensors = checkpoint.read_safetensors(path)
    assert not tensors["w"].flags.writeable
    check_linear(random_floats(rng, (3, 64)), tensors["w"], None)
    check_linear(random_floats(rng, (2, 64)), tensors["wte"].T, None)


# -- layer norm and gelu ----------------------------------------------------------------------------

@each_variant
@SETTINGS
@given(rows=st.integers(1, 40), n=sizes, scale=st.sampled_from([1e-3, 1.0, 30.0]), offset=st.sampled_from([0.0, 5.0]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_layer_norm_matches_numpy(rows, n, scale, offset, seed):
    """Bound: the mean and the variance are sums of n terms (error gamma(n) of the sums of magnitudes),
    so with z = (x - mean) / s, s = sqrt(var + eps):
    |c - ref| <= |w| (4 gamma(n) (mean|x| / s + |z|) + 8u |z|) + 8u (|b| + |ref|)."""
    rng = np.random.default_rng(seed)
    x = random_floats(rng, (rows, n), scale) + np.float32(offset)
    w, b = random_floats(rng, n), random_floats(rng, n)
    eps = 1e-5
    ours = served_by_c("layer_norm", ck.layer_norm, x, w, b, eps)
    ref = layers.layer_norm.reference(x, w, b, eps)
    x64 = x.astype(np.float64)
    s = np.sqrt(x64.var(axis=-1, keepdims=True) + eps)
    z = np.abs(x64 - x64.mean(axis=-1, keepdims=True)) / s
    bound = (np.abs(w) * (4 * gamma(n) * (np.abs(x64).mean(axis=-1, keepdims=True) / s + z) + 8 * U * z)
             + 8 * U * (np.abs(b) + np.abs(ref)))
    assert (np.abs(ours.astype(np.float64) - ref) - bound).max() <= 0


@each_variant
@SETTINGS
@given(shape=st.lists(st.integers(1, 70), min_size=1, max_size=3), scale=st.sampled_from([0.1, 1.0, 4.0, 100.0]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_gelu_new_matches_numpy(shape, scale, seed):
    """Bound: the tanh argument a carries 5u relative rounding, which tanh passes on scaled by sech(a)^2;
    each library's tanh is within 4 ulp: |c - ref| <= u |x| (5 |a| sech(a)^2 + 8) + 4u |ref|."""
    rng = np.random.default_rng(seed)
    x = random_floats(rng, shape, scale)
    ours = served_by_c("gelu_new", ck.gelu_new, x)
    ref = activations.gelu_new.reference(x)
    x64 = x.astype(np.float64)
    a = np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64 ** 3)
    bound = U * np.abs(x64) * (5 * np.abs(a) / np.cosh(np.minimum(np.abs(a), 300)) ** 2 + 8) + 4 * U * np.abs(ref)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert (np.abs(ours.astype(np.float64) - ref) - bound).max() <= 0


def test_gelu_new_is_the_tanh_form():
    """GPT-2's GELU is the tanh approximation; the exact (erf) GELU differs by up to ~1e-3 near |x| = 2."""
    x = np.linspace(-4, 4, 801, dtype=np.float32)
    ours = served_by_c("gelu_new", ck.gelu_new, x)
    assert np.abs(ours - activations.gelu(x)).max() > 1e-4


# -- attention -----------------------------------------------------------------------------------------

def cache_view(rng, B, H, K, D, spare):
    """Keys or values as the model passes them: the first K positions of a [B, H, K + spare, D] buffer."""
    return random_floats(rng, (B, H, K + spare, D))[:, :, :K]


def split_qkv_query(rng, B, H, T, D, scale=1.0):
    """Queries as the model passes them: split_heads of a [B, T, 3E] projection (a strided view)."""
    qkv = random_floats(rng, (B, T, 3 * H * D), scale)
    return layers.split_heads(np.split(qkv, 3, axis=-1)[0], H)


def check_attention(q, k, v, *, scale, causal, key_bias=None, head_mask=None):
    """C attention vs NumPy. With P the reference probabilities and S = scale |q| |k|^T, the scores of the
    two sides differ by at most 2 gamma(D) S, which moves each probability by at most twice the largest such
    difference (relative); the weighted sum over K values adds gamma(K) per side and exp/normalisation a few
    ulp: |c - ref| <= |head_mask| (4 gamma(D) max_j S + 2 gamma(K) + 16u) (P @ |v|)."""
    ours = served_by_c("attention", ck.attention, q, k, v, scale=scale, causal=causal, key_bias=key_bias,
                       head_mask=head_mask)
    ref = layers.attention.reference(q, k, v, scale=scale, causal=causal, key_bias=key_bias, head_mask=head_mask)
    ref_probs = layers.attention_probs(q, k, scale=scale, causal=causal, key_bias=key_bias, head_mask=head_mask)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    nan = np.isnan(ref)
    assert np.array_equal(nan, np.isnan(ours)), "NaN rows differ from the reference"
    D, K = q.shape[-1], k.shape[-2]
    S = float(scale) * (np.abs(q.astype(np.float64)) @ np.abs(k.astype(np.float64)).swapaxes(-1, -2))
    P = np.nan_to_num(ref_probs.astype(np.float64) / (1.0 if head_mask is None else np.where(head_mask == 0, 1, head_mask)))
    weight = (4 * gamma(D) * S.max(axis=-1, keepdims=True) + 2 * gamma(K) + 16 * U) * (P @ np.abs(v.astype(np.float64)))
    bound = weight * (1.0 if head_mask is None else np.abs(head_mask))
    diff = np.where(nan, 0.0, np.abs(ours.astype(np.float64) - ref))
    assert (diff - bound).max() <= 0, f"attention exceeds its bound by {(diff - bound).max():.3g}"


def padding_bias(rng, B, K, fully_padded_rows=True):
    """HF's additive mask from a 0/1 attention_mask [B, K] with random left and right padding."""
    mask = np.ones((B, K), np.float32)
    for b in range(B):
        left, right = rng.integers(0, K // 2 + 1), rng.integers(0, K // 3 + 1)
        mask[b, :left] = 0
        mask[b, K - right:] = 0
    if fully_padded_rows and rng.random() < 0.3:
        mask[rng.integers(B)] = 0
    return ((1.0 - mask) * layers.MASK_VALUE)[:, None, None, :]


@each_variant
@SETTINGS
@given(B=st.integers(1, 3), H=st.integers(1, 4), D=st.sampled_from([1, 3, 16, 17, 64, 80]), T=st.integers(1, 40),
       past=st.integers(0, 70), spare=st.integers(0, 9), masked=st.booleans(), shared_mask=st.booleans(),
       heads=st.booleans(), scale=st.floats(0.01, 2.0), seed=st.integers(0, 2 ** 32 - 1))
def test_causal_attention_matches_numpy(B, H, D, T, past, spare, masked, shared_mask, heads, scale, seed):
    """Self-attention over a cache: T new queries, past + T keys, padding masks (shared by the batch or
    not, with fully padded rows), head masks with zeros."""
    rng = np.random.default_rng(seed)
    K = past + T
    q = split_qkv_query(rng, B, H, T, D)
    k, v = cache_view(rng, B, H, K, D, spare), cache_view(rng, B, H, K, D, spare)
    key_bias = padding_bias(rng, 1 if shared_mask else B, K) if masked else None
    head_mask = (rng.random((1, H, 1, 1)) * (rng.random((1, H, 1, 1)) > 0.3)).astype(np.float32) if heads else None
    check_attention(q, k, v, scale=np.float32(scale), causal=True, key_bias=key_bias, head_mask=head_mask)


@each_variant
@SETTINGS
@given(B=st.integers(1, 3), H=st.integers(1, 3), D=st.sampled_from([1, 8, 64]), T=st.integers(1, 30),
       K=st.integers(1, 90), masked=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_cross_attention_matches_numpy(B, H, D, T, K, masked, seed):
    """No causal mask (cross-attention to an encoder), any T and K."""
    rng = np.random.default_rng(seed)
    q = random_floats(rng, (B, H, T, D))
    k, v = random_floats(rng, (B, H, K, D)), random_floats(rng, (B, H, K, D))
    key_bias = padding_bias(rng, B, K) if masked else None
    check_attention(q, k, v, scale=np.float32(D ** -0.5), causal=False, key_bias=key_bias)


@each_variant
@pytest.mark.parametrize("T,K", [(1, 1024), (300, 300), (7, 1024)])
def test_attention_up_to_n_positions(T, K):
    """Decoding at the last position GPT-2 has, and long prompts (many key blocks, online softmax)."""
    rng = np.random.default_rng(T)
    q = split_qkv_query(rng, 1, 2, T, 64, scale=3.0)  # large scores: the running maximum changes often
    k, v = cache_view(rng, 1, 2, K, 64, 5), cache_view(rng, 1, 2, K, 64, 5)
    check_attention(q, k, v, scale=np.float32(0.125), causal=True, key_bias=padding_bias(rng, 1, K, False))


@each_variant
def test_attention_fully_padded_rows_are_uniform_like_hf():
    """A query whose every visible key is padding gets, as in transformers 4.57, a uniform average over its
    visible keys (all of which score exactly MASK_VALUE); its future keys get -inf and weight 0."""
    rng = np.random.default_rng(3)
    B, H, T, D = 1, 2, 6, 8
    q, k, v = random_floats(rng, (B, H, T, D)), random_floats(rng, (B, H, T, D)), random_floats(rng, (B, H, T, D))
    attention_mask = np.array([[0, 0, 1, 0, 1, 1]], np.float32)  # queries 0 and 1 see only padding
    key_bias = layers.padding_bias(attention_mask)
    ours = served_by_c("attention", ck.attention, q, k, v, scale=np.float32(0.5), causal=True, key_bias=key_bias)
    bound = dict(rtol=4 * U * 4, atol=4 * U * np.abs(v).max())
    np.testing.assert_allclose(ours[0, :, 0], v[0, :, 0], **bound)  # query 0: key 0 alone
    np.testing.assert_allclose(ours[0, :, 1], v[0, :, :2].mean(axis=1), **bound)  # query 1: keys 0 and 1
    check_attention(q, k, v, scale=np.float32(0.5), causal=True, key_bias=key_bias)


@each_variant
def test_attention_unusual_masks_follow_the_reference():
    """Biases other than 0 and MASK_VALUE: +FLT_MAX lifts a key (never a future one), -inf masks it; a row of
    nothing but -inf is NaN in the reference, and so in C."""
    rng = np.random.default_rng(4)
    B, H, T, K, D = 3, 2, 4, 9, 8
    q, k, v = random_floats(rng, (B, H, T, D)), random_floats(rng, (B, H, K, D)), random_floats(rng, (B, H, K, D))
    attention_mask = np.array([[1, 0.5, 1, 1, 2, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 2], [-1] * K], np.float32)
    with np.errstate(over="ignore"):
        key_bias = ((1 - attention_mask) * layers.MASK_VALUE)[:, None, None, :]
    for causal in (True, False):
        check_attention(q, k, v, scale=np.float32(0.3), causal=causal, key_bias=key_bias)


# -- what the C kernels decline, and bad input -----------------------------------------------------------

def test_kernels_decline_what_they_do_not_handle():
    """float64, non-contiguous weights, misaligned memory, probabilities requested, full-shape masks:
    NotImplemented, so the NumPy reference serves (and gives the reference's own result)."""
    rng = np.random.default_rng(5)
    x, w = random_floats(rng, (2, 8)), random_floats(rng, (8, 6))
    assert ck.linear(x.astype(np.float64), w) is NotImplemented
    assert ck.linear(x, w[:, ::2]) is NotImplemented
    raw = np.zeros(8 * 6 * 4 + 1, np.uint8)[1:]  # float32 data at an odd address
    misaligned = raw.view(np.float32).reshape(8, 6)
    misaligned[...] = w
    assert ck.linear(x, misaligned) is NotImplemented
    np.testing.assert_array_equal(layers.linear(x, misaligned), layers.linear.reference(x, w))
    assert ck.gelu_new(x.astype(np.float64)) is NotImplemented
    assert ck.layer_norm(x, w[:5, 0], w[:5, 1]) is NotImplemented  # weight of the wrong length
    q = random_floats(rng, (1, 2, 3, 4))
    full_mask = np.zeros((1, 1, 3, 3), np.float32)
    assert ck.attention(q, q, q, scale=1.0, causal=True, key_bias=full_mask) is NotImplemented
    assert ck.attention(q, q, q, scale=np.float64(1.0), causal=True) is NotImplemented
    # Through the dispatcher, a declined call returns exactly what NumPy returns.
    with backend_named("c"):
        out = layers.linear(x.astype(np.float64), w)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, layers.linear.reference(x.astype(np.float64), w))


def misaligned_copy(a):
    """``a``'s values in float32 memory that starts one byte past a 4-byte boundary."""
    raw = np.zeros(a.size * 4 + 1, np.uint8)[1:]
    out = raw.view(np.float32).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


@each_variant
def test_misaligned_activations_and_parameters_are_served_from_aligned_copies():
    """C reads floats at 4-byte boundaries only (run under UBSan in CI, a misaligned read is an error): every
    array handed to it is aligned first, and the results are those of the aligned arrays."""
    rng = np.random.default_rng(8)
    x, w, b = random_floats(rng, (3, 20)), random_floats(rng, (20, 7)), random_floats(rng, (7,))
    np.testing.assert_array_equal(served_by_c("linear", ck.linear, misaligned_copy(x), w, misaligned_copy(b)),
                                  ck.linear(x, w, b))
    g, beta = random_floats(rng, (20,)), random_floats(rng, (20,))
    np.testing.assert_array_equal(
        served_by_c("layer_norm", ck.layer_norm, misaligned_copy(x), misaligned_copy(g), misaligned_copy(beta)),
        ck.layer_norm(x, g, beta))
    np.testing.assert_array_equal(served_by_c("gelu_new", ck.gelu_new, misaligned_copy(x)), ck.gelu_new(x))
    q = random_floats(rng, (2, 2, 3, 8))
    bias = np.where(rng.random((2, 1, 1, 3)) < 0.3, MASK, 0).astype(np.float32)
    heads = np.array([1.0, 0.5], np.float32).reshape(1, 2, 1, 1)
    out = served_by_c("attention", ck.attention, q, q, q, scale=np.float32(0.3), causal=True,
                         key_bias=misaligned_copy(bias), head_mask=misaligned_copy(heads))
    np.testing.assert_array_equal(out, ck.attention(q, q, q, scale=np.float32(0.3), causal=True, key_bias=bias,
                                                    head_mask=heads))


@each_variant
def test_extreme_values_follow_the_reference():
    """gelu_new far below zero (where e^(-2a) is beyond float32) and NaN scores in attention give what the
    NumPy reference gives: -0 and NaN, not a finite value from a capped exponential or a skipped NaN."""
    x = np.array([-3e38, -1e36, -1e30, -1e10, -20.0, -10.5, -np.inf, np.nan, 0.0, 3.0, 1e30, np.inf], np.float32)
    with np.errstate(all="ignore"):
        expected = activations.gelu_new.reference(x)
    got = served_by_c("gelu_new", ck.gelu_new, x)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-30, equal_nan=True)
    assert ck.gelu_new(np.array(0.5, np.float32)) is NotImplemented  # 0-d: NumPy keeps it 0-d
    rng = np.random.default_rng(9)
    q, k, v = random_floats(rng, (1, 1, 1, 8)), random_floats(rng, (1, 1, 65, 8)), random_floats(rng, (1, 1, 65, 8))
    k[0, 0, 64, 0] = np.nan  # one NaN score, alone in its block of keys
    for causal in (False, True):
        with np.errstate(all="ignore"):
            expected = layers.attention.reference(q, k, v, scale=np.float32(0.3), causal=causal)
        got = served_by_c("attention", ck.attention, q, k, v, scale=np.float32(0.3), causal=causal)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    q = random_floats(rng, (1, 2, 70, 8))
    with np.errstate(all="ignore"):
        expected = layers.attention.reference(q, q, q, scale=np.float32(np.nan), causal=True)
    got = served_by_c("attention", ck.attention, q, q, q, scale=np.float32(np.nan), causal=True)
    assert np.isnan(expected).all() and np.isnan(got).all()


def test_what_numpy_serves_instead():
    """Scales and epsilons given as arrays, 0-d inputs, and heads wider than MAX_HEAD_DIM go to NumPy, whose
    results (shapes, dtypes, broadcasting) are the reference's."""
    rng = np.random.default_rng(10)
    q = random_floats(rng, (1, 2, 3, 4))
    assert ck.attention(q, q, q, scale=np.array([0.3]), causal=True) is NotImplemented
    assert ck.attention(q, q, q, scale=np.array(0.3), causal=True) is NotImplemented  # float64: NumPy's dtype
    x = random_floats(rng, (2, 4))
    assert ck.layer_norm(x, np.ones(4, np.float32), np.zeros(4, np.float32), eps=np.array([1e-5])) is NotImplemented
    with backend_named("c"):
        zero_d = activations.gelu_new(np.array(0.5, np.float32))
        assert zero_d.shape == () and zero_d == activations.gelu_new.reference(np.array(0.5, np.float32))
        wide = random_floats(rng, (1, 1, 2, ck.MAX_HEAD_DIM + 1))
        before = ck.calls["attention"]
        out = layers.attention(wide, wide, wide, scale=np.float32(0.1), causal=True)
        assert ck.calls["attention"] == before
        np.testing.assert_array_equal(out, layers.attention.reference(wide, wide, wide, scale=np.float32(0.1),
                                                                      causal=True))


@each_variant
def test_non_contiguous_activations_are_served():
    rng = np.random.default_rng(6)
    x = random_floats(rng, (3, 20))[:, ::2]
    check_linear(x, random_floats(rng, (10, 7)), None)
    ours = served_by_c("gelu_new", ck.gelu_new, x)
    np.testing.assert_array_equal(ours, ck.gelu_new(np.ascontiguousarray(x)))


def test_wrong_shapes_raise_clear_errors_not_crashes():
    x, w = np.ones((2, 3), np.float32), np.ones((4, 5), np.float32)
    with backend_named("c"):
        with pytest.raises(ValueError):
            layers.linear(x, w)
        q = np.ones((1, 1, 2, 4), np.float32)
        with pytest.raises(ValueError):
            layers.attention(q, np.ones((1, 1, 3, 5), np.float32), q, scale=1.0, causal=True)


def test_empty_inputs():
    with backend_named("c"):
        assert layers.linear(np.ones((0, 3), np.float32), np.ones((3, 5), np.float32)).shape == (0, 5)
        assert activations.gelu_new(np.ones((0,), np.float32)).shape == (0,)


def test_c_errors_become_exceptions():
    lib, null = ck.lib, ck.ffi.NULL
    with pytest.raises(ValueError, match="C kernel linear"):
        ck._check(lib.mg_linear(0, 0, lib.MG_F32, null, 1, null, 1, null, 0, 0, null, null, 1, 1, 1, 1), "linear")
    y = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="size"):
        ck._check(lib.mg_gelu_new(0, ck._floats(y), ck._floats(y), -1), "gelu_new")
    with pytest.raises(ValueError, match="weight format or prefetch"):
        ck._check(lib.mg_linear(0, 7, lib.MG_F32, ck._floats(y), 1, ck._floats(y), 1, null, 0, 0, null, ck._floats(y), 1,
                                1, 1, 1), "linear")
    with pytest.raises(ValueError, match="weight format or prefetch"):  # no such format
        ck._check(lib.mg_linear(0, 0, 9, ck._floats(y), 1, ck._floats(y), 1, null, 0, 0, null, ck._floats(y), 1, 1, 1, 1),
                  "linear")
    with pytest.raises(ValueError, match="missing"):  # int8 without its scales
        ck._check(lib.mg_linear(0, 0, lib.MG_I8, ck._floats(y), 1, ck._floats(y), 1, null, 0, 0, null, ck._floats(y), 1,
                                1, 1, 1), "linear")


def test_a_variant_the_cpu_cannot_run_is_refused_not_executed():
    """The C entry points check the variant against the CPU's features on every call: an index past the
    list, or a variant this CPU lacks (e.g. avx512 on an AVX2 machine), is MG_ERR_VARIANT, never SIGILL."""
    lib, y = ck.lib, np.zeros(4, np.float32)
    names = _tuning.variant_names()
    refused = [len(names), -1] + [i for i, name in enumerate(names) if name not in VARIANTS]
    for i in refused:
        assert lib.mg_variant_supported(i) == 0
        assert lib.mg_gelu_new(i, ck._floats(y), ck._floats(y), 4) == lib.MG_ERR_VARIANT
        assert lib.mg_layer_norm(i, ck._floats(y), 4, ck._floats(y), ck._floats(y), ck._floats(y), 4, 1, 4,
                                 1e-5) == lib.MG_ERR_VARIANT
        assert lib.mg_linear(i, 0, lib.MG_F32, ck._floats(y), 4, ck._floats(y), 1, ck.ffi.NULL, 0, 0, ck.ffi.NULL, ck._floats(y), 1, 1,
                             4, 1) == lib.MG_ERR_VARIANT
    for i, name in enumerate(names):
        assert bool(lib.mg_variant_supported(i)) == (name in VARIANTS)
        assert ck.ffi.string(lib.mg_variant_describe(i)).decode().startswith(name + ":")
    assert VARIANTS and VARIANTS[0] in ("generic", "neon")  # the baseline always runs


# -- threads -------------------------------------------------------------------------------------------

class backend_named:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.saved = backend.name
        backend.set_backend(self.name)

    def __exit__(self, *exc):
        backend.set_backend(self.saved)


class threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.saved = backend.get_num_threads()
        backend.set_num_threads(self.n)

    def __exit__(self, *exc):
        backend.set_num_threads(self.saved)


@each_variant
def test_results_do_not_depend_on_the_thread_count():
    """Threads split the outputs, never a sum, so every thread count gives the same bits."""
    rng = np.random.default_rng(7)
    x1, x40, w, b = random_floats(rng, (1, 300)), random_floats(rng, (40, 300)), random_floats(rng, (300, 520)), None
    q = split_qkv_query(rng, 2, 3, 33, 16)
    k, v = cache_view(rng, 2, 3, 50, 16, 3), cache_view(rng, 2, 3, 50, 16, 3)
    big = random_floats(rng, (70, 3000), 3.0)

    def everything():
        return [ck.linear(x1, w, b), ck.linear(x40, w, b), ck.linear(x1, w.T.copy().T), ck.gelu_new(big),
                ck.layer_norm(big, big[0], big[1]), ck.attention(q, k, v, scale=0.25, causal=True)]

    with threads(1):
        one = everything()
    for n in (2, 3, 5):
        with threads(n):
            for a, b_ in zip(one, everything()):
                np.testing.assert_array_equal(a, b_)


def test_concurrent_python_threads():
    """cffi releases the GIL: callers in several Python threads share the pool (or run alone)."""
    rng = np.random.default_rng(8)
    w = random_floats(rng, (256, 384))
    xs = [random_floats(rng, (1 + i % 3, 256)) for i in range(8)]
    expected = [ck.linear(x, w) for x in xs]
    errors = []

    def run(i):
        for _ in range(30):
            if not np.array_equal(ck.linear(xs[i], w), expected[i]):
                errors.append(i)

    with threads(2):
        workers = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    assert not errors


def _child_linear(queue):
    x, w = np.ones((1, 64), np.float32), np.ones((64, 200), np.float32)
    queue.put(float(ck.linear(x, w).sum()))


def test_kernels_work_in_a_forked_child():
    """fork() copies only the calling thread; the child must not wait for workers it does not have."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    with threads(2):
        ck.linear(np.ones((1, 64), np.float32), np.ones((64, 200), np.float32))  # the pool is running
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child_linear, args=(queue,))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0, "the forked child hung or crashed"
        assert queue.get(timeout=5) == 64.0 * 200
