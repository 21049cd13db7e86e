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
    # Outside a trace nothing is recorded, and a trace's tensors are copies. (Traced and untraced runs may
    # differ by rounding: inside a trace attention runs the NumPy reference, to record its probabilities.)
    assert not minigpt2.tracing.active()
    t["ln_f"][...] = 0
    np.testing.assert_allclose(model(ids).logits, out.logits, rtol=1e-5, atol=1e-6)


def test_api_reference_matches_the_docstrings():
    """docs/api.md is generated from the code; regenerate it with python docs/make_api.py."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "make_api.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
