"""Model-level behaviours a transformers user relies on, each checked against transformers itself on the same
checkpoint (fp32, eager attention): loading options, what a model does to the config it is given, the state
dict, and the small attributes HF code touches (device, dtype, can_generate, ...).

Numbers are compared with conftest.assert_close: 1e-5 * max(1, max|ref|), the float32 bound the whole suite uses.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigpt2
from conftest import TINY, assert_close

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def double_heads_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(**TINY, attn_implementation="eager")
    model = transformers.GPT2DoubleHeadsModel(config).eval()
    directory = tmp_path_factory.mktemp("double_heads")
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def test_double_heads_from_pretrained_takes_output_flags_like_transformers(double_heads_dir):
    """HF accepts config attributes as from_pretrained keywords for every class; GPT2DoubleHeadsModel used to
    raise TypeError for them."""
    ids = np.array([[[1, 2, 3, 4], [5, 6, 7, 8]]])
    ours = minigpt2.GPT2DoubleHeadsModel.from_pretrained(double_heads_dir, output_attentions=True)
    theirs = transformers.GPT2DoubleHeadsModel.from_pretrained(double_heads_dir, output_attentions=True,
                                                               attn_implementation="eager").eval()
    assert ours.config.output_attentions is True and theirs.config.output_attentions is True
    out = ours(ids)
    with torch.no_grad():
        ref = theirs(torch.tensor(ids))
    assert len(out.attentions) == len(ref.attentions) == TINY["n_layer"]
    for a, b in zip(out.attentions, ref.attentions):
        assert_close(a, b.numpy(), "attentions")
    assert_close(out.mc_logits, ref.mc_logits.numpy(), "mc_logits")


def test_double_heads_leaves_the_callers_config_alone():
    """One score per choice (num_labels 1) as in transformers, whose head has out_features 1; but the config the
    caller passed keeps its num_labels (transformers sets it on the caller's object: we set it on a copy)."""
    config = minigpt2.GPT2Config(**TINY, num_labels=3)
    model = minigpt2.GPT2DoubleHeadsModel(config, seed=0)
    assert config.num_labels == 3
    assert model.config.num_labels == 1
    hf = transformers.GPT2DoubleHeadsModel(transformers.GPT2Config(**TINY, num_labels=3))
    assert model.params["multiple_choice_head"]["summary"]["weight"].shape == \
        tuple(hf.multiple_choice_head.summary.weight.shape)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    torch.manual_seed(1)
    config = transformers.GPT2Config(**TINY, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(config).eval()
    directory = tmp_path_factory.mktemp("lm")
    model.save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.mark.parametrize("name", ["GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel",
                                  "GPT2ForSequenceClassification"])
def test_state_dict_has_transformers_keys_in_transformers_order(name):
    config = dict(TINY, add_cross_attention=True)
    ours = getattr(minigpt2, name)(minigpt2.GPT2Config(**config), seed=0)
    theirs = getattr(transformers, name)(transformers.GPT2Config(**config))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert ours.state_dict()[key].shape == tuple(value.shape), key


def test_transformers_loads_our_state_dict_and_we_load_theirs(lm_dir):
    """The everyday round trip: hf_model.load_state_dict({k: torch.tensor(v)}) and the other way."""
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(lm_dir)
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY, attn_implementation="eager")).eval()
    theirs.load_state_dict({k: torch.tensor(np.array(v)) for k, v in ours.state_dict().items()})
    ids = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        assert_close(ours(ids).logits, theirs(torch.tensor(ids)).logits.numpy(), "logits after HF loads ours")
    fresh = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**TINY), seed=5)
    result = fresh.load_state_dict(theirs.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_close(fresh(ids).logits, ours(ids).logits, "logits after we load HF's state dict")


def test_load_state_dict_says_what_is_wrong():
    model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**TINY), seed=0)
    state = {k: np.array(v) for k, v in model.state_dict().items()}
    state.pop("transformer.h.1.mlp.c_fc.bias")
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"missing keys transformer\.h\.1\.mlp\.c_fc\.bias; unexpected keys "
                                         r"extra\.weight"):
        model.load_state_dict(state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["transformer.h.1.mlp.c_fc.bias"] and unexpected == ["extra.weight"]
    state["transformer.wpe.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"'transformer\.wpe\.weight' has shape \(3, 3\), but the model's is"):
        model.load_state_dict(state, strict=False)


def test_loading_fewer_layers_than_the_checkpoint_like_transformers(lm_dir):
    """from_pretrained(ckpt, n_layer=1) keeps the first layer and warns about the rest, as transformers does."""
    with pytest.warns(UserWarning, match=r"not used: transformer\.h\.1\."):
        ours = minigpt2.GPT2LMHeadModel.from_pretrained(lm_dir, n_layer=1)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(lm_dir, n_layer=1, attn_implementation="eager").eval()
    ids = np.array([[7, 8, 9, 10]])
    with torch.no_grad():
        assert_close(ours(ids).logits, theirs(torch.tensor(ids)).logits.numpy(), "logits of the 1-layer model")


def test_small_attributes_hf_code_uses(lm_dir):
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(lm_dir)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(lm_dir)
    assert str(ours.device) == str(theirs.device) == "cpu"
    assert ours.main_input_name == theirs.main_input_name == "input_ids"
    assert ours.name_or_path == theirs.name_or_path == str(lm_dir)
    for name in ("GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2ForSequenceClassification"):
        assert getattr(minigpt2, name).can_generate() == getattr(transformers, name).can_generate(), name
