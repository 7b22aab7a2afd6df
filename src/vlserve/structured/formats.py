"""The ``response_format`` of a chat request, checked up front, and the check of an answer against it.

``{"type": "json_object"}`` asks for any JSON object; ``{"type": "json_schema", "json_schema": {"name",
"schema"}}`` for an object valid under a JSON Schema. Decoding is constrained by a grammar compiled from
the schema (``vlserve.engine.grammar``); :func:`validate_output` then checks the finished answer with
``jsonschema``, which also covers the keywords a grammar cannot express.

A schema, and an answer, nest at most ``max_json_depth`` levels (:mod:`vlserve.jsonlimits`), and a
schema's references resolve only inside it (:mod:`vlserve.structured.refs`): nothing is ever fetched.
Both checks are CPU work proportional to the schema (about 7 s per MB of JSON Schema), so a request's
schemas have at most :data:`MAX_SCHEMA_CHARS` characters of JSON in all, and callers on the event loop
run the checks in a thread.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import SchemaError, best_match
from referencing.exceptions import Unresolvable

from vlserve.errors import ClientError
from vlserve.jsonlimits import DEFAULT_MAX_DEPTH, JSONTooDeepError, deeper_than, loads, too_deep
from vlserve.structured.refs import NO_RETRIEVAL, check_references

__all__ = ["ANY_OBJECT", "OutputFormat", "parse_response_format", "validate_output"]

ANY_OBJECT = {"type": "object"}
# The JSON text of a request's schemas, in all: more than OpenAI's structured outputs take, and about a second of
# checking and compiling. Without it one request could hold a worker thread for minutes (a 30 MB schema).
MAX_SCHEMA_CHARS = 128 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PARAM = "response_format"
STRUCTURED_OUTPUTS = "structured_outputs"  # the name of a format asked for there
Kind = Literal["json", "regex", "choice", "grammar", "structural_tag"]


@dataclass(frozen=True)
class OutputFormat:
    """The answer's format. Kind ``json`` (the default): a JSON answer under the schema ``schema_json``, canonical
    so equal schemas compare equal, nesting at most ``max_depth`` levels (the server's ``max_json_depth``).
    The other kinds (vLLM's ``structured_outputs``, :mod:`vlserve.structured.outputs`) hold their ``source``:
    ``regex`` a regular expression, ``choice`` a JSON list of the allowed answers, ``grammar`` an EBNF grammar
    (xgrammar's GBNF dialect), ``structural_tag`` an xgrammar structural tag as canonical JSON."""

    name: str
    schema_json: str
    max_depth: int = DEFAULT_MAX_DEPTH
    kind: Kind = "json"
    source: str = ""

    @classmethod
    def of(cls, name: str, schema: dict[str, Any], max_depth: int = DEFAULT_MAX_DEPTH) -> OutputFormat:
        return cls(name, json.dumps(schema, sort_keys=True, ensure_ascii=False), max_depth)

    @classmethod
    def constraint(cls, kind: Kind, source: str, max_depth: int = DEFAULT_MAX_DEPTH) -> OutputFormat:
        """A format of ``structured_outputs`` other than a JSON Schema."""
        return cls(STRUCTURED_OUTPUTS, "", max_depth, kind, source)

    @cached_property
    def schema(self) -> dict[str, Any]:
        return json.loads(self.schema_json)

    @cached_property
    def choices(self) -> tuple[str, ...]:
        return tuple(json.loads(self.source)) if self.kind == "choice" else ()

    @property
    def param(self) -> str:
        """The request field that asked for this format, for an error about it."""
        if self.name == STRUCTURED_OUTPUTS:
            return f"{STRUCTURED_OUTPUTS}.{self.kind}"
        return "guided_json" if self.name == "guided_json" else "response_format.json_schema.schema"


def _where(path: Any) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return parts.lstrip(".") or "the top level"


def _validator_class(schema: dict[str, Any]) -> type:
    """The validator of the draft ``schema`` declares (``$schema``), else 2020-12."""
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


def json_chars(value: Any, limit: int) -> int:
    """The characters of ``value``'s JSON text, near enough (strings, keys and a few per item), counted only
    until they pass ``limit``: a huge value costs no more to measure than ``limit`` does."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, dict):
            total += 2 + sum(len(str(key)) + 4 for key in item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += len(item) + 2 if isinstance(item, str) else 8
    return total


def schema_too_large(param: str) -> ClientError:
    return ClientError(
        f"{param} brings the request's JSON Schemas past {MAX_SCHEMA_CHARS} characters of JSON in all; send "
        "smaller schemas (checking and compiling them takes about a second per 100,000 characters)",
        param=param,
        code="schema_too_large",
    )


def check_schema(schema: Any, param: str, *, max_depth: int = DEFAULT_MAX_DEPTH, room: int = MAX_SCHEMA_CHARS) -> int:
    """ClientError naming the problem unless ``schema`` is a JSON Schema object (any draft it declares),
    at most ``max_depth`` levels deep and ``room`` characters of JSON, whose references all point inside it.
    Returns its characters, for a request with several schemas to count against :data:`MAX_SCHEMA_CHARS`."""
    if not isinstance(schema, dict):
        raise ClientError(f"{param} must be a JSON Schema object, got {type(schema).__name__}", param=param)
    if deeper_than(schema, max_depth):  # first: jsonschema recurses once per level
        raise too_deep(param, max_depth)
    chars = json_chars(schema, room)
    if chars > room:
        raise schema_too_large(param)
    validator = _validator_class(schema)
    try:
        validator.check_schema(schema)
    except SchemaError as exc:
        raise ClientError(
            f"{param} is not a valid JSON Schema: {exc.message} (at {_where(exc.path)})", param=param
        ) from None
    check_references(schema, validator, param)
    return chars


def parse_response_format(value: dict[str, Any] | None, *, max_depth: int = DEFAULT_MAX_DEPTH) -> OutputFormat | None:
    """The requested format (None for plain text); ClientError naming what is wrong with it."""
    if value is None:
        return None
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat.of("json_object", ANY_OBJECT, max_depth)
    if kind != "json_schema":
        raise ClientError(
            f"{_PARAM}.type must be 'text', 'json_object' or 'json_schema', got {kind!r}", param=f"{_PARAM}.type"
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise ClientError(
            f"{_PARAM}.json_schema is required with type 'json_schema': an object with 'name' and 'schema'",
            param=f"{_PARAM}.json_schema",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ClientError(
            f"{_PARAM}.json_schema.name must be 1-64 letters, digits, '_' or '-', got {name!r}",
            param=f"{_PARAM}.json_schema.name",
        )
    schema = spec.get("schema", ANY_OBJECT)
    check_schema(schema, f"{_PARAM}.json_schema.schema", max_depth=max_depth)
    return OutputFormat.of(name, schema, max_depth)


def validate_output(text: str, output: OutputFormat) -> str | None:
    """None when ``text`` is one JSON value valid under ``output``; else what is wrong, in a sentence.
    CPU work for as long as the answer and the schema make it: call it in a thread from async code. An answer
    in any other kind is not checked again: the grammar it was decoded under admits nothing else."""
    if output.kind != "json":
        return None
    try:
        value = loads(text, output.max_depth)
    except JSONTooDeepError:
        return f"the answer nests more than {output.max_depth} levels deep (VLSERVE_MAX_JSON_DEPTH)"
    except json.JSONDecodeError as exc:
        return f"the answer is not valid JSON: {exc.msg} at character {exc.pos}"
    validator = _validator_class(output.schema)(output.schema, registry=NO_RETRIEVAL)  # references never fetched
    try:
        error = best_match(validator.iter_errors(value))
    except Unresolvable as exc:  # a schema stored before its references were checked (a queued document job)
        return f"the schema's reference {exc.ref!r} does not resolve inside it (references are never fetched)"
    if error is None:
        return None
    return f"the answer does not match the schema: {error.message} (at {_where(error.absolute_path)})"
