"""A new user's downloads, as README.md and docs/troubleshooting.md describe them, against the loopback Hub
(tests/hubserver.py): `python -m minigpt2 "prompt" --model owner/repo`, from_pretrained("owner/repo") and
AutoTokenizer with revision=, subfolder=, cache_dir=, local_files_only=, HF_HUB_OFFLINE, HF_HOME / HF_HUB_CACHE /
XDG_CACHE_HOME; and what goes wrong for new users: a gated or private repository (how to log in, where to ask
for access), an expired token, a typo with force_download=True, the server going away mid-download, a read-only
cache, two downloads at once, a cache shared with transformers.

The command-line tests run with this Python, and also with MINIGPT2_NEWEST_PYTHON when that is set: a Python
whose environment has the newest huggingface_hub (2.x), e.g. the venv of .ci/newest.sh; they run the
source tree's minigpt2 (from its root), so they check this checkout with that huggingface_hub.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from hubserver import HubServer, tiny_checkpoint_with_tokenizer
from minigpt2 import AutoTokenizer, GPT2LMHeadModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO, PRIVATE, GATED, NESTED = "owner/repo", "owner/private", "owner/gated", "owner/nested"
HF_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME",
                "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_TOKEN_PATH", "HF_ENDPOINT")
PYTHONS = [sys.executable] + ([os.environ["MINIGPT2_NEWEST_PYTHON"]] if os.environ.get("MINIGPT2_NEWEST_PYTHON")
                              else [])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny random GPT-2 with GPT-2's tokenizer files (the bundled vocabulary), as a Hub repository holds it."""
    directory = tmp_path_factory.mktemp("newuser6")
    return str(directory / "model"), tiny_checkpoint_with_tokenizer(str(directory))


def serve(files, **options):
    _, served = files
    return HubServer({REPO: served, PRIVATE: served, GATED: served,
                      NESTED: {f"sub/{name}": data for name, data in served.items()}},
                     private={PRIVATE: "hf_private"}, gated={GATED: "hf_granted"}, tokens={"hf_valid"}, **options)


@pytest.fixture
def hub(files, tmp_path, monkeypatch):
    """The loopback Hub, HF_ENDPOINT pointing at it, HF_HOME empty, no token, online."""
    with serve(files) as server:
        for name in HF_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env_for(server, tmp_path).items():
            monkeypatch.setenv(name, value)
        yield server


def env_for(server, tmp_path, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in HF_VARIABLES}
    env.update(HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               HOME=str(tmp_path / "home"))  # (minigpt2's own kernel-choice cache, under HOME)
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def cli(args, env, python=sys.executable, timeout=180, **kwargs):
    """`python -m minigpt2 ...` from the source tree's root (its minigpt2, whatever the Python)."""
    return subprocess.run([python, "-m", "minigpt2", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def error_lines(result) -> list:
    """stderr's lines, without the notice a Python for which the C core is not built prints (and its source
    line)."""
    lines = result.stderr.strip().splitlines()
    for i, line in enumerate(lines):
        if "running on the NumPy backend" in line:
            del lines[i:i + (2 if i + 1 < len(lines) and lines[i + 1].startswith(" ") else 1)]
            break
    return [line for line in lines if not line.startswith("[measuring this CPU")]


def one_line_error(result) -> str:
    lines = error_lines(result)
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def blobs(cache) -> list:
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs if os.sep + "blobs" in d)


def cache_files(cache, suffix) -> list:
    return [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs if f.endswith(suffix)]


def first_logits(model, tokenizer) -> np.ndarray:
    return np.asarray(model(**tokenizer("Hello world", return_tensors="np")).logits)[0, -1]


# -- what the README tells a new user to do -------------------------------------------------------------------
@pytest.mark.parametrize("python", PYTHONS)
def test_readme_command_downloads_then_runs_offline_from_the_cache(files, tmp_path, python):
    with serve(files) as server:
        env = env_for(server, tmp_path)
        first = cli(["--greedy", "-n", "4", "Hello", "--model", REPO], env, python)
        assert first.returncode == 0 and first.stdout.startswith("Hello"), first.stderr
        assert server.downloads("model.safetensors")
        server.requests.clear()
        again = cli(["--greedy", "-n", "4", "Hello", "--model", REPO], {**env, "HF_HUB_OFFLINE": "1"}, python)
        assert again.returncode == 0 and again.stdout == first.stdout, again.stderr
        assert server.requests == []


@pytest.mark.parametrize("variable,where", [
    ("HF_HUB_CACHE", "{v}"), ("HF_HOME", "{v}/hub"), ("XDG_CACHE_HOME", "{v}/huggingface/hub")])
def test_the_cache_goes_where_the_environment_says(hub, tmp_path, monkeypatch, variable, where):
    monkeypatch.delenv("HF_HOME")
    value = str(tmp_path / "chosen")
    monkeypatch.setenv(variable, value)
    GPT2LMHeadModel.from_pretrained(REPO)
    AutoTokenizer.from_pretrained(REPO)
    cache = where.format(v=value)
    assert cache_files(os.path.join(cache, "models--owner--repo"), "model.safetensors")
    assert cache_files(os.path.join(cache, "models--owner--repo"), "vocab.json")


def test_revision_subfolder_cache_dir_and_local_files_only(hub, files, tmp_path):
    directory, _ = files
    reference = GPT2LMHeadModel.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained("gpt2")
    options = dict(subfolder="sub", revision=hub.commits[NESTED], cache_dir=str(tmp_path / "mine"))
    model = GPT2LMHeadModel.from_pretrained(NESTED, **options)
    assert AutoTokenizer.from_pretrained(NESTED, **options)("Hello world") == tokenizer("Hello world")
    np.testing.assert_array_equal(first_logits(model, tokenizer), first_logits(reference, tokenizer))
    assert os.listdir(tmp_path / "mine") and not os.path.exists(tmp_path / "hf_home" / "hub" / "models--owner--nested")
    hub.requests.clear()
    again = GPT2LMHeadModel.from_pretrained(NESTED, local_files_only=True, **options)
    AutoTokenizer.from_pretrained(NESTED, local_files_only=True, **options)
    np.testing.assert_array_equal(first_logits(again, tokenizer), first_logits(reference, tokenizer))
    assert hub.requests == []


def test_an_unknown_revision_offline_names_the_revision(hub, monkeypatch):
    GPT2LMHeadModel.from_pretrained(REPO)
    with pytest.raises(OSError, match=r"has no revision 'v9'"):
        GPT2LMHeadModel.from_pretrained(REPO, revision="v9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError) as error:
        GPT2LMHeadModel.from_pretrained(REPO, revision="v9")
    assert "config.json of 'owner/repo' at revision 'v9' is not in the cache" in str(error.value)


# -- access: private, gated, a bad token --------------------------------------------------------------------------
def test_private_repo_without_a_token_says_how_to_log_in(hub):
    with pytest.raises(OSError) as error:
        GPT2LMHeadModel.from_pretrained(PRIVATE)
    message = str(error.value)
    assert f"there is no repository '{PRIVATE}' on {hub.url}" in message
    assert " login`" in message and "HF_TOKEN" in message and f"{hub.url}/settings/tokens" in message
    GPT2LMHeadModel.from_pretrained(PRIVATE, token="hf_private")


def test_a_token_passed_as_an_argument_is_the_one_named(hub, monkeypatch):
    """token= was passed: the message names token=, not HF_TOKEN (which is not set)."""
    with pytest.raises(OSError) as error:
        GPT2LMHeadModel.from_pretrained(PRIVATE, token="hf_valid")
    assert "token=" in str(error.value) and "HF_TOKEN" not in str(error.value)
    monkeypatch.setenv("HF_TOKEN", "hf_valid")
    with pytest.raises(OSError, match="check that HF_TOKEN grants access"):
        GPT2LMHeadModel.from_pretrained(PRIVATE)


def test_gated_repo_without_a_token_says_log_in_and_ask_for_access(hub):
    with pytest.raises(OSError) as error:
        GPT2LMHeadModel.from_pretrained(GATED)
    message = str(error.value)
    assert "gated" in message and "there is no repository" not in message
    assert " login`" in message and f"{hub.url}/{GATED}" in message
    assert "\n" not in message


def test_gated_repo_with_a_token_not_yet_granted_says_ask_for_access(hub):
    with pytest.raises(OSError) as error:
        AutoTokenizer.from_pretrained(GATED, token="hf_valid")
    message = str(error.value)
    assert "gated" in message and "ask for access" in message and f"{hub.url}/{GATED}" in message
    assert "token=" in message and "there is no repository" not in message
    GPT2LMHeadModel.from_pretrained(GATED, token="hf_granted")
    AutoTokenizer.from_pretrained(GATED, token="hf_granted")


@pytest.mark.parametrize("python", PYTHONS)
def test_cli_gated_repo_one_line(files, tmp_path, python):
    with serve(files) as server:
        message = one_line_error(cli(["Hi", "-m", GATED], env_for(server, tmp_path), python))
        assert "gated" in message and f"{server.url}/{GATED}" in message and "login" in message
        granted = cli(["-n", "2", "Hi", "-m", GATED], env_for(server, tmp_path, HF_TOKEN="hf_granted"), python)
        assert granted.returncode == 0, granted.stderr


@pytest.mark.parametrize("python", PYTHONS)
def test_an_expired_hf_token_is_named_and_running_again_is_not_advised(files, tmp_path, python):
    """The real Hub answers 401 "Invalid credentials" to a revoked or expired token, even for a public model."""
    with serve(files) as server:
        message = one_line_error(cli(["Hi", "-m", REPO], env_for(server, tmp_path, HF_TOKEN="hf_expired"), python))
        assert "HF_TOKEN" in message and "invalid or expired" in message and "again" not in message
        assert f"{server.url}/settings/tokens" in message


def test_an_expired_token_argument_or_token_file_is_named(hub, tmp_path):
    with pytest.raises(OSError) as error:
        GPT2LMHeadModel.from_pretrained(REPO, token="hf_expired")
    assert "token=" in str(error.value) and "invalid or expired" in str(error.value)
    # the token file `hf auth login` writes (in a new process: huggingface_hub reads HF_HOME when imported)
    token_file = tmp_path / "hf_home" / "token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text("hf_expired\n")
    code = "from minigpt2 import AutoTokenizer; AutoTokenizer.from_pretrained('owner/repo')"
    result = subprocess.run([sys.executable, "-c", code], env=env_for(hub, tmp_path), cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    message = result.stderr.strip().splitlines()[-1]
    assert str(token_file) in message and "invalid or expired" in message, result.stderr
    assert "Run the same command again" not in message


# -- force_download=True (repairing a damaged file): the Hub's refusal still explained ------------------------
@pytest.mark.parametrize("name,message", [
    ("owner/repoo", "there is no repository 'owner/repoo'"),
    (PRIVATE, "set HF_TOKEN"),
    (GATED, "gated"),
])
def test_force_download_keeps_the_reason(hub, name, message):
    with pytest.raises(OSError, match=message):
        GPT2LMHeadModel.from_pretrained(name, force_download=True)


def test_force_download_offline_says_it_needs_the_network(hub, monkeypatch):
    GPT2LMHeadModel.from_pretrained(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="force_download=True needs the network.*HF_HUB_OFFLINE"):
        GPT2LMHeadModel.from_pretrained(REPO, force_download=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(OSError, match="force_download=True needs the network.*local_files_only=True"):
        GPT2LMHeadModel.from_pretrained(REPO, force_download=True, local_files_only=True)
    GPT2LMHeadModel.from_pretrained(REPO, force_download=True)


# -- failures along the way ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("python", PYTHONS)
def test_server_going_away_mid_download_then_a_retry_succeeds(files, tmp_path, python):
    """The Hub stops in the middle of model.safetensors: one line naming the file and the address, no model file
    in the cache (nothing that loads), and the same command, once the Hub is back, downloads and runs."""
    env = None
    with serve(files, stall_after=100_000) as server:
        env = env_for(server, tmp_path)
        process = subprocess.Popen([python, "-m", "minigpt2", "-n", "2", "Hi", "-m", REPO], env=env, cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not any("/cdn/" in r[1] for r in server.requests):
                assert time.monotonic() < deadline and process.poll() is None, process.communicate()
                time.sleep(0.05)
            time.sleep(0.3)
        except BaseException:
            process.kill()
            raise
    # (the server has stopped: the stalled transfer is cut, and nothing answers any more)
    out, err = process.communicate(timeout=120)
    # (huggingface_hub 1.x and 2.x log their attempts to resume, "Error while downloading ... Trying to resume
    # download...": minigpt2's one line comes last)
    result = subprocess.CompletedProcess([], process.returncode, out, err)
    noise = ("Error while downloading", "Trying to resume", "Max retries")
    result.stderr = "\n".join(line for line in err.splitlines() if not line.startswith(noise))
    message = one_line_error(result)
    assert "model.safetensors" in message and env["HF_ENDPOINT"] in message
    cache = tmp_path / "hf_home" / "hub"
    assert cache_files(cache, "model.safetensors") == []
    with serve(files) as server:
        retry = cli(["-n", "2", "Hi", "-m", REPO], env_for(server, tmp_path), python)
        assert retry.returncode == 0 and retry.stdout.startswith("Hi"), retry.stderr
    assert cache_files(cache, ".incomplete") == [] and len(cache_files(cache, "model.safetensors")) == 1


def test_partly_written_cache_is_completed_online_and_named_offline(hub, files, monkeypatch):
    """A snapshot that lost its model.safetensors (a copy cut short): online it is downloaded again; offline the
    error says that file is not in the cache."""
    GPT2LMHeadModel.from_pretrained(REPO)
    link, = cache_files(os.environ["HF_HOME"], "model.safetensors")
    os.remove(link)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="model.safetensors of 'owner/repo' is not in the cache"):
        GPT2LMHeadModel.from_pretrained(REPO)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    GPT2LMHeadModel.from_pretrained(REPO)
    assert os.path.isfile(link)


def without_write_permission():
    """The command prefix that runs a process to which file permissions apply: as root, one without the
    capabilities that override them (setpriv); as another user, nothing. None when neither is possible."""
    if not hasattr(os, "geteuid"):
        return None
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    prefix = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
              "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run(prefix + ["true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


@pytest.mark.skipif(without_write_permission() is None, reason="needs a process without CAP_DAC_OVERRIDE")
def test_read_only_cache(files, tmp_path):
    """An empty read-only cache: one line naming it and HF_HUB_CACHE. A read-only cache holding the model (a
    room's shared cache): the model runs, online and offline."""
    prefix = without_write_permission()
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    with serve(files) as server:
        filled = cli(["--download", "-m", REPO], env_for(server, tmp_path, HF_HUB_CACHE=str(full)))
        assert filled.returncode == 0, filled.stderr
        os.chmod(empty, 0o555)
        subprocess.run(["chmod", "-R", "a-w", str(full)], check=True)
        try:
            run = lambda cache, **more: subprocess.run(  # noqa: E731
                prefix + [sys.executable, "-m", "minigpt2", "-n", "2", "Hi", "-m", REPO],
                env=env_for(server, tmp_path, HF_HUB_CACHE=str(cache), **more), cwd=ROOT, capture_output=True,
                text=True, timeout=180)
            message = one_line_error(run(empty))
            assert f"the Hugging Face cache {empty} is not a directory you can write" in message
            assert "HF_HUB_CACHE" in message and "again" not in message
            for more in ({}, {"HF_HUB_OFFLINE": "1"}):
                result = run(full, **more)
                assert result.returncode == 0 and result.stdout.startswith("Hi"), result.stderr
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(empty), str(full)])


def test_two_processes_downloading_at_once(files, tmp_path):
    with serve(files) as server:
        env = env_for(server, tmp_path)
        code = ("from minigpt2 import GPT2LMHeadModel, AutoTokenizer; GPT2LMHeadModel.from_pretrained('owner/repo');"
                " AutoTokenizer.from_pretrained('owner/repo'); print('loaded')")
        processes = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(3)]
        results = [p.communicate(timeout=180) + (p.returncode,) for p in processes]
    assert all(code == 0 and out == "loaded\n" for out, _, code in results), results
    cache = tmp_path / "hf_home" / "hub"
    assert cache_files(cache, ".incomplete") == []
    _, served = files
    for path in blobs(cache):  # each blob whole: named by its hash (sha256 for LFS files, git's sha1 else)
        data = open(path, "rb").read()
        name = os.path.basename(path)
        assert name in (hashlib.sha256(data).hexdigest(), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())


# -- one cache with transformers ------------------------------------------------------------------------------------
TRANSFORMERS = ("import numpy, transformers; m = transformers.GPT2LMHeadModel.from_pretrained('{0}'{1});"
                "t = transformers.AutoTokenizer.from_pretrained('{0}'{1});"
                "print(repr(m(**t('Hello world', return_tensors='pt')).logits[0, -1].detach().numpy().tolist()))")


def test_one_cache_with_transformers_both_ways(files, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tokenizer = AutoTokenizer.from_pretrained("gpt2")
    with serve(files) as server:
        # minigpt2 downloads owner/repo; transformers then finds it, offline
        env = env_for(server, tmp_path)
        code = ("from minigpt2 import GPT2LMHeadModel, AutoTokenizer; GPT2LMHeadModel.from_pretrained('owner/repo');"
                "AutoTokenizer.from_pretrained('owner/repo')")
        assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True).returncode == 0
        server.requests.clear()
        result = subprocess.run([sys.executable, "-c", TRANSFORMERS.format(REPO, "")],
                                env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        theirs = np.array(eval(result.stdout))
        assert server.requests == []
        # transformers downloads owner/gated (with its token); minigpt2 then loads it offline
        result = subprocess.run([sys.executable, "-c", TRANSFORMERS.format(GATED, ", token='hf_granted'")],
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        server.requests.clear()
        code = ("import numpy as np; from minigpt2 import GPT2LMHeadModel, AutoTokenizer;"
                "m = GPT2LMHeadModel.from_pretrained('owner/gated'); t = AutoTokenizer.from_pretrained('owner/gated');"
                "print(repr(np.asarray(m(**t('Hello world', return_tensors='np')).logits)[0, -1].tolist()))")
        mine = subprocess.run([sys.executable, "-c", code], env={**env, "HF_HUB_OFFLINE": "1"}, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert mine.returncode == 0, mine.stderr
        assert server.requests == []
    directory, _ = files
    reference = first_logits(GPT2LMHeadModel.from_pretrained(directory), tokenizer)
    np.testing.assert_allclose(theirs, reference, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(eval(mine.stdout)), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(without_write_permission() is None, reason="needs a process without CAP_DAC_OVERRIDE")
def test_a_model_in_the_cache_that_we_may_not_read(files, tmp_path):
    """A room's cache where the model's folder was made unreadable (a user with umask 077 downloaded it): huggingface_hub
    calls the file missing; the error says the folder is there but unreadable, and how to fix it, online and offline."""
    prefix = without_write_permission()
    cache = tmp_path / "room"
    with serve(files) as server:
        filled = cli(["--download", "-m", REPO], env_for(server, tmp_path, HF_HUB_CACHE=str(cache)))
        assert filled.returncode == 0, filled.stderr
        folder = cache / "models--owner--repo"
        os.chmod(folder, 0o000)  # (unreadable even to its owner: this process is root without DAC override)
        try:
            for more in ({}, {"HF_HUB_OFFLINE": "1"}):
                result = subprocess.run(prefix + [sys.executable, "-m", "minigpt2", "-n", "2", "Hi", "-m", REPO],
                                        env=env_for(server, tmp_path, HF_HUB_CACHE=str(cache), **more), cwd=ROOT,
                                        capture_output=True, text=True, timeout=180)
                message = one_line_error(result)
                assert f"{folder} is not readable to you (mode 0o0" in message, message
                assert f"`chmod -R a+rX {folder}`" in message and "HF_HUB_CACHE" in message, message
        finally:
            os.chmod(folder, 0o755)


@pytest.mark.parametrize("endpoint, why", [("http://[::1", " (Invalid IPv6 URL)"),
                                           ("http://host:abc", " (Port could not be cast to integer value as 'abc')"),
                                           ("ftp://mirror", "")])
def test_an_endpoint_that_is_not_a_web_address_is_named(monkeypatch, endpoint, why):
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(OSError) as caught:
        GPT2LMHeadModel.from_pretrained(REPO)
    assert str(caught.value) == (f"HF_ENDPOINT={endpoint!r} is not a web address{why}; it needs http:// or https:// "
                                 f"and a host, e.g. HF_ENDPOINT=https://hf-mirror.com")


@pytest.mark.parametrize("page, repo", [("https://huggingface.co/gpt2", "gpt2"),
                                        ("https://huggingface.co/openai-community/gpt2/tree/main",
                                         "openai-community/gpt2"),
                                        ("https://huggingface.co/gpt2/blob/main/config.json", "gpt2")])
def test_a_repository_page_copied_from_the_browser_gets_its_id(page, repo):
    with pytest.raises(FileNotFoundError, match=f"^{page} is a web address; name a Hub repository by its id, e.g. "
                                                f"'{repo}'"):
        GPT2LMHeadModel.from_pretrained(page)
