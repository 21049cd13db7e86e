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
  return_tensors=None (lists), "np" or "pt" (both NumPy arrays: minigpt2 is NumPy-only, and "pt" is accepted so
  that HF's PyTorch examples run with only the import changed; torch is never imported; "tf"/"jax"/"mlx" are errors);
* decode/batch_decode (ints, lists, NumPy arrays), exact: decode(encode(s)) == s for every str;
* from_pretrained / save_pretrained with HF's file formats (vocab.json, merges.txt, tokenizer_config.json, ...);
* TokenStreamDecoder / decode_stream (minigpt2.streamers): text as ids arrive, never splitting a character;
* show_work(text): every intermediate step, for teaching.

The parts, one module each: options.py (the encoding options, once), vocabulary.py (added and special tokens,
tokens <-> ids), encoding.py (text -> ids), offsets.py (ids -> the characters they cover), model_inputs.py
(special tokens, truncation, padding, batches), batch_encoding.py (the result), decoding.py (ids -> text),
chat.py (apply_chat_template, with jinja2 when installed), files.py (from_pretrained, save_pretrained), gpt2.py
(GPT2Tokenizer assembled from them).

Where minigpt2 deliberately differs from HF's pure-Python tokenizer, the docstring says so (look for "HF:").
"""
from __future__ import annotations

from typing import Optional

from ..bpe import TokenizationWork, VocabularyFileError
from ..bpe import show_work as _show_work
from ..streamers import TokenStreamDecoder, decode_stream
from .batch_encoding import BatchEncoding
from .files import BUNDLED_NAMES, GPT2_MAX_LENGTH, MissingTokenizerFiles  # noqa: F401 (used by the CLI)
from .gpt2 import AutoTokenizer, GPT2Tokenizer, GPT2TokenizerFast
from .options import EncodingOptions
from .vocabulary import SPECIAL_TOKENS_ATTRIBUTES, AddedToken  # noqa: F401

__all__ = [
    "AddedToken",
    "AutoTokenizer",
    "BatchEncoding",
    "EncodingOptions",
    "GPT2Tokenizer",
    "GPT2TokenizerFast",
    "TokenStreamDecoder",
    "VocabularyFileError",
    "decode_stream",
    "show_work",
]


def show_work(text: str, tokenizer: Optional[GPT2Tokenizer] = None) -> TokenizationWork:
    """Every step of encoding `text` with GPT-2's BPE: print(show_work("Hello world!")).

    Returns a TokenizationWork: .pieces (each with .text, .utf8, .byte_chars, .merges [rank, pair, symbols],
    .tokens, .ids), .tokens and .ids; str() of it is a readable report. Special tokens are treated as plain text.
    """
    return _show_work(text, None if tokenizer is None else tokenizer._bpe)
