"""Pure-ASGI middleware writing one access line per HTTP request, when its response has ended.

It replaces uvicorn's access log, so the line has the server's format and the request's trace id, and adds
what vlserve knows of the request: the API key, the model and the tokens (from the :class:`RequestRecord`
that this middleware opens when the audit middleware inside has not; the audit reuses it). ``cache`` is the
response cache's outcome (hit, miss, coalesced, bypass), null for a request that is not cacheable.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from vlserve.observability.accounting import RequestRecord
from vlserve.observability.response_watch import ResponseWatch
from vlserve.security.principal import principal_of
from vlserve.settings import Settings

log = logging.getLogger("vlserve.access")


def access_fields(scope: Scope, record: RequestRecord, status: int, seconds: float) -> dict[str, Any]:
    principal = principal_of(scope)
    return {
        "method": scope.get("method", ""),
        "path": scope.get("path", ""),
        "status": status,
        "latency_ms": round(seconds * 1000, 1),
        "key_id": None if principal is None else principal.key_id,
        "model": record.model,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cache": record.cache,
    }


def access_message(fields: dict[str, Any]) -> str:
    """The readable line: ``POST /v1/chat/completions 200 41.2 ms key=k1 model=m tokens=12+30``."""
    words = [fields["method"], fields["path"], str(fields["status"]), f"{fields['latency_ms']} ms"]
    if fields["key_id"] is not None:
        words.append(f"key={fields['key_id']}")
    if fields["model"] is not None:
        words.append(f"model={fields['model']}")
    if fields["prompt_tokens"] is not None or fields["completion_tokens"] is not None:
        words.append(f"tokens={fields['prompt_tokens'] or 0}+{fields['completion_tokens'] or 0}")
    if fields["cache"] is not None:
        words.append(f"cache={fields['cache']}")
    return " ".join(words)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.keep_content = settings.audit and settings.audit_content  # as the audit's own record would

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        watch = ResponseWatch(send, keep_content=self.keep_content)
        try:
            await watch.run(self.app, scope, receive)
        finally:
            fields = access_fields(scope, watch.record, watch.final_status, watch.seconds)
            log.info("%s", access_message(fields), extra={"access": fields})
