"""uvicorn's h11 protocol, with the limits a server facing slow or hostile clients needs.

- **Header timeout.** A connection must send complete request headers within ``header_timeout_s`` of
  connecting, or of the first byte of its next request on a kept-alive connection; otherwise it is closed
  (no response: the client never finished asking). Idle kept-alive connections close after
  ``keepalive_timeout_s`` (uvicorn's own timer).
- **Header size.** A request line and headers over ``max_header_bytes`` get a 431 in the error envelope,
  and the connection is closed: h11 stops buffering at that size when the headers arrive in pieces, and a
  complete oversized head (at most one socket read, 256 KiB) is measured before the app sees it. After
  the 431 the server stops sending but reads (and drops) what the client still sends for a moment, so the
  client reads the answer instead of a connection reset.
- **Connections.** Past ``max_connections`` open connections (or requests being answered), a request gets a
  503 with ``Retry-After`` in the error envelope instead of reaching the app.
- **Answers that come before the body.** A response that starts while the request's body is still arriving
  (a 401, 413, 429, 503 from any layer, or a route that does not read its body) says ``Connection: close``,
  and once it is sent the connection lingers as after a 431 and is then closed: a client trickling its
  body cannot hold the connection open, and one that writes its whole body before reading still reads
  the answer.

h11 is used rather than httptools, which accepts a 50 MB header.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from starlette.types import Message, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from vlserve.errors import ClientError, ServiceUnavailableError, VLServeError, error_body
from vlserve.settings import Settings


def head_size(scope: dict[str, Any]) -> int:
    """Bytes of a request's line and headers, as sent (near enough: separators counted, not whitespace)."""
    line = len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + 12
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def headers_too_large(limit: int) -> ClientError:
    error = ClientError(
        f"the request line and headers exceed {limit} bytes (VLSERVE_MAX_HEADER_BYTES)",
        code="request_headers_too_large",
    )
    error.status_code = 431
    return error


def too_many_connections(limit: int) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"the server has {limit} connections open, its limit (VLSERVE_MAX_CONNECTIONS); retry shortly",
        code="too_many_connections",
        headers={"Retry-After": "1"},
    )


def _response(error: VLServeError) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(error_body(error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]  # fmt: skip
    return headers + [(k.lower().encode(), v.encode()) for k, v in error.headers.items()], body


class GuardedH11Protocol(H11Protocol):
    """Configure with :func:`protocol_for`, which makes a subclass carrying the settings' limits."""

    header_timeout_s = 10.0
    max_header_bytes = 64 * 1024
    max_connections = 1024
    linger_s = 2.0  # after an answer sent before the request ended: how long to drop what the client still sends
    linger_bytes = 128 * 1024 * 1024  # … and how much of it, at most

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # checked in _guarded, answering in the error envelope
        self.app = self._guarded
        self._header_timer: asyncio.TimerHandle | None = None
        self._lingering = False  # answered and half-closed: input is dropped until the client closes
        self._linger_left = self.linger_bytes

    # --- the header timeout ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport.close()
            return
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # the first bytes of a request: its headers must follow in time
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.debug("closing a connection that sent no complete request headers in %g s",
                              self.header_timeout_s)  # fmt: skip
            self.transport.close()

    # --- the header size --------------------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """h11 refused the request; when it was for buffering too much of an unfinished head, say so: 431."""
        if len(self.conn.trailing_data[0]) <= self.max_header_bytes:
            super().send_400_response(msg)
            return
        error = headers_too_large(self.max_header_bytes)
        headers, body = _response(error)
        event = h11.Response(status_code=error.status_code, headers=headers, reason=b"Request Header Fields Too Large")
        for part in (event, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(part))
        self._linger()

    # --- answers sent before the request ended ---------------------------------------------------------------
    def _linger(self) -> None:
        """Stop sending (half-close), read and drop what the client still sends, at most ``linger_bytes`` for
        at most ``linger_s``, then close. Closing at once with unread input would reset the connection, and a
        client still writing its request might never read the answer."""
        if self._lingering:
            return
        self._lingering = True
        self._disarm_header_timer()
        self._unset_keepalive_if_required()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()  # paused when the app did not read what the client sent
        self.loop.call_later(self.linger_s, self.transport.close)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a new request: when its answer closes the connection, lingering may come first
            self.cycle.transport = _AnswerTransport(self)  # type: ignore[assignment]

    def close_after_answer(self) -> None:
        """The request's cycle closes the connection: at once, unless the client is still sending its body."""
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self._linger()
        else:
            self.transport.close()

    def on_response_complete(self) -> None:
        if self._lingering or self.conn.their_state is h11.SEND_BODY:  # not to be kept alive: see _closing
            self.server_state.total_requests += 1
            self._linger()
            return
        super().on_response_complete()

    def _closing(self, send: Send) -> Send:
        """``send``, saying ``Connection: close`` on an answer that starts before the request's body ended."""

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.conn.their_state is h11.SEND_BODY:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        return send_closing

    # --- the app, behind the size and connection checks ---------------------------------------------------
    async def _guarded(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and head_size(scope) > self.max_header_bytes:
            await _refuse(send, headers_too_large(self.max_header_bytes))
            return
        limit = self.max_connections
        if len(self.connections) > limit or len(self.tasks) > limit:  # both include this one
            await _refuse(send, too_many_connections(limit))
            return
        await self.config.loaded_app(scope, receive, self._closing(send))


class _AnswerTransport:
    """What a request's cycle writes its answer to: the connection's transport, except that closing it goes
    through :meth:`GuardedH11Protocol.close_after_answer` (uvicorn closes at once after a ``Connection: close``
    answer, even while the client is still sending)."""

    def __init__(self, protocol: GuardedH11Protocol) -> None:
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol.transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_answer()


async def _refuse(send: Any, error: VLServeError) -> None:
    headers, body = _response(error)
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def protocol_for(settings: Settings) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's ``Config(http=…)``, carrying these settings' limits."""
    limits = {
        "header_timeout_s": settings.header_timeout_s,
        "max_header_bytes": settings.max_header_bytes,
        "max_connections": settings.max_connections,
    }
    return type("VLServeH11Protocol", (GuardedH11Protocol,), limits)
