"""One Linux server for a whole workshop, with REAL Unix users (round 10).

Earlier rounds simulated other users inside one account (os.access patched, files chown'ed to a made-up uid). Here
root makes two users and their room's group, installs minigpt2 once where they cannot write (a root-owned venv, as
an admin's `pip install`), and the users run it as themselves (runuser: their own uid, groups, HOME and umask 022),
often at the same time: downloads from the local hub server (tests/hubserver.py) into one Hugging Face cache the
room's group shares (chgrp room; chmod 2775, as tutorials/README.md tells the instructor), the doctor, the kernel
choice's cache, a checkpoint one user made private, and the tutorials' tiny checkpoint in a room folder.

The venv: this interpreter's Python from a path every user may run (/usr/bin/python3.X), with copies of minigpt2
(this tree's, C core included) and of its dependencies as installed here (pip's install_requires closure). A copy
rather than `pip install .`: the same files, in seconds instead of a minute and a half, and without writing into the
checkout. Needs root (real users) and such a Python: skipped otherwise, with the reason. The users and every folder
made are removed at the end. The kernels are NumPy's (MINIGPT2_KERNEL=numpy) except in the test of the kernel
choice's cache, where the measuring itself is replaced by a stub that says when it runs (it takes 15-20 s here).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import uuid

import pytest

grp = pytest.importorskip("grp", reason="real Unix users: Unix only")
pwd = pytest.importorskip("pwd", reason="real Unix users: Unix only")

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)

from hubserver import HubServer, tiny_checkpoint_files  # noqa: E402

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="real Unix users: Linux only"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="these tests make real Unix users (useradd, runuser): run them as root, as CI does"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("useradd", "userdel", "groupadd", "groupdel", "runuser",
                                                         "setpriv")),
                       reason="needs useradd, userdel, groupadd, groupdel, runuser and setpriv (util-linux, passwd)"),
]

RUNTIME_CODE_TIMEOUT = 90


def _python_for_everyone(user):
    """A python of this interpreter's version that ``user`` may run (not one under /root: pyenv's is 0700)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [os.path.realpath(getattr(sys, "_base_executable", sys.executable)), f"/usr/bin/python{version}",
                  f"/usr/local/bin/python{version}"]
    for candidate in dict.fromkeys(candidates):
        if not os.path.isfile(candidate):
            continue
        done = subprocess.run(["runuser", "-u", user, "--", candidate, "-c",
                               "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, cwd="/", timeout=60)
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    return None


def _requirements(name):
    """The distributions ``name`` needs, ``name`` aside, as pip would install them (markers without extras)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    todo, found = list(metadata.requires(name) or []), {}
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = requirement.name.lower().replace("_", "-")
        if key in found:
            continue
        found[key] = dist = metadata.distribution(requirement.name)
        todo.extend(dist.requires or [])
    return list(found.values())


class Room:
    """Two users (alice, bob) and the room's group, a venv they may run but not write, a hub server, and a folder
    for everything the tests make (removed at the end)."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.group = f"mg2r{tag}"
        self.alice, self.bob = f"mg2a{tag}", f"mg2b{tag}"
        self.users = []
        self.base = tempfile.mkdtemp(prefix="minigpt2-room10-", dir="/tmp")
        os.chmod(self.base, 0o755)
        try:
            subprocess.run(["groupadd", self.group], check=True, capture_output=True)
            for user in (self.alice, self.bob):
                subprocess.run(["useradd", "-m", "-G", self.group, "-s", "/bin/sh", user], check=True,
                               capture_output=True)
                self.users.append(user)
        except BaseException:
            self.close()
            raise
        self.gid = grp.getgrnam(self.group).gr_gid

    def install(self):
        """The admin's venv: root's, readable by all, writable by no participant."""
        python = _python_for_everyone(self.alice)
        if python is None:
            pytest.skip(f"no python{sys.version_info[0]}.{sys.version_info[1]} that other users may run (this one, "
                        f"{sys.executable}, is under a folder only root may enter); install it (apt install python3)")
        from minigpt2 import backend

        self.c_core = backend.c_available()
        self.venv = os.path.join(self.base, "venv")
        subprocess.run([python, "-m", "venv", "--without-pip", self.venv], check=True, capture_output=True)
        site = subprocess.run([os.path.join(self.venv, "bin", "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        for dist in _requirements("minigpt2"):
            for name in dist.files or []:
                if str(name).startswith(".."):  # (console scripts in bin/: not needed)
                    continue
                source, target = str(dist.locate_file(name)), os.path.join(site, str(name))
                if os.path.isfile(source):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy2(source, target)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.partial")
        shutil.copytree(os.path.join(ROOT, "minigpt2"), os.path.join(site, "minigpt2"), ignore=ignore)
        # the tutorials' helpers: each participant's own copy of the repository's tutorials/
        shutil.copytree(os.path.join(ROOT, "tutorials"), os.path.join(self.base, "tutorials"), ignore=ignore)
        subprocess.run(["chmod", "-R", "a+rX,go-w", self.base], check=True)
        self.python = os.path.join(self.venv, "bin", "python")

    def home(self, user):
        return pwd.getpwnam(user).pw_dir

    def folder(self, *parts, shared=True):
        """A new folder in the base; ``shared``: the room's (root:group, 2775), as the instructor makes it."""
        path = os.path.join(self.base, *parts)
        os.makedirs(path)
        if shared:
            os.chown(path, 0, self.gid)
            os.chmod(path, 0o2775)
        return path

    def start(self, user, code, env=None, kernel="numpy", groups=True, umask=0o022):
        """Start ``code`` (Python source) as ``user``, in their home, with an environment of their own."""
        home = self.home(user)
        settings = {"PATH": f"{self.venv}/bin:/usr/bin:/bin", "HOME": home, "USER": user, "LOGNAME": user,
                    "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        if kernel is not None:
            settings["MINIGPT2_KERNEL"] = kernel
        settings.update(env or {})
        if groups:
            who = ["runuser", "-u", user, "--"]
        else:  # a session started before the user was added to the room's group
            entry = pwd.getpwnam(user)
            who = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--"]
        command = who + ["env", "-i"] + [f"{k}={v}" for k, v in settings.items()] + [self.python, "-c", code]
        return subprocess.Popen(command, cwd=home, umask=umask, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def run(self, user, code, **options):
        process = self.start(user, code, **options)
        out, err = process.communicate(timeout=RUNTIME_CODE_TIMEOUT)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def together(self, jobs):
        """Start each (user, code, options) at once; each code prints a line when ready and then waits for the go
        file: so their downloads start together, not after one another's imports. The finished processes."""
        go = os.path.join(self.base, f"go-{uuid.uuid4().hex[:8]}")
        processes = [self.start(user, f"import os, time\n{_WAIT_FOR_GO.format(go=go)}\n{code}", **options)
                     for user, code, options in jobs]
        for process in processes:
            line = process.stdout.readline()
            assert line.strip() == "ready", (line, process.communicate(timeout=30))
        open(go, "w").close()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=RUNTIME_CODE_TIMEOUT)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
        os.remove(go)
        return results

    def close(self):
        for user in self.users:
            subprocess.run(["userdel", "-r", user], capture_output=True)
            for kind in ("workshop", "figures"):  # (the doctor makes its user's figures folder in the temp dir)
                shutil.rmtree(os.path.join(tempfile.gettempdir(), f"minigpt2-{kind}-{user}"), ignore_errors=True)
        subprocess.run(["groupdel", self.group], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


_WAIT_FOR_GO = """import minigpt2, minigpt2.hub, huggingface_hub
print("ready", flush=True)
while not os.path.exists({go!r}):
    time.sleep(0.01)"""


@contextlib.contextmanager
def open_room():
    """A Room with its users and venv installed, and a hub server with two tiny checkpoints (room/tiny, room/other;
    ``.repos``, ``.checkpoint`` the first's folder); everything made is removed afterwards, on failure too."""
    made = Room()
    try:
        made.install()
        checkpoints = tempfile.mkdtemp(dir=made.base)
        made.repos = {"room/tiny": tiny_checkpoint_files(os.path.join(checkpoints, "tiny")),
                      "room/other": tiny_checkpoint_files(os.path.join(checkpoints, "other"), seed=1)}
        made.checkpoint = os.path.join(checkpoints, "tiny")
        os.chmod(checkpoints, 0o755)
        subprocess.run(["chmod", "-R", "a+rX", checkpoints], check=True)
        with HubServer(made.repos) as made.hub:
            yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def room():
    with open_room() as made:
        yield made


def offenders(tree, gid):
    """What in ``tree`` is not the room's to share: of another group, or without the owner's permissions for the
    group (links aside)."""
    bad = []
    for root, folders, files in os.walk(tree):
        for path in [root] + [os.path.join(root, name) for name in folders + files]:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = st.st_mode & 0o777
            if st.st_gid != gid or (mode >> 3) & 0o7 != (mode >> 6) & 0o7:
                bad.append(f"{oct(mode)} {pwd.getpwuid(st.st_uid).pw_name}:{grp.getgrgid(st.st_gid).gr_name} "
                           f"{os.path.relpath(path, tree)}")
    return bad


def no_traceback(result):
    assert "Traceback" not in result.stderr, result.stderr


# -- the room's Hugging Face cache ----------------------------------------------------------------------------------
def test_a_model_one_user_downloaded_into_the_rooms_cache_leaves_it_open_to_the_group(room):
    """The instructor makes the room's HF_HOME group-writable (chgrp room; chmod 2775). With the usual umask 022,
    the first participant's download made hub/, its .locks/ and the model's folders theirs alone (0755): the next
    participant could neither finish that model (its weights: 'Permission denied' on the blobs folder and the lock
    folder) nor add another model ('.../hub/models--room--other belongs to user alice', although that folder did not
    exist: hub/ did). transformers does the same (huggingface_hub follows the umask). Now what minigpt2 downloads in
    a tree a group shares gets the group's permissions, whatever the umask, as git's core.sharedRepository=group."""
    cache = room.folder("hf-one")
    env = {"HF_HOME": cache, "HF_ENDPOINT": room.hub.url}
    first = room.run(room.alice, "from minigpt2.hub import resolve_file; resolve_file('room/tiny', 'config.json')",
                     env=env)
    assert first.returncode == 0, first.stderr
    second = room.run(room.bob, textwrap.dedent("""
        import minigpt2
        from minigpt2.hub import resolve_file
        minigpt2.GPT2LMHeadModel.from_pretrained('room/tiny')   # the weights alice did not download
        resolve_file('room/other', 'config.json')                # another model
        print('bob loaded both')"""), env=env)
    assert second.returncode == 0 and "bob loaded both" in second.stdout, second.stderr
    no_traceback(second)
    assert offenders(cache, room.gid) == []


def test_what_transformers_left_to_one_user_is_opened_to_the_group_by_their_next_minigpt2_run(room):
    """alice first downloaded the model with transformers (plain huggingface_hub: umask 022, so hub/ and the
    model's folders are hers alone). Her next minigpt2 load of it opens what is hers there to the group, so that
    bob can add another model; nothing of anyone else's is touched (only an owner may chmod)."""
    cache = room.folder("hf-healed")
    env = {"HF_HOME": cache, "HF_ENDPOINT": room.hub.url}
    plain = room.run(room.alice, "from huggingface_hub import hf_hub_download as get; get('room/tiny', 'config.json');"
                                 " get('room/tiny', 'model.safetensors')", env=env)
    assert plain.returncode == 0, plain.stderr
    assert offenders(cache, room.gid), "huggingface_hub made the group's folders: this test shows nothing here"
    again = room.run(room.alice, "import minigpt2; minigpt2.GPT2LMHeadModel.from_pretrained('room/tiny')", env=env)
    assert again.returncode == 0, again.stderr
    assert offenders(cache, room.gid) == []
    bob = room.run(room.bob, "import minigpt2; minigpt2.GPT2LMHeadModel.from_pretrained('room/other'); print('ok')",
                   env=env)
    assert bob.returncode == 0 and "ok" in bob.stdout, bob.stderr


def test_two_users_downloading_one_model_at_once_both_load_it(room):
    """Both participants load the same model at the same moment into the room's fresh cache: one of them stopped
    with 'the Hugging Face cache ... is shared, and .../.locks/models--room--tiny/<hash>.lock belongs to user
    alice, so you cannot write it' in 8 of 10 tries with huggingface_hub 0.36 (its lock files follow the umask:
    0644), as transformers did (with a traceback) in 1 of 8. Now both load it, every time."""
    for attempt in range(3):
        cache = room.folder(f"hf-race{attempt}")
        env = {"HF_HOME": cache, "HF_ENDPOINT": room.hub.url}
        code = "minigpt2.GPT2LMHeadModel.from_pretrained('room/tiny'); print('loaded')"
        results = room.together([(room.alice, code, {"env": env}), (room.bob, code, {"env": env})])
        for user, result in zip((room.alice, room.bob), results):
            assert result.returncode == 0 and "loaded" in result.stdout, (attempt, user, result.stderr)
        assert offenders(cache, room.gid) == [], attempt


_SLOW_PLAIN_DOWNLOAD = """
import os, sys, time
from huggingface_hub import file_download, hf_hub_download
hf_hub_download('room/tiny', 'config.json')
real = file_download.http_get
def http_get(*args, **kwargs):  # (inside huggingface_hub's lock for the file)
    print('downloading', flush=True)
    time.sleep(4)
    return real(*args, **kwargs)
file_download.http_get = http_get
print(hf_hub_download('room/tiny', 'model.safetensors'))
"""


def test_a_download_waits_for_another_users_download_of_the_same_file(room):
    """alice downloads the model with transformers (plain huggingface_hub, umask 022: its lock file 0644, hers
    alone); bob loads it with minigpt2 meanwhile. He could not open her lock file, found nothing in the cache yet,
    and stopped: 'If user alice is downloading it now, run the same command again when that is done'. Now he waits
    for her download (a shared lock needs no write access: the lock file opened read-only), saying so once, and
    loads her copy."""
    from huggingface_hub import file_download

    if not hasattr(file_download, "http_get"):
        pytest.skip("this huggingface_hub has no file_download.http_get to slow alice's download down with")
    cache = room.folder("hf-wait")
    env = {"HF_HOME": cache, "HF_ENDPOINT": room.hub.url}
    alice = room.start(room.alice, _SLOW_PLAIN_DOWNLOAD, env=env)
    line = alice.stdout.readline()
    assert line.strip() == "downloading", (line, alice.communicate(timeout=30))
    bob = room.run(room.bob, "import minigpt2; minigpt2.GPT2LMHeadModel.from_pretrained('room/tiny'); print('loaded')",
                   env=env)
    out, err = alice.communicate(timeout=RUNTIME_CODE_TIMEOUT)
    assert alice.returncode == 0, err
    assert bob.returncode == 0 and "loaded" in bob.stdout, bob.stderr
    assert f"user {room.alice} is downloading model.safetensors of 'room/tiny'" in bob.stderr, bob.stderr
    no_traceback(bob)


def test_the_doctor_leaves_the_rooms_cache_open_and_names_who_closed_it(room):
    """The doctor, the first thing each participant runs, made the room's hub/ folder (to see that it is writable)
    per the umask: alice's doctor said 'caches writable', and bob's, right after, '[FAIL] caches: the Hugging Face
    cache .../hub is not writable; fix: set HF_HUB_CACHE to a directory of your own' (for a folder the instructor
    set up to share). Now the folder it makes is the group's. A folder another program's umask kept from the group
    is named with its owner and the chmod that opens it; a session that lacks the room's group (added since logging
    in) is told to log in again."""
    cache = room.folder("hf-doctor")
    env = {"HF_HOME": cache, "HF_HUB_OFFLINE": "1"}
    doctor = "from minigpt2 import doctor; doctor.main()"
    for user in (room.alice, room.bob):
        result = room.run(user, doctor, env=env)
        assert "[FAIL]" not in result.stdout, (user, result.stdout)
    assert offenders(cache, room.gid) == []
    # transformers run by alice (umask 022) made another cache folder in the room's tree
    closed = os.path.join(cache, "closed-hub")
    made = room.run(room.alice, f"import os; os.makedirs({closed!r})", env=env)
    assert made.returncode == 0, made.stderr
    result = room.run(room.bob, doctor, env={**env, "HF_HUB_CACHE": closed})
    line = next(line for line in result.stdout.splitlines() if "caches:" in line)
    fix = result.stdout.split(line + "\n", 1)[1].splitlines()[0]
    assert "[FAIL]" in line and f"belongs to user {room.alice}" in line and room.group in line, result.stdout
    assert f"chmod -R g+rwX {closed}" in fix and "HF_HUB_CACHE" in fix, result.stdout
    # bob, added to the room's group after logging in: his session does not have it
    result = room.run(room.bob, doctor, env={**env, "HF_HUB_CACHE": os.path.join(cache, "new-hub")}, groups=False)
    text = result.stdout
    assert f"the group {room.group}'s, which this session of yours is not in" in text, text
    assert "log in again" in text and "usermod -aG" in text, text


def test_a_download_without_the_rooms_group_says_to_log_in_again(room):
    """A participant added to the room's group while logged in downloads into the room's cache: it said only that
    the cache was not a directory they could write ('set HF_HUB_CACHE to a directory of your own')."""
    cache = room.folder("hf-nogroup")
    result = room.run(room.bob, "import sys, minigpt2.cli; sys.exit(minigpt2.cli.main(['--model', 'room/tiny', "
                                "'Hello', '--max-new-tokens', '2']))",
                      env={"HF_HOME": cache, "HF_ENDPOINT": room.hub.url}, groups=False)
    assert result.returncode == 1, result.stderr
    no_traceback(result)
    assert f"shared by the group {room.group}, which this session of yours is not in" in result.stderr, result.stderr
    assert "log in again" in result.stderr, result.stderr


def test_a_token_one_user_saved_in_the_rooms_hf_home_is_not_sent_by_the_others(room):
    """With the room's cache set as HF_HOME, alice's `hf auth login` saved her access token there (huggingface_hub
    writes HF_HOME/token per the umask: 0644), and every download of bob's sent it as his: the Hub saw alice
    (transformers does the same). Now minigpt2 sends no token another user saved there, says so once, and the doctor
    warns both: bob that it is not his, alice that the room can read hers."""
    hf_home = room.folder("hf-token")
    env = {"HF_HOME": hf_home, "HF_ENDPOINT": room.hub.url}
    saved = room.run(room.alice, "import os, pathlib; pathlib.Path(os.environ['HF_HOME'], 'token').write_text("
                                 "'hf_alice_secret')", env=env)  # (as huggingface_hub's login writes it)
    assert saved.returncode == 0, saved.stderr
    before = len(room.hub.requests)
    bob = room.run(room.bob, "import minigpt2; minigpt2.GPT2LMHeadModel.from_pretrained('room/tiny'); print('ok')",
                   env=env)
    assert bob.returncode == 0 and "ok" in bob.stdout, bob.stderr
    sent = [headers.get("authorization") for _, _, headers in room.hub.requests[before:]]
    assert sent and not any(sent), sent
    note = [line for line in bob.stderr.splitlines() if "access token" in line]
    assert len(note) == 1 and f"user {room.alice}'s" in note[0] and "not send" in note[0], bob.stderr
    before = len(room.hub.requests)
    alice = room.run(room.alice, "import minigpt2; minigpt2.GPT2LMHeadModel.from_pretrained('room/other')", env=env)
    assert alice.returncode == 0 and "access token" not in alice.stderr, alice.stderr
    assert "Bearer hf_alice_secret" in {h.get("authorization") for _, _, h in room.hub.requests[before:]}
    doctor = "from minigpt2 import doctor; doctor.main()"
    for user, said in ((room.bob, f"is user {room.alice}'s"), (room.alice, "readable by others (mode 0644)")):
        out = room.run(user, doctor, env={**env, "HF_HUB_OFFLINE": "1"}).stdout
        assert any(line.startswith("[warn] caches") and said in line for line in out.splitlines()), (user, out)


# -- a checkpoint another user made private ---------------------------------------------------------------------------
def test_a_checkpoint_another_user_keeps_private_is_named_with_its_owner(room):
    """alice (umask 077) saves a model into the room's folder; bob runs `python -m minigpt2 -m FOLDER`. Her folder
    (0700) got 'the directory ... has no config.json' (it has: bob may not look inside), her files in a folder
    opened to all (0600) a bare '[Errno 13] Permission denied: .../config.json' (from_pretrained: a traceback).
    Now both name the file or folder, its owner and the chmod that opens it."""
    folder = os.path.join(room.folder("private"), "model")
    saved = room.run(room.alice, f"import minigpt2; minigpt2.GPT2LMHeadModel.from_pretrained({room.checkpoint!r})"
                                 f".save_pretrained({folder!r})", umask=0o077)
    assert saved.returncode == 0, saved.stderr
    cli = ("import sys, minigpt2.cli; sys.exit(minigpt2.cli.main(['-m', %r, 'Hello', '--max-new-tokens', '2']))"
           % folder)
    for closed in (folder, os.path.join(folder, "config.json")):
        if closed != folder:
            os.chmod(folder, 0o755)  # the folder opened to all, its files still hers alone
        result = room.run(room.bob, cli)
        assert result.returncode == 1, result.stderr
        no_traceback(result)
        message = result.stderr.strip().splitlines()[-1]
        assert f"{closed} is not readable to you" in message and f"belongs to user {room.alice}" in message, message
        assert f"chmod -R a+rX {folder}" in message, message
    api = room.run(room.bob, f"import minigpt2\ntry:\n    minigpt2.GPT2LMHeadModel.from_pretrained({folder!r})\n"
                             f"except PermissionError as e:\n    print('PermissionError:', e)")
    assert f"PermissionError: {os.path.join(folder, 'config.json')} is not readable" in api.stdout, api.stderr


# -- the kernel choice's cache --------------------------------------------------------------------------------------
_CLI_WITH_STUB_MEASURING = """
import runpy, sys
from minigpt2 import _tuning
def calibrate():
    print('<measuring>', file=sys.stderr, flush=True)
    return {c: _tuning.NUMPY for c in list(_tuning.CLASSES) + _tuning._narrow_classes()}, {}
_tuning.calibrate = calibrate
sys.argv = ['minigpt2', '--model', %r, 'Hello', '--max-new-tokens', '2']
runpy.run_module('minigpt2', run_name='__main__')
"""


def test_each_users_kernel_choice_is_their_own(room):
    """Each user's first run measures the kernels once and the next reads the choice; but XDG_CACHE_HOME naming a
    folder another user can read (alice's ~/.cache, or one the room shares) gave bob alice's choice, never measured
    for him (silently), and a folder both could write let each replace the other's file. Now the choice is kept per
    user and only one's own file is read. A read-only HOME runs with one line; a relative XDG_CACHE_HOME, which the
    XDG specification calls invalid, is ignored (it said 'cannot be saved in cache/minigpt2 (there is no home
    directory)')."""
    if not room.c_core:
        pytest.skip("the C core is not built: no kernel choice to cache")
    cli = _CLI_WITH_STUB_MEASURING % room.checkpoint

    def measures(user, **env):
        result = room.run(user, cli, env=env, kernel=None)
        assert result.returncode == 0 and result.stdout.startswith("Hello"), result.stderr
        no_traceback(result)
        return "<measuring>" in result.stderr, result

    alice_cache = os.path.join(room.home(room.alice), ".cache")
    assert measures(room.alice)[0] and not measures(room.alice)[0]  # once, then from the cache
    (saved,) = os.listdir(os.path.join(alice_cache, "minigpt2"))
    alices = os.path.join(alice_cache, "minigpt2", saved)
    before = open(alices, "rb").read(), os.stat(alices).st_mtime_ns
    # bob, pointed at alice's cache (readable to him): measures for himself, cannot save there, says so in one line
    measured, result = measures(room.bob, XDG_CACHE_HOME=alice_cache)
    assert measured and result.stderr.count("cannot be saved") == 1, result.stderr
    # a cache folder the room shares: each keeps a file of their own there
    shared = room.folder("xdg-shared")
    assert measures(room.alice, XDG_CACHE_HOME=shared)[0]
    assert measures(room.bob, XDG_CACHE_HOME=shared)[0], "bob took alice's kernel choice"
    assert not measures(room.bob, XDG_CACHE_HOME=shared)[0] and not measures(room.alice, XDG_CACHE_HOME=shared)[0]
    owners = sorted(pwd.getpwuid(os.stat(os.path.join(shared, "minigpt2", name)).st_uid).pw_name
                    for name in os.listdir(os.path.join(shared, "minigpt2")))
    assert owners == sorted([room.alice, room.bob]), owners
    assert (open(alices, "rb").read(), os.stat(alices).st_mtime_ns) == before
    # alice puts a file of hers where bob's is (the folder is the group's): bob does not take it for his
    (bobs,) = [name for name in os.listdir(os.path.join(shared, "minigpt2"))
               if os.stat(os.path.join(shared, "minigpt2", name)).st_uid == pwd.getpwnam(room.bob).pw_uid]
    bobs = os.path.join(shared, "minigpt2", bobs)
    planted = room.run(room.alice, f"import shutil; shutil.copy({bobs!r}, {bobs!r} + '.x'); "
                                   f"import os; os.replace({bobs!r} + '.x', {bobs!r})")
    assert planted.returncode == 0 and os.stat(bobs).st_uid == pwd.getpwnam(room.alice).pw_uid, planted.stderr
    assert measures(room.bob, XDG_CACHE_HOME=shared)[0], "bob took a file alice put in his place"
    # a home that cannot be written (/), and a relative XDG_CACHE_HOME
    measured, result = measures(room.bob, HOME="/")
    lines = [line for line in result.stderr.splitlines() if "kernel choice" in line]
    assert measured and len(lines) == 1 and "XDG_CACHE_HOME" in lines[0], result.stderr
    measured, result = measures(room.bob, XDG_CACHE_HOME="relative-cache")  # (run in bob's home)
    assert measured and "cannot be saved" not in result.stderr, result.stderr
    assert not os.path.exists(os.path.join(room.home(room.bob), "relative-cache"))
    assert len(os.listdir(os.path.join(room.home(room.bob), ".cache", "minigpt2"))) == 1
    assert not measures(room.bob, XDG_CACHE_HOME="relative-cache")[0]


# -- the tutorials' tiny checkpoint in a room folder ------------------------------------------------------------------
_TINY = """
import os, sys
sys.path.insert(0, %r)
import _workshop
print(_workshop.tiny_checkpoint_dir())
"""


def test_two_users_share_the_tiny_checkpoint_in_the_rooms_folder(room):
    """MINIGPT2_WORKSHOP_CACHE names a folder in the room's shared tree. The first participant made it theirs
    (0755), so the tiny checkpoint of the next version went to a folder of each other participant's own ('(the
    workshop cache ... is not a folder you can write (Permission denied): the tiny checkpoint goes to
    /tmp/minigpt2-workshop-bob)'), and the checkpoint's files took their maker's own group (its folder lost the
    setgid bit to a chmod). Now the folder and the checkpoint are the group's, for both at once and after."""
    room_folder = room.folder("tutorials-room")
    workshop = os.path.join(room_folder, "workshop")
    env = {"MINIGPT2_WORKSHOP_CACHE": workshop}
    code = _TINY % os.path.join(room.base, "tutorials")
    results = room.together([(room.alice, code, {"env": env}), (room.bob, code, {"env": env})])
    paths = set()
    for result in results:
        assert result.returncode == 0, result.stderr
        paths.add(result.stdout.strip().splitlines()[-1])
        assert "goes to" not in result.stdout, result.stdout
    assert len(paths) == 1 and paths.pop().startswith(workshop + os.sep)
    # the next version's checkpoint (this one's, moved aside as an older version's), made by the other user
    (made,) = os.listdir(workshop)
    os.rename(os.path.join(workshop, made), os.path.join(workshop, made + "-older"))
    owner = pwd.getpwuid(os.stat(os.path.join(workshop, made + "-older")).st_uid).pw_name
    other = room.bob if owner == room.alice else room.alice
    result = room.run(other, code, env=env)
    assert result.returncode == 0 and result.stdout.strip() == os.path.join(workshop, made), result.stdout
    assert offenders(workshop, room.gid) == []


_OWN_FOLDERS = """
import os, sys, types
sys.path.insert(0, %r)
import _workshop
try:
    print('tiny checkpoint in', _workshop.tiny_checkpoint_dir())
except OSError as e:
    print('OSError:', e)
class Figure:  # (no matplotlib in the room's venv: what show() asks of a figure and of pyplot)
    def savefig(self, path, **options):
        open(path, 'wb').write(b'PNG')
sys.modules['matplotlib'] = types.ModuleType('matplotlib')
sys.modules['matplotlib.pyplot'] = pyplot = types.ModuleType('matplotlib.pyplot')
pyplot.close = lambda figure: None
sys.modules['matplotlib'].pyplot = pyplot
_workshop.show(Figure(), 'attention')
"""


def test_the_folders_named_after_a_user_in_tmp_are_not_taken_from_another_user(room):
    """A participant's own folders are named after them in the shared /tmp (minigpt2-workshop-<user> for the tiny
    checkpoint when the room's folder cannot be written, minigpt2-figures-<user> for the figures): anyone may make
    them first. alice made bob's (chmod 777), and bob's tutorials saved his tiny checkpoint and his figures in them,
    where alice could read them or swap in weights of her own. Now a folder of one's own that another user made is
    refused, naming its owner and the setting to use instead."""
    temp = tempfile.gettempdir()
    taken = [os.path.join(temp, f"minigpt2-{kind}-{room.bob}") for kind in ("workshop", "figures")]
    for path in taken:  # (bob's doctor, in another test, made his figures folder)
        shutil.rmtree(path, ignore_errors=True)
    try:
        made = room.run(room.alice, "import os\nfor path in %r:\n    os.makedirs(path); os.chmod(path, 0o777)" % taken)
        assert made.returncode == 0, made.stderr
        closed = room.folder("closed-workshop", shared=False)  # the room's folder, not writable to bob
        result = room.run(room.bob, _OWN_FOLDERS % os.path.join(room.base, "tutorials"),
                          env={"MINIGPT2_WORKSHOP_CACHE": closed})
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert f"OSError: the workshop cache {closed}" in out and f"belongs to user {room.alice}" in out, out
        assert "MINIGPT2_WORKSHOP_CACHE=~/minigpt2-workshop" in out, out
        assert f"figure attention not saved: the figures folder {taken[1]}" in out and "MINIGPT2_FIGURES" in out, out
        assert [os.listdir(path) for path in taken] == [[], []]
    finally:
        for path in taken:
            shutil.rmtree(path, ignore_errors=True)


# -- training into a folder another user owns -------------------------------------------------------------------------

def test_training_into_another_users_out_names_them_and_a_folder_of_ones_own(room):
    """bob trains into the --out alice made (0755, hers): it said "--out ... cannot be used: Permission denied
    (.train.lock); give --out a directory you can write", even while her run held it, and without the lock
    "continue that run with --resume", which cannot work in her folder. Now: whose it is, that her run is training
    into it now (its process), and a folder of his own to use."""
    out = os.path.join(room.folder("train-runs"), "run")
    corpus = os.path.join(room.base, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("the cat sat on the mat. " * 400)
    os.chmod(corpus, 0o644)
    made = room.run(room.alice, f"import os; os.makedirs({out!r}); os.chmod({out!r}, 0o755)")
    assert made.returncode == 0, made.stderr
    train = (f"import sys; from minigpt2.cli import main; sys.exit(main(['train', '--data', {corpus!r}, '--out', "
             f"{out!r}, '--n-layer', '1', '--n-embd', '16', '--n-head', '2', '--seq-len', '16', '--max-steps', '1']))")
    release = os.path.join(room.base, "release-the-lock")
    holding = room.start(room.alice, f"import fcntl, os, time\nf = open({out!r} + '/.train.lock', 'a+')\n"
                         f"fcntl.flock(f, fcntl.LOCK_EX); f.write(str(os.getpid())); f.flush()\n"
                         f"print('held', flush=True)\nwhile not os.path.exists({release!r}): time.sleep(0.05)")
    try:
        assert holding.stdout.readline().strip() == "held", holding.stderr.read()
        during = room.run(room.bob, train)
    finally:
        open(release, "w").close()
        holding.communicate(timeout=60)
    no_traceback(during)
    assert during.returncode == 1, (during.stdout, during.stderr)
    with open(os.path.join(out, ".train.lock")) as f:
        pid = f.read().strip()  # (alice's process, under runuser)
    assert f"--out {out} belongs to user {room.alice}, training into it now (process {pid})" in during.stderr, \
        during.stderr
    assert f"Train into a folder of your own (e.g. --out {os.path.dirname(out)}/{room.bob}-run)" in during.stderr
    after = room.run(room.bob, train)
    no_traceback(after)
    assert after.returncode == 1 and f"--out {out} belongs to user {room.alice}: you cannot write in it" in \
        after.stderr, after.stderr
    assert "--resume" not in after.stderr and "Permission denied" not in after.stderr, after.stderr
