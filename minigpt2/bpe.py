"""Byte-level BPE, the tokenizer GPT-2 was trained with, readable top to bottom.

Encoding a text takes four steps; each has a section below.

    "Hello world!"
      (1) pre-split with a regex           ->  ["Hello", " world", "!"]
      (2) UTF-8 bytes, shown as characters ->  ["Hello", "Ġworld", "!"]        (a space byte is drawn "Ġ")
      (3) merge adjacent pairs by rank     ->  [["Hello"], ["Ġworld"], ["!"]]  (each piece's BPE tokens)
      (4) look the tokens up               ->  [15496, 995, 0]

Decoding runs the tables backwards: id -> token string -> bytes, then the bytes are decoded as UTF-8.

This module is the algorithm only. `minigpt2.tokenizer` wraps it in Hugging Face's `GPT2Tokenizer`
interface (special tokens, padding, batches, files). `show_work(text)` prints every intermediate step.

Four things make it fast without changing a single id (each is tested against the plain version):
  * ASCII stretches of text are pre-split by the standard `re` module with ASCII classes (section 1);
  * a cache from piece to ids, so a word is merged once and then looked up in C (section 5); it starts out
    holding every vocabulary token's own text, because BPE never splits a string that is itself a GPT-2 token;
  * the merge loop for words runs on integer ids, not strings (bpe_merge_ids);
  * a linked list and per-rank position lists for very long pieces: 1 MB without a space is linear, not O(n^2).
"""
from __future__ import annotations

import copy
import gzip
import heapq
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import Dict, List, Optional, Sequence, Tuple

import regex

from .snapshots import open_file

# ---------------------------------------------------------------------------------------------------------------
# (1) Pre-splitting. BPE never merges across the boundaries this regex draws, so " world" and "world" are
# separate vocabulary entries and a word keeps its leading space. Alternatives are tried left to right:
#
#   's|'t|'re|'ve|'m|'ll|'d   English contractions split off as their own piece (lower case only, as in GPT-2:
#                             "DON'T" becomes "DON", "'", "T")
#   ' ?\p{L}+'                a run of letters, with at most one leading space
#   ' ?\p{N}+'                a run of digits/numerals, with at most one leading space
#   ' ?[^\s\p{L}\p{N}]+'      a run of everything else (punctuation, symbols, emoji), with one leading space
#   '\s+(?!\S)'               a run of whitespace, minus its last character when a word follows: "a   b" gives
#                             "a", "  ", " b", so the word keeps its usual leading-space form
#   '\s+'                     any whitespace left over (e.g. the "\n" in "a\nb")
#
# `regex` (not the standard `re`) is needed: `re` has no \p{L}/\p{N}, and its \s also matches characters such as
# U+001C..U+001F that Unicode does not call white space.
# ---------------------------------------------------------------------------------------------------------------
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKENIZER = regex.compile(GPT2_SPLIT_PATTERN)

# The same split, faster. The standard `re` module runs such a pattern 2-3x faster than `regex`, and on ASCII text
# the Unicode classes are plain ASCII sets: \p{L} is [A-Za-z], \p{N} is [0-9] and white space is [\t\n\v\f\r ]
# (spelled out, because `re`'s own \s also matches U+001C..U+001F, which Unicode does not call white space).
_WS = r"\t\n\x0b\x0c\r "
ASCII_PRETOKENIZER = re.compile(
    rf"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+|[{_WS}]+(?![^{_WS}])|[{_WS}]+""")
# Text with some non-ASCII characters is cut into chunks of about CHUNK characters; ASCII chunks use the fast
# pattern. A cut goes only between an ASCII non-space and an ASCII space. That changes no piece: no piece contains
# a non-space followed by a space (look at the alternatives), so a piece ends at every such spot; and the pieces
# before it never depended on what follows (the only look-ahead, (?!\S), sits inside runs of spaces).
_SAFE_CUT = re.compile(rf"[\x00-\x08\x0e-\x1f!-\x7f](?=[{_WS}])")
CHUNK = 256


def pretokenize(text: str) -> List[str]:
    """Step (1): split text into the pieces BPE works on. "".join(pretokenize(t)) == t always.

    Exactly PRETOKENIZER.findall(text), computed with the fast ASCII pattern wherever the text allows it.
    """
    if text.isascii():
        return ASCII_PRETOKENIZER.findall(text)
    pieces: List[str] = []
    start, end = 0, len(text)
    while start < end:
        cut = _SAFE_CUT.search(text, start + CHUNK) if start + CHUNK < end else None
        stop = cut.end() if cut else end
        chunk = text[start:stop]
        pieces += (ASCII_PRETOKENIZER if chunk.isascii() else PRETOKENIZER).findall(chunk)
        start = stop
    return pieces


# ---------------------------------------------------------------------------------------------------------------
# (2) Bytes as characters. GPT-2 merges UTF-8 *bytes*, so any text can be encoded and no token is ever unknown.
# The vocabulary files are text, though, so each of the 256 byte values gets a visible stand-in character.
# ---------------------------------------------------------------------------------------------------------------
def bytes_to_unicode() -> Dict[int, str]:
    """The byte -> character table of OpenAI's encoder.py.

    The 188 bytes that are printable and not a space stand for themselves ("A" is "A"; byte 0xE9 is "é", its
    Latin-1 character). The other 68 (control codes, the space, 0x7F..0xA0 and 0xAD) are moved, in order, to
    U+0100 and up. So the space 0x20 becomes "Ġ" (U+0120) and the newline 0x0A becomes "Ċ" (U+010A): that is
    why GPT-2's tokens read "Ġworld" and "ĊĊ".
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    moved = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + moved)
            moved += 1
    return dict(sorted(table.items()))


BYTE_TO_CHAR: Dict[int, str] = bytes_to_unicode()
CHAR_TO_BYTE: Dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}

# The same two tables in the form str.translate wants, so a whole string is converted in C, not char by char.
# Encoding: a piece's UTF-8 bytes are first read as Latin-1 (byte b -> chr(b)), then chr(b) -> BYTE_TO_CHAR[b].
_LATIN1_TO_BYTE_CHAR = {b: c for b, c in BYTE_TO_CHAR.items()}
_BYTE_CHAR_TO_LATIN1 = {ord(c): b for b, c in BYTE_TO_CHAR.items()}


def to_byte_chars(piece: str) -> str:
    """Step (2): "é!" -> UTF-8 b"\\xc3\\xa9!" -> "Ã©!". Raises UnicodeEncodeError on a lone surrogate."""
    return piece.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_BYTE_CHAR)


def from_byte_chars(token: str) -> bytes:
    """The inverse of to_byte_chars, for one token string: "Ġworld" -> b" world"."""
    return token.translate(_BYTE_CHAR_TO_LATIN1).encode("latin-1")


# ---------------------------------------------------------------------------------------------------------------
# (3) Merging. vocab.bpe lists 50,000 pairs in the order training learned them; the line number is the pair's
# *rank*. To encode a piece, start from its single byte-characters and repeatedly merge the adjacent pair with the
# lowest rank (every occurrence of it, left to right), until no adjacent pair has a rank.
# ---------------------------------------------------------------------------------------------------------------
Ranks = Dict[Tuple[str, str], int]


def bpe_merge(word: str, ranks: Ranks, trace: Optional[list] = None) -> List[str]:
    """Step (3), the textbook loop (the same as OpenAI's encoder.py and HF's GPT2Tokenizer.bpe).

    `word` is a piece in byte-characters. If `trace` is a list, each merge is appended to it as
    (rank, (first, second), symbols after the merge). O(n^2) in the piece's length: fine for words.
    """
    symbols = list(word)
    while len(symbols) > 1:
        # The adjacent pair learned earliest. Pairs never learned rank as "infinitely late".
        pairs = set(zip(symbols, symbols[1:]))
        best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        # Merge every occurrence of it, scanning left to right ("aaa" with pair (a, a) gives "aa", "a").
        first, second = best
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
        if trace is not None:
            trace.append((ranks[best], best, list(symbols)))
    return symbols


def bpe_merge_ids(ids: List[int], merge_of: Dict[int, int], shift: int) -> List[int]:
    """The same result as bpe_merge for *monotone* merge lists (see ranks_are_monotone), several times faster.

    Works on token ids rather than strings: `ids` starts as the ids of the piece's single bytes, and
    merge_of[left << shift | right] == rank << shift | merged_id answers "do these two merge, how early, and into
    which token" with one integer lookup (no tuples, no string concatenation). The list `pair` holds that value for
    every adjacent pair, so a step is two C-level scans (min, index): merge the leftmost lowest-ranked pair, then
    look up only its two new neighbours. Merging one occurrence at a time equals the textbook's "all occurrences
    in one pass" as long as no pair containing a freshly merged token ranks below the merge that made it, which is
    what monotone means. O(n^2) in the piece's length, with a small constant: for words.
    """
    none = 1 << 62
    mask = (1 << shift) - 1
    get = merge_of.get
    pair = [get(a << shift | b, none) for a, b in zip(ids, ids[1:])]
    while pair:
        best = min(pair)
        if best == none:
            break
        i = pair.index(best)
        ids[i] = best & mask
        del ids[i + 1], pair[i]
        if i > 0:
            pair[i - 1] = get(ids[i - 1] << shift | ids[i], none)
        if i < len(pair):
            pair[i] = get(ids[i] << shift | ids[i + 1], none)
    return ids


def bpe_merge_long(word: str, ranks: Ranks) -> List[str]:
    """The same result as bpe_merge for any merge list, in near-linear time: for pieces of thousands of bytes.

    The textbook loop rescans the whole piece after every merge, so 1 MB of "aaaa..." would take hours. Here the
    symbols form a linked list (nxt/prv arrays; a merged-away slot holds None) and `where` maps each rank to the
    positions where a pair of that rank starts; a heap holds the ranks that have positions. Popping the lowest
    rank and visiting its positions in order is exactly the textbook pass (merge every occurrence, left to right);
    a position made stale by an earlier merge is skipped (its two symbols no longer form that pair). Pairs created
    by the pass are filed after it, as the textbook loop only considers them in its next pass. Each merge costs
    O(1) list work, and the heap only holds distinct ranks (at most the number of merges).
    """
    n = len(word)
    symbols: List[Optional[str]] = list(word)
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    where: Dict[int, List[int]] = {}
    for i, pair in enumerate(zip(word, word[1:])):
        rank = ranks.get(pair)
        if rank is not None:
            where.setdefault(rank, []).append(i)
    todo = list(where)
    heapq.heapify(todo)

    def file(rank: Optional[int], position: int) -> None:
        if rank is not None:
            if rank in where:
                where[rank].append(position)
            else:
                where[rank] = [position]
                heapq.heappush(todo, rank)

    while todo:
        rank = heapq.heappop(todo)
        positions = where.pop(rank)
        positions.sort()  # filed in increasing runs, so this sort is close to linear
        merged_at = []
        for i in positions:
            left, j = symbols[i], nxt[i]
            if left is None or j < 0 or ranks.get((left, symbols[j])) != rank:
                continue  # stale: one side was merged away or changed since this position was filed
            symbols[i] = left + symbols[j]
            symbols[j] = None
            k = nxt[i] = nxt[j]
            if k >= 0:
                prv[k] = i
            merged_at.append(i)
        for i in merged_at:
            p, k = prv[i], nxt[i]
            if p >= 0:
                file(ranks.get((symbols[p], symbols[i])), p)
            if k >= 0:
                file(ranks.get((symbols[i], symbols[k])), i)
    out, i = [], 0
    while i >= 0:
        out.append(symbols[i])
        i = nxt[i]
    return out


def ranks_are_monotone(merges: Sequence[Tuple[str, str]]) -> bool:
    """True if no merge uses a token before the merge that creates it (then bpe_merge_ids is exact).

    For each token t = a + b made by a merge of rank r, every merge with t on either side must rank after r.
    Training produces such lists; a hand-edited one might not, and then the tokenizer uses the exact loops.
    """
    ranks = dict(zip(merges, range(len(merges))))  # as the tokenizer sees them: a repeated pair keeps its last rank
    first_use: Dict[str, int] = {}
    for (a, b), rank in ranks.items():
        for part in (a, b):
            first_use[part] = min(rank, first_use.get(part, rank))
    return all(first_use.get(a + b, len(merges)) > rank for (a, b), rank in ranks.items())


# ---------------------------------------------------------------------------------------------------------------
# (4) The vocabulary files. encoder.json (HF: vocab.json) maps token string -> id; vocab.bpe (HF: merges.txt) lists
# the merges after a "#version: 0.2" line. GPT-2's copies ship inside the package, gzip-compressed, and are checked
# against the SHA-256 published with them (and expected by tiktoken) every time they are read.
# ---------------------------------------------------------------------------------------------------------------
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
GPT2_ENCODER_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
GPT2_MERGES_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_VOCAB_SIZE = 50257
GPT2_EOT = "<|endoftext|>"


class VocabularyFileError(ValueError):
    """A vocabulary or merges file that cannot be used; the message names the file."""


def parse_encoder(text: str, filename: str) -> Dict[str, int]:
    """encoder.json / vocab.json text -> {token: id}, with errors that name the file."""
    try:
        encoder = json.loads(text)
    except json.JSONDecodeError as e:
        raise VocabularyFileError(f"{filename}: not a JSON vocabulary ({e})") from None
    if not isinstance(encoder, dict) or not encoder:
        raise VocabularyFileError(f"{filename}: expected a JSON object mapping token -> id")
    for token, index in encoder.items():
        if type(index) is not int or index < 0:
            raise VocabularyFileError(f"{filename}: token {token!r} has id {index!r}, not a non-negative integer")
    if len(set(encoder.values())) != len(encoder):
        raise VocabularyFileError(f"{filename}: two tokens share one id")
    return encoder


def parse_merges(text: str, filename: str) -> List[Tuple[str, str]]:
    """vocab.bpe / merges.txt text -> [(first, second), ...] in rank order, with errors that name the file."""
    merges = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise VocabularyFileError(f"{filename}, line {number}: expected two tokens separated by a space, got {line!r}")
        merges.append((parts[0], parts[1]))
    if not merges:
        raise VocabularyFileError(f"{filename}: no merges found")
    return merges


def check_consistent(encoder: Dict[str, int], merges: Sequence[Tuple[str, str]], vocab_name: str, merges_name: str):
    """A merges file from another vocabulary is the classic mix-up: every merge must make a vocabulary token."""
    for rank, (a, b) in enumerate(merges):
        if a + b not in encoder:
            raise VocabularyFileError(
                f"{merges_name} does not match {vocab_name}: merge {rank} ({a!r} + {b!r}) makes {a + b!r}, "
                f"which {vocab_name} does not contain"
            )


def read_text(path: str) -> str:
    """A file's text (gzip-compressed if the name ends in .gz), with a clear error naming a missing file."""
    try:
        opener = gzip.open if path.endswith(".gz") else open_file
        with opener(path, "rb") as f:
            raw = f.read()
        return raw.decode("utf-8")
    except FileNotFoundError:
        raise VocabularyFileError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VocabularyFileError(f"{path}: cannot be read as UTF-8 text ({e})") from None


@lru_cache(maxsize=1)
def gpt2_vocabulary() -> Tuple[Dict[str, int], Tuple[Tuple[str, str], ...]]:
    """The bundled GPT-2 encoder and merges, hash-checked. Parsed once per process; treat as read-only."""
    import hashlib  # (here, not at the top: its OpenSSL takes 3.6 MB, which a process that never tokenizes keeps)

    parsed = []
    for name, expected, parse in (("encoder.json", GPT2_ENCODER_SHA256, parse_encoder),
                                  ("vocab.bpe", GPT2_MERGES_SHA256, parse_merges)):
        path = os.path.join(DATA_DIR, name + ".gz")
        text = read_text(path)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest != expected:
            raise VocabularyFileError(f"{path}: SHA-256 of the content is {digest}, expected {expected}; "
                                      f"the bundled vocabulary is corrupt, reinstall minigpt2")
        parsed.append(parse(text, path))
    encoder, merges = parsed
    return encoder, tuple(merges)


def merges_digest(merges: Sequence[Tuple[str, str]]) -> str:
    """SHA-256 of a merge list written as vocab.bpe writes it (equal to GPT2_MERGES_SHA256 for GPT-2's)."""
    import hashlib

    body = "".join(f"{a} {b}\n" for a, b in merges)
    return hashlib.sha256(("#version: 0.2\n" + body).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# (5) The encoder: the four steps, plus a cache, the whole-token shortcut and the long-piece algorithm.
# ---------------------------------------------------------------------------------------------------------------
LONG_PIECE = 48  # byte-characters; from here on bpe_merge_long beats the list-based loop
MAX_CACHED_PIECE = 256  # characters; longer pieces are rare and would only bloat the cache
MAX_CACHE_ENTRIES = 1 << 18  # cleared when full: memory stays bounded on endless streams


class _PieceCache(dict):
    """piece -> tuple of ids. A miss calls the encoder (dict.__missing__), so hits never leave C.

    It starts with `seed`: every vocabulary token whose bytes are a whole UTF-8 text, keyed by that text (the
    whole-token shortcut as dictionary entries), so a new tokenizer already knows " the" without merging anything.
    """

    __slots__ = ("encode_piece", "seed")

    def __init__(self, encode_piece, seed: Dict[str, Tuple[int, ...]]):
        super().__init__(seed)
        self.encode_piece, self.seed = encode_piece, seed

    def __missing__(self, piece: str) -> Tuple[int, ...]:
        ids = self.encode_piece(piece)
        if len(piece) <= MAX_CACHED_PIECE:
            if len(self) >= MAX_CACHE_ENTRIES:
                self.clear()
                self.update(self.seed)
            self[piece] = ids
        return ids

    def __reduce__(self):  # plain dict pickling would call _PieceCache() without its two arguments
        return (_PieceCache, (self.encode_piece, self.seed), None, None, iter(self.items()))


class ByteLevelBPE:
    """GPT-2's byte-level BPE over one vocabulary: text -> ids and ids -> bytes, nothing else.

    encoder: token string (in byte-characters) -> id.  merges: pairs in rank order.
    unk_id: the id for a merged token that is missing from the encoder (never happens with GPT-2's files,
    where all 256 bytes are tokens); None makes that an error.
    """

    def __init__(self, encoder: Dict[str, int], merges: Sequence[Tuple[str, str]], unk_id: Optional[int] = None):
        self.encoder = encoder
        self.merges = list(merges)
        self.ranks: Ranks = dict(zip(self.merges, range(len(self.merges))))  # a repeated pair keeps its last rank
        self.unk_id = unk_id
        self.decoder: Dict[int, str] = {i: t for t, i in encoder.items()}
        self.is_gpt2 = len(self.merges) == 50000 and merges_digest(self.merges) == GPT2_MERGES_SHA256

        # The id-based merge loop needs every byte and every merge's parts and result in the vocabulary (true of
        # any trained BPE) and a monotone merge list (checked: GPT-2's is). Otherwise the textbook loop runs.
        self.shift = max(encoder.values()).bit_length()
        complete = all(c in encoder for c in BYTE_TO_CHAR.values()) and all(
            a in encoder and b in encoder and a + b in encoder for a, b in self.ranks)
        self.merge_of: Optional[Dict[int, int]] = None
        if complete and (self.is_gpt2 or ranks_are_monotone(self.merges)):
            self.byte_ids = [encoder[BYTE_TO_CHAR[b]] for b in range(256)]
            self.merge_of = {encoder[a] << self.shift | encoder[b]: rank << self.shift | encoder[a + b]
                             for (a, b), rank in self.ranks.items()}

        # The shortcut "a piece that is one vocabulary token encodes to that token" holds when the token can be
        # built by the merges; for GPT-2's merges that is every token a merge produces plus the 256 bytes
        # (tests/test_tokenizer.py checks each one). Other merge lists get no shortcut: correctness first.
        if self.is_gpt2:
            made = {a + b for a, b in self.merges} | set(BYTE_TO_CHAR.values())
            self.whole_tokens = {t: i for t, i in encoder.items() if t in made}
        else:
            self.whole_tokens = {}
        self.cache_seed: Dict[str, Tuple[int, ...]] = {}
        for token, index in self.whole_tokens.items():
            try:
                self.cache_seed[from_byte_chars(token).decode("utf-8")] = (index,)
            except UnicodeDecodeError:  # part of a multi-byte character: never a whole piece
                pass
        self._id_to_bytes: Optional[List[Optional[bytes]]] = None
        self.cache = _PieceCache(self.encode_piece, self.cache_seed)

    # -- encoding ------------------------------------------------------------------------------------------
    def bpe(self, word: str) -> List[str]:
        """Step (3) for one piece in byte-characters, as token strings (all three loops give one answer)."""
        if len(word) >= LONG_PIECE:
            return bpe_merge_long(word, self.ranks)
        if self.merge_of is not None:
            ids = bpe_merge_ids([self.byte_ids[CHAR_TO_BYTE[c]] for c in word], self.merge_of, self.shift)
            return [self.decoder[i] for i in ids]
        return bpe_merge(word, self.ranks)

    def encode_piece(self, piece: str) -> Tuple[int, ...]:
        """Steps (2)-(4) for one pre-split piece, uncached. Raises UnicodeEncodeError on a lone surrogate."""
        utf8 = piece.encode("utf-8")
        if self.merge_of is not None and len(utf8) < LONG_PIECE:  # the common case, all in ids
            return tuple(bpe_merge_ids(list(map(self.byte_ids.__getitem__, utf8)), self.merge_of, self.shift))
        word = utf8.decode("latin-1").translate(_LATIN1_TO_BYTE_CHAR)
        token_id = self.whole_tokens.get(word)
        if token_id is not None:
            return (token_id,)
        tokens = self.bpe(word)
        ids = tuple(self.encoder.get(token, self.unk_id) for token in tokens)
        if self.unk_id is None and None in ids:
            missing = next(t for t in tokens if t not in self.encoder)
            raise ValueError(f"the merges produce {missing!r}, which the vocabulary lacks, and there is no unk token")
        return ids

    def encode_ordinary(self, text: str) -> List[int]:
        """All four steps for a text, treating every character as plain text (no special tokens).

        Warm, this is one regex pass plus one C-level dictionary lookup per piece.
        """
        return list(chain.from_iterable(map(self.cache.__getitem__, pretokenize(text))))

    def tokens(self, text: str) -> List[str]:
        """Like encode_ordinary, but the token strings ("Ġworld") instead of ids; uncached, for inspection."""
        return [token for piece in pretokenize(text) for token in self.bpe(to_byte_chars(piece))]

    # -- decoding ------------------------------------------------------------------------------------------
    @staticmethod
    def token_bytes(token: str) -> bytes:
        """The bytes a vocabulary token stands for. A token outside the byte alphabet (an added "<pad>" in a
        custom vocab.json) stands for its own UTF-8."""
        if all(c in CHAR_TO_BYTE for c in token):
            return from_byte_chars(token)
        return token.encode("utf-8")

    @property
    def id_to_bytes(self) -> List[Optional[bytes]]:
        """Decoding table: id_to_bytes[i] is the bytes of token i (None for an id no token has)."""
        if self._id_to_bytes is None:
            table: List[Optional[bytes]] = [None] * (max(self.decoder) + 1)
            for index, token in self.decoder.items():
                table[index] = self.token_bytes(token)
            self._id_to_bytes = table
        return self._id_to_bytes

    # -- copies --------------------------------------------------------------------------------------------
    def fresh(self) -> "ByteLevelBPE":
        """A copy that shares the read-only tables (ranks, vocabulary) but starts with an empty cache."""
        self.id_to_bytes  # build the decoding table once, so every copy shares it
        clone = copy.copy(self)
        clone.cache = _PieceCache(clone.encode_piece, self.cache_seed)
        return clone


# ---------------------------------------------------------------------------------------------------------------
# (6) Showing the work, for the tokenization tutorial.
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Merge:
    rank: int  # the line of vocab.bpe (0-based, after the #version line)
    pair: Tuple[str, str]
    symbols: List[str]  # the piece's symbols after merging every occurrence of the pair


@dataclass
class PieceWork:
    text: str  # the piece as the regex cut it
    utf8: bytes  # its UTF-8 bytes
    byte_chars: str  # the same bytes drawn with bytes_to_unicode's characters
    merges: List[Merge]  # in the order applied
    tokens: List[str]
    ids: List[int]


@dataclass
class TokenizationWork:
    text: str
    pieces: List[PieceWork] = field(default_factory=list)

    @property
    def ids(self) -> List[int]:
        return [i for p in self.pieces for i in p.ids]

    @property
    def tokens(self) -> List[str]:
        return [t for p in self.pieces for t in p.tokens]

    def __str__(self) -> str:
        lines = [f"text: {self.text!r}", f"(1) pre-split into {len(self.pieces)} pieces: {[p.text for p in self.pieces]!r}"]
        for n, p in enumerate(self.pieces):
            lines.append(f"piece {n}: {p.text!r}")
            lines.append(f"  (2) UTF-8 bytes {p.utf8.hex(' ')} -> byte-characters {p.byte_chars!r}")
            if not p.merges:
                lines.append("  (3) no merges apply" if len(p.byte_chars) > 1 else "  (3) a single byte: nothing to merge")
            for m in p.merges:
                lines.append(f"  (3) rank {m.rank:>5}: {m.pair[0]!r} + {m.pair[1]!r} -> {' '.join(m.symbols)}")
            lines.append(f"  (4) tokens {p.tokens!r} -> ids {p.ids!r}")
        lines.append(f"ids: {self.ids!r}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):  # IPython / Jupyter show the readable form
        printer.text(str(self))


def show_work(text: str, bpe: Optional[ByteLevelBPE] = None) -> TokenizationWork:
    """Every intermediate of encoding `text` as plain text (GPT-2's vocabulary unless `bpe` is given).

    >>> print(show_work("Hi!"))    # doctest: +SKIP
    """
    if not isinstance(text, str):
        raise TypeError(f"show_work() needs a str, got {type(text).__name__}")
    if bpe is None:
        bpe = gpt2_bpe()
    work = TokenizationWork(text)
    for piece in pretokenize(text):
        utf8 = piece.encode("utf-8")
        byte_chars = to_byte_chars(piece)
        trace: list = []
        tokens = bpe_merge(byte_chars, bpe.ranks, trace)
        ids = [bpe.encoder.get(t, bpe.unk_id) for t in tokens]
        merges = [Merge(rank, pair, symbols) for rank, pair, symbols in trace]
        work.pieces.append(PieceWork(piece, utf8, byte_chars, merges, tokens, ids))
    return work


@lru_cache(maxsize=1)
def gpt2_bpe() -> ByteLevelBPE:
    """A shared ByteLevelBPE over the bundled GPT-2 vocabulary (for show_work and quick experiments)."""
    encoder, merges = gpt2_vocabulary()
    return ByteLevelBPE(encoder, merges, unk_id=encoder[GPT2_EOT])
