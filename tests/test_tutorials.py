"""Fast checks of the workshop material. CI runs the tutorials themselves via .ci/tutorials.sh."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import minigpt2
from minigpt2 import GPT2Config, GPT2LMHeadModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = sorted(glob.glob(os.path.join(ROOT, "tutorials", "[0-9][0-9]_*.py")))


def test_tutorials_exist():
    assert TUTORIALS, "no tutorials/NN_*.py found"


def test_notebooks_match_their_sources():
    pytest.importorskip("jupytext")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", "notebooks.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", TUTORIALS, ids=os.path.basename)
def test_each_tutorial_chooses_its_model_in_one_variable(path):
    source = open(path, encoding="utf-8").read()
    assert 'MODEL = "gpt2"' in source and "load_model(MODEL" in source


def test_a_trace_belongs_to_its_thread():
    """Another thread's passes are not recorded into a trace, nor slowed by it; overlapping traces in two
    threads each get their own tensors and leave no trace installed afterwards."""
    import threading

    config = GPT2Config(n_layer=2, n_head=2, n_embd=8, vocab_size=11, n_positions=16)
    model = GPT2LMHeadModel(config, seed=0)
    inside, outside, results = threading.Event(), threading.Event(), {}

    def tracer(name, ids, wait_for=None, then=None):
        with minigpt2.trace() as t:
            model(np.array([ids]))
            if then is not None:
                then.set()
            if wait_for is not None:
                wait_for.wait(timeout=30)
        results[name] = t

    def untraced():
        inside.wait(timeout=30)
        results["untraced active"] = minigpt2.tracing.active()
        model(np.array([[1, 2, 3, 4, 5, 6, 7]]))
        outside.set()

    threads = [threading.Thread(target=tracer, args=("A", [1, 2, 3], outside, inside)),
               threading.Thread(target=untraced)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["untraced active"] is False
    assert results["A"]["embeddings"].shape == (1, 3, 8)  # not the other thread's 7 tokens
    assert not minigpt2.tracing.active()


def test_trace_names_and_helpers():
    config = GPT2Config(n_layer=2, n_head=2, n_embd=8, vocab_size=11, n_positions=16)
    model = GPT2LMHeadModel(config, seed=0)
    ids = np.array([[1, 2, 3, 4]])
    with minigpt2.trace() as t:
        out = model(ids, output_hidden_states=True)
    per_block = ["ln_1", "attn_probs", "attn", "resid_mid", "ln_2", "mlp", "out"]
    assert list(t) == ["embeddings", *[f"h.{i}.{n}" for i in range(2) for n in per_block], "ln_f"]
    assert t.n_layer == 2 and set(t.layer(1)) == set(per_block)
    assert t.stack("out").shape == (2, 1, 4, 8)
    np.testing.assert_array_equal(t["h.0.out"], out.hidden_states[1])
    np.testing.assert_array_equal(t["h.0.resid_mid"], t["embeddings"] + t["h.0.attn"])
    np.testing.assert_array_equal(t["h.0.out"], t["h.0.resid_mid"] + t["h.0.mlp"])
    assert "h.1.attn_probs" in repr(t)
    # Outside a trace nothing is recorded, and a trace's tensors are copies; tracing never changes the numbers.
    assert not minigpt2.tracing.active()
    t["ln_f"][...] = 0
    np.testing.assert_array_equal(model(ids).logits, out.logits)


@pytest.mark.parametrize("backend_name", ["numpy", "c"])
def test_asking_for_attentions_or_tracing_never_changes_the_numbers(backend_name):
    """The attention output comes from the active backend whether or not the probabilities are wanted (by
    output_attentions or a trace): bit-for-bit equal, the same kernels run on the same inputs. The probabilities
    come from one NumPy function on both backends; they differ between backends only through the rounding of
    the q and k projections (C and BLAS sum in different orders): a few float32 ulps of a probability <= 1,
    bounded here by 1e-6 (8 ulps of 1.0)."""
    if backend_name == "c" and not minigpt2.backend.c_available():
        pytest.skip("the C core is not built")
    config = GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=50, n_positions=64)
    model = GPT2LMHeadModel(config, seed=1)
    ids = np.random.default_rng(0).integers(0, 50, (2, 20))
    previous = minigpt2.backend.name
    minigpt2.backend.set_backend(backend_name)
    try:
        plain = model(ids).logits
        with_probs = model(ids, output_attentions=True)
        with minigpt2.trace() as t:
            traced = model(ids).logits
    finally:
        minigpt2.backend.set_backend(previous)
    np.testing.assert_array_equal(with_probs.logits, plain)
    np.testing.assert_array_equal(traced, plain)
    np.testing.assert_array_equal(t["h.1.attn_probs"], with_probs.attentions[1])
    minigpt2.backend.set_backend("numpy")
    try:
        numpy_probs = model(ids, output_attentions=True).attentions
    finally:
        minigpt2.backend.set_backend(previous)
    for ours, theirs in zip(with_probs.attentions, numpy_probs):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_api_reference_matches_the_docstrings():
    """docs/api.md is generated from the code; regenerate it with python docs/make_api.py."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "make_api.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
