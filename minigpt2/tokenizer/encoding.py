"""Text -> ids: cut out the added tokens (with their lstrip / rstrip / single_word rules), then byte-level BPE
(minigpt2.bpe) on the text between them."""
from __future__ import annotations

from typing import List, Optional, Tuple

import regex

from ..bpe import TokenizationWork, pretokenize
from ..bpe import show_work as _show_work
from .offsets import as_matched, offsets_for_input
from .options import EncodingOptions, check_text, surrogate_error

# What the Rust tokenizers library (HF's fast tokenizer) calls a word character (its regex \w, Unicode's definition)
# and white space (\s): for single_word, lstrip and rstrip in _cut_added_tokens_fast.
_WORD_CHAR = regex.compile(r"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]")
_WHITE_SPACE = regex.compile(r"\p{White_Space}")


class Encoding:
    """GPT2Tokenizer's text -> ids methods. Needs self._bpe and the added-token tables of Vocabulary."""

    def _encode_text(self, text: str, add_prefix_space: Optional[bool] = None,
                     split_special_tokens: Optional[bool] = None) -> List[int]:
        """One str -> ids: cut out added tokens, BPE-encode the text between them."""
        try:
            if self._added_re is None or split_special_tokens or (split_special_tokens is None and
                                                                  self.split_special_tokens):
                return self._bpe.encode_ordinary(self._with_prefix(text, add_prefix_space))
            ids: List[int] = []
            for segment, is_added in self._segments(text, add_prefix_space, split_special_tokens):
                if is_added:
                    ids.append(self._added_tokens_encoder[segment])
                else:
                    ids += self._bpe.encode_ordinary(segment)
            return ids
        except UnicodeEncodeError:
            raise surrogate_error(text) from None

    def _with_prefix(self, text: str, add_prefix_space: Optional[bool]) -> str:
        check_text(text)
        prefix = self.add_prefix_space if add_prefix_space is None else add_prefix_space
        if self.is_fast:  # HF's Rust pre-tokenizer adds the space only where the text does not start with one
            return " " + text if prefix and text and text[0] != " " else text
        return " " + text if prefix else text

    def _segments(self, text: str, add_prefix_space: Optional[bool],
                  split_special_tokens: Optional[bool]) -> List[Tuple[str, bool]]:
        """The text (with add_prefix_space's space) cut into (plain text, False) and (added token, True). The slow
        class puts the space in front of the text, the fast one (as HF's Rust code) in front of each plain part."""
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        if split_special_tokens or self._added_re is None:
            text = self._with_prefix(text, add_prefix_space)
            return [(text, False)] if text else []
        if self.is_fast and (self.add_prefix_space if add_prefix_space is None else add_prefix_space):
            check_text(text)
            return [(s if is_added else self._with_prefix(s, add_prefix_space), is_added)
                    for s, is_added in self._cut_added_tokens_fast(text)]
        text = self._with_prefix(text, add_prefix_space)
        if self.is_fast:
            return self._cut_added_tokens_fast(text)
        return self._apply_added_token_rules(self._added_re.split(text))

    def _word_ids_of(self, text, is_split_into_words: bool, add_prefix_space: Optional[bool],
                     split_special_tokens: Optional[bool]) -> List[int]:
        """The word of each id of ``text`` (as _ids_of encodes it), numbered as HF's fast tokenizer does: a word is
        a piece of the pre-split regex, or an added token; with is_split_into_words, one of the given words."""
        if is_split_into_words:
            return [n for n, word in enumerate(text) for _ in self._encode_text(word, True, split_special_tokens)]
        words: List[int] = []
        n = 0
        for segment, is_added in self._segments(text, add_prefix_space, split_special_tokens):
            for piece in [segment] if is_added else pretokenize(segment):
                words += [n] * (1 if is_added else len(self._bpe.cache[piece]))
                n += 1
        return words

    def _apply_added_token_rules(self, parts: List[str]) -> List[Tuple[str, bool]]:
        """parts alternate text, added token, text, ...; apply lstrip/rstrip/single_word as HF's slow code does."""
        segments = [s for s in parts if s]
        for i in range(len(segments)):
            segment = segments[i]  # as HF, the list as changed so far: a token the previous one's rstrip emptied
            if segment not in self._added_tokens_encoder:  # ("x sp\n\n\nc" with " sp" and "\n\n") is no
                continue                                   # longer a token and does not strip its neighbour
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

    def _cut_added_tokens_fast(self, text: str) -> List[Tuple[str, bool]]:
        """The text cut into (plain text, False) and (added token, True) as HF's fast tokenizer does it."""
        return [(text[start:stop] if token is None else token, token is not None)
                for start, stop, token in self._added_spans_fast(text)]

    def _added_spans_fast(self, text: str) -> List[Tuple[int, int, Optional[str]]]:
        """Where HF's fast tokenizer (the Rust `tokenizers` library's AddedVocabulary) finds the added tokens:
        (start, stop, token) for each, (start, stop, None) for the plain text between them. Its rules differ from
        the slow ones above:

        * two passes: the added tokens with normalized=False are cut out of the text first, then those with
          normalized=True out of each plain part left (GPT-2 has no normalizer, so only the order differs);
        * in a pass, the leftmost match wins, the longest one at that position;
        * a single_word token counts only where no word character (Unicode's \\w: letters, marks, digits, "_")
          touches it inside its part; otherwise that match is plain text and the search goes on after it, so it
          never glues a token to its neighbour: "Hi!<x>" and "<|endoftext|><x>" keep <x>;
        * lstrip / rstrip take the white space beside the token (lstrip not past the previous match); that white
          space belongs to the token's span, which is what its offsets report: "a <l>b" -> (1, 5) for "<l>".
        """
        parts: List[Tuple[int, int, Optional[str]]] = [(0, len(text), None)]
        for pattern in self._added_re_passes:
            if pattern is not None:
                parts = [cut for part in parts
                         for cut in ([part] if part[2] is not None else self._find_added_fast(text, part, pattern))]
        return [part for part in parts if part[0] < part[1]]

    def _find_added_fast(self, text: str, part, pattern) -> List[Tuple[int, int, Optional[str]]]:
        """One pass of _added_spans_fast over one plain part (Rust: AddedVocabulary::find_matches)."""
        begin, end, _ = part
        out: List[Tuple[int, int, Optional[str]]] = []
        done = begin  # where the text not yet given out starts
        for match in pattern.finditer(text, begin, end):
            start, stop = match.span()
            token = self._added_tokens_decoder[self._added_tokens_encoder[match.group()]]
            if token.single_word and (start > begin and _WORD_CHAR.match(text, start - 1) or
                                      stop < end and _WORD_CHAR.match(text, stop)):
                continue  # part of a longer word: left as text
            if token.lstrip:  # (not past the previous match; as in Rust even where that one took this token)
                leftmost = start
                while leftmost > begin and _WHITE_SPACE.match(text, leftmost - 1):
                    leftmost -= 1
                start = max(leftmost, done)
            if token.rstrip:
                while stop < end and _WHITE_SPACE.match(text, stop):
                    stop += 1
            if done < start:
                out.append((done, start, None))
            out.append((start, stop, match.group()))
            done = stop
        if done < end:
            out.append((done, end, None))
        return out

    def _encode_words(self, words, add_prefix_space, split_special_tokens) -> List[int]:
        """is_split_into_words=True: each word is encoded on its own with a leading space (HF's rule)."""
        if not isinstance(words, (list, tuple)):
            raise TypeError(f"with is_split_into_words=True the input must be a list of str, got {type(words).__name__}")
        if self.is_fast and not (self.add_prefix_space if add_prefix_space is None else add_prefix_space):
            raise ValueError("You need to instantiate GPT2TokenizerFast with add_prefix_space=True to use it with "
                             "pretokenized inputs (is_split_into_words=True).")  # HF's message (an AssertionError)
        ids: List[int] = []
        for word in words:
            check_text(word, "each word")
            ids += self._encode_text(word, add_prefix_space=True, split_special_tokens=split_special_tokens)
        return ids

    def tokenize(self, text: str, pair: Optional[str] = None, add_special_tokens: bool = False,
                 **kwargs) -> List[str]:
        """Text -> token strings: tokenize("Hello world") == ["Hello", "Ġworld"] ("Ġ" is the space byte).

        As in HF: the fast class takes a pair (its tokens follow the text's) and add_special_tokens (with
        add_bos_token=True, "<|endoftext|>" in front); the slow class accepts add_special_tokens and, as HF's slow
        tokenize, adds nothing; a pair is a TypeError there (HF's slow tokenizer ignores it with a warning).
        """
        add_prefix_space = kwargs.pop("add_prefix_space", None)
        split_special_tokens = kwargs.pop("split_special_tokens", None)
        if kwargs.pop("is_split_into_words", False):
            add_prefix_space = True
        if kwargs:
            raise TypeError(f"tokenize() got unexpected keyword arguments {sorted(kwargs)}")
        if pair is not None and not self.is_fast:
            raise TypeError("GPT2Tokenizer.tokenize takes one text (HF's slow tokenizer ignores pair=); tokenize the "
                            "pair on its own, or use GPT2TokenizerFast")
        tokens = self._tokens_of(text, add_prefix_space, split_special_tokens)
        pair_tokens = None if pair is None else self._tokens_of(pair, add_prefix_space, split_special_tokens)
        if add_special_tokens and self.is_fast:  # (its special tokens around the ids, then shown as tokens)
            ids = self.build_inputs_with_special_tokens([-1] * len(tokens), pair_tokens and [-1] * len(pair_tokens))
            pieces = iter(tokens + (pair_tokens or []))
            tokens, pair_tokens = [next(pieces) if i == -1 else self._id_to_token(i) for i in ids], None
        tokens = tokens + (pair_tokens or [])
        if self.is_fast and len(tokens) > self.model_max_length:  # (HF's fast tokenize encodes, and so warns once
            # of a text too long for the model)
            self._warn_if_too_long(tokens, EncodingOptions())
        return tokens

    def _tokens_of(self, text, add_prefix_space, split_special_tokens) -> List[str]:
        """The token strings of one text; the fast class shows an added token as the text its match took (an
        lstrip / rstrip token with that white space: "a <l>b" -> "a", " <l>", "b"), as HF's Rust tokenizer does."""
        ids = self._encode_text(text, add_prefix_space, split_special_tokens)
        tokens = [self._id_to_token(i) for i in ids]
        if self.is_fast and any(i in self._added_tokens_decoder for i in ids):
            spans = offsets_for_input(self, text, ids, False, add_prefix_space, split_special_tokens)
            tokens = [as_matched(self, t, i, span, text) for t, i, span in zip(tokens, ids, spans)]
        return tokens

    def show_work(self, text: str) -> TokenizationWork:
        """Every step of encoding `text` as plain text (pre-split, bytes, merges with ranks, tokens, ids)."""
        return _show_work(text, self._bpe)


    def _ids_of(self, text, is_split_into_words, add_prefix_space, split_special_tokens) -> List[int]:
        if is_split_into_words:
            return self._encode_words(text, add_prefix_space, split_special_tokens)
        return self._encode_text(text, add_prefix_space, split_special_tokens)

