"""``pipeline("text-generation", model=..., tokenizer=...)``: transformers' text-generation pipeline, on minigpt2.

    from minigpt2 import pipeline, set_seed
    generator = pipeline("text-generation", model="gpt2")
    set_seed(42)
    generator("Hello, I'm a language model,", max_length=30, num_return_sequences=5)
    # -> [{"generated_text": "Hello, I'm a language model, ..."}, ... 5 dicts]

The settings and the output are transformers 4.57's: the pipeline's defaults (256 new tokens, sampling at
temperature 0.7) under the model's own generation settings and its config's ``task_specific_params``; a string
gives a list of dicts, a list of strings a list of such lists; a chat (a list of {"role", "content"} dicts) is
formatted with the tokenizer's chat template. Text generation is the one task minigpt2 has.

Keyword arguments are sorted once, where they are given, into loading options (used by from_pretrained), the
pipeline's own options (``prefix``, ``batch_size``, ``return_full_text``, ...) and generate()'s settings; a name that
is none of these is refused there, naming what is accepted.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import types
import warnings
from dataclasses import fields

import numpy as np

from .generation import GenerationConfig, set_seed
from .generation.hf_settings import HF_ONLY
from .generation.mixin import GENERATE_ARGUMENTS
from .pretrained import _callers_level

__all__ = ["pipeline", "TextGenerationPipeline", "set_seed"]

SUPPORTED_TASKS = ("text-generation",)

# pipeline()'s options for loading the model (and tokenizer) from a name: passed to from_pretrained
LOADING_OPTIONS = ("torch_dtype", "dtype", "revision", "token", "trust_remote_code", "device_map", "model_kwargs",
                   "use_fast")
# the options of a call (also accepted by pipeline() as defaults), besides generate()'s settings; transformers
# gives these to the tokenizer of the prompts (continue_final_message acts on chats only)
TOKENIZER_OPTIONS = ("add_special_tokens", "truncation", "padding", "tokenizer_encode_kwargs")
CALL_OPTIONS = ("return_full_text", "return_tensors", "return_text", "clean_up_tokenization_spaces",
                "skip_special_tokens", "stop_sequence", "prefix", "handle_long_generation", "batch_size",
                "num_workers", "continue_final_message") + TOKENIZER_OPTIONS
GENERATE_SETTINGS = tuple(f.name for f in fields(GenerationConfig)) + tuple(
    name for name in GENERATE_ARGUMENTS if name not in ("input_ids", "attention_mask", "tokenizer")) + (
    "use_model_defaults", "generation_config") + HF_ONLY  # (HF_ONLY: transformers' settings generate() accepts
# where they do not act, or refuses; a call's generation_config replaces the pipeline's, as in transformers)


def pipeline(task=None, model=None, tokenizer=None, config=None, device=None, framework=None, **kwargs):
    """A pipeline for ``task`` (only "text-generation"; also when ``task`` is None) with ``model`` (a minigpt2
    model, or a local directory / Hub name to load with AutoModelForCausalLM) and ``tokenizer`` (a tokenizer,
    a name to load, or None: the model's own). ``device`` may be None, "cpu", torch.device("cpu") or -1
    (minigpt2 runs on the CPU); ``framework`` None, "pt" or "np" (the records hold lists either way, as
    transformers' do). Loading options
    (``torch_dtype``, ``revision``, ...) go to from_pretrained (without a dtype: the checkpoint's own, as
    transformers' default ``dtype="auto"``); the pipeline's options (``prefix``,
    ``batch_size``, ``return_full_text``, ...) and generate()'s settings become the defaults of every call."""
    task = "text-generation" if task is None else task
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"pipeline task {task!r} is not available in minigpt2: the one supported task is "
                         f"'text-generation'")
    if model is None:
        raise ValueError("pipeline('text-generation') needs model=: a minigpt2 model or a checkpoint name or path")
    if type(device).__module__ == "torch" and type(device).__name__ == "device":
        device = str(device)  # torch.device("cpu"), as transformers users pass it
    if device not in (None, "cpu", -1):
        raise ValueError(f"device={device!r}: minigpt2 runs on the CPU only (use device=None, 'cpu', "
                         f"torch.device('cpu') or -1)")
    if framework not in (None, "pt", "np"):
        raise ValueError(f"framework={framework!r}: minigpt2 is NumPy; use framework=None, 'pt' or 'np' (the "
                         f"generated ids are returned as lists either way)")
    from .auto import AutoModelForCausalLM
    from .tokenizer import AutoTokenizer

    loading = {name: kwargs.pop(name) for name in LOADING_OPTIONS if name in kwargs}
    _check_names(kwargs, CALL_OPTIONS + GENERATE_SETTINGS + LOADING_OPTIONS, "pipeline()")
    model_kwargs = loading.pop("model_kwargs", None) or {}
    use_fast = loading.pop("use_fast", True)
    hub = {name: loading[name] for name in ("revision", "token") if name in loading}
    if isinstance(model, str):
        if tokenizer is None:
            tokenizer = model
        options = {**model_kwargs, **loading}
        if not {"torch_dtype", "dtype", "load_in_8bit", "quantization_config"} & set(options):
            options["torch_dtype"] = "auto"  # transformers 4.57's pipeline default: the dtype the checkpoint is in
        model = AutoModelForCausalLM.from_pretrained(model, config=config, **options)
    else:
        _check_loading_options_of_a_loaded_model({**model_kwargs, **loading})
    if not hasattr(model, "generate"):
        raise TypeError(f"model must be a model that can generate (e.g. GPT2LMHeadModel) or a checkpoint name, got "
                        f"{type(model).__name__}")
    if tokenizer is None:
        tokenizer = getattr(model, "name_or_path", None) or None
        if tokenizer is None:
            raise ValueError("pipeline needs tokenizer= for a model that was not loaded from a checkpoint")
    if isinstance(tokenizer, str):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer, use_fast=use_fast, **hub)
    return TextGenerationPipeline(model, tokenizer, **kwargs)


def _check_loading_options_of_a_loaded_model(options):
    """A model passed as an object is already loaded: accept a loading option only where it asks for what it is."""
    float32 = (None, "auto", "float32", "fp32")
    refused = sorted(name for name, value in options.items() if not (
        (name in ("torch_dtype", "dtype") and str(value).replace("torch.", "") in float32)
        or (name == "device_map" and value in (None, "auto", "cpu"))
        or (name == "trust_remote_code") or value is None))
    if refused:
        raise ValueError(f"pipeline(model=<a loaded model>, {', '.join(f'{n}={options[n]!r}' for n in refused)}): "
                         f"these apply when loading; pass model= a checkpoint name or path to load it with them, or "
                         f"load the model yourself (e.g. GPT2LMHeadModel.from_pretrained(path, torch_dtype=...))")


def _check_names(kwargs, allowed, where):
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        close = {k: difflib.get_close_matches(k, allowed, 1, cutoff=0.75) for k in unknown}
        hints = [f"{k!r} (did you mean {close[k][0]!r}?)" if close[k] else repr(k) for k in unknown]
        if "generate_kwargs" in unknown:  # in transformers' docstring, refused by its text-generation pipeline too
            hints[unknown.index("generate_kwargs")] = ("'generate_kwargs' (pass generate()'s settings as keyword "
                                                       "arguments themselves, e.g. max_new_tokens=20)")
        raise TypeError(f"{where} got unexpected argument(s) {', '.join(hints)}; the text-generation pipeline "
                        f"accepts its options {', '.join(CALL_OPTIONS)}, and generate()'s settings (any "
                        f"GenerationConfig field, logits_processor, stopping_criteria, prefix_allowed_tokens_fn, "
                        f"streamer, seed)")


class TextGenerationPipeline:
    """Call it with a prompt (or a list of prompts) and generate()'s arguments; see ``pipeline``."""

    task = "text-generation"

    def __init__(self, model, tokenizer, **kwargs):
        self.model, self.tokenizer = model, tokenizer
        _check_names(kwargs, CALL_OPTIONS + GENERATE_SETTINGS, "TextGenerationPipeline()")
        # transformers' order: the pipeline's defaults, then the model's generation settings where they differ
        # from the library defaults, then the config's task_specific_params["text-generation"].
        cfg = GenerationConfig(max_new_tokens=256, do_sample=True, temperature=0.7)
        default = GenerationConfig()
        for f in fields(GenerationConfig):
            ours, models = getattr(cfg, f.name), getattr(model.generation_config, f.name)
            if ours == getattr(default, f.name) and models != getattr(default, f.name):
                setattr(cfg, f.name, copy.deepcopy(models))
        if cfg.max_new_tokens == 256 and cfg.max_length != default.max_length:  # a model's max_length is honoured
            cfg.max_new_tokens = None
        task_params = dict((getattr(model.config, "task_specific_params", None) or {}).get(self.task, {}))
        # transformers: the config's prefix, or the task's, is the default prefix
        prefix = task_params.pop("prefix", getattr(model.config, "prefix", None))
        unknown = cfg.update(**task_params)
        # The pipeline's own temperature is for the sampling it turns on: a call that turns sampling off did not
        # choose it, so generate is not to report it as ignored (transformers logs it once as "not valid")
        self._own_temperature = cfg.temperature == 0.7 and "temperature" not in task_params and (
            model.generation_config.temperature == default.temperature)
        if tokenizer.pad_token_id is not None and cfg.pad_token_id is None:
            cfg.pad_token_id = tokenizer.pad_token_id
        self.generation_config = cfg
        self._options = {"prefix": prefix} if prefix is not None else {}
        self._options.update({k: v for k, v in kwargs.items() if k in CALL_OPTIONS})
        self._defaults = {**unknown, **{k: v for k, v in kwargs.items() if k not in CALL_OPTIONS}}

    def __call__(self, text_inputs, **kwargs):
        """Generate from one prompt (-> a list of dicts) or a list of prompts (-> a list of lists of dicts).
        Each dict holds "generated_text" (the prompt and the new text; only the new text with
        return_full_text=False), or "generated_token_ids" when return_tensors is given (True, or False as well:
        transformers' rule). ``prefix`` is put before
        each prompt for the model and left out of the text; ``batch_size`` prompts are generated together
        (left-padded, each as it would be alone); a generator of prompts gives an iterator of each one's list
        of dicts, as in transformers. ``handle_long_generation="hole"`` cuts the start of a prompt
        so that it and the new tokens fit ``tokenizer.model_max_length``, as transformers does: the number of
        new tokens is this call's max_new_tokens, else the generation settings' max_length minus the prompt's.
        A chat (a list of {"role", "content"} dicts; or a list of chats) is rendered with the tokenizer's chat
        template, as in transformers: its full text is the messages with the reply added as an assistant message
        (or, with continue_final_message, the default when the chat ends in one, to the last message)."""
        _check_names(kwargs, CALL_OPTIONS + GENERATE_SETTINGS, "the text-generation pipeline call")
        asked = dict(kwargs)
        given = {**self._options, **{k: v for k, v in kwargs.items() if k in CALL_OPTIONS}}
        new_tokens = kwargs.get("max_new_tokens")  # this call's, which transformers' "hole" reads
        # transformers gives the tokenizer the tokenizer options and this call's max_length (which cuts prompts)
        tokenize = {name: given[name] for name in TOKENIZER_OPTIONS[:-1] if given.get(name) is not None}
        if kwargs.get("max_length") is not None:
            tokenize["max_length"] = kwargs["max_length"]
        if not isinstance(given.get("tokenizer_encode_kwargs") or {}, dict):
            raise TypeError(f"tokenizer_encode_kwargs must be a dict of the tokenizer's options (e.g. "
                            f"{{'max_length': 64}}), got {type(given['tokenizer_encode_kwargs']).__name__}")
        tokenize.update(given.get("tokenizer_encode_kwargs") or {})
        kwargs = {**self._defaults, **{k: v for k, v in kwargs.items() if k not in CALL_OPTIONS}}
        if given.get("handle_long_generation") not in (None, "hole"):
            raise ValueError(f"{given['handle_long_generation']} is not a valid value for `handle_long_generation` "
                             f"parameter expected [None, 'hole'] ('hole' cuts the start of a prompt too long for "
                             f"the model and the new tokens)")
        full_text, tensors, text = (given.get(k) for k in ("return_full_text", "return_tensors", "return_text"))
        # transformers' rule: return_full_text decides, else return_tensors given at all (True or False) means ids
        if full_text is not None and (text is not None or tensors is not None):
            raise ValueError("return_full_text is mutually exclusive with return_text and return_tensors")
        if full_text is None and tensors is not None and text is not None:
            raise ValueError("return_text is mutually exclusive with return_tensors (return_tensors=True gives "
                             "token ids, return_text=True the text: pass one)")
        if given.get("stop_sequence") is not None:
            kwargs["eos_token_id"] = self.tokenizer.encode(given["stop_sequence"], add_special_tokens=False)
        kwargs.setdefault("generation_config", self.generation_config)
        if (self._own_temperature and kwargs["generation_config"] is self.generation_config
                and kwargs.get("do_sample", self.generation_config.do_sample) is False and "temperature" not in kwargs):
            kwargs["temperature"] = 1.0  # (greedy or beam search: the same tokens as with 0.7)
        options = dict(full_text=full_text is not False, tensors=full_text is None and tensors is not None,
                       clean_up=given.get("clean_up_tokenization_spaces", None) is not False,
                       skip_special=given.get("skip_special_tokens", None) is not False,
                       hole=given.get("handle_long_generation") == "hole", new_tokens=new_tokens, tokenize=tokenize,
                       continue_final=given.get("continue_final_message"))
        batch_size = 1 if given.get("batch_size") is None else given["batch_size"]
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer (prompts generated together), got {batch_size!r}")
        prefix = given.get("prefix") or ""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string (put before every prompt), got {type(prefix).__name__}")
        if isinstance(text_inputs, types.GeneratorType):  # transformers: an iterator of each prompt's records
            return self._each(text_inputs, batch_size, asked)
        if isinstance(text_inputs, (list, tuple)) and text_inputs and isinstance(text_inputs[0], dict):
            text_inputs = _Chat(text_inputs)  # one chat: formatted with the tokenizer's chat template
        elif isinstance(text_inputs, (list, tuple)) and text_inputs and isinstance(text_inputs[0], (list, tuple)):
            text_inputs = [_Chat(chat) for chat in text_inputs]  # a list of chats
        if isinstance(text_inputs, (str, _Chat)):
            return self._batch([text_inputs], prefix, kwargs, options)[0]
        if isinstance(text_inputs, (list, tuple)) and all(isinstance(t, (str, _Chat)) for t in text_inputs):
            return [records for start in range(0, len(text_inputs), batch_size)
                    for records in self._batch(text_inputs[start:start + batch_size], prefix, kwargs, options)]
        raise TypeError(f"the text-generation pipeline takes a string or a list of strings (or a chat: a list of "
                        f"{{'role', 'content'}} dicts, or a list of chats), got {type(text_inputs).__name__}")

    def _each(self, prompts, batch_size, kwargs):
        """Each prompt's records, from an iterator of prompts read batch_size at a time."""
        while True:
            chunk = list(itertools.islice(prompts, batch_size))
            if not chunk:
                return
            yield from self(chunk, **kwargs)

    def _batch(self, prompts, prefix, kwargs, options):
        """The records of each prompt, generated together (an empty prompt, which starts from bos, alone)."""
        tokenize = options["tokenize"]
        encoded = [self._encode(p, prefix, tokenize, options["continue_final"]) for p in prompts]
        cut = tokenize.get("max_length") if tokenize.get("truncation") is None else None
        if cut is not None and any(len(self._encode(p, prefix, {}, options["continue_final"])) > cut for p in prompts):
            warnings.warn(f"max_length={cut} is shorter than the prompt: as in transformers, whose pipeline also "
                          f"gives max_length to the tokenizer, the prompt is cut to its first {cut} tokens (use "
                          f"max_new_tokens= to set the length of the generation alone, or truncation=False)",
                          stacklevel=_callers_level())
        if options["hole"]:
            encoded = [self._hole(ids, options["new_tokens"], kwargs) for ids in encoded]
        if len(prompts) > 1 and not all(encoded):
            return [records for p in prompts for records in self._batch([p], prefix, kwargs, options)]
        kwargs = dict(kwargs)
        prefix_length = len(self.tokenizer(prefix, add_special_tokens=tokenize.get("add_special_tokens", False))[
            "input_ids"]) if prefix else 0
        cfg = kwargs["generation_config"]
        if prefix_length and kwargs.get("max_new_tokens", cfg.max_new_tokens) is None:  # transformers' rule
            kwargs["max_length"] = (kwargs.get("max_length") or cfg.max_length) + prefix_length
        if prefix_length and kwargs.get("min_new_tokens", cfg.min_new_tokens) is None and "min_length" in kwargs:
            kwargs["min_length"] += prefix_length
        width = max(len(ids) for ids in encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.model.config.eos_token_id
        ids = np.array([[pad or 0] * (width - len(e)) + e for e in encoded], np.int64) if width else None
        mask = np.array([[0] * (width - len(e)) + [1] * len(e) for e in encoded], np.int64) if width else None
        result = self.model.generate(ids, attention_mask=mask, **kwargs)
        sequences = getattr(result, "sequences", result)
        per_prompt = len(sequences) // len(prompts)
        extras = _additional_outputs(result, len(prompts)) if sequences is not result else None
        decode = dict(skip_special_tokens=options["skip_special"], clean_up_tokenization_spaces=options["clean_up"])
        out = []
        for i, (prompt, prompt_ids) in enumerate(zip(prompts, encoded)):
            prompt_chars = len(self.tokenizer.decode(prompt_ids, **decode))  # the prefix included, as transformers
            records = []
            for j, seq in enumerate(sequences[i * per_prompt:(i + 1) * per_prompt, width - len(prompt_ids):].tolist()):
                if options["tensors"]:
                    records.append({"generated_token_ids": seq})
                    continue
                new_text = self.tokenizer.decode(seq, **decode)[prompt_chars:]
                if options["full_text"]:
                    new_text = (prompt.with_reply(new_text, options["continue_final"]) if isinstance(prompt, _Chat)
                                else prompt + new_text)
                records.append({"generated_text": new_text,
                                **(extras[i][j] if extras else {})})
            out.append(records)
        return out

    def _encode(self, prompt, prefix, tokenize, continue_final):
        """A prompt's ids: prefix + text, or a chat rendered by the tokenizer's chat template as transformers does
        (no prefix, no add_special_tokens; a chat ending in an assistant message is continued by default)."""
        if isinstance(prompt, str):
            return self.tokenizer(prefix + prompt, **tokenize)["input_ids"]
        tokenize = {k: v for k, v in tokenize.items() if k != "add_special_tokens"}
        continue_final = prompt.continues() if continue_final is None else continue_final
        return self.tokenizer.apply_chat_template(list(prompt.messages), add_generation_prompt=not continue_final,
                                                  continue_final_message=continue_final, return_dict=True,
                                                  **tokenize)["input_ids"]

    def _hole(self, ids, new_tokens, kwargs):
        """handle_long_generation="hole", as transformers 4.57: the prompt's last tokens that leave room for
        ``new_tokens`` (this call's max_new_tokens, else max_length minus the prompt's length) within
        tokenizer.model_max_length."""
        if new_tokens is None:
            new_tokens = kwargs.get("max_length", self.generation_config.max_length) - len(ids)
            if new_tokens < 0:
                raise ValueError(f"We cannot infer how many new tokens are expected (handle_long_generation='hole' "
                                 f"with a {len(ids)}-token prompt beyond max_length: pass max_new_tokens= to the "
                                 f"call)")
        limit = self.tokenizer.model_max_length
        if len(ids) + new_tokens <= limit:
            return ids
        if limit - new_tokens <= 0:
            raise ValueError(f"We cannot use `hole` to handle this generation the number of desired tokens exceeds "
                             f"the models max length ({new_tokens} new tokens, tokenizer.model_max_length {limit})")
        return ids[len(ids) - (limit - new_tokens):]


class _Chat:
    """A conversation given to the pipeline (transformers' Chat): its messages, each a {"role", "content"} dict."""

    def __init__(self, messages):
        for message in messages:
            if not (isinstance(message, dict) and "role" in message and "content" in message):
                raise ValueError("When passing chat dicts as input, each dict must have a 'role' and 'content' key.")
        self.messages = messages

    def continues(self):
        """transformers' default for continue_final_message: a chat ending in an assistant message is continued."""
        return self.messages[-1]["role"] == "assistant"

    def with_reply(self, text, continue_final):
        """The full-text record: the messages and the reply, as a new assistant message or added to the last."""
        if continue_final if continue_final is not None else self.continues():
            last = self.messages[-1]
            return list(self.messages)[:-1] + [{"role": last["role"], "content": last["content"] + text}]
        return list(self.messages) + [{"role": "assistant", "content": text}]


def _additional_outputs(result, n_prompts):
    """What transformers 4.57's pipeline adds to each text record from generate()'s dict output
    (return_dict_in_generate=True): [prompt][sequence] -> {name: values}. Per-step tuples with a row per returned
    sequence (scores, logits) become [steps, ...] lists; arrays with a row per sequence (sequences_scores,
    beam_indices) a one-row list, and only when one sequence is returned per prompt; the rest is dropped, as there."""
    out_b = len(result.sequences)
    n = out_b // n_prompts
    extras = [[{} for _ in range(n)] for _ in range(n_prompts)]
    for name, value in result.items():
        if name in ("sequences", "past_key_values"):
            continue
        if isinstance(value, tuple) and value and isinstance(value[0], np.ndarray) and len(value[0]) == out_b:
            steps = np.stack(value, axis=1)  # [out_b, steps, ...]
            for k in range(out_b):
                extras[k // n][k % n][name] = steps[k].tolist()
        elif isinstance(value, np.ndarray) and value.shape[:1] == (out_b,) and n == 1:
            for k in range(out_b):
                extras[k][0][name] = [value[k].tolist()]
    return extras
