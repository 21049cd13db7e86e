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


def saved_by_transformers(tmp_path_factory, class_name, seed):
    """A random transformers model of ``class_name`` (TINY config, eager attention), saved; its directory."""
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(transformers.GPT2Config(**TINY, attn_implementation="eager"))
    directory = tmp_path_factory.mktemp(class_name)
    model.eval().save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="module")
def double_heads_dir(tmp_path_factory):
    return saved_by_transformers(tmp_path_factory, "GPT2DoubleHeadsModel", seed=0)


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
    return saved_by_transformers(tmp_path_factory, "GPT2LMHeadModel", seed=1)


ALL_CLASSES = ["GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2ForSequenceClassification",
               "GPT2ForTokenClassification", "GPT2ForQuestionAnswering"]


@pytest.mark.parametrize("name", ALL_CLASSES)
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
    for name in ALL_CLASSES:
        assert getattr(minigpt2, name).can_generate() == getattr(transformers, name).can_generate(), name


@pytest.mark.parametrize("auto, cls", [("AutoModelForSequenceClassification", "GPT2ForSequenceClassification"),
                                       ("AutoModelForTokenClassification", "GPT2ForTokenClassification"),
                                       ("AutoModelForQuestionAnswering", "GPT2ForQuestionAnswering")])
def test_auto_classes_for_the_task_heads(lm_dir, auto, cls):
    with pytest.warns(UserWarning, match="initialised randomly"):  # an LM checkpoint has no task head: as HF
        ours = getattr(minigpt2, auto).from_pretrained(lm_dir, num_labels=3)
    assert type(ours).__name__ == type(getattr(transformers, auto).from_pretrained(lm_dir, num_labels=3)).__name__
    assert type(ours).__name__ == cls


def _heads_pair(name, directory, **config):
    """A transformers model with a random head, saved, and the same files loaded by minigpt2."""
    torch.manual_seed(3)
    theirs = getattr(transformers, name)(transformers.GPT2Config(**TINY, **config, attn_implementation="eager"))
    theirs.eval().save_pretrained(directory, safe_serialization=True)
    return getattr(minigpt2, name).from_pretrained(directory), theirs


def test_token_classification_matches_transformers(tmp_path):
    ours, theirs = _heads_pair("GPT2ForTokenClassification", tmp_path, num_labels=5)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, TINY["vocab_size"], (3, 7))
    labels = rng.integers(0, 5, (3, 7))
    labels[0, :2] = -100  # e.g. padding, or a word's second piece
    mask = np.ones((3, 7), np.int64)
    mask[1, :3] = 0
    out = ours(ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    with torch.no_grad():
        ref = theirs(torch.tensor(ids), attention_mask=torch.tensor(mask), labels=torch.tensor(labels),
                     output_hidden_states=True)
    assert list(out.keys()) == list(ref.keys())
    assert_close(out.logits, ref.logits.numpy(), "token logits")  # padded positions included
    assert_close(out.loss, ref.loss.numpy(), "token classification loss")
    with pytest.raises(ValueError, match=r"labels holds 5, outside the allowed values \[0, 5\) or -100"):
        ours(ids, labels=np.full((3, 7), 5))


def test_question_answering_matches_transformers(tmp_path):
    ours, theirs = _heads_pair("GPT2ForQuestionAnswering", tmp_path)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, TINY["vocab_size"], (4, 9))
    start, end = np.array([0, 3, 8, 40]), np.array([2, 5, 8, 50])  # the last answer lies past the text: ignored
    out = ours(ids, start_positions=start, end_positions=end)
    with torch.no_grad():
        ref = theirs(torch.tensor(ids), start_positions=torch.tensor(start), end_positions=torch.tensor(end))
    assert list(out.keys()) == list(ref.keys())
    assert_close(out.start_logits, ref.start_logits.numpy(), "start_logits")
    assert_close(out.end_logits, ref.end_logits.numpy(), "end_logits")
    assert_close(out.loss, ref.loss.numpy(), "QA loss")
    assert len(ours(ids, return_dict=False)) == len(theirs(torch.tensor(ids), return_dict=False)) == 2


def test_everyday_model_and_config_calls_as_transformers(lm_dir):
    """Small things HF code calls: base_model, named_parameters/parameters (the tied head listed once, as torch),
    config.update and get_text_config, and from_pretrained's keywords: unknown ones are a TypeError, CPU-only
    loading options are accepted, values minigpt2 cannot honour are refused."""
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(lm_dir, low_cpu_mem_usage=True, device_map="auto",
                                                    trust_remote_code=True, use_safetensors=True)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(lm_dir)
    assert type(ours.base_model).__name__ == type(theirs.base_model).__name__ == "GPT2Model"
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert sum(a.size for a in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    for config in (ours.config, theirs.config):
        config.update({"n_ctx": 7, "summary_type": "mean"})
        assert (config.n_ctx, config.summary_type) == (7, "mean")
        assert config.get_text_config() is config
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['foo'\]"):
        minigpt2.GPT2LMHeadModel.from_pretrained(lm_dir, foo=1)
    with pytest.raises(TypeError):
        transformers.GPT2LMHeadModel.from_pretrained(lm_dir, foo=1)
    with pytest.raises(ValueError, match="runs on the CPU"):
        minigpt2.GPT2LMHeadModel.from_pretrained(lm_dir, device_map="cuda")
    with pytest.raises(ValueError, match="loads only model.safetensors"):
        minigpt2.GPT2LMHeadModel.from_pretrained(lm_dir, use_safetensors=False)
    text = repr(ours)
    assert text.startswith("GPT2LMHeadModel(") and "2 x GPT2Block" in text and "tied to wte" in text


def test_float_half_bfloat16_shortcuts_convert_like_to(lm_dir):
    """model.half() / .bfloat16() / .float() return the model with its weights in that format, as torch's do."""
    model = minigpt2.GPT2LMHeadModel.from_pretrained(lm_dir)
    ids = np.array([[1, 2, 3]])
    reference = model(ids).logits
    assert model.half() is model and model.dtype == "float16"
    assert model.bfloat16().dtype == "bfloat16"
    assert model.float().dtype == "float32"
    theirs = transformers.GPT2LMHeadModel.from_pretrained(lm_dir)
    assert str(theirs.half().dtype) == "torch.float16" and str(theirs.float().dtype) == "torch.float32"
    # Back to float32 after bf16: every weight was rounded once to 8 significant bits (relative error <= 2^-9)
    assert np.abs(model(ids).logits - reference).max() > 0


@pytest.mark.parametrize("fmt", ["bfloat16", "float16", "int8"])
def test_resizing_embeddings_keeps_the_weight_format(lm_dir, fmt):
    """resize_token_embeddings on a 16- or 8-bit model: the kept rows keep their (rounded) values, the table stays
    in the model's format, and transformers resizes its own copy to the same shape."""
    model = minigpt2.GPT2LMHeadModel.from_pretrained(lm_dir).to(fmt)
    before = minigpt2.weights.widen(model.params["wte"]["weight"])
    model.resize_token_embeddings(TINY["vocab_size"] + 5)
    after = model.params["wte"]["weight"]
    assert minigpt2.weights.format_name(after) == fmt and after.shape == (TINY["vocab_size"] + 5, TINY["n_embd"])
    np.testing.assert_array_equal(minigpt2.weights.widen(after)[:TINY["vocab_size"]], before)
    assert model(np.array([[TINY["vocab_size"] + 4]])).logits.shape[-1] == TINY["vocab_size"] + 5
