"""GPT2Tokenizer, assembled from its parts, and HF's other names for it: GPT2TokenizerFast, AutoTokenizer."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

from ..bpe import GPT2_EOT, ByteLevelBPE, check_consistent, gpt2_bpe, parse_encoder, parse_merges, read_text
from .chat import ChatTemplates
from .decoding import Decoding
from .encoding import Encoding
from .files import GPT2_MAX_LENGTH, Files, _read_tokenizer_json
from .model_inputs import ModelInputs
from .vocabulary import SPECIAL_TOKENS_ATTRIBUTES, AddedToken, Vocabulary


class GPT2Tokenizer(Vocabulary, Encoding, ModelInputs, Decoding, ChatTemplates, Files):
    """GPT-2's byte-level BPE tokenizer, pure Python, with the interface of HF transformers 4.x.

    GPT2Tokenizer(vocab_file, merges_file, ...) reads encoder.json/vocab.json and vocab.bpe/merges.txt (optionally
    .gz); with no files it uses the bundled GPT-2 vocabulary. The parameters are HF's: errors="replace" (how decode
    treats invalid UTF-8), unk/bos/eos_token="<|endoftext|>", pad_token=None, add_prefix_space=False (prepend a
    space so the first word is encoded like the others), add_bos_token=False; keyword-only, also HF's:
    model_input_names (["input_ids"]: no attention_mask), chat_template (a Jinja template, see apply_chat_template),
    additional_special_tokens and transformers 5's extra_special_tokens.

    The model was trained with spaces attached to the following word, so "Hello" at the start and " Hello" later
    are different tokens: tok("Hello world") -> [15496, 995] but tok(" Hello world") -> [18435, 995].

    HF differences, all deliberate: model_max_length defaults to 1024 (GPT-2's context; HF's constructor leaves it
    unlimited, its from_pretrained("gpt2") says 1024); decode never inserts spaces around added tokens unless
    spaces_between_special_tokens=True (HF's slow tokenizer does, its fast one does not), so decode(encode(s)) == s;
    non-str input is a TypeError; return_tensors="pt" gives NumPy arrays, as "np" does (minigpt2 is NumPy-only);
    a ragged batch with return_tensors="np" is an error, not an object array; an unknown id in decode is a
    ValueError (also a TypeError, HF's exception there), and gives None in convert_ids_to_tokens, as in HF.
    """

    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}
    model_input_names = ["input_ids", "attention_mask"]
    is_fast = False
    pad_token_type_id = 0

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
        # transformers 5 writes the additional special tokens as "extra_special_tokens" (a list; in 4.x a dict of
        # named ones): all of them are special tokens
        extra_special = kwargs.pop("extra_special_tokens", None) or []
        if isinstance(extra_special, dict):
            extra_special = list(extra_special.values())
        model_input_names = kwargs.pop("model_input_names", None)
        if model_input_names is not None:  # e.g. ["input_ids"]: no attention_mask (HF's option)
            self.model_input_names = list(model_input_names)
        self.chat_template = self._read_chat_template(kwargs.pop("chat_template", None))
        self.init_kwargs = dict(kwargs, errors=errors, add_prefix_space=add_prefix_space, add_bos_token=add_bos_token,
                                model_max_length=model_max_length)
        if model_input_names is not None:
            self.init_kwargs["model_input_names"] = self.model_input_names
        self._warned_too_long = False
        self.deprecation_warnings: Dict[str, bool] = {}  # HF's name: the warnings given once (options.warn_once)

        # 3. Added and special tokens, in HF's order: those recorded in the files, then the special tokens.
        self._added_tokens_decoder: Dict[int, AddedToken] = {}
        self._added_tokens_encoder: Dict[str, int] = {}
        for entry in file_added:
            self._register(int(entry["id"]), AddedToken.from_config(entry))
        for index, token in sorted((added_tokens_decoder or {}).items(), key=lambda kv: int(kv[0])):
            self._register(int(index), AddedToken.from_config(token))
        self._special_tokens: Dict[str, Optional[AddedToken]] = {}
        given = dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, pad_token=pad_token,
                     **other_special)
        for name in SPECIAL_TOKENS_ATTRIBUTES:  # HF's order (sep before pad): special_tokens_map, all_special_tokens
            setattr(self, name, given[name])
        self._additional_special_tokens: List[AddedToken] = []
        for value in [*(additional_special_tokens or []), *extra_special]:
            token = AddedToken.from_config(value)
            if token.content not in self.additional_special_tokens:
                self._additional_special_tokens.append(token)
        self._add_tokens([t for t in self._all_special_tokens_extended()
                          if t.content not in self._added_tokens_encoder], special_tokens=True)
        self._rebuild_added_tables()


class GPT2TokenizerFast(GPT2Tokenizer):
    """GPT2Tokenizer under HF's "fast" name (AutoTokenizer's default), behaving as HF's fast tokenizer does.

    HF's GPT2TokenizerFast wraps the Rust `tokenizers` library; this is the same pure-Python implementation as
    GPT2Tokenizer (faster than the Rust one on a single thread, see docs/tokenizer.md), with the fast tokenizer's
    behaviours: is_fast is True; its BatchEncoding answers word_ids(), tokens(), char_to_token(), ...;
    truncation follows the Rust rules (a pair's budget split as the Rust code does; return_overflowing_tokens with
    stride gives every overlapping window as a row, with overflow_to_sample_mapping); decode skips ids past the
    vocabulary. It reads tokenizer_file= (a tokenizer.json).
    """

    is_fast = True
    can_save_slow_tokenizer = True  # HF: whether save_pretrained can write vocab.json + merges.txt (it always can)

    # HF's fast GPT-2 adds special tokens with a template: with add_bos_token, one <|endoftext|> in front of the
    # text and its pair together (the slow one puts one in front of each).
    def build_inputs_with_special_tokens(self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None):
        return ([self.bos_token_id] if self.add_bos_token else []) + list(token_ids_0) + list(token_ids_1 or [])

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False):
        if already_has_special_tokens:
            return super().get_special_tokens_mask(token_ids_0, token_ids_1, True)
        return [1] * self.add_bos_token + [0] * (len(token_ids_0) + len(token_ids_1 or []))

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None) -> List[int]:
        return [0] * (self.add_bos_token + len(token_ids_0)) + [1] * len(token_ids_1 or [])


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

