"""Streamers: see the text while ``generate`` produces it (HF's TextStreamer and TextIteratorStreamer).

    streamer = TextStreamer(tokenizer)
    model.generate(input_ids, max_new_tokens=30, streamer=streamer)   # prints as it goes

``generate`` calls ``streamer.put(prompt_ids)`` once ([1, T]), then ``streamer.put(token)`` for every new
token, then ``streamer.end()``.

HF's TextStreamer re-decodes everything and prints only up to the last space, because with some tokenizers
later tokens change the text of earlier ones. GPT-2's byte-level BPE never does that: each token is a fixed
run of bytes. So these streamers print every token as soon as it arrives, and hold back only the bytes of
an unfinished UTF-8 character (an emoji spread over several tokens), using the tokenizer's stream decoder.
A transformers tokenizer (which has none) works too, and so does clean_up_tokenization_spaces=True (given, or the
tokenizer's own setting), where later tokens do change earlier text (" ." becomes "."): the streamers then do
what HF's do, decoding all the ids so far with the tokenizer's ``decode`` (passing it every decode argument)
and passing on the text up to the last space, so that the printed text is HF's character for character.
"""
from __future__ import annotations

import codecs
import numbers
from queue import Queue
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

import numpy as np
from .checks import is_int

if TYPE_CHECKING:
    from .tokenizer import GPT2Tokenizer

__all__ = ["BaseStreamer", "TextStreamer", "TextIteratorStreamer", "TokenStreamDecoder", "decode_stream"]


class BaseStreamer:
    """What ``generate`` calls: ``put(token_ids)`` as tokens appear, ``end()`` when generation stops."""

    def put(self, value):
        raise NotImplementedError

    def end(self):
        raise NotImplementedError


class TextStreamer(BaseStreamer):
    """Print the text to stdout as tokens arrive, and a newline at the end.

    ``skip_prompt=True`` prints only the new text. ``skip_special_tokens=True`` (a decode argument, as in HF)
    leaves out <|endoftext|>; ``clean_up_tokenization_spaces`` (default: the tokenizer's setting) as in decode.
    ``tokenizer`` is minigpt2's, or a transformers tokenizer.
    """

    def __init__(self, tokenizer, skip_prompt: bool = False, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        if hasattr(tokenizer, "stream_decoder"):
            unknown = sorted(set(decode_kwargs) - {"skip_special_tokens", "clean_up_tokenization_spaces"})
            if unknown:
                raise TypeError(f"unexpected decode arguments {unknown}: a streamer accepts skip_special_tokens and "
                                f"clean_up_tokenization_spaces")
        elif not callable(getattr(tokenizer, "decode", None)):
            raise TypeError(f"a streamer needs a tokenizer (minigpt2's GPT2Tokenizer or a transformers tokenizer) to "
                            f"turn ids into text, got {type(tokenizer).__name__}")
        clean_up = decode_kwargs.get("clean_up_tokenization_spaces",
                                     getattr(tokenizer, "clean_up_tokenization_spaces", False))
        if hasattr(tokenizer, "stream_decoder") and not clean_up:
            self.decoder = tokenizer.stream_decoder(skip_special_tokens=decode_kwargs.get("skip_special_tokens", False))
        else:  # a transformers tokenizer, or text that later tokens change (" ." cleaned to "."): HF's way
            self.decoder = _WordDecoder(tokenizer, decode_kwargs)
        self.next_tokens_are_prompt = True

    def put(self, value):
        """Decode new ids (the prompt [1, T] first, then one token at a time) and pass on the finished text."""
        value = np.asarray(value)
        if value.ndim > 1:
            if value.shape[0] > 1:
                raise ValueError("TextStreamer only supports batch size 1")
            value = value[0]
        if self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            if self.skip_prompt:
                return
        text = self.decoder.feed(value.reshape(-1))
        if text:
            self.on_finalized_text(text)

    def end(self):
        """Flush what is held back (an incomplete character becomes U+FFFD) and end the stream."""
        text = self.decoder.flush()
        self.next_tokens_are_prompt = True
        self.on_finalized_text(text, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False):
        """Print ``text`` now; a newline ends the stream. Override to send the text elsewhere."""
        print(text, flush=True, end=None if stream_end else "")


class TextIteratorStreamer(TextStreamer):
    """Put the text in a queue, to be read by iterating over the streamer (run ``generate`` in a thread).

    ``timeout`` (seconds) bounds each wait on the queue; a reader then gets ``queue.Empty`` instead of hanging
    if ``generate`` failed in its thread.
    """

    def __init__(self, tokenizer, skip_prompt: bool = False, timeout: float = None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        # queue.Queue would refuse a bad timeout only when the reader first waits, in its own thread: refuse it here
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                    or not timeout >= 0):
            error = ValueError if isinstance(timeout, numbers.Real) and not isinstance(timeout, bool) else TypeError
            raise error(f"timeout must be None (wait as long as generate takes) or a number of seconds >= 0, "
                        f"got {timeout!r}")
        self.text_queue = Queue()
        self.stop_signal = None
        self.timeout = timeout

    def on_finalized_text(self, text: str, stream_end: bool = False):
        if text:
            self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self.stop_signal, timeout=self.timeout)

    def __iter__(self):
        return self

    def __next__(self):
        value = self.text_queue.get(timeout=self.timeout)
        if value is self.stop_signal:
            raise StopIteration
        return value


class _WordDecoder:
    """HF's TextStreamer decoding, for a tokenizer without a stream decoder (a transformers tokenizer) or when
    clean_up_tokenization_spaces is on (a later " ." turns an earlier "me" into "me."): each feed decodes the ids
    so far with the tokenizer's ``decode`` and returns the text up to its last space, all of it when it ends in a
    CJK character, and all of it (starting afresh) when it ends in a newline. Quadratic in the ids, as HF's is."""

    def __init__(self, tokenizer, decode_kwargs):
        self.tokenizer, self.decode_kwargs = tokenizer, decode_kwargs
        self.ids, self.sent = [], 0  # the ids since the last newline; the characters of their text returned

    def feed(self, token_ids) -> str:
        self.ids.extend(int(i) for i in np.asarray(token_ids).reshape(-1))
        text = self.tokenizer.decode(self.ids, **self.decode_kwargs)
        if text.endswith("\n"):
            new, self.ids, self.sent = text[self.sent:], [], 0
            return new
        end = len(text) if text and _is_cjk(text[-1]) else text.rfind(" ") + 1
        new = text[self.sent:end]
        self.sent += len(new)
        return new

    def flush(self) -> str:
        """End of stream: the rest of the text; the decoder can then be reused."""
        text = self.tokenizer.decode(self.ids, **self.decode_kwargs)[self.sent:] if self.ids else ""
        self.ids, self.sent = [], 0
        return text


def _is_cjk(char) -> bool:
    """HF's TextStreamer._is_chinese_char: the CJK ideographs, after which it prints without waiting for a space."""
    return any(lo <= ord(char) <= hi for lo, hi in _CJK_BLOCKS)


_CJK_BLOCKS = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


# The stream decoder the streamers use: bytes held back until their UTF-8 character is complete.
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
        self.skip = _skipped_ids(self.tokenizer) if skip_special_tokens else set()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors or self.tokenizer.errors)

    def step(self, token_id) -> str:
        """Add one id; return the text it completes ("" while a character is still incomplete)."""
        if isinstance(token_id, np.ndarray) and token_id.size == 1:
            token_id = token_id.reshape(()).item()
        if not is_int(token_id):
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


def _skipped_ids(tokenizer) -> set:
    """The ids that ``tokenizer.decode(ids, skip_special_tokens=True)`` leaves out, asked of decode itself: the
    special tokens and, for a fast tokenizer, every added token marked special (tokenizer.json's "special": true),
    as HF's Rust decoder skips them. Only those ids can be skipped, so only they are tried (a few decodes)."""
    candidates = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    return {i for i in candidates if i is not None and tokenizer.decode([i], skip_special_tokens=True) == ""}


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


_DEFAULT: list = []


def _default_tokenizer() -> GPT2Tokenizer:
    if not _DEFAULT:
        from .tokenizer import GPT2Tokenizer

        _DEFAULT.append(GPT2Tokenizer())
    return _DEFAULT[0]

