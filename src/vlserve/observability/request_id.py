"""Pure-ASGI middleware giving every request an id, echoed as ``X-Request-Id`` on every response.

The id is the ``trace_id`` of an inference. It comes from, in order:

1. ``X-Request-Id``, when well formed (a gateway in front already named the request);
2. the trace id of a valid W3C ``traceparent`` (``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``);
3. a fresh one.

A valid ``traceparent`` is also kept (:data:`current_traceparent`) so a remote upstream receives it unchanged and
its spans join the caller's trace; anything malformed is ignored, as the W3C recommendation asks.
"""

from __future__ import annotations

import contextvars
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
TRACEPARENT = b"traceparent"
_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# version 00 has exactly four fields; a later version may append more after a dash (forward compatibility)
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
current_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def pick_request_id(incoming: str | None) -> str:
    return incoming if incoming is not None and _VALID.match(incoming) else new_request_id()


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a valid W3C ``traceparent``; None for anything malformed."""
    match = _TRACEPARENT.match((traceparent or "").strip())
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return trace_id


def request_id_of(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id") or new_request_id()


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, HEADER)
        traceparent = _header(scope, TRACEPARENT)
        trace_id = trace_id_of(traceparent)
        request_id = incoming if incoming is not None and _VALID.match(incoming) else trace_id or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)
        parent_token = current_traceparent.set(traceparent.strip() if trace_id and traceparent else None)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message["headers"] = [*headers, (HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_traceparent.reset(parent_token)
            current_request_id.reset(token)
