"""Training as a workshop learner and a careful CLI user meet it (helper pass 10).

1. --lr (and --min-lr, --weight-decay) at or beyond float32's largest value is a usage error naming the range
   (it printed NumPy's "overflow encountered" warnings, then "diverged").
2. A run that diverges says so in one line, with no NumPy warning, and never saves inf or NaN weights: AdamW refuses
   a step size float32 cannot hold as torch.optim.AdamW refuses it (the expectation is torch's, computed here), an
   update that overflows the weights stops the run before any save, and so does a validation loss that is not finite;
   Trainer.save refuses such weights.
3. Ctrl-C: a second one during a step, or one before the first step, leaves --out as it was and says what it keeps;
   one while the training code loads is "[interrupted]", not a traceback; an interrupted rewrite of the token files
   is never taken for a finished one.
4. Options that cannot work: an empty --out or --data, --pattern beside a --data file, a --prompt that fills the
   model's positions (every sample was ''), a --n-positions memory cannot hold (the hint now names it); --resume
   from a folder holding a model (not a run) names --model, from a run holding another model's optimizer state
   names that file.
5. The public backward functions on odd shapes (batch 1, one token, one head, a head of one dimension, n_embd far
   from a multiple of 64, padding, labels of -100, dropout of 1) against torch autograd.

Tolerances of 5: torch computes the truth in float64 from the same float32 inputs (exact to ~1e-16); ours runs in
float32. The bound is derived from float32's rounding, element by element: the class Bounded carries, beside each
value, a first-order bound on the rounding error of the float32 computation that made it (Higham, "Accuracy and
Stability of Numerical Algorithms", ch. 3: u |result| per operation, gamma_K = K u / (1 - K u) times the sum of
|terms| for a sum or product of K terms, 2u for exp and tanh, and the operands' errors carried through each
operation's derivative), u = 2^-24. Each test writes the backward's formula with these operations in backward.py's
order and allows twice the bound (the second-order terms). Observed: at most 0.45 of the allowance. Each broken
formula tried exceeds it: layer norm's mean term, softmax's sum term, gelu_new's factor 3, the embedding's
accumulation, dropout's scale, the attention scale, and a 1e-4 relative error in the head's dW (the causal zeroing
cannot be caught: the future keys' probabilities are already 0).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import minigpt2
from minigpt2 import backward as bw
from minigpt2 import checkpoint, layers
from test_training import GRAD_RTOL, NO_DROPOUT, corpus, tiny_trainer  # noqa: F401 (corpus: a fixture)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOAT32_MAX = float(np.finfo(np.float32).max)
TRAIN = "python -m minigpt2 train: error: "
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--seq-len", "8", "--batch-size", "2",
        "--eval-batches", "1", "--sample-tokens", "0", "--log-interval", "1"]


def train(*args, cwd=None):
    """python -m minigpt2 train ARGS in its own process, as a user runs it (its stderr as the user sees it)."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONWARNINGS": "default"}  # (NumPy's RuntimeWarnings are shown as a plain run shows them)
    return subprocess.run([sys.executable, "-m", "minigpt2", "train", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env, stdin=subprocess.DEVNULL, cwd=cwd)


def only_line(stderr):
    """stderr is one line (no warning before it, no traceback): that line."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr and "encountered" not in stderr, stderr
    return lines[0]


def cli(*argv):
    from minigpt2.training.cli import main

    return main([str(a) for a in argv])


# -- 1. the learning rate's range -------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag,value", [("--lr", "1e39"), ("--lr", repr(FLOAT32_MAX)), ("--lr", "3.5e38"),
                                        ("--min-lr", "1e39"), ("--weight-decay", "1e39")])
def test_a_rate_float32_cannot_hold_is_a_usage_error_naming_the_range(tmp_path, corpus, flag, value):
    """At or above float32's largest value (np.finfo, the bound itself refused): exit 2 before anything is written,
    the message names the flag, the value and the range, and no NumPy warning comes first."""
    extra = ["--lr", "1e39"] if flag == "--min-lr" else []  # (--min-lr alone above --lr is another error)
    done = train("--data", corpus, "--out", tmp_path / "out", "--max-steps", "2", *TINY, flag, value, *extra)
    assert done.returncode == 2 and "encountered" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(TRAIN + f"argument {flag}: {float(value)!r} is not allowed (must be finite and ")
    assert f"< {FLOAT32_MAX!r}, float32's largest value" in line, line
    assert not (tmp_path / "out").exists()


def test_training_arguments_refuse_a_rate_float32_cannot_hold():
    from minigpt2.training import TrainingArguments

    below = float(np.nextafter(np.float32(FLOAT32_MAX), np.float32(0)))
    for name in ("lr", "min_lr", "weight_decay"):
        TrainingArguments(**{name: below, "lr": below}).check()  # (the largest float32 below it: allowed)
        with pytest.raises(ValueError, match=f"{name} must be below .*float32's largest value"):
            TrainingArguments(**{"lr": 1e-3, name: FLOAT32_MAX}).check()


# -- 2. divergence: one line, nothing non-finite saved ----------------------------------------------------------------

@pytest.mark.parametrize("lr", [3e37, 3.5e37, 1e38, 1e39])
@pytest.mark.parametrize("beta1", [0.9, 0.0])
def test_adamw_refuses_the_step_sizes_torch_refuses_and_warns_of_nothing(lr, beta1):
    """torch.optim.AdamW raises when lr / (1 - beta1^t) does not fit in float32, before changing a weight; ours does
    the same (ValueError), for the same settings. An update that overflows (decay 20 x lr) gives inf as torch's
    does, with no RuntimeWarning (torch prints none)."""
    import warnings

    from minigpt2.training import AdamW

    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
    for decay in (0.1, 20.0):
        ours = {k: v.copy() for k, v in params.items()}
        theirs = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
        for k in theirs:
            theirs[k].grad = torch.tensor(grads[k])
        opt = torch.optim.AdamW([{"params": [theirs["w"]], "weight_decay": decay},
                                 {"params": [theirs["b"]], "weight_decay": 0.0}], lr=lr, betas=(beta1, 0.95))
        try:
            opt.step()
            torch_refused = False
        except RuntimeError:
            torch_refused = True
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            adamw = AdamW(ours, lr=lr, betas=(beta1, 0.95), weight_decay=decay)
            if torch_refused:
                with pytest.raises(ValueError, match="step size .* beyond float32's largest value"):
                    adamw.step(grads)
                assert all(np.array_equal(ours[k], params[k]) for k in params) and adamw.t == 0
            else:
                adamw.step(grads)
                for k in params:
                    np.testing.assert_array_equal(np.isfinite(ours[k]), torch.isfinite(theirs[k]).numpy())


def test_an_update_that_overflows_stops_the_run_in_one_line_and_keeps_the_last_checkpoint(tmp_path, corpus):
    """A run saved at step 1 continues with a decay of 20 x lr = 6e38 (torch's AdamW also turns such weights into
    inf): step 2 stops with one line naming the step and the checkpoint kept, and every file of that checkpoint is
    as it was (it loads: finite weights). --save-interval 1 would have saved step 2."""
    out = tmp_path / "out"
    assert train("--data", corpus, "--out", out, "--max-steps", "1", *TINY).returncode == 0
    files = {name: (out / name).read_bytes() for name in ("model.safetensors", "optimizer.safetensors",
                                                          "trainer_state.json")}
    done = train("--out", out, "--resume", "--max-steps", "3", "--lr", "3e37", "--weight-decay", "20",
                 "--save-interval", "1", "--warmup-steps", "0")
    assert done.returncode == 1, done.stderr
    line = only_line(done.stderr)
    assert line.startswith(TRAIN + "training diverged at step 2: its update overflowed float32"), line
    assert f"{out} keeps the checkpoint of step 1. Lower the learning rate" in line, line
    assert {name: (out / name).read_bytes() for name in files} == files
    model = minigpt2.GPT2LMHeadModel.from_pretrained(out)
    assert all(np.isfinite(a).all() for a in model.state_dict().values())


def test_a_step_size_torch_refuses_is_one_line_before_any_update(tmp_path, corpus):
    """--lr 1e38 is below float32's largest value, but AdamW's first step size lr / (1 - 0.9) is not: torch's AdamW
    raises (checked here), and so does ours, in one line, before a weight changes or anything is saved."""
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    with pytest.raises(RuntimeError):
        torch.optim.AdamW([p], lr=1e38, betas=(0.9, 0.95)).step()
    out = tmp_path / "out"
    done = train("--data", corpus, "--out", out, "--max-steps", "3", *TINY, "--lr", "1e38", "--warmup-steps", "0",
                 "--eval-interval", "1")
    assert done.returncode == 1
    assert only_line(done.stderr).startswith(TRAIN + "AdamW.step: the step size lr / (1 - beta1^t) = 1e+39")
    assert not (out / "model.safetensors").exists()


def test_a_validation_loss_that_is_not_finite_stops_before_the_save(tmp_path, corpus):
    """lr 1e30: one step leaves finite weights of ~1e29, whose logits overflow: the validation loss is NaN. The run
    stops there, in one line, before saving (it saved that model, or stopped on 'cannot sample')."""
    out = tmp_path / "out"
    done = train("--data", corpus, "--out", out, "--max-steps", "3", *TINY, "--lr", "1e30", "--warmup-steps", "0",
                 "--eval-interval", "1", "--sample-tokens", "3")
    assert done.returncode == 1
    line = only_line(done.stderr)
    assert line.startswith(TRAIN + "training diverged at step 1: the validation loss is nan; nothing was saved"), line
    assert not (out / "model.safetensors").exists()


def test_save_refuses_weights_that_are_not_finite(tmp_path, corpus):
    """A loop of one's own that steps past a divergence and calls save(): the checkpoint is refused, naming a weight,
    and nothing is written (it saved NaN weights, which transformers then loads)."""
    trainer, _ = tiny_trainer(tmp_path, corpus)
    trainer.params["transformer.h.0.mlp.c_fc.weight"][0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="not saving to .*transformer.h.0.mlp.c_fc.weight holds inf or NaN"):
        trainer.save()
    assert not (tmp_path / "out").exists()


# -- 3. Ctrl-C --------------------------------------------------------------------------------------------------------

def interrupt_in(monkeypatch, step, times):
    """Ctrl-C ``times`` times just after the optimizer update of ``step`` (during that step, as train_step sees it)."""
    from minigpt2.training.trainer import Trainer

    train_step = Trainer.train_step

    def interrupted(self):
        result = train_step(self)
        if self.step == step:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return result
    monkeypatch.setattr(Trainer, "train_step", interrupted)


def test_a_second_ctrl_c_during_a_step_says_what_out_keeps(tmp_path, corpus, capsys, monkeypatch):
    """The first Ctrl-C asks to save after the step; a second one stops at once: --out keeps the checkpoint of the
    last evaluation (step 2, --eval-interval 2), whole, and the last line says so (it said only '[interrupted]')."""
    interrupt_in(monkeypatch, 3, times=2)
    out = tmp_path / "out"
    assert cli("--data", corpus, "--out", out, "--max-steps", "6", *TINY, "--eval-interval", "2") == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"[interrupted] stopped without saving: {out} keeps the checkpoint of step 2", last
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 2
    monkeypatch.undo()
    assert cli("--out", out, "--resume", "--max-steps", "3") == 0  # (whole: the run continues from it)


def test_ctrl_c_before_the_first_step_saves_nothing(tmp_path, corpus, capsys, monkeypatch):
    """Ctrl-C during the sample before training: no step was taken, so nothing is saved (an untrained checkpoint
    was written, and 'continue with --resume' offered); a resumed run's checkpoint is not written again."""
    from minigpt2.training.trainer import Trainer

    sample = Trainer.sample

    def interrupted(self, *a, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        return sample(self, *a, **kw)
    monkeypatch.setattr(Trainer, "sample", interrupted)
    out = tmp_path / "out"
    assert cli("--data", corpus, "--out", out, "--max-steps", "4", *TINY, "--sample-tokens", "2") == 130
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"stopped before the first step: nothing was saved " \
                                                                f"to {out}"
    assert sorted(os.listdir(out)) == ["data"]  # (the tokens are kept for the next run; the lock file is removed)


def test_ctrl_c_during_the_evaluations_save_saves_once(tmp_path, corpus, monkeypatch):
    """A Ctrl-C while the evaluation's checkpoint is written lets it finish, then stops: one save, not the same
    checkpoint written a second time."""
    trainer, logs = tiny_trainer(tmp_path, corpus, max_steps=6, eval_interval=2)
    saved = []
    save_pretrained = trainer.model.save_pretrained

    def save(directory):
        saved.append(trainer.step)
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return save_pretrained(directory)
    trainer.model.save_pretrained = save
    trainer.train()
    assert trainer.step == 2 and saved == [2], saved


def test_ctrl_c_while_the_training_code_loads_is_not_a_traceback(tmp_path, corpus):
    """Ctrl-C in the moment python -m minigpt2 train imports the trainer (simulated: the import raises
    KeyboardInterrupt) ends as any Ctrl-C does: '[interrupted]', exit 130, no traceback."""
    hook = ("import sys, runpy\n"
            "class Stop:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'minigpt2.training.trainer':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Stop())\n"
            "sys.argv = ['minigpt2', 'train', '--data', sys.argv[1], '--out', sys.argv[2], '--max-steps', '2']\n"
            "runpy.run_module('minigpt2', run_name='__main__', alter_sys=True)\n")
    done = subprocess.run([sys.executable, "-c", hook, str(corpus), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO}, stdin=subprocess.DEVNULL)
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().startswith("[interrupted]"), done.stderr
    assert not (tmp_path / "out").exists()


def test_an_interrupted_rewrite_of_the_token_files_is_never_reused(tmp_path, corpus, monkeypatch):
    """Tokenized with val_fraction 0.1, then again with 0.2 and Ctrl-C between train.bin and val.bin: the next run
    with 0.1 must not take the new train.bin with the old val.bin (the old meta.json said they matched). Expected:
    transformers' tokenizer's ids of the text, + <|endoftext|>, split at the last 10%."""
    from minigpt2.training import data

    tok = minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
    directory = tmp_path / "data"
    data.prepare_tokens(corpus, directory, tok, val_fraction=0.1, log=lambda *a: None)
    replace = os.replace

    def interrupted(src, dst):
        if str(dst).endswith("val.bin"):
            raise KeyboardInterrupt
        return replace(src, dst)
    monkeypatch.setattr(data.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.prepare_tokens(corpus, directory, tok, val_fraction=0.2, log=lambda *a: None)
    monkeypatch.setattr(data.os, "replace", replace)
    assert not [name for name in os.listdir(directory) if name.endswith(".tmp")]
    tokens = data.prepare_tokens(corpus, directory, tok, val_fraction=0.1, log=lambda *a: None)
    ids = transformers_gpt2_tokenizer(tmp_path)(corpus.read_text(encoding="utf-8"))["input_ids"] + [50256]
    n_val = int(len(ids) * 0.1)
    assert tokens["train"].tolist() == ids[:len(ids) - n_val] and tokens["val"].tolist() == ids[len(ids) - n_val:]


def transformers_gpt2_tokenizer(tmp_path):
    """transformers' GPT-2 tokenizer, from the vocabulary files minigpt2 bundles (offline)."""
    folder = tmp_path / "gpt2-tokenizer"
    minigpt2.GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(folder)
    return transformers.GPT2TokenizerFast.from_pretrained(folder)


# -- 4. --resume from the wrong folder --------------------------------------------------------------------------------

def test_resume_from_a_model_folder_names_model(tmp_path, capsys):
    folder = tmp_path / "m"
    minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(n_layer=1, n_head=1, n_embd=8, n_positions=8), seed=0) \
        .save_pretrained(folder)
    assert cli("--out", folder, "--resume", "--max-steps", "2") == 1
    line = capsys.readouterr().err.strip()
    assert line == (TRAIN + f"--resume: {folder} holds no trainer_state.json, so no run to continue; it holds a "
                    f"model: to fine-tune it, pass --model {folder} and a new or empty --out directory"), line


def test_resume_with_another_models_optimizer_state_names_the_file(tmp_path, corpus, capsys):
    """optimizer.safetensors copied from a run of another width: the error names that file and says it is another
    model's, with the shapes (it named neither the file nor the folder)."""
    for name, width in (("a", "16"), ("b", "32")):
        assert cli("--data", corpus, "--out", tmp_path / name, "--max-steps", "1",
                   *[w if w != "16" else width for w in TINY]) == 0
    (tmp_path / "a" / "optimizer.safetensors").write_bytes((tmp_path / "b" / "optimizer.safetensors").read_bytes())
    capsys.readouterr()
    assert cli("--out", tmp_path / "a", "--resume", "--max-steps", "2") == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith(TRAIN + f"{tmp_path / 'a' / 'optimizer.safetensors'} does not fit the model in "
                                   f"{tmp_path / 'a'} (") and "(50257, 32)" in line and "(50257, 16)" in line, line
    assert line.endswith("it is another model's; cannot resume"), line


def test_empty_out_or_data_and_a_pattern_beside_a_file_are_usage_errors(tmp_path, corpus):
    """--out "" (it said 'No such file or directory ()'), --data "" (': no such file or folder'), and --pattern with
    --data a file (silently ignored: the file was trained on whatever its name)."""
    for args, message in ((["--data", corpus, "--out", ""], "--out is empty: give a directory"),
                          (["--data", "", "--out", tmp_path / "out"], "--data is empty: give a text file or a folder"),
                          (["--data", corpus, "--out", tmp_path / "out", "--pattern", "*.md"],
                           f"--pattern picks files in a folder, but --data {corpus} is a file")):
        done = train(*args, "--max-steps", "1", *TINY)
        assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith(TRAIN + message), done.stderr
    assert not (tmp_path / "out").exists()


def test_a_prompt_that_fills_the_models_positions_is_refused_before_tokenizing(tmp_path, corpus, capsys):
    """Samples of a prompt as long as n_positions were '' at every evaluation, silently. The count is transformers'
    tokenizer's."""
    prompt = "a" * 100
    n = len(transformers_gpt2_tokenizer(tmp_path)(prompt)["input_ids"])
    assert cli("--data", corpus, "--out", tmp_path / "out", "--max-steps", "1", *TINY, "--sample-tokens", "3",
               "--prompt", prompt) == 1
    assert capsys.readouterr().err.strip() == (
        TRAIN + f"the samples' --prompt holds {n} tokens, but the model has 8 positions: no room left to sample; "
        f"shorten --prompt, or pass --sample-tokens 0 for no samples")
    assert not (tmp_path / "out").exists()


def test_not_enough_memory_for_the_positions_names_n_positions(tmp_path, corpus):
    """--n-positions 100000000 (a 6.4 GB position table) in 2 GB of address space: the hint names --n-positions."""
    import resource

    limit = 2 * 1024 ** 3
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-m", "minigpt2", "train", "--data", str(corpus), "--out",
                           str(tmp_path / "out"), "--max-steps", "1", *TINY, "--n-positions", "100000000"],
                          capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert done.returncode == 1, done.stderr
    line = only_line(done.stderr)
    assert line.startswith(TRAIN + "not enough memory") and "--n-positions" in line, line


# -- 5. the public backward functions on odd shapes, against torch autograd -------------------------------------------

U = float(np.finfo(np.float32).eps) / 2  # float32's unit roundoff, 2^-24


def gamma(k):
    """Higham's gamma_k = k u / (1 - k u): the relative error bound of a sum of k float32 terms."""
    return k * U / (1 - k * U)


class Bounded:
    """A value computed in float32, held in float64, with a first-order bound ``e`` on its rounding error (see the
    module's docstring). Structural operations (reshape, transpose, slices) move the bound with the value."""

    def __init__(self, value, err=None):
        self.v = np.asarray(value, np.float64)
        self.e = np.zeros_like(self.v) if err is None else np.asarray(err, np.float64)

    @staticmethod
    def lift(x):  # a float32 input, or a constant rounded to float32 (error u |c|)
        return x if isinstance(x, Bounded) else Bounded(x, U * np.abs(np.asarray(x, np.float64)))

    def __add__(self, b):
        b = Bounded.lift(b)
        v = self.v + b.v
        return Bounded(v, self.e + b.e + U * np.abs(v))

    def __sub__(self, b):
        b = Bounded.lift(b)
        v = self.v - b.v
        return Bounded(v, self.e + b.e + U * np.abs(v))

    def __mul__(self, b):
        b = Bounded.lift(b)
        v = self.v * b.v
        return Bounded(v, self.e * np.abs(b.v) + np.abs(self.v) * b.e + U * np.abs(v))

    def __matmul__(self, b):
        v = self.v @ b.v
        return Bounded(v, gamma(self.v.shape[-1]) * (np.abs(self.v) @ np.abs(b.v)) + self.e @ np.abs(b.v)
                       + np.abs(self.v) @ b.e)

    def sum(self, axis=-1, keepdims=True):
        return Bounded(self.v.sum(axis, keepdims=keepdims), gamma(self.v.shape[axis])
                       * np.abs(self.v).sum(axis, keepdims=keepdims) + self.e.sum(axis, keepdims=keepdims))

    def mean(self, axis=-1):
        return self.sum(axis) * (1.0 / self.v.shape[axis])

    def inverse(self):  # 1 / x
        v = 1.0 / self.v
        return Bounded(v, v * v * self.e + U * np.abs(v))

    def rsqrt(self):  # 1 / sqrt(x): two roundings
        v = 1.0 / np.sqrt(self.v)
        return Bounded(v, 0.5 * np.abs(v / self.v) * self.e + 2 * U * v)

    def exp(self):
        v = np.exp(self.v)
        return Bounded(v, v * self.e + 2 * U * v)

    def tanh(self):
        v = np.tanh(self.v)
        return Bounded(v, (1 - v * v) * self.e + 2 * U * np.abs(v))

    def map(self, fn):  # a reshape, transpose or slice: exact
        return Bounded(fn(self.v), fn(self.e))

    def where(self, keep):  # exact zeros outside ``keep``
        return Bounded(np.where(keep, self.v, 0.0), np.where(keep, self.e, 0.0))

    @property
    def T(self):
        return self.map(lambda a: a.swapaxes(-1, -2))

    def rows(self):
        return self.map(lambda a: a.reshape(-1, a.shape[-1]))


def concatenate(parts):
    return Bounded(np.concatenate([p.v for p in parts], -1), np.concatenate([p.e for p in parts], -1))


def assert_within(name, ours, truth, bound):
    """|ours - truth| <= 2 x the first-order bound, element by element."""
    ours, truth = np.asarray(ours, np.float64), np.asarray(truth, np.float64)
    assert ours.shape == truth.shape, (name, ours.shape, truth.shape)
    excess = np.abs(ours - truth) - 2 * np.broadcast_to(bound, truth.shape)
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, (f"{name}: |ours - torch| = {abs(ours - truth)[worst]:.3g} at {worst}, above twice "
                                f"the float32 bound, {2 * np.broadcast_to(bound, truth.shape)[worst]:.3g}")


def normal(rng, *shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def autograd(fn, dy, *inputs):
    """torch autograd in float64 on the float32 inputs: the gradients of sum(fn(*inputs) * dy) w.r.t. the float
    inputs (None for the integer ones)."""
    leaves = [torch.tensor(np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a))
              for a in inputs]
    for t in leaves:
        if t.is_floating_point():
            t.requires_grad_()
    fn(*leaves).backward(torch.tensor(np.asarray(dy, np.float64)))
    return [t.grad.numpy() if t.is_floating_point() else None for t in leaves]


# (B, T, E, H): one row of one token and one head; a head per dimension; E far from a multiple of 64
ODD_SHAPES = [(1, 1, 7, 1), (1, 2, 5, 5), (2, 5, 12, 3), (3, 4, 20, 4)]


def padding_mask(B, T):
    """1 = attend. Row 0 left-padded over all but its last token (its first queries see only padding), row 1
    right-padded; one-token rows unpadded."""
    mask = np.ones((B, T), np.int64)
    if T > 1:
        mask[0, :T - 1] = 0
        if B > 1:
            mask[1, T - 1:] = 0
    return mask


@pytest.mark.parametrize("B,T,E,H", ODD_SHAPES)
def test_linear_and_layer_norm_backward_on_odd_shapes(B, T, E, H):
    rng = np.random.default_rng(E)
    x, dy, w, b = normal(rng, B, T, E), normal(rng, B, T, 3 * E), normal(rng, E, 3 * E), normal(rng, 3 * E)
    dx, dw, db = bw.linear_backward(dy, x, w)
    tx, tw, tb = autograd(lambda x, w, b: x @ w + b, dy, x, w, b)
    X, DY, W = (Bounded(a).rows() for a in (x, dy, w))
    assert_within("linear dx", dx.reshape(-1, E), tx.reshape(-1, E), (DY @ W.T).e)
    assert_within("linear dW", dw, tw, (X.T @ DY).e)
    assert_within("linear db", db, tb, DY.sum(0, keepdims=False).e)

    x, dy, g, eps = normal(rng, B, T, E, scale=2, shift=1.5), normal(rng, B, T, E), normal(rng, E, shift=1), 1e-5
    dx, dw, db = bw.layer_norm_backward(dy, x, g, eps)
    tx, tw, tb = autograd(lambda x, w, b: torch.nn.functional.layer_norm(x, (E,), w, b, eps), dy, x, g,
                          np.zeros(E, np.float32))
    X, DY, G = Bounded(x), Bounded(dy), Bounded(g)  # backward.py's order:
    centered = X - X.mean()
    r = ((centered * centered).mean() + eps).rsqrt()
    xhat = centered * r
    gw = DY * G
    assert_within("layer norm dx", dx, tx, (r * (gw - gw.mean() - xhat * (gw * xhat).mean())).e)
    assert_within("layer norm dw", dw, tw, (DY * xhat).rows().sum(0, keepdims=False).e)
    assert_within("layer norm db", db, tb, DY.rows().sum(0, keepdims=False).e)


def torch_attention(q, k, v, scale, mask, head_mask=None, keep=None, pdrop=0.0):
    """transformers 4.57's eager attention in torch: the scaled scores, the padding bias (float32's lowest value,
    added), the causal mask (-inf), softmax, dropout with a fixed mask, the head mask."""
    T, K = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-1, -2) * scale + torch.tensor(np.where(mask == 0, -FLOAT32_MAX, 0.0))[:, None, None]
    scores = scores.masked_fill(~torch.tensor(layers.causal_mask(T, K)), -torch.inf)
    probs = torch.softmax(scores, -1)
    if keep is not None:
        probs = probs * torch.tensor(keep, dtype=torch.float64) / (1 - pdrop)
    if head_mask is not None:
        probs = probs * torch.tensor(head_mask, dtype=torch.float64)
    return probs @ v


def probs_bounded(Q, K, scale, mask):
    """layers.attention_probs's float32 softmax of the scores, bounded: over the keys a query may see (exact zeros
    elsewhere); a query that sees only padding has equal scores (float32's lowest value), so uniform weights."""
    T = Q.v.shape[-2]
    causal = layers.causal_mask(T, K.v.shape[-2])
    sees = causal & (mask != 0)[:, None, None, :]
    only_padding = ~sees.any(-1, keepdims=True)
    allowed = np.where(only_padding, causal, sees)
    S = ((Q @ K.T) * scale).where(allowed & ~only_padding)  # (ties: exact zeros, as float32 rounds them)
    top = np.where(allowed, S.v, -np.inf).max(-1, keepdims=True)
    shifted = Bounded(S.v - top, S.e + np.where(allowed, S.e, 0).max(-1, keepdims=True)) + 0.0  # (+ its rounding)
    ex = shifted.exp().where(allowed)
    return ex * ex.sum().inverse(), causal


def attention_backward_bounded(DOUT, Q, K, V, P, scale, causal, keep=None, pdrop=0.0, head_mask=None):
    """backward.attention_backward's formula, bounded (its order of operations)."""
    used, s = P, 1 / (1 - pdrop)
    if keep is not None:
        used = used * keep * s
    if head_mask is not None:
        used = used * head_mask
    dv = used.T @ DOUT
    dused = DOUT @ V.T
    if head_mask is not None:
        dused = dused * head_mask
    if keep is not None:
        dused = dused * keep * s
    ds = (P * (dused - (dused * P).sum())).where(causal)
    return (ds @ K) * scale, (ds.T @ Q) * scale, dv


@pytest.mark.parametrize("B,T,E,H", ODD_SHAPES)
def test_softmax_and_attention_backward_on_odd_shapes(B, T, E, H):
    """With padding (queries that see only padding included), a head mask with a zero and a half, dropout 0.3 with a
    fixed mask, and a head dimension of E / H (1 for (1, 2, 5, 5))."""
    rng = np.random.default_rng(10 * E + H)
    D = E // H
    dp, s = normal(rng, B, H, T, T), normal(rng, B, H, T, T, scale=2)
    p = layers.softmax(s)
    (ds,) = autograd(lambda s: torch.softmax(s, -1), dp, s)
    P, DP = Bounded(s).map(lambda a: np.asarray(layers.softmax(a.astype(np.float32)), np.float64)), Bounded(dp)
    P.e = 3 * gamma(T) * P.v  # (its max shift, exp and sum: (T + 3) u relative, taken as 3 gamma_T)
    assert_within("softmax ds", bw.softmax_backward(dp, p), ds, (P * (DP - (DP * P).sum())).e)

    q, k, v, dout = (normal(rng, B, H, T, D) for _ in range(4))
    scale, mask = np.float32(1 / np.sqrt(D)), padding_mask(B, T)
    head_mask = np.where(np.arange(H) == 0, 1.0, np.where(np.arange(H) == 1, 0.0, 0.5)).astype(np.float32)
    head_mask = head_mask[None, :, None, None]
    keep, pdrop = (rng.random((B, H, T, T)) >= 0.3).astype(np.float32), 0.3
    probs = layers.attention_probs(q, k, scale=scale, causal=True, key_bias=layers.padding_bias(mask))
    ours = bw.attention_backward(dout, q, k, v, probs, scale=scale, causal=True, keep=keep, pdrop=pdrop,
                                 head_mask=head_mask)
    truth = autograd(lambda q, k, v: torch_attention(q, k, v, float(scale), mask, head_mask, keep, pdrop),
                     dout, q, k, v)
    Q, K, V = Bounded(q), Bounded(k), Bounded(v)
    P, causal = probs_bounded(Q, K, scale, mask)
    bounds = attention_backward_bounded(Bounded(dout), Q, K, V, P, scale, causal, keep, pdrop, head_mask)
    for name, a, t, bound in zip(("dq", "dk", "dv"), ours, truth, bounds):
        assert_within(f"attention {name}", a, t, bound.e)


@pytest.mark.parametrize("B,T,E,H", ODD_SHAPES)
def test_self_attention_and_mlp_backward_on_odd_shapes(B, T, E, H):
    """The block's two halves as grad.forward saves them (c_attn's q, k, v split into H heads of E / H; an MLP of
    n_inner 3E with gelu_new), their float32 forwards bounded too."""
    rng = np.random.default_rng(100 + E)
    D, mask = E // H, padding_mask(B, T)
    x, dy = normal(rng, B, T, E), normal(rng, B, T, E)
    wa, ba, wp, bp = normal(rng, E, 3 * E, scale=0.5), normal(rng, 3 * E), normal(rng, E, E, scale=0.5), normal(rng, E)
    scale = np.float32(1 / np.sqrt(D))
    qkv = layers.linear(x, wa, ba)
    q, k, v = (layers.split_heads(part, H) for part in layers.chunks(qkv, 3))
    probs = layers.attention_probs(q, k, scale=scale, causal=True, key_bias=layers.padding_bias(mask))
    saved = {"x": x, "q": q, "k": k, "v": v, "probs": probs, "merged": layers.merge_heads(probs @ v)}
    dx, grads = bw.self_attention_backward(dy, saved, {"weight": wa, "bias": ba}, {"weight": wp, "bias": bp},
                                           n_head=H, scale=scale)

    def torch_block(x, wa, ba, wp, bp):
        heads = [part.reshape(B, T, H, D).transpose(1, 2) for part in (x @ wa + ba).split(E, -1)]
        return torch_attention(*heads, float(scale), mask).transpose(1, 2).reshape(B, T, E) @ wp + bp
    truth = autograd(torch_block, dy, x, wa, ba, wp, bp)
    X, DY, WA, WP = Bounded(x).rows(), Bounded(dy).rows(), Bounded(wa), Bounded(wp)
    QKV = (X @ WA + ba).map(lambda a: a.reshape(B, T, 3 * E))
    Q, K, V = (QKV.map(lambda a, i=i: layers.split_heads(a[..., i * E:(i + 1) * E], H)) for i in range(3))
    P, causal = probs_bounded(Q, K, scale, mask)
    merged = (P @ V).map(layers.merge_heads).rows()
    dmerged = (DY @ WP.T).map(lambda a: layers.split_heads(a.reshape(B, T, E), H))
    dq, dk, dv = attention_backward_bounded(dmerged, Q, K, V, P, scale, causal)
    dqkv = concatenate([d.map(layers.merge_heads) for d in (dq, dk, dv)]).rows()
    for name, a, t, bound in zip(("dx", "c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias"),
                                 (dx.reshape(-1, E), grads["c_attn"]["weight"], grads["c_attn"]["bias"],
                                  grads["c_proj"]["weight"], grads["c_proj"]["bias"]),
                                 (truth[0].reshape(-1, E), *truth[1:]),
                                 ((dqkv @ WA.T).e, (X.T @ dqkv).e, dqkv.sum(0, False).e, (merged.T @ DY).e,
                                  DY.sum(0, False).e)):
        assert_within(f"self-attention {name}", a, t, bound)

    w1, b1 = normal(rng, E, 3 * E, scale=0.5), normal(rng, 3 * E)
    w2, b2 = normal(rng, 3 * E, E, scale=0.5), normal(rng, E)
    pre = layers.linear(x, w1, b1)
    from minigpt2.activations import SQRT_2_OVER_PI, gelu_new

    saved = {"x": x, "pre": pre, "post": gelu_new(pre)}
    dx, grads = bw.mlp_backward(dy, saved, {"weight": w1, "bias": b1}, {"weight": w2, "bias": b2},
                                act_backward=bw.gelu_new_backward)
    gelu = transformers.activations.NewGELUActivation()
    truth = autograd(lambda x, w1, b1, w2, b2: gelu(x @ w1 + b1) @ w2 + b2, dy, x, w1, b1, w2, b2)
    PRE = X @ Bounded(w1) + b1
    t = ((PRE + PRE * PRE * PRE * 0.044715) * SQRT_2_OVER_PI).tanh()
    POST = PRE * 0.5 * (t + 1.0)
    dpost = DY @ Bounded(w2).T
    slope = (t + 1.0) * 0.5 + PRE * 0.5 * (t * t * -1.0 + 1.0) * SQRT_2_OVER_PI * (PRE * PRE * (3 * 0.044715) + 1.0)
    dpre = dpost * slope
    for name, a, t, bound in zip(("dx", "c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias"),
                                 (dx.reshape(-1, E), grads["c_fc"]["weight"], grads["c_fc"]["bias"],
                                  grads["c_proj"]["weight"], grads["c_proj"]["bias"]),
                                 (truth[0].reshape(-1, E), *truth[1:]),
                                 ((dpre @ Bounded(w1).T).e, (X.T @ dpre).e, dpre.sum(0, False).e, (POST.T @ DY).e,
                                  DY.sum(0, False).e)):
        assert_within(f"mlp {name}", a, t, bound)


@pytest.mark.parametrize("B,T,E,H", ODD_SHAPES)
def test_embedding_and_the_head_with_ignored_labels_on_odd_shapes(B, T, E, H):
    """Token ids repeated (a row of the table collects several positions); labels of -100 (every other one, and a
    whole row); the loss summed as cross_entropy_backward returns it, and its gradients through the tied head."""
    rng = np.random.default_rng(1000 + E)
    V = 11
    ids, dx, table = rng.integers(0, 4, (B, T)), normal(rng, B, T, E), normal(rng, V, E)
    ours = bw.embedding_backward(dx, ids, V)
    (truth,) = autograd(lambda table: torch.nn.functional.embedding(torch.tensor(ids), table), dx, table)
    uses = np.bincount(ids.reshape(-1), minlength=V)
    magnitude = np.zeros((V, E))
    np.add.at(magnitude, ids.reshape(-1), np.abs(dx.reshape(-1, E)).astype(np.float64))
    assert_within("embedding", ours, truth, gamma(max(1, uses.max())) * magnitude)

    h, w = normal(rng, B * T, E), normal(rng, V, E, scale=0.5)
    labels = rng.integers(0, V, B * T)
    labels[::2] = -100
    labels[:T] = -100  # (the first row: all ignored)
    n = int((labels != -100).sum())
    if n == 0:
        labels[-1] = 3
        n = 1
    loss_sum, dlogits = bw.cross_entropy_backward(h @ w.T, labels, n)
    dh, dw = bw.lm_head_backward(dlogits, h, w)
    th, tw = autograd(lambda h, w: torch.nn.functional.cross_entropy(h @ w.T, torch.tensor(labels), ignore_index=-100),
                      np.float64(1.0), h, w)
    h64, w64 = torch.tensor(h, dtype=torch.float64), torch.tensor(w, dtype=torch.float64)
    ref_sum = torch.nn.functional.cross_entropy(h64 @ w64.T, torch.tensor(labels), ignore_index=-100,
                                                reduction="sum").item()
    H_, W_ = Bounded(h), Bounded(w)
    keep = (labels != -100)[:, None]
    L = H_ @ W_.T
    top = L.v.max(-1, keepdims=True)
    z = Bounded(L.v - top, L.e + L.e.max(-1, keepdims=True)) + 0.0
    ex = z.exp()
    total = ex.sum()
    onehot = (np.arange(V) == np.where(labels == -100, -1, labels)[:, None]).astype(np.float64)
    D = (ex * (total * n).inverse() - Bounded.lift(onehot / n)).where(keep)
    picked = z.v[np.arange(len(labels)), np.maximum(labels, 0)][:, None]
    loss_bound = float(((total.e / total.v + 2 * U * np.abs(np.log(total.v)) + z.e.max(-1, keepdims=True)
                         + U * np.abs(np.log(total.v) - picked)) * keep).sum())
    assert abs(loss_sum - ref_sum) <= 2 * loss_bound, (loss_sum, ref_sum, loss_bound)
    assert_within("head dh", dh, th, (D @ W_).e)
    assert_within("head dW", dw, tw, (D.T @ H_).e)


def test_every_label_ignored_gives_torchs_zero_gradient():
    """All labels -100: torch's mean is 0/0 = NaN and its gradient 0 (its sum, 0). cross_entropy_backward with
    n_counted 0 gives the sum 0 and dlogits 0 (it divided by zero: a RuntimeWarning, then ZeroDivisionError)."""
    import warnings

    logits = normal(np.random.default_rng(5), 3, 7)
    labels = np.full(3, -100)
    t = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    mean = torch.nn.functional.cross_entropy(t, torch.tensor(labels), ignore_index=-100)
    mean.backward()
    total = torch.nn.functional.cross_entropy(t, torch.tensor(labels), ignore_index=-100, reduction="sum").item()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss_sum, dlogits = bw.cross_entropy_backward(logits.copy(), labels, 0)
    assert np.isnan(mean.item()) and loss_sum == total
    np.testing.assert_array_equal(dlogits, t.grad.numpy())
    with pytest.raises(ValueError, match="n_counted is 0, but 1 labels are counted"):
        bw.cross_entropy_backward(logits.copy(), np.array([-100, 2, -100]), 0)


def test_dropout_of_one_is_torchs_zeros():
    """p = 1 drops every element: torch's dropout gives zeros and a zero gradient; so do dropout_backward and the
    whole model in training mode with each of HF's three dropouts at 1 (all were ZeroDivisionError). The masks are
    all zeros, so torch's run is deterministic and comparable: GRAD_RTOL of test_training (derived there)."""
    dy = normal(np.random.default_rng(6), 2, 3)
    (truth,) = autograd(lambda x: torch.nn.functional.dropout(x, 1.0, training=True), dy, np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(bw.dropout_backward(dy, np.zeros_like(dy), 1.0), truth)
    for drop in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        config = dict(vocab_size=11, n_positions=6, n_embd=7, n_layer=2, n_head=1, **{**NO_DROPOUT, drop: 1.0})
        torch.manual_seed(0)
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config, attn_implementation="eager")).train()
        ours = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**config), checkpoint.unflatten(
            {k.removeprefix("transformer."): v.detach().numpy().copy() for k, v in hf.named_parameters()})).train()
        ids = np.array([[1, 2, 3, 4, 5]])
        out = hf(torch.tensor(ids), labels=torch.tensor(ids))
        out.loss.backward()
        loss, grads = ours.loss_and_grad(ids, labels=ids, rng=0)
        assert abs(loss - out.loss.item()) <= 1e-5 * out.loss.item(), drop
        for name, p in hf.named_parameters():
            assert np.abs(grads[name] - p.grad.numpy()).max() <= GRAD_RTOL * np.abs(p.grad.numpy()).max(), (drop, name)


def test_embedding_backward_without_the_tables_size_names_it():
    with pytest.raises(ValueError, match="embedding_backward needs the table's size: pass num_embeddings"):
        bw.embedding_backward(np.ones((2, 3), np.float32), np.array([0, 1]))


@pytest.mark.parametrize("B,T,E,H", ODD_SHAPES)
def test_the_whole_model_on_odd_shapes_against_transformers(B, T, E, H):
    """loss_and_grad against transformers' loss.backward() (float32, eager) on the odd shapes, with padding and
    labels of -100 where there are tokens to spare; one token predicts nothing: NaN loss, zero gradients, as
    torch's. Bound: GRAD_RTOL of test_training (derived there)."""
    config = dict(vocab_size=13, n_positions=8, n_embd=E, n_layer=2, n_head=H, **NO_DROPOUT)
    torch.manual_seed(E)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config, attn_implementation="eager")).eval()
    from conftest import randomize_torch_model

    randomize_torch_model(hf, E)
    ours = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**config), checkpoint.unflatten(
        {k.removeprefix("transformer."): v.detach().numpy().copy() for k, v in hf.named_parameters()}))
    rng = np.random.default_rng(E)
    ids, mask = rng.integers(0, 13, (B, T)), padding_mask(B, T)
    labels = np.where(mask == 0, -100, ids)
    if T > 2:
        labels[-1, 1] = -100
    out = hf(torch.tensor(ids), labels=torch.tensor(labels), attention_mask=torch.tensor(mask))
    out.loss.backward()
    loss, grads = ours.loss_and_grad(ids, labels=labels, attention_mask=mask)
    if T == 1:
        assert np.isnan(loss) and np.isnan(out.loss.item())
    else:
        assert abs(loss - out.loss.item()) <= 1e-5 * out.loss.item()
    for name, p in hf.named_parameters():
        ref = p.grad.numpy()
        assert np.abs(grads[name] - ref).max() <= GRAD_RTOL * np.abs(ref).max(), name
