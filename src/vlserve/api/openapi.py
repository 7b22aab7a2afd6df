"""The OpenAPI schema as the server really answers: each operation's error statuses, with the envelope.

FastAPI declares 200 and 422 for every route, but vlserve never sends 422 (a bad request is a 400 in the
OpenAI error envelope) and does send 400/401/403/404/408/409/413/415/429/503 … . The generated schema is
kept (routes, parameters and bodies stay FastAPI's, with the settings' bounds: api/openapi_requests.py) and
its responses are rewritten from rules about each operation: its parameters and body, the routes that
generate text, and the settings (auth, engine).
A method a path does not answer is a 405 with ``Allow`` on any path; it is no operation's response.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI

from vlserve.api.openapi_requests import declare_requests
from vlserve.settings import Settings

ENVELOPE = "ErrorResponse"
_REF = {"$ref": f"#/components/schemas/{ENVELOPE}"}
_ENVELOPE_SCHEMA: dict[str, Any] = {
    "title": ENVELOPE,
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string", "description": "What is wrong, in one sentence."},
                "type": {"type": "string", "description": "invalid_request_error, rate_limit_error, server_error …"},
                "param": {"type": ["string", "null"], "description": "The offending input, if one is to blame."},
                "code": {"type": ["string", "null"], "description": "Machine-readable reason, e.g. queue_full."},
            },
        }
    },
}
_HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "ready", "loading", "failed"]},
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "model": {"type": "string"},
    },
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    502: _RETRY_AFTER,
    503: _RETRY_AFTER,
    504: _RETRY_AFTER,
}

# Upload fields: at least one file, of these types (a request without one, or with another type, is refused).
AT_LEAST_ONE = {"minItems": 1}
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff")


# Document form fields, as documents/intake.py checks them (pages also within the document, which no schema knows).
_PAGE = r"\s*([1-9][0-9]*\s*(-\s*([1-9][0-9]*)?)?|-\s*[1-9][0-9]*)\s*"
PAGE_RANGE = {"pattern": rf"^(\s*|{_PAGE}(,{_PAGE})*)$"}
WEBHOOK_URL = {"format": "uri", "pattern": r"^https?://[^/?#@\s]+([/?#]|$)"}


def multipart_files(field: str, types: Sequence[str]) -> dict[str, Any]:
    """A route's ``openapi_extra`` declaring the media types each file of the multipart ``field`` may have."""
    encoding = {field: {"contentType": ", ".join(types)}}
    return {"requestBody": {"content": {"multipart/form-data": {"encoding": encoding}}}}


# Routes that run the model: the engine's queue (429), readiness (503), the model name (404).
GENERATION = {"/v1/chat/completions", "/v1/completions", "/v1/chat/vision"}
# Routes that fetch image URLs a client names (403 for a refused address).
IMAGE_URLS = {"/v1/chat/completions"}
# Routes with response_format: a finished answer the grammar could not hold to the schema (500).
RESPONSE_FORMAT = {"/v1/chat/completions"}
# Routes that stream with "stream": true: the 200 is then server-sent events.
STREAMING = {"/v1/chat/completions", "/v1/completions"}
_EVENT_STREAM = {  # OpenAPI 3.1: the schema of each server-sent event
    "schema": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "description": "A JSON chunk; an error after the first byte as a JSON error envelope; finally [DONE].",
            },
            "event": {"type": "string"},
            "id": {"type": "string"},
        },
    }
}


# What a request body's schema cannot say (it depends on the text's tokens, on sums over the request, on the
# model or on the file sent), and the server still refuses with a 400 naming it: said in words in the 400's
# description, and as the list of error codes such a refusal has in the 400's ``x-data-dependent-codes``.
DATA_DEPENDENT = "x-data-dependent-codes"
_CONTEXT = (
    "the prompt does not fit the model's context or leaves less room than max_tokens (code context_length_exceeded)"
)
_VOCABULARY = "a logit_bias token id is outside the model's vocabulary (token_out_of_vocabulary)"
_GRAMMAR = "a JSON Schema uses what cannot be enforced while decoding (unenforceable_schema)"
_SIZE = "its JSON Schemas have more than 131072 characters in all (schema_too_large)"
_STRUCTURED = (
    "structured_outputs holds a regex, grammar or structural tag that does not parse (invalid_grammar) or whose "
    "counted repetitions add up to more than 256 (too_complex)"
)
_BEYOND_THE_SCHEMA: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("post", "/v1/chat/completions"): (
        f"A request the schema allows is still refused when {_CONTEXT}, when its text in all is over "
        "VLSERVE_MAX_PROMPT_CHARS (context_length_exceeded), its images in all over "
        "VLSERVE_MAX_IMAGES_PER_REQUEST (too_many_images) or its videos over VLSERVE_MAX_VIDEOS_PER_REQUEST "
        "(too_many_videos), when two tools share a name (duplicate_tool_name) or "
        f"tool_choice names none of them (unknown_tool), when {_VOCABULARY}, when {_GRAMMAR}, when {_SIZE}, when "
        f"{_STRUCTURED}, or when JSON nests deeper than VLSERVE_MAX_JSON_DEPTH (json_too_deep).",
        (
            "context_length_exceeded",
            "too_many_images",
            "too_many_videos",
            "duplicate_tool_name",
            "unknown_tool",
            "token_out_of_vocabulary",
            "unenforceable_schema",
            "schema_too_large",
            "invalid_grammar",
            "too_complex",
            "json_too_deep",
        ),
    ),
    ("post", "/v1/completions"): (
        f"A request the schema allows is still refused when {_CONTEXT}, when {_VOCABULARY}, when {_GRAMMAR}, when "
        f"{_SIZE}, when {_STRUCTURED}, or when JSON nests deeper than VLSERVE_MAX_JSON_DEPTH (json_too_deep).",
        (
            "context_length_exceeded",
            "token_out_of_vocabulary",
            "unenforceable_schema",
            "schema_too_large",
            "invalid_grammar",
            "too_complex",
            "json_too_deep",
        ),
    ),
    ("post", "/v1/chat/vision"): (
        f"A request the schema allows is still refused when {_CONTEXT.replace('prompt', 'prompt and images')}.",
        ("context_length_exceeded",),
    ),
    ("post", "/v1/documents"): (
        "A request the schema allows is still refused when 'pages' names pages the document does not have "
        f"(page_out_of_range), when a PDF comes with other files (mixed_upload), when {_GRAMMAR}, when "
        f"{_SIZE.replace('its JSON Schemas have', 'the json_schema has').replace(' in all', '')}, or when it "
        "nests deeper than VLSERVE_MAX_JSON_DEPTH (json_too_deep).",
        ("page_out_of_range", "mixed_upload", "unenforceable_schema", "schema_too_large", "json_too_deep"),
    ),
}


def _statuses(method: str, path: str, operation: dict[str, Any], settings: Settings) -> dict[int, list[str]]:
    """Each error status the operation can answer, with the reasons (joined into its description)."""
    out: dict[int, list[str]] = {}

    def add(status: int, reason: str) -> None:
        out.setdefault(status, []).append(reason)

    params = {p.get("in") for p in operation.get("parameters", [])}
    body = "requestBody" in operation
    if params or body:
        add(400, "The request is invalid; the message says what, and `param` names the input.")
        if (method, path) in _BEYOND_THE_SCHEMA:
            add(400, _BEYOND_THE_SCHEMA[method, path][0])
    if "path" in params:
        add(404, "No such resource.")
    if body:
        add(408, "The request body stalled past VLSERVE_READ_TIMEOUT_S or came slower than VLSERVE_BODY_TIMEOUT_S.")
        add(413, "The request body (or an upload in it) is over its size limit; the message names the setting.")
    if settings.auth_required():
        add(401, "No API key, or an unknown, revoked or expired one.")
        add(403, "The API key lacks the scope this route needs.")
        add(429, "The API key is over one of its limits (code rate_limit_exceeded).")
    add(503, "The server is shutting down (code shutting_down), or not ready yet.")
    if path in GENERATION:
        add(404, "The model named in the request is not the one served (code model_not_found).")
        add(429, "The engine's queue is full (code queue_full).")
        add(503, "The model is not loaded yet.")
        if settings.engine != "transformers":
            add(502, "The upstream engine failed.")
            add(503, "No upstream engine can be reached.")
            add(504, "The upstream engine took too long.")
    if path in IMAGE_URLS:
        add(403, "An image URL's host is not a public address (code url_refused).")
    if path in RESPONSE_FORMAT:
        add(500, "The finished answer breaks the requested response_format (code invalid_model_output).")
    if path == "/v1/documents" and method == "post":
        add(403, "The webhook URL's host is not a public address (code url_refused).")
        add(415, "An upload is neither a PDF nor a readable image.")
        add(503, "Document jobs are not available yet, or the webhook host could not be resolved in time.")
    if path == "/v1/documents" and method == "get":
        add(404, "'after' is not the id of a job the caller can list (code invalid_cursor).")
    if path.startswith("/v1/documents/") and method == "delete":
        add(409, "The job has already ended (code already_ended).")
    return out


def _health_responses(operation: dict[str, Any]) -> None:
    operation["responses"]["503"] = {
        "description": "Not live or not ready (loading, or the model failed to load).",
        "headers": _RETRY_AFTER,
        "content": {"application/json": {"schema": _HEALTH_SCHEMA}},
    }
    operation["responses"]["200"]["content"] = {"application/json": {"schema": _HEALTH_SCHEMA}}
    operation["security"] = []


def declare_errors(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``schema`` (FastAPI's) with each operation's real error responses and no 422; modified in place."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas[ENVELOPE] = _ENVELOPE_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    declare_requests(schema, settings)
    if settings.auth_required():
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "description": "API key"}}
        schema["security"] = [{"bearer": []}]
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            operation["responses"].pop("422", None)
            if path.startswith("/health/"):
                _health_responses(operation)
                continue
            if path in STREAMING and "200" in operation["responses"]:
                operation["responses"]["200"].setdefault("content", {})["text/event-stream"] = _EVENT_STREAM
            for status, reasons in sorted(_statuses(method, path, operation, settings).items()):
                response: dict[str, Any] = {
                    "description": " ".join(dict.fromkeys(reasons)),
                    "content": {"application/json": {"schema": _REF}},
                }
                if status in _HEADERS:
                    response["headers"] = _HEADERS[status]
                if status == 400 and (method, path) in _BEYOND_THE_SCHEMA:
                    response[DATA_DEPENDENT] = list(_BEYOND_THE_SCHEMA[method, path][1])
                operation["responses"][str(status)] = response
    return schema


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve :func:`declare_errors` of FastAPI's schema; regenerated when FastAPI regenerates its own."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        source = generate()
        if cache.get("source") is not source:
            cache["source"], cache["schema"] = source, declare_errors(copy.deepcopy(source), settings)
        return cache["schema"]

    app.openapi = openapi  # type: ignore[method-assign]
