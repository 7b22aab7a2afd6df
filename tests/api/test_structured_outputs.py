"""vLLM's structured_outputs on chat and text completions, and response_format on text completions (fake engine)."""

from __future__ import annotations

import pytest

from tests.api.fakes import FakeEngine
from tests.api.test_bad_input import assert_error
from tests.cache.fakes import CountingEngine

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def chat(client, **extra):
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "how long"}], **extra})


def complete(client, **extra):
    return client.post("/v1/completions", json={"prompt": "Once upon", **extra})


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def served(make_client, engine):
    return make_client(engine)


@pytest.mark.parametrize("send", [chat, complete])
def test_each_kind_reaches_the_engine_on_both_endpoints(served, engine, send):
    for value, kind in [({"regex": "[0-9]{3}"}, "regex"), ({"choice": ["yes", "no"]}, "choice"),
                        ({"grammar": 'root ::= "a"'}, "grammar"), ({"json": SCHEMA}, "json"),
                        ({"json_object": True}, "json"),
                        ({"structural_tag": {"type": "structural_tag", "format": {"type": "any_text"}}},
                         "structural_tag")]:  # fmt: skip
        assert send(served, structured_outputs=value).status_code == 200, value
        assert engine.outputs[-1].kind == kind
    assert engine.outputs[-3].schema == SCHEMA


def test_a_text_completion_takes_a_response_format(served, engine):
    fmt = {"type": "json_schema", "json_schema": {"name": "count", "schema": SCHEMA}}
    reply = complete(served, response_format=fmt, max_tokens=50)
    assert reply.status_code == 200, reply.text
    assert engine.outputs[-1].name == "count" and engine.outputs[-1].schema == SCHEMA
    assert complete(served, response_format={"type": "text"}).status_code == 200
    bad = {"type": "json_schema", "json_schema": {"name": "count", "schema": {"type": "nonsense"}}}
    assert_error(complete(served, response_format=bad), 400, param="response_format.json_schema.schema")


@pytest.mark.parametrize("send", [chat, complete])
def test_a_bad_value_is_a_400_naming_the_field_inside_it(served, engine, send):
    assert_error(send(served, structured_outputs={"regex": "(a"}), 400, param="structured_outputs.regex",
                 says="parenthesis is not closed")  # fmt: skip
    assert_error(send(served, structured_outputs={"grammar": "root ::="}), 400, param="structured_outputs.grammar")
    assert_error(send(served, structured_outputs={"choice": []}), 400, param="structured_outputs.choice")
    assert_error(send(served, structured_outputs={"regex": "a", "choice": ["a"]}), 400, says="regex and choice")
    assert_error(send(served, structured_outputs={"regexp": "a"}), 400, param="structured_outputs.regexp")
    assert send(served, structured_outputs="[0-9]+").status_code == 400
    assert engine.outputs == []  # refused before the engine saw any of them


@pytest.mark.parametrize("send", [chat, complete])
def test_structured_outputs_and_a_response_format_are_one_or_the_other(served, send):
    both = send(served, structured_outputs={"regex": "a"}, response_format={"type": "json_object"})
    assert_error(both, 400, param="structured_outputs", says="either response_format or structured_outputs")
    alone = send(served, structured_outputs={"regex": "a"}, response_format={"type": "text"})  # text is no format
    assert alone.status_code == 200


def test_structured_outputs_and_guided_json_or_tools_are_one_or_the_other(served):
    both = chat(served, structured_outputs={"regex": "a"}, guided_json=SCHEMA)
    assert_error(both, 400, param="structured_outputs", says="either guided_json or structured_outputs")
    with_tools = chat(served, structured_outputs={"regex": "a"}, tools=TOOLS)
    assert_error(with_tools, 400, param="structured_outputs", says="tools or structured_outputs")


def test_two_kinds_with_the_same_text_are_not_each_others_cached_answer(make_client):
    engine = CountingEngine()
    client = make_client(engine)
    # The choice's source is the JSON list '["a"]', which is also a regex (one of '"' or 'a').
    first, second, again = (chat(client, temperature=0, structured_outputs=value)
                            for value in ({"choice": ["a"]}, {"regex": '["a"]'}, {"choice": ["a"]}))  # fmt: skip
    assert [r.headers["x-vlserve-cache"] for r in (first, second, again)] == ["miss", "miss", "hit"]
    assert engine.calls == 2
