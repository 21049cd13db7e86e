"""Ids -> text: the ids' bytes joined and decoded as UTF-8 (exact: decode(encode(s)) == s), with HF's options."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..streamers import TokenStreamDecoder
from ..checks import is_int


class Decoding:
    """GPT2Tokenizer's decoding methods (HF's names). Needs Vocabulary (self._id_bytes is its id -> bytes table)."""

    @staticmethod
    def _as_id_list(token_ids, what: str = "decode") -> List[int]:
        """int / NumPy scalar / 1-D list, tuple or array (anything with .tolist(), e.g. a torch tensor) -> list."""
        if isinstance(token_ids, (int, np.integer)):
            return [int(token_ids)]
        if hasattr(token_ids, "tolist") and not isinstance(token_ids, (list, tuple)):
            token_ids = token_ids.tolist()
            if isinstance(token_ids, int):
                return [token_ids]
        if isinstance(token_ids, (list, tuple)):
            return list(token_ids)
        if isinstance(token_ids, (str, bytes)):
            raise TypeError(f"{what}() takes token ids (ints), got {type(token_ids).__name__}; "
                            f"to turn token strings into text use convert_tokens_to_string")
        raise TypeError(f"{what}() takes an int or a 1-D sequence of ints, got {type(token_ids).__name__}")

    def _bad_id_error(self, ids) -> Exception:
        """The most useful error about the first id that has no bytes."""
        for position, index in enumerate(ids):
            if isinstance(index, (list, tuple, np.ndarray)):
                return TypeError(f"token ids must be ints, but item {position} is a sequence; use batch_decode for a "
                                 f"batch of sequences")
            if not is_int(index):
                return TypeError(f"token ids must be ints, but item {position} is {index!r} "
                                 f"({type(index).__name__})")
            if not 0 <= index < len(self._id_bytes) or self._id_bytes[index] is None:
                return ValueError(f"token id {index} (item {position}) is not in the vocabulary: ids run from 0 to "
                                  f"{len(self) - 1}")
        return ValueError("invalid token ids")

    def _ids_to_bytes(self, ids: List[int]) -> bytes:
        table = self._id_bytes
        try:
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join(map(table.__getitem__, ids))
        except (IndexError, TypeError):  # TypeError: a non-int id, or an id with no bytes (None)
            raise self._bad_id_error(ids) from None

    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: Optional[bool] = None,
               spaces_between_special_tokens: bool = False, errors: Optional[str] = None, **kwargs) -> str:
        """Ids (an int, list, tuple or 1-D NumPy array) -> text. decode(encode(s)) == s for every str s.

        The ids' bytes are joined and decoded as UTF-8 with errors="replace" (the tokenizer's `errors`), so an id
        sequence that ends mid-character decodes to U+FFFD. skip_special_tokens drops <|endoftext|> and the other
        special tokens. spaces_between_special_tokens=True reproduces HF's slow tokenizer, which puts spaces around
        non-special added tokens (breaking the round trip); the fast class ignores it, as HF's fast decode does.
        clean_up_tokenization_spaces=True applies HF's English
        clean-up (" ," -> ","; off by default, as for GPT-2 in HF).
        """
        kwargs.pop("use_source_tokenizer", None)  # accepted for HF compatibility; meaningless here
        if kwargs:
            raise TypeError(f"decode() got unexpected keyword arguments {sorted(kwargs)}")
        ids = self._as_id_list(token_ids)
        if (skip_special_tokens or spaces_between_special_tokens) and any(
                isinstance(i, (list, tuple, np.ndarray)) for i in ids):  # (a batch: the set look-ups below
            raise self._bad_id_error(ids)  # would say "unhashable type: 'list'")
        if self.is_fast:  # HF's fast decode leaves out ids that have no token (past the vocabulary)
            table = self._id_bytes
            ids = [i for i in ids if not (isinstance(i, (int, np.integer)) and i >= len(table) or
                                          isinstance(i, (int, np.integer)) and i >= 0 and table[i] is None)]
        if skip_special_tokens:
            special = set(self.all_special_ids)
            if self.is_fast:  # HF's Rust decoder also skips every added token marked special (tokenizer.json's
                # "special": true), listed among the special tokens or not
                special |= {i for i, token in self._added_tokens_decoder.items() if token.special}
            ids = [i for i in ids if i not in special]
        errors = errors or self.errors
        if spaces_between_special_tokens and not self.is_fast and self._has_legacy_added(ids):
            text = self._decode_with_spaces(ids, errors)
        else:
            text = self._ids_to_bytes(ids).decode("utf-8", errors)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def _legacy_added_ids(self) -> set:
        special = set(self.all_special_tokens)
        return {i for i, t in self._added_tokens_decoder.items() if t.content not in special or
                (i >= self.vocab_size and t.content in self.additional_special_tokens)}

    def _has_legacy_added(self, ids) -> bool:
        legacy = self._legacy_added_ids()
        return bool(legacy) and any(i in legacy for i in ids)

    def _decode_with_spaces(self, ids: List[int], errors: str) -> str:
        """HF's slow decode: added (non-special) tokens become separate strings joined by single spaces."""
        legacy = self._legacy_added_ids()
        texts, run = [], []
        for index in ids:
            if index in legacy:
                if run:
                    chunk = self._ids_to_bytes(run).decode("utf-8", errors)
                    if chunk:
                        texts.append(chunk)
                    run = []
                texts.append(self._added_tokens_decoder[index].content)
            else:
                run.append(index)
        if run:
            texts.append(self._ids_to_bytes(run).decode("utf-8", errors))
        return " ".join(texts)

    @staticmethod
    def clean_up_tokenization(text: str) -> str:
        """HF's clean-up of English tokenization artefacts (only used when asked for)."""
        for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                              (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(before, after)
        return text

    def batch_decode(self, sequences, **kwargs) -> List[str]:
        """decode each sequence of a batch: a list of lists or a 2-D NumPy array (e.g. generate's output)."""
        if isinstance(sequences, np.ndarray) and sequences.ndim != 2:
            raise ValueError(f"batch_decode expects a 2-D array (batch, length), got shape {sequences.shape}")
        if hasattr(sequences, "tolist") and not isinstance(sequences, (list, tuple)):
            sequences = sequences.tolist()
        return [self.decode(seq, **kwargs) for seq in sequences]

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one id (a token can hold part of a UTF-8 character)."""
        return self._ids_to_bytes([int(token_id)])

    def stream_decoder(self, skip_special_tokens: bool = False) -> "TokenStreamDecoder":
        """A TokenStreamDecoder over this tokenizer."""
        return TokenStreamDecoder(self, skip_special_tokens=skip_special_tokens)

