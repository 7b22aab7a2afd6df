"""The one interface every response-cache backend offers: bytes by key, kept for a time-to-live.

A backend never raises for its own failures: a lost entry is a miss, a failed write is skipped. The
service decides what a miss costs (one generation); the backend only says what it has.
"""

from __future__ import annotations

from typing import Protocol


class CacheStore(Protocol):
    name: str  # "memory" or "redis": the ``backend`` label of its errors

    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None (never stored, expired, evicted, or the backend failed)."""
        ...

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` for the backend's time-to-live, replacing any older value."""
        ...

    async def close(self) -> None: ...
