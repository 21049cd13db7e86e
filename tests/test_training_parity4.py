"""Training as an HF / torch user writes it: AdamW on model.state_dict() (a tied head, a loaded checkpoint's
read-only weights, torch's defaults), the Trainer's inputs checked before the first step, 16-bit and int8
checkpoints (widened to float32 to train, said so), transformers' TrainingArguments names, and the CLI with a
checkpoint that has no tokenizer files, an --out that is a file, a run missing its optimizer state.

Each test here failed before its fix (see the docstrings): a double AdamW step on the tied matrix, NumPy's
"output array is read-only", a KeyError, a "training diverged ... lower the learning rate" for seq_len 1,
an IndexError / KeyError / AttributeError deep in the loop, "[Errno 20] Not a directory: 'x/data'".
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import minigpt2
from minigpt2.training import AdamW, Trainer, TrainingArguments, make_trainable
from conftest import write_hf_checkpoint
from test_training import TINY_TRAIN, corpus  # noqa: F401 (corpus: fixture)
from test_training_more import CLI_TINY, cli, one_line

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def tiny_model(vocab_size=300, **config):
    return minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(vocab_size=vocab_size, **{**TINY_TRAIN, **config}), seed=0)


# -- AdamW as torch.optim.AdamW is used ------------------------------------------------------------------------

def test_adamw_steps_a_tied_matrix_once():
    """AdamW(model.state_dict()): the tied lm_head.weight is wte itself, and one parameter (torch lists it once).
    Before: updated under both names, so wte moved 2 lr per step instead of lr."""
    ids = np.random.default_rng(0).integers(0, 300, (2, 8))
    both, once = tiny_model(), tiny_model()
    opt_both = AdamW(both.state_dict(), lr=1e-2)
    opt_once = AdamW(dict(once.named_parameters()), lr=1e-2)  # (named_parameters lists the tied matrix once)
    for _ in range(3):
        opt_both.step(both.loss_and_grad(ids)[1])
        opt_once.step(once.loss_and_grad(ids)[1])
    for name, p in once.state_dict().items():
        assert np.array_equal(both.state_dict()[name], p), name
    assert "lm_head.weight" not in opt_both.params and len(opt_both.state_dict()) == len(opt_once.state_dict())


def test_adamw_names_make_trainable_for_a_loaded_checkpoint(hf_tiny_checkpoint):
    """A loaded checkpoint's weights are read-only memory maps. Before: NumPy's "output array is read-only" from
    inside AdamW.step; now a TypeError at AdamW(...) naming the parameter and make_trainable."""
    model = minigpt2.GPT2LMHeadModel.from_pretrained(hf_tiny_checkpoint)
    with pytest.raises(TypeError, match=r"transformer\.wte\.weight is a read-only float32 array.*make_trainable"):
        AdamW(model.state_dict())
    opt = AdamW(make_trainable(model).state_dict())
    before = model.state_dict()["transformer.h.0.mlp.c_fc.weight"].copy()
    opt.step(model.loss_and_grad(np.array([[1, 2, 3, 4]]))[1])
    assert not np.array_equal(model.state_dict()["transformer.h.0.mlp.c_fc.weight"], before)


def test_adamw_has_torchs_defaults():
    """lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01 (before: nanoGPT's 3e-4, (0.9, 0.95), 0.1,
    undocumented; the Trainer passes its own arguments either way)."""
    ours = inspect.signature(AdamW).parameters
    theirs = inspect.signature(torch.optim.AdamW).parameters
    for name in ("lr", "betas", "eps", "weight_decay"):
        assert ours[name].default == theirs[name].default, name


def test_adamw_step_without_a_gradient_names_it():
    """Before: a bare KeyError('transformer.wte.weight'), after counting the step."""
    model = tiny_model()
    opt = AdamW(model.state_dict())
    grads = model.loss_and_grad(np.array([[1, 2, 3]]))[1]
    del grads["transformer.wte.weight"], grads["lm_head.weight"]
    with pytest.raises(ValueError, match=r"no gradient for \['transformer\.wte\.weight'\]"):
        opt.step(grads)
    assert opt.t == 0


# -- the Trainer's inputs, checked before the first step ------------------------------------------------------

IDS = np.random.default_rng(0).integers(0, 300, 2000)


@pytest.mark.parametrize("tokens,kw,message", [
    (IDS, {}, r"tokens must be a dict \{'train': ids, 'val': ids\}.*got ndarray"),  # before: IndexError
    ({"train": IDS}, {}, r"got a dict with keys \['train'\]"),  # before: KeyError 'val' after the first step
    ({"train": IDS.reshape(20, 100), "val": IDS}, {}, r"tokens\['train'\] must be a 1-d array.*\(20, 100\)"),
    ({"train": IDS + 300, "val": IDS}, {}, r"token id 599, but the model's vocab_size is 300"),  # before: mid-run
    ({"train": IDS, "val": IDS}, {"seq_len": 1}, r"seq_len must be at least 2"),  # before: "training diverged"
    ({"train": IDS, "val": IDS}, {"beta1": "0.9"}, r"beta1 must be a number in \[0, 1\), got '0.9'"),  # TypeError
])
def test_trainer_inputs_fail_before_the_first_step(tmp_path, tokens, kw, message):
    args = TrainingArguments(**{"out_dir": str(tmp_path / "out"), "max_steps": 2, "batch_size": 2, "seq_len": 8,
                                "sample_tokens": 0, **kw})
    with pytest.raises(ValueError, match=message):
        Trainer(tiny_model(), None, tokens, args, log=lambda *a: None)
    assert not (tmp_path / "out").exists()


def test_samples_without_a_tokenizer_fail_before_training(tmp_path):
    """Before: AttributeError 'NoneType' object has no attribute 'encode', from the first sample."""
    args = TrainingArguments(out_dir=str(tmp_path / "out"), max_steps=2, batch_size=2, seq_len=8, sample_tokens=5)
    with pytest.raises(ValueError, match="the samples need a tokenizer"):
        Trainer(tiny_model(), None, {"train": IDS, "val": IDS}, args)


def test_transformers_training_arguments_names_get_ours():
    """Before: TrainingArguments.__init__() got an unexpected keyword argument 'output_dir'."""
    with pytest.raises(TypeError, match="output_dir -> out_dir, learning_rate -> lr"):
        TrainingArguments(output_dir="x", learning_rate=1e-4)
    assert TrainingArguments(out_dir="x", lr=1e-4).lr == 1e-4
    assert list(inspect.signature(TrainingArguments).parameters)[:2] == ["out_dir", "max_steps"]


@pytest.mark.parametrize("options,fmt", [({"torch_dtype": "float16"}, "float16"), ({"load_in_8bit": True}, "int8")])
def test_16_bit_and_int8_models_train_as_a_float32_copy_and_say_so(tmp_path, options, fmt):
    """The Trainer widens the weights (one step's update is far below 16-bit resolution) and says so; the
    checkpoint is float32 and loads in transformers with the same logits. loss_and_grad alone names the way.
    Before: the widening was silent."""
    src = tmp_path / "src"
    write_hf_checkpoint(src, vocab_size=300)
    model = minigpt2.GPT2LMHeadModel.from_pretrained(str(src), **options)
    with pytest.raises(TypeError, match=r"needs float32 weights.*model\.float\(\)"):
        model.loss_and_grad(IDS[:8])
    logs = []
    args = TrainingArguments(out_dir=str(tmp_path / "out"), max_steps=2, batch_size=2, seq_len=8, sample_tokens=0,
                             eval_batches=1)
    Trainer(model, None, {"train": IDS, "val": IDS}, args, log=logs.append).train()
    assert (f"the model's weights are {fmt}: they are widened to float32, in place, to train (the model is float32 "
            f"from now on, and its checkpoints are saved in float32)") in logs
    assert model.dtype == "float32"  # (the message said "a float32 copy": it is the model itself)
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "out"), attn_implementation="eager").eval()
    assert hf.dtype == torch.float32
    ids = IDS[:8][None]
    assert np.abs(hf(torch.tensor(ids)).logits.detach().numpy() - model(ids).logits).max() < 1e-5


# -- the command line ---------------------------------------------------------------------------------------

def test_cli_fine_tunes_a_checkpoint_without_tokenizer_files(tmp_path, corpus, capsys):
    """transformers' save_pretrained(model) writes no tokenizer; -m MODEL then uses GPT-2's, and so does train
    now (before: "holds no GPT-2 vocabulary", with no flag to give one). A checkpoint whose vocabulary is
    smaller than GPT-2's is refused before tokenizing, naming both sizes."""
    full, small = tmp_path / "full", tmp_path / "small"
    write_hf_checkpoint(full, vocab_size=50257, n_embd=8, n_head=2, n_layer=1)
    write_hf_checkpoint(small, vocab_size=99)
    tiny = ["--seq-len", "8", "--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "0"]
    assert cli("train", "--data", str(corpus), "--model", str(full), "--out", str(tmp_path / "a"), "--max-steps",
               "1", *tiny) == 0
    assert "has no tokenizer files: using GPT-2's vocabulary" in capsys.readouterr().err
    assert os.path.isfile(tmp_path / "a" / "vocab.json")
    assert minigpt2.AutoTokenizer.from_pretrained(str(tmp_path / "a")).vocab_size == 50257
    assert cli("train", "--data", str(corpus), "--model", str(small), "--out", str(tmp_path / "b"), "--max-steps",
               "1", *tiny) == 1
    err = capsys.readouterr().err
    assert "has vocab_size 99, but the tokenizer has 50257 tokens" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_cli_out_that_is_a_file(tmp_path, corpus, capsys):
    """Before: "[Errno 20] Not a directory: 'x/data'", after tokenizing."""
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    assert cli("train", "--data", str(corpus), "--out", str(out), "--max-steps", "1", *CLI_TINY) == 1
    assert f"--out {out} is a file; checkpoints go in a directory" in one_line(capsys.readouterr().err)
    assert out.read_text() == "keep me"


def test_resume_without_the_optimizer_state_says_what_to_do(tmp_path, corpus, capsys):
    """Before: "[Errno 2] No such file or directory: '.../optimizer.safetensors'"."""
    out = tmp_path / "run"
    assert cli("train", "--data", str(corpus), "--out", str(out), "--max-steps", "1", *CLI_TINY) == 0
    os.remove(out / "optimizer.safetensors")
    capsys.readouterr()
    assert cli("train", "--out", str(out), "--resume", "--max-steps", "2") == 1
    line = one_line(capsys.readouterr().err)
    assert "has trainer_state.json but no optimizer.safetensors" in line and f"--model {out} --out NEW_DIR" in line
