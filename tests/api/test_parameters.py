"""Every parameter is honoured or refused: what an engine does not implement is a 400 that names it.

The fake engine implements none of the optional features, so each is refused by name.
"""

from __future__ import annotations

import pytest

from tests.api.fakes import FakeEngine
from tests.api.test_bad_input import assert_error

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def ask(client, **extra):
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "how long"}], **extra})


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"presence_penalty": 1.5}, "presence_penalty"),
        ({"frequency_penalty": -0.5}, "frequency_penalty"),
        ({"repetition_penalty": 1.1}, "repetition_penalty"),
        ({"logit_bias": {"42": -100}}, "logit_bias"),
        ({"logprobs": True}, "logprobs"),
        ({"ignore_eos": True}, "ignore_eos"),
        ({"min_tokens": 4}, "min_tokens"),
        ({"tools": TOOLS}, "tools"),
        ({"tools": TOOLS, "tool_choice": "required"}, "tools"),
    ],
)
def test_a_feature_the_engine_lacks_is_refused_by_name(client, extra, param):
    assert_error(ask(client, **extra), 400, code="unsupported_parameter", param=param, says="not supported")


def test_default_values_are_not_a_use(client):
    neutral = {"presence_penalty": 0, "frequency_penalty": 0, "repetition_penalty": 1, "logprobs": False,
               "top_logprobs": 0, "ignore_eos": False, "min_tokens": 0, "tool_choice": "none", "tools": []}  # fmt: skip
    assert ask(client, **neutral).status_code == 200


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true, as OpenAI refuses it
        ({"logit_bias": {"token": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
    ],
)
def test_values_out_of_range_are_refused(client, extra, param):
    assert_error(ask(client, **extra), 400, param=param)


def test_legacy_guided_json_is_translated_and_the_other_guided_fields_refused(make_client):
    engine = FakeEngine()
    client = make_client(engine)
    schema = {"type": "object", "properties": {"how": {"type": "integer"}}}
    assert ask(client, guided_json=schema).status_code == 200
    assert engine.outputs[-1].schema == schema
    assert ask(client, guided_json='{"type": "object"}').status_code == 200  # as a JSON string, too
    for name, value in [("guided_regex", "[0-9]+"), ("guided_choice", ["a", "b"]), ("guided_grammar", "root ::= x")]:
        assert_error(
            ask(client, **{name: value}), 400, code="unsupported_parameter", param=name, says="structured_outputs"
        )
    both = ask(client, guided_json=schema, response_format={"type": "json_object"})
    assert_error(both, 400, param="guided_json", says="not both")
    assert_error(ask(client, guided_json={"type": "nonsense"}), 400, param="guided_json")
