"""The Redis backend against the local Redis (its own key prefix per test), and Redis lost while serving."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis

import vlserve.cache.redis as redis_backend
from tests.api.test_response_cache import CHAT, HEADER, chat
from tests.cache.fakes import CountingEngine
from tests.observability.test_metrics import scrape, value
from tests.support.redis_store import REDIS_URL, redis_prefix
from tests.support.tcp_proxy import tcp_proxy
from vlserve.cache.redis import RedisStore
from vlserve.observability.redis_health import RedisHealth

prefix = pytest.fixture(redis_prefix)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vlserve.cache" and r.levelno == logging.WARNING]


def test_entries_are_stored_under_the_prefix_with_the_ttl(prefix: str) -> None:
    async def main() -> None:
        store = RedisStore.from_url(REDIS_URL, prefix=prefix + "cache:", ttl_s=120)
        try:
            assert await store.get("k") is None
            await store.set("k", b"\x00answer")
            assert await store.get("k") == b"\x00answer"
        finally:
            await store.close()

    asyncio.run(main())
    direct = redis.Redis.from_url(REDIS_URL)
    try:
        assert 119_000 < direct.pttl(f"{prefix}cache:k") <= 120_000
    finally:
        direct.close()


def test_a_hanging_redis_costs_a_call_at_most_its_timeout_and_warns_once(prefix: str, caplog) -> None:
    health, errors = RedisHealth(), []

    async def main() -> None:
        with tcp_proxy(6379) as proxy:
            store = RedisStore.from_url(
                f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, ttl_s=60, health=health,
                on_error=lambda: errors.append(1), backoff_s=0.2,
            )  # fmt: skip
            try:
                await store.set("k", b"v")
                proxy.hold()
                started = time.monotonic()
                assert await store.get("k") is None
                assert time.monotonic() - started < 1.0
                assert not health.up and errors == [1]
                assert await store.get("k") is None  # resting: Redis is not asked
                assert errors == [1]
                await asyncio.sleep(0.25)
                assert await store.get("k") is None and errors == [1, 1]  # asked again, failed again
                proxy.restore()
                for _ in range(20):  # a connection broken by the outage may fail once more
                    if await store.get("k") == b"v":
                        break
                    await asyncio.sleep(0.25)
                assert health.up
            finally:
                await store.close()

    caplog.set_level(logging.INFO, logger="vlserve.cache")
    asyncio.run(main())
    assert len(warnings_of(caplog)) == 1 and "Redis cannot be reached" in warnings_of(caplog)[0]
    assert any("answers again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_redis_lost_while_serving_degrades_to_no_cache(make_client, prefix: str, caplog, monkeypatch) -> None:
    monkeypatch.setattr(redis_backend, "BACKOFF_S", 0.2)
    caplog.set_level(logging.INFO, logger="vlserve.cache")
    engine = CountingEngine()
    with tcp_proxy(6379) as proxy:
        client = make_client(engine, redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_prefix=prefix)
        outcomes = [client.post(CHAT, json=chat()).headers[HEADER] for _ in range(2)]
        assert outcomes == ["miss", "hit"], warnings_of(caplog)
        other = make_client(CountingEngine(), redis_url=REDIS_URL, redis_prefix=prefix)  # a second server
        assert other.post(CHAT, json=chat()).headers[HEADER] == "hit"
        samples = scrape(client)
        assert (
            value(samples, "vlserve_redis_up") == 1
            and value(samples, "vlserve_cache_errors_total", backend="redis") == 0
        )
        assert ("vlserve_cache_entries", ()) not in samples  # the in-process gauge only

        proxy.cut()
        for i in range(4):
            response = client.post(CHAT, json=chat() if i % 2 else chat(f"new {i}"))
            assert response.status_code == 200 and response.headers[HEADER] == "miss"
            time.sleep(0.1)
        samples = scrape(client)
        assert value(samples, "vlserve_redis_up") == 0
        assert value(samples, "vlserve_cache_errors_total", backend="redis") >= 1
        assert len(warnings_of(caplog)) == 1

        proxy.restore()
        outcomes = []
        for _ in range(20):
            outcomes.append(client.post(CHAT, json=chat()).headers[HEADER])
            if outcomes[-1] == "hit":
                break
            time.sleep(0.25)
        assert outcomes[-1] == "hit" and value(scrape(client), "vlserve_redis_up") == 1
