"""A fake Hugging Face Hub for offline tests: the ``/resolve/`` file protocol, stdlib only.

It answers what ``huggingface_hub.hf_hub_download`` asks for (``HEAD`` then ``GET`` on
``{endpoint}/{repo_id}/resolve/{revision}/{filename}``) the way the real Hub does:

* ``200`` with ``X-Repo-Commit``, ``ETag`` and ``Content-Length`` (and the body on ``GET``);
* ``404`` + ``X-Error-Code: RepoNotFound`` for an unknown repository;
* ``401`` (no ``Authorization``) or ``403`` (wrong token) + ``X-Error-Code: GatedRepo`` for a
  gated repository, unless ``Authorization: Bearer <token>`` carries the configured token;
* ``404`` + ``X-Error-Code: RevisionNotFound`` for an unknown branch, tag or commit;
* ``404`` + ``X-Error-Code: EntryNotFound`` (with ``X-Repo-Commit``) for a missing file;
* any status set in ``failing[repo_id]`` (a Hub that answers 500, say) for every request.

:class:`SilentHub` is the other failure: a socket that accepts connections and never answers.

Every request is recorded (method, path, whether it was authenticated), so a test can assert
that only ``config.json`` was ever asked for.

A ``GET`` with ``Range: bytes=START-END`` on a file is answered ``206 Partial Content`` with
``Content-Range`` and exactly those bytes (END clipped to the file, as HTTP says); the
recorded request keeps the range and the number of body bytes sent, so a test can assert
that no byte beyond a safetensors header was read.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

Repos = dict[str, dict[str, dict[str, bytes]]]  # {repo_id: {revision: {filename: content}}}

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # the URL path as sent, e.g. /meta-llama/Llama-3.1-8B/resolve/main/config.json
    authorization: str | None
    status: int
    range: tuple[int, int] | None = None  # the inclusive byte range served (206), if one was asked for
    sent: int = 0  # body bytes sent

    @property
    def filename(self) -> str | None:
        m = _RESOLVE.match(self.path)
        return unquote(m["filename"]) if m else None


def commit_hash(repo_id: str, revision: str) -> str:
    """A stable, 40-hex commit id for one revision of one fake repository."""
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


def git_blob_sha(content: bytes) -> str:
    """The git blob id the Hub uses as ETag for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 speaking the Hub's ``/resolve/`` protocol."""

    def __init__(self, repos: Repos, *, gated: set[str] | frozenset[str] = frozenset(), token: str = "hf_fake_token"):
        self.repos = repos
        self.gated = set(gated)
        self.failing: dict[str, int] = {}  # repo_id -> HTTP status every request for it gets (e.g. 500)
        self.token = token
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> FakeHub:
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port: later requests get 'connection refused'."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what was asked --------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    @property
    def filenames(self) -> set[str | None]:
        """The file names asked for (``None`` for a request outside ``/resolve/``)."""
        return {r.filename for r in self.requests}

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # -- the protocol ----------------------------------------------------------------

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one request path (the body is dropped for HEAD)."""
        m = _RESOLVE.match(path)
        if m is None:
            return _error(404, None, "Not Found")
        repo_id, revision, filename = m["repo"], unquote(m["revision"]), unquote(m["filename"])
        if repo_id in self.failing:
            return _error(self.failing[repo_id], None,
                          "Internal Error - We're working hard to fix this as soon as possible!")
        revisions = self.repos.get(repo_id)
        if revisions is None:
            return _error(404, "RepoNotFound", "Repository not found")
        if repo_id in self.gated and authorization != f"Bearer {self.token}":
            if authorization is None:
                return _error(
                    401, "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and be authenticated "
                    "to access it. Please log in.",
                )
            return _error(
                403, "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit https://huggingface.co/{repo_id} to ask for access.",
            )
        ref = self._find_revision(repo_id, revisions, revision)
        if ref is None:
            return _error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        files = revisions[ref]
        commit = commit_hash(repo_id, ref)
        if filename not in files:
            status, headers, body = _error(404, "EntryNotFound", f"{filename} does not exist on \"{revision}\"")
            headers["X-Repo-Commit"] = commit
            return status, headers, body
        content = files[filename]
        headers = {
            "Content-Type": "application/octet-stream" if not filename.endswith(".json") else "application/json",
            "Content-Length": str(len(content)),
            "ETag": f'"{git_blob_sha(content)}"',
            "X-Repo-Commit": commit,
            "Accept-Ranges": "bytes",
        }
        return 200, headers, content

    @staticmethod
    def _find_revision(repo_id: str, revisions: dict[str, dict[str, bytes]], revision: str) -> str | None:
        if revision in revisions:
            return revision
        for ref in revisions:  # a full commit id of one of the refs
            if commit_hash(repo_id, ref) == revision:
                return ref
        return None


def _error(status: int, code: str | None, message: str) -> tuple[int, dict[str, str], bytes]:
    text = message.replace('"', "'")
    body = f'{{"error": "{text}"}}'.encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), "X-Error-Message": message}
    if code is not None:
        headers["X-Error-Code"] = code
    return status, headers, body


_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")


def partial_content(range_header: str, headers: dict[str, str], body: bytes):
    """``(status, headers, body, (start, end))`` for a single-range request on a file, as a
    server with range support answers it: 206 with ``Content-Range``, or 416 when the range
    starts past the end; an unparseable range is ignored (200, the whole file)."""
    m = _RANGE.match(range_header.strip())
    if m is None:
        return 200, headers, body, None
    start = int(m["start"])
    end = min(int(m["end"]) if m["end"] else len(body) - 1, len(body) - 1)
    if start >= len(body) or end < start:
        headers = {**headers, "Content-Range": f"bytes */{len(body)}", "Content-Length": "0"}
        return 416, headers, b"", None
    part = body[start:end + 1]
    headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(body)}", "Content-Length": str(len(part))}
    return 206, headers, part, (start, end)


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub  # set on the per-server subclass
    protocol_version = "HTTP/1.0"  # one request per connection: no pooled sockets survive stop()

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def _serve(self, send_body: bool) -> None:
        path = urlsplit(self.path).path
        authorization = self.headers.get("Authorization")
        status, headers, body = self.hub.answer(path, authorization)
        served = None
        if status == 200 and self.command == "GET" and self.headers.get("Range"):
            status, headers, body, served = partial_content(self.headers["Range"], headers, body)
        sent = len(body) if send_body else 0
        self.hub._record(RecordedRequest(self.command, path, authorization, status, served, sent))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # keep pytest output clean
        pass


class SilentHub:
    """A socket on 127.0.0.1 that accepts connections and never answers: a Hub that hangs.

    ``with SilentHub() as hub:`` -- point ``HF_ENDPOINT`` at ``hub.url``; ``connections`` counts
    the connections accepted (each is held open, unanswered, until :meth:`stop`).
    """

    def __init__(self):
        self._socket: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.url: str | None = None

    @property
    def connections(self) -> int:
        return len(self._held)

    def start(self) -> SilentHub:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.settimeout(0.2)
        host, port = self._socket.getsockname()
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._accept, name="silent-hub", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(connection)  # read nothing, answer nothing

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> SilentHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- the repositories the `fake_hub` fixture serves ---------------------------------

FIXTURE_CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"

LLAMA = "meta-llama/Llama-3.1-8B"
GEMMA = "google/gemma-4-E2B-it"  # gated
NO_CONFIG = "acme/weights-only"
HUB_TOKEN = "hf_fake_token_for_tests"
LLAMA_V1_LAYERS = 3  # the `v1` tag of LLAMA differs from `main` by its depth


def fake_hub_repos() -> dict[str, dict[str, dict[str, bytes]]]:
    llama = (FIXTURE_CONFIGS / "meta-llama__Llama-3.1-8B" / "config.json").read_bytes()
    llama_v1 = json.loads(llama)
    llama_v1["num_hidden_layers"] = LLAMA_V1_LAYERS
    gemma = (FIXTURE_CONFIGS / "google__gemma-4-E2B-it" / "config.json").read_bytes()
    weights = b"NOT-REAL-WEIGHTS" * 64  # served, so a test can tell it was never asked for
    return {
        LLAMA: {
            "main": {"config.json": llama, "model.safetensors": weights, "README.md": b"# Llama\n"},
            "v1": {"config.json": json.dumps(llama_v1, indent=2).encode(), "model.safetensors": weights},
        },
        GEMMA: {"main": {"config.json": gemma, "model.safetensors": weights}},
        NO_CONFIG: {"main": {"model.safetensors": weights, "README.md": b"# weights only\n"}},
    }
