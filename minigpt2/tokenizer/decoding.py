"""Ids -> text: the ids' bytes joined and decoded as UTF-8 (exact: decode(encode(s)) == s), with HF's options."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..streamers import TokenStreamDecoder

U32_LIMIT = 2 ** 32  # HF's fast (Rust) tokenizer keeps ids as u32: an id outside [0, 2**32) is an OverflowError there


class TokenIdError(ValueError, TypeError):
    """A token id that names no token (or a str given as an id). A ValueError, and also the TypeError that HF's
    slow decode raises there (from inside its join), so that code written for either exception catches it."""


class TokenIdOverflowError(ValueError, OverflowError):
    """An id outside [0, 2**32) given to the fast class: a ValueError, and also HF's fast tokenizer's OverflowError."""


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
        if isinstance(token_ids, str):  # HF: int() of its first character, a ValueError (the fast decode: TypeError)
            raise TokenIdError(f"{what}() takes token ids (ints), got str; to turn token strings into text use "
                               f"convert_tokens_to_string")
        if isinstance(token_ids, bytes):
            raise TypeError(f"{what}() takes token ids (ints), got bytes; to turn token strings into text use "
                            f"convert_tokens_to_string")
        raise TypeError(f"{what}() takes an int or a 1-D sequence of ints, got {type(token_ids).__name__}")

    def _id_problem(self, index, position: int) -> Optional[Exception]:
        """What is wrong with one id as an id (None: nothing); whether it names a token is not checked here.

        The exception types are HF's: int() of a list or None is a TypeError, of a str a ValueError; the fast
        class's ids are u32 (OverflowError outside them). A bool passes, as int(True) does in HF."""
        if isinstance(index, (list, tuple, np.ndarray)):
            return TypeError(f"token ids must be ints, but item {position} is a sequence; use batch_decode for a "
                             f"batch of sequences")
        if isinstance(index, str):
            return TokenIdError(f"token ids must be ints, but item {position} is {index!r} (str); to turn token "
                                f"strings into ids use convert_tokens_to_ids")
        if not isinstance(index, (int, np.integer)):
            return TypeError(f"token ids must be ints, but item {position} is {index!r} ({type(index).__name__})")
        if self.is_fast and not 0 <= index < U32_LIMIT:
            return TokenIdOverflowError(f"token id {index} (item {position}) is out of range: the fast tokenizer's "
                                        f"ids, as HF's, run from 0 to 2**32 - 1 (its vocabulary's from 0 to "
                                        f"{len(self) - 1})")
        return None

    def _bad_id_error(self, ids) -> Exception:
        """The most useful error about the first id that has no bytes."""
        for position, index in enumerate(ids):
            problem = self._id_problem(index, position)
            if problem is not None:
                return problem
            if not 0 <= index < len(self._id_bytes) or self._id_bytes[index] is None:
                return TokenIdError(f"token id {index} (item {position}) is not in the vocabulary: ids run from 0 to "
                                    f"{len(self) - 1}")
        return ValueError("invalid token ids")

    def _fast_skips(self, index) -> bool:
        """Whether HF's fast decode leaves this id out: an id in its u32 range that names no token."""
        if not isinstance(index, (int, np.integer)) or not 0 <= index < U32_LIMIT:
            return False
        return index >= len(self._id_bytes) or self._id_bytes[index] is None

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
            ids = [i for i in ids if not self._fast_skips(i)]
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
        """decode each sequence of a batch: a list of lists or a 2-D NumPy array (e.g. generate's output).

        As in HF, a list of ints or a 1-D array decodes each id on its own (one string per id)."""
        if isinstance(sequences, np.ndarray) and sequences.ndim not in (1, 2):  # HF: TypeError (int() of a list,
            raise TypeError(f"batch_decode takes a 2-D array (batch, length), or a 1-D one of ids to decode one by "
                            f"one; got shape {sequences.shape}")  # or iterating a 0-d array)
        if hasattr(sequences, "tolist") and not isinstance(sequences, (list, tuple)):
            sequences = sequences.tolist()
        return [self.decode(seq, **kwargs) for seq in sequences]

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one id (a token can hold part of a UTF-8 character)."""
        return self._ids_to_bytes([int(token_id)])

    def stream_decoder(self, skip_special_tokens: bool = False) -> "TokenStreamDecoder":
        """A TokenStreamDecoder over this tokenizer."""
        return TokenStreamDecoder(self, skip_special_tokens=skip_special_tokens)

