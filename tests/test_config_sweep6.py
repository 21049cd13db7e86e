"""GPT-2 config variations against transformers, on every backend, kernel variant, thread count and weight format.

A new user's checkpoint need not look like gpt2: heads of odd or prime width (1, 2, 3, 7, 13, 65, 96), n_inner set
explicitly (odd, smaller or larger than 4 * n_embd), vocabularies of 1, 7 or 50257 tokens, few positions, one to three
layers, every activation transformers' GPT-2 accepts, the attention-scaling flags, an untied head, layer_norm_epsilon
from 1e-12 to 0.1, bos/eos/pad ids. For each such config this file saves a random transformers model
(save_pretrained, float32, attn_implementation="eager"), loads the files in minigpt2 and compares: logits, hidden
states and attention probabilities of a forward pass; a cache grown one token at a time against the whole sequence; a
left-padded batch with attention_mask (prompt and decoding steps); greedy generate's ids. It does so on the NumPy
backend and on the C backend with each compiled variant this CPU runs (and the C backend sending everything to NumPy),
at 1, 2 and 3 threads, and in bfloat16, float16 and int8. test_parity_live.py draws configs on the default backend
only; test_invariants5.py sweeps backends and formats on one tiny config; this file crosses the two.

Tolerances come from float32 rounding, u = 2^-24 (as in test_invariants5.py):

* Two float32 evaluations of the same function whose sums run in different orders each stay within K * u * sum|terms|
  of the exact value, K the longest sum in the model: the MLP's n_inner (or 4 * n_embd) inputs, n_embd for the
  attention projections, or the keys a query attends to (at most n_positions). So they differ by at most
  ``2 * K * u * max(1, max|ref|)`` (f32_tol), relative to the largest magnitude as the errors are set by the
  magnitude of what is summed, not by one output. Attention probabilities lie in [0, 1]: 2 * K * u.
  (Measured: at most 0.09 of the bound on the float32 sweep, 0.3 on the 100-token batch, 0.35 with int8.)
* bfloat16 and float16 change nothing: transformers loads the same checkpoint with torch_dtype, rounding every
  parameter itself, and both sides then compute in float32 with the same rounded values (checked to be equal, bit for
  bit), so the bound is the float32 one.
* int8 has no transformers counterpart on a CPU (bitsandbytes): the reference is transformers holding the float32
  values minigpt2's int8 weights stand for, with each linear layer's input rounded to int16 as minigpt2 rounds it
  (weights.round_int16, by a forward pre-hook). A difference of float32 rounding upstream may move an input by one
  int16 step, 2^-15 of its block's largest magnitude: with 4 int8 products per block and the head,
  ``f32_tol + (4 * n_layer + 1) * 2^-15 * max(1, max|ref|)``.
* Greedy ids must be equal; a mismatch is allowed only at a step whose two best logits (transformers') are closer
  than the tolerance, a tie that rounding may break either way.

Configs leave out n_embd of 2 to 6: a layer norm over so few numbers amplifies its inputs' rounding by
max|x| / std(x), unbounded (at n_embd=2, 13x was measured: transformers' own float32 result was then 10x further
from float64 than usual), so a bound of float32 rounding alone does not hold there. n_embd=1 is kept: its layer
norm is exact (the output is the bias).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import randomize_torch_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import minigpt2  # noqa: E402
from minigpt2 import GPT2Config, GPT2LMHeadModel, backend, weights  # noqa: E402
from minigpt2.activations import ACTIVATIONS  # noqa: E402

U = 2.0 ** -24
VARIANTS = backend.kernel_variants()
needs_c = pytest.mark.skipif(not backend.c_available(), reason="the C extension is not built")

# name -> transformers GPT2Config arguments, each a shape the published checkpoints never have.
CONFIGS = {
    "e30h3-v7": dict(n_embd=30, n_head=3, vocab_size=7, n_positions=20, n_layer=2),  # head_dim 10
    "e7h7-v1": dict(n_embd=7, n_head=7, vocab_size=1, n_positions=12, n_layer=1),  # head_dim 1; one token
    "e96h1-inner17": dict(n_embd=96, n_head=1, vocab_size=50, n_positions=40, n_layer=1, n_inner=17),  # one wide head
    "e35h5-inner301": dict(n_embd=35, n_head=5, vocab_size=33, n_positions=24, n_layer=3, n_inner=301),  # head_dim 7
    "e22h11-unscaled": dict(n_embd=22, n_head=11, vocab_size=13, n_positions=16, n_layer=2, scale_attn_weights=False),
    "e26h2-inverse-reorder": dict(n_embd=26, n_head=2, vocab_size=29, n_positions=16, n_layer=3,
                                  scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True),  # head_dim 13
    "e21h3-untied-eps0.1": dict(n_embd=21, n_head=3, vocab_size=17, n_positions=16, n_layer=2,
                                tie_word_embeddings=False, layer_norm_epsilon=0.1),
    "e12h4-v50257-eps1e-12": dict(n_embd=12, n_head=4, vocab_size=50257, n_positions=8, n_layer=1,
                                  layer_norm_epsilon=1e-12),  # head_dim 3, GPT-2's vocabulary
    "e130h2-inner5": dict(n_embd=130, n_head=2, vocab_size=41, n_positions=48, n_layer=1, n_inner=5),  # head_dim 65
    "e1h1-inner1": dict(n_embd=1, n_head=1, vocab_size=3, n_positions=10, n_layer=2, n_inner=1),
}

# How each case runs: the NumPy backend, then the C backend with everything sent to NumPy ("c:numpy") and with each
# variant this CPU runs forced, at 1, 2, 3 threads in turn (so every variant meets a different count, and odd work
# splits: 3 threads on 2 cores).
MODES = ["numpy"] + [f"c:{v}:{1 + i % 3}" for i, v in enumerate(("numpy",) + VARIANTS)]
MODE_PARAMS = [m if m == "numpy" else pytest.param(m, marks=needs_c) for m in MODES]


def longest_sum(cfg, n_keys=0):
    """K: the most terms any float32 sum of the model adds (see the module docstring)."""
    return max(cfg.get("n_inner") or 4 * cfg["n_embd"], cfg["n_embd"], n_keys or cfg["n_positions"])


def f32_tol(ref, k):
    return 2 * k * U * max(1.0, float(np.abs(ref).max()))


def int8_extra(ref, n_layer):
    return (4 * n_layer + 1) * 2.0 ** -15 * max(1.0, float(np.abs(ref).max()))


def assert_within(ours, ref, tol, what):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs transformers {ref.shape}"
    diff = float(np.abs(ours - ref).max(initial=0))
    assert diff <= tol, f"{what}: max|ours - transformers| {diff:.3g} > {tol:.3g} (max|ref| {np.abs(ref).max():.3g})"


def greedy_agrees(ours, theirs, scores, tol):
    """Equal ids, or the first difference at a step whose two best transformers logits were within tol (a tie)."""
    if ours.shape == theirs.shape and np.array_equal(ours, theirs):
        return True
    if ours.shape != theirs.shape:
        return False
    column = np.nonzero((ours != theirs).any(axis=0))[0][0]
    step = column - (theirs.shape[1] - len(scores))  # index into the generated steps
    if step < 0:
        return False
    rows = np.nonzero(ours[:, column] != theirs[:, column])[0]
    top2 = np.sort(scores[step][rows].astype(np.float64), axis=-1)[:, -2:]
    return bool((top2[:, 1] - top2[:, 0] <= tol).all())


def use(mode):
    """Switch to ``mode`` ("numpy" or "c:<kernel choice>:<threads>")."""
    if mode == "numpy":
        backend.set_backend("numpy")
        return None
    _, variant, threads = mode.split(":")
    backend.set_backend("c")
    backend.set_num_threads(int(threads))
    backend.set_kernel(variant)
    return variant


@pytest.fixture(autouse=True)
def _restore_backend(backend_restored):
    """(conftest.py: backend, threads and kernel variant put back after each test)"""
    yield


def write_checkpoint(directory, cfg, seed=0):
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg, attn_implementation="eager"))
    randomize_torch_model(model, seed).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return model


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def left_pad(prompts, pad):
    L = max(map(len, prompts))
    ids, mask = np.full((len(prompts), L), pad, np.int64), np.zeros((len(prompts), L), np.int64)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):], mask[i, L - len(p):] = p, 1
    return ids, mask


def positions(mask):
    return np.clip(mask.cumsum(-1) - 1, 0, None)


class Case:
    """One config's checkpoint, its inputs, and transformers' answers to them (computed once)."""

    def __init__(self, directory, cfg):
        self.dir, self.cfg = directory, cfg
        hf = write_checkpoint(directory, cfg)
        V, npos = cfg["vocab_size"], cfg["n_positions"]
        rng = np.random.default_rng(0)
        self.T = min(9, npos)
        self.ids = rng.integers(0, V, (2, self.T))
        self.pad = 0
        # a left-padded batch, then two decoding steps
        self.prompts = [rng.integers(0, V, n) for n in (min(5, npos - 4), 1, min(7, npos - 4))]
        self.padded, self.mask = left_pad(self.prompts, self.pad)
        self.new = rng.integers(0, V, (3, 2))
        full_ids = np.concatenate([self.padded, self.new], 1)
        full_mask = np.concatenate([self.mask, np.ones((3, 2), np.int64)], 1)
        self.max_new = min(8, npos - self.padded.shape[1])
        with torch.no_grad():
            self.ref = hf(t(self.ids), output_hidden_states=True, output_attentions=True)
            self.ref_padded = hf(t(self.padded), attention_mask=t(self.mask),
                                 position_ids=t(positions(self.mask))).logits.numpy()
            self.ref_steps = hf(t(full_ids), attention_mask=t(full_mask),
                                position_ids=t(positions(full_mask))).logits.numpy()[:, -2:]
            g = hf.generate(t(self.padded), attention_mask=t(self.mask), max_new_tokens=self.max_new,
                            do_sample=False, pad_token_id=self.pad, output_scores=True, return_dict_in_generate=True)
        self.ref_greedy = g.sequences.numpy()
        self.ref_scores = np.stack([s.numpy() for s in g.scores])
        self.k = longest_sum(cfg)
        self.model = GPT2LMHeadModel.from_pretrained(directory)


_cases = {}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    def get(name):
        if name not in _cases:
            _cases[name] = Case(str(tmp_path_factory.mktemp(name)), CONFIGS[name])
        return _cases[name]
    yield get
    _cases.clear()


# -- 1. every config, every backend / variant / thread count, float32 --------------------------------------------

@pytest.mark.parametrize("mode", MODE_PARAMS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_matches_transformers_on_every_backend(case, name, mode):
    c = case(name)
    m, k, ref = c.model, c.k, c.ref
    variant = use(mode)
    served = dict(backend._ckernels.calls) if variant else {}
    label = f"{name} [{mode}]"

    out = m(c.ids, output_hidden_states=True, output_attentions=True)
    want = ref.logits.numpy()
    assert_within(out.logits, want, f32_tol(want, k), f"{label} logits")
    assert len(out.hidden_states) == len(ref.hidden_states) == c.cfg["n_layer"] + 1
    for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert_within(a, b.numpy(), f32_tol(b.numpy(), k), f"{label} hidden_states[{i}]")
    for i, (a, b) in enumerate(zip(out.attentions, ref.attentions)):
        assert_within(a, b.numpy(), 2 * k * U, f"{label} attentions[{i}]")

    past, steps = None, []  # the cache grown one token at a time
    for j in range(c.T):
        o = m(c.ids[:, j:j + 1], past_key_values=past, use_cache=True)
        past = o.past_key_values
        steps.append(o.logits[:, 0])
    assert_within(np.stack(steps, 1), want, f32_tol(want, k), f"{label} one token at a time vs the whole sequence")

    out = m(c.padded, attention_mask=c.mask, position_ids=positions(c.mask), use_cache=True)
    assert_within(out.logits, c.ref_padded, f32_tol(c.ref_padded, k), f"{label} left-padded batch")
    mask, past, steps = c.mask, out.past_key_values, []
    for j in range(c.new.shape[1]):
        mask = np.concatenate([mask, np.ones((3, 1), np.int64)], 1)
        o = m(c.new[:, j:j + 1], past_key_values=past, attention_mask=mask,
              position_ids=mask.sum(-1, keepdims=True) - 1)
        past = o.past_key_values
        steps.append(o.logits[:, 0])
    assert_within(np.stack(steps, 1), c.ref_steps, f32_tol(c.ref_steps, k), f"{label} padded decoding steps")

    greedy = m.generate(c.padded, attention_mask=c.mask, max_new_tokens=c.max_new, do_sample=False,
                        pad_token_id=c.pad)
    assert greedy_agrees(greedy, c.ref_greedy, c.ref_scores, f32_tol(c.ref_scores, k)), (
        f"{label} greedy ids\n ours         {greedy.tolist()}\n transformers {c.ref_greedy.tolist()}")

    if variant and variant != "numpy":  # the C core served this case, in this variant (not NumPy behind it)
        calls = backend._ckernels.calls
        assert calls["linear"] > served.get("linear", 0) and calls["layer_norm"] > served.get("layer_norm", 0)
        assert calls["transformer_blocks"] > served.get("transformer_blocks", 0), "no decoding step ran fused"
        assert backend._ckernels.last_variant["linear"] == variant


def test_a_longer_batch_crosses_the_c_cores_row_thresholds(tmp_path):
    """13 rows decoding (past the C core's 12-row decode kernels) and a 33-token prompt (past BLAS_ROWS = 32), odd
    head_dim 13 and n_inner 55, 100 keys (several 64-key attention tiles), left padding."""
    cfg = dict(n_embd=39, n_head=3, vocab_size=31, n_positions=110, n_layer=2, n_inner=55)
    hf = write_checkpoint(tmp_path, cfg)
    m = GPT2LMHeadModel.from_pretrained(tmp_path)
    rng = np.random.default_rng(5)
    B, T = 13, 100
    ids, mask = rng.integers(0, 31, (B, T)), np.ones((B, T), np.int64)
    for i in range(B):
        mask[i, :rng.integers(0, T)] = 0
    pos = positions(mask)
    with torch.no_grad():
        want = hf(t(ids), attention_mask=t(mask), position_ids=t(pos)).logits.numpy()
    tol = f32_tol(want, longest_sum(cfg, T))
    for mode in MODES if backend.c_available() else ["numpy"]:
        use(mode)
        assert_within(m(ids, attention_mask=mask, position_ids=pos).logits, want, tol, f"[{mode}] prompt")
        P = 33
        o = m(ids[:, :P], attention_mask=mask[:, :P], position_ids=pos[:, :P])
        past, steps = o.past_key_values, [o.logits]
        for j in range(P, P + 6):
            o = m(ids[:, j:j + 1], past_key_values=past, attention_mask=mask[:, :j + 1], position_ids=pos[:, j:j + 1])
            past = o.past_key_values
            steps.append(o.logits)
        assert_within(np.concatenate(steps, 1), want[:, :P + 6], tol, f"[{mode}] 33-token prompt, then 13-row steps")


# -- 2. activations --------------------------------------------------------------------------------------------

ACT_CONFIG = dict(n_embd=24, n_head=3, vocab_size=19, n_positions=12, n_layer=2, n_inner=37)


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("plain")
    write_checkpoint(directory, ACT_CONFIG)
    return directory


def hf_activation_names():
    from transformers.activations import ACT2FN

    return sorted(ACT2FN)


@pytest.mark.parametrize("act", [a for a in hf_activation_names() if a in ACTIVATIONS])
def test_every_activation_both_libraries_know_agrees(tmp_path, act):
    """The MLP's activation_function, on every backend mode (the C core runs the fused decoding block for gelu_new
    only, and its gelu_new kernel for every name that means the tanh form)."""
    cfg = {**ACT_CONFIG, "activation_function": act}
    hf = write_checkpoint(tmp_path, cfg)
    m = GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = np.random.default_rng(6).integers(0, 19, (2, 10))
    with torch.no_grad():
        want = hf(t(ids)).logits.numpy()
    tol = f32_tol(want, longest_sum(cfg))
    for mode in MODES if backend.c_available() else ["numpy"]:
        use(mode)
        assert_within(m(ids).logits, want, tol, f"{act} [{mode}] forward")
        past, steps = None, []
        for j in range(ids.shape[1]):
            o = m(ids[:, j:j + 1], past_key_values=past)
            past = o.past_key_values
            steps.append(o.logits[:, 0])
        assert_within(np.stack(steps, 1), want, tol, f"{act} [{mode}] one token at a time")


def test_the_tolerance_tells_the_tanh_gelu_from_the_exact_one(tmp_path):
    """The bound above is not so loose that GPT-2's gelu_new and the exact (erf) gelu pass for each other."""
    logits = {}
    for act in ("gelu_new", "gelu"):
        hf = write_checkpoint(tmp_path / act, {**ACT_CONFIG, "activation_function": act})
        with torch.no_grad():
            logits[act] = hf(t(np.arange(10)[None] % 19)).logits.numpy()
    diff = np.abs(logits["gelu_new"] - logits["gelu"]).max()
    assert diff > 10 * f32_tol(logits["gelu_new"], longest_sum(ACT_CONFIG)), diff


@pytest.mark.parametrize("act", [a for a in hf_activation_names() if a not in ACTIVATIONS])
def test_every_other_transformers_activation_is_refused_by_name(plain_checkpoint, tmp_path, act):
    """A checkpoint whose config.json names an activation minigpt2 does not compute is refused at load, naming the
    value and every allowed one, never run with something else."""
    shutil.copytree(plain_checkpoint, tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    config = json.loads(path.read_text())
    config["activation_function"] = act
    path.write_text(json.dumps(config))
    for make in (lambda: GPT2LMHeadModel.from_pretrained(tmp_path / "ckpt"),
                 lambda: GPT2Config(activation_function=act)):
        with pytest.raises(ValueError) as raised:
            make()
        message = str(raised.value)
        assert "activation_function" in message and repr(act) in message, message
        assert all(repr(name) in message for name in ACTIVATIONS), message


# -- 3. weight formats -----------------------------------------------------------------------------------------

FORMAT_CONFIGS = ["e30h3-v7", "e7h7-v1", "e35h5-inner301", "e21h3-untied-eps0.1", "e130h2-inner5"]


def int8_reference(model, cfg):
    """transformers holding the float32 values of minigpt2's int8 weights, each linear input rounded to int16 as
    minigpt2's int8 products round it."""
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg, attn_implementation="eager")).eval()
    state = {k: torch.from_numpy(np.array(weights.widen(v), np.float32)) for k, v in model.state_dict().items()}
    result = hf.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and all(k.endswith("attn.bias") for k in result.missing_keys), result

    def round_input(module, args):
        return (torch.from_numpy(weights.round_int16(args[0].numpy())),) + tuple(args[1:])

    for name, module in hf.named_modules():
        if type(module).__name__ == "Conv1D" or name == "lm_head":
            module.register_forward_pre_hook(round_input)
    return hf


@pytest.mark.parametrize("fmt", ["bfloat16", "float16", "int8"])
@pytest.mark.parametrize("name", FORMAT_CONFIGS)
def test_weight_formats_match_transformers_on_the_same_weights(case, name, fmt):
    c = case(name)
    cfg = c.cfg
    if fmt == "int8":
        m = GPT2LMHeadModel.from_pretrained(c.dir, load_in_8bit=True)
        hf = int8_reference(m, cfg)
    else:
        m = GPT2LMHeadModel.from_pretrained(c.dir, torch_dtype=fmt)
        hf = transformers.GPT2LMHeadModel.from_pretrained(c.dir, torch_dtype=getattr(torch, fmt),
                                                          attn_implementation="eager").float().eval()
        theirs = hf.state_dict()
        for key, value in m.state_dict().items():  # the same rounded weights, bit for bit
            assert np.array_equal(weights.widen(value), theirs[key].numpy()), key
    with torch.no_grad():
        want = hf(t(c.ids)).logits.numpy()
    tol = f32_tol(want, c.k) + (int8_extra(want, cfg["n_layer"]) if fmt == "int8" else 0.0)
    for mode in MODES if backend.c_available() else ["numpy"]:
        variant = use(mode)
        before = backend._ckernels.calls["linear"] if variant else 0
        assert_within(m(c.ids).logits, want, tol, f"{name} {fmt} [{mode}] forward")
        past, steps = None, []
        for j in range(c.T):
            o = m(c.ids[:, j:j + 1], past_key_values=past)
            past = o.past_key_values
            steps.append(o.logits[:, 0])
        assert_within(np.stack(steps, 1), want, tol, f"{name} {fmt} [{mode}] one token at a time")
        if variant and variant != "numpy":
            assert backend._ckernels.calls["linear"] > before, f"{mode}: the C core ran no {fmt} product"


@pytest.mark.parametrize("stored", ["bfloat16", "float16"])
def test_a_16_bit_checkpoint_loads_as_transformers_loads_it(tmp_path, stored):
    """Saved in 16 bits with odd sizes (tensors at 2-byte offsets): the default load is float32 in both libraries,
    torch_dtype="auto" keeps the file's format; both give transformers' numbers."""
    cfg = CONFIGS["e35h5-inner301"]
    write_checkpoint(tmp_path, cfg).to(getattr(torch, stored)).save_pretrained(tmp_path, safe_serialization=True)
    ids = np.random.default_rng(7).integers(0, cfg["vocab_size"], (2, 9))
    for kw in ({}, {"torch_dtype": "auto"}):
        m = GPT2LMHeadModel.from_pretrained(tmp_path, **kw)
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager", **kw).eval()
        assert m.dtype == str(hf.dtype).replace("torch.", "") == ("float32" if not kw else stored)
        with torch.no_grad():
            want = hf.float()(t(ids)).logits.numpy()
        for mode in MODES if backend.c_available() else ["numpy"]:
            use(mode)
            assert_within(m(ids).logits, want, f32_tol(want, longest_sum(cfg)), f"{stored} file {kw} [{mode}]")


# -- 4. bos / eos / pad ids ------------------------------------------------------------------------------------

TOKEN_IDS = [
    dict(bos_token_id=0, eos_token_id=3),  # pad_token_id None: generate pads with eos
    dict(bos_token_id=5, eos_token_id=[3, 4], pad_token_id=6),  # two eos ids
    dict(bos_token_id=1, eos_token_id=2, pad_token_id=2),  # pad is eos
    dict(bos_token_id=None, eos_token_id=None, pad_token_id=None),  # none at all: runs to max_new_tokens
    dict(bos_token_id=4, eos_token_id=4, pad_token_id=0),
]


@pytest.mark.parametrize("ids_cfg", TOKEN_IDS, ids=lambda d: "-".join(f"{k[:3]}{v}" for k, v in d.items()))
def test_generate_with_the_configs_token_ids_as_transformers(tmp_path, ids_cfg):
    """A vocabulary of 7, so eos comes up: rows stop at the config's eos ids and are padded with its pad id (or eos),
    in a left-padded batch and alone, greedy and beam search."""
    cfg = dict(n_embd=30, n_head=3, vocab_size=7, n_positions=40, n_layer=2, **ids_cfg)
    rng = np.random.default_rng(8)
    pad = ids_cfg.get("pad_token_id") or 0
    prompts = [rng.integers(0, 7, n) for n in (4, 1, 6)]
    ids, mask = left_pad(prompts, pad)
    for seed in (0,):
        hf = write_checkpoint(tmp_path / str(seed), cfg, seed)
        m = GPT2LMHeadModel.from_pretrained(tmp_path / str(seed))
        calls = [dict(input_ids=ids, attention_mask=mask, max_new_tokens=16, do_sample=False),
                 dict(input_ids=prompts[0][None], max_new_tokens=16, do_sample=False),
                 dict(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3, do_sample=False)]
        with torch.no_grad():
            wants = [hf.generate(**{k: t(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}).numpy()
                     for kw in calls]
        if ids_cfg["eos_token_id"] not in (None, 4):  # (the model never picks token 4) rows do stop at an eos id
            eos = np.atleast_1d(ids_cfg["eos_token_id"])
            assert np.isin(wants[0][:, ids.shape[1]:], eos).any(), wants[0]
        for mode in [m for m in MODES if m != "c:numpy:1"] if backend.c_available() else ["numpy"]:
            use(mode)
            for kw, want in zip(calls, wants):
                got = m.generate(**kw)
                assert np.array_equal(got, want), (
                    f"{ids_cfg} seed {seed} [{mode}] {sorted(kw)}\n ours         {got.tolist()}\n"
                    f" transformers {want.tolist()}")


# -- 5. config fields that shape the outputs -----------------------------------------------------------------

@pytest.mark.parametrize("field", ["use_cache", "output_hidden_states", "output_attentions", "return_dict"])
def test_output_settings_in_the_config_shape_the_outputs_as_in_transformers(tmp_path, field):
    base = dict(n_embd=12, n_head=3, vocab_size=11, n_positions=16, n_layer=2)
    cfg = {**base, field: field != "use_cache" and field != "return_dict"}
    use("numpy")  # (what the outputs hold does not depend on the backend)
    write_checkpoint(tmp_path, cfg)
    m = GPT2LMHeadModel.from_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    with torch.no_grad():
        theirs = hf(t(ids))
    ours = m(ids)
    if field == "return_dict":
        assert isinstance(ours, tuple) and isinstance(theirs, tuple) and len(ours) == len(theirs)
        assert_within(ours[0], theirs[0].numpy(), f32_tol(theirs[0].numpy(), 48), "logits")
        return
    present = sorted(k for k, v in ours.items() if v is not None)
    assert present == sorted(k for k, v in theirs.items() if v is not None)
    for key in present:
        if key in ("hidden_states", "attentions"):
            assert len(ours[key]) == len(theirs[key])
            for a, b in zip(ours[key], theirs[key]):
                assert_within(a, b.numpy(), f32_tol(b.numpy(), 48), key)


@pytest.mark.parametrize("flag", ["scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn",
                                  "tie_word_embeddings", "add_cross_attention", "summary_use_proj",
                                  "summary_proj_to_labels"])
@pytest.mark.parametrize("value", ["false", "true", None, 0.0, 2])
def test_a_flag_that_is_not_true_or_false_is_refused(plain_checkpoint, tmp_path, flag, value):
    """transformers tests these flags for truth: a config.json holding the string "false" (a hand edit, a YAML or
    command-line tool) would scale, tie or add layers it meant not to. minigpt2 says so instead."""
    with pytest.raises(ValueError) as raised:
        GPT2Config(**{flag: value})
    message = str(raised.value)
    assert f"GPT2Config.{flag}" in message and "True or False" in message and repr(value) in message, message
    shutil.copytree(plain_checkpoint, tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), flag: value}))
    with pytest.raises(ValueError, match=f"GPT2Config.{flag}"):
        GPT2LMHeadModel.from_pretrained(tmp_path / "ckpt")


def test_numpy_booleans_are_read_as_flags():
    config = GPT2Config(scale_attn_weights=np.bool_(False), tie_word_embeddings=np.True_)
    assert config.scale_attn_weights is False and config.tie_word_embeddings is True
    assert minigpt2.GPT2Config.from_dict(config.to_dict()).scale_attn_weights is False
