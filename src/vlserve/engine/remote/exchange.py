"""One request to one upstream: send it, then read the answer as a stream of deltas, or whole.

Deadlines: connecting (the client's connect timeout), the first token (streaming only) and the whole
request. A failure another upstream might not have (unreachable, 5xx, 429, a broken stream) is raised
as :class:`Retryable`; the engine decides whether a retry is still allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from vlserve.engine.base import Delta
from vlserve.engine.remote.wire import ChunkReader, completion_deltas, upstream_error
from vlserve.errors import UpstreamError, VLServeError

T = TypeVar("T")

_ERROR_BODY_LIMIT = 64 * 1024
_BODY_LIMIT = 64 * 2**20  # a whole (non-streamed) answer
_DRAIN_S = 2.0
_DRAIN_LINES = 16


class Retryable(Exception):
    """A failure before the answer started that another upstream might not have."""

    def __init__(self, error: VLServeError, *, unreachable: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.unreachable = unreachable


@dataclass(frozen=True)
class Exchange:
    client: httpx.AsyncClient
    url: str  # the upstream's chat completions or completions URL
    headers: dict[str, str]
    image_tokens: int
    scrub: Callable[[str], str]
    first_token_timeout: float
    timeout: float


async def _within(work: Awaitable[T], deadline: float, what: str) -> T:
    """``work`` by the ``time.monotonic()`` deadline (the event loop's clock), else a 504."""
    try:
        async with asyncio.timeout_at(deadline):
            return await work
    except TimeoutError:
        message = f"the upstream engine did not answer in time ({what})"
        raise UpstreamError(message, status_code=504, code="upstream_timeout") from None


async def _head_of(response: httpx.Response, limit: int) -> bytes:
    """At most the first ``limit`` bytes of a body: an upstream cannot make vlserve buffer more."""
    head = bytearray()
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) > limit:
            break
    return bytes(head)


async def _drain(lines: AsyncIterator[str]) -> None:
    for _ in range(_DRAIN_LINES):
        if await anext(lines, None) is None:
            return


async def deltas(x: Exchange, body: dict[str, Any]) -> AsyncIterator[Delta]:
    """The upstream's answer to ``body`` (streamed when ``body["stream"]``), the last delta with usage."""
    now = time.monotonic()
    total_deadline = now + x.timeout
    first_deadline = now + min(x.first_token_timeout, x.timeout) if body["stream"] else total_deadline
    request = x.client.build_request("POST", x.url, json=body, headers=x.headers)
    try:
        response = await _within(x.client.send(request, stream=True), first_deadline, "first token")
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
        error = UpstreamError("the upstream engine cannot be reached; retry shortly", status_code=503)
        raise Retryable(error, unreachable=True) from None
    except httpx.HTTPError as exc:
        raise Retryable(UpstreamError(f"the upstream connection failed ({type(exc).__name__})")) from None
    try:
        if response.status_code >= 400:
            payload = await _within(_head_of(response, _ERROR_BODY_LIMIT), total_deadline, "error body")
            error = upstream_error(response.status_code, payload[:_ERROR_BODY_LIMIT], response.headers, x.scrub)
            if response.status_code >= 500 or response.status_code == 429:
                raise Retryable(error)
            raise error
        if not body["stream"]:
            payload = await _within(_head_of(response, _BODY_LIMIT), total_deadline, "whole request")
            for delta in completion_deltas(payload, x.image_tokens):
                yield delta
            return
        async for delta in _stream(x, response, first_deadline, total_deadline):
            yield delta
    except httpx.HTTPError as exc:
        raise Retryable(UpstreamError(f"the upstream stream broke ({type(exc).__name__})")) from None
    finally:
        await response.aclose()


async def _stream(x: Exchange, response: httpx.Response, first_deadline: float, total_deadline: float):
    reader = ChunkReader(x.image_tokens, x.scrub)
    lines = response.aiter_lines()
    produced = False
    final: list[Delta] = []
    while not final:
        deadline = total_deadline if produced else first_deadline
        try:
            line = await _within(anext(lines), deadline, "whole request" if produced else "first token")
        except StopAsyncIteration:
            final = list(reader.end())
            break
        for delta in reader.feed(line):
            if delta.finish_reason is not None:
                final.append(delta)
            else:
                produced = True
                yield delta
    if not final:
        raise Retryable(UpstreamError("the upstream closed the stream before the answer ended"))
    # Read the rest ("[DONE]") before handing over the last delta: a response read to its end leaves
    # its connection in the pool for the next request instead of closing it.
    with contextlib.suppress(VLServeError, httpx.HTTPError):
        await _within(_drain(lines), min(total_deadline, time.monotonic() + _DRAIN_S), "end of stream")
    yield final[0]
