"""Training as a new user meets it, against the reference: torch.optim.AdamW's checks of its settings, the CLI's
flags typed as argparse accepts them (abbreviated), and the trainer's inputs.

Each test here failed before its fix (see the docstrings).
"""
from __future__ import annotations

import numpy as np
import pytest

from minigpt2.training import AdamW
from test_training import corpus  # noqa: F401 (corpus: fixture)
from test_training_more import CLI_TINY, cli, one_line

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
