"""generate()'s settings: HF's GenerationConfig, with HF's names and defaults, and the checks on them."""
from __future__ import annotations

import ast
import difflib
import functools
import json
import os
import warnings
from dataclasses import dataclass, fields
from enum import Enum
from typing import Optional

import numpy as np
from ..checks import is_int, is_number
from ..config import write_json
from .hf_settings import HF_ONLY, INERT, METADATA

GENERATION_CONFIG_NAME = "generation_config.json"


class GenerationMode(str, Enum):
    """How generate() picks tokens, as transformers names the four strategies minigpt2 has."""
    GREEDY_SEARCH = "greedy_search"
    SAMPLE = "sample"
    BEAM_SEARCH = "beam_search"
    BEAM_SAMPLE = "beam_sample"


@dataclass
class GenerationConfig:
    """What ``generate`` does, with HF's names and defaults. Any field can also be passed to ``generate``.

    Lengths count the prompt: ``max_length=30`` means prompt + new tokens <= 30. ``max_new_tokens``, when set,
    wins over ``max_length``; ``min_new_tokens`` over ``min_length``. Left at its default (20, never passed to
    ``generate``), ``max_length`` means 20 new tokens, as in transformers 4.57 (4.46 counted the prompt).
    """

    max_length: int = 20
    max_new_tokens: Optional[int] = None
    min_length: int = 0
    min_new_tokens: Optional[int] = None
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: Optional[int] = 50
    top_p: float = 1.0
    min_p: Optional[float] = None
    top_h: Optional[float] = None  # Top-H sampling (transformers 5): keep the likeliest tokens holding top_h of H
    typical_p: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    encoder_repetition_penalty: float = 1.0  # the prompt's tokens: > 1 makes them MORE likely (HF's "hallucination"
    encoder_no_repeat_ngram_size: int = 0    # penalty), as for an encoder's input; n-grams of the prompt never recur
    bad_words_ids: Optional[list] = None  # token sequences never to generate: [[id, ...], ...]
    length_penalty: float = 1.0
    early_stopping: object = False  # True, False or "never", as in HF
    num_return_sequences: int = 1
    suppress_tokens: Optional[list] = None  # token ids never to generate
    begin_suppress_tokens: Optional[list] = None  # token ids not to generate as the first new token
    sequence_bias: object = None  # {(id, ...): bias} (or [[[id, ...], bias], ...]): added where it completes the ids
    forced_bos_token_id: Optional[int] = None  # forced as the second token of the sequence (after a 1-token prompt)
    remove_invalid_values: bool = False  # nan -> 0, +-inf -> +-float32 max, so that generation cannot crash
    exponential_decay_length_penalty: object = None  # (start, factor): eos grows by factor ** (new - start) after start
    renormalize_logits: bool = False  # a log-softmax after every processor, so that the scores are log-probabilities
    max_time: Optional[float] = None  # seconds: stop once generation has run this long
    use_cache: bool = True
    output_attentions: bool = False
    output_hidden_states: bool = False
    output_scores: bool = False
    output_logits: bool = False
    return_dict_in_generate: bool = False
    bos_token_id: Optional[int] = None
    eos_token_id: object = None  # an int, a list of ints, or None
    pad_token_id: Optional[int] = None
    forced_eos_token_id: object = None  # an int or a list of ints: forced as the last token at max_length
    stop_strings: object = None  # a string or a list of strings: stop once one is generated (needs tokenizer=)
    _from_model_config = False  # (not a field) made from a model's config: HF's mark in generation_config.json
    _transformers_settings = {}  # (not a field) transformers' settings given that minigpt2 has no field for

    @classmethod
    def from_model_config(cls, config) -> "GenerationConfig":
        """The generation settings a model's config carries, as HF's: its special tokens (GPT-2: bos = eos = 50256,
        no pad), and the settings older config.json files keep there (num_beams, max_length, do_sample, ...; a
        checkpoint with generation_config.json uses that file instead). Settings at None keep the defaults; any
        output_* flag set turns on return_dict_in_generate, as in transformers 4.57."""
        names = {f.name for f in fields(cls)}
        settings = {k: v for k, v in config.to_dict().items() if k in names and v is not None}
        generation_config = cls(**settings)
        if any(getattr(generation_config, flag) for flag in ("output_attentions", "output_hidden_states",
                                                              "output_scores", "output_logits")):
            generation_config.return_dict_in_generate = True
        generation_config._from_model_config = True  # (HF's mark, kept in generation_config.json)
        unsupported = {k: getattr(config, k) for k, off in (("num_beam_groups", 1), ("diversity_penalty", 0.0))
                       if getattr(config, k, off) not in (None, off)}
        if unsupported:  # (transformers 4.57 moved group beam search to the Hub: it refuses them too)
            warnings.warn(f"the model's config sets {unsupported} (group beam search), which minigpt2's generate "
                          f"does not implement; ignored", UserWarning, stacklevel=3)
        return generation_config

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """From the fields of a generation_config.json; metadata ("transformers_version", "_...") and transformers'
        settings that cannot change the tokens (hf_settings.INERT: cache_implementation, ...) are skipped, and other
        settings minigpt2's generate does not implement are ignored with a warning. As in HF, ``kwargs`` override
        the dict's settings; with ``return_unused_kwargs=True`` it returns ``(config, the kwargs that are not
        settings)``."""
        return_unused = kwargs.pop("return_unused_kwargs", False)
        for internal in ("_from_auto", "_from_pipeline", "_commit_hash"):  # (transformers' telemetry)
            kwargs.pop(internal, None)
        names = {f.name for f in fields(cls)}
        unused = {k: v for k, v in kwargs.items() if k not in names} if return_unused else {}
        config_dict = {**config_dict, **{k: v for k, v in kwargs.items() if k not in unused}}
        ignored = sorted(k for k in config_dict if k not in names and not k.startswith("_")
                         and k not in METADATA and k not in INERT)
        if ignored:
            warnings.warn(f"generation config settings {ignored} are not implemented by minigpt2's generate and are "
                          f"ignored", UserWarning, stacklevel=3)
        config = cls(**{k: v for k, v in config_dict.items() if k in names})
        config._from_model_config = bool(config_dict.get("_from_model_config", False))
        return (config, unused) if return_unused else config

    @classmethod
    def from_pretrained(cls, name_or_path, config_file_name=GENERATION_CONFIG_NAME, **kwargs):
        """generation_config.json of a checkpoint: a directory, the file itself, or a Hub repository. Hub options
        (revision, cache_dir, token, ...) find the file; other ``kwargs`` are settings that override the file's, as in
        HF's (``return_unused_kwargs=True``: also return the ones that are not settings)."""
        from ..hub import pop_hub_options, resolve_file

        hub_kwargs = pop_hub_options(kwargs)
        name_or_path = os.fspath(name_or_path)
        config_file_name = GENERATION_CONFIG_NAME if config_file_name is None else config_file_name
        path = name_or_path if os.path.isfile(name_or_path) else resolve_file(name_or_path, config_file_name,
                                                                             **hub_kwargs)
        return cls._from_json_file(path, **kwargs)

    @classmethod
    def _from_json_file(cls, path, **kwargs):
        """The settings of the generation_config.json at ``path``, with ``kwargs`` as in from_pretrained. (Private:
        transformers' GenerationConfig has no such method; from_pretrained of a file path does this after a check.)"""
        from ..config import read_json_object

        settings = read_json_object(path)
        try:
            loaded = cls.from_dict(settings, **kwargs)
            (loaded[0] if isinstance(loaded, tuple) else loaded).validate()
        except (ValueError, TypeError) as e:  # a setting that cannot be used: say in which file it is
            raise type(e)(f"{path}{' (with ' + ', '.join(kwargs) + ' given)' if kwargs else ''}: {e}") from None
        return loaded

    def save_pretrained(self, save_directory, config_file_name=GENERATION_CONFIG_NAME):
        """Write generation_config.json (the settings that differ from the defaults), as HF does."""
        os.makedirs(save_directory, exist_ok=True)
        write_json(os.path.join(save_directory, config_file_name), _json_ready(self.to_diff_dict()))

    def to_diff_dict(self) -> dict:
        """The settings that differ from the defaults (and HF's ``_from_model_config`` mark when set), as HF's
        ``to_diff_dict`` (without its "transformers_version")."""
        changed = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        if self._from_model_config:
            changed["_from_model_config"] = True
        return changed

    def to_json_string(self, use_diff: bool = True, ignore_metadata: bool = False) -> str:
        """The settings as JSON (keys sorted, indent 2), as HF's: those that differ from the defaults, or with
        ``use_diff=False`` all of them. (``ignore_metadata`` is accepted: minigpt2 writes no version.)"""
        settings = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(_json_ready(settings), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path, use_diff: bool = True):
        """Write ``to_json_string(use_diff)`` to ``json_file_path``."""
        write_json(os.fspath(json_file_path), _json_ready(self.to_diff_dict() if use_diff else self.to_dict()))

    def __repr__(self):
        return f"{type(self).__name__} {self.to_json_string()}"

    def update(self, **kwargs) -> dict:
        """Set the fields named in ``kwargs``; return the arguments that are not fields (HF's contract)."""
        names = {f.name for f in fields(self)}
        for key in [k for k in kwargs if k in names]:
            setattr(self, key, kwargs.pop(key))
        return kwargs

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self, strict: bool = False):
        """Raise ValueError naming the field and what it may be. ``strict=True`` (HF's): a setting the chosen strategy
        ignores (temperature without do_sample, length_penalty without beams, ...: what generate warns about) is a
        ValueError too."""
        for f in fields(self):  # None means "not set", as in HF: the default applies (top_k=None: no top-k)
            value = getattr(self, f.name)
            if value is None and f.default is not None and f.name != "top_k":
                setattr(self, f.name, f.default)
            elif getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # np.array(5), torch.tensor(0.7):
                setattr(self, f.name, value.item())  # a number computed with arrays, taken as HF takes it
        # HF takes a length given as a float (max_new_tokens=3.0, from arithmetic or a parsed file): a whole one
        self.max_length = _whole_number("max_length", self.max_length)
        self.max_new_tokens = _whole_number("max_new_tokens", self.max_new_tokens)
        _check_int("max_length", self.max_length, low=1)
        _check_int("max_new_tokens", self.max_new_tokens, low=1, optional=True)
        _check_int("min_length", self.min_length, low=0)
        _check_int("min_new_tokens", self.min_new_tokens, low=0, optional=True)
        _check_int("num_beams", self.num_beams, low=1)
        _check_int("num_return_sequences", self.num_return_sequences, low=1)
        _check_int("no_repeat_ngram_size", self.no_repeat_ngram_size, low=0)
        _check_int("encoder_no_repeat_ngram_size", self.encoder_no_repeat_ngram_size, low=0)
        for name in ("do_sample", "use_cache", "output_scores", "output_logits", "return_dict_in_generate",
                     "output_attentions", "output_hidden_states", "remove_invalid_values", "renormalize_logits"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        self._check_sampling_settings()
        if self.bad_words_ids is not None:
            words = self.bad_words_ids
            if not (isinstance(words, (list, tuple)) and words and all(
                    isinstance(w, (list, tuple)) and w and all(is_int(t) and t >= 0 for t in w)
                    for w in words)):
                raise ValueError(f"bad_words_ids must be a non-empty list of non-empty lists of token ids (e.g. "
                                 f"tokenizer(words, add_special_tokens=False).input_ids), got {words!r}")
        for token in _as_token_list(self.forced_eos_token_id):
            _check_int("forced_eos_token_id", token, low=0)
        _check_int("forced_bos_token_id", self.forced_bos_token_id, low=0, optional=True)
        for name in ("suppress_tokens", "begin_suppress_tokens"):
            ids = getattr(self, name)
            if getattr(ids, "ndim", None) == 1:  # a NumPy array or torch tensor of ids, as HF takes them
                ids = _as_token_list(ids)
                setattr(self, name, ids)
            if ids is not None and not (isinstance(ids, (list, tuple)) and all(is_int(t) and t >= 0 for t in ids)):
                raise ValueError(f"{name} must be a list of token ids, e.g. [50256], got {ids!r}")
        if self.sequence_bias is not None:
            self.sequence_bias = _sequence_bias_dict(self.sequence_bias)
        decay = self.exponential_decay_length_penalty
        if decay is not None:
            if not (isinstance(decay, (list, tuple)) and len(decay) == 2 and is_int(decay[0]) and decay[0] >= 0
                    and is_number(decay[1]) and np.isfinite(decay[1])):
                raise ValueError(f"exponential_decay_length_penalty must be (start, factor): the number of new "
                                 f"tokens after which the eos score grows, and by what factor per token (> 1 "
                                 f"favours ending), e.g. (10, 1.05); got {decay!r}")
            self.exponential_decay_length_penalty = (int(decay[0]), float(decay[1]))
        if self.max_time is not None and not _check_float("max_time", self.max_time) > 0:
            raise ValueError(f"max_time must be a number of seconds > 0, or None, got {self.max_time}")
        if not _check_float("repetition_penalty", self.repetition_penalty) > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = no penalty, > 1 discourages repeats), "
                             f"got {self.repetition_penalty}")
        if not _check_float("encoder_repetition_penalty", self.encoder_repetition_penalty) > 0:
            raise ValueError(f"encoder_repetition_penalty must be > 0 (1 = off, > 1 favours the prompt's tokens), "
                             f"got {self.encoder_repetition_penalty}")
        _check_float("length_penalty", self.length_penalty)
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        stops = [self.stop_strings] if isinstance(self.stop_strings, str) else self.stop_strings
        if stops is not None and not (isinstance(stops, (list, tuple)) and stops
                                      and all(isinstance(s, str) and s for s in stops)):
            raise ValueError(f"stop_strings must be a non-empty string or a list of them, got {self.stop_strings!r}")
        for name in ("bos_token_id", "pad_token_id"):
            _check_int(name, getattr(self, name), low=0, optional=True)
        for eos in _as_token_list(self.eos_token_id):
            _check_int("eos_token_id", eos, low=0)
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError(f"num_return_sequences={self.num_return_sequences} needs sampling (do_sample=True) "
                             f"or beam search (num_beams >= num_return_sequences): greedy decoding has one answer")
        if self.num_return_sequences > self.num_beams > 1:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams "
                             f"({self.num_beams}): beam search returns its best beams")
        if strict and self._unused_settings():
            raise ValueError(f"GenerationConfig is invalid (strict): {'; '.join(self._unused_settings())}")

    def _check_sampling_settings(self):
        """temperature, top_k, top_p, ...: numbers always; their ranges only when sampling, as in transformers 4.57,
        whose greedy and beam search never read them (top_k=-1 or top_p=0 with do_sample=False only warn)."""
        if self.top_k is not None and not is_number(self.top_k):
            raise TypeError(f"top_k must be an integer or None, got {self.top_k!r}")
        t = _check_float("temperature", self.temperature)
        p = _check_float("top_p", self.top_p)
        typical = _check_float("typical_p", self.typical_p)
        min_p = None if self.min_p is None else _check_float("min_p", self.min_p)
        top_h = None if self.top_h is None else _check_float("top_h", self.top_h)
        cutoffs = {name: _check_float(name, getattr(self, name)) for name in ("epsilon_cutoff", "eta_cutoff")}
        if not self.do_sample:
            return
        if not t > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {t}; for the most likely token at each "
                             f"step use greedy decoding (do_sample=False)")
        low, high = TEMPERATURE_LIMITS
        if not low <= t <= high:
            raise ValueError(f"temperature={t} cannot be used: the scores are float32, and a temperature must be in "
                             f"[{low:.4g}, {high:.4g}] to divide them (1e-4 to 1e4 covers every useful value; for "
                             f"the most likely token at each step use greedy decoding, do_sample=False)")
        if self.top_k is not None and not (is_int(self.top_k) and self.top_k >= 0):
            raise ValueError(f"top_k must be a positive integer when sampling (0 or None: no top-k filtering), got "
                             f"{self.top_k!r}")
        if p < 0:  # HF: top_p=0 keeps the most likely token alone; top_p >= 1 keeps every token
            raise ValueError(f"top_p must be in [0, 1] (1 keeps every token), got {p}")
        if min_p is not None and not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1] or None, got {self.min_p}")
        if top_h is not None and not 0 < top_h <= 1:  # (transformers 5: when it builds the warper, i.e. sampling)
            raise ValueError(f"top_h must be in (0, 1] (the share of the entropy kept) or None, got {self.top_h}")
        if not typical > 0:  # >= 1: off, as in HF
            raise ValueError(f"typical_p must be in (0, 1] (1 = off), got {self.typical_p}")
        for name, value in cutoffs.items():
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1) (0 = off), got {value}")

    def get_generation_mode(self, assistant_model=None) -> GenerationMode:
        """The strategy these settings choose, as HF's: beams or not, sampling or not."""
        if assistant_model is not None:
            raise ValueError("assistant_model: minigpt2's generate has no assisted (speculative) decoding")
        if self.num_beams > 1:
            return GenerationMode.BEAM_SAMPLE if self.do_sample else GenerationMode.BEAM_SEARCH
        return GenerationMode.SAMPLE if self.do_sample else GenerationMode.GREEDY_SEARCH

    def warn_unused(self):
        """HF's warnings for settings that the chosen strategy ignores."""
        for message in self._unused_settings():
            warnings.warn(message, UserWarning, stacklevel=4)

    def _unused_settings(self) -> list:
        """What warn_unused says: the settings that the chosen strategy ignores, one sentence per kind."""
        said = []
        if not self.do_sample:
            unused = [f"{name}={getattr(self, name)}" for name, default in
                      (("temperature", 1.0), ("top_p", 1.0), ("top_k", 50), ("top_h", None))
                      if getattr(self, name) not in (default, None)]  # None: unset (HF says nothing either)
            if unused:
                said.append(f"{', '.join(unused)} only matter(s) when sampling; set do_sample=True to sample "
                            f"(greedy and beam search ignore it)")
        if self.num_beams == 1:
            unused = [f"{name}={getattr(self, name)!r}" for name, default in (("length_penalty", 1.0),
                                                                              ("early_stopping", False))
                      if getattr(self, name) != default]
            if unused:
                said.append(f"{', '.join(unused)} only matter(s) in beam search (num_beams > 1)")
        return said


def _taking_transformers_settings(dataclass_init):
    """GenerationConfig's __init__: the dataclass's, which takes the fields, and also what transformers'
    GenerationConfig takes besides them (``GenerationConfig(**d)`` with d from a generation_config.json or a
    transformers config's to_dict()): its metadata (transformers_version, ...: skipped) and its settings minigpt2 has
    no field for (hf_settings.HF_ONLY: kept aside, for generate to accept the inert ones and refuse those that would
    act). Another name is a TypeError naming it (transformers keeps any name, a misspelt one too)."""

    @functools.wraps(dataclass_init)
    def __init__(self, *args, **kwargs):
        names = {f.name for f in fields(type(self))}
        metadata = {k: kwargs.pop(k) for k in [k for k in kwargs if k in METADATA]}
        others = {k: kwargs.pop(k) for k in [k for k in kwargs if k not in names and k in HF_ONLY]}
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            close = {k: difflib.get_close_matches(k, sorted(names | set(HF_ONLY)), 1, cutoff=0.75) for k in unknown}
            said = ", ".join(f"{k!r} (did you mean {close[k][0]!r}?)" if close[k] else repr(k) for k in unknown)
            raise TypeError(f"GenerationConfig got unexpected setting(s) {said}: it takes its fields "
                            f"(docs/generation.md) and transformers' other settings (minigpt2.generation.hf_settings)")
        dataclass_init(self, *args, **kwargs)
        if is_number(self.max_new_tokens) and self.max_new_tokens <= 0:  # (HF's one check when the config is made)
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if metadata.get("_from_model_config"):
            self._from_model_config = True
        self._transformers_settings = others

    return __init__


GenerationConfig.__init__ = _taking_transformers_settings(GenerationConfig.__init__)


def _json_ready(settings: dict) -> dict:
    """``settings`` as JSON can hold them: sequence_bias's tuple keys become HF's list form, which it reads."""
    if isinstance(settings.get("sequence_bias"), dict):
        settings = {**settings, "sequence_bias": [[list(ids), bias] for ids, bias in settings["sequence_bias"].items()]}
    return settings


def _check_int(name, value, *, low, optional=False):
    if value is None and optional:
        return
    if not is_int(value):
        raise TypeError(f"{name} must be an integer{' or None' if optional else ''}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _whole_number(name, value):
    """A float that is a whole number (3.0) as that int; anything else unchanged (the checks that follow judge it)."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value):
        if not float(value).is_integer():
            raise TypeError(f"{name} must be a whole number of tokens, got {value!r}")
        return int(value)
    return value


# The temperatures sampling can divide float32 scores by. transformers accepts any positive float (torch then
# divides in float32 and gets inf or NaN scores); here a temperature must itself be a normal positive float32:
# above float32's largest value (3.4e38) it rounds to infinity, and below its smallest normal one (1.2e-38) 1/T
# no longer fits in a float32, so dividing any score above ~T * 3.4e38 (a few thousandths) overflows. Between the
# two, TemperatureLogitsWarper keeps the division finite even for scores it would overflow (see there).
TEMPERATURE_LIMITS = (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max))


def _check_float(name, value) -> float:
    if isinstance(value, (bool, np.bool_)):  # (transformers takes True as 1.0: for top_h and top_p, no filtering)
        raise TypeError(f"{name} must be a number, got {name}={value!r}: it is not a switch but the setting itself, "
                        f"a number (transformers would read {value!r} as {float(value)}; pass that if you mean it)")
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _sequence_bias_dict(bias) -> dict:
    """sequence_bias as {(id, ...): float}, from HF's two forms: that dict, or [[[id, ...], bias], ...] (the form
    generation_config.json holds; a dict written by HF has keys "(1, 2)", read here too)."""
    pairs = list(bias.items()) if isinstance(bias, dict) else bias
    if isinstance(pairs, (list, tuple)) and pairs:
        out = {}
        for pair in pairs:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                break
            ids, value = pair
            if isinstance(ids, str) and ids.startswith("("):
                try:
                    ids = ast.literal_eval(ids)
                except (ValueError, SyntaxError):
                    break
            ids = (ids,) if is_int(ids) else ids
            if not (isinstance(ids, (list, tuple)) and ids and all(is_int(t) and t >= 0 for t in ids)
                    and is_number(value) and np.isfinite(value)):
                break
            out[tuple(int(t) for t in ids)] = float(value)
        else:
            return out
    raise ValueError(f"sequence_bias must map token id sequences to a bias added to the last token's score when "
                     f"the sequence so far ends with the others: {{(id, ...): bias, ...}} or [[[id, ...], bias], ...], "
                     f"e.g. {{(318,): -10.0}}; got {bias!r}")


def _as_token_list(ids) -> list:
    """None, one id or a list of ids -> a list (validate() checks that they are integers)."""
    if ids is None:
        return []
    if hasattr(ids, "tolist") and not isinstance(ids, np.ndarray):  # a NumPy scalar or a torch tensor
        ids = ids.tolist()
    if isinstance(ids, (list, tuple, np.ndarray)):
        return [x.item() if isinstance(x, np.generic) else x for x in np.ravel(np.asarray(ids, dtype=object))]
    return [ids]


# ------------------------------------------------------------------------------------------------------------
# 2. Logits processors: functions of (ids so far [N, L], scores [N, V]) -> new scores [N, V].
