"""A new user's first runs, on a machine unlike the developers' (helper pass 15):

1. `train` whose --out disk fills up while saving said only "[Errno 28] No space left on device": a write that fills
   the disk names no file, so the error did not say that --out was the problem, nor the way out
2. `python -m minigpt2.doctor`, the pre-flight check run as its module, printed nothing and exited 0: "ready", having
   checked nothing
3. a tutorial that finds the room's tiny checkpoint made private by another user's umask said "another user's": not
   whose, nor the chmod that shares it, which tutorials/README.md promises ("named with its owner and the chmod")
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


# -- 3. the room's tiny checkpoint, private to another user -------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown to another user needs root")
def test_a_tiny_checkpoint_another_user_made_private_is_named_with_owner_and_chmod(tmp_path, monkeypatch, capsys):
    import pwd

    sys.path.insert(0, os.path.join(ROOT, "tutorials"))
    import _workshop

    other = next((p for p in pwd.getpwall() if p.pw_uid not in (0, os.getuid())), None)
    if other is None:
        pytest.skip("no other user on this machine")
    shared = tmp_path / "room"
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(shared))
    monkeypatch.setattr(_workshop, "own_workshop_cache_dir", lambda: str(tmp_path / "own"))
    private = _workshop.tiny_checkpoint_dir()  # made by "them" (root reads anything: told it cannot, below)
    for folder, _, files in os.walk(private):
        for path in [folder] + [os.path.join(folder, f) for f in files]:
            os.chown(path, other.pw_uid, other.pw_gid)
            os.chmod(path, 0o700 if path == folder else 0o600)
    monkeypatch.setattr(_workshop, "readable_checkpoint", lambda path: not path.startswith(str(shared)))
    assert _workshop.tiny_checkpoint_dir().startswith(str(tmp_path / "own"))
    out = capsys.readouterr().out
    assert f"user {other.pw_name} made it private" in out, out
    assert f"user {other.pw_name} runs chmod -R a+rX {private}" in out, out
