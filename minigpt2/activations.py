"""Activation functions, by the names HF configs use ("gelu_new", "relu", ...).

Each takes and returns a float32 array of any shape. GPT-2 itself uses ``gelu_new``, the tanh
approximation of GELU; the exact (erf) GELU is a different function and gives different numbers.
"""
import math

import numpy as np

from .backend import kernel

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@kernel
def gelu_new(x):
    """GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).  # [...] -> [...]"""
    # x * x * x, not x ** 3: NumPy's float32 power is many times slower than two multiplies.
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))))


def gelu_fast(x):
    """The same tanh GELU with the cube factored: 0.5 x (1 + tanh(0.79788456 x (1 + 0.044715 x^2)))."""
    return 0.5 * x * (1.0 + np.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def erf(x):
    """The error function, elementwise, to float32 precision (NumPy has none of its own).

    Numerical Recipes' Chebyshev fit of erfc (absolute error below 1.2e-7), computed in float64 and
    returned in the input's dtype.
    """
    x64 = np.asarray(x, dtype=np.float64)
    z = np.abs(x64)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(poly)
    return np.where(x64 >= 0, 1.0 - erfc, erfc - 1.0).astype(np.result_type(x, np.float32))


def gelu(x):
    """Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))."""
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def quick_gelu(x):
    """x * sigmoid(1.702 x)."""
    return x * sigmoid(1.702 * x)


def sigmoid(x):
    """The logistic function 1 / (1 + exp(-x))."""
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    """SiLU (swish): x * sigmoid(x)."""
    return x * sigmoid(x)


def relu(x):
    """max(x, 0)."""
    return np.maximum(x, 0)


def tanh(x):
    """The hyperbolic tangent."""
    return np.tanh(x)


def relu2(x):
    """The squared ReLU, max(x, 0)^2."""
    return np.square(np.maximum(x, 0))


def relu6(x):
    """min(max(x, 0), 6)."""
    return np.clip(x, 0, 6)


def leaky_relu(x):
    """x where x > 0, else 0.01 x (torch's default slope)."""
    return np.where(x > 0, x, x * np.float32(0.01))


def gelu_10(x):
    """The exact GELU, clipped to [-10, 10]."""
    return np.clip(gelu(x), -10, 10)


def mish(x):
    """x tanh(softplus(x)), softplus(x) = log(1 + e^x) (np.logaddexp(0, x): no overflow for large x)."""
    return x * np.tanh(np.logaddexp(np.float32(0), x))


LAPLACE_MU, LAPLACE_SIGMA = 0.707107, 0.282095  # HF's constants: sqrt(1/2), and sqrt(1/(4 pi))


def laplace(x):
    """0.5 (1 + erf((x - mu) / (sigma sqrt 2))): the normal distribution function of N(mu, sigma^2), a bounded
    stand-in for the squared ReLU (MEGA's attention activation)."""
    return 0.5 * (1.0 + erf((x - LAPLACE_MU) / (LAPLACE_SIGMA * math.sqrt(2.0))))


def linear_activation(x):
    """The identity (HF's "linear" activation)."""
    return x


ACTIVATIONS = {
    "gelu_new": gelu_new,
    "gelu_pytorch_tanh": gelu_new,  # PyTorch's C implementation of the same tanh formula
    "gelu_accurate": gelu_new,
    "gelu_python_tanh": gelu_new,  # the same formula, written in Python in HF
    "gelu_fast": gelu_fast,
    "gelu": gelu,
    "gelu_10": gelu_10,
    "gelu_python": gelu,
    "quick_gelu": quick_gelu,
    "relu": relu,
    "relu2": relu2,
    "relu6": relu6,
    "leaky_relu": leaky_relu,
    "mish": mish,
    "laplace": laplace,
    "silu": silu,
    "swish": silu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "linear": linear_activation,
}
