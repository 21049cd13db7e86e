"""HF's Auto classes, for the one architecture minigpt2 has: every name resolves to a GPT-2 class.

    model = AutoModelForCausalLM.from_pretrained("gpt2")   # a GPT2LMHeadModel
    model = AutoModel.from_pretrained("./my-checkpoint")   # a GPT2Model
    model = AutoModelForSequenceClassification.from_pretrained("gpt2", num_labels=2)  # and ...ForTokenClassification,
                                                           # ...ForQuestionAnswering: the task heads
    config = AutoConfig.from_pretrained("distilgpt2")      # a GPT2Config

A checkpoint whose config.json names another model_type is refused with a clear error (by GPT2Config).
AutoTokenizer is in minigpt2.tokenizer.
"""
from __future__ import annotations

import copy

from .config import GPT2Config, as_gpt2_config
from .modeling import GPT2LMHeadModel, GPT2Model
from .task_heads import GPT2ForQuestionAnswering, GPT2ForSequenceClassification, GPT2ForTokenClassification

__all__ = ["AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification",
           "AutoModelForTokenClassification", "AutoModelForQuestionAnswering"]


class _Auto:
    """Not instantiated: use from_pretrained (or from_config), as in HF."""

    _target = None

    def __init__(self, *args, **kwargs):
        raise EnvironmentError(f"{type(self).__name__} is not instantiated directly: use "
                               f"{type(self).__name__}.from_pretrained(name_or_path)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load with the GPT-2 class: ``{target}.from_pretrained``. (A ``config=`` path is read, as the GPT-2
        classes of transformers read it; transformers' Auto classes ignore a path there and read the checkpoint's.)"""
        return cls._target.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)


class AutoConfig(_Auto):
    _target = GPT2Config

    @classmethod
    def for_model(cls, model_type: str = "gpt2", **kwargs) -> GPT2Config:
        if model_type != "gpt2":
            raise ValueError(f"model_type {model_type!r} is not available: minigpt2 implements only 'gpt2'")
        return GPT2Config(**kwargs)


class AutoModel(_Auto):
    _target = GPT2Model

    @classmethod
    def from_config(cls, config: GPT2Config, **kwargs):
        """A model with random weights for ``config``, in ``dtype`` (or ``torch_dtype``; "float32", "bfloat16",
        "float16", "int8", or torch's or NumPy's dtype objects), else in the config's own ``dtype`` as HF's
        from_config does ("auto": the config's too); float32 when neither names one. ``attn_implementation`` and
        ``trust_remote_code`` are accepted (one answer here: HF's eager formula, GPT-2's own code); another argument
        is a TypeError naming it. The model holds a copy of ``config``, as in HF, so
        converting it leaves the caller's config as it was. A transformers GPT2Config is read through its
        to_dict(); another model type is refused, naming it."""
        dtype, torch_dtype = kwargs.pop("dtype", None), kwargs.pop("torch_dtype", None)
        kwargs.pop("attn_implementation", None), kwargs.pop("trust_remote_code", None)  # (one answer each here)
        unknown = sorted(k for k in kwargs if k != "seed")
        if unknown:  # (the model's own __init__ would name an internal class)
            eight_bit = " (8-bit weights: dtype='int8')" if "load_in_8bit" in unknown else ""
            raise TypeError(f"{cls.__name__}.from_config got unexpected argument(s) {', '.join(map(repr, unknown))}"
                            f"{eight_bit}; it takes config, dtype (or torch_dtype), attn_implementation, "
                            f"trust_remote_code and seed")
        config = as_gpt2_config(config, "from_config")
        model = cls._target(copy.deepcopy(config), **kwargs)
        dtype = dtype if dtype is not None else torch_dtype
        if dtype is None or (isinstance(dtype, str) and dtype == "auto"):
            dtype = config.dtype
        return model if dtype is None else model.to(dtype)


class AutoModelForCausalLM(AutoModel):
    _target = GPT2LMHeadModel


class AutoModelForSequenceClassification(AutoModel):
    _target = GPT2ForSequenceClassification


class AutoModelForTokenClassification(AutoModel):
    _target = GPT2ForTokenClassification


class AutoModelForQuestionAnswering(AutoModel):
    _target = GPT2ForQuestionAnswering
