"""A new user's first runs, on a machine unlike the developers' (helper pass 15):

1. `train` whose --out disk fills up while saving said only "[Errno 28] No space left on device": a write that fills
   the disk names no file, so the error did not say that --out was the problem, nor the way out
2. `python -m minigpt2.doctor`, the pre-flight check run as its module, printed nothing and exited 0: "ready", having
   checked nothing; so did `python -m minigpt2.cli "prompt"`, generating nothing
3. a tutorial that finds the room's tiny checkpoint made private by another user's umask said "another user's": not
   whose, nor the chmod that shares it, which tutorials/README.md promises ("named with its owner and the chmod")
4. no home directory (HOME unset, and a user the password database does not know: a container's `--user 4242`, a
   service): the README's command ended in a 40-line traceback, huggingface_hub's "RuntimeError: Could not determine
   home directory", and the doctor said "[ ok ] caches writable: ~/.cache/huggingface/hub", having made the folders
   ~/.cache/huggingface/hub inside the current directory
5. a full disk under the kernel choice's folder: stderr said "[measuring ...; the choice is cached in DIR]", then,
   seconds later, that it cannot be saved there (whether a file can be made was tried, not whether it can be written)
6. XDG_CACHE_HOME open to all (chmod 1777, as /tmp), which docs/cli.md says several users may share, each keeping a
   file of their own: the first user's minigpt2/ folder in it followed their umask (0755, 0700), so every other
   user's kernel choice "cannot be saved" and was measured again at every run
7. GPT-2 in a cache open to all, downloaded by a user whose umask 077 kept it from the others: their doctor said "GPT-2
   is not cached" (and offered to download it, or a mirror), where the command line says whose folder it is and the
   chmod that opens it
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

import minigpt2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(minigpt2.__file__)))  # (subprocesses run this one)

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--seq-len", "8", "--batch-size", "2",
        "--eval-batches", "1", "--sample-tokens", "0", "--log-interval", "1"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("The cat sat on the mat, and the dog ran far away from home. " * 40, encoding="utf-8")
    return path


# -- 1. a full disk under --out ----------------------------------------------------------------------------------------

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


# -- 2. python -m minigpt2.doctor --------------------------------------------------------------------------------------

def test_the_doctor_run_as_its_module_checks(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MINIGPT2_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), MINIGPT2_WORKSHOP_CACHE=str(tmp_path / "workshop"),
               MINIGPT2_FIGURES=str(tmp_path / "figures"), MINIGPT2_KERNEL="generic", PYTHONPATH=PACKAGE_PARENT)
    result = subprocess.run([sys.executable, "-m", "minigpt2.doctor"], env=env, cwd=tmp_path, text=True,
                            capture_output=True, timeout=120)
    assert "[ ok ] Python" in result.stdout, (result.returncode, result.stdout, result.stderr)
    assert result.stdout.splitlines()[-1].startswith(("ready: ", "NOT ready: "))
    assert result.returncode == (0 if result.stdout.splitlines()[-1].startswith("ready") else 1)
    assert "Traceback" not in result.stderr


def test_the_command_line_run_as_its_module_generates(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MINIGPT2_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), MINIGPT2_KERNEL="generic", PYTHONPATH=PACKAGE_PARENT)
    result = subprocess.run([sys.executable, "-m", "minigpt2.cli", "--tokenize", "Hello world"], env=env,
                            cwd=tmp_path, text=True, capture_output=True, timeout=120)
    assert result.returncode == 0 and "Ġworld" in result.stdout, (result.returncode, result.stdout, result.stderr)


# -- 3. the room's tiny checkpoint, private to another user ------------------------------------------------------------

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


# -- 4. no home directory ----------------------------------------------------------------------------------------------

@pytest.fixture
def no_home(monkeypatch, tmp_path):
    """As for a user that /etc/passwd does not know, with HOME unset: os.path.expanduser leaves "~" as it is."""
    import pwd

    def unknown(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", unknown)
    monkeypatch.chdir(tmp_path)
    assert os.path.expanduser("~") == "~"
    return tmp_path


def test_no_home_directory_is_one_line_naming_hf_home(no_home, monkeypatch, capsys):
    from minigpt2.cli import main

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # (nothing listens: the cache would be read)
    code = main(["-n", "1", "Hello"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, (code, err)
    assert "no home directory" in err and "HF_HOME" in err, err
    assert not os.path.exists(no_home / "~")


def test_the_doctor_says_there_is_no_home_for_the_cache(no_home, monkeypatch):
    from minigpt2 import doctor

    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(no_home / "workshop"))
    monkeypatch.setenv("MINIGPT2_FIGURES", str(no_home / "figures"))
    status, text, fix = doctor.check_caches()
    assert status == doctor.FAIL and "no home directory" in text and "HF_HUB_CACHE" in fix, (status, text, fix)
    assert not os.path.exists(no_home / "~")


# -- 5. the kernel choice on a full disk -------------------------------------------------------------------------------

QUICK_CALIBRATION = """
import sys
from minigpt2 import _tuning
def calibrate():
    widest = _tuning.supported_variants()[-1] + "/nta"
    return {**{c: "numpy" for c in _tuning.CLASSES}, **{c: widest for c in _tuning._narrow_classes()}}, {}
_tuning.calibrate = calibrate
from minigpt2.__main__ import run
sys.exit(run())
"""


def test_a_kernel_cache_on_a_full_disk_is_never_said_to_be_cached(tmp_path):
    """A disk with room for a new file's name but not its bytes, made with RLIMIT_FSIZE (writing past 256 bytes fails,
    as a full disk's writes do; the choice takes more)."""
    resource = pytest.importorskip("resource")
    import signal

    from minigpt2 import backend

    if not backend.c_available():
        pytest.skip("the C core is not built: there is no kernel choice to cache")

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (a write past the limit then fails with EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256, 256))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MINIGPT2_"))}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1",
               PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=PACKAGE_PARENT)
    result = subprocess.run([sys.executable, "-c", QUICK_CALIBRATION, "--info"], env=env, cwd=tmp_path, text=True,
                            capture_output=True, timeout=120, preexec_fn=small_files)
    assert result.returncode == 0, result.stderr
    assert "the kernel choice cannot be saved in" in result.stderr, result.stderr
    assert "the choice is cached in" not in result.stderr, result.stderr
    assert "not saved" in result.stdout
    assert os.listdir(tmp_path / "xdg" / "minigpt2") == []  # (no partial file left)


# -- 6. XDG_CACHE_HOME open to all -------------------------------------------------------------------------------------

def test_the_kernel_folder_in_a_cache_open_to_all_is_open_to_all(tmp_path):
    from minigpt2 import shared_cache

    shared = tmp_path / "room-cache"
    shared.mkdir()
    shared.chmod(0o1777)
    old = os.umask(0o077)
    try:
        shared_cache.make_cache_folder(str(shared / "minigpt2"))
    finally:
        os.umask(old)
    assert oct((shared / "minigpt2").stat().st_mode & 0o7777) == oct(0o1777)


def test_a_link_in_a_cache_open_to_all_never_opens_what_it_points_to(tmp_path):
    from minigpt2 import shared_cache

    shared, private = tmp_path / "room-cache", tmp_path / "private"
    shared.mkdir()
    shared.chmod(0o1777)
    private.mkdir(mode=0o700)
    (shared / "minigpt2").symlink_to(private)  # (put there by another user of the room)
    shared_cache.make_cache_folder(str(shared / "minigpt2"))
    assert private.stat().st_mode & 0o7777 == 0o700


# -- 7. GPT-2 cached by another user, private to them ------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown to another user needs root")
def test_the_doctor_names_whose_private_gpt2_the_cache_holds(tmp_path, monkeypatch):
    import pwd

    from minigpt2 import doctor

    other = next((p for p in pwd.getpwall() if p.pw_uid not in (0, os.getuid())), None)
    if other is None:
        pytest.skip("no other user on this machine")
    cache = tmp_path / "hub"
    cache.mkdir()
    cache.chmod(0o1777)
    theirs = cache / "models--gpt2"
    (theirs / "snapshots").mkdir(parents=True)
    for path in (theirs, theirs / "snapshots"):
        os.chown(path, other.pw_uid, other.pw_gid)
        path.chmod(0o700)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: (  # (root may enter anything: as another user)
        False if str(path).startswith(str(theirs)) else real_access(path, mode, *a, **k)))
    status, text, fix = doctor.check_gpt2()
    assert status == doctor.WARN and "not readable to you" in text, (status, text, fix)
    assert f"user {other.pw_name}" in fix and f"chmod -R a+rX {theirs}" in fix, fix
