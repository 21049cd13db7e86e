"""Text generation: ``model.generate(input_ids, ...)`` with Hugging Face's arguments, defaults and results.

Every strategy is the same loop:

    logits = model(prompt)                      # once, filling the KV cache
    repeat:
        scores = processors(ids, logits[:, -1]) # penalties, then (when sampling) temperature, top-k, top-p
        token  = choose(scores)                 # argmax (greedy), a draw (sampling), or the best beams
        ids    = ids + [token]
        logits = model(token, past=cache)       # one token in, one position of work

    until every sequence has produced an end-of-sequence token or ``max_length`` tokens exist.

Strategies (chosen by the arguments, as in HF):
    greedy          num_beams=1, do_sample=False   the most likely token each step
    sampling        num_beams=1, do_sample=True    a random token, drawn from the processed distribution
    beam search     num_beams>1                    keep the ``num_beams`` most likely sequences so far
                                                   (with do_sample=True: draw the candidates instead)

Greedy and beam search give the same tokens as transformers' ``generate`` on the same checkpoint. Sampling
uses NumPy's random generator, not torch's: reproducible for a given ``seed``, but different draws from HF.
"""
from __future__ import annotations

import copy
import difflib
import json
import os
import warnings
from dataclasses import dataclass, fields
from typing import Optional, Tuple

import numpy as np

from .layers import log_softmax, softmax  # -inf scores (filtered tokens) get probability 0
from .outputs import ModelOutput

GENERATION_CONFIG_NAME = "generation_config.json"

__all__ = [
    "GenerationConfig",
    "GenerationMixin",
    "LogitsProcessorList",
    "RepetitionPenaltyLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor",
    "NoBadWordsLogitsProcessor",
    "ForcedEOSTokenLogitsProcessor",
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "MinPLogitsWarper",
    "TypicalLogitsWarper",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "GenerateDecoderOnlyOutput",
    "GenerateBeamDecoderOnlyOutput",
]


# ------------------------------------------------------------------------------------------------------------
# 1. The settings: HF's GenerationConfig fields, with HF's defaults.
# ------------------------------------------------------------------------------------------------------------

@dataclass
class GenerationConfig:
    """What ``generate`` does, with HF's names and defaults. Any field can also be passed to ``generate``.

    Lengths count the prompt: ``max_length=20`` (HF's default) means prompt + new tokens <= 20.
    ``max_new_tokens``, when set, wins over ``max_length``; ``min_new_tokens`` over ``min_length``.
    """

    max_length: int = 20
    max_new_tokens: Optional[int] = None
    min_length: int = 0
    min_new_tokens: Optional[int] = None
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: Optional[int] = 50
    top_p: float = 1.0
    min_p: Optional[float] = None
    typical_p: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    bad_words_ids: Optional[list] = None  # token sequences never to generate: [[id, ...], ...]
    length_penalty: float = 1.0
    early_stopping: object = False  # True, False or "never", as in HF
    num_return_sequences: int = 1
    use_cache: bool = True
    output_scores: bool = False
    output_logits: bool = False
    return_dict_in_generate: bool = False
    bos_token_id: Optional[int] = None
    eos_token_id: object = None  # an int, a list of ints, or None
    pad_token_id: Optional[int] = None
    forced_eos_token_id: object = None  # an int or a list of ints: forced as the last token at max_length

    @classmethod
    def from_model_config(cls, config) -> "GenerationConfig":
        """The special tokens come from the model's config (GPT-2: bos = eos = 50256, no pad)."""
        return cls(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                   pad_token_id=config.pad_token_id)

    @classmethod
    def from_dict(cls, config_dict: dict) -> "GenerationConfig":
        """From the fields of a generation_config.json; metadata ("transformers_version", "_...") is skipped, and
        settings minigpt2's generate does not implement are ignored with a warning."""
        names = {f.name for f in fields(cls)}
        ignored = sorted(k for k in config_dict if k not in names and not k.startswith("_")
                         and k != "transformers_version")
        if ignored:
            warnings.warn(f"generation config settings {ignored} are not implemented by minigpt2's generate and are "
                          f"ignored", UserWarning, stacklevel=3)
        return cls(**{k: v for k, v in config_dict.items() if k in names})

    @classmethod
    def from_pretrained(cls, name_or_path, config_file_name=GENERATION_CONFIG_NAME, **hub_kwargs):
        """generation_config.json of a checkpoint: a directory, the file itself, or a Hub repository."""
        from .config import read_json_object
        from .hub import resolve_file

        name_or_path = os.fspath(name_or_path)
        path = name_or_path if os.path.isfile(name_or_path) else resolve_file(name_or_path, config_file_name,
                                                                             **hub_kwargs)
        config = cls.from_dict(read_json_object(path))
        config.validate()
        return config

    def save_pretrained(self, save_directory, config_file_name=GENERATION_CONFIG_NAME):
        """Write generation_config.json (the settings that differ from the defaults), as HF does."""
        os.makedirs(save_directory, exist_ok=True)
        changed = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        with open(os.path.join(save_directory, config_file_name), "w", encoding="utf-8") as f:
            json.dump(changed, f, indent=2, sort_keys=True)
            f.write("\n")

    def update(self, **kwargs) -> dict:
        """Set the fields named in ``kwargs``; return the arguments that are not fields (HF's contract)."""
        names = {f.name for f in fields(self)}
        for key in [k for k in kwargs if k in names]:
            setattr(self, key, kwargs.pop(key))
        return kwargs

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self):
        """Raise ValueError naming the field and what it may be."""
        for f in fields(self):  # None means "not set", as in HF: the default applies (top_k=None: no top-k)
            if getattr(self, f.name) is None and f.default is not None and f.name != "top_k":
                setattr(self, f.name, f.default)
        _check_int("max_length", self.max_length, low=1)
        _check_int("max_new_tokens", self.max_new_tokens, low=1, optional=True)
        _check_int("min_length", self.min_length, low=0)
        _check_int("min_new_tokens", self.min_new_tokens, low=0, optional=True)
        _check_int("num_beams", self.num_beams, low=1)
        _check_int("num_return_sequences", self.num_return_sequences, low=1)
        _check_int("no_repeat_ngram_size", self.no_repeat_ngram_size, low=0)
        _check_int("top_k", self.top_k, low=0, optional=True)
        for name in ("do_sample", "use_cache", "output_scores", "output_logits", "return_dict_in_generate"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        t = _check_float("temperature", self.temperature)
        if self.do_sample and not t > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {t}; for the most likely token at each "
                             f"step use greedy decoding (do_sample=False)")
        p = _check_float("top_p", self.top_p)
        if not 0 < p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 keeps every token), got {p}")
        if self.min_p is not None and not 0 <= _check_float("min_p", self.min_p) <= 1:
            raise ValueError(f"min_p must be in [0, 1] or None, got {self.min_p}")
        if not 0 < _check_float("typical_p", self.typical_p) <= 1:
            raise ValueError(f"typical_p must be in (0, 1] (1 = off), got {self.typical_p}")
        for name in ("epsilon_cutoff", "eta_cutoff"):
            if not 0 <= _check_float(name, getattr(self, name)) < 1:
                raise ValueError(f"{name} must be in [0, 1) (0 = off), got {getattr(self, name)}")
        if self.bad_words_ids is not None:
            words = self.bad_words_ids
            if not (isinstance(words, (list, tuple)) and words and all(
                    isinstance(w, (list, tuple)) and w and all(isinstance(t, (int, np.integer)) and not
                                                               isinstance(t, bool) and t >= 0 for t in w)
                    for w in words)):
                raise ValueError(f"bad_words_ids must be a non-empty list of non-empty lists of token ids (e.g. "
                                 f"tokenizer(words, add_special_tokens=False).input_ids), got {words!r}")
        for token in _as_token_list(self.forced_eos_token_id):
            _check_int("forced_eos_token_id", token, low=0)
        if not _check_float("repetition_penalty", self.repetition_penalty) > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = no penalty, > 1 discourages repeats), "
                             f"got {self.repetition_penalty}")
        _check_float("length_penalty", self.length_penalty)
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        for name in ("bos_token_id", "pad_token_id"):
            _check_int(name, getattr(self, name), low=0, optional=True)
        for eos in _as_token_list(self.eos_token_id):
            _check_int("eos_token_id", eos, low=0)
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError(f"num_return_sequences={self.num_return_sequences} needs sampling (do_sample=True) "
                             f"or beam search (num_beams >= num_return_sequences): greedy decoding has one answer")
        if self.num_return_sequences > self.num_beams > 1:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams "
                             f"({self.num_beams}): beam search returns its best beams")

    def warn_unused(self):
        """HF's warnings for settings that the chosen strategy ignores."""
        if not self.do_sample:
            unused = [f"{name}={getattr(self, name)}" for name, default in
                      (("temperature", 1.0), ("top_p", 1.0), ("top_k", 50)) if getattr(self, name) != default]
            if unused:
                warnings.warn(f"{', '.join(unused)} only matter(s) when sampling; set do_sample=True to sample "
                              f"(greedy and beam search ignore it)", UserWarning, stacklevel=4)
        if self.num_beams == 1 and (self.length_penalty != 1.0 or self.early_stopping is not False):
            warnings.warn("length_penalty and early_stopping only matter in beam search (num_beams > 1)",
                          UserWarning, stacklevel=4)


def _check_int(name, value, *, low, optional=False):
    if value is None and optional:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer{' or None' if optional else ''}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _check_float(name, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _as_token_list(ids) -> list:
    """None, one id or a list of ids -> a list (validate() checks that they are integers)."""
    if ids is None:
        return []
    if hasattr(ids, "tolist") and not isinstance(ids, np.ndarray):  # a NumPy scalar or a torch tensor
        ids = ids.tolist()
    if isinstance(ids, (list, tuple, np.ndarray)):
        return [x.item() if isinstance(x, np.generic) else x for x in np.ravel(np.asarray(ids, dtype=object))]
    return [ids]


# ------------------------------------------------------------------------------------------------------------
# 2. Logits processors: functions of (ids so far [N, L], scores [N, V]) -> new scores [N, V].
#    Same names, formulas and order as HF's. The "warpers" (temperature, top-k, top-p) run only when sampling.
#    A token is ruled out by setting its score to -inf.
# ------------------------------------------------------------------------------------------------------------

class LogitsProcessorList(list):
    """Apply each processor in turn."""

    def __call__(self, input_ids, scores):
        for processor in self:
            new = processor(input_ids, scores)
            if not isinstance(new, np.ndarray) or new.shape != scores.shape:
                raise TypeError(f"logits processor {processor!r} returned {type(new).__name__} "
                                f"{getattr(new, 'shape', '')}; it must return the scores: an array of shape {scores.shape}")
            scores = new
        return scores


class RepetitionPenaltyLogitsProcessor:
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


class NoRepeatNGramLogitsProcessor:
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


class MinLengthLogitsProcessor:
    """Forbid the end-of-sequence tokens while the sequence (prompt included) is shorter than ``min_length``."""

    def __init__(self, min_length: int, eos_token_id):
        self.min_length, self.eos = min_length, _as_token_list(eos_token_id)

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] < self.min_length:
            scores = scores.copy()
            scores[:, self.eos] = -np.inf
        return scores


class MinNewTokensLengthLogitsProcessor:
    """Forbid the end-of-sequence tokens until ``min_new_tokens`` tokens follow the prompt."""

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id):
        self.prompt_length, self.min_new_tokens = prompt_length_to_skip, min_new_tokens
        self.eos = _as_token_list(eos_token_id)

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] - self.prompt_length < self.min_new_tokens:
            scores = scores.copy()
            scores[:, self.eos] = -np.inf
        return scores


class NoBadWordsLogitsProcessor:
    """Never complete one of ``bad_words_ids``: a one-token word is always ruled out, a longer one when the
    sequence ends with all of it but its last token. (As HF, a word that is just the eos token is not banned.)"""

    def __init__(self, bad_words_ids, eos_token_id=None):
        eos = _as_token_list(eos_token_id)
        self.words = [list(w) for w in bad_words_ids if not (len(w) == 1 and w[0] in eos)]

    def __call__(self, input_ids, scores):
        banned = np.zeros(scores.shape, bool)
        L = input_ids.shape[1]
        for *prefix, last in self.words:
            if len(prefix) > L:
                continue
            ends_with_prefix = (input_ids[:, L - len(prefix):] == prefix).all(axis=1) if prefix else True
            banned[:, last] |= ends_with_prefix
        return np.where(banned, -np.inf, scores).astype(scores.dtype)


class ForcedEOSTokenLogitsProcessor:
    """At the last position that ``max_length`` allows, only the eos token(s) may come."""

    def __init__(self, max_length: int, eos_token_id):
        self.max_length, self.eos = max_length, _as_token_list(eos_token_id)

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] != self.max_length - 1:
            return scores
        forced = np.full_like(scores, -np.inf)
        forced[:, self.eos] = 0
        return forced


class TemperatureLogitsWarper:
    """Divide the scores by the temperature: < 1 sharpens the distribution, > 1 flattens it."""

    def __init__(self, temperature: float):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def __call__(self, input_ids, scores):
        return scores / np.float32(self.temperature)


class TopKLogitsWarper:
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


class TopPLogitsWarper:
    """Nucleus sampling: keep the most likely tokens whose probabilities first add up to ``top_p``, rule out the rest.

    As HF: sort ascending, and drop tokens while the running total of probability is <= 1 - top_p.
    """

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
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


class MinPLogitsWarper:
    """Keep the tokens at least ``min_p`` times as likely as the most likely one (min-p sampling)."""

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        if not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        self.min_p, self.min_tokens_to_keep = min_p, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        probs = softmax(scores)
        drop = probs < self.min_p * probs.max(axis=-1, keepdims=True)
        return _keep_best(scores, drop, self.min_tokens_to_keep)


class TypicalLogitsWarper:
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


class EpsilonLogitsWarper:
    """Rule out the tokens whose probability is below ``epsilon`` (epsilon sampling)."""

    def __init__(self, epsilon: float, min_tokens_to_keep: int = 1):
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon_cutoff must be in (0, 1), got {epsilon}")
        self.epsilon, self.min_tokens_to_keep = epsilon, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        return _keep_best(scores, softmax(scores) < self.epsilon, self.min_tokens_to_keep)


class EtaLogitsWarper:
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


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be a non-negative int, a numpy.random.Generator or None, got {seed!r}")


# ------------------------------------------------------------------------------------------------------------
# 3. Beam search bookkeeping: the finished hypotheses of one prompt (HF's BeamHypotheses).
# ------------------------------------------------------------------------------------------------------------

class BeamHypotheses:
    """The best ``num_beams`` finished sequences of one prompt, by sum(log p) / generated_len ** length_penalty."""

    def __init__(self, num_beams, length_penalty, early_stopping, max_length):
        self.num_beams, self.length_penalty = num_beams, length_penalty
        self.early_stopping, self.max_length = early_stopping, max_length
        self.beams = []  # (score, token ids)
        self.worst_score = 1e9

    def add(self, ids, sum_logprobs, generated_len):
        score = sum_logprobs / (generated_len ** self.length_penalty)
        if len(self.beams) < self.num_beams or score > self.worst_score:
            self.beams.append((score, ids))
            if len(self.beams) > self.num_beams:
                ranked = sorted((s, i) for i, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs, cur_len, prompt_len):
        """Whether no running beam can beat the worst finished one (HF's three early_stopping rules)."""
        if len(self.beams) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping == "never" and self.length_penalty > 0:
            best_possible = best_sum_logprobs / (self.max_length - prompt_len) ** self.length_penalty
        else:  # False: HF's heuristic, as if the best running beam ended now
            best_possible = best_sum_logprobs / (cur_len - prompt_len) ** self.length_penalty
        return self.worst_score >= best_possible


# ------------------------------------------------------------------------------------------------------------
# 4. Results when return_dict_in_generate=True.
# ------------------------------------------------------------------------------------------------------------

@dataclass
class GenerateDecoderOnlyOutput(ModelOutput):
    sequences: np.ndarray = None
    scores: Optional[Tuple[np.ndarray, ...]] = None  # per step, the processed scores [N, V]
    logits: Optional[Tuple[np.ndarray, ...]] = None  # per step, the model's raw logits [N, V] (output_logits)
    past_key_values: Optional[object] = None  # the KV cache at the end (all tokens but the last)


@dataclass
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    sequences: np.ndarray = None
    sequences_scores: Optional[np.ndarray] = None  # the length-normalised score of each returned sequence
    scores: Optional[Tuple[np.ndarray, ...]] = None  # per step, the processed log-probabilities [N * beams, V]
    logits: Optional[Tuple[np.ndarray, ...]] = None  # per step, the model's raw logits [N * beams, V]
    past_key_values: Optional[object] = None  # the beams' KV cache at the end


# ------------------------------------------------------------------------------------------------------------
# 5. generate().
# ------------------------------------------------------------------------------------------------------------

class GenerationMixin:
    """Adds ``generate`` to a model with a ``transformer`` (GPT2Model) and a language-modelling head tied to wte."""

    @property
    def generation_config(self) -> GenerationConfig:
        """The defaults ``generate`` starts from; change them here or pass fields to ``generate``."""
        if self.__dict__.get("_generation_config") is None:
            self._generation_config = GenerationConfig.from_model_config(self.config)
        return self._generation_config

    @generation_config.setter
    def generation_config(self, value):
        if not isinstance(value, GenerationConfig):
            raise TypeError(f"generation_config must be a GenerationConfig, got {type(value).__name__}")
        self._generation_config = value

    def generate(self, inputs=None, generation_config=None, logits_processor=None, streamer=None, *, seed=None,
                 **kwargs):
        """Continue the prompts in ``inputs`` ([B, T] token ids).  # -> [B * num_return_sequences, L] ids

        Arguments are HF's: any GenerationConfig field (max_new_tokens, do_sample, temperature, top_k, top_p,
        num_beams, ...), ``attention_mask`` for left-padded batches, ``logits_processor`` (extra processors,
        applied after the built-in ones and before temperature/top-k/top-p), and ``streamer`` (gets the
        prompt, then each new token, then ``end()``; batch size 1, not with beam search). ``seed`` (an int or
        a numpy Generator) makes sampling reproducible.

        Returns the prompts followed by the new tokens; sequences that end early are filled with
        ``pad_token_id`` (GPT-2 has none, so eos is used, as HF does).
        """
        cfg, model_kwargs = self._merged_generation_config(generation_config, kwargs)
        input_ids, attention_mask = self._prepare_inputs(inputs, model_kwargs, cfg)
        B, T = input_ids.shape

        eos = _as_token_list(cfg.eos_token_id)
        if cfg.pad_token_id is None and eos:
            cfg.pad_token_id = eos[0]  # HF: "Setting pad_token_id to eos_token_id for open-end generation"
        if cfg.max_new_tokens is not None:
            cfg.max_length = T + cfg.max_new_tokens
        if cfg.min_new_tokens is not None:
            cfg.min_length = T + cfg.min_new_tokens  # HF: min_new_tokens replaces min_length
        if cfg.min_new_tokens is None and cfg.min_length > cfg.max_length:
            warnings.warn(f"min_length ({cfg.min_length}) is larger than max_length ({cfg.max_length}): generation "
                          f"stops at max_length", UserWarning, stacklevel=2)
        default_length = "max_length" not in kwargs and cfg.max_new_tokens is None and cfg.max_length == 20
        self._check_lengths(cfg, T, default_length)
        V = self.config.vocab_size
        bad_words = [t for word in cfg.bad_words_ids or [] for t in word]
        for name, ids in (("eos_token_id", eos), ("pad_token_id", [cfg.pad_token_id]), ("bad_words_ids", bad_words),
                          ("forced_eos_token_id", _as_token_list(cfg.forced_eos_token_id))):
            if any(i is not None and i >= V for i in ids):
                raise ValueError(f"{name}={getattr(cfg, name)} is outside this model's vocabulary [0, {V})")
        if streamer is not None and (cfg.num_beams > 1 or B * cfg.num_return_sequences > 1):
            raise ValueError("a streamer follows one sequence: use it with a single prompt, num_beams=1 and "
                             "num_return_sequences=1")
        processors = self._logits_processors(cfg, T, eos, logits_processor)
        if cfg.num_beams == 1:
            return self._greedy_or_sample(input_ids, attention_mask, cfg, processors, eos, _rng(seed), streamer)
        return self._beam_search(input_ids, attention_mask, cfg, processors, eos, _rng(seed))

    # -- preparing ----------------------------------------------------------------------------------------
    def _merged_generation_config(self, generation_config, kwargs):
        """A copy of the defaults (or of ``generation_config``) updated with kwargs; the rest are model inputs."""
        if generation_config is not None and not isinstance(generation_config, GenerationConfig):
            kind = type(generation_config)
            raise TypeError(f"generation_config must be a minigpt2.GenerationConfig, got {kind.__module__}."
                            f"{kind.__qualname__}; build one with minigpt2.GenerationConfig(max_new_tokens=..., ...)")
        cfg = copy.deepcopy(generation_config if generation_config is not None else self.generation_config)
        model_kwargs = cfg.update(**kwargs)
        if generation_config is not None:  # HF: special tokens not set there come from the model
            for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
                if getattr(cfg, name) is None:
                    setattr(cfg, name, getattr(self.generation_config, name))
        unknown = [k for k in model_kwargs if k not in ("input_ids", "attention_mask")]
        if unknown:
            allowed = [f.name for f in fields(GenerationConfig)] + ["input_ids", "attention_mask", "seed",
                                                                    "streamer", "logits_processor"]
            close = {k: difflib.get_close_matches(k, allowed, 1, cutoff=0.75) for k in unknown}
            hints = [f"{k!r} (did you mean {close[k][0]!r}?)" if close[k] else repr(k) for k in unknown]
            raise TypeError(f"generate() got unexpected argument(s) {', '.join(hints)}; it accepts: "
                            f"{', '.join(allowed)}")
        cfg.validate()
        cfg.warn_unused()
        return cfg, model_kwargs

    def _prepare_inputs(self, inputs, model_kwargs, cfg):
        """Token ids [B, T] and the attention mask [B, T] (1 = token, 0 = left padding)."""
        if inputs is not None and model_kwargs.get("input_ids") is not None:
            raise ValueError("pass the prompt once: as the first argument or as input_ids=, not both")
        ids = inputs if inputs is not None else model_kwargs.get("input_ids")
        if ids is None:  # HF: no prompt means "start from the beginning-of-sequence token"
            if cfg.bos_token_id is None:
                raise ValueError("no input_ids given and the model has no bos_token_id to start from")
            ids = [[cfg.bos_token_id]]
        if isinstance(ids, (str, bytes)):
            raise TypeError("generate() takes token ids, not text: ids = tokenizer(text, return_tensors='np')"
                            ".input_ids")
        try:
            ids = np.asarray(ids)
        except ValueError:  # NumPy's "inhomogeneous shape": prompts of different lengths
            raise ValueError("input_ids must be a rectangular batch, but the prompts have different lengths: pad "
                             "them on the left and pass attention_mask (tokenizer.padding_side = 'left'; "
                             "tokenizer(texts, padding=True, return_tensors='np'))") from None
        if ids.dtype == object or ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
            if ids.size > 0:
                raise TypeError(f"input_ids must be integer token ids, got dtype {ids.dtype}")
        if ids.ndim != 2:
            raise ValueError(f"input_ids must have shape (batch, sequence_length), got shape {ids.shape}; "
                             f"for a single prompt use ids[None] or [ids]")
        if ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(f"input_ids is empty (shape {ids.shape}): give at least one token per prompt")
        V = self.config.vocab_size
        if ids.min() < 0 or ids.max() >= V:
            bad = ids[(ids < 0) | (ids >= V)].flat[0]
            raise ValueError(f"input_ids holds {bad}, outside this model's vocabulary [0, {V})")
        ids = ids.astype(np.int64)

        mask = model_kwargs.get("attention_mask")
        if mask is None:
            mask = np.ones(ids.shape, np.int64)
            # HF infers the mask from pad tokens only when pad differs from eos (GPT-2's pad is eos, so it cannot).
            eos = _as_token_list(cfg.eos_token_id)
            pad = cfg.pad_token_id if cfg.pad_token_id is not None else eos[0] if eos else None  # HF: eos stands in
            if cfg.pad_token_id is not None and cfg.pad_token_id not in eos and (ids == cfg.pad_token_id).any():
                mask = (ids != cfg.pad_token_id).astype(np.int64)
            elif ids.shape[0] > 1 and pad is not None and (ids[:, -1] == pad).any():
                warnings.warn("some prompts end in the pad token: if the batch is padded, pad on the left and pass "
                              "attention_mask (tokenizer.padding_side = 'left')", UserWarning, stacklevel=3)
        else:
            mask = np.asarray(mask)
            if mask.shape != ids.shape:
                raise ValueError(f"attention_mask has shape {mask.shape} but input_ids has {ids.shape}")
            if not np.isin(mask, (0, 1)).all():
                raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
            mask = mask.astype(np.int64)
            right_padded = np.flatnonzero(mask[:, -1] == 0)
            if right_padded.size:
                raise ValueError(
                    f"prompt {right_padded[0]} of the batch ends in padding (attention_mask is 0 in the last column): "
                    f"new tokens are appended after the last column, so pad on the left "
                    f"(tokenizer.padding_side = 'left')")
        return ids, mask

    def _check_lengths(self, cfg, prompt_length, default_length):
        n_positions = self.config.n_positions
        if cfg.max_length > n_positions:
            raise ValueError(f"max_length is {cfg.max_length} (prompt {prompt_length} + new tokens), but the model has "
                             f"positions for n_positions={n_positions} tokens; lower max_new_tokens or max_length")
        if prompt_length >= cfg.max_length:
            raise ValueError(f"the prompt is {prompt_length} tokens long but max_length is {cfg.max_length}, which "
                             f"counts the prompt: set max_new_tokens (the number of tokens to add) instead")
        if default_length:
            warnings.warn("using the default max_length=20 (prompt included); set max_new_tokens to choose how "
                          "many tokens to generate", UserWarning, stacklevel=3)

    def _logits_processors(self, cfg, prompt_length, eos, extra):
        """HF's processors, in HF's order; the warpers only when sampling."""
        processors = LogitsProcessorList()
        if cfg.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty))
        if cfg.no_repeat_ngram_size > 0:
            processors.append(NoRepeatNGramLogitsProcessor(cfg.no_repeat_ngram_size))
        if cfg.bad_words_ids is not None:
            processors.append(NoBadWordsLogitsProcessor(cfg.bad_words_ids, eos))
        if eos and cfg.min_length > 0:
            processors.append(MinLengthLogitsProcessor(cfg.min_length, eos))
        if eos and cfg.min_new_tokens:
            processors.append(MinNewTokensLengthLogitsProcessor(prompt_length, cfg.min_new_tokens, eos))
        if cfg.forced_eos_token_id is not None:
            processors.append(ForcedEOSTokenLogitsProcessor(cfg.max_length, cfg.forced_eos_token_id))
        if extra is not None:
            if callable(extra) or not all(callable(p) for p in extra):
                raise TypeError("logits_processor must be a list of callables f(input_ids, scores) -> scores, e.g. "
                                "[my_processor] or LogitsProcessorList([...])")
            processors.extend(extra)
        if cfg.do_sample:
            # Beam sampling must keep a non-eos candidate per beam besides the eos ones (HF: 2 without eos).
            keep = (len(eos) + 1 if eos else 2) if cfg.num_beams > 1 else 1
            if cfg.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(cfg.temperature))
            if cfg.top_k:
                processors.append(TopKLogitsWarper(cfg.top_k, min_tokens_to_keep=keep))
            if cfg.top_p < 1.0:
                processors.append(TopPLogitsWarper(cfg.top_p, min_tokens_to_keep=keep))
            if cfg.min_p is not None:
                processors.append(MinPLogitsWarper(cfg.min_p, min_tokens_to_keep=keep))
            if cfg.typical_p < 1.0:
                processors.append(TypicalLogitsWarper(cfg.typical_p, min_tokens_to_keep=keep))
            if 0 < cfg.epsilon_cutoff < 1:
                processors.append(EpsilonLogitsWarper(cfg.epsilon_cutoff, min_tokens_to_keep=keep))
            if 0 < cfg.eta_cutoff < 1:
                processors.append(EtaLogitsWarper(cfg.eta_cutoff, min_tokens_to_keep=keep))
        return processors

    # -- the model, one step ------------------------------------------------------------------------------
    def _next_token_logits(self, new_ids, past, attention_mask):
        """Run the new tokens through the model with the cache; return logits at the last position and the cache.

        new_ids [N, t] (the prompt, then one token); attention_mask [N, P + t] covers the cache too.
        Positions come from the mask, as in HF: the i-th real token of a row sits at position i, so
        left padding does not shift a prompt (pads get position 1; they are masked out anyway).
        """
        from .modeling import lm_head  # here, not at the top: modeling imports this module

        positions = np.cumsum(attention_mask, axis=-1) - 1
        positions = np.where(attention_mask == 0, 1, positions)[:, -new_ids.shape[1]:]  # [N, t]
        out = self.transformer(input_ids=new_ids, past_key_values=past, attention_mask=attention_mask,
                               position_ids=positions, use_cache=True, return_dict=True)
        # Only the last position's logits are needed: the head (V x E per position) runs on it alone.
        logits = lm_head(out.last_hidden_state[:, -1, :], self.params["wte"]["weight"])  # [N, V]
        return logits.astype(np.float32, copy=False), out.past_key_values

    # -- greedy and sampling ------------------------------------------------------------------------------
    def _greedy_or_sample(self, input_ids, mask, cfg, processors, eos, rng, streamer):
        n = cfg.num_return_sequences
        output_scores = cfg.return_dict_in_generate and cfg.output_scores
        # The prompt runs once per prompt; its cache and logits are then copied for each returned sequence.
        logits, past = self._next_token_logits(input_ids, None, mask)
        if n > 1:
            rows = np.repeat(np.arange(len(input_ids)), n)
            input_ids, mask, logits, past = input_ids[rows], mask[rows], logits[rows], past.reorder(rows)
        if streamer is not None:
            streamer.put(input_ids)

        unfinished = np.ones(len(input_ids), bool)
        all_scores, all_logits = [], []
        output_logits = cfg.return_dict_in_generate and cfg.output_logits
        while True:
            if output_logits:
                all_logits.append(logits)
            scores = processors(input_ids, logits)  # [N, V]
            if output_scores:
                all_scores.append(scores)
            next_tokens = sample(softmax(scores), rng) if cfg.do_sample else np.argmax(scores, axis=-1)
            if eos:  # a finished sequence is padded, not continued
                next_tokens = np.where(unfinished, next_tokens, cfg.pad_token_id)
            input_ids = np.concatenate([input_ids, next_tokens[:, None]], axis=1)
            mask = np.concatenate([mask, np.ones((len(mask), 1), mask.dtype)], axis=1)
            if streamer is not None:
                streamer.put(next_tokens)
            if eos:
                unfinished &= ~np.isin(next_tokens, eos)
            if not unfinished.any() or input_ids.shape[1] >= cfg.max_length:
                break
            if cfg.use_cache:
                logits, past = self._next_token_logits(input_ids[:, -1:], past, mask)
            else:  # the whole sequence again, every step: what the cache saves
                logits, _ = self._next_token_logits(input_ids, None, mask)
        if streamer is not None:
            streamer.end()
        if cfg.return_dict_in_generate:
            return GenerateDecoderOnlyOutput(sequences=input_ids, scores=tuple(all_scores) if output_scores else None,
                                             logits=tuple(all_logits) if output_logits else None,
                                             past_key_values=past if cfg.use_cache else None)
        return input_ids

    # -- beam search --------------------------------------------------------------------------------------
    def _beam_search(self, input_ids, mask, cfg, processors, eos, rng):
        """HF's beam search: per prompt, keep the ``num_beams`` best running sequences by summed log-probability,
        and the ``num_beams`` best finished ones by length-normalised score."""
        B, prompt_len = input_ids.shape
        K = cfg.num_beams
        logits, past = self._next_token_logits(input_ids, None, mask)
        rows = np.repeat(np.arange(B), K)  # each prompt becomes K beams, in consecutive rows
        input_ids, mask, logits, past = input_ids[rows], mask[rows], logits[rows], past.reorder(rows)

        hyps = [BeamHypotheses(K, cfg.length_penalty, cfg.early_stopping, cfg.max_length) for _ in range(B)]
        done = np.zeros(B, bool)
        # All beams start equal; -1e9 on beams 1..K-1 makes the first step pick K different tokens from beam 0.
        beam_scores = np.zeros((B, K), np.float32)
        beam_scores[:, 1:] = -1e9
        beam_scores = beam_scores.reshape(-1)
        n_candidates = max(2, 1 + len(eos)) * K  # enough that K of them are not eos
        output_scores = cfg.return_dict_in_generate and cfg.output_scores
        output_logits = cfg.return_dict_in_generate and cfg.output_logits
        all_scores, all_logits = [], []
        while True:
            V = logits.shape[-1]
            if output_logits:
                all_logits.append(logits)
            logprobs = processors(input_ids, log_softmax(logits))  # [B*K, V]
            if output_scores:
                all_scores.append(logprobs)
            totals = (logprobs + beam_scores[:, None]).reshape(B, K * V)  # every (beam, token) continuation
            if cfg.do_sample:
                # Draw the candidates without replacement, with probability softmax(totals): adding Gumbel
                # noise to the log-probabilities and taking the largest is exactly such a draw.
                noisy = log_softmax(totals) - np.log(-np.log(rng.random(totals.shape)))
                picked = np.argpartition(-noisy, n_candidates - 1, axis=-1)[:, :n_candidates]
            else:
                picked = np.argpartition(-totals, n_candidates - 1, axis=-1)[:, :n_candidates]
            order = np.argsort(-np.take_along_axis(totals, picked, axis=-1), axis=-1, kind="stable")
            picked = np.take_along_axis(picked, order, axis=-1)  # [B, 2K] (beam * V + token), best first
            cand_scores = np.take_along_axis(totals, picked, axis=-1)
            cand_beams, cand_tokens = picked // V, picked % V

            cur_len = input_ids.shape[1] + 1
            next_scores = np.zeros((B, K), np.float32)
            next_tokens = np.zeros((B, K), np.int64)
            next_rows = np.zeros((B, K), np.int64)
            for b in range(B):
                if done[b]:  # finished prompts idle: their beams carry padding until the others finish
                    next_tokens[b] = cfg.pad_token_id
                    next_rows[b] = b * K
                    continue
                kept = 0
                for rank in range(n_candidates):
                    row, token, score = b * K + cand_beams[b, rank], cand_tokens[b, rank], cand_scores[b, rank]
                    if token in eos:
                        if rank < K:  # only an eos among the K best candidates finishes a sequence
                            hyps[b].add(input_ids[row], float(score), generated_len=cur_len - prompt_len)
                    else:
                        next_scores[b, kept], next_tokens[b, kept], next_rows[b, kept] = score, token, row
                        kept += 1
                        if kept == K:
                            break
                done[b] = hyps[b].is_done(float(cand_scores[b].max()), cur_len, prompt_len)

            beam_scores = next_scores.reshape(-1)
            rows = next_rows.reshape(-1)
            input_ids = np.concatenate([input_ids[rows], next_tokens.reshape(-1, 1)], axis=1)
            mask = np.concatenate([mask[rows], np.ones((len(rows), 1), mask.dtype)], axis=1)
            if done.all() or input_ids.shape[1] >= cfg.max_length:
                break
            if np.array_equal(rows, np.arange(len(rows))):
                logits, past = self._next_token_logits(input_ids[:, -1:], past, mask)
            else:
                logits, past = self._next_token_logits(input_ids[:, -1:], past.reorder(rows), mask)

        # The running beams of unfinished prompts compete with the finished ones.
        for b in np.flatnonzero(~done):
            for row in range(b * K, (b + 1) * K):
                hyps[b].add(input_ids[row], float(beam_scores[row]), generated_len=input_ids.shape[1] - prompt_len)
        best, best_scores = [], []
        for h in hyps:
            ranked = sorted(h.beams, key=lambda beam: beam[0])
            for _ in range(cfg.num_return_sequences):
                score, ids = ranked.pop()
                best.append(ids)
                best_scores.append(score)
        # Stack them: shorter ones get eos (if it fits) and then padding, as in HF.
        width = min(max(len(ids) for ids in best) + 1, cfg.max_length)
        if cfg.pad_token_id is None and len({len(ids) for ids in best}) > 1:
            raise ValueError("beam search returned sequences of different lengths and there is no pad_token_id to "
                             "fill them with; pass pad_token_id")
        sequences = np.full((len(best), width), cfg.pad_token_id if cfg.pad_token_id is not None else 0, np.int64)
        for i, ids in enumerate(best):
            sequences[i, :len(ids)] = ids
            if len(ids) < width:
                sequences[i, len(ids)] = eos[0]
        if cfg.return_dict_in_generate:
            return GenerateBeamDecoderOnlyOutput(sequences=sequences,
                                                 sequences_scores=np.array(best_scores, np.float32),
                                                 scores=tuple(all_scores) if output_scores else None,
                                                 logits=tuple(all_logits) if output_logits else None,
                                                 past_key_values=past)
        return sequences
