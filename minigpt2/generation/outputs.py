"""What generate returns when return_dict_in_generate=True (HF's classes, fields in HF's order)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..outputs import ModelOutput


class Recorder:
    """What return_dict_in_generate keeps of each step: ``scores``, ``logits``, ``attentions``, ``hidden_states``,
    each when its ``output_*`` flag is set. Step one covers the prompt (attentions [N, H, T, T], hidden states
    [N, T, E]); every later step the one new position (HF's structure)."""

    NAMES = ("scores", "logits", "attentions", "hidden_states")

    def __init__(self, cfg):
        self.kept = {name: [] for name in self.NAMES if cfg.return_dict_in_generate and getattr(cfg, "output_" + name)}

    def add(self, name, value):
        if name in self.kept:
            self.kept[name].append(value)

    def outputs(self) -> dict:
        return {name: tuple(self.kept[name]) if name in self.kept else None for name in self.NAMES}


@dataclass
class GenerateDecoderOnlyOutput(ModelOutput):
    sequences: np.ndarray = None
    scores: Optional[Tuple[np.ndarray, ...]] = None  # per step, the processed scores [N, V]
    logits: Optional[Tuple[np.ndarray, ...]] = None  # per step, the model's raw logits [N, V] (output_logits)
    attentions: Optional[Tuple[Tuple[np.ndarray, ...], ...]] = None  # per step, per layer [N, H, new, all positions]
    hidden_states: Optional[Tuple[Tuple[np.ndarray, ...], ...]] = None  # per step, embeddings + per layer [N, new, E]
    past_key_values: Optional[object] = None  # the KV cache at the end (all tokens but the last)


@dataclass
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    sequences: np.ndarray = None
    sequences_scores: Optional[np.ndarray] = None  # with output_scores: each returned sequence's normalised score
    scores: Optional[Tuple[np.ndarray, ...]] = None  # per step, the processed log-probabilities [N * beams, V]
    logits: Optional[Tuple[np.ndarray, ...]] = None  # per step, the model's raw logits [N * beams, V]
    beam_indices: Optional[np.ndarray] = None  # int32 [N, new tokens]: the row of scores[t] of each token; -1 after
    attentions: Optional[Tuple[Tuple[np.ndarray, ...], ...]] = None  # per step, per layer, for every running beam
    hidden_states: Optional[Tuple[Tuple[np.ndarray, ...], ...]] = None  # per step, embeddings + per layer, every beam
    past_key_values: Optional[object] = None  # the beams' KV cache at the end
