"""minigpt2: GPT-2 in readable NumPy, with Hugging Face transformers' API and numbers.

    from minigpt2 import AutoModelForCausalLM, AutoTokenizer

The layers are in minigpt2.layers, the model loop in minigpt2.modeling; minigpt2.backend tells and
chooses which implementation (NumPy or the C core) runs the hot path.
"""

from ._starting import quiet_ctrl_c_while_starting

quiet_ctrl_c_while_starting()  # (python -m minigpt2 only: Ctrl-C during the imports below is one line)
from . import backend  # noqa: E402
from .auto import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)
from .cache import DynamicCache, KVCache
from .config import GPT2Config
from .generation import (
    EncoderNoRepeatNGramLogitsProcessor,
    EncoderRepetitionPenaltyLogitsProcessor,
    EosTokenCriteria,
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    ExponentialDecayLengthPenalty,
    ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor,
    GenerationConfig,
    GenerationMixin,
    InfNanRemoveLogitsProcessor,
    LogitNormalization,
    LogitsProcessor,
    LogitsProcessorList,
    MaxLengthCriteria,
    MaxTimeCriteria,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    PrefixConstrainedLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    StopStringCriteria,
    StoppingCriteria,
    StoppingCriteriaList,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopHLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)
from .modeling import GPT2DoubleHeadsModel, GPT2LMHeadModel, GPT2Model, GPT2PreTrainedModel
from .pipelines import pipeline, set_seed
from .streamers import TextIteratorStreamer, TextStreamer
from .task_heads import GPT2ForQuestionAnswering, GPT2ForSequenceClassification, GPT2ForTokenClassification
from .tokenizer import (
    AddedToken,
    AutoTokenizer,
    BatchEncoding,
    GPT2Tokenizer,
    GPT2TokenizerFast,
    TokenStreamDecoder,
    VocabularyFileError,
    decode_stream,
    show_work,
)
from .tracing import trace

__version__ = "0.1.0"

__all__ = [
    "AddedToken",
    "AutoConfig",
    "AutoModel",
    "AutoModelForCausalLM",
    "AutoModelForQuestionAnswering",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoTokenizer",
    "BatchEncoding",
    "DynamicCache",
    "EosTokenCriteria",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "ExponentialDecayLengthPenalty",
    "ForcedBOSTokenLogitsProcessor",
    "ForcedEOSTokenLogitsProcessor",
    "GPT2Config",
    "GPT2DoubleHeadsModel",
    "GPT2ForQuestionAnswering",
    "GPT2ForSequenceClassification",
    "GPT2ForTokenClassification",
    "GPT2LMHeadModel",
    "GPT2Model",
    "GPT2PreTrainedModel",
    "GPT2Tokenizer",
    "GPT2TokenizerFast",
    "GenerationConfig",
    "GenerationMixin",
    "InfNanRemoveLogitsProcessor",
    "KVCache",
    "LogitNormalization",
    "LogitsProcessor",
    "LogitsProcessorList",
    "MaxLengthCriteria",
    "MaxTimeCriteria",
    "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor",
    "MinPLogitsWarper",
    "NoBadWordsLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "EncoderRepetitionPenaltyLogitsProcessor",
    "EncoderNoRepeatNGramLogitsProcessor",
    "PrefixConstrainedLogitsProcessor",
    "RepetitionPenaltyLogitsProcessor",
    "SequenceBiasLogitsProcessor",
    "StopStringCriteria",
    "StoppingCriteria",
    "StoppingCriteriaList",
    "SuppressTokensAtBeginLogitsProcessor",
    "SuppressTokensLogitsProcessor",
    "TemperatureLogitsWarper",
    "TopHLogitsWarper",
    "TextIteratorStreamer",
    "TextStreamer",
    "TokenStreamDecoder",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "TypicalLogitsWarper",
    "VocabularyFileError",
    "backend",
    "decode_stream",
    "show_work",
    "pipeline",
    "set_seed",
    "trace",
]
