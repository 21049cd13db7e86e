"""Which characters of the text each token covers (return_offsets_mapping), as HF's fast (Rust) tokenizer
reports them. Computed from the ids already encoded: a token is a fixed run of bytes, so walking the text's UTF-8
bytes token by token finds each token's characters."""
from __future__ import annotations

from typing import List, Tuple


def offsets_of(tokenizer, text: str, ids: List[int], add_prefix_space: bool) -> List[Tuple[int, int]]:
    """The (start, end) characters of ``text`` that each of its ids covers, for plain text (no added tokens
    in it), as HF's fast tokenizer reports them: a token that covers part of a character's UTF-8 bytes counts the
    whole character; add_prefix_space's extra space covers nothing (alone, HF gives it the first character)."""
    data = text.encode("utf-8")
    char_of_byte = [i for i, ch in enumerate(text) for _ in range(len(ch.encode("utf-8")))] + [len(text)]
    table = tokenizer._id_bytes
    pos = -1 if add_prefix_space else 0  # the byte the next token starts at (-1: the virtual space)
    offsets = []
    for token_id in ids:
        piece = table[token_id] if token_id < len(table) else None
        n = len(piece) if piece else 1
        start, end = max(pos, 0), max(pos + n, 0)
        if end == start == 0 and data:  # the extra space alone: HF gives it the first character
            end = len(text[0].encode("utf-8"))
        offsets.append((char_of_byte[min(start, len(data))], char_of_byte[min(end, len(data)) - 1] + 1
                        if end > start else char_of_byte[min(start, len(data))]))
        pos += n
    return offsets


def offsets_by_part(tokenizer, text: str, add_prefix_space: bool) -> List[Tuple[int, int]]:
    """Text with added tokens in it (the fast class): an added token covers the span HF's Rust code matched, with
    the white space its lstrip / rstrip took ("a <l>b" -> (1, 5)); each plain part between them is encoded on its
    own (with its own extra space under add_prefix_space, as HF's pre-tokenizer) and its offsets shifted."""
    offsets = []
    for start, stop, token in tokenizer._added_spans_fast(text):
        if token is not None:
            offsets.append((start, stop))
            continue
        part = text[start:stop]
        prefix = add_prefix_space and part[0] != " "
        ids = tokenizer._encode_text(part, prefix, True)
        offsets += [(start + a, start + b) for a, b in offsets_of(tokenizer, part, ids, prefix)]
    return offsets


def offsets_in_model_input(tokenizer, offsets, pair_offsets, add_special_tokens, trunc, max_length, stride):
    """The offsets of the ids prepare_for_model keeps: truncated the same way (truncation depends only on the
    lengths, so it is run on positions), with (0, 0) for the special tokens it adds."""
    first = list(range(len(offsets)))
    second = None if pair_offsets is None else list(range(len(pair_offsets)))
    total = len(first) + (len(second) if second is not None else 0)
    if add_special_tokens:
        total += tokenizer.num_special_tokens_to_add(pair=second is not None)
    if trunc != "do_not_truncate" and max_length is not None and total > max_length:
        first, second, _ = tokenizer.truncate_sequences(first, second, num_tokens_to_remove=total - max_length,
                                                   truncation_strategy=trunc, stride=stride)
    kept = iter([offsets[i] for i in first] + ([] if second is None else [pair_offsets[i] for i in second]))
    mask = tokenizer.get_special_tokens_mask(first, second) if add_special_tokens else [0] * (
        len(first) + (len(second) if second is not None else 0))
    return [(0, 0) if special else next(kept) for special in mask]


def offsets_for_input(tokenizer, text, ids, is_split_into_words, add_prefix_space, split_special_tokens):
    """Offsets of one input's ids (from _ids_of). With is_split_into_words, offsets within each word, as HF's
    fast tokenizer gives them (each word's ids are found again: where one ends is not in ``ids``)."""
    if is_split_into_words:
        return [o for word in text for o in offsets_for_input(
            tokenizer, word, tokenizer._encode_text(word, True, split_special_tokens), False, True, split_special_tokens)]
    prefix = tokenizer.add_prefix_space if add_prefix_space is None else add_prefix_space
    if tokenizer._added_re is not None and not (
            tokenizer.split_special_tokens if split_special_tokens is None else split_special_tokens):
        return offsets_by_part(tokenizer, text, prefix)
    return offsets_of(tokenizer, text, ids, prefix)


def as_matched(tokenizer, token: str, token_id: int, span: Tuple[int, int], text) -> str:
    """How the fast tokenizer shows a token: an added token as the text its match took (an lstrip / rstrip token with
    that white space: "a <l>b" -> " <l>"), as HF's Rust tokenizer does; any other token as it is."""
    if token_id in tokenizer._added_tokens_decoder and isinstance(text, str) and span[1] > span[0]:
        matched = text[span[0]:span[1]]
        if token in matched:  # not BPE's token with the id of an added one (add_tokens(["Ġworld"]) keeps 995)
            return matched
    return token
