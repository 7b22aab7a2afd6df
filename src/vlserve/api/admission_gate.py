"""Pure-ASGI middleware: a generation request holds a place with the engine from its arrival, or is refused.

A POST to a route that runs the model (chat, text completions, vision) takes a
:class:`~vlserve.service.admission.Ticket` before its body is read or parsed; when every place of the engine
is taken or held, it is answered 429 ``queue_full`` with ``Retry-After`` at once. Under a burst of hundreds
of requests, the ones refused then cost microseconds each instead of waiting for every other body to be
parsed. The ticket becomes the request's slot when the route admits it, and is given back when the request
ends without needing one (an answer from the cache, a bad request). It sits inside auth and the per-key
limits, so a request without a valid key is still a 401 and one over its key's limits a 429 of its own.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from vlserve.api.errors import error_response
from vlserve.errors import RateLimitError
from vlserve.service.admission import current_ticket

GATED = frozenset({("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/chat/vision")})


class AdmissionGate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(scope["app"].state, "vlserve", None) if scope["type"] == "http" else None
        if runtime is None or (scope["method"], scope["path"].rstrip("/")) not in GATED:
            await self.app(scope, receive, send)
            return
        try:
            ticket = runtime.generation.admission.hold()
        except RateLimitError as exc:  # every place taken or held: refused before the body is read
            await error_response(exc)(scope, receive, send)
            return
        token = current_ticket.set(ticket)
        try:
            await self.app(scope, receive, send)
        finally:
            current_ticket.reset(token)
            ticket.release()  # no-op once the route's admission took it
