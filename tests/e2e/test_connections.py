"""Clients that stall or send too much at the connection level, against a real server: stalled connections
are closed after the header timeout, an oversized head is a 431, past the connection limit a request is a
503 with Retry-After, a request answered before its body arrived has its connection closed, a body must
arrive within VLSERVE_BODY_TIMEOUT_S, and the server keeps serving throughout."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
KEY = "vlsk_" + "connections-test-key-0123456789abcdef"
MODEL = "vlserve-demo-random"


@pytest.fixture(scope="module")
def guarded(start_server):
    return start_server(
        header_timeout_s=HEADER_TIMEOUT_S, max_connections=8, max_header_bytes=16 * 1024,
        require_auth=1, admin_key=KEY, body_timeout_s=BODY_TIMEOUT_S,
    )  # fmt: skip


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


def post_head(path: str, length: int, *, key: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n".encode() if key else b""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n".encode()
        + auth
        + b"\r\n"
    )


def trickle(sock: socket.socket, rounds: int = 40) -> tuple[bytes, bool]:
    """Send one byte of body every 0.3 s while reading: what the server answered, and whether it then closed
    the connection (end of stream, then a reset as the next bytes reach a closed socket) within ``rounds``."""
    sock.settimeout(0.3)
    received, ended = b"", False
    for _ in range(rounds):
        try:
            if ended:
                time.sleep(0.3)
                sock.sendall(b" ")
                continue
            chunk = sock.recv(65536)
        except TimeoutError:
            with contextlib.suppress(TimeoutError):
                sock.sendall(b" ")
            continue
        except (ConnectionResetError, BrokenPipeError):
            return received, True
        ended = ended or not chunk
        received += chunk
    return received, False


def test_a_request_refused_before_its_body_arrived_has_its_connection_closed(guarded):
    with connect(guarded) as sock:  # no key, a body announced and trickled in: answered at once, then closed
        sock.sendall(post_head("/v1/chat/completions", 1_000_000) + b"{")
        answer, closed = trickle(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"connection: close" in head.lower(), head
    assert json.loads(body)["error"]["code"] == "missing_api_key"
    assert closed
    assert httpx.get(f"{guarded.url}/health/live", timeout=10).status_code == 200


def test_a_client_that_sends_its_whole_body_after_a_refusal_reads_the_answer(guarded):
    body = b'{"prompt": "' + b"a" * 24_000_000 + b'"}'  # refused after its head; more than the socket buffers
    with connect(guarded) as sock:  # written in full before reading, as simple clients do: no reset
        sock.sendall(post_head("/v1/completions", len(body)) + body)
        status, answer = read_response(sock)
    assert status == 401 and answer["error"]["code"] == "missing_api_key"


def test_a_body_that_trickles_in_past_the_body_timeout_is_a_408(guarded):
    with connect(guarded) as sock:  # each byte well within VLSERVE_READ_TIMEOUT_S (60 s), the whole too slow
        sock.sendall(post_head("/v1/completions", 1000, key=KEY) + b"{")
        answer, closed = trickle(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and "VLSERVE_BODY_TIMEOUT_S" in error["message"]
    assert closed


def test_a_kept_alive_connection_serves_request_after_request(guarded):
    conn = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=60)
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    try:
        conn.request("GET", "/v1/models", headers=auth)
        first = conn.getresponse()
        assert first.status == 200 and not first.will_close
        first.read()
        sock = conn.sock
        conn.request("POST", "/v1/completions", json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 1}), auth)
        second = conn.getresponse()
        assert second.status == 200 and not second.will_close
        second.read()
        conn.request("GET", "/health/live")
        third = conn.getresponse()
        assert third.status == 200
        third.read()
        assert conn.sock is sock  # the same connection throughout
    finally:
        conn.close()
