"""A transformers user loading GPT-2 in 16 and 8 bits, switching only the import line (newuser8 pass).

Each test is a case an earlier sweep had not covered; the reference is transformers 4.57 in float32, run on the
weights rounded as minigpt2 rounds them (which torch does bit for bit for bfloat16 and float16), so the tolerance
is float32's (conftest.tolerance: 1e-5 of the largest value)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from conftest import assert_close, write_hf_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from minigpt2 import GPT2LMHeadModel  # noqa: E402

IDS = np.array([[1, 5, 7, 9, 11, 3]])


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("newuser8")
    write_hf_checkpoint(directory)
    return str(directory)


def _load(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (narrow weights on the NumPy backend say they are slow)
        return GPT2LMHeadModel.from_pretrained(path, **kwargs)


@pytest.mark.parametrize("options", [dict(torch_dtype=torch.bfloat16), dict(torch_dtype=torch.float16),
                                     dict(load_in_8bit=True)], ids=["bfloat16", "float16", "int8"])
def test_a_narrow_state_dict_goes_into_torch_through_numpy(hf_dir, options):
    """np.asarray(weight) of a 16-bit or int8 weight is the float32 matrix it stands for, so the state dict moves
    into torch as a float32 one does (it was a 0-d object array: torch refused it, 'can't convert np.ndarray of
    type numpy.object_'). transformers then computes minigpt2's logits."""
    ours = _load(hf_dir, **options)
    state = {name: torch.as_tensor(np.asarray(w)) for name, w in ours.state_dict().items()}
    assert all(t.dtype in (torch.float32, torch.float16) for t in state.values())
    theirs = transformers.GPT2LMHeadModel.from_pretrained(hf_dir, attn_implementation="eager").eval()
    theirs.load_state_dict(state, strict=False)  # (strict=False: the causal-mask buffers are not weights)
    with torch.no_grad():
        expected = theirs(torch.tensor(IDS)).logits.float().numpy()
    if ours.dtype != "int8":  # (int8 products also round their inputs to int16 steps: docs/numerics.md)
        assert_close(ours(IDS).logits, expected, "logits")
    wte = ours.state_dict()["transformer.wte.weight"]
    assert np.array_equal(np.asarray(wte), ours.get_input_embeddings()(np.arange(wte.shape[0])))
    assert np.asarray(wte, dtype=np.float64).dtype == np.float64
    if not isinstance(wte, np.ndarray):  # (a float16 weight is a NumPy array itself)
        with pytest.raises(ValueError, match="copy"):
            np.array(wte, copy=False)  # (NumPy 2: widening always makes a new array)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_model_dtype_equals_torchs_dtype_as_transformers_model_dtype_does(hf_dir, dtype):
    """`model.dtype == torch.bfloat16` (HF code's usual check) is True as for transformers' model; it was False, the
    name "bfloat16" being no torch dtype, so such a check took the float32 branch silently. The name stays a str."""
    theirs = transformers.GPT2LMHeadModel.from_pretrained(hf_dir, torch_dtype=getattr(torch, dtype))
    ours = _load(hf_dir, torch_dtype=getattr(torch, dtype))
    others = [d for d in ("bfloat16", "float16", "float32") if d != dtype]
    narrow = [ours.lm_head.weight.dtype] if dtype == "bfloat16" else []  # (float16, float32: NumPy's own dtypes)
    for name in [ours.dtype] + narrow:
        assert name == theirs.dtype and theirs.dtype == name and not name != theirs.dtype
        assert name == dtype and isinstance(name, str) and str(name) == dtype and hash(name) == hash(dtype)
        assert all(name != getattr(torch, d) and not name == getattr(torch, d) for d in others)
        assert name != torch.float64 and name != np.float64 and name != 3 and name != None  # noqa: E711
        if dtype != "bfloat16":  # (NumPy has no bfloat16)
            assert name == np.dtype(dtype) and name == getattr(np, dtype)


def test_an_int8_model_dtype_is_torchs_int8(hf_dir):
    ours = _load(hf_dir, load_in_8bit=True)
    assert ours.dtype == torch.int8 and ours.dtype == "int8" and ours.dtype != torch.float32
    assert next(ours.parameters()).dtype == torch.int8


@pytest.fixture(scope="module")
def float64_dir(tmp_path_factory):
    """A checkpoint transformers saved in float64 (model.double().save_pretrained), its values not float32's."""
    directory = tmp_path_factory.mktemp("float64")
    model = write_hf_checkpoint(directory).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(p * torch.randn(p.shape, generator=g, dtype=torch.float64) * 1e-7)  # (below float32's step)
    model.save_pretrained(directory)
    return str(directory)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_float64_checkpoint_loads_in_16_bits_as_transformers_loads_it(float64_dir, dtype):
    """torch_dtype=torch.bfloat16 on a float64 checkpoint: the weights transformers holds, bit for bit, and the logits
    of transformers' float32 model on them. It was "TypeError: not a weight in one of the formats float32, bfloat16,
    float16, int8: ndarray of dtype float64" (the float32 default loaded)."""
    ours = _load(float64_dir, torch_dtype=getattr(torch, dtype))
    theirs = transformers.GPT2LMHeadModel.from_pretrained(float64_dir, torch_dtype=getattr(torch, dtype))
    assert ours.dtype == dtype and ours.dtype == theirs.dtype
    expected = {name: t.float().numpy() for name, t in theirs.state_dict().items()}
    for name, w in ours.state_dict().items():
        assert np.array_equal(np.asarray(w, dtype=np.float32), expected[name]), name
    theirs = theirs.float().eval()
    with torch.no_grad():
        assert_close(ours(IDS).logits, theirs(torch.tensor(IDS)).logits.numpy(), "logits")


def test_a_float64_checkpoint_loads_in_8_bits(float64_dir, tmp_path):
    """load_in_8bit=True on a float64 checkpoint quantizes its values as read in float32 (the TypeError above)."""
    ours = _load(float64_dir, load_in_8bit=True)
    as_float32 = transformers.GPT2LMHeadModel.from_pretrained(float64_dir, torch_dtype=torch.float32)
    as_float32.save_pretrained(tmp_path)
    expected = _load(str(tmp_path), load_in_8bit=True)
    assert ours.dtype == "int8"
    for (name, w), v in zip(ours.state_dict().items(), expected.state_dict().values()):
        assert np.array_equal(np.asarray(w), np.asarray(v)), name


@pytest.mark.parametrize("options", [dict(load_in_8bit=True), dict(torch_dtype="bfloat16"), {}],
                         ids=["int8", "bfloat16", "float32"])
def test_an_int8_model_says_it_is_loaded_in_8bit(hf_dir, options):
    """HF code (peft's prepare_model_for_kbit_training, transformers' own to()) asks
    ``getattr(model, "is_loaded_in_8bit", False)`` / ``is_quantized``, which transformers' 8-bit loading sets True:
    it was False (absent) for minigpt2's int8 model. Converting away from int8 makes them False again."""
    model = _load(hf_dir, **options)
    int8 = model.dtype == "int8"
    assert getattr(model, "is_loaded_in_8bit", False) is int8 and getattr(model, "is_quantized", False) is int8
    assert model.to("int8").is_loaded_in_8bit and model.is_quantized
    assert not model.to("float32").is_loaded_in_8bit and not model.is_quantized


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_config_torch_dtype_equals_transformers_after_loading_and_converting(hf_dir, dtype, tmp_path):
    """model.config.torch_dtype (and .dtype) compare equal to transformers' config's, a torch dtype, after loading in a
    dtype and after model.to(dtype); they were names only ("bfloat16" != torch.bfloat16). config.json still holds
    the name, as transformers writes it."""
    theirs = transformers.GPT2LMHeadModel.from_pretrained(hf_dir, torch_dtype=getattr(torch, dtype))
    ours = _load(hf_dir, torch_dtype=getattr(torch, dtype))
    converted = _load(hf_dir).to(getattr(torch, dtype))
    for config in (ours.config, converted.config):
        assert config.torch_dtype == theirs.config.torch_dtype and config.dtype == theirs.config.dtype
    converted.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").read_text().count(f'"dtype": "{dtype}"') == 1


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_a_config_read_from_a_file_gives_torch_dtype_as_transformers(tmp_path, dtype):
    """transformers' AutoConfig.from_pretrained(d).torch_dtype is a torch dtype; code compares it with one."""
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    model.to(getattr(torch, dtype)).save_pretrained(tmp_path)
    import minigpt2

    ours, theirs = minigpt2.AutoConfig.from_pretrained(tmp_path), transformers.AutoConfig.from_pretrained(tmp_path)
    assert ours.torch_dtype == theirs.torch_dtype == getattr(torch, dtype)
    assert ours.torch_dtype != torch.float64 and json.loads(ours.to_json_string())["dtype"] == dtype  # (a name)


@pytest.mark.parametrize("stored", ["bfloat16", "float16", "float32"])
def test_a_pipeline_loads_the_checkpoint_in_its_own_dtype_as_transformers(tmp_path, stored):
    """transformers 4.57's pipeline() defaults to dtype="auto" (minigpt2's loaded every checkpoint as float32)."""
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2))
    model.to(getattr(torch, stored)).save_pretrained(tmp_path)
    import minigpt2

    minigpt2.AutoTokenizer.from_pretrained("gpt2").save_pretrained(str(tmp_path))
    theirs = transformers.pipeline("text-generation", model=str(tmp_path)).model.dtype
    ours = minigpt2.pipeline("text-generation", model=str(tmp_path)).model.dtype
    assert ours == theirs == getattr(torch, stored)
    assert minigpt2.pipeline("text-generation", model=str(tmp_path), torch_dtype="float32").model.dtype == "float32"
