"""GPT-2 models with Hugging Face's names, arguments and outputs: the forward pass reads like the math.

    GPT2Model                         tokens -> hidden states
    GPT2LMHeadModel                   + logits over the vocabulary (the head is wte, tied), LM loss
    GPT2DoubleHeadsModel              + a multiple-choice head on one token per choice
    GPT2ForSequenceClassification     + a classifier on the last non-padding token

Parameters live in ``model.params``, a nested dict named like the checkpoint
(``params["h"][0]["attn"]["c_attn"]["weight"]``). Inputs are NumPy arrays (lists work too).
"""
from __future__ import annotations

import copy
import os
import warnings
from collections import namedtuple

import numpy as np

from . import checkpoint, tracing, weights
from .activations import ACTIVATIONS
from .cache import KVCache
from .checks import (as_array, check_int, float_array, int_array, is_int, mask_array, nonempty, reshape_to,
                     short_list)
from .config import GPT2Config
from .generation import GENERATION_CONFIG_NAME, GenerationConfig, GenerationMixin
from .hub import pop_hub_options, resolve_file
from .layers import (
    MASK_VALUE,
    attention_scale,
    cross_attention,
    layer_norm,
    linear,
    log_softmax,
    mlp,
    self_attention,
)
from .tracing import record
from .weights import widen
from .outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    GPT2DoubleHeadsModelOutput,
)

__all__ = [
    "GPT2PreTrainedModel",
    "GPT2Model",
    "GPT2LMHeadModel",
    "GPT2DoubleHeadsModel",
]

def transformer_block(x, p, *, layer_idx, config, cache, mask, head_mask, output_attentions,
                      encoder_states=None, encoder_mask=None):
    """One pre-norm transformer block.  # [B, T, E] -> [B, T, E]

    x = x + attention(layer_norm(x));  [x = x + cross_attention(layer_norm(x), encoder)];
    x = x + mlp(layer_norm(x)). Returns (x, self-attention probs, cross-attention probs or None).
    """
    eps, act = config.layer_norm_epsilon, ACTIVATIONS[config.activation_function]
    scale = attention_scale(config.head_dim, layer_idx, config.scale_attn_weights,
                            config.scale_attn_by_inverse_layer_idx)
    traced = f"h.{layer_idx}."  # the names minigpt2.trace() keeps this block's tensors under

    h = layer_norm(x, **p["ln_1"], eps=eps)
    a, probs = self_attention(h, **p["attn"], n_head=config.n_head, cache=cache, scale=scale, key_bias=mask,
                              head_mask=head_mask, output_attentions=output_attentions or tracing.active())
    x = x + a
    record(traced, ln_1=h, attn_probs=probs, attn=a, resid_mid=x)

    cross_probs = None
    if encoder_states is not None:
        h = layer_norm(x, **p["ln_cross_attn"], eps=eps)
        a, cross_probs = cross_attention(h, encoder_states, **p["crossattention"], n_head=config.n_head, scale=scale,
                                         key_bias=encoder_mask, head_mask=head_mask,
                                         output_attentions=output_attentions)
        x = x + a
        record(traced, crossattention=a)

    h = layer_norm(x, **p["ln_2"], eps=eps)
    m = mlp(h, **p["mlp"], act=act)
    x = x + m
    record(traced, ln_2=h, mlp=m, out=x)
    return x, probs, cross_probs


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
        return widen(self.weight[int_array("input_ids", input_ids, high=self.num_embeddings)])

    def __repr__(self):
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"


class _IncompatibleKeys(namedtuple("_IncompatibleKeys", "missing_keys unexpected_keys")):
    """What load_state_dict returns, as torch does."""


class GPT2PreTrainedModel:
    """What every GPT-2 model shares: config, parameters, random init, loading and saving."""

    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    uses_lm_head = False  # True for the classes whose logits come from the tied head (wte)
    name_or_path = ""  # where from_pretrained loaded it from (HF's model.name_or_path)

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
        return ((name, a) for name, a in self.state_dict().items() if name != "lm_head.weight")

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
            lines.append(f"  lm_head: {E} -> {c.vocab_size}, tied to wte")
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
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a GPT2Config, got {type(config).__name__}")
        config = self._own_config(config)
        config.validate()
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
        residual projections (c_proj) N(0, initializer_range / sqrt(2 * n_layer))."""
        rng = np.random.default_rng(seed)
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
        """Flat names -> arrays, as HF names and orders them for this class (``lm_head.weight`` is wte itself:
        the head is tied). The arrays are the model's own, not copies."""
        flat = checkpoint.flatten(self.params)
        return {name: flat[key] for name, key in self._state_names().items()}

    def _state_names(self):
        """HF's state-dict order: the transformer's parameters in module order, then the heads'."""
        prefix = f"{self.base_model_prefix}." if type(self) is not GPT2Model else ""
        names = {f"{prefix}{k}": k for k in self.param_shapes(self.config)}
        if self.uses_lm_head:
            names["lm_head.weight"] = "wte.weight"
        names.update({k: k for k in self.head_shapes(self.config)})
        return names

    def load_state_dict(self, state_dict, strict=True):
        """Replace parameters with ``state_dict``'s (names as state_dict() gives them, with or without the
        "transformer." prefix; arrays, or anything np.asarray takes, such as CPU torch tensors). Shapes must
        match. With ``strict``, missing or unexpected names are an error; either way the names are returned as
        ``(missing_keys, unexpected_keys)``, as torch does."""
        own = self._state_names()
        plain = {v: k for k, v in own.items() if k != "lm_head.weight"}  # "wte.weight" -> its state-dict name
        flat = checkpoint.flatten(self.params)
        loaded, unexpected = {}, []
        for name, value in state_dict.items():
            key = own.get(name) or (name if name in plain else None)
            if key is None:
                unexpected.append(name)
                continue
            value = value.detach().cpu().numpy() if hasattr(value, "detach") else value
            array = float_array(name, value)
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

    # -- the token embeddings -----------------------------------------------------------------------
    def get_input_embeddings(self):
        """The token embedding table as an Embedding: ``.weight`` is wte [vocab_size, n_embd]."""
        return Embedding(self.params["wte"]["weight"])

    def set_input_embeddings(self, value):
        """Replace wte with ``value`` (an Embedding or a [vocab, n_embd] array, in any weight format); it is
        stored in the model's weight format (``model.dtype``); config.vocab_size follows."""
        weight = value.weight if isinstance(value, Embedding) else value
        if not isinstance(weight, (weights.BFloat16Weight, weights.Int8Weight)):
            weight = float_array("embeddings", weight)  # float16 too: widened here, narrowed again below
        if len(weight.shape) != 2 or weight.shape[1] != self.config.n_embd or weight.shape[0] < 1:
            raise ValueError(f"embeddings must have shape (vocab_size, n_embd={self.config.n_embd}), "
                             f"got {weight.shape}")
        self.params["wte"]["weight"] = weights.to_format(weight, self.dtype, axis=-1)
        self.config.vocab_size = weight.shape[0]

    def get_output_embeddings(self):
        """The LM head's matrix, which is wte itself (tied); None for the classes without an LM head."""
        return self.get_input_embeddings() if self.uses_lm_head else None

    def tie_weights(self):
        """For HF compatibility: the LM head is always wte, so the weights are always tied."""

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """Give wte ``new_num_tokens`` rows (e.g. ``len(tokenizer)`` after adding tokens), rounded up to a
        multiple of ``pad_to_multiple_of``; config.vocab_size follows. Rows kept keep their values. New rows
        are the mean of the old rows (``mean_resizing``, as HF, which adds noise of 1e-9 times their
        covariance on top), or drawn from N(0, initializer_range). Returns the new Embedding."""
        old = weights.widen(self.params["wte"]["weight"])  # float32 values; set_input_embeddings keeps the format
        size = old.shape[0] if new_num_tokens is None else new_num_tokens
        size = check_int("new_num_tokens", size, low=1)
        pad_to_multiple_of = check_int("pad_to_multiple_of", pad_to_multiple_of, low=1, allow_none=True)
        if pad_to_multiple_of is not None:
            size = -(-size // pad_to_multiple_of) * pad_to_multiple_of
        if size <= old.shape[0]:
            weight = np.array(old[:size])  # a copy: the checkpoint's memory map stays untouched
        elif mean_resizing:
            added = np.broadcast_to(old.mean(axis=0, dtype=np.float64).astype(np.float32), (size - old.shape[0],
                                                                                           old.shape[1]))
            weight = np.concatenate([old, added])
        else:
            added = np.random.default_rng().standard_normal((size - old.shape[0], old.shape[1]), dtype=np.float32)
            weight = np.concatenate([old, added * np.float32(self.config.initializer_range)])
        self.set_input_embeddings(weight)
        return self.get_input_embeddings()

    # -- loading and saving -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, config: GPT2Config = None, *, seed=None, **kwargs):
        """Load config.json + model.safetensors from a directory or a Hub repository ("gpt2", "owner/repo").

        Checkpoints of any GPT-2 class load into any other: the "transformer." prefix is optional, the
        LM head is tied to wte, and a task head missing from the checkpoint is initialised randomly
        (with a warning, as in HF). Missing or mis-shaped transformer weights are an error. Where the files come
        from: the Hub options of ``minigpt2.hub.HUB_OPTIONS`` (revision, cache_dir, token, local_files_only,
        force_download, subfolder); other keywords override config attributes, as in HF.

        The weights' format (minigpt2/weights.py; activations stay float32): ``torch_dtype`` (or transformers
        5's ``dtype``) "float32" (the default), "bfloat16", "float16" (also torch's dtypes), or "auto" (the
        checkpoint's own); ``load_in_8bit=True`` quantizes the weight matrices to int8. Weights the file
        stores in the chosen format stay memory-mapped.
        """
        hub = pop_hub_options(kwargs)
        _pop_cpu_loading_options(kwargs)
        config_overrides = kwargs
        config_overrides.pop("attn_implementation", None)  # one answer here: HF's eager formula
        weight_format = weights.pop_loading_options(config_overrides)  # torch_dtype / dtype / load_in_8bit
        if config is None:
            config, unused = GPT2Config.from_pretrained(name_or_path, return_unused_kwargs=True, **hub,
                                                        **config_overrides)
            if unused:  # as HF, whose model __init__ then refuses them
                raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keyword arguments {sorted(unused)}: "
                                f"neither a loading option nor a GPT2Config attribute")
        elif config_overrides:
            raise TypeError(f"unexpected arguments {sorted(config_overrides)} (pass them in config instead)")
        config = cls._own_config(config)
        files = checkpoint.find_weights(name_or_path, **hub)
        tensors = {}
        for path in files:
            tensors.update({name: (path, t) for name, t in checkpoint.read_safetensors(path, dtype=None).items()})
        params = cls._params_from_tensors(config, tensors, seed=seed, source=", ".join(files))  # as stored
        if weight_format == "auto":  # as HF: the config's torch_dtype, else the dtype the weights are stored in
            named = getattr(config, "torch_dtype", None) or config.__dict__.get("dtype")
            weight_format = weights.resolve_dtype(named, "config.json's torch_dtype") if named else \
                weights.stored_format(checkpoint.flatten(params))
        model = cls(config, params).to(weight_format or "float32")
        model.name_or_path = os.fspath(name_or_path)
        if isinstance(model, GenerationMixin):  # generate()'s defaults, when the checkpoint has them (as HF)
            try:
                found = resolve_file(name_or_path, GENERATION_CONFIG_NAME, required=False, **hub)
            except OSError:  # offline and never downloaded: the special tokens of config.json serve
                found = None
            if found is not None:
                model.generation_config = GenerationConfig.from_pretrained(found)
        return model

    @classmethod
    def _params_from_tensors(cls, config, tensors: dict, seed=None, source="the checkpoint") -> dict:
        """Match checkpoint tensors {name: (file, array)} to this class's parameters, checking shapes.

        ``source`` names the checkpoint's file(s) in error messages."""
        expected = cls.param_shapes(config)
        heads = cls.head_shapes(config)
        prefix = cls.base_model_prefix + "."
        flat, unexpected = {}, []
        for name, (path, array) in tensors.items():
            key = name[len(prefix):] if name.startswith(prefix) else name
            if key in expected or key in heads:
                want = expected.get(key, heads.get(key))
                if tuple(array.shape) != want:
                    raise ValueError(f"{path}: tensor {name!r} has shape {tuple(array.shape)}, but the config "
                                     f"needs {want}")
                flat[key] = array
            elif _ignorable(key):
                continue
            elif key.startswith(("h.", "wte.", "wpe.", "ln_f.")):
                unexpected.append(name)
        if unexpected:  # e.g. n_layer=1 on a 12-layer checkpoint: HF loads what fits and warns about the rest
            warnings.warn(f"{source} has weights the config does not describe, which were not used: "
                          f"{short_list(unexpected)} (config n_layer={config.n_layer}, add_cross_attention="
                          f"{config.add_cross_attention})", UserWarning, stacklevel=3)
        missing = [k for k in expected if k not in flat]
        if missing:
            raise ValueError(f"{source} lacks weights the config needs: {short_list(missing)} "
                             f"(looked for with and without the {prefix!r} prefix)")
        if cls.uses_lm_head and not config.tie_word_embeddings and "lm_head.weight" in tensors:
            raise ValueError(f"{source} holds its own lm_head.weight and config.tie_word_embeddings is false, but "
                             f"minigpt2's LM head is always wte (tied), so it would silently ignore that head")
        missing_heads = [k for k in heads if k not in flat]
        if missing_heads:
            warnings.warn(f"{cls.__name__}: weights {short_list(missing_heads)} are not in the checkpoint and were "
                          f"initialised randomly; train them before use", stacklevel=3)
            fresh = checkpoint.flatten(cls.init_params(config, seed))
            flat.update({k: fresh[k] for k in missing_heads})
        return checkpoint.unflatten(flat)

    # -- the weights' format -------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        """The format of the weight matrices: "float32", "bfloat16", "float16" or "int8" (a name, not a torch
        dtype). Biases, layer norms and all activations are float32 in every format (minigpt2/weights.py)."""
        return weights.format_name(self.params["wte"]["weight"])

    def float(self):
        """HF's (torch's) shortcut for ``to("float32")``."""
        return self.to("float32")

    def half(self):
        """HF's (torch's) shortcut for ``to("float16")``."""
        return self.to("float16")

    def bfloat16(self):
        """HF's (torch's) shortcut for ``to("bfloat16")``."""
        return self.to("bfloat16")

    def to(self, *args, **kwargs):
        """HF's ``model.to(dtype)`` / ``model.to(device)``: convert the weights in place; returns the model.

        A dtype: "float32", "bfloat16", "float16" (also torch's and NumPy's dtypes) or "int8" (quantize as
        ``load_in_8bit=True`` does; going from int8 to a float format widens the int8 values). A device: the
        CPU ("cpu", torch.device("cpu")) changes nothing; minigpt2 runs nowhere else.
        """
        unknown = set(kwargs) - {"dtype", "device"}
        if unknown:
            raise TypeError(f"to() takes a dtype and/or a device, got {sorted(unknown)}")
        fmt = None
        for value in args + tuple(kwargs.values()):
            if _is_device(value):
                continue
            if value == "int8":
                fmt = "int8"
            else:
                fmt = weights.resolve_dtype(value, "to()")
                if fmt == "auto":
                    raise ValueError("to(): 'auto' is for loading (the checkpoint's dtype); name a dtype")
        if fmt is not None:  # (also when the format is the same: a checkpoint may mix stored dtypes)
            flat = weights.cast_params(checkpoint.flatten(self.params), fmt)
            for name, value in flat.items():  # in place: a task model's transformer shares these dicts
                *path, last = name.split(".")
                node = self.params
                for part in path:
                    node = node[int(part)] if isinstance(node, list) else node[part]
                node[last] = value
            if fmt != "int8":
                self.config.torch_dtype = fmt
        return self

    def save_pretrained(self, save_directory):
        """Write config.json and model.safetensors that transformers' from_pretrained loads.

        The weights are written in the model's dtype (a bfloat16 model writes BF16 tensors, and config.json's
        torch_dtype says bfloat16). An int8 model is refused: transformers cannot read minigpt2's int8 blocks,
        and writing float32 instead would quietly change what was saved; convert explicitly with
        ``model.to("float32")`` (or save the float checkpoint and load it with ``load_in_8bit=True``).
        """
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
        tensors = {k: v for k, v in self.state_dict().items() if k != "lm_head.weight"}  # tied: HF saves it once
        config.torch_dtype = self.dtype
        checkpoint.write_safetensors(os.path.join(save_directory, checkpoint.WEIGHTS_NAME), tensors,
                                     dtype=self.dtype)
        config.save_pretrained(save_directory)
        if isinstance(self, GenerationMixin):
            self.generation_config.save_pretrained(save_directory)

    # -- calling ------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- training mode (dropout): only loss_and_grad uses it; forward() is always the inference pass --------
    training = False

    def train(self, mode=True):
        """Training mode: loss_and_grad applies dropout (config.embd_pdrop, attn_pdrop, resid_pdrop)."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Inference mode (the default): no dropout anywhere. forward() never applies dropout."""
        return self.train(False)


class GPT2Model(GPT2PreTrainedModel):
    """The bare GPT-2 transformer: token and position embeddings, n_layer blocks, a final layer norm."""

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, head_mask=None, inputs_embeds=None, encoder_hidden_states=None,
                encoder_attention_mask=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        """Hidden states of every position.  # input_ids [B, T] -> last_hidden_state [B, T, E]

        With ``past_key_values`` (P cached positions), ``input_ids`` holds only the T new tokens and
        positions continue at P. Returns a BaseModelOutputWithPastAndCrossAttentions.
        """
        cfg, p = self.config, self.params
        use_cache = cfg.use_cache if use_cache is None else use_cache
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = cfg.return_dict if return_dict is None else return_dict

        # Inputs may have extra leading axes (GPT2DoubleHeadsModel: [B, choices, T]); the blocks see [B, T].
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            input_ids = int_array("input_ids", input_ids, high=cfg.vocab_size, min_ndim=1)
            input_shape = nonempty("input_ids", input_ids.shape)
            inputs_embeds = widen(p["wte"]["weight"][input_ids.reshape(-1, input_shape[-1])])  # [B, T, E]
        else:
            inputs_embeds = float_array("inputs_embeds", inputs_embeds)
            if inputs_embeds.ndim < 2 or inputs_embeds.shape[-1] != cfg.n_embd:
                raise ValueError(f"inputs_embeds must have shape (batch, seq, n_embd={cfg.n_embd}), "
                                 f"got {inputs_embeds.shape}")
            input_shape = nonempty("inputs_embeds", inputs_embeds.shape[:-1])
            inputs_embeds = inputs_embeds.reshape(-1, input_shape[-1], cfg.n_embd)
        B, T = inputs_embeds.shape[:2]

        buffers, caches, P = KVCache.prepare(past_key_values, n_layer=cfg.n_layer, batch=B, n_head=cfg.n_head,
                                             head_dim=cfg.head_dim, new_tokens=T, max_positions=cfg.n_positions)
        if P + T > cfg.n_positions:
            raise ValueError(f"the sequence is {P + T} tokens long ({P} cached + {T} new), but this model has "
                             f"position embeddings for n_positions={cfg.n_positions}")

        # Embeddings: token + position (+ token type, which GPT-2 embeds with the token table).
        if position_ids is None:
            position_ids = np.arange(P, P + T)[None, :]  # [1, T]
        else:
            position_ids = int_array("position_ids", position_ids, high=cfg.n_positions)
            position_ids = reshape_to("position_ids", position_ids, (B, T))
        x = inputs_embeds + widen(p["wpe"]["weight"][position_ids])  # [B, T, E]
        if token_type_ids is not None:
            token_type_ids = int_array("token_type_ids", token_type_ids, high=cfg.vocab_size)
            x = x + widen(p["wte"]["weight"][reshape_to("token_type_ids", token_type_ids, (B, T))])

        # Masks become additive biases on the attention scores: 0 to attend, MASK_VALUE for padding.
        mask = None
        if attention_mask is not None:
            attention_mask = mask_array("attention_mask", attention_mask)
            if attention_mask.size != B * (P + T) or attention_mask.shape[-1] != P + T:
                raise ValueError(f"attention_mask has shape {attention_mask.shape}; expected (batch={B}, "
                                 f"cached + new tokens={P + T}), 1 for tokens to attend to and 0 for padding")
            mask = ((1.0 - attention_mask.reshape(B, P + T)) * MASK_VALUE)[:, None, None, :]  # [B, 1, 1, P + T]
        encoder_mask = None
        if encoder_hidden_states is not None:
            if not cfg.add_cross_attention:
                raise ValueError("encoder_hidden_states needs a model built with config.add_cross_attention=True")
            encoder_hidden_states = float_array("encoder_hidden_states", encoder_hidden_states)
            if encoder_hidden_states.shape[0] != B or encoder_hidden_states.ndim != 3 \
                    or encoder_hidden_states.shape[2] != cfg.n_embd:
                raise ValueError(f"encoder_hidden_states must have shape (batch={B}, encoder_seq, "
                                 f"n_embd={cfg.n_embd}), got {encoder_hidden_states.shape}")
            if encoder_attention_mask is not None:
                S = encoder_hidden_states.shape[1]
                encoder_attention_mask = mask_array("encoder_attention_mask", encoder_attention_mask)
                encoder_attention_mask = reshape_to("encoder_attention_mask", encoder_attention_mask, (B, S))
                encoder_mask = ((1.0 - encoder_attention_mask) * MASK_VALUE)[:, None, None, :]  # [B, 1, 1, S]
        head_masks = _head_masks(head_mask, cfg.n_layer, cfg.n_head)
        record(embeddings=x)

        # The blocks.
        all_hidden, all_attn, all_cross = [], [], []
        for i, block_params in enumerate(p["h"]):
            if output_hidden_states:
                all_hidden.append(x)
            x, probs, cross_probs = transformer_block(
                x, block_params, layer_idx=i, config=cfg, cache=caches[i], mask=mask, head_mask=head_masks[i],
                output_attentions=output_attentions, encoder_states=encoder_hidden_states, encoder_mask=encoder_mask)
            all_attn.append(probs)
            all_cross.append(cross_probs)
        x = layer_norm(x, **p["ln_f"], eps=cfg.layer_norm_epsilon)
        record(ln_f=x)
        x = x.reshape(*input_shape, cfg.n_embd)
        if output_hidden_states:
            all_hidden.append(x)

        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x,
            past_key_values=KVCache(buffers, P + T) if use_cache else None,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attn) if output_attentions else None,
            # Only when cross-attention ran: without encoder states there are no cross-attention weights.
            cross_attentions=tuple(all_cross) if output_attentions and encoder_hidden_states is not None else None,
        )
        return out if return_dict else out.to_tuple()


class _WithTransformer(GPT2PreTrainedModel):
    """A task head on top of GPT2Model: the transformer's parameters and the head's share one dict."""

    def __init__(self, config: GPT2Config = None, params: dict = None, *, seed=None):
        super().__init__(config, params, seed=seed)
        self.transformer = GPT2Model(self.config, self.params)

    def _transformer(self, **kwargs):
        return self.transformer.forward(**kwargs, return_dict=True)


class GPT2LMHeadModel(GenerationMixin, _WithTransformer):
    """GPT-2 with the language-modelling head: logits = hidden_states @ wte^T (the head is tied to wte)."""

    uses_lm_head = True

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, head_mask=None, inputs_embeds=None, encoder_hidden_states=None,
                encoder_attention_mask=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, logits_to_keep=0):
        """Next-token logits.  # input_ids [B, T] -> logits [B, T, V]

        ``labels`` [B, T] (usually input_ids itself) give the mean cross-entropy of predicting token
        t+1 from positions <= t; labels of -100 are ignored. ``logits_to_keep`` (HF's): 0 computes the
        logits at every position, n > 0 at the last n only (generate uses 1), a 1-D array at those positions.
        """
        t = self._transformer(
            input_ids=input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
            token_type_ids=token_type_ids, position_ids=position_ids, head_mask=head_mask,
            inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, use_cache=use_cache,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = lm_head(kept_positions(t.last_hidden_state, logits_to_keep), self.params["wte"]["weight"])
        loss = None if labels is None else shifted_lm_loss(logits, labels, self.config.vocab_size)
        out = CausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=t.past_key_values, hidden_states=t.hidden_states,
            attentions=t.attentions, cross_attentions=t.cross_attentions)
        return out if _return_dict(return_dict, self.config) else out.to_tuple()

    def loss_and_grad(self, input_ids, labels=None, attention_mask=None, token_type_ids=None, position_ids=None,
                      head_mask=None, rng=None):
        """The LM loss and its gradient for every parameter: ``(loss, grads)``.  # input_ids [B, T]

        ``grads`` is keyed exactly like ``state_dict()``; the tied head's gradient is added into wte's.
        ``labels`` default to input_ids (-100 ignored). In training mode (``model.train()``) dropout is
        applied, drawn from ``rng`` (a numpy Generator or an int seed). See minigpt2/training/grad.py.
        """
        from .training.grad import model_loss_and_grad

        return model_loss_and_grad(self, input_ids, labels=labels, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids, position_ids=position_ids, head_mask=head_mask,
                                   rng=rng)


class GPT2DoubleHeadsModel(GenerationMixin, _WithTransformer):
    """GPT-2 with the LM head and a multiple-choice head (HF's SequenceSummary) on one token per choice."""

    uses_lm_head = True

    @classmethod
    def _own_config(cls, config):
        """One score per choice, as HF: num_labels is 1. HF sets it on the config it is given; this sets it on
        a copy, so the caller's config (maybe shared with a classifier) keeps its num_labels."""
        if config.num_labels != 1:
            config = copy.deepcopy(config)
            config.num_labels = 1
        return config

    @classmethod
    def head_shapes(cls, config):
        if not config.summary_use_proj:
            return {}
        n_out = config.num_labels if config.summary_proj_to_labels and config.num_labels > 0 else config.n_embd
        return {"multiple_choice_head.summary.weight": (n_out, config.n_embd),
                "multiple_choice_head.summary.bias": (n_out,)}

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, head_mask=None, inputs_embeds=None, mc_token_ids=None, labels=None,
                mc_labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0):
        """LM logits and one score per choice.  # input_ids [B, C, T] -> logits [B, C, T, V], mc_logits [B, C]

        ``mc_token_ids`` [B, C]: the position of the classification token in each choice (default: the
        last); ``mc_labels`` [B]: the right choice, giving mc_loss; ``labels``: the LM loss.
        ``logits_to_keep`` as for GPT2LMHeadModel (LM logits only).
        """
        t = self._transformer(
            input_ids=input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
            token_type_ids=token_type_ids, position_ids=position_ids, head_mask=head_mask,
            inputs_embeds=inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states)
        h = t.last_hidden_state  # [B, C, T, E]
        logits = lm_head(kept_positions(h, logits_to_keep), self.params["wte"]["weight"])
        mc_logits = sequence_summary(h, mc_token_ids, self.params.get("multiple_choice_head"), self.config)
        if mc_logits.shape[-1] == 1:
            mc_logits = mc_logits[..., 0]  # [B, C]
        mc_loss = None
        if mc_labels is not None:
            mc_labels = int_array("mc_labels", mc_labels, high=mc_logits.shape[-1], ignore_index=-100)
            if mc_labels.size * mc_logits.shape[-1] != mc_logits.size:
                raise ValueError(f"mc_labels has shape {mc_labels.shape}; expected one label per row of mc_logits "
                                 f"{mc_logits.shape}, i.e. shape {mc_logits.shape[:-1] or (1,)}")
            mc_loss = cross_entropy(mc_logits.reshape(-1, mc_logits.shape[-1]), mc_labels.reshape(-1))
        loss = None if labels is None else shifted_lm_loss(logits, labels, self.config.vocab_size)
        out = GPT2DoubleHeadsModelOutput(
            loss=loss, mc_loss=mc_loss, logits=logits, mc_logits=mc_logits, past_key_values=t.past_key_values,
            hidden_states=t.hidden_states, attentions=t.attentions)
        return out if _return_dict(return_dict, self.config) else out.to_tuple()


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
    if kwargs.pop("output_loading_info", False):
        raise ValueError("output_loading_info=True is not supported: minigpt2 warns about every weight it "
                         "initialised or left out instead")


# -- heads and losses ----------------------------------------------------------------------------------

def kept_positions(h, logits_to_keep):
    """The positions whose logits are wanted (HF's logits_to_keep).  # [..., T, E] -> [..., T', E]"""
    if is_int(logits_to_keep):
        n = check_int("logits_to_keep", logits_to_keep, low=0)
        return h if n == 0 else h[..., -n:, :]
    positions = int_array("logits_to_keep", logits_to_keep, high=h.shape[-2])
    if positions.ndim != 1:
        raise ValueError(f"logits_to_keep must be an int or a 1-D array of positions, got shape {positions.shape}")
    return h[..., positions, :]


def lm_head(h, wte):
    """Logits over the vocabulary from the tied embedding matrix.  # [..., E] -> [..., V]"""
    return linear(h, wte.T)


def sequence_summary(h, cls_index, params, config):
    """HF's SequenceSummary: pick one vector per sequence, project it, activate.  # [B, C, T, E] -> [B, C, n]"""
    kind = config.summary_type
    if kind == "last":
        s = h[:, -1]  # HF indexes axis 1 here, whatever it holds
    elif kind == "first":
        s = h[:, 0]
    elif kind == "mean":
        s = h.mean(axis=1)
    else:  # "cls_index"
        T = h.shape[-2]
        if cls_index is None:
            cls_index = np.full(h.shape[:-2], T - 1)
        cls_index = int_array("mc_token_ids", cls_index, high=T)
        cls_index = reshape_to("mc_token_ids", cls_index, h.shape[:-2])
        s = np.take_along_axis(h, cls_index[..., None, None], axis=-2)[..., 0, :]  # [B, C, E]
    if params is not None:  # summary_use_proj: nn.Linear, weight (out, in)
        s = s @ params["summary"]["weight"].T + params["summary"]["bias"]
    if config.summary_activation is not None:
        s = ACTIVATIONS[config.summary_activation](s)
    return s


def cross_entropy(logits, labels, ignore_index=-100):
    """Mean of -log softmax(logits)[label] over the labels that are not ignore_index.  # [N, V], [N] -> []

    With every label ignored the mean is over nothing: NaN, as in torch.
    """
    keep = labels != ignore_index
    logits, labels = logits[keep], labels[keep]
    picked = log_softmax(logits)[np.arange(len(labels)), labels]
    if picked.size == 0:
        return np.float32(np.nan)
    return np.float32(-picked.mean(dtype=np.float64))


def shifted_lm_loss(logits, labels, vocab_size):
    """Cross-entropy of predicting token t+1 at position t.  # [..., T, V], [..., T] -> []"""
    labels = int_array("labels", labels, high=vocab_size, ignore_index=-100)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels must have shape {logits.shape[:-1]} (one per input token), got {labels.shape}")
    V = logits.shape[-1]
    return cross_entropy(logits[..., :-1, :].reshape(-1, V), labels[..., 1:].reshape(-1))


# -- input checking ------------------------------------------------------------------------------------

def _return_dict(return_dict, config):
    return config.return_dict if return_dict is None else return_dict


def _ignorable(key):
    """Buffers that older checkpoints store but that are not weights: attn.bias (the causal mask),
    attn.masked_bias."""
    return key.endswith((".attn.bias", ".attn.masked_bias", ".crossattention.bias", ".crossattention.masked_bias"))


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


def _head_masks(head_mask, n_layer, n_head):
    """HF's head_mask, [H] (every layer) or [L, H], as one [1, H, 1, 1] multiplier per layer (or None)."""
    if head_mask is None:
        return [None] * n_layer
    m = float_array("head_mask", head_mask)
    if m.shape == (n_head,):
        m = np.broadcast_to(m, (n_layer, n_head))
    if m.shape != (n_layer, n_head):
        raise ValueError(f"head_mask must have shape (n_head={n_head},) or (n_layer={n_layer}, n_head={n_head}), "
                         f"got {m.shape}")
    return [row[None, :, None, None] for row in m]
