"""BatchEncoding: what tokenizer(...) returns."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .options import tensor_type as _tensor_type


class BatchEncoding(dict):
    """The tokenizer's output: a dict (input_ids, attention_mask, ...) that also allows `enc.input_ids`.

    Values are lists, or NumPy int64 arrays when made with return_tensors="np". `model(**enc)` works because it
    is a dict. HF: BatchEncoding is a UserDict; the Rust-only parts (word_ids, offsets) do not exist here.
    """

    def __init__(self, data=None, tensor_type=None, prepend_batch_axis: bool = False, n_sequences=None):
        super().__init__(data or {})
        self.n_sequences = n_sequences
        self.convert_to_tensors(tensor_type, prepend_batch_axis)

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key or attribute {name!r}") from None

    def __getitem__(self, key):
        if isinstance(key, str):
            return super().__getitem__(key)
        if isinstance(key, (int, np.integer)):
            raise KeyError("indexing a BatchEncoding with an integer (HF's Rust Encoding objects) is not available; "
                           "use enc['input_ids'][i]")
        raise KeyError(key)

    def __getstate__(self):
        return {"data": dict(self), "n_sequences": self.n_sequences}

    def __setstate__(self, state):
        self.update(state["data"])
        self.n_sequences = state["n_sequences"]

    def __reduce__(self):
        return (BatchEncoding, (), self.__getstate__())

    @property
    def data(self) -> Dict[str, Any]:
        return dict(self)

    @property
    def is_fast(self) -> bool:
        return False

    @property
    def encodings(self):
        return None

    def convert_to_tensors(self, tensor_type=None, prepend_batch_axis: bool = False) -> "BatchEncoding":
        """Turn every value into a NumPy int64 array ("np"); a ragged batch is a clear error."""
        if _tensor_type(tensor_type) is None:
            return self
        for key, value in self.items():
            if prepend_batch_axis:
                value = [value]
            if isinstance(value, np.ndarray):
                continue
            try:
                self[key] = np.array(value, dtype=np.int64)
            except ValueError:
                raise ValueError(
                    f"cannot make a NumPy array of {key!r}: its sequences have different lengths "
                    f"{sorted({len(v) for v in value})}. Pass padding=True (and truncation=True) for equal lengths."
                ) from None
        return self

    def to(self, device) -> "BatchEncoding":
        """HF moves tensors to a torch device here; NumPy arrays live in host memory, so this returns self."""
        return self

