"""The real server through the official openai client: images in, text out, streaming and not."""

from __future__ import annotations

import httpx
import pytest

from tests.support.images import chart, chart_url, encode

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def test_models_and_probes(server, openai_client):
    models = openai_client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].model_extra["max_images_per_request"] == 8
    assert httpx.get(f"{server.url}/health/live").status_code == 200
    ready = httpx.get(f"{server.url}/health/ready")
    assert ready.status_code == 200 and ready.headers["x-request-id"]


def test_non_streaming_with_a_data_url_image(openai_client):
    response = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [image_part(chart_url(1)), {"type": "text", "text": "What values?"}]}],
        max_tokens=12,
        temperature=0,
    )
    choice = response.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert isinstance(choice.message.content, str) and choice.message.content
    assert response.usage.completion_tokens <= 12
    assert response.usage.prompt_tokens > 16  # the image's visual tokens are counted
    assert response.model == MODEL


def test_streaming_matches_non_streaming_and_ends_with_usage(openai_client):
    messages = [{"role": "user", "content": [image_part(chart_url(2, "JPEG")), {"type": "text", "text": "Describe."}]}]
    full = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0)
    stream = openai_client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals[-1].choices[0].finish_reason == full.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_two_images_cost_more_prompt_tokens_than_one(openai_client):
    one = [image_part(chart_url(3)), {"type": "text", "text": "Compare."}]
    two = [image_part(chart_url(3)), image_part(chart_url(4)), {"type": "text", "text": "Compare."}]
    r1 = openai_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": one}], max_tokens=4)
    r2 = openai_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": two}], max_tokens=4)
    assert r2.usage.prompt_tokens > r1.usage.prompt_tokens + 16


def test_seeded_sampling_is_reproducible(openai_client):
    messages = [{"role": "user", "content": [image_part(chart_url(5)), {"type": "text", "text": "Go."}]}]
    kwargs = dict(model=MODEL, messages=messages, max_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    kwargs["extra_headers"] = {"Cache-Control": "no-cache"}  # both sampled by the engine, not one from the cache
    a = openai_client.chat.completions.create(**kwargs).choices[0].message.content
    b = openai_client.chat.completions.create(**kwargs).choices[0].message.content
    assert a == b


def test_vision_multipart_endpoint(server):
    files = [
        ("image_file", ("a.png", encode(chart(6)), "image/png")),
        ("image_file", ("b.jpg", encode(chart(7), "JPEG"), "image/jpeg")),
    ]
    r = httpx.post(
        f"{server.url}/v1/chat/vision",
        data={"prompt": "近三年净利润增长率分别是多少？", "max_tokens": "8"},
        files=files,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"result", "model", "usage", "trace_id"}
    assert body["trace_id"] == r.headers["x-request-id"]
    assert body["usage"]["completion_tokens"] <= 8


def test_image_url_fetched_over_http(server, openai_client, image_host):
    response = openai_client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": [image_part(f"{image_host.url}/chart.png"), {"type": "text", "text": "?"}]}
        ],
        max_tokens=4,
    )
    assert response.usage.prompt_tokens > 16
    assert "/chart.png" in image_host.paths()
