"""Drawing tokens: inverse-CDF sampling from NumPy's random generator, and ``set_seed``.

Sampling uses NumPy's generator, not torch's: reproducible for a given seed, but different draws from HF.
"""
from __future__ import annotations

import random

import numpy as np
from ..checks import is_int

_seeded = {"rng": None}  # set_seed's generator, which generate() draws from when it gets no seed


def sample(probs, rng):
    """One token per row, drawn with the given probabilities.  # [N, V] -> [N]

    Inverse-CDF sampling: draw u uniformly below the total, take the first token whose cumulative probability
    exceeds u. A token with probability 0 adds nothing to the cumulative sum, so it is never the first to
    exceed u: filtered tokens can never be drawn.
    """
    cdf = np.cumsum(probs, axis=-1, dtype=np.float64)  # [N, V]
    if not (np.isfinite(cdf).all() and (cdf[:, -1] > 0).all()):
        raise ValueError("cannot sample: in some row every token was ruled out (all scores -inf) or a score is NaN; "
                         "check the logits processors")
    u = rng.random((len(probs), 1)) * cdf[:, -1:]  # [N, 1]
    token = (cdf <= u).sum(axis=-1)
    # u * total can round up to the total itself; then take the last token that has any probability.
    last_possible = probs.shape[-1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=-1)
    return np.minimum(token, last_possible)


def set_seed(seed: int):
    """Make sampling reproducible, as transformers.set_seed does: seeds Python's ``random``, NumPy's global
    generator, and the generator that ``generate(do_sample=True)`` draws from when it is given no ``seed``."""
    if not is_int(seed) or seed < 0:
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2 ** 32)
    _seeded["rng"] = np.random.default_rng(int(seed))


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None and _seeded["rng"] is not None:
        return _seeded["rng"]
    if seed is None or (is_int(seed) and seed >= 0):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be a non-negative int, a numpy.random.Generator or None, got {seed!r}")
