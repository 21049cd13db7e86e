"""What generate returns when return_dict_in_generate=True (HF's classes, fields in HF's order)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..outputs import ModelOutput


@dataclass
class GenerateDecoderOnlyOutput(ModelOutput):
    sequences: np.ndarray = None
    scores: Optional[Tuple[np.ndarray, ...]] = None  # per step, the processed scores [N, V]
    logits: Optional[Tuple[np.ndarray, ...]] = None  # per step, the model's raw logits [N, V] (output_logits)
    past_key_values: Optional[object] = None  # the KV cache at the end (all tokens but the last)


@dataclass
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    sequences: np.ndarray = None
    sequences_scores: Optional[np.ndarray] = None  # with output_scores: each returned sequence's normalised score
    scores: Optional[Tuple[np.ndarray, ...]] = None  # per step, the processed log-probabilities [N * beams, V]
    logits: Optional[Tuple[np.ndarray, ...]] = None  # per step, the model's raw logits [N * beams, V]
    beam_indices: Optional[np.ndarray] = None  # [N, new tokens]: the row of scores[t] each token came from; -1 after
    past_key_values: Optional[object] = None  # the beams' KV cache at the end
