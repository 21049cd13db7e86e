"""``python -m minigpt2 train``: train a GPT-2 from scratch or fine-tune one, on a text file or folder.

    python -m minigpt2 train --data corpus.txt --out my-model --max-steps 500 --n-layer 4 --n-head 4 --n-embd 128
    python -m minigpt2 train --data notes/ --out tuned --model gpt2 --max-steps 200 --lr 1e-4
    python -m minigpt2 train --out my-model --resume --max-steps 1000      # continue a run
    python -m minigpt2 -m my-model "Once upon a time"                        # use the result

``train`` is a command only as the very first argument; to continue the text "train", write
``python -m minigpt2 -- train``.
"""
from __future__ import annotations

import argparse
import errno
import getpass
import math
import os
import sys
import warnings

from ..cli_checks import (ArgumentParser, HelpFormatter, NamedStdout, StdoutWriteError, negative_values_attached,
                          not_enough_memory, one_line_warning, say_threads_do_nothing, stopped_writing)
from .optim import FLOAT32_MAX  # (an lr or weight decay at or above it makes float32 weights inf)

__all__ = ["main", "build_parser"]


def _int(low, high=None):
    """argparse's type for a whole number from ``low`` to ``high`` (None: no upper limit); an error names the
    range."""
    allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}, with no upper limit"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (must be {allowed})") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not allowed (must be {allowed})")
        return value
    return parse


def _float(low, *, open_low=False, high=None):
    """argparse's type for a finite number from ``low`` (excluded if ``open_low``) to below ``high`` (None: no upper
    limit); an error names the range."""
    allowed = f"finite and {'>' if open_low else '>='} {low}"
    if high == FLOAT32_MAX:
        allowed += f" and < {high!r}, float32's largest value: the weights are float32"
    else:
        allowed += f" and < {high}" if high is not None else ", with no upper limit"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number (must be {allowed})") from None
        if not math.isfinite(value) or value < low or (open_low and value == low) or \
                (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"{value} is not allowed (must be {allowed})")
        return value
    return parse


def build_parser(prog: str = "python -m minigpt2 train") -> argparse.ArgumentParser:
    text = __doc__.replace("``", "")  # (reST literals: plain text in --help)
    p = ArgumentParser(prog=prog, description=text.split("\n\n")[0],
                       epilog=text.split("\n\n", 1)[1], formatter_class=HelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", metavar="FILE_OR_DIR", help="a UTF-8 text file, or a folder of them (tokenized once "
                   "into OUT/data/*.bin; needed unless --resume finds them there)")
    d.add_argument("--pattern", default="*", help="in a folder, the file names to read (default: all), e.g. '*.txt'")
    d.add_argument("--val-fraction", type=_float(0, high=1), default=0.1, help="held out for validation (default 0.1)")
    d.add_argument("--out", required=True, metavar="DIR", help="where checkpoints go (HF format)")
    m = p.add_argument_group("model (from scratch unless --model or --resume)")
    m.add_argument("--model", metavar="NAME_OR_DIR", help="fine-tune this checkpoint (a Hub name or a directory)")
    m.add_argument("--resume", action="store_true", help="continue the run saved in --out (weights, optimizer, step)")
    m.add_argument("--n-layer", type=_int(1), default=4)
    m.add_argument("--n-head", type=_int(1), default=4)
    m.add_argument("--n-embd", type=_int(1), default=128, help="a multiple of --n-head")
    m.add_argument("--n-positions", type=_int(1), help="default: --seq-len")
    m.add_argument("--dropout", type=_float(0, high=1), default=0.0,
                   help="resid, embd and attn dropout (default: 0 for a new model, the checkpoint's with --model)")
    t = p.add_argument_group("training")
    t.add_argument("--max-steps", type=_int(1), required=True)
    t.add_argument("--batch-size", type=_int(1), default=8)
    t.add_argument("--seq-len", type=_int(2), default=128, help="tokens per sequence (default 128)")
    t.add_argument("--grad-accum", type=_int(1), default=1, help="micro-batches per step (default 1)")
    t.add_argument("--lr", type=_float(0, open_low=True, high=FLOAT32_MAX), default=6e-4,
                   help="peak learning rate, > 0 and below float32's largest value, 3.4e38 (default 6e-4)")
    t.add_argument("--min-lr", type=_float(0, high=FLOAT32_MAX), help="the end of the cosine decay (default lr / 10)")
    t.add_argument("--warmup-steps", type=_int(0), help="default max-steps / 20")
    t.add_argument("--weight-decay", type=_float(0, high=FLOAT32_MAX), default=0.1,
                   help="on matrices only (default 0.1)")
    t.add_argument("--grad-clip", type=_float(0), default=1.0, help="max global gradient norm, 0 = off (default 1)")
    t.add_argument("--eval-interval", type=_int(1), default=100)
    t.add_argument("--eval-batches", type=_int(1), default=8)
    t.add_argument("--save-interval", type=_int(0), default=0, help="also save every N steps (default: at evals)")
    t.add_argument("--log-interval", type=_int(1), default=10)
    t.add_argument("--sample-tokens", type=_int(0), default=30, help="tokens sampled at each evaluation, 0 = none")
    t.add_argument("--prompt", default="", help="the samples' prompt (default: <|endoftext|>)")
    t.add_argument("--seed", type=_int(0), default=0)
    t.add_argument("--threads", type=_int(1, _max_threads()), help=f"threads of the C kernels, 1 to {_max_threads()}")
    return p


def _max_threads() -> int:
    from ..backend import MAX_THREADS

    return MAX_THREADS


def typed_flags(argv) -> set:
    """The settings given on the command line, as argparse matched them: ``--batch 4`` is --batch-size (argparse
    takes any unambiguous prefix), so comparing the words with the flags' full names would miss it. Parsed
    again with no defaults, only the typed flags get a value."""
    typed = build_parser()
    for action in typed._actions:
        action.default, action.required = argparse.SUPPRESS, False
    return set(vars(typed.parse_args(argv)))


def main(argv=None, prog: str = "python -m minigpt2 train") -> int:
    try:
        parser = build_parser(prog)
        argv = negative_values_attached(parser, sys.argv[1:] if argv is None else list(argv))  # (--lr -1e-3: checked)
        try:
            args = parser.parse_args(argv)
        except OSError as e:  # --help into a stdout that cannot take it
            return stopped_writing(e, parser.prog)
        args.explicit = typed_flags(argv)  # (--resume keeps the saved settings but these; --model refuses shape flags)
    except KeyboardInterrupt:  # (Ctrl-C as the command starts: nothing to say but that)
        print("\n[interrupted]", file=sys.stderr)
        return 130
    from ..cli import _tolerant_stdout

    restore = _tolerant_stdout()  # (samples hold any character: an ASCII stdout shows escapes, as the generator's)
    shown_as, warnings.formatwarning = warnings.formatwarning, one_line_warning  # ("minigpt2: ...", no file and line)
    stdout, sys.stdout = sys.stdout, NamedStdout(sys.stdout)  # (the log: a failed write names stdout, not the disk
    try:                                                      # the checkpoints go to)
        code = run(args, parser)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:  # (before training, or a second Ctrl-C during a step: the last checkpoint stays)
        print(f"\n[interrupted] {_what_out_keeps(args)}", file=sys.stderr)
        return 130
    except MemoryError as e:  # (NumPy names the array it could not allocate)
        fix = "try a smaller model (--n-layer, --n-embd, --n-positions), --batch-size or --seq-len"
        print(f"{parser.prog}: error: {not_enough_memory(e, fix)}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError, FloatingPointError) as e:
        if isinstance(e, (BrokenPipeError, StdoutWriteError)):  # the log's reader went away ("| head"), or stdout is
            return stopped_writing(e, parser.prog)                 # full
        trainer = getattr(args, "trainer", None)
        saved = None if trainer is None else trainer.saved_step
        print(f"{parser.prog}: error: {' '.join(_out_problem(e, args.out, saved).split())}", file=sys.stderr)
        return 1
    finally:
        if getattr(args, "let_go_of_out", None) is not None:
            args.let_go_of_out()
        sys.stdout = stdout
        restore()
        warnings.formatwarning = shown_as


def _what_out_keeps(args) -> str:
    """After a Ctrl-C that stopped without saving: what --out holds now."""
    trainer = getattr(args, "trainer", None)
    saved = None if trainer is None else trainer.saved_step
    if saved is not None:
        return f"stopped without saving: {args.out} keeps the checkpoint of step {saved}"
    if args.resume:
        return f"stopped before training: {args.out} keeps its checkpoint as it was"
    return f"stopped before anything was saved: {args.out} holds no checkpoint"


def _out_problem(error, out, saved_step=None) -> str:
    """An error, said as a problem of --out when writing there failed (a read-only folder, a full disk, a path in
    /proc): Python's "[Errno 13] Permission denied: 'out/data'" names neither the flag nor the way out. With
    ``saved_step`` (the run saved before), also the checkpoint --out keeps: a save that fails changes nothing."""
    path = getattr(error, "filename", None)
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT) and path is None:
        path = out  # (a write that fills the disk names no file; a run writes only into --out, stdout aside)
    if not isinstance(error, OSError) or error.strerror is None or path is None:
        return str(error)
    inside = os.path.abspath(path) + os.sep
    if not (inside.startswith(os.path.abspath(out) + os.sep) or os.path.abspath(out).startswith(inside)):
        return str(error)
    kept = "" if saved_step is None else (f"; {out} keeps the checkpoint of step {saved_step} (continue it with "
                                          f"--resume once there is room)")
    return (f"--out {out} cannot be used: {error.strerror} ({path}); give --out a directory you can write, on a disk "
            f"with room for the checkpoints{kept}")


# What a checkpoint directory holds (Trainer.save writes them; a model alone is config.json + model.safetensors)
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")
RUN_FILES = ("trainer_state.json", "optimizer.safetensors")


def not_yours(out):
    """A PermissionError when ``out`` (or the nearest folder above it that exists) is another user's and we may not
    write in it (a workshop's shared folder): "Permission denied (.train.lock)", or "continue that run with
    --resume", would not say that the way out is a folder of one's own."""
    from ..shared_cache import owned_by_other

    found = owned_by_other(out, os.sep)
    if found is None or os.access(found[0], os.W_OK):
        return
    now = ""
    try:
        import fcntl

        fd = os.open(os.path.join(out, ".train.lock"), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            now = f", training into it now (process {os.read(fd, 32).decode(errors='replace').strip() or '?'})"
        finally:
            os.close(fd)
    except (ImportError, OSError):
        pass
    try:
        me = getpass.getuser()
    except (OSError, KeyError):  # (no login name anywhere)
        me = "mine"
    whose = (f"--out {out} belongs to {found[1]}{now}" if found[0] == os.path.abspath(out) else
             f"--out {out} is in {found[0]}, which belongs to {found[1]}")
    model = f"; to start from their model, add --model {out}" if os.path.isfile(os.path.join(out, "config.json")) else ""
    mine = os.path.join(os.path.dirname(os.path.abspath(out)), f"{me}-{os.path.basename(os.path.abspath(out))}")
    if found[0] != os.path.abspath(out):
        mine = os.path.join(os.path.expanduser("~"), os.path.basename(os.path.abspath(out)))
    raise PermissionError(f"{whose}: you cannot write in it. Train into a folder of your own (e.g. --out {mine})"
                          f"{model}")


def refuse_to_overwrite(out):
    """A FileExistsError (exit 1, as --resume's "no run to continue"), before anything is written, when ``out``
    already holds a model or a training run: a new run would replace them. An empty or new directory, or one
    with only other files (e.g. its data/), is fine. Another user's folder is a PermissionError (not_yours)."""
    not_yours(out)
    found = [name for name in MODEL_FILES + RUN_FILES if os.path.isfile(os.path.join(out, name))]
    if not found:
        return
    what = "a training run" if any(name in RUN_FILES for name in found) else "a model"
    resumable = all(os.path.isfile(os.path.join(out, name)) for name in RUN_FILES + MODEL_FILES[:2])
    if resumable:
        way = (f"continue that run with python -m minigpt2 train --out {out} --resume --max-steps N "
               f"({_saved_step(out)}), or train a new model into a new or empty directory")
    elif what == "a model":
        way = f"to fine-tune it, pass --model {out} and a new or empty --out directory; else choose a new or empty one"
    else:
        way = "it cannot be resumed (files are missing); choose a new or empty directory"
    raise FileExistsError(f"--out {out} already holds {what} ({', '.join(found)}), which this run would "
                          f"overwrite: {way}")


def hold_out_dir(out):
    """Take ``out``/.train.lock for as long as this process runs (the operating system lets go when it ends, however
    it ends), or a BlockingIOError naming the run that holds it: two runs into one directory at the same time would
    both say "saved", and the weights of whichever saved last would silently replace the other's. Returns
    ``let_go()``, to call when the run is over; None where there are no advisory locks (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    not_yours(out)
    made = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, ".train.lock")
    while True:
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise BlockingIOError(f"--out {out} is in use by another training run (process {holder}); wait for it "
                                  f"to finish, or train into another directory") from None
        if _same_file(lock, path):
            break
        lock.close()  # (the run that held it ended and removed it meanwhile: this one locked a file no one sees)
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()

    def let_go():
        """Remove the lock file (while still holding it) and unlock: a finished or interrupted run leaves no
        .train.lock behind, nor, if it failed before writing anything, the --out it made."""
        try:
            os.unlink(path)
            if made and not os.listdir(out):
                os.rmdir(out)
        except OSError:  # (--out removed or made read-only meanwhile: the lock goes with the process anyway)
            pass
        lock.close()
    return let_go


def _same_file(opened, path) -> bool:
    """Whether ``path`` still names the file ``opened`` (a run that ends removes its lock file: one that opened it
    just before then holds a lock on a file no longer there, and must open the new one)."""
    try:
        here, there = os.fstat(opened.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _saved_step(out) -> str:
    """What --max-steps must exceed, from trainer_state.json, for the message above."""
    from .trainer import read_state

    try:
        return f"N above its step {read_state(out)['step']}"
    except (OSError, ValueError):
        return "N above the step it reached"


# The flags that shape a new model: a checkpoint (--model, --resume) has its own shape
SHAPE_FLAGS = ("n_layer", "n_head", "n_embd", "n_positions")


def _set_dropout(config, p):
    """HF's three dropout probabilities (residual, embedding, attention), all ``p``."""
    config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = p


def run(args, parser) -> int:
    from .. import GPT2Config, GPT2LMHeadModel, backend
    from ..tokenizer import AutoTokenizer, GPT2Tokenizer
    from .data import load_tokens, prepare_tokens
    from .trainer import Trainer, TrainingArguments, check_prompt, read_state

    backend.say_fallback()  # (held while the command started)
    if args.threads is not None:
        backend.set_num_threads(args.threads)
        say_threads_do_nothing(args.threads)
    if args.resume and args.model:
        parser.error("--resume continues the run in --out; --model starts a new one from a checkpoint: pick one")
    shaped = [f"--{name.replace('_', '-')}" for name in SHAPE_FLAGS if name in args.explicit]
    if shaped and (args.model or args.resume):
        parser.error(f"{', '.join(shaped)} {'shape' if len(shaped) > 1 else 'shapes'} a new model; "
                     f"{'--model' if args.model else '--resume'} trains a checkpoint, which has its own (drop "
                     f"{'it' if len(shaped) == 1 else 'them'})")
    for flag in ("out", "data"):
        if getattr(args, flag) == "":
            parser.error(f"--{flag} is empty: give {'a directory' if flag == 'out' else 'a text file or a folder'}")
    if "pattern" in args.explicit and args.data is not None and os.path.isfile(args.data):
        parser.error(f"--pattern picks files in a folder, but --data {args.data} is a file: drop --pattern, or give "
                     f"the folder")
    if args.n_embd % args.n_head:
        parser.error(f"--n-embd {args.n_embd} must be a multiple of --n-head {args.n_head}")
    if args.min_lr is not None and args.min_lr > args.lr:
        parser.error(f"--min-lr {args.min_lr:g} is above --lr {args.lr:g}: the learning rate decays from --lr down to "
                     f"--min-lr (default --lr / 10)")
    from ..cli import UsageError, _utf8_argument

    try:  # (a C locale without UTF-8 mode keeps its bytes as surrogates, which cannot be tokenized)
        args.prompt = _utf8_argument(args.prompt, "--prompt")
    except UsageError as e:
        parser.error(str(e))
    for flag, problem in backend._environment_problems.items():  # the first step would raise it
        raise ValueError(f"{problem}" + (" (or override it with --threads)" if flag == "threads" else ""))
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise NotADirectoryError(f"--out {args.out} is a file; checkpoints go in a directory: give a new or empty one")
    if not args.resume:
        refuse_to_overwrite(args.out)
    data_dir = os.path.join(args.out, "data")
    if args.resume:
        if not os.path.isdir(args.out):
            raise FileNotFoundError(f"--resume: there is no folder {args.out} (so no trainer_state.json): no run to "
                                    f"continue; to start a new run there, drop --resume")
        if not os.path.exists(os.path.join(args.out, "trainer_state.json")):
            model_there = os.path.isfile(os.path.join(args.out, "config.json"))  # (a model, not a training run)
            raise FileNotFoundError(f"--resume: {args.out} holds no trainer_state.json, so no run to continue" + (
                f"; it holds a model: to fine-tune it, pass --model {args.out} and a new or empty --out directory"
                if model_there else ""))
        saved = read_state(args.out)["args"]
        for name, value in saved.items():  # the saved run's settings, unless given again now
            if name not in args.explicit and name not in ("out_dir", "max_steps") and hasattr(args, name):
                setattr(args, name, value)
        model = GPT2LMHeadModel.from_pretrained(args.out)
        tokenizer = AutoTokenizer.from_pretrained(args.out)
        if "dropout" in args.explicit:  # (else the saved model's)
            _set_dropout(model.config, args.dropout)
    elif args.model:
        from ..cli import _load_tokenizer  # (a checkpoint without tokenizer files: GPT-2's, as -m MODEL does)

        model = GPT2LMHeadModel.from_pretrained(args.model)
        tokenizer = _load_tokenizer(args.model)
        if len(tokenizer) > model.config.vocab_size:  # (its ids would be outside the model's token table)
            raise ValueError(f"--model {args.model} has vocab_size {model.config.vocab_size}, but the tokenizer "
                             f"has {len(tokenizer)} tokens: the text's token ids would not fit the model's token "
                             f"table; give a checkpoint with a tokenizer of at most {model.config.vocab_size} tokens "
                             f"among its files (vocab.json + merges.txt, or tokenizer.json)")
        if "dropout" in args.explicit:  # (else the checkpoint's, as transformers' Trainer keeps them)
            _set_dropout(model.config, args.dropout)
    else:
        tokenizer = GPT2Tokenizer.from_pretrained("gpt2")  # the bundled vocabulary: offline
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=args.n_positions or args.seq_len,
                            n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        _set_dropout(config, args.dropout)
        model = GPT2LMHeadModel(config, seed=args.seed)
    if args.seq_len > model.config.n_positions:  # (before tokenizing: a large corpus takes a while)
        raise ValueError(f"--seq-len {args.seq_len} is longer than the model's n_positions "
                         f"{model.config.n_positions}: its sequences hold at most that many tokens")
    # (before tokenizing, as the --seq-len check above)
    check_prompt(tokenizer, args, model.config.n_positions, flags=("--prompt", "--sample-tokens 0"))
    if args.data is None and not os.path.exists(os.path.join(data_dir, "train.bin")):
        parser.error(f"--data is needed: {data_dir} holds no tokenized data yet")
    args.let_go_of_out = hold_out_dir(args.out)  # (nothing was written to --out before it; main() lets go)
    if not args.resume:  # (again, now that no other run can write there: one may have saved since the first look)
        refuse_to_overwrite(args.out)
    if args.data is not None:
        tokens = prepare_tokens(args.data, data_dir, tokenizer, val_fraction=args.val_fraction, pattern=args.pattern)
    else:
        tokens = load_tokens(data_dir)
    train_args = TrainingArguments(
        out_dir=args.out, max_steps=args.max_steps, batch_size=args.batch_size, seq_len=args.seq_len,
        grad_accum=args.grad_accum, lr=args.lr, min_lr=args.min_lr, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, eval_interval=args.eval_interval,
        eval_batches=args.eval_batches, sample_tokens=args.sample_tokens, prompt=args.prompt,
        save_interval=args.save_interval, log_interval=args.log_interval, seed=args.seed)
    trainer = args.trainer = Trainer(model, tokenizer, tokens, train_args)  # (main() says what it saved)
    if args.resume:
        trainer.load_state(args.out)
        if trainer.step >= args.max_steps:
            print(f"{args.out} is already at step {trainer.step}; raise --max-steps to train further")
            return 0
    n = model.num_parameters()
    print(f"training {n:,} parameters ({model.config.n_layer} layers, {model.config.n_embd} wide) on "
          f"{len(tokens['train']):,} tokens, {args.batch_size * args.seq_len * args.grad_accum:,} tokens per step")
    trainer.train()
    if trainer.step < args.max_steps and trainer.saved_step is None:  # Ctrl-C before the first step ended
        print(f"stopped before the first step: nothing was saved to {args.out}")
        return 130
    if trainer.step < args.max_steps:  # stopped by Ctrl-C, after saving
        print(f"stopped at step {trainer.step} of {args.max_steps}, saved to {args.out}; continue with "
              f"python -m minigpt2 train --out {args.out} --resume --max-steps {args.max_steps}")
        return 130
    print(f"saved to {args.out}: python -m minigpt2 -m {args.out} \"{args.prompt or 'Hello'}\"")
    return 0
