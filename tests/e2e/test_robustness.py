"""The real server under abuse: bad input, overload and clients that leave. It keeps serving."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.e2e.server import abandon_stream, stopped_for
from tests.support.images import chart_url

pytestmark = pytest.mark.e2e


def chat(text: str, *urls: str, **extra) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}], **extra}


BAD_REQUESTS = {
    "malformed json": (b'{"messages": [', 400, "invalid_json"),
    "empty messages": ({"messages": []}, 400, None),
    "unknown model": ({"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_found"),
    "invalid base64": (chat("x", "data:image/png;base64,!!!!"), 400, "invalid_base64"),
    "not an image": (chat("x", "data:image/png;base64,aGVsbG8gd29ybGQ="), 400, "invalid_image"),
    "too many images": (chat("x", *[chart_url(1)] * 9), 400, "too_many_images"),
    "prompt longer than the context": (chat("chart " * 5000), 400, "context_length_exceeded"),
    "unknown part": ({"messages": [{"role": "user", "content": [{"type": "pdf"}]}]}, 400, "unsupported_content_type"),
    "refused url": (chat("x", "http://127.0.0.2:9/x.png"), 403, "url_refused"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_input_is_a_clean_4xx_and_the_server_keeps_serving(server, name):
    body, status, code = BAD_REQUESTS[name]
    kwargs = (
        {"content": body, "headers": {"Content-Type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body}
    )
    r = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"]
    if code:
        assert error["code"] == code
    ok = httpx.post(f"{server.url}/v1/chat/completions", json=chat("hi", chart_url(2), max_tokens=2), timeout=60)
    assert ok.status_code == 200


def test_full_queue_answers_429_with_retry_after(short_queue_server):
    server = short_queue_server  # one running, two waiting: six at once overflow it

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            body = chat("describe", chart_url(3), max_tokens=60, ignore_eos=True, temperature=0)
            return await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(6)))

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_a_streaming_client_that_disconnects_stops_its_generation(server):
    request_id = uuid.uuid4().hex  # the shared server's log holds other requests too
    body = chat("write a long story", chart_url(4), max_tokens=4000, temperature=0)
    abandon_stream(server.url, body, headers={"X-Request-Id": request_id})
    assert stopped_for(server, request_id) < 4000


def test_a_non_streaming_client_that_times_out_stops_its_generation(server):
    request_id = uuid.uuid4().hex
    body = chat("write a long story", chart_url(5), max_tokens=4000, temperature=0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/chat/completions", json=body, headers={"X-Request-Id": request_id}, timeout=1.5)
    assert stopped_for(server, request_id) < 4000
