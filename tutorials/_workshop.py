"""Helpers shared by the workshop tutorials: which model to load, exercises, figures, timing.

Every tutorial starts with ``MODEL = "gpt2"`` and calls ``load_model(MODEL)``. That gives the real
124M GPT-2 when its weights are in the Hugging Face cache or can be downloaded, and otherwise (no network,
a failed download, any error from the Hub) a tiny GPT-2 with random weights that minigpt2 builds itself
(two layers, four heads, 64 dimensions, GPT-2's vocabulary), saved once under the temp dir. The tiny model
has the same code path, the same shapes except for the sizes, and the same vocabulary; its outputs are
meaningless, and every result that depends on the weights says so (``random_note``).

Where the Hub is and whether to use it (HF_HUB_OFFLINE, HF_ENDPOINT) is decided by minigpt2.hub, the one
place for those rules; it gives up on an unreachable Hub within a few seconds.

Exercises: ``check_answer`` and ``check_function`` compare a learner's answer with the library's and say
how they differ (shape, values, which position). A failed check raises ExerciseFailed, so "Run all" stops
at the first unfinished exercise; with MINIGPT2_EXERCISES=keep-going it prints the message and continues
with the library's answer instead (for rehearsals, and for CI, which checks that every blank fails).

Figures: ``plt = pyplot()`` is matplotlib's pyplot, or None when matplotlib is missing (the tutorial then
says it skips its figures). ``show(fig, "name")`` saves the figure as PNG in ``FIGURES_DIR``
(``$MINIGPT2_FIGURES``, or ``<temp dir>/minigpt2-figures-<user>``) and, in a notebook, draws it inline.
"""
from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import stat
import sys
import tempfile
import textwrap
import time

import numpy as np

import minigpt2
from minigpt2 import GPT2Config, GPT2LMHeadModel
from minigpt2.checkpoint import current_umask
from minigpt2.shared_cache import group_permissions, other_owner
from minigpt2.doctor import (figures_dir, not_ones_own, own_workshop_cache_dir, readable_checkpoint,
                             workshop_cache_dir)


TINY = "tiny"
TINY_SEED = 0
FIGURES_DIR = figures_dir()  # each user's own: same names for everyone, so a shared folder would mix (or refuse) them
_ALIASES = {"gpt2": "openai-community/gpt2", "openai-community/gpt2": "gpt2"}


# -- the model ---------------------------------------------------------------------------------------------------
def tiny_checkpoint_dir(root=None) -> str:
    """A directory holding config.json + model.safetensors of the tiny random GPT-2 (made on first use).

    Directories and files are created per the umask, as ``save_pretrained`` does, so on a shared machine
    the next user (umask 022 or 002) reads the same copy instead of failing on a private one; in a folder a
    group shares (MINIGPT2_WORKSHOP_CACHE in a room folder made with chmod 2775), with the group's permissions
    too, so that the next version's checkpoint can be added by anyone in the group. When the
    shared folder is not writable to this user and lacks this version's checkpoint, or holds one another
    user made private (umask 077), it goes to a folder of this user's own.
    """
    root = os.path.expanduser(root or workshop_cache_dir())  # (%env and /etc/environment leave a ~ as it is)
    path = os.path.join(root, f"tiny-gpt2-seed{TINY_SEED}-v{minigpt2.__version__}")
    if readable_checkpoint(path):
        return path
    if os.path.lexists(path):  # whole (it appears by a rename), but not readable to this user
        owner = other_owner(path, root) or "another user"
        return _own_folder_instead(root, f"holds a tiny checkpoint that is not readable to you ({owner} made it "
                                         f"private, by their umask)",
                                   f"; to share theirs, {owner} runs chmod -R a+rX {path}")
    made, refused = False, None
    with group_permissions(root):  # in a room folder a group shares (chmod 2775): the group's, whatever the umask
        try:
            os.makedirs(root, exist_ok=True)
            scratch = tempfile.mkdtemp(dir=root)  # 0700, whatever the umask
        except OSError as e:  # another user's folder, a read-only disk, a file in the way (EEXIST, ENOTDIR)
            refused = e
        if refused is None:
            try:
                # (keeping the setgid bit it took from a shared folder, so that its files take the room's group)
                os.chmod(scratch, (0o777 & ~current_umask()) | (os.stat(scratch).st_mode & stat.S_ISGID))
                GPT2LMHeadModel(GPT2Config.from_preset(TINY), seed=TINY_SEED).save_pretrained(scratch)
                os.rename(scratch, path)  # atomic: another process may have made it meanwhile
                made = True
            except OSError:
                shutil.rmtree(scratch, ignore_errors=True)
                if not os.path.lexists(path):
                    raise
    if refused is not None:
        return _own_folder_instead(root, f"is not a folder you can write ({refused.strerror or refused})")
    return path if made else tiny_checkpoint_dir(root)  # made meanwhile: read it, or go elsewhere if it is private


def _own_folder_instead(root, why, fix="") -> str:
    """The tiny checkpoint in this user's own folder, saying why the shared ``root`` would not do (and ``fix``, how
    it would)."""
    own = own_workshop_cache_dir()
    if os.path.abspath(root) == own:
        raise OSError(f"the tiny checkpoint cannot be kept in {own}: it {why}; set MINIGPT2_WORKSHOP_CACHE to a "
                      f"folder of your own that you can write")
    squatted = not_ones_own(own)
    if squatted is not None:  # (what another user could read, or replace with weights of their own)
        raise OSError(f"the workshop cache {root} {why}, and the folder of your own that the tiny checkpoint would go "
                      f"to instead is not yours: {squatted}. Set MINIGPT2_WORKSHOP_CACHE to a folder in your home, "
                      f"e.g. MINIGPT2_WORKSHOP_CACHE=~/minigpt2-workshop")
    setting = " (MINIGPT2_WORKSHOP_CACHE)" if os.environ.get("MINIGPT2_WORKSHOP_CACHE") else ""
    print(f"(the workshop cache {root}{setting} {why}: the tiny checkpoint goes to {own}{fix})")
    return tiny_checkpoint_dir(own)


def _hub_offline() -> bool:
    from minigpt2.hub import hub_settings

    return hub_settings()["offline"]


def load_model(name: str = "gpt2", cls=GPT2LMHeadModel, verbose: bool = True):
    """``cls.from_pretrained(name)`` if its weights are cached or downloadable; else the tiny random model.

    Returns the model; ``model.workshop_name`` says which one it is (``name``, or "tiny"). The environment
    variable MINIGPT2_WORKSHOP_MODEL, when set, overrides ``name`` (a Hub name, a local directory or "tiny"):
    CI and rehearsals use it to run every tutorial on one chosen model without editing them. Any failure
    to get the real model (no network, a broken download, a Hub library that misbehaves) falls back to the
    tiny one, saying why: a workshop must not stop at the first cell.
    """
    name = os.environ.get("MINIGPT2_WORKSHOP_MODEL") or name
    name = os.path.expanduser(name)  # (a ~ that no shell expanded: %env, /etc/environment)
    is_path = os.path.isabs(name) or name.startswith(".") or name.count("/") > 1  # a folder, never a Hub name

    def say(message):
        if verbose:
            print(message)

    if name == TINY:
        say("model: the tiny GPT-2 with RANDOM weights (2 layers, 4 heads, 64 dims), as asked")
    else:
        why = "it is not in the local cache"
        for candidate in (name, _ALIASES.get(name)):
            if candidate is None:
                continue
            try:
                model = cls.from_pretrained(candidate, local_files_only=True)
            except Exception as e:  # not cached (OSError), or anything else the Hub library raises
                why = f"{type(e).__name__}: {_first_line(e, 1000)}"
                continue
            where = "a local directory" if os.path.isdir(candidate) else "the local Hugging Face cache"
            say(f"model: {candidate} (from {where})")
            model.workshop_name = name
            return _measure_kernels_now(model, say)
        if is_path:
            pass  # a folder: why it could not be read is all there is to say (no Hub to ask)
        elif not _hub_offline():
            say(f"model: downloading {name} from the Hugging Face Hub (once; about 500 MB for gpt2) ...")
            try:
                model = cls.from_pretrained(name)
                model.workshop_name = name
                return _measure_kernels_now(model, say)
            except Exception as e:  # a flaky network or a broken Hub library must not stop a workshop
                why = f"{type(e).__name__}: {_first_line(e, 1000)}"
        elif "HF_HUB_OFFLINE" not in why:
            why = "HF_HUB_OFFLINE is set and " + why
        why = textwrap.fill(why, width=110, initial_indent="    ", subsequent_indent="    ")  # whole: it says what to do
        say(f"model: {name!r} could not be loaded:\n{why}\n"
            f"  So this tutorial uses the TINY GPT-2 with RANDOM weights instead (2 layers, 4 heads, 64 dims).\n"
            f"  Every check below still holds; the model's predictions are noise. "
            f"`python -m minigpt2 --doctor` says what is missing.")
    model = cls.from_pretrained(tiny_checkpoint_dir())
    model.workshop_name = TINY
    return _measure_kernels_now(model, say)


def _measure_kernels_now(model, say):
    """Measure the C core's kernels here, saying so, when this user's first model call would: it takes
    seconds (up to a minute on a busy server), once per user and machine, and a silent pause in a later
    cell looks like a hang."""
    from minigpt2 import _tuning, backend

    ahead = _tuning.measuring_ahead() if backend.get_backend() == "c" and backend.c_available() else None
    if ahead is not None:
        saved = f"the choice is cached in {os.path.dirname(ahead[0])}" if ahead[1] is None else "it cannot be saved"
        say(f"measuring this CPU's kernels first (once per user; up to a minute on a busy machine): {saved}")
        _tuning.current()
    return model


def _first_line(error, limit=200) -> str:
    text = str(error).strip().splitlines()
    return (text[0][:limit] + ("..." if len(text[0]) > limit or len(text) > 1 else "")) if text else "(no message)"


def is_real(model) -> bool:
    """True for a pretrained checkpoint, False for the tiny random stand-in."""
    return getattr(model, "workshop_name", None) != TINY


GPT2_124M = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)


def is_published_gpt2(model) -> bool:
    """True when the model is the Hub's 124M gpt2, whose activations HF's documentation prints: its name, and its
    shape (a mirror, or HF_ENDPOINT pointed at a test server, may serve another model under that name)."""
    return (getattr(model, "workshop_name", None) in ("gpt2", "openai-community/gpt2")
            and all(getattr(model.config, k, None) == v for k, v in GPT2_124M.items()))


def model_label(model) -> str:
    """The model's name for titles: "gpt2", or "tiny model, RANDOM weights"."""
    return model.workshop_name if is_real(model) else "tiny model, RANDOM weights"


def random_note(model, what: str = "these numbers") -> str:
    """"" for a real model; otherwise a sentence saying ``what`` comes from random weights."""
    if is_real(model):
        return ""
    return f"(RANDOM weights: nothing in {what} says anything about GPT-2; rerun with the real gpt2 for that)"


def say_if_random(model, what: str = "these numbers"):
    note = random_note(model, what)
    if note:
        print(note)


# -- exercises ---------------------------------------------------------------------------------------------------
def require(model, ok: bool, what: str):
    """Stop the tutorial with one clear line when its model cannot show what it teaches (MINIGPT2_WORKSHOP_MODEL
    naming a smaller checkpoint): what it needs, and which models have it."""
    if not ok:
        raise SystemExit(f"this tutorial needs {what}, which {model_label(model)} does not have: run it on the "
                         f"124M gpt2 or on the tiny model (MINIGPT2_WORKSHOP_MODEL=tiny)")


class ExerciseFailed(AssertionError):
    """An exercise's answer does not match the library; the message says how."""

    def _render_traceback_(self):
        """What Jupyter shows when the check stops the notebook: the message alone. The traceback would only
        lead into this file's checking code, not to the learner's."""
        return [f"\033[31m✗ {self}\033[0m", "  (change your code for this exercise, then run the cell again)"]


def _keep_going() -> bool:
    """MINIGPT2_EXERCISES: "keep-going" (or "1") carries on after a failed check; unset, "", "stop" or "0" stop
    there. Anything else is a ValueError naming the allowed values (a typo must not silently mean "stop")."""
    value = os.environ.get("MINIGPT2_EXERCISES", "")
    if value.strip().lower() in ("keep-going", "keep_going", "1"):
        return True
    if value.strip().lower() in ("", "stop", "0"):
        return False
    raise ValueError(f"MINIGPT2_EXERCISES={value!r} is not a setting; use MINIGPT2_EXERCISES=keep-going (or 1) to "
                     f"carry on after a failed check with the library's answer, or unset it (or stop, 0) to stop there")


def _flag(name) -> bool:
    """An on/off environment variable: 1, yes, true, on; or 0, no, false, off, empty or unset. Anything else is a
    ValueError naming the allowed values."""
    value = os.environ.get(name, "")
    if value.strip().lower() in ("1", "yes", "true", "on"):
        return True
    if value.strip().lower() in ("", "0", "no", "false", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a setting; use {name}=1 (or yes, true, on) or {name}=0 (or no, "
                     f"false, off; or unset it)")


def seconds_setting(name, default) -> float:
    """A number of seconds from the environment variable ``name`` (``default`` when unset or empty). Anything
    but a positive number is a ValueError naming the variable and what it takes."""
    value = os.environ.get(name, "").strip()
    if not value:
        return float(default)
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and seconds != float("inf")):
        raise ValueError(f"{name}={value!r} is not a setting; give a positive number of seconds (e.g. {name}="
                         f"{default}), or unset it for {default}")
    return seconds


def _record(number, what, message):
    log = os.environ.get("MINIGPT2_EXERCISE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"number": str(number), "what": what, "passed": message is None,
                                "message": message}) + "\n")


def _conclude(number, what, message, yours, library, detail=""):
    _record(number, what, message)
    if message is None:
        print(f"✓ exercise {number} ({what}): matches the library{detail}")
        return yours
    text = f"exercise {number} ({what}): {message}"
    if _keep_going():
        print(f"✗ {text}\n  (MINIGPT2_EXERCISES=keep-going: continuing with the library's answer)")
        return library
    raise ExerciseFailed(text)


def check_answer(number, what, yours, library, rtol=1e-5, atol=1e-5):
    """Compare a learner's value with the library's. Returns ``yours`` when it matches; otherwise raises
    ExerciseFailed saying how it differs (or, with MINIGPT2_EXERCISES=keep-going, returns ``library``)."""
    message, detail = difference(yours, library, rtol, atol)
    return _conclude(number, what, message, yours, library, detail)


def check_function(number, what, yours, library, cases, rtol=1e-5, atol=1e-5):
    """Call the learner's function ``yours`` and the library's ``library`` on each case (a dict
    {description: tuple of arguments}) and compare the results. Returns ``yours`` when all match."""
    message, detail = None, ""
    for label, args in cases.items():
        expected = library(*(args() if callable(args) else args))  # a callable makes fresh arguments per call
        try:
            got = yours(*(args() if callable(args) else args))
        except Exception as e:  # a blank (`...`) in the middle of a function usually ends here
            message = (f"for {label}, your {getattr(yours, '__name__', 'function')} raised {type(e).__name__}: "
                       f"{_first_line(e)}" + _blank_hint(e, yours))
            break
        message, detail = difference(got, expected, rtol, atol)
        if message is not None:
            message = f"for {label}: {message}" + (_blank_hint(None, yours) if got is not Ellipsis else "")
            break
    return _conclude(number, what, message, yours, library, detail)


def _blank_hint(error, fn) -> str:
    """" — a `...` is still in my_fn: ..." when the function that failed, or one it calls, still holds a blank."""
    def blank(code):
        return Ellipsis in code.co_consts

    names, tb = [], getattr(error, "__traceback__", None)
    while tb is not None:  # the frames that were running
        if blank(tb.tb_frame.f_code) and tb.tb_frame.f_globals.get("__name__") == "__main__":
            names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    code = getattr(fn, "__code__", None)
    if code is not None and blank(code) and getattr(fn, "__module__", None) == "__main__":
        names.append(fn.__name__)
    if code is not None:  # the tutorial's functions it calls, which may have returned a `...`
        for name in code.co_names:
            called = getattr(fn, "__globals__", {}).get(name)
            if callable(called) and getattr(called, "__module__", None) == "__main__" and blank(
                    getattr(called, "__code__", code.replace(co_consts=()))):
                names.append(name)
    if names:
        return f" — a `...` is still in {names[-1]}: replace it with your code"
    return " — is a `...` still where your code goes?" if "ellipsis" in str(error or "").lower() else ""


def difference(yours, library, rtol=1e-5, atol=1e-5):
    """(None, detail) when ``yours`` equals ``library`` (arrays: within rtol/atol, infinities and NaN at the
    same places); otherwise (a sentence saying how they differ, "")."""
    if yours is Ellipsis:
        return "not done yet: your answer is still `...`; replace the `...` with your code", ""
    if yours is None and library is not None:
        return "your answer is None (a function without `return`?)", ""
    if isinstance(library, (list, tuple, str, dict, int, bool)) and not isinstance(library, np.ndarray):
        return _difference_plain(yours, library), ""
    return _difference_array(yours, library, rtol, atol)


def _difference_plain(yours, library):
    if yours == library:
        return None
    if isinstance(library, (list, tuple)) and isinstance(yours, (list, tuple)):
        for i, (a, b) in enumerate(zip(yours, library)):
            if a != b:
                return f"item {i} differs: yours is {a!r}, the library's is {b!r} (items before it agree)"
        return (f"yours has {len(yours)} items, the library's {len(library)}; the first {min(len(yours), len(library))} "
                f"agree")
    return f"yours is {_short(yours)}, the library's is {_short(library)}"


def _short(x, limit=120):
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + "..."


def _difference_array(yours, library, rtol, atol):
    library = np.asarray(library)
    try:
        yours = np.asarray(yours)
    except Exception:
        return f"yours is a {type(yours).__name__}, not an array", ""
    if yours.dtype == object:
        return f"yours is not an array of numbers (NumPy makes it dtype=object from {_short(yours.tolist(), 60)})", ""
    if yours.shape != library.shape:
        hint = ""
        if sorted(yours.shape) == sorted(library.shape):
            hint = ": the same sizes in another order, so probably a transpose or swapped axes"
        elif yours.ndim != library.ndim:
            hint = f": {yours.ndim} axes instead of {library.ndim} (keepdims? an indexing that drops an axis?)"
        elif yours.size == library.size:
            hint = ": the same number of values, so probably a reshape"
        return f"shape {yours.shape}, but the library's is {library.shape}{hint}", ""
    if library.dtype == bool and yours.dtype != bool:  # (a float mask passed, then `~mask` failed cells later)
        return (f"yours holds {yours.dtype} numbers, the library's booleans (True/False): make it booleans, e.g. "
                f"with dtype=bool or .astype(bool)"), ""
    if library.dtype == bool or yours.dtype == bool:
        wrong = yours.astype(bool) != library.astype(bool)
        if not wrong.any():
            return None, ""
        first = tuple(int(i) for i in np.argwhere(wrong)[0])
        return (f"{int(wrong.sum())} of {wrong.size} entries differ; the first at position {first}: yours is "
                f"{bool(yours[first])}, the library's {bool(library[first])}"), ""
    a, b = yours.astype(np.float64), library.astype(np.float64)
    special = (np.isnan(a) != np.isnan(b)) | (np.isinf(b) & (a != b)) | (np.isinf(a) & (a != b))
    if special.any():
        first = tuple(int(i) for i in np.argwhere(special)[0])
        return (f"{int(special.sum())} of {special.size} entries differ in being infinite or NaN; the first at "
                f"position {first}: yours is {a[first]:.6g}, the library's {b[first]:.6g}"), ""
    finite = np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore"):  # -inf - -inf, where both are masked, is NaN: not a learner's concern
        gap = np.where(finite, np.abs(a - b), 0.0)
    bad = gap > atol + rtol * np.abs(np.where(finite, b, 0.0))
    if not bad.any():
        return None, f" (largest difference {gap.max():.1e})" if gap.size else ""
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(np.where(bad, gap, -1)), gap.shape))
    message = (f"values differ at {int(bad.sum())} of {bad.size} positions; the largest difference is at position "
               f"{worst}: yours is {a[worst]:.6g}, the library's {b[worst]:.6g}")
    nonzero = finite & (np.abs(b) > 1e-12)
    if nonzero.sum() > 1:
        ratio = a[nonzero] / b[nonzero]
        if np.allclose(ratio, ratio.flat[0], rtol=1e-3) and abs(ratio.flat[0] - 1) > 1e-3:
            message += f"; every value is {ratio.flat[0]:.4g} times the library's (a missing or extra factor?)"
    return message, ""


# -- figures -----------------------------------------------------------------------------------------------------
def in_notebook() -> bool:
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell" or "google.colab" in sys.modules


def pyplot():
    """matplotlib.pyplot, or None (with a message) when matplotlib is not installed or MINIGPT2_NO_FIGURES=1."""
    if _flag("MINIGPT2_NO_FIGURES"):
        print("MINIGPT2_NO_FIGURES is set: this run skips its figures")
        return None
    try:
        import matplotlib
        if not in_notebook() and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")  # a script saves its figures to files; no window pops up
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        print("matplotlib is not installed: this tutorial skips its figures "
              "(pip install 'minigpt2[tutorials]' to draw them)")
        return None


def show(fig, name: str) -> str:
    """Save ``fig`` as name.png in $MINIGPT2_FIGURES as it is now (a notebook may set it after the import, as the
    message below suggests), else in FIGURES_DIR; say where, and draw it inline in a notebook."""
    import matplotlib.pyplot as plt

    folder = os.path.expanduser(os.environ.get("MINIGPT2_FIGURES") or FIGURES_DIR)
    path = os.path.join(folder, name + ".png")
    partial = os.path.join(folder, f".{name}.{os.getpid()}.partial")
    squatted = None if os.environ.get("MINIGPT2_FIGURES") else not_ones_own(folder)
    try:
        if squatted is not None:  # the default folder, named after this user, made first by another one
            raise PermissionError(errno.EPERM, f"not yours: {squatted}")
        os.makedirs(folder, exist_ok=True)
        fig.savefig(partial, format="png", dpi=110, bbox_inches="tight")
        os.replace(partial, path)  # whole: two runs saving it at once (the script and the notebook) cannot mix
        print(f"figure saved: {path}")
    except OSError as e:  # a figure that cannot be saved must not stop the tutorial
        path = None
        if squatted is None and os.path.lexists(partial):
            os.remove(partial)
        where = "MINIGPT2_FIGURES" if os.environ.get("MINIGPT2_FIGURES") else "the figures folder"
        print(f"figure {name} not saved: {where} {folder} is not a folder you can write "
              f"({squatted or e.strerror or type(e).__name__}); set MINIGPT2_FIGURES to a folder of your own")
    if in_notebook():
        plt.show()
    else:
        plt.close(fig)
    return path


def token_axes(ax, tokens, x_label="key (attended to)", y_label="query (attending)", fontsize=8):
    """Put the tokens on both axes of a [query, key] heatmap."""
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels(tokens, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(tokens)))
    ax.set_yticklabels(tokens, fontsize=fontsize)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)


# -- checks and timing -------------------------------------------------------------------------------------------
def check_close(name, ours, library, rtol=1e-5, atol=1e-5):
    """Assert two arrays agree, printing the largest difference (the tutorials' "it equals the library")."""
    ours, library = np.asarray(ours), np.asarray(library)
    assert ours.shape == library.shape, f"{name}: shape {ours.shape} != library's {library.shape}"
    np.testing.assert_allclose(ours, library, rtol=rtol, atol=atol, err_msg=name)  # infinities must match too
    finite = np.isfinite(ours) & np.isfinite(library)
    diff = float(np.max(np.abs(ours[finite].astype(np.float64) - library[finite]))) if finite.any() else 0.0
    print(f"ok  {name:<52} shape {str(ours.shape):<16} max |difference| {diff:.2e}")


def best_time(fn, repeat: int = 5, number: int = 1) -> float:
    """The fastest of ``repeat`` runs of ``number`` calls, in seconds per call (the least disturbed run)."""
    return float(run_times(fn, repeat, number).min())


def run_times(fn, repeat: int = 5, number: int = 1) -> np.ndarray:
    """Seconds per call of each of ``repeat`` runs of ``number`` calls (report the spread, not one number)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return np.array(times)


def spread(seconds, unit=1e-3, name="ms") -> str:
    """"median 1.23 ms (1.10 to 1.56 over 5 runs)" for an array of times."""
    s = np.asarray(seconds) / unit
    return f"median {np.median(s):.3g} {name} ({s.min():.3g} to {s.max():.3g} over {len(s)} runs)"


def machine() -> str:
    """What this machine is: the CPU model, its logical cores, the OS."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if not cpu and sys.platform == "darwin":
        try:
            import subprocess
            cpu = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=2).stdout.strip()
        except Exception:
            pass
    cpu = cpu or platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"


def ratio_words(baseline_seconds, seconds, what="the C core", baseline="NumPy") -> str:
    """"2.31x faster than NumPy" or "1.85x SLOWER than NumPy" (never a slowdown called a speed-up), for
    ``what`` taking ``seconds`` where ``baseline`` takes ``baseline_seconds``."""
    r = baseline_seconds / seconds
    if r >= 1.05:
        return f"{what} is {r:.2f}x faster than {baseline}"
    if r <= 1 / 1.05:
        return f"{what} is {1 / r:.2f}x SLOWER than {baseline}"
    return f"{what} and {baseline} are level (within 5%: ratio {r:.2f})"


# -- text ----------------------------------------------------------------------------------------------------------
def tokenizer():
    """GPT-2's tokenizer, minigpt2's own, from the vocabulary bundled with the package (no download)."""
    return minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
