"""A stand-in for the Hugging Face Hub on 127.0.0.1, serving files the way huggingface_hub expects.

    with HubServer({"openai-community/gpt2": {"config.json": b"...", "model.safetensors": b"..."}},
                   aliases={"gpt2": "openai-community/gpt2"}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path)}

What huggingface_hub's hf_hub_download (file_download.py) reads, and what this server sends:

    HEAD/GET /{repo}/resolve/{revision}/{file}
        small file      200, ETag (the git blob sha1), Content-Length, X-Repo-Commit; GET sends the bytes
        *.safetensors   302 to the CDN's /cdn/{sha256} (as the Hub sends LFS files to its CDN), with X-Linked-Etag
                        (the sha256), X-Linked-Size and X-Repo-Commit; huggingface_hub downloads from Location.
                        The CDN is another host (localhost, on a second port), as on the real Hub: huggingface_hub
                        1.x and 2.x follow redirects within the Hub's host and reads the file's metadata from the
                        302 only when it leads elsewhere
        renamed repo    307 to the new name with a relative Location ("gpt2" -> "openai-community/gpt2")
        no such repo    404 + X-Error-Code: RepoNotFound    (401 without the right token for a private repo)
        gated repo      without a token 401, with a token not granted access 403; both X-Error-Code: GatedRepo
        bad token       401 + X-Error-Message: Invalid credentials in Authorization header (when ``tokens`` is
                        given: a token that is neither in it nor one of the private or gated repos' tokens)
        no such rev     404 + X-Error-Code: RevisionNotFound
        no such file    404 + X-Error-Code: EntryNotFound, with X-Repo-Commit
    GET /cdn/{sha256}   (on the CDN's port) the bytes, with Content-Disposition naming the file (the progress bar shows it);
                        honours "Range: bytes=N-" (206 + Content-Range), which resumes downloads

``stall_after=n`` makes every CDN download send its headers and the file's first n bytes (a resumed download
none past them), then hang until the server stops
or ``release()`` is called (then drop the connection): a download interrupted mid-file. ``requests`` records
(method, path, headers with lower-case names) of every request. Every wait is bounded; the port is chosen by the OS.
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STALL_LIMIT_SECONDS = 30


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    def __init__(self, repos: dict, aliases: dict = None, private: dict = None, stall_after: int = None,
                 gated: dict = None, tokens=None):
        """repos: {repo_id: {filename: bytes}}; aliases: {old_id: new_id}; private: {repo_id: token};
        gated: {repo_id: token granted access}; tokens: the valid tokens (besides those), or None: any is."""
        self.repos = repos
        self.aliases = aliases or {}
        self.private = private or {}
        self.gated = gated or {}
        self.tokens = None if tokens is None else set(tokens)
        self.stall_after = stall_after
        self.requests = []
        self.commits = {repo: hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
                        for repo, files in repos.items()}
        self.blobs = {hashlib.sha256(data).hexdigest(): (name, data) for files in repos.values()
                      for name, data in files.items()}
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._threads = []
        for server in (self._server, self._cdn):
            server.daemon_threads = True
            self._threads.append(threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                                  daemon=True))

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        """The CDN's address: another host name (localhost, for the same 127.0.0.1) and another port, so that
        every huggingface_hub sees another host (1.x compares host names, 2.x origins)."""
        return f"http://localhost:{self._cdn.server_address[1]}"

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def release(self):
        """Let stalled downloads end (their connection is dropped)."""
        self._released.set()

    def stop(self):
        self.release()
        for server, thread in zip((self._server, self._cdn), self._threads):
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def downloads(self, filename=None):
        """The GET requests that transferred file bytes (resolve of small files, or CDN blobs)."""
        gets = [r for r in self.requests if r[0] == "GET"]
        if filename is None:
            return gets
        sha = {hashlib.sha256(d).hexdigest() for files in self.repos.values() for f, d in files.items()
               if f == filename}
        return [r for r in gets if r[1].endswith("/" + filename) or r[1].split("/")[-1] in sha]


def _disposition(filename):
    """The header the Hub's CDN sends; huggingface_hub names its progress bar after it."""
    return f"inline; filename*=UTF-8''{filename}; filename=\"{filename}\";"


def _handler_for(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def do_HEAD(self):
            self._serve(body=False)

        def do_GET(self):
            self._serve(body=True)

        # -- routing --------------------------------------------------------------------------------------
        def _serve(self, body):
            hub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            path = self.path.split("?")[0]
            if path.startswith("/cdn/"):
                return self._blob(path[len("/cdn/"):], body)
            if "/resolve/" not in path:
                return self._reply(404, b"not found", {}, body)
            repo, rest = path.lstrip("/").split("/resolve/", 1)
            revision, _, filename = rest.partition("/")
            if repo in hub.aliases:
                new = f"/{hub.aliases[repo]}/resolve/{rest}"
                return self._reply(307, b"", {"Location": new}, body)
            sent = self.headers.get("Authorization", "")
            known = (hub.tokens or set()) | set(hub.private.values()) | set(hub.gated.values())
            if hub.tokens is not None and sent and sent not in {f"Bearer {t}" for t in known}:
                return self._reply(401, b"Invalid credentials", {
                    "X-Error-Message": "Invalid credentials in Authorization header"}, body)
            if repo in hub.gated and repo in hub.repos and sent != f"Bearer {hub.gated[repo]}":
                message = (f"Access to model {repo} is restricted and you are not in the authorized list. "
                           f"Visit {self._base()}/{repo} to ask for access." if sent else
                           f"Access to model {repo} is restricted. You must have access to it and be "
                           f"authenticated to access it. Please log in.")
                return self._reply(403 if sent else 401, message.encode(), {
                    "X-Error-Code": "GatedRepo", "X-Error-Message": message}, body)
            if repo not in hub.repos or not self._authorised(repo):
                code = 401 if repo in hub.private else 404
                return self._reply(code, b"Repository not found", {"X-Error-Code": "RepoNotFound"}, body)
            commit = hub.commits[repo]
            if revision not in ("main", commit):
                return self._reply(404, b"Invalid rev id", {"X-Error-Code": "RevisionNotFound"}, body)
            files = hub.repos[repo]
            if filename not in files:
                return self._reply(404, b"Entry not found", {"X-Error-Code": "EntryNotFound",
                                                             "X-Repo-Commit": commit}, body)
            data = files[filename]
            if filename.endswith(".safetensors"):  # an LFS file: redirect to the "CDN"
                sha = hashlib.sha256(data).hexdigest()
                return self._reply(302, b"", {"Location": f"{hub.cdn_url}/cdn/{sha}",
                                              "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                                              "X-Repo-Commit": commit, "ETag": f'"{git_blob_sha1(data)}"'}, body)
            return self._reply(200, data, {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": commit,
                                           "Content-Disposition": _disposition(filename)}, body)

        def _base(self):
            return f"http://{self.headers.get('Host', 'localhost')}"

        def _authorised(self, repo):
            token = hub.private.get(repo)
            return token is None or self.headers.get("Authorization") == f"Bearer {token}"

        def _blob(self, sha, body):
            if sha not in hub.blobs:
                return self._reply(404, b"no such blob", {}, body)
            name, data = hub.blobs[sha]
            start, status, extra = 0, 200, {"Content-Disposition": _disposition(name)}
            range_header = self.headers.get("Range", "")
            if range_header.startswith("bytes=") and range_header.endswith("-"):
                start = int(range_header[len("bytes="):-1])
                status = 206
                extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            part = data[start:]
            if not body or hub.stall_after is None:
                return self._reply(status, part, extra, body)
            # An interrupted download: headers promise every byte, a few arrive, then the line goes dead.
            self._send_headers(status, len(part), extra)
            self.wfile.write(part[:max(0, hub.stall_after - start)])  # n bytes of the file in all, resumed or not
            self.wfile.flush()
            hub._released.wait(STALL_LIMIT_SECONDS)
            self.close_connection = True

        def _reply(self, status, data, headers, body):
            self._send_headers(status, len(data), headers)
            if body and data:
                self.wfile.write(data)

        def _send_headers(self, status, length, headers):
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()

    return Handler


def tiny_checkpoint_files(directory, seed=0, **config) -> dict:
    """Write a small random GPT-2 (GPT-2's full vocabulary, so the bundled tokenizer fits) with minigpt2,
    and return {filename: bytes}, ready to serve."""
    import os

    from minigpt2 import GPT2Config, GPT2LMHeadModel

    settings = dict(n_positions=128, n_embd=8, n_layer=1, n_head=2, initializer_range=0.3)
    GPT2LMHeadModel(GPT2Config(**{**settings, **config}), seed=seed).save_pretrained(directory)
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))}


def tiny_checkpoint_with_tokenizer(directory) -> dict:
    """tiny_checkpoint_files in ``directory``/model, with GPT-2's tokenizer files (the bundled vocabulary's
    vocab.json and merges.txt, as a Hub repository holds them): {filename: bytes}, ready to serve."""
    import os

    from minigpt2 import AutoTokenizer

    served = tiny_checkpoint_files(os.path.join(directory, "model"))
    AutoTokenizer.from_pretrained("gpt2").save_pretrained(os.path.join(directory, "tokenizer"))
    for name in ("vocab.json", "merges.txt"):
        with open(os.path.join(directory, "tokenizer", name), "rb") as f:
            served[name] = f.read()
    return served
