"""Write the generation fixtures: token ids that transformers' ``generate`` produces on a tiny checkpoint.

    pip install -e ".[reference]"                 # torch==2.13.0 (CPU) and transformers==4.57.6
    python tests/make_generation_fixtures.py      # rewrites tests/fixtures/generation/

tests/test_generation.py replays every case with minigpt2 (NumPy only) and requires the same ids, token for
token. What is written:

    tests/fixtures/generation/
        checkpoint/config.json, checkpoint/model.safetensors    a GPT2LMHeadModel saved by transformers (~30 KB)
        cases.json                                              versions, hashes, and per case: the prompt ids,
                                                                attention mask, generate() arguments, the ids

The checkpoint is tiny (vocabulary 64, 2 layers of width 16) with widely spread random weights (as in
tests/make_fixtures.py), so that the next-token distributions are far from uniform. Greedy and beam search
decide by comparing scores, and a comparison between two nearly equal scores could go either way under
float32 rounding; so every case is also run in float64, and kept only if float32 and float64 agree (the
script stops otherwise). For greedy cases it also records the smallest gap between the best and second-best
score over all steps ("min_margin").
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "generation")
sys.path.insert(0, HERE)
from conftest import randomize_torch_model  # noqa: E402  (the same weight spread as the model fixtures)

PINNED_TRANSFORMERS = "4.57.6"
CONFIG = dict(vocab_size=64, n_positions=48, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
EOS = [38, 48, 3]  # several end tokens, so that some sequences and beams finish early

# Prompts: one row, and a left-padded batch of three (pad id 0, attention mask 0 on the padding).
ONE = [[5, 9, 22, 31, 7]]
BATCH = [[0, 0, 12, 44, 9, 18], [0, 33, 2, 50, 7, 61], [21, 8, 35, 4, 11, 27]]
BATCH_MASK = [[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]

CASES = [
    ("greedy", ONE, None, dict(max_new_tokens=20)),
    ("greedy_max_length", ONE, None, dict(max_length=18)),
    ("greedy_batch_left_padded", BATCH, BATCH_MASK, dict(max_new_tokens=16)),
    ("greedy_eos_list", BATCH, BATCH_MASK, dict(max_new_tokens=16, eos_token_id=EOS)),
    ("greedy_min_new_tokens", BATCH, BATCH_MASK, dict(max_new_tokens=16, eos_token_id=EOS, min_new_tokens=6)),
    ("greedy_repetition_penalty", ONE, None, dict(max_new_tokens=20, repetition_penalty=1.5)),
    ("greedy_reward_repetition", ONE, None, dict(max_new_tokens=20, repetition_penalty=0.6)),
    ("greedy_no_repeat_ngram", BATCH, BATCH_MASK, dict(max_new_tokens=16, no_repeat_ngram_size=2)),
    ("beam4", ONE, None, dict(max_new_tokens=16, num_beams=4)),
    ("beam4_eos", BATCH, BATCH_MASK, dict(max_new_tokens=16, num_beams=4, eos_token_id=EOS)),
    ("beam3_return3_short", BATCH, BATCH_MASK,
     dict(max_new_tokens=16, num_beams=3, num_return_sequences=3, eos_token_id=EOS, length_penalty=-0.5)),
    ("beam4_return2_long", BATCH, BATCH_MASK,
     dict(max_new_tokens=16, num_beams=4, num_return_sequences=2, eos_token_id=EOS, length_penalty=2.0)),
    ("beam4_early_stopping", BATCH, BATCH_MASK, dict(max_new_tokens=16, num_beams=4, eos_token_id=EOS,
                                                     early_stopping=True)),
    ("beam5_never", BATCH, BATCH_MASK, dict(max_new_tokens=16, num_beams=5, eos_token_id=EOS,
                                            early_stopping="never", length_penalty=1.5)),
    ("beam3_no_repeat_penalty", ONE, None, dict(max_new_tokens=16, num_beams=3, no_repeat_ngram_size=3,
                                                repetition_penalty=1.3, eos_token_id=EOS, min_new_tokens=4)),
]


def run(model, ids, mask, kwargs):
    ids = torch.tensor(ids)
    mask = torch.ones_like(ids) if mask is None else torch.tensor(mask)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, pad_token_id=0, do_sample=False,
                             return_dict_in_generate=True, output_scores=True, **kwargs)
    return out.sequences.numpy(), out.scores


def min_margin(scores) -> float:
    """The smallest gap between the best and second-best processed score at any step of any row."""
    gaps = []
    for step in scores:
        top2 = torch.topk(step.double(), 2, dim=-1).values
        finite = torch.isfinite(top2[:, 1])
        gaps.append((top2[finite, 0] - top2[finite, 1]).min().item() if finite.any() else float("inf"))
    return min(gaps)


def main():
    if transformers.__version__ != PINNED_TRANSFORMERS:
        sys.exit(f"the fixtures are made with transformers {PINNED_TRANSFORMERS}, this is {transformers.__version__}")
    transformers.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(**CONFIG, attn_implementation="eager")
    model = randomize_torch_model(transformers.GPT2LMHeadModel(cfg), seed=5).eval()
    model64 = randomize_torch_model(transformers.GPT2LMHeadModel(cfg), seed=5).double().eval()

    shutil.rmtree(OUT, ignore_errors=True)
    checkpoint = os.path.join(OUT, "checkpoint")
    model.save_pretrained(checkpoint, safe_serialization=True)

    cases = []
    for name, ids, mask, kwargs in CASES:
        seq32, scores = run(model, ids, mask, kwargs)
        seq64, _ = run(model64, ids, mask, kwargs)
        if seq32.shape != seq64.shape or not (seq32 == seq64).all():
            sys.exit(f"case {name}: float32 and float64 disagree (a near-tie); change the case or the seed")
        new = seq32[:, len(ids[0]):]
        ended_early = bool(np.isin(new, EOS).any()) if "eos_token_id" in kwargs else False
        case = dict(name=name, input_ids=ids, attention_mask=mask, kwargs=kwargs, sequences=seq32.tolist(),
                    ended_early=ended_early)
        if kwargs.get("num_beams", 1) == 1:
            case["min_margin"] = min_margin(scores)
        cases.append(case)
        print(f"{name:28s} {seq32.shape}  early eos: {ended_early}  margin: {case.get('min_margin', '-')}")
    if not any(c["ended_early"] for c in cases if c["kwargs"].get("num_beams", 1) > 1):
        sys.exit("no beam case finishes a hypothesis early; the finished-hypotheses code would go untested")

    hashes = {name: hashlib.sha256(open(os.path.join(checkpoint, name), "rb").read()).hexdigest()
              for name in sorted(os.listdir(checkpoint))}
    manifest = dict(
        regenerate="python tests/make_generation_fixtures.py",
        transformers=transformers.__version__, torch=torch.__version__, python=platform.python_version(),
        checkpoint_sha256=hashes, pad_token_id=0, cases=cases)
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
