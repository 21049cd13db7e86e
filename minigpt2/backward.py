"""The backward pass of every layer in layers.py and activations.py, each written from the math.

A forward function maps inputs to an output y. Its backward takes ``dy`` = d(loss)/dy, the gradient
flowing in from above (same shape as y), plus the values the forward saw or computed (passed
explicitly: nothing is hidden in a tape), and returns the gradient of the loss with respect to each
input and each parameter, in the same shapes. The chain rule does the rest: the model's backward
(minigpt2/training/grad.py) calls these in the reverse order of the forward.

Shapes use the letters of layers.py (B batch, T tokens, E n_embd, H heads, D head_dim, K keys, V vocab)
plus N for "all leading axes flattened" (N = B * T). Every function works in any float dtype: the tests
check them in float64 against finite differences and in float32 against torch autograd.
"""
import math

import numpy as np

from .activations import SQRT_2_OVER_PI, sigmoid
from .layers import causal_mask, merge_heads, split_heads

__all__ = [
    "linear_backward", "layer_norm_backward", "softmax_backward", "attention_backward", "self_attention_backward",
    "mlp_backward", "embedding_backward", "cross_entropy_backward", "lm_head_backward", "dropout_backward",
    "dropout_scale", "ACTIVATION_BACKWARDS",
]


# -- linear and layer norm -----------------------------------------------------------------------------

def linear_backward(dy, x, weight, has_bias=True):
    """y = x @ W + b.  # dy [..., out], x [..., in], W [in, out] -> dx [..., in], dW [in, out], db [out]

    Each output y_j = sum_i x_i W_ij + b_j, so dx_i = sum_j dy_j W_ij (dx = dy W^T), and W_ij collects
    x_i dy_j over every row of the batch (dW = x^T dy). db sums dy over the rows.
    """
    # As [N, in] and [N, out] matrices: one BLAS product each (for a 3-d array NumPy runs a stack of
    # [T, ...] products, several times slower).
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
    dx = (dy2 @ weight.T).reshape(x.shape)
    dweight = x2.T @ dy2
    dbias = dy2.sum(axis=0) if has_bias else None
    return dx, dweight, dbias


def layer_norm_backward(dy, x, weight, eps=1e-5):
    """y = xhat * w + b with xhat = (x - mean) / sqrt(var + eps).  # dy, x [..., E] -> dx [..., E], dw, db [E]

    Write r = 1 / sqrt(var + eps) and g = dy * w (the gradient reaching xhat). Moving one x_i moves
    xhat_i directly (by r), and every xhat_j through the mean (by -r/E) and the variance
    (by -r xhat_i xhat_j / E). Summed up: dx = r (g - mean(g) - xhat mean(g xhat)).
    """
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    r = 1.0 / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + eps)  # [..., 1]
    xhat = centered * r  # [..., E]
    g = dy * weight  # [..., E]
    dx = r * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    E = x.shape[-1]
    dweight = (dy * xhat).reshape(-1, E).sum(axis=0)
    dbias = dy.reshape(-1, E).sum(axis=0)
    return dx, dweight, dbias


# -- activations: dy -> dx, from the input x -----------------------------------------------------------

def gelu_new_backward(dy, x):
    """y = 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3), c = sqrt(2/pi).  # [...] -> [...]

    dy/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) c (1 + 3 * 0.044715 x^2).
    """
    t = np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x)))
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * (x * x)))


def gelu_fast_backward(dy, x):
    """gelu_fast is gelu_new with its constant rounded (0.7978845608); the same derivative with that constant."""
    c = 0.7978845608
    t = np.tanh(c * x * (1.0 + 0.044715 * x * x))
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * (x * x)))


def gelu_backward(dy, x):
    """Exact GELU y = x Phi(x): dy/dx = Phi(x) + x phi(x), phi the standard normal density."""
    from .activations import erf

    phi = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return dy * (0.5 * (1.0 + erf(x / math.sqrt(2.0))) + x * phi)


def quick_gelu_backward(dy, x):
    """y = x s(1.702 x), s the sigmoid: dy/dx = s + 1.702 x s (1 - s)."""
    s = sigmoid(1.702 * x)
    return dy * (s + 1.702 * x * s * (1.0 - s))


def sigmoid_backward(dy, x):
    """y = s(x): dy/dx = s (1 - s)."""
    s = sigmoid(x)
    return dy * s * (1.0 - s)


def silu_backward(dy, x):
    """y = x s(x): dy/dx = s + x s (1 - s)."""
    s = sigmoid(x)
    return dy * (s + x * s * (1.0 - s))


def relu_backward(dy, x):
    """y = max(x, 0): the gradient passes where x > 0 (and, as in torch, not at 0)."""
    return dy * (x > 0)


def tanh_backward(dy, x):
    """y = tanh x: dy/dx = 1 - tanh^2 x."""
    t = np.tanh(x)
    return dy * (1.0 - t * t)


def relu2_backward(dy, x):
    """y = max(x, 0)^2: dy/dx = 2 max(x, 0)."""
    return dy * 2 * np.maximum(x, 0)


def relu6_backward(dy, x):
    """y = min(max(x, 0), 6): the gradient passes where 0 < x < 6 (as in torch, not at either end)."""
    return dy * ((x > 0) & (x < 6))


def leaky_relu_backward(dy, x):
    """y = x for x > 0, else 0.01 x: dy/dx = 1 or 0.01 (0.01 at 0, as in torch)."""
    return dy * np.where(x > 0, np.float32(1), np.float32(0.01))


def gelu_10_backward(dy, x):
    """y = clip(gelu(x), -10, 10): gelu's derivative where gelu(x) is inside the bounds (ends included, as torch's
    clamp), else 0."""
    from .activations import gelu

    y = gelu(x)
    return gelu_backward(dy, x) * ((y >= -10) & (y <= 10))


def mish_backward(dy, x):
    """y = x tanh(sp), sp = log(1 + e^x), sp' = sigmoid(x): dy/dx = tanh(sp) + x (1 - tanh^2 sp) sigmoid(x)."""
    t = np.tanh(np.logaddexp(np.float32(0), x))
    return dy * (t + x * (1.0 - t * t) * sigmoid(x))


def laplace_backward(dy, x):
    """y = Phi((x - mu) / sigma), Phi the standard normal distribution function: dy/dx = phi((x - mu) / sigma) /
    sigma, phi its density."""
    from .activations import LAPLACE_MU, LAPLACE_SIGMA

    z = (x - LAPLACE_MU) / LAPLACE_SIGMA
    return dy * np.exp(-0.5 * z * z) / (LAPLACE_SIGMA * math.sqrt(2.0 * math.pi))


def identity_backward(dy, x):
    """y = x: the gradient passes unchanged."""
    return dy


# The backward of each activation by the names in activations.ACTIVATIONS.
ACTIVATION_BACKWARDS = {
    "gelu_new": gelu_new_backward,
    "gelu_pytorch_tanh": gelu_new_backward,
    "gelu_accurate": gelu_new_backward,
    "gelu_python_tanh": gelu_new_backward,
    "gelu_fast": gelu_fast_backward,
    "gelu": gelu_backward,
    "gelu_10": gelu_10_backward,
    "gelu_python": gelu_backward,
    "quick_gelu": quick_gelu_backward,
    "relu": relu_backward,
    "relu2": relu2_backward,
    "relu6": relu6_backward,
    "leaky_relu": leaky_relu_backward,
    "mish": mish_backward,
    "laplace": laplace_backward,
    "silu": silu_backward,
    "swish": silu_backward,
    "sigmoid": sigmoid_backward,
    "tanh": tanh_backward,
    "linear": identity_backward,
}


# -- attention -----------------------------------------------------------------------------------------

def softmax_backward(dp, p):
    """p = softmax(s) along the last axis.  # dp, p [..., K] -> ds [..., K]

    dp_j/ds_i = p_j (1[i = j] - p_i), so ds_i = p_i (dp_i - sum_j dp_j p_j).
    """
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


def dropout_scale(p):
    """What inverted dropout multiplies the kept elements by: 1 / (1 - p); 0 for p = 1, where every element is
    dropped (torch's dropout(p=1) gives zeros, and a zero gradient)."""
    return 0.0 if p == 1 else 1.0 / (1.0 - p)


def dropout_backward(dy, keep, p):
    """y = x * keep / (1 - p), keep a 0/1 mask drawn in the forward: the same mask scales the gradient."""
    return dy * keep * dropout_scale(p)


def attention_backward(dout, q, k, v, probs, *, scale, causal, keep=None, pdrop=0.0, head_mask=None):
    """out = A v, A = head_mask * dropout(P), P = softmax(q k^T * scale + masks).

    dout, q: [B, H, T, D]; k, v: [B, H, K, D]; probs: the forward's softmax P [B, H, T, K]; keep: the
    dropout's 0/1 mask on P (None without dropout); head_mask: HF's [1, H, 1, 1] multiplier (or None).
    Returns dq [B, H, T, D], dk, dv [B, H, K, D].

    out = A v gives dA = dout v^T and dv = A^T dout; dropout and the head mask scale dA back to dP; the
    softmax turns dP into dS. Masks: the causal mask *replaces* future scores by -inf, so no gradient
    reaches them: zeroed here (their P is 0). The padding mask is *added*, so the gradient passes through
    it, as in torch (in a query whose keys up to itself are all padding, P is uniform over them).
    Finally S = q k^T * scale gives dq = dS k * scale and dk = dS^T q * scale.
    """
    used = probs  # the matrix that multiplied v
    if keep is not None:
        used = used * keep * dropout_scale(pdrop)
    if head_mask is not None:
        used = used * head_mask
    dv = used.swapaxes(-1, -2) @ dout  # [B, H, K, D]
    dused = dout @ v.swapaxes(-1, -2)  # [B, H, T, K]
    if head_mask is not None:
        dused = dused * head_mask
    if keep is not None:
        dused = dropout_backward(dused, keep, pdrop)
    dscores = softmax_backward(dused, probs)
    if causal:
        dscores = np.where(causal_mask(q.shape[-2], k.shape[-2]), dscores, 0)
    dq = (dscores @ k) * scale  # [B, H, T, D]
    dk = (dscores.swapaxes(-1, -2) @ q) * scale  # [B, H, K, D]
    return dq, dk, dv


def self_attention_backward(dy, saved, c_attn, c_proj, *, n_head, scale, keep=None, pdrop=0.0, head_mask=None):
    """The backward of layers.self_attention (no cache).  # dy [B, T, E] -> dx [B, T, E], grads

    ``saved`` holds the forward's x [B, T, E] (the input), q, k, v [B, H, T, D], probs (the softmax,
    [B, H, T, T]) and merged (the heads concatenated, [B, T, E], the input of c_proj). ``keep``, ``pdrop``
    and ``head_mask`` as in attention_backward. Returns dx and {"c_attn": {"weight", "bias"}, "c_proj": ...}.
    """
    dmerged, dw_proj, db_proj = linear_backward(dy, saved["merged"], c_proj["weight"])
    dq, dk, dv = attention_backward(split_heads(dmerged, n_head), saved["q"], saved["k"], saved["v"],
                                    saved["probs"], scale=scale, causal=True, keep=keep, pdrop=pdrop,
                                    head_mask=head_mask)
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # [B, T, 3E]
    dx, dw_attn, db_attn = linear_backward(dqkv, saved["x"], c_attn["weight"])
    return dx, {"c_attn": {"weight": dw_attn, "bias": db_attn}, "c_proj": {"weight": dw_proj, "bias": db_proj}}


def mlp_backward(dy, saved, c_fc, c_proj, *, act_backward):
    """The backward of layers.mlp: y = act(x W1 + b1) W2 + b2.  # dy [B, T, E] -> dx [B, T, E], grads

    ``saved`` holds x [B, T, E], pre (x W1 + b1, [B, T, 4E]) and post (act(pre)).
    """
    dpost, dw2, db2 = linear_backward(dy, saved["post"], c_proj["weight"])
    dpre = act_backward(dpost, saved["pre"])
    dx, dw1, db1 = linear_backward(dpre, saved["x"], c_fc["weight"])
    return dx, {"c_fc": {"weight": dw1, "bias": db1}, "c_proj": {"weight": dw2, "bias": db2}}


# -- embeddings and the LM head ------------------------------------------------------------------------

def embedding_backward(dx, ids, num_embeddings=None, out=None):
    """x = table[ids].  # dx [..., E], ids [...] -> dtable [num_embeddings, E]

    Each row of the table receives the sum of the gradients of every position that looked it up (a
    token that occurs 5 times gets 5 contributions); rows never looked up get 0. With ``out`` (a
    [num_embeddings, E] array), the gradient is added into it instead of a new array of zeros.
    """
    E = dx.shape[-1]
    if num_embeddings is None and out is None:
        raise ValueError("embedding_backward needs the table's size: pass num_embeddings (its rows), or out (a "
                         "[num_embeddings, E] array to add the gradient into)")
    dtable = np.zeros((num_embeddings, E), dx.dtype) if out is None else out
    np.add.at(dtable, np.asarray(ids).reshape(-1), dx.reshape(-1, E))
    return dtable


def cross_entropy_backward(logits, labels, n_counted, ignore_index=-100):
    """Loss = -(1/n) sum log softmax(logits)[label] over the n labels that are not ignore_index.

    logits [N, V], labels [N] -> (the sum of -log softmax[label] over the counted rows, dlogits [N, V]).
    ``n_counted`` is the n of the mean (the counted labels of the whole batch, so rows may be processed in
    chunks). d(-log softmax_y)/dlogits = softmax - onehot(y); ignored rows get 0. The loss comes along
    because it shares every step with the gradient. To spare memory, ``logits`` is overwritten: it becomes
    dlogits (pass a copy to keep it). With every label ignored (n_counted 0) the sum is 0 and dlogits 0: torch's
    mean is then 0/0 = NaN, and its gradient 0.
    """
    rows = np.arange(len(labels))
    keep = labels != ignore_index
    if n_counted == 0:
        if keep.any():
            raise ValueError(f"cross_entropy_backward: n_counted is 0, but {int(keep.sum())} labels are counted")
        logits[...] = 0
        return 0.0, logits
    picked = np.where(keep, labels, 0)
    z = logits
    z -= z.max(axis=-1, keepdims=True)  # shifted: exp never overflows
    picked_z = z[rows, picked]
    np.exp(z, out=z)
    total = z.sum(axis=-1)  # [N]
    loss_sum = float((np.log(total) - picked_z)[keep].sum(dtype=np.float64))
    z *= (keep / (total * n_counted))[:, None].astype(z.dtype)  # softmax / n, 0 on ignored rows
    z[rows[keep], picked[keep]] -= z.dtype.type(1.0 / n_counted)
    return loss_sum, z


def lm_head_backward(dlogits, h, weight):
    """logits = h @ W^T, W [V, E].  # dlogits [N, V], h [N, E] -> dh [N, E], dW [V, E]

    logit_v = sum_e h_e W_ve, so dh = dlogits W and dW = dlogits^T h. W is the token table wte when the head
    is tied (GPT-2's way; then dW is this use's share of wte's gradient, and the embedding lookup adds its
    own) or the checkpoint's own lm_head.weight when untied.
    """
    return dlogits @ weight, dlogits.T @ h
