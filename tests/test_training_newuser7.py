"""Training as a new user meets it, against the reference: torch.optim.AdamW's checks of its settings, the CLI's
flags typed as argparse accepts them (abbreviated), and the trainer's inputs.

Each test here failed before its fix (see the docstrings).
"""
from __future__ import annotations

import numpy as np
import pytest

from minigpt2.training import AdamW
from test_training import corpus  # noqa: F401 (corpus: fixture)
from test_training_more import CLI_TINY, cli

torch = pytest.importorskip("torch")


# -- AdamW refuses what torch.optim.AdamW refuses -----------------------------------------------------------------

SETTINGS = [dict(lr=-1.0), dict(lr=float("nan")), dict(lr=0.0), dict(lr=float("inf")), dict(eps=-1e-8),
            dict(eps=0.0), dict(betas=(1.0, 0.9)), dict(betas=(0.9, 1.0)), dict(betas=(-0.1, 0.9)),
            dict(weight_decay=-0.1), dict(weight_decay=0.0)]


@pytest.mark.parametrize("setting", SETTINGS, ids=[str(s) for s in SETTINGS])
def test_adamw_refuses_the_settings_torch_refuses(setting):
    """A beta of 1, a negative or NaN lr, a negative eps or weight decay: torch.optim.AdamW raises a ValueError.
    Before: accepted, and the first step divided by 1 - beta1 = 0 (NaN weights) or climbed the loss."""
    try:
        torch.optim.AdamW([torch.zeros(2, requires_grad=True)], **setting)
    except ValueError:
        refused = True
    else:
        refused = False
    params = {"w": np.zeros((2, 2), np.float32)}
    if refused:
        name = next(iter(setting))
        with pytest.raises(ValueError, match=f"AdamW: {name}"):
            AdamW(params, **setting)
    else:
        AdamW(params, **setting)


# -- the CLI: a flag counts as typed however argparse matched it ---------------------------------------------------

def test_resume_takes_an_abbreviated_flag_as_argparse_reads_it(tmp_path, corpus, capsys):
    """argparse reads --batch 5 as --batch-size 5 (an unambiguous prefix); --resume keeps the saved settings except
    the typed ones. Before: only full names counted as typed, so the saved batch size 2 silently replaced the 5."""
    import json

    from minigpt2.training.cli import build_parser

    out = str(tmp_path / "out")
    assert cli("train", "--data", str(corpus), "--out", out, "--max-steps", "1", *CLI_TINY) == 0
    again = ["--out", out, "--resume", "--max-steps", "2", "--batch", "5", "--warmup", "1"]
    parsed = build_parser().parse_args(again)  # the reference: what argparse made of the words
    assert (parsed.batch_size, parsed.warmup_steps) == (5, 1)
    assert cli("train", *again) == 0
    with open(tmp_path / "out" / "trainer_state.json", encoding="utf-8") as f:
        saved = json.load(f)["args"]
    assert (saved["batch_size"], saved["warmup_steps"]) == (parsed.batch_size, parsed.warmup_steps)
    assert f"{5 * 8:,} tokens per step" in capsys.readouterr().out


def test_an_abbreviated_shape_flag_beside_model_is_refused(tmp_path, corpus, capsys):
    """--n-lay 3 is --n-layer 3 to argparse; beside --model (a checkpoint with its own shape) it must be refused like
    --n-layer 3. Before: accepted and silently ignored (the 1-layer checkpoint was trained)."""
    first = str(tmp_path / "first")
    assert cli("train", "--data", str(corpus), "--out", first, "--max-steps", "1", *CLI_TINY) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli("train", "--data", str(corpus), "--out", str(tmp_path / "second"), "--model", first, "--n-lay", "3",
            "--max-steps", "1", "--seq-len", "8", "--sample-tokens", "0")
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (argparse's usage, then the error)
    assert "--n-layer" in last and "--model" in last, last


# -- loss_and_grad's inputs ------------------------------------------------------------------------------------------

def test_loss_and_grad_of_an_empty_batch_names_input_ids():
    """A batch of no rows (shape (0, T)): one line naming input_ids' shape and what is allowed. Before: NumPy's
    "cannot reshape array of size 0 into shape (0,4,newaxis)" from inside the forward (transformers fails there too,
    in torch's reshape)."""
    import minigpt2

    model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(vocab_size=50, n_positions=8, n_embd=16, n_layer=1,
                                                         n_head=2), seed=0)
    with pytest.raises(ValueError, match=r"input_ids must have shape \(batch, seq\) with batch >= 1.*\(0, 4\)"):
        model.loss_and_grad(np.zeros((0, 4), np.int64))
