"""Model outputs: dataclasses with HF's field names that also behave like HF's ``ModelOutput``.

    out = model(input_ids)
    out.logits          # by name
    out["logits"]       # by key
    out[0]              # by position, counting only the fields that are set, as HF does
    out.to_tuple()      # the fields that are set, in order
    out["logits"] = x   # sets the field, as out.logits = x does
    out.cache, out["cache"]   # transformers 5's name for past_key_values
    Output({"logits": x})   # a dict as the only argument fills the fields it names, as in HF
    Output(logits=x, cache=c)   # cache=, transformers 5's name, fills past_key_values
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Optional, Tuple

import numpy as np


class _TakesCache(type):
    """The output classes' type, there so that ``Output(..., cache=c)`` works: cache is transformers 5's name for the
    field past_key_values (transformers 5 takes the old name likewise, with a type like this one).

    @dataclass makes each output class's __init__, with one argument per field, and sets it on the class:
    ``setattr(cls, "__init__", init)``. Setting an attribute on a class goes through its type's __setattr__, below.
    For a class with a past_key_values field, it sets an __init__ that renames cache= to past_key_values= and calls
    the dataclass's. A class without a cache keeps the dataclass's __init__, which refuses cache= (a TypeError)."""

    def __setattr__(cls, name, value):
        if name == "__init__" and "past_key_values" in getattr(cls, "__dataclass_fields__", {}):
            dataclass_init = value

            @functools.wraps(dataclass_init)  # (its signature and help stay the dataclass's: the fields)
            def init_taking_cache(self, *args, **kwargs):
                if "cache" in kwargs:
                    if "past_key_values" in kwargs:
                        raise ValueError(f"{type(self).__name__}: pass the cache once: past_key_values (transformers "
                                         f"4's name) or cache (transformers 5's)")
                    kwargs["past_key_values"] = kwargs.pop("cache")
                dataclass_init(self, *args, **kwargs)

            value = init_taking_cache
        super().__setattr__(name, value)


class ModelOutput(metaclass=_TakesCache):
    """Base for the output dataclasses: fields that are None are absent from keys and positions."""

    def __post_init__(self):
        """HF's ModelOutput(dict): a mapping as the first argument, with no other field given, fills the fields it names
        (code that rebuilds an output from its items, ``type(out)({k: f(v) for k, v in out.items()})``, relies on it)."""
        names = [f.name for f in fields(self)]
        first = getattr(self, names[0])
        if isinstance(first, Mapping) and all(getattr(self, name) is None for name in names[1:]):
            unknown = set(first) - set(names)
            if unknown:
                raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)}; its fields are {names}")
            setattr(self, names[0], None)
            for name, value in first.items():
                setattr(self, name, value)

    def keys(self):
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __setitem__(self, key, value):
        """``out["logits"] = x`` sets the field, as HF's ModelOutput does (and ``out.logits = x``)."""
        key = self._field_name(key)
        names = [f.name for f in fields(self)]
        if key not in names:
            raise KeyError(f"{type(self).__name__} has no field {key!r}; its fields are {names}")
        setattr(self, key, value)

    def __reversed__(self):  # (HF's is an OrderedDict: the keys, last first)
        return reversed(self.keys())

    def values(self):
        return [getattr(self, k) for k in self.keys()]

    def items(self):
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple:
        return tuple(self.values())

    def __getitem__(self, key):
        if isinstance(key, str):
            name = self._field_name(key)
            if name not in self.keys():
                raise KeyError(key)
            return getattr(self, name)
        return self.to_tuple()[key]

    def __contains__(self, key):
        return self._field_name(key) in self.keys()

    def __iter__(self):  # like HF (an OrderedDict underneath): iterating gives the keys
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def get(self, key, default=None):
        key = self._field_name(key)
        return getattr(self, key) if key in self.keys() else default

    def _field_name(self, key):
        """The field ``key`` names: "cache", transformers 5's name, is past_key_values in the outputs that have one
        (transformers 5 reads "past_key_values" as "cache" likewise). keys() says past_key_values, as transformers 4."""
        return "past_key_values" if key == "cache" and self._has_cache() else key

    def _has_cache(self) -> bool:
        return any(f.name == "past_key_values" for f in fields(self))

    @property
    def cache(self):
        """transformers 5's name for ``past_key_values`` (for the outputs that have one)."""
        if not self._has_cache():
            raise AttributeError(f"{type(self).__name__} has no cache (past_key_values)")
        return self.past_key_values

    @cache.setter
    def cache(self, value):
        if not self._has_cache():
            raise AttributeError(f"{type(self).__name__} has no cache (past_key_values)")
        self.past_key_values = value


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
