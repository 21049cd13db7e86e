"""Training speed: minigpt2 (NumPy backward, BLAS matmuls) against torch eager, tokens per second.

    python benchmarks/bench_train.py                     # the default config, 2 threads, 5 rounds
    python benchmarks/bench_train.py --quick             # a smoke run
    python benchmarks/bench_train.py --profile           # where minigpt2's step spends its time

One training step = forward + backward + gradient clipping + an AdamW step, on a batch of B sequences of T
tokens, dropout off, for the same GPT-2 config (random weights, GPT-2's vocabulary of 50257) in both
libraries. torch: transformers' GPT2LMHeadModel, attn_implementation="eager", float32,
torch.optim.AdamW (fused=False, foreach=True, its default on CPU). Threads: OPENBLAS_NUM_THREADS,
MINIGPT2_NUM_THREADS and torch.set_num_threads all set to --threads. Both run in this one process,
interleaved: each round times --steps steps of one library then of the other (the order alternating), after
one warm-up step each; the table shows the median tokens/s over rounds and [min - max]. Shared machines
vary from minute to minute: read the spread.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--profile", action="store_true")
    return p.parse_args()


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    args = parse()
    if args.quick:
        args.n_layer, args.n_embd, args.batch, args.seq, args.rounds, args.steps = 2, 64, 2, 32, 2, 1
    for var in ("OPENBLAS_NUM_THREADS", "MINIGPT2_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch
    import transformers

    import minigpt2
    from minigpt2.training import optim
    from minigpt2.training.trainer import make_trainable, unique_params

    torch.set_num_threads(args.threads)
    config = dict(vocab_size=50257, n_positions=max(args.seq, 128), n_embd=args.n_embd, n_layer=args.n_layer,
                  n_head=args.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config, attn_implementation="eager")).train()
    ours = make_trainable(minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**config), seed=0)).train()
    params = unique_params(ours)
    adamw = optim.AdamW(params, lr=1e-4)
    named = dict(hf.named_parameters())
    t_opt = torch.optim.AdamW([{"params": [p for p in named.values() if p.ndim >= 2], "weight_decay": 0.1},
                               {"params": [p for p in named.values() if p.ndim < 2], "weight_decay": 0.0}], lr=1e-4)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 50257, (args.batch, args.seq))
    t_batch = torch.tensor(batch)

    def step_ours():
        loss, grads = ours.loss_and_grad(batch, labels=batch)
        grads = {k: grads[k] for k in params}
        optim.clip_grad_norm(grads, 1.0)
        adamw.step(grads)

    def step_torch():
        t_opt.zero_grad(set_to_none=True)
        hf(t_batch, labels=t_batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        t_opt.step()

    if args.profile:
        import cProfile
        import pstats
        step_ours()
        cProfile.runctx("for _ in range(3): step_ours()", globals(), locals(), "/tmp/bench_train.prof")
        pstats.Stats("/tmp/bench_train.prof").sort_stats("tottime").print_stats(15)
        return

    tokens = args.batch * args.seq * args.steps
    rates = {"minigpt2": [], "torch": []}
    steps = {"minigpt2": step_ours, "torch": step_torch}
    for fn in steps.values():
        fn()  # warm up
    for r in range(args.rounds):
        order = ["minigpt2", "torch"] if r % 2 == 0 else ["torch", "minigpt2"]
        for name in order:
            start = time.perf_counter()
            for _ in range(args.steps):
                steps[name]()
            rates[name].append(tokens / (time.perf_counter() - start))
    n_params = sum(a.size for a in params.values())
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; threads {args.threads}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"numpy {np.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"python {sys.version.split()[0]}")
    print(f"config: n_layer {args.n_layer}, n_embd {args.n_embd}, n_head {args.n_head}, vocab 50257 "
          f"({n_params / 1e6:.1f}M parameters); batch {args.batch} x seq {args.seq}; {args.rounds} rounds x "
          f"{args.steps} steps")
    print(f"{'':10s} {'tokens/s (median)':>18s}  {'[min - max]':>20s}")
    for name, values in rates.items():
        print(f"{name:10s} {statistics.median(values):18,.0f}  [{min(values):,.0f} - {max(values):,.0f}]")
    print(f"minigpt2 / torch: {statistics.median(rates['minigpt2']) / statistics.median(rates['torch']):.2f} "
          f"(per round: {', '.join(f'{a / b:.2f}' for a, b in zip(rates['minigpt2'], rates['torch']))})")


if __name__ == "__main__":
    main()
