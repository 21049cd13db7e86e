"""Finding a checkpoint's files: a local directory, or a repository on the Hugging Face Hub.

    resolve_file("gpt2", "config.json")          # downloaded once, then read from the cache
    resolve_file("./my-model", "config.json")    # a directory: no network at all

Downloads go through ``huggingface_hub`` into the standard HF cache, so files a transformers user already
has are reused and never downloaded twice. The usual environment variables apply, read at each call (so
setting them in a notebook after ``import minigpt2`` works too):

    HF_ENDPOINT      the Hub's address, e.g. a mirror: HF_ENDPOINT=https://hf-mirror.com
    HF_HUB_CACHE     where downloads are kept (default: $HF_HOME/hub, and HF_HOME defaults to ~/.cache/huggingface)
    HF_TOKEN         an access token, for private or gated repositories
    HF_HUB_OFFLINE   1 = never touch the network; use only what is in the cache

A download is written to ``<cache>/blobs/<hash>.incomplete`` and renamed only once every byte has arrived
(huggingface_hub checks the size), and the file name the model is loaded from is a link created after that.
An interrupted download therefore leaves only the ``.incomplete`` file, which nothing loads and the next
download resumes.
"""
from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlsplit

__all__ = ["resolve_file", "hub_settings", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_settings() -> dict:
    """Where downloads come from and go, read from the environment now (same rules as huggingface_hub)."""
    hf_home = os.path.expanduser(os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"))
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(hf_home, "hub")
    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return {
        "endpoint": (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
        "cache_dir": os.path.expanduser(cache),
        "offline": offline.strip().upper() in ("1", "ON", "YES", "TRUE"),
        "token_set": bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")),
    }


def resolve_file(name_or_path, filename, *, revision=None, cache_dir=None, token=None, local_files_only=False,
                 required=True, force_download=False):
    """The local path of ``filename`` of a checkpoint, downloading it from the Hub if needed.

    ``name_or_path`` is a directory, or a Hub repository id ("gpt2", "openai-community/gpt2", "owner/name").
    Returns None when the checkpoint lacks the file and ``required`` is False (offline, a file that is not in the
    cache counts as lacking: optional files never stop a cached checkpoint from loading). ``force_download``
    fetches the file again even if it is cached (e.g. a damaged copy). Every failure is an OSError
    (FileNotFoundError for a missing file) whose message says what was tried and what to do about it.
    """
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise FileNotFoundError(f"the directory {name_or_path} has no {filename}")
        return None
    if _looks_like_path(name_or_path):
        raise FileNotFoundError(f"{name_or_path} is not a directory (looking for {filename}); a model is a "
                                f"directory with config.json and model.safetensors, or a Hub name such as 'gpt2'")

    try:
        import huggingface_hub
        from huggingface_hub.utils import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                           RepositoryNotFoundError, RevisionNotFoundError)
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise ImportError("downloading from the Hub needs huggingface_hub: pip install huggingface_hub") from None

    settings = hub_settings()
    endpoint, offline = settings["endpoint"], settings["offline"] or local_files_only
    if not urlsplit(endpoint).hostname or urlsplit(endpoint).scheme not in ("http", "https"):
        raise OSError(f"HF_ENDPOINT={endpoint!r} is not a web address; it needs http:// or https://, e.g. "
                      f"HF_ENDPOINT=https://hf-mirror.com")
    # huggingface_hub reads HF_HUB_OFFLINE once, when it is imported; ours is read now (see the module docstring).
    huggingface_hub.constants.HF_HUB_OFFLINE = settings["offline"]
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else settings["cache_dir"]
    where = f"{name_or_path!r} on {endpoint}"
    # huggingface_hub retries an unreachable server for ~25 s per file before it falls back to the cache;
    # a quick look first lets a laptop without network use its cache (or fail) at once.
    unreachable = None if offline else _unreachable(endpoint)
    try:
        return huggingface_hub.hf_hub_download(
            name_or_path, filename, revision=revision, cache_dir=cache_dir, token=token,
            local_files_only=offline or unreachable is not None, endpoint=endpoint, force_download=force_download,
        )
    except HFValidationError:
        raise OSError(f"{name_or_path!r} is neither a directory nor a valid Hub repository name "
                      f"('name' or 'owner/name', letters, digits, '-', '_' and '.')") from None
    except LocalEntryNotFoundError as e:  # (a subclass of EntryNotFoundError: it must come first)
        if not required:  # offline or unreachable, and not in the cache: an optional file counts as absent
            return None
        if offline:
            why = ("HF_HUB_OFFLINE is set" if settings["offline"] else "local_files_only=True was passed")
            raise OSError(
                f"{why}, and {filename} of {name_or_path!r} is not in the cache {cache_dir}. Ways out: go online "
                f"once (unset HF_HUB_OFFLINE) and run `python -m minigpt2 --download --model {name_or_path}`, "
                f"point HF_HUB_CACHE at a cache that has it, or pass a local directory with config.json and "
                f"model.safetensors") from None
        cause = unreachable or _short_cause(e.__cause__ or e.__context__)
        raise OSError(
            f"could not download {filename} of {where} ({cause}), and it is not in the cache "
            f"{cache_dir}. Ways out: set HF_ENDPOINT to a mirror you can reach (e.g. "
            f"HF_ENDPOINT=https://hf-mirror.com), download it where you are online "
            f"(`python -m minigpt2 --download --model {name_or_path}`) and copy the cache, or pass a local "
            f"directory with config.json and model.safetensors") from None
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"the repository {where} has no file {filename}") from None
        return None
    except RevisionNotFoundError:
        raise OSError(f"the repository {where} has no revision {revision!r}") from None
    except RepositoryNotFoundError:  # also a gated repository, or a private one without a valid token
        token_hint = ("check that HF_TOKEN grants access to it" if settings["token_set"] or token
                      else "if it is private or gated, set HF_TOKEN to an access token")
        raise OSError(f"{name_or_path!r} is not a local directory, and there is no repository {where} that "
                      f"we may read ({token_hint}); GPT-2 checkpoints are e.g. 'gpt2', 'gpt2-medium', "
                      f"'distilgpt2'") from None
    except OSError as e:  # broken connection mid-download, size mismatch, disk full, ...
        raise OSError(f"downloading {filename} of {where} failed: {_short_cause(e)}. Run the same command again: "
                      f"the download resumes where it stopped") from None


_probes = {}  # endpoint -> (when, result) of the last look: a model's several files share one


def _unreachable(endpoint, timeout=3.0, remember=30.0):
    """None if a TCP connection to the endpoint opens, else why not (a short string). The answer is kept for
    ``remember`` seconds, so that loading a model's files does not wait ``timeout`` for each one.

    With a proxy configured the proxy decides what is reachable, so we do not look ourselves.
    """
    seen = _probes.get(endpoint)
    if seen is not None and time.monotonic() - seen[0] < remember:
        return seen[1]
    result = _probe(endpoint, timeout)
    _probes[endpoint] = (time.monotonic(), result)
    return result


def _probe(endpoint, timeout):
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                       "all_proxy")):
        return None
    url = urlsplit(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as e:
        return f"cannot connect to {host}:{port}: {e.strerror or type(e).__name__}"


def _short_cause(error) -> str:
    """The first line of an error, for a one-line message."""
    if error is None:
        return "no details"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _looks_like_path(name):
    """A Hub id is "name" or "owner/name"; anything else (./x, /x, a/b/c, C:\\x) is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
