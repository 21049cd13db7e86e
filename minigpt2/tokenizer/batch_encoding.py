"""BatchEncoding: what tokenizer(...) returns."""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np

from .options import tensor_type as _tensor_type


class CharSpan(NamedTuple):
    """Characters [start, end) of the text (HF's CharSpan)."""
    start: int
    end: int


class TokenSpan(NamedTuple):
    """Tokens [start, end) of a row (HF's TokenSpan)."""
    start: int
    end: int


class BatchEncoding(dict):
    """The tokenizer's output: a dict (input_ids, attention_mask, ...) that also allows `enc.input_ids`.

    Values are lists, or NumPy int64 arrays when made with return_tensors="np" (or "pt", which gives NumPy arrays
    too: minigpt2 is NumPy-only). `model(**enc)` works because it is a dict. From GPT2TokenizerFast (is_fast) it
    also answers HF's fast-tokenizer questions about each row: tokens(), word_ids(), sequence_ids(), token_to_word(),
    token_to_chars(), char_to_token(), word_to_tokens(), word_to_chars(), char_to_word(), token_to_sequence() (the
    batch index first when there is a batch axis). HF: BatchEncoding is a UserDict.
    """

    def __init__(self, data=None, tensor_type=None, prepend_batch_axis: bool = False, n_sequences=None,
                 alignments=None):
        super().__init__(data or {})
        self.n_sequences = n_sequences
        self._alignments = alignments  # one alignment.Alignment per row, from a fast tokenizer; else None
        self.convert_to_tensors(tensor_type, prepend_batch_axis)

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key or attribute {name!r}") from None

    def __getitem__(self, key):
        if isinstance(key, str):
            return super().__getitem__(key)
        if isinstance(key, (int, np.integer)):
            raise KeyError("indexing a BatchEncoding with an integer (HF's Rust Encoding objects) is not available; "
                           "use enc['input_ids'][i]")
        raise KeyError(key)

    def __getstate__(self):
        return {"data": dict(self), "n_sequences": self.n_sequences, "alignments": self._alignments}

    def __setstate__(self, state):
        self.update(state["data"])
        self.n_sequences = state["n_sequences"]
        self._alignments = state.get("alignments")

    def __reduce__(self):
        return (BatchEncoding, (), self.__getstate__())

    @property
    def data(self) -> Dict[str, Any]:
        return dict(self)

    @property
    def is_fast(self) -> bool:
        """True when made by a fast tokenizer (GPT2TokenizerFast): then the per-token questions can be asked."""
        return self._alignments is not None

    @property
    def encodings(self) -> Optional[list]:
        """One alignment per row (HF: the Rust Encoding objects), or None from a slow tokenizer."""
        return self._alignments

    def _row(self, batch_index: int, what: str):
        if self._alignments is None:
            raise ValueError(f"{what}() is not available when using non-fast tokenizers (e.g. instance of a "
                             f"`XxxTokenizerFast` class).")  # HF's message; minigpt2's is GPT2TokenizerFast
        return self._alignments[batch_index]

    def _indices(self, batch_or_index: int, index: Optional[int], what: str):
        """HF's convention: f(i) asks about row 0, f(b, i) about row b."""
        batch, index = (0, batch_or_index) if index is None else (batch_or_index, index)
        row = self._row(batch, what)
        return row, (len(row) + index if index < 0 else index)

    def tokens(self, batch_index: int = 0) -> List[str]:
        """The token strings of a row ("Ġworld"), special and padding tokens included."""
        return self._row(batch_index, "tokens").tokens

    def word_ids(self, batch_index: int = 0) -> List[Optional[int]]:
        """The word of each token of a row (None for special and padding tokens); words are numbered from 0 in each
        sequence. A word is a piece of GPT-2's pre-split (" world", ","), an added token, or with
        is_split_into_words one of the given words."""
        return self._row(batch_index, "word_ids").word_ids

    def words(self, batch_index: int = 0) -> List[Optional[int]]:
        """The same as word_ids() (HF's older name)."""
        return self._row(batch_index, "words").word_ids

    def sequence_ids(self, batch_index: int = 0) -> List[Optional[int]]:
        """0 for tokens of the text, 1 for those of text_pair, None for special and padding tokens."""
        return self._row(batch_index, "sequence_ids").sequence_ids

    def token_to_sequence(self, batch_or_token_index: int, token_index: Optional[int] = None) -> Optional[int]:
        row, token = self._indices(batch_or_token_index, token_index, "token_to_sequence")
        return row.token_to_sequence(token)

    def token_to_word(self, batch_or_token_index: int, token_index: Optional[int] = None) -> Optional[int]:
        row, token = self._indices(batch_or_token_index, token_index, "token_to_word")
        return row.token_to_word(token)

    def token_to_chars(self, batch_or_token_index: int, token_index: Optional[int] = None) -> Optional[CharSpan]:
        """The characters of its text that a token covers, or None (special and padding tokens)."""
        row, token = self._indices(batch_or_token_index, token_index, "token_to_chars")
        span = row.token_to_chars(token)
        return None if span is None else CharSpan(*span)

    def char_to_token(self, batch_or_char_index: int, char_index: Optional[int] = None,
                      sequence_index: int = 0) -> Optional[int]:
        """The token that covers a character of the text (sequence_index=1: of text_pair), or None."""
        batch, char = (0, batch_or_char_index) if char_index is None else (batch_or_char_index, char_index)
        return self._row(batch, "char_to_token").char_to_token(char, sequence_index)

    def char_to_word(self, batch_or_char_index: int, char_index: Optional[int] = None,
                     sequence_index: int = 0) -> Optional[int]:
        batch, char = (0, batch_or_char_index) if char_index is None else (batch_or_char_index, char_index)
        row = self._row(batch, "char_to_word")
        token = row.char_to_token(char, sequence_index)
        return None if token is None else row.token_to_word(token)

    def word_to_tokens(self, batch_or_word_index: int, word_index: Optional[int] = None,
                       sequence_index: int = 0) -> Optional[TokenSpan]:
        """The tokens [start, end) of a word, or None."""
        batch, word = (0, batch_or_word_index) if word_index is None else (batch_or_word_index, word_index)
        span = self._row(batch, "word_to_tokens").word_to_tokens(word, sequence_index)
        return None if span is None else TokenSpan(*span)

    def word_to_chars(self, batch_or_word_index: int, word_index: Optional[int] = None,
                      sequence_index: int = 0) -> Optional[CharSpan]:
        """The characters [start, end) of a word, or None."""
        batch, word = (0, batch_or_word_index) if word_index is None else (batch_or_word_index, word_index)
        row = self._row(batch, "word_to_chars")
        span = row.word_to_tokens(word, sequence_index)
        return None if span is None else CharSpan(row.offsets[span[0]][0], row.offsets[span[1] - 1][1])

    def convert_to_tensors(self, tensor_type=None, prepend_batch_axis: bool = False) -> "BatchEncoding":
        """Turn every value into a NumPy int64 array ("np", or "pt": NumPy too); a ragged batch is a clear error."""
        if _tensor_type(tensor_type) is None:
            return self
        for key, value in self.items():
            if prepend_batch_axis:
                value = [value]
            if isinstance(value, np.ndarray):
                continue
            try:
                self[key] = np.array(value, dtype=np.int64)
            except ValueError:
                lengths = sorted({len(v) for v in value})
                if key == "overflowing_tokens":  # padding does not touch them (HF's tensors cannot hold them either)
                    raise ValueError(f"cannot make a NumPy array of 'overflowing_tokens': they have different lengths "
                                     f"{lengths}. Use return_tensors=None, or GPT2TokenizerFast, whose overflowing "
                                     f"windows are rows of input_ids (padded with padding=True)") from None
                raise ValueError(
                    f"cannot make a NumPy array of {key!r}: its sequences have different lengths "
                    f"{lengths}. Pass padding=True (and truncation=True) for equal lengths."
                ) from None
        return self

    def to(self, device) -> "BatchEncoding":
        """HF moves tensors to a torch device here. NumPy arrays live in host memory: "cpu" (what model.device
        says) returns self; any other device is an error."""
        name = str(getattr(device, "type", device))
        if name != "cpu":
            raise ValueError(f"BatchEncoding.to({device!r}): minigpt2 runs on the CPU with NumPy arrays; the only "
                             f"device is 'cpu' (model.device)")
        return self

