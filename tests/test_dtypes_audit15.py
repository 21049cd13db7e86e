"""16- and 8-bit weights as a user meets them (audit 15): loading a checkpoint stored in one format into another,
saving and reloading, the dtype reported (docs/numerics.md, "Weights in fewer bits")."""
import json
import os

import numpy as np
import pytest

import minigpt2

from conftest import write_hf_checkpoint
from test_dtypes import loading_growth


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak memory from /proc (Linux)")
@pytest.mark.parametrize("fmt", ["float32", "float16", "int8"])
def test_loading_a_bfloat16_file_in_another_narrow_format_stays_near_the_narrow_model(tmp_path, fmt):
    """A bfloat16 checkpoint (as transformers saves GPT-2 in bf16) loaded in float16 or int8 is converted a slice
    at a time, as a float32 file is (test_dtypes.py): the peak is the narrow model plus a little, never a float32
    copy of wte and the temporaries of converting it whole; widened to float32, wte takes no second temporary.
    GPT-2 124M, before: 778 MB for int8 (a 126 MB model), 545 MB for float16 (237 MB), 715 MB for float32 (474 MB);
    after: 136, 244, 549. Bound: the model (2x, 1x or 0.53x of the bf16 file) plus 0.3x of the file, and for
    float32 the file's pages too (a matrix widened whole lets go of them only once its float32 copy exists)."""
    grew, size = loading_growth(tmp_path, fmt, stored="bfloat16")
    narrow = {"float32": 2.0 + 1.0, "float16": 1.0, "int8": 1.0625 / 2}[fmt]
    assert grew <= (narrow + 0.3) * size, f"loading a bf16 file in {fmt} grew the process by {grew / size:.2f}x it"


@pytest.mark.parametrize("buffer_dtype", ["uint8", "bool"])
@pytest.mark.parametrize("options", [{}, {"torch_dtype": "bfloat16"}, {"load_in_8bit": True}])
def test_causal_mask_buffers_stored_as_integers_are_left_out_as_transformers_leaves_them(tmp_path, buffer_dtype,
                                                                                         options):
    """Older transformers saved each layer's causal mask (attn.bias, uint8 and later bool) and attn.masked_bias
    with the weights, and checkpoints converted to safetensors keep them. transformers loads such a file, leaving
    the buffers out; minigpt2 leaves them out by name too, but refused the file first: "tensor
    'transformer.h.0.attn.bias' has dtype U8; minigpt2 loads F32, F16, BF16 and F64"."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    write_hf_checkpoint(tmp_path / "plain")
    (tmp_path / "buffers").mkdir()
    (tmp_path / "buffers" / "config.json").write_bytes((tmp_path / "plain" / "config.json").read_bytes())
    tensors = safetensors_torch.load_file(tmp_path / "plain" / "model.safetensors")
    n_positions = minigpt2.GPT2Config.from_pretrained(tmp_path / "plain").n_positions
    mask = torch.tril(torch.ones(n_positions, n_positions, dtype=getattr(torch, buffer_dtype))).view(1, 1, n_positions,
                                                                                                      n_positions)
    for name in [n[:-len("ln_1.weight")] for n in tensors if n.endswith("ln_1.weight")]:
        tensors[name + "attn.bias"] = mask.clone()  # (safetensors refuses tensors sharing memory)
        tensors[name + "attn.masked_bias"] = torch.tensor(-1e4)
    safetensors_torch.save_file(tensors, tmp_path / "buffers" / "model.safetensors", metadata={"format": "pt"})
    ids = np.array([[5, 1, 4, 9, 2]])
    expected = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "plain", **options)(ids).logits
    model, info = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "buffers", output_loading_info=True, **options)
    np.testing.assert_array_equal(model(ids).logits, expected)
    assert info["unexpected_keys"] == [] and info["missing_keys"] == []


@pytest.mark.parametrize("narrow_names, narrow_dtype", [
    ("transformer.h.", "float16"),  # embeddings kept in float32, the blocks in float16: a float16 checkpoint
    ("transformer.wte.", "bfloat16"),  # only wte narrow: transformers reads a float32 one
])
def test_auto_on_a_checkpoint_of_mixed_dtypes_picks_what_transformers_picks(tmp_path, narrow_names, narrow_dtype):
    """torch_dtype="auto" with no dtype in config.json: transformers 4.57 takes the first tensor's dtype by name;
    minigpt2 took wte's, so the first checkpoint loaded in float32 (twice the memory of transformers' float16) and
    the second in bfloat16."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    transformers = pytest.importorskip("transformers")
    write_hf_checkpoint(tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    config.pop("torch_dtype", None), config.pop("dtype", None)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "config.json").write_text(json.dumps(config))
    tensors = safetensors_torch.load_file(tmp_path / "plain" / "model.safetensors")
    narrow = {name: t.to(getattr(torch, narrow_dtype)) if name.startswith(narrow_names) else t
              for name, t in tensors.items()}
    safetensors_torch.save_file(narrow, tmp_path / "mixed" / "model.safetensors", metadata={"format": "pt"})
    expected = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "mixed", torch_dtype="auto").dtype
    assert minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "mixed", torch_dtype="auto").dtype == expected


def test_from_config_names_an_argument_it_does_not_take_and_the_way_to_8_bit_weights():
    """AutoModelForCausalLM.from_config(cfg, load_in_8bit=True) failed with a TypeError naming an internal class
    (_WithTransformer.__init__); transformers refuses it too. Now the message names from_config, the argument, and
    dtype='int8'; trust_remote_code (common in ported code) is taken, as by from_pretrained."""
    from minigpt2 import AutoModelForCausalLM, GPT2Config

    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    with pytest.raises(TypeError, match=r"^AutoModelForCausalLM.from_config got unexpected argument\(s\) "
                                        r"'load_in_8bit' \(8-bit weights: dtype='int8'\); it takes config"):
        AutoModelForCausalLM.from_config(config, load_in_8bit=True)
    assert AutoModelForCausalLM.from_config(config, dtype="int8", trust_remote_code=False, seed=1).dtype == "int8"
