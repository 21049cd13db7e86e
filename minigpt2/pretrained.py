"""What every GPT-2 model class shares, apart from the math: its config and parameters, random initialisation,
loading (``from_pretrained``: a directory or the Hub, any weight format) and saving, the state dict, the
weight format (``dtype``, ``to``), the token embeddings, and HF's small attributes (device, can_generate, ...).

The models themselves, whose forward passes read like the math, are in modeling.py (the transformer and the
LM heads) and task_heads.py; they inherit all of this from GPT2PreTrainedModel.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import os
import sys
import warnings
from collections import namedtuple

import numpy as np

from . import backend, checkpoint, submodules, weights
from .checks import check_int, float_array, int_array, short_list
from .config import GPT2Config, as_gpt2_config
from .generation import GENERATION_CONFIG_NAME, GenerationConfig, GenerationMixin
from .generation.sampling import random_generator
from .hub import a_file_is_not_a_checkpoint, checkpoint_name, pop_hub_options, resolve_file
from .layers import lm_head

__all__ = ["GPT2PreTrainedModel", "Embedding", "Linear"]

TRANSFORMER_PARTS = ("wte", "wpe", "h", "ln_f")  # GPT2Model's parameters; a head's others are its own


class Embedding:
    """A lookup table, as HF's get_input_embeddings() gives: ``.weight`` [num_embeddings, embedding_dim];
    calling it with token ids gives their rows."""

    def __init__(self, weight):
        self.weight = weight

    @property
    def num_embeddings(self):
        return self.weight.shape[0]

    @property
    def embedding_dim(self):
        return self.weight.shape[1]

    def __call__(self, input_ids):
        return weights.widen(self.weight[int_array("input_ids", input_ids, high=self.num_embeddings)])

    def __repr__(self):
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"


class Linear:
    """The LM head as HF's ``model.lm_head`` (an nn.Linear without bias): ``.weight`` [out_features, in_features]
    (wte itself when tied); calling it with hidden states [..., n_embd] gives the logits [..., vocab_size]."""

    def __init__(self, weight):
        self.weight = weight

    @property
    def in_features(self):
        return self.weight.shape[1]

    @property
    def out_features(self):
        return self.weight.shape[0]

    def __call__(self, hidden_states):
        """The logits of hidden states.  # [..., n_embd] -> [..., vocab_size]"""
        h = float_array("hidden_states", hidden_states)
        if h.ndim < 1 or h.shape[-1] != self.in_features:
            raise ValueError(f"hidden_states must have n_embd={self.in_features} numbers on their last axis, got "
                             f"shape {h.shape}")
        return lm_head(h, self.weight)

    def __repr__(self):
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, bias=False)"


class _IncompatibleKeys(namedtuple("_IncompatibleKeys", "missing_keys unexpected_keys")):
    """What load_state_dict returns, as torch does."""


class GPT2PreTrainedModel:
    """What every GPT-2 model shares: config, parameters, random init, loading and saving."""

    config_class = GPT2Config
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    uses_lm_head = False  # True for the classes with the LM head (wte, tied; or lm_head.weight, untied)
    name_or_path = ""  # where from_pretrained loaded it from (HF's model.name_or_path)
    generation_config = None  # as HF's for the classes that cannot generate (GenerationMixin's property otherwise)

    @property
    def device(self) -> str:
        """Where the weights and the computation live: always the CPU, so ``inputs.to(model.device)`` works."""
        return "cpu"

    @property
    def base_model(self):
        """The bare transformer (GPT2Model) under a head; a GPT2Model itself."""
        return getattr(self, self.base_model_prefix, self)

    def named_parameters(self):
        """(name, array) for every parameter, as state_dict() names them; the tied head is wte, listed once."""
        return ((name, a) for name, a in self.state_dict().items() if not (name == "lm_head.weight" and self._tied()))

    def __getattr__(self, name):
        """HF's submodules by name, as views of the parameters (submodules.py): a GPT2Model's ``wte``, ``wpe``, ``h``
        (a list of blocks: ``h[0].attn.c_attn.weight``) and ``ln_f``; a head's own (``score``, ``classifier``,
        ``qa_outputs``, ``multiple_choice_head``), its transformer's under ``model.transformer``."""
        params = self.__dict__.get("params")
        is_transformer = "transformer" not in self.__dict__
        if params is not None and name in params and name != "lm_head" and (name in TRANSFORMER_PARTS) == is_transformer:
            return submodules.view(params[name], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _tied(self) -> bool:
        """Is the LM head wte itself? (False without an LM head, or with its own lm_head.weight.)"""
        return self.uses_lm_head and "lm_head" not in self.params

    @property
    def lm_head(self):
        """HF's ``model.lm_head``, for the classes with the LM head: a Linear over wte (tied) or lm_head.weight."""
        if not self.uses_lm_head:
            raise AttributeError(f"{type(self).__name__} has no LM head (lm_head); GPT2LMHeadModel has one")
        return Linear(self._lm_head_weight())

    def _lm_head_weight(self):
        """The LM head's matrix [vocab_size, n_embd]: lm_head.weight when the checkpoint has its own
        (config.tie_word_embeddings false), else wte."""
        return weights.lm_head_weight(self.params)

    def parameters(self):
        """Every parameter array (each once)."""
        return (a for _, a in self.named_parameters())

    def __repr__(self):
        """The module tree, in the spirit of HF's (which prints torch's modules): what holds which weights."""
        c = self.config
        E, I = c.n_embd, c.inner_dim
        block = f"LayerNorm({E}), attention: c_attn {E} -> {3 * E}, c_proj {E} -> {E}, LayerNorm({E}), "
        if c.add_cross_attention:
            block += f"cross-attention {E} -> {E}, LayerNorm({E}), "
        block += f"mlp: c_fc {E} -> {I}, {c.activation_function}, c_proj {I} -> {E}"
        lines = [f"{type(self).__name__}(",
                 f"  wte: Embedding({c.vocab_size}, {E})  wpe: Embedding({c.n_positions}, {E})",
                 f"  h: {c.n_layer} x GPT2Block({c.n_head} heads; {block})",
                 f"  ln_f: LayerNorm({E})"]
        if self.uses_lm_head:
            lines.append(f"  lm_head: {E} -> {c.vocab_size}{', tied to wte' if self._tied() else ''}")
        lines += [f"  {name}: {tuple(shape)}" for name, shape in self.head_shapes(c).items()]
        lines.append(f")  # {self.num_parameters():,} parameters")
        return "\n".join(lines)

    @classmethod
    def can_generate(cls) -> bool:
        """Whether generate() is available (the classes with the LM head)."""
        return issubclass(cls, GenerationMixin)

    def __init__(self, config: GPT2Config = None, params: dict = None, *, seed=None):
        if config is None:
            config = GPT2Config()
        config = self._own_config(as_gpt2_config(config, type(self).__name__))
        config.validate()
        if config.pruned_heads:  # (transformers would prune them at init; running them all would be another model)
            raise ValueError(f"config.pruned_heads is {config.pruned_heads}: minigpt2 does not prune attention heads, "
                             f"it runs every head of every layer; use a config with pruned_heads={{}}")
        self.config = config
        self.params = params if params is not None else self.init_params(config, seed)

    @classmethod
    def _own_config(cls, config):
        """The config this class runs with, given the caller's (a class may need a setting of its own)."""
        return config

    # -- parameters ---------------------------------------------------------------------------------
    @classmethod
    def param_shapes(cls, config) -> dict:
        """The flat name -> shape of every parameter this class holds (checkpoint names, no prefix)."""
        E, V, P, I = config.n_embd, config.vocab_size, config.n_positions, config.inner_dim
        shapes = {"wte.weight": (V, E), "wpe.weight": (P, E)}
        for i in range(config.n_layer):
            block = {"ln_1": None, "attn.c_attn": (E, 3 * E), "attn.c_proj": (E, E), "ln_2": None}
            if config.add_cross_attention:
                block.update({"crossattention.c_attn": (E, 2 * E), "crossattention.q_attn": (E, E),
                              "crossattention.c_proj": (E, E), "ln_cross_attn": None})
            block.update({"mlp.c_fc": (E, I), "mlp.c_proj": (I, E)})  # (HF's order of the block's modules)
            for name, w in block.items():
                if w is None:  # a layer norm
                    shapes[f"h.{i}.{name}.weight"] = (E,)
                    shapes[f"h.{i}.{name}.bias"] = (E,)
                else:  # a Conv1D linear layer, weight (in, out)
                    shapes[f"h.{i}.{name}.weight"] = w
                    shapes[f"h.{i}.{name}.bias"] = (w[1],)
        shapes["ln_f.weight"] = (E,)
        shapes["ln_f.bias"] = (E,)
        return shapes

    @classmethod
    def head_shapes(cls, config) -> dict:
        """Parameters of the task head, outside the transformer (none for GPT2Model)."""
        return {}

    @classmethod
    def init_params(cls, config, seed=None) -> dict:
        """Random weights by HF's scheme: N(0, initializer_range); biases 0; layer norms 1 and 0;
        residual projections (c_proj) N(0, initializer_range / sqrt(2 * n_layer)). Drawn from ``seed``'s generator,
        or (None) NumPy's global one, so that ``set_seed(n)`` before ``GPT2LMHeadModel(config)`` gives the same
        weights each time, as transformers' ``set_seed`` does for its models."""
        rng = random_generator(seed)
        std = config.initializer_range
        flat = {}
        for name, shape in {**cls.param_shapes(config), **cls.head_shapes(config)}.items():
            is_layer_norm = name.split(".")[-2].startswith("ln_")
            if is_layer_norm:
                flat[name] = np.ones(shape, np.float32) if name.endswith("weight") else np.zeros(shape, np.float32)
            elif name.endswith("bias"):
                flat[name] = np.zeros(shape, np.float32)
            else:
                s = std / np.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else std
                flat[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(s)
        return checkpoint.unflatten(flat)

    def state_dict(self) -> dict:
        """Flat names -> arrays, as HF names and orders them for this class (``lm_head.weight`` is wte itself
        when the head is tied). The arrays are the model's own, not copies."""
        flat = checkpoint.flatten(self.params)
        return {name: flat[key] for name, key in self._state_names().items()}

    def _state_names(self):
        """HF's state-dict order: the transformer's parameters in module order, then the heads'."""
        prefix = f"{self.base_model_prefix}." if hasattr(self, self.base_model_prefix) else ""  # a head model
        names = {f"{prefix}{k}": k for k in self.param_shapes(self.config)}
        if self._tied():
            names["lm_head.weight"] = "wte.weight"
        names.update({k: k for k in self.head_shapes(self.config)})
        return names

    def load_state_dict(self, state_dict, strict=True):
        """Replace parameters with ``state_dict``'s (names as state_dict() gives them, with or without the
        "transformer." prefix; arrays, or anything np.asarray takes, such as CPU torch tensors, bfloat16 too, or
        another minigpt2 model's weights in any format). Shapes must match. The values are stored in this model's
        weight format (``dtype``). With ``strict``, missing or unexpected names are an error; either way the names
        are returned as ``(missing_keys, unexpected_keys)``, as torch does."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict takes a dict of name -> array (as state_dict() gives, or a checkpoint's "
                            f"safetensors.numpy.load_file(path)), got {type(state_dict).__name__}")
        own = self._state_names()
        plain = {v: k for k, v in own.items() if k != "lm_head.weight"}  # "wte.weight" -> its state-dict name
        flat = checkpoint.flatten(self.params)
        loaded, unexpected = {}, []
        for name, value in state_dict.items():
            key = own.get(name) or (name if name in plain else None)
            if key is None:
                unexpected.append(name)
                continue
            value = value.detach().cpu() if hasattr(value, "detach") else value  # (float_array widens bfloat16)
            array = float_array(name, weights.widen(value))  # (a weight of another model's state_dict, any format)
            if array.shape != flat[key].shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {array.shape}, but the model's is "
                                 f"{flat[key].shape}")
            if key in loaded and not np.array_equal(loaded[key], array):
                raise ValueError(f"load_state_dict: {name!r} differs from {plain[key]!r}, but the LM head is tied "
                                 f"to wte: they are one matrix here")
            loaded[key] = array
        missing = [name for name, key in own.items() if key not in loaded]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing keys {short_list(missing) or 'none'}; unexpected keys "
                             f"{short_list(unexpected) or 'none'} (pass strict=False to load the rest)")
        weight_format = self.dtype
        flat.update({key: np.ascontiguousarray(a, dtype=np.float32) for key, a in loaded.items()})
        new = checkpoint.unflatten(flat)
        self.params.clear()  # in place: a head model's transformer shares this dict
        self.params.update(new)
        self.to(weight_format)  # the loaded values in the model's weight format, as torch copies into its dtype
        return _IncompatibleKeys(missing, unexpected)

    def num_parameters(self, only_trainable=False, exclude_embeddings=False) -> int:
        """How many numbers the model holds (all of them are trainable); without the token and position
        tables if ``exclude_embeddings``."""
        flat = checkpoint.flatten(self.params)
        return sum(a.size for name, a in flat.items() if not (exclude_embeddings and name.startswith(("wte.", "wpe."))))

    def get_memory_footprint(self, return_buffers=True) -> int:
        """Bytes the parameters take in memory, in their format (int8: the values and their scales), as HF's
        method reports them: about half for 16-bit weights, a quarter and a little for int8. The KV cache and the
        activations of a call come on top. (``return_buffers``: HF's buffers; minigpt2 keeps none.)"""
        return sum(weights.nbytes(a) for a in checkpoint.flatten(self.params).values())

    # -- the token embeddings -----------------------------------------------------------------------
    def get_input_embeddings(self):
        """The token embedding table as an Embedding: ``.weight`` is wte [vocab_size, n_embd]."""
        return Embedding(self.params["wte"]["weight"])

    def set_input_embeddings(self, value):
        """Replace wte with ``value`` (an Embedding, a torch.nn.Embedding, or a [vocab, n_embd] array, in any weight
        format); it is stored in the model's weight format (``model.dtype``); config.vocab_size follows."""
        weight = getattr(value, "weight", value)  # an Embedding, minigpt2's or torch's: its table
        if not isinstance(weight, (weights.BFloat16Weight, weights.Int8Weight)):
            weight = float_array("embeddings", weight)  # float16 too: widened here, narrowed again below
        if len(weight.shape) != 2 or weight.shape[1] != self.config.n_embd or weight.shape[0] < 1:
            raise ValueError(f"embeddings must have shape (vocab_size, n_embd={self.config.n_embd}), "
                             f"got {weight.shape}")
        self.params["wte"]["weight"] = weights.to_format(weight, self.dtype, axis=-1)
        self.config.vocab_size = weight.shape[0]

    def get_output_embeddings(self):
        """The LM head (``model.lm_head``, as in HF): its ``.weight`` is wte itself when tied, else lm_head.weight
        [vocab_size, n_embd], and calling it on hidden states gives logits; None for the classes without an LM head."""
        return self.lm_head if self.uses_lm_head else None

    def tie_weights(self):
        """Make the LM head what config.tie_word_embeddings says, as HF's: with it true, the head is wte itself (an
        own lm_head.weight is dropped); with it false, a head that is wte gets its own copy, so it can change apart
        (HF leaves that one shared). A model loaded or built is tied this way already; call it after setting
        the config's flag."""
        if not self.uses_lm_head or self.config.tie_word_embeddings == self._tied():
            return
        if self.config.tie_word_embeddings:
            del self.params["lm_head"]
        else:
            self.params["lm_head"] = {"weight": copy.deepcopy(self.params["wte"]["weight"])}

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """Give wte ``new_num_tokens`` rows (e.g. ``len(tokenizer)`` after adding tokens), rounded up to a
        multiple of ``pad_to_multiple_of``; config.vocab_size follows. Rows kept keep their values. New rows
        are the mean of the old rows (``mean_resizing``, as HF, which adds noise of 1e-9 times their
        covariance on top), or drawn from N(0, initializer_range). An untied LM head (lm_head.weight) is resized
        the same way. Returns the new Embedding."""
        old = weights.widen(self.params["wte"]["weight"])  # float32 values; set_input_embeddings keeps the format
        size = old.shape[0] if new_num_tokens is None else new_num_tokens
        size = check_int("new_num_tokens", size, low=1)
        pad_to_multiple_of = check_int("pad_to_multiple_of", pad_to_multiple_of, low=1, allow_none=True)
        if pad_to_multiple_of is not None:
            size = -(-size // pad_to_multiple_of) * pad_to_multiple_of
        std = self.config.initializer_range
        if self.uses_lm_head and not self._tied():  # an untied head follows, as in HF (in the weights' format)
            head = _resized_rows(weights.widen(self._lm_head_weight()), size, mean_resizing, std)
            self.params["lm_head"]["weight"] = weights.to_format(head, self.dtype, axis=-1)
        self.set_input_embeddings(_resized_rows(old, size, mean_resizing, std))
        return self.get_input_embeddings()

    # -- loading and saving -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, config: GPT2Config = None, *, seed=None, **kwargs):
        """Load config.json + model.safetensors from a directory or a Hub repository ("gpt2", "owner/repo").

        Checkpoints of any GPT-2 class load into any other: the "transformer." prefix is optional, the
        LM head is tied to wte (unless config.tie_word_embeddings is false: then it is the checkpoint's own
        lm_head.weight), and a task head missing from the checkpoint is initialised randomly (with a warning,
        as in HF). Missing or mis-shaped transformer weights are an error. Where the files come
        from: the Hub options of ``minigpt2.hub.HUB_OPTIONS`` (revision, cache_dir, token, local_files_only,
        force_download, subfolder); other keywords override config attributes, as in HF. ``config``: a config object
        (copied, as HF copies it), or a path or Hub name whose config.json is read instead of the checkpoint's.

        The weights' format (minigpt2/weights.py; activations stay float32): ``torch_dtype`` (or transformers
        5's ``dtype``) "float32" (the default), "bfloat16", "float16" (also torch's dtypes), or "auto" (the
        checkpoint's own); ``load_in_8bit=True`` (or ``quantization_config=BitsAndBytesConfig(load_in_8bit=True)``,
        transformers 5's way) quantizes the weight matrices to int8. Weights the file stores in the chosen format
        stay memory-mapped.

        As transformers: ``variant="fp16"`` loads model.fp16.safetensors (or its shards); ``output_loading_info=True``
        returns ``(model, {"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"})``, the lists
        transformers gives (sorted names, as the loading model names them).
        """
        name_or_path = checkpoint_name(name_or_path)
        if os.path.isfile(name_or_path):  # e.g. its model.safetensors
            raise a_file_is_not_a_checkpoint(name_or_path)
        hub = pop_hub_options(kwargs)
        output_loading_info = bool(kwargs.pop("output_loading_info", False))
        variant = checkpoint.check_variant(kwargs.pop("variant", None), f"{cls.__name__}.from_pretrained")
        _pop_cpu_loading_options(kwargs)
        ignore_mismatched_sizes = bool(kwargs.pop("ignore_mismatched_sizes", False))
        config_overrides = kwargs
        config_overrides.pop("attn_implementation", None)  # one answer here: HF's eager formula
        weight_format = weights.pop_loading_options(config_overrides)  # torch_dtype / dtype / load_in_8bit
        with _offline_repair_hint(name_or_path, hub):
            config, files, tensors = cls._read_checkpoint(name_or_path, config, hub, config_overrides, variant)
        params = cls._params_from_tensors(config, tensors, seed=seed, source=", ".join(files),  # as stored
                                          ignore_mismatched_sizes=ignore_mismatched_sizes)
        if weight_format == "auto":  # as HF: the config's torch_dtype, else the dtype the weights are stored in
            named = config.__dict__.get("dtype")  # (config.torch_dtype is this field too)
            first_file = {name: t for name, (path, t) in tensors.items() if path == files[0]}
            weight_format = weights.config_format(named) if named else weights.stored_format(first_file)
        model = cls(config, params).to(weight_format or "float32")
        model.name_or_path = model.config.name_or_path = os.fspath(name_or_path)  # (as HF sets both)
        if isinstance(model, GenerationMixin):  # generate()'s defaults, when the checkpoint has them (as HF)
            try:
                found = resolve_file(name_or_path, GENERATION_CONFIG_NAME, required=False, **hub)
            except OSError:  # offline and never downloaded: the special tokens of config.json serve
                found = None
            if found is not None:
                model.generation_config = GenerationConfig._from_json_file(found)  # (read, not looked for)
        if output_loading_info:
            return model, _loading_info(model, {name: array.shape for name, (_, array) in tensors.items()})
        return model

    @classmethod
    def _read_checkpoint(cls, name_or_path, config, hub, config_overrides, variant=None):
        """(config, weight files, {name: (file, tensor)}) of a checkpoint, as from_pretrained reads them.

        ``config`` as transformers takes it: None (the checkpoint's config.json), a path or Hub name to read
        config.json from instead (with the same Hub options; the keywords override its attributes), or a config
        object, copied as transformers copies it, so the model's conversions and resizes leave the caller's alone."""
        if config is None or isinstance(config, (str, os.PathLike)):
            config_path = name_or_path if config is None else checkpoint_name(config)
            config, unused = GPT2Config.from_pretrained(config_path, return_unused_kwargs=True, **hub,
                                                        **config_overrides)
            if unused:  # as HF, whose model __init__ then refuses them
                raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keyword arguments {sorted(unused)}: "
                                f"neither a loading option nor a GPT2Config attribute")
        elif config_overrides:
            raise TypeError(f"unexpected arguments {sorted(config_overrides)} (pass them in config instead)")
        else:
            config = copy.deepcopy(as_gpt2_config(config, f"{cls.__name__}.from_pretrained's config"))
        config = cls._own_config(config)
        _refuse_saved_quantized(name_or_path, config)
        files = checkpoint.find_weights(name_or_path, variant=variant, **hub)
        tensors = {}
        for path in files:
            stored = checkpoint.read_safetensors(path, dtype=None, skip=_ignorable)  # (buffers, not weights)
            tensors.update({name: (path, t) for name, t in stored.items()})
        return config, files, tensors

    @classmethod
    def _params_from_tensors(cls, config, tensors: dict, seed=None, source="the checkpoint",
                             ignore_mismatched_sizes=False) -> dict:
        """Match checkpoint tensors {name: (file, array)} to this class's parameters, checking shapes.

        ``source`` names the checkpoint's file(s) in error messages. With ``ignore_mismatched_sizes`` (HF's option,
        e.g. a classifier loaded with another num_labels) a tensor of another shape is left out and its parameter
        initialised randomly, with a warning."""
        expected = cls.param_shapes(config)
        heads = cls.head_shapes(config)
        prefix = cls.base_model_prefix + "."
        flat, unexpected, mismatched = {}, [], {}
        for name, (path, array) in tensors.items():
            key = name[len(prefix):] if name.startswith(prefix) else name
            if key in expected or key in heads:
                want = expected.get(key, heads.get(key))
                if tuple(array.shape) != want and ignore_mismatched_sizes:
                    mismatched[key] = f"{key}: {tuple(array.shape)} in the checkpoint, {want} in the model"
                    continue
                if tuple(array.shape) != want:
                    raise ValueError(f"{path}: tensor {name!r} has shape {tuple(array.shape)}, but the config "
                                     f"needs {want}" + (" (pass ignore_mismatched_sizes=True to initialise it "
                                                        "randomly instead, as transformers does)" if key in heads
                                                       else ""))
                flat[key] = array
            elif _ignorable(key):
                continue
            elif key.startswith(("h.", "wte.", "wpe.", "ln_f.")):
                unexpected.append(name)
        if unexpected:  # e.g. n_layer=1 on a 12-layer checkpoint: HF loads what fits and warns about the rest
            warnings.warn(f"{source} has weights the config does not describe, which were not used: "
                          f"{short_list(unexpected)} (config n_layer={config.n_layer}, add_cross_attention="
                          f"{config.add_cross_attention})", UserWarning, stacklevel=3)
        missing = [k for k in expected if k not in flat and k not in mismatched]
        if missing:
            raise ValueError(f"{source} lacks weights the config needs: {short_list(missing)} "
                             f"(looked for with and without the {prefix!r} prefix)")
        if mismatched:
            warnings.warn(f"{cls.__name__}: weights whose shapes did not match the checkpoint's were initialised "
                          f"randomly (ignore_mismatched_sizes=True); train them before use: "
                          f"{'; '.join(mismatched.values())}", stacklevel=3)
        missing_heads = [k for k in heads if k not in flat and k not in mismatched]
        fresh_needed = missing_heads + list(mismatched)
        if missing_heads:
            warnings.warn(f"{cls.__name__}: weights {short_list(missing_heads)} are not in the checkpoint and were "
                          f"initialised randomly; train them before use", stacklevel=3)
        if fresh_needed:
            fresh = checkpoint.flatten(cls.init_params(config, seed))
            flat.update({k: fresh[k] for k in fresh_needed})
        return checkpoint.unflatten(flat)

    # -- the weights' format -------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        """The weight matrices' format, "float32", "bfloat16", "float16" or "int8": a str equal to torch's dtype of that
        name (``model.dtype == torch.bfloat16``). Biases, layer norms, activations: float32 (minigpt2/weights.py)."""
        return weights.format_name(self.params["wte"]["weight"])

    is_loaded_in_8bit = is_quantized = property(lambda self: self.dtype == "int8", doc="As HF's 8-bit model says: "
                                                "True when the weight matrices are int8 (load_in_8bit, to('int8')).")

    def float(self):
        """HF's (torch's) shortcut for ``to("float32")``."""
        return self.to("float32")

    def half(self):
        """HF's (torch's) shortcut for ``to("float16")``."""
        return self.to("float16")

    def bfloat16(self):
        """HF's (torch's) shortcut for ``to("bfloat16")``."""
        return self.to("bfloat16")

    def double(self):
        """torch's ``model.double()`` (float64) has no counterpart here: refused, naming the formats there are."""
        raise ValueError("double(): minigpt2 has no float64 weights (it computes in float32, docs/numerics.md); the "
                         "weight formats are float32 (model.float()), bfloat16, float16 and int8")

    def cuda(self, device=None):
        """torch's ``model.cuda()``: refused as ``to("cuda")`` is (minigpt2 runs on the CPU)."""
        return self.to("cuda" if device is None else f"cuda:{device}")

    def cpu(self):
        """HF's (torch's) ``model.cpu()``: minigpt2 runs on the CPU already; returns the model, as ``to("cpu")``."""
        return self.to("cpu")

    def to(self, *args, **kwargs):
        """HF's ``model.to(dtype)`` / ``model.to(device)``: convert the weights in place; returns the model.

        A dtype: "float32", "bfloat16", "float16" (also torch's and NumPy's dtypes) or "int8" (quantize as
        ``load_in_8bit=True`` does; going from int8 to a float format widens the int8 values). A device: the
        CPU ("cpu", torch.device("cpu")) changes nothing; minigpt2 runs nowhere else. torch's ``non_blocking``
        is accepted and changes nothing (the conversion is done when to() returns).
        """
        unknown = set(kwargs) - {"dtype", "device", "non_blocking"}
        if unknown:
            raise TypeError(f"to() takes a dtype and/or a device (and torch's non_blocking), got {sorted(unknown)}")
        kwargs.pop("non_blocking", None)
        if len(args) >= 2 and isinstance(args[-1], bool):  # to(dtype, non_blocking), to(device, dtype, non_blocking)
            args = args[:-1]
        fmt = None
        for value in args + tuple(kwargs.values()):
            if _is_device(value):
                continue
            fmt = weights.resolve_dtype(value, "to()", int8=True)
        if fmt is not None:  # (also when the format is the same: a checkpoint may mix stored dtypes)
            flat = weights.cast_params(checkpoint.flatten(self.params), fmt, replaced=checkpoint.release_pages)
            for name, value in flat.items():  # in place: a task model's transformer shares these dicts
                *path, last = name.split(".")
                node = self.params
                for part in path:
                    node = node[int(part)] if isinstance(node, list) else node[part]
                node[last] = value
            if fmt != "int8":
                self.config.dtype = fmt
            if fmt != "float32" and backend.get_backend() == "numpy":
                _say_narrow_weights_are_slow_in_numpy(fmt)
        return self

    def save_pretrained(self, save_directory, *, is_main_process=True, state_dict=None, max_shard_size="5GB",
                        safe_serialization=True, variant=None, **unsupported):
        """Write config.json and model.safetensors that transformers' from_pretrained loads.

        As transformers: weights beyond ``max_shard_size`` (bytes, or "5GB", "500MB", ...) are written in shards
        with an index, cut where transformers cuts them; ``is_main_process=False`` writes nothing (one process of
        several saves); ``state_dict`` (names -> arrays, or torch tensors) is written instead of the model's weights
        (a tied lm_head.weight equal to wte is left out, as transformers leaves out the head sharing wte);
        ``variant="fp16"`` names the files model.fp16.safetensors (shards, index). Only safetensors is written
        (``safe_serialization=False`` is refused: a pickle runs code when loaded).

        The weights are written in the model's dtype (a bfloat16 model writes BF16 tensors, and config.json's
        torch_dtype says bfloat16). An int8 model is refused: transformers cannot read minigpt2's int8 blocks,
        and writing float32 instead would quietly change what was saved; convert explicitly with
        ``model.to("float32")`` (or save the float checkpoint and load it with ``load_in_8bit=True``).
        """
        if unsupported:
            raise TypeError(f"save_pretrained: minigpt2 does not take {', '.join(sorted(unsupported))} (it takes "
                            f"is_main_process, max_shard_size and safe_serialization; to upload, use "
                            f"huggingface_hub's upload_folder on the saved directory)")
        if not safe_serialization:
            raise ValueError("save_pretrained: minigpt2 writes safetensors only (safe_serialization=False would be a "
                             "PyTorch pickle, which runs code when loaded); transformers loads model.safetensors")
        checkpoint.shard_bytes(max_shard_size)  # (a bad size is refused before anything is written)
        variant = checkpoint.check_variant(variant, "save_pretrained")
        tensors = dict(self.named_parameters()) if state_dict is None else self._tensors_to_save(state_dict)
        if not is_main_process:
            return
        if self.dtype == "int8":
            raise ValueError("save_pretrained: this model's weights are int8, which minigpt2 does not save "
                             "(transformers could not read them). Save the float checkpoint it came from and load "
                             "it with load_in_8bit=True, or convert explicitly first: after model.to('float32') "
                             "(the int8 values widened) it saves")
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_pretrained needs a directory, but {save_directory} is a file")
        os.makedirs(save_directory, exist_ok=True)
        config = self.config
        if config.architectures is None or type(self).__name__ not in config.architectures:
            config.architectures = [type(self).__name__]
        config.dtype = self.dtype
        checkpoint.write_checkpoint(save_directory, tensors, dtype=self.dtype, max_shard_size=max_shard_size,
                                    variant=variant)
        config.save_pretrained(save_directory)
        if isinstance(self, GenerationMixin):
            self.generation_config.save_pretrained(save_directory)

    def _tensors_to_save(self, state_dict) -> dict:
        """save_pretrained's ``state_dict=``: its arrays (torch tensors read as load_state_dict reads them; minigpt2's
        weights as they are), without lm_head.weight when the head is tied and it equals wte: a tied head is wte,
        saved once (a tied model's state_dict() lists it, as torch's state dict lists the head sharing wte)."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"save_pretrained: state_dict must be a dict of name -> array (as model.state_dict() "
                            f"gives), got {type(state_dict).__name__}")
        tensors = {}
        for name, value in state_dict.items():
            if not isinstance(value, (weights.BFloat16Weight, weights.Int8Weight)):
                value = value.detach().cpu() if hasattr(value, "detach") else value
                value = float_array(f"state_dict[{name!r}]", value)  # (bfloat16 tensors widened, exactly)
            tensors[name] = value
        head, wte = tensors.get("lm_head.weight"), tensors.get(f"{self.base_model_prefix}.wte.weight",
                                                                 tensors.get("wte.weight"))
        if self._tied() and head is not None and wte is not None and \
                np.array_equal(weights.widen(head), weights.widen(wte)):
            del tensors["lm_head.weight"]
        return tensors

    # -- calling ------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        """``model(...)`` is ``model.forward(...)``; ``cache=``, transformers 5's name, is taken as past_key_values
        (and ``out.cache`` is ``out.past_key_values``)."""
        if "cache" in kwargs and "cache" not in inspect.signature(self.forward).parameters:
            raise TypeError(f"{type(self).__name__} takes no cache (cache / past_key_values): it reads the whole "
                            "input at once")
        return self.forward(*args, **kwargs)  # (forward takes transformers 5's cache= beside past_key_values=)

    # -- training mode (dropout): only loss_and_grad uses it; forward() is always the inference pass --------
    training = False

    def train(self, mode=True):
        """Training mode: loss_and_grad applies dropout (config.embd_pdrop, attn_pdrop, resid_pdrop)."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Inference mode (the default): no dropout anywhere. forward() never applies dropout."""
        return self.train(False)


# -- loading options ---------------------------------------------------------------------------------------

# transformers' from_pretrained options that change nothing on a CPU with memory-mapped weights: accepted, unused.
_NO_OP_LOADING_OPTIONS = ("low_cpu_mem_usage", "trust_remote_code", "_fast_init", "offload_folder",
                          "offload_state_dict", "use_flash_attention_2")


def _pop_cpu_loading_options(kwargs):
    """Remove transformers' loading options that have one answer here, refusing values minigpt2 cannot honour."""
    for name in _NO_OP_LOADING_OPTIONS:
        kwargs.pop(name, None)
    device_map = kwargs.pop("device_map", None)
    if device_map not in (None, "auto", "cpu", {"": "cpu"}) and str(device_map) != "cpu":
        raise ValueError(f"device_map={device_map!r}: minigpt2 runs on the CPU; pass None, 'auto' or 'cpu'")
    if kwargs.pop("use_safetensors", None) is False:
        raise ValueError("use_safetensors=False: minigpt2 loads only model.safetensors (a pytorch_model.bin is a "
                         "pickle, and unpickling can run code)")


# -- helpers ---------------------------------------------------------------------------------------------

def _loading_info(model, stored: dict) -> dict:
    """transformers' output_loading_info for a model loaded from tensors {checkpoint name: shape}, as its
    _load_pretrained_model finds them: the checkpoint's names are put in the model's (the "transformer." prefix added
    for a head model loading a bare checkpoint, or removed for GPT2Model loading a head model's, whose head weights
    are then unexpected); missing are the model's names not found (the tied lm_head.weight is wte, found with it),
    unexpected the checkpoint's the model has not (but the causal-mask buffers of its layers, attn.bias); mismatched
    the ones of another shape (only left out with ignore_mismatched_sizes=True: else loading failed already)."""
    prefix = model.base_model_prefix
    own = {name: tuple(a.shape) for name, a in model.state_dict().items()}
    has_prefix = any(name.startswith(prefix) for name in stored)
    expects_prefix = hasattr(model, prefix)
    renamed, task_keys = {}, []
    for name, shape in stored.items():
        if expects_prefix and not has_prefix:  # a head model, a bare checkpoint
            name = f"{prefix}.{name}"
        elif has_prefix and not expects_prefix:  # GPT2Model, a head model's checkpoint
            if not name.startswith(f"{prefix}."):
                task_keys.append(name)
                continue
            name = name[len(prefix) + 1:]
        renamed[name] = tuple(shape)
    missing = sorted(set(own) - set(renamed))
    wte = f"{prefix}.wte.weight" if expects_prefix else "wte.weight"
    if model._tied() and "lm_head.weight" in missing and wte not in missing:
        missing.remove("lm_head.weight")
    block = f"{prefix}.h" if expects_prefix else "h"
    attentions = ("attn", "crossattention") if model.config.add_cross_attention else ("attn",)
    buffers = {f"{block}.{i}.{attention}.{buffer}" for i in range(model.config.n_layer) for attention in attentions
               for buffer in ("bias", "masked_bias")}
    unexpected = sorted((set(renamed) - set(own) | set(task_keys)) - buffers)
    mismatched = sorted(name for name, shape in renamed.items() if name in own and own[name] != shape)
    return {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched, "error_msgs": []}


def _resized_rows(old, size, mean_resizing, initializer_range):
    """A table [rows, E] with ``size`` rows: the first ones kept, new ones the mean of the old rows (HF adds noise
    of 1e-9 times their covariance on top) or drawn from N(0, initializer_range)."""
    if size <= old.shape[0]:
        return np.array(old[:size])  # a copy: the checkpoint's memory map stays untouched
    if mean_resizing:
        added = np.broadcast_to(old.mean(axis=0, dtype=np.float64).astype(np.float32), (size - old.shape[0],
                                                                                       old.shape[1]))
    else:
        added = random_generator(None).standard_normal((size - old.shape[0], old.shape[1]), dtype=np.float32)
        added = added * np.float32(initializer_range)
    return np.concatenate([old, added])


def _refuse_saved_quantized(name_or_path, config):
    """A checkpoint saved already quantized (config.json has a quantization_config: bitsandbytes' int8 weights with
    their SCB scales, GPTQ's packed int32...) is refused by name: minigpt2 reads float weights and quantizes them
    itself, and loading the file's floats (if any) in float32 would not be what was saved."""
    saved = config.__dict__.get("quantization_config")
    if saved is None:
        return
    method = saved.get("quant_method", "bitsandbytes") if isinstance(saved, dict) else type(saved).__name__
    raise ValueError(f"{name_or_path} was saved quantized ({method}; its config.json has a quantization_config), "
                     f"which minigpt2 cannot read: it loads float checkpoints (F32, F16, BF16 tensors). Load the float "
                     f"checkpoint it was made from, with load_in_8bit=True for int8 weights")


def _ignorable(key):
    """Buffers that older checkpoints store but that are not weights: attn.bias (the causal mask),
    attn.masked_bias."""
    return key.endswith((".attn.bias", ".attn.masked_bias", ".crossattention.bias", ".crossattention.masked_bias"))


def _say_narrow_weights_are_slow_in_numpy(fmt):
    """16 and 8 bits save memory on either backend, but only the C core reads them as they are: NumPy (the readable
    reference, weights.py) widens a whole matrix to float32 at each product. GPT-2 124M on Zen 3, NumPy backend, 2
    threads (benchmarks/bench_decode.py, docs/troubleshooting.md): 56 tok/s with float32 weights, 5 with bfloat16, 3
    with float16, 1 with int8."""
    slower = {"bfloat16": 10, "float16": 20, "int8": 50}[fmt]
    warnings.warn(f"minigpt2: {fmt} weights on the NumPy backend: every product first widens its whole matrix to "
                  f"float32, so decoding runs about {slower}x slower than with float32 weights "
                  f"(they save memory, not time). The C core reads them as they are: see 'Installing without a C "
                  f"compiler' in docs/troubleshooting.md", RuntimeWarning, stacklevel=_callers_level())


def _callers_level() -> int:
    """warnings.warn's stacklevel, from the function calling this, of the first caller outside minigpt2 (which
    reaches to() through from_pretrained, bfloat16() or directly)."""
    frame, level, package = sys._getframe(1), 1, os.path.dirname(os.path.abspath(__file__))
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _is_device(value) -> bool:
    """True for the CPU as a device; a ValueError for any other device (a torch.device or a name like "cuda")."""
    if type(value).__module__ == "torch" and type(value).__name__ == "device":
        value = str(value)
    if not isinstance(value, str):
        return False
    kind = value.split(":")[0]
    if kind == "cpu":
        return True
    if kind in ("cuda", "mps", "xpu", "meta", "npu", "hpu", "xla", "ipu", "mtia", "hip", "vulkan"):
        raise ValueError(f"device {value!r}: minigpt2 runs on the CPU (NumPy and its C core); 'cpu' is the only "
                         f"device")
    return False


@contextlib.contextmanager
def _offline_repair_hint(name_or_path, hub):
    """Add to an error about a damaged file of the HF cache, raised offline (HF_HUB_OFFLINE=1 or
    local_files_only=True), that fetching it again needs the network: `--download` or force_download=True alone
    cannot replace it while offline."""
    try:
        yield
    except (OSError, ValueError) as e:
        from .hub import cached_file_named, hub_settings

        offline = hub_settings()["offline"]
        if not (offline or hub.get("local_files_only")) or \
                cached_file_named(str(e), name_or_path, hub.get("cache_dir")) is None:
            raise
        how = ("unset HF_HUB_OFFLINE (huggingface_hub cannot download while it is set), then fetch it again"
               if offline else "pass local_files_only=False and force_download=True to fetch it again")
        message = f"{e} (the copy in the cache looks damaged, and offline it cannot be replaced: {how})"
        try:
            error = type(e)(message)
        except Exception:  # an error class that needs other arguments
            error = (OSError if isinstance(e, OSError) else ValueError)(message)
        raise error from None
