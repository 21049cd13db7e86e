"""Write the reference fixtures of the core model: tiny HF checkpoints and transformers' outputs on them.

    pip install -e ".[reference]"        # torch==2.13.0 (CPU) and transformers==4.57.6
    python tests/make_fixtures.py        # rewrites tests/fixtures/model/

The reference is Hugging Face transformers 4.57.6, float32, ``attn_implementation="eager"`` (the one
attention path that returns attention probabilities and honours head_mask). It is pinned: transformers
4.x still takes ``head_mask``, which minigpt2 mirrors; 5.x dropped it. (Its caches are stored as the
(key, value) pairs per layer minigpt2 returns.)

What is written (tests/test_reference_fixtures.py reads it with only NumPy installed):

    tests/fixtures/model/
        manifest.json                    versions, how to regenerate, every checkpoint and case, file hashes
        checkpoints/<name>/              config.json + model.safetensors, written by save_pretrained
        cases/<case>.npz                 the inputs and reference outputs of one case

A case is one or more forward calls of one model class on one checkpoint. In a case's .npz, call k's
array arguments are ``in{k}.<argument>`` and its outputs ``out{k}.<field>``; tuples are flattened with
dots (``out0.hidden_states.2``, ``out0.past_key_values.1.key``). When a call has
``"past_from_previous": true`` its past_key_values are the previous call's (stored as ``out{k-1}...``).

The weights are not HF's initialisation: every parameter is redrawn with a larger spread (std 0.3,
layer-norm weights 1 +- 0.2, biases +- 0.1), so that activations reach the region where GELU's tanh
and erf forms differ, attention is far from uniform, and a mixed-up bias or layer-norm parameter shows.
The script is deterministic (fixed seeds), so regenerating with the same versions gives the same numbers.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import sys
import zipfile

import numpy as np
import torch
import transformers
from transformers import (
    GPT2Config,
    GPT2DoubleHeadsModel,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPT2Model,
)

FORMAT_VERSION = 1
PINNED_TRANSFORMERS = "4.57.6"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "model")
CLASSES = {cls.__name__: cls
           for cls in (GPT2Model, GPT2LMHeadModel, GPT2DoubleHeadsModel, GPT2ForSequenceClassification)}

# The tiny shape every checkpoint starts from: head_dim 8, 16 positions, a vocabulary of 99.
TINY = dict(vocab_size=99, n_positions=16, n_embd=32, n_layer=2, n_head=4)
PAD = 98  # the pad token of the sequence-classification checkpoints

# name -> (class that writes it, config overrides, what it covers)
CHECKPOINTS = {
    "base": ("GPT2LMHeadModel", {}, "gelu_new, every default flag; an LM-head checkpoint (transformer. prefix)"),
    "act_gelu": ("GPT2LMHeadModel", dict(activation_function="gelu"), "exact (erf) GELU"),
    "act_relu": ("GPT2LMHeadModel", dict(activation_function="relu"), "relu"),
    "act_silu": ("GPT2LMHeadModel", dict(activation_function="silu"), "silu"),
    "act_tanh": ("GPT2LMHeadModel", dict(activation_function="tanh"), "tanh"),
    "act_gelu_pytorch_tanh": ("GPT2LMHeadModel", dict(activation_function="gelu_pytorch_tanh"),
                              "PyTorch's tanh GELU"),
    "act_quick_gelu": ("GPT2LMHeadModel", dict(activation_function="quick_gelu"), "quick_gelu"),
    "n_inner": ("GPT2LMHeadModel", dict(n_inner=20), "an MLP width other than 4 * n_embd"),
    "no_scale_attn_weights": ("GPT2LMHeadModel", dict(scale_attn_weights=False), "scale_attn_weights=False"),
    "scale_by_inverse_layer_idx": ("GPT2LMHeadModel", dict(scale_attn_by_inverse_layer_idx=True, n_layer=3),
                                   "scale_attn_by_inverse_layer_idx=True, three layers"),
    "reorder_and_upcast": ("GPT2LMHeadModel", dict(reorder_and_upcast_attn=True), "reorder_and_upcast_attn=True"),
    "all_flags": ("GPT2LMHeadModel",
                  dict(n_layer=3, n_inner=48, scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True,
                       layer_norm_epsilon=1e-2, activation_function="gelu_new"),
                  "inverse-layer scaling with reorder_and_upcast, n_inner, layer_norm_epsilon=1e-2"),
    "cross_attention": ("GPT2LMHeadModel", dict(add_cross_attention=True), "add_cross_attention=True"),
    "cross_attention_flags": ("GPT2LMHeadModel",
                              dict(add_cross_attention=True, scale_attn_by_inverse_layer_idx=True,
                                   reorder_and_upcast_attn=True),
                              "cross-attention with inverse-layer scaling and reorder_and_upcast"),
    "double_heads": ("GPT2DoubleHeadsModel", {}, "multiple-choice head, default summary (cls_index, projection)"),
    "double_heads_summary": ("GPT2DoubleHeadsModel",
                             dict(summary_activation="tanh", summary_proj_to_labels=False),
                             "summary projected to n_embd, then tanh: mc_logits [B, C, n_embd]"),
    "seq_class": ("GPT2ForSequenceClassification", dict(num_labels=3, pad_token_id=PAD),
                  "three labels, pad_token_id set"),
    "seq_class_regression": ("GPT2ForSequenceClassification", dict(num_labels=1, pad_token_id=PAD),
                             "one label (regression), pad_token_id set"),
    # The same weights as "base", stored differently.
    "base_fp16": ("GPT2LMHeadModel", {}, "the base weights stored as float16"),
    "base_bf16": ("GPT2LMHeadModel", {}, "the base weights stored as bfloat16"),
    "base_model_only": ("GPT2Model", {}, "the base weights saved by GPT2Model: no transformer. prefix, no head"),
}
STORED_DTYPE = {"base_fp16": torch.float16, "base_bf16": torch.bfloat16}
SAME_WEIGHTS_AS_BASE = ("base_fp16", "base_bf16", "base_model_only")

ALL_OUTPUTS = dict(use_cache=True, output_attentions=True, output_hidden_states=True)


def build_checkpoints():
    """Write every checkpoint; return {name: manifest entry}."""
    entries = {}
    for index, (name, (class_name, overrides, about)) in enumerate(CHECKPOINTS.items()):
        directory = os.path.join(OUT, "checkpoints", name)
        if name in SAME_WEIGHTS_AS_BASE:  # "base" comes first, so it is already written
            model = load_reference("base", "GPT2LMHeadModel")
            if name in STORED_DTYPE:
                model = model.to(STORED_DTYPE[name])
            if class_name == "GPT2Model":
                model = model.transformer
        else:
            torch.manual_seed(1000 + index)
            model = CLASSES[class_name](GPT2Config(**{**TINY, **overrides}, attn_implementation="eager"))
            randomize(model)
        model.save_pretrained(directory, safe_serialization=True)
        entries[name] = {"class": class_name, "covers": about, "config_overrides": overrides,
                         "stored_dtype": str(STORED_DTYPE.get(name, torch.float32)).replace("torch.", "")}
    return entries


@torch.no_grad()
def randomize(model):
    """Redraw every parameter with a spread large enough to exercise the nonlinearities (see the docstring)."""
    for name, p in sorted(model.named_parameters()):
        if ".ln_" in name or name.startswith(("ln_", "transformer.ln_")):
            p.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
        elif name.endswith("bias"):
            p.normal_(0.0, 0.1)
        else:
            p.normal_(0.0, 0.3)


def load_reference(checkpoint, class_name):
    """The reference model, loaded from the checkpoint files the way a user would, in float32 and eval mode."""
    return CLASSES[class_name].from_pretrained(
        os.path.join(OUT, "checkpoints", checkpoint), attn_implementation="eager", torch_dtype=torch.float32
    ).eval()


def rng_for(name):
    return np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))


def ids(rng, shape, low=0, high=TINY["vocab_size"]):
    return rng.integers(low, high, size=shape, dtype=np.int64)


def position_ids_from_mask(mask):
    """What generate() uses with left padding: count the real tokens, padding at position 0."""
    return np.maximum(np.cumsum(mask, axis=-1) - 1, 0).astype(np.int64)


def cases():
    """Every case: (name, checkpoint, class, description, [call, ...]).

    A call is (array arguments, flags, past_from_previous)."""
    H, L, E, V = TINY["n_head"], TINY["n_layer"], TINY["n_embd"], TINY["vocab_size"]
    out = []

    def case(name, checkpoint, cls, description, *calls):
        out.append((name, checkpoint, cls, description, list(calls)))

    def one(arrays, **flags):
        return (arrays, {**ALL_OUTPUTS, **flags}, False)

    def then(arrays, **flags):
        return (arrays, {**ALL_OUTPUTS, **flags}, True)

    r = rng_for("lm")
    x = ids(r, (2, 7))
    case("lm_full", "base", "GPT2LMHeadModel", "two rows, labels = input_ids, every output",
         one(dict(input_ids=x, labels=x)))
    labels = x.copy()
    labels[0, :5] = -100
    labels[1, 2] = -100
    case("lm_labels_ignored", "base", "GPT2LMHeadModel", "labels with -100 (ignored) entries",
         one(dict(input_ids=x, labels=labels)))
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3], np.int64)
    case("lm_right_padding", "base", "GPT2LMHeadModel", "row 1 right-padded (attention_mask), pads labelled -100",
         one(dict(input_ids=x, attention_mask=mask, labels=np.where(mask == 1, x, -100))))
    mask = np.array([[1] * 7, [0] * 3 + [1] * 4], np.int64)
    case("lm_left_padding", "base", "GPT2LMHeadModel",
         "row 1 left-padded, position_ids counted from the first real token (as generate does)",
         one(dict(input_ids=x, attention_mask=mask, position_ids=position_ids_from_mask(mask))))
    case("lm_float_attention_mask", "base", "GPT2LMHeadModel", "a float32 attention_mask, padding in both rows",
         one(dict(input_ids=x, attention_mask=np.array([[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]], np.float32))))
    case("lm_head_mask_per_head", "base", "GPT2LMHeadModel", "head_mask [n_head]: one head off, one halved",
         one(dict(input_ids=x, head_mask=np.array([1.0, 0.0, 0.5, 1.0], np.float32))))
    case("lm_head_mask_per_layer", "base", "GPT2LMHeadModel", "head_mask [n_layer, n_head]",
         one(dict(input_ids=x, head_mask=np.array([[1, 1, 0, 1], [0.25, 1, 1, 0]], np.float32))))
    case("lm_token_type_ids", "base", "GPT2LMHeadModel", "token_type_ids (embedded with wte)",
         one(dict(input_ids=x, token_type_ids=ids(r, (2, 7), 0, 3))))
    case("lm_position_ids", "base", "GPT2LMHeadModel", "explicit position_ids [B, T], not 0..T-1",
         one(dict(input_ids=x, position_ids=np.array([[9, 10, 11, 12, 13, 14, 15], [0, 2, 4, 6, 8, 10, 12]]))))
    case("lm_position_ids_1d", "base", "GPT2LMHeadModel", "position_ids [T], shared by the rows",
         one(dict(input_ids=x, position_ids=np.array([3, 1, 4, 1, 5, 9, 2]))))
    case("lm_inputs_embeds", "base", "GPT2LMHeadModel", "inputs_embeds instead of input_ids",
         one(dict(inputs_embeds=r.standard_normal((2, 5, E)).astype(np.float32))))
    case("lm_one_token", "base", "GPT2LMHeadModel", "batch 1, one token",
         one(dict(input_ids=ids(r, (1, 1)))))
    full = ids(r, (1, TINY["n_positions"]))
    case("lm_full_length", "base", "GPT2LMHeadModel", "a sequence of exactly n_positions tokens",
         one(dict(input_ids=full, labels=full)))
    mask0 = np.array([[1] * 5, [0, 0, 1, 1, 1]], np.int64)
    mask1 = np.concatenate([mask0, [[1], [1]]], axis=1)
    mask2 = np.concatenate([mask1, [[1, 1], [1, 0]]], axis=1)
    case("lm_cache_steps", "base", "GPT2LMHeadModel",
         "decoding with past_key_values: a left-padded prompt of 5, then 1 token, then 2 (one padded)",
         one(dict(input_ids=ids(r, (2, 5)), attention_mask=mask0)),
         then(dict(input_ids=ids(r, (2, 1)), attention_mask=mask1)),
         then(dict(input_ids=ids(r, (2, 2)), attention_mask=mask2)))
    case("lm_no_cache", "base", "GPT2LMHeadModel", "use_cache=False: no past_key_values",
         one(dict(input_ids=x), use_cache=False, output_attentions=False, output_hidden_states=False))
    case("model_from_lm_checkpoint", "base", "GPT2Model", "GPT2Model loading an LM-head checkpoint",
         one(dict(input_ids=x, attention_mask=np.array([[1] * 7, [1] * 5 + [0] * 2]))))

    # Every config flag and activation: one representative call each.
    r = rng_for("flags")
    x = ids(r, (2, 6))
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], np.int64)
    for checkpoint, (cls, _, about) in CHECKPOINTS.items():
        if cls == "GPT2LMHeadModel" and checkpoint != "base" and checkpoint not in SAME_WEIGHTS_AS_BASE \
                and not checkpoint.startswith("cross"):
            case(f"flag_{checkpoint}", checkpoint, cls, about + "; right padding, labels, every output",
                 one(dict(input_ids=x, attention_mask=mask, labels=np.where(mask == 1, x, -100))))
    case("flag_base", "base", "GPT2LMHeadModel", "gelu_new (the reference for the gelu/gelu_new swap test)",
         one(dict(input_ids=x, attention_mask=mask, labels=np.where(mask == 1, x, -100))))

    # Cross-attention.
    r = rng_for("cross")
    x = ids(r, (2, 6))
    enc = r.standard_normal((2, 5, E)).astype(np.float32)
    enc_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int64)
    for checkpoint in ("cross_attention", "cross_attention_flags"):
        case(f"{checkpoint}_full", checkpoint, "GPT2LMHeadModel",
             "encoder_hidden_states with a padded encoder row, right padding, labels, every output",
             one(dict(input_ids=x, attention_mask=np.array([[1] * 6, [1] * 5 + [0]]), encoder_hidden_states=enc,
                      encoder_attention_mask=enc_mask, labels=x)))
    case("cross_attention_head_mask", "cross_attention", "GPT2LMHeadModel",
         "head_mask [n_layer, n_head] applies to self- and cross-attention",
         one(dict(input_ids=x, encoder_hidden_states=enc, head_mask=np.array([[1, 0, 1, 0.5], [0, 1, 1, 1]],
                                                                            np.float32))))
    case("cross_attention_no_encoder", "cross_attention", "GPT2LMHeadModel",
         "a cross-attention model called without encoder_hidden_states skips cross-attention "
         "(output_attentions off: transformers 4.46.3 raises IndexError for it here)",
         one(dict(input_ids=x), output_attentions=False))
    case("cross_attention_cache_steps", "cross_attention", "GPT2LMHeadModel",
         "decoding with past_key_values and the same encoder states at each step",
         one(dict(input_ids=x[:, :4], encoder_hidden_states=enc)),
         then(dict(input_ids=x[:, 4:], encoder_hidden_states=enc, encoder_attention_mask=enc_mask)))

    # Double heads: batch 2, 3 choices, 6 tokens.
    r = rng_for("double_heads")
    x = ids(r, (2, 3, 6))
    mask = np.ones((2, 3, 6), np.int64)
    mask[0, 1, 4:] = 0
    mask[1, 2, 3:] = 0
    labels = np.where(mask == 1, x, -100)
    mc_token_ids = np.array([[5, 3, 2], [0, 4, 2]], np.int64)
    case("double_heads_full", "double_heads", "GPT2DoubleHeadsModel",
         "mc_token_ids, labels, mc_labels, attention_mask, token_type_ids, every output",
         one(dict(input_ids=x, attention_mask=mask, token_type_ids=ids(r, (2, 3, 6), 0, 2),
                  mc_token_ids=mc_token_ids, labels=labels, mc_labels=np.array([2, 0], np.int64))))
    case("double_heads_default_cls", "double_heads", "GPT2DoubleHeadsModel",
         "no mc_token_ids: the last token of each choice is summarised",
         one(dict(input_ids=x, mc_labels=np.array([1, 2], np.int64))))
    case("double_heads_summary_full", "double_heads_summary", "GPT2DoubleHeadsModel",
         "summary to n_embd with tanh: mc_logits [B, C, n_embd], so mc_labels [B, C] index n_embd scores",
         one(dict(input_ids=x, mc_token_ids=mc_token_ids, mc_labels=np.array([[7, 31, 0], [2, 9, -100]]),
                  labels=x)))

    # Sequence classification: the last token that is not PAD is scored.
    r = rng_for("seq_class")
    x = ids(r, (3, 6), 0, PAD)
    x[0, 4:] = PAD  # right padding
    x[2, 0] = PAD  # a pad at position 0: HF's rule then reads the last position
    mask = (x != PAD).astype(np.int64)
    case("seq_class_single_label", "seq_class", "GPT2ForSequenceClassification",
         "integer labels: cross-entropy; rows with right padding, none, and a pad at position 0",
         one(dict(input_ids=x, attention_mask=mask, labels=np.array([2, 0, 1], np.int64))))
    case("seq_class_multi_label", "seq_class", "GPT2ForSequenceClassification",
         "float labels [B, num_labels]: binary cross-entropy with logits",
         one(dict(input_ids=x, attention_mask=mask,
                  labels=np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], np.float32))))
    case("seq_class_regression", "seq_class_regression", "GPT2ForSequenceClassification",
         "one label: mean squared error",
         one(dict(input_ids=x, attention_mask=mask, labels=np.array([0.5, -1.25, 2.0], np.float32))))

    # The same weights stored three other ways; each must give the base checkpoint's numbers.
    x = ids(rng_for("stored"), (2, 6))
    for checkpoint in SAME_WEIGHTS_AS_BASE:
        case(f"{checkpoint}_lm", checkpoint, "GPT2LMHeadModel", CHECKPOINTS[checkpoint][2] + ", loaded as LM",
             one(dict(input_ids=x)))
    case("base_model_only_model", "base_model_only", "GPT2Model", "GPT2Model from a GPT2Model checkpoint",
         one(dict(input_ids=x)))
    return out


def to_torch(name, a):
    if name in ("attention_mask", "encoder_attention_mask") and a.dtype != np.int64:
        return torch.from_numpy(a.astype(np.float32))
    return torch.from_numpy(np.ascontiguousarray(a))


def flatten_output(prefix, value, into):
    """Tuples become dotted names: out0.hidden_states.2, out0.past_key_values.1.key (and .value)."""
    if value is None:
        return
    if isinstance(value, torch.Tensor):
        into[prefix] = value.detach().numpy().copy()
    elif prefix.endswith(".past_key_values"):
        value = getattr(value, "self_attention_cache", value)  # (with cross-attention: the self-attention part)
        if hasattr(value, "layers"):  # a transformers Cache: one (keys, values) pair per layer
            value = [(layer.keys, layer.values) for layer in value.layers]
        for i, (key, val) in enumerate(value):
            flatten_output(f"{prefix}.{i}.key", key, into)
            flatten_output(f"{prefix}.{i}.value", val, into)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            flatten_output(f"{prefix}.{i}", item, into)
    else:
        raise TypeError(f"{prefix}: unexpected output of type {type(value).__name__}")


@torch.no_grad()
def run_case(checkpoint, cls, calls):
    model = load_reference(checkpoint, cls)
    arrays, manifest_calls, past = {}, [], None
    for k, (inputs, flags, past_from_previous) in enumerate(calls):
        kwargs = {name: to_torch(name, a) for name, a in inputs.items()}
        if past_from_previous:
            kwargs["past_key_values"] = past
        result = model(**kwargs, **flags, return_dict=True)
        past = result.past_key_values
        for name, a in inputs.items():
            arrays[f"in{k}.{name}"] = a
        outputs = {}
        for field, value in result.items():
            flatten_output(f"out{k}.{field}", value, outputs)
        arrays.update(outputs)
        manifest_calls.append({"inputs": sorted(inputs), "flags": flags, "past_from_previous": past_from_previous,
                               "outputs": sorted(result.keys())})
    return arrays, manifest_calls


def write_npz(path, arrays):
    """np.savez, but byte-for-byte reproducible (fixed timestamps, sorted names)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buffer.getvalue())


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    if transformers.__version__ != PINNED_TRANSFORMERS:
        sys.exit(f"the fixtures are pinned to transformers {PINNED_TRANSFORMERS}; this is {transformers.__version__} "
                 f"(pip install -e '.[reference]')")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "cases"))
    checkpoints = build_checkpoints()
    manifest_cases = []
    for name, checkpoint, cls, description, calls in cases():
        arrays, manifest_calls = run_case(checkpoint, cls, calls)
        path = os.path.join(OUT, "cases", f"{name}.npz")
        write_npz(path, arrays)
        manifest_cases.append({"name": name, "checkpoint": checkpoint, "class": cls, "description": description,
                               "file": f"cases/{name}.npz", "calls": manifest_calls})
    files = {}
    for root, _, names in os.walk(OUT):
        for n in names:
            path = os.path.join(root, n)
            files[os.path.relpath(path, OUT).replace(os.sep, "/")] = sha256(path)
    manifest = {
        "format_version": FORMAT_VERSION,
        "about": "Reference outputs of Hugging Face transformers on tiny random GPT-2 checkpoints, for minigpt2.",
        "regenerate": "pip install -e '.[reference]' && python tests/make_fixtures.py",
        "reference": {"transformers": transformers.__version__, "torch": torch.__version__,
                      "numpy": np.__version__, "python": platform.python_version(),
                      "dtype": "float32", "attn_implementation": "eager", "mode": "eval (dropout off)"},
        "why_this_transformers": "transformers 4.x still accepts head_mask and returns past_key_values as tuples "
                                 "of (key, value), the interface minigpt2 mirrors; 5.x dropped head_mask.",
        "layout": "in{k}.<argument> / out{k}.<field> of call k; tuples flattened with dots; past_key_values "
                  "pairs as .key/.value; past_from_previous means call k's past_key_values are call k-1's outputs",
        "tiny_config": TINY,
        "checkpoints": checkpoints,
        "cases": manifest_cases,
        "sha256": dict(sorted(files.items())),
    }
    with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, p)) for p in files)
    print(f"wrote {len(checkpoints)} checkpoints and {len(manifest_cases)} cases to {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
