"""Training as a user meets it, against torch: the inputs test_training.py leaves out, an untied LM head, AdamW's
parameters step by step, and the run's promises (same seed same run, Ctrl-C then --resume = one run, a diverged
run or a damaged checkpoint stops with one clear line).

Gradient tolerance: GRAD_RTOL of test_training.py (max|ours - torch| <= 1e-4 x max|torch| per tensor; its
docstring derives it from float32's unit roundoff u = 6e-8, sums of ~1200 terms and a few chained layers).
Observed here: at most 1.6e-6.

AdamW tolerance: both sides run the same float32 operations on the same gradients, so a parameter differs only
where one rounding goes the other way: at most one ulp per operation that rounds differently, 2 per step (the
decay's product and the update's difference), over N steps: max|ours - torch| <= 2 N ulp(max|p|). Observed: one
ulp (1.2e-7) after 30 steps. A wrong bias correction, eps placement, decay set or warmup step is off by 1e-4 or
far more.
"""
from __future__ import annotations

import json
import os
import re
import signal

import numpy as np
import pytest

import minigpt2
from minigpt2 import checkpoint
from minigpt2.training import optim
from minigpt2.training.grad import model_loss_and_grad
from test_training import GRAD_RTOL, batch, corpus, tiny_trainer, torch_model  # noqa: F401 (corpus: fixture)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def ours_from(hf):
    """A minigpt2 model with copies of the torch model's weights, its own lm_head.weight when untied."""
    config = minigpt2.GPT2Config.from_dict(hf.config.to_dict())
    flat = {k.removeprefix("transformer."): v.detach().numpy().copy() for k, v in hf.named_parameters()}
    return minigpt2.GPT2LMHeadModel(config, checkpoint.unflatten(flat))


def assert_grads_match(hf, model, ids, labels, **inputs):
    """loss.backward() in torch against loss_and_grad, every parameter (torch lists each matrix once)."""
    hf.zero_grad()
    to_torch = {k: torch.tensor(v) for k, v in inputs.items() if v is not None}
    out = hf(torch.tensor(ids), labels=torch.tensor(labels), **to_torch)
    out.loss.backward()
    loss, grads = model_loss_and_grad(model, ids, labels=labels, **inputs)
    assert abs(loss - out.loss.item()) <= 1e-5 * max(1.0, abs(out.loss.item()))
    assert_torch_grads(hf, grads)
    return grads


def assert_torch_grads(hf, grads):
    """Every parameter's gradient within GRAD_RTOL of the largest of torch's (p.grad after loss.backward())."""
    report, failed = [], []
    for name, p in hf.named_parameters():
        r = p.grad.numpy()
        diff, bound = float(np.abs(grads[name] - r).max()), GRAD_RTOL * float(np.abs(r).max())
        report.append(f"{name:40s} max|ref| {np.abs(r).max():9.3g}  max|diff| {diff:9.3g}  bound {bound:9.3g}")
        if not diff <= bound:
            failed.append(name)
    assert not failed, "gradients differ from torch's:\n" + "\n".join(report)


@pytest.mark.parametrize("case", ["token_type_ids", "position_ids", "head_mask", "n_inner"])
def test_more_inputs_match_torch(case):
    """The inputs test_training.py's configs leave out: token types (looked up in wte: a third use of it),
    explicit positions (repeated, out of order), a head mask with zeros and a half, a narrower MLP (n_inner)."""
    hf = torch_model(20, **({"n_inner": 24} if case == "n_inner" else {}))
    ids, labels, mask = batch(20, padding=True)
    rng = np.random.default_rng(1)
    inputs = {"attention_mask": mask,
              "token_type_ids": rng.integers(0, 37, ids.shape) if case == "token_type_ids" else None,
              "position_ids": rng.integers(0, 16, ids.shape) if case == "position_ids" else None,
              "head_mask": np.array([[1, 0, 1, .5], [1, 1, 0, 1]], np.float32) if case == "head_mask" else None}
    assert_grads_match(hf, ours_from(hf), ids, labels, **inputs)


@pytest.mark.parametrize("padding", [False, True])
def test_untied_head_gradients_match_torch(padding):
    """tie_word_embeddings=False: lm_head.weight is a [V, E] matrix of its own. Its gradient is the head's
    (dlogits^T h) and wte's is the lookups' alone (with token types too)."""
    hf = torch_model(21, tie_word_embeddings=False)
    model = ours_from(hf)
    assert "lm_head" in model.params
    ids, labels, mask = batch(21, padding)
    types = np.random.default_rng(2).integers(0, 37, ids.shape)
    grads = assert_grads_match(hf, model, ids, labels, attention_mask=mask, token_type_ids=types)
    assert grads["lm_head.weight"] is not grads["transformer.wte.weight"]
    assert list(grads) == list(model.state_dict())


def test_an_untied_checkpoint_trains_and_stays_untied(tmp_path, corpus):
    """The Trainer on an untied model: both matrices learn, each its own way, and the saved checkpoint is untied
    in transformers with the same logits."""
    trainer, _ = tiny_trainer(tmp_path, corpus, max_steps=3)
    cfg = trainer.model.config.to_dict()
    cfg["tie_word_embeddings"] = False
    untied = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config.from_dict(cfg), seed=1)
    from minigpt2.training import Trainer

    trainer = Trainer(untied, trainer.tokenizer, trainer.tokens, trainer.args, log=lambda *a: None)
    head, wte = (untied.params["lm_head"]["weight"].copy(), untied.params["wte"]["weight"].copy())
    trainer.train()
    assert not np.array_equal(untied.params["lm_head"]["weight"], head)
    assert not np.array_equal(untied.params["wte"]["weight"], wte)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
    assert not hf.config.tie_word_embeddings
    ids = np.array([[464, 3797, 3332, 319, 262, 2603]])
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    assert np.abs(untied(ids).logits - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


# -- the optimizer ---------------------------------------------------------------------------------------------

def test_adamw_clipping_and_schedule_match_torch_parameter_for_parameter():
    """30 steps on the same gradients (spread over 7 decades, so eps matters): clip_grad_norm + AdamW (decay on
    matrices only) + lr_at against clip_grad_norm_ + torch.optim.AdamW (two groups) + LambdaLR(lr_at)."""
    rng = np.random.default_rng(0)
    shapes = {"c_attn.weight": (17, 9), "c_attn.bias": (9,), "wte.weight": (30, 9), "ln_1.weight": (9,)}
    start = {k: rng.normal(0, 1, s).astype(np.float32) for k, s in shapes.items()}
    ours_p = {k: v.copy() for k, v in start.items()}
    theirs_p = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in start.items()}
    ours = optim.AdamW(ours_p, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    decayed = [k for k, v in start.items() if optim.decays(k, v)]
    assert decayed == ["c_attn.weight", "wte.weight"]
    theirs = torch.optim.AdamW([{"params": [theirs_p[k] for k in decayed], "weight_decay": 0.1},
                                {"params": [theirs_p[k] for k in start if k not in decayed], "weight_decay": 0.0}],
                               lr=1.0, betas=(0.9, 0.95), eps=1e-8)
    n, schedule = 30, dict(max_lr=1e-2, warmup_steps=5, max_steps=30, min_lr=1e-3)
    lambdas = torch.optim.lr_scheduler.LambdaLR(theirs, lambda step: optim.lr_at(step, **schedule))
    for step in range(n):
        g = {k: (rng.normal(0, 1, s) * 10.0 ** rng.uniform(-6, 1, s)).astype(np.float32) for k, s in shapes.items()}
        for k, p in theirs_p.items():
            p.grad = torch.tensor(g[k])
        optim.clip_grad_norm(g, 1.0)
        ours.step(g, lr=optim.lr_at(step, **schedule))
        torch.nn.utils.clip_grad_norm_(list(theirs_p.values()), 1.0)
        theirs.step()
        lambdas.step()
    bound = 2 * n * float(np.spacing(np.float32(max(np.abs(v).max() for v in start.values()) + 1)))
    for k in start:
        diff = float(np.abs(ours_p[k] - theirs_p[k].detach().numpy()).max())
        moved = float(np.abs(ours_p[k] - start[k]).max())
        assert diff <= bound, f"{k}: max|ours - torch| {diff:.3g} > {bound:.3g} (moved {moved:.3g})"
    assert ours.t == n


def test_learning_rate_schedule_shape():
    """Linear warmup reaching max_lr on the last warmup step, cosine decay to min_lr at max_steps, then flat."""
    s = dict(max_lr=1.0, warmup_steps=4, max_steps=24, min_lr=0.1)
    assert [optim.lr_at(i, **s) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert optim.lr_at(14, **s) == pytest.approx(0.55)  # half way: the mean of max and min
    assert optim.lr_at(24, **s) == optim.lr_at(99, **s) == 0.1
    decay = [optim.lr_at(i, **s) for i in range(4, 25)]
    assert decay == sorted(decay, reverse=True)


def test_grad_accumulation_runs_like_the_bigger_batch(tmp_path, corpus):
    """2 micro-batches of 2 train like one batch of 4: the same windows (one generator per step, drawn in order),
    the same loss and gradient norm at every step, the same weights (float32 sums in another order, amplified by
    Adam's normalisation: observed 4e-7)."""
    big, _ = tiny_trainer(tmp_path / "a", corpus, batch_size=4)
    small, _ = tiny_trainer(tmp_path / "b", corpus, batch_size=2, grad_accum=2)
    steps = [(big.train_step(), small.train_step()) for _ in range(6)]
    for (loss, norm, lr), (loss2, norm2, lr2) in steps:
        assert loss2 == pytest.approx(loss, rel=1e-6) and norm2 == pytest.approx(norm, rel=1e-5) and lr2 == lr
    for k, v in big.params.items():
        np.testing.assert_allclose(small.params[k], v, rtol=0, atol=1e-5, err_msg=k)


# -- the run: divergence, damaged or torn checkpoints, Ctrl-C ---------------------------------------------------

CLI_TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--seq-len", "8", "--batch-size", "2",
            "--eval-interval", "100", "--eval-batches", "1", "--sample-tokens", "0", "--log-interval", "1"]


def cli(*argv):
    from minigpt2.cli import main

    return main(list(argv))


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # (numpy's overflow warnings would precede the line)
def test_a_diverged_run_stops_before_saving_nan_weights(tmp_path, corpus, capsys):
    out = tmp_path / "out"
    code = cli("train", "--data", str(corpus), "--out", str(out), "--max-steps", "40", "--lr", "1e5",
               "--warmup-steps", "0", "--save-interval", "1", "--grad-clip", "0", *CLI_TINY)
    captured = capsys.readouterr()
    assert code == 1
    line = one_line(captured.err)
    step = int(re.search(r"training diverged at step (\d+): the loss is", line).group(1))
    assert f"{out} keeps the checkpoint of step {step - 1}. Lower the learning rate" in line
    saved = checkpoint.read_safetensors(out / "model.safetensors")
    assert all(np.isfinite(a).all() for a in saved.values())  # the last checkpoint is usable
    assert "grad norm nan" not in captured.out  # measured even when clipping is off


def test_same_seed_same_run_and_another_seed_another(tmp_path, corpus):
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert cli("train", "--data", str(corpus), "--out", str(tmp_path / name), "--max-steps", "3",
                   "--seed", seed, *CLI_TINY) == 0
        runs[name] = checkpoint.read_safetensors(tmp_path / name / "model.safetensors")
    assert all(np.array_equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not np.array_equal(runs["a"]["transformer.wte.weight"], runs["c"]["transformer.wte.weight"])


def test_ctrl_c_then_resume_is_the_uninterrupted_run(tmp_path, corpus, capsys, monkeypatch):
    """Via the CLI: Ctrl-C after step 2 saves and says how to continue (exit 130); that command ends with the very
    weights and losses of a run never interrupted (batches and dropout drawn from (seed, step))."""
    args = ["--max-steps", "5", "--dropout", "0.1", *CLI_TINY]
    assert cli("train", "--data", str(corpus), "--out", str(tmp_path / "straight"), *args) == 0
    from minigpt2.training.trainer import Trainer

    train_step = Trainer.train_step

    def interrupted(self):
        result = train_step(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would
        return result
    monkeypatch.setattr(Trainer, "train_step", interrupted)
    out = tmp_path / "cut"
    capsys.readouterr()
    assert cli("train", "--data", str(corpus), "--out", str(out), *args) == 130
    said = capsys.readouterr().out
    assert f"stopped at step 2 of 5, saved to {out}; continue with python -m minigpt2 train --out {out} " \
           f"--resume --max-steps 5" in said
    monkeypatch.setattr(Trainer, "train_step", train_step)
    assert cli("train", "--out", str(out), "--resume", "--max-steps", "5") == 0
    straight = checkpoint.read_safetensors(tmp_path / "straight" / "model.safetensors")
    resumed = checkpoint.read_safetensors(out / "model.safetensors")
    assert all(np.array_equal(straight[k], resumed[k]) for k in straight)
    history = [json.loads((d / "trainer_state.json").read_text())["history"] for d in (tmp_path / "straight", out)]
    assert history[0]["train"] == history[1]["train"]


def test_a_second_ctrl_c_during_a_save_lets_it_finish(tmp_path, corpus):
    """Ctrl-C, then Ctrl-C again while the checkpoint is being written (between the weights and the optimizer):
    the save completes, so the directory resumes (it was left with new weights and the old state)."""
    trainer, _ = tiny_trainer(tmp_path, corpus, max_steps=50, eval_interval=100)
    save_tokenizer = trainer.tokenizer.save_pretrained

    def slow_save(directory):  # written after model.safetensors, before the optimizer and trainer_state.json
        os.kill(os.getpid(), signal.SIGINT)
        return save_tokenizer(directory)
    trainer.tokenizer.save_pretrained = slow_save

    def log(line):
        if "step 2/" in line:
            os.kill(os.getpid(), signal.SIGINT)
    trainer.log = log
    try:
        trainer.train()
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C stopped the save half-way")
    assert trainer.step == 2
    from minigpt2.training import Trainer

    out = tmp_path / "out"
    resumed = Trainer(minigpt2.GPT2LMHeadModel.from_pretrained(out), trainer.tokenizer, trainer.tokens, trainer.args)
    resumed.load_state(out)
    assert resumed.step == 2


def test_resume_refuses_weights_saved_by_another_step(tmp_path, corpus):
    """model.safetensors from a later save than trainer_state.json and optimizer.safetensors (a save cut short
    between them): resuming would mix step 6's weights with step 3's moments and batches."""
    ahead, _ = tiny_trainer(tmp_path / "ahead", corpus, max_steps=6)
    ahead.train()
    run, _ = tiny_trainer(tmp_path / "run", corpus, max_steps=3)
    run.train()
    out = tmp_path / "run" / "out"
    (out / "model.safetensors").write_bytes((tmp_path / "ahead" / "out" / "model.safetensors").read_bytes())
    from minigpt2.training import Trainer

    resumed = Trainer(minigpt2.GPT2LMHeadModel.from_pretrained(out), run.tokenizer, run.tokens, run.args)
    with pytest.raises(ValueError, match="weights are not those trainer_state.json was saved with"):
        resumed.load_state(out)


@pytest.mark.parametrize("content,problem", [
    ('{"step": 3', "not JSON"),
    ("[]", "a JSON list, not an object"),
    ('{"step": 3}', 'no "args"'),
    ('{"step": "3", "args": {}, "history": {"train": [], "val": []}}', "its step is '3'"),
])
def test_a_damaged_trainer_state_is_one_clear_line(tmp_path, corpus, capsys, content, problem):
    out = tmp_path / "out"
    assert cli("train", "--data", str(corpus), "--out", str(out), "--max-steps", "1", *CLI_TINY) == 0
    (out / "trainer_state.json").write_text(content)
    capsys.readouterr()
    assert cli("train", "--out", str(out), "--resume", "--max-steps", "2") == 1
    line = one_line(capsys.readouterr().err)
    assert f"{out / 'trainer_state.json'} is damaged" in line and problem in line


def test_cli_checks_settings_before_tokenizing(tmp_path, corpus, capsys):
    """A --seq-len the model cannot hold, a learning rate of inf, shape flags beside a checkpoint: refused
    before OUT/data is written (tokenizing a large corpus takes a while)."""
    model_dir = tmp_path / "m"
    minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(vocab_size=50257, n_positions=8, n_embd=16, n_layer=1, n_head=2),
                             seed=0).save_pretrained(model_dir)
    minigpt2.GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(model_dir)
    out = tmp_path / "out"
    base = ["train", "--data", str(corpus), "--out", str(out), "--max-steps", "2"]
    assert cli(*base, "--model", str(model_dir), "--seq-len", "16") == 1
    assert "--seq-len 16 is longer than the model's n_positions 8" in one_line(capsys.readouterr().err)
    for flags, message in ((["--lr", "inf"], "argument --lr: inf is not allowed (must be finite and > 0 and < "
                                             "3.4028234663852886e+38"),
                           (["--model", str(model_dir), "--n-layer", "3"], "--n-layer shapes a new model")):
        with pytest.raises(SystemExit) as e:
            cli(*base, *flags)
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_resume_takes_a_new_dropout(tmp_path, corpus):
    out = tmp_path / "out"
    assert cli("train", "--data", str(corpus), "--out", str(out), "--max-steps", "1", *CLI_TINY) == 0
    assert cli("train", "--out", str(out), "--resume", "--max-steps", "2", "--dropout", "0.2") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["resid_pdrop"] == config["embd_pdrop"] == config["attn_pdrop"] == 0.2
