"""A burst far beyond what the server can hold: every request is answered 200 or 429 queue_full with
Retry-After (streams too, as the HTTP status), refusals come back fast, accepted ones complete."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.support.images import chart_url

BURST = 24  # the server holds 3: one generating, two waiting


def body(i: int, stream: bool) -> dict:
    content = [{"type": "image_url", "image_url": {"url": chart_url(i % 4)}}, {"type": "text", "text": "values?"}]
    return {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 40, "ignore_eos": True, "temperature": 0, "stream": stream,
    }  # fmt: skip


async def one(client: httpx.AsyncClient, i: int, stream: bool) -> tuple[bool, int, float, httpx.Headers, bytes]:
    started = time.monotonic()
    async with client.stream("POST", "/v1/chat/completions", json=body(i, stream)) as response:
        raw = await response.aread()
    return stream, response.status_code, time.monotonic() - started, response.headers, raw


def test_a_burst_beyond_capacity_is_answered_200_or_429_and_every_accepted_request_completes(short_queue_server):
    server = short_queue_server  # one running, two waiting

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return await asyncio.gather(*(one(client, i, stream=i % 2 == 0) for i in range(BURST)))

    results = asyncio.run(burst())
    statuses = [status for _, status, _, _, _ in results]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 1 and statuses.count(429) >= BURST - 6, statuses
    for stream, status, seconds, headers, raw in results:
        if status == 429:
            assert headers["retry-after"] == "1"
            assert json.loads(raw)["error"]["code"] == "queue_full"
            assert seconds < 10, seconds  # sanity bound: refusals do no work
        elif stream:
            events = [line for line in raw.decode().splitlines() if line.startswith("data: ")]
            assert events[-1] == "data: [DONE]" and '"error"' not in raw.decode()
            assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"
        else:
            assert json.loads(raw)["choices"][0]["finish_reason"] == "length"
    assert any(stream and status == 429 for stream, status, *_ in results), "a stream must be refused as a 429"
    after = httpx.post(f"{server.url}/v1/chat/completions", json=body(0, False), timeout=60)
    assert after.status_code == 200, after.text
