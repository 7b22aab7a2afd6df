"""Admission: a request takes one of the engine's places before any work is done for it, or is refused.

The engine can hold so many requests at once (running and waiting: its ``capacity``). A request is
admitted, or refused with 429 ``queue_full`` and ``Retry-After``, before its images are fetched or
decoded and before its prompt is built, so refusing costs next to nothing however busy the server is.
Its place is held until its answer ends: the whole stream, released on errors and disconnects too.
"""

from __future__ import annotations

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


class Admission:
    """Counts the requests admitted to an engine; ``capacity`` is read at every admission."""

    def __init__(self, capacity: Callable[[], int]) -> None:
        self._capacity = capacity
        self.in_use = 0
        self.refused = 0  # requests refused since the start, for metrics and tests

    def admit(self) -> Slot:
        """A place for one request; RateLimitError (429 queue_full, Retry-After) when all are taken."""
        capacity = self._capacity()
        if self.in_use >= capacity:
            self.refused += 1
            raise RateLimitError(
                f"the server is at capacity ({capacity} requests in progress); retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.in_use += 1
        return Slot(self)

    def _released(self) -> None:
        self.in_use -= 1
