"""The outermost layer of a served app: once the server drains, requests get 503 ``shutting_down``.

The server stops listening when it begins to drain (new connections are refused, see ``server.py``), so
what reaches this gate then are requests on connections opened before: they are refused, with
``Connection: close``.

Requests already in flight go on (each sees the drain through ``current_drain``, so its stream or answer
can be ended at the deadline), and are counted, so the server can say how many it drained. ``/health/live``
still answers while draining: the process is alive, only no longer ready (``/health/ready`` is refused
like any other route, which is what a load balancer needs to stop sending traffic).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from vlserve.errors import ShuttingDownError, error_body
from vlserve.service.shutdown import Drain, current_drain

ALWAYS_OPEN = frozenset({"/health/live"})


class DrainGate:
    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan passes through
            await self.app(scope, receive, send)
            return
        if self.drain.draining and scope["path"] not in ALWAYS_OPEN:
            await refuse(send, ShuttingDownError())
            return
        token = current_drain.set(self.drain)
        self.drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.in_flight -= 1
            current_drain.reset(token)


async def refuse(send: Send, error: ShuttingDownError) -> None:
    """The error envelope, and the connection closed after it (the server is going away)."""
    body = json.dumps(error_body(error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]  # fmt: skip
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
