"""Clients that stall or send too much at the connection level, against a real server: stalled connections
are closed after the header timeout, an oversized head is a 431, past the connection limit a request is a
503 with Retry-After, and the server keeps serving throughout."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def guarded(start_server):
    return start_server(header_timeout_s=HEADER_TIMEOUT_S, max_connections=8, max_header_bytes=16 * 1024)


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed the connection (reads end-of-stream, or a reset) within the socket timeout."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_connections_that_stall_before_their_headers_end_are_closed(guarded):
    stalled = [connect(guarded) for _ in range(40)]
    for i, sock in enumerate(stalled):
        if i % 2:
            sock.sendall(b"GET /health/li")  # half a request line, then nothing
        else:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # headers that never end
    started = time.monotonic()
    assert all(closed_by_server(sock) for sock in stalled)
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 5
    for sock in stalled:
        sock.close()
    assert httpx.get(f"{guarded.url}/health/live", timeout=10).status_code == 200


def test_an_oversized_request_head_is_a_431_and_the_server_keeps_serving(guarded):
    sock = connect(guarded)
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    status, body = read_response(sock)
    sock.close()
    assert status == 431
    assert body["error"]["code"] == "request_headers_too_large"
    assert "VLSERVE_MAX_HEADER_BYTES" in body["error"]["message"]
    many = {f"X-Header-{i}": "v" * 100 for i in range(200)}  # 20 KB in many small headers, sent at once
    refused = httpx.get(f"{guarded.url}/health/live", headers=many, timeout=10)
    assert refused.status_code == 431 and refused.json()["error"]["code"] == "request_headers_too_large"
    assert httpx.get(f"{guarded.url}/health/live", timeout=10).status_code == 200


def test_past_the_connection_limit_a_request_gets_503_until_connections_close(guarded):
    idle = [connect(guarded) for _ in range(8)]
    time.sleep(0.2)  # accepted by the server
    refused = httpx.get(f"{guarded.url}/health/live", timeout=10)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "too_many_connections" and refused.headers["retry-after"] == "1"
    assert all(closed_by_server(sock) for sock in idle)  # silent connections end at the header timeout
    for sock in idle:
        sock.close()
    assert httpx.get(f"{guarded.url}/health/live", timeout=10).status_code == 200
