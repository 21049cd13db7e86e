"""The vocabulary side of the tokenizer: added and special tokens, and conversion between tokens and ids.

The BPE vocabulary (50257 tokens for GPT-2) is fixed; tokens added on top (add_tokens, add_special_tokens, or
recorded in the checkpoint's files) get the next free ids, and the text is split around them before BPE.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..bpe import CHAR_TO_BYTE, ByteLevelBPE, from_byte_chars

SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class AddedToken:
    """A token added on top of the BPE vocabulary (HF's AddedToken). The text is split around it before BPE.

    lstrip / rstrip: also swallow the whitespace on that side. single_word: only match as a whole word.
    special: skipped by decode(skip_special_tokens=True). normalized is kept for file compatibility only
    (GPT-2 has no normalizer).
    """

    __slots__ = ("content", "single_word", "lstrip", "rstrip", "normalized", "special")

    def __init__(self, content: str, single_word=False, lstrip=False, rstrip=False, normalized=True, special=False):
        if not isinstance(content, str):
            raise TypeError(f"AddedToken content must be a str, got {type(content).__name__}")
        self.content = content
        self.single_word, self.lstrip, self.rstrip = bool(single_word), bool(lstrip), bool(rstrip)
        self.normalized, self.special = bool(normalized), bool(special)

    def __str__(self) -> str:
        return self.content

    def __repr__(self) -> str:
        return (f"AddedToken({self.content!r}, rstrip={self.rstrip}, lstrip={self.lstrip}, single_word="
                f"{self.single_word}, normalized={self.normalized}, special={self.special})")

    def __eq__(self, other) -> bool:
        if isinstance(other, AddedToken):
            return self.__getstate__() == other.__getstate__()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.content)

    def __getstate__(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(**state)

    @classmethod
    def from_config(cls, value: Any) -> Optional["AddedToken"]:
        """A token as written in HF's JSON files: a str, or a dict (maybe with "__type": "AddedToken")."""
        if value is None or isinstance(value, AddedToken):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict):
            fields = {k: v for k, v in value.items() if k in cls.__slots__}
            return cls(**fields)
        if hasattr(value, "content"):  # a tokenizers.AddedToken or transformers' own
            return cls(value.content, **{k: getattr(value, k) for k in cls.__slots__[1:] if hasattr(value, k)})
        raise TypeError(f"a special token must be a str or AddedToken, got {type(value).__name__}")



def special_token_property(name: str):
    def get(self) -> Optional[str]:
        token = self._special_tokens.get(name)
        return None if token is None else token.content

    def set_(self, value) -> None:
        if value is not None and not isinstance(value, (str, AddedToken)):
            raise ValueError(f"{name} must be a str, an AddedToken or None, got {type(value).__name__}")
        self._special_tokens[name] = AddedToken.from_config(value)

    def get_id(self) -> Optional[int]:
        token = self._special_tokens.get(name)
        return None if token is None else self.convert_tokens_to_ids(token.content)

    def set_id(self, value: Optional[int]) -> None:
        set_(self, None if value is None else self.convert_ids_to_tokens(value))

    return property(get, set_, doc=f"The {name.replace('_', ' ')} (a str), or None."), property(get_id, set_id)



class Vocabulary:
    """GPT2Tokenizer's vocabulary methods (HF's names). Needs self._bpe, self.encoder, self.decoder."""

    bos_token, bos_token_id = special_token_property("bos_token")
    eos_token, eos_token_id = special_token_property("eos_token")
    unk_token, unk_token_id = special_token_property("unk_token")
    sep_token, sep_token_id = special_token_property("sep_token")
    pad_token, pad_token_id = special_token_property("pad_token")
    cls_token, cls_token_id = special_token_property("cls_token")
    mask_token, mask_token_id = special_token_property("mask_token")

    # -- construction helpers ------------------------------------------------------------------------------------
    def _register(self, index: int, token: AddedToken) -> None:
        self._added_tokens_decoder[index] = token
        self._added_tokens_encoder[token.content] = index

    def _all_special_tokens_extended(self) -> List[AddedToken]:
        seen, out = set(), []
        for token in [*self._special_tokens.values(), *self._additional_special_tokens]:
            if token is not None and token.content not in seen:
                seen.add(token.content)
                out.append(token)
        return out

    def _add_tokens(self, new_tokens: Iterable, special_tokens: bool = False) -> int:
        """HF's rule: an unknown token gets the next free id; a token already in the vocabulary keeps its id.
        Returns how many ids were created (HF's slow tokenizer), or how many tokens were registered (its fast one:
        add_tokens(["hello"]) counts 1 there, 0 in the slow one; a token counts unless the very same one, content
        and flags, is already there, so add_special_tokens({"pad_token": "<|endoftext|>"}) counts 1)."""
        vocab = self.get_vocab()
        next_id = len(vocab)
        added = registered = 0
        for token in new_tokens:
            if not isinstance(token, (str, AddedToken)):
                raise TypeError(f"a token to add must be a str or AddedToken, got {type(token).__name__}")
            if str(token) == "":
                continue
            if isinstance(token, str):
                if token in self._added_tokens_encoder and not self.is_fast:  # (HF's fast one updates its flags)
                    continue
                special = special_tokens or (token in self.all_special_tokens and not self.is_fast)
                token = AddedToken(token, normalized=not special, special=special)
            elif special_tokens:
                token.special = True
            if token.content in vocab:
                index = vocab[token.content]
            else:
                index = next_id + added
                vocab[token.content] = index
                added += 1
            # HF's slow tokenizer lists a new special token among additional_special_tokens; its fast one only
            # marks it special in the vocabulary (skipped by decode, not in all_special_tokens)
            if token.special and not self.is_fast and token.content not in self.all_special_tokens:
                self._additional_special_tokens.append(token)
            known = self._added_tokens_encoder.get(token.content)  # HF's fast (Rust) count: every token unless
            registered += known is None or self._added_tokens_decoder[known] != token  # the same one, flags and all
            self._register(index, token)
        self._rebuild_added_tables()
        return registered if self.is_fast else added

    def _rebuild_added_tables(self) -> None:
        """The regex that cuts added tokens out of the text, and the id -> bytes table for decoding."""
        contents = sorted(self._added_tokens_encoder, key=len, reverse=True)  # longest first wins at a position
        self._added_re = _alternation(contents)
        # HF's fast (Rust) tokenizer looks for them in two passes: first the tokens with normalized=False, then,
        # in the text left between those, the ones with normalized=True (encoding.py, _cut_added_tokens_fast).
        by_content = {t.content: t for t in self._added_tokens_decoder.values()}
        self._added_re_passes = [_alternation([c for c in contents if by_content[c].normalized == normalized])
                                 for normalized in (False, True)]
        table = list(self._bpe.id_to_bytes)
        for index, token in self._added_tokens_decoder.items():
            if index >= len(table):
                table.extend([None] * (index + 1 - len(table)))
            if self.decoder.get(index) != token.content:
                table[index] = token.content.encode("utf-8")
        self._id_bytes: List[Optional[bytes]] = table

    # -- vocabulary --------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the BPE vocabulary without added tokens (50257 for GPT-2). len(tokenizer) counts them."""
        return len(self.encoder)

    def __len__(self) -> int:
        """The full vocabulary with added tokens: the size the model's embedding matrix needs."""
        return len(self.encoder) + sum(1 for t in self._added_tokens_encoder if t not in self.encoder)

    def get_vocab(self) -> Dict[str, int]:
        return dict(self.encoder, **self._added_tokens_encoder)

    def get_added_vocab(self) -> Dict[str, int]:
        return dict(self._added_tokens_encoder)

    @property
    def added_tokens_encoder(self) -> Dict[str, int]:
        return dict(sorted(self._added_tokens_encoder.items(), key=lambda kv: kv[1]))

    @property
    def added_tokens_decoder(self) -> Dict[int, AddedToken]:
        return dict(sorted(self._added_tokens_decoder.items()))

    @property
    def bpe_ranks(self) -> Dict[Tuple[str, str], int]:
        return self._bpe.ranks

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        """Add tokens the text is split around before BPE; returns how many new ids were created.

        Resize the model's embeddings to len(tokenizer) afterwards."""
        if new_tokens is None:
            return 0
        if isinstance(new_tokens, (str, AddedToken)):
            new_tokens = [new_tokens]
        return self._add_tokens(new_tokens, special_tokens=special_tokens)

    def add_special_tokens(self, special_tokens_dict: Dict[str, Any], replace_additional_special_tokens: bool = True) -> int:
        """Set special tokens, adding them to the vocabulary: add_special_tokens({"pad_token": "[PAD]"})."""
        if not isinstance(special_tokens_dict, dict):
            raise TypeError("add_special_tokens expects a dict such as {'pad_token': '[PAD]'}")
        to_add = []
        for key, value in special_tokens_dict.items():
            if key == "additional_special_tokens":
                if not isinstance(value, (list, tuple)) or not all(isinstance(t, (str, AddedToken)) for t in value):
                    raise ValueError("additional_special_tokens must be a list of str or AddedToken")
                tokens = [AddedToken(t, normalized=False, special=True) if isinstance(t, str) else t for t in value]
                for token in tokens:
                    token.special = True
                if replace_additional_special_tokens and tokens:  # HF: an empty list replaces nothing
                    self._additional_special_tokens = tokens
                else:
                    known = {t.content for t in self._additional_special_tokens}
                    self._additional_special_tokens += [t for t in tokens if t.content not in known]
                to_add += tokens
            elif key in SPECIAL_TOKENS_ATTRIBUTES:
                if not isinstance(value, (str, AddedToken)):
                    raise ValueError(f"{key} must be a str or AddedToken, got {type(value).__name__}")
                token = AddedToken(value, normalized=False, special=True) if isinstance(value, str) else value
                token.special = True
                self._special_tokens[key] = token
                to_add.append(token)
            else:
                raise ValueError(f"unknown special token kind {key!r}; expected one of "
                                 f"{list(SPECIAL_TOKENS_ATTRIBUTES) + ['additional_special_tokens']}")
        return self._add_tokens(to_add, special_tokens=True)

    @property
    def additional_special_tokens(self) -> List[str]:
        return [t.content for t in self._additional_special_tokens]

    @additional_special_tokens.setter
    def additional_special_tokens(self, value) -> None:
        self._additional_special_tokens = [AddedToken.from_config(t) for t in (value or [])]

    @property
    def additional_special_tokens_ids(self) -> List[int]:
        return self.convert_tokens_to_ids(self.additional_special_tokens)

    @property
    def special_tokens_map(self) -> Dict[str, Union[str, List[str]]]:
        out: Dict[str, Any] = {k: v.content for k, v in self._special_tokens.items() if v is not None}
        if self._additional_special_tokens:
            out["additional_special_tokens"] = self.additional_special_tokens
        return out

    @property
    def special_tokens_map_extended(self) -> Dict[str, Union[AddedToken, List[AddedToken]]]:
        """special_tokens_map with the AddedToken objects (their lstrip / rstrip / special flags)."""
        out: Dict[str, Any] = {k: v for k, v in self._special_tokens.items() if v is not None}
        if self._additional_special_tokens:
            out["additional_special_tokens"] = list(self._additional_special_tokens)
        return out

    @property
    def all_special_tokens(self) -> List[str]:
        return [t.content for t in self._all_special_tokens_extended()]

    @property
    def all_special_tokens_extended(self) -> List[AddedToken]:
        """all_special_tokens as AddedToken objects, each content once."""
        return self._all_special_tokens_extended()

    @property
    def all_special_ids(self) -> List[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    # -- tokens <-> ids --------------------------------------------------------------------------------------
    def convert_tokens_to_ids(self, tokens):
        """A token string (or list of them) -> id(s); an unknown token gives the unk token's id, as in HF.

        None, and a None in the list, give None in the slow class (HF's slow one returns them unchanged); the fast
        class, as HF's (whose Rust look-up takes only str), raises TypeError for None or a token that is not a str
        (the slow class gives such a token the unk id, as HF's)."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        if tokens is None and not self.is_fast:
            return None
        try:
            tokens = list(tokens)
        except TypeError:
            raise TypeError(f"convert_tokens_to_ids takes a token (str) or a list of tokens, got "
                            f"{type(tokens).__name__ if tokens is not None else 'None'}") from None
        return [self._item_to_id(token, position) for position, token in enumerate(tokens)]

    def _item_to_id(self, token, position: int) -> Optional[int]:
        """One item of convert_tokens_to_ids' list, as each class of HF's takes it."""
        if self.is_fast and not isinstance(token, str):
            raise TypeError(f"convert_tokens_to_ids takes token strings, but item {position} is {token!r} "
                            f"({type(token).__name__}); the fast tokenizer, as HF's, looks up only str")
        if token is None:
            return None
        try:
            return self._token_to_id(token)
        except TypeError:  # an unhashable item: a list, a dict
            raise TypeError(f"convert_tokens_to_ids takes token strings, but item {position} is "
                            f"{type(token).__name__} {token!r}") from None

    def _token_to_id(self, token: str) -> Optional[int]:
        index = self._added_tokens_encoder.get(token)
        if index is None:
            index = self.encoder.get(token)
        if index is None and self.unk_token is not None and token != self.unk_token:
            index = self._token_to_id(self.unk_token)
        return index

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """An id (or a sequence of them) -> token string(s) such as "Ġworld".

        As in HF, an id that names no token (past the vocabulary) gives None, and so does a negative id in the slow
        class; the fast class's ids are u32, as HF's: outside [0, 2**32) is an OverflowError (also a ValueError).
        An item that is not an int is an error of HF's type: TypeError, or ValueError for a str."""
        if isinstance(ids, (int, np.integer)):
            ids = int(ids)
            problem = self._id_problem(ids, 0)
            if problem is not None:
                raise problem
            return self._id_to_token(ids)
        ids = self._as_id_list(ids, "convert_ids_to_tokens")
        for position, index in enumerate(ids):
            problem = self._id_problem(index, position)
            if problem is not None:
                raise problem
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        return [self._id_to_token(i) for i in ids]

    def _id_to_token(self, index: int) -> Optional[str]:
        """The token of an int id, or None if it names none (HF's slow and fast classes)."""
        token = self._added_tokens_decoder.get(index)
        if token is not None:
            return token.content
        return self.decoder.get(index)

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Token strings ("Hello", "Ġworld") back to text, as HF's byte-level decoder does it: each character of a
        token stands for one byte (bytes_to_unicode: "Ġ" is the space), the bytes are decoded as UTF-8 (errors as
        the tokenizer's `errors`). The strings need not be in the vocabulary: ["HelloĠworld", "!"] -> "Hello world!".

        A token with a character outside those 256 (a real space, "€"): the fast class, as HF's Rust decoder, takes
        that token's own UTF-8 (["Hello", " world"] -> "Hello world"); the slow class, as HF's Python one, cannot
        (a ValueError naming the character; HF: a bare KeyError).
        """
        tokens = list(tokens)
        for token in tokens:
            if not isinstance(token, str):
                raise TypeError(f"convert_tokens_to_string takes token strings, got {type(token).__name__}; "
                                f"to turn ids into text use decode")
        if self.is_fast:
            data = b"".join(map(ByteLevelBPE.token_bytes, tokens))
        else:
            text = "".join(tokens)
            outside = [c for c in text if c not in CHAR_TO_BYTE]
            if outside:
                raise ValueError(f"the token strings hold {outside[0]!r}, which is not one of the 256 characters "
                                 f"that stand for bytes (a space is 'Ġ'); GPT2TokenizerFast takes such a token's own "
                                 f"UTF-8")
            data = from_byte_chars(text)
        return data.decode("utf-8", self.errors)


def _alternation(contents: List[str]) -> Optional["re.Pattern"]:
    """A regex matching any of `contents` (given longest first), or None for none: at each position the longest
    token wins, as in HF (a leftmost-longest search)."""
    return re.compile("(" + "|".join(map(re.escape, contents)) + ")") if contents else None

