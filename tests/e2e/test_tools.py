"""Tool calls through the real server and the official openai client: rendered by the demo model's chat
template, enforced while decoding (required, a named function, no parallel calls), streamed as OpenAI
streams them, and a conversation with tool results goes on."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Oslo"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS}}
CLOCK = {"type": "function", "function": {"name": "clock", "description": "The time now"}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris for 3 days?"}]


def ask(client, messages=QUESTION, **extra):
    return client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER, CLOCK], **{"max_tokens": 120, "temperature": 0, **extra}
    )


def check_calls(calls) -> None:
    assert calls
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
        assert call.function.name in ("get_weather", "clock")
        arguments = json.loads(call.function.arguments)
        if call.function.name == "get_weather":
            jsonschema.validate(arguments, WEATHER_PARAMETERS)


def test_required_answers_with_a_call_of_the_given_tools(openai_client):
    # One call: random weights, given the choice, would go on calling until the token limit.
    choice = ask(openai_client, tool_choice="required", parallel_tool_calls=False).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    check_calls(choice.message.tool_calls)


def test_a_named_function_is_called_once_with_valid_arguments(openai_client):
    named = {"type": "function", "function": {"name": "get_weather"}}
    choice = ask(openai_client, tool_choice=named).choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    check_calls([call])


def test_parallel_calls_are_allowed_by_default(openai_client):
    choice = ask(openai_client, tool_choice="required", max_tokens=200).choices[0]
    assert len(choice.message.tool_calls) > 1  # random weights prefer another call to ending
    check_calls(choice.message.tool_calls[:-1])  # the last may be cut off by the token limit


def test_none_answers_in_text(openai_client):
    choice = ask(openai_client, tool_choice="none", max_tokens=8).choices[0]
    assert not choice.message.tool_calls and choice.finish_reason != "tool_calls"
    assert isinstance(choice.message.content, str)


def test_streamed_calls_assemble_to_the_same_answer(openai_client):
    one = {"tool_choice": "required", "parallel_tool_calls": False}
    whole = ask(openai_client, **one).choices[0].message.tool_calls
    calls: dict[int, dict] = {}
    finish, usage = None, []
    for chunk in ask(openai_client, **one, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage.append(chunk.usage)
            assert chunk.choices == []
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for piece in choice.delta.tool_calls or ():
                call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
                if piece.id is not None:  # a call's first piece: its id and name, once
                    assert call["id"] is None and piece.function.name
                    call["id"], call["name"] = piece.id, piece.function.name
                call["arguments"] += piece.function.arguments or ""
    assert finish == "tool_calls" and len(usage) == 1
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        (c.function.name, json.loads(c.function.arguments)) for c in whole
    ]


def test_tools_and_tool_results_reach_the_model(openai_client):
    plain = openai_client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=1)
    with_tools = ask(openai_client, max_tokens=1)
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 50  # the signatures are in the prompt
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    result = {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 degrees, light wind from the west"}
    history = [*QUESTION, {"role": "assistant", "content": None, "tool_calls": [call]}, result]
    follow_up = ask(openai_client, history, max_tokens=1)
    assert follow_up.usage.prompt_tokens > with_tools.usage.prompt_tokens + 20  # the call and its result


def test_a_parameter_schema_the_grammar_cannot_express_is_a_400_not_a_failed_batch(server):
    unenforceable = {"type": "object", "properties": {"code": {"type": "string", "pattern": "(?<=a)b"}}}
    tool = {"type": "function", "function": {"name": "lookup", "parameters": unenforceable}}
    body = {"messages": QUESTION, "tools": [tool], "tool_choice": "required", "max_tokens": 5}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "tools"
