"""The Redis backend: entries shared by every server using one Redis, expiring by Redis's own TTL.

Each call is bounded by a short timeout, so a slow or lost Redis costs a request at most that long. After
a failure the store leaves Redis alone for a few seconds (every lookup is a miss, every write skipped):
the cache degrades to no cache, never to an error. One warning line per outage, one info line when it
answers again; every failed call is reported (``on_error``) and so is Redis's health (``health``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from vlserve.observability.redis_health import RedisHealth

log = logging.getLogger("vlserve.cache")

T = TypeVar("T")

CALL_TIMEOUT_S = 0.5
BACKOFF_S = 3.0


class RedisStore:
    name = "redis"

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        ttl_s: float,
        health: RedisHealth | None = None,
        on_error: Callable[[], None] = lambda: None,
        timeout_s: float = CALL_TIMEOUT_S,
        backoff_s: float | None = None,  # BACKOFF_S
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._health = health
        self._on_error = on_error
        self._timeout_s = timeout_s
        self._backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        self._resting_until = 0.0  # monotonic time before which Redis is not asked
        self._down = False  # inside an outage (warned once; an info line when it ends)

    @classmethod
    def from_url(cls, url: str, **options: object) -> RedisStore:
        """A store on the Redis at ``url`` (no connection yet; the rate limiter has checked it at start)."""
        client = redis.from_url(
            url, socket_connect_timeout=CALL_TIMEOUT_S, socket_timeout=CALL_TIMEOUT_S, retry=Retry(NoBackoff(), 0)
        )
        return cls(client, **options)  # type: ignore[arg-type]

    async def get(self, key: str) -> bytes | None:
        return await self._call(lambda: self._redis.get(self._prefix + key))

    async def set(self, key: str, value: bytes) -> None:
        await self._call(lambda: self._redis.set(self._prefix + key, value, px=self._ttl_ms))

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T | None:
        if time.monotonic() < self._resting_until:
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await operation()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        if self._down:
            self._down = False
            log.info("response cache: Redis answers again; cached answers are shared again")
        self._report(True)
        return result

    def _failed(self, exc: BaseException) -> None:
        self._resting_until = time.monotonic() + self._backoff_s
        self._on_error()
        self._report(False)
        if not self._down:
            self._down = True
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("response cache: Redis cannot be reached, answering without the cache until it can: %s", reason)

    def _report(self, ok: bool) -> None:
        if self._health is not None:
            self._health.report(ok)

    async def close(self) -> None:
        await self._redis.aclose()
