"""Pure-ASGI middleware observing every HTTP request in the runtime's metrics when its response has ended.

It reads the status and the time to the last byte itself, and what the layers inside noted on the
request's :class:`RequestRecord` (model, tokens, token timings, error code). The endpoint label is the
route template (``/v1/documents/{document_id}``), or ``unmatched`` for paths no route took (404s,
requests refused before routing), so clients cannot grow the label set. An error answered outside the
exception handlers (auth, quotas, the body limit) is counted by the ``code`` of its envelope.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from vlserve.observability.response_watch import ResponseWatch
from vlserve.security.principal import principal_of

UNMATCHED = "unmatched"
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
        watch = ResponseWatch(send, error_bytes=_SNIFF_BYTES)  # audit off, or a health probe: its own record
        try:
            await watch.run(self.app, scope, receive)
        finally:
            record, status = watch.record, watch.final_status
            if status >= 400 and record.error_code is None:
                record.error_code = envelope_code(bytes(watch.error_head))
            principal = principal_of(scope)
            metrics.observe_request(
                endpoint=endpoint_of(scope),
                status=status,
                seconds=watch.seconds,
                record=record,
                key_id=None if principal is None else principal.key_id,
            )
