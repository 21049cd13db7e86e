"""minigpt2: GPT-2 in readable NumPy, with Hugging Face transformers' API and numbers."""
from . import backend
from .config import GPT2Config
from .modeling import (
    GPT2DoubleHeadsModel,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPT2Model,
    GPT2PreTrainedModel,
)
from .cache import KVCache
from .tracing import trace

__version__ = "0.1.0"
