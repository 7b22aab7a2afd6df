"""response_format over a fake engine: formats reach the engine, bad ones are 400s, broken answers are flagged."""

from __future__ import annotations

import json

import pytest

from tests.api.fakes import FakeEngine
from tests.api.test_bad_input import assert_error
from tests.support.http_server import serve_http
from vlserve.engine.base import Delta, Usage

# The fake engine answers a JSON object mapping each word of the question to its length.
WORDS = {
    "type": "object",
    "properties": {"how": {"type": "integer"}, "long": {"type": "integer"}},
    "required": ["how", "long"],
}


def ask(client, response_format, *, text="how long", **extra):
    body = {"messages": [{"role": "user", "content": text}], "response_format": response_format, **extra}
    return client.post("/v1/chat/completions", json=body)


def schema(value, name="words"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": value}}


def test_a_schema_reaches_the_engine_and_the_answer_is_returned_as_json(make_client):
    engine = FakeEngine()
    client = make_client(engine)
    r = ask(client, schema(WORDS))
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"how": 3, "long": 4}
    assert engine.outputs[-1].name == "words" and engine.outputs[-1].schema == WORDS
    assert ask(client, {"type": "json_object"}).status_code == 200
    assert engine.outputs[-1].schema == {"type": "object"}


def test_an_invalid_schema_is_a_400_naming_the_problem_and_nothing_is_generated(make_client):
    engine = FakeEngine()
    client = make_client(engine)
    r = ask(client, schema({"type": "object", "required": "how"}))
    assert_error(r, 400, param="response_format.json_schema.schema", says="is not of type 'array'")
    assert_error(ask(client, {"type": "xml"}), 400, param="response_format.type", says="'xml'")
    assert engine.outputs == []
    assert ask(client, None).status_code == 200


def test_an_answer_that_breaks_the_schema_is_an_error_not_silent_bad_data(client):
    strict = {**WORDS, "required": ["how", "long", "wide"]}
    r = ask(client, schema(strict))
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "invalid_model_output"
    assert "'wide' is a required property" in error["message"]
    assert ask(client, schema(WORDS)).status_code == 200, "the server keeps serving"


def test_a_cut_off_answer_is_returned_with_finish_reason_length(client):
    r = ask(client, schema(WORDS), max_tokens=2)
    assert r.status_code == 200
    assert r.json()["choices"][0]["finish_reason"] == "length"


def test_streaming_sends_the_text_then_an_error_event_when_the_answer_breaks_the_schema(client):
    strict = {**WORDS, "required": ["wide"]}
    body = {"messages": [{"role": "user", "content": "how long"}], "response_format": schema(strict), "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "invalid_model_output"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert json.loads(text) == {"how": 3, "long": 4}, "every piece of the answer was still sent"
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events[:-2])


def hostile(url: str) -> dict:
    """A schema whose property refers to a document on ``url``: the server must never fetch it."""
    return {"type": "object", "properties": {"how": {"$ref": f"{url}/json-secret"}}, "required": ["how"]}


def tool(name: str, parameters: dict) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (lambda s: {"response_format": schema(s)}, "response_format.json_schema.schema"),
        (lambda s: {"tools": [tool("one", {"type": "object"}), tool("two", s)]}, "tools[1].function.parameters"),
        (lambda s: {"guided_json": s}, "guided_json"),
        (lambda s: {"guided_json": json.dumps(s)}, "guided_json"),
    ],
)  # fmt: skip
def test_a_schema_reference_outside_the_schema_is_a_400_naming_it_and_nothing_is_fetched(make_client, extra, param):
    engine = FakeEngine()
    client = make_client(engine)
    with serve_http() as listener:
        r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "how long"}],
                                                       **extra(hostile(listener.url))})  # fmt: skip
        assert_error(r, 400, code="unresolvable_ref", param=param, says=f"'{listener.url}/json-secret'")
        assert listener.paths() == [], "the server fetched the reference"
    assert engine.outputs == [], "refused before any work"


class DeepAnswers(FakeEngine):
    """Answers every request with a JSON object nested 5,000 levels deep (valid JSON, and a valid object)."""

    async def generate(self, prepared, params):
        yield Delta('{"how": ' + "[" * 5000 + "]" * 5000 + "}", "stop", (1,), Usage(1, 1))


def test_an_answer_nested_too_deep_is_invalid_model_output_naming_the_limit(make_client):
    r = make_client(DeepAnswers()).post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "how"}], "response_format": {"type": "json_object"}},
    )
    assert r.status_code == 500 and r.json()["error"]["code"] == "invalid_model_output", r.text
    assert "nests more than 32 levels deep (VLSERVE_MAX_JSON_DEPTH)" in r.json()["error"]["message"]
