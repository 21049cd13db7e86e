"""GPT-2's tokenizer with Hugging Face's interface: GPT2Tokenizer, GPT2TokenizerFast, AutoTokenizer.

The byte-level BPE algorithm itself lives in `minigpt2.bpe` (read that file to learn how text becomes ids).
This module adds what a model user expects from `transformers`' pure-Python GPT2Tokenizer (4.x):

    >>> from minigpt2 import GPT2Tokenizer
    >>> tok = GPT2Tokenizer.from_pretrained("gpt2")          # bundled vocabulary: works offline
    >>> tok("Hello world")
    {'input_ids': [15496, 995], 'attention_mask': [1, 1]}
    >>> tok.decode([15496, 995])
    'Hello world'

* special and added tokens ("<|endoftext|>" is id 50256 wherever it appears in the text, unless
  split_special_tokens=True), add_tokens / add_special_tokens, pad_token (None until you set one);
* batches, padding ("longest"/"max_length", right by default: GPT-2 has absolute positions), truncation,
  return_tensors=None or "np" (minigpt2 is NumPy-only);
* decode/batch_decode (ints, lists, NumPy arrays), exact: decode(encode(s)) == s for every str;
* from_pretrained / save_pretrained with HF's file formats (vocab.json, merges.txt, tokenizer_config.json, ...);
* TokenStreamDecoder / decode_stream: text as ids arrive, never splitting a multi-byte character;
* show_work(text): every intermediate step, for teaching.

Where minigpt2 deliberately differs from HF's pure-Python tokenizer, the docstring says so (look for "HF:").
"""
from __future__ import annotations

import codecs
import json
import logging
import os
import re
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .bpe import (
    GPT2_EOT,
    ByteLevelBPE,
    TokenizationWork,
    VocabularyFileError,
    check_consistent,
    gpt2_bpe,
    parse_encoder,
    parse_merges,
    read_text,
    show_work as _show_work,
)

__all__ = [
    "AddedToken",
    "AutoTokenizer",
    "BatchEncoding",
    "GPT2Tokenizer",
    "GPT2TokenizerFast",
    "TokenStreamDecoder",
    "VocabularyFileError",
    "decode_stream",
    "show_work",
]

logger = logging.getLogger(__name__)

# The checkpoints that share GPT-2's vocabulary; from_pretrained serves them from the bundled files.
BUNDLED_NAMES = frozenset(
    name
    for base in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2")
    for name in (base, f"openai-community/{base}")
) | {"distilbert/distilgpt2"}
GPT2_MAX_LENGTH = 1024  # n_positions of every GPT-2 size; tokenizer_config.json on the Hub says the same

SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_NOT_NUMPY = {"pt": "PyTorch", "tf": "TensorFlow", "jax": "JAX", "mlx": "MLX"}


# ---------------------------------------------------------------------------------------------------------------
# Small value types
# ---------------------------------------------------------------------------------------------------------------
class MissingTokenizerFiles(Exception):
    """Marks the error of a checkpoint that has no tokenizer files at all (not damaged ones, not a network
    failure): a directory (a VocabularyFileError) or a Hub repository (a FileNotFoundError). The CLI then uses
    GPT-2's vocabulary, which every GPT-2 checkpoint shares."""


class _NoVocabularyInDirectory(MissingTokenizerFiles, VocabularyFileError):
    pass


class _NoTokenizerInRepository(MissingTokenizerFiles, FileNotFoundError):
    pass


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


def _tensor_type(return_tensors) -> Optional[str]:
    """None or "np"; the other frameworks HF supports get a clear error."""
    value = getattr(return_tensors, "value", return_tensors)  # accepts transformers' TensorType enum too
    if value is None or value == "np":
        return value
    if value in _NOT_NUMPY:
        raise ValueError(f"return_tensors={value!r} asks for {_NOT_NUMPY[value]} tensors, but minigpt2 is NumPy-only: "
                         f"use return_tensors='np' (or None for lists)")
    raise ValueError(f"return_tensors must be None or 'np', got {return_tensors!r}")


class BatchEncoding(dict):
    """The tokenizer's output: a dict (input_ids, attention_mask, ...) that also allows `enc.input_ids`.

    Values are lists, or NumPy int64 arrays when made with return_tensors="np". `model(**enc)` works because it
    is a dict. HF: BatchEncoding is a UserDict; the Rust-only parts (word_ids, offsets) do not exist here.
    """

    def __init__(self, data=None, tensor_type=None, prepend_batch_axis: bool = False, n_sequences=None):
        super().__init__(data or {})
        self.n_sequences = n_sequences
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
        return {"data": dict(self), "n_sequences": self.n_sequences}

    def __setstate__(self, state):
        self.update(state["data"])
        self.n_sequences = state["n_sequences"]

    def __reduce__(self):
        return (BatchEncoding, (), self.__getstate__())

    @property
    def data(self) -> Dict[str, Any]:
        return dict(self)

    @property
    def is_fast(self) -> bool:
        return False

    @property
    def encodings(self):
        return None

    def convert_to_tensors(self, tensor_type=None, prepend_batch_axis: bool = False) -> "BatchEncoding":
        """Turn every value into a NumPy int64 array ("np"); a ragged batch is a clear error."""
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
                raise ValueError(
                    f"cannot make a NumPy array of {key!r}: its sequences have different lengths "
                    f"{sorted({len(v) for v in value})}. Pass padding=True (and truncation=True) for equal lengths."
                ) from None
        return self

    def to(self, device) -> "BatchEncoding":
        """HF moves tensors to a torch device here; NumPy arrays live in host memory, so this returns self."""
        return self


# ---------------------------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------------------------
def _surrogate_error(text: str) -> ValueError:
    match = re.search("[\ud800-\udfff]", text)
    if match is None:  # cannot happen: UTF-8 fails only on surrogates
        return ValueError("text cannot be encoded as UTF-8")
    return ValueError(f"text contains a lone surrogate {match.group()!r} at position {match.start()}: it has no "
                      f"UTF-8 bytes, so it cannot be tokenized (was the text decoded with errors='surrogateescape'?)")


def _check_text(text, what: str = "text") -> None:
    if not isinstance(text, str):
        hint = " (decode bytes to str first)" if isinstance(text, (bytes, bytearray)) else ""
        raise TypeError(f"{what} must be a str, got {type(text).__name__}{hint}")


def _special_token_property(name: str):
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


class GPT2Tokenizer:
    """GPT-2's byte-level BPE tokenizer, pure Python, with the interface of HF transformers 4.x.

    GPT2Tokenizer(vocab_file, merges_file, ...) reads encoder.json/vocab.json and vocab.bpe/merges.txt (optionally
    .gz); with no files it uses the bundled GPT-2 vocabulary. The parameters are HF's: errors="replace" (how decode
    treats invalid UTF-8), unk/bos/eos_token="<|endoftext|>", pad_token=None, add_prefix_space=False (prepend a
    space so the first word is encoded like the others), add_bos_token=False.

    The model was trained with spaces attached to the following word, so "Hello" at the start and " Hello" later
    are different tokens: tok("Hello world") -> [15496, 995] but tok(" Hello world") -> [18435, 995].

    HF differences, all deliberate: model_max_length defaults to 1024 (GPT-2's context; HF's constructor leaves it
    unlimited, its from_pretrained("gpt2") says 1024); decode never inserts spaces around added tokens unless
    spaces_between_special_tokens=True (HF's slow tokenizer does, its fast one does not), so decode(encode(s)) == s;
    non-str input is a TypeError; a ragged batch with return_tensors="np" is an error, not an object array; an
    unknown id in decode or convert_ids_to_tokens is a ValueError.
    """

    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}
    model_input_names = ["input_ids", "attention_mask"]
    is_fast = False
    pad_token_type_id = 0

    bos_token, bos_token_id = _special_token_property("bos_token")
    eos_token, eos_token_id = _special_token_property("eos_token")
    unk_token, unk_token_id = _special_token_property("unk_token")
    sep_token, sep_token_id = _special_token_property("sep_token")
    pad_token, pad_token_id = _special_token_property("pad_token")
    cls_token, cls_token_id = _special_token_property("cls_token")
    mask_token, mask_token_id = _special_token_property("mask_token")

    def __init__(
        self,
        vocab_file: Optional[str] = None,
        merges_file: Optional[str] = None,
        errors: str = "replace",
        unk_token=GPT2_EOT,
        bos_token=GPT2_EOT,
        eos_token=GPT2_EOT,
        pad_token=None,
        add_prefix_space: bool = False,
        add_bos_token: bool = False,
        *,
        tokenizer_file: Optional[str] = None,
        model_max_length: int = GPT2_MAX_LENGTH,
        padding_side: str = "right",
        truncation_side: str = "right",
        split_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool = False,
        additional_special_tokens: Optional[Sequence] = None,
        added_tokens_decoder: Optional[Dict[Any, Any]] = None,
        name_or_path: str = "",
        **kwargs,
    ):
        # 1. The BPE vocabulary: files, a tokenizer.json, or the bundled GPT-2 tables (shared, read-only).
        file_added: List[Dict[str, Any]] = []
        unk_token, bos_token, eos_token, pad_token = map(AddedToken.from_config, (unk_token, bos_token, eos_token,
                                                                                  pad_token))
        if vocab_file is not None or merges_file is not None:
            if vocab_file is None or merges_file is None:
                raise ValueError("pass both vocab_file and merges_file (or neither, for the bundled GPT-2 vocabulary)")
            encoder = parse_encoder(read_text(os.fspath(vocab_file)), os.fspath(vocab_file))
            merges = parse_merges(read_text(os.fspath(merges_file)), os.fspath(merges_file))
            check_consistent(encoder, merges, os.fspath(vocab_file), os.fspath(merges_file))
            bpe = ByteLevelBPE(encoder, merges, unk_id=encoder.get(str(unk_token)) if unk_token is not None else None)
        elif tokenizer_file is not None:
            encoder, merges, file_added = _read_tokenizer_json(os.fspath(tokenizer_file))
            bpe = ByteLevelBPE(encoder, merges, unk_id=encoder.get(str(unk_token)) if unk_token is not None else None)
        else:
            bpe = gpt2_bpe().fresh()
        self._bpe = bpe
        self.encoder: Dict[str, int] = bpe.encoder
        self.decoder: Dict[int, str] = bpe.decoder

        # 2. Options (HF names).
        if padding_side not in ("left", "right") or truncation_side not in ("left", "right"):
            raise ValueError(f"padding_side and truncation_side must be 'left' or 'right', got "
                             f"{padding_side!r} and {truncation_side!r}")
        self.errors = errors
        self.add_prefix_space = bool(add_prefix_space)
        self.add_bos_token = bool(add_bos_token)
        self.model_max_length = int(model_max_length)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.split_special_tokens = bool(split_special_tokens)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.name_or_path = str(name_or_path)
        other_special = {name: kwargs.pop(name, None) for name in ("sep_token", "cls_token", "mask_token")}
        self.init_kwargs = dict(kwargs, errors=errors, add_prefix_space=add_prefix_space, add_bos_token=add_bos_token,
                                model_max_length=model_max_length)
        self._warned_too_long = False

        # 3. Added and special tokens, in HF's order: those recorded in the files, then the special tokens.
        self._added_tokens_decoder: Dict[int, AddedToken] = {}
        self._added_tokens_encoder: Dict[str, int] = {}
        for entry in file_added:
            self._register(int(entry["id"]), AddedToken.from_config(entry))
        for index, token in sorted((added_tokens_decoder or {}).items(), key=lambda kv: int(kv[0])):
            self._register(int(index), AddedToken.from_config(token))
        self._special_tokens: Dict[str, Optional[AddedToken]] = {}
        for name, value in (("bos_token", bos_token), ("eos_token", eos_token), ("unk_token", unk_token),
                            ("pad_token", pad_token), *other_special.items()):
            setattr(self, name, value)
        self._additional_special_tokens: List[AddedToken] = [
            AddedToken.from_config(t) for t in (additional_special_tokens or [])]
        self._add_tokens([t for t in self._all_special_tokens_extended()
                          if t.content not in self._added_tokens_encoder], special_tokens=True)
        self._rebuild_added_tables()

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
        """HF's rule: an unknown token gets the next free id; a token already in the vocabulary keeps its id."""
        vocab = self.get_vocab()
        next_id = len(vocab)
        added = 0
        for token in new_tokens:
            if not isinstance(token, (str, AddedToken)):
                raise TypeError(f"a token to add must be a str or AddedToken, got {type(token).__name__}")
            if str(token) == "":
                continue
            if isinstance(token, str):
                if token in self._added_tokens_encoder:
                    continue
                special = special_tokens or token in self.all_special_tokens
                token = AddedToken(token, normalized=not special, special=special)
            elif special_tokens:
                token.special = True
            if token.content in vocab:
                index = vocab[token.content]
            else:
                index = next_id + added
                vocab[token.content] = index
                added += 1
            if token.special and token.content not in self.all_special_tokens:
                self._additional_special_tokens.append(token)
            self._register(index, token)
        self._rebuild_added_tables()
        return added

    def _rebuild_added_tables(self) -> None:
        """The regex that cuts added tokens out of the text, and the id -> bytes table for decoding."""
        contents = sorted(self._added_tokens_encoder, key=len, reverse=True)  # longest first wins at a position
        self._added_re = re.compile("(" + "|".join(map(re.escape, contents)) + ")") if contents else None
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
                tokens = [AddedToken.from_config(t) for t in value]
                for token in tokens:
                    token.special = True
                if replace_additional_special_tokens:
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
    def all_special_tokens(self) -> List[str]:
        return [t.content for t in self._all_special_tokens_extended()]

    @property
    def all_special_ids(self) -> List[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    # -- tokens <-> ids --------------------------------------------------------------------------------------
    def convert_tokens_to_ids(self, tokens):
        """A token string (or list of them) -> id(s); an unknown token gives the unk token's id, as in HF."""
        if tokens is None:
            return None
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(t) for t in tokens]

    def _token_to_id(self, token: str) -> Optional[int]:
        index = self._added_tokens_encoder.get(token)
        if index is None:
            index = self.encoder.get(token)
        if index is None and self.unk_token is not None and token != self.unk_token:
            index = self._token_to_id(self.unk_token)
        return index

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """An id (or a sequence of them) -> token string(s) such as "Ġworld". Unknown ids raise ValueError."""
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token(int(ids))
        ids = self._as_id_list(ids, "convert_ids_to_tokens")
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        return [self._id_to_token(i) for i in ids]

    def _id_to_token(self, index: int) -> str:
        token = self._added_tokens_decoder.get(index)
        if token is not None:
            return token.content
        try:
            return self.decoder[index]
        except (KeyError, TypeError):
            raise self._bad_id_error([index]) from None

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Token strings ("Hello", "Ġworld") back to text."""
        return self.decode(self.convert_tokens_to_ids(list(tokens)))

    # -- encoding ----------------------------------------------------------------------------------------------
    def _encode_text(self, text: str, add_prefix_space: Optional[bool] = None,
                     split_special_tokens: Optional[bool] = None) -> List[int]:
        """One str -> ids: cut out added tokens, BPE-encode the text between them."""
        _check_text(text)
        if add_prefix_space is None:
            add_prefix_space = self.add_prefix_space
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        source = text
        if add_prefix_space:
            text = " " + text
        try:
            if split_special_tokens or self._added_re is None:
                return self._bpe.encode_ordinary(text)
            parts = self._added_re.split(text)
            if len(parts) == 1:
                return self._bpe.encode_ordinary(text)
            ids: List[int] = []
            for segment, is_added in self._apply_added_token_rules(parts):
                if is_added:
                    ids.append(self._added_tokens_encoder[segment])
                else:
                    ids += self._bpe.encode_ordinary(segment)
            return ids
        except UnicodeEncodeError:
            raise _surrogate_error(source) from None

    def _offsets_of(self, text: str, ids: List[int], add_prefix_space: bool) -> List[Tuple[int, int]]:
        """The (start, end) characters of ``text`` that each of its ids (from _encode_text) covers, as HF's fast
        tokenizer reports them: a token that covers part of a character's UTF-8 bytes counts the whole character;
        an added token covers its text; add_prefix_space's extra space covers nothing."""
        data = text.encode("utf-8")
        char_of_byte = [i for i, ch in enumerate(text) for _ in range(len(ch.encode("utf-8")))] + [len(text)]
        byte_of_char = [0] * (len(text) + 1)
        for b in range(len(data) - 1, -1, -1):
            byte_of_char[char_of_byte[b]] = b
        byte_of_char[len(text)] = len(data)
        pos = -1 if add_prefix_space else 0  # the byte the next token starts at (-1: the virtual space)
        offsets = []
        for token_id in ids:
            added = self._added_tokens_decoder.get(token_id)
            if added is not None and (self._added_re is not None):
                start = text.find(added.content, char_of_byte[max(pos, 0)])
                if start < 0:  # (cannot happen for ids from this text; be safe rather than wrong)
                    start = char_of_byte[max(pos, 0)]
                offsets.append((start, start + len(added.content)))
                pos = byte_of_char[min(start + len(added.content), len(text))]
                continue
            table = self._bpe.id_to_bytes
            piece = table[token_id] if token_id < len(table) else None
            n = len(piece) if piece else 1
            if pos >= 0 and piece:  # text an added token's rstrip removed is not in the ids: skip it
                while pos < len(data) and data[pos:pos + n] != piece and data[pos:pos + 1].isspace():
                    pos += 1
            start, end = max(pos, 0), max(pos + n, 0)
            offsets.append((char_of_byte[min(start, len(data))], char_of_byte[min(end, len(data)) - 1] + 1
                            if end > start else char_of_byte[min(start, len(data))]))
            pos += n
        return offsets

    def _offsets_in_model_input(self, offsets, pair_offsets, add_special_tokens, trunc, max_length, stride):
        """The offsets of the ids prepare_for_model keeps: truncated the same way (truncation depends only on the
        lengths, so it is run on positions), with (0, 0) for the special tokens it adds."""
        first = list(range(len(offsets)))
        second = None if pair_offsets is None else list(range(len(pair_offsets)))
        total = len(first) + (len(second) if second is not None else 0)
        if add_special_tokens:
            total += self.num_special_tokens_to_add(pair=second is not None)
        if trunc != "do_not_truncate" and max_length is not None and total > max_length:
            first, second, _ = self.truncate_sequences(first, second, num_tokens_to_remove=total - max_length,
                                                       truncation_strategy=trunc, stride=stride)
        kept = iter([offsets[i] for i in first] + ([] if second is None else [pair_offsets[i] for i in second]))
        mask = self.get_special_tokens_mask(first, second) if add_special_tokens else [0] * (
            len(first) + (len(second) if second is not None else 0))
        return [(0, 0) if special else next(kept) for special in mask]

    def _offsets_for_input(self, text, ids, is_split_into_words, add_prefix_space, split_special_tokens):
        """Offsets of one input's ids (from _ids_of). With is_split_into_words, offsets within each word, as HF's
        fast tokenizer gives them (each word's ids are found again: where one ends is not in ``ids``)."""
        if is_split_into_words:
            return [o for word in text for o in self._offsets_of(
                word, self._encode_text(word, add_prefix_space=True, split_special_tokens=split_special_tokens), True)]
        prefix = self.add_prefix_space if add_prefix_space is None else add_prefix_space
        return self._offsets_of(text, ids, prefix)

    def _apply_added_token_rules(self, parts: List[str]) -> List[Tuple[str, bool]]:
        """parts alternate text, added token, text, ...; apply lstrip/rstrip/single_word as HF's slow code does."""
        segments = [s for s in parts if s]
        is_added = [s in self._added_tokens_encoder for s in segments]
        for i, segment in enumerate(list(segments)):
            if not is_added[i]:
                continue
            token = self._added_tokens_decoder[self._added_tokens_encoder[segment]]
            left = segments[i - 1] if i > 0 else None
            right = segments[i + 1] if i < len(segments) - 1 else None
            if token.rstrip and right:
                segments[i + 1] = right.lstrip()
            if token.lstrip and left:
                segments[i - 1] = left.rstrip()
            if token.single_word and left and left[-1] != " ":
                segments[i - 1] += segment
                segments[i] = ""
            elif token.single_word and right and right[0] != " ":
                segments[i + 1] = segment + segments[i + 1]
                segments[i] = ""
        return [(s, s in self._added_tokens_encoder) for s in segments if s]

    def _encode_words(self, words, add_prefix_space, split_special_tokens) -> List[int]:
        """is_split_into_words=True: each word is encoded on its own with a leading space (HF's rule)."""
        if not isinstance(words, (list, tuple)):
            raise TypeError(f"with is_split_into_words=True the input must be a list of str, got {type(words).__name__}")
        ids: List[int] = []
        for word in words:
            _check_text(word, "each word")
            ids += self._encode_text(word, add_prefix_space=True, split_special_tokens=split_special_tokens)
        return ids

    def tokenize(self, text: str, **kwargs) -> List[str]:
        """Text -> token strings: tokenize("Hello world") == ["Hello", "Ġworld"] ("Ġ" is the space byte)."""
        add_prefix_space = kwargs.pop("add_prefix_space", None)
        split_special_tokens = kwargs.pop("split_special_tokens", None)
        if kwargs.pop("is_split_into_words", False):
            add_prefix_space = True
        if kwargs:
            raise TypeError(f"tokenize() got unexpected keyword arguments {sorted(kwargs)}")
        return [self._id_to_token(i) for i in self._encode_text(text, add_prefix_space, split_special_tokens)]

    def show_work(self, text: str) -> TokenizationWork:
        """Every step of encoding `text` as plain text (pre-split, bytes, merges with ranks, tokens, ids)."""
        return _show_work(text, self._bpe)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return len(self.build_inputs_with_special_tokens([], [] if pair else None))

    def build_inputs_with_special_tokens(self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None) -> List[int]:
        """GPT-2 adds nothing, unless add_bos_token: then <|endoftext|> goes in front of each sequence."""
        bos = [self.bos_token_id] if self.add_bos_token else []
        if token_ids_1 is None:
            return bos + list(token_ids_0)
        return bos + list(token_ids_0) + bos + list(token_ids_1)

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False) -> List[int]:
        if already_has_special_tokens:
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in list(token_ids_0) + list(token_ids_1 or [])]
        bos = [1] if self.add_bos_token else []
        mask = bos + [0] * len(token_ids_0)
        if token_ids_1 is not None:
            mask += bos + [0] * len(token_ids_1)
        return mask

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None) -> List[int]:
        n_bos = 1 if self.add_bos_token else 0
        first = [0] * (n_bos + len(token_ids_0))
        return first if token_ids_1 is None else first + [1] * (n_bos + len(token_ids_1))

    def __call__(
        self,
        text=None,
        text_pair=None,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: Optional[int] = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: Optional[int] = None,
        padding_side: Optional[str] = None,
        return_tensors=None,
        return_token_type_ids: Optional[bool] = None,
        return_attention_mask: Optional[bool] = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: Optional[bool] = None,
        add_prefix_space: Optional[bool] = None,
    ) -> BatchEncoding:
        """Tokenize one text or a batch: tok("Hi") or tok(["Hi", "Hello there"], padding=True, return_tensors="np").

        padding: False | True/"longest" | "max_length" (to max_length, or model_max_length). Needs a pad_token.
        truncation: False | True/"longest_first" | "only_first" | "only_second", to max_length (default
        model_max_length). Giving max_length alone turns truncation on, as in HF. padding_side overrides the
        tokenizer's (right by default). return_tensors: None (lists) or "np" (int64 arrays, with a batch axis
        even for one text).
        """
        if text is None:
            raise ValueError("no text given: call tokenizer(text) with a str or a list of str")
        batched = _is_batch(text, is_split_into_words)
        if text_pair is not None and batched != _is_batch(text_pair, is_split_into_words):
            raise ValueError("text and text_pair must both be single texts or both be batches")
        if batched:
            if text_pair is not None and len(text_pair) != len(text):
                raise ValueError(f"batch of {len(text)} texts but {len(text_pair)} text_pairs")
            pairs = list(zip(text, text_pair)) if text_pair is not None else list(text)
            return self.batch_encode_plus(
                pairs, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
                pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side, return_tensors=return_tensors,
                return_token_type_ids=return_token_type_ids, return_attention_mask=return_attention_mask,
                return_overflowing_tokens=return_overflowing_tokens,
                return_special_tokens_mask=return_special_tokens_mask, return_offsets_mapping=return_offsets_mapping,
                return_length=return_length, verbose=verbose, split_special_tokens=split_special_tokens,
                add_prefix_space=add_prefix_space)
        return self.encode_plus(
            text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
            max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
            pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side, return_tensors=return_tensors,
            return_token_type_ids=return_token_type_ids, return_attention_mask=return_attention_mask,
            return_overflowing_tokens=return_overflowing_tokens, return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping, return_length=return_length, verbose=verbose,
            split_special_tokens=split_special_tokens, add_prefix_space=add_prefix_space)

    def _ids_of(self, text, is_split_into_words, add_prefix_space, split_special_tokens) -> List[int]:
        if is_split_into_words:
            return self._encode_words(text, add_prefix_space, split_special_tokens)
        return self._encode_text(text, add_prefix_space, split_special_tokens)

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, padding=False, truncation=None,
               max_length: Optional[int] = None, stride: int = 0, padding_side: Optional[str] = None,
               return_tensors=None, **kwargs) -> Union[List[int], np.ndarray]:
        """Text -> list of ids: encode("Hello world") == [15496, 995]. Same options as __call__."""
        return self.encode_plus(text, text_pair, add_special_tokens=add_special_tokens, padding=padding,
                                truncation=truncation, max_length=max_length, stride=stride,
                                padding_side=padding_side, return_tensors=return_tensors, **kwargs)["input_ids"]

    def encode_plus(self, text, text_pair=None, add_special_tokens: bool = True, padding=False, truncation=None,
                    max_length: Optional[int] = None, stride: int = 0, is_split_into_words: bool = False,
                    pad_to_multiple_of: Optional[int] = None, padding_side: Optional[str] = None,
                    return_tensors=None, return_token_type_ids: Optional[bool] = None,
                    return_attention_mask: Optional[bool] = None, return_overflowing_tokens: bool = False,
                    return_special_tokens_mask: bool = False, return_offsets_mapping: bool = False,
                    return_length: bool = False, verbose: bool = True, split_special_tokens: Optional[bool] = None,
                    add_prefix_space: Optional[bool] = None) -> BatchEncoding:
        """One text (and optional pair) -> BatchEncoding (HF's encode_plus)."""
        _tensor_type(return_tensors)
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        ids = self._ids_of(text, is_split_into_words, add_prefix_space, split_special_tokens)
        pair_ids = None if text_pair is None else self._ids_of(text_pair, is_split_into_words, add_prefix_space,
                                                               split_special_tokens)
        if return_offsets_mapping:  # prepare without padding, add the offsets, then pad them together
            encoded = self.prepare_for_model(
                ids, pair_ids, add_special_tokens=add_special_tokens, truncation=trunc, max_length=max_length,
                stride=stride, return_token_type_ids=return_token_type_ids, return_attention_mask=False,
                return_overflowing_tokens=return_overflowing_tokens,
                return_special_tokens_mask=return_special_tokens_mask, return_length=return_length, verbose=verbose)
            encoded["offset_mapping"] = self._offsets_in_model_input(
                self._offsets_for_input(text, ids, is_split_into_words, add_prefix_space, split_special_tokens),
                None if text_pair is None else self._offsets_for_input(text_pair, pair_ids, is_split_into_words,
                                                                       add_prefix_space, split_special_tokens),
                add_special_tokens, trunc, max_length, stride)
            padded = self.pad(dict(encoded), padding=pad, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
                              padding_side=padding_side, return_attention_mask=return_attention_mask)
            return BatchEncoding(dict(padded), tensor_type=return_tensors, prepend_batch_axis=True)
        return self.prepare_for_model(
            ids, pair_ids, add_special_tokens=add_special_tokens, padding=pad, truncation=trunc,
            max_length=max_length, stride=stride, pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side,
            return_tensors=return_tensors, return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask, return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask, return_length=return_length, verbose=verbose,
            prepend_batch_axis=True)

    def batch_encode_plus(self, batch_text_or_text_pairs, add_special_tokens: bool = True, padding=False,
                          truncation=None, max_length: Optional[int] = None, stride: int = 0,
                          is_split_into_words: bool = False, pad_to_multiple_of: Optional[int] = None,
                          padding_side: Optional[str] = None, return_tensors=None,
                          return_token_type_ids: Optional[bool] = None, return_attention_mask: Optional[bool] = None,
                          return_overflowing_tokens: bool = False, return_special_tokens_mask: bool = False,
                          return_offsets_mapping: bool = False, return_length: bool = False, verbose: bool = True,
                          split_special_tokens: Optional[bool] = None,
                          add_prefix_space: Optional[bool] = None) -> BatchEncoding:
        """A list of texts (or of (text, pair) tuples) -> one BatchEncoding, padded together if asked."""
        _tensor_type(return_tensors)
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise TypeError(f"a batch must be a list or tuple, got {type(batch_text_or_text_pairs).__name__}")
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        outputs: Dict[str, list] = {}
        for n, item in enumerate(batch_text_or_text_pairs):
            if isinstance(item, tuple) and len(item) == 2 and not is_split_into_words:
                first, second = item
            else:
                first, second = item, None
            if not is_split_into_words and not isinstance(first, str):
                raise TypeError(f"batch item {n} must be a str, got {type(first).__name__}")
            ids = self._ids_of(first, is_split_into_words, add_prefix_space, split_special_tokens)
            pair_ids = None if second is None else self._ids_of(second, is_split_into_words, add_prefix_space,
                                                                split_special_tokens)
            encoded = self.prepare_for_model(
                ids, pair_ids, add_special_tokens=add_special_tokens, padding="do_not_pad", truncation=trunc,
                max_length=max_length, stride=stride, return_token_type_ids=return_token_type_ids,
                return_attention_mask=False, return_overflowing_tokens=return_overflowing_tokens,
                return_special_tokens_mask=return_special_tokens_mask, return_length=return_length, verbose=verbose)
            if return_offsets_mapping:
                encoded["offset_mapping"] = self._offsets_in_model_input(
                    self._offsets_for_input(first, ids, is_split_into_words, add_prefix_space, split_special_tokens),
                    None if second is None else self._offsets_for_input(second, pair_ids, is_split_into_words,
                                                                        add_prefix_space, split_special_tokens),
                    add_special_tokens, trunc, max_length, stride)
            for key, value in encoded.items():
                outputs.setdefault(key, []).append(value)
        if not outputs:  # an empty batch
            outputs = {"input_ids": []}
            if return_attention_mask is not False:
                outputs["attention_mask"] = []
        else:
            outputs = self.pad(outputs, padding=pad, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
                               padding_side=padding_side, return_attention_mask=return_attention_mask)
        return BatchEncoding(outputs, tensor_type=return_tensors, n_sequences=1)

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of) -> Tuple[str, str, Optional[int]]:
        """HF's rules for turning padding/truncation/max_length into strategies (see _get_padding_truncation_strategies)."""
        padding = getattr(padding, "value", padding)
        truncation = getattr(truncation, "value", truncation)
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # HF: max_length alone turns truncation on
        if padding is True:
            pad = "longest"
        elif padding is False or padding is None:
            pad = "do_not_pad"
        elif padding in ("longest", "max_length", "do_not_pad"):
            pad = padding
        else:
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
        if truncation is True:
            trunc = "longest_first"
        elif truncation is False or truncation is None:
            trunc = "do_not_truncate"
        elif truncation in ("longest_first", "only_first", "only_second", "do_not_truncate"):
            trunc = truncation
        else:
            raise ValueError("truncation must be True, False, 'longest_first', 'only_first', 'only_second' or "
                             f"'do_not_truncate', got {truncation!r}")
        if max_length is None and (pad == "max_length" or trunc != "do_not_truncate"):
            max_length = self.model_max_length
        if max_length is not None and (type(max_length) is not int or max_length < 0):
            raise ValueError(f"max_length must be a non-negative int, got {max_length!r}")
        if pad != "do_not_pad" and (self.pad_token is None or self.pad_token_id is None):
            raise ValueError(
                "Asking to pad but the tokenizer does not have a padding token. Please select a token to use as "
                "`pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad token via "
                "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.")
        if (trunc != "do_not_truncate" and pad != "do_not_pad" and pad_to_multiple_of is not None
                and max_length is not None and max_length % pad_to_multiple_of != 0):
            raise ValueError(f"truncation length ({max_length}) is not a multiple of pad_to_multiple_of "
                             f"({pad_to_multiple_of})")
        return pad, trunc, max_length

    def prepare_for_model(self, ids: List[int], pair_ids: Optional[List[int]] = None, add_special_tokens: bool = True,
                          padding="do_not_pad", truncation="do_not_truncate", max_length: Optional[int] = None,
                          stride: int = 0, pad_to_multiple_of: Optional[int] = None, padding_side: Optional[str] = None,
                          return_tensors=None, return_token_type_ids: Optional[bool] = None,
                          return_attention_mask: Optional[bool] = None, return_overflowing_tokens: bool = False,
                          return_special_tokens_mask: bool = False, return_length: bool = False,
                          verbose: bool = True, prepend_batch_axis: bool = False) -> BatchEncoding:
        """Ids of one sequence (or pair) -> truncated, special tokens added, padded (HF's prepare_for_model)."""
        pad, truncation, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        ids = list(ids)
        pair_ids = None if pair_ids is None else list(pair_ids)
        total = len(ids) + (len(pair_ids) if pair_ids is not None else 0)
        if add_special_tokens:
            total += self.num_special_tokens_to_add(pair=pair_ids is not None)
        if return_overflowing_tokens and truncation == "longest_first" and pair_ids is not None:
            raise ValueError("Not possible to return overflowing tokens for pair of sequences with the `longest_first`. "
                             "Please select another truncation strategy than `longest_first`, for instance "
                             "`only_second` or `only_first`.")  # HF's message
        overflowing: List[int] = []
        out: Dict[str, Any] = {}
        if truncation != "do_not_truncate" and max_length is not None and total > max_length:
            ids, pair_ids, overflowing = self.truncate_sequences(
                ids, pair_ids, num_tokens_to_remove=total - max_length, truncation_strategy=truncation, stride=stride)
        if return_overflowing_tokens:
            out["overflowing_tokens"] = overflowing
            out["num_truncated_tokens"] = total - max_length if max_length is not None else 0
        if add_special_tokens:
            sequence = self.build_inputs_with_special_tokens(ids, pair_ids)
            token_type_ids = self.create_token_type_ids_from_sequences(ids, pair_ids)
        else:
            sequence = ids + (pair_ids or [])
            token_type_ids = [0] * len(sequence)
        out["input_ids"] = sequence
        if return_token_type_ids:
            out["token_type_ids"] = token_type_ids
        if return_special_tokens_mask:
            out["special_tokens_mask"] = (self.get_special_tokens_mask(ids, pair_ids) if add_special_tokens
                                          else [0] * len(sequence))
        if max_length is None and len(sequence) > self.model_max_length and verbose and not self._warned_too_long:
            logger.warning("Token indices sequence length is longer than the specified maximum sequence length for "
                           "this model (%d > %d). Running this sequence through the model will result in indexing "
                           "errors", len(sequence), self.model_max_length)
            self._warned_too_long = True
        if pad != "do_not_pad" or return_attention_mask:
            out = self._pad_one(out, pad, max_length, pad_to_multiple_of, padding_side, return_attention_mask)
        if return_length:
            out["length"] = len(out["input_ids"])
        return BatchEncoding(out, tensor_type=return_tensors, prepend_batch_axis=prepend_batch_axis)

    def truncate_sequences(self, ids: List[int], pair_ids: Optional[List[int]] = None, num_tokens_to_remove: int = 0,
                           truncation_strategy="longest_first", stride: int = 0):
        """Remove num_tokens_to_remove ids (HF's rules) -> (ids, pair_ids, overflowing_tokens)."""
        strategy = getattr(truncation_strategy, "value", truncation_strategy)
        if num_tokens_to_remove <= 0:
            return ids, pair_ids, []
        left = self.truncation_side == "left"
        overflowing: List[int] = []
        if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
            if len(ids) > num_tokens_to_remove:
                window = min(len(ids), stride + num_tokens_to_remove)
                if left:
                    overflowing, ids = ids[:window], ids[num_tokens_to_remove:]
                else:
                    overflowing, ids = ids[-window:], ids[:-num_tokens_to_remove]
            else:
                logger.error("We need to remove %d tokens to truncate the input but the first sequence has a length "
                             "%d.", num_tokens_to_remove, len(ids))
        elif strategy == "longest_first":
            n_pair = len(pair_ids)
            first_remove = min(abs(n_pair - len(ids)), num_tokens_to_remove)
            second_remove = num_tokens_to_remove - first_remove
            if len(ids) > n_pair:
                from_ids, from_pair = first_remove + second_remove // 2, second_remove - second_remove // 2
            else:
                from_ids, from_pair = second_remove // 2, first_remove + second_remove - second_remove // 2
            if left:
                ids, pair_ids = ids[from_ids:], pair_ids[from_pair:]
            else:
                ids = ids[:-from_ids] if from_ids > 0 else ids
                pair_ids = pair_ids[:-from_pair] if from_pair > 0 else pair_ids
        elif strategy == "only_second" and pair_ids is not None:
            if len(pair_ids) > num_tokens_to_remove:
                window = min(len(pair_ids), stride + num_tokens_to_remove)
                if left:
                    overflowing, pair_ids = pair_ids[:window], pair_ids[num_tokens_to_remove:]
                else:
                    overflowing, pair_ids = pair_ids[-window:], pair_ids[:-num_tokens_to_remove]
            else:
                logger.error("We need to remove %d tokens to truncate the input but the second sequence has a "
                             "length %d.", num_tokens_to_remove, len(pair_ids))
        return ids, pair_ids, overflowing

    def pad(self, encoded_inputs, padding=True, max_length: Optional[int] = None,
            pad_to_multiple_of: Optional[int] = None, padding_side: Optional[str] = None,
            return_attention_mask: Optional[bool] = None, return_tensors=None, verbose: bool = True) -> BatchEncoding:
        """Pad one encoding or a batch (a dict of lists, or a list of dicts) to a common length (HF's pad)."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], dict):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
        if "input_ids" not in encoded_inputs:
            raise ValueError(f"pad() needs input_ids, got keys {list(encoded_inputs)}")
        first = encoded_inputs["input_ids"]
        first = first[0] if isinstance(first, (list, tuple)) and len(first) else first
        if return_tensors is None and isinstance(first, np.ndarray):
            return_tensors = "np"  # HF: arrays in, arrays out
        encoded_inputs = {k: (v.tolist() if isinstance(v, np.ndarray) else
                              [x.tolist() if isinstance(x, np.ndarray) else x for x in v] if isinstance(v, (list, tuple))
                              else v) for k, v in encoded_inputs.items()}
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        padding = getattr(padding, "value", padding)
        pad = "longest" if padding is True else "do_not_pad" if padding in (False, None) else padding
        if pad not in ("longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
        if pad == "max_length" and max_length is None:
            max_length = self.model_max_length
        if pad != "do_not_pad" and self.pad_token_id is None:
            raise ValueError("Asking to pad but the tokenizer does not have a padding token. Please select a token to "
                             "use as `pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad "
                             "token via `tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.")
        required = encoded_inputs["input_ids"]
        if not required or isinstance(required[0], (int, np.integer)):  # a single sequence
            return BatchEncoding(self._pad_one(dict(encoded_inputs), pad, max_length, pad_to_multiple_of,
                                               padding_side, return_attention_mask), tensor_type=return_tensors)
        if pad == "longest":
            max_length, pad = max(len(ids) for ids in required), "max_length"
        out: Dict[str, list] = {}
        for n in range(len(required)):
            one = {k: v[n] for k, v in encoded_inputs.items()}
            for k, v in self._pad_one(one, pad, max_length, pad_to_multiple_of, padding_side,
                                      return_attention_mask).items():
                out.setdefault(k, []).append(v)
        return BatchEncoding(out, tensor_type=return_tensors)

    def _pad_one(self, encoded: Dict[str, Any], pad: str, max_length: Optional[int], pad_to_multiple_of: Optional[int],
                 padding_side: Optional[str], return_attention_mask: bool) -> Dict[str, Any]:
        ids = encoded["input_ids"]
        if pad == "longest":
            max_length = len(ids)
        if max_length is not None and pad_to_multiple_of and max_length % pad_to_multiple_of:
            max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
        if return_attention_mask and "attention_mask" not in encoded:
            encoded["attention_mask"] = [1] * len(ids)
        if pad == "do_not_pad" or max_length is None or len(ids) >= max_length:
            return encoded
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        n = max_length - len(ids)
        fill = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": self.pad_token_type_id,
                "special_tokens_mask": 1, "offset_mapping": (0, 0)}
        for key, value in fill.items():
            if key in encoded and (key != "attention_mask" or return_attention_mask):
                current = list(encoded[key])
                encoded[key] = current + [value] * n if side == "right" else [value] * n + current
        return encoded

    # -- decoding ----------------------------------------------------------------------------------------------
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
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
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
        non-special added tokens (breaking the round trip); clean_up_tokenization_spaces=True applies HF's English
        clean-up (" ," -> ","; off by default, as for GPT-2 in HF).
        """
        kwargs.pop("use_source_tokenizer", None)  # accepted for HF compatibility; meaningless here
        if kwargs:
            raise TypeError(f"decode() got unexpected keyword arguments {sorted(kwargs)}")
        ids = self._as_id_list(token_ids)
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        errors = errors or self.errors
        if spaces_between_special_tokens and self._has_legacy_added(ids):
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

    # -- files -------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], *init_inputs,
                        cache_dir=None, force_download: bool = False, local_files_only: bool = False, token=None,
                        revision: Optional[str] = None, subfolder: str = "", **kwargs) -> "GPT2Tokenizer":
        """Load a tokenizer by name or from a directory.

        * "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2" (also "openai-community/...") use the
          bundled vocabulary: no network, no files;
        * a directory: vocab.json + merges.txt (or encoder.json + vocab.bpe, or tokenizer.json), plus
          tokenizer_config.json, special_tokens_map.json and added_tokens.json when present;
        * any other "owner/repo": the same files fetched from the Hub (minigpt2.hub: HF_ENDPOINT, HF_HUB_CACHE
          and HF_HUB_OFFLINE apply; force_download is accepted and ignored).
        Keyword arguments override the files' settings: from_pretrained("gpt2", pad_token="<|endoftext|>").
        """
        if init_inputs:
            raise TypeError("from_pretrained takes the name or directory, then keyword arguments only")
        name = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(os.path.join(name, subfolder) if subfolder else name):
            files = _local_files(os.path.join(name, subfolder) if subfolder else name)
        elif name in BUNDLED_NAMES and not subfolder:
            files = {}
            kwargs.setdefault("model_max_length", GPT2_MAX_LENGTH)
        else:
            files = _hub_files(name, revision=revision, cache_dir=cache_dir, token=token,
                               local_files_only=local_files_only, subfolder=subfolder)
        return cls._from_files(files, name, kwargs)

    @classmethod
    def _from_files(cls, files: Dict[str, Optional[str]], name: str, kwargs: Dict[str, Any]) -> "GPT2Tokenizer":
        config: Dict[str, Any] = {}
        if files.get("tokenizer_config.json"):
            config = _read_json(files["tokenizer_config.json"])
            tokenizer_class = config.get("tokenizer_class")
            if tokenizer_class and tokenizer_class.replace("Fast", "") != "GPT2Tokenizer":
                logger.warning("%s declares tokenizer_class=%r; loading it as GPT-2's byte-level BPE tokenizer",
                               name, tokenizer_class)
        for key in ("tokenizer_class", "name_or_path", "special_tokens_map_file", "auto_map", "tokenizer_file",
                    "vocab_file", "merges_file"):
            config.pop(key, None)
        if files.get("special_tokens_map.json"):
            for key, value in _read_json(files["special_tokens_map.json"]).items():
                if key in SPECIAL_TOKENS_ATTRIBUTES or key == "additional_special_tokens":
                    config[key] = value
        if files.get("added_tokens.json") and "added_tokens_decoder" not in config:
            special = {str(AddedToken.from_config(config[k])) for k in SPECIAL_TOKENS_ATTRIBUTES if config.get(k)}
            special |= {str(AddedToken.from_config(t)) for t in config.get("additional_special_tokens") or []}
            config["added_tokens_decoder"] = {
                int(index): AddedToken(content, normalized=content not in special, special=content in special)
                for content, index in _read_json(files["added_tokens.json"]).items()}
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            if isinstance(config.get(key), dict):
                config[key] = AddedToken.from_config(config[key])
        config.update(kwargs)
        config.setdefault("name_or_path", name)
        if files.get("vocab") and files.get("merges"):
            return cls(files["vocab"], files["merges"], **config)
        if files.get("tokenizer.json"):
            return cls(tokenizer_file=files["tokenizer.json"], **config)
        return cls(**config)  # the bundled vocabulary

    def save_pretrained(self, save_directory: Union[str, os.PathLike], legacy_format=None,
                        filename_prefix: Optional[str] = None, **kwargs) -> Tuple[str, ...]:
        """Write vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json (and added_tokens.json)
        in HF's formats, so transformers' GPT2Tokenizer.from_pretrained(save_directory) loads the same tokenizer."""
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_pretrained needs a directory, but {save_directory} is a file")
        os.makedirs(save_directory, exist_ok=True)
        prefix = filename_prefix + "-" if filename_prefix else ""
        path = lambda name: os.path.join(save_directory, prefix + name)  # noqa: E731

        def token_config(token: AddedToken, with_special: bool) -> Dict[str, Any]:
            state = token.__getstate__()
            if not with_special:
                state.pop("special")
            return state

        config: Dict[str, Any] = {
            "add_bos_token": self.add_bos_token,
            "add_prefix_space": self.add_prefix_space,
            "added_tokens_decoder": {str(i): token_config(t, True) for i, t in self.added_tokens_decoder.items()},
        }
        for name in SPECIAL_TOKENS_ATTRIBUTES:
            if self._special_tokens.get(name) is not None or name in ("bos_token", "eos_token", "unk_token", "pad_token"):
                config[name] = getattr(self, name)
        if self._additional_special_tokens:
            config["additional_special_tokens"] = self.additional_special_tokens
        config.update({
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "errors": self.errors,
            "model_max_length": self.model_max_length,
            "tokenizer_class": "GPT2Tokenizer",
        })
        if self.padding_side != "right":
            config["padding_side"] = self.padding_side
        if self.truncation_side != "right":
            config["truncation_side"] = self.truncation_side
        if self.split_special_tokens:
            config["split_special_tokens"] = True
        config = dict(sorted(config.items()))
        special_map: Dict[str, Any] = {name: token_config(token, False) for name, token in self._special_tokens.items()
                                       if token is not None}
        if self._additional_special_tokens:
            special_map["additional_special_tokens"] = [token_config(t, False) for t in self._additional_special_tokens]
        written = []
        for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special_map)):
            with open(path(name), "w", encoding="utf-8") as f:
                f.write(json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            written.append(path(name))
        with open(path("vocab.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(self.encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        with open(path("merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self._bpe.merges))
        written += [path("vocab.json"), path("merges.txt")]
        extra = {t.content: i for i, t in self.added_tokens_decoder.items() if i >= self.vocab_size}
        if extra:
            with open(path("added_tokens.json"), "w", encoding="utf-8") as f:
                f.write(json.dumps(extra, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            written.append(path("added_tokens.json"))
        return tuple(written)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
                f"special_tokens={self.special_tokens_map}, added_tokens={len(self) - self.vocab_size})")


class GPT2TokenizerFast(GPT2Tokenizer):
    """The same pure-Python implementation as GPT2Tokenizer, under HF's "fast" name.

    HF's GPT2TokenizerFast wraps the Rust `tokenizers` library; minigpt2's GPT2Tokenizer is already faster than that
    on a single thread (see docs/tokenizer.md), so this class only exists so code written for HF runs unchanged.
    It accepts HF's tokenizer_file= (a tokenizer.json). is_fast is False: there are no Rust Encoding objects,
    offsets or word_ids.
    """


class AutoTokenizer:
    """HF's AutoTokenizer for the one tokenizer minigpt2 has: from_pretrained returns a GPT2TokenizerFast
    (use_fast=False: a GPT2Tokenizer; they are the same implementation)."""

    def __init__(self, *args, **kwargs):
        raise EnvironmentError("AutoTokenizer is instantiated with AutoTokenizer.from_pretrained(name_or_path)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *inputs, use_fast: bool = True, **kwargs) -> GPT2Tokenizer:
        kwargs.pop("trust_remote_code", None)
        target = GPT2TokenizerFast if use_fast else GPT2Tokenizer
        return target.from_pretrained(pretrained_model_name_or_path, *inputs, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------
_OPTIONAL_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def _read_json(path: str) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise VocabularyFileError(f"{path}: not valid JSON ({e})") from None


def _local_files(directory: str) -> Dict[str, Optional[str]]:
    def find(*names):
        for n in names:
            if os.path.isfile(os.path.join(directory, n)):
                return os.path.join(directory, n)
        return None

    files: Dict[str, Optional[str]] = {
        "vocab": find("vocab.json", "encoder.json", "vocab.json.gz", "encoder.json.gz"),
        "merges": find("merges.txt", "vocab.bpe", "merges.txt.gz", "vocab.bpe.gz"),
        "tokenizer.json": find("tokenizer.json"),
    }
    files.update({n: find(n) for n in _OPTIONAL_FILES})
    if not (files["vocab"] and files["merges"]) and not files["tokenizer.json"]:
        raise _NoVocabularyInDirectory(f"{directory} holds no GPT-2 vocabulary: expected vocab.json + merges.txt, "
                                  f"encoder.json + vocab.bpe, or tokenizer.json (for GPT-2's own vocabulary, "
                                  f"use from_pretrained('gpt2'))")
    return files


def _hub_files(repo_id: str, revision=None, cache_dir=None, token=None, local_files_only: bool = False,
               subfolder: str = "") -> Dict[str, Optional[str]]:
    """Fetch a Hub repository's tokenizer files with minigpt2.hub (huggingface_hub, imported only when needed).

    HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE apply as for the model's weights."""
    from .hub import resolve_file

    def fetch(filename: str, required: bool) -> Optional[str]:
        return resolve_file(repo_id, f"{subfolder}/{filename}" if subfolder else filename, revision=revision,
                            cache_dir=cache_dir, token=token, local_files_only=local_files_only, required=required)

    offline_names = ", ".join(sorted(n for n in BUNDLED_NAMES if "/" not in n))
    try:
        files: Dict[str, Optional[str]] = {"vocab": fetch("vocab.json", required=False)}
        files["merges"] = fetch("merges.txt", required=False) if files["vocab"] else None
        files["tokenizer.json"] = None if files["merges"] else fetch("tokenizer.json", required=False)
        if not files["merges"] and not files["tokenizer.json"]:
            raise _NoTokenizerInRepository(f"the repository {repo_id!r} has no GPT-2 tokenizer files (vocab.json + "
                                           f"merges.txt, or tokenizer.json)")
        for name in _OPTIONAL_FILES:
            files[name] = fetch(name, required=False)
    except OSError as e:
        error = _NoTokenizerInRepository if isinstance(e, MissingTokenizerFiles) else OSError
        raise error(f"could not load a tokenizer for {repo_id!r}: {e} (the names {offline_names} work offline, "
                    f"with the bundled vocabulary; a local directory works too)") from e
    return files


def _read_tokenizer_json(path: str) -> Tuple[Dict[str, int], List[Tuple[str, str]], List[Dict[str, Any]]]:
    """HF's tokenizer.json (the Rust tokenizers format) -> encoder, merges, added tokens; byte-level BPE only."""
    data = _read_json(path)
    model = data.get("model") or {}
    if model.get("type", "BPE") != "BPE" or "vocab" not in model or "merges" not in model:
        raise VocabularyFileError(f"{path}: not a BPE tokenizer (model type {model.get('type')!r})")
    pre = json.dumps(data.get("pre_tokenizer") or {})
    if "ByteLevel" not in pre:
        raise VocabularyFileError(f"{path}: not a byte-level BPE tokenizer like GPT-2's (pre_tokenizer {pre[:80]})")
    encoder = parse_encoder(json.dumps(model["vocab"]), path)
    merges = []
    for n, merge in enumerate(model["merges"]):
        parts = merge.split(" ") if isinstance(merge, str) else list(merge)
        if len(parts) != 2:
            raise VocabularyFileError(f"{path}: merge {n} is {merge!r}, not a pair")
        merges.append((parts[0], parts[1]))
    check_consistent(encoder, merges, path, path)
    return encoder, merges, list(data.get("added_tokens") or [])


def _is_batch(text, is_split_into_words: bool) -> bool:
    if isinstance(text, str):
        return False
    if isinstance(text, (list, tuple)):
        if is_split_into_words:
            return bool(text) and isinstance(text[0], (list, tuple))
        return True
    hint = " (decode bytes to str first)" if isinstance(text, (bytes, bytearray)) else ""
    raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}{hint}")


# ---------------------------------------------------------------------------------------------------------------
# Streaming decode
# ---------------------------------------------------------------------------------------------------------------
class TokenStreamDecoder:
    """Turn ids into text as they arrive, holding back an incomplete UTF-8 character.

    One emoji is 4 bytes and GPT-2 often spends 2-3 tokens on it; decoding each token alone would print
    replacement characters. This decoder keeps the bytes of an unfinished character until the token that completes
    it arrives (Python's incremental UTF-8 decoder does the bookkeeping), so

        "".join(decoder.step(i) for i in ids) + decoder.flush() == tokenizer.decode(ids)

    for every id sequence. flush() ends the stream: leftover bytes become U+FFFD (errors="replace").
    """

    def __init__(self, tokenizer: Optional[GPT2Tokenizer] = None, skip_special_tokens: bool = False,
                 errors: Optional[str] = None):
        self.tokenizer = tokenizer if tokenizer is not None else _default_tokenizer()
        self.skip = set(self.tokenizer.all_special_ids) if skip_special_tokens else set()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors or self.tokenizer.errors)

    def step(self, token_id) -> str:
        """Add one id; return the text it completes ("" while a character is still incomplete)."""
        if isinstance(token_id, np.ndarray) and token_id.size == 1:
            token_id = token_id.reshape(()).item()
        if not isinstance(token_id, (int, np.integer)) or isinstance(token_id, bool):
            raise TypeError(f"step() takes one int id, got {type(token_id).__name__}")
        if token_id in self.skip:
            return ""
        return self._utf8.decode(self.tokenizer.token_bytes(token_id))

    def feed(self, token_ids) -> str:
        """Add several ids (or one); return the text completed so far."""
        ids = self.tokenizer._as_id_list(token_ids, "feed")
        return "".join(self.step(i) for i in ids)

    def flush(self) -> str:
        """End of stream: any incomplete character becomes U+FFFD. The decoder can then be reused."""
        return self._utf8.decode(b"", final=True)

    def reset(self) -> None:
        self._utf8.reset()

    @property
    def pending_bytes(self) -> bytes:
        """The bytes held back, waiting for the rest of their character."""
        return self._utf8.getstate()[0]


def decode_stream(token_ids: Iterable, tokenizer: Optional[GPT2Tokenizer] = None,
                  skip_special_tokens: bool = False) -> Iterator[str]:
    """Yield text pieces as the ids of an iterable (e.g. a generator from the model) arrive; never a half emoji."""
    decoder = TokenStreamDecoder(tokenizer, skip_special_tokens=skip_special_tokens)
    for token_id in token_ids:
        text = decoder.step(token_id)
        if text:
            yield text
    tail = decoder.flush()
    if tail:
        yield tail


_DEFAULT: List[GPT2Tokenizer] = []


def _default_tokenizer() -> GPT2Tokenizer:
    if not _DEFAULT:
        _DEFAULT.append(GPT2Tokenizer())
    return _DEFAULT[0]


def show_work(text: str, tokenizer: Optional[GPT2Tokenizer] = None) -> TokenizationWork:
    """Every step of encoding `text` with GPT-2's BPE: print(show_work("Hello world!")).

    Returns a TokenizationWork: .pieces (each with .text, .utf8, .byte_chars, .merges [rank, pair, symbols],
    .tokens, .ids), .tokens and .ids; str() of it is a readable report. Special tokens are treated as plain text.
    """
    return _show_work(text, None if tokenizer is None else tokenizer._bpe)
