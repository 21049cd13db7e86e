"""GPT2Config: the hyper-parameters of a GPT-2 model, with Hugging Face's field names and defaults.

A config.json written by transformers loads here unchanged (unknown keys are kept and written back),
and one written here loads in transformers. The defaults describe the 124M "gpt2" checkpoint.
"""
from __future__ import annotations

import copy
import json
import os
import warnings

import numpy as np

from .activations import ACTIVATIONS
from .checks import check_int, check_number
from .snapshots import open_file
from .weights import FormatName

__all__ = ["GPT2Config", "PRESETS", "LEGACY_GENERATION_DEFAULTS"]

CONFIG_NAME = "config.json"

# HF's generic names for GPT-2's own fields (config.hidden_size is config.n_embd, and so on).
ATTRIBUTE_MAP = {
    "hidden_size": "n_embd",
    "max_position_embeddings": "n_positions",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
}

# Fields every HF config carries (PretrainedConfig) that a GPT-2 checkpoint may use.
# Printing a config shows them only when they differ from these defaults, as HF does.
COMMON_DEFAULTS = {
    "output_hidden_states": False,
    "output_attentions": False,
    "return_dict": True,
    "dtype": None,  # transformers 4.57's name; "torch_dtype" (older files and code) is read as dtype
    "is_encoder_decoder": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
    "architectures": None,
    "finetuning_task": None,
    "id2label": {0: "LABEL_0", 1: "LABEL_1"},
    "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "problem_type": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "sep_token_id": None,
    "decoder_start_token_id": None,
    "tokenizer_class": None,
    "prefix": None,
    "task_specific_params": None,
    "_name_or_path": "",  # where from_pretrained loaded the model from (the name_or_path property); never printed
}

# Generation settings that older config.json files carry (transformers' PretrainedConfig reads them, with these
# defaults, and builds model.generation_config from them when a checkpoint has no generation_config.json).
# Like the common fields they are printed only where they differ; config.json gets them only then too.
LEGACY_GENERATION_DEFAULTS = {
    "max_length": 20,
    "min_length": 0,
    "do_sample": False,
    "early_stopping": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "num_return_sequences": 1,
    "output_scores": False,
    "return_dict_in_generate": False,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "remove_invalid_values": False,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
}
COMMON_DEFAULTS.update(LEGACY_GENERATION_DEFAULTS)

# Fields of every HF config for HF's other code paths (TorchScript export, head pruning, chunked feed-forward,
# TensorFlow, encoder-decoder models). minigpt2 computes nothing from them but keeps them, for code that reads them
# and files that carry them; like the generation settings, they are printed and written only where they differ.
FRAMEWORK_DEFAULTS = {
    "torchscript": False,
    "pruned_heads": {},  # layer -> the heads pruned from it; from_dict reads JSON's string keys ("0") as ints, as HF
    "chunk_size_feed_forward": 0,
    "use_bfloat16": False,
    "tf_legacy_loss": False,
    "tie_encoder_decoder": False,
    "cross_attention_hidden_size": None,
}
COMMON_DEFAULTS.update(FRAMEWORK_DEFAULTS)
# What save_pretrained leaves out of config.json at its default (HF's files never carry these there).
WRITTEN_WHERE_CHANGED = {**LEGACY_GENERATION_DEFAULTS, **FRAMEWORK_DEFAULTS}

# GPT-2's own fields with the defaults of HF's GPT2Config (the openai-community/gpt2 architecture).
GPT2_DEFAULTS = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
    "initializer_range": 0.02,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "summary_activation": None,
    "summary_proj_to_labels": True,
    "summary_first_dropout": 0.1,
    "scale_attn_weights": True,
    "use_cache": True,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
}

# Published sizes, plus tiny ones for tests and workshops.
PRESETS = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    "distilgpt2": dict(n_layer=6, n_head=12, n_embd=768),
    "tiny": dict(n_layer=2, n_head=4, n_embd=64, n_positions=128),
}

SUMMARY_TYPES = ("last", "first", "mean", "cls_index")
# Flags that change what the model computes. transformers tests them for truth, so the string "false" (a hand-edited
# config.json) would mean True there: here anything but True or False is an error.
FLAGS = ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "tie_word_embeddings",
         "add_cross_attention", "summary_use_proj", "summary_proj_to_labels")


def _dtype_name(value):
    """config.dtype as config.json holds it, a name: torch.bfloat16 -> "bfloat16" (as transformers writes it),
    NumPy's dtypes by their names; None as it is. The name also equals torch's dtype of that name, as transformers'
    config.torch_dtype is one (weights.FormatName)."""
    if value is None or isinstance(value, FormatName):
        return value
    if isinstance(value, str):
        return FormatName(value)
    if type(value).__module__ == "torch":
        return FormatName(str(value)[len("torch."):])
    try:
        return FormatName(np.dtype(value).name)
    except TypeError:
        return value


def write_json(path, content) -> None:
    """``content`` as JSON in the file ``path``, whole or not at all: made in memory, written beside it, then
    renamed over it, so a value JSON cannot hold or an interrupted save leaves the old file as it was."""
    text = json.dumps(content, indent=2, sort_keys=True) + "\n"
    partial = f"{path}.{os.getpid()}.partial"
    try:
        with open(partial, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def read_json_object(path) -> dict:
    """The JSON object in the file ``path`` (config.json, generation_config.json), or a ValueError naming it."""
    try:
        with open_file(path, encoding="utf-8") as f:
            value = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    except UnicodeDecodeError as e:  # (JSON files are UTF-8; a hand-edited one may be saved as Latin-1)
        raise ValueError(f"{path} is not UTF-8 text (the byte {e.object[e.start:e.start + 1]!r} at byte {e.start}); "
                         f"JSON files are UTF-8: save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(value).__name__}")
    return value


class GPT2Config:
    """The configuration of a GPT-2 model (HF's ``GPT2Config``).

    >>> config = GPT2Config(n_layer=2, n_head=4, n_embd=64)
    >>> config.hidden_size, config.n_inner
    (64, None)

    Dropout probabilities are stored for compatibility; minigpt2 runs inference only, where dropout is
    the identity.
    """

    model_type = "gpt2"
    attribute_map = ATTRIBUTE_MAP  # HF's: generic name -> GPT-2's field
    keys_to_ignore_at_inference = ["past_key_values"]  # HF's: the output fields HF's Trainer leaves out of predictions

    def __init__(self, **kwargs):
        values = copy.deepcopy({**COMMON_DEFAULTS, **GPT2_DEFAULTS})  # (a config's own {} and lists, not the table's)
        if "name_or_path" in kwargs:
            kwargs["_name_or_path"] = str(kwargs.pop("name_or_path"))
        for alias, name in ATTRIBUTE_MAP.items():
            if alias in kwargs:
                kwargs[name] = kwargs.pop(alias)
        if "torch_dtype" in kwargs:
            kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
        if "dtype" in kwargs:
            kwargs["dtype"] = _dtype_name(kwargs["dtype"])
        num_labels = kwargs.pop("num_labels", None)
        if num_labels is not None and kwargs.get("id2label") is not None and len(kwargs["id2label"]) != num_labels:
            warnings.warn(f"GPT2Config: num_labels={num_labels} does not fit the id2label given, which has "
                          f"{len(kwargs['id2label'])} labels; the labels given are kept (as transformers keeps "
                          f"them), so num_labels is {len(kwargs['id2label'])}", UserWarning, stacklevel=2)
            num_labels = None
        attn_implementation = kwargs.pop("attn_implementation", None)
        kwargs.pop("model_type", None)
        if "id2label" in kwargs and "label2id" not in kwargs:
            kwargs["label2id"] = None  # as HF: the default {"LABEL_0": 0, ...} would contradict the labels given
        values.update(kwargs)
        for key, value in values.items():
            object.__setattr__(self, key, value)
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        if self.pruned_heads is None:  # as HF
            self.pruned_heads = {}
        if num_labels is not None:
            self.num_labels = num_labels
        # HF's choice of attention code, kept out of to_dict() and config.json as transformers keeps it (a model
        # saved here would otherwise tell transformers which one to use); minigpt2 computes HF's eager formula
        self._attn_implementation = attn_implementation
        self.validate()

    # -- HF's aliases -------------------------------------------------------------------------------
    def __getattr__(self, name):
        if name in ATTRIBUTE_MAP:
            return getattr(self, ATTRIBUTE_MAP[name])
        if name == "torch_dtype":
            return self.dtype
        if name == "per_layer_config":  # transformers 5.20+'s per-layer view (DynamicCache(config=...) reads it)
            return [self] * self.n_layer  # every GPT-2 layer has the config's own sizes
        raise AttributeError(f"'GPT2Config' object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name == "torch_dtype":  # the older name, as transformers takes it: one field, written once
            name = "dtype"
        if name == "dtype":
            value = _dtype_name(value)
        object.__setattr__(self, ATTRIBUTE_MAP.get(name, name), value)

    @property
    def name_or_path(self) -> str:
        """The checkpoint a model was loaded from (set by the models' from_pretrained), "" otherwise."""
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value):
        self._name_or_path = str(value)  # (os.PathLike too: JSON holds strings)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int):
        n = check_int("num_labels", n, low=0)
        if len(self.id2label) != n:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def use_return_dict(self) -> bool:
        """HF's name for whether models return output objects (True) or tuples: return_dict, and tuples under
        ``torchscript`` (as transformers)."""
        return bool(self.return_dict) and not self.torchscript

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        """The MLP's hidden width: n_inner, or 4 * n_embd when n_inner is None."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    # -- validation ---------------------------------------------------------------------------------
    def validate(self):
        """Raise ValueError naming the field for any value minigpt2 cannot honour."""
        # Sizes computed with NumPy arrive as np.int64 or np.float32: keep them as the plain Python
        # numbers they stand for (JSON cannot hold NumPy scalars).
        for name, value in list(self.__dict__.items()):
            if isinstance(value, np.generic):
                object.__setattr__(self, name, value.item())
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            check_int(f"GPT2Config.{name}", getattr(self, name), low=1)
        check_int("GPT2Config.n_inner", self.n_inner, low=1, allow_none=True)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPT2Config.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"each head gets n_embd / n_head dimensions"
            )
        if self.activation_function not in ACTIVATIONS:
            learned = " (it has weights of its own, which minigpt2's MLP does not hold)" if \
                self.activation_function in ("prelu", "xielu") else ""
            raise ValueError(
                f"GPT2Config.activation_function {self.activation_function!r} is not supported{learned}; "
                f"choose one of {sorted(ACTIVATIONS)}"
            )
        if self.summary_activation not in (None, *ACTIVATIONS):
            raise ValueError(
                f"GPT2Config.summary_activation {self.summary_activation!r} is not supported; "
                f"choose None or one of {sorted(ACTIVATIONS)}"
            )
        if self.summary_type not in SUMMARY_TYPES:
            raise ValueError(
                f"GPT2Config.summary_type {self.summary_type!r} is not supported; choose one of {list(SUMMARY_TYPES)}"
            )
        for name in FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPT2Config.{name} must be True or False (true or false in config.json), "
                                 f"got {getattr(self, name)!r}")
        check_number("GPT2Config.layer_norm_epsilon", self.layer_norm_epsilon, low=0)  # (0: as transformers takes it)
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout", "summary_last_dropout"):
            # summary_last_dropout is not a GPT2Config field, but configs may carry it
            check_number(f"GPT2Config.{name}", getattr(self, name, 0.0), low=0, high=1, what="a probability in [0, 1]")
        check_number("GPT2Config.initializer_range", self.initializer_range, low=0)
        if self.__dict__.get("per_layer_config") is not None:
            raise ValueError("GPT2Config.per_layer_config (transformers 5's per-layer overrides) is not supported: "
                             "every minigpt2 layer has the config's own sizes; leave it out")
        self.__dict__.pop("per_layer_config", None)  # (None: no overrides; the attribute is the per-layer view)
        problems = (None, "regression", "single_label_classification", "multi_label_classification")
        if self.problem_type not in problems:
            raise ValueError(f"GPT2Config.problem_type must be one of {problems}, got {self.problem_type!r}")

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, config_dict: dict, return_unused_kwargs=False, **kwargs):
        """The config ``config_dict`` describes. As in HF, keyword arguments that name config attributes (or
        their aliases) override it; the others are ignored, or returned with the config, ``(config, unused)``,
        when ``return_unused_kwargs``."""
        model_type = config_dict.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ValueError(f"model_type {model_type!r} is not GPT-2: minigpt2 loads only 'gpt2' configs")
        config = cls(**config_dict)
        config.pruned_heads = {int(layer): heads for layer, heads in config.pruned_heads.items()}
        unused = config._override(kwargs)
        return (config, unused) if return_unused_kwargs else config

    def _override(self, kwargs) -> dict:
        """Set the attributes ``kwargs`` name (as HF's from_dict and from_pretrained do); return the others."""
        unused = {}
        for key, value in kwargs.items():
            if key == "attn_implementation":  # (HF's from_pretrained takes it for the config, too)
                self._attn_implementation = value
            elif hasattr(self, key):
                setattr(self, key, value)
            else:
                unused[key] = value
        self.validate()
        return unused

    @classmethod
    def from_json_file(cls, path) -> "GPT2Config":
        config_dict = read_json_object(path)
        # keys that cannot be attributes: Python's "self" (GPT2Config(self=...) is a TypeError), dunders, methods
        reserved = sorted(k for k in config_dict
                          if k == "self" or k.startswith("__") or callable(getattr(cls, k, None)))
        if reserved:
            raise ValueError(f"{path}: the key{'s' if len(reserved) > 1 else ''} {', '.join(map(repr, reserved))} "
                             f"cannot be a config setting (a name Python or GPT2Config uses itself); remove it")
        try:
            return cls.from_dict(config_dict)
        except (ValueError, TypeError) as e:  # a value GPT2Config cannot honour: say in which file it is
            raise type(e)(f"{path}: {e}") from None

    @classmethod
    def from_pretrained(cls, name_or_path, return_unused_kwargs=False, **kwargs):
        """Load config.json from a directory, a file, or a Hub repo ("gpt2", "owner/repo").

        As in HF, keyword arguments that name config attributes override them; the others are ignored, or
        returned with the config, ``(config, unused)``, when ``return_unused_kwargs``.
        """
        config = cls.from_json_file(_config_file(name_or_path, kwargs))
        unused = config._override(kwargs)
        return (config, unused) if return_unused_kwargs else config

    @classmethod
    def get_config_dict(cls, name_or_path, **kwargs):
        """``(settings, unused)``: config.json's settings as a dict, from where ``from_pretrained`` finds it, and
        the keyword arguments that were not Hub options (HF's contract; ``from_dict`` makes the config)."""
        return read_json_object(_config_file(name_or_path, kwargs)), kwargs

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "GPT2Config":
        """A config of a published size ("gpt2" ... "gpt2-xl", "distilgpt2") or "tiny", for random weights."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **kwargs})

    def update(self, config_dict: dict):
        """Set the attributes named in ``config_dict`` (HF's name aliases work), as HF's update does."""
        for key, value in config_dict.items():
            setattr(self, key, value)

    def update_from_string(self, update_str: str):
        """Set existing attributes from ``"n_embd=10,resid_pdrop=0.2,scale_attn_weights=false"`` (HF's method):
        each value is read as the type the attribute has now (bool: true/false, 1/0, yes/no; int; float; str)."""
        for item in update_str.split(","):
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ValueError(f"update_from_string takes 'key=value' pairs separated by commas, got {item!r} in "
                                 f"{update_str!r}")
            if not hasattr(self, key):
                raise ValueError(f"key {key} isn't in the original config dict")
            old = getattr(self, key)
            if isinstance(old, bool):
                truth = {"true": True, "1": True, "y": True, "yes": True, "false": False, "0": False, "n": False,
                         "no": False}
                if text.lower() not in truth:
                    raise ValueError(f"can't derive true or false from {text} (key {key}): use true or false")
                value = truth[text.lower()]
            elif isinstance(old, (int, float, str)):
                try:
                    value = type(old)(text)
                except ValueError:
                    kind = {int: "an integer", float: "a number", str: "a string"}[type(old)]
                    raise ValueError(f"{key}={text!r}: {key} holds {kind}, and {text!r} is not one") from None
            else:
                raise TypeError(f"You can only update int, float, bool or string values in the config, got {text} "
                                f"for key {key} (it holds {type(old).__name__})")
            setattr(self, key, value)

    def get_text_config(self, decoder=False) -> "GPT2Config":
        """The config of the text model, for code written for multimodal models: GPT-2 is one, so itself."""
        return self

    # -- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = copy.deepcopy(self.__dict__)
        d.pop("_attn_implementation", None)
        d["model_type"] = self.model_type
        return dict(sorted(d.items()))

    def to_diff_dict(self) -> dict:
        """GPT-2's own fields always; the common ones only where they differ from their defaults (never
        _name_or_path, as in HF)."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if (k not in COMMON_DEFAULTS or v != COMMON_DEFAULTS[k] or k in GPT2_DEFAULTS) and k != "_name_or_path"
        }

    def to_json_string(self, use_diff: bool = True) -> str:
        d = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path, use_diff: bool = True):
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string(use_diff))

    def save_pretrained(self, save_directory):
        if os.path.isfile(save_directory):
            raise ValueError(f"save_pretrained needs a directory, but {save_directory} is a file")
        os.makedirs(save_directory, exist_ok=True)
        # Written whole: transformers reads this file, and a diff dict would drop the common defaults. But not
        # the legacy generation settings or the other frameworks' fields at their defaults, nor an empty name.
        written = {k: v for k, v in self.to_dict().items()
                   if not (k in WRITTEN_WHERE_CHANGED and v == WRITTEN_WHERE_CHANGED[k])
                   and not (k == "_name_or_path" and not v)}
        write_json(os.path.join(save_directory, CONFIG_NAME), written)

    def __repr__(self):
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other):
        return isinstance(other, GPT2Config) and self.to_dict() == other.to_dict()


def _config_file(name_or_path, kwargs) -> str:
    """The config.json ``name_or_path`` names: a directory's, a Hub repo's, or that file itself, as HF takes it
    (another file of a checkpoint is refused). Takes the Hub options (revision, cache_dir, ...) out of ``kwargs``."""
    from .hub import a_file_is_not_a_checkpoint, checkpoint_name, pop_hub_options, resolve_file

    hub_kwargs = pop_hub_options(kwargs)
    name_or_path = checkpoint_name(name_or_path)
    if os.path.isfile(name_or_path):
        with open(name_or_path, "rb") as f:
            if f.read(4096).lstrip()[:1] != b"{":
                raise a_file_is_not_a_checkpoint(name_or_path)
        return name_or_path
    return resolve_file(name_or_path, CONFIG_NAME, **hub_kwargs)


def as_gpt2_config(config, taker="the model") -> GPT2Config:
    """minigpt2's GPT2Config for ``config``: itself, or one read from a transformers GPT2Config's to_dict() (another
    model_type is refused by from_dict, naming it). ``taker`` names who asked, in the error for anything else."""
    if isinstance(config, GPT2Config):
        return config
    if not callable(getattr(config, "to_dict", None)) or isinstance(config, dict):
        raise TypeError(f"{taker} takes a GPT2Config (minigpt2's or transformers'; e.g. "
                        f"AutoConfig.from_pretrained(path)), got {type(config).__name__}")
    return GPT2Config.from_dict(config.to_dict())

