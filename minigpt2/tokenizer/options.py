"""The encoding options, in one place: what tokenizer(...), encode, encode_plus, batch_encode_plus and
prepare_for_model accept, with HF's names and defaults, and HF's rules for turning padding / truncation /
max_length into what is done.

    options = EncodingOptions.resolve(tokenizer, {"padding": True, "max_length": 8})
    options.padding, options.truncation, options.max_length      # 'longest', 'longest_first', 8
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

logger = logging.getLogger("minigpt2.tokenizer")

_NUMPY = ("np", "pt")  # "pt" gives NumPy arrays too: see tensor_type
_NOT_NUMPY = {"tf": "TensorFlow", "jax": "JAX", "mlx": "MLX"}
PADDING = ("longest", "max_length", "do_not_pad")
TRUNCATION = ("longest_first", "only_first", "only_second", "do_not_truncate")
LARGE_INTEGER = int(1e20)  # HF: a model_max_length above this means "no predefined maximum length"
TRUNCATION_NOT_ACTIVATED = (  # HF's messages
    "Truncation was not explicitly activated but `max_length` is provided a specific value, please use "
    "`truncation=True` to explicitly truncate examples to max length. Defaulting to 'longest_first' truncation "
    "strategy. If you encode pairs of sequences (GLUE-style) with the tokenizer you can select this strategy more "
    "precisely by providing a specific strategy to `truncation`.")
NO_MAX_LENGTH_TO_PAD = ("Asking to pad to max_length but no maximum length is provided and the model has no "
                        "predefined maximum length. Default to no padding.")
NO_MAX_LENGTH_TO_TRUNCATE = ("Asking to truncate to max_length but no maximum length is provided and the model has "
                             "no predefined maximum length. Default to no truncation.")
NO_PAD_TOKEN = ("Asking to pad but the tokenizer does not have a padding token. Please select a token to use as "
                "`pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad token via "
                "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.")  # HF's message


@dataclass(frozen=True)
class EncodingOptions:
    """Every option of tokenizer(...) with HF's default. After resolve(), padding is one of PADDING, truncation
    one of TRUNCATION, and max_length the length they work to (None: no limit)."""

    add_special_tokens: bool = True
    padding: Any = False                       # False | True/"longest" | "max_length"
    truncation: Any = None                     # None/False | True/"longest_first" | "only_first" | "only_second"
    max_length: Optional[int] = None
    stride: int = 0
    is_split_into_words: bool = False
    pad_to_multiple_of: Optional[int] = None
    padding_side: Optional[str] = None         # None: the tokenizer's
    return_tensors: Any = None                 # None (lists) | "np" | "pt" (NumPy arrays too)
    return_token_type_ids: Optional[bool] = None
    return_attention_mask: Optional[bool] = None
    return_overflowing_tokens: bool = False
    return_special_tokens_mask: bool = False
    return_offsets_mapping: bool = False
    return_length: bool = False
    verbose: bool = True
    split_special_tokens: Optional[bool] = None  # None: the tokenizer's
    add_prefix_space: Optional[bool] = None      # None: the tokenizer's

    @classmethod
    def resolve(cls, tokenizer, options: dict) -> "EncodingOptions":
        """Check the names and values of ``options`` (keyword arguments) and apply HF's rules."""
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unexpected keyword arguments {unknown}; the encoding options are "
                            f"{[f.name for f in dataclasses.fields(cls)]}")
        o = cls(**options)
        tensor_type(o.return_tensors)
        padding = padding_strategy(o.padding)
        truncation = getattr(o.truncation, "value", o.truncation)
        if o.max_length is not None and o.padding in (False, None) and truncation is None:
            # HF: max_length alone turns truncation on (padding="do_not_pad" given by name does not), with a warning
            warn_once(tokenizer, o.verbose, "Truncation-not-explicitly-activated", TRUNCATION_NOT_ACTIVATED)
            truncation = "longest_first"
        if padding == "longest" and o.max_length is not None and truncation in (None, False, "do_not_truncate") \
                and o.verbose:
            warnings.warn("`max_length` is ignored when `padding`=`True` and there is no truncation strategy. To pad "
                          "to max length, use `padding='max_length'`.", stacklevel=_callers_level())  # HF's words
        if truncation is True:
            truncation = "longest_first"
        elif truncation is False or truncation is None:
            truncation = "do_not_truncate"
        elif truncation not in TRUNCATION:
            raise ValueError("truncation must be True, False, 'longest_first', 'only_first', 'only_second' or "
                             f"'do_not_truncate', got {o.truncation!r}")
        max_length = count(o.max_length, "max_length", bool_ok=False)
        if max_length is None and tokenizer.model_max_length > LARGE_INTEGER:
            # HF's "no predefined maximum" (model_max_length 1e30 in many tokenizer_config.json files): neither
            # padding to it nor truncating to it, with a warning
            if padding == "max_length":
                warn_once(tokenizer, o.verbose, "Asking-to-pad-to-max_length", NO_MAX_LENGTH_TO_PAD)
                padding = "do_not_pad"
            if truncation != "do_not_truncate":
                warn_once(tokenizer, o.verbose, "Asking-to-truncate-to-max_length", NO_MAX_LENGTH_TO_TRUNCATE)
                truncation = "do_not_truncate"
        if max_length is None and (padding == "max_length" or truncation != "do_not_truncate"):
            max_length = tokenizer.model_max_length
        # HF reads True as 1 for these two (a stride of True is 1); a negative stride is HF's OverflowError in the
        # fast tokenizer, and made the fast windows skip ids
        stride = count(o.stride, "stride")
        pad_to_multiple_of = count(o.pad_to_multiple_of, "pad_to_multiple_of")
        if padding != "do_not_pad":
            require_pad_token(tokenizer)
            if o.padding_side not in (None, "left", "right"):
                raise ValueError(f"padding_side must be 'left' or 'right', got {o.padding_side!r}")
        if (truncation != "do_not_truncate" and padding != "do_not_pad" and o.pad_to_multiple_of is not None
                and max_length is not None and pad_to_multiple_of and max_length % pad_to_multiple_of != 0):
            raise ValueError(f"truncation length ({max_length}) is not a multiple of pad_to_multiple_of "
                             f"({pad_to_multiple_of})")
        if o.return_attention_mask is None:
            o = dataclasses.replace(o, return_attention_mask="attention_mask" in tokenizer.model_input_names)
        if o.return_token_type_ids is None:
            o = dataclasses.replace(o, return_token_type_ids="token_type_ids" in tokenizer.model_input_names)
        return dataclasses.replace(o, padding=padding, truncation=truncation, max_length=max_length, stride=stride,
                                   pad_to_multiple_of=pad_to_multiple_of)


def _callers_level() -> int:
    """warnings.warn's stacklevel for the first caller outside the tokenizer package (the user's line)."""
    frame, level, package = sys._getframe(1), 1, os.path.dirname(os.path.abspath(__file__))
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def warn_once(tokenizer, verbose: bool, key: str, message: str) -> None:
    """Log HF's warning ``message`` the first time ``key`` happens for this tokenizer (HF: deprecation_warnings)."""
    if verbose:
        if not tokenizer.deprecation_warnings.get(key, False):
            logger.warning(message)
        tokenizer.deprecation_warnings[key] = True


def count(value, name: str, bool_ok: bool = True) -> Optional[int]:
    """A length option (max_length, stride, pad_to_multiple_of) as a Python int: NumPy integers are accepted, as in
    HF (max_length=lengths.max()); None stays None; a negative number, a float or a str is a ValueError. max_length
    refuses a bool (max_length=True is a mistake for truncation=True; HF reads it as 1)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and (bool_ok or not isinstance(value, bool)) and value >= 0:
        return int(value)
    raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def padding_strategy(padding) -> str:
    """True -> "longest", False/None -> "do_not_pad"; HF's PaddingStrategy enum is accepted too."""
    padding = getattr(padding, "value", padding)
    if padding is True:
        return "longest"
    if padding is False or padding is None:
        return "do_not_pad"
    if padding in PADDING:
        return padding
    raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")


def require_pad_token(tokenizer) -> None:
    if tokenizer.pad_token is None or tokenizer.pad_token_id is None:
        raise ValueError(NO_PAD_TOKEN)


def tensor_type(return_tensors) -> Optional[str]:
    """None (lists) or "np" (NumPy arrays). "pt" is "np" too: minigpt2's models are transformers' PyTorch classes
    (GPT2Model, GPT2LMHeadModel, ...) written in NumPy, so the tensors they take are NumPy arrays, and HF's
    examples, written for those classes with return_tensors="pt", run with only the import changed. torch is
    never imported. "tf", "jax" and "mlx" ask for the tensors of classes minigpt2 does not have (TFGPT2*, FlaxGPT2*):
    a clear error, rather than arrays of a kind the caller did not ask for (docs/tokenizer.md, "return_tensors")."""
    value = getattr(return_tensors, "value", return_tensors)  # accepts transformers' TensorType enum too
    if value is None:
        return None
    if isinstance(value, str) and value in _NUMPY:
        return "np"
    if isinstance(value, str) and value in _NOT_NUMPY:
        raise ValueError(f"return_tensors={value!r} asks for {_NOT_NUMPY[value]} tensors, but minigpt2 is NumPy-only "
                         f"and has only the PyTorch classes' API: use return_tensors='np' or 'pt' (both give NumPy "
                         f"arrays), or None for lists")
    raise ValueError(f"return_tensors must be None, 'np' or 'pt' (NumPy arrays), got {return_tensors!r}")


def check_text(text, what: str = "text") -> None:
    if not isinstance(text, str):
        hint = " (decode bytes to str first)" if isinstance(text, (bytes, bytearray)) else ""
        raise TypeError(f"{what} must be a str, got {type(text).__name__}{hint}")


def is_batch(text, is_split_into_words: bool) -> bool:
    if isinstance(text, str):
        return False
    if isinstance(text, (list, tuple)):
        if is_split_into_words:
            return bool(text) and isinstance(text[0], (list, tuple))
        return True
    hint = " (decode bytes to str first)" if isinstance(text, (bytes, bytearray)) else ""
    raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}{hint}")


def surrogate_error(text: str) -> ValueError:
    match = re.search("[\ud800-\udfff]", text)
    if match is None:  # cannot happen: UTF-8 fails only on surrogates
        return ValueError("text cannot be encoded as UTF-8")
    return ValueError(f"text contains a lone surrogate {match.group()!r} at position {match.start()}: it has no "
                      f"UTF-8 bytes, so it cannot be tokenized (was the text decoded with errors='surrogateescape'?)")
