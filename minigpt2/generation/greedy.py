"""Greedy search and sampling: each step, one token per sequence (the argmax, or a draw).

``step(new_ids, past, mask) -> (logits [N, V], past, seen)`` runs the model (``seen``: the attentions and hidden
states asked for, by name); the loop never sees the model itself.
"""
from __future__ import annotations

import numpy as np

from ..layers import softmax
from .outputs import GenerateDecoderOnlyOutput, Recorder
from .sampling import sample


def repeat_rows(seen, rows):
    """The attentions and hidden states of ``seen`` for the rows ``rows`` (a prompt's, once per sequence)."""
    return {name: None if per_layer is None else tuple(a[rows] for a in per_layer) for name, per_layer in seen.items()}


def cached_length(cache):
    """The positions a cache holds (0 for None): the length of layer 0's keys [N, H, P, D]."""
    return 0 if cache is None else np.shape(cache[0][0])[2]


def prompt_step(step, input_ids, mask, cache):
    """The prompt through the model; with ``cache`` (of its first P tokens, one row per prompt), its other tokens."""
    return step(input_ids[:, cached_length(cache):], cache, mask)


def greedy_or_sample(step, input_ids, mask, cfg, processors, eos, rng, streamer=None, stop=None, cache=None):
    """Extend ``input_ids`` [B, T] until every row has finished (eos, or ``stop(ids, scores)`` true) or max_length.
    ``cache``: past_key_values of the prompts' first tokens, or None."""
    n = cfg.num_return_sequences
    record = Recorder(cfg)
    # The prompt runs once per prompt; its cache, logits and outputs are then copied for each returned sequence.
    logits, past, seen = prompt_step(step, input_ids, mask, cache)
    if n > 1:
        rows = np.repeat(np.arange(len(input_ids)), n)
        input_ids, mask, logits, past = input_ids[rows], mask[rows], logits[rows], past.reorder(rows)
        seen = repeat_rows(seen, rows)
    if streamer is not None:
        streamer.put(input_ids)

    unfinished = np.ones(len(input_ids), bool)
    while True:
        record.add("logits", logits)
        scores = processors(input_ids, logits)  # [N, V]
        record.add("scores", scores)
        for name, value in seen.items():
            record.add(name, value)
        next_tokens = sample(softmax(scores), rng) if cfg.do_sample else np.argmax(scores, axis=-1)
        if eos:  # a finished sequence is padded (as HF, only with an eos: other stopping reasons do not pad)
            next_tokens = np.where(unfinished, next_tokens, cfg.pad_token_id)
        input_ids = np.concatenate([input_ids, next_tokens[:, None]], axis=1)
        mask = np.concatenate([mask, np.ones((len(mask), 1), mask.dtype)], axis=1)
        if streamer is not None:
            streamer.put(next_tokens)
        if eos:
            unfinished &= ~np.isin(next_tokens, eos)
        if stop is not None:
            unfinished &= ~stop(input_ids, record.outputs()["scores"])
        if not unfinished.any() or input_ids.shape[1] >= cfg.max_length:
            break
        if cfg.use_cache:
            logits, past, seen = step(input_ids[:, -1:], past, mask)
        else:  # the whole sequence again, every step: what the cache saves
            logits, _, seen = step(input_ids, None, mask)
    if streamer is not None:
        streamer.end()
    if cfg.return_dict_in_generate:
        return GenerateDecoderOnlyOutput(sequences=input_ids, **record.outputs(),
                                         past_key_values=past if cfg.use_cache else None)
    return input_ids
