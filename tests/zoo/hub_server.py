"""A loopback HTTP server speaking the Hugging Face Hub's file protocol, for the zoo's download tests.

``HEAD``/``GET /{namespace}/{name}/resolve/{revision}/{filename}`` answer with ``X-Repo-Commit``, ``ETag``
(the file's SHA-256, as the Hub's LFS files carry it) and ``Content-Length``, as ``huggingface_hub`` 2.4
requires (``file_download.get_hf_file_metadata`` / ``_get_metadata_or_catch_error``). Errors follow the Hub:
an unknown repo is 401 with ``X-Error-Code: RepoNotFound``, an unknown revision 404 ``RevisionNotFound``, a
missing file 404 ``EntryNotFound`` (with ``X-Repo-Commit``). ``status`` forces an error code (e.g. 500) and
``truncate`` serves a file cut short; ``drop_body`` announces the full length but closes the connection early.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubState:
    """What the server serves and what it saw."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=lambda: {"main": COMMIT, COMMIT: COMMIT})
    status: int | None = None
    truncate: dict[str, int] = field(default_factory=dict)
    drop_body: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_folder(self, repo_id: str, folder: Path) -> None:
        """Serve every file of ``folder`` as the repo ``repo_id``."""
        self.repos[repo_id] = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    def count(self, method: str, filename: str) -> int:
        """How many requests of ``method`` asked for ``filename``."""
        with self.lock:
            return sum(1 for m, path in self.requests if m == method and path.endswith("/" + filename))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a stopped server answers nothing more

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the default stderr log
        return

    def _error(self, status: int, code: str | None, commit: str | None = None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        body = f'{{"error": "{code or status}"}}'.encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def _serve(self) -> None:
        state = self.server.state
        with state.lock:
            state.requests.append((self.command, self.path))
        parts = self.path.split("?")[0].strip("/").split("/")
        if state.status is not None:
            return self._error(state.status, None)
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(404, None)
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if repo_id not in state.repos:
            return self._error(401, "RepoNotFound")
        commit = state.revisions.get(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound")
        data = state.repos[repo_id].get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", commit)
        etag = hashlib.sha256(data).hexdigest()
        if filename in state.truncate:
            data = data[: state.truncate[filename]]
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if self.command == "GET":
            if filename in state.drop_body:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return None
            self.wfile.write(data)
        return None

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_GET(self) -> None:  # noqa: N802
        self._serve()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class HubServer:
    """Start/stop the loopback Hub; ``url`` is the ``HF_ENDPOINT`` to use."""

    def __init__(self) -> None:
        self.state = HubState()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubServer:
        self._server = _Server(self.state)
        self.port = self._server.server_address[1]
        server = self._server
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
