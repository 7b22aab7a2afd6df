"""The in-process backend: a least-recently-used map bounded by entries and bytes, entries expiring."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class MemoryStore:
    name = "memory"

    def __init__(
        self, *, max_entries: int, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expiry, value), oldest first
        self.bytes = 0  # the size of every value held

    @property
    def entries(self) -> int:
        return len(self._items)

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return item[1]

    async def set(self, key: str, value: bytes) -> None:
        if key in self._items:
            self._drop(key)
        if len(value) > self._max_bytes:  # larger than the whole cache: never held
            return
        self._items[key] = (self._clock() + self._ttl_s, value)
        self.bytes += len(value)
        while len(self._items) > self._max_entries or self.bytes > self._max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        _, value = self._items.pop(key)
        self.bytes -= len(value)

    async def close(self) -> None:
        self._items.clear()
        self.bytes = 0
