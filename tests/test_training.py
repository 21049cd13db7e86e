"""Training against torch: every parameter's gradient, and a whole training run, as llm.c's test_gpt2.c.

Gradients: transformers' GPT2LMHeadModel (float32, attn_implementation="eager", dropout off) with widely
spread random weights, loss.backward(), against model.loss_and_grad on the same weights and batch, for
configs covering every activation, both scale flags, reorder_and_upcast_attn, padding and ignored labels.
Tolerance, per tensor: max|ours - torch| <= GRAD_RTOL * max|torch|. Both sides compute in float32
(unit roundoff u = 6e-8) but sum in other orders (BLAS vs. torch's kernels). An entry of a gradient is a
sum of up to n = B*T*V = 1221 products (wte's), so one accumulation differs by ~sqrt(n) u = 2e-6 relative;
the two layers' backward passes chain a few such sums, amplified by softmax and layer norm's
conditioning (the spread weights give attention scores of ~10): ~10x. GRAD_RTOL = 1e-4 sits above that
(observed on these configs: at most 2.7e-6, loss differences <= 1e-6). A broken formula is off by 1e-2
or more.

The run: 50 AdamW steps (weight decay on matrices only, warmup + cosine, clipping at 1.0) from the same
initial weights on the same batches; the loss of every step must match torch's to 1e-5 relative
(float32 roundoff grows through Adam's updates, which normalise away the gradient's scale, so small
rounding differences in tiny gradients become lr-sized parameter differences; observed: 1.8e-7).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigpt2
from minigpt2 import checkpoint
from minigpt2.training import optim
from conftest import randomize_torch_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

GRAD_RTOL = 1e-4
LOSS_RTOL = 1e-5

CONFIGS = [  # (activation, scale_attn_weights, scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn, padding)
    ("gelu_new", True, False, False, False),
    ("gelu_new", True, True, True, True),
    ("gelu", False, False, False, True),
    ("gelu_fast", True, True, False, False),
    ("gelu_pytorch_tanh", True, False, True, True),
    ("relu", False, True, False, True),
    ("silu", True, False, False, True),
    ("quick_gelu", True, True, True, False),
    ("sigmoid", True, False, False, True),
    ("tanh", False, False, True, False),
    ("linear", True, False, False, True),
]


def torch_model(seed, spread=True, **config):
    cfg = transformers.GPT2Config(vocab_size=37, n_positions=16, n_embd=16, n_layer=2, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  attn_implementation="eager", **config)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(cfg)
    if spread:
        randomize_torch_model(model, seed)
    return model.eval()


def ours_from(hf):
    """A minigpt2 model holding copies of the torch model's weights."""
    config = minigpt2.GPT2Config.from_dict(hf.config.to_dict())
    flat = {k[len("transformer."):]: v.detach().numpy().copy() for k, v in hf.named_parameters()
            if k.startswith("transformer.")}
    return minigpt2.GPT2LMHeadModel(config, checkpoint.unflatten(flat))


def batch(seed, padding, B=3, T=11, V=37):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T))
    labels = ids.copy()
    labels[rng.random((B, T)) < 0.15] = -100
    mask = np.ones((B, T), np.int64)
    if padding:
        mask[1, :3] = 0  # left padding (its queries see only padding: torch's gradient there is kept too)
        mask[2, 8:] = 0  # right padding
        labels[mask == 0] = -100  # (a label predicted from a padded position stays: 4.57's numbers there are ours)
    return ids, labels, mask


def torch_grads(hf, ids, labels, mask):
    hf.zero_grad()
    out = hf(torch.tensor(ids), labels=torch.tensor(labels), attention_mask=torch.tensor(mask))
    out.loss.backward()
    return float(out.loss.detach()), {k: p.grad.numpy().copy() for k, p in hf.named_parameters()}


@pytest.mark.parametrize("act,scale,inverse,reorder,padding", CONFIGS)
def test_every_gradient_matches_torch(act, scale, inverse, reorder, padding):
    seed = CONFIGS.index((act, scale, inverse, reorder, padding))
    hf = torch_model(seed, activation_function=act, scale_attn_weights=scale,
                     scale_attn_by_inverse_layer_idx=inverse, reorder_and_upcast_attn=reorder)
    model = ours_from(hf)
    ids, labels, mask = batch(seed, padding)
    ref_loss, ref = torch_grads(hf, ids, labels, mask)
    loss, grads = model.loss_and_grad(ids, labels=labels, attention_mask=mask if padding else None)
    assert list(grads) == list(model.state_dict())
    assert grads["lm_head.weight"] is grads["transformer.wte.weight"]  # one matrix, tied
    assert abs(loss - ref_loss) <= 1e-5 * max(1.0, abs(ref_loss)), (loss, ref_loss)
    report, failed = [], []
    for name, g in grads.items():
        if name == "lm_head.weight":
            continue  # torch lists the tied matrix once, as transformer.wte.weight
        r = ref[name]  # transformers names them the same way ("transformer.h.0.attn.c_attn.weight", ...)
        diff, bound = float(np.abs(g - r).max()), GRAD_RTOL * float(np.abs(r).max())
        report.append(f"{name:40s} max|ref| {np.abs(r).max():9.3g}  max|diff| {diff:9.3g}  bound {bound:9.3g}")
        if not diff <= bound:
            failed.append(name)
    assert not failed, "gradients differ from torch's:\n" + "\n".join(report)


def test_no_decay_on_biases_and_layer_norms():
    model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10,
                                                         n_positions=8), seed=0)
    decayed = {k for k, v in model.state_dict().items() if optim.decays(k, v)}
    assert decayed == {k for k in model.state_dict() if k.endswith("weight") and ".ln_" not in k
                       and not k.startswith("transformer.ln_f")}
    assert "transformer.h.0.attn.c_attn.bias" not in decayed and "transformer.wpe.weight" in decayed


def test_training_run_matches_torch():
    """50 steps of AdamW with warmup, cosine decay, clipping and weight decay: the same loss at every step."""
    hf = torch_model(0, spread=False, activation_function="gelu_new")  # GPT-2's own initialisation
    model = ours_from(hf)
    params = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # the tied head is wte
    kw = dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ours = optim.AdamW(params, **kw)
    named = dict(hf.named_parameters())
    groups = [{"params": [p for k, p in named.items() if p.ndim >= 2], "weight_decay": 0.1},
              {"params": [p for k, p in named.items() if p.ndim < 2], "weight_decay": 0.0}]
    theirs = torch.optim.AdamW(groups, lr=1e-3, betas=kw["betas"], eps=kw["eps"])
    rng = np.random.default_rng(0)
    data = rng.integers(0, 37, 400)  # a little "corpus" with structure: runs of repeated tokens
    data = np.repeat(data, 3)[:600]
    steps, curve = 50, []
    for step in range(steps):
        starts = rng.integers(0, len(data) - 12, 4)
        ids = np.stack([data[s:s + 12] for s in starts])
        lr = optim.lr_at(step, max_lr=1e-2, warmup_steps=5, max_steps=steps)
        loss, grads = model.loss_and_grad(ids, labels=ids)
        optim.clip_grad_norm(grads, 1.0)
        ours.step(grads, lr=lr)
        theirs.zero_grad()
        ref = hf(torch.tensor(ids), labels=torch.tensor(ids)).loss
        ref.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        for group in theirs.param_groups:
            group["lr"] = lr
        theirs.step()
        curve.append((float(loss), float(ref.detach())))
    diffs = [abs(a - b) / abs(b) for a, b in curve]
    print(f"loss {curve[0][1]:.4f} -> {curve[-1][1]:.4f}; max relative difference to torch {max(diffs):.3g}")
    assert curve[-1][1] < curve[0][1] - 1.0, "the run should learn something (else it tests little)"
    bad = [(i, a, b) for i, (a, b) in enumerate(curve) if abs(a - b) > LOSS_RTOL * abs(b)]
    assert not bad, f"losses differ from torch's at steps {bad[:5]} (max relative diff {max(diffs):.3g})"


# -- the training loop, the data, the checkpoints, the CLI ---------------------------------------------------

TINY_TRAIN = dict(n_layer=1, n_head=2, n_embd=16, n_positions=16)
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
TEXT = "The cat sat on the mat. The dog sat on the log. " * 40


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def tiny_trainer(tmp_path, corpus, **kw):
    from minigpt2.training import Trainer, TrainingArguments, prepare_tokens

    tok = minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
    model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(vocab_size=len(tok), **TINY_TRAIN, **NO_DROPOUT), seed=0)
    tokens = prepare_tokens(corpus, tmp_path / "data", tok, log=lambda *a: None)
    args = dict(out_dir=str(tmp_path / "out"), max_steps=6, batch_size=2, seq_len=8, eval_interval=3, eval_batches=2,
                sample_tokens=0, log_interval=1, warmup_steps=2)
    args.update(kw)
    logs = []
    return Trainer(model, tok, tokens, TrainingArguments(**args), log=logs.append), logs


def test_token_file_is_a_memmap_split_and_reused(tmp_path, corpus):
    from minigpt2.training import prepare_tokens

    tok = minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
    tokens = prepare_tokens(corpus, tmp_path / "d", tok, val_fraction=0.25, log=lambda *a: None)
    ids = tok.encode(TEXT) + [tok.eos_token_id]
    assert isinstance(tokens["train"], np.memmap) and tokens["train"].dtype == np.uint16
    assert list(tokens["train"]) + list(tokens["val"]) == ids
    assert len(tokens["val"]) == int(len(ids) * 0.25)
    said = []
    prepare_tokens(corpus, tmp_path / "d", tok, val_fraction=0.25, log=said.append)
    assert said == []  # unchanged sources: the files are reused, nothing tokenized


def test_resume_continues_exactly(tmp_path, corpus):
    straight, _ = tiny_trainer(tmp_path / "a", corpus)
    straight.train()
    first, _ = tiny_trainer(tmp_path / "b", corpus, max_steps=3)
    first.train()
    from minigpt2.training import Trainer, TrainingArguments

    resumed_model = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "b" / "out")
    second = Trainer(resumed_model, first.tokenizer, first.tokens,
                     TrainingArguments(**{**first.args.__dict__, "max_steps": 6}), log=lambda *a: None)
    second.load_state(tmp_path / "b" / "out")
    assert second.step == 3 and second.optimizer.t == 3
    second.train()
    for name, array in straight.model.state_dict().items():
        np.testing.assert_array_equal(second.model.state_dict()[name], array, err_msg=name)
    assert [s for s, _ in second.history["train"]] == list(range(1, 7))


def test_ctrl_c_saves_the_finished_step(tmp_path, corpus):
    import os
    import signal

    trainer, logs = tiny_trainer(tmp_path, corpus, max_steps=50, eval_interval=100)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a job started with `&`

    def log(line):
        logs.append(line)
        if "step 2/" in line:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would
    trainer.log = log
    trainer.train()
    assert trainer.step == 2
    import json
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["step"] == 2
    reloaded = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "out")
    np.testing.assert_array_equal(reloaded.params["wte"]["weight"], trainer.model.params["wte"]["weight"])
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_checkpoint_loads_in_transformers_with_the_same_logits(tmp_path, corpus):
    trainer, _ = tiny_trainer(tmp_path, corpus, max_steps=3)
    trainer.train()
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
    ids = np.array([[464, 3797, 3332, 319, 262, 2603]])
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    ours = trainer.model(ids).logits
    assert np.abs(ours - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_grad_accumulation_averages_micro_batches(tmp_path, corpus):
    """Two micro-batches of 2 give the gradient of the 4 rows together (every row counts 7 labels)."""
    trainer, _ = tiny_trainer(tmp_path, corpus, grad_accum=2, grad_clip=0.0)
    from minigpt2.training.data import random_batch

    rng = np.random.default_rng([0, 0])  # what train_step draws for step 0
    ids = np.concatenate([random_batch(trainer.tokens["train"], 2, 8, rng) for _ in range(2)])
    _, expected = trainer.model.loss_and_grad(ids)
    before = {k: v.copy() for k, v in trainer.params.items()}
    seen = {}
    trainer.optimizer.step = lambda grads, lr: seen.update(grads)
    trainer.train_step()
    for k in before:
        np.testing.assert_allclose(seen[k], expected[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_dropout_in_training_mode_only(tmp_path):
    cfg = minigpt2.GPT2Config(vocab_size=50, resid_pdrop=0.3, embd_pdrop=0.3, attn_pdrop=0.3, **TINY_TRAIN)
    model = minigpt2.GPT2LMHeadModel(cfg, seed=0)
    ids = np.arange(10)[None] % 50
    eval_loss, _ = model.loss_and_grad(ids)
    assert eval_loss == pytest.approx(float(model(ids, labels=ids).loss), rel=1e-6)
    model.train()
    a, ga = model.loss_and_grad(ids, rng=1)
    b, gb = model.loss_and_grad(ids, rng=1)
    c, _ = model.loss_and_grad(ids, rng=2)
    assert a == b and all(np.array_equal(ga[k], gb[k]) for k in ga)  # seedable
    assert a != c and a != eval_loss
    model.eval()
    assert model.loss_and_grad(ids, rng=1)[0] == eval_loss


def test_cli_trains_and_the_checkpoint_generates(tmp_path, corpus, capsys):
    from minigpt2.cli import main

    out = tmp_path / "out"
    assert main(["train", "--data", str(corpus), "--out", str(out), "--max-steps", "4", "--n-layer", "1",
                 "--n-head", "2", "--n-embd", "16", "--seq-len", "8", "--batch-size", "2", "--eval-interval", "2",
                 "--sample-tokens", "3", "--log-interval", "2"]) == 0
    text = capsys.readouterr().out
    assert "step 4/4" in text and "tok/s" in text and "validation loss" in text and "sample:" in text
    assert main(["-m", str(out), "-n", "3", "--greedy", "The cat"]) == 0
    assert capsys.readouterr().out.startswith("The cat")
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "6", "--sample-tokens", "0"]) == 0
    assert "step 6/6" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--max-steps", "0"], "--max-steps"),
    (["--max-steps", "3", "--lr", "-1"], "--lr"),
    (["--max-steps", "3", "--n-embd", "10", "--n-head", "4"], "multiple of --n-head"),
    (["--max-steps", "3", "--model", "x", "--resume"], "pick one"),
])
def test_cli_bad_flags_are_usage_errors(tmp_path, corpus, capsys, argv, message):
    from minigpt2.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(corpus), "--out", str(tmp_path / "o"), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_cli_errors_name_the_problem(tmp_path, capsys):
    from minigpt2.cli import main

    assert main(["train", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o"),
                 "--max-steps", "2"]) == 1
    assert "missing.txt" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "o"), "--resume", "--max-steps", "2"]) == 1
    assert "no trainer_state.json" in capsys.readouterr().err


def test_the_word_train_after_double_dash_is_a_prompt():
    from minigpt2.cli import build_parser

    assert build_parser().parse_args(["--", "train"]).prompt == ["train"]


def test_data_shorter_than_a_sequence_fails_before_a_sample_and_samples_fit_the_model(tmp_path, corpus):
    from minigpt2.training import Trainer, TrainingArguments

    trainer, _ = tiny_trainer(tmp_path, corpus)
    short = {"train": trainer.tokens["train"][:5], "val": trainer.tokens["val"]}
    with pytest.raises(ValueError, match="the training data holds 5 tokens, fewer than one sequence of seq_len 8"):
        Trainer(trainer.model, trainer.tokenizer, short, trainer.args)
    said = []  # validation data shorter than a sequence: evaluate() reads the training data, and the log says so
    few = {"train": trainer.tokens["train"], "val": trainer.tokens["val"][:3]}
    assert Trainer(trainer.model, trainer.tokenizer, few, trainer.args, log=said.append).evaluate() > 0
    assert [line for line in said if line.startswith("the validation data holds 3 tokens, fewer than one sequence "
                                                     "of seq_len 8: the validation loss is measured on the training "
                                                     "data")], said
    said.clear()
    Trainer(trainer.model, trainer.tokenizer, trainer.tokens, trainer.args, log=said.append)
    assert not [line for line in said if "validation data" in line], said
    n_positions = trainer.model.config.n_positions
    # More new tokens than the model has positions: cut to those left after the prompt (generate would refuse)
    assert isinstance(trainer.sample(max_new_tokens=n_positions + 20), str)
