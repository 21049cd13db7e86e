"""A new user's first runs, on a machine unlike the developers' (helper pass 15):

1. `train` whose --out disk fills up while saving said only "[Errno 28] No space left on device": a write that fills
   the disk names no file, so the error did not say that --out was the problem, nor the way out
2. `python -m minigpt2.doctor`, the pre-flight check run as its module, printed nothing and exited 0: "ready", having
   checked nothing
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--seq-len", "8", "--batch-size", "2",
        "--eval-batches", "1", "--sample-tokens", "0", "--log-interval", "1"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("The cat sat on the mat, and the dog ran far away from home. " * 40, encoding="utf-8")
    return path


# -- 1. a full disk under --out ------------------------------------------------------------------------------------------

def test_train_on_a_full_disk_names_out_and_the_way_out(tmp_path, corpus, capsys, monkeypatch):
    """The disk fills as the checkpoint is written: the OSError a write to a full disk raises, which carries no file
    name. Before: `python -m minigpt2 train: error: [Errno 28] No space left on
    device`, naming neither --out nor a fix."""
    from minigpt2 import checkpoint
    from minigpt2.training.cli import main

    def full(f, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "_write", full)
    out = tmp_path / "out"
    assert main(["--data", str(corpus), "--out", str(out), "--max-steps", "1", *TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"--out {out} cannot be used: No space left on device" in err, err
    assert "on a disk with room for the checkpoints" in err, err
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]  # (no half-written file left)


# -- 2. python -m minigpt2.doctor ----------------------------------------------------------------------------------------

def test_the_doctor_run_as_its_module_checks(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MINIGPT2_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), MINIGPT2_WORKSHOP_CACHE=str(tmp_path / "workshop"),
               MINIGPT2_FIGURES=str(tmp_path / "figures"), MINIGPT2_KERNEL="generic")
    result = subprocess.run([sys.executable, "-m", "minigpt2.doctor"], env=env, cwd=tmp_path, text=True,
                            capture_output=True, timeout=120)
    assert "[ ok ] Python" in result.stdout, (result.returncode, result.stdout, result.stderr)
    assert result.stdout.splitlines()[-1].startswith(("ready: ", "NOT ready: "))
    assert result.returncode == (0 if result.stdout.splitlines()[-1].startswith("ready") else 1)
    assert "Traceback" not in result.stderr
