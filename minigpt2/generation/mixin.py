"""``model.generate(...)``: HF's arguments, defaults and results, on any model that can be called as

    model(input_ids=, past_key_values=, attention_mask=, position_ids=, use_cache=True, logits_to_keep=1,
          return_dict=True).logits            # [N, 1, V]: the next-token logits, and .past_key_values

(with ``inputs_embeds=`` [N, T, E] in place of ``input_ids`` for a prompt given as embeddings) and has a
``config`` (vocab_size, n_positions, n_embd, special tokens). That is the whole interface to the model.
"""
from __future__ import annotations

import copy
import functools
import difflib
import warnings
from collections.abc import Mapping
from dataclasses import fields

import numpy as np

from ..checks import float_array, is_int
from ..config import LEGACY_GENERATION_DEFAULTS
from ..cache import (DynamicCache, KVCache, _is_transformers_cache, fill_transformers_cache, one_cache,
                     transformers_pairs)
from ..layers import log_softmax
from .beam import beam_search
from .config import GenerationConfig, _as_token_list
from .greedy import cached_length, greedy_or_sample
from .hf_settings import HF_ONLY, check_unsupported, read_hf_generation_config
from .processors import build_logits_processors
from .sampling import random_generator
from .stopping import MaxTimeCriteria, StopStringCriteria, builtin_overrides, merge_criteria

# generate()'s arguments that are not GenerationConfig fields
GENERATE_ARGUMENTS = ("input_ids", "inputs_embeds", "attention_mask", "past_key_values", "logits_processor",
                      "stopping_criteria", "prefix_allowed_tokens_fn", "streamer", "seed", "tokenizer")
# the model inputs among generate()'s keyword arguments
MODEL_INPUTS = ("input_ids", "inputs_embeds", "attention_mask", "token_type_ids", "past_key_values",
                "encoder_hidden_states", "encoder_attention_mask", "head_mask")


class UnexpectedArgumentError(TypeError, ValueError):
    """An argument generate() does not know: a TypeError, as Python raises for one, and a ValueError, as
    transformers raises ("The following `model_kwargs` are not used by the model"), so either ``except`` catches it."""


class GenerationMixin:
    """Adds ``generate`` and ``compute_transition_scores`` to a causal language model (see the module's docstring)."""

    @property
    def generation_config(self) -> GenerationConfig:
        """The defaults ``generate`` starts from; change them here or pass fields to ``generate``. Without a
        generation_config.json they come from the model's config (GenerationConfig.from_model_config)."""
        if self.__dict__.get("_generation_config") is None:
            self._generation_config = GenerationConfig.from_model_config(self.config)
            self._generation_config_as_made = copy.deepcopy(self._generation_config)  # to tell if it changed
        return self._generation_config

    @generation_config.setter
    def generation_config(self, value):
        if not isinstance(value, GenerationConfig):  # a transformers GenerationConfig: its settings, converted
            value = _from_hf_generation_config(value)
        self._generation_config = value
        # made from a model config (here or by HF, which marks its generation_config.json so): as it was then
        self._generation_config_as_made = copy.deepcopy(value) if value._from_model_config else None

    def _generation_defaults(self) -> GenerationConfig:
        """generation_config, or (HF 4.57's legacy rule, with its warning) one rebuilt from the model's config when
        generation settings were changed there (``model.config.num_beams = 4``) and generation_config, made from
        the config, was left as it was."""
        current = self.generation_config
        made = self.__dict__.get("_generation_config_as_made")
        if made is None or current != made or not _legacy_settings_set(self.config):
            return current
        rebuilt = GenerationConfig.from_model_config(self.config)
        if rebuilt != current:
            warnings.warn("You have modified the pretrained model configuration to control generation: generate "
                          "follows it, but set model.generation_config (or pass the settings to generate) instead",
                          UserWarning, stacklevel=4)
            self.generation_config = rebuilt
        return self.generation_config

    def generate(self, inputs=None, generation_config=None, logits_processor=None, stopping_criteria=None,
                 prefix_allowed_tokens_fn=None, *, streamer=None, seed=None, tokenizer=None, **kwargs):
        """Continue the prompts in ``inputs`` ([B, T] token ids).  # -> [B * num_return_sequences, L] ids

        Arguments are HF's: any GenerationConfig field (max_new_tokens, do_sample, temperature, top_k, top_p,
        num_beams, stop_strings, ...), ``attention_mask`` for left-padded batches, ``inputs_embeds`` (the prompts
        as embeddings [B, T, n_embd], run in place of the token embeddings; alone, the result holds only the new
        tokens and max_length / min_length count the T embedded positions, as in HF; with ``input_ids`` of the
        same [B, T], those are the tokens the embeddings stand for), ``logits_processor`` (extra
        processors, applied after the built-in ones and before temperature/top-k/top-p; one of the same class
        as a built-in replaces it), ``stopping_criteria`` (extra criteria ``(input_ids, scores) -> [N] bools``,
        after the built-in ones, replacing one of the same class), ``prefix_allowed_tokens_fn`` (``(batch_id,
        ids) -> allowed token ids``, each step), ``streamer`` (gets the prompt, then each new token, then
        ``end()``; batch size 1, not with beam search), ``tokenizer`` (needed by ``stop_strings``) and
        ``past_key_values`` (the cache of the prompts' first tokens; ``cache``, transformers 5's name, too). ``seed``
        (an int or a numpy Generator) makes sampling reproducible; without it, sampling draws from NumPy's global
        generator, so ``minigpt2.set_seed``, ``np.random.seed`` or ``transformers.set_seed`` do too.
        ``generation_config`` may be a transformers GenerationConfig (read through ``to_dict()``); transformers'
        settings for strategies minigpt2 lacks (num_beam_groups, penalty_alpha, guidance_scale, assistant_model,
        ...) are a ValueError naming them, those that cannot change the tokens (cache_implementation, ...) are
        accepted (docs/generation.md lists both).

        With no length argument, 20 new tokens are generated (transformers 4.57's rule). Returns the prompts
        followed by the new tokens; sequences that end early are filled with ``pad_token_id`` (GPT-2 has none,
        so eos is used, as HF does).
        """
        if "cache" in kwargs:  # transformers 5's name for past_key_values (None: not given, as in forward)
            kwargs["past_key_values"] = one_cache(kwargs.get("past_key_values"), kwargs.pop("cache"))
        cfg, model_kwargs = self._merged_generation_config(generation_config, kwargs)
        input_ids, attention_mask, embeds = self._prepare_inputs(inputs, model_kwargs, cfg)
        B, T = input_ids.shape  # T = 0 for a prompt given as inputs_embeds alone: the ids hold only new tokens
        embedded = attention_mask.shape[1] - T  # the prompt's positions not in the ids (inputs_embeds alone), or 0
        if embeds is not None:
            cfg.use_cache = True  # HF: the embeddings go in at the first step only, which the cache tells apart

        eos = _as_token_list(cfg.eos_token_id)
        if cfg.pad_token_id is None and eos:
            cfg.pad_token_id = eos[0]  # HF: "Setting pad_token_id to eos_token_id for open-end generation"
        default_length = kwargs.get("max_length") is None and cfg.max_new_tokens is None
        if cfg.max_new_tokens is not None:
            cfg.max_length = T + cfg.max_new_tokens
        elif embedded:  # HF: max_length counts the embedded prompt (its default 20 too), the returned ids do not
            cfg.max_length -= embedded
        elif default_length and cfg.max_length == GenerationConfig().max_length:
            cfg.max_length = min(T + cfg.max_length, self.config.n_positions)  # HF 4.57: 20 new tokens
        if cfg.min_new_tokens is not None:
            cfg.min_length = T + cfg.min_new_tokens  # HF: min_new_tokens replaces min_length
        elif embedded:
            cfg.min_length = max(cfg.min_length - embedded, 0)
        if cfg.min_length > cfg.max_length:  # (HF's warning; min_length is T + min_new_tokens when that is set)
            given = f"min_length ({cfg.min_length})" if cfg.min_new_tokens is None else \
                f"min_new_tokens ({cfg.min_new_tokens}) + the prompt's {T} tokens"
            warnings.warn(f"{given} is larger than max_length ({cfg.max_length}): generation stops at max_length",
                          UserWarning, stacklevel=2)
        self._check_lengths(cfg, T, default_length, embedded)
        custom_max_length, custom_eos, stopping_criteria = builtin_overrides(stopping_criteria)
        stop = self._stopping_criteria(cfg, tokenizer, stopping_criteria)
        self._check_special_tokens(cfg, eos)
        if streamer is not None and (cfg.num_beams > 1 or B * cfg.num_return_sequences > 1):
            raise ValueError("a streamer follows one sequence: use it with a single prompt, num_beams=1 and "
                             "num_return_sequences=1")
        processors = build_logits_processors(cfg, T, eos, logits_processor, prefix_allowed_tokens_fn,
                                             prompt_ids=input_ids if embeds is None else None)
        if custom_max_length is not None:  # the processors keep the max_length of the settings, as in HF
            cfg.max_length = self._custom_max_length(custom_max_length, T)
        finish_tokens = eos if custom_eos is None else custom_eos
        self._check_budget(cfg, T, embedded, finish_tokens, stop, logits_processor)
        if finish_tokens and cfg.pad_token_id is None:  # (HF's own eos always has one: its pad defaults to it)
            raise ValueError("EosTokenCriteria in stopping_criteria pads finished sequences, but there is no "
                             "pad_token_id: pass generate(..., pad_token_id=...)")
        flags = dict(output_attentions=cfg.return_dict_in_generate and cfg.output_attentions,
                     output_hidden_states=cfg.return_dict_in_generate and cfg.output_hidden_states)
        if model_kwargs.get("head_mask") is not None:  # the same heads masked at every step, as in HF
            flags["head_mask"] = model_kwargs["head_mask"]
        step = functools.partial(self._next_token_logits, **flags)
        if model_kwargs.get("token_type_ids") is not None:
            step = _with_token_types(step, model_kwargs["token_type_ids"], attention_mask.shape)
        if embeds is not None:
            step = _with_prompt_embeds(step, embeds)
        if model_kwargs.get("encoder_hidden_states") is not None or model_kwargs.get("encoder_attention_mask") is not None:
            step = _with_encoder_states(step, model_kwargs.get("encoder_hidden_states"),
                                        model_kwargs.get("encoder_attention_mask"), B)
        step = _within_positions(step, self.config.n_positions, T + embedded, embedded)
        given = model_kwargs.get("past_key_values")
        cache = self._prompt_cache(given, T + embedded, B, cfg)
        # HF grows the Cache object it is given, in place (minigpt2's DynamicCache: it is given the final KVCache)
        grows = (_is_transformers_cache(given) or isinstance(given, DynamicCache)) and cfg.use_cache
        run = cfg
        if grows:  # (the run returns its cache, to grow `given` with)
            run = copy.copy(cfg)
            run.return_dict_in_generate = True
        # (greedy leaves NumPy's global generator alone)
        rng = random_generator(seed) if cfg.do_sample or seed is not None else None
        if cfg.num_beams == 1:
            out = greedy_or_sample(step, input_ids, attention_mask, run, processors, finish_tokens, rng, streamer,
                                   stop, cache)
        else:
            out = beam_search(step, input_ids, attention_mask, run, processors, eos, rng, stop, finish_tokens, cache)
        if not grows:
            return out
        if isinstance(given, DynamicCache):
            given._set(out.past_key_values)
        else:
            fill_transformers_cache(given, out.past_key_values)
        if not cfg.return_dict_in_generate:
            return out.sequences
        out.past_key_values = given
        return out

    def compute_transition_scores(self, sequences, scores, beam_indices=None, normalize_logits=False):
        """The score of each generated token, from ``generate(..., output_scores=True, return_dict_in_generate=True)``
        (HF's method).  # -> [N, new tokens]

        ``scores`` are the per-step processed scores; for beam search pass ``beam_indices`` from the same output.
        ``normalize_logits`` takes the log-softmax of each step's scores first. Steps after a beam finished get 0.
        """
        V = self.config.vocab_size
        sequences = np.asarray(sequences)
        _check_transition_inputs(sequences, scores, beam_indices, V)
        steps = len(scores)
        if beam_indices is None:  # greedy or sampling: row i of each step's scores is sequence i
            beam_indices = np.broadcast_to(np.arange(np.shape(scores[0])[0])[:, None], (np.shape(scores[0])[0], steps))
        stacked = np.stack([np.asarray(s, np.float32) for s in scores]).reshape(steps, -1).T  # [N * V, steps]
        if normalize_logits:
            stacked = log_softmax(stacked.reshape(-1, V, steps).transpose(0, 2, 1)).transpose(0, 2, 1)
            stacked = stacked.reshape(-1, steps)
        beam_indices = np.asarray(beam_indices).astype(np.int64)  # (HF's are int32: row * V needs more)
        finished = beam_indices < 0
        length = int((~finished).sum(-1).max())
        rows = np.where(finished, 0, beam_indices)[:, :length] * V + sequences[:, sequences.shape[-1] - length:]
        transition = stacked[rows, np.arange(length)[None, :]]
        transition[finished[:, :length]] = 0
        return transition

    # -- preparing ----------------------------------------------------------------------------------------
    def _merged_generation_config(self, generation_config, kwargs):
        """A copy of the defaults (or of ``generation_config``) updated with kwargs; the rest are model inputs."""
        hf_settings = {}
        if generation_config is not None and not isinstance(generation_config, GenerationConfig):
            ours, hf_settings = read_hf_generation_config(generation_config, GenerationConfig)
            generation_config = GenerationConfig(**ours)
        use_model_defaults = kwargs.pop("use_model_defaults", None)
        cfg = copy.deepcopy(generation_config if generation_config is not None else self._generation_defaults())
        if generation_config is not None:
            self._fill_from_model_defaults(cfg, use_model_defaults)
        model_kwargs = cfg.update(**kwargs)
        hf_settings = {**cfg._transformers_settings, **hf_settings}
        hf_settings.update({k: model_kwargs.pop(k) for k in list(model_kwargs) if k in HF_ONLY})
        unknown = [k for k in model_kwargs if k not in MODEL_INPUTS]
        if unknown:
            allowed = [f.name for f in fields(GenerationConfig)] + list(GENERATE_ARGUMENTS)
            close = {k: difflib.get_close_matches(k, allowed + list(HF_ONLY), 1, cutoff=0.75) for k in unknown}
            hints = [f"{k!r} (did you mean {close[k][0]!r}?)" if close[k] else repr(k) for k in unknown]
            raise UnexpectedArgumentError(f"generate() got unexpected argument(s) {', '.join(hints)}; it accepts: "
                                          f"{', '.join(allowed)}")
        cfg.validate()
        check_unsupported(hf_settings, cfg)
        cfg.warn_unused()
        return cfg, model_kwargs

    def _fill_from_model_defaults(self, cfg, use_model_defaults):
        """HF 4.57: the settings of a given generation_config left at the library default come from the model's;
        with use_model_defaults=False only the special tokens that it leaves unset do."""
        model = self.generation_config
        if use_model_defaults is False:
            for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
                if getattr(cfg, name) is None:
                    setattr(cfg, name, copy.deepcopy(getattr(model, name)))
            return
        default = GenerationConfig()
        for f in fields(GenerationConfig):
            if getattr(cfg, f.name) == getattr(default, f.name) != getattr(model, f.name):
                setattr(cfg, f.name, copy.deepcopy(getattr(model, f.name)))
        if cfg.temperature == 0.0:  # HF: temperature=0 in the given config, do_sample=True from the model's
            cfg.do_sample = False

    def _prepare_inputs(self, inputs, model_kwargs, cfg):
        """Token ids [B, T], the attention mask [B, T'] (1 = token, 0 = left padding) and ``inputs_embeds``
        [B, T', E] (None without them). T' = T, except for a prompt given as inputs_embeds alone: then T = 0, the
        ids hold only the new tokens (HF's rule) and the mask covers the T' embedded positions."""
        if inputs is not None and model_kwargs.get("input_ids") is not None:
            raise ValueError("pass the prompt once: as the first argument or as input_ids=, not both")
        ids = inputs if inputs is not None else model_kwargs.get("input_ids")
        embeds = model_kwargs.get("inputs_embeds")
        if embeds is not None:
            embeds = self._check_inputs_embeds(embeds)
            if ids is None:  # HF: the prompt is the embeddings alone; no ids of it are returned
                mask = self._check_attention_mask(model_kwargs.get("attention_mask"), embeds.shape[:2])
                return np.zeros((len(embeds), 0), np.int64), mask, embeds
        if ids is None:  # HF: no prompt means "start from the beginning-of-sequence token"
            if cfg.bos_token_id is None:
                raise ValueError("no input_ids given and the model has no bos_token_id to start from")
            ids = [[cfg.bos_token_id]]
        if isinstance(ids, (str, bytes)):
            raise TypeError("generate() takes token ids, not text: ids = tokenizer(text, return_tensors='np')"
                            ".input_ids")
        if isinstance(ids, Mapping) and "input_ids" in ids:  # the tokenizer's whole output, as the prompt
            raise TypeError(f"generate() got the tokenizer's output ({type(ids).__name__} of "
                            f"{', '.join(map(str, ids))}) as its prompt: unpack it, generate(**inputs), so that the "
                            f"ids and the attention mask go in by name (or pass inputs['input_ids'])")
        try:
            ids = np.asarray(ids)
        except ValueError:  # NumPy's "inhomogeneous shape": prompts of different lengths
            raise ValueError("input_ids must be a rectangular batch, but the prompts have different lengths: pad "
                             "them on the left and pass attention_mask (tokenizer.padding_side = 'left'; "
                             "tokenizer(texts, padding=True, return_tensors='np'))") from None
        if ids.dtype == object or ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
            if ids.size > 0:
                hint = " (a prompt given as embeddings goes in inputs_embeds=)" if ids.ndim == 3 else ""
                raise TypeError(f"input_ids must be integer token ids, got dtype {ids.dtype}{hint}")
        if ids.ndim != 2:
            raise ValueError(f"input_ids must have shape (batch, sequence_length), got shape {ids.shape}; "
                             f"for a single prompt use ids[None] or [ids]")
        if ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(f"input_ids is empty (shape {ids.shape}): give at least one token per prompt")
        V = self.config.vocab_size
        if ids.min() < 0 or ids.max() >= V:
            bad = ids[(ids < 0) | (ids >= V)].flat[0]
            raise ValueError(f"input_ids holds {bad}, outside this model's vocabulary [0, {V})")
        ids = ids.astype(np.int64)
        if embeds is not None and embeds.shape[:2] != ids.shape:
            raise ValueError(f"inputs_embeds has shape {embeds.shape} but input_ids has {ids.shape}: with both, "
                             f"input_ids are the tokens the embeddings stand for, one per position (batch, "
                             f"sequence_length); to return only the new tokens, pass inputs_embeds alone")

        mask = model_kwargs.get("attention_mask")
        if mask is None:
            mask = np.ones(ids.shape, np.int64)
            # HF infers the mask from pad tokens only when pad differs from eos (GPT-2's pad is eos, so it cannot).
            eos = _as_token_list(cfg.eos_token_id)
            pad = cfg.pad_token_id if cfg.pad_token_id is not None else eos[0] if eos else None  # HF: eos stands in
            if cfg.pad_token_id is not None and cfg.pad_token_id not in eos and (ids == cfg.pad_token_id).any():
                mask = (ids != cfg.pad_token_id).astype(np.int64)
            elif ids.shape[0] > 1 and pad is not None and (ids[:, -1] == pad).any():
                warnings.warn("some prompts end in the pad token: if the batch is padded, pad on the left and pass "
                              "attention_mask (tokenizer.padding_side = 'left')", UserWarning, stacklevel=3)
        else:
            mask = self._check_attention_mask(mask, ids.shape)
        return ids, mask, embeds

    def _check_inputs_embeds(self, embeds):
        """``inputs_embeds`` as float32 [B, T, n_embd], or a ValueError saying what is wrong."""
        E = self.config.n_embd
        embeds = float_array("inputs_embeds", embeds)
        if embeds.ndim != 3 or embeds.shape[2] != E:
            raise ValueError(f"inputs_embeds must have shape (batch, sequence_length, n_embd={E}), got shape "
                             f"{embeds.shape}" + ("; for a single prompt use embeds[None]" if embeds.ndim == 2 else ""))
        if embeds.shape[0] == 0 or embeds.shape[1] == 0:
            raise ValueError(f"inputs_embeds is empty (shape {embeds.shape}): give at least one position per prompt")
        return embeds

    def _check_attention_mask(self, mask, shape):
        """generate()'s ``attention_mask`` for prompts of ``shape`` [B, T]: int64 0s and 1s (all 1s when None);
        a 0 in the last column (right padding) is HF's warning."""
        if mask is None:
            return np.ones(shape, np.int64)
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise ValueError(f"attention_mask has shape {mask.shape} but the prompt has {shape} (batch, "
                             f"sequence_length): generate takes the 2-D mask of 1s (tokens) and 0s (left padding)")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
        mask = mask.astype(np.int64)
        right_padded = np.flatnonzero(mask[:, -1] == 0)
        if right_padded.size:  # as transformers 4.57: a warning, and the same (poor) continuation
            warnings.warn(
                f"right-padding was detected: prompt {right_padded[0]} of the batch ends in padding "
                f"(attention_mask is 0 in the last column), and a decoder-only model continues after the last "
                f"column, so its first new token is predicted at a pad. For correct results pad on the left: set "
                f"padding_side='left' when initializing the tokenizer (or tokenizer.padding_side = 'left')",
                UserWarning, stacklevel=4)
        return mask

    def _prompt_cache(self, past, prompt_length, batch, cfg):
        """``past_key_values`` given to generate: the cache of the prompts' first P tokens (minigpt2's KVCache, HF's
        legacy tuples of (key, value) [B, H, P, D] per layer, or transformers' Cache object, as HF's
        DynamicCache), one row per prompt, or HF's layout for beams and returned sequences (each prompt's row
        repeated for them: the first of each is used, as in HF). None when there is none."""
        if isinstance(past, DynamicCache):  # minigpt2's: the KVCache it holds (empty: None, generate fills it)
            past = past._cache
        elif _is_transformers_cache(past):  # (HF's empty DynamicCache() is no cache yet: generate fills it)
            past = transformers_pairs(past) if past.get_seq_length() else None
        if past is None:
            return None
        try:
            rows, length = np.shape(past[0][0])[0], np.shape(past[0][0])[2]
        except (TypeError, IndexError, KeyError, ValueError):
            raise TypeError(f"past_key_values must be the cache of the prompts' first tokens, as the model returns "
                            f"it (model(input_ids[:, :P]).past_key_values), or tuples of (key, value) arrays "
                            f"[batch, n_head, P, head_dim] per layer; got {type(past).__name__}") from None
        copies = cfg.num_beams if cfg.num_beams > 1 else cfg.num_return_sequences
        if rows == batch * copies and copies > 1:  # HF's expanded layout: one row per beam / returned sequence
            first = np.arange(0, rows, copies)
            past = past.reorder(first) if isinstance(past, KVCache) else \
                tuple(tuple(np.asarray(a)[first] for a in pair) for pair in past)
        elif rows != batch:
            raise ValueError(f"past_key_values holds {rows} rows, but the batch has {batch} prompts: pass the cache "
                             f"of the prompts' first tokens, one row per prompt")
        if not 0 <= length < prompt_length:
            raise ValueError(f"past_key_values holds {length} positions, but the prompt has {prompt_length} tokens: "
                             f"it must cache fewer tokens than the prompt (its first ones; generate runs the rest)")
        return past

    def _check_lengths(self, cfg, prompt_length, default_length, embedded=0):
        """The prompt against n_positions, max_length (of the returned ids) against the prompt; ``embedded``: the
        positions of a prompt given as inputs_embeds alone, which the model holds but the ids leave out."""
        n_positions = self.config.n_positions
        if prompt_length + embedded > n_positions:
            prompt = f"{prompt_length} tokens" if not embedded else f"{embedded} embedded positions"
            raise ValueError(f"the prompt is {prompt} long, but the model has positions for n_positions="
                             f"{n_positions} tokens: shorten the prompt (e.g. keep its last tokens)")
        if embedded and cfg.max_length <= 0:
            raise ValueError(f"max_length is {cfg.max_length + embedded}, which counts the prompt's {embedded} "
                             f"embedded positions (inputs_embeds), so no token is left to generate: set max_new_tokens "
                             f"(the number of tokens to add) instead")
        if prompt_length >= cfg.max_length:
            raise ValueError(f"the prompt is {prompt_length} tokens long but max_length is {cfg.max_length}, which "
                             f"counts the prompt: set max_new_tokens (the number of tokens to add) instead")
        if default_length and cfg.max_length == GenerationConfig().max_length:  # HF's warning, still 20 in all
            warnings.warn("using the default max_length=20 (prompt included); set max_new_tokens to choose how "
                          "many tokens to generate", UserWarning, stacklevel=3)

    def _custom_max_length(self, max_length, prompt_length):
        """The max_length of a MaxLengthCriteria passed in stopping_criteria, which replaces generate's own (it
        counts the returned ids: not the positions of a prompt given as inputs_embeds alone); _check_budget then
        judges it against n_positions, as it judges generate's own."""
        if not is_int(max_length) or not prompt_length < max_length:
            raise ValueError(f"MaxLengthCriteria(max_length={max_length!r}) in stopping_criteria counts the prompt: it "
                             f"must be an integer above the prompt's {prompt_length} tokens")
        return int(max_length)

    def _check_budget(self, cfg, prompt_length, embedded, finish_tokens, stop, logits_processor):
        """Refuse before starting a run that is certain to need more positions than the model has.

        A step runs the sequence so far through the model, so a sequence of L tokens needs positions up to L - 2
        only (its last token is never run): max_length may be n_positions + 1, as in transformers. A longer budget
        is refused only when generation cannot end sooner: no stopping criteria, and no eos the model can
        generate, or eos ruled out (min_length) past the limit (unless the caller's logits processors might let it
        through). Otherwise the run starts, and a step that would need position n_positions fails then
        (_within_positions): transformers too runs such a budget when eos comes first.
        """
        if stop is not None:
            return
        n_positions = self.config.n_positions
        limit = n_positions + 1 - embedded  # the longest returned ids
        prompt = f"prompt {prompt_length}" if not embedded else f"{embedded} embedded positions"
        room = (f"but the model has positions for n_positions={n_positions} tokens (a sequence may have "
                f"{n_positions + 1}: its last token is never run through the model)")
        if not any(token < self.config.vocab_size for token in finish_tokens):
            if cfg.max_length > limit:
                raise ValueError(f"max_length is {cfg.max_length + embedded} ({prompt} + new tokens), {room}, and "
                                 f"nothing can end generation sooner (no eos_token_id the model can generate); lower "
                                 f"max_new_tokens or max_length")
        elif not logits_processor and min(cfg.min_length, cfg.max_length) > limit:
            given = f" ({prompt} + min_new_tokens)" if cfg.min_new_tokens is not None else ""
            raise ValueError(f"min_length is {cfg.min_length + embedded}{given}, {room}, and eos is ruled out until "
                             f"then; lower min_new_tokens or min_length")

    def _stopping_criteria(self, cfg, tokenizer, extra):
        """The criteria besides eos and max_length (which the loops check themselves), in HF's order; None if none."""
        built = []
        if cfg.max_time is not None:
            built.append(MaxTimeCriteria(cfg.max_time))
        if cfg.stop_strings is not None:
            if tokenizer is None:
                raise ValueError("stop_strings needs the model's tokenizer to read the generated text: pass "
                                 "generate(..., stop_strings=..., tokenizer=tokenizer)")
            built.append(StopStringCriteria(tokenizer, cfg.stop_strings))
        criteria = merge_criteria(built, extra)
        return criteria if criteria else None

    def _check_special_tokens(self, cfg, eos):
        """Ids the run would feed to the model or force must be in the vocabulary; an eos past it never comes."""
        V = self.config.vocab_size
        bad_words = [t for word in cfg.bad_words_ids or [] for t in word]
        forced = (("forced_eos_token_id", _as_token_list(cfg.forced_eos_token_id)),
                  ("forced_bos_token_id", _as_token_list(cfg.forced_bos_token_id)))
        for name, ids in (("bad_words_ids", bad_words), *forced):
            if any(i >= V for i in ids):
                raise ValueError(f"{name}={getattr(cfg, name)} is outside this model's vocabulary [0, {V})")
        outside = [i for i in eos if i >= V]
        if outside:  # e.g. GPT2Config's default eos 50256 with a small vocab_size: transformers generates on
            warnings.warn(f"eos_token_id {outside[0] if len(outside) == 1 else outside} is outside this model's "
                          f"vocabulary [0, {V}): it is never generated", UserWarning, stacklevel=3)
        if any(i < V for i in eos) and cfg.pad_token_id is not None and cfg.pad_token_id >= V:
            raise ValueError(f"pad_token_id={cfg.pad_token_id} is outside this model's vocabulary [0, {V}), but "
                             f"finished sequences are continued with it; pass a pad_token_id below {V}")

    # -- the model, one step ------------------------------------------------------------------------------
    def _next_token_logits(self, new_ids, past, attention_mask, output_attentions=False, output_hidden_states=False,
                           token_type_ids=None, inputs_embeds=None, **more):
        """Run the new tokens through the model with the cache; return logits at the last position, the cache, and
        the attentions and hidden states (None unless asked for).

        new_ids [N, t] (the prompt, then one token), or None and ``inputs_embeds`` [N, t, E] (a prompt given as
        embeddings); attention_mask [N, P + t] covers the cache too.
        Positions come from the mask, as in HF: the i-th real token of a row sits at position i, so
        left padding does not shift a prompt (pads get position 1; they are masked out anyway).
        """
        t = (new_ids if inputs_embeds is None else inputs_embeds).shape[1]
        positions = np.cumsum(attention_mask, axis=-1) - 1
        positions = np.where(attention_mask == 0, 1, positions)[:, -t:]  # [N, t]
        # logits_to_keep=1: the head (V x E per position) runs on the last position alone.
        out = self(input_ids=new_ids, inputs_embeds=inputs_embeds, past_key_values=past, attention_mask=attention_mask,
                   position_ids=positions, token_type_ids=token_type_ids, use_cache=True, logits_to_keep=1,
                   return_dict=True, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                   **more)  # (the encoder's states, a head_mask)
        seen = {"attentions": out.attentions, "hidden_states": out.hidden_states}
        return out.logits[:, -1].astype(np.float32, copy=False), out.past_key_values, seen


def _within_positions(step, n_positions, prompt_length, embedded):
    """``step`` that first checks that the sequence so far fits the model (a step runs it through, its last token
    at position L - 1): past n_positions it is a ValueError saying what to lower, where transformers raises an
    IndexError in its position embedding. ``prompt_length`` counts the prompt's positions (embedded ones too)."""

    def checked_step(new_ids, past, mask, **flags):
        length = mask.shape[1]  # the sequence so far, prompt included
        if length > n_positions:
            raise ValueError(
                f"generation ran out of positions: after a prompt of {prompt_length} tokens and "
                f"{length - prompt_length} new tokens with no eos, the next step needs position {length - 1}, but "
                f"the model has positions for n_positions={n_positions} tokens; lower max_new_tokens to at most "
                f"{n_positions + 1 - prompt_length} (max_length to {n_positions + 1 - embedded}) or shorten the prompt")
        return step(new_ids, past, mask, **flags)

    return checked_step


def _with_token_types(step, token_type_ids, prompt_shape):
    """``step`` given the token types of its new tokens: the prompt's ``token_type_ids`` [B, T], and for each
    generated token the type of its prompt's last token (HF's rule). Rows are the prompts' in order, each repeated
    for its beams or returned sequences (N = B * k), as the loops lay them out."""
    types = np.asarray(token_type_ids)
    if types.shape != prompt_shape or not (np.issubdtype(types.dtype, np.integer) or types.size == 0):
        raise ValueError(f"token_type_ids must be integers of the prompt's shape {prompt_shape}, got "
                         f"{types.dtype} {types.shape}")
    B, T = prompt_shape

    def typed_step(new_ids, past, mask, **flags):
        N, t = (new_ids if new_ids is not None else flags["inputs_embeds"]).shape[:2]
        L = mask.shape[1]  # the sequence so far; new_ids are its last t tokens
        prompt = np.arange(N) // (N // B)
        full = np.concatenate([types[prompt], np.repeat(types[prompt, -1:], L - T, axis=1)], axis=1)
        return step(new_ids, past, mask, token_type_ids=full[:, L - t:], **flags)

    return typed_step


def _with_encoder_states(step, states, mask, B):
    """``step`` given each row's encoder output to cross-attend to (a model built with add_cross_attention, as in an
    encoder-decoder): ``states`` [B, S, E] and ``mask`` [B, S] are the prompts', each repeated for the prompt's
    beams or returned sequences (N = B * k rows, in the loops' order), as HF expands them."""
    states = None if states is None else np.asarray(states)
    if states is None or states.ndim != 3 or states.shape[0] != B:
        raise ValueError(f"encoder_hidden_states must be [batch, encoder_length, n_embd] with the prompts' batch of "
                         f"{B}, got {None if states is None else states.shape}")

    def crossing_step(new_ids, past, attention_mask, **flags):
        prompt = np.arange(attention_mask.shape[0]) // (attention_mask.shape[0] // B)
        return step(new_ids, past, attention_mask, encoder_hidden_states=states[prompt],
                    encoder_attention_mask=None if mask is None else np.asarray(mask)[prompt], **flags)

    return crossing_step


def _with_prompt_embeds(step, embeds):
    """``step`` that runs the prompt from ``embeds`` [B, T, E] instead of token ids: HF's rule for inputs_embeds,
    which serve the first step alone (each generated token then goes in as an id). With a cache of the prompt's
    first P positions, the embeddings of the other T - P go in."""

    def embedded_step(new_ids, past, mask, **flags):
        if mask.shape[1] > embeds.shape[1]:  # the mask covers the sequence so far: past the prompt
            return step(new_ids, past, mask, **flags)
        return step(None, past, mask, inputs_embeds=embeds[:, cached_length(past):], **flags)

    return embedded_step


def _legacy_settings_set(config) -> bool:
    """Does the model's config hold generation settings other than transformers' defaults?"""
    return any(getattr(config, name, default) != default for name, default in LEGACY_GENERATION_DEFAULTS.items())


def _from_hf_generation_config(value) -> GenerationConfig:
    """A transformers GenerationConfig (anything with to_dict()) as minigpt2's; a setting that would change what
    transformers generates and that minigpt2 lacks is a ValueError."""
    ours, hf_settings = read_hf_generation_config(value, GenerationConfig)
    cfg = GenerationConfig(**ours)
    check_unsupported(hf_settings, cfg)
    return cfg


def _check_transition_inputs(sequences, scores, beam_indices, V):
    """compute_transition_scores's inputs agree with one generate() output, or a ValueError says what does not.
    # sequences [N, T]; scores: one [rows, V] per step; beam_indices [N, steps] or None (then rows == N)"""
    shapes = [np.shape(s) for s in scores] if isinstance(scores, (list, tuple, np.ndarray)) else []
    if not shapes or len(shapes[0]) != 2 or any(shape != (shapes[0][0], V) for shape in shapes):
        raise ValueError(f"scores must be generate()'s tuple of per-step scores, each [rows, vocab_size={V}] "
                         f"(generate(..., output_scores=True, return_dict_in_generate=True).scores), got "
                         f"{type(scores).__name__}{' of shapes ' + str(shapes[:3]) if shapes else ''}")
    rows, steps = shapes[0][0], len(shapes)
    if beam_indices is None and (sequences.ndim != 2 or len(sequences) != rows or sequences.shape[1] < steps):
        raise ValueError(f"sequences (shape {sequences.shape}) must have one row per row of scores ({rows}) and a "
                         f"token per step ({steps}); beam search scores one row per beam: pass the same "
                         f"output's beam_indices, compute_transition_scores(out.sequences, out.scores, "
                         f"out.beam_indices)")
    if beam_indices is not None and (sequences.ndim != 2 or np.shape(beam_indices)[0] != len(sequences)
                                     or np.max(beam_indices, initial=-1) >= rows):
        raise ValueError(f"beam_indices (shape {np.shape(beam_indices)}) must come from the same generate() output as "
                         f"sequences (shape {sequences.shape}) and scores ({rows} beams per step)")
