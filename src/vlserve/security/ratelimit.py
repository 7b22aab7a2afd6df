"""Per-key limits: requests per minute, concurrent requests and tokens per UTC day.

Requests per minute is a sliding window: a key may start ``requests_per_minute`` requests in any 60 seconds,
and a refused request is not counted. Concurrent requests counts requests whose response has not ended yet.
Tokens per day adds up the tokens a key's answers used since 00:00 UTC; once they reach the budget, new
requests that spend tokens (POST: inference, document submission) are refused until the next UTC day; the
request that crosses the budget completes, and reads (results, status, cancel) stay allowed. So that requests
running at once cannot each spend the whole budget, every generation first reserves its worst case
(:meth:`Limiter.reserve`, see ``token_budget``): reserved tokens count as used until the generation ends and
its reservation is settled with the tokens it really used; a generation starts only while today's used and
reserved tokens are below the budget, so the budget is never exceeded by more than one reservation.

A :class:`Limiter` keeps these counts: :class:`LocalLimiter` in this process, or the Redis one
(``ratelimit_redis``) shared by several servers. Both decide with the same functions below, so they give
the same answers, the same messages and the same ``x-ratelimit-*`` headers (OpenAI's names and formats).
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from vlserve.errors import QuotaExceededError
from vlserve.observability.redis_health import RedisHealth
from vlserve.security.principal import Principal
from vlserve.settings import Settings

WINDOW_S = 60.0


@dataclass(frozen=True)
class Snapshot:
    """What a limiter knows about a key at one moment, before the request being decided."""

    now: float  # seconds since the epoch
    requests: int  # requests started in the last minute
    oldest: float | None  # when the oldest of them started
    in_flight: int
    tokens: int  # tokens used today (UTC)
    reserved: int = 0  # tokens reserved by generations in progress


@dataclass(frozen=True)
class Reservation:
    """Tokens set aside for one generation: hand it back to :meth:`Limiter.settle` when the generation ends."""

    principal: Principal
    reservation_id: str
    tokens: int


class TokensInFlightError(QuotaExceededError):
    """Today's tokens are not spent, but the key's requests in progress have reserved the rest of them: the
    budget may come back when they end (soon), unlike a spent one (at 00:00 UTC)."""


@dataclass(frozen=True)
class Lease:
    """An admitted request: hand it back to :meth:`Limiter.release` when its response has ended."""

    principal: Principal
    lease_id: str
    headers: dict[str, str] = field(default_factory=dict)  # x-ratelimit-* for the response


class Limiter(Protocol):
    async def acquire(self, principal: Principal, *, spends_tokens: bool = True) -> Lease:
        """Admit one request of ``principal``, or raise QuotaExceededError (429) naming the limit. A request
        that cannot spend tokens (reading a result) is not refused for the day's tokens."""
        ...

    async def release(self, lease: Lease, tokens_used: int) -> None:
        """The request's response ended: free its slot, add its tokens to today's count (slot release idempotent)."""
        ...

    async def check_tokens(self, principal: Principal) -> None:
        """Raise QuotaExceededError when the key's used and reserved tokens reach today's budget (work outside a
        request, before it starts; TokensInFlightError when reservations make the difference)."""
        ...

    async def reserve(self, principal: Principal, tokens: int) -> Reservation:
        """Set ``tokens`` aside for a generation about to start (its worst case), at once with the check: raise
        QuotaExceededError when today's used and reserved tokens already reach the budget (TokensInFlightError
        when reservations make the difference)."""
        ...

    async def settle(self, reservation: Reservation, tokens_used: int) -> None:
        """The generation ended: drop its reservation and count the tokens it used, in one step (call once)."""
        ...

    async def charge(self, principal: Principal, tokens: int) -> None:
        """Add ``tokens`` to the key's count for today (work done outside a request: document pages)."""
        ...

    async def close(self) -> None: ...


def has_limits(principal: Principal | None) -> bool:
    return principal is not None and (
        principal.requests_per_minute > 0 or principal.concurrent_requests > 0 or principal.tokens_per_day > 0
    )


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def until_next_day(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    midnight = datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
    return midnight.timestamp() - now


def format_reset(seconds: float) -> str:
    """A wait as OpenAI writes it in x-ratelimit-reset-*: "250ms", "17s", "6m0s", "5h3m12s"."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def limit_headers(principal: Principal, snap: Snapshot, *, admitted: bool) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the limits the key has; counts include the request if admitted."""
    headers: dict[str, str] = {}
    if principal.requests_per_minute > 0:
        count = snap.requests + (1 if admitted else 0)
        oldest = snap.oldest if snap.oldest is not None else (snap.now if admitted else None)
        reset = 0.0 if oldest is None else oldest + WINDOW_S - snap.now
        headers["x-ratelimit-limit-requests"] = str(principal.requests_per_minute)
        headers["x-ratelimit-remaining-requests"] = str(max(0, principal.requests_per_minute - count))
        headers["x-ratelimit-reset-requests"] = format_reset(reset)
    if principal.tokens_per_day > 0:
        headers["x-ratelimit-limit-tokens"] = str(principal.tokens_per_day)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, principal.tokens_per_day - snap.tokens - snap.reserved))
        headers["x-ratelimit-reset-tokens"] = format_reset(until_next_day(snap.now))
    return headers


def token_refusal(principal: Principal, snap: Snapshot) -> QuotaExceededError | None:
    """The 429 when today's used and reserved tokens reach the key's budget: spent (until 00:00 UTC), or
    reserved by its requests in progress (TokensInFlightError: retry when they have ended)."""
    budget = principal.tokens_per_day
    if budget <= 0 or snap.tokens + snap.reserved < budget:
        return None
    wait = until_next_day(snap.now)
    if snap.tokens >= budget:
        message = (
            f"API key {principal.key_id} has used its {budget} tokens for today "
            f"({snap.tokens} used); the budget resets at 00:00 UTC, in {format_reset(wait)}"
        )
        return _refused(message, principal, snap, wait)
    message = (
        f"API key {principal.key_id} has {budget} tokens for today, {snap.tokens} used and {snap.reserved} "
        f"reserved by its requests in progress; retry when they have ended (what they do not use is given "
        f"back), or after the budget resets at 00:00 UTC, in {format_reset(wait)}"
    )
    headers = {"Retry-After": _retry_after(1.0), **limit_headers(principal, snap, admitted=False)}
    return TokensInFlightError(message, headers=headers)


def refusal(principal: Principal, snap: Snapshot, *, spends_tokens: bool = True) -> QuotaExceededError | None:
    """The 429 for a request of ``principal`` given ``snap``, or None when it may start.

    Checked in this order (the Redis script checks in the same one): tokens today (requests that spend
    tokens only), requests in the last minute, requests in flight."""
    refused = token_refusal(principal, snap) if spends_tokens else None
    if refused is not None:
        return refused
    rpm = principal.requests_per_minute
    if rpm > 0 and snap.requests >= rpm:
        wait = (snap.oldest if snap.oldest is not None else snap.now) + WINDOW_S - snap.now
        message = (
            f"API key {principal.key_id} is over its limit of {rpm} requests per minute; "
            f"the next request is allowed in {format_reset(wait)}"
        )
        return _refused(message, principal, snap, wait)
    limit = principal.concurrent_requests
    if limit > 0 and snap.in_flight >= limit:
        message = (
            f"API key {principal.key_id} already has {snap.in_flight} requests in progress, its limit of "
            f"concurrent requests ({limit}); retry when one of them has ended"
        )
        return _refused(message, principal, snap, 1.0)
    return None


def _refused(message: str, principal: Principal, snap: Snapshot, wait: float) -> QuotaExceededError:
    headers = {"Retry-After": _retry_after(wait), **limit_headers(principal, snap, admitted=False)}
    return QuotaExceededError(message, headers=headers)


def new_lease_id() -> str:
    return uuid.uuid4().hex


class LocalLimiter:
    """The limits of one server process, kept in memory (a restart forgets them)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._started: dict[str, deque[float]] = {}  # key id -> start times of its requests in the window
        self._in_flight: dict[str, set[str]] = {}  # key id -> lease ids of its requests not yet ended
        self._tokens: dict[str, tuple[str, int]] = {}  # key id -> (UTC day, tokens used that day)
        self._reserved: dict[str, dict[str, int]] = {}  # key id -> reservation id -> tokens it sets aside

    def _snapshot(self, key_id: str, now: float) -> Snapshot:
        started = self._started.get(key_id)
        while started and started[0] <= now - WINDOW_S:
            started.popleft()
        if started is not None and not started:
            del self._started[key_id]
            started = None
        return Snapshot(
            now=now,
            requests=len(started) if started else 0,
            oldest=started[0] if started else None,
            in_flight=len(self._in_flight.get(key_id, ())),
            tokens=self._used(key_id, utc_day(now)),
            reserved=self._reserved_total(key_id),
        )

    def _used(self, key_id: str, day: str) -> int:
        counted_day, used = self._tokens.get(key_id, (day, 0))
        return used if counted_day == day else 0

    def _reserved_total(self, key_id: str) -> int:
        return sum(self._reserved.get(key_id, {}).values())

    async def acquire(self, principal: Principal, *, spends_tokens: bool = True) -> Lease:
        now = self._clock()
        snap = self._snapshot(principal.key_id, now)
        refused = refusal(principal, snap, spends_tokens=spends_tokens)
        if refused is not None:
            raise refused
        lease = Lease(principal, new_lease_id(), limit_headers(principal, snap, admitted=True))
        if principal.requests_per_minute > 0:
            self._started.setdefault(principal.key_id, deque()).append(now)
        if principal.concurrent_requests > 0:
            self._in_flight.setdefault(principal.key_id, set()).add(lease.lease_id)
        return lease

    async def release(self, lease: Lease, tokens_used: int) -> None:
        key_id = lease.principal.key_id
        slots = self._in_flight.get(key_id)
        if slots is not None:
            slots.discard(lease.lease_id)
            if not slots:
                del self._in_flight[key_id]
        await self.charge(lease.principal, tokens_used)

    def _token_snapshot(self, key_id: str) -> Snapshot:
        now = self._clock()
        used, reserved = self._used(key_id, utc_day(now)), self._reserved_total(key_id)
        return Snapshot(now=now, requests=0, oldest=None, in_flight=0, tokens=used, reserved=reserved)

    async def check_tokens(self, principal: Principal) -> None:
        refused = token_refusal(principal, self._token_snapshot(principal.key_id))
        if refused is not None:
            raise refused

    async def reserve(self, principal: Principal, tokens: int) -> Reservation:
        refused = token_refusal(principal, self._token_snapshot(principal.key_id))
        if refused is not None:
            raise refused
        reservation = Reservation(principal, new_lease_id(), max(0, tokens))
        self._reserved.setdefault(principal.key_id, {})[reservation.reservation_id] = reservation.tokens
        return reservation

    async def settle(self, reservation: Reservation, tokens_used: int) -> None:
        key_id = reservation.principal.key_id
        held = self._reserved.get(key_id)
        if held is not None:
            held.pop(reservation.reservation_id, None)
            if not held:
                del self._reserved[key_id]
        await self.charge(reservation.principal, tokens_used)

    async def charge(self, principal: Principal, tokens: int) -> None:
        if tokens > 0 and principal.tokens_per_day > 0:  # counted on the day the work ended
            day = utc_day(self._clock())
            self._tokens[principal.key_id] = (day, self._used(principal.key_id, day) + tokens)

    async def close(self) -> None:
        self._started.clear()
        self._in_flight.clear()
        self._tokens.clear()
        self._reserved.clear()


@contextlib.asynccontextmanager
async def open_limiter(settings: Settings, *, health: RedisHealth | None = None) -> AsyncIterator[Limiter]:
    """The limiter ``settings`` ask for: in Redis when VLSERVE_REDIS_URL is set (ServiceUnavailableError,
    one line, when it cannot be reached), else in this process; closed on exit."""
    if settings.redis_url:
        from vlserve.security.ratelimit_redis import RedisLimiter

        limiter: Limiter = await RedisLimiter.connect(settings.redis_url, prefix=settings.redis_prefix, health=health)
    else:
        limiter = LocalLimiter()
    try:
        yield limiter
    finally:
        await limiter.close()
