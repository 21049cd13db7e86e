"""Invariants that must hold between results that have to agree, checked the way HF's own tests and a careful user
would: a left-padded batch against each prompt alone, the C core (every variant this CPU runs, 1-3 threads) against
the NumPy backend, a cache grown step by step against the whole sequence, and minigpt2 against transformers (float32,
attn_implementation="eager") on the same random checkpoint.

Tolerances come from float32 rounding (u = 2^-24, the unit roundoff):

* Two float32 evaluations of the same function that differ only in the order of their sums (BLAS against our
  kernels, a batch of 9 rows against one, 1 thread against 3) each stay within K * u * sum|terms| of the exact
  value, K the longest sum (the MLP's 4 * n_embd inputs, or the attention's keys), so they differ by at most
  2 * K * u relative to the magnitude: ``f32_tol(ref, K) = 2 * K * u * max(1, max|ref|)`` on logits.
  (For the tiny model: 2 * 256 * 2^-24 = 3.1e-5 relative; the largest difference measured was 6e-6.)
* Narrow weights (bfloat16, float16) change nothing here: both sides widen the same rounded weights, so the bound
  is the float32 one.
* int8 also rounds each linear layer's input to int16 steps of 2^-15 of its block's largest magnitude
  (weights.round_int16); a difference of float32 rounding upstream may move an input by one step, a relative
  2^-15 in that product. With 4 int8 products per block and the head: ``int8_tol = f32_tol + (4 * n_layer + 1)
  * 2^-15 * max(1, max|ref|)`` (2.7e-4 relative for the tiny model; measured at most 1.6e-4).

Greedy and beam ids must be equal; a greedy mismatch is allowed only after a step whose two best logits are closer
than the tolerance (a tie that rounding may break either way), which the seeds here never produce.
"""
from __future__ import annotations


import numpy as np
import pytest

from conftest import randomize_torch_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from minigpt2 import GPT2LMHeadModel, backend  # noqa: E402

U = 2.0 ** -24
E, LAYERS, VOCAB, NPOS = 64, 2, 211, 128
K_TINY = 4 * E  # the longest float32 sum in the tiny model: the MLP's projection back (the context is <= 128 keys)
EOS = VOCAB - 1
FORMATS = {"float32": {}, "bfloat16": dict(torch_dtype="bfloat16"), "float16": dict(torch_dtype="float16"),
           "int8": dict(load_in_8bit=True)}
VARIANTS = backend.kernel_variants()
needs_c = pytest.mark.skipif(not backend.c_available(), reason="the C extension is not built")
BACKENDS = ["numpy", pytest.param("c", marks=needs_c)]


def f32_tol(ref, k=K_TINY):
    return 2 * k * U * max(1.0, float(np.abs(ref).max()))


def tol_for(fmt, ref, k=K_TINY, n_layer=LAYERS):
    extra = (4 * n_layer + 1) * 2.0 ** -15 * max(1.0, float(np.abs(ref).max())) if fmt == "int8" else 0.0
    return f32_tol(ref, k) + extra


def assert_within(ours, ref, tol, what):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    diff = float(np.abs(ours - ref).max())
    assert diff <= tol, f"{what}: max|diff| {diff:.3g} > {tol:.3g} (max|ref| {np.abs(ref).max():.3g})"


def left_pad(prompts, pad=EOS, length=None):
    L = length or max(map(len, prompts))
    ids = np.full((len(prompts), L), pad, np.int64)
    mask = np.zeros((len(prompts), L), np.int64)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):], mask[i, L - len(p):] = p, 1
    return ids, mask


def mask_positions(mask):
    return np.clip(mask.cumsum(-1) - 1, 0, None)


@pytest.fixture(autouse=True)
def _restore_backend(backend_restored):
    """(conftest.py: backend, threads and kernel variant put back after each test)"""
    yield


def _write(directory, seed, **config):
    cfg = transformers.GPT2Config(**config, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(cfg)
    if seed is not None:
        randomize_torch_model(model, seed)
    model.eval().save_pretrained(directory, safe_serialization=True)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("inv5_tiny"))
    hf = _write(d, 0, vocab_size=VOCAB, n_positions=NPOS, n_embd=E, n_layer=LAYERS, n_head=4, bos_token_id=EOS,
                eos_token_id=EOS)
    return d, hf


@pytest.fixture(scope="module")
def tiny_models(tiny):
    return {fmt: GPT2LMHeadModel.from_pretrained(tiny[0], **kw) for fmt, kw in FORMATS.items()}


def hf_logits(hf, ids, **kw):
    with torch.no_grad():
        return hf(torch.tensor(ids), **{k: torch.tensor(v) for k, v in kw.items()}).logits.numpy()


def greedy_equal(batch_ids, alone_ids, alone_scores, tol):
    """Equal ids, or a first mismatch right after a step whose best two logits were within tol (a tie)."""
    diff = np.nonzero(batch_ids != alone_ids)[0]
    if diff.size == 0:
        return True
    top2 = np.sort(alone_scores[diff[0]].astype(np.float64))[-2:]
    return top2[1] - top2[0] <= tol


PROMPT_LENGTHS = [5, 1, 12, 3, 13, 9, 7, 2, 33]


# -- a left-padded batch against each prompt alone (HF's test_batching_equivalence / batch generation) ---------

@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("which", BACKENDS)
def test_left_padded_batch_forward_and_decode_steps_match_alone(tiny, tiny_models, which, fmt):
    backend.set_backend(which)
    m, hf = tiny_models[fmt], tiny[1]
    rng = np.random.default_rng(1)
    for B in (2, 9):
        prompts = [rng.integers(0, EOS, n) for n in PROMPT_LENGTHS[:B]]
        ids, mask = left_pad(prompts)
        L = ids.shape[1]
        out = m(ids, attention_mask=mask, position_ids=mask_positions(mask), use_cache=True)
        if fmt == "float32":  # every position, padded ones too, as transformers computes them
            ref = hf_logits(hf, ids, attention_mask=mask, position_ids=mask_positions(mask))
            assert_within(out.logits, ref, f32_tol(ref), f"{which} B={B} padded forward vs transformers")
        new = rng.integers(0, EOS, (B, 4))
        past, steps = out.past_key_values, []
        for s in range(new.shape[1]):
            mask = np.concatenate([mask, np.ones((B, 1), np.int64)], 1)
            o = m(new[:, s:s + 1], past_key_values=past, attention_mask=mask,
                  position_ids=mask.sum(-1, keepdims=True) - 1)
            past = o.past_key_values
            steps.append(o.logits[:, 0])
        steps = np.stack(steps, 1)
        for i, p in enumerate(prompts):
            alone = m(np.concatenate([p, new[i]])[None]).logits[0]
            assert_within(out.logits[i, L - len(p):], alone[:len(p)], tol_for(fmt, alone),
                          f"{which} {fmt} B={B} row {i} (prompt {len(p)}) padded forward vs alone")
            assert_within(steps[i], alone[len(p):], tol_for(fmt, alone),
                          f"{which} {fmt} B={B} row {i} decoding steps with padding vs alone")


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("which", BACKENDS)
def test_left_padded_generate_matches_alone(tiny, tiny_models, which, fmt):
    backend.set_backend(which)
    m, hf = tiny_models[fmt], tiny[1]
    rng = np.random.default_rng(2)
    prompts = [rng.integers(0, EOS, n) for n in PROMPT_LENGTHS[:5]]
    ids, mask = left_pad(prompts)
    new = 8
    greedy = m.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False)
    beams = m.generate(ids, attention_mask=mask, max_new_tokens=6, num_beams=3, do_sample=False)
    for i, p in enumerate(prompts):
        alone = m.generate(p[None], max_new_tokens=new, do_sample=False, output_scores=True,
                           return_dict_in_generate=True)
        scores = np.stack([s[0] for s in alone.scores])
        assert greedy_equal(greedy[i, -new:], alone.sequences[0, -new:], scores, tol_for(fmt, scores)), (
            f"{which} {fmt}: greedy row {i} {greedy[i, -new:]} vs alone {alone.sequences[0, -new:]}")
        alone_beam = m.generate(p[None], max_new_tokens=6, num_beams=3, do_sample=False)
        assert np.array_equal(beams[i, -6:], alone_beam[0, -6:]), f"{which} {fmt}: beam row {i}"
    if fmt == "float32":
        with torch.no_grad():
            for got, kw in ((greedy, dict(max_new_tokens=new)), (beams, dict(max_new_tokens=6, num_beams=3))):
                want = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False, **kw)
                assert np.array_equal(got, want.numpy()), f"{which}: padded generate {kw} vs transformers"


# -- every kernel variant and thread count against the NumPy backend ------------------------------------------

@needs_c
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_variants_and_threads_agree_with_numpy(tiny_models, fmt):
    """Prompt lengths around the C core's row crossovers (1, 2-12, 13-31, BLAS from 32) and batches 1-9, then one
    decoding step (the fused block): bitwise the same for 1, 2, 3 threads within a variant, and within float32
    rounding of NumPy."""
    m = tiny_models[fmt]
    rng = np.random.default_rng(3)
    for T in (1, 2, 12, 13, 31, 32, 33, 100):
        for B in range(1, 10) if T <= 13 else (1, 2, 9):
            ids, step = rng.integers(0, EOS, (B, T)), rng.integers(0, EOS, (B, 1))
            backend.set_backend("numpy")
            ref = m(ids)
            ref_step = m(step, past_key_values=ref.past_key_values).logits
            backend.set_backend("c")
            for variant in VARIANTS:
                backend.set_kernel(variant)
                fused = backend._ckernels.calls["transformer_blocks"]
                first = None
                for threads in (1, 2, 3):
                    backend.set_num_threads(threads)
                    out = m(ids)
                    got = (out.logits, m(step, past_key_values=out.past_key_values).logits)
                    if first is None:
                        first = got
                        what = f"{fmt} {variant} T={T} B={B}"
                        assert_within(got[0], ref.logits, tol_for(fmt, ref.logits, K_TINY), what + " prompt")
                        assert_within(got[1], ref_step, tol_for(fmt, ref_step, K_TINY), what + " decoding step")
                    else:
                        assert np.array_equal(got[0], first[0]) and np.array_equal(got[1], first[1]), (
                            f"{fmt} {variant} T={T} B={B}: {threads} threads differ from 1 thread by "
                            f"{np.abs(got[0] - first[0]).max()}, {np.abs(got[1] - first[1]).max()}")
                # each decoding step (and a one-token prompt) ran as the C core's fused blocks, in this variant
                assert backend._ckernels.calls["transformer_blocks"] >= fused + 3
                assert backend._ckernels.last_variant["attention"] == variant


@needs_c
def test_masks_with_holes_and_fully_padded_rows_every_variant(tiny, tiny_models):
    m, hf = tiny_models["float32"], tiny[1]
    rng = np.random.default_rng(4)
    for T in (1, 5, 13, 40):
        B = 3
        ids = rng.integers(0, EOS, (B, T))
        mask = np.ones((B, T), np.int64)
        mask[1] = 0  # a row of padding only: transformers spreads its attention evenly
        mask[2, ::2] = 0  # holes
        step = rng.integers(0, EOS, (B, 1))
        mask2 = np.concatenate([mask, np.zeros((B, 1), np.int64)], 1)  # the new token masked too
        with torch.no_grad():
            o = hf(torch.tensor(ids), attention_mask=torch.tensor(mask), use_cache=True)
            want_step = hf(torch.tensor(step), attention_mask=torch.tensor(mask2), past_key_values=o.past_key_values,
                           position_ids=torch.full((B, 1), T)).logits.numpy()
        want = o.logits.numpy()
        for which in ["numpy"] + [f"c:{v}" for v in VARIANTS]:
            name, _, variant = which.partition(":")
            backend.set_backend(name)
            if variant:
                backend.set_kernel(variant)
            out = m(ids, attention_mask=mask)
            got_step = m(step, past_key_values=out.past_key_values, attention_mask=mask2,
                         position_ids=np.full((B, 1), T)).logits
            assert_within(out.logits, want, f32_tol(want), f"{which} T={T} masked prompt vs transformers")
            assert_within(got_step, want_step, f32_tol(want_step), f"{which} T={T} masked step vs transformers")


# -- positions, caches, token types, embeddings, against transformers ---------------------------------------

@pytest.mark.parametrize("which", BACKENDS)
def test_up_to_n_positions_and_caches_vs_transformers(tiny, tiny_models, which):
    backend.set_backend(which)
    m, hf = tiny_models["float32"], tiny[1]
    rng = np.random.default_rng(5)
    ids = rng.integers(0, EOS, (3, NPOS))
    want = hf_logits(hf, ids)
    tol = f32_tol(want, max(K_TINY, NPOS))
    assert_within(m(ids).logits, want, tol, f"{which}: a sequence of exactly n_positions")
    past, steps = None, []
    for t in range(NPOS):  # the cache grown one position at a time
        o = m(ids[:, t:t + 1], past_key_values=past)
        past = o.past_key_values
        steps.append(o.logits[:, 0])
    assert_within(np.stack(steps, 1), want, tol, f"{which}: cache grown step by step vs the whole sequence")
    past, chunks = None, []
    for a, b in ((0, 1), (1, 13), (13, 45), (45, 46), (46, NPOS)):  # chunks across the row crossovers
        o = m(ids[:, a:b], past_key_values=past)
        past = o.past_key_values
        chunks.append(o.logits)
    assert_within(np.concatenate(chunks, 1), want, tol, f"{which}: cache grown in chunks")
    with pytest.raises(ValueError, match="n_positions"):
        m(ids[:, :1], past_key_values=past)
    # generate up to n_positions + 1 tokens (the last is never run), greedy and beams, as transformers
    prompt = ids[:1, :NPOS - 4]
    for kw in (dict(), dict(num_beams=3)):
        got = m.generate(prompt, max_new_tokens=5, min_new_tokens=5, do_sample=False, **kw)
        with torch.no_grad():
            ref = hf.generate(torch.tensor(prompt), attention_mask=torch.ones_like(torch.tensor(prompt)),
                              max_new_tokens=5, min_new_tokens=5, do_sample=False, **kw).numpy()
        assert got.shape == (1, NPOS + 1) and np.array_equal(got, ref), f"{which}: generate to n_positions {kw}"


@pytest.mark.parametrize("which", BACKENDS)
def test_position_ids_token_types_and_embeddings_vs_transformers(tiny, tiny_models, which):
    backend.set_backend(which)
    m, hf = tiny_models["float32"], tiny[1]
    rng = np.random.default_rng(6)
    for T in (1, 13, 33):
        ids = rng.integers(0, EOS, (4, T))
        pos, types = rng.integers(0, NPOS, (4, T)), rng.integers(0, EOS, (4, T))
        want = hf_logits(hf, ids, position_ids=pos, token_type_ids=types)
        assert_within(m(ids, position_ids=pos, token_type_ids=types).logits, want, f32_tol(want),
                      f"{which} T={T}: position_ids + token_type_ids")
        emb = rng.standard_normal((4, T, E)).astype(np.float32)
        with torch.no_grad():
            want = hf(inputs_embeds=torch.tensor(emb)).logits.numpy()
        assert_within(m(inputs_embeds=np.asfortranarray(emb)).logits, want, f32_tol(want),
                      f"{which} T={T}: inputs_embeds (Fortran-ordered)")
    # generate with token types and with embeddings, left-padded, as transformers
    prompts = [rng.integers(0, EOS, n) for n in (5, 1, 12)]
    ids, mask = left_pad(prompts)
    types = rng.integers(0, EOS, ids.shape)
    emb = m.params["wte"]["weight"][ids]
    with torch.no_grad():
        for kw in (dict(input_ids=ids, token_type_ids=types), dict(inputs_embeds=emb)):
            got = m.generate(attention_mask=mask, max_new_tokens=6, num_beams=2, do_sample=False, **kw)
            ref = hf.generate(attention_mask=torch.tensor(mask), max_new_tokens=6, num_beams=2, do_sample=False,
                              **{k: torch.tensor(v) for k, v in kw.items()}).numpy()
            assert np.array_equal(got, ref), f"{which}: generate with {sorted(kw)}"


# -- GPT-2 124M's shape (random weights) -----------------------------------------------------------------------

@needs_c
def test_gpt2_124m_shape_padded_batch_and_threads(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("inv5_124m"))
    torch.manual_seed(0)
    hf = _write(d, None)  # GPT2Config() defaults, transformers' own initialisation
    m = GPT2LMHeadModel.from_pretrained(d)
    K = 4 * 768  # the longest sum: the MLP's 3072 inputs
    rng = np.random.default_rng(7)
    prompts = [rng.integers(0, 50257, n) for n in (7, 1, 33, 13)]
    ids, mask = left_pad(prompts, pad=0)
    pos = mask_positions(mask)
    want = hf_logits(hf, ids, attention_mask=mask, position_ids=pos)
    backend.set_backend("c")
    out = m(ids, attention_mask=mask, position_ids=pos)
    assert_within(out.logits, want, f32_tol(want, K), "124M shape: padded batch vs transformers")
    for i, p in enumerate(prompts[:2]):
        alone = m(p[None]).logits[0]
        assert_within(out.logits[i, -len(p):], alone, f32_tol(alone, K), f"124M shape: row {i} vs alone")
    # one decoding step of 9 sequences (the fused blocks, the tied head's 50257 columns split among threads)
    ids, step = rng.integers(0, 50257, (9, 2)), rng.integers(0, 50257, (9, 1))
    backend.set_kernel(VARIANTS[-1])
    first = None
    for threads in (1, 2, 3):
        backend.set_num_threads(threads)
        got = m(step, past_key_values=m(ids).past_key_values).logits
        if first is None:
            first = got
            with torch.no_grad():
                ref = hf(torch.tensor(np.concatenate([ids, step], 1))).logits.numpy()[:, -1:]
            assert_within(got, ref, f32_tol(ref, K), "124M shape: decoding step of 9 vs transformers")
        else:
            assert np.array_equal(got, first), f"124M shape: {threads} threads differ from 1"
