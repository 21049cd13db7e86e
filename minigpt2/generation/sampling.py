"""Drawing tokens: inverse-CDF sampling from NumPy's random generator, and ``set_seed``.

Sampling uses NumPy's generator, not torch's: reproducible for a given seed, but different draws from HF. With no
``seed=``, generate() draws from NumPy's global generator, so ``np.random.seed`` (which ``transformers.set_seed``
and ``minigpt2.set_seed`` call) makes sampling reproducible, as torch's global seed does in transformers.
"""
from __future__ import annotations

import random

import numpy as np
from ..checks import is_int


def sample(probs, rng):
    """One token per row, drawn with the given probabilities.  # [N, V] -> [N]

    Inverse-CDF sampling: draw u uniformly below the total, take the first token whose cumulative probability
    exceeds u. A token with probability 0 adds nothing to the cumulative sum, so it is never the first to
    exceed u: filtered tokens can never be drawn.
    """
    cdf = np.cumsum(probs, axis=-1, dtype=np.float64)  # [N, V]
    if not (np.isfinite(cdf).all() and (cdf[:, -1] > 0).all()):
        raise ValueError("cannot sample: in some row every token was ruled out (all scores -inf) or a score is NaN; "
                         "check the logits processors, and the model's weights (NaN or infinity in them gives NaN "
                         "scores)")
    u = rng.random((len(probs), 1)) * cdf[:, -1:]  # [N, 1]
    token = (cdf <= u).sum(axis=-1)
    # u * total can round up to the total itself; then take the last token that has any probability.
    last_possible = probs.shape[-1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=-1)
    return np.minimum(token, last_possible)


def set_seed(seed: int):
    """Make sampling reproducible, as transformers.set_seed does: seeds Python's ``random`` and NumPy's global
    generator, which ``generate(do_sample=True)`` draws from when it is given no ``seed``."""
    if not is_int(seed) or seed < 0:
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2 ** 32)


def _global_bit_generator():
    """The bit generator of NumPy's global RandomState, which np.random.seed seeds (get_bit_generator: NumPy 1.25)."""
    get = getattr(np.random, "get_bit_generator", None)
    return get() if get is not None else np.random.mtrand._rand._bit_generator


def random_generator(seed) -> np.random.Generator:
    """The generator a generate() call (or a model's random initialisation) draws from: ``seed``'s, or (None)
    NumPy's global one (its bit generator, behind a Generator's methods), so that the latest np.random.seed /
    set_seed / transformers.set_seed decides the draws."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.Generator(_global_bit_generator())  # its draws move NumPy's global state on
    if is_int(seed) and seed >= 0:
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be a non-negative int, a numpy.random.Generator or None, got {seed!r}")
