"""Training speed: minigpt2 (NumPy backward, BLAS matmuls) against torch eager, tokens per second.
(Without torch and transformers, minigpt2 alone.)

    python benchmarks/bench_train.py                     # the default config, all the cores it may use, 5 rounds
    python benchmarks/bench_train.py --quick             # a smoke run
    python benchmarks/bench_train.py --profile           # where minigpt2's step spends its time

One training step = forward + backward + gradient clipping + an AdamW step, on a batch of B sequences of T
tokens, dropout off, for the same GPT-2 config (random weights, GPT-2's vocabulary of 50257) in both
libraries. torch: transformers' GPT2LMHeadModel, attn_implementation="eager", float32,
torch.optim.AdamW (fused=False, foreach=True, its default on CPU). Threads: OPENBLAS_NUM_THREADS,
MINIGPT2_NUM_THREADS and torch.set_num_threads all set to --threads (default: the cores this process may use,
its CPU affinity, as minigpt2 counts them). Both run in this one process,
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = dict(n_layer=2, n_embd=64, batch=2, seq=32, rounds=2, steps=1)  # --quick: a smoke run
DEFAULTS = dict(n_layer=4, n_embd=256, batch=8, seq=128, rounds=5, steps=3)


def cores_available():
    """The cores this process may run on (its CPU affinity), at least 1: minigpt2's default thread count
    (minigpt2/backend.py, _cores_available), counted the same way here, before NumPy loads, because OpenBLAS
    takes its thread count from the environment when it loads."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in DEFAULTS.items():  # (None: --quick's value or the default, whichever applies)
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                       help=f"default {default}, --quick {QUICK[name]}")
    p.add_argument("--n-head", type=int, default=4, help="default 4")
    p.add_argument("--threads", type=int, default=None,
                   help=f"default: the cores this process may use (here {cores_available()})")
    p.add_argument("--quick", action="store_true", help="a small model and few steps: a smoke run")
    p.add_argument("--profile", action="store_true", help="where minigpt2's step spends its time, and stop")
    args = p.parse_args()
    if args.profile and (args.rounds is not None or args.steps is not None):  # (it profiles 3 steps, in one round)
        p.error(f"{'--rounds' if args.rounds is not None else '--steps'}: not used by --profile (it profiles three "
                f"steps of minigpt2); drop it")
    if args.threads is None:
        args.threads = cores_available()
    for name, default in DEFAULTS.items():  # what the user gave wins over --quick
        if getattr(args, name) is None:
            setattr(args, name, (QUICK if args.quick else DEFAULTS)[name])
    for name in (*DEFAULTS, "n_head", "threads"):
        low = 2 if name == "seq" else 1  # (a sequence of 1 token has no next token to predict: a NaN loss)
        high = 256 if name == "threads" else None  # (MINIGPT2_NUM_THREADS's range: the C core's pool)
        if getattr(args, name) < low or (high is not None and getattr(args, name) > high):
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give a whole number of {low} or more" +
                    (f", up to {high}" if high else " (no upper limit)"))
    if args.n_embd % args.n_head:
        p.error(f"--n-embd {args.n_embd} is not a multiple of --n-head {args.n_head}: each head takes an equal share")
    return args


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
    for var in ("OPENBLAS_NUM_THREADS", "MINIGPT2_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, ROOT)  # (this checkout's minigpt2, installed or not)
    import numpy as np

    import minigpt2
    from minigpt2.training import optim
    from minigpt2.training.trainer import make_trainable, unique_params

    try:
        import torch
        import transformers
    except ImportError as e:
        torch = None
        if not args.profile:
            print(f"(torch skipped: {e}; pip install -e '.[reference]' brings torch and transformers)",
                  file=sys.stderr)
    config = dict(vocab_size=50257, n_positions=max(args.seq, 128), n_embd=args.n_embd, n_layer=args.n_layer,
                  n_head=args.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    ours = make_trainable(minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**config), seed=0)).train()
    params = unique_params(ours)
    adamw = optim.AdamW(params, lr=1e-4)
    batch = np.random.default_rng(0).integers(0, 50257, (args.batch, args.seq))

    def step_ours():
        loss, grads = ours.loss_and_grad(batch, labels=batch)
        grads = {k: grads[k] for k in params}
        optim.clip_grad_norm(grads, 1.0)
        adamw.step(grads)

    if args.profile:
        import cProfile
        import pstats

        step_ours()
        profiler = cProfile.Profile()  # (kept in memory: no file left behind)
        profiler.runcall(lambda: [step_ours() for _ in range(3)])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return

    steps = {"minigpt2": step_ours}
    versions = f"numpy {np.__version__}, minigpt2 {minigpt2.__version__} (backend {minigpt2.backend.get_backend()})"
    if torch is not None:
        torch.set_num_threads(args.threads)
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config, attn_implementation="eager")).train()
        hf.loss_type = "ForCausalLM"  # (the loss it uses anyway: unset, transformers 4.5x warns "loss_type=None ...")
        named = dict(hf.named_parameters())
        t_opt = torch.optim.AdamW([{"params": [p for p in named.values() if p.ndim >= 2], "weight_decay": 0.1},
                                   {"params": [p for p in named.values() if p.ndim < 2], "weight_decay": 0.0}],
                                  lr=1e-4)
        t_batch = torch.tensor(batch)

        def step_torch():
            t_opt.zero_grad(set_to_none=True)
            hf(t_batch, labels=t_batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
            t_opt.step()

        steps["torch"] = step_torch
        versions += f", torch {torch.__version__}, transformers {transformers.__version__}"

    tokens = args.batch * args.seq * args.steps
    rates = {name: [] for name in steps}
    for fn in steps.values():
        fn()  # warm up
    for r in range(args.rounds):
        order = list(steps) if r % 2 == 0 else list(steps)[::-1]
        for name in order:
            start = time.perf_counter()
            for _ in range(args.steps):
                steps[name]()
            rates[name].append(tokens / (time.perf_counter() - start))
    n_params = sum(a.size for a in params.values())
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs ({cores_available()} this process may use); "
          f"threads {args.threads}; load average {os.getloadavg()[0]:.1f}")
    print(f"{versions}, python {sys.version.split()[0]}")
    print(f"config: n_layer {args.n_layer}, n_embd {args.n_embd}, n_head {args.n_head}, vocab 50257 "
          f"({n_params / 1e6:.1f}M parameters); batch {args.batch} x seq {args.seq}; {args.rounds} rounds x "
          f"{args.steps} steps")
    print(f"{'':10s} {'tokens/s (median)':>18s}  {'[min - max]':>20s}")
    for name, values in rates.items():
        print(f"{name:10s} {statistics.median(values):18,.0f}  [{min(values):,.0f} - {max(values):,.0f}]")
    if "torch" in rates:
        print(f"minigpt2 / torch: {statistics.median(rates['minigpt2']) / statistics.median(rates['torch']):.2f} "
              f"(per round: {', '.join(f'{a / b:.2f}' for a, b in zip(rates['minigpt2'], rates['torch']))})")


if __name__ == "__main__":
    main()
