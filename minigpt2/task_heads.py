"""GPT-2 with the task heads that are not language modelling, as in HF: a linear layer on the hidden states.

    GPT2ForSequenceClassification    one label per sequence, read at its last non-padding token
    GPT2ForTokenClassification       one label per token (e.g. named entities, parts of speech)
    GPT2ForQuestionAnswering         where the answer starts and ends in the text (extractive QA)

Each is GPT2Model plus its head's parameters (HF's names: ``score``, ``classifier``, ``qa_outputs``), loads any
GPT-2 checkpoint (a head the checkpoint lacks starts random, with a warning) and gives HF's outputs and losses.
Dropout before a head (HF's classifier_dropout) is the identity at inference, so it does not appear.
"""
from __future__ import annotations

import warnings

import numpy as np

from .checks import as_array, float_array, int_array
from .modeling import _return_dict, _WithTransformer, cross_entropy
from .outputs import QuestionAnsweringModelOutput, SequenceClassifierOutputWithPast, TokenClassifierOutput
from .pretrained import _callers_level

__all__ = ["GPT2ForSequenceClassification", "GPT2ForTokenClassification", "GPT2ForQuestionAnswering"]


class GPT2ForSequenceClassification(_WithTransformer):
    """GPT-2 with a linear classifier (``score``, no bias) read at the last non-padding token."""

    @classmethod
    def head_shapes(cls, config):
        return {"score.weight": (config.num_labels, config.n_embd)}

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, head_mask=None, inputs_embeds=None, labels=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, cache=None):
        """Class scores per sequence.  # input_ids [B, T] -> logits [B, num_labels]

        The last token that is not ``config.pad_token_id`` is scored (transformers 4.57's rule: the
        rightmost non-padding token, so left and right padding both work; 4.46 took the one before the
        first pad token). ``labels`` give the loss of
        ``config.problem_type`` (inferred as HF does when None). A single sequence without a batch
        axis (input_ids [T]) gives logits [num_labels].
        """
        cfg = self.config
        t = self._transformer(
            input_ids=input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
            token_type_ids=token_type_ids, position_ids=position_ids, head_mask=head_mask,
            inputs_embeds=inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, cache=cache)
        h = t.last_hidden_state
        if h.ndim not in (2, 3):
            raise ValueError(f"GPT2ForSequenceClassification takes input_ids of shape (batch, seq) or (seq,), "
                             f"got shape {h.shape[:-1]}")
        single = h.ndim == 2  # one sequence, no batch axis
        logits = h.reshape(-1, *h.shape[-2:]) @ self.params["score"]["weight"].T  # [B, T, num_labels]
        B, T = logits.shape[:2]
        if cfg.pad_token_id is None:
            if B != 1:  # transformers' words, then why and what to do
                raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined. "
                                 "GPT2ForSequenceClassification scores each row at its last token that is not "
                                 "config.pad_token_id; set it (e.g. model.config.pad_token_id = "
                                 "tokenizer.eos_token_id) or pass one sequence at a time")
            last = np.full(B, T - 1)
        elif input_ids is not None:
            ids = np.asarray(input_ids).reshape(B, T)
            # transformers 4.57's rule: the rightmost token that is not padding (left padding too); 0 if none
            last = (np.arange(T) * (ids != cfg.pad_token_id)).argmax(axis=-1)
        else:
            last = np.full(B, T - 1)
            warnings.warn(f"{type(self).__name__} will not detect padding tokens in `inputs_embeds`. Results may "
                          "be unexpected if using padding tokens in conjunction with `inputs_embeds.`",
                          stacklevel=_callers_level())
        pooled = logits[np.arange(B), last]  # [B, num_labels]
        loss = None if labels is None else self._loss(pooled, labels)
        if single:
            pooled = pooled[0]  # [num_labels]
        out = SequenceClassifierOutputWithPast(loss=loss, logits=pooled, past_key_values=t.past_key_values,
                                               hidden_states=t.hidden_states, attentions=t.attentions)
        return out if _return_dict(return_dict, cfg) else out.to_tuple()

    def _loss(self, pooled, labels):
        cfg = self.config
        labels = np.asarray(labels)
        if cfg.problem_type is None:
            if cfg.num_labels == 1:
                cfg.problem_type = "regression"
            elif np.issubdtype(labels.dtype, np.integer):
                cfg.problem_type = "single_label_classification"
            else:
                cfg.problem_type = "multi_label_classification"
        if cfg.problem_type in ("regression", "multi_label_classification") and labels.size != pooled.size:
            raise ValueError(f"labels has shape {labels.shape}; config.problem_type is {cfg.problem_type!r}, which "
                             f"takes one value per logit, shape {pooled.shape}; for one class index per sequence "
                             f"set config.problem_type = 'single_label_classification'")
        if cfg.problem_type == "regression":
            labels = float_array("labels", labels)
            diff = (np.squeeze(pooled) if cfg.num_labels == 1 else pooled) - np.squeeze(labels)
            return np.mean(diff * diff, dtype=np.float32)
        if cfg.problem_type == "single_label_classification":
            if not np.issubdtype(labels.dtype, np.integer) or labels.size != pooled.shape[0]:
                raise ValueError(f"labels has shape {labels.shape} and dtype {labels.dtype}; config.problem_type is "
                                 f"'single_label_classification' (set by you, or inferred from the first integer "
                                 f"labels), which takes one integer class index per sequence, shape "
                                 f"({pooled.shape[0]},). For multi-label targets (one 0/1 float per label) set "
                                 f"config.problem_type = 'multi_label_classification'")
            labels = int_array("labels", labels, high=cfg.num_labels, ignore_index=-100)
            return cross_entropy(pooled.reshape(-1, cfg.num_labels), labels.reshape(-1))
        if cfg.problem_type == "multi_label_classification":
            y = float_array("labels", labels).reshape(pooled.shape)
            # Binary cross-entropy with logits, in the overflow-free form.
            return np.mean(np.maximum(pooled, 0) - pooled * y + np.log1p(np.exp(-np.abs(pooled))), dtype=np.float32)
        raise ValueError(f"config.problem_type {cfg.problem_type!r} is not one of 'regression', "
                         f"'single_label_classification', 'multi_label_classification'")


class GPT2ForTokenClassification(_WithTransformer):
    """GPT-2 with a linear classifier (``classifier``, with bias) on every token's hidden state."""

    @classmethod
    def head_shapes(cls, config):
        return {"classifier.weight": (config.num_labels, config.n_embd), "classifier.bias": (config.num_labels,)}

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, head_mask=None, inputs_embeds=None, labels=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, cache=None):
        """Class scores per token.  # input_ids [B, T] -> logits [B, T, num_labels]

        ``labels`` [B, T] (class indices; -100 ignored, e.g. padding or a word's later pieces) give the mean
        cross-entropy over the labelled tokens.
        """
        cfg = self.config
        t = self._transformer(
            input_ids=input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
            token_type_ids=token_type_ids, position_ids=position_ids, head_mask=head_mask,
            inputs_embeds=inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, cache=cache)
        head = self.params["classifier"]
        logits = t.last_hidden_state @ head["weight"].T + head["bias"]  # [B, T, num_labels]
        loss = None
        if labels is not None:
            labels = int_array("labels", labels, high=cfg.num_labels, ignore_index=-100)
            if labels.size != logits[..., 0].size:
                raise ValueError(f"labels has shape {labels.shape}; token classification needs one label per "
                                 f"token, shape {logits.shape[:-1]}")
            loss = cross_entropy(logits.reshape(-1, cfg.num_labels), labels.reshape(-1))
        out = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=t.hidden_states, attentions=t.attentions)
        return out if _return_dict(return_dict, cfg) else out.to_tuple()


class GPT2ForQuestionAnswering(_WithTransformer):
    """GPT-2 with a linear layer (``qa_outputs``) scoring each token as the answer's start and as its end."""

    @classmethod
    def head_shapes(cls, config):
        return {"qa_outputs.weight": (2, config.n_embd), "qa_outputs.bias": (2,)}

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        """Start and end scores.  # input_ids [B, T] -> start_logits [B, T], end_logits [B, T]

        ``start_positions`` and ``end_positions`` [B] (token indices of the answer) give the mean of the two
        cross-entropies; as in HF, positions are clamped to [0, T]: past the sequence they are ignored, below 0
        they count as position 0.
        """
        cfg = self.config
        t = self._transformer(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        head = self.params["qa_outputs"]
        logits = t.last_hidden_state @ head["weight"].T + head["bias"]  # [B, T, 2]
        start_logits, end_logits = logits[..., 0], logits[..., 1]  # [B, T] each
        loss = None
        if start_positions is not None and end_positions is not None:
            T = start_logits.shape[-1]
            losses = []
            for name, positions, scores in (("start_positions", start_positions, start_logits),
                                            ("end_positions", end_positions, end_logits)):
                positions = as_array(name, positions)
                if np.issubdtype(positions.dtype, np.integer):  # HF clamps any integer position to [0, T]
                    positions = np.clip(positions, 0, T)
                positions = int_array(name, positions, high=T + 1).reshape(-1)
                if positions.size != scores.reshape(-1, T).shape[0]:
                    raise ValueError(f"{name} has {positions.size} entries; it needs one per sequence "
                                     f"({scores.reshape(-1, T).shape[0]})")
                # HF clamps to [0, T] and ignores T: an answer outside the (truncated) text teaches nothing
                losses.append(cross_entropy(scores.reshape(-1, T), positions, ignore_index=T))
            loss = np.float32((losses[0] + losses[1]) / 2)
        out = QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                           hidden_states=t.hidden_states, attentions=t.attentions)
        return out if _return_dict(return_dict, cfg) else out.to_tuple()
