"""Request schemas as the server takes them: form fields without null, and the bounds the settings set.

FastAPI writes an optional form field as ``anyOf: [T, null]``, but a form has no null: a field is sent
or left out ("null" would be the text ``null``). Some bounds are settings (messages, images and files
per request, characters of text, the context a completion shares with its prompt): they are written into
the schema the server serves, so that a client reads the limits in force rather than a 400 after sending.
"""

from __future__ import annotations

from typing import Any

from vlserve.api.request_fields import declare_refused
from vlserve.settings import Settings

FORM = "multipart/form-data"


def _body_schema(schema: dict[str, Any], path: str, method: str, media_type: str) -> dict[str, Any] | None:
    """The component a route's request body of ``media_type`` refers to (None when it has none)."""
    body = schema.get("paths", {}).get(path, {}).get(method, {}).get("requestBody", {})
    ref = body.get("content", {}).get(media_type, {}).get("schema", {}).get("$ref", "")
    return schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1]) if ref else None


def _without_null(field: dict[str, Any]) -> None:
    branches = [branch for branch in field.get("anyOf", ()) if branch != {"type": "null"}]
    if "anyOf" in field and len(branches) == 1:
        del field["anyOf"]
        field.update(branches[0])
    elif "anyOf" in field:
        field["anyOf"] = branches


def _forms_without_null(schema: dict[str, Any]) -> None:
    for path, operations in schema.get("paths", {}).items():
        for method in operations:
            body = _body_schema(schema, path, method, FORM)
            for field in (body or {}).get("properties", {}).values():
                _without_null(field)


def _bound(schema: dict[str, Any], route: tuple[str, str, str], field: str, **keywords: int) -> None:
    """Add ``keywords`` to ``field`` of a route's body, to each string or array it may be."""
    body = _body_schema(schema, *route)
    if body is None or field not in body.get("properties", {}):
        return
    prop = body["properties"][field]
    for branch in prop.get("anyOf", [prop]):
        kind = branch.get("type")
        for keyword, value in keywords.items():
            applies = {"maxItems": "array", "maxLength": "string", "maximum": "integer"}[keyword] == kind
            if applies:
                branch[keyword] = min(value, branch.get(keyword, value))
            elif keyword == "maxLength" and kind == "array" and branch.get("items", {}).get("type") == "string":
                branch["items"][keyword] = min(value, branch["items"].get(keyword, value))


def declare_requests(schema: dict[str, Any], settings: Settings) -> None:
    """``schema`` (FastAPI's, resolved to components) with form fields and settings-bound limits; in place."""
    _forms_without_null(schema)
    chat = ("/v1/chat/completions", "post", "application/json")
    completions = ("/v1/completions", "post", "application/json")
    vision = ("/v1/chat/vision", "post", FORM)
    documents = ("/v1/documents", "post", FORM)
    for route, endpoint in ((chat, "chat"), (completions, "completions")):
        body = _body_schema(schema, *route)
        if body is not None:
            declare_refused(body, endpoint)
    _bound(schema, chat, "messages", maxItems=settings.max_messages)
    _bound(schema, completions, "prompt", maxLength=settings.max_prompt_chars)
    _bound(schema, vision, "prompt", maxLength=settings.max_prompt_chars)
    _bound(schema, vision, "image_file", maxItems=settings.max_images_per_request)
    _bound(schema, documents, "file", maxItems=settings.document_max_files)
    if settings.max_model_len:  # the prompt takes at least one token of the context
        for route, field in ((chat, "max_tokens"), (chat, "max_completion_tokens"), (completions, "max_tokens"),
                             (vision, "max_tokens")):  # fmt: skip
            _bound(schema, route, field, maximum=settings.max_model_len - 1)
