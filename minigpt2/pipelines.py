"""``pipeline("text-generation", model=..., tokenizer=...)``: transformers' text-generation pipeline, on minigpt2.

    from minigpt2 import pipeline, set_seed
    generator = pipeline("text-generation", model="gpt2")
    set_seed(42)
    generator("Hello, I'm a language model,", max_length=30, num_return_sequences=5)
    # -> [{"generated_text": "Hello, I'm a language model, ..."}, ... 5 dicts]

The settings and the output are transformers 4.57's: the pipeline's defaults (256 new tokens, sampling at
temperature 0.7) under the model's own generation settings and its config's ``task_specific_params``; a string
gives a list of dicts, a list of strings a list of such lists. Text generation is the one task minigpt2 has.
"""
from __future__ import annotations

import copy
from dataclasses import fields

from .generation import GenerationConfig, set_seed

__all__ = ["pipeline", "TextGenerationPipeline", "set_seed"]

SUPPORTED_TASKS = ("text-generation",)


def pipeline(task=None, model=None, tokenizer=None, config=None, device=None, **kwargs):
    """A pipeline for ``task`` (only "text-generation"; also when ``task`` is None) with ``model`` (a minigpt2
    model, or a local directory / Hub name to load with AutoModelForCausalLM) and ``tokenizer`` (a tokenizer,
    a name to load, or None: the model's own). ``device`` may be None, "cpu" or -1 (minigpt2 runs on the CPU);
    other keyword arguments set generation defaults, as in transformers."""
    task = "text-generation" if task is None else task
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"pipeline task {task!r} is not available in minigpt2: the one supported task is "
                         f"'text-generation'")
    if model is None:
        raise ValueError("pipeline('text-generation') needs model=: a minigpt2 model or a checkpoint name or path")
    if device not in (None, "cpu", -1):
        raise ValueError(f"device={device!r}: minigpt2 runs on the CPU only (use device=None, 'cpu' or -1)")
    from .auto import AutoModelForCausalLM
    from .tokenizer import AutoTokenizer

    if isinstance(model, str):
        if tokenizer is None:
            tokenizer = model
        model = AutoModelForCausalLM.from_pretrained(model, config=config)
    if not hasattr(model, "generate"):
        raise TypeError(f"model must be a model that can generate (e.g. GPT2LMHeadModel) or a checkpoint name, got "
                        f"{type(model).__name__}")
    if tokenizer is None:
        tokenizer = getattr(model, "name_or_path", None) or None
        if tokenizer is None:
            raise ValueError("pipeline needs tokenizer= for a model that was not loaded from a checkpoint")
    if isinstance(tokenizer, str):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    return TextGenerationPipeline(model, tokenizer, **kwargs)


class TextGenerationPipeline:
    """Call it with a prompt (or a list of prompts) and generate()'s arguments; see ``pipeline``."""

    task = "text-generation"

    def __init__(self, model, tokenizer, **generate_kwargs):
        self.model, self.tokenizer = model, tokenizer
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
        task_params = (getattr(model.config, "task_specific_params", None) or {}).get(self.task, {})
        unknown = cfg.update(**{k: v for k, v in task_params.items() if k != "prefix"})
        if tokenizer.pad_token_id is not None and cfg.pad_token_id is None:
            cfg.pad_token_id = tokenizer.pad_token_id
        self.generation_config = cfg
        self._defaults = {**unknown, **generate_kwargs}

    def __call__(self, text_inputs, return_full_text=None, return_tensors=None, return_text=None,
                 clean_up_tokenization_spaces=None, skip_special_tokens=None, stop_sequence=None, **generate_kwargs):
        """Generate from one prompt (-> a list of dicts) or a list of prompts (-> a list of lists of dicts).
        Each dict holds "generated_text" (the prompt and the new text; only the new text with
        return_full_text=False), or "generated_token_ids" with return_tensors=True."""
        if return_full_text is not None and (return_text is not None or return_tensors is not None):
            raise ValueError("return_full_text is mutually exclusive with return_text and return_tensors")
        kwargs = {**self._defaults, **generate_kwargs}
        if stop_sequence is not None:
            kwargs["eos_token_id"] = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
        kwargs.setdefault("generation_config", self.generation_config)
        options = dict(full_text=return_full_text is not False, tensors=bool(return_tensors),
                       clean_up=True if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces,
                       skip_special=True if skip_special_tokens is None else skip_special_tokens)
        if isinstance(text_inputs, str):
            return self._one(text_inputs, kwargs, options)
        if isinstance(text_inputs, (list, tuple)) and all(isinstance(t, str) for t in text_inputs):
            return [self._one(text, kwargs, options) for text in text_inputs]
        raise TypeError(f"the text-generation pipeline takes a string or a list of strings (chat messages are "
                        f"not supported: GPT-2 has no chat template), got {type(text_inputs).__name__}")

    def _one(self, prompt, kwargs, options):
        enc = self.tokenizer(prompt, add_special_tokens=False, return_tensors="np")
        ids = enc["input_ids"] if enc["input_ids"].shape[1] else None  # an empty prompt starts from bos, as HF
        mask = enc["attention_mask"] if ids is not None else None
        sequences = self.model.generate(ids, attention_mask=mask, **kwargs)
        if hasattr(sequences, "sequences"):
            sequences = sequences.sequences
        decode = dict(skip_special_tokens=options["skip_special"],
                      clean_up_tokenization_spaces=options["clean_up"])
        prompt_chars = 0 if ids is None else len(self.tokenizer.decode(ids[0].tolist(), **decode))
        records = []
        for seq in sequences.tolist():
            if options["tensors"]:
                records.append({"generated_token_ids": seq})
                continue
            new_text = self.tokenizer.decode(seq, **decode)[prompt_chars:]
            records.append({"generated_text": prompt + new_text if options["full_text"] else new_text})
        return records
