"""The remote engine's wire format: what is sent upstream, and how its answers and errors are read back."""

from __future__ import annotations

import json

import pytest

from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams, TokenLogprob, ToolCall, ToolCallDelta
from vlserve.engine.remote.upstreams import base_url
from vlserve.engine.remote.wire import (
    ChunkReader,
    chat_inputs,
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
    body = request_body("m", {"messages": []}, SamplingParams(), stream=True)
    assert body == {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    full = request_body(
        "m",
        {"messages": []},
        SamplingParams(
            max_tokens=9, temperature=0.0, top_p=0.5, top_k=0, seed=3, stop=("x",), min_tokens=2, ignore_eos=True,
            presence_penalty=1.5, frequency_penalty=-1.0, repetition_penalty=1.1, logit_bias={5: -100.0},
            return_token_ids=True,
        ),
        stream=False,
    )  # fmt: skip
    assert {k: full[k] for k in ("max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop")} == {
        "max_completion_tokens": 9, "temperature": 0.0, "top_p": 0.5, "top_k": 0, "seed": 3, "stop": ["x"],
    }  # fmt: skip
    assert "max_tokens" not in full  # deprecated on chat by vLLM, refused by OpenAI's newer models
    assert full["logit_bias"] == {"5": -100.0} and full["presence_penalty"] == 1.5 and full["ignore_eos"] is True
    assert full["repetition_penalty"] == 1.1 and full["min_tokens"] == 2 and full["return_token_ids"] is True
    assert full["stream"] is False and "stream_options" not in full


def test_a_text_completion_limits_with_max_tokens_its_only_limit_field():
    body = request_body("m", {"prompt": "Once"}, SamplingParams(max_tokens=7), stream=False)
    assert body["max_tokens"] == 7 and "max_completion_tokens" not in body


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
    with pytest.raises(UpstreamError, match=r"not a \(chat\) completion"):
        completion_deltas(b'{"object": "list"}', 0)


def test_an_error_event_or_an_abort_in_the_stream_is_an_error():
    reader = ChunkReader(image_tokens=0, scrub=scrub)
    with pytest.raises(UpstreamError, match="engine failed"):
        list(reader.feed(sse({"error": {"message": "CUDA error", "code": 500}})))
    with pytest.raises(UpstreamError, match="aborted"):
        list(ChunkReader(0, scrub).feed(sse({"choices": [{"delta": {}, "finish_reason": "abort"}]})))
    with pytest.raises(UpstreamError, match="not JSON"):
        list(ChunkReader(0, scrub).feed("data: {oops"))


TOOLS = ({"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},)
CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}}


def test_tool_calls_and_tool_answers_in_the_history_go_upstream_as_openai_messages():
    turns = [
        ChatTurn.user("weather?"),
        ChatTurn("assistant", (), (ToolCall("call_1", "lookup", '{"city": "Paris"}'),)),
        ChatTurn("tool", ({"type": "text", "text": "sunny"},), tool_call_id="call_1"),
        ChatTurn("assistant", ({"type": "text", "text": "Checking."},), (ToolCall("call_2", "lookup", "{}"),)),
    ]
    assert messages(turns, []) == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
        ]},
    ]  # fmt: skip


def test_tools_are_sent_with_their_choice_and_parallel_calls_only_when_turned_off():
    turns = (ChatTurn.user("hi"),)
    assert chat_inputs(EngineRequest(turns), []) == {"messages": [{"role": "user", "content": "hi"}]}
    assert "tool_choice" not in chat_inputs(EngineRequest(turns, tool_choice="none"), [])  # no tools: nothing to say
    named = {"type": "function", "function": {"name": "lookup"}}
    inputs = chat_inputs(EngineRequest(turns, tools=TOOLS, tool_choice=named, parallel_tool_calls=False), [])
    assert inputs["tools"] == list(TOOLS) and inputs["tool_choice"] == named and inputs["parallel_tool_calls"] is False
    auto = chat_inputs(EngineRequest(turns, tools=TOOLS, tool_choice="auto"), [])
    assert auto["tool_choice"] == "auto" and "parallel_tool_calls" not in auto


def test_logprobs_are_asked_for_in_each_endpoints_own_way():
    params = SamplingParams(logprobs=True, top_logprobs=3)
    chat = request_body("m", {"messages": []}, params, stream=False)
    assert (chat["logprobs"], chat["top_logprobs"]) == (True, 3)
    text = request_body("m", {"prompt": "Once"}, params, stream=False)
    assert text["prompt"] == "Once" and text["logprobs"] == 3 and "top_logprobs" not in text and "messages" not in text
    assert request_body("m", {"prompt": "x"}, SamplingParams(logprobs=True), stream=False)["logprobs"] == 0
    assert "logprobs" not in request_body("m", {"prompt": "x"}, SamplingParams(), stream=False)


def test_a_whole_answer_with_tool_calls_keeps_them_and_the_tool_calls_finish():
    second = {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": {"city": "Oslo"}}}
    payload = {
        "choices": [{"message": {"content": None, "tool_calls": [CALL, second]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 12},
    }
    answer, final = completion_deltas(json.dumps(payload).encode(), image_tokens=0)
    assert answer.text == "" and final.finish_reason == "tool_calls"
    assert answer.tool_calls == (
        ToolCallDelta(0, "call_1", "lookup", '{"city": "Paris"}'),
        ToolCallDelta(1, "call_2", "lookup", '{"city": "Oslo"}'),  # an object sent as arguments becomes JSON text
    )


def test_chat_logprobs_and_text_completion_logprobs_become_token_logprobs():
    entry = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
             "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                              {"token": "Yo", "logprob": -2.5, "bytes": None}]}  # fmt: skip
    chat = {"choices": [{"message": {"content": "Hi"}, "logprobs": {"content": [entry]}, "finish_reason": "stop"}]}
    (answer, _) = completion_deltas(json.dumps(chat).encode(), 0)
    assert answer.logprobs == (
        TokenLogprob("Hi", -0.1, (72, 105), (TokenLogprob("Hi", -0.1, (72, 105)), TokenLogprob("Yo", -2.5))),
    )
    legacy = {"tokens": ["Once", " upon"], "token_logprobs": [-0.5, -1.0],
              "top_logprobs": [{"Twice": -3.0, "Once": -0.5}, {" upon": -1.0}], "text_offset": [0, 4]}  # fmt: skip
    text = {"choices": [{"text": "Once upon", "logprobs": legacy, "finish_reason": "length"}]}
    answer, final = completion_deltas(json.dumps(text).encode(), 0)
    assert answer.text == "Once upon" and final.finish_reason == "length"
    assert final.usage.completion_tokens == 2  # counted from the logprobs when the upstream sends no usage
    assert answer.logprobs == (
        TokenLogprob("Once", -0.5, top=(TokenLogprob("Once", -0.5), TokenLogprob("Twice", -3.0))),  # most likely first
        TokenLogprob(" upon", -1.0, top=(TokenLogprob(" upon", -1.0),)),
    )


def test_streamed_tool_call_pieces_keep_their_index_and_the_finish_is_tool_calls():
    reader = ChunkReader(image_tokens=0, scrub=scrub)
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}
    lines = [
        sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        sse({"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]}),
        sse({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}}]}),
        sse({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_2",
                                                                "function": {"name": "f", "arguments": "{}"}}]}}]}),
        sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        sse("[DONE]"),
    ]  # fmt: skip
    deltas = [d for line in lines for d in reader.feed(line)]
    assert [d.tool_calls for d in deltas[:-1]] == [
        (ToolCallDelta(0, "call_1", "lookup", ""),),
        (ToolCallDelta(0, None, None, '{"a"'),),
        (ToolCallDelta(1, "call_2", "f", "{}"),),
    ]
    assert deltas[-1].finish_reason == "tool_calls" and deltas[-1].usage.completion_tokens == 3


def test_a_streamed_text_completion_is_read_from_its_text_with_its_logprobs():
    reader = ChunkReader(image_tokens=0, scrub=scrub)
    piece = {"tokens": [" upon"], "token_logprobs": [-1.0], "top_logprobs": [{" upon": -1.0}], "text_offset": [4]}
    lines = [
        sse({"object": "text_completion", "choices": [{"index": 0, "text": "Once", "logprobs": None}]}),
        sse({"object": "text_completion", "choices": [{"index": 0, "text": " upon", "logprobs": piece}]}),
        sse({"object": "text_completion", "choices": [{"index": 0, "text": "", "finish_reason": "length"}]}),
        sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ]
    deltas = [d for line in lines for d in reader.feed(line)]
    assert [(d.text, d.finish_reason) for d in deltas] == [("Once", None), (" upon", None), ("", "length")]
    assert deltas[1].logprobs == (TokenLogprob(" upon", -1.0, top=(TokenLogprob(" upon", -1.0),)),)
    assert deltas[-1].usage.prompt_tokens == 3


def test_continuous_usage_is_asked_for_upstream_and_relayed_on_each_delta():
    body = request_body("m", {"messages": []}, SamplingParams(continuous_usage=True), stream=True)
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert (
        "continuous_usage_stats"
        not in request_body("m", {"messages": []}, SamplingParams(), stream=True)["stream_options"]
    )
    reader = ChunkReader(image_tokens=0, scrub=scrub)
    running = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    (delta,) = reader.feed(sse({"choices": [{"index": 0, "delta": {"content": "Hi"}}], "usage": running}))
    assert (delta.text, delta.prompt_tokens, delta.completion_tokens) == ("Hi", 11, 2)
    (plain,) = ChunkReader(0, scrub).feed(sse({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}))
    assert plain.prompt_tokens is None and plain.completion_tokens is None
