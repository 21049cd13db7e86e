"""minigpt2 against transformers' outputs stored in tests/fixtures/model/, with only NumPy installed.

The fixtures were written by tests/make_fixtures.py with Hugging Face transformers 4.57.6 (float32,
attn_implementation="eager"; 4.x is pinned because it keeps head_mask, which minigpt2 mirrors). Each case loads a tiny checkpoint from its files, runs the same forward calls, and
compares every output, on the NumPy kernels and on the C core: logits, every hidden state, attentions,
cross-attentions, past key/values, losses, mc_logits and sequence-classification logits.

Bound: max|ours - ref| <= 1e-5 * max(1, max|ref|) for every tensor (float32; the two sides sum matmuls
in different orders). The exact GELU fixture meets the same bound: minigpt2's erf approximation is
accurate to 1.2e-7, far below float32 noise at these magnitudes.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os

import numpy as np
import pytest

import minigpt2
from conftest import FIXTURES, describe, max_abs_diff, tolerance

MANIFEST_PATH = os.path.join(FIXTURES, "manifest.json")
REGENERATE = ("If the fixtures are stale (a deliberate change of the reference or of the fixture format), "
              "regenerate them: pip install -e '.[reference]' && python tests/make_fixtures.py")


def _manifest():
    with open(MANIFEST_PATH, encoding="utf-8") as f:
        return json.load(f)


MANIFEST = _manifest()
CASES = {case["name"]: case for case in MANIFEST["cases"]}

# Largest |ours - ref| per output kind over all cases, printed at the end of the module (pytest -s).
LARGEST = collections.defaultdict(lambda: (0.0, 0.0))


def output_kind(case_name, name):
    """'out0.hidden_states.2' -> 'hidden_states'; a sequence classifier's 'out0.logits' -> 'seq_class logits'."""
    field = name.split(".")[1]
    if CASES[case_name]["class"] == "GPT2ForSequenceClassification" and field in ("logits", "loss"):
        return f"seq_class {field}"
    return field


@pytest.fixture(scope="module", autouse=True)
def print_largest_differences():
    yield
    if LARGEST:
        print("\nreference fixtures: largest max|ours - transformers| per output kind (absolute; / max(1, max|ref|))")
        for kind, (diff, scaled) in sorted(LARGEST.items()):
            print(f"  {kind:26s} {diff:9.3g}  {scaled:9.3g}")


def load_case(case):
    with np.load(os.path.join(FIXTURES, case["file"])) as data:
        return {k: data[k] for k in data.files}


def checkpoint_dir(case):
    return os.path.join(FIXTURES, "checkpoints", case["checkpoint"])


def flatten_outputs(prefix, out) -> dict:
    """Our output object, named like the fixture: out0.logits, out0.hidden_states.1, out0.past_key_values.0.key."""
    flat = {}
    for field, value in out.items():
        name = f"{prefix}.{field}"
        if field == "past_key_values":
            for i, (k, v) in enumerate(value):
                flat[f"{name}.{i}.key"], flat[f"{name}.{i}.value"] = k, v
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                flat[f"{name}.{i}"] = item
        else:
            flat[name] = value
    return flat


def past_from_arrays(arrays, prefix, n_layer):
    """The reference's past_key_values as plain tuples of arrays (what a user might hand in)."""
    return tuple((arrays[f"{prefix}.past_key_values.{i}.key"], arrays[f"{prefix}.past_key_values.{i}.value"])
                 for i in range(n_layer))


def run_case(case, arrays, model, own_past=True):
    """Run every call of a case; return our outputs flattened. With own_past=False, calls that continue
    from the previous one get the reference's stored past_key_values instead of ours."""
    ours, past = {}, None
    for k, call in enumerate(case["calls"]):
        kwargs = {name: arrays[f"in{k}.{name}"] for name in call["inputs"]}
        if call["past_from_previous"]:
            kwargs["past_key_values"] = past if own_past else past_from_arrays(arrays, f"out{k - 1}",
                                                                              model.config.n_layer)
        out = model(**kwargs, **call["flags"])
        past = out.past_key_values
        ours.update(flatten_outputs(f"out{k}", out))
    return ours


def compare(case_name, ours, arrays):
    """Compare every reference output; fail with one line per tensor and the regeneration hint."""
    ref_names = sorted(k for k in arrays if k.startswith("out"))
    lines, failed = [], False
    missing = sorted(set(ref_names) - set(ours))
    extra = sorted(set(ours) - set(ref_names))
    for name in ref_names:
        if name not in ours:
            continue
        diff = max_abs_diff(ours[name], arrays[name])
        kind = output_kind(case_name, name)
        scaled = diff / max(1.0, float(np.abs(arrays[name]).max(initial=0)))
        LARGEST[kind] = max(LARGEST[kind], (diff, scaled))
        lines.append(describe(name, ours[name], arrays[name]))
        failed |= not diff <= tolerance(arrays[name])
    if failed or missing or extra:
        reference = MANIFEST["reference"]
        message = [f"case {case_name}: minigpt2 differs from transformers {reference['transformers']} "
                   f"(torch {reference['torch']})"]
        message += [f"  {line}" for line in lines]
        if missing:
            message.append(f"  outputs transformers returns and minigpt2 does not: {missing}")
        if extra:
            message.append(f"  outputs minigpt2 returns and transformers does not: {extra}")
        message.append(REGENERATE)
        pytest.fail("\n".join(message), pytrace=False)


def test_manifest_records_the_reference():
    reference = MANIFEST["reference"]
    assert reference["transformers"] == "4.57.6", REGENERATE
    assert reference["dtype"] == "float32" and reference["attn_implementation"] == "eager"
    assert "make_fixtures.py" in MANIFEST["regenerate"]


def test_fixture_files_match_the_manifest():
    """Every file the manifest lists is present and unchanged (catches hand edits and half-regenerated trees)."""
    problems = []
    for relative, digest in MANIFEST["sha256"].items():
        path = os.path.join(FIXTURES, relative)
        if not os.path.isfile(path):
            problems.append(f"{relative}: missing")
            continue
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != digest:
                problems.append(f"{relative}: contents differ from the manifest's sha256")
    assert not problems, "\n".join(problems + [REGENERATE])


def test_fixtures_cover_every_flag_and_activation():
    """The fixture set must keep covering what the issue lists; a regeneration that drops a case fails here."""
    configs = [json.load(open(os.path.join(FIXTURES, "checkpoints", c, "config.json")))
               for c in MANIFEST["checkpoints"]]
    activations = {c["activation_function"] for c in configs}
    assert {"gelu_new", "gelu", "relu", "silu", "tanh", "gelu_pytorch_tanh", "quick_gelu"} <= activations
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        assert any(c.get(flag) for c in configs), flag
    assert any(c.get("scale_attn_weights") is False for c in configs)
    assert any(c.get("n_inner") is not None for c in configs)
    inputs = {name for case in MANIFEST["cases"] for call in case["calls"] for name in call["inputs"]}
    assert {"head_mask", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds", "labels",
            "encoder_hidden_states", "encoder_attention_mask", "mc_token_ids", "mc_labels"} <= inputs
    classes = {case["class"] for case in MANIFEST["cases"]}
    assert classes == {"GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2ForSequenceClassification"}


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_matches_transformers(case_name, kernel_backend):
    case = CASES[case_name]
    arrays = load_case(case)
    model = getattr(minigpt2, case["class"]).from_pretrained(checkpoint_dir(case))
    compare(case_name, run_case(case, arrays, model), arrays)


@pytest.mark.parametrize("case_name", sorted(n for n, c in CASES.items() if len(c["calls"]) > 1))
def test_reference_past_key_values_as_plain_tuples(case_name, kernel_backend):
    """Continuing from transformers' own cache, handed in as a tuple of (key, value) arrays, gives its outputs."""
    case = CASES[case_name]
    arrays = load_case(case)
    model = getattr(minigpt2, case["class"]).from_pretrained(checkpoint_dir(case))
    compare(case_name, run_case(case, arrays, model, own_past=False), arrays)


@pytest.mark.parametrize("checkpoint, wrong", [("base", "gelu"), ("act_gelu", "gelu_new")])
def test_gelu_new_and_exact_gelu_are_told_apart(checkpoint, wrong):
    """Swapping GPT-2's tanh GELU for the exact (erf) GELU, or back, must break the match (nanoGPT PR #274)."""
    case = next(c for c in CASES.values() if c["checkpoint"] == checkpoint and c["name"].startswith("flag_"))
    arrays = load_case(case)
    model = getattr(minigpt2, case["class"]).from_pretrained(checkpoint_dir(case))
    right = run_case(case, arrays, model)["out0.logits"]
    assert max_abs_diff(right, arrays["out0.logits"]) <= tolerance(arrays["out0.logits"])
    model.config.activation_function = wrong
    swapped = run_case(case, arrays, model)["out0.logits"]
    diff = max_abs_diff(swapped, arrays["out0.logits"])
    assert diff > 20 * tolerance(arrays["out0.logits"]), (
        f"with {wrong!r} instead of the checkpoint's activation the logits moved only {diff:.3g}: "
        f"the fixture cannot tell the two GELUs apart")
