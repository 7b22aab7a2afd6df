"""/v1/completions over a fake engine: the legacy text-completion shapes, streaming, echo, refusals.

The fake engine answers "images: said: <the prompt's words>", one token per word.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import pytest

from tests.api.fakes import FakeEngine
from tests.api.test_bad_input import assert_error
from vlserve.engine.base import Delta, Prepared, SamplingParams, TokenLogprob
from vlserve.errors import ServerError


class LogprobEngine(FakeEngine):
    """Also gives each token the logprob -n/10 (the n-th token) and the alternative "?" one less."""

    async def check(self, prepared: Prepared, params: SamplingParams) -> None:
        await super().check(prepared, dataclasses.replace(params, logprobs=False, top_logprobs=0))

    async def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        async for delta in super().generate(prepared, params):
            if delta.text and params.logprobs:
                value = -delta.token_ids[0] / 10
                top = (TokenLogprob(delta.text, value), TokenLogprob("?", value - 1))[: params.top_logprobs]
                delta = dataclasses.replace(delta, logprobs=(TokenLogprob(delta.text, value, top=top),))
            yield delta


class FailingEngine(FakeEngine):
    """Fails after the first token, once the answer has started."""

    async def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        async for delta in super().generate(prepared, params):
            yield delta
            raise ServerError("the model fell over")


def complete(client, **body):
    return client.post("/v1/completions", json={"prompt": "the sky is", **body})


def events(client, **body) -> list:
    with client.stream("POST", "/v1/completions", json={"prompt": "the sky is", "stream": True, **body}) as r:
        assert r.status_code == 200, r.read()
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_a_completion_continues_the_prompt_in_the_text_completion_shape(client):
    r = complete(client, model="fake-vl")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["id"] == f"cmpl-{r.headers['x-request-id']}"
    assert body["model"] == "fake-vl"
    assert body["choices"] == [
        {"index": 0, "text": "images: said: the sky is", "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def test_max_tokens_defaults_to_16_as_with_openai(client):
    r = client.post("/v1/completions", json={"prompt": " ".join(f"w{i}" for i in range(40))})
    choice, usage = r.json()["choices"][0], r.json()["usage"]
    assert usage["completion_tokens"] == 16 and choice["finish_reason"] == "length"
    assert complete(client, max_tokens=2).json()["choices"][0]["text"] == "images: said:"


def test_echo_stop_and_a_prompt_given_as_a_list_of_one_string(client):
    assert complete(client, echo=True).json()["choices"][0]["text"] == "the sky isimages: said: the sky is"
    stopped = complete(client, stop=["sky"]).json()["choices"][0]
    assert (stopped["text"], stopped["finish_reason"]) == ("images: said: the", "stop")
    assert client.post("/v1/completions", json={"prompt": ["hello"]}).json()["choices"][0]["text"].endswith("hello")


def test_a_stream_has_text_chunks_then_usage_only_when_asked_then_done(client):
    chunks = events(client, echo=True, stream_options={"include_usage": True})
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "the sky isimages: said: the sky is"
    assert chunks[0]["choices"][0]["text"] == "the sky is"  # the echo comes first
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 5 + ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert all("usage" not in c for c in events(client))


def test_token_ids_when_asked(client):
    assert complete(client, max_tokens=3, return_token_ids=True).json()["choices"][0]["token_ids"] == [1, 2, 3]
    assert "token_ids" not in complete(client).json()["choices"][0]


def test_logprobs_come_in_the_legacy_shape_whole_and_streamed(make_client):
    client = make_client(LogprobEngine())
    legacy = complete(client, max_tokens=3, logprobs=1).json()["choices"][0]["logprobs"]
    assert legacy == {
        "tokens": ["images:", " said:", " the"],
        "token_logprobs": [-0.1, -0.2, -0.3],
        "top_logprobs": [{"images:": -0.1}, {" said:": -0.2}, {" the": -0.3}],
        "text_offset": [0, 7, 13],
    }
    two = complete(client, max_tokens=1, logprobs=2).json()["choices"][0]["logprobs"]["top_logprobs"]
    assert two == [{"images:": -0.1, "?": -1.1}]
    none = complete(client, max_tokens=1, logprobs=0).json()["choices"][0]["logprobs"]
    assert none["top_logprobs"] == [{"images:": -0.1}]  # the sampled token is always there, as vLLM sends it
    streamed = [c["choices"][0]["logprobs"] for c in events(client, max_tokens=3, logprobs=1)]
    assert [lp["text_offset"] for lp in streamed] == [[0], [7], [13]]  # offsets run on across chunks
    assert [lp["tokens"] for lp in streamed] == [["images:"], [" said:"], [" the"]]


def test_a_failure_after_the_first_token_ends_the_stream_with_an_error_event(make_client):
    chunks = events(make_client(FailingEngine()))
    assert chunks[0]["choices"][0]["text"] == "images:"
    assert chunks[-1]["error"]["message"] == "the model fell over"


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"prompt": ["one", "two"]}, "prompt", "one prompt per request"),
        ({"prompt": [1, 2, 3]}, "prompt", "token-id prompts are not supported"),
        ({"prompt": [[1, 2]]}, "prompt", "one prompt per request"),
        ({"prompt": 7}, "prompt", "string"),
        ({"prompt": ""}, "prompt", "must not be empty"),
        ({}, "prompt", "required"),
        ({"prompt": "x", "logprobs": 6}, "logprobs", ""),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens", ""),
        ({"prompt": "x", "temperature": 3}, "temperature", ""),
        ({"prompt": "x", "n": 2}, "n", "separate requests"),
    ],
)
def test_bad_requests_are_400s_naming_the_parameter(client, body, param, says):
    assert_error(client.post("/v1/completions", json=body), 400, param=param, says=says)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"suffix": "and then"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"echo": True, "logprobs": 1}, "echo"),
        ({"logprobs": 1}, "logprobs"),  # the fake engine has no logprobs
        ({"presence_penalty": 0.5}, "presence_penalty"),
    ],
)
def test_what_is_not_implemented_is_refused_by_name(client, extra, param):
    assert_error(complete(client, **extra), 400, code="unsupported_parameter", param=param)


def test_neutral_values_of_refused_options_are_accepted(client):
    assert complete(client, suffix="", best_of=1, echo=False, n=1, user="u-1").status_code == 200


def test_the_context_limits_and_the_model_name_are_checked_as_in_chat(make_client):
    client = make_client(FakeEngine(max_model_len=20))
    too_long = client.post("/v1/completions", json={"prompt": "word " * 30})
    assert_error(too_long, 400, code="context_length_exceeded", param="prompt")
    assert_error(complete(client, max_tokens=19), 400, code="context_length_exceeded", param="max_tokens")
    assert_error(complete(client, stream=True, max_tokens=19), 400, code="context_length_exceeded")
    assert_error(complete(client, model="gpt-4"), 404, code="model_not_found", param="model")
