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

These settings reach huggingface_hub as arguments of each download (``endpoint=``, ``local_files_only=``), never
by writing into its module globals; so any huggingface_hub from the floor in setup.py to the newest works the same.
(One limit is huggingface_hub's own: imported while HF_HUB_OFFLINE=1, it stays offline in that process.)
The keyword arguments from_pretrained takes for the Hub are ``HUB_OPTIONS``; ``pop_hub_options(kwargs)``
collects them, so every from_pretrained accepts the same ones:

    options = pop_hub_options(kwargs)                # revision, cache_dir, token, local_files_only, ...
    path = resolve_file(name, "config.json", **options)

A download is written to ``<cache>/blobs/<hash>...incomplete`` and renamed only once every byte has arrived
(huggingface_hub checks the size), and the file name the model is loaded from is a link created after that.
An interrupted download therefore leaves at most an ``.incomplete`` file, which nothing loads: huggingface_hub
0.x resumes it at the next download; newer ones (1.33, 2.x) delete it and download the file again.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import time
import warnings
from urllib.parse import urlsplit

from .shared_cache import (cannot_read, closed_folder, group_name, group_permissions, group_shared_folder, in_group,
                           model_folders, mode_of, not_readable, open_locks_to_all, open_to_all, owned_by_other,
                           quiet_about_others_partial_files, saying_who_downloads, share_model_folders, unreadable,
                           waiting_for_others)

__all__ = ["resolve_file", "pop_hub_options", "HUB_OPTIONS", "hub_settings", "DEFAULT_ENDPOINT", "cached_file_named"]

DEFAULT_ENDPOINT = "https://huggingface.co"
logger = logging.getLogger("minigpt2.hub")

# The keyword arguments of from_pretrained (model, config, tokenizer, generation config) that say where a
# checkpoint's files come from; resolve_file takes them, pop_hub_options collects them from **kwargs.
HUB_OPTIONS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "subfolder")

# Names transformers users may still pass: the old name of an option (value kept, with a warning), or an option
# huggingface_hub no longer has (dropped, with a warning that says why nothing is lost).
_RENAMED = {"use_auth_token": "token"}
_RETIRED = {"resume_download": "downloads always resume where they stopped",
            "proxies": "set HTTPS_PROXY (and HTTP_PROXY) in the environment instead"}


def pop_hub_options(kwargs: dict) -> dict:
    """Remove the Hub options (``HUB_OPTIONS``, and transformers' old names for them) from ``kwargs``; return
    them as a dict ready for ``resolve_file(name, filename, **options)``.

        options = pop_hub_options(kwargs)    # kwargs = {"revision": "v1", "use_auth_token": "hf_x", "n_embd": 8}
        options                              # {"revision": "v1", "token": "hf_x"}; kwargs == {"n_embd": 8}

    ``use_auth_token`` becomes ``token`` (a FutureWarning, as in transformers; both at once is a ValueError);
    ``resume_download`` and ``proxies`` are removed with a warning that says what to do instead.
    """
    options = {name: kwargs.pop(name) for name in HUB_OPTIONS if name in kwargs}
    for old, new in _RENAMED.items():
        if old not in kwargs:
            continue
        value = kwargs.pop(old)
        if value is None:
            continue
        if options.get(new) is not None:
            raise ValueError(f"{old}= and {new}= were both passed; pass only {new}= ({old} is its old name)")
        warnings.warn(f"{old}= is deprecated, as in transformers; pass {new}= instead", FutureWarning, stacklevel=2)
        options[new] = value
    for old, why in _RETIRED.items():
        if kwargs.pop(old, None) is not None:
            warnings.warn(f"{old}= is ignored: {why}", UserWarning, stacklevel=2)
    return options


NO_HOME = "HOME is not set, and the password database has no entry for this user"


def without_home(path) -> bool:
    """A path still starting with ~: os.path.expanduser found no home directory to put in its place."""
    return os.fspath(path).startswith("~")


def hub_settings() -> dict:
    """Where downloads come from and go, read from the environment now (same rules as huggingface_hub)."""
    hf_home = os.path.expanduser(os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"))
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(hf_home, "hub")
    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    token_source = _token_source(hf_home)
    return {
        "endpoint": (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
        "cache_dir": os.path.expanduser(cache),
        "offline": offline.strip().upper() in ("1", "ON", "YES", "TRUE"),
        "token_set": token_source is not None,
        "token_source": token_source,
        "hf_home": hf_home,
    }


def _token_source(hf_home):
    """Where huggingface_hub takes the access token from, as its get_token() looks: "HF_TOKEN" (or the old
    "HUGGING_FACE_HUB_TOKEN"), else the path of the token file (HF_TOKEN_PATH, else HF_HOME/token, written by
    `hf auth login`); None if there is none. The token itself is read only to see that it is not empty."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if (os.environ.get(name) or "").strip():
            return name
    path = os.path.expanduser(os.environ.get("HF_TOKEN_PATH") or os.path.join(hf_home, "token"))
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return path if f.read().strip() else None
    except OSError:
        return None


def checkpoint_name(name_or_path) -> str:
    """``name_or_path`` as a str, if it can name a checkpoint (a str or os.PathLike); else a TypeError saying so."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"a checkpoint is named by a directory or a Hub repository id such as 'gpt2' (a str or a "
                        f"path), not {type(name_or_path).__name__} {name_or_path!r}")
    return os.fspath(name_or_path)


def a_file_is_not_a_checkpoint(path, flag="") -> ValueError:
    """The error for a file given where a checkpoint goes (e.g. its model.safetensors): names its directory when
    that is a checkpoint (after ``flag``: the command line says "-m DIR")."""
    holder = os.path.dirname(path) or "."
    hint = f" ({flag}{holder})" if os.path.isfile(os.path.join(holder, "config.json")) else ""
    return ValueError(f"{path} is a file; a checkpoint is the directory that holds config.json and "
                      f"model.safetensors{hint}, or a Hub repository id such as 'gpt2'")


def resolve_file(name_or_path, filename, *, required=True, revision=None, cache_dir=None, token=None,
                 local_files_only=False, force_download=False, subfolder=""):
    """The local path of ``filename`` of a checkpoint, downloading it from the Hub if needed.

    ``name_or_path`` is a directory, or a Hub repository id ("gpt2", "openai-community/gpt2", "owner/name").
    Returns None when the checkpoint lacks the file and ``required`` is False (offline, a file that is not in the
    cache counts as lacking: optional files never stop a cached checkpoint from loading). The other keywords are
    ``HUB_OPTIONS``, as transformers' from_pretrained takes them: ``local_files_only`` (or HF_HUB_OFFLINE=1, read
    now) never touches the network; ``force_download`` fetches the file again even if it is cached (e.g. a
    damaged copy); ``subfolder`` is a folder inside the checkpoint. Every failure is an OSError
    (FileNotFoundError for a missing file) whose message says what was tried and what to do about it.
    """
    name_or_path = checkpoint_name(name_or_path)
    if subfolder:
        filename = f"{subfolder.strip('/')}/{filename}"
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        if os.path.isfile(path):
            if not os.access(path, os.R_OK):  # (another user's, made private by their umask 077 or chmod)
                raise PermissionError(not_readable(path, name_or_path))
            return path
        if os.path.lexists(path):  # there, but unreadable as a file: an error even for an optional file
            raise OSError(_not_a_file(path))
        closed = closed_folder(name_or_path, os.path.dirname(path))
        if closed is not None:  # we may not look inside: the file may well be there
            raise PermissionError(not_readable(closed, name_or_path))
        if required:
            raise FileNotFoundError(f"the directory {name_or_path} has no {filename}")
        return None
    if name_or_path.startswith(("http://", "https://")):  # a repository's web page, copied from the browser
        repo = "/".join(urlsplit(name_or_path).path.strip("/").split("/")[:2]) or "gpt2"
        repo = repo.split("/")[0] if "/" in repo and repo.split("/")[1] in ("tree", "blob", "resolve") else repo
        raise FileNotFoundError(f"{name_or_path} is a web address; name a Hub repository by its id, e.g. {repo!r} "
                                f"(HF_ENDPOINT sets the server, for a mirror), or give a local directory")
    if _looks_like_path(name_or_path):
        repo = name_or_path.rstrip("/")  # "openai-community/gpt2/", a Hub id with a path's trailing slash
        hint = "" if not repo or _looks_like_path(repo) else f" ('{repo}' without the trailing / names that Hub repository)"
        raise FileNotFoundError(f"{name_or_path} is not a directory (looking for {filename}){hint}; a model is a "
                                f"directory with config.json and model.safetensors, or a Hub name such as 'gpt2'")

    try:
        import huggingface_hub
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise ImportError("downloading from the Hub needs huggingface_hub: pip install huggingface_hub") from None
    errors = _hub_errors()

    settings = hub_settings()
    endpoint, offline = settings["endpoint"], settings["offline"] or local_files_only
    if token is None and someone_elses_token(settings) is not None:  # (a room's HF_HOME: one user's login)
        token = False
        if not offline:
            _say_token_not_sent(settings)
    try:
        url = urlsplit(endpoint)
        url.port  # (raises for a port that is not a number)
        fine, why = bool(url.hostname) and url.scheme in ("http", "https"), ""
    except ValueError as e:  # "Invalid IPv6 URL" (an unclosed [), "Port could not be cast to integer value"
        fine, why = False, f" ({e})"
    if not fine:
        raise OSError(f"HF_ENDPOINT={endpoint!r} is not a web address{why}; it needs http:// or https:// and a host, "
                      f"e.g. HF_ENDPOINT=https://hf-mirror.com")
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else settings["cache_dir"]
    if without_home(cache_dir):  # (huggingface_hub would raise a RuntimeError: a traceback on the command line)
        raise OSError(f"the Hugging Face cache {cache_dir} cannot be used: there is no home directory ({NO_HOME}); "
                      f"set HF_HOME to a directory you can write, e.g. HF_HOME=/tmp/hf-$(id -u)")
    where = f"{name_or_path!r} on {endpoint}"
    # huggingface_hub retries an unreachable server (or proxy) for ~25 s per file before it falls back to the
    # cache, or gives up (a proxy that refuses); a quick look first lets a laptop without network use its cache
    # (or fail) at once.
    what = f"{filename} of {name_or_path!r}" + (f" at revision {revision!r}" if revision else "")
    if offline and force_download:  # (huggingface_hub's ValueError names local_files_only even for HF_HUB_OFFLINE)
        why = "HF_HUB_OFFLINE is set" if settings["offline"] else "local_files_only=True was passed"
        raise OSError(f"force_download=True needs the network (to download {what} again), but {why}: "
                      f"{'unset HF_HUB_OFFLINE' if settings['offline'] else 'pass only one of them'}")
    unreachable = None if offline else _unreachable(endpoint)

    def download(cache_only):
        if cache_only:  # (reads the cache, writes nothing; what this user made there is opened to the group)
            try:
                return fetch(True)
            finally:
                share_model_folders(group_shared_folder(cache_dir), cache_dir, name_or_path)
        # In a cache a group shares (chmod 2775: a workshop room's), what the download makes is the group's too,
        # whatever the umask; and another user's download of the same file, whose lock file we may not write, is
        # waited for (see waiting_for_others). In a cache open to all (1777), the lock folder is kept so.
        folders = model_folders(cache_dir, name_or_path)
        with group_permissions(cache_dir, inside=[*folders, *(os.path.join(folders[1], sub) for sub in
                                                              ("blobs", "snapshots", "refs", ".no_exist"))]) as shared:
            open_locks_to_all(cache_dir)
            try:  # (a lock file of a tree no group shares never becomes writable to us: no quick tries then)
                with saying_who_downloads(folders[0], what, cache_dir), quiet_about_others_partial_files():
                    return waiting_for_others(lambda: fetch(False), cache_dir, what, quick_tries=10 if shared else 0)
            finally:
                share_model_folders(shared, cache_dir, name_or_path)

    def fetch(cache_only):
        # Every setting goes in as an argument, read now: huggingface_hub reads HF_HUB_OFFLINE only when it is
        # first imported, and no module of ours writes into its globals (see the module docstring).
        try:
            return huggingface_hub.hf_hub_download(
                name_or_path, filename, revision=revision, cache_dir=cache_dir, token=token,
                local_files_only=cache_only, endpoint=endpoint, force_download=force_download)
        except ValueError as e:
            # With force_download=True huggingface_hub hides the Hub's answer (no such repository, no access, no
            # network) behind "Force download failed due to the above error": that answer is the error.
            cause = e.__cause__
            if not (force_download and isinstance(cause, Exception) and not isinstance(e, errors.HFValidationError)):
                raise
        cause.__context__ = None  # (raised outside the except clause: no loop cause -> ValueError -> cause)
        raise cause

    try:
        try:
            path = download(offline or unreachable is not None)
        except Exception as e:  # (requests' errors are OSErrors, httpx's and httpx2's are not)
            # The look found the way open, yet the network failed (a proxy that accepts connections but reaches
            # nothing, a server that stopped answering): the files after this one go to the cache at once, and
            # this one is looked for there too.
            failure = None if offline or unreachable else _network_failure(e)
            if failure is None:
                raise
            unreachable = failure
            _probes[endpoint] = (time.monotonic(), unreachable)
            path = download(True)
        if unreachable is not None and not offline:
            _say_cache_is_used(endpoint, unreachable, cache_dir)
        return path
    except errors.HFValidationError:
        raise OSError(f"{name_or_path!r} is neither a directory nor a valid Hub repository name "
                      f"('name' or 'owner/name', letters, digits, '-', '_' and '.')") from None
    except errors.LocalEntryNotFoundError as e:  # (a subclass of EntryNotFoundError: it must come first)
        if _http_status(e.__cause__ or e.__context__) == 401:  # (older huggingface_hub: the Hub's refusal inside)
            raise OSError(_refused_token(e.__cause__ or e.__context__, what, endpoint, token, settings,
                                         huggingface_hub)) from None
        if not required:  # offline or unreachable, and not in the cache: an optional file counts as absent
            return None
        hidden = unreadable(cache_dir, name_or_path)
        if hidden is not None:  # (huggingface_hub looks, cannot see in, and calls the file missing)
            why = _not_in_group(cache_dir) or cannot_read(hidden, cache_dir)
            raise OSError(f"{what} may be in the cache {cache_dir}, but {why}") from None
        if offline:
            why = ("HF_HUB_OFFLINE is set" if settings["offline"] else "local_files_only=True was passed")
            raise OSError(
                f"{why}, and {what} is not in the cache {cache_dir}. Ways out: go online "
                f"once (unset HF_HUB_OFFLINE) and run `python -m minigpt2 --download --model {name_or_path}`, "
                f"point HF_HUB_CACHE at a cache that has it, or pass a local directory with config.json and "
                f"model.safetensors") from None
        cause = e.__cause__ or e.__context__
        if unreachable is None and _offline_at_import(e):
            raise OSError(
                f"{filename} of {name_or_path!r} is not in the cache {cache_dir}, and huggingface_hub stays "
                f"offline: it was imported while HF_HUB_OFFLINE was set, and reads it only then. Restart Python "
                f"without HF_HUB_OFFLINE to download it") from None
        raise OSError(
            f"could not download {filename} of {where} ({unreachable or _short_cause(cause)}), and it is not in "
            f"the cache {cache_dir}. Ways out: set HF_ENDPOINT to a mirror you can reach (e.g. "
            f"HF_ENDPOINT=https://hf-mirror.com), download it where you are online "
            f"(`python -m minigpt2 --download --model {name_or_path}`) and copy the cache, or pass a local "
            f"directory with config.json and model.safetensors") from None
    except errors.EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"the repository {where} has no file {filename}") from None
        return None
    except errors.RevisionNotFoundError:
        raise OSError(f"the repository {where} has no revision {revision!r}") from None
    except errors.RepositoryNotFoundError as e:  # also a gated repository, or a private one without a valid token
        sent = _token_named(token, settings)
        token_hint = (f"check that {sent} grants access to it" if sent else
                      f"if it is private or gated, log in with `{_login_command(huggingface_hub)}` or set HF_TOKEN "
                      f"to an access token from {endpoint}/settings/tokens")
        # When the Hub refuses (a private repository with a wrong or missing token), huggingface_hub serves the
        # files already in the cache, silently, as it does offline; so a cached model loads. An optional file
        # (a tokenizer's, generation_config.json) that the cache records as absent (.no_exist, written when it
        # was looked for with access) is taken as absent in the same way, as HF_HUB_OFFLINE=1 would: the model
        # and its tokenizer then agree. A file the cache knows nothing about still needs access: the token error.
        if not required and _recorded_absent(huggingface_hub, name_or_path, filename, cache_dir, revision):
            if where not in _told:  # (once per repository and process, as _say_cache_is_used)
                _told.add(where)
                logger.warning(f"[{where} refused access ({token_hint}): using what the cache {cache_dir} "
                               f"holds for it, as offline]")
            return None
        if isinstance(e, getattr(errors, "GatedRepoError", ())):  # (401 without a token, 403 without access)
            page = f"{endpoint}/{name_or_path}"
            if sent:
                raise OSError(f"the repository {where} is gated, and {sent} has no access to it (yet): ask for "
                              f"access at {page} while logged in to that account, then run again once it is "
                              f"granted") from None
            raise OSError(f"the repository {where} is gated: log in with `{_login_command(huggingface_hub)}` (or "
                          f"set HF_TOKEN to an access token from {endpoint}/settings/tokens) with an account that "
                          f"has asked for access at {page} and been granted it") from None
        raise OSError(f"{name_or_path!r} is not a local directory, and there is no repository {where} that "
                      f"we may read ({token_hint}); GPT-2 checkpoints are e.g. 'gpt2', 'gpt2-medium', "
                      f"'distilgpt2'") from None
    except OSError as e:  # an unusable cache, a full disk, a connection broken mid-download, a size mismatch, ...
        if _http_status(e) == 401:  # (not a missing or gated repository: those are answered above) a token refused
            raise OSError(_refused_token(e, what, endpoint, token, settings, huggingface_hub)) from None
        if getattr(e, "errno", None) in (errno.EACCES, errno.EPERM) and not force_download:
            # A cache shared with other users (HF_HOME of the room): its folders are theirs, so the download could
            # not write (a lock file, refs/main), yet the file may be there, or just finished by another user.
            try:
                path = download(True)
            except Exception:
                path = None
            if path:
                if cache_dir not in _told:
                    _told.add(cache_dir)
                    logger.warning(f"[the Hugging Face cache {cache_dir} is not writable to you "
                                   f"({_short_cause(e)}): using the copies already in it]")
                return path
        raise OSError(_download_failure(e, f"{filename} of {where}", cache_dir, settings["hf_home"],
                                        name_or_path)) from None


# -- a cache several users share ------------------------------------------------------------------------------------
# A cache several users share through a group (a workshop room's HF_HUB_CACHE: chgrp room, chmod 2775) stays theirs
# together: what a download makes there gets the group's permissions whatever the umask (huggingface_hub follows the
# umask, so with 022 the first user's folders would be theirs alone), what this user made there before is opened to
# the group too (shared_cache.group_permissions, share_with_group), and a download of a file another user is
# downloading at that moment waits for theirs when their lock file cannot be written (waiting_for_others), saying so
# also when huggingface_hub (1.x, 2.x) waits for it itself (saying_who_downloads). Where a default ACL already gives
# the group the owner's permissions, the umask is left alone (group_permissions). A folder or file that another user's
# umask kept from the group is named with its owner and the chmod that opens it (_download_failure; the doctor names
# all of them); an access token another user saved in a shared HF_HOME is not sent (someone_elses_token). In a cache
# open to all (chmod 1777, no group), the lock folder is kept open to all so that each user can add models
# (open_locks_to_all); each model stays its first downloader's.

def someone_elses_token(settings=None):
    """(the token file, its owner "user NAME") when the access token huggingface_hub would send comes from a file
    in HF_HOME that another user wrote (not root, nor HF_TOKEN_PATH chosen by this user): HF_HOME shared by a room,
    where one participant's `hf auth login` saved their token, which every other participant's downloads would then
    send as theirs (huggingface_hub and transformers do). minigpt2 sends none instead (see resolve_file)."""
    settings = settings or hub_settings()
    path = settings["token_source"]
    if path in (None, "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") or os.environ.get("HF_TOKEN_PATH") \
            or not hasattr(os, "getuid"):
        return None
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return None
    if uid in (0, os.getuid()):  # (root's: the admin's, for the room, on purpose)
        return None
    try:
        import pwd

        return path, f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return path, f"user {uid}"


def _say_token_not_sent(settings):
    """Once per process: the other user's token is not sent, and what to do."""
    found = someone_elses_token(settings)
    if found is None or found[0] in _told:
        return
    _told.add(found[0])
    logger.warning(f"[the access token in {found[0]} is {found[1]}'s, saved there by their login (HF_HOME "
                   f"{settings['hf_home']} is shared): your downloads do not send it. Public models need none; for "
                   f"your own, set HF_TOKEN, or HF_TOKEN_PATH to a file of yours. A room's shared cache is better set "
                   f"with HF_HUB_CACHE, which keeps each user's token in their own HF_HOME]")


def _refused_token(error, what, endpoint, token, settings, huggingface_hub) -> str:
    """The Hub answered 401 for a repository it did not call missing or gated: the token sent is invalid or expired."""
    sent = _token_named(token, settings) or "the access token"
    return (f"{endpoint} refused {sent} ({_short_cause(error)}) when asked for {what}: it is invalid or expired. "
            f"Create a new one at {endpoint}/settings/tokens (then `{_login_command(huggingface_hub)}` or set "
            f"HF_TOKEN), or remove it: public models need none")


def _token_named(token, settings):
    """Where the token sent to the Hub came from, as a user would name it ("the token passed as token=",
    "HF_TOKEN", "the token in ~/.cache/huggingface/token"); None when no token was sent."""
    if isinstance(token, str) and token:
        return "the token passed as token="
    if token is False or not settings["token_set"]:  # (token=False: transformers' way to send none)
        return None
    source = settings["token_source"]
    return source if source in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") else f"the token in {source}"


def _login_command(huggingface_hub) -> str:
    """The command that saves a token: `hf auth login` since huggingface_hub 0.34, `huggingface-cli login` before."""
    try:
        major, minor = (int(part) for part in huggingface_hub.__version__.split(".")[:2])
    except (AttributeError, ValueError):
        return "hf auth login"
    return "hf auth login" if (major, minor) >= (0, 34) else "huggingface-cli login"


def _recorded_absent(huggingface_hub, repo_id, filename, cache_dir, revision) -> bool:
    """Whether the HF cache records that ``repo_id`` has no ``filename`` at ``revision`` (its .no_exist folder):
    huggingface_hub's try_to_load_from_cache returns a marker object (not a path, not None) for that."""
    try:
        found = huggingface_hub.try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    except Exception:  # (a revision or name it cannot map to the cache: nothing is recorded)
        return False
    return found is not None and not isinstance(found, str)


def _not_a_file(path) -> str:
    """Why ``path``, which exists, is not a file to read: a broken link, or a directory, FIFO, ..."""
    if os.path.islink(path) and not os.path.exists(path):
        return f"{path} is a broken link: it points to {os.readlink(path)}, which does not exist"
    kind = "a directory" if os.path.isdir(path) else "a FIFO, socket or device"
    return f"{path} is not a regular file (it is {kind}); replace it with the file itself"


def cached_file_named(message, repo_id, cache_dir=None):
    """(filename, path) of the file of ``repo_id``'s snapshots in the HF cache that an error ``message`` names
    (the longest such name), or None. A file that fails to load although it was downloaded is damaged (a copy
    of the cache cut short, a disk error): huggingface_hub never checks a cached file again, so only fetching
    it again (``force_download``) or deleting it repairs it."""
    if os.path.isdir(repo_id) or _looks_like_path(repo_id):
        return None
    folder = f"models--{repo_id.replace('/', '--')}"
    snapshots = os.path.join(cache_dir or hub_settings()["cache_dir"], folder, "snapshots")
    found = []
    for root, _, files in os.walk(snapshots):
        for name in files:
            path = os.path.join(root, name)
            tail = os.path.relpath(path, snapshots).split(os.sep, 1)  # [commit, filename in the repository]
            # (matched from the repository's folder on: the message may spell the cache's own path differently)
            if len(tail) == 2 and os.path.join(folder, "snapshots", *tail) in message:
                found.append((tail[1].replace(os.sep, "/"), path))
    return max(found, key=lambda f: len(f[1]), default=None)


# errno values that say the cache itself is unusable: read-only (a directory of another user, a read-only file
# system) or not a directory (HF_HUB_CACHE naming a file). Running again cannot help with these.
_UNUSABLE_CACHE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR}


def _download_failure(error, what, cache_dir, hf_home=None, repo_id="") -> str:
    """Why a download failed and what to do, by its cause: only a broken connection is fixed by running again."""
    code = getattr(error, "errno", None)
    culprit = _hf_home_file(error, cache_dir, hf_home)
    if code in _UNUSABLE_CACHE and culprit is not None:  # e.g. HF_HOME is a file: its token cannot be read
        variable = "HF_TOKEN_PATH" if culprit == _token_path_setting() else "HF_HOME"
        return (f"cannot download {what}: {variable}={os.environ.get(variable) or hf_home} cannot be used: "
                f"huggingface_hub reads {culprit} there before each download ({_short_cause(error)}). Set "
                f"{variable} to {'a directory' if variable == 'HF_HOME' else 'a file'} of your own, or unset it "
                f"(the cache {cache_dir} is not the problem)")
    refused = code in (errno.EACCES, errno.EPERM)
    found = owned_by_other(getattr(error, "filename", None), cache_dir) if refused else None
    shared = group_shared_folder(cache_dir) if refused else None
    if shared is not None and not in_group(shared[1]):  # (added to the group since logging in)
        return f"cannot download {what}: {_not_in_group(cache_dir, error)}"
    hidden = unreadable(cache_dir, repo_id) if refused else None
    if hidden is not None:  # there already, perhaps, but made unreadable to others (umask 077)
        return f"cannot download {what}: {cannot_read(hidden, cache_dir)}"
    if found is not None:  # a cache shared by several users: another one made that folder or file
        culprit, owner = found
        head = (f"cannot download {what}: the Hugging Face cache {cache_dir} is shared, and {culprit} belongs to "
                f"{owner}, so you cannot write in it ({mode_of(culprit)}{_short_cause(error)})")
        if shared is not None:  # set up for a group (chmod 2775), but made with a umask that left the group out
            return (f"{head}. The cache is shared by the group {group_name(shared[1])}, but {owner}'s umask left it "
                    f"to {owner} alone (downloads by transformers or huggingface_hub follow the umask; minigpt2's "
                    f"are made the group's): ask {owner}, or the instructor as root, to run `chmod -R g+rwX "
                    f"{culprit}`, then run the same command again; or set HF_HUB_CACHE to a directory of your own")
        # a model's folders (or its lock files): perhaps that user's download of it, under way
        if any(part.startswith("models--") for part in os.path.relpath(culprit, cache_dir).split(os.sep)):
            return (f"{head}. If {owner} is downloading it now, run the same command again when that is done (then "
                    f"it is read from the cache); else ask them (or the instructor) to download it, or set "
                    f"HF_HUB_CACHE to a directory of your own")
        everyone = (f": the cache is open to all ({mode_of(cache_dir)[:-2]}), but what each user adds to it is "
                    f"theirs alone" if open_to_all(cache_dir) else "")
        return (f"{head}{everyone}. Ask {owner} (or the instructor) to download it, or to make the "
                f"cache writable to a group you share (tutorials/README.md, \"One Hugging Face cache for the room\"); "
                f"or set HF_HUB_CACHE to a directory of your own")
    if code in _UNUSABLE_CACHE:
        # (no $HOME example when the cache is in the home directory: a read-only home is then the likely cause)
        home = os.path.abspath(os.path.expanduser("~"))
        example = ("/tmp/$USER-hf-cache" if os.path.abspath(cache_dir).startswith(home.rstrip(os.sep) + os.sep)
                   else "$HOME/hf-cache")
        return (f"cannot download {what}: the Hugging Face cache {cache_dir} is not a directory you can write "
                f"({_short_cause(error)}). Set HF_HUB_CACHE to a directory of your own, e.g. "
                f"HF_HUB_CACHE={example} (python -m minigpt2 --doctor checks it)")
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):  # (no EDQUOT on Windows)
        return (f"cannot download {what}: the disk holding the Hugging Face cache {cache_dir} is full "
                f"({_short_cause(error)}). Free some space, or set HF_HUB_CACHE to a directory on another disk")
    return f"downloading {what} failed: {_short_cause(error)}. Run the same command again to finish the download"


def _not_in_group(cache_dir, error=None):
    """When the cache is a group's tree and this session lacks that group (added to it since logging in): why the
    cache refuses, and the fix; else None."""
    shared = group_shared_folder(cache_dir)
    if shared is None or in_group(shared[1]):
        return None
    group, cause = group_name(shared[1]), f" ({_short_cause(error)})" if error is not None else ""
    return (f"the Hugging Face cache {cache_dir} is shared by the group {group}, which this session of yours is not "
            f"in{cause}: ask the instructor to add you to it (usermod -aG {group} $USER), then log in again (a session "
            f"keeps the groups it started with); or set HF_HUB_CACHE to a directory of your own")


def _hf_home_file(error, cache_dir, hf_home):
    """The file an OSError names when it lies outside the cache, in HF_HOME (its token file, read before every
    download) or at HF_TOKEN_PATH; else None: then the cache is to blame."""
    name = getattr(error, "filename", None)
    if not name or not hf_home:
        return None
    path, home = os.path.abspath(os.fspath(name)), os.path.abspath(hf_home)
    if path == _token_path_setting():
        return path
    inside = lambda folder: path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)  # noqa: E731
    return path if inside(home) and not inside(os.path.abspath(cache_dir)) else None


def _token_path_setting():
    """HF_TOKEN_PATH as an absolute path, or None when it is not set."""
    path = os.environ.get("HF_TOKEN_PATH")
    return os.path.abspath(os.path.expanduser(path)) if path else None


def _hub_errors():
    """huggingface_hub's error classes: in ``huggingface_hub.errors`` since 0.24 (also re-exported by
    ``huggingface_hub.utils`` up to 2.x), only in ``huggingface_hub.utils`` before."""
    try:
        from huggingface_hub import errors
        errors.HFValidationError, errors.LocalEntryNotFoundError  # both moved there in the same release
        return errors
    except (ImportError, AttributeError):
        from huggingface_hub import utils
        return utils


def _offline_at_import(error) -> bool:
    """Whether huggingface_hub refused the request because it is in offline mode (HF_HUB_OFFLINE was set when it
    was imported). Its exception for that (OfflineModeIsEnabled) is matched by name: its module moved too."""
    while error is not None:
        if type(error).__name__ == "OfflineModeIsEnabled":
            return True
        error = error.__cause__ or error.__context__
    return False


_probes = {}  # endpoint -> (when, result) of the last look: a model's several files share one


def _unreachable(endpoint, timeout=3.0, remember=30.0):
    """None if a TCP connection to the endpoint opens, else why not (a short string). The answer is kept for
    ``remember`` seconds, so that loading a model's files does not wait ``timeout`` for each one.

    With a proxy configured for the endpoint, the connection tried is to the proxy: one that is down means no
    network too. (A proxy that is up but reaches nothing is found by the first download, which then leaves the
    other files to the cache: see resolve_file.)
    """
    seen = _probes.get(endpoint)
    if seen is not None and time.monotonic() - seen[0] < remember:
        return seen[1]
    result = _probe(endpoint, timeout)
    _probes[endpoint] = (time.monotonic(), result)
    return result


def _probe(endpoint, timeout):
    """Open (and close) a TCP connection to the endpoint; or, when requests to it go through a proxy (HTTPS_PROXY,
    HTTP_PROXY, ALL_PROXY and NO_PROXY, read as requests and httpx read them), ask the proxy for the way there."""
    url = urlsplit(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    proxy = _proxy_for(url)
    if proxy is not None:
        return _probe_proxy(proxy, url, host, port, timeout)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as e:
        return f"cannot connect to {host}:{port}: {e.strerror or type(e).__name__}"


def _probe_proxy(proxy, url, host, port, timeout):
    """None if the proxy accepts a connection and does not answer that the endpoint is out of its reach (502, 503,
    504 to a CONNECT for https, to a HEAD for http), else why. Unclear answers (a SOCKS proxy, a slow one, 407) are
    left to huggingface_hub: None."""
    proxy_url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        where = (proxy_url.hostname, proxy_url.port or _PROXY_PORTS.get(proxy_url.scheme, 80))
    except ValueError:  # a port that is not a number: huggingface_hub will say what is wrong with it
        return None
    if not where[0]:
        return None
    try:
        connection = socket.create_connection(where, timeout=timeout)
    except OSError as e:
        return f"cannot connect to the proxy {where[0]}:{where[1]}: {e.strerror or type(e).__name__}"
    if proxy_url.scheme not in ("http", ""):
        connection.close()
        return None
    target = f"{host}:{port}"
    request = (f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n" if url.scheme == "https" else
               f"HEAD {url.scheme}://{target}/ HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n")
    if proxy_url.username is not None:
        import base64
        from urllib.parse import unquote

        secret = f"{unquote(proxy_url.username)}:{unquote(proxy_url.password or '')}".encode()
        request += f"Proxy-Authorization: Basic {base64.b64encode(secret).decode()}\r\n"
    try:
        with connection:
            connection.sendall((request + "\r\n").encode("latin-1"))
            status = connection.makefile("rb").readline(200).decode("latin-1").split(maxsplit=2)
    except (OSError, UnicodeError):
        return None
    if len(status) >= 2 and status[0].startswith("HTTP/") and status[1] in ("502", "503", "504"):
        reason = f" {status[2].strip()}" if len(status) > 2 else ""
        return f"the proxy {where[0]}:{where[1]} answered {status[1]}{reason} for {target}"
    return None


_PROXY_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}


def _proxy_for(url):
    """The proxy configured in the environment for requests to ``url`` (a urlsplit result), or None."""
    from urllib.request import getproxies_environment, proxy_bypass_environment

    proxies = getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or proxy_bypass_environment(url.netloc.rsplit("@", 1)[-1], proxies):
        return None
    return proxy


# (the root of the module, the class) of the errors that mean "the network failed", in the HTTP library that
# huggingface_hub uses: requests (0.x), httpx (1.x), httpx2 (2.x); and Python's own, from a socket
NETWORK_ERRORS = {("requests", "ConnectionError"), ("requests", "Timeout"), ("httpx", "TransportError"),
                  ("httpx2", "TransportError"), ("builtins", "ConnectionError"), ("builtins", "TimeoutError")}


def _network_failure(error):
    """Why the network failed, if ``error`` (or what caused it) is a connection, proxy or timeout error (one of
    NETWORK_ERRORS, found by the names of its classes: none of these libraries is imported here); else None."""
    while error is not None:
        if type(error).__name__ == "OfflineModeIsEnabled":  # not the network: huggingface_hub's offline mode
            return None
        if any((kind.__module__.split(".")[0], kind.__name__) in NETWORK_ERRORS for kind in type(error).__mro__):
            return _short_cause(error)
        error = error.__cause__ or error.__context__
    return None


_told = set()  # endpoints for which the user has been told that the cache serves instead


def _say_cache_is_used(endpoint, why, cache_dir):
    """Once per endpoint and process, on stderr (the logging module's fallback): the files come from the cache."""
    if endpoint in _told:
        return
    _told.add(endpoint)
    logger.warning(f"[{endpoint} cannot be reached ({why}): using the copies already in the cache {cache_dir}]")


def _http_status(error):
    """The HTTP status behind a download error, or None: on the error itself, or on its cause (huggingface_hub before
    0.26 or so wraps the Hub's answer in a LocalEntryNotFoundError when the file is not cached either)."""
    for _ in range(4):
        if error is None:
            return None
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status is not None:
            return status
        error = error.__cause__ or error.__context__
    return None


def _short_cause(error) -> str:
    """The first line of an error, for a one-line message."""
    if error is None:
        return "no details"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _looks_like_path(name):
    """A Hub id is "name" or "owner/name"; anything else (./x, /x, a/b/c, gpt2/, C:\\x) is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/") or "\\" in name
