"""16- and 8-bit weights as a transformers user asks for them: options minigpt2 cannot honour are errors that name
them, never ignored (docs/numerics.md, "Weights in fewer bits")."""
import json
import re

import numpy as np
import pytest

import minigpt2

from conftest import write_hf_checkpoint


@pytest.fixture(scope="module")
def float32_dir(tmp_path_factory):
    """A tiny float32 GPT2LMHeadModel checkpoint written by transformers."""
    directory = tmp_path_factory.mktemp("float32")
    write_hf_checkpoint(directory)
    return directory


@pytest.mark.parametrize("option, value", [
    ("llm_int8_skip_modules", ["lm_head"]),
    ("llm_int8_threshold", 3.0),
    ("llm_int8_enable_fp32_cpu_offload", True),
    ("llm_int8_has_fp16_weight", True),
])
def test_bitsandbytes_options_int8_cannot_honour_are_named(float32_dir, option, value):
    """BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"]) would quantize lm_head (the tied wte)
    all the same: an error naming the option, as a dict and as transformers' own config object."""
    configs = [{"load_in_8bit": True, option: value}]
    try:
        from transformers import BitsAndBytesConfig
    except ImportError:
        pass
    else:
        configs.append(BitsAndBytesConfig(load_in_8bit=True, **{option: value}))
    for config in configs:
        with pytest.raises(ValueError, match=re.escape(f"{option}={value!r}") + ".*cannot honour"):
            minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, quantization_config=config)


def test_bitsandbytes_defaults_written_out_still_mean_int8(float32_dir):
    """A config saved as a dict (every option at its default) asks for load_in_8bit=True's model, to the bit."""
    transformers = pytest.importorskip("transformers")
    ids = np.array([[5, 6, 7]])
    expected = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, load_in_8bit=True)(ids).logits
    config = transformers.BitsAndBytesConfig(load_in_8bit=True).to_dict()
    model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, quantization_config=config)
    np.testing.assert_array_equal(model(ids).logits, expected)


def test_a_config_given_torchs_dtype_saves_its_name_as_transformers(float32_dir, tmp_path):
    """GPT2Config.from_pretrained(path, torch_dtype=torch.bfloat16).save_pretrained(path) was a JSON TypeError that
    left path/config.json empty. It writes "bfloat16", as transformers does; a config that cannot be written leaves
    the old file as it was."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    for dtype in (torch.bfloat16, np.float16):
        ours = minigpt2.GPT2Config.from_pretrained(float32_dir, torch_dtype=dtype)
        theirs = transformers.GPT2Config.from_pretrained(float32_dir, torch_dtype=torch.float16 if dtype is np.float16
                                                         else dtype)
        ours.save_pretrained(tmp_path / "ours")
        theirs.save_pretrained(tmp_path / "theirs")
        assert json.loads((tmp_path / "ours" / "config.json").read_text())["dtype"] == \
            json.loads((tmp_path / "theirs" / "config.json").read_text())["dtype"]
        assert minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir, config=ours, torch_dtype="auto").dtype == \
            str(theirs.dtype).replace("torch.", "")
    before = (tmp_path / "ours" / "config.json").read_bytes()
    broken = minigpt2.GPT2Config.from_pretrained(tmp_path / "ours")
    broken.task_specific_params = object()  # not JSON
    with pytest.raises(TypeError):
        broken.save_pretrained(tmp_path / "ours")
    assert (tmp_path / "ours" / "config.json").read_bytes() == before


def saved_by_bitsandbytes(float32_dir, directory):
    """float32_dir as transformers saves a bitsandbytes 8-bit model: quantization_config in config.json, and a
    Conv1D weight as int8 [out, in] beside its SCB scales (only one here; read_safetensors would stop at the first)."""
    import struct

    from minigpt2 import checkpoint

    directory.mkdir()
    config = json.loads((float32_dir / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True, "_load_in_8bit": True,
                                     "llm_int8_threshold": 6.0}
    (directory / "config.json").write_text(json.dumps(config))
    tensors = checkpoint.read_safetensors(float32_dir / "model.safetensors")
    name = "transformer.h.0.mlp.c_fc.weight"
    w = tensors.pop(name).T
    scb = np.abs(w).max(axis=1)
    arrays = {k: ("F32", np.ascontiguousarray(v)) for k, v in tensors.items()}
    arrays[name] = ("I8", np.rint(w / scb[:, None] * 127).astype(np.int8))
    arrays["transformer.h.0.mlp.c_fc.SCB"] = ("F32", scb.astype(np.float32))
    with open(directory / "model.safetensors", "wb") as f:
        checkpoint._write(f, arrays, {"format": "pt"})


def test_a_checkpoint_saved_quantized_is_named_as_such(float32_dir, tmp_path):
    """A GPT-2 saved by transformers from a bitsandbytes 8-bit model was 'tensor ... has dtype I8; minigpt2 loads
    F32, F16, BF16 and F64', which does not say why; and the same config.json beside float weights loaded them as
    float32 without a word. Both say the checkpoint was saved quantized, and what to do (transformers, for its part,
    quantizes on load when bitsandbytes is installed, and otherwise refuses)."""
    saved_by_bitsandbytes(float32_dir, tmp_path / "int8")
    for options in ({}, dict(load_in_8bit=True), dict(torch_dtype="auto")):
        with pytest.raises(ValueError, match="saved quantized \\(bitsandbytes.*load_in_8bit=True"):
            minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "int8", **options)
    import shutil

    shutil.copytree(float32_dir, tmp_path / "float")
    config = json.loads((tmp_path / "float" / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (tmp_path / "float" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="saved quantized \\(gptq"):
        minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "float")


def test_to_names_the_formats_it_takes(float32_dir):
    """model.to("float64") listed "auto", which to() refuses, and not int8, which it takes; to(torch.int8) was refused
    while to("int8") quantized. The error lists to()'s own choices, and every spelling of int8 quantizes alike."""
    model = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir)
    with pytest.raises(ValueError, match="to\\(\\)=float64.*use float32, bfloat16, float16 or int8$"):
        model.to("float64")
    with pytest.raises(ValueError, match="to\\(\\)=auto.*or int8; 'auto' is for loading"):
        model.to("auto")
    ids = np.array([[5, 6, 7]])
    expected = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir).to("int8")(ids).logits
    spellings = [np.int8]
    try:
        import torch
    except ImportError:
        pass
    else:
        spellings.append(torch.int8)
    for int8 in spellings:
        converted = minigpt2.GPT2LMHeadModel.from_pretrained(float32_dir).to(int8)
        assert converted.dtype == "int8", int8
        np.testing.assert_array_equal(converted(ids).logits, expected)


def test_auto_with_a_config_dtype_minigpt2_cannot_hold_says_what_to_pass(float32_dir, tmp_path):
    """torch_dtype="auto" on a config.json saying "float64" said "use float32, bfloat16, float16 or auto": auto was
    what the user passed. It names config.json's dtype and the explicit choices (transformers loads float64 there;
    minigpt2 has no float64 weights)."""
    import shutil

    shutil.copytree(float32_dir, tmp_path / "f64")
    config = json.loads((tmp_path / "f64" / "config.json").read_text())
    config["dtype"] = "float64"
    (tmp_path / "f64" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="torch_dtype='auto' takes config.json's dtype, 'float64'.*pass "
                                         "torch_dtype='float32', 'bfloat16' or 'float16'") as raised:
        minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "f64", torch_dtype="auto")
    assert "or auto" not in str(raised.value)
    assert minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "f64", torch_dtype="float32").dtype == "float32"


@pytest.mark.parametrize("kwargs, config_dtype", [
    ({}, None), ({"torch_dtype": "bfloat16"}, None), ({"dtype": "float16"}, None), ({}, "bfloat16"),
    ({"dtype": "float32"}, "float16"), ({"attn_implementation": "eager"}, None),
])
def test_auto_from_config_takes_the_dtype_as_transformers(kwargs, config_dtype):
    """AutoModelForCausalLM.from_config(config, torch_dtype=...) was a TypeError; transformers builds the model in
    that dtype, else in config.dtype, and leaves the caller's config as it was (the model holds a copy)."""
    transformers = pytest.importorskip("transformers")
    shape = dict(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    ours = minigpt2.GPT2Config(**shape, dtype=config_dtype)
    theirs = transformers.GPT2Config(**shape, dtype=config_dtype)
    model = minigpt2.AutoModelForCausalLM.from_config(ours, **kwargs)
    reference = transformers.AutoModelForCausalLM.from_config(theirs, **kwargs)
    assert model.dtype == str(reference.dtype).replace("torch.", "")
    assert ours.dtype == config_dtype and model.config is not ours
