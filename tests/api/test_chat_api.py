"""/v1/chat/completions over a fake engine: response shapes, streaming, request ids."""

import json

from tests.api.fakes import image_message
from tests.support.images import data_url
from tests.support.images import solid as png_bytes


def test_answer_shape_usage_and_request_id(client):
    r = client.post("/v1/chat/completions", json={"model": "fake-vl", "messages": image_message(data_url(png_bytes()))})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "images: 64x48 said: what is this"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 13, "completion_tokens": 6, "total_tokens": 19}
    assert body["id"] == f"chatcmpl-{r.headers['x-request-id']}"


def test_model_may_be_omitted_and_incoming_request_id_is_kept(client):
    r = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Request-Id": "gateway-42"},
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "gateway-42"


def test_garbage_request_id_is_replaced(client):
    r = client.get("/health/live", headers={"X-Request-Id": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"
    assert len(r.headers["x-request-id"]) == 32


def test_max_tokens_and_max_completion_tokens_cut_with_length(client):
    for field in ("max_tokens", "max_completion_tokens"):
        r = client.post("/v1/chat/completions", json={"messages": image_message(data_url(png_bytes())), field: 2})
        assert r.json()["choices"][0]["message"]["content"] == "images: 64x48"
        assert r.json()["choices"][0]["finish_reason"] == "length"


def test_stop_sequence(client):
    r = client.post("/v1/chat/completions", json={"messages": image_message(data_url(png_bytes())), "stop": ["said"]})
    assert r.json()["choices"][0]["message"]["content"] == "images: 64x48"
    assert r.json()["choices"][0]["finish_reason"] == "stop"


def sse_events(text: str) -> list:
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def stream_events(client, **extra) -> list[dict]:
    body = {"messages": image_message(data_url(png_bytes()), data_url(png_bytes((20, 10)))), "stream": True, **extra}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return sse_events(r.read().decode())


def test_streaming_sends_deltas_a_finish_chunk_then_usage_once_as_openai_does(client):
    events = stream_events(client, stream_options={"include_usage": True})
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == "images: 64x48 20x10 said: what is this"
    final = [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
    assert len(final) == 1 and final[0]["choices"][0]["finish_reason"] == "stop"
    assert [e for e in events if "usage" in e] == [events[-1]]  # usage only on the last chunk
    assert events[-1]["choices"] == []
    assert events[-1]["usage"] == {"prompt_tokens": 23, "completion_tokens": 7, "total_tokens": 30}


def test_streaming_without_include_usage_sends_no_usage(client):
    events = stream_events(client)
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert not [e for e in events if "usage" in e]


def test_models_lists_the_served_model_with_limits(client):
    data = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["fake-vl"]
    assert data[0]["max_model_len"] == 200
    assert data[0]["max_images_per_request"] == 8


def test_vision_endpoint_multipart(client):
    files = [
        ("image_file", ("a.png", png_bytes(), "image/png")),
        ("image_file", ("b.jpg", png_bytes((30, 30), "JPEG"), "image/jpeg")),
    ]
    r = client.post("/v1/chat/vision", data={"prompt": "compare these"}, files=files)
    assert r.status_code == 200
    body = r.json()
    assert body["result"] == "images: 64x48 30x30 said: compare these"
    assert body["model"] == "fake-vl"
    assert body["trace_id"] == r.headers["x-request-id"]
    assert body["usage"]["prompt_tokens"] == 22
