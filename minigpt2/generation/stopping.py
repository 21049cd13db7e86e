"""Stopping on strings: ``generate(stop_strings=[...], tokenizer=tok)``, as HF's StopStringCriteria decides.

A row stops when a stop string overlaps its newest token: it ends inside that token, wherever it starts
(before the token, or inside it; text may follow it in the token). So "stop" stops ["st", "op"],
["st", "opera"], ["las", "topper"] and ["xstop"], but not ["stop", "at"]: once the stop string lies wholly
before the newest token, it was seen (or not) at an earlier step.
"""
from __future__ import annotations

import numpy as np


class StopStringCriteria:
    """``criteria(input_ids [N, L]) -> [N]`` bools: which rows' last token overlaps a stop string."""

    def __init__(self, tokenizer, stop_strings):
        self.tokenizer = tokenizer
        self.stop_strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
        self.longest = max(len(s) for s in self.stop_strings)
        self._texts = {}  # token id -> its text, as the tokenizer decodes it alone

    def _text(self, token: int) -> str:
        if token not in self._texts:
            self._texts[token] = self.tokenizer.decode([token], skip_special_tokens=False,
                                                       clean_up_tokenization_spaces=False)
        return self._texts[token]

    def _row_stops(self, ids) -> bool:
        last = self._text(ids[-1])
        before, j = "", len(ids) - 2
        while len(before) < self.longest and j >= 0:  # enough text before the last token for any stop string
            before = self._text(ids[j]) + before
            j -= 1
        text = before + last
        # an occurrence that ends after the last token's start lies in the last len(last) + len(stop) - 1 chars
        return any(stop in text[max(0, len(text) - len(last) - len(stop) + 1):] for stop in self.stop_strings)

    def __call__(self, input_ids) -> np.ndarray:
        return np.array([self._row_stops(row) for row in np.asarray(input_ids).tolist()], bool)
