"""16- and 8-bit weights used as a transformers user uses them, round four: state dicts in any format, what a weight
says its dtype is, safetensors headers that are malformed, files laid out as the safetensors library lays them out,
and torch's model methods minigpt2 has no counterpart for (docs/numerics.md, "Weights in fewer bits").

No tolerance here is tuned: bfloat16 -> float32 is exact (the 16 bits are the top half of the float32), so a bfloat16
tensor read through any path must give the same float32 values bit for bit.
"""
import json
import struct

import numpy as np
import pytest

import minigpt2
from minigpt2 import checkpoint, weights

from conftest import write_hf_checkpoint
from test_dtypes import read_header, rewrite_header

FORMATS = ("bfloat16", "float16", "int8")


@pytest.fixture(scope="module")
def float32_dir(tmp_path_factory):
    """A tiny float32 GPT2LMHeadModel checkpoint written by transformers."""
    directory = tmp_path_factory.mktemp("float32")
    write_hf_checkpoint(directory)
    return directory


def widened(model) -> dict:
    """The model's state dict as the float32 values its weights stand for."""
    return {name: weights.widen(w) for name, w in model.state_dict().items()}


# -- load_state_dict takes every weight format ----------------------------------------------------------------

def test_load_state_dict_takes_transformers_bfloat16_tensors(float32_dir):
    """A transformers model loaded with torch_dtype=torch.bfloat16 hands out bfloat16 tensors, which torch's .numpy()
    refuses ("Got unsupported ScalarType BFloat16"). Widened, they are exact: the model holds those values, in float32
    or (rounded again, which changes nothing) in bfloat16."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype=torch.bfloat16)
    expected = {name: t.float().numpy() for name, t in hf.state_dict().items() if not name.endswith(".attn.bias")}
    for fmt in ("float32", "bfloat16"):
        model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype=fmt)
        model.load_state_dict(hf.state_dict(), strict=False)  # (transformers 4's attn.bias buffers are unexpected)
        assert model.dtype == fmt
        for name, values in widened(model).items():
            assert np.array_equal(values, expected[name]), (fmt, name)


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_state_dict_takes_another_models_weights_in_any_format(float32_dir, fmt):
    """torch's idiom ``b.load_state_dict(a.state_dict())`` with a 16-bit or int8 model ``a``: its weights are
    BFloat16Weight / float16 / Int8Weight objects, loaded as the float32 values they stand for (exactly: widening is
    exact), into a model of any format."""
    source = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype="float32").to(fmt)
    target = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype="float32", seed=1)
    result = target.load_state_dict(source.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    expected = widened(source)
    for name, values in widened(target).items():
        assert np.array_equal(values, expected[name]), name
    if fmt != "int8":  # loaded into a model of the same 16-bit format: the same bits, so the same logits
        again = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype=fmt)
        again.load_state_dict(source.state_dict())
        ids = np.array([[1, 5, 9, 2, 7]])
        assert np.array_equal(again(ids).logits, source(ids).logits)


def test_every_weight_says_its_dtype(float32_dir):
    """torch code reads a model's dtype as ``next(model.parameters()).dtype``: every format answers with its name
    (NumPy has no bfloat16 dtype, so bfloat16 and int8 answer with the name, as model.dtype does)."""
    for fmt in ("float32",) + FORMATS:
        model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype="float32").to(fmt)
        first = next(model.parameters())  # wte: a matrix, in the model's format
        assert first.dtype == fmt == model.dtype
        assert model.state_dict()["transformer.h.0.ln_1.weight"].dtype == np.float32  # (layer norms stay float32)


# -- safetensors files ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("shape", "32,99"),                 # a string: NumPy had said "invalid literal for int() ... ','"
    ("shape", [-99, -32]),              # NumPy had said "can only specify one unknown dimension"
    ("shape", [99.0, 32]),
    ("data_offsets", ["0", "6336"]),    # Python had said "'<=' not supported between instances of 'int' and 'str'"
    ("data_offsets", [0.0, 6336.0]),
    ("data_offsets", [True, 6336]),
])
def test_a_malformed_header_entry_names_the_tensor_and_the_field(float32_dir, tmp_path, field, value):
    import shutil

    shutil.copytree(float32_dir, tmp_path / "bad")
    rewrite_header(tmp_path / "bad" / "model.safetensors", lambda h: h["transformer.wte.weight"].update({field: value}))
    with pytest.raises(ValueError, match=rf"model.safetensors: the header entry of tensor 'transformer.wte.weight' is "
                                         rf"malformed: its {field} must be a list of non-negative integers"):
        minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "bad", torch_dtype="bfloat16")


def test_a_file_of_several_dtypes_is_laid_out_as_the_safetensors_library_lays_it_out(tmp_path):
    """The safetensors library writes the widest dtype first (then by name), so every tensor starts at a multiple of
    its size. In name order a float32 after three float16s started at byte 6: unaligned, which the C kernels decline
    (NumPy then ran that matrix). minigpt2's file now has the library's header, offsets and bytes."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors = {"a": np.arange(3, dtype=np.float16), "b": weights.to_bfloat16(np.arange(3, dtype=np.float32)),
               "c": np.arange(4, dtype=np.float32).reshape(2, 2), "d": np.ones(1, np.float16)}
    checkpoint.write_safetensors(tmp_path / "ours.safetensors", tensors)
    as_torch = {k: torch.from_numpy(weights.widen(v)).to(torch.bfloat16 if isinstance(v, weights.BFloat16Weight)
                                                         else torch.from_numpy(np.asarray(v)).dtype)
                for k, v in tensors.items()}
    safetensors_torch.save_file(as_torch, tmp_path / "library.safetensors", metadata={"format": "pt"})
    ours, library = read_header(tmp_path / "ours.safetensors"), read_header(tmp_path / "library.safetensors")
    assert list(ours) == list(library) and ours == library
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "library.safetensors").read_bytes()
    for name, array in checkpoint.read_safetensors(tmp_path / "ours.safetensors", dtype=None).items():
        stored = getattr(array, "bits", array)
        assert stored.flags.aligned, name


def test_a_sharded_index_counts_the_parameters_as_transformers(float32_dir, tmp_path):
    """transformers (4.57 and 5) writes total_parameters beside total_size in model.safetensors.index.json."""
    pytest.importorskip("transformers")
    import transformers

    model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype="bfloat16")
    model.save_pretrained(tmp_path / "ours", max_shard_size="20KB")
    hf = transformers.GPT2LMHeadModel.from_pretrained(float32_dir, torch_dtype="bfloat16")
    hf.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    ours = json.loads((tmp_path / "ours" / "model.safetensors.index.json").read_text())["metadata"]
    theirs = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())["metadata"]
    assert ours == theirs
    assert ours["total_parameters"] == model.num_parameters()


# -- options and methods a transformers user tries --------------------------------------------------------------

@pytest.mark.parametrize("config", ["int8", ["load_in_8bit"], 8])
def test_a_quantization_config_of_the_wrong_kind_says_what_it_takes(float32_dir, config):
    """Not "asks for neither 8-bit nor 4-bit weights", which read as if the string had been understood."""
    with pytest.raises(TypeError, match=r"quantization_config must be transformers' BitsAndBytesConfig\(load_in_8bit="
                                        r"True\) or a dict .*got (str|list|int)"):
        minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, quantization_config=config)


def test_torchs_float64_and_cuda_methods_say_what_there_is(float32_dir):
    """model.double() and model.cuda() exist on every torch model; here they are errors naming the formats and the
    device there are, not AttributeErrors. torch's non_blocking is accepted by to(), as torch's Module.to takes it."""
    torch = pytest.importorskip("torch")
    model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir)
    with pytest.raises(ValueError, match="no float64 weights.*float32 .*bfloat16, float16 and int8"):
        model.double()
    with pytest.raises(ValueError, match="'cuda'.*runs on the CPU"):
        model.cuda()
    assert model.to("cpu", non_blocking=True) is model and model.dtype == "float32"
    assert model.to(torch.bfloat16, True).dtype == "bfloat16"
    assert model.to("cpu", torch.float16, False).dtype == "float16"
