"""Helpers shared by the workshop tutorials: which model to load, where figures go, timing.

Every tutorial starts with ``MODEL = "gpt2"`` and calls ``load_model(MODEL)``. That gives the real
124M GPT-2 when its weights are in the Hugging Face cache or can be downloaded, and otherwise a tiny
GPT-2 with random weights that minigpt2 builds itself (two layers, four heads, 64 dimensions, GPT-2's
vocabulary), saved once under the temp dir. The tiny model has the same code path, the same shapes
except for the sizes, and the same vocabulary; its outputs are meaningless, and the tutorials say so.

Nothing here waits long for a network: HF_HUB_OFFLINE=1 skips it, and otherwise one request with a
three-second timeout decides whether the Hub (or the mirror in HF_ENDPOINT) is reachable.

Figures: ``plt = pyplot()`` is matplotlib's pyplot, or None when matplotlib is missing (the tutorial then
says it skips its figures). ``show(fig, "name")`` saves the figure as PNG in ``FIGURES_DIR``
(``$MINIGPT2_FIGURES``, or ``<temp dir>/minigpt2-figures``) and, in a notebook, draws it inline.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request

import minigpt2
from minigpt2 import GPT2Config, GPT2LMHeadModel

TINY = "tiny"
TINY_SEED = 0
FIGURES_DIR = os.environ.get("MINIGPT2_FIGURES") or os.path.join(tempfile.gettempdir(), "minigpt2-figures")
_ALIASES = {"gpt2": "openai-community/gpt2", "openai-community/gpt2": "gpt2"}


# -- the model ---------------------------------------------------------------------------------------------------
def tiny_checkpoint_dir() -> str:
    """A directory holding config.json + model.safetensors of the tiny random GPT-2 (made on first use)."""
    root = os.environ.get("MINIGPT2_WORKSHOP_CACHE") or os.path.join(tempfile.gettempdir(), "minigpt2-workshop")
    path = os.path.join(root, f"tiny-gpt2-seed{TINY_SEED}-v{minigpt2.__version__}")
    if not os.path.isfile(os.path.join(path, "model.safetensors")):
        os.makedirs(root, exist_ok=True)
        scratch = tempfile.mkdtemp(dir=root)
        GPT2LMHeadModel(GPT2Config.from_preset(TINY), seed=TINY_SEED).save_pretrained(scratch)
        try:
            os.rename(scratch, path)  # atomic: another process may have made it meanwhile
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
    return path


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hub (or HF_ENDPOINT) answers within ``timeout`` seconds and HF_HUB_OFFLINE is not set."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout)
        return True
    except urllib.error.HTTPError:  # it answered, with an error page: it is reachable
        return True
    except Exception:
        return False


def load_model(name: str = "gpt2", cls=GPT2LMHeadModel, verbose: bool = True):
    """``cls.from_pretrained(name)`` if its weights are cached or downloadable; else the tiny random model.

    Returns the model; ``model.workshop_name`` says which one it is (``name``, or "tiny"). The environment
    variable MINIGPT2_WORKSHOP_MODEL, when set, overrides ``name`` (a Hub name, a local directory or "tiny"):
    CI and rehearsals use it to run every tutorial on one chosen model without editing them.
    """
    name = os.environ.get("MINIGPT2_WORKSHOP_MODEL") or name
    def say(message):
        if verbose:
            print(message)

    if name != TINY:
        for candidate in (name, _ALIASES.get(name)):
            if candidate is None:
                continue
            try:
                model = cls.from_pretrained(candidate, local_files_only=True)
                where = "a local directory" if os.path.isdir(candidate) else "the local Hugging Face cache"
                say(f"model: {candidate} (from {where})")
                model.workshop_name = name
                return model
            except (OSError, FileNotFoundError, ValueError):
                pass
        if hub_reachable():
            say(f"model: downloading {name} from the Hugging Face Hub (once; about 500 MB for gpt2) ...")
            try:
                model = cls.from_pretrained(name)
                model.workshop_name = name
                return model
            except Exception as e:  # a flaky network must not stop a workshop
                say(f"  the download failed ({type(e).__name__}: {e})")
        say(f"model: {name!r} is not cached and the Hub cannot be reached, so this tutorial uses the TINY "
            f"GPT-2 with random weights instead (2 layers, 4 heads, 64 dims). Every check below still holds; "
            f"the model's predictions are noise. With internet access, rerun to use {name}.")
    else:
        say("model: the tiny GPT-2 with random weights (2 layers, 4 heads, 64 dims)")
    model = cls.from_pretrained(tiny_checkpoint_dir())
    model.workshop_name = TINY
    return model


def is_real(model) -> bool:
    """True for a pretrained checkpoint, False for the tiny random stand-in."""
    return getattr(model, "workshop_name", None) != TINY


def is_published_gpt2(model) -> bool:
    """True when the model is the Hub's 124M gpt2, whose activations HF's documentation prints."""
    return getattr(model, "workshop_name", None) in ("gpt2", "openai-community/gpt2")


# -- figures -----------------------------------------------------------------------------------------------------
def in_notebook() -> bool:
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell" or "google.colab" in sys.modules


def pyplot():
    """matplotlib.pyplot, or None (with a message) when matplotlib is not installed."""
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
    """Save ``fig`` as FIGURES_DIR/name.png, say where, and draw it inline in a notebook."""
    import matplotlib.pyplot as plt

    os.makedirs(FIGURES_DIR, exist_ok=True)
    path = os.path.join(FIGURES_DIR, name + ".png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"figure saved: {path}")
    if in_notebook():
        plt.show()
    else:
        plt.close(fig)
    return path


# -- checks and timing -------------------------------------------------------------------------------------------
def check_close(name, ours, library, rtol=1e-5, atol=1e-5):
    """Assert two arrays agree, printing the largest difference (the tutorials' "it equals the library")."""
    import numpy as np

    ours, library = np.asarray(ours), np.asarray(library)
    assert ours.shape == library.shape, f"{name}: shape {ours.shape} != library's {library.shape}"
    np.testing.assert_allclose(ours, library, rtol=rtol, atol=atol, err_msg=name)  # infinities must match too
    finite = np.isfinite(ours) & np.isfinite(library)
    diff = float(np.max(np.abs(ours[finite].astype(np.float64) - library[finite]))) if finite.any() else 0.0
    print(f"ok  {name:<52} shape {str(ours.shape):<16} max |difference| {diff:.2e}")


def best_time(fn, repeat: int = 5, number: int = 1) -> float:
    """The fastest of ``repeat`` runs of ``number`` calls, in seconds per call (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


# -- text ----------------------------------------------------------------------------------------------------------
def tokenizer():
    """GPT-2's tokenizer, minigpt2's own, from the vocabulary bundled with the package (no download)."""
    return minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
