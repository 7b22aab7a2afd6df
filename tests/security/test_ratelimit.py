"""Per-key limits, the same for the in-process limiter and the Redis one: the sliding minute, requests in
flight, tokens per UTC day, and the 429s and x-ratelimit-* headers a client sees (injected clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from tests.support.redis_store import REDIS_URL, redis_prefix
from vlserve.errors import QuotaExceededError, RateLimitError
from vlserve.security.principal import Principal
from vlserve.security.ratelimit import Limiter, LocalLimiter, TokensInFlightError, format_reset
from vlserve.security.ratelimit_redis import RedisLimiter

NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def at(self, seconds_after_noon: float) -> None:
        self.now = NOON + seconds_after_noon


def key(key_id: str = "key_a", *, rpm: int = 0, concurrent: int = 0, tokens: int = 0) -> Principal:
    return Principal(key_id, key_id, frozenset({"chat"}), rpm, concurrent, tokens)


MakeLimiter = Callable[[Clock], Awaitable[Limiter]]


@pytest.fixture(params=["local", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> MakeLimiter:
    if request.param == "local":

        async def local(clock: Clock) -> Limiter:
            return LocalLimiter(clock=clock)

        return local
    prefix = next(gen := redis_prefix())
    request.addfinalizer(lambda: next(gen, None))

    async def shared(clock: Clock) -> Limiter:
        return await RedisLimiter.connect(REDIS_URL, prefix=prefix, clock=clock)

    return shared


def run(make_limiter: MakeLimiter, scenario: Callable[[Limiter, Clock], Awaitable[None]]) -> None:
    async def main() -> None:
        clock = Clock()
        limiter = await make_limiter(clock)
        try:
            await scenario(limiter, clock)
        finally:
            await limiter.close()

    asyncio.run(main())


async def refused(limiter: Limiter, principal: Principal) -> QuotaExceededError:
    with pytest.raises(QuotaExceededError) as caught:
        await limiter.acquire(principal)
    return caught.value


def test_requests_per_minute_is_a_sliding_window(make_limiter: MakeLimiter) -> None:
    async def scenario(limiter: Limiter, clock: Clock) -> None:
        three = key(rpm=3)
        remaining = []
        for second in (0, 10, 20):
            clock.at(second)
            lease = await limiter.acquire(three)
            remaining.append(lease.headers["x-ratelimit-remaining-requests"])
            assert lease.headers["x-ratelimit-limit-requests"] == "3"
        assert remaining == ["2", "1", "0"]

        clock.at(30)
        error = await refused(limiter, three)
        assert (error.status_code, error.code, error.error_type) == (429, "rate_limit_exceeded", "rate_limit_error")
        assert not isinstance(error, RateLimitError)  # not the busy engine's queue_full
        assert "3 requests per minute" in error.message and "key_a" in error.message
        assert error.headers["Retry-After"] == "30"  # when the request made at second 0 leaves the window
        assert error.headers["x-ratelimit-remaining-requests"] == "0"
        assert error.headers["x-ratelimit-reset-requests"] == "30s"

        clock.at(59.5)
        assert (await refused(limiter, three)).headers["Retry-After"] == "1"
        clock.at(60)  # the first request is a minute old: one request may start
        lease = await limiter.acquire(three)
        assert lease.headers["x-ratelimit-remaining-requests"] == "0"
        assert lease.headers["x-ratelimit-reset-requests"] == "10s"
        clock.at(61)
        assert (await refused(limiter, three)).headers["Retry-After"] == "9"  # the one made at second 10
        clock.at(200)  # all gone
        assert (await limiter.acquire(three)).headers["x-ratelimit-remaining-requests"] == "2"

    run(make_limiter, scenario)


def test_refused_requests_do_not_count(make_limiter: MakeLimiter) -> None:
    async def scenario(limiter: Limiter, clock: Clock) -> None:
        one = key(rpm=1)
        await limiter.acquire(one)
        for second in range(1, 59):  # a client hammering while refused is not locked out for longer
            clock.at(second)
            await refused(limiter, one)
        clock.at(60)
        await limiter.acquire(one)

    run(make_limiter, scenario)


def test_concurrent_requests_are_freed_when_released(make_limiter: MakeLimiter) -> None:
    async def scenario(limiter: Limiter, clock: Clock) -> None:
        two = key(concurrent=2)
        first = await limiter.acquire(two)
        second = await limiter.acquire(two)
        error = await refused(limiter, two)
        assert "2 requests in progress" in error.message and "concurrent" in error.message
        assert error.headers["Retry-After"] == "1"
        assert not any(name.startswith("x-ratelimit") for name in first.headers)  # no OpenAI header for this limit

        await limiter.release(first, 0)
        await limiter.release(first, 0)  # released twice (an error path and the normal end): still one slot
        third = await limiter.acquire(two)
        await refused(limiter, two)
        await limiter.release(second, 0)
        await limiter.release(third, 0)
        await limiter.acquire(two)
        await limiter.acquire(two)

    run(make_limiter, scenario)


def test_tokens_per_day_refuse_once_spent_until_the_next_utc_day(make_limiter: MakeLimiter) -> None:
    async def scenario(limiter: Limiter, clock: Clock) -> None:
        budget = key(tokens=100)
        lease = await limiter.acquire(budget)
        assert lease.headers["x-ratelimit-limit-tokens"] == "100"
        assert lease.headers["x-ratelimit-remaining-tokens"] == "100"
        assert lease.headers["x-ratelimit-reset-tokens"] == "12h0m0s"  # until 00:00 UTC
        await limiter.release(lease, 60)

        lease = await limiter.acquire(budget)
        assert lease.headers["x-ratelimit-remaining-tokens"] == "40"
        await limiter.release(lease, 60)  # crosses the budget: it completed, and it counts

        clock.at(3600)
        error = await refused(limiter, budget)
        assert "100 tokens for today" in error.message and "120 used" in error.message
        assert "00:00 UTC" in error.message
        assert error.headers["Retry-After"] == str(11 * 3600)
        assert error.headers["x-ratelimit-remaining-tokens"] == "0"
        assert error.headers["x-ratelimit-reset-tokens"] == "11h0m0s"
        with pytest.raises(QuotaExceededError):
            await limiter.check_tokens(budget)
        reading = await limiter.acquire(budget, spends_tokens=False)  # fetching a result is still allowed
        assert reading.headers["x-ratelimit-remaining-tokens"] == "0"

        clock.at(12 * 3600 + 1)  # 00:00:01 UTC the next day
        lease = await limiter.acquire(budget)
        assert lease.headers["x-ratelimit-remaining-tokens"] == "100"
        await limiter.check_tokens(budget)

    run(make_limiter, scenario)


def test_work_outside_requests_is_charged(make_limiter: MakeLimiter) -> None:
    async def scenario(limiter: Limiter, clock: Clock) -> None:
        budget = key(tokens=50)
        await limiter.check_tokens(budget)
        await limiter.charge(budget, 30)
        assert (await limiter.acquire(budget)).headers["x-ratelimit-remaining-tokens"] == "20"
        await limiter.charge(budget, 20)
        with pytest.raises(QuotaExceededError):
            await limiter.check_tokens(budget)
        await refused(limiter, budget)

    run(make_limiter, scenario)


def test_reserved_tokens_count_as_used_until_settled_with_the_real_count(make_limiter: MakeLimiter) -> None:
    """Generations running at once cannot each spend the budget: each reserves its worst case first."""

    async def scenario(limiter: Limiter, clock: Clock) -> None:
        budget = key(tokens=100)
        first = await limiter.reserve(budget, 60)
        second = await limiter.reserve(budget, 60)  # 60 of 100 reserved: one more may start
        with pytest.raises(TokensInFlightError) as caught:
            await limiter.reserve(budget, 60)  # 120 reserved: none may
        error = caught.value
        assert isinstance(error, QuotaExceededError) and error.code == "rate_limit_exceeded"
        assert "key_a" in error.message and "100 tokens for today" in error.message
        assert "0 used and 120 reserved" in error.message and "00:00 UTC, in 12h0m0s" in error.message
        assert error.headers["Retry-After"] == "1"  # reservations end with their requests, not at midnight
        assert error.headers["x-ratelimit-remaining-tokens"] == "0"
        with pytest.raises(TokensInFlightError):
            await limiter.acquire(budget)  # a new request is refused as it arrives
        with pytest.raises(TokensInFlightError):
            await limiter.check_tokens(budget)
        assert (await limiter.acquire(budget, spends_tokens=False)).headers["x-ratelimit-remaining-tokens"] == "0"

        await limiter.settle(first, 25)  # it used 25 of its 60: the rest is given back
        lease = await limiter.acquire(budget)
        assert lease.headers["x-ratelimit-remaining-tokens"] == "15"  # 100 - 25 used - 60 reserved
        await limiter.settle(second, 80)  # more than reserved (the real count wins): 105 used, over the budget
        error = await refused(limiter, budget)
        assert not isinstance(error, TokensInFlightError) and "105 used" in error.message
        with pytest.raises(QuotaExceededError, match="100 tokens for today"):
            await limiter.reserve(budget, 1)

    run(make_limiter, scenario)


def test_each_key_has_its_own_limits(make_limiter: MakeLimiter) -> None:
    async def scenario(limiter: Limiter, clock: Clock) -> None:
        a, b = key("key_a", rpm=1, tokens=10), key("key_b", rpm=1, tokens=10)
        await limiter.release(await limiter.acquire(a), 10)
        await refused(limiter, a)
        lease = await limiter.acquire(b)
        assert lease.headers["x-ratelimit-remaining-tokens"] == "10"

    run(make_limiter, scenario)


def test_tokens_are_checked_first() -> None:
    """A key over several limits hears about the one that lasts longest to wait for."""

    async def main() -> None:
        clock = Clock()
        limiter = LocalLimiter(clock=clock)
        both = key(rpm=1, tokens=5)
        await limiter.release(await limiter.acquire(both), 5)
        error = await refused(limiter, both)
        assert "tokens for today" in error.message
        assert error.headers["x-ratelimit-remaining-requests"] == "0"

    asyncio.run(main())


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (1, "1s"), (17.2, "18s"), (60, "1m0s"), (361, "6m1s"), (5 * 3600 + 3 * 60, "5h3m0s")],
)
def test_reset_times_are_written_like_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text
