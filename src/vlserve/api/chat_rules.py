"""What the fields of a chat request require of one another, as JSON Schema for the OpenAPI schema.

The checks themselves, with their messages, are in api/sampling.py and api/tools.py. Two of them no JSON
Schema can express, so they are only described: that a named tool_choice names one of the tools, and that
the tools are named differently.
"""

from __future__ import annotations

from typing import Any

NAMED_TOOL_CHOICE: dict[str, Any] = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    },
}
_SOME = {"type": "array", "minItems": 1}
_SET = {"not": {"type": "null"}}
_JSON_FORMAT = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["json_object", "json_schema"]}},
}
_ANSWER_FORMAT = {  # a JSON answer, asked for by response_format or by vLLM's guided_json
    "anyOf": [
        {"required": ["response_format"], "properties": {"response_format": _JSON_FORMAT}},
        {"required": ["guided_json"], "properties": {"guided_json": _SET}},
        {"required": ["structured_outputs"], "properties": {"structured_outputs": _SET}},
    ]
}
# A text completion's answer format: response_format or vLLM's structured_outputs, not both.
FORMAT_OR_STRUCTURED_OUTPUTS: dict[str, Any] = {
    "not": {
        "required": ["response_format", "structured_outputs"],
        "properties": {"response_format": _JSON_FORMAT, "structured_outputs": _SET},
    }
}

CHAT_RULES: list[dict[str, Any]] = [
    {  # top_logprobs needs logprobs: true
        "if": {"required": ["top_logprobs"], "properties": {"top_logprobs": {"type": "integer", "minimum": 1}}},
        "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
    },
    {  # a tool choice other than "none" or "auto" needs tools
        "if": {"required": ["tool_choice"], "properties": {"tool_choice": {"not": {"enum": ["none", "auto", None]}}}},
        "then": {"required": ["tools"], "properties": {"tools": _SOME}},
    },
    {  # tools the model may call, or a JSON answer: not both
        "not": {
            "required": ["tools"],
            "properties": {"tools": _SOME, "tool_choice": {"not": {"const": "none"}}},
            **_ANSWER_FORMAT,
        }
    },
    {  # response_format or guided_json: not both
        "not": {
            "required": ["response_format", "guided_json"],
            "properties": {"response_format": _JSON_FORMAT, "guided_json": _SET},
        }
    },
    FORMAT_OR_STRUCTURED_OUTPUTS,
    {  # guided_json or structured_outputs: not both
        "not": {
            "required": ["guided_json", "structured_outputs"],
            "properties": {"guided_json": _SET, "structured_outputs": _SET},
        }
    },
]
