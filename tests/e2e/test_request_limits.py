"""Request limits against a real server: each oversized or stalled request is refused quickly, costs the server
little memory, and the server keeps serving."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.media.test_media_images import png_claiming
from tests.support.images import chart_url, data_url

MB = 1_000_000


def vm_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def limited(start_server):
    return start_server(read_timeout_s=1, max_prompt_chars=200_000)


@pytest.fixture
def still_serving(limited):
    yield limited
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": chart_url(1)}},
                                                      {"type": "text", "text": "hi"}]}], "max_tokens": 2}  # fmt: skip
    assert httpx.post(f"{limited.url}/v1/chat/completions", json=body, timeout=60).status_code == 200


def fifty_mb_body() -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "a" * 50 * MB}]}).encode()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_50_mb_json_body_is_413_at_once_with_little_memory(still_serving, chunked):
    server, body = still_serving, fifty_mb_body()
    content = (body[i : i + 256 * 1024] for i in range(0, len(body), 256 * 1024)) if chunked else body
    before = vm_rss_mib(server.proc.pid)
    started = time.monotonic()
    r = httpx.post(
        f"{server.url}/v1/chat/completions", content=content, headers={"Content-Type": "application/json"}, timeout=30
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large" and "VLSERVE_MAX_BODY_BYTES" in r.json()["error"]["message"]
    assert elapsed < 5, elapsed  # sanity bound: the benchmark figure is well under a second
    assert vm_rss_mib(server.proc.pid) - before < 50


def test_a_client_that_sends_the_whole_oversized_body_before_reading_gets_the_413_not_a_reset(still_serving):
    """http.client (urllib, requests) writes the whole body before it reads: the server reads and drops the
    rest, so such a client sees the answer instead of a connection reset."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", still_serving.port, timeout=30)
    try:
        connection.request(
            "POST", "/v1/chat/completions", body=fifty_mb_body(), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "payload_too_large"
    finally:
        connection.close()


def test_eight_images_whose_headers_say_6000x6000_are_refused_without_decoding(still_serving):
    parts = [{"type": "image_url", "image_url": {"url": data_url(png_claiming(6000, 6000))}}] * 8
    body = {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "compare"}]}]}
    started = time.monotonic()
    r = httpx.post(f"{still_serving.url}/v1/chat/completions", json=body, timeout=60)
    assert time.monotonic() - started < 5
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "image_too_large"
    assert "VLSERVE_MAX_REQUEST_PIXELS" in r.json()["error"]["message"]


def test_long_prompts_are_refused_before_tokenising(still_serving):
    url = f"{still_serving.url}/v1/completions"
    started = time.monotonic()
    huge = httpx.post(url, json={"prompt": "word " * 12 * MB}, timeout=60)  # 60 MB: over the body limit
    long = httpx.post(url, json={"prompt": "word " * 100_000}, timeout=60)  # 500 k characters
    assert time.monotonic() - started < 10
    assert huge.status_code == 413, huge.text
    assert long.status_code == 400, long.text
    assert long.json()["error"]["param"] == "prompt" and "VLSERVE_MAX_PROMPT_CHARS" in long.json()["error"]["message"]


def test_a_body_that_stalls_is_answered_408(still_serving):
    with socket.create_connection(("127.0.0.1", still_serving.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):  # the answer closes the connection; headers and body may come apart
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer
    assert time.monotonic() - started < 5


def test_a_form_with_too_many_fields_is_refused(still_serving):
    fields = {f"field{i}": "x" for i in range(300)}
    r = httpx.post(
        f"{still_serving.url}/v1/chat/vision", data=fields, files={"image_file": ("a.png", b"x")}, timeout=30
    )
    assert r.status_code == 413, r.text
    assert "VLSERVE_MAX_FORM_FIELDS" in r.json()["error"]["message"]
