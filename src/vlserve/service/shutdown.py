"""Draining on SIGTERM: the state the server, the API's answers and the document worker share.

On the first signal the server calls :meth:`Drain.begin`: from then on new requests are refused (503
``shutting_down``) and the ones in flight run on until the deadline, ``shutdown_grace_s`` later. Work
awaited inside :func:`until_deadline` is cut at that deadline: a stream then ends with an error event and
``[DONE]``, a whole answer becomes a 503, and in both cases the generation is cancelled. A second signal
brings the deadline forward to now (:meth:`Drain.expire_now`).

The served request's drain is reached through the context variable ``current_drain`` (set by the
server's outermost layer), so code running outside a served request (tests on a bare app, the CLI's
``--local`` paths) finds none and is never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections.abc import AsyncIterator

from vlserve.errors import ShuttingDownError


class Drain:
    """One server's shutdown: whether it began, its deadline (event-loop time), and what it did."""

    def __init__(self) -> None:
        self.deadline: float | None = None  # None: not draining
        self.grace_s = 0.0
        self.in_flight = 0  # requests being answered now
        self.in_flight_at_start = 0  # requests that were being answered when draining began
        self.ended = 0  # of those, how many were ended at the deadline
        self.forced = False  # the deadline was brought forward by a second signal
        self._timeouts: set[asyncio.Timeout] = set()

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def begin(self, grace_s: float) -> None:
        """Stop taking new work; what is in flight may run ``grace_s`` more seconds. Idempotent."""
        if self.deadline is not None:
            return
        self.grace_s = grace_s
        self.in_flight_at_start = self.in_flight
        self._move_deadline(asyncio.get_running_loop().time() + grace_s)

    def expire_now(self) -> None:
        """The deadline is now (a second signal): everything still in flight ends at once."""
        now = asyncio.get_running_loop().time()
        self.forced = True
        self._move_deadline(min(self.deadline if self.deadline is not None else math.inf, now))

    def note_ended(self) -> None:
        """A request in flight was ended at the deadline (its answer cut short)."""
        self.ended += 1

    def summary(self, cut: int = 0) -> str:
        """One line for the log: how many requests were drained, ended at the deadline, or ``cut`` (their
        connections closed when even the deadline's end did not finish them)."""
        finished = max(0, self.in_flight_at_start - self.ended - cut)
        when = "on a second signal" if self.forced else f"at the {self.grace_s:g} s deadline"
        line = f"{finished} in-flight request(s) finished, {self.ended} ended {when}"
        return line + (f", {cut} cut off with their connection" if cut else "")

    def bounded(self) -> _Bounded:
        """``async with``: awaits inside raise TimeoutError at the deadline, even one set after they began."""
        return _Bounded(self)

    def _move_deadline(self, deadline: float) -> None:
        self.deadline = deadline
        for timeout in list(self._timeouts):
            if not timeout.expired():
                timeout.reschedule(deadline)


class _Bounded:
    """asyncio's timeout at the drain's deadline, moved with it (a class: entered once per stream event)."""

    __slots__ = ("_drain", "_timeout")

    def __init__(self, drain: Drain) -> None:
        self._drain = drain
        self._timeout = asyncio.timeout_at(drain.deadline)

    async def __aenter__(self) -> asyncio.Timeout:
        await self._timeout.__aenter__()
        self._drain._timeouts.add(self._timeout)
        return self._timeout

    async def __aexit__(self, *exc_info: object) -> bool | None:
        self._drain._timeouts.discard(self._timeout)
        return await self._timeout.__aexit__(*exc_info)  # type: ignore[arg-type]


current_drain: contextvars.ContextVar[Drain | None] = contextvars.ContextVar("drain", default=None)


def until_deadline() -> contextlib.AbstractAsyncContextManager[asyncio.Timeout]:
    """``async with``: awaits inside raise TimeoutError at the served request's shutdown deadline (never
    outside a server). ``timeout.expired()`` tells a deadline from any other TimeoutError raised inside."""
    drain = current_drain.get()
    return asyncio.timeout(None) if drain is None else drain.bounded()


def past_deadline() -> ShuttingDownError:
    """The error of a request ended at the deadline, counted as such."""
    drain = current_drain.get()
    if drain is not None:
        drain.note_ended()
    return ShuttingDownError(
        "the server is shutting down and this request ran past its grace period (VLSERVE_SHUTDOWN_GRACE_S); "
        "it was stopped: retry on another replica or after the restart"
    )


async def until_shutdown(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """``events`` as they come, until the shutdown deadline: then ShuttingDownError (raised between two
    events, never inside one), and ``events`` is closed."""
    if current_drain.get() is None:  # not a served request: nothing to watch
        async for event in events:
            yield event
        return
    iterator = aiter(events)
    while True:
        try:
            async with until_deadline() as timeout:
                event = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if not timeout.expired():
                raise
            raise past_deadline() from None
        yield event
