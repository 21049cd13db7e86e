"""A Hub cache, or a checkpoint folder, that several users of one machine share: files made in a folder a group
shares get the group's permissions; whose a file is, what its mode is, and waiting for another user's download
(hub.py's "a cache several users share" says how they are used).

Each function asks the file system only: who owns a path (``owned_by_other``, ``other_owner``), which folder may
not be entered (``closed_folder``, ``unreadable``), what to tell the user about it (``not_readable``,
``cannot_read``), what in a group's tree the group cannot write (``closed_to_group``), whether a folder is open to
all as /tmp is (``open_to_all``), and whether a lock file of the cache is another user's download in progress
(``is_lock_file``, ``wait_while_held``, ``waiting_for_others``, ``saying_who_downloads``, which says so once).
And a small file of one user's own in a cache folder (``make_cache_folder``, ``cannot_write_beside``,
``write_json_atomically``: the kernel choice).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import struct
import tempfile
import threading
import time

from .checkpoint import current_umask

logger = logging.getLogger("minigpt2.hub")  # (hub.py's logger: its messages, said from here)

__all__ = ["group_shared_folder", "in_group", "group_umask", "group_permissions", "share_with_group",
           "share_model_folders", "closed_to_group", "umask_ignored", "open_to_all", "open_locks_to_all", "cannot_read",
           "closed_folder", "group_name", "is_lock_file", "mode_of", "not_readable", "other_owner", "owned_by_other",
           "quiet_about_others_partial_files", "saying_who_downloads", "unreadable", "wait_while_held",
           "waiting_for_others"]


# -- folders a group shares (a workshop's Hugging Face cache, its room folder) ---------------------------------------

def group_shared_folder(path):
    """(folder, group id) when ``path`` lies in a folder tree that a group shares, else None.

    Shared means what an instructor sets up for a room (``chgrp room /srv/hf; chmod 2775 /srv/hf``): the nearest
    folder at or above ``path`` that exists has the setgid bit (what is made inside takes the folder's group, not
    its maker's), and it, or a setgid folder of the same group above it, is writable to the group. ``folder`` is
    the highest such group-writable one. A user's umask (022 by default) would still make every file and folder
    they create there writable to them alone, and so the tree theirs: see ``group_permissions``."""
    if os.name != "posix":
        return None
    path = os.path.abspath(os.fspath(path))
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    found, gid = None, None
    while True:
        try:
            st = os.stat(path)
        except OSError:
            break
        if not st.st_mode & stat.S_ISGID or (gid is not None and st.st_gid != gid):
            break
        gid = st.st_gid
        if st.st_mode & stat.S_IWGRP:
            found = path
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return (found, gid) if found is not None else None


def in_group(gid) -> bool:
    """Whether this process has the group ``gid`` (its own, or one of its supplementary groups: those of the session
    it started in; a user added to a group later has it only after logging in again)."""
    return hasattr(os, "getgroups") and (gid == os.getegid() or gid in os.getgroups())


_umask_lock = threading.Lock()
_umask_holders = [0, None]  # [contexts open, the umask to restore]


def group_umask(mask: int) -> int:
    """``mask`` with the group's bits taken from the owner's (022 -> 002, 077 -> 007): the group gets what the
    owner gets, others what the umask gives them."""
    return (mask & ~0o070) | ((mask & 0o700) >> 3)


@contextlib.contextmanager
def group_permissions(path, inside=()):
    """Inside, the files and folders this process makes get, for their group, the permissions the umask gives their
    owner, when ``path`` is in a folder tree a group shares (group_shared_folder); elsewhere nothing changes. Yields
    the (folder, group id) or None.

    This is git's core.sharedRepository=group for a room's caches: with the usual umask 022 the first user to
    download a model into a cache shared by a group (chmod 2775) made its folders theirs alone, so no one else
    could add a file, a lock or another model there. The umask is the process's: while a context is open, files
    other threads create get the group's permissions too (contexts may nest and overlap; the first sets it, the
    last restores it). Not so where the kernel ignores the umask (``umask_ignored``: a default ACL that gives the
    group the owner's permissions, on the folder where ``path`` would be made and on each folder of ``inside``
    that exists): there the umask is left alone.

    (Setting the permissions after the fact instead, on what the download made, is not enough: a download killed
    midway leaves its lock file and partial file to their maker alone, and another user could not finish it.)"""
    shared = group_shared_folder(path)
    if shared is None or umask_ignored([path, *inside]):
        yield shared
        return
    with _umask_lock:
        if _umask_holders[0] == 0:
            _umask_holders[1] = current_umask()
            os.umask(group_umask(_umask_holders[1]))
        _umask_holders[0] += 1
    try:
        yield shared
    finally:
        with _umask_lock:
            _umask_holders[0] -= 1
            if _umask_holders[0] == 0:
                os.umask(_umask_holders[1])


def share_with_group(shared, paths, recursive=()) -> None:
    """Give the group of ``shared`` (group_shared_folder's answer) the owner's permissions on each of ``paths`` and,
    for those also in ``recursive``, on everything below them: on what this user owns there (no one else may
    chmod it), links aside. Files moved in from elsewhere take the tree's group too. For what an earlier run (or a
    program that follows the umask alone, such as transformers) made with the owner's permissions only. Errors are
    ignored: this only widens permissions where it can."""
    if shared is None or not hasattr(os, "getuid"):
        return
    uid, gid = os.getuid(), shared[1]

    def widen(path):
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or st.st_uid != uid:
                return
            mode = stat.S_IMODE(st.st_mode)
            want = mode | ((mode & 0o700) >> 3)
            if want != mode:
                os.chmod(path, want)
            if st.st_gid != gid:
                os.chown(path, -1, gid)
        except OSError:
            pass

    for path in paths:
        widen(path)
        if path in recursive and os.path.isdir(path) and not os.path.islink(path):
            for root, folders, files in os.walk(path):
                for name in folders + files:
                    widen(os.path.join(root, name))


def share_model_folders(shared, cache_dir, repo_id) -> None:
    """share_with_group for what a download of ``repo_id`` into the Hub cache ``cache_dir`` makes: the cache, its
    lock folder, and the model's folders in both, with everything below them."""
    folders = model_folders(cache_dir, repo_id)
    share_with_group(shared, [cache_dir, os.path.join(cache_dir, ".locks"), *folders,
                              os.path.join(cache_dir, "CACHEDIR.TAG")], recursive=folders)


def model_folders(cache_dir, repo_id):
    """The folders of ``repo_id`` in the Hub cache ``cache_dir``: its lock files' and its own."""
    folder = "models--" + repo_id.replace("/", "--")
    return os.path.join(cache_dir, ".locks", folder), os.path.join(cache_dir, folder)


def closed_to_group(tree, gid):
    """[(path, uid, mode)] of what in ``tree`` lacks, for its group, the permissions its owner has, or is of
    another group than ``gid`` (links aside): what a user's umask kept from the group that shares the tree."""
    found = []
    for root, folders, files in os.walk(tree):
        for path in [root] + [os.path.join(root, name) for name in folders + files]:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            mode = stat.S_IMODE(st.st_mode)
            if not stat.S_ISLNK(st.st_mode) and (st.st_gid != gid or (mode & 0o700) >> 3 & ~mode):
                found.append((path, st.st_uid, mode))
    return found


# A default ACL (acl(5)) on a folder: what is made inside gets the permissions it names, and the umask is not used.
_DEFAULT_ACL = "system.posix_acl_default"
_ACL_GROUP_OBJ, _ACL_MASK = 0x04, 0x10


def umask_ignored(paths) -> bool:
    """Whether the kernel gives the group, in each of ``paths`` (the nearest folder that exists, for one that does
    not yet), what is made there with all the owner's permissions, whatever the umask: a default ACL (``setfacl -d
    -m g::rwX``) whose group entry, and mask if any, allow everything. Linux only; False where that cannot be read.
    """
    if not hasattr(os, "getxattr"):
        return False
    for path in paths:
        path = os.path.abspath(os.fspath(path))
        while not os.path.isdir(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        try:
            acl = os.getxattr(path, _DEFAULT_ACL)
        except OSError:  # no default ACL there (ENODATA), or a file system without ACLs
            return False
        entries = {tag: perm for tag, perm, _ in struct.iter_unpack("<HHI", acl[4:])}
        if entries.get(_ACL_GROUP_OBJ, 0) & 0o7 != 0o7 or entries.get(_ACL_MASK, 0o7) & 0o7 != 0o7:
            return False
    return True


# -- a folder open to all (chmod 1777, as /tmp): no group, each user's files their own ------------------------------

def open_to_all(path) -> bool:
    """Whether ``path`` is a folder every user may add to, each keeping what they add (sticky and writable to all,
    as /tmp: chmod 1777)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISDIR(mode) and mode & stat.S_ISVTX and mode & 0o003 == 0o003


def open_locks_to_all(cache_dir) -> None:
    """In a Hub cache open to all (open_to_all), make its lock folder so too, as long as it is ours: huggingface_hub
    makes it per the umask (0755), so the first user to download a model there kept every other user from adding
    one (each download takes a lock in .locks/<model>/). The models stay their first downloader's: the others read
    them. Errors are ignored: this only widens permissions where it can."""
    if not hasattr(os, "getuid") or not open_to_all(cache_dir):
        return
    locks = os.path.join(cache_dir, ".locks")
    try:
        os.makedirs(locks, exist_ok=True)
        st = os.lstat(locks)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o1777:
            os.chmod(locks, 0o1777)
    except OSError:
        pass


# -- whose a file is, and another user's download ---------------------------------------------------------------

def waiting_for_others(call, cache_dir, what, quick_tries=10):
    """``call()`` (a download into ``cache_dir``), called again when it could not open a lock file of the cache that
    another user made and we may not write: a download of the same file by them is under way (huggingface_hub
    0.x and transformers make lock files per the umask, 0644; filelock makes a new one 0644 for a moment before
    making it 0664). While someone holds the lock, wait (saying so, once), then call again: the file is then in
    the cache. A lock nobody holds is tried again a few times, 0.1 s apart; then, or when the lock file cannot
    even be read (or locked), the PermissionError goes to the caller, which tells who owns it."""
    tries = 0
    while True:
        try:
            return call()
        except PermissionError as e:
            lock = getattr(e, "filename", None)
            if not is_lock_file(lock, cache_dir):
                raise
            held = wait_while_held(lock, what, cache_dir)
            if held is None or (not held and tries >= quick_tries):
                raise
            if not held:
                tries += 1
                time.sleep(0.1)


def is_lock_file(path, cache_dir) -> bool:
    """Whether ``path`` is one of huggingface_hub's lock files in ``cache_dir`` (.locks/<repository>/<hash>.lock)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    path, locks = os.path.abspath(os.fspath(path)), os.path.abspath(os.path.join(cache_dir, ".locks"))
    return path.startswith(locks + os.sep) and path.endswith(".lock")


def wait_while_held(lock, what, cache_dir):
    """Wait until no process holds the lock file ``lock`` (opened read-only: a shared flock needs no write access).
    True if one held it (we waited), False if none did, None if it cannot be opened or locked at all."""
    try:
        import fcntl
    except ImportError:  # (Windows: no flock, and no other users' umasks either)
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    waited = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return waited
            except BlockingIOError:
                if not waited:
                    _say_waiting(other_owner(lock, cache_dir) or "another process", what, cache_dir)
                    waited = True
                time.sleep(0.2)
            except OSError:  # (a file system without flock)
                return None
    finally:
        os.close(fd)


_said_waiting = set()  # (cache, what): said once per process


def _say_waiting(holder, what, cache_dir):
    if (cache_dir, what) not in _said_waiting:
        _said_waiting.add((cache_dir, what))
        logger.warning(f"[{holder} is downloading {what} into the cache {cache_dir} now: waiting until that is done, "
                       f"then reading it from there]")


@contextlib.contextmanager
def saying_who_downloads(lock_folder, what, cache_dir, after=2.0):
    """Inside, a download of ``what`` into ``cache_dir`` whose lock files are in ``lock_folder``: if it still runs
    ``after`` seconds on, holding none of those locks, while another user's process holds one, say once that this
    user waits for theirs. huggingface_hub 1.x and 2.x make their lock files writable to the group (0664) and wait
    for another user's without a word (an INFO log line every 10 s, hidden), so the download of a model another
    user is fetching seemed to hang; 0.x lock files, which others may not write, are waited for by
    waiting_for_others, which says so itself. Linux only (the locks are read in /proc/locks)."""
    done = threading.Event()

    def watch():
        wait = after
        while not done.wait(wait) and (cache_dir, what) not in _said_waiting:
            holder = _other_users_lock(lock_folder)
            if holder is not None:
                _say_waiting(holder, what, cache_dir)
            wait = 1.0

    if os.path.isfile("/proc/locks"):
        threading.Thread(target=watch, daemon=True, name="minigpt2-lock-watch").start()
    try:
        yield
    finally:
        done.set()


class _OthersPartialFile(logging.Filter):
    """Drops huggingface_hub 0.x's warning "Could not set the permissions on the file '<blob>.incomplete' ...
    Operation not permitted" when that file, a download another user began (and was cut short), already gives the
    group its owner's permissions: only its owner may chmod it, and finishing it needs no more."""

    def filter(self, record):
        text = record.getMessage()
        if not text.startswith("Could not set the permissions on the file '"):
            return True
        try:
            st = os.stat(text.split("'", 2)[1])
        except (OSError, IndexError):
            return True
        mode = stat.S_IMODE(st.st_mode)  # (Windows has no os.getuid, nor other users' umasks: the warning stays)
        return not hasattr(os, "getuid") or st.st_uid == os.getuid() or bool((mode & 0o700) >> 3 & ~mode)


@contextlib.contextmanager
def quiet_about_others_partial_files():
    """Inside, _OthersPartialFile filters huggingface_hub's download logger."""
    hub_logger, quiet = logging.getLogger("huggingface_hub.file_download"), _OthersPartialFile()
    hub_logger.addFilter(quiet)
    try:
        yield
    finally:
        hub_logger.removeFilter(quiet)


def _other_users_lock(lock_folder):
    """"user NAME" when another user's process holds an flock on a lock file in ``lock_folder`` and this process holds
    none there; else None."""
    holders = {}  # inode -> pid, from lines such as "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[1] == "FLOCK":
                    holders[int(parts[5].rsplit(":", 1)[1])] = int(parts[4])
        names = os.listdir(lock_folder)
    except (OSError, ValueError, IndexError):
        return None
    pids = set()
    for name in names:
        try:
            pid = holders.get(os.stat(os.path.join(lock_folder, name)).st_ino)
        except OSError:
            continue
        if pid is not None:
            pids.add(pid)
    if not pids or os.getpid() in pids:
        return None
    for pid in pids:
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:  # (gone, or hidden: /proc mounted with hidepid)
            continue
        if uid != os.getuid():
            try:
                import pwd

                return f"user {pwd.getpwuid(uid).pw_name}"
            except (ImportError, KeyError):
                return f"user {uid}"
    return None


def closed_folder(checkpoint, folder):
    """The first folder from ``checkpoint`` down to ``folder`` that we may not look inside (list and enter), or None."""
    path = os.path.abspath(checkpoint)
    parts = os.path.relpath(os.path.abspath(folder), path).split(os.sep)
    for part in [""] + [p for p in parts if p not in ("", ".")]:
        path = os.path.join(path, part) if part else path
        if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK):
            return path
    return None


def not_readable(path, checkpoint) -> str:
    """Why a local checkpoint's file or folder cannot be read, whose it is, and what to do."""
    try:
        st = os.stat(path)
        mode = f"mode {st.st_mode & 0o777:04o}"
        import pwd

        owner = pwd.getpwuid(st.st_uid).pw_name if st.st_uid != os.getuid() else None
    except (OSError, ImportError, KeyError):
        mode, owner = "its mode", None
    whose = f"it belongs to user {owner}" if owner else "it is yours"
    who = f"ask {owner} (or the instructor) to run" if owner else "run"
    return (f"{path} is not readable to you ({mode}; {whose}): {who} `chmod -R a+rX {checkpoint}` (or g+rX, for a "
            f"group you share), or copy the checkpoint to a folder of your own")


def unreadable(cache_dir, repo_id):
    """The cache folder, or the repository's folder in it, when it exists but we may not look inside (another user's,
    made with umask 077); else None."""
    for path in (cache_dir, os.path.join(cache_dir, "models--" + repo_id.replace("/", "--"))):
        if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK):
            return path
    return None


def cannot_read(folder, cache_dir) -> str:
    """What to do about a folder of the cache we may not look inside."""
    try:
        mode = oct(os.stat(folder).st_mode & 0o777)
    except OSError:
        mode = "unknown"
    owner = other_owner(folder, cache_dir)
    opening = "g+rwX" if group_shared_folder(folder) is not None else "a+rX"  # (a group's tree: the group's rights)
    return (f"{folder} is not readable to you (mode {mode}, {'owned by ' + owner if owner else 'yours'}): ask "
            f"{owner or 'the instructor'} to run `chmod -R {opening} {folder}`, or set HF_HUB_CACHE to a directory of "
            f"your own and download it there")


def other_owner(path, cache_dir):
    """The user (login name, else "user <uid>") who owns ``path`` or the nearest folder above it that exists, when
    that is in the cache ``cache_dir`` and not ours; else None."""
    found = owned_by_other(path, cache_dir)
    return found[1] if found is not None else None


def mode_of(path) -> str:
    """"mode 0755, " for a path that exists, else ""."""
    try:
        return f"mode {os.lstat(path).st_mode & 0o7777:04o}, "
    except OSError:
        return ""


def group_name(gid) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def owned_by_other(path, cache_dir):
    """(the path, its owner as other_owner says it) of ``path`` or the nearest folder above it that exists, when
    that is in the cache ``cache_dir`` and not ours; else None."""
    if not path or not hasattr(os, "getuid"):
        return None
    path, cache = os.path.abspath(os.fspath(path)), os.path.abspath(os.fspath(cache_dir))
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if path != cache and not path.startswith(cache.rstrip(os.sep) + os.sep):
        return None
    try:
        uid = os.lstat(path).st_uid
    except OSError:
        return None
    if uid == os.getuid():
        return None
    try:
        import pwd

        return path, f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return path, f"user {uid}"


# -- a small file of one user's own in a cache folder others may share (the kernel choice, _tuning.py) ------

def write_json_atomically(path: str, content: dict):
    """Write atomically: a fresh file (created with mode 0o666, so the umask decides who may read it, as for
    any file the user creates) renamed over the old one; readers see the old file or the new, never half.
    Returns None, or why the file could not be written (a short string)."""
    if not os.path.isabs(path):  # no home directory to expand "~" into: keep the choice in memory only
        return "there is no home directory"
    try:
        make_cache_folder(os.path.dirname(path))
        partial = f"{path}.{os.getpid()}.{threading.get_ident()}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(content, f, indent=1)
            os.replace(partial, path)
        except BaseException:
            os.unlink(partial)
            raise
    except OSError as e:  # a read-only home, XDG_CACHE_HOME naming a file, a full disk: kept for this process only
        return f"{e.strerror or type(e).__name__}: {e.filename or path}"
    return None


def make_cache_folder(folder: str) -> None:
    """os.makedirs, but in a folder tree a group shares (XDG_CACHE_HOME in a room folder, chmod 2775) the folders are
    the group's too, and in a folder open to all (chmod 1777, as /tmp) so is ours, so that every user of it can keep
    their own file there (each reads only their own: _tuning._read_cache; see group_permissions)."""
    with group_permissions(folder):
        os.makedirs(folder, exist_ok=True)
    st = os.lstat(folder)  # (not a link someone put there to a folder of ours, which would be opened to all)
    if (open_to_all(os.path.dirname(folder)) and stat.S_ISDIR(st.st_mode) and hasattr(os, "getuid")
            and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o1777):
        os.chmod(folder, 0o1777)


def cannot_write_beside(path: str):
    """None if a file of the choice's size can be written beside ``path`` (tried: the permission bits say nothing for
    root or on a read-only file system, and a full disk still has room for a new file's name), else why not."""
    if not os.path.isabs(path):
        return "there is no home directory"
    try:
        make_cache_folder(os.path.dirname(path))
        with tempfile.TemporaryFile(dir=os.path.dirname(path)) as f:
            f.write(b" " * 8192)  # (the choice takes about 6 KiB)
            f.flush()
            return None
    except OSError as e:
        return f"{e.strerror or type(e).__name__}: {e.filename or os.path.dirname(path)}"
