"""The declared shape of vLLM's ``structured_outputs`` (checked in :mod:`vlserve.structured.outputs`).

Exactly one constraint, each of the type vLLM takes; whether a regex, a grammar or a structural tag parses is
beyond a JSON Schema: such a refusal is a 400 with code ``invalid_grammar`` (or ``too_complex``), declared as
data-dependent in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from vlserve.api.content_schema import JSON_OBJECT_TEXT
from vlserve.structured.outputs import MAX_CHOICE_CHARS, MAX_CHOICES, MAX_GRAMMAR_CHARS, MAX_REGEX_CHARS

_CONSTRAINTS: dict[str, Any] = {
    "json": {"anyOf": [{"type": "object", "description": "A JSON Schema."}, JSON_OBJECT_TEXT]},
    "regex": {"type": "string", "minLength": 1, "maxLength": MAX_REGEX_CHARS},
    "choice": {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_CHOICE_CHARS},
        "minItems": 1,
        "maxItems": MAX_CHOICES,
    },
    "grammar": {"type": "string", "minLength": 1, "maxLength": MAX_GRAMMAR_CHARS, "description": "EBNF (GBNF)."},
    "json_object": {"const": True},
    "structural_tag": {"anyOf": [{"type": "object"}, JSON_OBJECT_TEXT], "description": "An xgrammar structural tag."},
}

STRUCTURED_OUTPUTS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "properties": {
                **_CONSTRAINTS,
                "disable_any_whitespace": {"type": "boolean"},
                "disable_additional_properties": {"type": "boolean"},
                "whitespace_pattern": {"type": "null", "description": "Not supported."},
            },
            "additionalProperties": False,
            "oneOf": [{"required": [name]} for name in _CONSTRAINTS],
        },
        {"type": "null"},
    ],
    "description": "vLLM's structured outputs: exactly one constraint; not with a response_format.",
}
