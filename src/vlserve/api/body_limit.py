"""Pure-ASGI middleware that limits request bodies while they stream in, before anything buffers them.

- A ``Content-Length`` over the route's limit is answered 413 without keeping any of the body (what the
  client is still sending is read and dropped, bounded, so that it can read the answer; see
  :func:`discard_rest`).
- A body without one (chunked) is counted as it arrives and answered 413 as soon as it passes the limit.
- A body that stalls longer than ``read_timeout_s`` between chunks, or has not arrived in full
  ``body_timeout_s`` after the app began reading it, is answered 408 ``request_timeout``.
- A multipart body is refused once it has more parts than ``max_form_fields`` (boundaries are counted
  as they stream, across chunk edges).

Limits per route: ``POST /v1/documents`` takes ``document_max_bytes`` plus 1 MiB of form overhead,
``POST /v1/chat/vision`` its images' limits plus 1 MiB, every other route ``max_body_bytes``. Once this
middleware has answered, the application sees the client as gone and whatever it sends is dropped.
After each request the :class:`MemoryReleaser` may give a large request's memory back to the OS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlserve.api.memory_release import MemoryReleaser
from vlserve.errors import ClientError, PayloadTooLargeError, VLServeError, error_body
from vlserve.media.limits import payload_too_large
from vlserve.settings import Settings

log = logging.getLogger("vlserve.api")

_MIB = 1024 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RouteLimits:
    """The body limit of each route, and the setting that names it."""

    def __init__(self, settings: Settings) -> None:
        self.default = (settings.max_body_bytes, "VLSERVE_MAX_BODY_BYTES")
        self.routes = {
            ("POST", "/v1/documents"): (settings.document_max_bytes + _MIB, "VLSERVE_DOCUMENT_MAX_BYTES"),
            ("POST", "/v1/chat/vision"): (
                settings.max_images_per_request * settings.max_image_bytes + _MIB,
                "VLSERVE_MAX_IMAGES_PER_REQUEST x VLSERVE_MAX_IMAGE_BYTES",
            ),
        }

    def of(self, scope: Scope) -> tuple[int, str]:
        path = scope["path"].rstrip("/") or "/"
        return self.routes.get((scope["method"], path), self.default)


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key.lower() == name), None)


def multipart_boundary(content_type: bytes | None) -> bytes | None:
    """The boundary of a ``multipart/…`` content type, or None."""
    if content_type is None or not content_type.lower().lstrip().startswith(b"multipart/"):
        return None
    for param in content_type.split(b";")[1:]:
        name, _, value = param.strip().partition(b"=")
        if name.strip().lower() == b"boundary" and value.strip().strip(b'"'):
            return value.strip().strip(b'"')
    return None


class PartCounter:
    """Counts the parts of a multipart body from its chunks (a delimiter may straddle two chunks)."""

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"--" + boundary
        self._tail = b""
        self._delimiters = 0

    @property
    def parts(self) -> int:
        """Parts so far: delimiters less the closing one (a part is counted once the next delimiter arrives)."""
        return max(0, self._delimiters - 1)

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        self._delimiters += data.count(self._delimiter)
        self._tail = data[-(len(self._delimiter) - 1) :]


def too_many_fields(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the form has more than {limit} fields and files (VLSERVE_MAX_FORM_FIELDS)", code="too_many_form_fields"
    )


def request_timeout(seconds: float) -> ClientError:
    return _timeout(f"the request body stalled for more than {seconds:g} s (VLSERVE_READ_TIMEOUT_S)")


def body_too_slow(seconds: float) -> ClientError:
    return _timeout(f"the request body did not arrive in full within {seconds:g} s (VLSERVE_BODY_TIMEOUT_S)")


def _timeout(message: str) -> ClientError:
    error = ClientError(message, code="request_timeout")
    error.status_code = 408
    return error


_DRAIN_BYTES = 128 * _MIB  # what is read and dropped after a refusal, so the client can read the answer
_DRAIN_S = 3.0


async def discard_rest(receive: Receive, *, max_bytes: int = _DRAIN_BYTES, seconds: float = _DRAIN_S) -> None:
    """Read and drop what is left of a refused body, bounded in bytes and time.

    A server that answers and closes while the client is still sending makes the kernel reset the
    connection, and most clients then report a broken connection instead of the 413. Reading the rest
    (nothing is kept) lets them read the answer; past the bounds the connection is closed anyway."""
    dropped = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while dropped <= max_bytes:
                message = await receive()
                if message["type"] != "http.request":
                    return
                dropped += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def _expects_continue(scope: Scope) -> bool:
    """A client that waits for ``100 Continue`` sends no body until it is read: nothing to drain."""
    return (_header(scope, b"expect") or b"").strip().lower() == b"100-continue"


async def send_error(send: Send, error: VLServeError) -> None:
    """The error envelope as a whole response, closing the connection (the rest of the body is not read)."""
    body = json.dumps(error_body(error), separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Body:
    """One request's receive and send, counting and timing the body, answering for the app when it must."""

    def __init__(
        self, receive: Receive, send: Send, *, limit: int, setting: str, timeout: float, body_timeout: float,
        parts: PartCounter | None, max_fields: int,
    ) -> None:  # fmt: skip
        self._receive, self._send = receive, send
        self._limit, self._setting = limit, setting
        self._timeout, self._body_timeout = timeout, body_timeout
        self._deadline: float | None = None  # event-loop time the whole body must have arrived by
        self._parts, self._max_fields = parts, max_fields
        self.received = 0
        self.complete = False  # the whole body has arrived (or the client left)
        self.started = False  # a response has started
        self.answered = False  # this middleware answered in the app's place

    async def receive(self) -> Message:
        if self.answered:
            return {"type": "http.disconnect"}
        if self.complete:
            return await self._receive()
        now = asyncio.get_running_loop().time()
        if self._deadline is None:
            self._deadline = now + self._body_timeout
        wait = min(self._timeout, self._deadline - now)
        try:
            async with asyncio.timeout(wait):
                message = await self._receive()
        except TimeoutError:
            error = request_timeout(self._timeout) if wait == self._timeout else body_too_slow(self._body_timeout)
            return await self._refuse(error, drain=False)
        if message["type"] != "http.request":
            self.complete = True
            return message
        chunk = message.get("body", b"")
        self.received += len(chunk)
        self.complete = not message.get("more_body", False)
        if self.received > self._limit:
            what = "the request body"
            return await self._refuse(payload_too_large(self._limit, param=None, what=what, setting=self._setting))
        if self._parts is not None:
            self._parts.feed(chunk)
            if self._parts.parts > self._max_fields:
                return await self._refuse(too_many_fields(self._max_fields))
        return message

    async def _refuse(self, error: VLServeError, *, drain: bool = True) -> Message:
        """Answer ``error`` (if no response has started), and tell the app the client went away."""
        self.answered = True
        if drain and not self.complete:
            await discard_rest(self._receive)
        if not self.started:
            log.info("request refused while its body arrived: %s", error.message)
            await send_error(self._send, error)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.answered:
            return  # the app's answer to a request this middleware already answered
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self._routes = RouteLimits(settings)
        self._timeout = settings.read_timeout_s
        self._body_timeout = settings.body_timeout_s
        self._max_fields = settings.max_form_fields
        self.memory = MemoryReleaser()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit, setting = self._routes.of(scope)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            if int(declared) <= _DRAIN_BYTES and not _expects_continue(scope):
                await discard_rest(receive)
            await send_error(send, payload_too_large(limit, param=None, what="the request body", setting=setting))
            return
        boundary = multipart_boundary(_header(scope, b"content-type"))
        body = _Body(
            receive, send, limit=limit, setting=setting, timeout=self._timeout, body_timeout=self._body_timeout,
            parts=PartCounter(boundary) if boundary else None, max_fields=self._max_fields,
        )  # fmt: skip
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.answered:
                raise
            log.debug("the app failed after the body limit answered", exc_info=True)
        finally:
            self.memory.after_request(body.received)
