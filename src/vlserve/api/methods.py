"""Which methods a resource answers: HEAD on every GET route, and the ``Allow`` header of a 405.

FastAPI routes answer only the methods they declare, so HEAD on a GET route was a 405. HTTP says a server
that answers GET should answer HEAD with the same status and headers and no body (RFC 9110 §9.3.2):
:class:`HeadMiddleware` runs the GET and drops its body. A 405 lists every method the path answers
(:func:`allowed_methods`), across all the routes that share it, HEAD included wherever GET is.
"""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: ASGIApp, scope: Scope) -> list[str]:
    """The methods some route of ``app`` answers at ``scope``'s path, in a fixed order (HEAD after GET)."""
    routes = getattr(getattr(app, "router", None), "routes", ())
    allowed = []
    for method in _METHODS:
        probe = {**scope, "method": method, "type": "http"}
        if any(route.matches(probe)[0] == Match.FULL for route in routes):
            allowed.append(method)
    if "GET" in allowed:
        allowed.insert(allowed.index("GET") + 1, "HEAD")
    return allowed


class HeadMiddleware:
    """Answer HEAD as the GET of the same URL would be answered, status and headers alike, without a body.

    Inside, the request is a GET (routes, auth and limits see the GET it stands for); a path without a GET
    gets the 405 a GET would get, with its ``Allow`` header. Content-Length is kept: it is the GET's.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def headers_only(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.body":
                if ended or message.get("more_body", False):
                    return  # the GET's body: never sent
                ended = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
