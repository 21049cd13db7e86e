"""What every supported Python must run: the import, the tokenizer, a tiny model's forward and generate.

    <venv>/bin/python .ci/smoke.py

Run with the python of a fresh venv where minigpt2 is installed (not from the checkout). The C core must be
built (a compiler is present) and agree with the NumPy reference: logits within 1e-5 * max(1, max|logits|)
(float32 sums in another order, as in tests/conftest.py), identical greedy tokens. Decoding runs each block as
one C call (csrc/block.c) exactly when --info says so, on every Python and CPU this runs on.
"""
import sys

import numpy as np

import minigpt2
from minigpt2 import AutoTokenizer, GPT2Config, GPT2LMHeadModel, backend

TEXT = "Hello, my dog is cute"
IDS = [15496, 11, 616, 3290, 318, 13779]  # HF's GPT-2 tokenizer (as in tests/test_real_gpt2.py)

print(f"python {sys.version.split()[0]}, numpy {np.__version__}, minigpt2 {minigpt2.__version__} from "
      f"{minigpt2.__file__}, backend {backend.get_backend()}")
assert backend.c_available(), "the C core did not build or load"

tokenizer = AutoTokenizer.from_pretrained("gpt2")  # the bundled vocabulary: no network
ids = tokenizer(TEXT).input_ids
assert ids == IDS, ids
assert tokenizer.decode(ids) == TEXT

model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32), seed=0)
prompt = np.array([ids])
results = {}
for name in ("numpy", "c"):
    backend.set_backend(name)
    fused = backend._ckernels.calls["transformer_block"]
    logits = model(prompt).logits
    tokens = model.generate(prompt, max_new_tokens=6, do_sample=False)
    fused = backend._ckernels.calls["transformer_block"] - fused
    assert logits.shape == (1, len(ids), model.config.vocab_size) and np.isfinite(logits).all()
    assert tokens.shape == (1, len(ids) + 6) and (tokens[:, :len(ids)] == prompt).all()
    results[name] = logits, tokens
bound = 1e-5 * max(1.0, float(np.abs(results["numpy"][0]).max()))
difference = float(np.abs(results["c"][0] - results["numpy"][0]).max())
assert difference <= bound, f"C and NumPy logits differ by {difference} > {bound}"
assert (results["c"][1] == results["numpy"][1]).all(), "greedy tokens differ between the backends"
said = backend.kernel_choice()[-1]  # "  a decoding block as one C call (one sequence), by weights: float32 yes, ..."
assert (fused > 0) == ("float32 yes" in said), \
    f"{fused} fused block calls in the C backend's decoding, and --info says: {said.strip()}"
print(f"tokenizer, forward and generate ok on both backends (max logit difference {difference:.2e}; "
      f"{fused} decoding blocks as one C call)")
