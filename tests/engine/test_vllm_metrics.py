"""Reading the vLLM child's /metrics for GET /metrics/engine, against a loopback server: passed through
with its content type, bounded in size and time, a child that is down is a 503."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.e2e.server import free_port
from vlserve.engine.vllm import metrics
from vlserve.errors import ServiceUnavailableError, UpstreamError

EXPOSITION = b'# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="m"} 3.0\n'
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers.items()))  # type: ignore[attr-defined]
        if self.path == "/metrics":
            self._send(200, EXPOSITION, OPENMETRICS)
        elif self.path == "/big":
            self._send(200, b"x" * (metrics.MAX_BYTES + 1), "text/plain")
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, EXPOSITION, "text/plain")
        else:
            self._send(500, b"boom", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


@pytest.fixture(scope="module")
def child() -> Iterator[tuple[str, list[dict]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    server.shutdown()


def scrape(url: str) -> metrics.Exposition:
    async def main() -> metrics.Exposition:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await metrics.scrape(client, url, {"Authorization": "Bearer child-key"})

    return asyncio.run(main())


def test_the_childs_exposition_and_content_type_pass_through_unchanged(child):
    url, seen = child
    got = scrape(f"{url}/metrics")
    assert got.body == EXPOSITION and got.content_type == OPENMETRICS
    assert seen[-1]["Authorization"] == "Bearer child-key"


def test_an_error_status_or_an_oversized_body_is_a_502(child):
    url, _ = child
    with pytest.raises(UpstreamError, match="HTTP 500") as failed:
        scrape(f"{url}/missing")
    assert failed.value.status_code == 502
    with pytest.raises(UpstreamError, match="larger than"):
        scrape(f"{url}/big")


def test_a_child_that_is_down_or_too_slow_is_a_503(child, monkeypatch):
    url, _ = child
    with pytest.raises(ServiceUnavailableError, match="cannot be reached") as down:
        scrape(f"http://127.0.0.1:{free_port()}/metrics")
    assert down.value.status_code == 503 and down.value.headers["Retry-After"] == "5"
    monkeypatch.setattr(metrics, "SCRAPE_TIMEOUT_S", 0.3)
    with pytest.raises(ServiceUnavailableError, match="no answer within"):
        scrape(f"{url}/slow")
