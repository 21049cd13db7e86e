"""The layers of GPT-2, each a plain NumPy function. Read this file top to bottom.

Shapes use these letters:
    B  batch             T  new tokens in this call     P  tokens already in the cache (past)
    E  n_embd            H  n_head                      D  head_dim = E / H
    K  keys attended to  (P + T for self-attention; the encoder length for cross-attention)

Weights are stored the way HF's checkpoints store them. Linear layers are HF's ``Conv1D``: the weight
is (in, out), so a linear layer is ``x @ weight + bias`` with no transpose. Parameters are nested
dicts named like the checkpoint (``{"c_attn": {"weight": ..., "bias": ...}}``), unpacked with ``**``.

Everything computes in float32. A weight matrix may be stored in fewer bits (float16, bfloat16, int8:
minigpt2/weights.py); ``widen(w)`` is the float32 matrix it stands for, so the only difference is the
rounding of the weights. Dropout is the identity at inference, so it does not appear.
"""
import numpy as np

from .backend import kernel
from .weights import Int8Weight, round_int16, widen

# HF adds the smallest float32 to a padded key's score, not -inf: a query whose keys are all padding then
# gets a uniform distribution instead of NaN. (A future key gets -inf: HF masks it twice, which overflows.)
MASK_VALUE = np.finfo(np.float32).min


def padding_bias(attention_mask, dtype=np.float32):
    """The additive bias on the scores from HF's attention_mask.  # [B, K] -> [B, 1, 1, K]

    0 for keys to attend to, MASK_VALUE for padding (0 in the mask); as transformers reads a mask, any
    value other than 0 means "attend"."""
    return np.where(attention_mask != 0, 0, MASK_VALUE).astype(dtype)[:, None, None, :]


@kernel
def linear(x, weight, bias=None):
    """An affine map, HF's Conv1D: x @ W + b.  # [..., in] -> [..., out]

    A weight in a narrow format (weights.py) is widened to the float32 values it stands for; an int8 weight
    multiplies x rounded to int16 per block of 32 (weights.round_int16).
    """
    if isinstance(weight, Int8Weight):
        x = round_int16(x)
    y = x @ widen(weight)
    if bias is not None:
        y += bias
    return y


def lm_head(h, weight):
    """Logits over the vocabulary from the head's matrix [V, E]: wte (tied), or the checkpoint's own
    lm_head.weight, which HF stores in the same layout.  # [..., E] -> [..., V]"""
    return linear(h, weight.T)


@kernel
def layer_norm(x, weight, bias, eps=1e-5):
    """Normalise each vector to mean 0 and variance 1, then scale and shift.  # [..., E] -> [..., E]"""
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    variance = (centered * centered).mean(axis=-1, keepdims=True)  # the biased variance, as torch uses
    return centered / np.sqrt(variance + np.float32(eps)) * weight + bias


def softmax(x):
    """exp(x) / sum(exp(x)) along the last axis, shifted by the max so exp never overflows."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x):
    """log(softmax(x)) along the last axis, without forming softmax(x) (no log of an underflowed 0)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def chunks(x, n):
    """Cut the last axis into ``n`` equal parts, as views.  # [..., n F] -> n x [..., F]

    The same as np.split(x, n, axis=-1), which is slow for such small arrays (9 us a call: decoding calls it
    once per layer and token, more time than that token's attention kernels take).
    """
    F = x.shape[-1] // n
    return [x[..., i * F:(i + 1) * F] for i in range(n)]


def split_heads(x, n_head):
    """Give each head its own slice of the embedding.  # [B, T, E] -> [B, H, T, D]"""
    B, T, E = x.shape
    return x.reshape(B, T, n_head, E // n_head).transpose(0, 2, 1, 3)


def merge_heads(x):
    """Concatenate the heads again.  # [B, H, T, D] -> [B, T, E]"""
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def causal_mask(n_query, n_key):
    """True where query i may see key j.  # -> [T, K]

    The queries are the last ``n_query`` of the ``n_key`` positions (the rest come from the cache),
    so the triangle is anchored at the lower-right corner: query i sees keys 0 .. i + (K - T).
    """
    return np.tri(n_query, n_key, k=n_key - n_query, dtype=bool)


def attention_probs(q, k, *, scale, causal, key_bias=None, head_mask=None):
    """Who attends to whom: softmax(q k^T * scale + masks).  # q [B, H, T, D], k [B, H, K, D] -> [B, H, T, K]

    key_bias is additive, broadcastable to [B, 1, 1, K] (0 for keys to attend to, MASK_VALUE for
    padding); head_mask [1, H, 1, 1] multiplies the probabilities (HF returns them multiplied).
    """
    scores = (q @ k.swapaxes(-1, -2)) * scale  # [B, H, T, K]
    if key_bias is not None:
        scores = scores + key_bias  # a padded key's score becomes MASK_VALUE (s + MASK_VALUE rounds to it)
    if causal:  # a future key is never seen (transformers: MASK_VALUE twice, which overflows to -inf)
        scores = np.where(causal_mask(q.shape[-2], k.shape[-2]), scores, -np.inf)
    # A query whose keys up to itself are all padding (a padded position) spreads its attention evenly
    # over them, as transformers does; softmax handles -inf.
    probs = softmax(scores)
    if head_mask is not None:
        probs = probs * head_mask
    return probs


@kernel
def attention(q, k, v, *, scale, causal, key_bias=None, head_mask=None):
    """Scaled dot-product attention: softmax(q k^T * scale + masks) v.  # [B, H, T, D] -> [B, H, T, D]

    q: [B, H, T, D]; k, v: [B, H, K, D]; the masks as in attention_probs. A fused kernel computes the
    same output without ever holding the [T, K] probabilities; ask attention_probs for those.
    """
    return attention_probs(q, k, scale=scale, causal=causal, key_bias=key_bias, head_mask=head_mask) @ v


def attention_scale(head_dim, layer_idx, scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False):
    """The factor on q k^T: 1/sqrt(D) (scale_attn_weights), times 1/(layer_idx + 1) (Mistral's flag).

    HF's third flag, reorder_and_upcast_attn, changes only the order of these multiplications and the
    dtype of half-precision runs; in float32 it is the same function.
    """
    scale = 1.0
    if scale_attn_weights:
        scale /= float(head_dim) ** 0.5
    if scale_attn_by_inverse_layer_idx:
        scale /= float(layer_idx + 1)
    return np.float32(scale)


def self_attention(x, c_attn, c_proj, *, n_head, cache, scale, key_bias=None, head_mask=None,
                   output_attentions=False):
    """Masked multi-head self-attention over the cache and the new tokens.  # [B, T, E] -> [B, T, E]

    ``cache`` is this layer's slot of the KV cache: ``cache.extend(k, v)`` appends the new keys and
    values and returns all of them. Returns (output, attention probabilities [B, H, T, P + T] if
    ``output_attentions`` else None); asking for the probabilities never changes the output.
    """
    qkv = linear(x, **c_attn)  # [B, T, 3E]
    q, k, v = (split_heads(part, n_head) for part in chunks(qkv, 3))  # 3 x [B, H, T, D]
    k, v = cache.extend(k, v)  # [B, H, P + T, D]
    masks = dict(scale=scale, causal=True, key_bias=key_bias, head_mask=head_mask)
    out = attention(q, k, v, **masks)
    probs = attention_probs(q, k, **masks) if output_attentions else None
    return linear(merge_heads(out), **c_proj), probs


def cross_attention(x, encoder_states, q_attn, c_attn, c_proj, *, n_head, scale, key_bias=None, head_mask=None,
                    output_attentions=False):
    """Attention from the tokens to an encoder's states (no causal mask).  # [B, T, E], [B, S, E] -> [B, T, E]"""
    q = split_heads(linear(x, **q_attn), n_head)  # [B, H, T, D]
    kv = linear(encoder_states, **c_attn)  # [B, S, 2E]
    k, v = (split_heads(part, n_head) for part in chunks(kv, 2))  # 2 x [B, H, S, D]
    masks = dict(scale=scale, causal=False, key_bias=key_bias, head_mask=head_mask)
    out = attention(q, k, v, **masks)
    probs = attention_probs(q, k, **masks) if output_attentions else None
    return linear(merge_heads(out), **c_proj), probs


def mlp(x, c_fc, c_proj, act):
    """The position-wise feed-forward network.  # [B, T, E] -> [B, T, 4E] -> [B, T, E]"""
    return linear(act(linear(x, **c_fc)), **c_proj)
