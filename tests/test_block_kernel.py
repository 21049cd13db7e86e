"""The C core's decoding block (csrc/block.c) against the same kernels called one by one from Python.

minigpt2._ckernels.transformer_block runs a decoding step's transformer block as one C call that makes the
kernel calls modeling.transformer_block makes, in its order, with the variants chosen for them. So its result
must have the very bits of the path it replaces (the block in Python, each kernel a C call): the logits and
every cached key and value, for each weight format, each variant this CPU runs (forced in turn), a batch with
padding, and any thread count. How close those bits are to the reference is the kernels' tests' business
(test_kernels.py, test_kernels_formats.py) and the models': test_parity_live.py and test_generation_hf.py decode
with a cache against transformers on the default backend, through this fused call (about 600 of its calls).
The tests also check that the fused call really served the decoding steps, and that it declines what it does
not take, so that those inputs run the Python path.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import minigpt2
from minigpt2 import backend, tracing

ck = pytest.importorskip("minigpt2._ckernels", reason="the C extension is not built (see test_backend.py)")
from test_kernels import VARIANTS, kernel_variant  # noqa: E402

FORMATS = ("float32", "float16", "bfloat16", "int8")
CONFIG = dict(vocab_size=97, n_positions=32, n_embd=64, n_layer=2, n_head=4, n_inner=80,
              scale_attn_by_inverse_layer_idx=True)


@pytest.fixture(autouse=True)
def c_backend():
    saved = backend.name
    backend.set_backend("c")
    yield
    backend.set_backend(saved)


@contextlib.contextmanager
def fused(on):
    """With on=False, the model's blocks run in Python (each kernel still a C call); with on="block", each block is
    one C call but the stack of blocks is not (modeling.transformer_blocks in Python)."""
    saved = {name: backend._active.pop(name) for name in ("transformer_block", "transformer_blocks")}
    if on:
        backend._active["transformer_block"] = saved["transformer_block"]
    if on is True:
        backend._active["transformer_blocks"] = saved["transformer_blocks"]
    try:
        yield
    finally:
        backend._active.update(saved)


def perturbed(tree, rng):
    """Every array of a params tree plus noise: no bias stays 0 and no layer norm's weight 1 (with those, two
    layer norms or two biases mixed up would give the same bits)."""
    if isinstance(tree, dict):
        return {key: perturbed(value, rng) for key, value in tree.items()}
    if isinstance(tree, list):
        return [perturbed(value, rng) for value in tree]
    return (tree + 0.05 * rng.standard_normal(tree.shape)).astype(np.float32)


def model_in(fmt, tmp_path, **config):
    config = minigpt2.GPT2Config(**{**CONFIG, **config})
    model = minigpt2.GPT2LMHeadModel(config, seed=0)
    model = minigpt2.GPT2LMHeadModel(config, perturbed(model.params, np.random.default_rng(0)))
    if fmt == "float32":
        return model
    model.save_pretrained(tmp_path)
    options = {"load_in_8bit": True} if fmt == "int8" else {"torch_dtype": fmt}
    return minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path, **options)


def decode(model, batch, steps=4, **kwargs):
    """A prompt (left-padded in row 0 when batch > 1), then `steps` greedy tokens: (every logit, the cache)."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, CONFIG["vocab_size"], (batch, 5))
    mask = np.ones((batch, 5), np.int64)
    mask[0, :2] = 0 if batch > 1 else 1
    out = model(ids, attention_mask=mask, use_cache=True, **kwargs)
    logits = [out.logits]
    for _ in range(steps):
        mask = np.concatenate([mask, np.ones((batch, 1), np.int64)], axis=1)
        out = model(out.logits[:, -1:].argmax(-1), past_key_values=out.past_key_values, attention_mask=mask,
                    use_cache=True, **kwargs)
        logits.append(out.logits)
    return logits, out.past_key_values


def assert_same_bits(a, b):
    (logits_a, cache_a), (logits_b, cache_b) = a, b
    for step, (x, y) in enumerate(zip(logits_a, logits_b)):
        assert np.array_equal(x, y), f"logits differ at step {step}: max |diff| {np.abs(x - y).max():.3g}"
    for layer, ((ka, va), (kb, vb)) in enumerate(zip(cache_a, cache_b)):
        assert np.array_equal(ka, kb) and np.array_equal(va, vb), f"the cache of layer {layer} differs"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("batch", [1, 3])
def test_the_fused_block_gives_the_bits_of_its_kernels_one_by_one(variant, fmt, batch, tmp_path):
    model = model_in(fmt, tmp_path)
    with kernel_variant(variant):
        before, stacks = ck.calls["transformer_block"], ck.calls["transformer_blocks"]
        with fused(True):
            ours = decode(model, batch)
        assert ck.calls["transformer_block"] - before == 4 * CONFIG["n_layer"], "the fused block did not serve"
        assert ck.calls["transformer_blocks"] - stacks == 4, "the fused stack of blocks did not serve"
        with fused("block"):
            blockwise = decode(model, batch)
        assert ck.calls["transformer_block"] - before == 8 * CONFIG["n_layer"]
        with fused(False):
            theirs = decode(model, batch)
        assert ck.calls["transformer_block"] - before == 8 * CONFIG["n_layer"]
        assert ck.calls["transformer_blocks"] - stacks == 4
    assert_same_bits(ours, theirs)
    assert_same_bits(blockwise, theirs)


def test_the_stack_declines_hidden_states_and_each_block_still_serves():
    """output_hidden_states needs every block's input: the stack of blocks runs in Python, each block one C call,
    with the same bits as the fused stack, the hidden states included."""
    model = model_in("float32", None)
    with kernel_variant(VARIANTS[-1]):
        ours = decode(model, 3)
        before, stacks = ck.calls["transformer_block"], ck.calls["transformer_blocks"]
        rng = np.random.default_rng(4)
        ids = rng.integers(0, CONFIG["vocab_size"], (3, 5))
        out = model(ids, use_cache=True)
        step = model(ids[:, :1], past_key_values=out.past_key_values, output_hidden_states=True)
        assert ck.calls["transformer_blocks"] == stacks, "the stack served a step that asked for hidden states"
        assert ck.calls["transformer_block"] - before == CONFIG["n_layer"], "the fused block did not serve"
        theirs = decode(model, 3, output_hidden_states=True)
        with fused(False):
            plain = model(ids[:, :1], past_key_values=model(ids, use_cache=True).past_key_values,
                          output_hidden_states=True)
    assert_same_bits(ours, theirs)
    assert len(step.hidden_states) == CONFIG["n_layer"] + 1
    for a, b in zip(step.hidden_states, plain.hidden_states):
        np.testing.assert_array_equal(a, b)


def test_the_fused_block_does_not_depend_on_the_thread_count():
    model = model_in("float32", None)
    saved = backend.get_num_threads()
    try:
        results = []
        for threads in (1, 3):
            backend.set_num_threads(threads)
            before = ck.calls["transformer_block"]
            with kernel_variant(VARIANTS[-1]):
                results.append(decode(model, 3))
            assert ck.calls["transformer_block"] - before == 4 * CONFIG["n_layer"], "the fused block did not serve"
    finally:
        backend.set_num_threads(saved)
    assert_same_bits(*results)


@pytest.mark.parametrize("case", ["output_attentions", "head_mask", "tracing", "gelu", "numpy products",
                                  "cross-attention"])
def test_what_the_fused_block_declines_runs_in_python_with_the_same_result(case, tmp_path):
    config, kwargs, context = {}, {}, contextlib.nullcontext()
    variant = VARIANTS[-1]
    if case == "output_attentions":
        kwargs["output_attentions"] = True
    elif case == "head_mask":
        kwargs["head_mask"] = np.ones(CONFIG["n_head"], np.float32)
    elif case == "tracing":
        context = tracing.trace()
    elif case == "gelu":
        config["activation_function"] = "gelu"
    elif case == "numpy products":
        variant = "numpy"
    else:
        config["add_cross_attention"] = True
        kwargs["encoder_hidden_states"] = np.random.default_rng(2).standard_normal((3, 4, CONFIG["n_embd"]),
                                                                                   dtype=np.float32)
    model = model_in("float32", tmp_path, **config)
    with kernel_variant(variant), context:
        before = ck.calls["transformer_block"]
        with fused(True):
            ours = decode(model, 3, **kwargs)
        assert ck.calls["transformer_block"] == before, f"the fused block served a step with {case}"
        with fused(False):
            theirs = decode(model, 3, **kwargs)
    assert_same_bits(ours, theirs)


def test_a_block_called_without_its_scale_computes_it():
    """modeling.transformer_block's ``scale`` defaults to the layer's own (layers.attention_scale); the fused call
    then declines, and the Python path must give what the fused call gives with the scale passed."""
    from minigpt2 import modeling
    from minigpt2.cache import KVCache

    model = model_in("float32", None)
    cfg = model.config
    x = np.random.default_rng(3).standard_normal((2, 1, cfg.n_embd), dtype=np.float32)
    scale = modeling.attention_scale(cfg.head_dim, 1, cfg.scale_attn_weights, cfg.scale_attn_by_inverse_layer_idx)
    assert scale != modeling.attention_scale(cfg.head_dim, 0)  # (layer 1's scale is its own: a wrong default shows)
    results = []
    for given in ({}, {"scale": scale}):
        _, caches = KVCache.prepare(None, 0, n_layer=cfg.n_layer, batch=2, n_head=cfg.n_head, head_dim=cfg.head_dim,
                                    new_tokens=1, max_positions=cfg.n_positions)
        before = ck.calls["transformer_block"]
        with kernel_variant(VARIANTS[-1]):
            out, _, _ = modeling.transformer_block(x, model.params["h"][1], layer_idx=1, config=cfg, cache=caches[1],
                                                   mask=None, head_mask=None, output_attentions=False, **given)
        assert ck.calls["transformer_block"] - before == (1 if given else 0)
        results.append(out)
    np.testing.assert_array_equal(*results)


def test_the_blocks_arguments_kept_between_steps_follow_the_params_and_keep_no_model_alive():
    """The fused call keeps each block's weight pointers between steps (_ckernels._block_weights). A weight
    replaced in the params, another variant forced, or another model must each be seen at once; and the kept
    arguments must not keep a dropped model's weights alive."""
    import gc
    import weakref

    model = model_in("float32", None)
    with kernel_variant(VARIANTS[-1]):  # (every kernel in C, whatever the calibration chose: the block is served)
        decode(model, 1)  # (the arguments of its blocks are kept now)
        block = model.params["h"][1]["mlp"]["c_fc"]
        block["weight"] = (block["weight"] * 2).astype(np.float32)  # a new array where the old one was
        before = ck.calls["transformer_block"]
        with fused(True):
            ours = decode(model, 1)
        assert ck.calls["transformer_block"] - before == 4 * CONFIG["n_layer"], "the fused block did not serve"
        with fused(False):
            theirs = decode(model, 1)
    assert_same_bits(ours, theirs)
    for variant in VARIANTS:  # another plan: every kernel of the block follows it
        with kernel_variant(variant), fused(True):
            decode(model, 1)
            assert {ck.last_variant[k] for k in ("linear", "attention", "layer_norm", "gelu_new")} == {variant}
    gone = weakref.ref(block["weight"])
    del model, block
    gc.collect()
    assert gone() is None, "the fused block's kept arguments keep a dropped model's weights alive"


def test_the_kept_arguments_follow_the_cache_each_step_writes():
    """The kept arguments hold each layer's cache buffers too (_ckernels._block_arguments). Two prompts decoded in
    turn, and a branch of the first (its cache continued twice, so the second continuation copies it into buffers
    of its own), must each read and write their own cache: the bits of the blocks run in Python. And the kept
    arguments must not keep a dropped cache's buffers alive."""
    import gc
    import weakref

    model = model_in("float32", None)

    def in_turn():
        first = model(np.array([[1, 2, 3]]), use_cache=True)
        second = model(np.array([[4, 5, 6, 7]]), use_cache=True)
        pasts = {"a": first.past_key_values, "b": second.past_key_values, "branch of a": first.past_key_values}
        logits = []
        for step in range(3):
            for i, name in enumerate(pasts):
                out = model(np.array([[10 + 3 * step + i]]), past_key_values=pasts[name], use_cache=True)
                pasts[name] = out.past_key_values
                logits.append(out.logits)
        return logits, pasts

    with kernel_variant(VARIANTS[-1]):  # (every kernel in C, whatever the calibration chose: the block is served)
        stacks = ck.calls["transformer_blocks"]
        with fused(True):
            ours, our_pasts = in_turn()
        assert ck.calls["transformer_blocks"] - stacks == 9, "the fused stack of blocks did not serve every step"
        with fused(False):
            theirs, their_pasts = in_turn()
    for name in our_pasts:
        assert_same_bits((ours, our_pasts[name]), (theirs, their_pasts[name]))
    gone = weakref.ref(our_pasts["branch of a"]._buffers.keys[0])  # (the last step's: the kept arguments' own)
    del our_pasts
    gc.collect()
    assert gone() is None, "the fused block's kept arguments keep a dropped cache's buffers alive"
