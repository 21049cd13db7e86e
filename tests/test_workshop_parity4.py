"""One server, many workshop users (round 4): a shared Hugging Face cache another user filled, the kernel choice's
cache file damaged in ways that are still JSON, the tutorials' environment variables with bad values, and a
read-only home. Tests run as root, who may write anywhere: where permissions matter, the refusal is simulated
as the kernel would give it to a user (as tests/test_tutorials.py does)."""
from __future__ import annotations

import errno
import json
import os
import sys

import numpy as np
import pytest

import minigpt2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tutorials"))


@pytest.fixture
def workshop(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(tmp_path / "cache"))
    for name in ("MINIGPT2_EXERCISES", "MINIGPT2_EXERCISE_LOG", "MINIGPT2_WORKSHOP_MODEL", "MINIGPT2_NO_FIGURES"):
        monkeypatch.delenv(name, raising=False)
    import _workshop

    return _workshop


def gpt2_in_hf_cache(cache, repo="openai-community/gpt2"):
    """The layout huggingface_hub leaves after downloading a checkpoint: refs/main -> snapshots/<commit>/files."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"weights")


# -- the doctor and a shared, read-only Hugging Face cache -----------------------------------------------------------
def test_the_doctor_passes_a_shared_hf_cache_that_holds_gpt2_though_it_is_read_only(tmp_path, monkeypatch):
    """The instructor downloads GPT-2 into one HF_HOME for the room (chmod 1777, umask 022): the participants read
    it (online and offline, from the API, the CLI and the tutorials) but cannot write into it. The doctor said
    "[FAIL] caches: the Hugging Face cache ... is not writable; fix: set HF_HUB_CACHE to a directory of your own":
    following it threw away the room's copy of GPT-2 (500 MB a participant, over the room's Wi-Fi)."""
    from minigpt2 import doctor

    shared = tmp_path / "hf" / "hub"
    gpt2_in_hf_cache(shared)
    monkeypatch.setenv("HF_HUB_CACHE", str(shared))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # (huggingface_hub, imported while it is set, stays offline)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never asked: GPT-2 is found in the cache first
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(tmp_path / "workshop"))
    monkeypatch.setenv("MINIGPT2_FIGURES", str(tmp_path / "figures"))
    writable = doctor._writable  # (root may write anywhere: refuse as the kernel refuses another user)
    monkeypatch.setattr(doctor, "_writable", lambda path: os.path.abspath(path) != str(shared) and writable(path))
    assert doctor.check_gpt2()[0] == doctor.OK
    status, text, fix = doctor.check_caches()
    assert status == doctor.OK, (text, fix)
    assert str(shared) in text and "read-only" in text, text
    # the same cache without GPT-2 is a failure still: nothing the tutorials need could be kept there
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    monkeypatch.setattr(doctor, "_writable", lambda path: os.path.abspath(path) != str(empty) and writable(path))
    status, text, fix = doctor.check_caches()
    assert status == doctor.FAIL and "HF_HUB_CACHE" in fix, (text, fix)


# -- the kernel choice's cache file --------------------------------------------------------------------------------
def _cache_file_with(tmp_path, monkeypatch, **changes):
    from minigpt2 import _tuning, backend

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    key = _tuning.cache_key(backend.get_num_threads())
    path = _tuning.cache_path(key)
    widest = _tuning.supported_variants()[-1]
    choice = {**{c: "numpy" for c in _tuning.CLASSES}, **{c: f"{widest}/nta" for c in _tuning._narrow_classes()}}
    content = {"key": key, "choice": choice, "measured": {}}
    for name, value in changes.items():
        if name == "choice":
            content["choice"] = {**choice, **value}
        else:
            content[name] = value
    os.makedirs(os.path.dirname(path))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f)
    return _tuning, path


@pytest.mark.parametrize("changes", [
    {"choice": {"layer_norm": "avx2"}},            # a variant without its prefetch kind
    {"choice": {"linear_1": "generic/nta/sideways"}},  # a walk that does not exist
    {"choice": {"gelu_new": ["numpy"]}},          # not a string at all
    {"measured": "fast"},                          # the timings, not a table
    {"measured": {"linear_1": [1, 2]}},
], ids=["no-prefetch", "bad-walk", "not-a-string", "measured-a-string", "measured-a-list"])
def test_a_kernel_cache_file_that_is_json_but_not_a_choice_is_measured_again(changes, tmp_path, monkeypatch):
    """A cache file that is valid JSON with this machine's key but a damaged choice (edited by hand, a disk error
    that kept the braces) crashed every model call of that user with IndexError or AttributeError, until they
    found and deleted ~/.cache/minigpt2/kernels-*.json. The module promises that a file that cannot be read only
    means measuring again."""
    from minigpt2 import backend

    if not backend.c_available():
        pytest.skip("no C core: no kernel choice to cache")
    _tuning, path = _cache_file_with(tmp_path, monkeypatch, **changes)
    widest = _tuning.supported_variants()[-1]
    measured = []

    def calibrate():
        measured.append(1)
        return {**{c: f"{widest}/nta" for c in _tuning.CLASSES},
                **{c: f"{widest}/keep" for c in _tuning._narrow_classes()}}, {}

    monkeypatch.setattr(_tuning, "calibrate", calibrate)
    plan = _tuning.calibrated()
    _tuning.describe(plan)  # every lookup the kernels and --info make
    assert measured == [1] and "just now" in plan.how
    with open(path, encoding="utf-8") as f:
        assert json.load(f)["choice"]["layer_norm"] == f"{widest}/nta", "the damaged file is replaced"
    assert _tuning.calibrated().how.startswith("measured on this machine, cached in")


# -- the tutorials' environment variables ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["keepgoing", "yes please", "continue"])
def test_a_misspelt_exercises_setting_is_named_with_the_allowed_values(value, workshop, monkeypatch):
    """MINIGPT2_EXERCISES=keepgoing (or any other word) silently meant "stop at the first failed check": a rehearsal
    or CI run stopped at the first blank with the exercise's message, never saying the setting was not read."""
    monkeypatch.setenv("MINIGPT2_EXERCISES", value)
    with pytest.raises(ValueError) as caught:
        workshop.check_answer("1.1", "x", np.zeros(2), np.ones(2))
    message = str(caught.value)
    assert "MINIGPT2_EXERCISES" in message and repr(value) in message and "keep-going" in message, message
    for good, stops in (("keep-going", False), ("1", False), ("", True), ("0", True), ("stop", True)):
        monkeypatch.setenv("MINIGPT2_EXERCISES", good)
        if stops:
            with pytest.raises(workshop.ExerciseFailed):
                workshop.check_answer("1.1", "x", np.zeros(2), np.ones(2))
        else:
            assert workshop.check_answer("1.1", "x", np.zeros(2), np.ones(2)) is not None


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan"])
def test_a_bad_training_budget_names_the_setting(value, monkeypatch):
    """Tutorial 10 read MINIGPT2_TRAIN_SECONDS with float(): "abc" stopped it with "could not convert string to float",
    naming neither the variable nor what it takes; "0" or "-5" trained for no time at all without a word."""
    import subprocess

    env = dict(os.environ, MINIGPT2_TRAIN_SECONDS=value, MINIGPT2_NO_FIGURES="1", MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", "10_training.py")], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "MINIGPT2_TRAIN_SECONDS" in last and repr(value) in last and "positive number of seconds" in last, last


def test_the_training_budget_reads_numbers(workshop, monkeypatch):
    monkeypatch.setenv("MINIGPT2_TRAIN_SECONDS", " 12.5 ")
    assert workshop.seconds_setting("MINIGPT2_TRAIN_SECONDS", 50) == 12.5
    monkeypatch.setenv("MINIGPT2_TRAIN_SECONDS", "")
    assert workshop.seconds_setting("MINIGPT2_TRAIN_SECONDS", 50) == 50.0


def test_no_figures_reads_no_as_no_and_names_the_allowed_values(workshop, monkeypatch, capsys):
    """MINIGPT2_NO_FIGURES=no (or false, off) skipped the figures: every value but "" and "0" counted as yes."""
    pytest.importorskip("matplotlib")
    for value in ("no", "false", "off", "0", ""):
        monkeypatch.setenv("MINIGPT2_NO_FIGURES", value)
        assert workshop.pyplot() is not None, value
    for value in ("1", "yes", "true", "on"):
        monkeypatch.setenv("MINIGPT2_NO_FIGURES", value)
        assert workshop.pyplot() is None, value
    monkeypatch.setenv("MINIGPT2_NO_FIGURES", "sometimes")
    with pytest.raises(ValueError) as caught:
        workshop.pyplot()
    assert "MINIGPT2_NO_FIGURES" in str(caught.value) and "'sometimes'" in str(caught.value)
    assert "1" in str(caught.value) and "0" in str(caught.value)


def test_a_figures_folder_that_cannot_be_made_is_named_and_the_tutorial_goes_on(workshop, monkeypatch, tmp_path,
                                                                                  capsys):
    """MINIGPT2_FIGURES naming a file (or a folder one cannot write) stopped the tutorial at its first figure with
    FileExistsError / PermissionError from os.makedirs, naming neither the variable nor what to do."""
    plt = pytest.importorskip("matplotlib.pyplot")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setattr(workshop, "FIGURES_DIR", str(blocked))
    fig = plt.figure()
    assert workshop.show(fig, "01_something") is None
    out = capsys.readouterr().out
    assert "MINIGPT2_FIGURES" in out and str(blocked) in out and "not saved" in out, out


def test_a_workshop_cache_that_is_a_file_gives_the_tiny_checkpoint_a_folder_of_ones_own(workshop, monkeypatch,
                                                                                          tmp_path, capsys):
    """MINIGPT2_WORKSHOP_CACHE naming a file (a typo, or another tool's file): load_model stopped with
    FileExistsError from os.makedirs, where an unwritable shared folder already fell back to one's own."""
    import tempfile

    from minigpt2 import doctor

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    own_temp = tmp_path / "temp"
    own_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own_temp))
    for root in (blocked, blocked / "below"):  # EEXIST, ENOTDIR
        monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(root))
        path = workshop.tiny_checkpoint_dir()
        assert os.path.dirname(path) == str(own_temp / f"minigpt2-workshop-{doctor.user()}")
        assert os.path.isfile(os.path.join(path, "model.safetensors"))
        out = capsys.readouterr().out
        assert str(root) in out and "MINIGPT2_WORKSHOP_CACHE" in out, out


# -- a read-only home -------------------------------------------------------------------------------------------
def test_a_read_only_home_is_not_told_to_put_its_hf_cache_in_home(monkeypatch, tmp_path):
    """With HOME read-only (a shared account, a locked-down lab machine), the download error suggested
    HF_HUB_CACHE=$HOME/hf-cache: the same read-only home. The kernel cache's message already avoided that."""
    from minigpt2 import hub

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    cache = home / ".cache" / "huggingface" / "hub"
    error = PermissionError(errno.EACCES, "Permission denied", str(home / ".cache"))
    message = hub._download_failure(error, "config.json of 'gpt2'", str(cache), str(home / ".cache" / "huggingface"))
    assert "HF_HUB_CACHE" in message and "$HOME/" not in message, message
    elsewhere = tmp_path / "srv" / "hub"
    message = hub._download_failure(PermissionError(errno.EACCES, "Permission denied", str(elsewhere)),
                                    "config.json of 'gpt2'", str(elsewhere), str(home / ".cache" / "huggingface"))
    assert "HF_HUB_CACHE=$HOME/" in message, message


# -- two users, one Hugging Face cache ------------------------------------------------------------------------------
def test_a_shared_cache_another_user_filled_serves_its_copy_when_a_download_cannot_write(tmp_path, monkeypatch):
    """Two participants download gpt2 into the room's HF_HOME (chmod 1777) at once: the second could not open the
    first one's lock file (0664, another user's) and stopped with "the Hugging Face cache ... is not a directory
    you can write. Set HF_HUB_CACHE to a directory of your own", although a second later the file was there to
    read. Any write refused by a cache another user owns (its lock files, refs/main, .no_exist) now falls back to
    the copy in the cache, as an unreachable Hub does."""
    import huggingface_hub

    from minigpt2 import hub

    cache = tmp_path / "hub"
    gpt2_in_hf_cache(cache)
    cached = str(cache / "models--openai-community--gpt2" / "snapshots" / ("0" * 40) / "config.json")
    lock = str(cache / ".locks" / "models--openai-community--gpt2" / "abc.lock")
    calls = []

    def hf_hub_download(repo_id, filename, local_files_only=False, **kwargs):
        calls.append(local_files_only)
        if not local_files_only:
            raise PermissionError(errno.EACCES, "Permission denied", lock)
        return cached

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(hub, "_unreachable", lambda endpoint, timeout=3.0: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert hub.resolve_file("openai-community/gpt2", "config.json") == cached
    assert calls == [False, True]


def test_a_download_refused_by_another_users_file_in_the_cache_names_that_user(tmp_path):
    """When the file is not in the cache yet (the other user is still downloading it), the error says whose file
    refused the write and that running again after their download reads it, not only "a directory of your own"."""
    from minigpt2 import hub

    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("giving a file to another user needs root")
    cache = tmp_path / "hub"
    lock = cache / ".locks" / "models--gpt2" / "abc.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    os.chown(lock, 54321, 54321)
    error = PermissionError(errno.EACCES, "Permission denied", str(lock))
    message = hub._download_failure(error, "config.json of 'gpt2'", str(cache), str(tmp_path / "hf_home"))
    assert "54321" in message and "run the same command again" in message and "HF_HUB_CACHE" in message, message
    # outside the cache (a read-only home above it), no owner is blamed
    home_error = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "no" / "cache"))
    assert "belongs to" not in hub._download_failure(home_error, "x", str(tmp_path / "no" / "cache" / "hub"),
                                                     str(tmp_path / "hf_home"))
