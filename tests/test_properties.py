"""Properties GPT-2 must have whatever its weights, checked on random models with no reference installed.

- causality: changing the tokens after position t never changes any output at positions <= t;
- decoding token by token (or in chunks) with the cache gives the full forward's outputs;
- right padding (with an attention_mask) never changes the real positions; left padding with
  position_ids counted from the first real token neither;
- the rows of a batch are independent;
- save_pretrained / from_pretrained round-trips exactly;
- a cache is never changed by later calls: an old cache fed again after a newer one grew from it
  gives the right answer, and the arrays of both stay as they were;
- layers.chunks, which splits qkv, is np.split(x, n, axis=-1) exactly, as views.

The weights are spread wider than GPT-2's initialisation (weights std 0.3, layer norms 1 +- 0.2, biases
+- 0.1) so that a leak (a future token, a padded token, another row) moves the outputs by far more
than rounding. Comparisons run the same float32 computation on arrays of other shapes (a batch vs. one
row, a cache vs. one pass), which BLAS and the C kernels sum in other orders, so they allow rounding:
1e-4 * max(1, max|expected|). That is ten times the bound against transformers because these configs include
ill-conditioned ones (scale_attn_weights=False with one head of 32 dims makes scores of ~30, and softmax
then amplifies rounding several-fold); a real leak moves the outputs by more than 1e-2.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigpt2
from minigpt2 import checkpoint
from conftest import assert_close as _assert_close

RTOL = 1e-4  # see the module docstring


def assert_close(ours, expected, name):
    _assert_close(ours, expected, name, rtol=RTOL)

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = [minigpt2.GPT2Model, minigpt2.GPT2LMHeadModel, minigpt2.GPT2DoubleHeadsModel,
           minigpt2.GPT2ForSequenceClassification]


@st.composite
def configs(draw):
    return minigpt2.GPT2Config(
        vocab_size=draw(st.integers(5, 50)),
        n_positions=32,
        n_embd=draw(st.sampled_from([8, 16, 32])),
        n_head=draw(st.sampled_from([1, 2, 4])),
        n_layer=draw(st.integers(1, 3)),
        activation_function=draw(st.sampled_from(["gelu_new", "gelu", "relu", "quick_gelu", "silu"])),
        scale_attn_weights=draw(st.booleans()),
        scale_attn_by_inverse_layer_idx=draw(st.booleans()),
    )


def spread(model, seed):
    """Redraw every parameter of a minigpt2 model with the wide spread described in the module docstring."""
    rng = np.random.default_rng(seed)
    flat = checkpoint.flatten(model.params)
    for name in sorted(flat):
        shape = flat[name].shape
        if ".ln_" in f".{name}":
            value = rng.normal(1.0 if name.endswith("weight") else 0.0, 0.2, shape)
        else:
            value = rng.normal(0.0, 0.1 if name.endswith("bias") else 0.3, shape)
        flat[name] = value.astype(np.float32)
    return type(model)(model.config, checkpoint.unflatten(flat))


def lm(config, seed):
    return spread(minigpt2.GPT2LMHeadModel(config, seed=seed), seed)


def all_outputs(model, **kwargs):
    return model(**kwargs, output_hidden_states=True, output_attentions=True, use_cache=True)


@SETTINGS
@given(config=configs(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_causality(config, seed, data):
    """Tokens after t change nothing at positions <= t: logits, hidden states, attention rows, keys, values."""
    model = lm(config, seed)
    rng = np.random.default_rng(seed)
    T = data.draw(st.integers(2, 12), label="tokens")
    t = data.draw(st.integers(0, T - 2), label="last unchanged position")
    ids = rng.integers(0, config.vocab_size, (2, T))
    changed = ids.copy()
    changed[:, t + 1:] = (ids[:, t + 1:] + rng.integers(1, config.vocab_size, (2, T - t - 1))) % config.vocab_size
    a, b = all_outputs(model, input_ids=ids), all_outputs(model, input_ids=changed)
    assert_close(b.logits[:, :t + 1], a.logits[:, :t + 1], "logits up to t")
    for i, (ha, hb) in enumerate(zip(a.hidden_states, b.hidden_states)):
        assert_close(hb[:, :t + 1], ha[:, :t + 1], f"hidden_states[{i}] up to t")
    for i, (pa, pb) in enumerate(zip(a.attentions, b.attentions)):
        assert_close(pb[:, :, :t + 1], pa[:, :, :t + 1], f"attentions[{i}] rows up to t")
        assert np.all(pa[:, :, :t + 1, t + 1:] == 0), "a position attends to a later one"
    for i, ((ka, va), (kb, vb)) in enumerate(zip(a.past_key_values, b.past_key_values)):
        assert_close(kb[:, :, :t + 1], ka[:, :, :t + 1], f"keys[{i}] up to t")
        assert_close(vb[:, :, :t + 1], va[:, :, :t + 1], f"values[{i}] up to t")
    # The property has teeth: the changed tokens do change the last position.
    assert np.abs(b.logits[:, -1] - a.logits[:, -1]).max() > 1e-3


@SETTINGS
@given(config=configs(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_decoding_with_the_cache_equals_the_full_forward(config, seed, data):
    """Feeding the sequence in chunks (one token at a time, or more) with past_key_values = one pass."""
    model = lm(config, seed)
    rng = np.random.default_rng(seed)
    chunks = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=8), label="chunk sizes")
    T = sum(chunks)
    B = data.draw(st.integers(1, 3), label="batch")
    ids = rng.integers(0, config.vocab_size, (B, T))
    mask = np.ones((B, T), np.int64)
    if data.draw(st.booleans(), label="right padding in row 0"):
        mask[0, T - T // 3:] = 0
    full = all_outputs(model, input_ids=ids, attention_mask=mask)
    past, start = None, 0
    for n in chunks:
        step = all_outputs(model, input_ids=ids[:, start:start + n], attention_mask=mask[:, :start + n],
                           past_key_values=past)
        assert_close(step.logits, full.logits[:, start:start + n], f"logits of tokens {start}..{start + n - 1}")
        for i, (hs, hf) in enumerate(zip(step.hidden_states, full.hidden_states)):
            assert_close(hs, hf[:, start:start + n], f"hidden_states[{i}] of tokens {start}..{start + n - 1}")
        for i, (ps, pf) in enumerate(zip(step.attentions, full.attentions)):
            assert_close(ps, pf[:, :, start:start + n, :start + n], f"attentions[{i}] of {start}..{start + n - 1}")
        past, start = step.past_key_values, start + n
        assert past.get_seq_length() == start
    for i, ((k, v), (kf, vf)) in enumerate(zip(past, full.past_key_values)):
        assert_close(k, kf, f"cached keys[{i}]")
        assert_close(v, vf, f"cached values[{i}]")


@SETTINGS
@given(config=configs(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_padding_never_changes_the_real_tokens(config, seed, data):
    """Each row of a padded batch equals the row alone: right padding (attention_mask), or left padding
    (attention_mask and position_ids counted from the first real token, as generate() does)."""
    model = lm(config, seed)
    rng = np.random.default_rng(seed)
    lengths = data.draw(st.lists(st.integers(1, 8), min_size=2, max_size=4), label="row lengths")
    side = data.draw(st.sampled_from(["right", "left"]), label="padding side")
    T = max(lengths)
    ids = rng.integers(0, config.vocab_size, (len(lengths), T))  # the pad positions hold arbitrary tokens
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    if side == "left":
        mask = mask[:, ::-1].copy()
    position_ids = np.maximum(mask.cumsum(-1) - 1, 0) if side == "left" else None
    batch = model(input_ids=ids, attention_mask=mask, position_ids=position_ids)
    for row, n in enumerate(lengths):
        real = slice(0, n) if side == "right" else slice(T - n, T)
        alone = model(input_ids=ids[row:row + 1, real])
        assert_close(batch.logits[row, real], alone.logits[0], f"row {row} ({side} padding)")
        for (k, v), (ka, va) in zip(batch.past_key_values, alone.past_key_values):
            assert_close(k[row, :, real], ka[0], f"keys of row {row}")
            assert_close(v[row, :, real], va[0], f"values of row {row}")


@SETTINGS
@given(config=configs(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_batch_rows_are_independent(config, seed, data):
    """Row i of a batch is row i computed alone, and permuting the rows permutes the outputs."""
    model = lm(config, seed)
    rng = np.random.default_rng(seed)
    B, T = data.draw(st.integers(2, 4), label="batch"), data.draw(st.integers(1, 8), label="tokens")
    ids = rng.integers(0, config.vocab_size, (B, T))
    labels_free = all_outputs(model, input_ids=ids)
    for row in range(B):
        alone = model(input_ids=ids[row:row + 1])
        assert_close(labels_free.logits[row], alone.logits[0], f"row {row}")
    order = rng.permutation(B)
    permuted = all_outputs(model, input_ids=ids[order])
    assert_close(permuted.logits, labels_free.logits[order], "permuted rows")
    for i, (a, b) in enumerate(zip(permuted.attentions, labels_free.attentions)):
        assert_close(a, b[order], f"attentions[{i}] of permuted rows")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_save_and_load_round_trip_exactly(cls, tmp_path):
    """Parameters come back bit for bit, the config equal, and the outputs identical."""
    config = minigpt2.GPT2Config(vocab_size=30, n_positions=12, n_embd=16, n_layer=2, n_head=4, pad_token_id=29,
                                 num_labels=3, activation_function="gelu", scale_attn_by_inverse_layer_idx=True,
                                 add_cross_attention=cls is minigpt2.GPT2LMHeadModel)
    model = spread(cls(config, seed=0), 0)
    model.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    assert loaded.config.name_or_path == str(tmp_path)  # (where it came from, as transformers sets it: not saved)
    loaded.config.name_or_path = model.config.name_or_path
    assert loaded.config == model.config
    before, after = checkpoint.flatten(model.params), checkpoint.flatten(loaded.params)
    assert sorted(before) == sorted(after)
    for name in before:
        assert after[name].dtype == np.float32 and np.array_equal(after[name], before[name]), name
    ids = np.random.default_rng(1).integers(0, 29, (2, 3, 5) if cls is minigpt2.GPT2DoubleHeadsModel else (2, 5))
    a, b = model(ids, output_hidden_states=True), loaded(ids, output_hidden_states=True)
    assert a.keys() == b.keys()
    for name in a.keys():
        xs, ys = list(leaves(a[name])), list(leaves(b[name]))  # (zip's strict= needs Python 3.10)
        assert len(xs) == len(ys), name
        for i, (x, y) in enumerate(zip(xs, ys)):
            assert np.array_equal(x, y), f"{name} [{i}] differs after the round trip"


def leaves(value):
    """The arrays of an output field: itself, or those inside (nested) tuples."""
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in leaves(item)]
    return [np.asarray(value)]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), prompt=st.integers(1, 6), branch=st.integers(1, 3), grow=st.integers(1, 9))
def test_an_old_cache_stays_valid_after_a_newer_one_grew_from_it(seed, prompt, branch, grow):
    """Branching: from cache A (the prompt), continue with tokens x into B and keep growing B in place;
    then continue A with other tokens y. The result must equal the full forward of prompt + y, and no
    array of A or B ever changes."""
    config = minigpt2.GPT2Config(vocab_size=40, n_positions=24, n_embd=16, n_layer=2, n_head=2)
    model = lm(config, seed)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 40, (2, prompt))
    x, y = rng.integers(0, 40, (2, branch)), rng.integers(0, 40, (2, branch))
    A = model(ids).past_key_values
    A_snapshot = [(k.copy(), v.copy()) for k, v in A]
    B = model(x, past_key_values=A).past_key_values
    B_snapshot = [(k.copy(), v.copy()) for k, v in B]
    latest = B
    for _ in range(grow):  # grows the shared buffers past their capacity, in place
        latest = model(rng.integers(0, 40, (2, 1)), past_key_values=latest).past_key_values
    from_old = model(y, past_key_values=A)
    full = model(np.concatenate([ids, y], axis=1))
    assert_close(from_old.logits, full.logits[:, prompt:], "continuing the old cache")
    for i, ((k, v), (k0, v0)) in enumerate(zip(A, A_snapshot)):
        assert np.array_equal(k, k0) and np.array_equal(v, v0), f"cache A, layer {i}, changed"
    for i, ((k, v), (k0, v0)) in enumerate(zip(B, B_snapshot)):
        assert np.array_equal(k, k0) and np.array_equal(v, v0), f"cache B, layer {i}, changed"
    # B continued again (after the branch from A) is still right too.
    again = model(y, past_key_values=B)
    assert_close(again.logits, model(np.concatenate([ids, x, y], axis=1)).logits[:, prompt + branch:],
                 "continuing B after A was continued")


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_threads_branching_from_one_cache_get_what_one_thread_gets(backend):
    """Several threads continuing the same cache at once: one may extend its buffers in place, the others
    must copy; each gets exactly the logits a lone call gets (an earlier version let two threads write into the
    same free space)."""
    import threading

    if backend == "c" and not minigpt2.backend.c_available():
        pytest.skip("the C extension is not built")
    saved = minigpt2.backend.get_backend()
    minigpt2.backend.set_backend(backend)
    try:
        model = lm(minigpt2.GPT2Config(vocab_size=200, n_positions=64, n_embd=32, n_layer=2, n_head=2), 0)
        tokens = np.arange(8)[:, None, None] + 100  # each thread its own next token
        for trial in range(20):
            past = model(np.arange(20)[None] + trial).past_key_values
            alone = [model(t, past_key_values=past).logits for t in tokens]
            past = model(np.arange(20)[None] + trial).past_key_values  # fresh, with its free space unclaimed
            results = [None] * len(tokens)
            start = threading.Barrier(len(tokens))

            def run(i):
                start.wait()
                results[i] = model(tokens[i], past_key_values=past).logits

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tokens))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for i in range(len(tokens)):
                np.testing.assert_array_equal(results[i], alone[i])
    finally:
        minigpt2.backend.set_backend(saved)


def test_cache_length_and_hf_tuples_of_tensors():
    model = lm(minigpt2.GPT2Config(vocab_size=20, n_positions=8, n_embd=8, n_layer=2, n_head=2), 0)
    past = model(np.array([[1, 2, 3]])).past_key_values
    assert past.get_seq_length() == past.get_seq_length(1) == 3
    torch = pytest.importorskip("torch")
    as_torch = tuple((torch.from_numpy(k.copy()), torch.from_numpy(v.copy())) for k, v in past)
    np.testing.assert_array_equal(model(np.array([[4]]), past_key_values=as_torch).logits,
                                  model(np.array([[4]]), past_key_values=past).logits)


def test_caches_are_read_only_and_pickle_as_plain_tuples():
    import copy
    import pickle

    model = lm(minigpt2.GPT2Config(vocab_size=20, n_positions=8, n_embd=8, n_layer=2, n_head=2), 0)
    past = model(np.array([[1, 2, 3]])).past_key_values
    assert isinstance(past, tuple) and len(past) == 2 and all(len(pair) == 2 for pair in past)
    assert past[0][0].shape == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="read-only"):
        past[0][0][...] = 0
    for clone in (pickle.loads(pickle.dumps(past)), copy.deepcopy(past)):
        assert type(clone) is tuple
        assert all(np.array_equal(a, b) for pa, pb in zip(past, clone) for a, b in zip(pa, pb))
        # A plain tuple continues like the cache it came from.
        assert np.array_equal(model(np.array([[4]]), past_key_values=clone).logits,
                              model(np.array([[4]]), past_key_values=past).logits)


def test_cross_attention_model_without_encoder_states():
    """Cross-attention is skipped without encoder states: no cross_attentions (rather than a tuple of None;
    transformers 4.46.3 raises IndexError here), and the outputs equal those of the same weights with no
    cross-attention layers at all."""
    config = minigpt2.GPT2Config(vocab_size=20, n_positions=8, n_embd=8, n_layer=2, n_head=2, add_cross_attention=True)
    model = lm(config, 0)
    out = model(np.array([[1, 2, 3]]), output_attentions=True)
    assert out.cross_attentions is None and len(out.attentions) == 2
    plain_config = minigpt2.GPT2Config(**{**config.to_dict(), "add_cross_attention": False})
    params = {k: v for k, v in checkpoint.flatten(model.params).items()
              if ".crossattention." not in k and ".ln_cross_attn." not in k}
    plain = minigpt2.GPT2LMHeadModel(plain_config, checkpoint.unflatten(params))
    assert_close(plain(np.array([[1, 2, 3]]), output_attentions=True).logits, out.logits, "logits")


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3), n=st.integers(1, 4), width=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_chunks_are_np_split_as_views(shape, n, width, seed):
    x = np.random.default_rng(seed).standard_normal((*shape, n * width)).astype(np.float32)
    ours, expected = minigpt2.layers.chunks(x, n), np.split(x, n, axis=-1)
    assert len(ours) == n
    for a, b in zip(ours, expected):
        assert a.shape == b.shape and np.array_equal(a, b) and np.shares_memory(a, x)
