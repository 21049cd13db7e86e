"""Fast checks of the workshop material. CI runs the tutorials themselves via .ci/tutorials.sh."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import minigpt2
from minigpt2 import GPT2Config, GPT2LMHeadModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = sorted(glob.glob(os.path.join(ROOT, "tutorials", "[0-9][0-9]_*.py")))


def test_tutorials_exist():
    assert TUTORIALS, "no tutorials/NN_*.py found"


def test_notebooks_match_their_sources():
    pytest.importorskip("jupytext")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", "notebooks.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", TUTORIALS, ids=os.path.basename)
def test_each_tutorial_chooses_its_model_in_one_variable(path):
    source = open(path, encoding="utf-8").read()
    assert 'MODEL = "gpt2"' in source and "load_model(MODEL" in source


def test_a_trace_belongs_to_its_thread():
    """Another thread's passes are not recorded into a trace, nor slowed by it; overlapping traces in two
    threads each get their own tensors and leave no trace installed afterwards."""
    import threading

    config = GPT2Config(n_layer=2, n_head=2, n_embd=8, vocab_size=11, n_positions=16)
    model = GPT2LMHeadModel(config, seed=0)
    inside, outside, results = threading.Event(), threading.Event(), {}

    def tracer(name, ids, wait_for=None, then=None):
        with minigpt2.trace() as t:
            model(np.array([ids]))
            if then is not None:
                then.set()
            if wait_for is not None:
                wait_for.wait(timeout=30)
        results[name] = t

    def untraced():
        inside.wait(timeout=30)
        results["untraced active"] = minigpt2.tracing.active()
        model(np.array([[1, 2, 3, 4, 5, 6, 7]]))
        outside.set()

    threads = [threading.Thread(target=tracer, args=("A", [1, 2, 3], outside, inside)),
               threading.Thread(target=untraced)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["untraced active"] is False
    assert results["A"]["embeddings"].shape == (1, 3, 8)  # not the other thread's 7 tokens
    assert not minigpt2.tracing.active()


def test_trace_names_and_helpers():
    config = GPT2Config(n_layer=2, n_head=2, n_embd=8, vocab_size=11, n_positions=16)
    model = GPT2LMHeadModel(config, seed=0)
    ids = np.array([[1, 2, 3, 4]])
    with minigpt2.trace() as t:
        out = model(ids, output_hidden_states=True)
    per_block = ["ln_1", "attn_probs", "attn", "resid_mid", "ln_2", "mlp", "out"]
    assert list(t) == ["embeddings", *[f"h.{i}.{n}" for i in range(2) for n in per_block], "ln_f"]
    assert t.n_layer == 2 and set(t.layer(1)) == set(per_block)
    assert t.stack("out").shape == (2, 1, 4, 8)
    np.testing.assert_array_equal(t["h.0.out"], out.hidden_states[1])
    np.testing.assert_array_equal(t["h.0.resid_mid"], t["embeddings"] + t["h.0.attn"])
    np.testing.assert_array_equal(t["h.0.out"], t["h.0.resid_mid"] + t["h.0.mlp"])
    assert "h.1.attn_probs" in repr(t)
    # Outside a trace nothing is recorded, and a trace's tensors are copies; tracing never changes the numbers.
    assert not minigpt2.tracing.active()
    t["ln_f"][...] = 0
    np.testing.assert_array_equal(model(ids).logits, out.logits)


@pytest.mark.parametrize("backend_name", ["numpy", "c"])
def test_asking_for_attentions_or_tracing_never_changes_the_numbers(backend_name):
    """The attention output comes from the active backend whether or not the probabilities are wanted (by
    output_attentions or a trace): bit-for-bit equal, the same kernels run on the same inputs. The probabilities
    come from one NumPy function on both backends; they differ between backends only through the rounding of
    the q and k projections (C and BLAS sum in different orders): a few float32 ulps of a probability <= 1,
    bounded here by 1e-6 (8 ulps of 1.0)."""
    if backend_name == "c" and not minigpt2.backend.c_available():
        pytest.skip("the C core is not built")
    config = GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=50, n_positions=64)
    model = GPT2LMHeadModel(config, seed=1)
    ids = np.random.default_rng(0).integers(0, 50, (2, 20))
    previous = minigpt2.backend.name
    minigpt2.backend.set_backend(backend_name)
    try:
        plain = model(ids).logits
        with_probs = model(ids, output_attentions=True)
        with minigpt2.trace() as t:
            traced = model(ids).logits
    finally:
        minigpt2.backend.set_backend(previous)
    np.testing.assert_array_equal(with_probs.logits, plain)
    np.testing.assert_array_equal(traced, plain)
    np.testing.assert_array_equal(t["h.1.attn_probs"], with_probs.attentions[1])
    minigpt2.backend.set_backend("numpy")
    try:
        numpy_probs = model(ids, output_attentions=True).attentions
    finally:
        minigpt2.backend.set_backend(previous)
    for ours, theirs in zip(with_probs.attentions, numpy_probs):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_api_reference_matches_the_docstrings():
    """docs/api.md is generated from the code; regenerate it with python docs/make_api.py."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "make_api.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- the workshop: exercises, their checks, the notebooks made from one source ------------------------------------
sys.path.insert(0, os.path.join(ROOT, "tutorials"))
WORKSHOP_TUTORIALS = [p for p in TUTORIALS if os.path.basename(p)[:2] in {f"0{i}" for i in range(1, 9)}]


@pytest.fixture
def workshop(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIGPT2_EXERCISES", raising=False)
    monkeypatch.delenv("MINIGPT2_EXERCISE_LOG", raising=False)
    monkeypatch.delenv("MINIGPT2_WORKSHOP_MODEL", raising=False)
    import _workshop

    return _workshop


@pytest.mark.parametrize("path", WORKSHOP_TUTORIALS, ids=os.path.basename)
def test_each_tutorial_has_exercises_and_both_variants_are_clean(path):
    import notebooks

    text = open(path, encoding="utf-8").read()
    numbers = notebooks.exercises(text)
    assert len(numbers) >= 2, f"{path}: a tutorial has a few exercises"
    assert numbers == sorted(numbers, key=lambda n: [int(x) for x in n.split(".")]), "numbered in reading order"
    participant, solution = notebooks.variant(text, "participant"), notebooks.variant(text, "solution")
    for variant in (participant, solution):
        assert "### BEGIN SOLUTION" not in variant and "### END SOLUTION" not in variant
        compile(variant, path, "exec")  # both run as Python
    assert "# BLANK" not in participant and "# BLANK" not in solution
    assert participant.count("...  # exercise") >= len(numbers)
    for n in numbers:
        assert f"exercise {n}: your code here" in participant and f"exercise {n}: your code here" not in solution
    assert notebooks.variant(solution, "participant") == solution  # nothing left to blank


def test_exercise_markup_errors_are_named():
    import notebooks

    good = '# BLANK x = ...\n### BEGIN SOLUTION 1.1\nx = 1\n### END SOLUTION 1.1\ncheck_answer("1.1", "x", x, 1)\n'
    assert notebooks.exercises(good) == ["1.1"]
    assert notebooks.variant(good, "participant") == 'x = ...\ncheck_answer("1.1", "x", x, 1)\n'
    assert notebooks.variant(good, "solution") == 'x = 1\ncheck_answer("1.1", "x", x, 1)\n'
    for broken, words in [(good.replace("### END SOLUTION 1.1\n", ""), "never ends"),
                          (good.replace("END SOLUTION 1.1", "END SOLUTION 1.2"), "does not close"),
                          (good.replace("# BLANK x = ...\n", ""), "no '# BLANK' line"),
                          (good.replace('check_answer("1.1"', 'check_answer("1.9"'), "no check_answer")]:
        with pytest.raises(notebooks.ExerciseMarkupError, match=words):
            notebooks.exercises(broken)


def test_difference_says_how_an_answer_differs(workshop):
    library = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    assert workshop.difference(library.copy(), library) == (None, " (largest difference 0.0e+00)")
    message = workshop.difference(library.T, library)[0]
    assert "shape (4, 3)" in message and "(3, 4)" in message and "transpose" in message
    assert "reshape" in workshop.difference(library.reshape(2, 6), library)[0]
    assert "keepdims" in workshop.difference(library[:, :1][:, 0], library[:, :1])[0]
    wrong = library.copy()
    wrong[2, 1] += 5
    assert "1 of 12 positions" in workshop.difference(wrong, library)[0]
    assert "position (2, 1): yours is 15, the library's 10" in workshop.difference(wrong, library)[0]
    assert "8 times the library's" in workshop.difference(library * 8, library)[0]  # a forgotten scale
    assert "not done yet" in workshop.difference(..., library)[0]
    masked = np.where(np.tri(3, 4, dtype=bool), library, -np.inf)
    assert "infinite or NaN" in workshop.difference(library, masked)[0]
    mask = np.tri(3, 3, dtype=bool)
    assert "position (0, 1): yours is True" in workshop.difference(np.ones((3, 3), bool), mask)[0]
    assert workshop.difference(["a", "b", "x"], ["a", "b", "c"])[0].startswith("item 2 differs")
    assert "yours has 2 items" in workshop.difference(["a", "b"], ["a", "b", "c"])[0]
    assert workshop.difference(1024, 1024)[0] is None and "1000" in workshop.difference(1000, 1024)[0]


def test_a_failed_check_stops_or_keeps_going(workshop, monkeypatch, tmp_path, capsys):
    expected = np.ones(3)
    with pytest.raises(workshop.ExerciseFailed, match=r"exercise 9.9 \(ones\): not done yet"):
        workshop.check_answer("9.9", "ones", ..., expected)
    assert workshop.check_answer("9.9", "ones", np.ones(3), expected) is not expected  # yours, when right
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("MINIGPT2_EXERCISES", "keep-going")
    monkeypatch.setenv("MINIGPT2_EXERCISE_LOG", str(log))
    assert workshop.check_answer("9.9", "ones", np.zeros(3), expected) is expected  # the library's, to go on
    assert "✗ exercise 9.9 (ones): values differ at 3 of 3 positions" in capsys.readouterr().out
    import json

    assert [json.loads(line)["passed"] for line in log.read_text().splitlines()] == [False]


def test_a_failed_check_shows_jupyter_its_message_not_a_traceback(workshop, capsys):
    """In a notebook a blank stops "Run all" at its check; what the learner sees is the message, not a traceback
    into _workshop.py (IPython renders an exception through its _render_traceback_)."""
    with pytest.raises(workshop.ExerciseFailed) as failed:
        workshop.check_answer("9.9", "ones", ..., np.ones(3))
    lines = failed.value._render_traceback_()
    assert "exercise 9.9 (ones): not done yet" in lines[0]
    assert not any("Traceback" in line or "_workshop" in line for line in lines)
    interactive = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactive.InteractiveShell.instance()
    shell.user_ns.update(_workshop=workshop, np=np)
    assert not shell.run_cell('_workshop.check_answer("9.9", "ones", ..., np.ones(3))').success
    shown = capsys.readouterr().out
    assert "exercise 9.9 (ones): not done yet" in shown and "_workshop.py" not in shown and "Traceback" not in shown


def test_a_check_on_masked_values_warns_nothing(workshop):
    """-inf where the library masks (top-k, top-p, the causal mask): a right answer passes without a
    RuntimeWarning, which Jupyter shows in red under a check that succeeded."""
    import warnings

    masked = np.array([[1.0, -np.inf, 2.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert workshop.check_answer("9.9", "masked", masked.copy(), masked) is not None


def test_check_function_names_the_case_and_the_blank(workshop):
    def my_square(x):
        y = ...
        return y * 2  # fails on the blank: TypeError

    my_square.__module__ = "__main__"  # as if defined in the tutorial being run
    with pytest.raises(workshop.ExerciseFailed) as failed:
        workshop.check_function("9.1", "squares", my_square, np.square, {"x = 3": (np.float32(3),)})
    assert "for x = 3" in str(failed.value) and "a `...` is still in my_square" in str(failed.value)
    with pytest.raises(workshop.ExerciseFailed, match=r"for x = 2: .* yours is 8, the library's 4"):
        workshop.check_function("9.1", "squares", lambda x: x ** 3, np.square,
                                {"x = 1": (np.ones(2),), "x = 2": (np.full(2, 2.0),)})
    rng_case = {"seed 0": lambda: (np.random.default_rng(0),)}  # fresh arguments for each call
    assert workshop.check_function("9.2", "draws", lambda g: g.random(3), lambda g: g.random(3), rng_case)


def test_speed_words_never_call_a_slowdown_a_speed_up(workshop):
    assert workshop.ratio_words(1.0, 1 / 2.5) == "the C core is 2.50x faster than NumPy"
    assert workshop.ratio_words(0.32, 1.0) == "the C core is 3.12x SLOWER than NumPy"
    assert "level" in workshop.ratio_words(1.0, 1.02)
    assert "over 3 runs" in workshop.spread(np.array([0.001, 0.002, 0.003]))


def test_run_all_runs_a_tutorial_its_blanks_and_figures(tmp_path):
    """tutorials/run_all.py on the quickest tutorial: solutions pass, blanks fail with messages, figures drawn."""
    pytest.importorskip("matplotlib")
    env = dict(os.environ, MINIGPT2_WORKSHOP_MODEL="tiny", MINIGPT2_WORKSHOP_CACHE=str(tmp_path), MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", "run_all.py"), "03"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "✗ exercise 3.1 (layer norm)" in result.stdout and "a `...` is still in my_layer_norm" in result.stdout
    assert "✓ exercise 3.2 (gelu_new)" in result.stdout
    assert "03_layer_norm_and_gelu" in result.stdout and " 2/2 " in result.stdout  # both figures drawn


def test_the_c_kernels_tutorial_without_a_c_core(tmp_path):
    """Installed without a C compiler: tutorial 08 still runs, draws its figures (NumPy's times, labelled so) and
    calls nothing a speed-up (it printed "numpy is 1.27x faster than NumPy", timing NumPy against itself, and
    run_all failed on the missing figure)."""
    pytest.importorskip("matplotlib")
    (tmp_path / "sitecustomize.py").write_text("import minigpt2.backend\nminigpt2.backend.c_available = lambda: False\n")
    env = dict(os.environ, MINIGPT2_WORKSHOP_MODEL="tiny", MINIGPT2_WORKSHOP_CACHE=str(tmp_path / "cache"),
               MPLBACKEND="Agg", MINIGPT2_BACKEND="numpy", PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", "run_all.py"), "08"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "C core built: False" in result.stdout and "No C core here" in result.stdout
    assert "faster than NumPy" not in result.stdout and "SLOWER than NumPy" not in result.stdout
    assert " 2/2 " in result.stdout


# -- files other users can read -------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_saved_checkpoints_follow_the_umask(umask, workshop, tmp_path):
    previous = os.umask(umask)
    try:
        target = tmp_path / "saved"
        GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=11, n_positions=8), seed=0) \
            .save_pretrained(target)
        tiny = workshop.tiny_checkpoint_dir()
    finally:
        os.umask(previous)
    for directory in (target, tiny):
        assert os.stat(directory).st_mode & 0o777 == 0o777 & ~umask, directory
        for name in ("config.json", "model.safetensors"):
            assert os.stat(os.path.join(directory, name)).st_mode & 0o777 == 0o666 & ~umask, (directory, name)
    assert not [f for f in os.listdir(target) if f.startswith(".tmp-")]


# -- one server, many participants -------------------------------------------------------------------------------
def test_each_user_gets_their_own_figures_folder(monkeypatch):
    """Every participant's figures have the same names: in one shared folder, the first user's 0755 folder made
    show() fail for everyone else with PermissionError (and a group-writable one mixed their figures)."""
    import importlib
    import tempfile

    monkeypatch.delenv("MINIGPT2_FIGURES", raising=False)
    import _workshop

    try:
        for name in ("alice", "bob"):
            monkeypatch.setenv("LOGNAME", name)  # what getpass.getuser() reads first
            assert importlib.reload(_workshop).FIGURES_DIR == os.path.join(tempfile.gettempdir(),
                                                                           f"minigpt2-figures-{name}")
        monkeypatch.setenv("MINIGPT2_FIGURES", "/somewhere/chosen")
        assert importlib.reload(_workshop).FIGURES_DIR == "/somewhere/chosen"
    finally:
        monkeypatch.undo()
        importlib.reload(_workshop)


def test_an_unwritable_shared_cache_gives_the_tiny_checkpoint_a_folder_of_ones_own(workshop, monkeypatch, tmp_path):
    """The first user's umask 022 made the shared workshop cache read-only to the others: whoever then lacked
    this version's tiny checkpoint stopped at load_model with PermissionError."""
    import tempfile

    from minigpt2 import doctor

    shared, own_temp = tmp_path / "shared", tmp_path / "temp"
    shared.mkdir()
    own_temp.mkdir()
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", str(own_temp))
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, dir=None, **kwargs):  # root ignores permissions: refuse as the kernel would a user
        if dir is not None and os.path.abspath(dir) == str(shared):
            raise PermissionError(13, "Permission denied", dir)
        return real_mkdtemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    path = workshop.tiny_checkpoint_dir()
    assert os.path.dirname(path) == str(own_temp / f"minigpt2-workshop-{doctor.user()}")
    assert os.path.isfile(os.path.join(path, "model.safetensors"))


@pytest.mark.parametrize("path", TUTORIALS, ids=os.path.basename)
def test_no_tutorial_writes_to_a_fixed_place_in_the_temp_dir(path):
    """A fixed name under the temp dir is one folder for every user of the machine: tutorial 10 wrote its
    corpus and checkpoint to <temp>/minigpt2-training, and the second user got PermissionError. A tutorial's
    files go to a folder of its own run (tempfile.mkdtemp), which run_all.py puts in its scratch space."""
    source = open(path, encoding="utf-8").read()
    assert "gettempdir()" not in source, "use tempfile.mkdtemp(prefix=...) for what this run writes"


# -- the model a tutorial gets ----------------------------------------------------------------------------------
def test_load_model_falls_back_to_the_tiny_model_on_any_hub_failure(workshop, monkeypatch, capsys):
    real = GPT2LMHeadModel.from_pretrained.__func__
    calls = []

    def broken_hub(cls, name, *args, **kwargs):
        if os.path.isdir(name):
            return real(cls, name, *args, **kwargs)
        calls.append(kwargs)
        raise AttributeError("module 'huggingface_hub' has no attribute 'constants'")  # as hub 2.x once did

    monkeypatch.setattr(GPT2LMHeadModel, "from_pretrained", classmethod(broken_hub))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = workshop.load_model("gpt2")
    assert model.workshop_name == "tiny" and not workshop.is_real(model)
    out = capsys.readouterr().out
    assert "AttributeError" in out and "RANDOM weights" in out
    assert any(not c.get("local_files_only") for c in calls), "online, it tried a download too"
    calls.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert workshop.load_model("gpt2").workshop_name == "tiny"
    assert calls and all(c.get("local_files_only") for c in calls), "offline: the cache only, no download"
    assert "HF_HUB_OFFLINE" in capsys.readouterr().out


# -- the pre-flight check ---------------------------------------------------------------------------------------
def test_doctor_prints_a_line_per_check_and_exits_1_on_a_failure(monkeypatch, tmp_path):
    from minigpt2 import doctor

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network in tests
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(tmp_path / "workshop"))
    monkeypatch.setenv("MINIGPT2_FIGURES", str(tmp_path / "figures"))
    results = doctor.run_checks()
    statuses = (doctor.OK, doctor.WARN, doctor.FAIL, doctor.SKIP)  # (SKIP: the tutorials' checks, on an install)
    assert len(results) == len(doctor.CHECKS) and all(s in statuses for s, _, _ in results)
    skipped = [text for status, text, _ in results if status == doctor.SKIP]
    assert bool(skipped) == (doctor._tutorials_dir() is None), f"a check skipped in a checkout: {skipped}"
    assert all(fix for status, _, fix in results if status in (doctor.WARN, doctor.FAIL)), \
        "every failure and warning has its fix"

    def crashing():
        raise RuntimeError("boom")

    status, text, fix = doctor.run_checks([crashing])[0]
    assert status == doctor.FAIL and "boom" in text and fix
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(blocked / "cache"))  # under a file: cannot be made
    status, text, fix = doctor.check_caches()
    assert status == doctor.FAIL and "MINIGPT2_WORKSHOP_CACHE" in fix
    import io

    monkeypatch.setattr(doctor, "CHECKS", (doctor.check_python, doctor.check_caches))
    out = io.StringIO()
    assert doctor.main(out) == 1
    assert "[FAIL] caches" in out.getvalue() and "fix: set MINIGPT2_WORKSHOP_CACHE" in out.getvalue()
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(tmp_path / "workshop"))
    assert doctor.main(io.StringIO()) == 0


def test_doctor_from_the_command_line(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", MINIGPT2_WORKSHOP_CACHE=str(tmp_path), MINIGPT2_FIGURES=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "minigpt2", "--doctor"], env=env, capture_output=True, text=True,
                            timeout=120)
    lines = result.stdout.splitlines()
    assert any(line.startswith("[ ok ] Python") for line in lines)
    assert any("GPT-2" in line and "HF_HUB_OFFLINE" in line or "GPT-2 is in the cache" in line for line in lines)
    assert result.returncode == (1 if any(line.startswith("[FAIL]") for line in lines) else 0), result.stdout


def test_run_all_finds_the_figures_a_tutorial_draws():
    import run_all

    text = ('NAME = "09_not_a_figure"\n_workshop.show(fig, "09_direct")\n'
            'def draw(x, name):\n    _workshop.show(fig, name)\n\ndraw(1, "09_through_a_helper")\n')
    assert run_all.figure_names(text, "09") == ["09_direct", "09_through_a_helper"]
    four = open(os.path.join(ROOT, "tutorials", "04_attention.py"), encoding="utf-8").read()
    assert "04_attention_heads_layer0" in run_all.figure_names(four, "04")


def test_the_doctor_passes_a_shared_workshop_cache_the_tutorials_do_without(tmp_path, monkeypatch):
    """Another user's shared workshop cache, not writable to this one: the doctor checks what the tutorials then use
    (its tiny checkpoint if there, else a folder of one's own) instead of failing for everyone but its owner; and
    each user's figures go to a folder of their own, as the tutorials' (_workshop.FIGURES_DIR) do."""
    import tempfile

    from minigpt2 import doctor

    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("MINIGPT2_WORKSHOP_CACHE", str(shared))
    monkeypatch.setenv("MINIGPT2_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    writable, access = doctor._writable, os.access  # (tests may run as root, who may write anywhere)
    monkeypatch.setattr(doctor, "_writable", lambda path: os.path.abspath(path) != str(shared) and writable(path))
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: access(path, mode) and not (
        os.path.abspath(path) == str(shared) and mode & os.W_OK))
    status, text, fix = doctor.check_caches()
    assert status == doctor.OK and doctor.own_workshop_cache_dir() in text, (text, fix)
    tiny = shared / f"tiny-gpt2-seed0-v{minigpt2.__version__}"
    tiny.mkdir()
    (tiny / "model.safetensors").write_bytes(b"")
    (tiny / "config.json").write_text("{}")  # (both: the tutorials read a checkpoint that has them)
    status, text, fix = doctor.check_caches()
    assert status == doctor.OK and str(shared) in text, (text, fix)
    monkeypatch.delenv("MINIGPT2_FIGURES")
    for name in ("alice", "bob"):
        monkeypatch.setenv("LOGNAME", name)  # what getpass.getuser() reads first
        assert doctor.figures_dir() == os.path.join(tempfile.gettempdir(), f"minigpt2-figures-{name}")


def test_tutorials_on_a_smaller_workshop_model(tmp_path):
    """MINIGPT2_WORKSHOP_MODEL naming another small checkpoint: 7.2's check passes the tutorial's own answer on a
    nearly flat distribution (the tiny preset with seed 2: in float32 the cut moved by a token), 04 runs on one
    layer, and 09, which needs n_embd a multiple of 32, stops with one line saying so, not a traceback."""
    pytest.importorskip("matplotlib")
    from minigpt2 import GPT2Config, GPT2LMHeadModel

    flat, one_layer = tmp_path / "flat", tmp_path / "one_layer"
    GPT2LMHeadModel(GPT2Config.from_preset("tiny"), seed=2).save_pretrained(flat)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=64), seed=0).save_pretrained(one_layer)

    def run(tutorial, model):
        env = dict(os.environ, MINIGPT2_WORKSHOP_MODEL=str(model), MINIGPT2_WORKSHOP_CACHE=str(tmp_path / "cache"),
                   MPLBACKEND="Agg")
        return subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", tutorial)], env=env,
                              capture_output=True, text=True, timeout=300)

    decoding = run("07_decoding.py", flat)
    assert decoding.returncode == 0 and "✓ exercise 7.2 (top-p)" in decoding.stdout, decoding.stdout[-2000:]
    attention = run("04_attention.py", one_layer)
    assert attention.returncode == 0, attention.stdout[-2000:] + attention.stderr[-2000:]
    fewer_bits = run("09_fewer_bits.py", one_layer)
    assert fewer_bits.returncode == 1 and fewer_bits.stderr.strip().count("\n") == 0, fewer_bits.stderr
    assert "needs n_embd a multiple of 32" in fewer_bits.stderr and "MINIGPT2_WORKSHOP_MODEL=tiny" in fewer_bits.stderr
