"""`vlserve serve --engine remote` in front of a real upstream (another `vlserve serve` on the demo model).

Greedy answers through the gateway equal the upstream's own, token for token, under concurrent load
with images the gateway resizes; streams pass through; a client that leaves stops the upstream's
generation; images reach the upstream inline, fetched once by the gateway; a dead upstream is a 503.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
from openai import OpenAI

from tests.e2e.server import abandon_stream, free_port, stopped_after
from tests.e2e.test_documents import FACTS, submit, wait_for
from tests.support.images import chart, data_url, encode
from tests.support.pdfs import text_pdf

pytestmark = pytest.mark.e2e

N_PROMPTS = 24


@pytest.fixture(scope="module")
def upstream(start_server):
    # The reference answers: computed every time, never the cached answer to the gateway's identical request.
    return start_server(url_allowlist="127.0.0.1/32", url_fetch_timeout=2, max_batch_size=4, cache=False)


@pytest.fixture(scope="module")
def gateway(start_server, upstream):
    return start_server(engine="remote", upstream=upstream.url, url_allowlist="127.0.0.1/32", url_fetch_timeout=2)


def case(i: int) -> dict:
    images = [chart(300 + 10 * i + k) for k in range(i % 3)]  # random sizes: the gateway resizes most of them
    parts = [{"type": "image_url", "image_url": {"url": data_url(encode(im))}} for im in images]
    text = ["What are the values?", "Which bar is highest?", "请分析这张图，各年份的数值分别是多少？"][i % 3]
    return {
        "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": f"{text} ({i})"}]}],
        "max_tokens": 16,
        "temperature": 0,
        "return_token_ids": True,
    }


async def ask_all(url: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=case(i)) for i in range(N_PROMPTS)))
    for r in responses:
        assert r.status_code == 200, r.text
    return [r.json() for r in responses]


def test_greedy_answers_through_the_gateway_equal_the_upstreams_own(gateway, upstream):
    through = asyncio.run(ask_all(gateway.url))
    direct = asyncio.run(ask_all(upstream.url))
    for i, (a, b) in enumerate(zip(through, direct, strict=True)):
        assert a["choices"][0]["token_ids"] == b["choices"][0]["token_ids"], f"case {i}"
        assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
        assert a["usage"] == b["usage"], f"case {i}"


def test_streaming_through_the_gateway_with_the_openai_client(gateway, upstream):
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=60)
    image = data_url(encode(chart(7, (500, 333))))
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                             {"type": "text", "text": "values?"}]}]  # fmt: skip
    stream = client.chat.completions.create(
        model="vlserve-demo-random", messages=messages, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    direct = OpenAI(base_url=f"{upstream.url}/v1", api_key="unused", max_retries=0, timeout=60)
    same = direct.chat.completions.create(model="vlserve-demo-random", messages=messages, max_tokens=12, temperature=0)
    assert text == same.choices[0].message.content


def wait_for_another_stop(upstream, before: int) -> int:
    """The token count of the next generation the upstream stops because its client went away."""
    deadline = time.monotonic() + 30
    while len(stops := stopped_after(upstream.log())) <= before:
        assert time.monotonic() < deadline, upstream.log()[-2000:]
        time.sleep(0.1)
    return stops[-1]


LONG = {"messages": [{"role": "user", "content": "write a long story"}], "max_tokens": 4000, "temperature": 0}


def test_a_streaming_client_that_leaves_stops_the_upstreams_generation(gateway, upstream):
    before = len(stopped_after(upstream.log()))
    abandon_stream(gateway.url, LONG)
    assert wait_for_another_stop(upstream, before) < 4000


def test_a_waiting_client_that_times_out_stops_the_upstreams_generation(gateway, upstream):
    before = len(stopped_after(upstream.log()))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.url}/v1/chat/completions", json=LONG, timeout=1.5)
    assert wait_for_another_stop(upstream, before) < 4000


def test_an_image_url_is_fetched_once_by_the_gateway_and_sent_inline(gateway, image_host):
    fetched = image_host.paths().count("/chart.png")
    parts = [{"type": "image_url", "image_url": {"url": f"{image_host.url}/chart.png"}}, {"type": "text", "text": "?"}]
    body = {"messages": [{"role": "user", "content": parts}], "max_tokens": 2}
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert image_host.paths().count("/chart.png") == fetched + 1  # the upstream never saw the URL


def test_an_upstream_refusal_keeps_its_status(gateway):
    body = {"messages": [{"role": "user", "content": "chart " * 5000}], "max_tokens": 4}
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_without_a_reachable_upstream_the_gateway_is_live_not_ready_and_answers_503(start_server):
    port = free_port()
    gateway = start_server(engine="remote", upstream=f"http://127.0.0.1:{port}/v1", ready=False)
    ready = gateway.wait_status("/health/ready", 503)
    assert ready.json()["detail"] == "no upstream engine is healthy"
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert str(port) not in r.text and str(port) not in ready.text


def test_document_jobs_and_the_vision_endpoint_run_through_the_gateway(gateway):
    job = submit(gateway, text_pdf(2), json_schema=json.dumps(FACTS))  # the schema is enforced upstream
    status = wait_for(gateway, job["id"])
    assert status["status"] == "succeeded" and status["pages"]["succeeded"] == 2, status
    pages = httpx.get(f"{gateway.url}/v1/documents/{job['id']}/result", timeout=10).json()["pages"]
    assert all(set(page["data"]) == {"kind", "labelled"} for page in pages)
    files = [("image_file", ("chart.png", encode(chart(9, (300, 200))), "image/png"))]
    vision = httpx.post(f"{gateway.url}/v1/chat/vision", data={"prompt": "values?", "max_tokens": "4"}, files=files)
    assert vision.status_code == 200 and vision.json()["usage"]["completion_tokens"] >= 1


def test_structured_outputs_are_enforced_upstream_through_the_gateway(gateway):
    # The gateway sends them in vLLM's form; the upstream (vlserve, which takes that form) enforces them.
    for path, body in [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a number?"}]}),
        ("/v1/completions", {"prompt": "A number:"}),
    ]:
        body = {**body, "max_tokens": 8, "temperature": 0, "structured_outputs": {"regex": "[0-9]{3}"}}
        r = httpx.post(f"{gateway.url}{path}", json=body, timeout=60)
        assert r.status_code == 200, r.text
        reply = r.json()["choices"][0]
        assert re.fullmatch(r"[0-9]{3}", reply["message"]["content"] if "message" in reply else reply["text"])
