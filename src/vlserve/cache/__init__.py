"""The response cache's storage: one interface (:class:`CacheStore`), in this process or in Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from vlserve.cache.memory import MemoryStore
from vlserve.cache.store import CacheStore
from vlserve.observability.redis_health import RedisHealth
from vlserve.settings import Settings

__all__ = ["CacheStore", "MemoryStore", "open_store"]

CACHE_NAMESPACE = "cache:"


@contextlib.asynccontextmanager
async def open_store(
    settings: Settings, *, health: RedisHealth | None = None, on_error: Callable[[], None] = lambda: None
) -> AsyncIterator[CacheStore | None]:
    """The store ``settings`` ask for: None when the cache is off (VLSERVE_CACHE=0), Redis when VLSERVE_REDIS_URL
    is set (keys under VLSERVE_REDIS_PREFIX + ``cache:``), else in this process; closed on exit."""
    if not settings.cache:
        yield None
        return
    store: CacheStore
    if settings.redis_url:
        from vlserve.cache.redis import RedisStore

        store = RedisStore.from_url(
            settings.redis_url, prefix=settings.redis_prefix + CACHE_NAMESPACE, ttl_s=settings.cache_ttl_s,
            health=health, on_error=on_error,
        )  # fmt: skip
    else:
        store = MemoryStore(
            max_entries=settings.cache_max_entries, max_bytes=settings.cache_max_bytes, ttl_s=settings.cache_ttl_s
        )
    try:
        yield store
    finally:
        await store.close()
