"""The real server: response_format through the openai client, enforced while decoding, even on random weights."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.support.images import chart, chart_url, encode
from tests.support.silent_listener import silent_listener

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"


class ChartFacts(BaseModel):
    kind: Literal["bar", "line"]
    labelled: bool
    years: list[Literal["2021", "2022", "2023"]] = Field(min_length=1, max_length=3)


def messages(question: str = "Describe this chart.") -> list[dict]:
    image = {"type": "image_url", "image_url": {"url": chart_url(3)}}
    return [{"role": "user", "content": [image, {"type": "text", "text": question}]}]


def test_parse_with_a_pydantic_model_returns_a_valid_object(openai_client):
    # The random-weight model has no idea about charts: every valid answer comes from the grammar.
    completion = openai_client.chat.completions.parse(
        model=MODEL, messages=messages(), response_format=ChartFacts, max_tokens=64
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, ChartFacts)


def test_json_schema_streaming_gives_the_same_valid_answer(openai_client):
    schema = {"name": "facts", "schema": ChartFacts.model_json_schema()}
    kwargs = {"model": MODEL, "messages": messages(), "response_format": {"type": "json_schema", "json_schema": schema}}
    whole = openai_client.chat.completions.create(max_tokens=64, temperature=0, **kwargs)
    chunks = openai_client.chat.completions.create(max_tokens=64, temperature=0, stream=True, **kwargs)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    ChartFacts.model_validate(json.loads(streamed))


def test_json_object_mode_starts_an_object(openai_client):
    reply = openai_client.chat.completions.create(
        model=MODEL, messages=messages(), response_format={"type": "json_object"}, max_tokens=8, temperature=0
    )
    assert reply.choices[0].message.content.startswith("{")


def test_an_invalid_schema_is_a_400_from_the_real_server(openai_client):
    bad = {"type": "json_schema", "json_schema": {"name": "facts", "schema": {"type": "object", "minProperties": -1}}}
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=MODEL, messages=messages(), response_format=bad, max_tokens=8)
    assert caught.value.body["param"] == "response_format.json_schema.schema"
    assert "minProperties" in caught.value.body["message"]


LOOKBEHIND = {"type": "object", "properties": {"code": {"type": "string", "pattern": "(?<=a)b"}}}


def test_a_valid_schema_the_grammar_cannot_express_is_a_400_naming_why(openai_client, server):
    fmt = {"type": "json_schema", "json_schema": {"name": "codes", "schema": LOOKBEHIND}}
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=MODEL, messages=messages(), response_format=fmt, max_tokens=8)
    assert caught.value.body["param"] == "response_format.json_schema.schema"
    assert "Lookbehind is not supported" in caught.value.body["message"]
    # The same schema for a document job is refused at submission, naming that endpoint's field.
    r = httpx.post(
        f"{server.url}/v1/documents",
        files={"file": ("page.png", encode(chart(2)), "image/png")},
        data={"json_schema": json.dumps(LOOKBEHIND)},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "json_schema"
    assert "cannot be enforced while decoding" in r.json()["error"]["message"]


def test_a_schema_referring_to_a_listener_that_never_answers_cannot_freeze_the_server(server):
    with silent_listener() as listener, httpx.Client(base_url=server.url, timeout=60) as http:
        # The grammar forces a short boolean answer, so it finishes and is validated; only validation would
        # follow the reference in the allOf. The listener accepts connections and never answers.
        ref = {"$ref": f"{listener.url}/json-secret"}
        schema = {"type": "object", "properties": {"ok": {"type": "boolean", "allOf": [ref]}}, "required": ["ok"]}
        fmt = {"type": "json_schema", "json_schema": {"name": "hostile", "schema": schema}}
        with ThreadPoolExecutor(2) as pool:
            hostile = [
                pool.submit(http.post, "/v1/chat/completions",
                            json={"model": MODEL, "messages": messages(), "response_format": fmt, "max_tokens": 16}),
                pool.submit(http.post, "/v1/documents", files={"file": ("page.png", encode(chart(2)), "image/png")},
                            data={"json_schema": json.dumps(schema)}),
            ]  # fmt: skip
            live = [http.get("/health/live", timeout=10).status_code]
            for _ in range(50):  # the server keeps answering while the hostile requests are in flight
                live.append(http.get("/health/live", timeout=10).status_code)
                if all(f.done() for f in hostile):
                    break
                time.sleep(0.1)
            answers = [f.result() for f in hostile]
        assert set(live) == {200}
        for r in answers:
            assert r.status_code == 400 and r.json()["error"]["code"] == "unresolvable_ref", r.text
        assert listener.connections == 0, "the server connected to the reference"
