"""A stand-in Hugging Face Hub on 127.0.0.1 speaking the HTTP protocol `huggingface_hub` 2.4 uses to pull a model.

Routes (as the real client calls them, see huggingface_hub/hf_api.py `model_info` and file_download.py
`get_hf_file_metadata` / `http_get`):
- `GET /api/models/{repo}[/revision/{rev}]?blobs=True`: the model info, `sha` and `siblings` with `size`, `blobId`
  and, for LFS files, `lfs: {sha256, size, pointerSize}`;
- `HEAD /{repo}/resolve/{rev}/{file}`: `X-Repo-Commit`, `ETag` (the git blob id) and, for LFS files, `X-Linked-Etag`
  (the SHA-256) and `X-Linked-Size`;
- `GET /{repo}/resolve/{rev}/{file}`: the bytes, honouring `Range: bytes=N-` with a 206 and `Content-Range`.
Errors carry the Hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), from which the
client picks its exception class.

Faults, each set by the test: a flipped byte in one file's body (its advertised SHA-256 stays the true one), a
download cut mid-way (once), a download that stalls mid-way until released (to interrupt a pull from outside), a
gated repo, and advertised sizes larger than the files (to trip the disk-space check). Every request is recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf", ".onnx")


def git_blob_id(data: bytes) -> str:
    """The git object id of a file: what the Hub reports as `blobId` and as the ETag of a non-LFS file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Repo:
    """A model repository: commits (sha → files) and refs (branch or tag → sha)."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated_token: str | None = None  # when set, files are served only to `Authorization: Bearer <gated_token>`

    def commit(self, files: dict[str, bytes], ref: str = "main") -> str:
        """Add a commit holding ``files`` and point ``ref`` at it; returns its sha."""
        sha = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode())
        sha.update(str(len(self.commits)).encode())
        self.commits[sha.hexdigest()] = dict(files)
        self.refs[ref] = sha.hexdigest()
        return sha.hexdigest()

    def resolve(self, rev: str) -> str | None:
        return rev if rev in self.commits else self.refs.get(rev)


@dataclass
class FakeHub:
    url: str
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    corrupt: set[str] = field(default_factory=set)  # file names served with one byte flipped
    cut_once: set[str] = field(default_factory=set)  # file names whose next full GET stops half-way (then removed)
    stall: set[str] = field(default_factory=set)  # file names whose GET sends half, then waits for `release`
    stalled: threading.Event = field(default_factory=threading.Event)  # set once a stalled GET has sent its half
    release: threading.Event = field(default_factory=threading.Event)
    advertised_size: dict[str, int] = field(default_factory=dict)  # file name → size claimed in the model info

    def repo(self, repo_id: str) -> Repo:
        return self.repos.setdefault(repo_id, Repo())

    def gets(self, filename: str | None = None) -> list[Request]:
        """The GETs of files (`/resolve/`), optionally of one file name."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and "/resolve/" in r.path and (filename is None or r.path.endswith("/" + filename))
        ]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: FakeHub

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up mid-body (an interrupted pull) are expected; stay quiet."""


_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    def _route(self, method: str) -> None:
        self.hub.requests.append(Request(method, self.path, dict(self.headers.items())))
        path = unquote(urlsplit(self.path).path)
        if method == "GET" and (match := _INFO.match(path)):
            self._info(match["repo"], match["rev"] or "main")
        elif match := _RESOLVE.match(path):
            self._resolve(method, match["repo"], match["rev"], match["file"])
        else:
            self._error(404, "EntryNotFound", "no such route")

    def _error(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self._head(
            status,
            {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json", **(extra or {})},
            len(body),
        )
        if self.command != "HEAD":
            self.wfile.write(body)

    def _head(self, status: int, headers: dict[str, str], length: int) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _lookup(self, repo_id: str, rev: str) -> tuple[Repo, str] | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        sha = repo.resolve(rev)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return repo, sha

    def _info(self, repo_id: str, rev: str) -> None:
        found = self._lookup(repo_id, rev)
        if found is None:
            return
        repo, sha = found
        siblings = []
        for name, data in sorted(repo.commits[sha].items()):
            size = self.hub.advertised_size.get(name, len(data))
            sibling: dict[str, object] = {"rfilename": name, "size": size, "blobId": git_blob_id(data)}
            if name.endswith(LFS_SUFFIXES):
                sibling["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": size, "pointerSize": 134}
            siblings.append(sibling)
        body = json.dumps(
            {
                "_id": sha[:24],
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": False,
                "gated": "manual" if repo.gated_token else False,
                "disabled": False,
                "tags": ["safetensors"],
                "siblings": siblings,
            }
        ).encode()
        self._head(200, {"Content-Type": "application/json"}, len(body))
        self.wfile.write(body)

    def _resolve(self, method: str, repo_id: str, rev: str, name: str) -> None:
        found = self._lookup(repo_id, rev)
        if found is None:
            return
        repo, sha = found
        if repo.gated_token and self.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            status = 403 if self.headers.get("Authorization") else 401
            self._error(status, "GatedRepo", "Access to model is restricted", {"X-Repo-Commit": sha})
            return
        data = repo.commits[sha].get(name)
        if data is None:
            self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": sha})
            return
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"', "Accept-Ranges": "bytes"}
        if name.endswith(LFS_SUFFIXES):
            headers |= {"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))}
        if method == "HEAD":
            self._head(200, headers, len(data))
            return
        if name in self.hub.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
            start = int(match[1])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._head(206 if start else 200, headers, len(data) - start)
        body = data[start:]
        if name in self.hub.cut_once or name in self.hub.stall:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if name in self.hub.stall:
                self.hub.stalled.set()
                self.hub.release.wait(30)
            self.hub.cut_once.discard(name)
            self.close_connection = True  # the client sees the body end early
            return
        self.wfile.write(body)


@contextlib.contextmanager
def fake_hub() -> Iterator[FakeHub]:
    """Run a stand-in Hub on 127.0.0.1 on a free port (loopback only) for the duration of the block."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.hub = FakeHub(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.hub
    finally:
        httpd.hub.release.set()
        httpd.shutdown()
        httpd.server_close()
