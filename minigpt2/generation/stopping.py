"""Stopping on strings: ``generate(stop_strings=[...], tokenizer=tok)``, as HF's StopStringCriteria decides.

A row stops when a stop string ends inside its newest token and that token starts inside the stop string
(HF's rule: it overlaps the end of the text; text that overhangs either end of the stop string is allowed).
So "stop" stops ["st", "op"], ["st", "opera"] and ["las", "topper"], but not ["stop", "at"]: once the
stop string lies wholly before the newest token, it was seen (or not) at an earlier step.
"""
from __future__ import annotations

import numpy as np


class StopStringCriteria:
    """``criteria(input_ids [N, L]) -> [N]`` bools: which rows end a stop string with their last token."""

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
        for stop in self.stop_strings:
            for i in range(1, min(len(stop), len(last)) + 1):  # the last token starts with the stop string's end
                if last[:i] == stop[len(stop) - i:] and before.endswith(stop[:len(stop) - i]):
                    return True
        return False

    def __call__(self, input_ids) -> np.ndarray:
        return np.array([self._row_stops(row) for row in np.asarray(input_ids).tolist()], bool)
