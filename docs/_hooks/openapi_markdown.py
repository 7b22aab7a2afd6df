"""The API reference page in Markdown, from the server's own OpenAPI schema: every route with its parameters,
body and answers, then every schema with its fields. Pure: takes the schema dict, returns text."""

from __future__ import annotations

import json
import re
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")


def render(schema: dict[str, Any]) -> str:
    info = schema.get("info", {})
    lines = [
        "# API reference",
        "",
        f"Generated from the OpenAPI schema of vlserve {info.get('version', '')} (`GET /openapi.json` on a running "
        "server; Swagger UI at `/docs`). Errors always come in the OpenAI error envelope "
        '(`{"error": {"message", "type", "param", "code"}}`).',
        "",
    ]
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                lines += _operation(method, path, item[method])
    schemas = schema.get("components", {}).get("schemas", {})
    if schemas:
        lines += ["## Schemas", ""]
        for name, body in schemas.items():
            lines += _schema(name, body)
    return "\n".join(lines).rstrip() + "\n"


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"## `{method.upper()} {path}`", ""]
    if op.get("summary"):
        lines += [f"**{op['summary']}.** {op.get('description', '')}".rstrip(), ""]
    elif op.get("description"):
        lines += [op["description"], ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in params:
            lines.append(
                f"| `{p['name']}` | {p.get('in', '')} | {_cell(_type(p.get('schema', {})))} | "
                f"{'yes' if p.get('required') else 'no'} | {_cell(p.get('description', ''))} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            lines += [f"**Body** ({media}): {_type(content.get('schema', {}))}", ""]
    responses = op.get("responses", {})
    if responses:
        lines += ["| status | meaning | content |", "|---|---|---|"]
        for status, response in responses.items():
            kinds = ", ".join(
                f"`{media}` {_type(c.get('schema', {}))}".rstrip() for media, c in response.get("content", {}).items()
            )
            lines.append(f"| {status} | {_cell(response.get('description', ''))} | {_cell(kinds)} |")
        lines.append("")
    return lines


def _schema(name: str, body: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if body.get("description"):
        lines += [body["description"], ""]
    properties = body.get("properties", {})
    if not properties:
        lines += [f"Type: {_type(body)}", ""]
        return lines
    required = set(body.get("required", []))
    lines += ["| field | type | required | default | description |", "|---|---|---|---|---|"]
    for field, spec in properties.items():
        default = f"`{json.dumps(spec['default'])}`" if "default" in spec else ""
        lines.append(
            f"| `{field}` | {_cell(_type(spec))} | {'yes' if field in required else 'no'} | {_cell(default)} | "
            f"{_cell(spec.get('description', ''))} |"
        )
    lines.append("")
    return lines


def _type(spec: dict[str, Any]) -> str:
    """A schema as a reader names it: `string`, `array of integer`, a link to a named schema, `a | b`."""
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    for key in ("anyOf", "oneOf"):
        if key in spec:
            return " or ".join(dict.fromkeys(_type(s) for s in spec[key]))
    if "allOf" in spec and len(spec["allOf"]) == 1:
        return _type(spec["allOf"][0])
    if "const" in spec:
        return f"`{json.dumps(spec['const'])}`"
    if "enum" in spec:
        return " or ".join(f"`{json.dumps(v)}`" for v in spec["enum"])
    kind = spec.get("type")
    if kind == "array":
        return f"array of {_type(spec.get('items', {}))}"
    if kind == "object" and "additionalProperties" in spec and isinstance(spec["additionalProperties"], dict):
        return f"object of {_type(spec['additionalProperties'])}"
    if kind == "string" and spec.get("format") == "binary":
        return "file"
    if isinstance(kind, list):
        return " or ".join(kind)
    return kind or "any"


def _anchor(name: str) -> str:
    """The id Python-Markdown's toc gives the heading ``### name``."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", name).strip().lower())


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
