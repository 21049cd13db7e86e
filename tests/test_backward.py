"""Every backward in minigpt2/backward.py against its forward, by finite differences in float64.

For a forward y = f(inputs), take the scalar L = sum(y * R) with R random: dL/dy = R, so the backward
fed dy = R must return dL/d(each input). The numerical gradient is the central difference
(L(x + h) - L(x - h)) / 2h with h = 1e-6. In float64 its truncation error is ~h^2 |f'''| ~ 1e-12 and its
rounding error ~ 1e-16 |L| / h ~ 1e-9 for |L| ~ 10, so we allow 1e-6 + 1e-5 relative: a wrong formula
(a lost factor, a missing term, a transposed product) is off by 1e-2 or more. The exact GELU's forward is
an erf approximation good to 1.2e-7 (so are gelu_10's and laplace's), whose derivative differs from the exact one (which the backward,
like torch, uses) by up to ~2e-6: it gets 2e-5.

Shapes, values, masks and flags are drawn by hypothesis. The whole-model test (every block, the
embeddings with token types, the tied head, labels of -100, padding and dropout with a fixed mask)
checks a few coordinates of every parameter.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigpt2
from minigpt2 import backward as bw
from minigpt2 import checkpoint, layers
from minigpt2.activations import ACTIVATIONS
from minigpt2.training import grad

# The activations computed with activations.erf: its derivative is off by up to ~2e-6 (see above), laplace's by
# 2.5x that (its argument is (x - mu) / (sigma sqrt 2), sigma = 0.28); an MLP sums ~10 such terms per gradient entry.
ERF_ATOL = {"gelu": 2e-5, "gelu_python": 2e-5, "gelu_10": 2e-5, "laplace": 1e-4}
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
H = 1e-6
ATOL, RTOL = 1e-6, 1e-5


def numerical_grad(loss, x, coords=None):
    """d loss / d x by central differences, at every coordinate of x (or only at ``coords``)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size) if coords is None else coords:
        old = flat[i]
        flat[i] = old + H
        up = loss()
        flat[i] = old - H
        down = loss()
        flat[i] = old
        gflat[i] = (up - down) / (2 * H)
    return g


def check(name, analytic, x, loss, atol=ATOL, coords=None):
    numeric = numerical_grad(loss, x, coords)
    if coords is not None:
        analytic, numeric = analytic.reshape(-1)[coords], numeric.reshape(-1)[coords]
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=atol, err_msg=f"gradient of {name}")


def first(result):
    """layers functions may return (output, probabilities) or just the output."""
    return result[0] if isinstance(result, tuple) else result


def normal(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


seeds = st.integers(0, 2**32 - 1)


@SETTINGS
@given(seeds, st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.booleans())
def test_linear(seed, B, T, n_in, n_out, has_bias):
    rng = np.random.default_rng(seed)
    x, w, b, R = normal(rng, B, T, n_in), normal(rng, n_in, n_out), normal(rng, n_out), normal(rng, B, T, n_out)
    bias = b if has_bias else None
    loss = lambda: float((layers.linear.reference(x, w, bias) * R).sum())  # noqa: E731
    dx, dw, db = bw.linear_backward(R, x, w, has_bias)
    check("x", dx, x, loss)
    check("weight", dw, w, loss)
    if has_bias:
        check("bias", db, b, loss)
    else:
        assert db is None


@SETTINGS
@given(seeds, st.integers(1, 3), st.integers(2, 8), st.sampled_from([1e-5, 1e-2]), st.floats(0.01, 10))
def test_layer_norm(seed, N, E, eps, spread):
    rng = np.random.default_rng(seed)
    x = normal(rng, N, 2, E, scale=spread) + normal(rng, N, 2, 1)
    w, b, R = 1 + normal(rng, E, scale=0.3), normal(rng, E), normal(rng, N, 2, E)
    loss = lambda: float((layers.layer_norm.reference(x, w, b, eps=eps) * R).sum())  # noqa: E731
    dx, dw, db = bw.layer_norm_backward(R, x, w, eps)
    check("x", dx, x, loss, atol=ATOL * max(1.0, 1 / spread))  # dx grows like 1/spread
    check("weight", dw, w, loss)
    check("bias", db, b, loss)


@SETTINGS
@given(seeds, st.sampled_from(sorted(ACTIVATIONS)), st.floats(0.1, 5))
def test_activations(seed, name, spread):
    rng = np.random.default_rng(seed)
    x = normal(rng, 3, 7, scale=spread)
    kinks = {"relu6": 6.0, "gelu_10": 10.0}.get(name, 0.0)  # (relu and its kin have no derivative at 0)
    x = np.where((np.abs(x) < 1e-3) | (np.abs(x - kinks) < 1e-3), 0.5, x)
    R = normal(rng, 3, 7)
    f = ACTIVATIONS[name]
    forward = getattr(f, "reference", f)
    loss = lambda: float((forward(x) * R).sum())  # noqa: E731
    atol = ERF_ATOL.get(name, ATOL)  # see the module docstring
    check(name, bw.ACTIVATION_BACKWARDS[name](R, x), x, loss, atol=atol)


def test_every_activation_has_a_backward():
    assert set(bw.ACTIVATION_BACKWARDS) == set(ACTIVATIONS)


def test_gelu_new_backward_is_not_the_exact_gelu_one():
    """GPT-2's tanh GELU and the erf GELU are different functions; so are their derivatives."""
    x = np.linspace(-3, 3, 61)
    assert np.abs(bw.gelu_new_backward(np.ones_like(x), x) - bw.gelu_backward(np.ones_like(x), x)).max() > 1e-4


@SETTINGS
@given(seeds, st.integers(1, 6))
def test_softmax(seed, K):
    rng = np.random.default_rng(seed)
    s, R = normal(rng, 2, 3, K, scale=3), normal(rng, 2, 3, K)
    loss = lambda: float((layers.softmax(s) * R).sum())  # noqa: E731
    check("scores", bw.softmax_backward(R, layers.softmax(s)), s, loss)


def attention_forward(q, k, v, scale, causal, key_bias, keep, pdrop, head_mask):
    """softmax(q k^T scale + masks) -> dropout (a fixed mask) -> head mask -> @ v, and the softmax."""
    T, K = q.shape[-2], k.shape[-2]
    scores = (q @ k.swapaxes(-1, -2)) * scale
    if causal:
        scores = np.where(layers.causal_mask(T, K), scores, layers.MASK_VALUE)
    if key_bias is not None:
        scores = scores + key_bias
    probs = layers.softmax(scores)
    used = probs if keep is None else probs * keep / (1 - pdrop)
    if head_mask is not None:
        used = used * head_mask
    return used @ v, probs


@SETTINGS
@given(seeds, st.integers(1, 2), st.integers(1, 3), st.integers(1, 4), st.integers(0, 3), st.integers(1, 4),
       st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.floats(0.1, 2))
def test_attention(seed, B, Hn, T, extra_keys, D, causal, padded, dropout, with_head_mask, scale):
    """Causal or not, with padded keys (key 0 always attended, so no row is all padding), dropout, head mask."""
    rng = np.random.default_rng(seed)
    K = T + extra_keys  # keys from a cache come first, as in layers.causal_mask
    q, k, v, R = normal(rng, B, Hn, T, D), normal(rng, B, Hn, K, D), normal(rng, B, Hn, K, D), normal(rng, B, Hn, T, D)
    key_bias = None
    if padded:
        attend = rng.random((B, K)) < 0.6
        attend[:, 0] = True
        key_bias = ((1.0 - attend) * layers.MASK_VALUE)[:, None, None, :]
    pdrop, keep = (0.3, (rng.random((B, Hn, T, K)) >= 0.3).astype(np.float64)) if dropout else (0.0, None)
    head_mask = rng.random((1, Hn, 1, 1)) if with_head_mask else None
    if keep is None:  # then layers.attention itself is the forward
        out, probs = attention_forward(q, k, v, scale, causal, key_bias, None, 0.0, head_mask)
        ref = first(layers.attention.reference(q, k, v, scale=scale, causal=causal, key_bias=key_bias,
                                               head_mask=head_mask))
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    _, probs = attention_forward(q, k, v, scale, causal, key_bias, keep, pdrop, head_mask)
    dq, dk, dv = bw.attention_backward(R, q, k, v, probs, scale=scale, causal=causal, keep=keep, pdrop=pdrop,
                                       head_mask=head_mask)
    loss = lambda: float((attention_forward(q, k, v, scale, causal, key_bias, keep, pdrop, head_mask)[0]  # noqa
                          * R).sum())
    check("q", dq, q, loss)
    check("k", dk, k, loss)
    check("v", dv, v, loss)


class _NoCache:
    def extend(self, k, v):
        return k, v


@SETTINGS
@given(seeds, st.integers(1, 2), st.integers(1, 4), st.sampled_from([(1, 4), (2, 4), (2, 6)]), st.booleans())
def test_self_attention(seed, B, T, heads_embd, padded):
    n_head, E = heads_embd
    rng = np.random.default_rng(seed)
    x, R = normal(rng, B, T, E), normal(rng, B, T, E)
    c_attn = {"weight": normal(rng, E, 3 * E, scale=0.5), "bias": normal(rng, 3 * E, scale=0.1)}
    c_proj = {"weight": normal(rng, E, E, scale=0.5), "bias": normal(rng, E, scale=0.1)}
    key_bias = None
    if padded:
        attend = rng.random((B, T)) < 0.6
        attend[:, 0] = True
        key_bias = ((1.0 - attend) * layers.MASK_VALUE)[:, None, None, :]
    scale = 1 / np.sqrt(E // n_head)

    def forward():
        return first(layers.self_attention(x, c_attn, c_proj, n_head=n_head, cache=_NoCache(), scale=scale,
                                           key_bias=key_bias))

    q, k, v = (layers.split_heads(p, n_head) for p in np.split(layers.linear.reference(x, **c_attn), 3, axis=-1))
    out, probs = attention_forward(q, k, v, scale, True, key_bias, None, 0.0, None)
    saved = {"x": x, "q": q, "k": k, "v": v, "probs": probs, "merged": layers.merge_heads(out)}
    dx, g = bw.self_attention_backward(R, saved, c_attn, c_proj, n_head=n_head, scale=scale)
    loss = lambda: float((forward() * R).sum())  # noqa: E731
    check("x", dx, x, loss)
    for layer, params in (("c_attn", c_attn), ("c_proj", c_proj)):
        for name in ("weight", "bias"):
            check(f"{layer}.{name}", g[layer][name], params[name], loss)


@SETTINGS
@given(seeds, st.sampled_from(sorted(ACTIVATIONS)), st.integers(1, 3))
def test_mlp(seed, act_name, T):
    rng = np.random.default_rng(seed)
    E, I = 3, 5
    x, R = normal(rng, 2, T, E), normal(rng, 2, T, E)
    c_fc = {"weight": normal(rng, E, I), "bias": normal(rng, I, scale=0.1)}
    c_proj = {"weight": normal(rng, I, E), "bias": normal(rng, E, scale=0.1)}
    act = ACTIVATIONS[act_name]
    pre = x @ c_fc["weight"] + c_fc["bias"]
    if act_name in ("relu", "relu6", "leaky_relu"):
        if (np.abs(pre) < 1e-3).any() or (np.abs(pre - 6) < 1e-3).any():
            return  # a kink within the finite-difference step: no derivative there
    dx, g = bw.mlp_backward(R, {"x": x, "pre": pre, "post": act(pre)}, c_fc, c_proj,
                            act_backward=bw.ACTIVATION_BACKWARDS[act_name])
    loss = lambda: float((layers.mlp(x, c_fc, c_proj, act) * R).sum())  # noqa: E731
    atol = ERF_ATOL.get(act_name, ATOL)
    check("x", dx, x, loss, atol=atol)
    for layer, params in (("c_fc", c_fc), ("c_proj", c_proj)):
        for name in ("weight", "bias"):
            check(f"{layer}.{name}", g[layer][name], params[name], loss, atol=atol)


@SETTINGS
@given(seeds, st.integers(1, 6), st.integers(1, 12))
def test_embedding(seed, V, n):
    rng = np.random.default_rng(seed)
    table, ids = normal(rng, V, 3), rng.integers(0, V, (2, n))
    R = normal(rng, 2, n, 3)
    loss = lambda: float((table[ids] * R).sum())  # noqa: E731
    check("table", bw.embedding_backward(R, ids, V), table, loss)


@SETTINGS
@given(seeds, st.integers(1, 6), st.integers(2, 7), st.floats(0, 0.7))
def test_tied_head_and_cross_entropy(seed, N, V, ignored):
    """logits = h wte^T, loss = mean cross-entropy over labels that are not -100."""
    rng = np.random.default_rng(seed)
    h, wte = normal(rng, N, 3), normal(rng, V, 3, scale=2)
    labels = np.where(rng.random(N) < ignored, -100, rng.integers(0, V, N))
    labels[0] = rng.integers(0, V)  # at least one label counts
    n = int((labels != -100).sum())

    def loss():
        from minigpt2.modeling import cross_entropy
        return float(cross_entropy(h @ wte.T, labels))

    assert abs(loss() - float(-np.mean([layers.log_softmax(h @ wte.T)[i, t] for i, t in enumerate(labels)
                                          if t != -100]))) < 1e-6  # the forward is what we think
    logits = h @ wte.T
    loss_sum, dlogits = bw.cross_entropy_backward(logits.copy(), labels, n)
    assert abs(loss_sum / n - loss()) < 1e-6 * max(1, loss())  # the loss it returns is the forward's
    assert not dlogits[labels == -100].any()
    dh, dwte = bw.lm_head_backward(dlogits, h, wte)
    # modeling.cross_entropy returns float32: allow its rounding (~1e-7 relative) over 2h.
    check("h", dh, h, loss, atol=1e-7 * abs(loss()) / H)
    check("wte", dwte, wte, loss, atol=1e-7 * abs(loss()) / H)


def to_float64(params):
    return checkpoint.unflatten({k: np.array(v, np.float64) for k, v in checkpoint.flatten(params).items()})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds, st.sampled_from(["gelu_new", "gelu", "relu", "silu", "tanh"]), st.booleans(), st.booleans(),
       st.booleans(), st.booleans(), st.booleans())
def test_whole_model(seed, act, scale_weights, inverse_layer, padded, token_types, dropout):
    """The model's loss (grad.forward, which must equal modeling's forward) against grad.backward."""
    rng = np.random.default_rng(seed)
    p = 0.2 if dropout else 0.0
    cfg = minigpt2.GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2, activation_function=act,
                              scale_attn_weights=scale_weights, scale_attn_by_inverse_layer_idx=inverse_layer,
                              resid_pdrop=p, embd_pdrop=p, attn_pdrop=p)
    model = minigpt2.GPT2LMHeadModel(cfg, seed=seed % 1000)
    params = checkpoint.flatten(model.params)
    for name in params:  # spread the weights so every path carries a gradient well above rounding
        params[name] = params[name] + rng.standard_normal(params[name].shape) * 0.3
    params = checkpoint.unflatten(params)
    B, T = 2, 6
    ids = rng.integers(0, 11, (B, T))
    labels = np.where(rng.random((B, T)) < 0.2, -100, ids)
    labels[:, -1] = ids[:, -1]
    labels[0, 1] = ids[0, 1]  # at least one label counts
    mask = None
    if padded:
        mask = np.ones((B, T))
        mask[1, 4:] = 0  # right padding: every query still sees key 0
    tt = rng.integers(0, 11, (B, T)) if token_types else None
    kwargs = dict(attention_mask=mask, token_type_ids=tt)

    if not dropout:  # the training forward is modeling's forward (both in float32: rounding ~1e-6)
        params32 = checkpoint.unflatten({k: v.astype(np.float32) for k, v in checkpoint.flatten(params).items()})
        ref = minigpt2.GPT2LMHeadModel(cfg, params32)(ids, labels=labels, **kwargs).loss
        ours = grad.forward(params32, cfg, ids, labels, **kwargs)[0]
        assert abs(ours - ref) < 1e-5 * max(1, abs(ref)), (ours, ref)
    params = to_float64(params)
    draw = (lambda: np.random.default_rng(seed)) if dropout else (lambda: None)  # the same masks every call
    loss = lambda: grad.forward(params, cfg, ids, labels, rng=draw(), **kwargs)[0]  # noqa: E731
    _, tape = grad.forward(params, cfg, ids, labels, rng=draw(), **kwargs)
    grads = checkpoint.flatten(grad.backward(params, cfg, tape))
    flat = checkpoint.flatten(params)
    assert set(grads) == set(flat)
    for name, x in flat.items():
        coords = rng.choice(x.size, size=min(x.size, 4), replace=False)
        if name == "wte.weight":
            coords = np.concatenate([coords, ids.reshape(-1)[:2] * x.shape[1]])  # rows looked up as well
        check(name, grads[name], x, loss, coords=coords)
