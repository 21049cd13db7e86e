"""Stopping criteria: functions of (ids so far [N, L], scores) -> [N] bools, true for the rows that are done.

generate stops a row at its eos token or at max_length by itself; these add the other reasons, with HF's names:
``max_time`` (MaxTimeCriteria), ``stop_strings`` (StopStringCriteria) and the caller's ``stopping_criteria=``
(any callables with that signature; ``scores`` is the tuple of the scores so far with output_scores, else None).
A caller's MaxLengthCriteria or EosTokenCriteria replaces generate's own length or eos check, as in HF.

Stopping on strings: ``generate(stop_strings=[...], tokenizer=tok)``, as HF's StopStringCriteria decides.

A row stops when a stop string overlaps its newest token: it ends inside that token, wherever it starts
(before the token, or inside it; text may follow it in the token). So "stop" stops ["st", "op"],
["st", "opera"], ["las", "topper"] and ["xstop"], but not ["stop", "at"]: once the stop string lies wholly
before the newest token, it was seen (or not) at an earlier step.
"""
from __future__ import annotations

import time

import numpy as np

from .processors import _from_transformers, call_with_torch, is_kind


class StoppingCriteria:
    """Base class, as HF's: subclasses define ``__call__(input_ids, scores, **kwargs) -> [N] bools``."""

    def __call__(self, input_ids, scores=None, **kwargs) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define __call__(input_ids, scores) -> [N] bools")


class StoppingCriteriaList(list):
    """A row is done when any criterion says so."""

    def __call__(self, input_ids, scores=None, **kwargs) -> np.ndarray:
        done = np.zeros(len(input_ids), bool)
        for criterion in self:
            said = np.asarray(criterion(input_ids, scores, **kwargs))
            if said.dtype != bool or said.shape not in ((), (len(input_ids),)):
                raise TypeError(f"stopping criterion {criterion!r} returned {said.dtype} {said.shape}; it must "
                                f"return True/False or one bool per row: shape ({len(input_ids)},)")
            done = done | said
        return done


class MaxLengthCriteria(StoppingCriteria):
    """Every row is done once the sequences (prompt included) are ``max_length`` tokens long. generate checks
    max_length itself; passed in ``stopping_criteria`` this one adds a limit (the lower of the two applies).
    ``max_position_embeddings`` is accepted as in HF (which only warns past it)."""

    def __init__(self, max_length: int, max_position_embeddings=None):
        self.max_length, self.max_position_embeddings = max_length, max_position_embeddings

    def __call__(self, input_ids, scores=None, **kwargs) -> np.ndarray:
        return np.full(len(input_ids), np.shape(input_ids)[1] >= self.max_length)


class EosTokenCriteria(StoppingCriteria):
    """A row is done when its last token is one of ``eos_token_id`` (an id or a list of ids)."""

    def __init__(self, eos_token_id):
        self.eos_token_id = np.atleast_1d(np.asarray(eos_token_id, np.int64))

    def __call__(self, input_ids, scores=None, **kwargs) -> np.ndarray:
        return np.isin(np.asarray(input_ids)[:, -1], self.eos_token_id)


class MaxTimeCriteria(StoppingCriteria):
    """Every row is done once ``max_time`` seconds have passed since ``initial_timestamp`` (default: now)."""

    def __init__(self, max_time: float, initial_timestamp=None):
        self.max_time = max_time
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids, scores=None, **kwargs) -> np.ndarray:
        return np.full(len(input_ids), time.time() - self.initial_timestamp > self.max_time)


class StopStringCriteria(StoppingCriteria):
    """``criteria(input_ids [N, L]) -> [N]`` bools: which rows' last token overlaps a stop string."""

    def __init__(self, tokenizer, stop_strings):
        self.tokenizer = tokenizer
        self.stop_strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
        self.longest = max(len(s) for s in self.stop_strings)
        self._texts = {}  # token id -> its text, as the tokenizer decodes it alone

    def _text(self, token: int) -> str:
        if token not in self._texts:
            self._texts[token] = self.tokenizer.decode([token], skip_special_tokens=False,
                                                       clean_up_tokenization_spaces=False)
        return self._texts[token]

    def _row_stops(self, ids) -> bool:
        last = self._text(ids[-1])
        before, j = "", len(ids) - 2
        while len(before) < self.longest and j >= 0:  # enough text before the last token for any stop string
            before = self._text(ids[j]) + before
            j -= 1
        text = before + last
        # an occurrence that ends after the last token's start lies in the last len(last) + len(stop) - 1 chars
        return any(stop in text[max(0, len(text) - len(last) - len(stop) + 1):] for stop in self.stop_strings)

    def __call__(self, input_ids, scores=None, **kwargs) -> np.ndarray:
        return np.array([self._row_stops(row) for row in np.asarray(input_ids).tolist()], bool)


def builtin_overrides(extra):
    """HF 4.57 replaces its own max-length and eos criteria by the caller's of the same class: the max_length and
    the eos ids the caller's ``stopping_criteria`` set that way (None where they do not), and the other criteria.
    generate's loops check both themselves, so the caller's become their settings."""
    if not isinstance(extra, (list, tuple)):
        return None, None, extra  # (merge_criteria says what is wrong)
    max_length = next((c.max_length for c in extra if is_kind(c, MaxLengthCriteria)), None)
    eos = next((np.asarray(c.eos_token_id).tolist() for c in extra if is_kind(c, EosTokenCriteria)), None)
    rest = [c for c in extra if not (is_kind(c, MaxLengthCriteria) or is_kind(c, EosTokenCriteria))]
    return max_length, eos, rest


class _TorchCriterion(StoppingCriteria):
    """A transformers stopping criterion among generate's (processors.call_with_torch)."""

    def __init__(self, criterion):
        self.criterion = criterion

    def __call__(self, input_ids, scores=None, **kwargs) -> np.ndarray:
        return call_with_torch(self.criterion, input_ids, scores, **kwargs)

    def __repr__(self):
        return repr(self.criterion)


def merge_criteria(built, extra) -> StoppingCriteriaList:
    """generate's criteria: the built-in ones, the caller's ``extra`` replacing any of the same class (HF 4.57)."""
    if extra is None:
        return StoppingCriteriaList(built)
    if not isinstance(extra, (list, tuple)) or not all(callable(c) for c in extra):
        raise TypeError(f"stopping_criteria must be a list of callables f(input_ids, scores) -> [N] bools (e.g. "
                        f"StoppingCriteriaList([MaxTimeCriteria(5.0)])); got {extra!r}")
    merged = [next((c for c in extra if is_kind(c, type(b))), b) for b in built]
    criteria = merged + [c for c in extra if not any(c is m for m in merged)]
    return StoppingCriteriaList(_TorchCriterion(c) if _from_transformers(c) else c for c in criteria)
