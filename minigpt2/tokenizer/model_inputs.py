"""Ids -> model inputs: special tokens, truncation, padding, pairs and batches (tokenizer(...), encode,
encode_plus, batch_encode_plus, prepare_for_model, pad). Their options are EncodingOptions (options.py)."""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, Dict, List, Optional

import numpy as np

from ..checks import is_int
from .alignment import Alignment, SequenceSource, fast_truncation, windows
from .batch_encoding import BatchEncoding
from .offsets import offsets_for_input, offsets_in_model_input
from .options import EncodingOptions, is_batch, padding_strategy, require_pad_token

logger = logging.getLogger("minigpt2.tokenizer")


class ModelInputs:
    """GPT2Tokenizer's methods that make model inputs (HF's names). Needs Encoding and Vocabulary."""

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


    @property
    def max_len_single_sentence(self) -> int:
        """The most ids one text may have so that it fits model_max_length with its special tokens."""
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        """The most ids a text and its pair may have together so that they fit model_max_length."""
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    def __call__(self, text=None, text_pair=None, text_target=None, text_pair_target=None, **options) -> BatchEncoding:
        """Tokenize one text or a batch: tok("Hi") or tok(["Hi", "Hello there"], padding=True, return_tensors="np").

        The options are HF's (EncodingOptions lists them with their defaults). padding: False | True/"longest" |
        "max_length" (to max_length, or model_max_length); needs a pad_token. truncation: False |
        True/"longest_first" | "only_first" | "only_second", to max_length (default model_max_length); giving
        max_length alone turns truncation on, as in HF. padding_side overrides the tokenizer's (right by default).
        return_tensors: None (lists), or "np" or "pt": NumPy int64 arrays, with a batch axis even for one text.
        "pt" gives NumPy arrays too (minigpt2's models take NumPy; HF's PyTorch examples run unchanged); "tf",
        "jax" and "mlx" are a ValueError.

        text_target (and text_pair_target) are encoded the same way, with the same options, and their input_ids
        returned as "labels" beside text's inputs (HF's rule; with no text, the target's own encoding is returned).
        """
        if text is None and text_target is None:
            raise ValueError("no text given: call tokenizer(text) with a str or a list of str (or text_target= for "
                             "labels)")
        o = EncodingOptions.resolve(self, options)
        encodings = None if text is None else self._call_one(text, text_pair, o)
        if text_target is None:
            return encodings
        targets = self._call_one(text_target, text_pair_target, o)
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    @contextlib.contextmanager
    def as_target_tokenizer(self):
        """HF's deprecated way to tokenize labels (GPT-2 encodes them like any text): use text_target= instead."""
        warnings.warn("`as_target_tokenizer` is deprecated (transformers removes it in v5): tokenize labels with the "
                      "text_target argument of tokenizer(...)", UserWarning, stacklevel=3)
        yield

    def _call_one(self, text, text_pair, o: EncodingOptions) -> BatchEncoding:
        batched = is_batch(text, o.is_split_into_words)
        if text_pair is not None and batched != is_batch(text_pair, o.is_split_into_words):
            raise ValueError("text and text_pair must both be single texts or both be batches")
        if not batched:
            return self._encode_one(text, text_pair, o)
        if text_pair is not None and len(text_pair) != len(text):
            raise ValueError(f"batch of {len(text)} texts but {len(text_pair)} text_pairs")
        return self._encode_batch(list(zip(text, text_pair)) if text_pair is not None else list(text), o)

    def encode(self, text, text_pair=None, **options):
        """Text -> list of ids: encode("Hello world") == [15496, 995]. Same options as __call__."""
        return self.encode_plus(text, text_pair, **options)["input_ids"]

    def encode_plus(self, text, text_pair=None, **options) -> BatchEncoding:
        """One text (and optional pair) -> BatchEncoding (HF's encode_plus). Same options as __call__."""
        return self._encode_one(text, text_pair, EncodingOptions.resolve(self, options))

    def batch_encode_plus(self, batch_text_or_text_pairs, **options) -> BatchEncoding:
        """A list of texts (or of (text, pair) tuples) -> one BatchEncoding, padded together if asked."""
        o = EncodingOptions.resolve(self, options)
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise TypeError(f"a batch must be a list or tuple, got {type(batch_text_or_text_pairs).__name__}")
        return self._encode_batch(batch_text_or_text_pairs, o)

    def prepare_for_model(self, ids: List[int], pair_ids: Optional[List[int]] = None, prepend_batch_axis: bool = False,
                          **options) -> BatchEncoding:
        """Ids of one sequence (or pair) -> truncated, special tokens added, padded (HF's prepare_for_model)."""
        o = EncodingOptions.resolve(self, options)
        return self._finish_one(self._prepare(ids, pair_ids, o), o, prepend_batch_axis)

    # -- the one path every entry point takes ---------------------------------------------------------------------
    def _encode_one(self, text, text_pair, o: EncodingOptions) -> BatchEncoding:
        if self.is_fast:
            return self._encode_fast([(text, text_pair)], o, batched=o.return_overflowing_tokens)
        if not o.is_split_into_words and (isinstance(text, (list, tuple)) or isinstance(text_pair, (list, tuple))):
            # HF's slow encode / encode_plus also take text already tokenized: tokenize's tokens, or ids
            if o.return_offsets_mapping:
                raise ValueError("return_offsets_mapping needs the text itself, not its tokens or ids")
            ids, pair_ids = self._tokenized(text, o), None if text_pair is None else self._tokenized(text_pair, o)
            return self._finish_one(self._prepare(ids, pair_ids, o), o, prepend_batch_axis=True)
        return self._finish_one(self._encode_item(text, text_pair, o), o, prepend_batch_axis=True)

    def _tokenized(self, text, o: EncodingOptions) -> List[int]:
        """The ids of a text (a str), of its tokens (a list of str) or the ids themselves (a list of ints)."""
        if isinstance(text, (list, tuple)) and text and all(isinstance(t, str) for t in text):
            return self.convert_tokens_to_ids(list(text))
        if isinstance(text, (list, tuple)) and text and all(is_int(t) for t in text):
            return [int(t) for t in text]
        if isinstance(text, str):
            return self._ids_of(text, False, o.add_prefix_space, o.split_special_tokens)
        raise TypeError(f"text must be a str, a list of tokens (str) or a list of ids (int), got {text!r:.80}")

    def _finish_one(self, encoded: Dict[str, Any], o: EncodingOptions, prepend_batch_axis: bool) -> BatchEncoding:
        encoded = self._pad_one(encoded, o.padding, o.max_length, o.pad_to_multiple_of, o.padding_side,
                                o.return_attention_mask)
        if o.return_length:
            encoded["length"] = len(encoded["input_ids"])
        return BatchEncoding(encoded, tensor_type=o.return_tensors, prepend_batch_axis=prepend_batch_axis)

    @staticmethod
    def _pairs(items, o: EncodingOptions):
        for n, item in enumerate(items):
            # a pair is [text, pair]; pre-split, [words, pair_words] (HF: the item's first element is a list)
            is_pair = isinstance(item, (tuple, list)) and len(item) == 2 and (
                not o.is_split_into_words or isinstance(item[0], (tuple, list)))
            if is_pair:
                first, second = item
            else:
                first, second = item, None
            if not o.is_split_into_words and not isinstance(first, str):
                raise TypeError(f"batch item {n} must be a str, got {type(first).__name__}")
            yield first, second

    def _encode_batch(self, items, o: EncodingOptions) -> BatchEncoding:
        if self.is_fast:
            return self._encode_fast(self._pairs(items, o), o, batched=True)
        outputs: Dict[str, list] = {}
        for first, second in self._pairs(items, o):
            encoded = self._encode_item(first, second, o)
            if o.return_length:
                encoded["length"] = len(encoded["input_ids"])
            for key, value in encoded.items():
                outputs.setdefault(key, []).append(value)
        if not outputs:  # an empty batch
            outputs = {"input_ids": []}
            if o.return_attention_mask:
                outputs["attention_mask"] = []
        else:
            outputs = self.pad(outputs, padding=o.padding, max_length=o.max_length,
                               pad_to_multiple_of=o.pad_to_multiple_of, padding_side=o.padding_side,
                               return_attention_mask=o.return_attention_mask)
        return BatchEncoding(outputs, tensor_type=o.return_tensors)  # (n_sequences None, as HF's slow batch)

    def _encode_item(self, text, text_pair, o: EncodingOptions) -> Dict[str, Any]:
        """One text (and pair) -> truncated, with special tokens, not padded; offsets if asked for."""
        ids = self._ids_of(text, o.is_split_into_words, o.add_prefix_space, o.split_special_tokens)
        pair_ids = None if text_pair is None else self._ids_of(text_pair, o.is_split_into_words, o.add_prefix_space,
                                                               o.split_special_tokens)
        out = self._prepare(ids, pair_ids, o)
        if o.return_offsets_mapping:
            out["offset_mapping"] = offsets_in_model_input(
                self, offsets_for_input(self, text, ids, o.is_split_into_words, o.add_prefix_space,
                                        o.split_special_tokens),
                None if text_pair is None else offsets_for_input(self, text_pair, pair_ids, o.is_split_into_words,
                                                                 o.add_prefix_space, o.split_special_tokens),
                o.add_special_tokens, o.truncation, o.max_length, o.stride)
        return out

    def _prepare(self, ids: List[int], pair_ids: Optional[List[int]], o: EncodingOptions) -> Dict[str, Any]:
        """Truncate, add special tokens; the optional outputs (HF's prepare_for_model without the padding)."""
        ids = list(ids)
        pair_ids = None if pair_ids is None else list(pair_ids)
        total = len(ids) + (len(pair_ids) if pair_ids is not None else 0)
        if o.add_special_tokens:
            total += self.num_special_tokens_to_add(pair=pair_ids is not None)
        if o.return_overflowing_tokens and o.truncation == "longest_first" and pair_ids is not None:
            raise ValueError("Not possible to return overflowing tokens for pair of sequences with the `longest_first`. "
                             "Please select another truncation strategy than `longest_first`, for instance "
                             "`only_second` or `only_first`.")  # HF's message
        overflowing: List[int] = []
        out: Dict[str, Any] = {}
        if o.truncation != "do_not_truncate" and o.max_length is not None and total > o.max_length:
            ids, pair_ids, overflowing = self.truncate_sequences(
                ids, pair_ids, num_tokens_to_remove=total - o.max_length, truncation_strategy=o.truncation,
                stride=o.stride)
        if o.return_overflowing_tokens:
            out["overflowing_tokens"] = overflowing
            out["num_truncated_tokens"] = total - o.max_length if o.max_length is not None else 0
        if o.add_special_tokens:
            sequence = self.build_inputs_with_special_tokens(ids, pair_ids)
            token_type_ids = self.create_token_type_ids_from_sequences(ids, pair_ids)
        else:
            sequence = ids + (pair_ids or [])
            token_type_ids = [0] * len(sequence)
        out["input_ids"] = sequence
        if o.return_token_type_ids:
            out["token_type_ids"] = token_type_ids
        if o.return_special_tokens_mask:
            out["special_tokens_mask"] = (self.get_special_tokens_mask(ids, pair_ids) if o.add_special_tokens
                                          else [0] * len(sequence))
        self._warn_if_too_long(sequence, o)
        return out

    def _warn_if_too_long(self, sequence, o: EncodingOptions) -> None:
        if o.max_length is None and len(sequence) > self.model_max_length and o.verbose and not self._warned_too_long:
            logger.warning("Token indices sequence length is longer than the specified maximum sequence length for "
                           "this model (%d > %d). Running this sequence through the model will result in indexing "
                           "errors", len(sequence), self.model_max_length)
            self._warned_too_long = True

    # -- the fast tokenizer's way (GPT2TokenizerFast): truncation in windows, an alignment per row ---------------
    def _encode_fast(self, items, o: EncodingOptions, batched: bool) -> BatchEncoding:
        """As HF's Rust tokenizer: truncation keeps the first window; return_overflowing_tokens returns every
        window as a row (overlapping by stride) with overflow_to_sample_mapping; each row has an Alignment."""
        rows, wheres, mapping, n_sequences = [], [], [], 1
        for n, (text, text_pair) in enumerate(items):
            n_sequences = max(n_sequences, 1 if text_pair is None else 2)
            for out, where, sources in self._fast_rows(text, text_pair, o):
                rows.append(out)
                wheres.append((where, sources))
                mapping.append(n)
        if not rows:  # an empty batch
            outputs = {"input_ids": [], **({"attention_mask": []} if o.return_attention_mask else {})}
            return BatchEncoding(outputs, tensor_type=o.return_tensors, n_sequences=1, alignments=[])
        outputs = dict(self.pad({k: [row[k] for row in rows] for k in rows[0]}, padding=o.padding,
                                max_length=o.max_length, pad_to_multiple_of=o.pad_to_multiple_of,
                                padding_side=o.padding_side, return_attention_mask=o.return_attention_mask))
        side = o.padding_side or self.padding_side
        alignments = []
        for (where, sources), ids in zip(wheres, outputs["input_ids"]):
            padding = [None] * (len(ids) - len(where))
            alignments.append(Alignment(self, ids, where + padding if side == "right" else padding + where, sources))
        if o.return_length:
            outputs["length"] = [len(ids) for ids in outputs["input_ids"]]
        if o.return_overflowing_tokens:
            outputs["overflow_to_sample_mapping"] = mapping
        if not batched and o.return_tensors is None:  # HF's rule: one row's lists lose the batch axis
            outputs = {k: v[0] if v and isinstance(v[0], list) else v for k, v in outputs.items()}
        return BatchEncoding(outputs, tensor_type=o.return_tensors, n_sequences=n_sequences, alignments=alignments)

    def _fast_rows(self, text, text_pair, o: EncodingOptions):
        """The rows one text (and pair) gives: (model inputs without padding, (sequence, position) per token, the
        sequences' sources)."""
        ids = self._ids_of(text, o.is_split_into_words, o.add_prefix_space, o.split_special_tokens)
        sources = [SequenceSource(self, text, ids, o)]
        pair_ids = None
        if text_pair is not None:
            pair_ids = self._ids_of(text_pair, o.is_split_into_words, o.add_prefix_space, o.split_special_tokens)
            sources.append(SequenceSource(self, text_pair, pair_ids, o))
        first, second = [(0, len(ids))], [None if pair_ids is None else (0, len(pair_ids))]
        if o.truncation != "do_not_truncate" and o.max_length is not None:
            budget = max(o.max_length - (self.num_special_tokens_to_add(pair_ids is not None)
                                         if o.add_special_tokens else 0), 0)
            n1, n2 = fast_truncation(len(ids), None if pair_ids is None else len(pair_ids), budget, o.truncation)
            left = self.truncation_side == "left"
            first = windows(len(ids), n1, o.stride, left)
            if pair_ids is not None:
                second = windows(len(pair_ids), n2, o.stride, left)
        # HF's order: the first windows of both, then each later window of the text with every window of the
        # pair, then the first window of the text with the later windows of the pair.
        combos = [(first[0], second[0])] + [(a, b) for a in first[1:] for b in second] + [(first[0], b)
                                                                                          for b in second[1:]]
        for a, b in combos if o.return_overflowing_tokens else combos[:1]:
            part = ids[a[0]:a[1]]
            where = [(0, p) for p in range(*a)]
            part_pair = None if b is None else pair_ids[b[0]:b[1]]
            where_pair = [] if b is None else [(1, p) for p in range(*b)]
            if o.add_special_tokens:
                sequence = self.build_inputs_with_special_tokens(part, part_pair)
                special = self.get_special_tokens_mask(part, part_pair)
                kept = iter(where + where_pair)
                where = [None if is_special else next(kept) for is_special in special]
                token_type_ids = self.create_token_type_ids_from_sequences(part, part_pair)
            else:
                sequence, where = part + (part_pair or []), where + where_pair
                special = token_type_ids = [0] * len(sequence)
            out: Dict[str, Any] = {"input_ids": sequence}
            if o.return_token_type_ids:
                out["token_type_ids"] = token_type_ids
            if o.return_special_tokens_mask:
                out["special_tokens_mask"] = special
            if o.return_offsets_mapping:
                out["offset_mapping"] = [(0, 0) if w is None else sources[w[0]].offsets[w[1]] for w in where]
            self._warn_if_too_long(sequence, o)
            yield out, where, sources

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
                advice = (" Please select another truncation strategy than 'only_first', for instance 'longest_first' "
                          "or 'only_second'." if strategy == "only_first" else "")  # HF's advice
                logger.error("We need to remove %d tokens to truncate the input but the first sequence has a length "
                             "%d.%s", num_tokens_to_remove, len(ids), advice)
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
                             "length %d. Please select another truncation strategy than 'only_second', for instance "
                             "'longest_first' or 'only_first'.", num_tokens_to_remove, len(pair_ids))
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
        pad = padding_strategy(padding)
        if pad == "max_length" and max_length is None:
            max_length = self.model_max_length
        if pad != "do_not_pad":
            require_pad_token(self)
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

