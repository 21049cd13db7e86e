"""minigpt2: GPT-2 in readable NumPy, with Hugging Face transformers' API and numbers.

    from minigpt2 import AutoModelForCausalLM, AutoTokenizer

The layers are in minigpt2.layers, the model loop in minigpt2.modeling; minigpt2.backend tells and
chooses which implementation (NumPy or the C core) runs the hot path.
"""


def _starting_the_command() -> bool:
    """Whether Python is importing minigpt2 to run ``python -m minigpt2`` (sys.argv[0] is "-m" while -m looks for
    its module) or the ``minigpt2`` command."""
    import os
    import sys

    argv0, orig = (sys.argv or [""])[0], getattr(sys, "orig_argv", None)
    if argv0 == "-m":
        return orig is None or ["-m", "minigpt2"] in [orig[i:i + 2] for i in range(len(orig))]
    return os.path.basename(argv0) in ("minigpt2", "minigpt2.exe")


def _interrupted_while_starting(signum, frame):  # see _quiet_ctrl_c_while_starting
    import os
    import signal
    import sys

    if not _starting_the_command():  # (another program, started with -m, that imported minigpt2: Python's own)
        signal.default_int_handler(signum, frame)
    sys.stderr.write("\n[interrupted]\n")
    sys.stderr.flush()
    os._exit(130)


def _quiet_ctrl_c_while_starting():
    """Started as ``python -m minigpt2`` (or the ``minigpt2`` command): Ctrl-C during the imports below exits 130
    with one line, as it does later, not with a traceback from deep inside an import. The command line
    (minigpt2/__main__.py) puts Python's own Ctrl-C back as soon as it runs."""
    import signal

    if _starting_the_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (not ignored)
        try:
            signal.signal(signal.SIGINT, _interrupted_while_starting)
        except ValueError:  # not the main thread
            pass


_quiet_ctrl_c_while_starting()
from . import backend  # noqa: E402
from .auto import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)
from .cache import KVCache
from .config import GPT2Config
from .generation import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    ForcedEOSTokenLogitsProcessor,
    GenerationConfig,
    LogitsProcessorList,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
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
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
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
    "KVCache",
    "LogitsProcessorList",
    "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor",
    "MinPLogitsWarper",
    "NoBadWordsLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "RepetitionPenaltyLogitsProcessor",
    "TemperatureLogitsWarper",
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
