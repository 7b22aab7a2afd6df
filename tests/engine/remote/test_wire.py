"""The remote engine's wire format: what is sent upstream, and how its answers and errors are read back."""

from __future__ import annotations

import json

import pytest

from vlserve.engine.base import ChatTurn, SamplingParams
from vlserve.engine.remote.upstreams import base_url
from vlserve.engine.remote.wire import (
    ChunkReader,
    completion_deltas,
    messages,
    request_body,
    response_format,
    upstream_error,
)
from vlserve.errors import ClientError, RateLimitError, UpstreamError
from vlserve.structured import OutputFormat
from vlserve.structured.formats import ANY_OBJECT


def scrub(text: str) -> str:
    return text.replace("10.0.0.7:8000", "<upstream>")


def sse(payload: dict | str) -> str:
    return "data: " + (payload if isinstance(payload, str) else json.dumps(payload))


def test_base_url_adds_v1_only_when_missing():
    assert base_url("http://vllm:8000") == "http://vllm:8000/v1"
    assert base_url("http://vllm:8000/v1/") == "http://vllm:8000/v1"
    assert base_url(" https://fleet.internal/llm/v1 ") == "https://fleet.internal/llm/v1"


def test_messages_keep_text_turns_as_strings_and_fill_images_in_order():
    turns = [
        ChatTurn("system", ({"type": "text", "text": "be brief"},)),
        ChatTurn("user", ({"type": "image"}, {"type": "text", "text": "compare"}, {"type": "image"})),
    ]
    assert messages(turns, ["data:a", "data:b"]) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:a"}},
            {"type": "text", "text": "compare"},
            {"type": "image_url", "image_url": {"url": "data:b"}},
        ]},
    ]  # fmt: skip


def test_only_what_the_client_set_is_sent_so_the_upstream_defaults_apply():
    body = request_body("m", [], SamplingParams(), stream=True)
    assert body == {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    full = request_body(
        "m",
        [],
        SamplingParams(
            max_tokens=9, temperature=0.0, top_p=0.5, top_k=0, seed=3, stop=("x",), min_tokens=2, ignore_eos=True,
            presence_penalty=1.5, frequency_penalty=-1.0, repetition_penalty=1.1, logit_bias={5: -100.0},
            return_token_ids=True,
        ),
        stream=False,
    )  # fmt: skip
    assert {k: full[k] for k in ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop")} == {
        "max_tokens": 9, "temperature": 0.0, "top_p": 0.5, "top_k": 0, "seed": 3, "stop": ["x"],
    }  # fmt: skip
    assert full["logit_bias"] == {"5": -100.0} and full["presence_penalty"] == 1.5 and full["ignore_eos"] is True
    assert full["repetition_penalty"] == 1.1 and full["min_tokens"] == 2 and full["return_token_ids"] is True
    assert full["stream"] is False and "stream_options" not in full


def test_response_formats_are_the_openai_ones():
    assert response_format(OutputFormat.of("json_object", ANY_OBJECT)) == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    sent = response_format(OutputFormat.of("Invoice data", schema))
    assert sent == {"type": "json_schema", "json_schema": {"name": "Invoice_data", "schema": schema, "strict": True}}


def test_upstream_errors_keep_4xx_status_and_become_502_for_5xx():
    error = upstream_error(
        400,
        b'{"error": {"message": "too long for 10.0.0.7:8000", "param": "messages", "code": "context_length"}}',
        {},
        scrub,
    )
    assert isinstance(error, ClientError) and error.status_code == 400
    assert (error.message, error.param, error.code) == ("too long for <upstream>", "messages", "context_length")
    flat = upstream_error(404, b'{"object": "error", "message": "no such model", "code": 404}', {}, scrub)
    assert flat.status_code == 404 and flat.message == "no such model"
    busy = upstream_error(429, b"{}", {"retry-after": "12"}, scrub)
    assert isinstance(busy, RateLimitError) and busy.headers["Retry-After"] == "12"
    failed = upstream_error(500, b"<html>oops</html>", {}, scrub)
    assert isinstance(failed, UpstreamError) and failed.status_code == 502 and failed.code == "upstream_error"
    assert failed.headers["Retry-After"] and "oops" in failed.message


def test_chunks_become_deltas_and_one_final_delta_with_usage():
    reader = ChunkReader(image_tokens=64, scrub=scrub)
    lines = [
        sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        "",
        ": keep-alive",
        sse({"choices": [{"index": 0, "delta": {"content": "Hel"}, "token_ids": [1, 2]}]}),
        sse({"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "length"}]}),
        sse({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 3}}),
        sse("[DONE]"),
    ]
    deltas = [d for line in lines for d in reader.feed(line)]
    assert [(d.text, d.token_ids, d.finish_reason) for d in deltas] == [
        ("Hel", (1, 2), None), ("lo", (), None), ("", (), "length"),
    ]  # fmt: skip
    assert deltas[-1].usage.prompt_tokens == 100 and deltas[-1].usage.image_tokens == 64
    assert reader.done


def test_a_stream_without_usage_still_ends_with_a_counted_final_delta():
    reader = ChunkReader(image_tokens=0, scrub=scrub)
    lines = [
        sse({"choices": [{"delta": {"content": "a"}}]}),
        sse({"choices": [{"delta": {}, "finish_reason": "stop"}]}),
    ]
    assert [d for line in lines for d in reader.feed(line)][-1].finish_reason is None
    final = list(reader.feed(sse("[DONE]")))
    assert final[0].finish_reason == "stop" and final[0].usage.completion_tokens == 1


def test_a_whole_completion_becomes_the_text_then_the_finish_with_usage():
    payload = {
        "choices": [{"message": {"content": "hi there"}, "finish_reason": "length", "token_ids": [4, 5]}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 2},
    }
    text, final = completion_deltas(json.dumps(payload).encode(), image_tokens=16)
    assert (text.text, text.token_ids, final.finish_reason) == ("hi there", (4, 5), "length")
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.image_tokens) == (30, 2, 16)
    with pytest.raises(UpstreamError, match="not a chat completion"):
        completion_deltas(b'{"object": "list"}', 0)


def test_an_error_event_or_an_abort_in_the_stream_is_an_error():
    reader = ChunkReader(image_tokens=0, scrub=scrub)
    with pytest.raises(UpstreamError, match="engine failed"):
        list(reader.feed(sse({"error": {"message": "CUDA error", "code": 500}})))
    with pytest.raises(UpstreamError, match="aborted"):
        list(ChunkReader(0, scrub).feed(sse({"choices": [{"delta": {}, "finish_reason": "abort"}]})))
    with pytest.raises(UpstreamError, match="not JSON"):
        list(ChunkReader(0, scrub).feed("data: {oops"))
