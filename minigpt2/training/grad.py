"""The whole model's forward pass, keeping what the backward needs, and the backward pass.

    loss, grads = loss_and_grad(params, config, input_ids, labels)   # grads nested like params

The forward is modeling.py's, restated without the KV cache and with dropout: the same layer functions
(layers.linear, layer_norm, the activations), called in the same order, with every intermediate the
backward needs kept in a plain dict per block. The backward walks the blocks in reverse and calls the
per-layer backward functions of minigpt2/backward.py. Nothing here is clever: read it beside
modeling.transformer_block.
"""
from __future__ import annotations

import numpy as np

from .. import backward as bw
from ..activations import ACTIVATIONS
from ..layers import (attention_probs, attention_scale, chunks, layer_norm, linear, merge_heads, padding_bias,
                      split_heads)
from ..weights import lm_head_weight

__all__ = ["loss_and_grad", "forward", "backward"]

# Rows of the [N, V] logits handled at once by the loss: bounds the memory of the head to ~LOSS_ROWS * V floats.
LOSS_ROWS = 1024


def _linear(x, params):
    """layers.linear on [..., in] as one [N, in] product (a stack of [T, in] products is several times slower)."""
    return linear(x.reshape(-1, x.shape[-1]), **params).reshape(*x.shape[:-1], -1)


def _dropout(x, p, rng):
    """Zero each element with probability p and scale the rest by 1/(1-p). Returns (y, keep or None)."""
    if rng is None or p == 0.0:
        return x, None
    keep = (rng.random(x.shape, dtype=np.float32) >= p).astype(x.dtype)
    return x * keep * x.dtype.type(bw.dropout_scale(p)), keep


def forward(params, config, input_ids, labels, *, attention_mask=None, token_type_ids=None, position_ids=None,
            head_mask=None, rng=None, with_head_grad=False, num_items_in_batch=None, ignore_index=-100,
            shift_labels=None):
    """The loss, and the tape (every saved intermediate) for backward().

    input_ids, labels: int arrays [B, T] (labels equal to ignore_index are ignored; label t+1 is predicted at t);
    shift_labels [B, T]: the targets of the positions themselves, already shifted (labels are then not read);
    attention_mask: [B, T] of 0/1, or the 4-D float bias [B or 1, 1, T or 1, T] added to the attention scores;
    head_mask: a list of n_layer [1, H, 1, 1] multipliers or None;
    rng: a numpy Generator drawing the dropout masks, or None for no dropout (evaluation).
    with_head_grad: compute the head's gradients with the loss (from the same logits; backward() needs
    them and otherwise computes the logits a second time). num_items_in_batch: the n of the mean (default: the
    labels that are not ignore_index).
    """
    cfg, p = config, params
    B, T = input_ids.shape
    wte, wpe = p["wte"]["weight"], p["wpe"]["weight"]
    dtype = wte.dtype
    act = ACTIVATIONS[cfg.activation_function]
    tape = {"input_ids": input_ids, "token_type_ids": token_type_ids, "blocks": [], "rng": rng is not None}

    # Embeddings: token + position (+ token type, looked up in the token table), then dropout.
    if position_ids is None:
        position_ids = np.broadcast_to(np.arange(T), (B, T))
    tape["position_ids"] = position_ids
    x = wte[input_ids] + wpe[position_ids]  # [B, T, E]
    if token_type_ids is not None:
        x = x + wte[token_type_ids]
    x, tape["embd_keep"] = _dropout(x, cfg.embd_pdrop, rng)

    key_bias = None  # added to the scores: the backward needs nothing of it (the gradient passes through an addition)
    if attention_mask is not None and attention_mask.ndim == 4:
        key_bias = attention_mask.astype(dtype)  # [B or 1, 1, T or 1, T]
    elif attention_mask is not None:
        key_bias = padding_bias(attention_mask, dtype)  # [B, 1, 1, T]

    for i, blk in enumerate(p["h"]):
        s = {"layer_idx": i}
        scale = dtype.type(attention_scale(cfg.head_dim, i, cfg.scale_attn_weights,
                                           cfg.scale_attn_by_inverse_layer_idx))
        hm = None if head_mask is None else head_mask[i]
        # x = x + dropout(attention(layer_norm(x)))
        s["ln_1_in"] = x
        h = layer_norm(x, **blk["ln_1"], eps=cfg.layer_norm_epsilon)
        qkv = _linear(h, blk["attn"]["c_attn"])  # [B, T, 3E]
        q, k, v = (split_heads(part, cfg.n_head) for part in chunks(qkv, 3))  # 3 x [B, H, T, D]
        probs = attention_probs(q, k, scale=scale, causal=True, key_bias=key_bias)  # [B, H, T, T]
        used, s["attn_keep"] = _dropout(probs, cfg.attn_pdrop, rng)
        if hm is not None:
            used = used * hm
        merged = merge_heads(used @ v)  # [B, T, E]
        a = _linear(merged, blk["attn"]["c_proj"])
        a, s["attn_resid_keep"] = _dropout(a, cfg.resid_pdrop, rng)
        s["attn"] = {"x": h, "q": q, "k": k, "v": v, "probs": probs, "merged": merged}
        x = x + a
        # x = x + dropout(mlp(layer_norm(x)))
        s["ln_2_in"] = x
        h = layer_norm(x, **blk["ln_2"], eps=cfg.layer_norm_epsilon)
        pre = _linear(h, blk["mlp"]["c_fc"])  # [B, T, 4E]
        post = act(pre)
        m = _linear(post, blk["mlp"]["c_proj"])
        m, s["mlp_resid_keep"] = _dropout(m, cfg.resid_pdrop, rng)
        s["mlp"] = {"x": h, "pre": pre, "post": post}
        x = x + m
        tape["blocks"].append(s)

    tape["ln_f_in"] = x
    h = layer_norm(x, **p["ln_f"], eps=cfg.layer_norm_epsilon).reshape(B * T, -1)  # [N, E]
    tape["h"] = h

    # The head and the loss: logits t predict labels t+1 (the last position predicts nothing), or shift_labels t.
    if shift_labels is None:
        targets = np.full((B, T), ignore_index, np.int64)
        targets[:, :-1] = labels[:, 1:]
    else:
        targets = shift_labels
    tape["targets"] = targets = targets.reshape(-1)  # [N]
    tape["n"], tape["ignore_index"] = num_items_in_batch, ignore_index
    loss, tape["dh"], tape["dhead"] = head_loss(h, lm_head_weight(p), targets, with_grad=with_head_grad,
                                                n=num_items_in_batch, ignore_index=ignore_index)
    return loss, tape


def head_loss(h, weight, targets, *, with_grad=False, n=None, ignore_index=-100):
    """The mean cross-entropy of logits = h @ weight^T against targets (ignore_index ignored), LOSS_ROWS rows at a
    time (the [N, V] logits never exist at once): the sum over the counted targets / n (default: their number).
    With ``with_grad``, also its gradients dh [N, E] and dweight [V, E], computed from the same logits.
    # h [N, E], weight [V, E], targets [N] -> loss, dh, dweight
    """
    counted = targets != ignore_index
    n = int(counted.sum()) if n is None else n
    total = 0.0
    dh = np.zeros_like(h) if with_grad else None
    dweight = np.zeros_like(weight) if with_grad else None
    for start in range(0, len(h), LOSS_ROWS):
        rows = slice(start, start + LOSS_ROWS)
        if not counted[rows].any():
            continue
        loss_sum, dlogits = bw.cross_entropy_backward(h[rows] @ weight.T, targets[rows], n, ignore_index)  # [rows, V]
        total += loss_sum
        if with_grad:
            dh[rows], dweight_rows = bw.lm_head_backward(dlogits, h[rows], weight)
            dweight += dweight_rows
    return (total / n if n else float("nan")), dh, dweight


def backward(params, config, tape, *, head_mask=None):
    """Gradients of the loss of forward() with respect to every parameter, nested like params."""
    cfg, p = config, params
    wte = p["wte"]["weight"]
    act_backward = bw.ACTIVATION_BACKWARDS[cfg.activation_function]
    h = tape["h"]
    B, T = tape["input_ids"].shape
    grads = {"h": [None] * len(p["h"])}

    # The head and the loss (their gradients come from forward(with_head_grad=True), else are computed here).
    dh, dhead = tape["dh"], tape["dhead"]
    if dh is None:
        _, dh, dhead = head_loss(h, lm_head_weight(p), tape["targets"], with_grad=True, n=tape["n"],
                                 ignore_index=tape["ignore_index"])
    if "lm_head" in p:  # an untied head: its own gradient, and wte's comes from the lookups alone
        grads["lm_head"] = {"weight": dhead}
        dwte = np.zeros_like(wte)
    else:  # tied: the head's share of wte's gradient, to which the lookups add theirs
        dwte = dhead
    dx, dw, db = bw.layer_norm_backward(dh.reshape(B, T, -1), tape["ln_f_in"], p["ln_f"]["weight"],
                                        cfg.layer_norm_epsilon)
    grads["ln_f"] = {"weight": dw, "bias": db}

    for i in reversed(range(len(p["h"]))):
        s, blk = tape["blocks"][i], p["h"][i]
        g = {}
        scale = wte.dtype.type(attention_scale(cfg.head_dim, i, cfg.scale_attn_weights,
                                               cfg.scale_attn_by_inverse_layer_idx))
        # x_out = x_mid + dropout(mlp(ln_2(x_mid))): dx flows both ways.
        dm = dx if s["mlp_resid_keep"] is None else bw.dropout_backward(dx, s["mlp_resid_keep"], cfg.resid_pdrop)
        dh2, g["mlp"] = bw.mlp_backward(dm, s["mlp"], **blk["mlp"], act_backward=act_backward)
        dln, dw, db = bw.layer_norm_backward(dh2, s["ln_2_in"], blk["ln_2"]["weight"], cfg.layer_norm_epsilon)
        g["ln_2"] = {"weight": dw, "bias": db}
        dx = dx + dln
        # x_mid = x_in + dropout(attention(ln_1(x_in)))
        da = dx if s["attn_resid_keep"] is None else bw.dropout_backward(dx, s["attn_resid_keep"], cfg.resid_pdrop)
        dh1, g["attn"] = bw.self_attention_backward(
            da, s["attn"], **blk["attn"], n_head=cfg.n_head, scale=scale, keep=s["attn_keep"],
            pdrop=cfg.attn_pdrop, head_mask=None if head_mask is None else head_mask[i])
        dln, dw, db = bw.layer_norm_backward(dh1, s["ln_1_in"], blk["ln_1"]["weight"], cfg.layer_norm_epsilon)
        g["ln_1"] = {"weight": dw, "bias": db}
        dx = dx + dln
        grads["h"][i] = g

    # The embeddings: x = dropout(wte[ids] + wpe[pos] (+ wte[token types])).
    if tape["embd_keep"] is not None:
        dx = bw.dropout_backward(dx, tape["embd_keep"], cfg.embd_pdrop)
    bw.embedding_backward(dx, tape["input_ids"], out=dwte)  # (tied: added to the head's share)
    if tape["token_type_ids"] is not None:
        bw.embedding_backward(dx, tape["token_type_ids"], out=dwte)
    grads["wte"] = {"weight": dwte}
    grads["wpe"] = {"weight": bw.embedding_backward(dx, tape["position_ids"], p["wpe"]["weight"].shape[0])}
    return grads


def loss_and_grad(params, config, input_ids, labels, **kwargs):
    """forward() then backward(): (loss as a Python float, gradients nested like params)."""
    loss, tape = forward(params, config, input_ids, labels, with_head_grad=True, **kwargs)
    return loss, backward(params, config, tape, head_mask=kwargs.get("head_mask"))


def model_loss_and_grad(model, input_ids, labels=None, attention_mask=None, token_type_ids=None, position_ids=None,
                        head_mask=None, rng=None, num_items_in_batch=None, ignore_index=-100, shift_labels=None):
    """GPT2LMHeadModel.loss_and_grad: checks the inputs, runs forward + backward, keys the gradients like
    model.state_dict(). Dropout runs when model.training is True, drawn from ``rng`` (a numpy Generator or an
    int seed; None: fresh entropy). HF's loss options, as its forward reads them (ForCausalLMLoss):
    ``num_items_in_batch``, the n of the loss's sum / n (default: this batch's counted labels; the labels of every
    micro-batch of an accumulated step make their added gradients those of the whole batch, as transformers'
    Trainer passes it); ``ignore_index``, the label that is not counted; ``shift_labels``, targets already shifted.
    ``attention_mask``: [B, T] of 0/1, or the 4-D float bias as the forward takes it (attention_bias_4d)."""
    from ..checkpoint import flatten
    from ..checks import as_array, check_int, check_number, int_array, mask_array, reshape_to
    from ..modeling import _head_masks, attention_bias_4d

    cfg = model.config
    if cfg.add_cross_attention:
        raise ValueError("loss_and_grad does not support cross-attention models (config.add_cross_attention)")
    for name, a in flatten(model.params).items():
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32):
            raise TypeError(f"loss_and_grad needs float32 weights; {name} is {getattr(a, 'dtype', type(a).__name__)}: "
                            f"train a float32 copy (model.float(), or model.to('float32'); the Trainer makes one)")
    input_ids = int_array("input_ids", input_ids, high=cfg.vocab_size, min_ndim=1)
    if input_ids.ndim == 1:
        input_ids = input_ids[None, :]
    if input_ids.ndim != 2 or 0 in input_ids.shape:  # (no rows: nothing to average, and no shape to reshape to)
        raise ValueError(f"input_ids must have shape (batch, seq) with batch >= 1 and seq >= 1, got {input_ids.shape}")
    B, T = input_ids.shape
    if T > cfg.n_positions:
        raise ValueError(f"input_ids holds {T} tokens per row, but n_positions={cfg.n_positions}")
    ignore_index = check_int("ignore_index", ignore_index)

    def targets(name, values):  # labels or shift_labels: ints [B, T] below vocab_size, or ignore_index
        values = int_array(name, values, high=cfg.vocab_size, ignore_index=ignore_index)
        if values.size != B * T or values.shape[-1] != T:  # ((B * T,) is not (B, T): transformers reads one row)
            raise ValueError(f"{name} must have the shape of input_ids {input_ids.shape}, got {values.shape}")
        return values.reshape(B, T)

    if shift_labels is not None:  # the targets as given: labels are not read
        shift_labels = labels = targets("shift_labels", shift_labels)
    else:
        labels = input_ids if labels is None else targets("labels", labels)
    if attention_mask is not None and np.ndim(attention_mask) == 4:  # (as the forward reads it)
        attention_mask = attention_bias_4d(attention_mask, B, 0, T)  # [B or 1, 1, T or 1, T]
    elif attention_mask is not None:
        attention_mask = reshape_to("attention_mask", mask_array("attention_mask", attention_mask), (B, T))
    if token_type_ids is not None:
        token_type_ids = reshape_to("token_type_ids", int_array("token_type_ids", token_type_ids,
                                                                  high=cfg.vocab_size), (B, T))
    if position_ids is not None:
        position_ids = reshape_to("position_ids", int_array("position_ids", position_ids, high=cfg.n_positions),
                                   (B, T))
    head_masks = None if head_mask is None else _head_masks(head_mask, cfg.n_layer, cfg.n_head)
    if not model.training:
        rng = None  # (no dropout)
    elif not isinstance(rng, np.random.Generator):
        try:
            rng = np.random.default_rng(rng)
        except (TypeError, ValueError):
            raise TypeError(f"rng must be a numpy Generator or an integer seed >= 0 (None: fresh entropy), got "
                            f"{rng!r}") from None
    if num_items_in_batch is not None:  # (as modeling.cross_entropy reads it)
        a = as_array("num_items_in_batch", num_items_in_batch)
        num_items_in_batch = check_number("num_items_in_batch", a.item() if a.size == 1 else num_items_in_batch,
                                          low=0, low_open=True)
    loss, grads = loss_and_grad(model.params, cfg, input_ids, labels, attention_mask=attention_mask,
                                token_type_ids=token_type_ids, position_ids=position_ids, head_mask=head_masks,
                                rng=rng, num_items_in_batch=num_items_in_batch, ignore_index=ignore_index,
                                shift_labels=shift_labels)
    flat = flatten(grads)
    # state_dict()'s names ("transformer.h.0.attn.c_attn.weight", ...); a tied "lm_head.weight" is wte itself,
    # so its gradient is wte's, the very same array (as in torch, where both names hold one tensor); an untied
    # one has its own.
    return np.float32(loss), {name: flat[key] for name, key in model._state_names().items()}
