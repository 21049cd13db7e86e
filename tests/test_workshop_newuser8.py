"""The workshop on one shared server, as an instructor rehearses it (round 8): many Unix users, each with their own
caches, running the tutorials at the same time. Tests run as root, in this process where they can (fast)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minigpt2 import _tuning, backend

from test_workshop_parity4 import ROOT, workshop  # noqa: F401, E402 (workshop: a fixture; it puts tutorials/ on the path)


@pytest.mark.skipif(not backend.c_available(), reason="the C core is not built: nothing is measured")
def test_load_model_says_it_measures_the_kernels_before_a_new_users_first_model_call(workshop, monkeypatch, tmp_path,
                                                                                      capsys):
    """A participant's first model call measures the C core's kernels (20 to 50 s on the shared 2-core VM, where the
    CLI says "measuring this CPU's kernels once"). The tutorials said nothing: the cell after load_model stood
    silent for that long, in 01 (stu8b's run) as in any tutorial a participant starts with, which looks like a hang.
    Now load_model measures there and then, after one line saying so and where the choice is kept."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # a new user: nothing measured yet
    monkeypatch.setenv("MINIGPT2_WORKSHOP_MODEL", "tiny")
    monkeypatch.delenv("MINIGPT2_KERNEL", raising=False)
    monkeypatch.setattr(backend, "get_backend", lambda: "c")
    monkeypatch.setattr(_tuning, "_plan", None)  # (restored afterwards: other tests keep this process's choice)
    monkeypatch.setattr(_tuning, "_requested", None)
    measured = []

    def calibrate():  # the real one takes tens of seconds: what matters is when it runs
        print("<measuring>")
        measured.append(1)
        return {c: _tuning.NUMPY for c in list(_tuning.CLASSES) + _tuning._narrow_classes()}, {}

    monkeypatch.setattr(_tuning, "calibrate", calibrate)
    workshop.load_model("gpt2")
    out = capsys.readouterr().out
    assert measured == [1], "load_model did not measure the kernels: the first model call will, silently"
    said = out.index("measuring this CPU's kernels")
    assert said < out.index("<measuring>"), out
    assert str(tmp_path / "xdg" / "minigpt2") in out, out
    # the next tutorial (a new process: the choice is now cached) says nothing and measures nothing
    monkeypatch.setattr(_tuning, "_plan", None)
    workshop.load_model("gpt2")
    assert measured == [1] and "measuring" not in capsys.readouterr().out


def test_a_tiny_checkpoint_another_user_made_private_sends_the_next_user_to_a_folder_of_their_own(workshop, monkeypatch,
                                                                                               tmp_path, capsys):
    """The instructor made the shared workshop cache writable for the room (chmod 1777); the first participant, with
    umask 077, saved the tiny checkpoint there as a 0700 folder. Every other participant's load_model then stopped
    with a traceback: PermissionError: [Errno 1] Operation not permitted: '.../minigpt2-workshop/tmpXXXX' ->
    '.../tiny-gpt2-seed0-v0.1.0' (seen with two Unix users, stu8a then stu8b). Now they use a folder of their own, as
    when the shared folder is not writable. (Tests run as root: os.access refuses as the kernel refuses a user.)"""
    import tempfile

    from minigpt2 import doctor

    shared, own_temp = tmp_path / "shared", tmp_path / "temp"
    own_temp.mkdir()
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", str(own_temp))
    private = workshop.tiny_checkpoint_dir()  # the first participant's
    assert os.path.dirname(private) == str(shared)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if os.path.abspath(p).startswith(private)
                        else real_access(p, mode, *a, **k))
    model = workshop.load_model("tiny")
    path = workshop.tiny_checkpoint_dir()
    assert os.path.dirname(path) == str(own_temp / f"minigpt2-workshop-{doctor.user()}")
    assert os.path.isfile(os.path.join(path, "model.safetensors")) and model.config.n_layer == 2
    out = capsys.readouterr().out
    assert str(shared) in out and "not readable to you" in out and path.rsplit(os.sep, 1)[0] in out, out


def test_a_private_tiny_checkpoint_in_ones_own_folder_is_a_clear_error(workshop, monkeypatch, tmp_path):
    """With nowhere else to go, the error names the folder and the setting that fixes it (not a rename's EPERM)."""
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(workshop, "own_workshop_cache_dir", lambda: str(tmp_path / "cache"))
    private = workshop.tiny_checkpoint_dir()
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False)
    with pytest.raises(OSError, match="MINIGPT2_WORKSHOP_CACHE") as error:
        workshop.tiny_checkpoint_dir()
    assert os.path.dirname(private) in str(error.value) and "not readable to you" in str(error.value)


@pytest.mark.parametrize("setting", ["CC=/nonexistent", "no cc on PATH"])
def test_building_the_c_core_by_hand_without_a_compiler_says_so_in_one_line(setting, tmp_path):
    """docs/troubleshooting.md's `python csrc/build_kernels.py`, on a machine without a C compiler (CC naming none,
    or no gcc on PATH), ended in a 30-line cffi traceback: 'cffi.VerificationError: CompileError: command
    '/nonexistent' failed: No such file or directory'. Now one line names the compiler and what to install."""
    pytest.importorskip("setuptools")
    pytest.importorskip("cffi")
    env = dict(os.environ)
    env.pop("CC", None)
    if setting.startswith("CC="):
        env["CC"], named = "/nonexistent", "'/nonexistent'"
    else:
        env["PATH"], named = str(tmp_path / "empty-bin"), "C compiler"
    out = tmp_path / "package"
    out.mkdir()
    run = subprocess.run([sys.executable, os.path.join(ROOT, "csrc", "build_kernels.py"), str(out)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "no working C compiler" in run.stderr and named in run.stderr and "build-essential" in run.stderr
    assert os.listdir(out) == []


def test_figures_follow_minigpt2_figures_set_after_the_import(workshop, monkeypatch, tmp_path, capsys):
    """A figure that could not be saved says "set MINIGPT2_FIGURES to a folder of your own"; doing so in the running
    notebook (%env MINIGPT2_FIGURES=~/figures, or os.environ) changed nothing: the folder was read once, when
    _workshop was imported, so the next figure failed the same way until the kernel was restarted (README: the
    settings are "each read when it is used"). A leading ~ is the home directory, as in a shell."""
    plt = pytest.importorskip("matplotlib.pyplot")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("MINIGPT2_FIGURES", str(blocked))
    assert workshop.show(plt.figure(), "09_first") is None
    assert "set MINIGPT2_FIGURES to a folder of your own" in capsys.readouterr().out
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIGPT2_FIGURES", "~/figures")  # as the message says, without restarting
    path = workshop.show(plt.figure(), "09_second")
    assert path == str(tmp_path / "home" / "figures" / "09_second.png") and os.path.getsize(path) > 0
    monkeypatch.delenv("MINIGPT2_FIGURES")  # unset again: each user's own default folder
    monkeypatch.setattr(workshop, "FIGURES_DIR", str(tmp_path / "default"))
    assert workshop.show(plt.figure(), "09_third") == str(tmp_path / "default" / "09_third.png")


@pytest.mark.parametrize("argument", ["3", "11", "--verbose", "--notebok"])
def test_run_all_names_an_argument_it_does_not_know(argument):
    """`python tutorials/run_all.py 3` (for 03), a tutorial that does not exist, or a misspelt option ran nothing,
    printed an empty table and exited 1 without a word on what was wrong."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", "run_all.py"), argument],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert repr(argument) in run.stderr and "01, 02" in run.stderr and "--notebook" in run.stderr, run.stderr
    assert "tutorial " not in run.stdout  # no empty table


@pytest.mark.parametrize("paths", [[], ["nosuch.ipynb"], ["tutorials/03_layer_norm_and_gelu.py"]], ids=str)
def test_run_all_notebook_refuses_what_is_not_a_notebook(paths):
    """`run_all.py --notebook` with no path ran nothing and exited 0 (all well); a misspelt path was a
    FileNotFoundError traceback (or nbformat's on a .py file). Now: one line, exit 2, before any kernel starts."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", "run_all.py"), "--notebook", *paths],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert (repr(paths[0]) if paths else "no notebook given") in run.stderr and ".ipynb" in run.stderr


def test_run_all_notebook_without_nbclient_says_what_to_install():
    """Without Jupyter's nbclient (a venv with only the package), --notebook was a ModuleNotFoundError traceback."""
    code = ("import sys, runpy; sys.modules['nbclient'] = None; sys.argv = ['run_all.py', '--notebook', "
            "'tutorials/03_layer_norm_and_gelu_solution.ipynb']; runpy.run_path('tutorials/run_all.py', "
            "run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "nbclient" in run.stderr and "pip install" in run.stderr, run.stderr


@pytest.mark.parametrize("argument", ["--chek", "check", "01_tokenization.py"])
def test_notebooks_py_does_not_take_a_typo_for_write_mode(argument):
    """`python tutorials/notebooks.py --chek` rewrote every notebook from its source (write mode is the default),
    over a participant's edits in their copy; now it is one line naming the argument and the two usages."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", "notebooks.py"), argument],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert repr(argument) in run.stderr and "--check" in run.stderr and run.stdout == "", run.stderr


def test_a_workshop_cache_given_with_a_tilde_is_in_the_home_directory(workshop, monkeypatch, tmp_path):
    """MINIGPT2_WORKSHOP_CACHE=~/workshop set where no shell expands it (%env in a notebook, /etc/environment, a
    Jupyter kernel's env) made a folder named '~' in the current directory: inside the participant's tutorials/."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", "~/workshop")
    monkeypatch.chdir(tmp_path)
    path = workshop.tiny_checkpoint_dir()
    assert os.path.dirname(path) == str(tmp_path / "home" / "workshop")
    assert os.path.isfile(os.path.join(path, "model.safetensors")) and not (tmp_path / "~").exists()


def test_a_figure_is_replaced_whole_or_not_at_all(workshop, monkeypatch, tmp_path, capsys):
    """show() wrote the PNG in place. Two runs saving the same figure at once (the script and the notebook, or two
    participants sharing one account) left a PNG mixed from both: 'broken data stream when reading image file'
    (seen with two processes saving 04_same_name 15 times each); a save that failed half-way (a full disk) left a
    truncated file where the last good figure was. Now the figure is written beside it and renamed over it."""
    plt = pytest.importorskip("matplotlib.pyplot")
    monkeypatch.setenv("MINIGPT2_FIGURES", str(tmp_path))
    good = workshop.show(plt.figure(), "04_heads")
    before = open(good, "rb").read()
    assert before.startswith(b"\x89PNG")
    fig = plt.figure()
    real_savefig = fig.savefig

    def savefig_until_the_disk_is_full(fname, **kwargs):
        import io

        buffer = io.BytesIO()
        real_savefig(buffer, **{**kwargs, "format": "png"})
        with open(fname, "wb") as f:
            f.write(buffer.getvalue()[:100])
        raise OSError(28, "No space left on device")

    fig.savefig = savefig_until_the_disk_is_full
    assert workshop.show(fig, "04_heads") is None
    assert "No space left on device" in capsys.readouterr().out
    assert open(good, "rb").read() == before  # the last good figure, whole
    assert sorted(os.listdir(tmp_path)) == ["04_heads.png"]  # and no half-written file left beside it


def test_a_checkpoint_folder_that_is_not_there_is_not_downloaded(workshop, monkeypatch, tmp_path, capsys):
    """MINIGPT2_WORKSHOP_MODEL naming a checkpoint folder that is not there (a typo, or another machine's path) said
    "model: downloading /srv/models/gpt2-local from the Hugging Face Hub (once; about 500 MB for gpt2) ..." and
    asked the Hub for it; a ~ set where no shell expands it (%env) was not the home directory. Now the folder's own
    error is the reason given, and ~/folder is looked for in the home directory."""
    from minigpt2 import GPT2Config, GPT2LMHeadModel

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # (never asked)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    missing = str(tmp_path / "models" / "gpt2-local")
    monkeypatch.setenv("MINIGPT2_WORKSHOP_MODEL", missing)
    assert workshop.load_model("gpt2").workshop_name == workshop.TINY
    out = capsys.readouterr().out
    assert "downloading" not in out and "HF_HUB_OFFLINE" not in out, out
    assert missing in out and "is not a directory" in " ".join(out.split()), out
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, n_positions=16), seed=0).save_pretrained(
        tmp_path / "home" / "mine")
    monkeypatch.setenv("MINIGPT2_WORKSHOP_MODEL", "~/mine")
    model = workshop.load_model("gpt2")
    assert model.config.n_layer == 1 and workshop.is_real(model)


# -- the doctor on a shared server (the rehearsal's findings) ----------------------------------------------------------
@pytest.fixture
def doctor_env(tmp_path, monkeypatch):
    from minigpt2 import __version__, doctor

    monkeypatch.setenv("MINIGPT2_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(doctor, "own_workshop_cache_dir", lambda: str(tmp_path / "own"))
    return doctor, f"tiny-gpt2-seed0-v{__version__}"


def test_the_doctor_passes_a_room_cache_whose_tiny_checkpoint_another_user_made_private(doctor_env, tmp_path,
                                                                                        monkeypatch):
    """User A (umask 077) made the tiny checkpoint in the room's cache: the tutorials then use a folder of B's own
    (f877b32), so for B that is no failure. The doctor said '[FAIL] ... exists but is not readable to you'."""
    doctor, name = doctor_env
    room = tmp_path / "room"
    (room / name).mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (room / name / f).write_text("A's")
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(room))
    readable = doctor.readable_checkpoint  # (root reads anything: refuse as the kernel refuses another user)
    monkeypatch.setattr(doctor, "readable_checkpoint", lambda path: not path.startswith(str(room)) and readable(path))
    status, text, fix = doctor.check_caches()
    assert status == doctor.OK and str(tmp_path / "own") in text, (text, fix)
    (tmp_path / "own" / name).mkdir(parents=True)  # B's own copy unreadable too: nowhere left to go
    (tmp_path / "own" / name / "config.json").write_text("")
    monkeypatch.setattr(doctor, "readable_checkpoint", lambda path: False)
    status, text, fix = doctor.check_caches()
    assert status == doctor.FAIL and "is not readable to you" in text and "MINIGPT2_WORKSHOP_CACHE" in fix


def test_the_doctor_reads_a_tilde_in_the_workshop_cache_as_the_home_folder(doctor_env, tmp_path, monkeypatch):
    doctor, _ = doctor_env
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", "~/workshop")
    monkeypatch.chdir(tmp_path)
    assert doctor.workshop_cache_dir() == str(tmp_path / "home" / "workshop")
    doctor.check_caches()
    assert not (tmp_path / "~").exists()  # (it made ./~/workshop)


def test_the_doctor_does_not_promise_a_download_into_a_cache_that_cannot_be_written(doctor_env, tmp_path,
                                                                                   monkeypatch):
    doctor, _ = doctor_env
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(doctor, "_gpt2_in_cache", lambda: None)
    monkeypatch.setattr("minigpt2.hub._unreachable", lambda endpoint, timeout=None: None)  # the Hub answers
    assert doctor.check_gpt2()[0] == doctor.OK
    monkeypatch.setattr(doctor, "_writable", lambda path: False)
    status, text, fix = doctor.check_gpt2()
    assert status == doctor.WARN and "not writable to you" in text and "HF_HUB_CACHE" in fix, (text, fix)
