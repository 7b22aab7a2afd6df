"""One exception hierarchy and one mapping to the OpenAI error envelope.

Every failure a client can cause is a :class:`ClientError` (4xx); everything else is a
:class:`ServerError` (5xx). Code raises these with a ``param`` naming the offending input;
:func:`error_body` turns any exception into ``{"error": {"message", "type", "param", "code"}}``
with paths and memory addresses stripped, so nothing internal leaks to the client.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


class VLServeError(Exception):
    """Base of every error the service reports to a client."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class ClientError(VLServeError):
    """The request is wrong; retrying it unchanged will fail again (HTTP 400)."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class NotFoundError(ClientError):
    status_code = 404
    error_type = "not_found_error"
    code = "not_found"


class PayloadTooLargeError(ClientError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaError(ClientError):
    status_code = 415
    code = "unsupported_media_type"


class ContextLengthError(ClientError):
    code = "context_length_exceeded"


class ImageError(ClientError):
    """The bytes given as an image cannot be used (not an image, truncated, too many pixels)."""

    code = "invalid_image"


class MediaFetchError(ClientError):
    """An image URL could not be fetched (refused address, network failure, timeout, bad status)."""

    code = "media_fetch_failed"


class URLRefusedError(MediaFetchError):
    status_code = 403
    code = "url_refused"


class RateLimitError(ClientError):
    """The server is saturated; the client should retry after ``Retry-After`` seconds (HTTP 429)."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"


class QuotaExceededError(ClientError):
    """The API key is over one of its own limits (requests per minute, concurrent requests, tokens per day).

    A 429 like :class:`RateLimitError` but not one: the engine is not busy, this key must wait, so code that
    retries a busy engine (the document worker) must not retry this."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class AuthenticationError(ClientError):
    """No API key, or one that is unknown, revoked or expired (HTTP 401)."""

    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"

    def __init__(self, message: str, *, code: str | None = None, key_id: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})
        self.key_id = key_id  # a revoked or expired key's id, for the audit trail (never a secret)


class PermissionDeniedError(ClientError):
    """A valid API key without the scope the route needs (HTTP 403)."""

    status_code = 403
    error_type = "permission_error"
    code = "insufficient_scope"


class DocumentError(ClientError):
    """The uploaded document cannot be used (corrupt, encrypted, no pages)."""

    code = "invalid_document"


class ServerError(VLServeError):
    status_code = 500
    error_type = "server_error"
    code = "internal_error"


class ModelOutputError(ServerError):
    """The model's finished answer breaks the requested format (a schema keyword no grammar can enforce)."""

    code = "invalid_model_output"


class ServiceUnavailableError(ServerError):
    status_code = 503
    code = "unavailable"


class ShuttingDownError(ServiceUnavailableError):
    """The server is draining after SIGTERM: it takes no new work (503, retry elsewhere or after a restart)."""

    code = "shutting_down"

    def __init__(self, message: str = "the server is shutting down; retry on another replica") -> None:
        super().__init__(message, headers={"Retry-After": "5"})


class UpstreamError(ServerError):
    """The upstream engine failed (502), could not be reached (503) or took too long (504); always with
    ``Retry-After``, since another try, or another upstream, may succeed."""

    status_code = 502
    code = "upstream_error"

    def __init__(self, message: str, *, status_code: int = 502, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"Retry-After": "5"})
        self.status_code = status_code


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.\-]+/)+[\w.\-]*")


def _scrub(text: str) -> str:
    return _PATH.sub("<path>", _ADDRESS.sub("", text))


def sanitize_message(message: str, verbatim: Sequence[str] = ()) -> str:
    """Strip memory addresses and filesystem paths from a message bound for a client.

    ``verbatim`` names text the client itself sent (a URL path): it is kept as is wherever it occurs,
    while the rest of the message is still scrubbed. Pass it already shortened (see :func:`shorten`).
    """
    kept = sorted({text for text in verbatim if text}, key=len, reverse=True)
    if not kept:
        return _scrub(message)
    parts, last = [], 0
    for match in re.finditer("|".join(map(re.escape, kept)), message):
        parts += [_scrub(message[last : match.start()]), match.group()]
        last = match.end()
    parts.append(_scrub(message[last:]))
    return "".join(parts)


def shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis), for echoing client input in a message."""
    return text if len(text) <= limit else text[:limit] + "…"


def error_body(exc: VLServeError, verbatim: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAI error envelope for ``exc``; ``verbatim``: client-given text its message may keep."""
    return {
        "error": {
            "message": sanitize_message(exc.message, verbatim),
            "type": exc.error_type,
            "param": exc.param,
            "code": exc.code,
        }
    }
