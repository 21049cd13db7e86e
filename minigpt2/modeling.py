"""GPT-2 models with Hugging Face's names, arguments and outputs: the forward pass reads like the math.

    GPT2Model                         tokens -> hidden states
    GPT2LMHeadModel                   + logits over the vocabulary (the head is wte, tied, or the checkpoint's
                                        own lm_head.weight with tie_word_embeddings=False), LM loss
    GPT2DoubleHeadsModel              + a multiple-choice head on one token per choice
    GPT2ForSequenceClassification     + a classifier on the last non-padding token

Parameters live in ``model.params``, a nested dict named like the checkpoint
(``params["h"][0]["attn"]["c_attn"]["weight"]``). Inputs are NumPy arrays (lists work too).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np

from . import tracing
from .backend import kernel
from .activations import ACTIVATIONS
from .cache import KVCache, one_cache
from .checks import (as_array, check_int, check_number, float_array, from_torch, int_array, is_int, mask_array,
                     nonempty, reshape_to)
from .config import GPT2Config
from .generation import GenerationMixin
from .layers import (
    MASK_VALUE,
    attention_scale,
    cross_attention,
    layer_norm,
    linear,
    lm_head,
    log_softmax,
    mlp,
    padding_bias,
    self_attention,
)
from .tracing import record
from .weights import widen
from .pretrained import Embedding, GPT2PreTrainedModel  # noqa: F401 (Embedding: its old home)
from .outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    GPT2DoubleHeadsModelOutput,
)

__all__ = [
    "GPT2PreTrainedModel",
    "GPT2Model",
    "GPT2LMHeadModel",
    "GPT2DoubleHeadsModel",
]


@kernel
def transformer_block(x, p, *, layer_idx, config, cache, mask, head_mask, output_attentions,
                      encoder_states=None, encoder_mask=None, scale=None):
    """One pre-norm transformer block.  # [B, T, E] -> [B, T, E]

    x = x + attention(layer_norm(x));  [x = x + cross_attention(layer_norm(x), encoder)];
    x = x + mlp(layer_norm(x)). Returns (x, self-attention probs, cross-attention probs or None).
    ``scale`` is the factor on q k^T (default: layers.attention_scale of this layer). (The C core runs a decoding
    step's block as one call, with the same kernels in the same order.)
    """
    eps, act = config.layer_norm_epsilon, ACTIVATIONS[config.activation_function]
    if scale is None:
        scale = attention_scale(config.head_dim, layer_idx, config.scale_attn_weights,
                                config.scale_attn_by_inverse_layer_idx)
    traced = f"h.{layer_idx}."  # the names minigpt2.trace() keeps this block's tensors under

    h = layer_norm(x, **p["ln_1"], eps=eps)
    a, probs = self_attention(h, **p["attn"], n_head=config.n_head, cache=cache, scale=scale, key_bias=mask,
                              head_mask=head_mask, output_attentions=output_attentions or tracing.active())
    x = x + a
    record(traced, ln_1=h, attn_probs=probs, attn=a, resid_mid=x)

    cross_probs = None
    if encoder_states is not None:
        h = layer_norm(x, **p["ln_cross_attn"], eps=eps)
        a, cross_probs = cross_attention(h, encoder_states, **p["crossattention"], n_head=config.n_head, scale=scale,
                                         key_bias=encoder_mask, head_mask=head_mask,
                                         output_attentions=output_attentions)
        x = x + a
        record(traced, crossattention=a)

    h = layer_norm(x, **p["ln_2"], eps=eps)
    m = mlp(h, **p["mlp"], act=act)
    x = x + m
    record(traced, ln_2=h, mlp=m, out=x)
    return x, probs, cross_probs


@kernel
def transformer_blocks(x, blocks, *, config, scales, caches, mask, head_masks, output_attentions,
                       output_hidden_states, encoder_states=None, encoder_mask=None):
    """The blocks in turn, each on the output of the one before.  # [B, T, E] -> [B, T, E]

    Block i gets its own parameters blocks[i], cache caches[i], head mask head_masks[i] and factor on q k^T
    scales[i]. Returns (x, the input of each block if output_hidden_states, the self-attention probabilities and
    the cross-attention probabilities of each block). (The C core runs a decoding step's blocks as one call.)
    """
    hidden, probs, cross_probs = [], [], []
    for i, p in enumerate(blocks):
        if output_hidden_states:
            hidden.append(x)
        x, a, c = transformer_block(x, p, layer_idx=i, config=config, scale=scales[i], cache=caches[i], mask=mask,
                                    head_mask=head_masks[i], output_attentions=output_attentions,
                                    encoder_states=encoder_states, encoder_mask=encoder_mask)
        probs.append(a)
        cross_probs.append(c)
    return x, hidden, probs, cross_probs


class GPT2Model(GPT2PreTrainedModel):
    """The bare GPT-2 transformer: token and position embeddings, n_layer blocks, a final layer norm."""

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, head_mask=None, inputs_embeds=None, encoder_hidden_states=None,
                encoder_attention_mask=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache_position=None, cache=None):
        """Hidden states of every position.  # input_ids [B, T] -> last_hidden_state [B, T, E]

        With ``past_key_values`` (P cached positions; ``cache=``, transformers 5's name, is the same argument),
        ``input_ids`` holds only the T new tokens and positions continue at P (transformers' ``cache_position`` may
        be given: it must be [P, ..., P + T - 1]).
        ``attention_mask`` is HF's [B, P + T] of 1s (tokens) and 0s (padding), or its 4-D
        float form [B, 1, T, P + T], the bias added to the attention scores (0 to attend, the float32 minimum to
        mask: attention_bias_4d). Returns a BaseModelOutputWithPastAndCrossAttentions.

        Positional arguments come in transformers 4.46's order, which transformers 5.4 on shares up to position_ids
        (5.x has no head_mask: inputs_embeds is its sixth); 4.57 and 5.0 to 5.3 take cache_position third. Changing
        the order would break the calls written for the others, so pass what follows input_ids and past_key_values
        by name (a cache_position or embeddings given in the other versions' places are named in the error).
        """
        cfg, p = self.config, self.params
        past_key_values = one_cache(past_key_values, cache)
        use_cache = cfg.use_cache if use_cache is None else use_cache
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = cfg.use_return_dict if return_dict is None else return_dict

        # Inputs may have extra leading axes (GPT2DoubleHeadsModel: [B, choices, T]); the blocks see [B, T].
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds"
                             + _embeds_as_head_mask_hint(input_ids, inputs_embeds, head_mask, cfg.n_embd))
        if isinstance(input_ids, Mapping) and "input_ids" in input_ids:  # the tokenizer's whole output
            raise TypeError(f"input_ids is the tokenizer's output ({type(input_ids).__name__} of "
                            f"{', '.join(map(str, input_ids))}): unpack it, model(**inputs), so that the ids and the "
                            f"attention mask go in by name")
        if input_ids is not None:
            input_ids = int_array("input_ids", input_ids, high=cfg.vocab_size, min_ndim=1)
            input_shape = nonempty("input_ids", input_ids.shape)
            inputs_embeds = widen(p["wte"]["weight"][input_ids.reshape(-1, input_shape[-1])])  # [B, T, E]
        else:
            inputs_embeds = float_array("inputs_embeds", inputs_embeds)
            if inputs_embeds.ndim < 2 or inputs_embeds.shape[-1] != cfg.n_embd:
                raise ValueError(f"inputs_embeds must have shape (batch, seq, n_embd={cfg.n_embd}), "
                                 f"got {inputs_embeds.shape}")
            input_shape = nonempty("inputs_embeds", inputs_embeds.shape[:-1])
            inputs_embeds = inputs_embeds.reshape(-1, input_shape[-1], cfg.n_embd)
        B, T = inputs_embeds.shape[:2]

        past, P = KVCache.check(past_key_values, n_layer=cfg.n_layer, batch=B, n_head=cfg.n_head, head_dim=cfg.head_dim)
        if P + T > cfg.n_positions:
            raise ValueError(f"the sequence is {P + T} tokens long ({P} cached + {T} new), but this model has "
                             f"position embeddings for n_positions={cfg.n_positions}")
        KVCache.check_cache_position(cache_position, P, T)

        # Embeddings: token + position (+ token type, which GPT-2 embeds with the token table).
        if position_ids is None:
            position_ids = np.arange(P, P + T)[None, :]  # [1, T]
        else:
            position_ids = int_array("position_ids", position_ids, high=cfg.n_positions)
            position_ids = reshape_to("position_ids", position_ids, (B, T))
        x = inputs_embeds + widen(p["wpe"]["weight"][position_ids])  # [B, T, E]
        if token_type_ids is not None:
            token_type_ids = int_array("token_type_ids", token_type_ids, high=cfg.vocab_size)
            x = x + widen(p["wte"]["weight"][reshape_to("token_type_ids", token_type_ids, (B, T))])

        # Masks become additive biases on the attention scores: 0 to attend, MASK_VALUE for padding.
        mask = None
        if attention_mask is not None and np.ndim(attention_mask) == 4:
            mask = attention_bias_4d(attention_mask, B, P, T)  # [B or 1, 1, T or 1, P + T]
        elif attention_mask is not None:
            mask = padding_bias(padding_mask_2d(attention_mask, B, P, T))  # [B, 1, 1, P + T]
        encoder_mask = None
        if encoder_hidden_states is not None:
            if not cfg.add_cross_attention:
                raise ValueError("encoder_hidden_states needs a model built with config.add_cross_attention=True")
            encoder_hidden_states = float_array("encoder_hidden_states", encoder_hidden_states)
            if encoder_hidden_states.shape[0] != B or encoder_hidden_states.ndim != 3 \
                    or encoder_hidden_states.shape[2] != cfg.n_embd:
                raise ValueError(f"encoder_hidden_states must have shape (batch={B}, encoder_seq, "
                                 f"n_embd={cfg.n_embd}), got {encoder_hidden_states.shape}")
            if encoder_attention_mask is not None:
                S = encoder_hidden_states.shape[1]
                encoder_attention_mask = mask_array("encoder_attention_mask", encoder_attention_mask)
                encoder_attention_mask = reshape_to("encoder_attention_mask", encoder_attention_mask, (B, S))
                encoder_mask = ((1.0 - encoder_attention_mask) * MASK_VALUE)[:, None, None, :]  # [B, 1, 1, S]
        # (one head mask scales self- and cross-attention: with encoder states, no mask per key)
        K = 1 if encoder_hidden_states is not None else P + T
        head_masks = _head_masks(head_mask, cfg.n_layer, cfg.n_head, scores_shape=(B, T, K))
        record(embeddings=x)

        # The cache: room for T more positions after the P it holds (made once every input has passed its check).
        buffers, caches = KVCache.prepare(past, P, n_layer=cfg.n_layer, batch=B, n_head=cfg.n_head,
                                          head_dim=cfg.head_dim, new_tokens=T, max_positions=cfg.n_positions)

        # The blocks.
        scales = [attention_scale(cfg.head_dim, i, cfg.scale_attn_weights, cfg.scale_attn_by_inverse_layer_idx)
                  for i in range(cfg.n_layer)]
        x, all_hidden, all_attn, all_cross = transformer_blocks(
            x, p["h"], config=cfg, scales=scales, caches=caches, mask=mask, head_masks=head_masks,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            encoder_states=encoder_hidden_states, encoder_mask=encoder_mask)
        x = layer_norm(x, **p["ln_f"], eps=cfg.layer_norm_epsilon)
        record(ln_f=x)
        x = x.reshape(*input_shape, cfg.n_embd)
        if output_hidden_states:
            all_hidden.append(x)

        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x,
            past_key_values=KVCache.returned(past_key_values, buffers, P + T, use_cache),
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attn) if output_attentions else None,
            # Only when cross-attention ran: without encoder states there are no cross-attention weights.
            cross_attentions=tuple(all_cross) if output_attentions and encoder_hidden_states is not None else None,
        )
        return out if return_dict else out.to_tuple()


class _WithTransformer(GPT2PreTrainedModel):
    """A task head on top of GPT2Model: the transformer's parameters and the head's share one dict."""

    def __init__(self, config: GPT2Config = None, params: dict = None, *, seed=None):
        super().__init__(config, params, seed=seed)
        self.transformer = GPT2Model(self.config, self.params)

    def _transformer(self, **kwargs):
        return self.transformer.forward(**kwargs, return_dict=True)


class GPT2LMHeadModel(GenerationMixin, _WithTransformer):
    """GPT-2 with the language-modelling head: logits = hidden_states @ wte^T (the head is tied to wte; with
    config.tie_word_embeddings false, the checkpoint's own lm_head.weight [V, E] instead of wte)."""

    uses_lm_head = True

    @classmethod
    def head_shapes(cls, config):
        return _untied_head_shape(config)

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, head_mask=None, inputs_embeds=None, encoder_hidden_states=None,
                encoder_attention_mask=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, logits_to_keep=0, cache_position=None, cache=None,
                **loss_options):
        """Next-token logits.  # input_ids [B, T] -> logits [B, T, V]

        ``labels`` [B, T] (usually input_ids itself) give the mean cross-entropy of predicting token
        t+1 from positions <= t; labels of -100 are ignored. ``logits_to_keep`` (HF's): 0 computes the
        logits at every position, n > 0 at the last n only (generate uses 1), a 1-D array at those positions.
        ``loss_options``: HF's num_items_in_batch, ignore_index and shift_labels (see shifted_lm_loss).
        """
        t = self._transformer(
            input_ids=input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
            token_type_ids=token_type_ids, position_ids=position_ids, head_mask=head_mask,
            inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, use_cache=use_cache,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            cache_position=cache_position, cache=cache)
        logits = lm_head(kept_positions(t.last_hidden_state, logits_to_keep), self._lm_head_weight())
        unknown = set(loss_options) - {"num_items_in_batch", "ignore_index", "shift_labels"}
        if unknown:  # (transformers ignores unknown keywords silently: a misspelt option would change nothing)
            raise TypeError(f"GPT2LMHeadModel.forward got unexpected keyword arguments {sorted(unknown)}; besides "
                            f"its named arguments it takes HF's loss options num_items_in_batch, ignore_index, "
                            f"shift_labels" + ("; num_logits_to_keep is the old name of logits_to_keep"
                                               if "num_logits_to_keep" in unknown else ""))
        _check_all_logits_kept(labels, logits, t.last_hidden_state, logits_to_keep)
        loss = None if labels is None else shifted_lm_loss(logits, labels, self.config.vocab_size, **loss_options)
        out = CausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=t.past_key_values, hidden_states=t.hidden_states,
            attentions=t.attentions, cross_attentions=t.cross_attentions)
        return out if _return_dict(return_dict, self.config) else out.to_tuple()

    def loss_and_grad(self, input_ids, labels=None, attention_mask=None, token_type_ids=None, position_ids=None,
                      head_mask=None, rng=None, num_items_in_batch=None, ignore_index=-100, shift_labels=None):
        """The LM loss and its gradient for every parameter: ``(loss, grads)``.  # input_ids [B, T]

        ``grads`` is keyed exactly like ``state_dict()``; the tied head's gradient is added into wte's (an untied
        head, lm_head.weight, has its own). ``labels`` default to input_ids (-100 ignored). In training mode
        (``model.train()``) dropout is applied, drawn from ``rng`` (a numpy Generator or an int seed).
        ``attention_mask`` as in forward: [B, T] of 0/1, or the 4-D float bias added to the attention scores.
        HF's loss options, as in forward: ``num_items_in_batch`` (the loss is the sum over the counted labels /
        it), ``ignore_index`` (the label not counted, -100 by default), ``shift_labels`` (the targets of the
        positions themselves, already shifted: ``labels`` are then not read). See minigpt2/training/grad.py.
        """
        from .training.grad import model_loss_and_grad

        with np.errstate(all="ignore"):  # (the backward's products: as the kernels', backend.kernel)
            return model_loss_and_grad(self, input_ids, labels=labels, attention_mask=attention_mask,
                                       token_type_ids=token_type_ids, position_ids=position_ids,
                                       head_mask=head_mask, rng=rng, num_items_in_batch=num_items_in_batch,
                                       ignore_index=ignore_index, shift_labels=shift_labels)


class GPT2DoubleHeadsModel(GenerationMixin, _WithTransformer):
    """GPT-2 with the LM head and a multiple-choice head (HF's SequenceSummary) on one token per choice."""

    uses_lm_head = True

    @classmethod
    def _own_config(cls, config):
        """One score per choice, as HF: num_labels is 1. HF sets it on the config it is given; this sets it on
        a copy, so the caller's config (maybe shared with a classifier) keeps its num_labels."""
        if config.num_labels != 1:
            config = copy.deepcopy(config)
            config.num_labels = 1
        return config

    @classmethod
    def head_shapes(cls, config):
        shapes = _untied_head_shape(config)  # (HF's order: lm_head, then the multiple-choice head)
        if not config.summary_use_proj:
            return shapes
        n_out = config.num_labels if config.summary_proj_to_labels and config.num_labels > 0 else config.n_embd
        return {**shapes, "multiple_choice_head.summary.weight": (n_out, config.n_embd),
                "multiple_choice_head.summary.bias": (n_out,)}

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, head_mask=None, inputs_embeds=None, mc_token_ids=None, labels=None,
                mc_labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache_position=None, cache=None):
        """LM logits and one score per choice.  # input_ids [B, C, T] -> logits [B, C, T, V], mc_logits [B, C]

        ``mc_token_ids`` [B, C]: the position of the classification token in each choice (default: the
        last); ``mc_labels`` [B]: the right choice, giving mc_loss; ``labels``: the LM loss.
        ``logits_to_keep`` as for GPT2LMHeadModel (LM logits only).
        """
        t = self._transformer(
            input_ids=input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
            token_type_ids=token_type_ids, position_ids=position_ids, head_mask=head_mask,
            inputs_embeds=inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, cache_position=cache_position, cache=cache)
        h = t.last_hidden_state  # [B, C, T, E]
        logits = lm_head(kept_positions(h, logits_to_keep), self._lm_head_weight())
        _check_all_logits_kept(labels, logits, h, logits_to_keep)
        mc_logits = sequence_summary(h, mc_token_ids, self.params.get("multiple_choice_head"), self.config)
        if mc_logits.shape[-1] == 1:
            mc_logits = mc_logits[..., 0]  # [B, C]
        mc_loss = None
        if mc_labels is not None:
            mc_labels = int_array("mc_labels", mc_labels, high=mc_logits.shape[-1], ignore_index=-100)
            if mc_labels.size * mc_logits.shape[-1] != mc_logits.size:
                raise ValueError(f"mc_labels has shape {mc_labels.shape}; expected one label per row of mc_logits "
                                 f"{mc_logits.shape}, i.e. shape {mc_logits.shape[:-1] or (1,)}")
            mc_loss = cross_entropy(mc_logits.reshape(-1, mc_logits.shape[-1]), mc_labels.reshape(-1))
        loss = None if labels is None else shifted_lm_loss(logits, labels, self.config.vocab_size)
        out = GPT2DoubleHeadsModelOutput(
            loss=loss, mc_loss=mc_loss, logits=logits, mc_logits=mc_logits, past_key_values=t.past_key_values,
            hidden_states=t.hidden_states, attentions=t.attentions)
        return out if _return_dict(return_dict, self.config) else out.to_tuple()


# -- heads and losses ----------------------------------------------------------------------------------

def _untied_head_shape(config) -> dict:
    """The LM head's own matrix, which a model has only when config.tie_word_embeddings is false (HF's
    nn.Linear weight, [vocab_size, n_embd], the layout of wte); tied, the head is wte and has none."""
    return {} if config.tie_word_embeddings else {"lm_head.weight": (config.vocab_size, config.n_embd)}


def kept_positions(h, logits_to_keep):
    """The positions whose logits are wanted (HF's logits_to_keep).  # [..., T, E] -> [..., T', E]

    An int n keeps the last n (0: all); a 1-D array is indexed as torch indexes, -1 being the last position."""
    if is_int(logits_to_keep):
        n = check_int("logits_to_keep", logits_to_keep, low=0)
        return h if n == 0 else h[..., -n:, :]
    T = h.shape[-2]
    positions = as_array("logits_to_keep", logits_to_keep)
    if np.issubdtype(positions.dtype, np.integer):
        positions = np.where((-T <= positions) & (positions < 0), positions + T, positions)
    positions = int_array("logits_to_keep", positions, high=T)
    if positions.ndim != 1:
        raise ValueError(f"logits_to_keep must be an int or a 1-D array of positions, got shape {positions.shape}")
    return h[..., positions, :]


def _check_all_logits_kept(labels, logits, h, logits_to_keep):
    """The LM loss needs the logits of every position: a clear error when logits_to_keep kept fewer."""
    if labels is not None and logits.shape[-2] != h.shape[-2]:
        raise ValueError(f"labels need the logits of every position, but logits_to_keep={logits_to_keep!r} keeps "
                         f"{logits.shape[-2]} of the {h.shape[-2]}: leave logits_to_keep at 0 to compute the loss")


def sequence_summary(h, cls_index, params, config):
    """HF's SequenceSummary: pick one vector per sequence, project it, activate.  # [B, C, T, E] -> [B, C, n]"""
    kind = config.summary_type
    if kind == "last":
        s = h[:, -1]  # HF indexes axis 1 here, whatever it holds
    elif kind == "first":
        s = h[:, 0]
    elif kind == "mean":
        s = h.mean(axis=1)
    else:  # "cls_index"
        T = h.shape[-2]
        if cls_index is None:
            cls_index = np.full(h.shape[:-2], T - 1)
        cls_index = int_array("mc_token_ids", cls_index, high=T)
        cls_index = reshape_to("mc_token_ids", cls_index, h.shape[:-2])
        s = np.take_along_axis(h, cls_index[..., None, None], axis=-2)[..., 0, :]  # [B, C, E]
    if params is not None:  # summary_use_proj: nn.Linear, weight (out, in)
        s = s @ params["summary"]["weight"].T + params["summary"]["bias"]
    if config.summary_activation is not None:
        s = ACTIVATIONS[config.summary_activation](s)
    return s


def cross_entropy(logits, labels, ignore_index=-100, num_items_in_batch=None):
    """Mean of -log softmax(logits)[label] over the labels that are not ignore_index.  # [N, V], [N] -> []

    With every label ignored the mean is over nothing: NaN, as in torch. With ``num_items_in_batch`` (HF's
    Trainer: the labels counted over a whole gradient-accumulation step) the sum divided by it instead.
    """
    keep = labels != ignore_index
    logits, labels = logits[keep], labels[keep]
    picked = log_softmax(logits)[np.arange(len(labels)), labels]
    if num_items_in_batch is not None:
        a = as_array("num_items_in_batch", num_items_in_batch)
        n = check_number("num_items_in_batch", a.item() if a.size == 1 else num_items_in_batch, low=0, low_open=True)
        return np.float32(-picked.sum(dtype=np.float64) / n)
    if picked.size == 0:
        return np.float32(np.nan)
    return np.float32(-picked.mean(dtype=np.float64))


def shifted_lm_loss(logits, labels, vocab_size, num_items_in_batch=None, ignore_index=-100, shift_labels=None):
    """Cross-entropy of predicting token t+1 at position t.  # [..., T, V], [..., T] -> []

    HF's options: ``shift_labels`` [..., T] are the targets of the positions themselves, already shifted (``labels``
    are then not read); ``num_items_in_batch`` and ``ignore_index`` as in cross_entropy.
    """
    ignore_index = check_int("ignore_index", ignore_index)  # (torch's cross_entropy takes only an integer)
    name, targets = ("labels", labels) if shift_labels is None else ("shift_labels", shift_labels)
    targets = int_array(name, targets, high=vocab_size, ignore_index=ignore_index)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"{name} must have shape {logits.shape[:-1]} (one per input token), got {targets.shape}")
    if shift_labels is None:
        logits, targets = logits[..., :-1, :], targets[..., 1:]
    return cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index, num_items_in_batch)


# -- input checking ------------------------------------------------------------------------------------

def attention_bias_4d(attention_mask, B, P, T):
    """The bias a 4-D attention_mask adds to the attention scores.  # [B or 1, 1, T or 1, P + T] -> the same, float32

    The mask is transformers' "inverted" form, the bias itself: 0 lets a query attend to a key, a large negative
    number masks it (np.finfo(np.float32).min, as transformers builds its masks; -inf; -1e4 ...), other values are
    added as they are. transformers' eager attention reads a 4-D mask so for GPT-2, and GPT-2's causal mask still
    applies on top. -inf is read as the float32 minimum: a query left with no key to attend to spreads its
    attention over the keys up to itself, as with a 2-D mask, instead of becoming NaN (transformers: NaN, or, where
    the mask leaves later keys at 0, attention to those). A boolean or integer 4-D mask is refused: transformers'
    eager attention adds its 1s and 0s to the scores, which masks nothing (its sdpa attention masks with them).
    """
    m = as_array("attention_mask", attention_mask)
    if not np.issubdtype(m.dtype, np.floating):
        raise ValueError(f"a 4-D attention_mask is added to the attention scores as it is (transformers' eager "
                         f"attention does the same): it must be floats, 0 to attend and a large negative number to "
                         f"mask, e.g. np.where(allowed, 0.0, np.finfo(np.float32).min); got dtype {m.dtype}, whose "
                         f"1s and 0s would mask nothing")
    if m.shape[0] not in (1, B) or m.shape[1] != 1 or m.shape[2] not in (1, T) or m.shape[3] != P + T:
        raise ValueError(f"a 4-D attention_mask must have shape (batch={B} or 1, 1, query={T} or 1, "
                         f"key={P + T}: cached + new tokens), got {m.shape}")
    if np.isnan(m).any() or np.isposinf(m).any():
        raise ValueError("the 4-D attention_mask contains NaN or +inf; mask with a large negative number instead")
    with np.errstate(over="ignore"):  # float64's minimum becomes -inf, then the float32 minimum
        return np.maximum(m.astype(np.float32), MASK_VALUE)


def padding_mask_2d(attention_mask, B, P, T):
    """HF's attention_mask of 1s (tokens) and 0s (padding) as float32 [B, P + T], or a clear error.

    The error says more where the mask given looks like something else: a cache_position ([P, ..., P + T - 1]:
    transformers 4.57 and 5.0 to 5.3 take it third, positionally, where minigpt2, transformers 4.46 and 5.4 on take
    attention_mask), or a mask longer than the cache, as a loop expecting the cache to have grown passes it."""
    given = attention_mask
    try:
        attention_mask = mask_array("attention_mask", attention_mask)
        if attention_mask.size != B * (P + T) or attention_mask.shape[-1] != P + T:
            raise ValueError(f"attention_mask has shape {attention_mask.shape}; expected (batch={B}, "
                             f"cached + new tokens={P + T}), 1 for tokens to attend to and 0 for padding (or "
                             f"the 4-D float bias (batch, 1, {T}, {P + T}) to add to the attention scores)"
                             + (f"; {KVCache.NOT_GROWN}" if P and attention_mask.shape[-1] > P + T else ""))
    except ValueError as error:
        given = np.asarray(from_torch(given)) if hasattr(given, "__array__") else given
        if np.ndim(given) == 1 and np.array_equal(given, np.arange(P, P + T)):
            raise ValueError(f"{error}. It holds [{P}, ..., {P + T - 1}], the new tokens' cache_position: "
                             f"transformers 4.57 (and 5.0 to 5.3) take cache_position third, where minigpt2, as "
                             f"transformers 4.46 and 5.4 on, takes attention_mask: pass cache_position=... by name"
                             ) from None
        raise
    return attention_mask.reshape(B, P + T)


def _embeds_as_head_mask_hint(input_ids, inputs_embeds, head_mask, n_embd) -> str:
    """More for the error "pass exactly one of input_ids and inputs_embeds" when head_mask looks like embeddings:
    transformers 5 has no head_mask and takes inputs_embeds sixth, positionally, where minigpt2 (as transformers
    4) takes head_mask."""
    if input_ids is None and inputs_embeds is None and np.ndim(head_mask) >= 3 \
            and np.shape(head_mask)[-1] == n_embd:
        return (f"; the head_mask given has the shape of embeddings {np.shape(head_mask)}: transformers 5 takes "
                f"inputs_embeds sixth, where minigpt2, as transformers 4, takes head_mask: pass inputs_embeds=... by "
                f"name")
    return ""


def _return_dict(return_dict, config):
    return config.use_return_dict if return_dict is None else return_dict


def _head_masks(head_mask, n_layer, n_head, scores_shape=None):
    """HF's head_mask as one multiplier of the attention probabilities per layer (or None): [H] (every layer) or
    [L, H] give [1, H, 1, 1] each; with ``scores_shape`` (B, T, K) known, HF's 5-D form [L, B or 1, H, T or 1, K or 1]
    (a mask per sequence, query and key) gives [B or 1, H, T or 1, K or 1] each."""
    if head_mask is None:
        return [None] * n_layer
    m = float_array("head_mask", head_mask)
    if m.shape == (n_head,):
        m = np.broadcast_to(m, (n_layer, n_head))
    if m.shape == (n_layer, n_head):
        return [row[None, :, None, None] for row in m]
    if scores_shape is not None and m.ndim == 5 and m.shape[0] == n_layer and m.shape[2] == n_head and all(
            m.shape[axis] in (1, size) for axis, size in zip((1, 3, 4), scores_shape)):
        return list(m)
    five_d = ""
    if scores_shape is not None:
        B, T, K = (f"{name}={size} or 1" if size != 1 else f"{name}=1"
                   for name, size in zip(("batch", "query", "key"), scores_shape))
        five_d = f", or (n_layer={n_layer}, {B}, n_head={n_head}, {T}, {K})"
    raise ValueError(f"head_mask must have shape (n_head={n_head},) or (n_layer={n_layer}, n_head={n_head}){five_d}, "
                     f"got {m.shape}")
