"""Text generation: ``model.generate(input_ids, ...)`` with Hugging Face's arguments, defaults and results.

Every strategy is the same loop:

    logits = model(prompt)                      # once, filling the KV cache
    repeat:
        scores = processors(ids, logits[:, -1]) # penalties, then (when sampling) temperature, top-k, top-p
        token  = choose(scores)                 # argmax (greedy), a draw (sampling), or the best beams
        ids    = ids + [token]
        logits = model(token, past=cache)       # one token in, one position of work

    until every sequence has produced an end-of-sequence token (or a stop string) or ``max_length`` tokens exist.

Strategies (chosen by the arguments, as in HF):
    greedy          num_beams=1, do_sample=False   the most likely token each step
    sampling        num_beams=1, do_sample=True    a random token, drawn from the processed distribution
    beam search     num_beams>1                    keep the ``num_beams`` most likely sequences so far
                                                   (with do_sample=True: draw the candidates instead)

The package, one module per part:
    config.py       GenerationConfig: the settings, HF's names and defaults, and their checks
    processors.py   the logits processors and warpers, and build_logits_processors (generate's chain)
    sampling.py     drawing a token; set_seed
    greedy.py       the greedy / sampling loop
    beam.py         the beam search loop
    stopping.py     stopping criteria (HF's classes; stop strings)
    outputs.py      what return_dict_in_generate=True returns
    mixin.py        GenerationMixin: generate() and compute_transition_scores(), which drive the model
                    through one call (see mixin.py) and never import modeling.py

Greedy and beam search give the same tokens as transformers' ``generate`` on the same checkpoint. Sampling
uses NumPy's random generator, not torch's: reproducible for a given ``seed``, but different draws from HF.
"""
from ..layers import log_softmax, softmax
from .config import GENERATION_CONFIG_NAME, GenerationConfig, GenerationMode
from .mixin import GenerationMixin
from .outputs import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput
from .processors import (
    EncoderNoRepeatNGramLogitsProcessor,
    EncoderRepetitionPenaltyLogitsProcessor,
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    ExponentialDecayLengthPenalty,
    ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor,
    InfNanRemoveLogitsProcessor,
    LogitNormalization,
    LogitsProcessor,
    LogitsProcessorList,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    PrefixConstrainedLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopHLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    build_logits_processors,
    sampling_warpers,
)
from .sampling import sample, set_seed
from .stopping import (
    EosTokenCriteria,
    MaxLengthCriteria,
    MaxTimeCriteria,
    StoppingCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
)

__all__ = [
    "GenerationConfig",
    "GenerationMode",
    "GenerationMixin",
    "LogitsProcessor",
    "LogitsProcessorList",
    "RepetitionPenaltyLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "EncoderRepetitionPenaltyLogitsProcessor",
    "EncoderNoRepeatNGramLogitsProcessor",
    "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor",
    "NoBadWordsLogitsProcessor",
    "ForcedEOSTokenLogitsProcessor",
    "ForcedBOSTokenLogitsProcessor",
    "SequenceBiasLogitsProcessor",
    "PrefixConstrainedLogitsProcessor",
    "InfNanRemoveLogitsProcessor",
    "ExponentialDecayLengthPenalty",
    "SuppressTokensLogitsProcessor",
    "SuppressTokensAtBeginLogitsProcessor",
    "LogitNormalization",
    "TemperatureLogitsWarper",
    "TopHLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "MinPLogitsWarper",
    "TypicalLogitsWarper",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "GenerateDecoderOnlyOutput",
    "GenerateBeamDecoderOnlyOutput",
    "StoppingCriteria",
    "StoppingCriteriaList",
    "MaxLengthCriteria",
    "MaxTimeCriteria",
    "EosTokenCriteria",
    "StopStringCriteria",
    "build_logits_processors",
    "set_seed",
]
