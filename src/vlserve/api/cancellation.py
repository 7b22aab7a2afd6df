"""Stop work when the client goes away, or at the server's shutdown deadline: a handler races against both."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from vlserve.errors import ClientError
from vlserve.service.shutdown import past_deadline, until_deadline

T = TypeVar("T")


class ClientDisconnected(ClientError):
    status_code = 499
    code = "client_closed_request"


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; if the client disconnects first, cancel it (and with it the generation). So too at the
    server's shutdown deadline: then the request ends with a 503 ``shutting_down``."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    past_grace = False
    try:
        async with until_deadline() as deadline:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        if not deadline.expired():
            raise
        past_grace = True
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if past_grace:
            raise past_deadline()
        raise ClientDisconnected("the client closed the connection")
    return task.result()
