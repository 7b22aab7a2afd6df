"""Pure-ASGI middleware: a JSON request body nested too deep is refused before anything parses it.

FastAPI parses a JSON body with ``json.loads``, which fails with RecursionError at about 1,000 levels
(a 400 that named nothing), and :mod:`.request_limits` sees a body only once it is parsed. This reads
a JSON body whole (the body limit, outside, has bounded its size), checks it with the server's one
depth rule (:func:`vlserve.jsonlimits.text_deeper_than`), and answers 400 ``json_too_deep`` naming
``VLSERVE_MAX_JSON_DEPTH``, or hands the app the body in one piece.

A free-form field is counted from where it sits, so that :mod:`.request_limits` can name the field
that is too deep; the deepest sits :data:`ENVELOPE` levels in (``tools[i].function.parameters``: the
body, ``tools``, the tool, ``function``). A body may therefore nest twice the setting plus that
before it is refused here unnamed: a field up to twice too deep is still parsed and then named.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlserve.api.errors import error_response
from vlserve.errors import ClientError
from vlserve.jsonlimits import text_deeper_than
from vlserve.settings import Settings

ENVELOPE = 4
_THREAD_BYTES = 1 << 20  # a larger body is scanned in a thread (numpy releases the GIL)


def is_json(scope: Scope) -> bool:
    """Whether the request says its body is JSON (``application/json``, ``application/…+json``), as FastAPI reads it."""
    value = next((v for k, v in scope["headers"] if k.lower() == b"content-type"), b"")
    media = value.split(b";")[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class JSONDepthMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self._setting = settings.max_json_depth
        self._limit = 2 * settings.max_json_depth + ENVELOPE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app sees it as it would have
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                body = b"".join(chunks)
                if await self._too_deep(body):
                    await error_response(self._error())(scope, receive, send)
                    return
                message = {"type": "http.request", "body": body, "more_body": False}
                break
        pending: list[Message] = [message]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _too_deep(self, body: bytes) -> bool:
        if len(body) > _THREAD_BYTES:
            return await asyncio.to_thread(text_deeper_than, body, self._limit)
        return text_deeper_than(body, self._limit)

    def _error(self) -> ClientError:
        return ClientError(
            f"the request body nests more than {self._limit} levels deep; a value in it may nest {self._setting} "
            "(VLSERVE_MAX_JSON_DEPTH)",
            code="json_too_deep",
        )
