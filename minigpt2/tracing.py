"""Capture the named intermediate tensors of a forward pass, for looking inside the model.

    with minigpt2.trace() as t:
        model(input_ids)
    t["h.0.attn"]          # the first block's attention output, [B, T, E]
    list(t)                # every name, in the order computed

Names: "embeddings", then for each block i "h.{i}.ln_1", "h.{i}.attn", "h.{i}.attn_probs",
"h.{i}.resid_mid" (after the attention residual), ["h.{i}.crossattention"], "h.{i}.ln_2", "h.{i}.mlp",
"h.{i}.out"; then "ln_f". Outside a ``trace()`` block, recording costs one global lookup.
"""
from __future__ import annotations

from contextlib import contextmanager

__all__ = ["trace", "record"]

_active = None


def record(name, value):
    """Keep ``value`` under ``name`` if a trace is active; return it unchanged either way."""
    if _active is not None:
        _active[name] = value
    return value


@contextmanager
def trace():
    """Collect every recorded tensor of the forward passes run inside the block into a dict.

    A second forward pass inside the same block overwrites the names of the first.
    """
    global _active
    previous, _active = _active, {}
    try:
        yield _active
    finally:
        _active = previous
