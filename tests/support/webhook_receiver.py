"""A loopback-only webhook receiver: records every request, answers a scripted sequence of replies.

    with receive_webhooks([500, Reply(429, {"Retry-After": "3"}), 200]) as receiver:
        ...  # POST to receiver.url; then receiver.requests[i].headers / .body / .json()

Replies are used in order; once the script runs out, the last reply repeats (default: 200).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, extra headers, and a delay before answering (for timeouts)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it (header names as sent; look them up case-insensitively)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """What the receiver got so far and the replies still to give; shared with the server thread."""

    def __init__(self, port: int, script: Sequence[int | Reply]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.requests: list[Received] = []
        self._script = [reply if isinstance(reply, Reply) else Reply(reply) for reply in script] or [Reply(200)]
        self._changed = threading.Condition()
        self.closing = threading.Event()

    def record(self, request: Received) -> Reply:
        """Store ``request`` and take the next scripted reply."""
        with self._changed:
            self.requests.append(request)
            reply = self._script[0] if len(self._script) == 1 else self._script.pop(0)
            self._changed.notify_all()
        return reply

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests have arrived (for end-to-end tests); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.requests) >= count, timeout)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that give up mid-reply (the timeout tests) are expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.server.receiver.record(Received(self.command, self.path, dict(self.headers.items()), body))
        if reply.delay_s and self.server.receiver.closing.wait(reply.delay_s):
            return
        self.send_response(reply.status)
        for name, value in {**reply.headers, "Content-Length": "0"}.items():
            self.send_header(name, value)
        self.end_headers()

    do_POST = do_GET = do_PUT = _handle


@contextlib.contextmanager
def receive_webhooks(script: Sequence[int | Reply] = (200,)) -> Iterator[WebhookReceiver]:
    """Run a receiver on 127.0.0.1 on a free port (loopback only) for the duration of the block."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.receiver = WebhookReceiver(httpd.server_address[1], script)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.receiver
    finally:
        httpd.receiver.closing.set()
        httpd.shutdown()
        httpd.server_close()
