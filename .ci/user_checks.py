"""A new user's first runs of the command line, end to end, against the loopback Hub (tests/hubserver.py).

    <venv>/bin/python .ci/user_checks.py --backend c        # the C core must be built
    <venv>/bin/python .ci/user_checks.py --backend numpy    # no compiler: NumPy, said exactly once

Run with the python of the environment under test (a fresh venv with minigpt2 installed); every CI stage
runs these same checks. The Hub serves a tiny random GPT-2 (GPT-2's vocabulary, with its tokenizer files) as
"openai-community/gpt2" with the alias "gpt2", like huggingface.co. Each command runs in a subprocess from a
scratch directory, with its own HF_HOME/HF_HUB_CACHE: no user's cache is read or written.

Checks: the README's command downloads through HF_ENDPOINT; the rerun with HF_HUB_OFFLINE=1 uses the cache
and sends no request; a cached model loads at once with the network gone; the prompt from stdin; no network
and nothing cached, an unknown repo, HF_HUB_OFFLINE with nothing cached (exit 1, one line, no traceback);
--model DIR needs no network; --download; a usage error (exit 2); the `minigpt2` console script. Exits 1 if
any check fails, listing which.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from hubserver import HubServer, tiny_checkpoint_files  # noqa: E402  (stdlib only; minigpt2 when called)

PROMPT = "GPT2 is a model developed by OpenAI."
REPO = "openai-community/gpt2"
NUMPY_NOTICE = "running on the NumPy backend"
failures = []


def check(name, ok, result=None, why=""):
    detail = ""
    if not ok and result is not None:
        detail = f"\n    exit {result.returncode}\n    stdout: {result.stdout[-500:]!r}\n    stderr: {result.stderr[-1500:]!r}"
    print(f"{'ok  ' if ok else 'FAIL'} {name}{f' ({why})' if why and not ok else ''}{detail}", flush=True)
    if not ok:
        failures.append(name)


def one_line_error(result, code=1):
    """Exit code `code`, nothing on stdout, and the error is one line without a traceback (besides the NumPy
    notice, which a process without the C core prints once: the warning's line and the source line under it)."""
    lines = result.stderr.strip().splitlines()
    for i, line in enumerate(lines):
        if NUMPY_NOTICE in line:
            del lines[i:i + (2 if i + 1 < len(lines) and lines[i + 1].startswith(" ") else 1)]
            break
    return (result.returncode == code and result.stdout == "" and len(lines) == 1
            and "Traceback" not in result.stderr)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_files(directory) -> dict:
    """A tiny random GPT-2 with GPT-2's tokenizer files, as the Hub serves openai-community/gpt2."""
    from minigpt2 import AutoTokenizer

    files = tiny_checkpoint_files(os.path.join(directory, "model"))
    tokenizer_dir = os.path.join(directory, "tokenizer")
    AutoTokenizer.from_pretrained("gpt2").save_pretrained(tokenizer_dir)  # the bundled vocabulary
    for name in ("vocab.json", "merges.txt"):
        with open(os.path.join(tokenizer_dir, name), "rb") as f:
            files[name] = f.read()
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("c", "numpy"), required=True,
                        help="the backend minigpt2 must pick by itself in this environment")
    args = parser.parse_args()

    import minigpt2
    from minigpt2 import backend

    print(f"python {sys.version.split()[0]}, minigpt2 from {os.path.dirname(minigpt2.__file__)}, "
          f"backend {backend.get_backend()}; {versions()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="minigpt2-user-") as scratch:
        files = served_files(scratch)
        with HubServer({REPO: files}, aliases={"gpt2": REPO}) as hub:
            run_checks(args, hub, scratch)
    if failures:
        print(f"{len(failures)} user check(s) failed: {', '.join(failures)}")
        return 1
    print("all user checks passed")
    return 0


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("numpy", "huggingface_hub", "safetensors", "regex",
                                                             "cffi"))


def run_checks(args, hub, scratch):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_", "MINIGPT2_"))}
    base.update(HF_HOME=os.path.join(scratch, "hf_home"), HF_HUB_DISABLE_TELEMETRY="1", PYTHONWARNINGS="default")

    def cli(argv, cache="cache", endpoint=None, stdin=None, **env):
        """python -m minigpt2 argv, from the scratch directory (so the installed package is the one run)."""
        environment = dict(base, HF_HUB_CACHE=os.path.join(scratch, cache), HF_ENDPOINT=endpoint or hub.url, **env)
        return subprocess.run([sys.executable, "-m", "minigpt2", *argv], env=environment, cwd=scratch, text=True,
                              capture_output=True, timeout=300, input=stdin if stdin is not None else "")

    nowhere = f"http://127.0.0.1:{closed_port()}"
    greedy = ["--greedy", "-n", "8"]

    first = cli([*greedy, PROMPT])
    check("download through HF_ENDPOINT (the README's command)",
          first.returncode == 0 and first.stdout.startswith(PROMPT) and len(first.stdout) > len(PROMPT) + 1
          and len(hub.downloads("model.safetensors")) == 1 and "Traceback" not in first.stderr, first)
    notices = first.stderr.count(NUMPY_NOTICE)
    if args.backend == "numpy":
        check("no C core: says once that it runs NumPy", notices == 1, first, f"said {notices} times")
    else:
        check("the C core is built and used (no NumPy notice)", notices == 0, first, "the NumPy notice appeared")
    info = cli(["--info"])
    check(f"--info reports the {args.backend} backend",
          info.returncode == 0 and f"backend: {args.backend} " in info.stdout, info)

    hub.requests.clear()
    offline = cli([*greedy, PROMPT], HF_HUB_OFFLINE="1")
    check("HF_HUB_OFFLINE=1 rerun: from the cache, same text, no request",
          offline.returncode == 0 and offline.stdout == first.stdout and hub.requests == [], offline)

    hub.requests.clear()
    again = cli([*greedy, PROMPT])
    check("online rerun: metadata only, nothing downloaded twice",
          again.returncode == 0 and again.stdout == first.stdout and not hub.downloads(), again)

    cached_no_network = cli([*greedy, PROMPT], endpoint=nowhere)
    check("network gone, model cached: loads from the cache",
          cached_no_network.returncode == 0 and cached_no_network.stdout == first.stdout, cached_no_network)

    piped = cli(greedy, stdin=PROMPT + "\n")
    check("prompt from stdin", piped.returncode == 0 and piped.stdout == first.stdout, piped)

    no_network = cli(["Hello"], cache="empty-cache", endpoint=nowhere)
    check("no network, nothing cached: exit 1, one line naming HF_ENDPOINT",
          one_line_error(no_network) and "HF_ENDPOINT" in no_network.stderr, no_network)

    unknown = cli(["-m", "nobody/nothing", "Hello"])
    check("unknown repo: exit 1, one line", one_line_error(unknown) and "no repository 'nobody/nothing'"
          in unknown.stderr, unknown)

    offline_empty = cli(["Hello"], cache="empty-cache", HF_HUB_OFFLINE="1")
    check("HF_HUB_OFFLINE=1, nothing cached: exit 1, one line",
          one_line_error(offline_empty) and "HF_HUB_OFFLINE is set" in offline_empty.stderr, offline_empty)

    local = cli(["-m", os.path.join(scratch, "model"), *greedy, PROMPT], cache="empty-cache", endpoint=nowhere)
    check("--model DIR: no network needed", local.returncode == 0 and local.stdout.startswith(PROMPT), local)

    download = cli(["--download", "--model", REPO], cache="download-cache")
    check("--download: then works offline", download.returncode == 0 and "works offline" in download.stdout,
          download)

    usage = cli(["--no-such-flag"])
    check("usage error: exit 2, no traceback", usage.returncode == 2 and "Traceback" not in usage.stderr, usage)

    script = os.path.join(os.path.dirname(sys.executable), "minigpt2")
    help_run = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120, cwd=scratch)
    check("the minigpt2 console script", help_run.returncode == 0 and "usage" in help_run.stdout.lower(), help_run)


if __name__ == "__main__":
    sys.exit(main())
