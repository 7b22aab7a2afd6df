"""A stand-in ModelScope hub on 127.0.0.1 speaking the HTTP the `modelscope` client (modelscope_hub 0.5) uses to
pull a model, under ``/api/v1`` (modelscope_hub/_legacy_api.py `list_repo_files`, `download_stream`):
- `GET /api/v1/models/{owner}/{name}/repo/files?Revision=REV&Recursive=…`: ``{"Code": 200, "Data": {"Files": [...],
  "LatestCommitter": {"Id": sha}}}``, each file with `Path`, `Name`, `Size`, `Sha256`, `Type`; an unknown repository
  or revision is a 404 with ``{"Code": 404, "Message": …}``;
- `GET /api/v1/models/{owner}/{name}/repo?Revision=REV&FilePath=PATH`: the bytes, honouring `Range: bytes=N-` with a
  206 and `Content-Range`.
Anything else (the client's region probe `/api/v1/repos/internalAccelerationInfo`) is a 404.

The repositories are fake_hub.Repo (commits and refs). Faults, set by the test: a flipped byte in one file's body
(its listed SHA-256 stays the true one) and a download cut half-way (once). Every request is recorded.
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
from urllib.parse import parse_qs, urlsplit

from tests.support.fake_hub import Repo, Request


@dataclass
class FakeModelScope:
    url: str
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    corrupt: set[str] = field(default_factory=set)  # file names served with one byte flipped
    cut_once: set[str] = field(default_factory=set)  # file names whose next full GET stops half-way (then removed)

    def repo(self, repo_id: str) -> Repo:
        return self.repos.setdefault(repo_id, Repo())

    def gets(self, filename: str | None = None) -> list[Request]:
        """The GETs of files, optionally of one file name."""
        return [
            r
            for r in self.requests
            if "/repo?" in r.path and (filename is None or parse_qs(urlsplit(r.path).query)["FilePath"] == [filename])
        ]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: FakeModelScope

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up mid-body are expected; stay quiet."""


_ROUTE = re.compile(r"^/api/v1/models/(?P<repo>[^/]+/[^/]+)/repo(?P<files>/files)?$")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        hub = self.server.hub
        hub.requests.append(Request("GET", self.path, dict(self.headers.items())))
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        match = _ROUTE.match(url.path)
        repo = hub.repos.get(match["repo"]) if match else None
        sha = repo.resolve(query.get("Revision", "master")) if repo else None
        if match is None or repo is None or sha is None:
            return self._json(404, {"Code": 404, "Success": False, "Message": f"not found: {url.path}"})
        files = repo.commits[sha]
        if match["files"]:
            listing = [
                {"Name": p, "Path": p, "Type": "blob", "Size": len(d), "Sha256": hashlib.sha256(d).hexdigest()}
                for p, d in sorted(files.items())
            ]
            data = {"Files": listing, "LatestCommitter": {"Id": sha, "ShortId": sha[:8]}}
            return self._json(200, {"Code": 200, "Success": True, "Data": data})
        path = query.get("FilePath", "")
        if path not in files:
            return self._json(404, {"Code": 404, "Success": False, "Message": f"no file {path}"})
        self._body(path, files[path])

    def _body(self, path: str, data: bytes) -> None:
        hub = self.server.hub
        if path in hub.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if ranged:
            start = int(ranged[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not ranged and path in hub.cut_once:
            hub.cut_once.discard(path)
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def _json(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@contextlib.contextmanager
def fake_modelscope() -> Iterator[FakeModelScope]:
    """A stand-in ModelScope hub on an ephemeral loopback port for the duration of the block."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hub = FakeModelScope(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.hub
    finally:
        server.shutdown()
        server.server_close()
