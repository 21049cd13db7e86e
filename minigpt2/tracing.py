"""Capture the named intermediate tensors of a forward pass, for looking inside the model.

    with minigpt2.trace() as t:
        model(input_ids)
    t["h.0.attn"]          # the first block's attention output, [B, T, E]
    list(t)                # every name, in the order computed
    print(t)               # every name with its shape
    t.layer(0)             # block 0's tensors without the "h.0." prefix: {"ln_1": ..., "attn": ..., ...}
    t.stack("out")         # every block's output stacked: [n_layer, B, T, E] (e.g. for a logit lens)

Names: "embeddings", then for each block i "h.{i}.ln_1", "h.{i}.attn_probs", "h.{i}.attn",
"h.{i}.resid_mid" (after the attention residual), ["h.{i}.crossattention"], "h.{i}.ln_2", "h.{i}.mlp",
"h.{i}.out"; then "ln_f". Each block computes

    ln_1 = layer_norm(x);  attn = self_attention(ln_1)  (attn_probs: its softmax, [B, H, T, P + T])
    resid_mid = x + attn;  ln_2 = layer_norm(resid_mid);  mlp = mlp(ln_2);  out = resid_mid + mlp

where x is "embeddings" for block 0 and "h.{i-1}.out" after it; "ln_f" is layer_norm("h.{n_layer-1}.out").

Values are [B, T, E] as the blocks see them (GPT2DoubleHeadsModel's [B, choices, T] input is folded into
[B * choices, T, E]). Each value is a copy taken when it was recorded, so nothing computed later can change it.
A trace belongs to the thread (strictly: the context) that opened it: other threads' passes are neither recorded
nor slowed. Outside a ``trace()`` block, recording costs one context-variable lookup and copies nothing. Inside one,
the attention probabilities are computed beside the attention output (``layers.attention_probs``), which
still comes from the active backend: tracing a pass never changes its numbers.
"""
from __future__ import annotations

import contextvars
import re
from contextlib import contextmanager

import numpy as np

__all__ = ["trace", "record", "Trace"]

_active = contextvars.ContextVar("minigpt2_trace", default=None)  # the Trace collecting now, in this thread


class Trace(dict):
    """The tensors recorded by ``trace()``: a dict from name to array, in the order computed."""

    def layer(self, i: int) -> dict:
        """Block ``i``'s tensors, keyed without the "h.{i}." prefix."""
        prefix = f"h.{i}."
        return {k[len(prefix):]: v for k, v in self.items() if k.startswith(prefix)}

    @property
    def n_layer(self) -> int:
        """How many blocks recorded something."""
        return len({m.group(1) for k in self for m in [re.match(r"h\.(\d+)\.", k)] if m})

    def stack(self, name: str) -> np.ndarray:
        """``"h.{i}.{name}"`` for every block i, stacked on a new first axis: [n_layer, ...]."""
        n = self.n_layer
        missing = [i for i in range(n) if f"h.{i}.{name}" not in self]
        if n == 0 or missing:
            raise KeyError(f"no 'h.{{i}}.{name}' recorded for blocks {missing or 'any'}; names: {list(self)[:12]}")
        return np.stack([self[f"h.{i}.{name}"] for i in range(n)])

    def __repr__(self):
        if not self:
            return "Trace({})"
        width = max(map(len, self))
        rows = [f"  {k:<{width}}  {str(getattr(v, 'shape', '')):<20} {getattr(v, 'dtype', type(v).__name__)}"
                for k, v in self.items()]
        return f"Trace of {len(self)} tensors:\n" + "\n".join(rows)

    def _repr_pretty_(self, printer, cycle):  # IPython and Jupyter print the same table
        printer.text(repr(self))


def active() -> bool:
    """Whether a ``trace()`` block is collecting tensors now."""
    return _active.get() is not None


def record(prefix="", **tensors):
    """Keep a copy of each tensor under ``prefix + name`` if a trace is active (otherwise do nothing)."""
    collecting = _active.get()
    if collecting is not None:
        for name, value in tensors.items():
            collecting[prefix + name] = np.array(value, copy=True)


@contextmanager
def trace():
    """Collect every recorded tensor of the forward passes run inside the block into a ``Trace``.

    A second forward pass inside the same block overwrites the names of the first. Traces nest: an inner
    block collects into its own Trace, and the outer one resumes afterwards.
    """
    collecting = Trace()
    token = _active.set(collecting)
    try:
        yield collecting
    finally:
        _active.reset(token)
