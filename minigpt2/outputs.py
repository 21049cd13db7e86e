"""Model outputs: dataclasses with HF's field names that also behave like HF's ``ModelOutput``.

    out = model(input_ids)
    out.logits          # by name
    out["logits"]       # by key
    out[0]              # by position, counting only the fields that are set, as HF does
    out.to_tuple()      # the fields that are set, in order
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Tuple

import numpy as np


class ModelOutput:
    """Base for the output dataclasses: fields that are None are absent from keys and positions."""

    def keys(self):
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self):
        return [getattr(self, k) for k in self.keys()]

    def items(self):
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple:
        return tuple(self.values())

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key):
        return key in self.keys()

    def __iter__(self):  # like HF (an OrderedDict underneath): iterating gives the keys
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def get(self, key, default=None):
        return getattr(self, key) if key in self.keys() else default

    @property
    def cache(self):
        """transformers 5's name for ``past_key_values`` (for the outputs that have one)."""
        if not hasattr(self, "past_key_values"):
            raise AttributeError(f"{type(self).__name__} has no cache (past_key_values)")
        return self.past_key_values


@dataclass
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: np.ndarray = None
    past_key_values: Optional[Tuple[Tuple[np.ndarray, np.ndarray], ...]] = None
    hidden_states: Optional[Tuple[np.ndarray, ...]] = None
    attentions: Optional[Tuple[np.ndarray, ...]] = None
    cross_attentions: Optional[Tuple[np.ndarray, ...]] = None


@dataclass
class CausalLMOutputWithCrossAttentions(ModelOutput):
    loss: Optional[np.ndarray] = None
    logits: np.ndarray = None
    past_key_values: Optional[Tuple[Tuple[np.ndarray, np.ndarray], ...]] = None
    hidden_states: Optional[Tuple[np.ndarray, ...]] = None
    attentions: Optional[Tuple[np.ndarray, ...]] = None
    cross_attentions: Optional[Tuple[np.ndarray, ...]] = None


@dataclass
class GPT2DoubleHeadsModelOutput(ModelOutput):
    loss: Optional[np.ndarray] = None
    mc_loss: Optional[np.ndarray] = None
    logits: np.ndarray = None
    mc_logits: np.ndarray = None
    past_key_values: Optional[Tuple[Tuple[np.ndarray, np.ndarray], ...]] = None
    hidden_states: Optional[Tuple[np.ndarray, ...]] = None
    attentions: Optional[Tuple[np.ndarray, ...]] = None


@dataclass
class SequenceClassifierOutputWithPast(ModelOutput):
    loss: Optional[np.ndarray] = None
    logits: np.ndarray = None
    past_key_values: Optional[Tuple[Tuple[np.ndarray, np.ndarray], ...]] = None
    hidden_states: Optional[Tuple[np.ndarray, ...]] = None
    attentions: Optional[Tuple[np.ndarray, ...]] = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    loss: Optional[np.ndarray] = None
    logits: np.ndarray = None
    hidden_states: Optional[Tuple[np.ndarray, ...]] = None
    attentions: Optional[Tuple[np.ndarray, ...]] = None


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: Optional[np.ndarray] = None
    start_logits: np.ndarray = None
    end_logits: np.ndarray = None
    hidden_states: Optional[Tuple[np.ndarray, ...]] = None
    attentions: Optional[Tuple[np.ndarray, ...]] = None
