"""The error each weight format causes, against float32 on the same weights (the table in docs/numerics.md).

    python benchmarks/dtype_error.py                  # gpt2-124M architecture (random, seed 0) and the tiny preset
    python benchmarks/dtype_error.py --models tiny    # only the tiny one (seconds)
    python benchmarks/dtype_error.py --grouping       # int8: blocks of 32 against one scale per output column
    python benchmarks/dtype_error.py --perplexity DIR --text HELD_OUT   # a trained checkpoint, each dtype

For each format: the largest logit difference (and the largest |logit|, for scale), the share of positions
whose top-1 token agrees, the KL divergence KL(p_float32 || p_format) of the next-token distributions (mean
and largest), and greedy continuations compared (the first step where they part, if they do). Beside them
the yardstick Y of tests/test_dtypes.py: the largest logit difference when every rounded weight moves by its
full rounding bound in a random direction. The inputs are random token ids; no timing here (that is
benchmarks/bench_decode.py's job).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # (this checkout's minigpt2)
import numpy as np  # noqa: E402

import minigpt2  # noqa: E402
from minigpt2 import checkpoint, weights  # noqa: E402

U = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -11}
MODELS = {
    "gpt2-124M": dict(preset="gpt2", seed=0),  # HF's initialisation: N(0, 0.02), residual projections scaled
    "tiny": dict(preset="tiny", seed=0),  # the tutorials' fallback model (tutorials/_workshop.py)
}


PROMPT = 8  # tokens of the greedy continuations' prompt (the first of the random ids; fewer if --length is less)


def kl_divergence(logits_p, logits_q):
    """KL(p || q) of the softmax distributions, per position (float64).  # [..., V] -> [...]"""
    lp = logits_p - np.logaddexp.reduce(logits_p.astype(np.float64), axis=-1, keepdims=True)
    lq = logits_q - np.logaddexp.reduce(logits_q.astype(np.float64), axis=-1, keepdims=True)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def yardstick_logits(model, fmt, ids, seed=0):
    """Logits with every parameter ``fmt`` rounds moved by its full rounding bound, in a random direction."""
    rng = np.random.default_rng(seed)
    moved = copy.deepcopy(model)
    for name, a in checkpoint.flatten(moved.params).items():
        if fmt == "int8":
            if not weights.is_matrix(name, a):
                continue
            q = weights.quantize_int8(a, -1 if name in ("wte.weight", "wpe.weight") else 0)
            bound = weights.widen(weights.Int8Weight(np.ones_like(q.q), q.scales, q.axis)) / 2
        else:
            bound = U[fmt] * np.abs(a)
        a += (rng.choice(np.array([-1, 1], np.float32), a.shape) * bound).astype(np.float32)  # in place
    return moved(ids).logits


def first_difference(a, b):
    differ = np.nonzero(a != b)[0]
    return None if len(differ) == 0 else int(differ[0])


def measure(label, preset, seed, batch, length, new_tokens):
    config = minigpt2.GPT2Config.from_preset(preset)
    model = minigpt2.GPT2LMHeadModel(config, seed=seed)
    ids = np.random.default_rng(1).integers(0, config.vocab_size, (batch, length))
    reference = model(ids).logits
    prompt = ids[:1, :PROMPT]
    greedy32 = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False, pad_token_id=0)[0, prompt.shape[1]:]
    print(f"\n{label}: {config.n_layer} layers, n_embd {config.n_embd}, vocab {config.vocab_size}, seed {seed}; "
          f"{batch} x {length} random tokens; largest |logit| {np.abs(reference).max():.3f}")
    print("| format | bytes/weight | max abs logit diff | yardstick Y | top-1 agrees | KL mean | KL max | "
          f"greedy, {new_tokens} tokens |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt in ("bfloat16", "float16", "int8"):
        narrow = copy.deepcopy(model).to(fmt)
        logits = narrow(ids).logits
        diff = np.abs(logits - reference).max()
        Y = np.abs(yardstick_logits(model, fmt, ids) - reference).max()
        agree = (logits.argmax(-1) == reference.argmax(-1)).mean()
        kl = kl_divergence(reference, logits)
        greedy = narrow.generate(prompt, max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=0)[0, prompt.shape[1]:]
        part = first_difference(greedy, greedy32)
        flat = checkpoint.flatten(narrow.params)
        matrices = [w for name, w in flat.items() if weights.is_matrix(name, w)]
        per_weight = sum(w.nbytes for w in matrices) / sum(w.size for w in matrices)
        print(f"| {fmt} | {per_weight:.3f} | {diff:.2e} | {Y:.2e} | {100 * agree:.1f}% | {kl.mean():.1e} | "
              f"{kl.max():.1e} | {'identical' if part is None else f'part at step {part + 1}'} |")
        del narrow


def grouping():
    """int8's relative rms error with blocks of 32 along the input axis and with one scale per output column,
    on GPT-2-shaped matrices: Gaussian (std 0.02), and a stand-in for trained weights (Student-t with 4 degrees
    of freedom, four input rows 10x larger, as the residual stream's few huge dimensions make them)."""
    rng = np.random.default_rng(0)

    def per_column(a):
        s = np.abs(a).max(axis=0) / 127
        return np.rint(a / s) * s

    def rel(err, ref):
        return float(np.sqrt((err ** 2).mean() / (ref ** 2).mean()))

    print("| weights | matrix | blocks of 32: W | per column: W | blocks of 32: x @ W | per column: x @ W |")
    print("|---|---|---|---|---|---|")
    for kind in ("Gaussian", "heavy tails + outlier rows"):
        for label, (n_in, n_out) in {"c_attn 768x2304": (768, 2304), "c_fc 768x3072": (768, 3072),
                                     "mlp.c_proj 3072x768": (3072, 768)}.items():
            if kind == "Gaussian":
                w = rng.standard_normal((n_in, n_out)).astype(np.float32) * 0.02
            else:
                w = (rng.standard_t(4, (n_in, n_out)) * 0.02).astype(np.float32)
                w[rng.choice(n_in, 4, replace=False)] *= 10
            x = rng.standard_normal((64, n_in)).astype(np.float32)
            y = x @ w
            b, c = weights.quantize_int8(w, 0).widen(), per_column(w).astype(np.float32)
            print(f"| {kind} | {label} | {rel(b - w, w):.2e} | {rel(c - w, w):.2e} | {rel(x @ b - y, y):.2e} | "
                  f"{rel(x @ c - y, y):.2e} |")


def perplexity(checkpoint_dir, text_path, window, max_tokens):
    """Perplexity on held-out text of a trained checkpoint, loaded in each dtype: exp(mean cross-entropy) over
    windows of ``window`` tokens (each window scored from its second token on), on the same tokens for every
    dtype. The text is a file or a folder of .py/.txt files, tokenized with GPT-2's BPE."""
    path = pathlib.Path(text_path)
    files = sorted(path.glob("*.py")) + sorted(path.glob("*.txt")) if path.is_dir() else [path]
    text = "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    tokenizer = minigpt2.GPT2Tokenizer()
    ids = np.array(tokenizer(text)["input_ids"][:max_tokens])
    windows = ids[:len(ids) // window * window].reshape(-1, window)
    if len(windows) == 0:
        sys.exit(f"--text {text_path}: {len(ids)} tokens ({len(files)} files), fewer than one --window of {window}: "
                 "give more text or a smaller --window")
    print(f"{checkpoint_dir}: {len(windows)} windows of {window} tokens from {text_path} ({len(files)} files)")
    print("| weights | perplexity | change vs float32 | mean NLL (nats) |")
    print("|---|---:|---:|---:|")
    reference = None
    for fmt in ("float32", "bfloat16", "float16", "int8"):
        options = {"load_in_8bit": True} if fmt == "int8" else {"torch_dtype": fmt}
        model = minigpt2.GPT2LMHeadModel.from_pretrained(checkpoint_dir, **options)
        nll = np.mean([float(model(w[None], labels=w[None]).loss) for w in windows])
        reference = nll if reference is None else reference
        change = "" if fmt == "float32" else f"{np.exp(nll) / np.exp(reference) - 1:+.4%}"
        print(f"| {fmt} | {np.exp(nll):.4f} | {change} | {nll:.7f} |")


def count(low=1):
    """argparse's type for a count: a whole number of ``low`` or more (a clear usage error, not NumPy's)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: give a whole number of {low} or more")
        return value
    parse.__name__ = "count"  # (argparse names it in its messages)
    return parse


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS),
                        help="default: both (gpt2-124M takes a minute or two; tiny, seconds)")
    parser.add_argument("--batch", type=count(), default=4, help="sequences of random tokens (default 4)")
    parser.add_argument("--length", type=count(), default=64, help="tokens per sequence (default 64)")
    parser.add_argument("--new-tokens", type=count(), default=32,
                        help=f"greedy tokens generated after a {PROMPT}-token prompt (default 32)")
    parser.add_argument("--grouping", action="store_true", help="compare int8 groupings instead")
    parser.add_argument("--perplexity", metavar="CHECKPOINT", help="a trained checkpoint: its perplexity on "
                        "--text in each dtype, instead")
    parser.add_argument("--text", metavar="FILE_OR_DIR", help="held-out text for --perplexity (a file, or a folder "
                        "of .py and .txt files)")
    parser.add_argument("--window", type=count(2), default=128,
                        help="tokens per scored window (--perplexity; default 128, at least 2)")
    parser.add_argument("--max-tokens", type=count(), default=65536,
                        help="held-out tokens used (--perplexity; default 65536)")
    args = parser.parse_args()
    if args.grouping:
        return grouping()
    if args.perplexity:
        if not args.text:
            parser.error("--perplexity needs --text (held-out text the model was not trained on)")
        try:
            with open(os.path.join(args.perplexity, "config.json")) as f:
                n_positions = json.load(f).get("n_positions", 1024)
        except (OSError, ValueError, AttributeError) as e:
            parser.error(f"--perplexity {args.perplexity}: no readable config.json there ({e}); give a folder that "
                         "save_pretrained wrote")
        if not os.path.isfile(os.path.join(args.perplexity, "model.safetensors")):
            parser.error(f"--perplexity {args.perplexity}: no model.safetensors there; give a folder that "
                         "save_pretrained wrote")
        if not os.path.exists(args.text):
            parser.error(f"--text {args.text}: no such file or folder")
        if args.window > n_positions:
            parser.error(f"--window {args.window}: the model has n_positions={n_positions}; give at most that")
        if args.max_tokens < args.window:
            parser.error(f"--max-tokens {args.max_tokens} is less than one --window of {args.window}")
        return perplexity(args.perplexity, args.text, args.window, args.max_tokens)
    for label in args.models:
        config = minigpt2.GPT2Config.from_preset(MODELS[label]["preset"])
        if args.length > config.n_positions:
            parser.error(f"--length {args.length}: {label} has n_positions={config.n_positions}; give at most that")
        if min(PROMPT, args.length) + args.new_tokens > config.n_positions:
            parser.error(f"--new-tokens {args.new_tokens}: after the {min(PROMPT, args.length)}-token prompt, {label} "
                         f"has positions for {config.n_positions - min(PROMPT, args.length)} new tokens at most")
    print(f"minigpt2 {minigpt2.__version__}, NumPy {np.__version__}, backend {minigpt2.backend.get_backend()}, "
          f"{platform.machine()} {platform.processor() or ''}".rstrip())
    start = time.perf_counter()
    for label in args.models:
        measure(label, **MODELS[label], batch=args.batch, length=args.length, new_tokens=args.new_tokens)
    print(f"\n({time.perf_counter() - start:.0f} s)")

if __name__ == "__main__":
    main()
