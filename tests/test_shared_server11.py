"""A workshop's shared Hugging Face cache, played by REAL Unix users (round 11; tests/test_shared_server10.py has the
room, its venv and its users): a download killed midway, a default ACL that makes the umask moot, what transformers
or huggingface_hub downloaded per a user's umask, a cache open to all (chmod 1777), a session without the room's
group meeting a model a umask 077 kept from others. Needs root (real users): skipped otherwise, with the reason; the
users, the group and every folder made are removed at the end, also after a failure.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS)

from test_shared_server10 import (_SLOW_PLAIN_DOWNLOAD, no_traceback, offenders, open_room,  # noqa: E402,F401
                                  pytestmark)
from hubserver import HubServer  # noqa: E402

LOAD = "import minigpt2; minigpt2.GPT2LMHeadModel.from_pretrained(%r); print('loaded')"
DOCTOR = "from minigpt2 import doctor; doctor.main()"


@pytest.fixture(scope="module")
def room():
    with open_room() as made:
        yield made


def caches_line(result):
    """The doctor's line about the caches, and its fix (or "")."""
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "caches" in line and line.startswith("["))
    fix = lines[at + 1] if at + 1 < len(lines) and lines[at + 1].lstrip().startswith("fix:") else ""
    return lines[at], fix


def test_a_download_killed_midway_is_finished_by_another_user(room):
    """alice's download of the weights is killed midway (kill -9: no cleanup of hers runs), leaving its lock file
    and its partial file in the room's cache; bob then loads the model. Setting the group's permissions after the
    download (instead of giving the download the group's umask) left those two 0644, alice's alone, and bob stopped
    with '... .lock belongs to user alice, so you cannot write in it'. With the group's umask while it runs, bob
    finishes her download, without huggingface_hub 0.x's warning that it could not chmod her partial file."""
    cache = room.folder("hf-killed")
    with HubServer(room.repos, stall_after=100_000) as slow:
        alice = room.start(room.alice, LOAD % "room/tiny", env={"HF_HUB_CACHE": cache, "HF_ENDPOINT": slow.url})
        try:
            deadline = time.monotonic() + 60
            while not any(name.endswith(".incomplete") for _, _, names in os.walk(cache) for name in names):
                assert time.monotonic() < deadline and alice.poll() is None, alice.communicate(timeout=30)
                time.sleep(0.05)
            time.sleep(0.3)  # (the first 100 kB written)
        finally:
            subprocess.run(["pkill", "-KILL", "-u", room.alice], capture_output=True)
            alice.communicate(timeout=30)
    bob = room.run(room.bob, LOAD % "room/tiny", env={"HF_HUB_CACHE": cache, "HF_ENDPOINT": room.hub.url})
    assert bob.returncode == 0 and "loaded" in bob.stdout, bob.stderr
    assert offenders(cache, room.gid) == []
    # huggingface_hub 0.x could not chmod alice's partial file (only she may) and said so, as if something failed
    assert "Could not set the permissions" not in bob.stderr, bob.stderr


_UMASK_DURING_DOWNLOAD = """
import huggingface_hub
from minigpt2.checkpoint import current_umask
real = huggingface_hub.hf_hub_download
def download(*args, **kwargs):
    print('umask %04o' % current_umask(), flush=True)
    return real(*args, **kwargs)
huggingface_hub.hf_hub_download = download
import minigpt2
minigpt2.GPT2LMHeadModel.from_pretrained('room/tiny')
"""


def _default_acl(folder, group_perm=0o7):
    """Give ``folder`` a default ACL (as `setfacl -d -m u::rwx,g::rwx,o::rx` does), written as the kernel reads it."""
    entries = ((0x01, 0o7), (0x04, group_perm), (0x20, 0o5))  # the owner, the group, the others
    os.setxattr(folder, "system.posix_acl_default",
                struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF) for tag, perm in entries))


def test_the_umask_is_left_alone_where_a_default_acl_gives_the_group_its_rights(room):
    """The group's umask is the whole process's while a download runs (files other threads make meanwhile get it
    too). Where the instructor gave the room's folder a default ACL (setfacl -d -m g::rwx), the kernel ignores the
    umask there and gives the group the owner's permissions itself: the download now runs with the user's own
    umask (it ran with 002). Without the ACL it still needs the group's umask."""
    with_acl, without = room.folder("hf-acl"), room.folder("hf-no-acl")
    try:
        _default_acl(with_acl)
    except OSError as e:
        pytest.skip(f"no default ACLs on this file system ({e})")
    for cache, umask in ((with_acl, "0022"), (without, "0002")):
        result = room.run(room.alice, _UMASK_DURING_DOWNLOAD, env={"HF_HUB_CACHE": cache,
                                                                   "HF_ENDPOINT": room.hub.url})
        assert result.returncode == 0, result.stderr
        assert set(line for line in result.stdout.splitlines() if line.startswith("umask")) == {f"umask {umask}"}, \
            (cache, result.stdout)
        assert offenders(cache, room.gid) == [], cache
    bob = room.run(room.bob, LOAD % "room/other", env={"HF_HUB_CACHE": with_acl, "HF_ENDPOINT": room.hub.url})
    assert bob.returncode == 0 and "loaded" in bob.stdout, bob.stderr


_PLAIN = "from huggingface_hub import hf_hub_download as get\nfor name in ('config.json', 'model.safetensors'):\n" \
         "    get(%r, name)"


def test_what_huggingface_hub_left_to_one_user_is_named_by_the_doctor_and_opened_by_its_owner(room):
    """alice downloads with plain huggingface_hub (as transformers does; umask 022) into the room's cache: what it
    made is hers alone. bob's doctor said 'caches writable' and nothing more, though he could not add to it or
    finish it; now it names what is closed, whose it is, and the chmod that opens it (and how to avoid it). alice's
    next minigpt2 load opens what is hers, offline too (only a download did), and so does her doctor."""
    cache = room.folder("hf-plain")
    env = {"HF_HUB_CACHE": cache, "HF_ENDPOINT": room.hub.url}
    for name in ("room/tiny", "room/other"):
        plain = room.run(room.alice, _PLAIN % name, env=env)
        assert plain.returncode == 0, plain.stderr
    assert offenders(cache, room.gid), "huggingface_hub made the group's folders: this test shows nothing here"
    line, fix = caches_line(room.run(room.bob, DOCTOR, env={**env, "HF_HUB_OFFLINE": "1"}))
    assert line.startswith("[warn]") and f"user {room.alice}" in line and "models--room--tiny" in line, line
    assert f"chmod -R g+rwX {cache}/" in fix and "umask 002" in fix and "setfacl" in fix, fix
    offline = room.run(room.alice, LOAD % "room/tiny", env={**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 0, offline.stderr
    assert not [bad for bad in offenders(cache, room.gid) if "room--tiny" in bad]
    line, _ = caches_line(room.run(room.alice, DOCTOR, env={**env, "HF_HUB_OFFLINE": "1"}))
    assert "of yours there opened to the group" in line, line
    assert offenders(cache, room.gid) == []
    line, _ = caches_line(room.run(room.bob, DOCTOR, env={**env, "HF_HUB_OFFLINE": "1"}))
    assert "closed to the group" not in line, line


def test_a_cache_open_to_all_lets_each_user_add_models(room):
    """HF_HUB_CACHE is a folder open to all (chmod 1777, as /tmp; no group). The first user's download made its lock
    folder hers (0755), so bob could read her model but not add another: 'the Hugging Face cache ... is shared, and
    .../.locks belongs to user alice'. Now the lock folder is kept open to all (1777, each lock its maker's), each
    model stays its first downloader's, and the doctor says what such a folder means."""
    cache = room.folder("hf-everyone", shared=False)
    os.chmod(cache, 0o1777)
    env = {"HF_HUB_CACHE": cache, "HF_ENDPOINT": room.hub.url}
    for user, name in ((room.alice, "room/tiny"), (room.bob, "room/tiny"), (room.bob, "room/other")):
        result = room.run(user, LOAD % name, env=env)
        assert result.returncode == 0 and "loaded" in result.stdout, (user, name, result.stderr)
        no_traceback(result)
    assert os.stat(os.path.join(cache, "models--room--other")).st_uid != os.stat(
        os.path.join(cache, "models--room--tiny")).st_uid
    line, fix = caches_line(room.run(room.bob, DOCTOR, env={**env, "HF_HUB_OFFLINE": "1"}))
    assert line.startswith("[warn]") and "open to all (mode 1777)" in line and "first downloader's" in line, line
    assert f"chmod 2775 {cache}" in fix, fix


def test_a_session_without_the_rooms_group_is_told_so_before_a_private_model(room):
    """alice (umask 077) downloads a model into the room's cache: its folders are 0770, the group's. bob, added to
    the group since he logged in, loads it: he was told 'models--room--tiny is not readable to you (mode 0o770,
    owned by user alice): ask user alice to run chmod -R a+rX' (which would open her model to every user of the
    machine, when logging in again is all he needs). Now he is told that his session lacks the group."""
    cache = room.folder("hf-077")
    env = {"HF_HUB_CACHE": cache, "HF_ENDPOINT": room.hub.url}
    alice = room.run(room.alice, LOAD % "room/tiny", env=env, umask=0o077)
    assert alice.returncode == 0, alice.stderr
    assert offenders(cache, room.gid) == []
    for extra in ({}, {"HF_HUB_OFFLINE": "1"}):
        bob = room.run(room.bob, "import sys, minigpt2.cli; sys.exit(minigpt2.cli.main(['--model', 'room/tiny', "
                                 "'Hello', '--max-new-tokens', '2']))", env={**env, **extra}, groups=False)
        assert bob.returncode == 1, bob.stderr
        no_traceback(bob)
        assert f"shared by the group {room.group}, which this session of yours is not in" in bob.stderr, \
            (extra, bob.stderr)
        assert "log in again" in bob.stderr and "a+rX" not in bob.stderr, bob.stderr


def test_a_user_waiting_for_another_users_download_is_told_with_any_huggingface_hub(room):
    """alice downloads the weights with plain huggingface_hub (slowly); bob loads the model meanwhile. With
    huggingface_hub 0.x her lock file is hers alone (0644) and minigpt2 said that bob waits for her; 1.x and 2.x make
    it writable to the group (0664) and bob waited inside huggingface_hub without a word (its INFO line every 10 s
    is hidden), as if his load hung. Now he is told, once, whichever huggingface_hub it is."""
    from huggingface_hub import file_download

    if not hasattr(file_download, "http_get"):
        pytest.skip("this huggingface_hub has no file_download.http_get to slow alice's download down with")
    cache = room.folder("hf-wait")
    env = {"HF_HUB_CACHE": cache, "HF_ENDPOINT": room.hub.url}
    alice = room.start(room.alice, _SLOW_PLAIN_DOWNLOAD, env=env)
    try:
        line = alice.stdout.readline()
        assert line.strip() == "downloading", (line, alice.communicate(timeout=30))
        bob = room.run(room.bob, LOAD % "room/tiny", env=env)
    finally:
        out, err = alice.communicate(timeout=90)
    assert alice.returncode == 0, err
    assert bob.returncode == 0 and "loaded" in bob.stdout, bob.stderr
    said = [line for line in bob.stderr.splitlines() if "is downloading" in line]
    assert len(said) == 1 and f"user {room.alice} is downloading" in said[0] and "waiting" in said[0], bob.stderr
