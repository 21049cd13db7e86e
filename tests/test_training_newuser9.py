"""Training as a workshop participant and an HF user porting a Trainer meet it (helper pass 9).

Against the reference: the learning-rate schedule against transformers' own schedulers (get_scheduler), and our
Trainer (gradient accumulation, clipping, weight decay, cosine with min_lr) step by step against the loop
transformers' Trainer runs: torch.optim.AdamW on its decay groups (Trainer.get_decay_parameter_names), the
accumulated micro-batch losses, clip_grad_norm_ and the scheduler. (transformers' Trainer itself needs accelerate,
which the dev venv lacks; run once beside it, 4.57's Trainer divides a causal LM's summed loss by the labels
counted *before* the shift, T per row instead of T - 1, so its logged losses and gradients are (T-1)/T of the
mean; given the shifted count, it matched these numbers: losses within 1.1e-7 relative over 20 steps. transformers
PR #46204 fixed the count after 4.57.)

Tolerances. Schedules: both sides compute the same formula in float64 in other orders: 1e-12 relative (a few
roundings of 1.1e-16). The run: losses to 1e-5 relative, as test_training.LOSS_RTOL (float32 roundoff in the
gradients, amplified by Adam's normalisation); the gradient norm before clipping, the same 1e-5.

And the loop's messages: a warmup longer than the run, evaluation batches beyond what the validation data holds,
the time left after a resume.
"""
from __future__ import annotations

import math
import types

import numpy as np
import pytest

import minigpt2
from minigpt2.training import Trainer, TrainingArguments, optim
from minigpt2.training import trainer as trainer_module
from test_training import LOSS_RTOL, NO_DROPOUT, corpus, tiny_trainer  # noqa: F401 (corpus: a fixture)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SCHEDULE_RTOL = 1e-12


def transformers_lrs(max_lr, warmup, steps, min_lr):
    """The learning rate of each optimizer step under transformers' cosine_with_min_lr schedule."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = transformers.get_scheduler("cosine_with_min_lr", opt, num_warmup_steps=warmup, num_training_steps=steps,
                                       scheduler_specific_kwargs={"min_lr": min_lr})
    lrs = []
    for _ in range(steps + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("warmup,steps", [(0, 50), (5, 50), (50, 50), (80, 30), (1, 1)])
def test_schedule_is_transformers_cosine_with_min_lr_warmup_one_step_earlier(warmup, steps):
    """After the warmup lr_at is transformers' cosine_with_min_lr; during it, nanoGPT's: step s gets what
    transformers gives step s + 1 (its step 0 has lr 0). A warmup longer than the run is taken as transformers
    takes it: the rate climbs the whole run."""
    max_lr, min_lr = 6e-4, 6e-5
    theirs = transformers_lrs(max_lr, warmup, steps, min_lr)
    for s in range(steps):
        ours = optim.lr_at(s, max_lr=max_lr, warmup_steps=warmup, max_steps=steps, min_lr=min_lr)
        expected = theirs[s + 1] if s < warmup else theirs[s]
        assert abs(ours - expected) <= SCHEDULE_RTOL * max_lr, (s, ours, expected)


def test_trainer_steps_as_transformers_trainer_loop(tmp_path):
    """20 steps of our Trainer (2 micro-batches of 4 x 12, clipping at 1, decay 0.1, cosine to min_lr) against
    the loop of transformers' Trainer on the same windows: loss, gradient norm and learning rate of every step."""
    V, B, T, ACC, STEPS, SEED = 37, 4, 12, 2, 20, 3
    data = np.repeat(np.random.default_rng(0).integers(0, V, 400), 3)[:1000]  # runs of repeated tokens: learnable
    tokens = {"train": data[:900], "val": data[900:]}
    config = minigpt2.GPT2Config(vocab_size=V, n_positions=16, n_embd=16, n_layer=2, n_head=4, **NO_DROPOUT)
    model = minigpt2.GPT2LMHeadModel(config, seed=0)
    hf_config = transformers.GPT2Config(vocab_size=V, n_positions=16, n_embd=16, n_layer=2, n_head=4, **NO_DROPOUT,
                                        attn_implementation="eager")
    hf = transformers.GPT2LMHeadModel(hf_config)
    hf.load_state_dict({k: torch.tensor(np.array(v)) for k, v in model.state_dict().items()})
    hf.train()
    args = TrainingArguments(out_dir=str(tmp_path), max_steps=STEPS, batch_size=B, seq_len=T, grad_accum=ACC, lr=1e-2,
                             min_lr=1e-3, warmup_steps=0, weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0,
                             sample_tokens=0, seed=SEED)
    ours = Trainer(model, None, tokens, args, log=lambda *a: None)

    decay = set(transformers.Trainer.get_decay_parameter_names(None, hf))  # (self is not used)
    named = dict(hf.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for k, p in named.items() if k in decay], "weight_decay": 0.1},
                             {"params": [p for k, p in named.items() if k not in decay], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    sched = transformers.get_scheduler("cosine_with_min_lr", opt, num_warmup_steps=0, num_training_steps=STEPS,
                                       scheduler_specific_kwargs={"min_lr": 1e-3})
    report = []
    for step in range(STEPS):
        rng = np.random.default_rng([SEED, step])  # the windows our Trainer draws at this step
        windows = [trainer_module.random_batch(tokens["train"], B, T, rng) for _ in range(ACC)]
        loss, norm, lr = ours.train_step()
        opt.zero_grad()
        ref_loss = 0.0
        for ids in windows:  # every window has T - 1 labels: the mean of the micro-batch means is the mean
            micro = hf(torch.tensor(ids), labels=torch.tensor(ids)).loss / ACC
            micro.backward()
            ref_loss += micro.item()
        ref_norm = float(torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0))
        ref_lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        report.append((step, loss, ref_loss, norm, ref_norm, lr, ref_lr))
    worst = max(abs(r[1] - r[2]) / r[2] for r in report)
    print(f"loss {report[0][2]:.4f} -> {report[-1][2]:.4f}; max relative loss difference {worst:.3g}")
    assert report[-1][2] < report[0][2] - 0.3, "the run should learn something (else it tests little)"
    for step, loss, ref_loss, norm, ref_norm, lr, ref_lr in report:
        assert abs(loss - ref_loss) <= LOSS_RTOL * ref_loss, (step, loss, ref_loss)
        assert abs(norm - ref_norm) <= LOSS_RTOL * ref_norm, (step, norm, ref_norm)
        assert abs(lr - ref_lr) <= SCHEDULE_RTOL * 1e-2, (step, lr, ref_lr)


def test_a_warmup_longer_than_the_run_is_said_once(tmp_path, corpus):
    """transformers accepts warmup_steps > max_steps (the rate never reaches learning_rate) and so do we; but the
    log says so once, with the rate the last step gets (transformers' warmup at max_steps, as the schedule test)."""
    trainer, logs = tiny_trainer(tmp_path, corpus, max_steps=3, warmup_steps=100, lr=6e-4)
    said = [line for line in logs if "warmup_steps" in line]
    last = transformers_lrs(6e-4, 100, 3, 6e-5)[3]
    assert len(said) == 1 and "warmup_steps 100 is more than max_steps 3" in said[0], logs
    assert f"to {last:.3g} at the last step" in said[0] and "never reaching lr 0.0006" in said[0], said
    trainer.train()
    assert [line for line in logs if "warmup_steps" in line] == said  # (once, not at every step)
    _, logs = tiny_trainer(tmp_path, corpus, max_steps=3, warmup_steps=3)  # the peak is reached at the last step
    assert not [line for line in logs if "warmup_steps" in line], logs


def count_batches(monkeypatch, limit):
    """Count the batches drawn; fail (instead of running on for minutes) past ``limit``."""
    drawn = []

    def counted(*args, **kwargs):
        drawn.append(1)
        assert len(drawn) <= limit, f"more than {limit} batches drawn"
        return real(*args, **kwargs)

    real = trainer_module.random_batch
    monkeypatch.setattr(trainer_module, "random_batch", counted)
    return drawn


def test_eval_batches_beyond_the_validation_data_are_capped_and_said(tmp_path, corpus, monkeypatch):
    """eval_batches 10**9 on a small validation split: transformers' evaluate() reads its eval set once; ours read
    10**9 random batches, for hours, silently. Now at most the batches the split holds (its windows of seq_len,
    batch_size at a time), said once."""
    trainer, logs = tiny_trainer(tmp_path, corpus, eval_batches=10**9)
    windows = len(trainer.tokens["val"]) // trainer.args.seq_len
    held = math.ceil(windows / trainer.args.batch_size)
    assert 1 < held < 10
    said = [line for line in logs if "eval_batches" in line]
    assert len(said) == 1 and f"eval_batches 1000000000 is more than the validation data holds" in said[0], logs
    assert f"each evaluation reads {held}" in said[0], said
    drawn = count_batches(monkeypatch, held + 1)
    loss = trainer.evaluate()
    assert len(drawn) == held
    monkeypatch.undo()
    same, _ = tiny_trainer(tmp_path, corpus, eval_batches=held)  # the same batches: the same mean
    assert same.evaluate() == loss
    _, logs = tiny_trainer(tmp_path, corpus, eval_batches=held)
    assert not [line for line in logs if "eval_batches" in line], logs


def test_cli_eval_batches_beyond_the_split_end_soon(tmp_path, corpus, capsys, monkeypatch):
    from minigpt2.training.cli import main

    count_batches(monkeypatch, 200)  # 2 steps + 2 evaluations of the few batches the split holds
    code = main(["--data", str(corpus), "--out", str(tmp_path / "o"), "--max-steps", "2", "--n-layer", "1",
                 "--n-head", "1", "--n-embd", "8", "--seq-len", "8", "--batch-size", "2", "--sample-tokens", "0",
                 "--eval-batches", "100000"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "eval_batches 100000 is more than the validation data holds" in out


def test_time_left_after_a_resume_is_from_this_runs_pace(tmp_path, corpus, monkeypatch):
    """A resumed run's first steps were not timed by it: the time left comes from the steps it took (it divided
    by every step since 0, so at step 8 of 12, after 2 steps of 1 s, it said ~1s left instead of ~4s)."""
    first, _ = tiny_trainer(tmp_path, corpus, max_steps=6, eval_interval=100)
    first.train()
    clock = [0.0]
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    resumed, logs = tiny_trainer(tmp_path, corpus, max_steps=12, eval_interval=100)
    for name, array in first.params.items():  # (the CLI loads them from out_dir: the same weights)
        resumed.params[name][...] = array
    resumed.load_state(first.args.out_dir)
    step = resumed.train_step

    def one_second_step():
        clock[0] += 1.0
        return step()

    resumed.train_step = one_second_step
    resumed.train()
    line = next(line for line in logs if "step 8/12" in line)
    assert "| 2s, ~4s left" in line, line


def test_data_that_is_neither_a_file_nor_a_folder_is_named_so(tmp_path):
    """--data /dev/null exists: 'no such file or folder' sent the user looking for a typo."""
    from minigpt2.training import prepare_tokens

    tok = minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
    with pytest.raises(ValueError, match=r"--data /dev/null is not a regular file or a folder"):
        prepare_tokens("/dev/null", tmp_path / "d", tok, log=lambda *a: None)
    assert not (tmp_path / "d").exists()


def test_the_tokenized_count_leaves_out_the_skipped_files(tmp_path):
    """A folder of 2 UTF-8 files and a Latin-1 one: 'skipped 1', then 'tokenized 2 file(s)' (it said 3)."""
    from minigpt2.training import prepare_tokens

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The cat sat on the mat. " * 20, encoding="utf-8")
    (docs / "b.txt").write_text("The dog sat on the log. " * 20, encoding="utf-8")
    (docs / "c.txt").write_bytes("caf\u00e9 au lait. ".encode("latin-1") * 20)
    logs = []
    prepare_tokens(docs, tmp_path / "d", minigpt2.GPT2Tokenizer.from_pretrained("gpt2"), log=logs.append)
    assert logs[0].startswith("skipped 1 unreadable file(s)") and logs[1].startswith("tokenized 2 file(s):"), logs


class _Cores:
    """The C core's library, but mg_blas_width() (the jobs NumPy's OpenBLAS splits a product into: 1 while other
    programs crowd the cores, csrc/parallel.c) says ``width``: the pool's on idle cores, 1 on a busy machine."""

    def __init__(self, lib, width):
        self._lib, self._width = lib, width

    def mg_blas_width(self):
        return self._width

    def __getattr__(self, name):
        return getattr(self._lib, name)


def test_the_same_seed_gives_the_same_bytes_on_a_busy_machine(tmp_path, corpus, monkeypatch):
    from minigpt2 import _blas_threads, backend

    c = backend._ckernels
    if c is None or not c.blas_on_pool or _blas_threads.most_jobs(backend.get_num_threads()) < 2:
        pytest.skip("NumPy's OpenBLAS does not run on the C core's pool with 2 or more threads here")
    runs, lib, width = [], c.lib, _blas_threads.most_jobs(backend.get_num_threads())
    for crowded in (False, True):
        monkeypatch.setattr(c, "lib", _Cores(lib, 1 if crowded else width))
        trainer, _ = tiny_trainer(tmp_path / str(crowded), corpus, max_steps=3, eval_interval=100, batch_size=4,
                                  seq_len=16)  # (64 rows: the block's products go to BLAS, as in a real run)
        trainer.train()
        runs.append({k: v.copy() for k, v in trainer.params.items()})
    differ = [k for k in runs[0] if not np.array_equal(runs[0][k], runs[1][k])]
    assert not differ, f"{len(differ)} of {len(runs[0])} weights differ, e.g. {differ[:3]}"


def test_a_second_run_into_the_same_out_at_the_same_time_is_refused(tmp_path, corpus, capsys):
    """Two runs into one --out at once both finished and both said "saved to OUT"; the folder kept whichever saved
    last. The second is now refused before it writes anything, naming the process that holds the folder."""
    import subprocess
    import sys

    from minigpt2.cli import main

    out = tmp_path / "out"
    holder = subprocess.Popen(  # another run, holding the folder the way a run does (hold_out_dir), until told to go
        [sys.executable, "-c", "import sys; from minigpt2.training.cli import hold_out_dir; "
         f"lock = hold_out_dir({str(out)!r}); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        flags = ["train", "--data", str(corpus), "--out", str(out), "--max-steps", "2", "--n-layer", "1", "--n-head",
                 "2", "--n-embd", "16", "--seq-len", "8", "--batch-size", "2", "--sample-tokens", "0"]
        assert main(flags) == 1
        error = capsys.readouterr().err
        assert f"--out {out} is in use by another training run (process {holder.pid})" in error
        assert sorted(p.name for p in out.iterdir()) == [".train.lock"]  # nothing of the run's written
    finally:
        holder.communicate("")
    assert main(flags) == 0  # the other run ended: the folder is free
    assert (out / "model.safetensors").exists()
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "3", "--sample-tokens", "0"]) == 0  # (and
    # a run in this process lets go when it returns: the resume in the same process takes the folder again)
