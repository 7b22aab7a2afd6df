"""The Redis limiter against the real Redis at 127.0.0.1:6379: servers sharing one Redis share the limits,
a server that dies mid-request does not keep its slots, and Redis lost is a clear 503 (fail closed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from typer.testing import CliRunner

from tests.e2e.server import free_port
from tests.security.test_ratelimit import Clock, key
from tests.support.redis_store import REDIS_URL, redis_prefix
from vlserve.cli import app
from vlserve.errors import QuotaExceededError, ServiceUnavailableError
from vlserve.security.ratelimit import TokensInFlightError
from vlserve.security.ratelimit_redis import RedisLimiter, check_reachable


@pytest.fixture
def prefix() -> Iterator[str]:
    yield from redis_prefix()


def test_two_servers_share_the_limits(prefix: str) -> None:
    async def main() -> None:
        clock = Clock()
        one = await RedisLimiter.connect(REDIS_URL, prefix=prefix, clock=clock)
        two = await RedisLimiter.connect(REDIS_URL, prefix=prefix, clock=clock)
        try:
            rpm = key("key_rpm", rpm=3)
            await one.acquire(rpm)
            await two.acquire(rpm)
            await one.acquire(rpm)
            with pytest.raises(QuotaExceededError, match="3 requests per minute"):
                await two.acquire(rpm)

            slots = key("key_slots", concurrent=1)
            lease = await one.acquire(slots)
            with pytest.raises(QuotaExceededError, match="in progress"):
                await two.acquire(slots)
            await one.release(lease, 0)
            await two.acquire(slots)

            budget = key("key_tokens", tokens=100)
            await one.release(await one.acquire(budget), 70)
            await two.charge(budget, 30)
            with pytest.raises(QuotaExceededError, match="100 tokens for today"):
                await two.acquire(budget)
            with pytest.raises(QuotaExceededError):
                await one.check_tokens(budget)
        finally:
            await one.close()
            await two.close()

    asyncio.run(main())


def test_concurrent_admissions_never_exceed_the_limit(prefix: str) -> None:
    """Many requests at once through two servers: the script is atomic, so exactly the limit gets in."""

    async def main() -> None:
        limiters = [await RedisLimiter.connect(REDIS_URL, prefix=prefix) for _ in range(2)]
        try:
            five = key("key_burst", rpm=5, concurrent=5)
            tries = [limiters[i % 2].acquire(five) for i in range(40)]
            results = await asyncio.gather(*tries, return_exceptions=True)
            admitted = [r for r in results if not isinstance(r, BaseException)]
            assert len(admitted) == 5
            assert all(isinstance(r, QuotaExceededError) for r in results if isinstance(r, BaseException))
        finally:
            for limiter in limiters:
                await limiter.close()

    asyncio.run(main())


def test_a_dead_servers_slots_expire(prefix: str) -> None:
    async def main() -> None:
        clock = Clock()
        dying = await RedisLimiter.connect(REDIS_URL, prefix=prefix, clock=clock, slot_ttl_s=30)
        alive = await RedisLimiter.connect(REDIS_URL, prefix=prefix, clock=clock, slot_ttl_s=30)
        try:
            one = key("key_one", concurrent=1)
            await dying.acquire(one)
            await dying.close()  # killed mid-request: never released, no longer renewed
            with pytest.raises(QuotaExceededError):
                await alive.acquire(one)
            clock.at(29)
            with pytest.raises(QuotaExceededError):
                await alive.acquire(one)
            clock.at(31)  # past the slot's expiry: dropped on the next admission
            await alive.acquire(one)
        finally:
            await alive.close()

    asyncio.run(main())


def test_a_long_request_keeps_its_slot(prefix: str) -> None:
    """The server holding a slot pushes its expiry forward while the request runs (a long stream)."""

    async def main() -> None:
        holder = await RedisLimiter.connect(REDIS_URL, prefix=prefix, slot_ttl_s=0.3)
        other = await RedisLimiter.connect(REDIS_URL, prefix=prefix, slot_ttl_s=0.3)
        try:
            one = key("key_long", concurrent=1)
            lease = await holder.acquire(one)
            await asyncio.sleep(1.0)  # over three times the expiry
            with pytest.raises(QuotaExceededError):
                await other.acquire(one)
            await holder.release(lease, 0)
            await other.acquire(one)
        finally:
            await holder.close()
            await other.close()

    asyncio.run(main())


def test_concurrent_reservations_never_overspend_the_tokens(prefix: str) -> None:
    """Generations starting at once through two servers: while the 100 tokens of a day are not reserved or
    used, one more 60-token reservation may be made, and only one: two in all, so at most 20 over the budget."""

    async def main() -> None:
        limiters = [await RedisLimiter.connect(REDIS_URL, prefix=prefix) for _ in range(2)]
        try:
            budget = key("key_spend", tokens=100)
            tries = [limiters[i % 2].reserve(budget, 60) for i in range(20)]
            results = await asyncio.gather(*tries, return_exceptions=True)
            reserved = [r for r in results if not isinstance(r, BaseException)]
            assert len(reserved) == 2
            assert all(isinstance(r, TokensInFlightError) for r in results if isinstance(r, BaseException))
            for reservation in reserved:
                await limiters[0].settle(reservation, 60)  # any server may settle
            with pytest.raises(QuotaExceededError, match="120 used"):
                await limiters[1].reserve(budget, 60)
        finally:
            for limiter in limiters:
                await limiter.close()

    asyncio.run(main())


def test_a_dead_servers_reservations_expire_and_a_live_ones_are_renewed(prefix: str) -> None:
    async def main() -> None:
        clock = Clock()
        dying = await RedisLimiter.connect(REDIS_URL, prefix=prefix, clock=clock, slot_ttl_s=30)
        alive = await RedisLimiter.connect(REDIS_URL, prefix=prefix, clock=clock, slot_ttl_s=30)
        try:
            budget = key("key_dead", tokens=100)
            await dying.reserve(budget, 100)
            await dying.close()  # killed mid-generation: never settled, no longer renewed
            with pytest.raises(TokensInFlightError, match="100 reserved"):
                await alive.reserve(budget, 10)
            clock.at(31)  # past the reservation's expiry: dropped on the next check
            await alive.check_tokens(budget)
            await alive.reserve(budget, 10)
        finally:
            await alive.close()

        holder = await RedisLimiter.connect(REDIS_URL, prefix=prefix, slot_ttl_s=0.3)
        other = await RedisLimiter.connect(REDIS_URL, prefix=prefix, slot_ttl_s=0.3)
        try:
            budget = key("key_renewed", tokens=100)
            reservation = await holder.reserve(budget, 100)
            await asyncio.sleep(1.0)  # over three times the expiry: the holder pushed it forward
            with pytest.raises(TokensInFlightError):
                await other.reserve(budget, 10)
            await holder.settle(reservation, 30)
            await other.reserve(budget, 10)
        finally:
            await holder.close()
            await other.close()

    asyncio.run(main())


def test_unreachable_redis_at_start_is_one_clear_error() -> None:
    port = free_port()  # nothing listens there

    async def main() -> None:
        with pytest.raises(ServiceUnavailableError) as caught:
            await RedisLimiter.connect(f"redis://:hunter2@127.0.0.1:{port}/0")
        message = caught.value.message
        assert f"cannot reach Redis at 127.0.0.1:{port}" in message and "VLSERVE_REDIS_URL" in message
        assert "hunter2" not in message and "\n" not in message

    asyncio.run(main())


def test_serve_with_an_unreachable_redis_stops_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("VLSERVE_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("VLSERVE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "--port", str(free_port())])
    assert result.exit_code == 2
    assert "cannot serve: cannot reach Redis at 127.0.0.1:" in " ".join(result.output.split())
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert not (tmp_path / "vlserve.db").exists()  # stopped before the database was touched


def test_a_url_that_is_not_redis_is_named() -> None:
    with pytest.raises(ServiceUnavailableError, match="VLSERVE_REDIS_URL is not a Redis URL"):
        check_reachable("http://127.0.0.1:6379")


@contextlib.asynccontextmanager
async def redis_proxy(port: int) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """A loopback TCP proxy to the local Redis on ``port``; the yielded function cuts it (Redis lost)."""
    pipes: list[asyncio.Task] = []
    writers: list[asyncio.StreamWriter] = []

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        writers.extend([writer, up_writer])
        pipes.extend([asyncio.create_task(pump(reader, up_writer)), asyncio.create_task(pump(up_reader, writer))])

    server = await asyncio.start_server(connect, "127.0.0.1", port)

    async def cut() -> None:
        server.close()
        for writer in writers:
            writer.close()
        for pipe in pipes:
            pipe.cancel()
        await server.wait_closed()

    try:
        yield cut
    finally:
        await cut()


def test_redis_lost_while_running_fails_closed(prefix: str) -> None:
    port = free_port()

    async def main() -> None:
        async with redis_proxy(port) as cut:
            limiter = await RedisLimiter.connect(f"redis://127.0.0.1:{port}/0", prefix=prefix)
            try:
                limited = key("key_lost", rpm=10, concurrent=2, tokens=1000)
                lease = await limiter.acquire(limited)
                await cut()
                await limiter.release(lease, 10)  # logged; the slot expires by itself
                with pytest.raises(ServiceUnavailableError) as caught:
                    await asyncio.wait_for(limiter.acquire(limited), 10)
                error = caught.value
                assert (error.status_code, error.code) == (503, "rate_limits_unavailable")
                assert "Redis" in error.message and error.headers["Retry-After"] == "5"
                with pytest.raises(ServiceUnavailableError):
                    await limiter.check_tokens(limited)
            finally:
                await limiter.close()

    asyncio.run(main())
