"""Weights in fewer bits (minigpt2/weights.py): the rounding of each format, the error it causes, loading,
saving and the errors for bad requests.

Every tolerance comes from the rounding itself (docs/numerics.md, "Weights in fewer bits"):
  - round to nearest keeps a value within half a unit in the last place: relative u = 2^-p for p significant
    bits, u = 2^-8 for bfloat16 (8 bits), 2^-11 for float16 (11 bits);
  - int8 keeps a weight within half its block's scale (scale = the block's largest magnitude / 127);
  - the model's outputs: rounding moves each weight by at most its bound b(w) (u|w|, or scale / 2), with no
    preferred sign. The yardstick is the same model with EVERY weight moved by its full bound b(w), in a
    random direction: the rounded model's largest logit difference may not exceed the yardstick's Y. From
    a logit difference of at most Y follow: KL(p32 || p) <= Y^2 / 2 (Hoeffding's lemma: the log-ratio's
    range is at most 2Y), and the top-1 token agrees wherever float32's top two logits are more than 2Y apart.
"""
import copy
import json
import os
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest

import minigpt2
from minigpt2 import backend, checkpoint, weights
from minigpt2.weights import BFloat16Weight, Int8Weight, widen

from conftest import assert_close, write_hf_checkpoint

U = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -11}  # unit roundoff 2^-p: p = 8 (bfloat16), 11 (float16)
F32_EPS = 2.0 ** -24  # float32's unit roundoff
FORMATS = ("bfloat16", "float16", "int8")


def normal_range_values(fmt, n=200_000, seed=0):
    """Random float32 values of both signs spread over many binades of ``fmt``'s normal range."""
    rng = np.random.default_rng(seed)
    low, high = (-30, 30) if fmt == "bfloat16" else (-13, 15)  # float16: normal from 2^-14, largest 65504
    magnitude = 2.0 ** rng.uniform(low, high, n)
    return (magnitude * rng.choice([-1, 1], n)).astype(np.float32)


# -- the formats, one weight at a time -----------------------------------------------------------------

def test_bfloat16_is_the_top_half_of_a_float32():
    bits = np.array([0x3F80, 0xC000, 0x3EAA, 0x7F80, 0x0000, 0x8000], np.uint16)
    w = BFloat16Weight(bits)
    expected = (bits.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(widen(w), expected) and widen(w)[:2].tolist() == [1.0, -2.0]
    exact = np.array([1.0, -2.0, 0.15625, 3.0e38], np.float32)  # values whose low 16 bits are already zero
    exact = (exact.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    assert np.array_equal(weights.to_bfloat16(exact).bits, (exact.view(np.uint32) >> 16).astype(np.uint16))


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_16_bit_rounding_is_within_half_a_unit_in_the_last_place(fmt):
    """|rounded - w| <= u |w| for every value (truncation misses this by up to 2x), and the errors have no
    preferred sign: their mean, relative to u|w|, is within 5 standard errors of 0 (truncation's is -0.7)."""
    a = normal_range_values(fmt)
    rounded = widen(weights.to_format(a, fmt)).astype(np.float64)
    relative = (rounded - a) / np.abs(a.astype(np.float64))
    assert np.abs(relative).max() <= U[fmt], f"largest relative error {np.abs(relative).max():.3g} > u = {U[fmt]:.3g}"
    toward_zero = relative * np.sign(a) / U[fmt]  # -1 .. 1; negative = the magnitude shrank
    assert abs(toward_zero.mean()) <= 5 * toward_zero.std() / np.sqrt(len(a)), toward_zero.mean()


def test_bfloat16_ties_go_to_the_even_neighbour_and_specials_survive():
    # Low halves of exactly 0x8000 are ties: 0x3F80_8000 -> 0x3F80 (even), 0x3F81_8000 -> 0x3F82.
    ties = np.array([0x3F808000, 0x3F818000, 0xBF818000], np.uint32).view(np.float32)
    assert weights.to_bfloat16(ties).bits.tolist() == [0x3F80, 0x3F82, 0xBF82]
    special = np.array([np.inf, -np.inf, np.nan, -0.0, np.finfo(np.float32).max], np.float32)
    out = widen(weights.to_bfloat16(special))
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2]) and np.signbit(out[3])
    assert out[4] == np.inf  # beyond bfloat16's largest finite value, as torch rounds it


def test_bfloat16_rounding_is_torchs():
    torch = pytest.importorskip("torch")
    a = normal_range_values("bfloat16", seed=1)
    ours = weights.to_bfloat16(a).bits
    theirs = torch.from_numpy(a).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours, theirs)


def test_float16_refuses_weights_beyond_its_range():
    with pytest.raises(ValueError, match="does not fit float16.*bfloat16"):
        weights.to_float16(np.array([1.0, 70000.0], np.float32))


@pytest.mark.parametrize("shape, axis", [((100, 70), 0), ((70, 100), -1), ((64, 33), 0), ((5, 32), -1)])
@pytest.mark.parametrize("magnitude", [0.02, 1e-5])  # 1e-5: scales among float16's subnormals
def test_int8_rounding_is_within_half_a_scale(shape, axis, magnitude):
    """Each weight within half its block's scale (plus float32's rounding of w / scale); the scale is the
    smallest float16 not below the block's largest magnitude / 127, so no |q| passes 127."""
    rng = np.random.default_rng(2)
    a = (rng.standard_t(4, shape) * magnitude).astype(np.float32)
    q = weights.quantize_int8(a, axis)
    assert q.q.dtype == np.int8 and q.scales.dtype == np.float16 and np.abs(q.q).max() <= 127
    n = shape[0 if axis == 0 else 1]
    per_weight = np.repeat(q.scales, 32, axis=axis)[:n] if axis == 0 else np.repeat(q.scales, 32, axis=1)[:, :n]
    per_weight = per_weight.astype(np.float32)
    blocks = np.arange(n) // 32
    largest = np.array([np.abs(a[blocks == b] if axis == 0 else a[:, blocks == b]).max(axis=axis)
                        for b in range(blocks.max() + 1)])
    target = (largest if axis == 0 else largest.T) / np.float32(127)
    scales = q.scales.astype(np.float32)
    below = np.nextafter(q.scales, np.float16(0)).astype(np.float32)
    assert (scales >= target).all() and (below < target).all()
    error = np.abs(widen(q) - a)
    assert (error <= per_weight / 2 * (1 + 4 * F32_EPS) + 2 * F32_EPS * np.abs(a)).all(), error.max()


def test_int8_refuses_weights_whose_scale_float16_cannot_hold():
    with pytest.raises(ValueError, match="too large for int8.*bfloat16"):
        weights.quantize_int8(np.array([[1.0], [1e7]], np.float32))


def test_views_rows_and_transposes_widen_to_the_same_values():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 70)).astype(np.float32)
    ids = np.array([[3, 0, 39], [7, 7, 1]])
    for w in (weights.to_bfloat16(a), weights.to_float16(a), weights.quantize_int8(a, -1)):
        assert np.array_equal(widen(w[ids]), widen(w)[ids]), weights.format_name(w)
        assert np.array_equal(widen(w.T), widen(w).T), weights.format_name(w)
    assert widen(a) is a  # float32 is the reference format: no copy
    assert weights.nbytes(weights.quantize_int8(np.zeros((64, 10), np.float32))) == 64 * 10 + 2 * 10 * 2


def test_format_objects_refuse_what_they_cannot_hold():
    with pytest.raises(TypeError, match="uint16"):
        BFloat16Weight(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="scales"):
        Int8Weight(np.zeros((64, 3), np.int8), np.zeros((1, 3), np.float16))
    with pytest.raises(TypeError, match="float16 scales"):
        Int8Weight(np.zeros((64, 3), np.int8), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="finite"):
        weights.quantize_int8(np.array([[np.nan]], np.float32))
    with pytest.raises(TypeError, match="rows"):
        weights.quantize_int8(np.ones((64, 3), np.float32), 0)[[1]]
    with pytest.raises(TypeError, match="not a weight"):
        weights.format_name(np.zeros(3, np.float64))


@pytest.mark.parametrize("fmt", FORMATS)
def test_linear_error_is_bounded_by_the_weights_rounding(fmt):
    """For one layer the bound is exact: |x @ W~ - x @ W| <= |x| @ b(W), b the per-weight bound, plus
    float32's rounding of the two sums (n eps |x| @ |W| each, n the inner size)."""
    rng = np.random.default_rng(4)
    W = (rng.standard_normal((768, 300)) * 0.02).astype(np.float32)
    x = rng.standard_normal((8, 768)).astype(np.float32)
    w = weights.to_format(W, fmt)
    if fmt == "int8":
        bound = np.repeat(w.scales, 32, axis=0) / 2
    else:
        bound = U[fmt] * np.abs(W)
    error = np.abs(minigpt2.layers.linear.reference(x, w) - x @ W)
    allowed = np.abs(x) @ bound + 2 * 768 * F32_EPS * (np.abs(x) @ np.abs(W)) * (1 + U.get(fmt, 0.01))
    assert (error <= allowed).all(), (error / allowed).max()


# -- the model's outputs -------------------------------------------------------------------------------

CONFIG = dict(vocab_size=500, n_positions=64, n_embd=128, n_layer=4, n_head=4, initializer_range=0.1,
              bos_token_id=0, eos_token_id=0)


def model_with(seed=0, **config):
    """A random model whose logits have a spread like a trained model's (initializer_range 0.1 at n_embd 128)
    and whose biases and layer norms are not the identity."""
    config = minigpt2.GPT2Config(**{**CONFIG, **config})
    model = minigpt2.GPT2LMHeadModel(config, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for name, a in checkpoint.flatten(model.params).items():
        if a.ndim == 1:
            a += (rng.standard_normal(a.shape) * 0.1).astype(np.float32)
    return model


def yardstick(model, fmt, seed):
    """The model with every parameter that ``fmt`` rounds moved by its full rounding bound, random sign."""
    rng = np.random.default_rng(seed)
    moved = copy.deepcopy(model)
    flat = checkpoint.flatten(model.params)
    for name, a in flat.items():
        if fmt == "int8" and not weights.is_matrix(name, a):
            bound = np.zeros_like(a)  # int8 keeps biases and layer norms in float32
        elif fmt == "int8":
            q = weights.quantize_int8(a, -1 if name in ("wte.weight", "wpe.weight") else 0)
            bound = widen(Int8Weight(q.q * 0 + 1, q.scales, q.axis)) / 2  # scale / 2 for each weight
        else:
            bound = U[fmt] * np.abs(a)
        *path, last = name.split(".")
        node = moved.params
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = (a + rng.choice([-1, 1], a.shape) * bound).astype(np.float32)
    return moved


def kl_divergence(logits_p, logits_q):
    """KL(p || q) of the softmax distributions, per position (float64).  # [..., V] -> [...]"""
    lp = logits_p - np.logaddexp.reduce(logits_p.astype(np.float64), axis=-1, keepdims=True)
    lq = logits_q - np.logaddexp.reduce(logits_q.astype(np.float64), axis=-1, keepdims=True)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_models_error_is_bounded_by_its_weights_rounding(fmt):
    model = model_with()
    ids = np.random.default_rng(5).integers(0, CONFIG["vocab_size"], (4, 48))
    reference = model(ids).logits.astype(np.float64)
    Y = min(np.abs(yardstick(model, fmt, seed)(ids).logits - reference).max() for seed in (0, 1))
    narrow = model_with().to(fmt)
    assert narrow.dtype == fmt
    logits = narrow(ids).logits
    difference = np.abs(logits - reference)
    assert 0 < difference.max() <= Y, f"{fmt}: largest logit difference {difference.max():.3g}, yardstick {Y:.3g}"
    kl = kl_divergence(reference, logits)
    assert (kl <= Y ** 2 / 2 + 1e-12).all(), (kl.max(), Y ** 2 / 2)
    top2 = np.sort(reference, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 2 * Y  # float32's choice is clear of the rounding
    assert clear.mean() > 0.25, "the test model's logits are too flat to say anything about the top-1 token"
    agree = logits.argmax(-1) == reference.argmax(-1)
    assert agree[clear].all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_greedy_continuations_agree_while_float32s_choice_is_clear(fmt):
    """Along float32's greedy continuation, the narrow model chooses float32's token at every step whose
    top-two gap exceeds 2Y (Y measured on that continuation); generate() gives the same tokens up to the
    first closer call, after which nothing is claimed."""
    model, narrow = model_with(seed=7), model_with(seed=7).to(fmt)
    prompt = np.array([[5, 17, 3]])
    ours = model.generate(prompt, max_new_tokens=30, do_sample=False)
    theirs = narrow.generate(prompt, max_new_tokens=30, do_sample=False)
    reference = model(ours).logits[0]  # [T, V]: row t - 1 chooses token t
    Y = min(np.abs(yardstick(model, fmt, s)(ours).logits[0] - reference).max() for s in (0, 1))
    logits = narrow(ours).logits[0]  # fed float32's continuation (teacher forcing)
    assert np.abs(logits - reference).max() <= Y
    top2 = np.sort(reference, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0] > 2 * Y)[prompt.shape[1] - 1:-1]  # the steps that chose a new token
    assert clear.mean() > 0.5, "the test model's choices are too close to say anything"
    steps = slice(prompt.shape[1] - 1, -1)
    assert (logits[steps].argmax(-1) == ours[0, prompt.shape[1]:])[clear].all()
    # generate() itself, on its own tokens: the same sequence up to the first close call.
    agreed = prompt.shape[1] + (np.argmin(clear) if not clear.all() else len(clear))
    assert np.array_equal(theirs[:, :agreed], ours[:, :agreed])


def test_the_backends_agree_on_narrow_weights():
    """The C core reads the narrow formats itself (widening in registers); it must give the reference's numbers."""
    model = model_with().to("bfloat16")
    ids = np.arange(20)[None]
    saved = backend.get_backend()
    try:
        backend.set_backend("numpy")
        expected = model(ids).logits
        if backend.c_available():
            backend.set_backend("c")
            assert_close(model(ids).logits, expected, "logits, C backend")
    finally:
        backend.set_backend(saved)


# -- loading and saving --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def float32_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("float32")
    model_with(seed=11).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_a_16_bit_checkpoint_round_trips_memory_mapped(float32_dir, tmp_path, fmt):
    model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype=fmt)
    model.save_pretrained(tmp_path)
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["dtype"] == fmt and "torch_dtype" not in saved  # one field, as transformers 4.57 writes it
    header = read_header(tmp_path / "model.safetensors")
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16" if fmt == "bfloat16" else "F16"}
    again = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path, torch_dtype="auto")
    assert again.dtype == fmt
    for name, w in checkpoint.flatten(again.params).items():
        if weights.is_matrix(name, w):  # views of the file's memory map: read-only, no copy
            stored = w.bits if fmt == "bfloat16" else w
            assert not stored.flags.writeable and not stored.flags.owndata, name
    ids = np.array([[1, 2, 3, 4]])
    assert np.array_equal(again(ids).logits, model(ids).logits)
    assert minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path).dtype == "float32"  # the default, as transformers 4


def test_16_bit_checkpoints_give_transformers_float32_logits(float32_dir, tmp_path):
    """Only the weights are rounded: transformers computing in float32 from the same 16-bit checkpoint gives
    the same logits to float32 tolerance, and loads minigpt2's checkpoint in its dtype with "auto"."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    ids = np.array([[1, 5, 9, 2, 7, 300, 4]])
    for fmt, torch_dtype in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        ours = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype=torch_dtype)
        ours.save_pretrained(tmp_path / fmt)
        theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / fmt, torch_dtype=torch.float32,
                                                              attn_implementation="eager").eval()
        with torch.no_grad():
            expected = theirs(torch.from_numpy(ids)).logits.numpy()
        assert_close(ours(ids).logits, expected, f"{fmt} logits")
        assert transformers.GPT2LMHeadModel.from_pretrained(tmp_path / fmt, torch_dtype="auto").dtype == torch_dtype


@pytest.mark.parametrize("start, end", [("float32", "bfloat16"), ("bfloat16", "float32"), ("float16", "bfloat16")])
def test_a_converted_model_saves_the_dtype_it_holds(float32_dir, tmp_path, start, end):
    """model.to(dtype) then save_pretrained: config.json names the dtype the weights are written in, so "auto"
    reloads them as saved, in minigpt2 and in transformers (config.torch_dtype = ... is dtype, as in HF)."""
    model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype=start).to(end)
    assert model.config.dtype == model.config.torch_dtype == end
    model.save_pretrained(tmp_path)
    assert json.load(open(tmp_path / "config.json"))["dtype"] == end
    assert minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path, torch_dtype="auto").dtype == end
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    assert transformers.GPT2LMHeadModel.from_pretrained(tmp_path, dtype="auto").dtype == getattr(torch, end)


def test_a_checkpoint_transformers_saved_in_bfloat16_loads_as_stored(tmp_path):
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    reference = write_hf_checkpoint(tmp_path / "fp32", seed=5).to(torch.bfloat16)
    reference.save_pretrained(tmp_path / "bf16")
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "bf16", torch_dtype=torch.bfloat16)
    c_attn = reference.transformer.h[0].attn.c_attn.weight.detach().view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours.params["h"][0]["attn"]["c_attn"]["weight"].bits, c_attn)
    ids = np.array([[1, 5, 9, 2]])
    with torch.no_grad():
        expected = reference.float()(torch.from_numpy(ids)).logits.numpy()
    assert_close(ours(ids).logits, expected, "logits")


def test_int8_loading_and_the_refusal_to_save_it(float32_dir, tmp_path):
    model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, load_in_8bit=True)
    assert model.dtype == "int8"
    flat = checkpoint.flatten(model.params)
    assert all(isinstance(w, Int8Weight) == weights.is_matrix(name, w) for name, w in flat.items())
    assert flat["wte.weight"].axis == -1 and flat["h.0.mlp.c_fc.weight"].axis == 0
    with pytest.raises(ValueError, match="int8.*load_in_8bit=True"):
        model.save_pretrained(tmp_path / "int8")
    assert not (tmp_path / "int8").exists()  # refused before anything was written
    model.to("float32").save_pretrained(tmp_path / "widened")  # explicit: the int8 values, widened
    assert minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "widened").dtype == "float32"


def test_to_converts_in_place_and_knows_devices(float32_dir):
    model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir)
    assert model.to("cpu") is model and model.dtype == "float32"
    assert model.to(dtype=np.float16).dtype == "float16" and model.transformer.params is model.params
    assert isinstance(model.transformer.params["h"][0]["attn"]["c_attn"]["weight"], np.ndarray)
    assert model.to("bfloat16", device="cpu").dtype == "bfloat16"
    with pytest.raises(ValueError, match="'cuda:0'.*CPU"):
        model.to("cuda:0")
    with pytest.raises(ValueError, match="to\\(\\)=float64"):
        model.to("float64")
    torch = pytest.importorskip("torch")
    assert model.to(torch.device("cpu"), torch.float16).dtype == "float16"


@pytest.mark.parametrize("options, error, match", [
    (dict(torch_dtype="float64"), ValueError, "torch_dtype=float64.*bfloat16"),
    (dict(torch_dtype="int8"), ValueError, "load_in_8bit=True"),
    (dict(dtype="bfloat16", torch_dtype="float16"), ValueError, "disagree"),
    (dict(load_in_8bit="yes"), TypeError, "True or False"),
    (dict(load_in_4bit=True), ValueError, "4-bit"),
    (dict(quantization_config={"load_in_4bit": True}), ValueError, "4-bit.*load_in_8bit=True"),
    (dict(quantization_config={"load_in_8bit": False}), ValueError, "neither 8-bit nor 4-bit"),
    (dict(quantization_config={"quant_method": "gptq", "bits": 4}), ValueError, "gptq quantization"),
    (dict(quantization_config={"load_in_8bit": True}, load_in_8bit=False), ValueError, "load_in_8bit=False with"),
])
def test_bad_precision_requests_are_clear_errors(float32_dir, options, error, match):
    with pytest.raises(error, match=match):
        minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, **options)


def test_bitsandbytes_configs_ask_for_int8_as_in_transformers(float32_dir):
    """transformers 5 takes 8-bit only as quantization_config=BitsAndBytesConfig(load_in_8bit=True) (or its dict):
    the same int8 weights as load_in_8bit=True, the same logits to the bit."""
    ids = np.array([[5, 6, 7]])
    expected = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, load_in_8bit=True)(ids).logits
    configs = [{"load_in_8bit": True}, {"quant_method": "bitsandbytes", "load_in_8bit": True}]
    try:
        from transformers import BitsAndBytesConfig
    except ImportError:  # (transformers is a test-time reference only)
        pass
    else:
        configs.append(BitsAndBytesConfig(load_in_8bit=True))
    for config in configs:
        model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, quantization_config=config)
        assert model.dtype == "int8", config
        np.testing.assert_array_equal(model(ids).logits, expected)


def test_a_16_bit_dtype_beside_8_bit_weights_is_named_and_not_applied(float32_dir):
    """HF's 8-bit recipes pass torch_dtype=float16 for the parts they do not quantize; minigpt2 keeps those (and the
    activations) in float32, says so, and gives the int8 model load_in_8bit=True alone gives, to the bit."""
    ids = np.array([[5, 6, 7]])
    expected = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, load_in_8bit=True)(ids).logits
    for options in (dict(load_in_8bit=True, torch_dtype="bfloat16"),
                    dict(quantization_config={"load_in_8bit": True}, dtype="float16")):
        with pytest.warns(UserWarning, match="8-bit weights with (torch_)?dtype=(bfloat16|float16).*not applied"):
            model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, **options)
        assert model.dtype == "int8"
        np.testing.assert_array_equal(model(ids).logits, expected)


def test_the_memory_footprint_counts_each_format_s_bytes(float32_dir):
    """get_memory_footprint(): HF's count of the parameters' bytes (without HF's mask buffers, which minigpt2 does
    not keep). minigpt2 keeps biases and layer norms in float32 in every format, HF casts them too."""
    footprint = {}
    for name, options in (("float32", {}), ("bfloat16", dict(torch_dtype="bfloat16")), ("int8", dict(load_in_8bit=True))):
        model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, **options)
        footprint[name] = model.get_memory_footprint()
    flat = dict(minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir).named_parameters())
    matrices = sum(a.size for a in flat.values() if a.ndim == 2)
    vectors = sum(a.size for a in flat.values() if a.ndim == 1)
    assert footprint["float32"] == 4 * (matrices + vectors)
    assert footprint["bfloat16"] == 2 * matrices + 4 * vectors
    scales = matrices // 32  # one float16 per block of 32 (every summed axis here is a multiple of 32)
    assert footprint["int8"] == matrices + 2 * scales + 4 * vectors
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        reference = transformers.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype=dtype)
        assert footprint[name] == reference.get_memory_footprint(return_buffers=False) + (name == "bfloat16") * 2 * vectors


def test_every_class_takes_every_format(float32_dir):
    ids = np.array([[1, 2, 3]])
    for cls in (minigpt2.GPT2Model, minigpt2.GPT2DoubleHeadsModel, minigpt2.GPT2ForSequenceClassification):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the task heads missing from the checkpoint
            for options in (dict(dtype="bfloat16"), dict(load_in_8bit=True)):
                model = cls.from_pretrained(float32_dir, seed=0, **options)
                out = model(ids[None] if cls is minigpt2.GPT2DoubleHeadsModel else ids)
                assert np.isfinite(out[0]).all(), (cls.__name__, options)


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def rewrite_header(path, change):
    """Rewrite a safetensors file's header with ``change(header)`` (the data stays)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header, data = json.loads(f.read(n)), f.read()
    change(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def test_a_header_that_lies_about_the_dtype_is_named(float32_dir, tmp_path):
    """float32 data whose header says BF16 (or F16): the byte counts give it away."""
    import shutil

    shutil.copytree(float32_dir, tmp_path / "lying")
    rewrite_header(tmp_path / "lying" / "model.safetensors",
                   lambda h: h["transformer.h.0.attn.c_attn.weight"].update(dtype="BF16"))
    with pytest.raises(ValueError, match=r"c_attn.weight.*BF16 \(2 bytes per value\).*as in F32.*header's dtype"):
        minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "lying", torch_dtype="bfloat16")


def test_the_cli_runs_each_dtype_and_says_which(tmp_path):
    model_with(vocab_size=50257, n_embd=32, n_layer=1, eos_token_id=50256).save_pretrained(tmp_path)
    float32_dir = tmp_path  # GPT-2's vocabulary size: the CLI uses GPT-2's tokenizer for it
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for dtype in ("bfloat16", "int8"):
        result = subprocess.run([sys.executable, "-m", "minigpt2", "-m", str(float32_dir), "--dtype", dtype, "-n", "3",
                                 "--greedy", "--stats", "Hi"], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert f"weights {dtype}" in result.stderr
    result = subprocess.run([sys.executable, "-m", "minigpt2", "-m", str(float32_dir), "--dtype", "int8", "-n", "2",
                             "--backend", "numpy", "Hi"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr  # the warning as the line it is (no "<frozen runpy>:88:")
    assert result.stderr.startswith("minigpt2: int8 weights on the NumPy backend"), result.stderr
    result = subprocess.run([sys.executable, "-m", "minigpt2", "--info", "--dtype", "float16"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0 and "weights: float16" in result.stdout
    result = subprocess.run([sys.executable, "-m", "minigpt2", "--dtype", "int4", "Hi"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 2 and "--dtype" in result.stderr


# -- the memory a conversion needs ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, axis", [("bfloat16", 0), ("float16", 0), ("int8", 0), ("int8", -1)])
def test_a_big_matrix_is_converted_in_slices_to_the_same_values(monkeypatch, fmt, axis):
    """Slices of rows (whole 32-row blocks for int8 blocks down the columns) give exactly the one-go
    conversion, also when the slices end ragged."""
    a = np.random.default_rng(5).standard_normal((97, 70), dtype=np.float32)
    whole = weights.to_format(a, fmt, axis)
    monkeypatch.setattr(weights, "SLICE", 300)  # 4 rows at a time (int8 blocks down the columns: 32 rows)
    sliced = weights.to_format(a, fmt, axis)
    assert type(sliced) is type(whole)
    if fmt == "int8":
        assert sliced.axis == whole.axis
        np.testing.assert_array_equal(sliced.q, whole.q)
        np.testing.assert_array_equal(sliced.scales, whole.scales)
    else:
        np.testing.assert_array_equal(widen(sliced), widen(whole))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak memory from /proc (Linux)")
def loading_growth(tmp_path, fmt, stored=None):
    """(how much the peak memory of a fresh process grows while it loads a random 2-layer checkpoint with GPT-2's
    vocabulary in ``fmt``, the file's size): the checkpoint saved in float32, or in ``stored`` ("bfloat16"). A tiny
    checkpoint is loaded first, so that what every load imports is not counted."""
    config = minigpt2.GPT2Config(n_layer=2, n_embd=256, n_head=4, vocab_size=50257, n_positions=256)
    model = minigpt2.GPT2LMHeadModel(config, seed=0)
    (model if stored is None else model.to(stored)).save_pretrained(tmp_path / "big")
    minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config.from_preset("tiny"), seed=0).save_pretrained(tmp_path / "tiny")
    size = os.path.getsize(tmp_path / "big" / "model.safetensors")
    code = (
        "import sys, minigpt2\n"
        "def kb(key): return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])\n"
        f"options = {{'load_in_8bit': True}} if {fmt!r} == 'int8' else {{'torch_dtype': {fmt!r}}}\n"
        "minigpt2.GPT2LMHeadModel.from_pretrained(sys.argv[2], **options)  # (every module loading needs)\n"
        "before = kb('VmHWM:')\n"
        "m = minigpt2.GPT2LMHeadModel.from_pretrained(sys.argv[1], **options)\n"
        "print((kb('VmHWM:') - before) * 1024)\n")
    env = dict(os.environ, MINIGPT2_BACKEND="numpy")
    run = [sys.executable, "-W", "ignore", "-c", code, str(tmp_path / "big"), str(tmp_path / "tiny")]
    return int(subprocess.run(run, capture_output=True, text=True, check=True, env=env).stdout.split()[-1]), size


@pytest.mark.parametrize("fmt", ["bfloat16", "int8"])
def test_loading_a_float32_file_in_fewer_bits_does_not_hold_the_float32_copy(tmp_path, fmt):
    """The peak memory of loading a float32 checkpoint in 16 (8) bits stays near the 16-bit (8-bit) model:
    the file's pages are let go as each matrix is converted, and conversions work a slice at a time. Bound:
    the narrow model (0.5x or 0.28x of the file) plus 0.15x of the file (slices, their temporaries, pages not
    yet dropped); holding the float32 file as well would be 1.5x (1.28x)."""
    grew, size = loading_growth(tmp_path, fmt, stored=None)
    narrow = 0.5 if fmt == "bfloat16" else 1.125 / 4
    assert grew <= (narrow + 0.15) * size, f"loading in {fmt} grew the process by {grew / size:.2f}x the file"


def test_narrow_weights_on_the_numpy_backend_warn_that_they_cost_time(float32_dir):
    """16 and 8 bits on the NumPy backend are widened at every product: loading or converting says so, at the
    caller's line; float32 weights, and narrow ones on the C core, load silently."""
    import warnings

    from minigpt2 import backend

    before = backend.get_backend()
    try:
        backend.set_backend("numpy")
        with pytest.warns(RuntimeWarning, match="bfloat16 weights on the NumPy backend.*slower") as caught:
            model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype="bfloat16")
        assert caught[0].filename == __file__
        with pytest.warns(RuntimeWarning, match="int8 weights on the NumPy backend.*50x slower"):
            model.to("int8")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.to("float32")
            if backend.c_available():
                backend.set_backend("c")
                model.to("bfloat16")
    finally:
        backend.set_backend(before)
