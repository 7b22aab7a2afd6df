"""Admission: a request takes one of the engine's places before any work is done for it, or is refused.

The engine can hold so many requests at once (running and waiting: its ``capacity``). A request is
admitted, or refused with 429 ``queue_full`` and ``Retry-After``, before its images are fetched or
decoded and before its prompt is built, so refusing costs next to nothing however busy the server is.
Its place is held until its answer ends: the whole stream, released on errors and disconnects too.

Under a burst, even reading and parsing the bodies of requests that will be refused costs more than the
refusal (a few hundred requests at once each wait for all the others to be parsed). So the HTTP edge
holds a place for each generation request as it arrives, before its body is read (:meth:`Admission.hold`,
a :class:`Ticket`): a request that finds every place taken or held is refused there, in microseconds.
Its :meth:`Admission.admit` later turns the ticket into its slot; a request that ends without needing the
engine (an answer from the cache, a bad request) gives the ticket back.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TypeVar

from vlserve.errors import RateLimitError

T = TypeVar("T")

RETRY_AFTER_S = 1


class Slot:
    """One admitted request's place. Used as a ``with`` block, it is given back when the block ends,
    unless a stream has taken it over (:meth:`hold_during`), which gives it back when the stream ends."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._held = True
        self._streaming = False

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        """Give the place back (once; later calls do nothing)."""
        if self._held:
            self._held = False
            self._admission._released()

    async def hold_during(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """``items``, keeping the place until they end, fail or are closed (a client that went away)."""
        self._streaming = True
        try:
            async for item in items:
                yield item
        finally:
            self.release()
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or not self._streaming:
            self.release()


class Ticket:
    """A place held for a request from its arrival, before its body is read; :meth:`Admission.admit` in that
    request (the same context) turns it into the request's slot. Given back once, by whichever comes first."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._held = True

    def take(self) -> bool:
        """Give the place up to a slot (True), unless it was given back already (False)."""
        if not self._held:
            return False
        self._held = False
        self._admission.held -= 1
        return True

    def release(self) -> None:
        """The request does not need the engine after all (or has ended): give the place back."""
        self.take()


current_ticket: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("admission_ticket", default=None)


def release_ticket() -> None:
    """The current request needs no place with the engine (answered from the cache, or waiting for an
    identical request's answer): give back the place held for it at the edge, for others to take."""
    ticket = current_ticket.get()
    if ticket is not None:
        ticket.release()


class Admission:
    """Counts the requests admitted to an engine and the places held for requests on their way to it;
    ``capacity`` is read at every admission."""

    def __init__(self, capacity: Callable[[], int]) -> None:
        self._capacity = capacity
        self.in_use = 0
        self.held = 0  # places held by tickets of requests not admitted yet
        self.refused = 0  # requests refused since the start, for metrics and tests

    def hold(self) -> Ticket:
        """A place held for a request just arrived; RateLimitError (429 queue_full) when every place is taken
        or held. Give it back with :meth:`Ticket.release` when the request ends, whatever happened."""
        self._check()
        self.held += 1
        return Ticket(self)

    def admit(self) -> Slot:
        """A place for one request (the one held for it at the edge, if any); RateLimitError (429 queue_full,
        Retry-After) when all are taken."""
        ticket = current_ticket.get()
        if ticket is None or not ticket.take():
            self._check()
        self.in_use += 1
        return Slot(self)

    def _check(self) -> None:
        capacity = self._capacity()
        if self.in_use + self.held >= capacity:
            self.refused += 1
            raise RateLimitError(
                f"the server is at capacity ({capacity} requests in progress); retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )

    def _released(self) -> None:
        self.in_use -= 1
