"""The training loop: batches -> loss_and_grad -> clip -> AdamW, with evaluation, samples and checkpoints.

    from minigpt2.training import Trainer, TrainingArguments
    trainer = Trainer(model, tokenizer, tokens, TrainingArguments(out_dir="out", max_steps=200))
    trainer.train()          # Ctrl-C stops after the current step and saves

One step: ``grad_accum`` micro-batches of ``batch_size`` random windows of ``seq_len`` tokens; their
gradients averaged; the global norm clipped to ``grad_clip``; an AdamW step at the learning rate of the
schedule (linear warmup, cosine decay to ``min_lr``). Every ``eval_interval`` steps: the mean loss on
``eval_batches`` fixed validation batches, and a sample. Checkpoints (``out_dir``): config.json +
model.safetensors (HF format: transformers and ``python -m minigpt2 -m DIR`` load them), the tokenizer,
optimizer.safetensors (AdamW's moments) and trainer_state.json (the step, the arguments, the losses).
A save is all or nothing: every file is written into out_dir/.checkpoint.partial, then renamed into place,
trainer_state.json last (with a fingerprint of the weights, checked on resume), so a save that fails (a full disk)
leaves the earlier checkpoint whole, and a resume refuses weights from another save; Ctrl-C during a save waits
for it. A loss or gradient that is not finite stops the run before the update,
and weights or a validation loss that are not finite (a learning rate far too high) stop it before the next save,
with one line: inf or NaN weights are never saved. The batches and dropout masks of step s
come from a generator seeded with (seed, s), so a resumed run continues exactly as it would have.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np

from .. import backend, checkpoint
from .data import random_batch
from .grad import model_loss_and_grad
from .optim import AdamW, clip_grad_norm, lr_at
from ..checks import is_int, is_number

__all__ = ["Trainer", "TrainingArguments", "check_prompt", "check_tokens", "make_trainable", "read_state",
           "weights_fingerprint"]

STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
PARTIAL_NAME = ".checkpoint.partial"  # the folder a save writes into before renaming its files into place
FLOAT32_MAX = float(np.finfo(np.float32).max)  # lr, min_lr and weight_decay stay below it


@dataclasses.dataclass
class TrainingArguments:
    """How to train (the CLI's flags have the same names with dashes). Not transformers' TrainingArguments: a
    step-based run with nanoGPT's defaults. transformers' names for the same settings: output_dir (out_dir),
    learning_rate (lr), per_device_train_batch_size (batch_size), gradient_accumulation_steps (grad_accum),
    max_grad_norm (grad_clip), adam_beta1/adam_beta2 (beta1/beta2), logging_steps (log_interval), eval_steps
    (eval_interval), save_steps (save_interval); max_steps, warmup_steps, weight_decay and seed are the same."""

    out_dir: str = "out"
    max_steps: int = 1000
    batch_size: int = 8
    seq_len: int = 128
    grad_accum: int = 1
    lr: float = 6e-4
    min_lr: float = None  # default lr / 10
    warmup_steps: int = None  # default max_steps // 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 turns clipping off
    eval_interval: int = 100
    eval_batches: int = 8
    sample_tokens: int = 30  # 0: no samples
    prompt: str = ""
    save_interval: int = 0  # 0: save only at evaluations and at the end
    log_interval: int = 10
    seed: int = 0

    def check(self):
        """A clear error for a value that cannot work."""
        positive = ("max_steps", "batch_size", "seq_len", "grad_accum", "eval_interval", "eval_batches",
                    "log_interval")
        for name in positive:
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer (1 or more, no upper limit), got {value!r}")
        for name in ("sample_tokens", "save_interval", "seed"):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (no upper limit), got {value!r}")
        if self.seq_len < 2:  # (a window of one token has no next token to predict: the loss would be NaN)
            raise ValueError(f"seq_len must be at least 2 (each token is trained to predict the next one in its "
                             f"window), got {self.seq_len}")
        if self.warmup_steps is not None and (not is_int(self.warmup_steps) or self.warmup_steps < 0):
            raise ValueError(f"warmup_steps must be an integer >= 0 (no upper limit), got {self.warmup_steps!r}")
        for name in ("lr", "weight_decay", "grad_clip") + (("min_lr",) if self.min_lr is not None else ()):
            value = getattr(self, name)
            if not is_number(value) or not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                below = (" (no upper limit)" if name == "grad_clip" else
                         f" and below {FLOAT32_MAX:.4g}, float32's largest")
                raise ValueError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}{below}, got "
                                 f"{value!r}")
            if name != "grad_clip" and value >= FLOAT32_MAX:  # (multiplies float32 weights: inf from the first step)
                raise ValueError(f"{name} must be below {FLOAT32_MAX:.4g}, float32's largest value (the weights are "
                                 f"float32), got {value!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (is_number(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        if not isinstance(self.prompt, str):
            raise ValueError(f"prompt must be a string, got {self.prompt!r}")
        return self


def make_trainable(model):
    """Give the model writable float32 copies of its weights (a loaded checkpoint is memory-mapped and
    read-only), in place in its nested dict, so every view of the parameters sees the updates."""
    def walk(node):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, (dict, list)):
                walk(value)
            else:
                if not (isinstance(value, np.ndarray) and value.dtype == np.float32):
                    widen = getattr(value, "widen", None)  # a compressed weight format
                    if widen is None and not isinstance(value, np.ndarray):
                        raise TypeError(f"cannot train weights of type {type(value).__name__}")
                    value = widen() if widen is not None else value
                node[key] = np.array(value, dtype=np.float32, order="C")  # a copy, writable
    walk(model.params)
    return model


# transformers.TrainingArguments' names for the same settings: an HF user's keyword gets ours in the error
HF_NAMES = {"output_dir": "out_dir", "learning_rate": "lr", "per_device_train_batch_size": "batch_size",
            "gradient_accumulation_steps": "grad_accum", "max_grad_norm": "grad_clip", "adam_beta1": "beta1",
            "adam_beta2": "beta2", "logging_steps": "log_interval", "eval_steps": "eval_interval",
            "save_steps": "save_interval"}
_dataclass_init = TrainingArguments.__init__


@functools.wraps(_dataclass_init)  # (the dataclass's signature, for help() and inspect)
def _init_naming_hf_keywords(self, *args, **kwargs):
    hf = [f"{name} -> {ours}" for name, ours in HF_NAMES.items() if name in kwargs]
    if hf:
        raise TypeError(f"minigpt2's TrainingArguments is a small one of its own, not transformers'; its names for "
                        f"these: {', '.join(hf)} (all of them: minigpt2.training.TrainingArguments.__doc__)")
    _dataclass_init(self, *args, **kwargs)


TrainingArguments.__init__ = _init_naming_hf_keywords


def check_tokens(tokens, vocab_size) -> dict:
    """``tokens`` as the Trainer reads it: {"train": ids, "val": ids}, each a 1-d sequence of token ids below
    ``vocab_size`` (prepare_tokens returns one). A clear error for anything else, before the first step."""
    if not (isinstance(tokens, dict) and "train" in tokens and "val" in tokens):
        got = f"a dict with keys {sorted(tokens)}" if isinstance(tokens, dict) else type(tokens).__name__
        raise ValueError(f"tokens must be a dict {{'train': ids, 'val': ids}} of 1-d token id arrays (as "
                         f"prepare_tokens returns), got {got}")
    out = {}
    for name in ("train", "val"):
        ids = tokens[name] if isinstance(tokens[name], np.ndarray) else np.asarray(tokens[name])
        if ids.ndim != 1 or not (ids.dtype.kind in "iu" or ids.size == 0):
            raise ValueError(f"tokens[{name!r}] must be a 1-d array of integer token ids, got shape {ids.shape} "
                             f"of {ids.dtype}")
        if ids.size and not 0 <= int(ids.min()) <= int(ids.max()) < vocab_size:
            bad = int(ids.max()) if int(ids.max()) >= vocab_size else int(ids.min())
            raise ValueError(f"tokens[{name!r}] holds the token id {bad}, but the model's vocab_size is {vocab_size} "
                             f"(ids 0 to {vocab_size - 1}): the data was tokenized with another tokenizer than the "
                             f"model's")
        out[name] = ids
    return out


def check_prompt(tokenizer, args, n_positions, *, flags=("prompt", "sample_tokens=0")):
    """A ValueError when the samples' prompt leaves the model no position to sample into (every sample would be
    empty, silently), as the generator refuses such a prompt. ``flags``: the settings' names in the message."""
    if not args.sample_tokens or tokenizer is None:
        return
    n = len(tokenizer.encode(args.prompt, verbose=False) or [tokenizer.eos_token_id])
    if n >= n_positions:
        raise ValueError(f"the samples' {flags[0]} holds {n} tokens, but the model has {n_positions} positions: no "
                         f"room left to sample; shorten {flags[0]}, or pass {flags[1]} for no samples")


def unique_params(model) -> dict:
    """state_dict() without second names for one array (lm_head.weight is wte): each matrix updated once."""
    seen, out = set(), {}
    for name, array in model.state_dict().items():
        if id(array) not in seen:
            seen.add(id(array))
            out[name] = array
    return out


def weights_fingerprint(params: dict) -> str:
    """A hash of every weight (names, shapes and bytes): trainer_state.json keeps the one of the weights saved
    beside it, so a resume notices model.safetensors from another save (one cut short) or another model."""
    digest = hashlib.blake2b(digest_size=16)
    for name, array in params.items():
        digest.update(f"{name}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array, np.float32).data)
    return digest.hexdigest()


def read_state(directory) -> dict:
    """trainer_state.json of a checkpoint written by Trainer.save, checked: a ValueError naming the file (not a
    KeyError or a JSON parser's message) when it is damaged."""
    path = os.path.join(directory, STATE_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory} has no {STATE_NAME}: it is not a checkpoint written by training, "
                                f"so there is nothing to resume (use --model {directory} to fine-tune it)")
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is damaged (not JSON: {e}); the run cannot be resumed from it") from None
    problem = None
    if not isinstance(state, dict):
        problem = f"it holds a JSON {type(state).__name__}, not an object"
    elif not (is_int(state.get("step")) and state["step"] >= 0):
        problem = f"its step is {state.get('step')!r}, not an integer >= 0"
    elif not isinstance(state.get("args"), dict):
        problem = "it has no \"args\" object (the run's settings)"
    elif not (isinstance(state.get("history"), dict) and all(isinstance(state["history"].get(k), list)
                                                             for k in ("train", "val"))):
        problem = "it has no \"history\" with \"train\" and \"val\" lists"
    if problem:
        raise ValueError(f"{path} is damaged: {problem}; the run cannot be resumed from it")
    return state


def _replace(new, old, aside):
    """os.replace(new, old), also for a folder (a tokenizer's additional_chat_templates/) over the folder of the
    last save, which os.replace refuses while it holds files: that one is renamed to ``aside``, then removed."""
    if os.path.isdir(new) and os.path.isdir(old) and not os.path.islink(old):
        os.replace(old, aside)
        os.replace(new, old)
        shutil.rmtree(aside)
    else:
        os.replace(new, old)


class Trainer:
    """Trains a GPT2LMHeadModel on token arrays ``tokens = {"train": ..., "val": ...}``."""

    def __init__(self, model, tokenizer, tokens, args: TrainingArguments, *, log=None):
        self.args = args.check()
        if args.seq_len > model.config.n_positions:
            raise ValueError(f"seq_len {args.seq_len} is longer than the model's n_positions "
                             f"{model.config.n_positions}")
        if tokenizer is None and args.sample_tokens:
            raise ValueError("the samples need a tokenizer (tokenizer is None): pass one, or sample_tokens=0")
        check_prompt(tokenizer, args, model.config.n_positions)
        self.tokens = check_tokens(tokens, model.config.vocab_size)
        if len(self.tokens["train"]) < args.seq_len:  # (else the first batch fails, after a sample was printed)
            raise ValueError(f"the training data holds {len(self.tokens['train'])} tokens, fewer than one sequence "
                             f"of seq_len {args.seq_len}; use more text, or a shorter --seq-len")
        self.log = log or (lambda *a: print(*a, flush=True))
        if len(self.tokens["val"]) < args.seq_len:  # (evaluate() then reads the training data: say so once)
            self.log(f"the validation data holds {len(self.tokens['val'])} tokens, fewer than one sequence of seq_len "
                     f"{args.seq_len}: the validation loss is measured on the training data (use more text, or a "
                     f"larger val_fraction)")
        fmt = getattr(model, "dtype", "float32")
        if str(fmt) != "float32":  # (16-bit or int8: the update of one step is far below their resolution)
            self.log(f"the model's weights are {fmt}: they are widened to float32, in place, to train (the model "
                     f"is float32 from now on, and its checkpoints are saved in float32)")
        self.model, self.tokenizer = make_trainable(model), tokenizer
        self.params = unique_params(model)  # the model's own arrays: AdamW updates them in place
        self.optimizer = AdamW(self.params, lr=args.lr, betas=(args.beta1, args.beta2), weight_decay=args.weight_decay)
        self.step = 0
        self.history = {"train": [], "val": []}  # [step, loss] pairs
        self._stop = self._saving = False
        self.saved_step = None  # the step of the checkpoint in out_dir, once saved or resumed
        warmup = args.max_steps // 20 if args.warmup_steps is None else args.warmup_steps
        self.schedule = dict(max_lr=args.lr, warmup_steps=warmup, max_steps=args.max_steps, min_lr=args.min_lr)
        if warmup > args.max_steps:  # (allowed, as transformers' schedulers allow it, but said: lr is never reached)
            self.log(f"warmup_steps {warmup} is more than max_steps {args.max_steps}: the learning rate climbs for the "
                     f"whole run, to {lr_at(args.max_steps - 1, **self.schedule):.3g} at the last step, never reaching "
                     f"lr {args.lr:g} (as in transformers' schedulers; warmup_steps <= max_steps reach it)")
        held = self.eval_batch_count()
        if held < args.eval_batches:  # (more random batches would only read the same windows again, for long)
            data = "validation" if self._eval_data() is self.tokens["val"] else "training"
            self.log(f"eval_batches {args.eval_batches} is more than the {data} data holds ({len(self._eval_data()):,} "
                     f"tokens: {held:,} batches of {args.batch_size} x {args.seq_len}): each evaluation reads {held:,}")

    # -- one step ---------------------------------------------------------------------------------------
    def train_step(self):
        """One optimizer step; returns (mean loss over the micro-batches, gradient norm, learning rate)."""
        a = self.args
        rng = np.random.default_rng([a.seed, self.step])  # this step's batches and dropout masks
        self.model.train()
        # (same_bits: the gradients' long sums in the same order however busy the cores; errstate: a diverging run
        # overflows, which is checked below and said in one line)
        with backend.same_bits(), np.errstate(all="ignore"):
            total, grads = self.mean_gradients(rng)
            norm = clip_grad_norm(grads, a.grad_clip if a.grad_clip > 0 else math.inf)  # (inf: only measured)
        lr = lr_at(self.step, **self.schedule)
        if not (math.isfinite(total) and math.isfinite(norm)):  # an update would make every weight NaN
            self._diverged(f"the loss is {total:.4g} and the gradient norm {norm:.4g}; the weights stay at step "
                           f"{self.step}")
        self.optimizer.step(grads, lr=lr)
        if not all(np.isfinite(p).all() for p in self.params.values()):  # (a huge lr: the update itself overflows)
            self._diverged("its update overflowed float32 (weights of inf or NaN, unusable)")
        self.step += 1
        return total, norm, lr

    def _diverged(self, what, step=None):
        """The FloatingPointError that stops a diverged run, in one line: which step, what is not finite, what
        out_dir keeps, what to do."""
        a = self.args
        kept = "nothing was saved" if self.saved_step is None else \
            f"{a.out_dir} keeps the checkpoint of step {self.saved_step}"
        raise FloatingPointError(f"training diverged at step {self.step + 1 if step is None else step}: {what}; "
                                 f"{kept}. Lower the learning rate (lr {a.lr:.3g}) or warm up longer")

    def mean_gradients(self, rng):
        """The loss and the gradients averaged over ``grad_accum`` micro-batches of ``batch_size`` windows drawn
        from ``rng`` (keyed like self.params). Every window counts the same number of labels, so this is the
        gradient of the mean loss over all the rows."""
        a = self.args
        total, grads = 0.0, None
        for _ in range(a.grad_accum):
            ids = random_batch(self.tokens["train"], a.batch_size, a.seq_len, rng)
            loss, g = model_loss_and_grad(self.model, ids, labels=ids, rng=rng)  # (what model.loss_and_grad calls)
            g = {k: g[k] for k in self.params}
            total += float(loss) / a.grad_accum
            if grads is None:
                grads = g
            else:
                for k in grads:
                    grads[k] += g[k]
        if a.grad_accum > 1:
            for g in grads.values():
                g *= np.float32(1.0 / a.grad_accum)
        return total, grads

    def evaluate(self, model=None):
        """The mean loss over ``eval_batches`` validation batches (the same batches every time), no dropout;
        of the model being trained, or of ``model`` (another model with the same vocabulary, for comparison)."""
        a = self.args
        model = self.model if model is None else model
        data = self._eval_data()
        rng = np.random.default_rng([a.seed, 2**31])
        model.eval()
        losses = []
        for _ in range(self.eval_batch_count()):
            ids = random_batch(data, a.batch_size, a.seq_len, rng)
            losses.append(float(model(ids, labels=ids, use_cache=False).loss))
        return float(np.mean(losses))

    def _eval_data(self):
        """The validation tokens, or the training tokens when they are shorter than one sequence."""
        val = self.tokens["val"]
        return val if len(val) >= self.args.seq_len else self.tokens["train"]

    def eval_batch_count(self) -> int:
        """eval_batches, capped at the batches the evaluated data holds: its windows of seq_len tokens, batch_size
        at a time (transformers' evaluate() reads its eval set once; more random batches read the same windows
        again)."""
        windows = len(self._eval_data()) // self.args.seq_len
        return min(self.args.eval_batches, max(1, -(-windows // self.args.batch_size)))

    def sample(self, max_new_tokens=None, seed=0):
        """A continuation of ``args.prompt`` (top-k 40 sampling, seeded), as text."""
        n = self.args.sample_tokens if max_new_tokens is None else max_new_tokens
        tok = self.tokenizer
        ids = tok.encode(self.args.prompt) or [tok.eos_token_id]
        n = min(n, self.model.config.n_positions - len(ids))  # (a small model: as many as its positions hold)
        if n <= 0:
            return ""
        self.model.eval()
        out = self.model.generate(np.array([ids]), max_new_tokens=n, do_sample=True, top_k=40, seed=seed,
                                  pad_token_id=tok.eos_token_id)
        return tok.decode(out[0][len(ids):].tolist())

    # -- the loop ---------------------------------------------------------------------------------------
    def train(self):
        """Run until ``max_steps``; Ctrl-C (SIGINT) finishes the current step, saves (unless no step was taken
        since the last save) and returns."""
        a = self.args
        tokens_per_step = a.batch_size * a.seq_len * a.grad_accum
        previous = self._catch_interrupt()
        try:
            start, start_step, last_log = time.perf_counter(), self.step, time.perf_counter()
            if self.step == 0 and a.sample_tokens:
                self.log(f"sample before training: {self.sample()!r}")
            while self.step < a.max_steps and not self._stop:
                loss, norm, lr = self.train_step()
                self.history["train"].append([self.step, loss])
                if self.step % a.log_interval == 0 or self.step == a.max_steps or self._stop:
                    now = time.perf_counter()
                    rate = tokens_per_step * (self.step - start_step) / (now - start)
                    self.log(self._progress(loss, norm, lr, rate, now - start, self.step - start_step))
                    last_log = now
                evaluate = self.step % a.eval_interval == 0 or self.step == a.max_steps
                if evaluate:
                    val = self.evaluate()
                    if not math.isfinite(val):  # (finite but huge weights: their logits overflow; never saved)
                        self._diverged(f"the validation loss is {val:.4g}", step=self.step)
                    self.history["val"].append([self.step, val])
                    self.log(f"step {self.step}: validation loss {val:.4f}")
                    if a.sample_tokens:
                        self.log(f"sample: {self.sample()!r}")
                if evaluate or (a.save_interval and self.step % a.save_interval == 0):
                    self.save()
            if self._stop and self.step not in (0, self.saved_step):  # (a step to keep, not saved yet)
                self.log(f"interrupted: saving step {self.step} to {a.out_dir}")
                self.save()
        finally:
            self._restore_interrupt(previous)
            del last_log
        return self.history

    def _progress(self, loss, norm, lr, rate, elapsed, steps_taken):
        """The log line; the time left from the pace of the ``steps_taken`` steps of this call (a resumed run's
        earlier steps took no part of ``elapsed``)."""
        a = self.args
        width = 20
        done = int(width * self.step / a.max_steps)
        left = (a.max_steps - self.step) * elapsed / max(1, steps_taken)
        return (f"[{'#' * done}{'.' * (width - done)}] step {self.step}/{a.max_steps} | loss {loss:.4f} | "
                f"lr {lr:.2e} | grad norm {norm:.2f} | {rate:,.0f} tok/s | {elapsed:.0f}s, ~{left:.0f}s left")

    def _catch_interrupt(self):
        if threading.current_thread() is not threading.main_thread():
            return None  # signals reach only the main thread; Ctrl-C then interrupts as usual

        def handler(signum, frame):
            if self._saving:  # never stop half-way through a checkpoint: it stops right after
                self._stop = True
                print("\nCtrl-C: saving the checkpoint, then stopping", file=sys.stderr, flush=True)
                return
            if self._stop:  # a second Ctrl-C: stop now (the last checkpoint stays)
                raise KeyboardInterrupt
            self._stop = True
            print("\nCtrl-C: finishing this step, then saving (press again to stop without saving)",
                  file=sys.stderr, flush=True)

        return signal.signal(signal.SIGINT, handler)

    @staticmethod
    def _restore_interrupt(previous):
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    # -- checkpoints ------------------------------------------------------------------------------------
    def save(self):
        """Write the checkpoint to out_dir, all of it or nothing: every file is written first into a folder of
        out_dir (PARTIAL_NAME), then each is renamed into place, trainer_state.json last (with a fingerprint of
        the weights it goes with). A save that fails (a full disk) removes what it wrote and leaves the earlier
        checkpoint as it was. Ctrl-C waits until it is written."""
        out = self.args.out_dir
        broken = [name for name, p in self.params.items() if not np.isfinite(p).all()]
        if broken:  # (train_step stops before this; a caller's own loop may not)
            raise FloatingPointError(f"not saving to {out}: {broken[0]} holds inf or NaN ({len(broken)} of "
                                     f"{len(self.params)} weights); the run diverged")
        partial = os.path.join(out, PARTIAL_NAME)  # (in out_dir: on its disk, so a rename moves no bytes)
        shutil.rmtree(partial, ignore_errors=True)  # (left by a run that was killed while saving)
        self._saving = True
        try:
            try:
                self._write_checkpoint(partial)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            names = sorted(os.listdir(partial), key=lambda name: name == STATE_NAME)  # the state last
            aside = os.path.join(partial, ".replaced")
            for name in names:
                _replace(os.path.join(partial, name), os.path.join(out, name), aside)
            os.rmdir(partial)
            self.saved_step = self.step
        finally:
            self._saving = False

    def _write_checkpoint(self, directory):
        """Every file of a checkpoint, into ``directory``: the model (config.json, model.safetensors,
        generation_config.json), the tokenizer, AdamW's moments, trainer_state.json."""
        self.model.save_pretrained(directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)
        checkpoint.write_safetensors(os.path.join(directory, OPTIMIZER_NAME),
                                     {k: v for k, v in self.optimizer.state_dict().items() if k != "t"},
                                     metadata={"step": str(self.optimizer.t)})
        state = {"step": self.step, "weights_blake2b": weights_fingerprint(self.params),
                 "args": dataclasses.asdict(self.args), "history": self.history}
        with open(os.path.join(directory, STATE_NAME), "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1)

    def load_state(self, directory):
        """Resume: the optimizer's moments and the step of a checkpoint written by save() (the model's
        weights are loaded by the caller, from the same directory)."""
        state = read_state(directory)
        opt_path = os.path.join(directory, OPTIMIZER_NAME)
        if not os.path.exists(opt_path):
            raise FileNotFoundError(f"{directory} has {STATE_NAME} but no {OPTIMIZER_NAME} (AdamW's moments): the "
                                    f"run cannot be resumed exactly; fine-tune its weights in a new run instead "
                                    f"(--model {directory} --out NEW_DIR)")
        opt = checkpoint.read_safetensors(opt_path)
        from safetensors import safe_open

        with safe_open(opt_path, framework="numpy") as f:
            saved_step = int((f.metadata() or {}).get("step", -1))
        if saved_step != state["step"]:
            raise ValueError(f"{directory}: the optimizer state is from step {saved_step} but trainer_state.json "
                             f"from step {state['step']} (an interrupted save?); cannot resume exactly")
        saved_weights = state.get("weights_blake2b")  # (absent from checkpoints written before it was kept)
        if saved_weights is not None and saved_weights != weights_fingerprint(self.params):
            raise ValueError(f"{directory}: the model's weights are not those trainer_state.json was saved with "
                             f"(step {state['step']}): a save cut short, or another model; cannot resume exactly")
        try:
            self.optimizer.load_state_dict({**opt, "t": saved_step})
        except ValueError as e:  # (another model's moments: its weights passed the fingerprint, or had none)
            raise ValueError(f"{opt_path} does not fit the model in {directory} ({e}): it is another model's; "
                             f"cannot resume") from None
        self.step = self.saved_step = state["step"]
        self.history = state["history"]
        return state
