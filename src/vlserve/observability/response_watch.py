"""One response watched as it passes, for the middlewares that report on requests (access log, metrics, audit).

:class:`ResponseWatch` runs the inner app with the request's :class:`RequestRecord` (opened when no outer
layer has one), and notes the status, when the last byte left, and the start of an error body. A request
the client left before any response is status 499 (nginx's convention); one that raised is 500 (the
server-error middleware outside answers it).
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlserve.observability.accounting import RequestRecord, current_record

CLIENT_CLOSED = 499


class ResponseWatch:
    def __init__(self, send: Send, *, keep_content: bool = False, error_bytes: int = 0) -> None:
        self._send = send
        self._keep_content = keep_content
        self._error_bytes = error_bytes  # how much of an error body (status >= 400) to keep
        self.record: RequestRecord = current_record.get() or RequestRecord(keep_content=keep_content)
        self.status: int | None = None
        self.error_head = bytearray()
        self.started = time.perf_counter()
        self._ended: float | None = None

    @property
    def final_status(self) -> int:
        return CLIENT_CLOSED if self.status is None else self.status

    @property
    def seconds(self) -> float:
        """From the start to the last byte of the response (or to now, if it never ended)."""
        return (self._ended or time.perf_counter()) - self.started

    async def _observe(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body" and (self.status or 0) >= 400:
            room = self._error_bytes - len(self.error_head)
            if room > 0:
                self.error_head.extend(message.get("body", b"")[:room])
        await self._send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._ended = time.perf_counter()

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        token = current_record.set(self.record) if current_record.get() is None else None
        try:
            await app(scope, receive, self._observe)
        except asyncio.CancelledError:
            if self.status is None:
                self.status = CLIENT_CLOSED
            raise
        except Exception:
            if self.status is None:
                self.status = 500
            raise
        finally:
            if token is not None:
                current_record.reset(token)
