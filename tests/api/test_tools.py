"""A request's tools, tool choice and tool messages are checked before any work: each mistake is a 400 naming it."""

from __future__ import annotations

import pytest

from tests.api.test_bad_input import assert_error

LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
USER = {"role": "user", "content": "how long"}


def ask(client, messages=(USER,), **extra):
    return client.post("/v1/chat/completions", json={"messages": list(messages), **extra})


@pytest.mark.parametrize(
    ("extra", "param", "says"),
    [
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"tools": [LOOKUP], "tool_choice": {"type": "function", "function": {"name": "other"}}},
         "tool_choice.function.name", "not in tools"),
        ({"tools": [LOOKUP], "tool_choice": "sometimes"}, "tool_choice", ""),
        ({"tools": [LOOKUP, LOOKUP]}, "tools[1].function.name", "names must differ"),
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].function.name", ""),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type", ""),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
         "tools[0].function.parameters", "not a valid JSON Schema"),
        ({"tools": [LOOKUP], "response_format": {"type": "json_object"}}, "response_format", "not both"),
    ],
)  # fmt: skip
def test_a_wrong_tool_setting_is_a_400_naming_it(client, extra, param, says):
    assert_error(ask(client, **extra), 400, param=param, says=says)


CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}


@pytest.mark.parametrize(
    ("messages", "param", "says"),
    [
        ([USER, {"role": "tool", "content": "42"}], "messages[1].tool_call_id", "tool_call_id"),
        ([USER, {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "lookup", "arguments": "{oops"}}]}],
         "messages[1].tool_calls[0].function.arguments", "JSON object"),
        ([USER, {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "lookup", "arguments": "[1]"}}]}],
         "messages[1].tool_calls[0].function.arguments", "JSON object"),
        ([{**USER, "tool_calls": [CALL]}], "messages[0].tool_calls", "only assistant"),
        ([USER, {"role": "assistant"}], "messages[1].content", "no content"),
    ],
)  # fmt: skip
def test_a_wrong_tool_message_is_a_400_naming_it(client, messages, param, says):
    assert_error(ask(client, messages), 400, param=param, says=says)


def test_a_conversation_with_tool_calls_and_results_is_accepted(client):
    result = {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "42 minutes"}]}
    history = [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}, result]
    response = ask(client, history, tool_choice="none", tools=[LOOKUP])
    assert response.status_code == 200, response.text
    assert "42" in response.json()["choices"][0]["message"]["content"]  # the fake engine echoes what it read


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
    ],
)
def test_openai_features_that_are_not_served_are_refused_by_name(client, extra, param):
    assert_error(ask(client, **extra), 400, code="unsupported_parameter", param=param, says="not supported")


def test_informational_fields_are_accepted(client):
    extra = {"user": "u1", "metadata": {"team": "a"}, "store": False, "service_tier": "auto",
             "prompt_cache_key": "k", "safety_identifier": "s", "modalities": ["text"]}  # fmt: skip
    assert ask(client, **extra).status_code == 200
