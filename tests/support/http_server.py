"""A loopback-only HTTP server with the routes the image tests need (OK image, errors, slow, big, redirects)."""

from __future__ import annotations

import contextlib
import io
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from tests.support.images import chart, encode


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


OK_PNG = png_bytes(Image.new("RGB", (8, 6), (200, 30, 30)))
BIG_SIZE = 2_000_000
CHART_PNG = encode(chart(11, (320, 240)))


@dataclass
class Seen:
    """What the server received: (path, headers) per request."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: Seen

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up mid-body (the size-limit tests) are expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.requests.append((self.path, dict(self.headers.items())))
        port = self.server.server_address[1]
        routes = {
            "/ok.png": lambda: self._send(200, OK_PNG, {"Content-Type": "image/png"}),
            "/chart.png": lambda: self._send(200, CHART_PNG, {"Content-Type": "image/png"}),
            "/404": lambda: self._send(404, b"missing"),
            "/slow": self._slow,
            "/big": self._big,
            "/big-declared": lambda: self._head(200, {"Content-Length": str(10**9)}),
            "/redirect-ok": lambda: self._redirect("/ok.png", {"Set-Cookie": "session=secret; Path=/"}),
            "/redirect-to-refused": lambda: self._redirect(f"http://127.0.0.2:{port}/ok.png"),
            "/redirect-to-file": lambda: self._redirect("file:///etc/passwd"),
            "/redirect-loop": lambda: self._redirect("/redirect-loop"),
        }
        routes.get(self.path, lambda: self._send(404, b"no route"))()

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._head(status, {**(headers or {}), "Content-Length": str(len(body))})
        self.wfile.write(body)

    def _redirect(self, location: str, headers: dict[str, str] | None = None) -> None:
        self._send(302, b"", {**(headers or {}), "Location": location})

    def _slow(self) -> None:
        self.server.seen.release.wait(5)
        self._send(200, OK_PNG)

    def _big(self) -> None:
        self._head(200, {"Content-Type": "image/png"})  # no Content-Length: body ends at close
        chunk = b"\0" * 65536
        for _ in range(BIG_SIZE // len(chunk) + 1):
            self.wfile.write(chunk)


@dataclass
class HostedServer:
    url: str
    seen: Seen

    def paths(self) -> list[str]:
        return self.seen.paths()


@contextlib.contextmanager
def serve_http(ssl_context: ssl.SSLContext | None = None) -> Iterator[HostedServer]:
    """Run the server on 127.0.0.1 on a free port (loopback only) for the duration of the block."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen = Seen()
    if ssl_context is not None:
        httpd.socket = ssl_context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if ssl_context else "http"
    try:
        yield HostedServer(f"{scheme}://127.0.0.1:{httpd.server_address[1]}", httpd.seen)
    finally:
        httpd.seen.release.set()
        httpd.shutdown()
        httpd.server_close()
