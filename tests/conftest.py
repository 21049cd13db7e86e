"""Shared test helpers: comparing arrays against a reference, and tiny checkpoints written by transformers.

Other test modules may use these (``from conftest import assert_close``); keep them small and stable.

    assert_close(ours, ref, name)         tolerance 1e-5 * max(1, max|ref|), with a readable failure message
    tolerance(ref)                        that bound
    randomize_torch_model(model, seed)    spread a transformers model's weights (see below)
    kernel_backend                        fixture: the test runs on the "numpy" and on the "c" backend
    backend_restored                      fixture: backend, thread count and kernel variant put back after the
                                          test, its warnings ignored
    tiny_model_dir                        session fixture: a tiny random checkpoint (GPT-2's vocabulary, 64 positions)
                                          saved with the bundled tokenizer, as `--model DIR` for the CLI tests
    hf_tiny_checkpoint                    session fixture: a directory holding a tiny HF GPT2LMHeadModel
                                          checkpoint (skipped when torch/transformers are not installed)

The live reference is transformers 4.57.6 (the dev extra) in float32 with attn_implementation="eager"; the committed
fixtures were written by 4.46.3 (see tests/make_fixtures.py), whose numbers are the same at every real position.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "model")

# float32 matmuls summed in a different order (BLAS vs. torch's kernels) differ by a few ulps per
# accumulation; through a few layers that stays below 1e-5 of the largest magnitude.
RTOL = 1e-5

TINY = dict(vocab_size=99, n_positions=16, n_embd=32, n_layer=2, n_head=4)


def tolerance(ref, rtol=RTOL) -> float:
    """The bound on max|ours - ref| for one tensor: rtol * max(1, max|ref|)."""
    ref = np.asarray(ref, dtype=np.float64)
    finite = ref[np.isfinite(ref)]
    return rtol * max(1.0, float(np.abs(finite).max()) if finite.size else 1.0)


def max_abs_diff(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return float("inf")
    both_nan = np.isnan(ours) & np.isnan(ref)
    d = np.abs(np.where(both_nan, 0.0, ours - ref))
    return float(np.nan_to_num(d, nan=np.inf).max()) if d.size else 0.0


def describe(name, ours, ref, rtol=RTOL, n=4) -> str:
    """One line: name, shape, the first values of both, the max difference and the bound."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    diff, tol = max_abs_diff(ours, ref), tolerance(ref, rtol)
    flag = "FAIL" if not diff <= tol else "ok  "
    if ours.shape != ref.shape:
        return f"{flag} {name}: shape {ours.shape} but the reference has {ref.shape}"
    first = lambda a: np.array2string(a.reshape(-1)[:n].astype(np.float64), precision=6, separator=", ")
    return (f"{flag} {name} {tuple(ref.shape)}: ours {first(ours)} ref {first(ref)} "
            f"max|diff| {diff:.3g} (bound {tol:.3g})")


def assert_close(ours, ref, name="tensor", rtol=RTOL):
    """Assert max|ours - ref| <= rtol * max(1, max|ref|), explaining the failure tensor by tensor."""
    if not max_abs_diff(ours, ref) <= tolerance(ref, rtol):
        raise AssertionError(describe(name, ours, ref, rtol))


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES


@pytest.fixture(params=["numpy", "c"])
def kernel_backend(request):
    """Run the test once on the NumPy reference kernels and once on the C core (skipped if it is not built)."""
    from minigpt2 import backend

    if request.param == "c" and not backend.c_available():
        pytest.skip(f"the C extension is not built ({backend._c_problem})")
    saved = backend.name
    backend.set_backend(request.param)
    try:
        yield request.param
    finally:
        backend.set_backend(saved)


def save_tiny_model(directory, n_positions) -> str:
    """A small random GPT-2 with GPT-2's vocabulary and ``n_positions`` positions, saved in ``directory`` with the
    bundled tokenizer, as save_pretrained users do."""
    from hubserver import tiny_checkpoint_files
    from minigpt2.tokenizer import AutoTokenizer

    tiny_checkpoint_files(directory, n_positions=n_positions, seed=2)
    AutoTokenizer.from_pretrained("gpt2").save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """save_tiny_model with 64 positions, once per session (read only)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"), 64)


@pytest.fixture
def backend_restored():
    """Let the test switch backend, thread count and kernel variant freely (warnings ignored); put them back after."""
    from minigpt2 import backend

    saved, saved_threads = backend.name, backend.get_num_threads()
    saved_variant = backend._ckernels._tuning._requested if backend._ckernels is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    if backend._ckernels is not None:
        if backend.get_num_threads() != saved_threads:
            backend.set_num_threads(saved_threads)
        backend._ckernels._tuning.choose(saved_variant)
    backend.set_backend(saved)


# -- transformers-backed helpers (these skip when the references are not installed) ---------------

def randomize_torch_model(model, seed=0):
    """Redraw a transformers model's parameters with a wide spread (weights std 0.3, layer norms 1 +- 0.2,
    biases +- 0.1), so activations reach GELU's nonlinear region and no bias or layer norm is a no-op."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if ".ln_" in name or name.startswith("ln_"):
                mean, std = (1.0 if name.endswith("weight") else 0.0), 0.2
            else:
                mean, std = 0.0, (0.1 if name.endswith("bias") else 0.3)
            p.copy_(torch.randn(p.shape, generator=g) * std + mean)
    return model


def write_hf_checkpoint(directory, model_class="GPT2LMHeadModel", seed=0, **config):
    """Save a tiny random transformers model (float32, eager attention) to ``directory``; return the model."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    cfg = transformers.GPT2Config(**{**TINY, **config}, attn_implementation="eager")
    model = randomize_torch_model(getattr(transformers, model_class)(cfg), seed).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return model


@pytest.fixture(scope="session")
def hf_tiny_checkpoint(tmp_path_factory):
    """A directory with config.json + model.safetensors of a tiny GPT2LMHeadModel, written by transformers."""
    directory = tmp_path_factory.mktemp("hf_tiny_checkpoint")
    write_hf_checkpoint(directory)
    return str(directory)
