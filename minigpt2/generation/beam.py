"""Beam search, as transformers 4.57 does it: per prompt, ``num_beams`` running sequences (the best by summed
log-probability that have not finished) and ``num_beams`` finished ones (the best by length-normalised score).

Each step takes the best ``max(2, 1 + len(eos)) * num_beams`` continuations of all running beams (drawn instead,
with do_sample=True). Those that finish (eos, a stop string, or max_length) may enter the finished set if they
are among the ``num_beams`` best; the best ``num_beams`` that do not finish run on. A prompt stops taking finished
sequences once no running beam can beat its worst finished one (the early_stopping rules).

``step(new_ids, past, mask) -> (logits [N, V], past, seen)`` runs the model (``seen``: the attentions and hidden
states asked for); the loop never sees the model itself.
"""
from __future__ import annotations

import numpy as np

from ..layers import log_softmax
from .greedy import prompt_step, repeat_rows
from .outputs import GenerateBeamDecoderOnlyOutput, Recorder
from .ties import torch_topk_order

NEG = np.float32(-1e9)  # "not a candidate": added to a score, it sorts that candidate last


def _gather(a, index):
    """a[b, index[b, j], ...] for each prompt b.  # a [B, K, ...], index [B, J] -> [B, J, ...]"""
    return a[np.arange(len(a))[:, None], index]


def _best(scores, k):
    """Indices of the k highest scores per row, best first.  # [B, M] -> [B, k]

    Ties are broken as transformers' ``torch.topk`` breaks them on the CPU, which does not sort stably. They are
    common: at max_length every candidate ends and the running beams all score -1e9 (float32 cannot tell -1e9 - 3
    from -1e9), and constraints that leave fewer than ``2 * num_beams`` tokens (prefix_allowed_tokens_fn,
    suppress_tokens) leave -1e9 and -inf candidates; which of them run on decides the rows of the next step's
    scores, of ``beam_indices`` and of the returned cache. Rows without ties are a plain sort. Any k is replayed:
    with a list of eos tokens k = (1 + len(eos)) * num_beams is easily more than 17, where torch sorts by introsort.
    """
    order = np.argsort(-scores, axis=-1, kind="stable")
    top = np.take_along_axis(scores, order[:, :k + 1], axis=-1)
    tied = (top[:, 1:] == top[:, :-1]).any(axis=-1)  # a tie inside the k best or at the cut
    for row in np.flatnonzero(tied):
        order[row, :k] = torch_topk_order(scores[row], k)
    return order[:, :k]


def _refuse_nan(scores, step):
    """transformers' torch.topk ranks a NaN score above every number, so its beams run on with NaN scores (and
    sequences_scores): refuse, saying where the NaN comes from."""
    if np.isnan(scores).any():
        tokens = sorted(set(np.nonzero(np.isnan(scores))[1].tolist()))[:5]
        raise ValueError(f"beam search: the processed scores of new token {step + 1} are NaN for token(s) {tokens}, "
                         f"so beams cannot be ranked (transformers ranks NaN first and returns NaN sequences_scores). "
                         f"exponential_decay_length_penalty makes NaN when it raises an eos score that another setting "
                         f"ruled out (-inf + inf: min_length, min_new_tokens, no_repeat_ngram_size, bad_words_ids, "
                         f"suppress_tokens): start its decay after min_length, or drop one of the two; a row of "
                         f"scores that is all -inf (every token ruled out) gives NaN too")


def beam_search(step, input_ids, mask, cfg, processors, eos, rng, stop=None, finish_tokens=None, cache=None):
    """Beam search (beam sampling with do_sample=True) from the prompts ``input_ids`` [B, T]. A beam finishes at a
    token of ``finish_tokens`` (default ``eos``; a caller's EosTokenCriteria in HF), ``eos`` sets how many
    candidates each step keeps. ``cache``: past_key_values of the prompts' first tokens, or None."""
    finish_tokens = eos if finish_tokens is None else finish_tokens
    B, prompt_len = input_ids.shape
    K, max_length, lp = cfg.num_beams, cfg.max_length, cfg.length_penalty
    M = max(2, 1 + len(eos)) * K  # enough candidates that K of them do not finish
    fill = (cfg.pad_token_id or eos[0]) if eos else -1  # as 4.57 fills sequences (a pad id of 0 gives eos)

    logits, past, seen = prompt_step(step, input_ids, mask, cache)
    rows = np.repeat(np.arange(B), K)  # each prompt becomes K beams, in consecutive rows
    logits, mask, seen = logits[rows], mask[rows], repeat_rows(seen, rows)
    past = past.reorder(rows) if cfg.use_cache else None
    running = np.full((B, K, max_length), fill, np.int64)
    running[:, :, :prompt_len] = input_ids[:, None, :]
    running_scores = np.zeros((B, K), np.float32)
    running_scores[:, 1:] = NEG  # all beams start equal: the first step picks K different tokens from beam 0
    running_indices = np.full((B, K, max_length - prompt_len), -1, np.int32)  # int32: HF's beam_indices dtype
    finished, finished_scores = running.copy(), np.full((B, K), NEG, np.float32)
    finished_indices, is_finished = running_indices.copy(), np.zeros((B, K), bool)
    improvable = np.ones(B, bool)  # may a running beam still beat the prompt's worst finished sequence?
    top_k = np.arange(M) < K

    record = Recorder(cfg)
    cur_len = prompt_len
    while True:
        V = logits.shape[-1]
        record.add("logits", logits)
        logprobs = processors(running[:, :, :cur_len].reshape(B * K, cur_len), log_softmax(logits))  # [B*K, V]
        record.add("scores", logprobs)
        _refuse_nan(logprobs, cur_len - prompt_len)
        for name, value in seen.items():
            record.add(name, value)
        totals = (logprobs.reshape(B, K, V) + running_scores[:, :, None]).reshape(B, K * V)

        # The M best continuations of all beams (or M drawn without replacement: adding Gumbel noise to the
        # log-probabilities and taking the largest is such a draw, in draw order).
        if cfg.do_sample:
            picked = _best(log_softmax(totals) - np.log(-np.log(rng.random(totals.shape))), M)
        else:
            picked = _best(totals, M)
        cand_scores = np.take_along_axis(totals, picked, axis=-1)  # [B, M]
        cand_beams, cand_tokens = picked // V, picked % V
        cand = _gather(running, cand_beams)  # [B, M, max_length]
        cand[:, :, cur_len] = cand_tokens
        cand_indices = _gather(running_indices, cand_beams)
        cand_indices[:, :, cur_len - prompt_len] = cand_beams + (np.arange(B) * K)[:, None]  # rows of scores[t]
        ends = np.isin(cand_tokens, finish_tokens) | (cur_len + 1 >= max_length)
        if stop is not None:
            ends |= stop(cand[:, :, :cur_len + 1].reshape(B * M, -1), record.outputs()["scores"]).reshape(B, M)

        # The K best that do not end run on.
        keep = _best(cand_scores + ends * NEG, K)
        running = _gather(cand, keep)
        running_scores = np.take_along_axis(cand_scores + ends * NEG, keep, axis=-1)
        running_indices = _gather(cand_indices, keep)

        # Those that end, if among the K best, compete with the finished ones by length-normalised score.
        new = ends & top_k[None, :]
        scores = cand_scores / np.float32((cur_len + 1 - prompt_len) ** lp)
        scores = scores + (is_finished.all(axis=-1, keepdims=True) & (cfg.early_stopping is True)) * NEG
        scores = scores + (~improvable)[:, None] * NEG + (~new) * NEG
        merged = _best(np.concatenate([finished_scores, scores], axis=1), K)
        finished = _gather(np.concatenate([finished, cand], axis=1), merged)
        finished_scores = np.take_along_axis(np.concatenate([finished_scores, scores], axis=1), merged, axis=-1)
        finished_indices = _gather(np.concatenate([finished_indices, cand_indices], axis=1), merged)
        is_finished = np.take_along_axis(np.concatenate([is_finished, new], axis=1), merged, axis=-1)

        cur_len += 1
        # The cache follows the running beams after every step, the last one too (HF 4.57: the cache it returns
        # holds the final running beams' rows).
        rows = running_indices[:, :, cur_len - 1 - prompt_len].reshape(-1)  # the beam each running one came from
        if past is not None and not np.array_equal(rows, np.arange(B * K)):
            past = past.reorder(rows)
        if cfg.early_stopping == "never" and lp > 0:
            best_length = max_length - prompt_len
        else:
            best_length = cur_len - prompt_len
        best_possible = running_scores[:, :1] / np.float32(best_length ** lp)
        worst_finished = np.where(is_finished, finished_scores.min(axis=-1, keepdims=True), NEG)
        improvable &= (best_possible > worst_finished).any(axis=-1)
        if not improvable.any() or (is_finished.all() and cfg.early_stopping is True) or ends.all():
            break
        mask = np.concatenate([mask, np.ones((len(mask), 1), mask.dtype)], axis=1)
        if cfg.use_cache:
            logits, past, seen = step(running[:, :, cur_len - 1].reshape(-1, 1), past, mask)
        else:  # the whole sequence again, every step: what the cache saves
            logits, _, seen = step(running[:, :, :cur_len].reshape(B * K, cur_len), None, mask)

    n = cfg.num_return_sequences
    sequences = finished[:, :n].reshape(B * n, -1)
    beam_indices = finished_indices[:, :n].reshape(B * n, -1)
    generated = int((beam_indices >= 0).sum(axis=1).max())
    sequences, beam_indices = sequences[:, :prompt_len + generated], beam_indices[:, :generated]
    if cfg.return_dict_in_generate:
        return GenerateBeamDecoderOnlyOutput(
            sequences=sequences, beam_indices=beam_indices, past_key_values=past, **record.outputs(),
            sequences_scores=finished_scores[:, :n].reshape(-1) if "scores" in record.kept else None)
    return sequences
