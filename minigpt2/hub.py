"""Finding a checkpoint's files: a local directory, or a repository on the Hugging Face Hub.

Downloads go through ``huggingface_hub`` into the standard HF cache, so files a transformers user
already has are reused, and HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_TOKEN and HF_HUB_OFFLINE apply.
"""
from __future__ import annotations

import os

__all__ = ["resolve_file"]


def resolve_file(name_or_path, filename, *, revision=None, cache_dir=None, token=None, local_files_only=False,
                 required=True):
    """The local path of ``filename`` of a checkpoint, downloading it from the Hub if needed.

    Returns None when the file does not exist and ``required`` is False.
    """
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise FileNotFoundError(f"{name_or_path} has no {filename}")
        return None
    if _looks_like_path(name_or_path):
        raise FileNotFoundError(f"{name_or_path} is not a directory (looking for {filename})")

    try:
        import huggingface_hub
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise ImportError("downloading from the Hub needs huggingface_hub: pip install huggingface_hub") from None
    try:
        return huggingface_hub.hf_hub_download(
            name_or_path, filename, revision=revision, cache_dir=cache_dir, token=token,
            local_files_only=local_files_only,
        )
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"the Hub repository {name_or_path!r} has no file {filename}") from None
        return None
    except RepositoryNotFoundError:
        raise OSError(
            f"{name_or_path!r} is neither a local directory nor a repository on the Hub "
            f"({os.environ.get('HF_ENDPOINT', 'https://huggingface.co')})"
        ) from None
    except LocalEntryNotFoundError:
        raise OSError(
            f"could not fetch {filename} of {name_or_path!r}: no connection to "
            f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co')} and it is not in the local cache. "
            f"Ways out: set HF_ENDPOINT to a mirror, pass a local directory, or download it once while online."
        ) from None


def _looks_like_path(name):
    """A Hub id is "name" or "owner/name"; anything else (./x, /x, a/b/c, C:\\x) is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
