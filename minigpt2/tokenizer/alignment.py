"""What HF's fast (Rust) tokenizer knows about each token of a row: its sequence (text or text_pair), its word and
its characters. BatchEncoding's word_ids(), tokens(), char_to_token(), ... read it. Also the fast tokenizer's
truncation: overlapping windows (return_overflowing_tokens with stride) and its split of a pair's budget.

A row is recorded cheaply as (sequence, position) per token; offsets and words are computed only when asked for.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from .offsets import as_matched, offsets_for_input


class SequenceSource:
    """One input text (or list of words) and its ids; its offsets and word ids, computed once when first needed."""

    def __init__(self, tokenizer, text, ids: List[int], o):
        self.tokenizer, self.text, self.ids, self.o = tokenizer, text, ids, o
        self._offsets = self._words = None

    @property
    def offsets(self) -> List[Tuple[int, int]]:
        if self._offsets is None:
            o = self.o
            self._offsets = offsets_for_input(self.tokenizer, self.text, self.ids, o.is_split_into_words,
                                              o.add_prefix_space, o.split_special_tokens)
        return self._offsets

    @property
    def words(self) -> List[int]:
        if self._words is None:
            o = self.o
            self._words = self.tokenizer._word_ids_of(self.text, o.is_split_into_words, o.add_prefix_space,
                                                      o.split_special_tokens)
        return self._words


class Alignment:
    """One row of a BatchEncoding as HF's tokenizers.Encoding describes it (the parts BatchEncoding uses)."""

    def __init__(self, tokenizer, ids: List[int], where: List[Optional[Tuple[int, int]]], sources):
        self._tokenizer, self._sources = tokenizer, sources
        self.ids, self._where = list(ids), where  # where[t]: (sequence, position in its ids), None: special or pad
        self._done = None

    def _compute(self):
        if self._done is None:
            tokens = [self._tokenizer._id_to_token(i) for i in self.ids]
            sequence_ids = [None if w is None else w[0] for w in self._where]
            word_ids = [None if w is None else self._sources[w[0]].words[w[1]] for w in self._where]
            offsets = [(0, 0) if w is None else self._sources[w[0]].offsets[w[1]] for w in self._where]
            if self._tokenizer.is_fast:  # an added token shows the text its match took, as HF's Rust tokenizer
                tokens = [t if w is None else as_matched(self._tokenizer, t, i, span, self._sources[w[0]].text)
                          for t, i, span, w in zip(tokens, self.ids, offsets, self._where)]
            self._done = (tokens, sequence_ids, word_ids, offsets)
            self._tokenizer = self._sources = None  # nothing left to compute: the row pickles as plain lists
        return self._done

    def __getstate__(self):
        return {"ids": self.ids, "_where": self._where, "_done": self._compute(), "_tokenizer": None, "_sources": None}

    tokens = property(lambda self: self._compute()[0])
    sequence_ids = property(lambda self: self._compute()[1])
    word_ids = property(lambda self: self._compute()[2])
    offsets = property(lambda self: self._compute()[3])

    def __len__(self) -> int:
        return len(self.ids)

    def token_to_sequence(self, token: int) -> Optional[int]:
        return self.sequence_ids[token] if 0 <= token < len(self) else None

    def token_to_word(self, token: int) -> Optional[int]:
        return self.word_ids[token] if 0 <= token < len(self) else None

    def token_to_chars(self, token: int) -> Optional[Tuple[int, int]]:
        return self.offsets[token] if self.token_to_sequence(token) is not None else None

    def char_to_token(self, char: int, sequence: int = 0) -> Optional[int]:
        for token, (seq, (start, end)) in enumerate(zip(self.sequence_ids, self.offsets)):
            if seq == sequence and start <= char < end:
                return token
        return None

    def word_to_tokens(self, word: int, sequence: int = 0) -> Optional[Tuple[int, int]]:
        tokens = [t for t, (seq, w) in enumerate(zip(self.sequence_ids, self.word_ids)) if seq == sequence and w == word]
        return (tokens[0], tokens[-1] + 1) if tokens else None


def windows(n: int, size: int, stride: int, left: bool) -> List[Tuple[int, int]]:
    """The [start, stop) ranges of n ids kept in windows of ``size`` that overlap by ``stride`` (the fast
    tokenizer's truncation with return_overflowing_tokens): the first is what truncation keeps."""
    if n <= size:
        return [(0, n)]
    if size == 0:
        return [(0, 0), (0, n)]
    if stride >= size:
        raise ValueError(f"stride ({stride}) must be smaller than the room each window has for the text ({size}: "
                         f"max_length minus the special tokens, shared by a pair)")
    step, out = size - stride, []
    if left:
        for stop in range(n, 0, -step):
            out.append((max(stop - size, 0), stop))
            if stop <= size:
                break
    else:
        for start in range(0, n, step):
            out.append((start, min(start + size, n)))
            if start + size >= n:
                break
    return out


def fast_truncation(n1: int, n2: Optional[int], budget: int, strategy: str) -> Tuple[int, Optional[int]]:
    """How many ids of the text and of the pair the fast tokenizer keeps (before windows) when budget ids fit."""
    total = n1 + (n2 or 0)
    if strategy == "do_not_truncate" or total <= budget:
        return n1, n2
    remove = total - budget
    if strategy == "longest_first" and n2 is not None:
        short, long_ = sorted((n1, n2))
        long_ = short if short > budget else max(short, budget - short)
        if short + long_ > budget:
            short, long_ = budget // 2, budget // 2 + budget % 2
        return (short, long_) if n1 <= n2 else (long_, short)
    if n2 is None and strategy == "only_second":
        raise ValueError("truncation='only_second' truncates the text_pair, but no text_pair was given: use "
                         "truncation=True (or 'only_first') for a single text")
    if n2 is None:  # one sequence: longest_first and only_first keep what fits
        return budget, None
    if strategy == "only_first":
        if n1 <= remove:
            raise ValueError(f"cannot truncate the text by {remove} ids to fit max_length: it has only {n1}")
        return n1 - remove, n2
    if n2 <= remove:
        raise ValueError(f"cannot truncate the text_pair by {remove} ids to fit max_length: it has only {n2}")
    return n1, n2 - remove
