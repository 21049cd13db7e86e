"""The pre-flight check: ``python -m minigpt2 --doctor``, the first thing a workshop participant runs.

One line per check, ``[ ok ]``, ``[warn]`` (works, but not as well as it could), ``[FAIL]`` (a tutorial
will break) or ``[skip]`` (a check for the tutorials, in an install that has none: not a git checkout), each
failure or warning with its fix. The exit status is for scripts: 0 when nothing failed,
1 otherwise (warnings do not fail). Nothing waits long: the Hub is asked once, with a 3-second timeout, and
only when GPT-2 is not already cached (HF_HUB_OFFLINE=1 skips even that; HF_ENDPOINT is honoured).

It also holds where the workshop keeps its files (``workshop_cache_dir``, ``figures_dir``), so the tutorials
and this check agree.
"""
from __future__ import annotations

import getpass
import os
import platform
import sys
import tempfile
import time

__all__ = ["main", "run_checks", "workshop_cache_dir", "own_workshop_cache_dir", "figures_dir", "user",
           "not_ones_own"]

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
# A tiny model's first forward pass takes milliseconds; past this many seconds the machine is too busy or too slow
# for a workshop (a new user's VM once reported 43 s as ok: the kernel measuring, which could not be cached, was in it)
SLOW_FIRST_PASS_SECONDS = 10.0
SUPPORTED_PYTHON = ((3, 9), (3, 13))
RUNTIME = ("numpy", "regex", "safetensors", "huggingface_hub", "cffi")
TUTORIALS = ("matplotlib", "jupyterlab", "ipywidgets", "jupytext")
GPT2_NAMES = ("openai-community/gpt2", "gpt2")
FIX_INSTALL = 'pip install -r tutorials/requirements-workshop.txt -e .  (or: pip install -e ".[tutorials]")'


def workshop_cache_dir() -> str:
    """Where the tutorials keep the tiny random checkpoint: $MINIGPT2_WORKSHOP_CACHE, else <temp>/minigpt2-workshop."""
    setting = os.environ.get("MINIGPT2_WORKSHOP_CACHE")  # (~ expanded: %env and /etc/environment leave it as it is)
    return os.path.expanduser(setting) if setting else os.path.join(tempfile.gettempdir(), "minigpt2-workshop")


def user() -> str:
    """This user's login name (or uid): what keeps one participant's files apart from another's on a shared machine."""
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without one)
        return str(os.getuid()) if hasattr(os, "getuid") else "user"


def own_workshop_cache_dir() -> str:
    """Where the tiny checkpoint goes when the shared workshop cache is not writable: <temp>/minigpt2-workshop-<user>.
    """
    return os.path.join(tempfile.gettempdir(), f"minigpt2-workshop-{user()}")


def not_ones_own(path):
    """Why ``path``, a folder named after this user in the shared temp directory (own_workshop_cache_dir, the
    default figures_dir), cannot be taken as one's own: it is there already and another user's, or a link (anyone
    may make /tmp/minigpt2-workshop-<you> first, and then read or replace what you keep there); else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if os.path.islink(path):
        return f"{path} is a link (to {os.readlink(path)}), not a folder you made"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        try:
            import pwd

            owner = f"user {pwd.getpwuid(st.st_uid).pw_name}"
        except (ImportError, KeyError):
            owner = f"user {st.st_uid}"
        return f"{path} belongs to {owner}, who made it before you did"
    return None


def figures_dir() -> str:
    """Where the tutorials save their figures: $MINIGPT2_FIGURES, else <temp>/minigpt2-figures-<user> (every
    participant's figures have the same names: a shared folder would mix them, or refuse all but its owner's)."""
    return os.environ.get("MINIGPT2_FIGURES") or os.path.join(tempfile.gettempdir(), f"minigpt2-figures-{user()}")


def _version(package):
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def check_python():
    v = sys.version_info[:2]
    text = f"Python {platform.python_version()} ({platform.python_implementation()}, {platform.system()} {platform.machine()})"
    low, high = SUPPORTED_PYTHON
    if low <= v <= high:
        return OK, text, None
    return (FAIL if v < low else WARN), text, (f"minigpt2 supports Python {low[0]}.{low[1]} to {high[0]}.{high[1]}; "
                                               f"make a venv with one of those")


def check_packages():
    from . import __version__

    found = {p: _version(p) for p in RUNTIME}
    missing = [p for p, v in found.items() if v is None]
    text = f"minigpt2 {__version__}; " + ", ".join(f"{p} {v or 'MISSING'}" for p, v in found.items())
    return (FAIL, text, f"pip install {' '.join(missing)}") if missing else (OK, text, None)


def _tutorials_dir():
    """The tutorials/ folder of the git checkout minigpt2 runs from, or None (installed with pip: no tutorials)."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tutorials")
    return here if os.path.isfile(os.path.join(here, "requirements-workshop.txt")) else None


def _not_a_checkout(what):
    """A SKIP result for a check that only matters for the tutorials, when there are none."""
    where = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return SKIP, (f"{what}: skipped: not a checkout (minigpt2 is installed in {where}, without the tutorials; "
                  f"they come with the git repository)"), None


def check_tutorial_packages():
    if _tutorials_dir() is None:
        return _not_a_checkout("tutorials")
    found = {p: _version(p) for p in TUTORIALS}
    text = "tutorials: " + ", ".join(f"{p} {v or 'MISSING'}" for p, v in found.items())
    if not found["matplotlib"] or not found["jupyterlab"]:
        return FAIL, text, FIX_INSTALL
    if not found["ipywidgets"]:
        return WARN, text, "pip install ipywidgets (else notebooks show 'TqdmWarning: IProgress not found')"
    if not found["jupytext"]:
        return WARN, text, "pip install jupytext (only to open the .py tutorials as notebooks)"
    return OK, text, None


def _setting_problem(which):
    """The error a bad MINIGPT2_BACKEND ("backend"), MINIGPT2_NUM_THREADS ("threads") or MINIGPT2_KERNEL
    ("kernel") makes at the first model call, or None."""
    from . import backend

    problems = backend.setting_problems() if hasattr(backend, "setting_problems") else \
        getattr(backend, "_environment_problems", {})
    if which == "kernel" and which not in problems:
        from .cli_checks import kernel_without_c_core

        return kernel_without_c_core()  # (a variant where the C core is not built: the command line refuses it)
    return problems.get(which)


def check_c_core():
    from . import backend

    problem = _setting_problem("backend")
    if problem is not None:  # it names the variable, its value and the allowed ones
        fix = ("unset MINIGPT2_BACKEND, or set it to auto or numpy (c needs the C core built)"
               if isinstance(problem, RuntimeError) else "unset MINIGPT2_BACKEND, or set it to auto, numpy or c")
        return FAIL, f"backend: {problem}", fix
    problem = _setting_problem("kernel")
    if problem is not None:
        return FAIL, f"kernels: {problem}", "unset MINIGPT2_KERNEL (its default, auto, measures which is fastest)"
    if backend.c_available():
        return OK, f"C core built; active backend: {backend.get_backend()}", None
    installed = backend.shadowed_copy()
    if installed is not None:
        here = os.path.dirname(os.path.abspath(__file__))
        return WARN, (f"C core not loaded: minigpt2 is imported from the source folder {here}, which shadows the "
                      f"installed copy at {installed} (whose C core may be built); everything runs on NumPy, slower"), \
            (f"run from another directory, or pip install -e . in {os.path.dirname(here)} (which builds the C core "
             f"in place)")
    root = backend._checkout()
    build = (f"pip install -e . again in {root} (or python csrc/build_kernels.py there)" if root is not None else
             "install minigpt2 again as you did (e.g. pip install --force-reinstall --no-deps . in its source folder), "
             "which builds it")
    return WARN, "C core not built: everything runs on NumPy, slower (tutorial 08 has less to compare)", \
        f"install a C compiler (Linux: apt install build-essential; macOS: xcode-select --install), then {build}"


def check_threads():
    from . import backend

    cores = os.cpu_count() or 1
    blas = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    problem = _setting_problem("threads")
    if problem is not None:
        return FAIL, f"threads: {cores} cores; {problem}", \
            f"unset MINIGPT2_NUM_THREADS, or set it to a whole number from 1 to {cores} (the cores)"
    threads = backend.get_num_threads()
    text = (f"threads: {cores} logical cores, {f'C core {threads}' if backend.c_available() else 'no C core'}; BLAS "
            + (", ".join(f"{k}={v}" for k, v in blas.items()) if blas else "default (one per core)"))
    if threads > cores:
        return WARN, text, f"MINIGPT2_NUM_THREADS={threads} is more than the {cores} cores: threads will wait; lower it"
    return OK, text, None


def check_model_runs():
    """A tiny random GPT-2 (built here, no files) runs a forward pass on both backends and they agree."""
    import numpy as np

    from . import GPT2Config, GPT2LMHeadModel, backend

    bad = [name for name, which in (("MINIGPT2_BACKEND", "backend"), ("MINIGPT2_NUM_THREADS", "threads"))
           if _setting_problem(which) is not None]
    if _setting_problem("kernel") is not None and backend.get_backend() == "c":  # (the NumPy backend ignores it)
        bad.append("MINIGPT2_KERNEL")
    if bad:  # every kernel call raises that error: the check above says which and how to fix it
        return FAIL, f"a tiny model cannot run until {' and '.join(bad)} {'are' if len(bad) > 1 else 'is'} fixed (see above)", None
    from .cli_checks import calibration_ahead

    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=16)
    model = GPT2LMHeadModel(config, seed=0)
    ids = np.array([[1, 2, 3, 4]])
    ahead, measuring = calibration_ahead(), 0.0
    if ahead is not None:  # the first C call measures the kernels (once per machine): timed on its own
        start = time.perf_counter()
        backend.kernel_choice()
        measuring = time.perf_counter() - start
    start = time.perf_counter()
    logits = model(ids).logits
    ms = (time.perf_counter() - start) * 1e3
    if not np.isfinite(logits).all():
        return FAIL, "a tiny model's forward pass gives NaN or inf", "report this, with the output of --info"
    if backend.c_available() and backend.get_backend() != "numpy":
        before = backend.get_backend()
        try:
            backend.set_backend("numpy")
            reference = model(ids).logits
        finally:
            backend.set_backend(before)
        if not np.allclose(logits, reference, rtol=1e-4, atol=1e-5):
            return FAIL, "the C core and NumPy disagree on a tiny model", \
                "run with MINIGPT2_BACKEND=numpy, and report this with the output of --info"
    measured = "" if ahead is None else f"; the kernels were measured first, in {measuring:.0f} s"
    if ahead is not None and ahead[1] is not None:
        return WARN, (f"a tiny model runs ({ms:.0f} ms for its first forward pass{measured}, and that is repeated "
                      f"at every run: the choice cannot be cached in {os.path.dirname(ahead[0])}, {ahead[1]})"), \
            "set XDG_CACHE_HOME to a directory of your own that you can write, or choose the kernels with " \
            "MINIGPT2_KERNEL (e.g. generic)"
    if ms > SLOW_FIRST_PASS_SECONDS * 1e3:
        return WARN, (f"a tiny model runs, but slowly: {ms / 1e3:.1f} s for its first forward pass, where a few ms "
                      f"are usual{measured}"), \
            "the machine is busy or slow: close other programs (other notebooks, a video call), or try " \
            "OPENBLAS_NUM_THREADS=1 (docs/troubleshooting.md, the OpenBLAS note)"
    cached = "" if ahead is None else f" (once: cached in {os.path.dirname(ahead[0])})"
    return OK, f"a tiny model runs ({ms:.0f} ms for its first forward pass{measured}{cached})", None


def _gpt2_in_cache():
    """The name GPT-2 is cached under in the HF cache in effect ("openai-community/gpt2" or "gpt2"), or None."""
    from .hub import resolve_file

    for name in GPT2_NAMES:
        try:
            paths = [resolve_file(name, f, local_files_only=True) for f in ("config.json", "model.safetensors")]
        except Exception:  # not cached (OSError), or a Hub library that misbehaves: treat as not cached
            continue
        if all(paths):
            return name
    return None


def check_gpt2(timeout=3.0):
    from .hub import hub_settings

    settings = hub_settings()
    name = _gpt2_in_cache()
    if name is not None:
        return OK, f"GPT-2 is in the cache ({name}, {settings['cache_dir']}): the tutorials use it, offline too", None
    fallback = "the tutorials will use a tiny model with RANDOM weights (every check holds; predictions are noise)"
    from .shared_cache import cannot_read, unreadable

    hidden = next(filter(None, (unreadable(settings["cache_dir"], name) for name in GPT2_NAMES)), None)
    if hidden is not None:  # (another user's download, kept from us by their umask: the command line says so too)
        return WARN, f"GPT-2 may be in the cache, but {hidden} is not readable to you: {fallback}", \
            cannot_read(hidden, settings["cache_dir"])
    if settings["offline"]:
        return WARN, f"GPT-2 is not in the cache {settings['cache_dir']} and HF_HUB_OFFLINE is set: {fallback}", \
            "go online once: unset HF_HUB_OFFLINE and run python -m minigpt2 --download (about 500 MB)"
    from .hub import _unreachable  # the same quick probe the downloads use

    why = _unreachable(settings["endpoint"], timeout=timeout)
    if why is None and not _writable(settings["cache_dir"]):
        whose, fix = _not_writable_fix(settings["cache_dir"], "HF_HUB_CACHE")
        return WARN, (f"GPT-2 is not in the cache {settings['cache_dir']}, which is not writable to you"
                      f"{f' ({whose})' if whose else ''}, so it cannot be downloaded there: {fallback}"), fix
    if why is None:
        return OK, (f"GPT-2 is not cached yet but {settings['endpoint']} answers: it downloads on first use "
                    f"(about 500 MB)"), None
    return WARN, f"GPT-2 is not cached and {settings['endpoint']} cannot be reached ({why}): {fallback}", \
        ("set HF_ENDPOINT to a mirror you can reach (e.g. https://hf-mirror.com), or copy a Hugging Face cache "
         "that has gpt2 and point HF_HUB_CACHE at it")


def check_figures():
    if _tutorials_dir() is None:
        return _not_a_checkout("figures")
    try:
        import matplotlib
    except ImportError:
        return FAIL, "figures: matplotlib is not installed", FIX_INSTALL
    backend = matplotlib.get_backend()
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(1, 1))
        FigureCanvasAgg(fig)
        fig.add_subplot().plot([0, 1])
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "check.png")
            fig.savefig(path)
            assert os.path.getsize(path) > 0
    except Exception as e:
        return FAIL, f"figures: matplotlib {matplotlib.__version__} cannot draw a PNG ({type(e).__name__}: {e})", \
            "reinstall matplotlib (pip install --force-reinstall matplotlib)"
    return OK, (f"figures: matplotlib {matplotlib.__version__}, backend {backend} (scripts save PNGs; "
                f"notebooks draw inline)"), None


def _writable(path) -> bool:
    """True if ``path`` is (or can be made) a directory we can create files in: tried, not guessed from the
    permission bits, which say nothing for root or on a read-only file system. Folders made in a tree a group
    shares (a room's HF_HOME, chmod 2775) are the group's too: made per the umask alone (022), the first user's
    doctor would have made the room's cache theirs."""
    from .hub import without_home
    from .shared_cache import group_permissions

    if without_home(path):  # (not a folder named ~ made in the current one)
        return False
    try:
        with group_permissions(path):
            os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def _whose(path):
    """(the nearest folder at or above ``path`` that exists, "user NAME") when another user owns it, else None."""
    path = os.path.abspath(path)
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        uid = os.stat(path).st_uid
        if not hasattr(os, "getuid") or uid == os.getuid():
            return None
        import pwd

        return path, f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return path, f"user {uid}"
    except (OSError, ImportError):
        return None


def _not_writable_fix(path, variable):
    """(why, or "", and the fix) for a folder of the caches we cannot write: in a tree a group
    shares, another user's folder there that their umask kept from the group is named, with the chmod that opens it
    to the group (setting ``variable`` to a folder of one's own stays the other way out)."""
    from .hub import NO_HOME, without_home
    from .shared_cache import group_shared_folder, in_group

    own = f"set {variable} to a directory of your own"
    if without_home(path):
        return f"there is no home directory: {NO_HOME}", own
    whose, shared = _whose(path), group_shared_folder(path)
    if whose is None:
        return "", own
    folder, owner = whose
    try:
        mode = f"mode {os.stat(folder).st_mode & 0o777:04o}"
    except OSError:
        mode = "its mode"
    if shared is None:
        return f"{folder} belongs to {owner} ({mode})", own
    try:
        import grp

        group = grp.getgrgid(shared[1]).gr_name
    except (ImportError, KeyError):
        group = str(shared[1])
    if not in_group(shared[1]):  # (added to the group after logging in: a session keeps the groups it started with)
        return (f"it is the group {group}'s, which this session of yours is not in",
                f"ask the instructor to add you to {group} (usermod -aG {group} {user()}), then log in again "
                f"(a session keeps the groups it started with); or {own}")
    return (f"{folder} belongs to {owner} ({mode}), whose umask kept it from the group {group} that shares "
            f"{shared[0]}", f"ask {owner} (or the instructor, as root) to run chmod -R g+rwX {folder}; or {own}")


def readable_checkpoint(path) -> bool:
    """config.json and model.safetensors are there, and this user may read them (the tutorials' tiny checkpoint)."""
    return all(os.path.isfile(os.path.join(path, f)) and os.access(os.path.join(path, f), os.R_OK)
               for f in ("config.json", "model.safetensors"))


def check_caches():
    from . import __version__
    from .hub import hub_settings

    hf_cache, workshop, figures = hub_settings()["cache_dir"], workshop_cache_dir(), figures_dir()
    tiny = os.path.join(workshop, f"tiny-gpt2-seed0-v{__version__}")
    private = os.path.lexists(tiny) and not readable_checkpoint(tiny)  # (another user's, made with umask 077)
    if private or (os.path.isdir(workshop) and not os.access(workshop, os.W_OK | os.X_OK)
                   and not os.path.isfile(os.path.join(tiny, "model.safetensors"))):
        # another user's shared cache without this version's checkpoint, or with one private to them: the
        # tutorials make theirs in a folder of one's own
        workshop = own_workshop_cache_dir()
        tiny = os.path.join(workshop, f"tiny-gpt2-seed0-v{__version__}")
    problems = [(name, path) for name, path in (("Hugging Face cache", hf_cache), ("figures", figures))
                if not _writable(path)]
    shared_hf = ("Hugging Face cache", hf_cache) in problems and _gpt2_in_cache() is not None
    if shared_hf:  # a room's shared cache, filled by another user: GPT-2 is all the tutorials need from it
        problems.remove(("Hugging Face cache", hf_cache))
    if not _writable(workshop) and not os.path.isfile(os.path.join(tiny, "model.safetensors")):
        problems.append(("workshop cache", workshop))  # (a readable tiny checkpoint is all the tutorials need there)
    if problems:
        name, path = problems[0]
        variable = {"Hugging Face cache": "HF_HUB_CACHE", "workshop cache": "MINIGPT2_WORKSHOP_CACHE",
                    "figures": "MINIGPT2_FIGURES"}[name]
        whose, fix = _not_writable_fix(path, variable)
        return FAIL, f"caches: the {name} {path} is not writable{f' to you: {whose}' if whose else ''}", fix
    if os.path.lexists(tiny) and not readable_checkpoint(tiny):  # even in one's own folder: nowhere else to go
        return FAIL, f"caches: the tiny checkpoint {tiny} exists but is not readable to you", \
            f"set MINIGPT2_WORKSHOP_CACHE to a directory of your own (or its owner runs chmod -R a+rX {tiny})"
    opened, closed = _open_own_to_group(hf_cache)
    notes = [note for note in (closed, _open_to_all_note(hf_cache), _token_problem()) if note is not None]
    if notes:
        return WARN, (f"caches writable: {hf_cache}, {workshop}, figures in {figures}{opened}; but "
                      f"{'; and '.join(what for what, _ in notes)}"), "; and ".join(fix for _, fix in notes)
    if shared_hf:
        return OK, (f"caches: {hf_cache} is read-only to you but holds GPT-2, all the tutorials need from it (other "
                    f"models would need HF_HUB_CACHE of your own); writable: {workshop}, figures in {figures}"), None
    return OK, f"caches writable: {hf_cache}, {workshop}, figures in {figures}{opened}", None


def _open_own_to_group(cache):
    """In a Hugging Face cache a group shares: open to the group what of this user's its umask kept from it (what
    transformers and huggingface_hub download follows the umask: 022 leaves the group out), and name what of other
    users' is still closed to it. ("; N of yours opened to the group G" or "", (what, fix) or None.)"""
    from .shared_cache import closed_to_group, group_name, group_shared_folder, share_with_group

    shared = group_shared_folder(cache)
    if shared is None or not os.path.isdir(cache):
        return "", None
    uid, group = os.getuid(), group_name(shared[1])
    mine = sum(owner == uid for _, owner, _ in closed_to_group(cache, shared[1]))
    if mine:
        share_with_group(shared, [cache], recursive=[cache])
    closed = [(path, owner, mode) for path, owner, mode in closed_to_group(cache, shared[1])]
    opened = f"; {mine} file(s) and folder(s) of yours there opened to the group {group}" if mine else ""
    if not closed:
        return opened, None
    tops = [(path, owner, mode) for path, owner, mode in closed  # (the highest of each: chmod -R reaches the rest)
            if not any(path.startswith(other + os.sep) for other, _, _ in closed)]
    owners = sorted({_user_name(owner) for _, owner, _ in tops})
    shown = ", ".join(f"{os.path.relpath(path, cache)} ({_user_name(owner)}'s, mode {mode:04o})"
                      for path, owner, mode in tops[:3]) + (f" and {len(tops) - 3} more" if len(tops) > 3 else "")
    what = (f"in the Hugging Face cache {cache}, which the group {group} shares, what {' and '.join(owners)} "
            f"downloaded without minigpt2 is closed to the group (their umask: transformers and huggingface_hub "
            f"follow it): {shown}; the others cannot add to it, finish it or update it")
    fix = (f"ask {' and '.join(owners)} (or the instructor, as root) to run chmod -R g+rwX "
           f"{' '.join(path for path, _, _ in tops)} (their next minigpt2 load or doctor does it for theirs too); "
           f"against the next time: everyone runs `umask 002` before using transformers there, or the instructor "
           f"runs `setfacl -R -d -m g::rwX {shared[0]}` once (the group then gets the owner's permissions on all "
           f"that is made there, whatever the umask)")
    return opened, (what, fix)


def _open_to_all_note(cache):
    """(what, fix) when the Hugging Face cache is a folder open to all (chmod 1777, as /tmp) instead of a group's."""
    from .shared_cache import mode_of, open_to_all

    if not open_to_all(cache):
        return None
    return ((f"the Hugging Face cache {cache} is open to all ({mode_of(cache)[:-2]}) and shared by no group: "
             f"each model there is its first downloader's alone; you may read the others' and add your own, but not "
             f"finish or update theirs, and anyone on this machine may put files there that you would load"),
            (f"for a room, the instructor makes it a group's folder instead: chgrp <the room's group> {cache}; "
             f"chmod 2775 {cache} (tutorials/README.md, \"One Hugging Face cache for the room\"); or set "
             f"HF_HUB_CACHE to a directory of your own"))


def _user_name(uid) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return f"user {uid}"


def _token_problem():
    """(what, fix) when HF_HOME is shared and holds an access token: another user's (which minigpt2 does not send,
    and huggingface_hub and transformers would send as yours), or yours, readable by the others; else None."""
    from .shared_cache import group_shared_folder
    from .hub import hub_settings, someone_elses_token

    settings = hub_settings()
    others = someone_elses_token(settings)
    own = ("set HF_TOKEN, or HF_TOKEN_PATH to a file of your own; a room's cache is better shared with HF_HUB_CACHE "
           "than HF_HOME, which holds each user's token (tutorials/README.md)")
    if others is not None:
        return (f"the access token in {others[0]} is {others[1]}'s (HF_HOME {settings['hf_home']} is shared): "
                f"minigpt2 does not send it; transformers and huggingface_hub would, as yours"), own
    path = settings["token_source"]
    if path in (None, "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") or group_shared_folder(path) is None:
        return None
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return None
    if not mode & 0o044:
        return None
    return (f"your access token {path} is in a folder a group shares, readable by others (mode {mode:04o})"), \
        (f"delete it and revoke it on the Hub (others could read it), then log in with HF_TOKEN_PATH set to a file of "
         f"your own (e.g. ~/.cache/huggingface/token); a room's cache is better shared with HF_HUB_CACHE than HF_HOME")


CHECKS = (check_python, check_packages, check_tutorial_packages, check_c_core, check_threads, check_model_runs,
          check_gpt2, check_figures, check_caches)


def run_checks(checks=None):
    """[(status, text, fix or None)] for each check (default: CHECKS); a check that crashes is a FAIL naming
    the error."""
    results = []
    for check in CHECKS if checks is None else checks:
        try:
            results.append(check())
        except Exception as e:
            results.append((FAIL, f"{check.__name__[6:]}: the check itself failed ({type(e).__name__}: {e})",
                            "report this with the output of python -m minigpt2 --info"))
    return results


def main(out=None) -> int:
    """Print one line per check (and its fix); return 0 when nothing failed, else 1."""
    out = out or sys.stdout
    results = run_checks()
    for status, text, fix in results:
        print(f"[{status:^4}] {text}" + (f"\n       fix: {fix}" if fix and status != OK else ""), file=out)
    failed = sum(status == FAIL for status, _, _ in results)
    warned = sum(status == WARN for status, _, _ in results)
    skipped = sum(status == SKIP for status, _, _ in results)
    print(f"{'ready' if not failed else 'NOT ready'}: {len(results) - failed - warned - skipped} ok, "
          f"{f'{skipped} skipped, ' if skipped else ''}{warned} warning(s), {failed} failure(s)", file=out)
    return 1 if failed else 0


if __name__ == "__main__":  # python -m minigpt2.doctor: the same check as python -m minigpt2 --doctor
    from .cli import main as cli_main

    sys.exit(cli_main(["--doctor", *sys.argv[1:]]))
