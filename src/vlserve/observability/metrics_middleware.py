"""Pure-ASGI middleware observing every HTTP request in the runtime's metrics when its response has ended.

It reads the status and the time to the last byte itself, and what the layers inside noted on the
request's :class:`RequestRecord` (model, tokens, token timings, error code). The endpoint label is the
route template (``/v1/documents/{document_id}``), or ``unmatched`` for paths no route took (404s,
requests refused before routing), so clients cannot grow the label set. An error answered outside the
exception handlers (auth, quotas, the body limit) is counted by the ``code`` of its envelope.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlserve.observability.accounting import RequestRecord, current_record
from vlserve.security.principal import principal_of

UNMATCHED = "unmatched"
CLIENT_CLOSED = 499
_CODE = re.compile(r"^[a-z0-9_]{1,64}$")
_SNIFF_BYTES = 4096  # error envelopes are small; a longer body is not read for its code


def endpoint_of(scope: Scope) -> str:
    route_path = getattr(scope.get("route"), "path", None)
    return route_path if isinstance(route_path, str) and route_path else UNMATCHED


def envelope_code(body: bytes) -> str | None:
    """The ``error.code`` of an OpenAI error envelope, if ``body`` is one with a well-formed code."""
    try:
        code = json.loads(body).get("error", {}).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) and _CODE.match(code) else None


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(scope["app"].state, "vlserve", None) if "app" in scope else None
        metrics = getattr(runtime, "metrics", None)
        if scope["type"] != "http" or metrics is None:
            await self.app(scope, receive, send)
            return
        record = current_record.get()
        token = None
        if record is None:  # audit off, or a health probe: keep one for this request
            record = RequestRecord()
            token = current_record.set(record)
        started = time.perf_counter()
        seen: dict[str, float | int] = {}
        error_body = bytearray()

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif (
                message["type"] == "http.response.body"
                and seen.get("status", 0) >= 400
                and len(error_body) < _SNIFF_BYTES
            ):
                error_body.extend(message.get("body", b"")[: _SNIFF_BYTES - len(error_body)])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                seen["ended"] = time.perf_counter()

        try:
            await self.app(scope, receive, observe)
        except asyncio.CancelledError:
            seen.setdefault("status", CLIENT_CLOSED)
            raise
        except Exception:
            seen.setdefault("status", 500)  # the server error middleware outside answers 500
            raise
        finally:
            if token is not None:
                current_record.reset(token)
            status = int(seen.get("status", CLIENT_CLOSED))
            if status >= 400 and record.error_code is None:
                record.error_code = envelope_code(bytes(error_body))
            principal = principal_of(scope)
            metrics.observe_request(
                endpoint=endpoint_of(scope),
                status=status,
                seconds=seen.get("ended", time.perf_counter()) - started,
                record=record,
                key_id=None if principal is None else principal.key_id,
            )
