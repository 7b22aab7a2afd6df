"""The served OpenAPI schema says what the server takes: a body it refuses for its shape, the schema refuses too.

Each refused body below breaks one rule the server checks (a role's required field, a parameter it does not
serve, two fields that exclude each other); the request schema of /openapi.json must reject it as well, and
must accept what the server answers.
"""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from tests.support.images import data_url, solid
from vlserve.api.content_schema import IMAGE_URL_FORMAT, JSON_OBJECT_FORMAT

USER = {"role": "user", "content": "how long"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
ARRAY_CALL = {**CALL, "function": {"name": "lookup", "arguments": "[1]"}}
BROKEN_CALL = {**CALL, "function": {"name": "lookup", "arguments": "{oops}"}}
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
IMAGE = {"type": "image_url", "image_url": {"url": data_url(solid((8, 8)))}}

CHAT_REFUSED = {
    "tool message without tool_call_id": {"messages": [USER, {"role": "tool", "content": "42"}]},
    "assistant message without content or calls": {"messages": [USER, {"role": "assistant"}]},
    "tool calls in a user message": {"messages": [{**USER, "tool_calls": [CALL]}]},
    "arguments not a JSON object": {"messages": [USER, {"role": "assistant", "tool_calls": [ARRAY_CALL]}]},
    "arguments not JSON": {"messages": [USER, {"role": "assistant", "tool_calls": [BROKEN_CALL]}]},
    "image in a system message": {"messages": [{"role": "system", "content": [IMAGE]}, USER]},
    "unknown role": {"messages": [{"role": "robot", "content": "hi"}]},
    "unknown part type": {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
    "no messages": {"messages": []},
    "n above 1": {"messages": [USER], "n": 2},
    "17 stop sequences": {"messages": [USER], "stop": ["x"] * 17},
    "logit_bias key not a token id": {"messages": [USER], "logit_bias": {"the": 5}},
    "audio output": {"messages": [USER], "audio": {"voice": "alloy"}},
    "audio modality": {"messages": [USER], "modalities": ["text", "audio"]},
    "legacy guided_regex": {"messages": [USER], "guided_regex": "[0-9]+"},
    "top_logprobs without logprobs": {"messages": [USER], "top_logprobs": 2},
    "tool_choice required without tools": {"messages": [USER], "tool_choice": "required"},
    "tools with a JSON answer": {"messages": [USER], "tools": [LOOKUP], "response_format": {"type": "json_object"}},
    "guided_json with response_format": {
        "messages": [USER], "guided_json": {"type": "object"}, "response_format": {"type": "json_object"}
    },
    "unknown response_format type": {"messages": [USER], "response_format": {"type": "xml"}},
}  # fmt: skip
COMPLETION_REFUSED = {
    "empty prompt": {"prompt": ""},
    "two prompts": {"prompt": ["a", "b"]},
    "suffix": {"prompt": "x", "suffix": "and then"},
    "best_of above 1": {"prompt": "x", "best_of": 3},
    "echo with logprobs": {"prompt": "x", "echo": True, "logprobs": 1},
}
CHAT_ACCEPTED = {
    "text": {"messages": [USER]},
    "image from the user": {"messages": [{"role": "user", "content": [IMAGE, {"type": "text", "text": "what?"}]}]},
    "a tool round trip": {
        "messages": [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "42"}],
        "tools": [LOOKUP], "tool_choice": "none",
    },
    "informational fields": {"messages": [USER], "user": "u1", "metadata": {"team": "a"}, "modalities": ["text"]},
}  # fmt: skip
COMPLETION_ACCEPTED = {"a prompt": {"prompt": "x"}, "a list of one": {"prompt": ["x"], "best_of": 1, "suffix": ""}}


def _json_object(text: object) -> bool:
    try:
        return not isinstance(text, str) or isinstance(json.loads(text), dict)
    except ValueError:
        return False


# The schema's own formats, as a client that knows them checks them.
FORMATS = FormatChecker()
FORMATS.checks(JSON_OBJECT_FORMAT)(_json_object)
FORMATS.checks(IMAGE_URL_FORMAT)(lambda url: not isinstance(url, str) or url.startswith(("data:image/", "http")))


def body_validator(client, path: str) -> Draft202012Validator:
    """The served schema of ``path``'s JSON body, checking formats too."""
    schema = client.get("/openapi.json").json()
    ref = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return Draft202012Validator({"$ref": ref, "components": schema["components"]}, format_checker=FORMATS)


@pytest.mark.parametrize(
    ("path", "name", "body"),
    [("/v1/chat/completions", name, body) for name, body in CHAT_REFUSED.items()]
    + [("/v1/completions", name, body) for name, body in COMPLETION_REFUSED.items()],
)
def test_what_the_server_refuses_the_schema_refuses(client, path, name, body):
    assert client.post(path, json=body).status_code == 400, name
    assert not body_validator(client, path).is_valid(body), f"the schema allows: {name}"


@pytest.mark.parametrize(
    ("path", "name", "body"),
    [("/v1/chat/completions", name, body) for name, body in CHAT_ACCEPTED.items()]
    + [("/v1/completions", name, body) for name, body in COMPLETION_ACCEPTED.items()],
)
def test_what_the_server_answers_the_schema_allows(client, path, name, body):
    errors = [error.message for error in body_validator(client, path).iter_errors(body)]
    assert not errors, f"{name}: {errors}"
    assert client.post(path, json=body).status_code == 200, name


def test_limits_from_the_settings_and_forms_without_null(make_client):
    schema = make_client(max_messages=12, max_images_per_request=3, max_model_len=64).get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert components["ChatCompletionRequest"]["properties"]["messages"]["maxItems"] == 12
    assert components["ChatCompletionRequest"]["properties"]["max_tokens"]["anyOf"][0]["maximum"] == 63
    vision = components["Body_chat_vision_v1_chat_vision_post"]["properties"]
    assert vision["image_file"]["maxItems"] == 3
    assert vision["max_tokens"]["type"] == "integer" and "anyOf" not in vision["max_tokens"]  # a form has no null
