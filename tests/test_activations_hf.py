"""Every activation function minigpt2 knows, elementwise against transformers' (ACT2FN) on float32 inputs from -30
to 30, and its backward against torch autograd.

Tolerance: each is a few float32 operations (each off by half an ulp) and a tanh, exp or log (NumPy's and torch's
differ by an ulp or two); the erf ones use activations.erf, off by at most 1.2e-7 absolute. So 16 float32 ulps of
max(1, |value|), plus 2.5e-7 for erf and 2.5x that in laplace's derivative (its argument is scaled by 1 / (sigma sqrt 2)
= 2.5). A wrong constant is far outside: laplace's sigma moved in its fifth digit is off by 2e-5, relu6's bound
moved by 0.1 off by 0.1.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigpt2.activations import ACTIVATIONS
from minigpt2.backward import ACTIVATION_BACKWARDS

torch = pytest.importorskip("torch")
ACT2FN = pytest.importorskip("transformers.activations").ACT2FN

X = np.concatenate([np.linspace(-30, 30, 60001), np.random.default_rng(0).standard_normal(10000) * 3]).astype(np.float32)
ULPS = 16 * np.finfo(np.float32).eps
ERF = {"gelu": 2.5e-7, "gelu_python": 2.5e-7, "gelu_10": 2.5e-7, "laplace": 2.5e-7}


def within(ours, ref, extra, what):
    bound = ULPS * np.maximum(1, np.abs(ref)) + extra
    worst = np.argmax(np.abs(ours - ref) - bound)
    assert np.abs(ours[worst] - ref[worst]) <= bound[worst], \
        f"{what} at x = {X[worst]}: {ours[worst]} against transformers' {ref[worst]}"


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_and_its_backward_as_transformers(name):
    x = torch.tensor(X, requires_grad=True)
    y = ACT2FN[name](x)
    y.sum().backward()
    ours = ACTIVATIONS[name](X)
    assert ours.dtype == np.float32
    within(ours, y.detach().numpy(), ERF.get(name, 0.0), f"{name}(x)")
    grad = ACTIVATION_BACKWARDS[name](np.ones_like(X), X)
    within(grad, x.grad.numpy(), 2.5 * ERF.get(name, 0.0), f"{name}'(x)")
