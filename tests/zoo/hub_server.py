"""A loopback HTTP server speaking the Hugging Face Hub's protocol to the real ``huggingface_hub`` 2.4 client.

Downloads (``hf_hub_download``, ``get_hf_file_metadata``): ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``
answer with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``. An LFS file's ETag is its SHA-256 and it also
carries ``X-Linked-Etag``/``X-Linked-Size``, which ``get_hf_file_metadata`` prefers (the real Hub sends them on its
redirect to the CDN; here the bytes follow at once); a regular file's ETag is its git blob SHA-1. Errors follow the
Hub: an unknown repo (or a private one, asked without a token) is ``X-Error-Code: RepoNotFound`` (401; 404 to a
token holder), an unknown revision 404 ``RevisionNotFound``, a missing file 404 ``EntryNotFound`` (with
``X-Repo-Commit``). Knobs: ``status`` forces an error code on every request, ``truncate`` serves a file cut short,
``drop_body`` announces the full length but closes the connection halfway; ``requests``/``authorizations`` log each
request and its ``Authorization`` header, ``operations`` the lines each commit was made of.

Uploads, in the order ``HfApi.create_repo`` and ``HfApi.upload_folder``/``create_commit`` call them:

* ``POST /api/repos/create``: a repo with an initial commit holding ``.gitattributes``; 409 if it exists.
* ``POST /api/validate-yaml`` (``create_commit`` when README.md is committed): 400 if the front matter is bad.
* ``POST /api/models/{repo}/preupload/{rev}``: ``"lfs"`` for paths ``.gitattributes`` routes to LFS, files of
  10 MiB or more and binary samples, else ``"regular"``; plus each file's remote oid (unchanged files are skipped).
* ``POST /{repo}.git/info/lfs/objects/batch``: basic transfer; per new object a "pre-signed" upload URL
  ``PUT /lfs-objects/{sha256}?signature=...`` (sent without ``Authorization``, checked against the hash) and a
  ``verify`` action ``POST /{repo}.git/info/lfs/objects/verify``. Objects already stored get no actions.
* ``POST /api/models/{repo}/commit/{branch}``: NDJSON lines ``header`` (``parentCommit`` checked), ``file``
  (base64), ``lfsFile`` (must be uploaded), ``deletedFile``, ``deletedFolder``; answers ``commitOid``/``commitUrl``.

Reads: ``GET /api/models/{repo}[/revision/{rev}]`` (``model_info``/``repo_info``; ``?blobs=True``, i.e.
``files_metadata=True``, adds sizes, blob ids and LFS SHA-256) and ``GET /api/models/{repo}/tree/{rev}[/{path}]``
(``list_repo_tree``, ``list_repo_files``). Writes need a ``Bearer`` token (any value) and answer 401 "Invalid
username or password." without one. Each commit gets a fresh 40-hex id; the branch moves to it; old ids resolve.

huggingface_hub 2.4 chooses Xet or LFS for uploads on the client side only (``_commit_api._upload_files`` and
``upload_folder`` take the Xet path whenever ``hf_xet`` is importable, whatever the Hub says), so upload tests set
``huggingface_hub.constants.HF_HUB_DISABLE_XET`` (what ``HF_HUB_DISABLE_XET=1`` sets at import). Downloads stay on
plain HTTP because no answer carries ``X-Xet-Hash``. Repos made by ``add_folder`` serve the same files at every
revision of ``revisions`` (``main`` and ``COMMIT``) until something is committed to them.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import yaml

COMMIT = "0123456789abcdef0123456789abcdef01234567"
USER = "hub-tester"  # the account every token belongs to (the namespace of create_repo without one)
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.npz", "*.zip", "*.gz")
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
LFS_MIN_SIZE = 10 * 1024 * 1024
NO_TOKEN = "Invalid username or password."


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob: what the Hub calls a regular file's ``oid``/``ETag``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree_entry(path: str, data: bytes, lfs: bool) -> dict[str, Any]:
    """A file as the Hub's tree API lists it (an LFS file's blob is its pointer file)."""
    if not lfs:
        return {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
    sha = hashlib.sha256(data).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
    lfs_info = {"oid": sha, "size": len(data), "pointerSize": len(pointer)}
    return {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(pointer), "lfs": lfs_info}


def lfs_patterns(files: dict[str, bytes]) -> list[str]:
    """The patterns ``.gitattributes`` routes to LFS (the Hub's defaults when the repo has none)."""
    text = files.get(".gitattributes", GITATTRIBUTES).decode()
    return [line.split()[0] for line in text.splitlines() if "filter=lfs" in line]


def matches(path: str, patterns: list[str]) -> bool:
    """Whether a gitattributes pattern selects ``path`` (patterns without ``/`` match the base name)."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(path, p) or ("/" not in p and fnmatch.fnmatch(name, p)) for p in patterns)


@dataclass
class HubState:
    """What the server serves and what it saw.

    ``repos`` holds each repo's files at ``main`` (tests may edit it to tamper with what is served). Repos made
    through the API also have ``branches`` (branch -> commit id) and ``commits`` (commit id -> files);
    ``lfs_paths`` records which paths of each (repo, commit) are LFS files, and ``operations`` the NDJSON lines
    each commit was made of, as ``(key, path)`` pairs (``("header", summary)`` first).
    """

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=lambda: {"main": COMMIT, COMMIT: COMMIT})
    branches: dict[str, dict[str, str]] = field(default_factory=dict)
    commits: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)
    lfs_paths: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    operations: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    private: set[str] = field(default_factory=set)
    objects: dict[str, bytes] = field(default_factory=dict)  # the LFS store: SHA-256 -> content
    signatures: dict[str, str] = field(default_factory=dict)  # upload URL signature -> the SHA-256 it may PUT
    status: int | None = None
    truncate: dict[str, int] = field(default_factory=dict)
    drop_body: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_folder(self, repo_id: str, folder: Path) -> None:
        """Serve every file of ``folder`` as the repo ``repo_id``."""
        self.repos[repo_id] = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    def count(self, method: str, filename: str) -> int:
        """How many requests of ``method`` asked for ``filename``."""
        with self.lock:
            return sum(1 for m, path in self.requests if m == method and path.endswith("/" + filename))

    def lookup(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """The commit id and files of ``revision`` (a branch or a commit id), or ``None``."""
        if repo_id not in self.branches:
            commit = self.revisions.get(revision)
            return (commit, self.repos[repo_id]) if commit else None
        commit = self.branches[repo_id].get(revision, revision)
        if commit == self.branches[repo_id].get("main"):
            return commit, self.repos[repo_id]
        files = self.commits[repo_id].get(commit)
        return (commit, files) if files is not None else None

    def is_lfs(self, repo_id: str, commit: str, path: str) -> bool:
        """Whether ``path`` is stored in LFS at ``commit``."""
        if repo_id in self.branches:
            return path in self.lfs_paths.get((repo_id, commit), set())
        return matches(path, lfs_patterns(self.repos[repo_id]))

    def new_commit(self, repo_id: str, branch: str, files: dict[str, bytes], lfs: set[str]) -> str:
        """Record a commit of ``files`` on ``branch`` and return its fresh id."""
        oid = secrets.token_hex(20)
        self.commits.setdefault(repo_id, {})[oid] = files
        self.lfs_paths[repo_id, oid] = lfs
        self.branches.setdefault(repo_id, {})[branch] = oid
        if branch == "main":
            self.repos[repo_id] = files
        return oid

    def adopt(self, repo_id: str) -> None:
        """Give a repo made by ``add_folder`` a history, so that commits can follow its ``main``."""
        if repo_id not in self.branches:
            files, main = self.repos[repo_id], self.revisions["main"]
            self.lfs_paths[repo_id, main] = {p for p in files if self.is_lfs(repo_id, main, p)}
            self.branches[repo_id], self.commits[repo_id] = {"main": main}, {main: files}


class Refusal(Exception):
    """An error answer (status, ``X-Error-Code``, message, ``X-Repo-Commit``) that handlers raise."""

    def __init__(self, status: int, code: str | None = None, message: str | None = None, commit: str | None = None):
        super().__init__(message or code or str(status))
        self.status, self.code, self.message, self.commit = status, code, message, commit


_REPO = r"(?P<repo>[^/]+/[^/]+?)"
_ROUTES = [
    (methods.split(), re.compile(pattern), name)
    for methods, pattern, name in (
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", rf"/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "info"),
        ("GET", rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
        ("POST", rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", "commit"),
        ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
        ("POST", rf"/{_REPO}\.git/info/lfs/objects/verify", "lfs_verify"),
        ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", "lfs_put"),
        ("GET HEAD", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    )
]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a stopped server answers nothing more

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the default stderr log
        return

    def _send(self, status: int, body: bytes, headers: dict[str, str], length: int | None = None) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _refuse(self, refusal: Refusal) -> None:
        headers = {"X-Error-Code": refusal.code} if refusal.code else {}
        if refusal.commit:
            headers["X-Repo-Commit"] = refusal.commit
        self._json(refusal.status, {"error": str(refusal)}, headers)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)

    @property
    def _token(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ")

    @property
    def _base(self) -> str:
        return f"http://{self.headers['Host']}"

    def _read(self, repo: str, rev: str, write: bool = False) -> tuple[str, dict[str, bytes]]:
        """The commit and files of ``repo@rev`` (writes need a token; a private repo hides from anonymous reads)."""
        state = self.server.state
        if write and not self._token:
            raise Refusal(401, message=NO_TOKEN)
        if repo not in state.repos or (repo in state.private and not self._token):
            raise Refusal(404 if self._token else 401, "RepoNotFound")
        found = state.lookup(repo, rev)
        if found is None:
            raise Refusal(404, "RevisionNotFound")
        return found

    def _dispatch(self) -> None:
        state = self.server.state
        path, _, self.query = self.path.partition("?")
        body = self._body() if self.command in ("POST", "PUT") else b""
        with state.lock:
            state.requests.append((self.command, self.path))
            state.authorizations.append(self.headers.get("Authorization"))
            try:
                if state.status is not None:
                    raise Refusal(state.status)
                for methods, pattern, name in _ROUTES:
                    match = pattern.fullmatch(path)
                    if match and self.command in methods:
                        args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                        return getattr(self, "_" + name)(body, **args)
                raise Refusal(404)
            except Refusal as refusal:
                return self._refuse(refusal)
            except Exception as err:  # a bug here should read as one, not as a dropped connection
                return self._json(500, {"error": f"test Hub failed: {err!r}"})

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    def _resolve(self, body: bytes, repo: str, rev: str, path: str) -> None:
        state = self.server.state
        commit, files = self._read(repo, rev)
        data = files.get(path)
        if data is None:
            raise Refusal(404, "EntryNotFound", commit=commit)
        lfs = state.is_lfs(repo, commit, path)
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_id(data)
        if path in state.truncate:
            data = data[: state.truncate[path]]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
        if lfs:
            headers |= {"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))}
        if self.command == "GET" and path in state.drop_body:
            self.close_connection = True
            return self._send(200, data[: len(data) // 2], headers, length=len(data))
        return self._send(200, data, headers)

    def _info(self, body: bytes, repo: str, rev: str = "main") -> None:
        commit, files = self._read(repo, rev)
        blobs = parse_qs(self.query).get("blobs", [""])[0].lower() == "true"
        siblings = []
        for path, data in sorted(files.items()):
            entry = tree_entry(path, data, self.server.state.is_lfs(repo, commit, path))
            lfs = entry.get("lfs") and {"sha256": entry["lfs"]["oid"], **entry["lfs"]}  # model_info says sha256
            sibling = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"], "lfs": lfs}
            siblings.append(sibling if blobs else {"rfilename": path})
        private = repo in self.server.state.private
        info = {"id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": commit, "private": private}
        self._json(200, {**info, "gated": False, "disabled": False, "tags": [], "siblings": siblings})

    def _tree(self, body: bytes, repo: str, rev: str, path: str = "") -> None:
        commit, files = self._read(repo, rev)
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        recursive = parse_qs(self.query).get("recursive", [""])[0].lower() == "true"
        entries, folders = [], set()
        for name, data in sorted(files.items()):
            parts = name[len(prefix) :].split("/") if name.startswith(prefix) else []
            dirs = [prefix + "/".join(parts[:i]) for i in range(1, len(parts))]
            folders.update(dirs if recursive else dirs[:1])
            if parts and (recursive or not dirs):
                entries.append(tree_entry(name, data, self.server.state.is_lfs(repo, commit, name)))
        if prefix and not entries and not folders:
            raise Refusal(404, "EntryNotFound", commit=commit)
        dirs = [{"type": "directory", "path": d, "oid": git_blob_id(d.encode()), "size": 0} for d in sorted(folders)]
        return self._json(200, dirs + entries)

    def _create_repo(self, body: bytes) -> None:
        state = self.server.state
        if not self._token:
            raise Refusal(401, message=NO_TOKEN)
        request = json.loads(body)
        if request.get("type", "model") != "model":
            raise Refusal(400, message="this test Hub only has model repos")
        repo = f"{request.get('organization') or USER}/{request['name']}"
        if repo in state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": f"{self._base}/{repo}"})
        state.new_commit(repo, "main", {".gitattributes": GITATTRIBUTES}, set())
        if request.get("visibility") == "private":
            state.private.add(repo)
        return self._json(200, {"url": f"{self._base}/{repo}", "name": repo, "id": repo})

    def _validate_yaml(self, body: bytes) -> None:
        content = json.loads(body)["content"]
        front, closed, _ = content[3:].partition("\n---") if content.startswith("---") else ("", "", "")
        try:
            meta = yaml.safe_load(front) if closed else {}
            problem = None if isinstance(meta, dict | None) else "the metadata must be a mapping"
        except yaml.YAMLError as err:
            problem = f"Invalid YAML in README.md: {err}"
        errors = [{"message": problem}] if problem else []
        return self._json(400 if problem else 200, {"errors": errors, "warnings": []})

    def _preupload(self, body: bytes, repo: str, rev: str) -> None:
        state = self.server.state
        commit, files = self._read(repo, rev, write=True)
        patterns, answers = lfs_patterns(files), []
        for item in json.loads(body)["files"]:
            path, sample = item["path"], base64.b64decode(item["sample"])
            lfs = matches(path, patterns) or item["size"] >= LFS_MIN_SIZE or b"\0" in sample
            remote = files.get(path)
            remote_lfs = remote is not None and state.is_lfs(repo, commit, path)
            oid = None if remote is None else hashlib.sha256(remote).hexdigest() if remote_lfs else git_blob_id(remote)
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return self._json(200, {"files": answers, "commitOid": commit})

    def _lfs_batch(self, body: bytes, repo: str) -> None:
        state = self.server.state
        self._read(repo, "main", write=True)
        request = json.loads(body)
        if request.get("operation") != "upload":
            return self._json(422, {"message": "this test Hub's LFS batch API only uploads"})
        objects = []
        for obj in request["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in state.objects:
                signature = secrets.token_hex(8)
                state.signatures[signature] = obj["oid"]
                upload = {"href": f"{self._base}/lfs-objects/{obj['oid']}?signature={signature}"}
                verify = {"href": f"{self._base}/{repo}.git/info/lfs/objects/verify"}
                answer["actions"] = {"upload": upload, "verify": verify}
            objects.append(answer)
        body_out = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        return self._send(200, body_out, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_put(self, body: bytes, oid: str) -> None:
        state = self.server.state
        if state.signatures.get(parse_qs(self.query).get("signature", [""])[0]) != oid:
            raise Refusal(403, message="SignatureDoesNotMatch")
        if hashlib.sha256(body).hexdigest() != oid:
            raise Refusal(400, message="BadDigest: the content does not hash to the object id")
        state.objects[oid] = body
        return self._send(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def _lfs_verify(self, body: bytes, repo: str) -> None:
        self._read(repo, "main", write=True)
        request = json.loads(body)
        stored = self.server.state.objects.get(request["oid"])
        if stored is None or len(stored) != request["size"]:
            return self._json(404, {"message": f"LFS object {request['oid']} of size {request['size']} not found"})
        return self._json(200, {"success": True})

    def _commit(self, body: bytes, repo: str, rev: str) -> None:
        state = self.server.state
        commit, files = self._read(repo, rev, write=True)
        if "create_pr=1" in self.query:
            raise Refusal(400, message="this test Hub does not open pull requests")
        if rev not in state.branches.get(repo, {"main": ""}):
            raise Refusal(400, message=f"Invalid rev id: {rev} is not a branch")
        files, lfs, operations = dict(files), {p for p in files if state.is_lfs(repo, commit, p)}, []
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            path = value.get("path", "")
            operations.append((key, value["summary"] if key == "header" else path))
            if key == "header":
                if value.get("parentCommit", commit) != commit:
                    raise Refusal(412, message="A commit has happened since. Please refresh and try again.")
            elif key == "file":
                files[path] = base64.b64decode(value["content"])
                lfs.discard(path)
            elif key == "lfsFile":
                if value["oid"] not in state.objects:
                    raise Refusal(400, message=f"LFS object {value['oid']} ({path}) was never uploaded")
                files[path] = state.objects[value["oid"]]
                lfs.add(path)
            elif key in ("deletedFile", "deletedFolder"):
                gone = [
                    p for p in files if p == path or (key == "deletedFolder" and p.startswith(path.rstrip("/") + "/"))
                ]
                if not gone:
                    raise Refusal(404, "EntryNotFound", message="A file with this name doesn't exist", commit=commit)
                for p in gone:
                    del files[p]
                    lfs.discard(p)
            else:
                raise Refusal(400, message=f"unknown commit line key {key!r}")
        summary = next((text for key, text in operations if key == "header"), "")
        state.adopt(repo)
        oid = state.new_commit(repo, rev, files, lfs)
        state.operations[oid] = operations
        url = f"{self._base}/{repo}/commit/{oid}"
        answer = {
            "success": True,
            "commitOid": oid,
            "commitUrl": url,
            "commitMessage": summary,
            "hookOutput": "",
        }
        return self._json(200, {**answer, "pullRequestUrl": None})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class HubServer:
    """Start/stop the loopback Hub; ``url`` is the ``HF_ENDPOINT`` (or ``HfApi(endpoint=...)``) to use."""

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
