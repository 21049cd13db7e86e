"""Logits processors: functions of (ids so far [N, L], scores [N, V]) -> new scores [N, V].

Same names, formulas and order as HF's; every processor is a LogitsProcessor, the base class a user's own
processors subclass too. A token is ruled out by setting its score to -inf. The "warpers"
(temperature, top-k, top-p, ...) run only when sampling. ``build_logits_processors`` assembles generate's
chain; ``sampling_warpers`` is its sampling part, which the CLI also uses to show what is drawn from.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..layers import log_softmax, softmax  # -inf scores (filtered tokens) get probability 0
from .config import TEMPERATURE_LIMITS, _as_token_list
from .ties import torch_topk_order


class LogitsProcessor:
    """Base class of the processors, as HF's: a subclass defines ``__call__(input_ids, scores) -> scores``.

    ``input_ids`` [N, L] are the tokens so far (prompt included), ``scores`` [N, V] the float32 scores of the
    next token; return the new scores (changing ``scores`` in place and returning it is allowed). Pass instances
    to ``generate(logits_processor=[...])``: they run after the built-in processors and before the sampling
    warpers (temperature, top-k, top-p, ...), as in HF.
    """

    def __call__(self, input_ids, scores):
        raise NotImplementedError(f"{type(self).__name__} is an abstract class: a logits processor defines "
                                  f"__call__(input_ids, scores) -> scores")


class LogitsProcessorList(list):
    """Apply each processor in turn."""

    def __call__(self, input_ids, scores):
        for processor in self:
            new = processor(input_ids, scores)
            if not isinstance(new, np.ndarray) or new.shape != scores.shape:
                raise TypeError(f"logits processor {processor!r} returned {type(new).__name__} "
                                f"{getattr(new, 'shape', '')}; it must return the scores: an array of shape "
                                f"{scores.shape}")
            scores = new
        return scores


class RepetitionPenaltyLogitsProcessor(LogitsProcessor):
    """Make every token already in the sequence (prompt included) less likely, once per token (CTRL's rule).

    A positive score is divided by ``penalty``, a negative one multiplied by it: either way it moves down
    when penalty > 1 (and up when penalty < 1).
    """

    def __init__(self, penalty: float):
        if not penalty > 0:
            raise ValueError(f"repetition penalty must be > 0, got {penalty}")
        self.penalty = penalty

    def __call__(self, input_ids, scores):
        seen = np.take_along_axis(scores, input_ids, axis=1)  # [N, L]: the score of each token already used
        penalty = np.float32(self.penalty)  # float32 arithmetic, as torch does on float32 scores
        seen = np.where(seen < 0, seen * penalty, seen / penalty)
        scores = scores.copy()
        np.put_along_axis(scores, input_ids, seen, axis=1)
        return scores


class NoRepeatNGramLogitsProcessor(LogitsProcessor):
    """Forbid any token that would complete an n-gram already present in the sequence (prompt included)."""

    def __init__(self, ngram_size: int):
        if not ngram_size > 0:
            raise ValueError(f"no_repeat_ngram_size must be > 0, got {ngram_size}")
        self.n = ngram_size

    def __call__(self, input_ids, scores):
        n, L = self.n, input_ids.shape[1]
        if L + 1 < n:  # not enough tokens for a whole n-gram yet
            return scores
        scores = scores.copy()
        for row, ids in enumerate(input_ids.tolist()):
            tail = ids[L - n + 1:]  # the last n - 1 tokens: the next token would end an n-gram starting here
            banned = [ids[i + n - 1] for i in range(L - n + 1) if ids[i:i + n - 1] == tail]
            scores[row, banned] = -np.inf
        return scores


class EncoderRepetitionPenaltyLogitsProcessor(LogitsProcessor):
    """HF's "hallucination" penalty, for GPT-2 on the prompt's tokens ``encoder_input_ids`` [B, T]: the repetition
    penalty's rule with ``1 / penalty``, so penalty > 1 makes them MORE likely (stay close to the prompt).

    Row i of the scores takes prompt i's tokens: one row per prompt (transformers 4.57 hands it the prompts before
    they are repeated for beams or returned sequences, so it would change only the first B rows of those)."""

    def __init__(self, penalty: float, encoder_input_ids):
        if not penalty > 0:
            raise ValueError(f"encoder_repetition_penalty must be > 0, got {penalty}")
        self.penalty = 1 / penalty
        self.encoder_input_ids = np.asarray(encoder_input_ids, np.int64)
        self._penalise = RepetitionPenaltyLogitsProcessor(self.penalty)

    def __call__(self, input_ids, scores):
        return self._penalise(self.encoder_input_ids, scores)


class EncoderNoRepeatNGramLogitsProcessor(LogitsProcessor):
    """Forbid any token that would complete an n-gram of the prompt ``encoder_input_ids`` [B, T] (the sequence's
    last n - 1 tokens followed by it). Rows are the prompts', each repeated for its beams or returned sequences."""

    def __init__(self, encoder_ngram_size: int, encoder_input_ids):
        if not encoder_ngram_size > 0:
            raise ValueError(f"encoder_no_repeat_ngram_size must be > 0, got {encoder_ngram_size}")
        self.n = encoder_ngram_size
        self.prompts = np.asarray(encoder_input_ids, np.int64).reshape(-1, np.shape(encoder_input_ids)[-1]).tolist()

    def __call__(self, input_ids, scores):
        n, L, per_prompt = self.n, input_ids.shape[1], len(input_ids) // len(self.prompts)
        scores = scores.copy()
        for row, ids in enumerate(input_ids.tolist()):
            prompt, tail = self.prompts[row // per_prompt], ids[L - n + 1:] if n > 1 else []
            banned = [prompt[i + n - 1] for i in range(len(prompt) - n + 1) if prompt[i:i + n - 1] == tail]
            scores[row, banned] = -np.inf
        return scores


class MinLengthLogitsProcessor(LogitsProcessor):
    """Forbid the end-of-sequence tokens while the sequence (prompt included) is shorter than ``min_length``."""

    def __init__(self, min_length: int, eos_token_id):
        self.min_length, self.eos = min_length, _as_token_list(eos_token_id)

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] < self.min_length:
            scores = scores.copy()
            scores[:, [e for e in self.eos if e < scores.shape[-1]]] = -np.inf  # an id past the vocabulary never comes
        return scores


class MinNewTokensLengthLogitsProcessor(LogitsProcessor):
    """Forbid the end-of-sequence tokens until ``min_new_tokens`` tokens follow the prompt."""

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id):
        self.prompt_length, self.min_new_tokens = prompt_length_to_skip, min_new_tokens
        self.eos = _as_token_list(eos_token_id)

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] - self.prompt_length < self.min_new_tokens:
            scores = scores.copy()
            scores[:, [e for e in self.eos if e < scores.shape[-1]]] = -np.inf  # an id past the vocabulary never comes
        return scores


class NoBadWordsLogitsProcessor(LogitsProcessor):
    """Never complete one of ``bad_words_ids``: a one-token word is always ruled out, a longer one when the
    sequence ends with all of it but its last token. As HF (4.57, whose NoBadWordsLogitsProcessor is its
    SequenceBiasLogitsProcessor), a word that is just the eos token is not banned, and a longer word only once the
    sequence so far is at least as long as the word: a one-token prompt [a] (or the first new token after a prompt
    given as inputs_embeds alone) may still be followed by b of the word [a, b]."""

    def __init__(self, bad_words_ids, eos_token_id=None):
        eos = _as_token_list(eos_token_id)
        self.words = [list(w) for w in bad_words_ids if not (len(w) == 1 and w[0] in eos)]

    def __call__(self, input_ids, scores):
        banned = np.zeros(scores.shape, bool)
        L = input_ids.shape[1]
        for *prefix, last in self.words:
            if prefix and len(prefix) + 1 > L:  # (HF: "the sequence is longer than the context, ignore")
                continue
            ends_with_prefix = (input_ids[:, L - len(prefix):] == prefix).all(axis=1) if prefix else True
            banned[:, last] |= ends_with_prefix
        return np.where(banned, -np.inf, scores).astype(scores.dtype)


class ForcedEOSTokenLogitsProcessor(LogitsProcessor):
    """At the last position that ``max_length`` allows, only the eos token(s) may come."""

    def __init__(self, max_length: int, eos_token_id):
        self.max_length, self.eos = max_length, _as_token_list(eos_token_id)

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] != self.max_length - 1:
            return scores
        forced = np.full_like(scores, -np.inf)
        forced[:, self.eos] = 0
        return forced


class SequenceBiasLogitsProcessor(LogitsProcessor):
    """Add a bias to a token's score wherever it would complete one of the given token sequences.

    ``sequence_bias`` maps sequences to biases, ``{(id, ..., last): bias}``: the bias goes to ``last`` in the rows
    that end with the other ids (always, for a one-token sequence). Negative biases discourage, positive encourage.
    """

    def __init__(self, sequence_bias):
        from .config import _sequence_bias_dict

        self.sequence_bias = _sequence_bias_dict(sequence_bias)

    def __call__(self, input_ids, scores):
        V, L = scores.shape[-1], input_ids.shape[1]
        outside = sorted({t for ids in self.sequence_bias for t in ids if t >= V})
        if outside:
            raise ValueError(f"sequence_bias names token(s) {outside}, outside this model's vocabulary [0, {V})")
        bias = np.zeros_like(scores)  # [N, V]
        one_token = [(ids, b) for ids, b in self.sequence_bias.items() if len(ids) == 1]
        longer = [(ids, b) for ids, b in self.sequence_bias.items() if 1 < len(ids) <= L]
        for (last,), b in one_token:
            bias[:, last] += np.float32(b)
        for (*prefix, last), b in longer:
            ends_with_prefix = (input_ids[:, L - len(prefix):] == prefix).all(axis=1)  # [N]
            bias[:, last] += np.where(ends_with_prefix, np.float32(b), np.float32(0))
        return scores + bias


class PrefixConstrainedLogitsProcessor(LogitsProcessor):
    """Allow only the tokens that ``prefix_allowed_tokens_fn(batch_id, ids)`` lists for each row (HF's
    constrained generation); ``batch_id`` is the prompt's index, ``ids`` the row's tokens so far."""

    def __init__(self, prefix_allowed_tokens_fn, num_beams: int):
        self.fn, self.num_beams = prefix_allowed_tokens_fn, num_beams

    def __call__(self, input_ids, scores):
        allowed = np.zeros(scores.shape, bool)
        for row, ids in enumerate(input_ids):
            tokens = self.fn(row // self.num_beams, ids)
            if len(tokens) == 0:
                raise ValueError(f"prefix_allowed_tokens_fn returned no token for prompt {row // self.num_beams}: "
                                 f"it must allow at least one token at every step")
            allowed[row, np.asarray(tokens, np.int64)] = True
        return np.where(allowed, scores, -np.inf).astype(scores.dtype)


class ForcedBOSTokenLogitsProcessor(LogitsProcessor):
    """When the sequence is one token long, only ``bos_token_id`` may come next."""

    def __init__(self, bos_token_id: int):
        self.bos_token_id = bos_token_id

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] != 1:
            return scores
        forced = np.full_like(scores, -np.inf)
        forced[:, self.bos_token_id] = 0
        return forced


class InfNanRemoveLogitsProcessor(LogitsProcessor):
    """Replace NaN scores by 0 and infinite ones by the largest finite float32 of their sign."""

    def __call__(self, input_ids, scores):
        big = np.finfo(scores.dtype).max
        return np.where(np.isnan(scores), 0, np.clip(scores, -big, big)).astype(scores.dtype)


class ExponentialDecayLengthPenalty(LogitsProcessor):
    """After ``start`` new tokens, raise the eos scores by ``|score| * (factor ** n - 1)`` at the n-th token
    past it: a growing push (factor > 1) towards ending. ``(start, factor)`` is HF's
    ``exponential_decay_length_penalty``."""

    def __init__(self, exponential_decay_length_penalty, eos_token_id, input_ids_seq_length: int):
        start, self.factor = exponential_decay_length_penalty
        self.regulation_start = start + input_ids_seq_length
        self.eos = _as_token_list(eos_token_id)
        if not self.eos:
            raise ValueError("exponential_decay_length_penalty raises the eos token's score: it needs an eos_token_id")

    def __call__(self, input_ids, scores):
        n = input_ids.shape[-1] - self.regulation_start
        if n <= 0:
            return scores
        eos = [e for e in self.eos if e < scores.shape[-1]]
        scores = scores.copy()
        scores[:, eos] += np.abs(scores[:, eos]) * np.float32(self.factor ** n - 1)
        return scores


class SuppressTokensLogitsProcessor(LogitsProcessor):
    """Rule out the ``suppress_tokens`` at every step."""

    def __init__(self, suppress_tokens):
        self.suppress_tokens = list(suppress_tokens)

    def __call__(self, input_ids, scores):
        scores = scores.copy()
        scores[:, [t for t in self.suppress_tokens if t < scores.shape[-1]]] = -np.inf
        return scores


class SuppressTokensAtBeginLogitsProcessor(LogitsProcessor):
    """Rule out the ``begin_suppress_tokens`` at the step where the sequence is ``begin_index`` tokens long (the
    first new token)."""

    def __init__(self, begin_suppress_tokens, begin_index: int):
        self.begin_suppress_tokens, self.begin_index = list(begin_suppress_tokens), begin_index

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] != self.begin_index:
            return scores
        scores = scores.copy()
        scores[:, [t for t in self.begin_suppress_tokens if t < scores.shape[-1]]] = -np.inf
        return scores


class LogitNormalization(LogitsProcessor):
    """A log-softmax over the vocabulary: the scores become log-probabilities again (``renormalize_logits``)."""

    def __call__(self, input_ids, scores):
        return log_softmax(scores)


class TemperatureLogitsWarper(LogitsProcessor):
    """Divide the scores by the temperature: < 1 sharpens the distribution, > 1 flattens it."""

    def __init__(self, temperature: float):
        low, high = TEMPERATURE_LIMITS  # (why these: see generation/config.py)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not low <= temperature <= high:
            raise ValueError(f"temperature={temperature} cannot divide float32 scores: it must be in "
                             f"[{low:.4g}, {high:.4g}]")
        self.temperature = temperature

    def __call__(self, input_ids, scores):
        t = np.float32(self.temperature)
        try:
            with np.errstate(over="raise"):  # (no extra pass over the scores: the division itself says so)
                return scores / t
        except FloatingPointError:
            # A tiny temperature made some score overflow (e.g. GPT-2's +-100 over 1e-37). Shifting each row by
            # its highest score first changes no probability (softmax ignores a shift) and leaves only scores <= 0,
            # whose overflow is -inf: a token ruled out, as it would be by any sampler at such a temperature.
            finite = np.where(np.isfinite(scores), scores, -np.inf)
            top = finite.max(axis=-1, keepdims=True)
            with np.errstate(over="ignore"):
                return (scores - np.where(np.isfinite(top), top, np.float32(0))) / t


class TopKLogitsWarper(LogitsProcessor):
    """Keep the ``top_k`` highest scores (and any tied with the k-th), rule out the rest."""

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        if not top_k > 0:
            raise ValueError(f"top_k must be > 0, got {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        V = scores.shape[-1]
        k = min(self.top_k, V)
        kth_best = np.partition(scores, V - k, axis=-1)[:, V - k: V - k + 1]  # [N, 1]
        return np.where(scores < kth_best, -np.inf, scores).astype(scores.dtype)


class TopPLogitsWarper(LogitsProcessor):
    """Nucleus sampling: keep the most likely tokens whose probabilities first add up to ``top_p``, rule out the rest.

    As HF: sort ascending, and drop tokens while the running total of probability is <= 1 - top_p.
    """

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        if not 0 <= top_p <= 1:  # 0 keeps min_tokens_to_keep tokens, as in HF
            raise ValueError(f"top_p must be in [0, 1], got {top_p}")
        self.top_p, self.min_tokens_to_keep = top_p, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        order = np.argsort(scores, axis=-1, kind="stable")  # ascending
        ascending = np.take_along_axis(scores, order, axis=-1)
        cumulative = np.cumsum(softmax(ascending), axis=-1)
        drop_sorted = cumulative <= 1 - self.top_p
        drop_sorted[:, -self.min_tokens_to_keep:] = False
        drop = np.empty_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)  # back to vocabulary order
        return np.where(drop, -np.inf, scores).astype(scores.dtype)


class TopHLogitsWarper(LogitsProcessor):
    """Top-H sampling (transformers 5): keep the likeliest tokens while the entropy they hold stays within ``top_h``
    times the entropy of the distribution, rule out the rest.

    Only the 100 best scores take part (transformers 5's cap): p is their softmax and H = -sum(p log p) its
    entropy. Going down from the likeliest token, a token is kept while the running total of -p log p, its own
    included, is <= top_h * H; the likeliest is always kept. A token whose p is 0 in float32 is ruled out
    (transformers computes its 0 * log 0 as NaN, which fails the test).

    The numbers are formed as transformers forms them (torch's Categorical): log p = score - log-normaliser, the
    normaliser being the best score plus log sum exp(score - best), H from those log p and the running total from
    log(p) summed in float64. For a very sure distribution, H is mostly rounding of the best token's log p, so the
    same rounding is needed to cut where transformers cuts. At top_h = 1 the last tokens' running total is H itself,
    and rounding alone decides whether they are kept (in transformers too). Equal scores come in the order
    transformers' torch.topk gives them (ties.py replays it, for the rows that have some): where the cut falls
    between equal scores, or the 100th and 101st are equal, it decides which of them are kept.
    """

    TOP_N = 100

    def __init__(self, top_h: float):
        if not 0 < top_h <= 1:
            raise ValueError(f"top_h must be in (0, 1] (the share of the entropy kept), got {top_h}")
        self.top_h = top_h

    def __call__(self, input_ids, scores):
        n = min(self.TOP_N, scores.shape[-1])
        ranked = np.argsort(-scores, axis=-1, kind="stable")[:, :n + 1]  # the n best ids, best first, and the next
        best = ranked[:, :n]  # [N, n]
        ranked_scores = np.take_along_axis(scores, ranked, axis=-1)
        for row in np.flatnonzero(((ranked_scores[:, 1:] == ranked_scores[:, :-1]) & (ranked_scores[:, 1:] > -np.inf))
                                  .any(axis=-1)):  # equal scores: in torch.topk's order (ties.py), as transformers
            best[row] = torch_topk_order(scores[row], n)
        top = np.take_along_axis(scores, best, axis=-1)
        log_p = top - (top[:, :1] + np.log(np.exp(top - top[:, :1]).sum(axis=-1, keepdims=True)))
        p = softmax(log_p)
        with np.errstate(divide="ignore", invalid="ignore"):  # (log 0: the tokens of p = 0, left out)
            terms = np.where(p > 0, -p * np.log(p), np.float32(0))  # each token's -p log p
        entropy = -(np.maximum(log_p, np.finfo(np.float32).min) * p).sum(axis=-1, keepdims=True)  # H, [N, 1]
        running = np.cumsum(terms, axis=-1, dtype=np.float64).astype(np.float32)
        keep_sorted = (running <= entropy * np.float32(self.top_h)) & (p > 0)
        keep_sorted[:, 0] = True
        keep = np.zeros(scores.shape, bool)
        np.put_along_axis(keep, best, keep_sorted, axis=-1)  # back to vocabulary order
        return np.where(keep, scores, -np.inf).astype(scores.dtype)


class MinPLogitsWarper(LogitsProcessor):
    """Keep the tokens at least ``min_p`` times as likely as the most likely one (min-p sampling)."""

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        if not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        self.min_p, self.min_tokens_to_keep = min_p, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        probs = softmax(scores)
        drop = probs < self.min_p * probs.max(axis=-1, keepdims=True)
        return _keep_best(scores, drop, self.min_tokens_to_keep)


class TypicalLogitsWarper(LogitsProcessor):
    """Locally typical sampling: keep the tokens whose surprise -log p is closest to the distribution's entropy,
    until their probabilities add up to ``mass``."""

    def __init__(self, mass: float, min_tokens_to_keep: int = 1):
        if not 0 < mass < 1:
            raise ValueError(f"typical_p must be in (0, 1), got {mass}")
        self.mass, self.min_tokens_to_keep = mass, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        logp = log_softmax(scores)
        p = np.exp(logp)
        with np.errstate(invalid="ignore"):  # ruled-out tokens: -inf * 0 is NaN, which nansum skips (as HF)
            entropy = -np.nansum(logp * p, axis=-1, keepdims=True)
        distance = np.abs(-logp - entropy)  # [N, V]: how far each token's surprise is from the typical one
        order = np.argsort(distance, axis=-1, kind="stable")  # most typical first
        cumulative = np.cumsum(softmax(np.take_along_axis(scores, order, axis=-1)), axis=-1)
        last = np.minimum((cumulative < self.mass).sum(axis=-1), scores.shape[-1] - 1)  # [N]
        sorted_distance = np.take_along_axis(distance, order, axis=-1)
        drop_sorted = sorted_distance > np.take_along_axis(sorted_distance, last[:, None], axis=-1)
        drop_sorted[:, :self.min_tokens_to_keep] = False
        drop = np.empty_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        return np.where(drop, -np.inf, scores).astype(scores.dtype)


class EpsilonLogitsWarper(LogitsProcessor):
    """Rule out the tokens whose probability is below ``epsilon`` (epsilon sampling)."""

    def __init__(self, epsilon: float, min_tokens_to_keep: int = 1):
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon_cutoff must be in (0, 1), got {epsilon}")
        self.epsilon, self.min_tokens_to_keep = epsilon, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        return _keep_best(scores, softmax(scores) < self.epsilon, self.min_tokens_to_keep)


class EtaLogitsWarper(LogitsProcessor):
    """Eta sampling: rule out the tokens below min(epsilon, sqrt(epsilon) * exp(-entropy))."""

    def __init__(self, epsilon: float, min_tokens_to_keep: int = 1):
        if not 0 < epsilon < 1:
            raise ValueError(f"eta_cutoff must be in (0, 1), got {epsilon}")
        self.epsilon, self.min_tokens_to_keep = epsilon, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        logp = log_softmax(scores)
        p = np.exp(logp)
        with np.errstate(invalid="ignore"):  # ruled-out tokens (-inf * 0) add nothing to the entropy
            entropy = -np.sum(np.where(p > 0, p * logp, 0.0), axis=-1, keepdims=True)
        eta = np.minimum(np.float32(self.epsilon), np.sqrt(np.float32(self.epsilon)) * np.exp(-entropy))
        return _keep_best(scores, p < eta, self.min_tokens_to_keep)


def _keep_best(scores, drop, min_tokens_to_keep):
    """Rule out the tokens in ``drop``, but never the ``min_tokens_to_keep`` best of a row."""
    k = min(min_tokens_to_keep, scores.shape[-1])
    kth_best = -np.partition(-scores, k - 1, axis=-1)[:, k - 1:k]
    return np.where(drop & (scores < kth_best), -np.inf, scores).astype(scores.dtype)


def build_logits_processors(cfg, prompt_length, eos, extra=None, prefix_allowed_tokens_fn=None, prompt_ids=None
                            ) -> LogitsProcessorList:
    """generate's chain for the settings ``cfg``, in HF's order (transformers 4.57's ``_get_logits_processor``):
    biases, penalties and bans, then the caller's ``extra`` processors (one of the same class as a built-in
    replaces it there; the others follow), then, when sampling, the warpers, and last the renormalisation.
    ``prompt_ids`` [B, T]: the prompts as ids, for the encoder_* settings (None: a prompt given as embeddings)."""
    processors = LogitsProcessorList()
    if cfg.sequence_bias is not None:
        processors.append(SequenceBiasLogitsProcessor(cfg.sequence_bias))
    encoder = _encoder_processors(cfg, prompt_ids)
    if "penalty" in encoder:
        processors.append(encoder["penalty"])
    if cfg.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty))
    if cfg.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(cfg.no_repeat_ngram_size))
    if "ngrams" in encoder:
        processors.append(encoder["ngrams"])
    if cfg.bad_words_ids is not None:
        processors.append(NoBadWordsLogitsProcessor(cfg.bad_words_ids, eos))
    if eos and cfg.min_length > 0:
        processors.append(MinLengthLogitsProcessor(cfg.min_length, eos))
    if eos and cfg.min_new_tokens:
        processors.append(MinNewTokensLengthLogitsProcessor(prompt_length, cfg.min_new_tokens, eos))
    if prefix_allowed_tokens_fn is not None:
        if not callable(prefix_allowed_tokens_fn):
            raise TypeError(f"prefix_allowed_tokens_fn must be a function (batch_id, input_ids) -> list of allowed "
                            f"token ids, got {prefix_allowed_tokens_fn!r}")
        processors.append(PrefixConstrainedLogitsProcessor(prefix_allowed_tokens_fn, cfg.num_beams))
    if cfg.forced_bos_token_id is not None:
        processors.append(ForcedBOSTokenLogitsProcessor(cfg.forced_bos_token_id))
    if cfg.forced_eos_token_id is not None:
        processors.append(ForcedEOSTokenLogitsProcessor(cfg.max_length, cfg.forced_eos_token_id))
    if cfg.remove_invalid_values:
        processors.append(InfNanRemoveLogitsProcessor())
    if cfg.exponential_decay_length_penalty is not None:
        processors.append(ExponentialDecayLengthPenalty(cfg.exponential_decay_length_penalty, eos, prompt_length))
    if cfg.suppress_tokens is not None:
        processors.append(SuppressTokensLogitsProcessor(cfg.suppress_tokens))
    if cfg.begin_suppress_tokens is not None:
        # HF: after a prompt of at most one id with a forced bos (which comes when the ids are one token long: after
        # a one-token prompt, or second for a prompt given as inputs_embeds alone), the first free token follows it
        begin = prompt_length + 1 if prompt_length <= 1 and cfg.forced_bos_token_id is not None else prompt_length
        processors.append(SuppressTokensAtBeginLogitsProcessor(cfg.begin_suppress_tokens, begin))
    if extra is not None:
        if not isinstance(extra, (list, tuple)) or not all(callable(p) for p in extra):
            raise TypeError(f"logits_processor must be a list of callables f(input_ids, scores) -> scores, e.g. "
                            f"[my_processor] or LogitsProcessorList([...]); got {extra!r}")
        merged = LogitsProcessorList(next((p for p in extra if is_kind(p, type(built))), built) for built in processors)
        processors = merged + [p for p in extra if not any(p is q for q in merged)]
        processors = LogitsProcessorList(_TorchProcessor(p) if _from_transformers(p) else p for p in processors)
    if cfg.do_sample:
        # Beam sampling must keep a non-eos candidate per beam besides the eos ones (HF: 2 without eos).
        keep = (len(eos) + 1 if eos else 2) if cfg.num_beams > 1 else 1
        processors.extend(sampling_warpers(cfg, min_tokens_to_keep=keep))
    if cfg.renormalize_logits:
        processors.append(LogitNormalization())
    return LogitsProcessorList(processors)


def _encoder_processors(cfg, prompt_ids) -> dict:
    """The processors of ``encoder_repetition_penalty`` ("penalty") and ``encoder_no_repeat_ngram_size`` ("ngrams"),
    which transformers 4.57 applies to a decoder-only model's prompt ids too (not to inputs_embeds: a warning)."""
    settings = {"penalty": ("encoder_repetition_penalty", cfg.encoder_repetition_penalty != 1.0),
                "ngrams": ("encoder_no_repeat_ngram_size", cfg.encoder_no_repeat_ngram_size > 0)}
    built = {}
    for key, (name, on) in settings.items():
        if not on:
            continue
        if prompt_ids is None:
            warnings.warn(f"{name} reads the prompt's token ids, and the prompt was given as inputs_embeds: ignored, "
                          f"as in transformers", UserWarning, stacklevel=4)
        elif key == "penalty" and (cfg.num_beams > 1 or cfg.num_return_sequences > 1):
            raise ValueError(f"encoder_repetition_penalty={cfg.encoder_repetition_penalty} works on one row per "
                             f"prompt: minigpt2 refuses it with num_beams > 1 or num_return_sequences > 1 (transformers "
                             f"4.57 applies it to the first rows only, not to each prompt's beams); use "
                             f"repetition_penalty there")
        elif key == "penalty":
            built[key] = EncoderRepetitionPenaltyLogitsProcessor(cfg.encoder_repetition_penalty, prompt_ids)
        else:
            built[key] = EncoderNoRepeatNGramLogitsProcessor(cfg.encoder_no_repeat_ngram_size, prompt_ids)
    return built


def _from_transformers(processor) -> bool:
    """Is ``processor`` one of transformers' (or a subclass of one), written for torch tensors?"""
    return any(cls.__module__.split(".")[0] == "transformers" for cls in type(processor).__mro__)


def is_kind(obj, cls) -> bool:
    """Is ``obj`` a ``cls`` as generate() merges a caller's processors and stopping criteria with its own (HF: the
    same class)? transformers' class of the same name counts as minigpt2's: it does the same."""
    return type(obj) is cls or (_from_transformers(obj) and type(obj).__name__ == cls.__name__)


def call_with_torch(fn, input_ids, scores, **kwargs):
    """fn(ids, scores) for a transformers processor or stopping criterion, written for torch: the ids and scores go
    in as torch tensors (scores may be None), and a tensor it returns comes back as a NumPy array."""
    import torch

    ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64))
    out = fn(ids, None if scores is None else torch.from_numpy(np.array(scores, dtype=np.float32)), **kwargs)
    return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out


class _TorchProcessor(LogitsProcessor):
    """A transformers logits processor in minigpt2's chain (call_with_torch)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, input_ids, scores):
        return call_with_torch(self.processor, input_ids, scores)

    def __repr__(self):
        return repr(self.processor)


def sampling_warpers(cfg, min_tokens_to_keep=1) -> LogitsProcessorList:
    """The warpers that sampling with ``cfg`` applies (temperature, top-h, top-k, top-p, min-p, typical, epsilon,
    eta: transformers 5's order). Top-H keeps no minimum of tokens for beam sampling, as in transformers 5."""
    keep = min_tokens_to_keep
    warpers = LogitsProcessorList()
    if cfg.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(cfg.temperature))
    if cfg.top_h is not None:
        warpers.append(TopHLogitsWarper(cfg.top_h))
    if cfg.top_k:
        warpers.append(TopKLogitsWarper(cfg.top_k, min_tokens_to_keep=keep))
    if cfg.top_p < 1.0:
        warpers.append(TopPLogitsWarper(cfg.top_p, min_tokens_to_keep=keep))
    if cfg.min_p is not None:
        warpers.append(MinPLogitsWarper(cfg.min_p, min_tokens_to_keep=keep))
    if cfg.typical_p < 1.0:
        warpers.append(TypicalLogitsWarper(cfg.typical_p, min_tokens_to_keep=keep))
    if 0 < cfg.epsilon_cutoff < 1:
        warpers.append(EpsilonLogitsWarper(cfg.epsilon_cutoff, min_tokens_to_keep=keep))
    if 0 < cfg.eta_cutoff < 1:
        warpers.append(EtaLogitsWarper(cfg.eta_cutoff, min_tokens_to_keep=keep))
    return warpers
