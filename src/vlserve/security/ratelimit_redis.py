"""Per-key limits kept in Redis, so every server sharing one Redis shares them (VLSERVE_REDIS_URL).

Four keys per API key, with one hash tag so a Redis Cluster keeps them on one node:
- ``<prefix>{key_id}:requests``: a sorted set of request ids scored by start time (ms), the sliding minute;
- ``<prefix>{key_id}:slots``: a sorted set of lease ids scored by expiry time (ms), the requests in flight.
  The server holding a lease pushes its expiry forward while the request runs; a server that dies stops
  doing so, and its slots are dropped once they expire, so a crash never leaks a slot for good;
- ``<prefix>{key_id}:reserved``: a sorted set of ``<reservation id>:<tokens>`` scored by expiry time (ms),
  the tokens set aside by generations in progress, renewed and expired like the slots;
- ``<prefix>{key_id}:tokens:<UTC day>``: tokens used that day, kept for two days.

Each admission and each reservation is one Lua script (clean up, check, record), atomic however many servers
ask at once; a reservation is settled (dropped, its real tokens counted) in one transaction. The decision is
the same as :class:`LocalLimiter`'s (``refusal``, ``token_refusal``), from the counts the scripts return.

Redis lost while running: requests of keys that have limits are refused with 503 (fail closed), since the
limits can no longer be kept; keys without limits never reach Redis and are served as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import redis as sync_redis
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from vlserve.errors import QuotaExceededError, ServiceUnavailableError
from vlserve.observability.redis_health import RedisHealth
from vlserve.security.principal import Principal
from vlserve.security.ratelimit import (
    WINDOW_S,
    Lease,
    Reservation,
    Snapshot,
    limit_headers,
    new_lease_id,
    refusal,
    token_refusal,
    utc_day,
)

log = logging.getLogger("vlserve.security")

TOKEN_TTL_S = 2 * 86400
WARN_EVERY_S = 10.0

# Before each script below: the tokens reserved under a key (members "<id>:<tokens>"), expired ones dropped.
RESERVED = """
local function reserved_total(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local total = 0
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    total = total + tonumber(string.match(member, ':(%d+)$'))
  end
  return total
end
"""

# KEYS: requests, slots, tokens, reserved. ARGV: now_ms, window_ms, rpm, concurrent, tokens_per_day (0: not
# checked), lease_id, slot_expiry_ms, slot_ttl_ms, 1 when the key has a token budget (its reservations are
# counted) else 0. Returns {admitted, requests, oldest_ms or -1, in_flight, tokens, reserved}.
ACQUIRE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local rpm, concurrent, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local requests = redis.call('ZCARD', KEYS[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local oldest = -1
if first[2] then oldest = tonumber(first[2]) end
local in_flight = redis.call('ZCARD', KEYS[2])
local tokens = tonumber(redis.call('GET', KEYS[3]) or '0')
local reserved = 0
if tonumber(ARGV[9]) > 0 then reserved = reserved_total(KEYS[4], now) end
local admitted = 1
if budget > 0 and tokens + reserved >= budget then admitted = 0
elseif rpm > 0 and requests >= rpm then admitted = 0
elseif concurrent > 0 and in_flight >= concurrent then admitted = 0 end
if admitted == 1 then
  if rpm > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[6])
    redis.call('PEXPIRE', KEYS[1], window)
  end
  if concurrent > 0 then
    redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
    redis.call('PEXPIRE', KEYS[2], ARGV[8])
  end
end
return {admitted, requests, oldest, in_flight, tokens, reserved}
"""

# KEYS: reserved, tokens. ARGV: now_ms, tokens_per_day, member, expiry_ms, ttl_ms.
# Returns {reserved now (1) or refused (0), tokens used, tokens reserved before this one}.
RESERVE = """
local now, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
local reserved = reserved_total(KEYS[1], now)
local tokens = tonumber(redis.call('GET', KEYS[2]) or '0')
if tokens + reserved >= budget then return {0, tokens, reserved} end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, tokens, reserved}
"""


def redacted(url: str) -> str:
    """Where ``url`` points, without its user name or password, for messages."""
    try:
        parts = urlsplit(url)
        where = parts.hostname or parts.path or "?"
        return f"{where}:{parts.port}" if parts.port else where
    except ValueError:
        return "the configured address"


def unreachable(url: str, exc: Exception) -> ServiceUnavailableError:
    if isinstance(exc, ValueError):
        return ServiceUnavailableError(
            f"VLSERVE_REDIS_URL is not a Redis URL (redis://host:6379/0, rediss://… or unix://…): {exc}"
        )
    return ServiceUnavailableError(
        f"cannot reach Redis at {redacted(url)} (VLSERVE_REDIS_URL), which keeps the rate limits: {exc}"
    )


def check_reachable(url: str) -> None:
    """Before a server starts: ServiceUnavailableError, one clear line, when the Redis at ``url`` cannot be used."""
    try:
        client = sync_redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    except ValueError as exc:
        raise unreachable(url, exc) from None
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        raise unreachable(url, exc) from None
    finally:
        client.close()


class RedisLimiter:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "vlserve:ratelimit:",
        slot_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        health: RedisHealth | None = None,  # told whether each call reached Redis (vlserve_redis_up)
    ) -> None:
        self._redis = client
        self._health = health
        self._prefix = prefix
        self._slot_ttl_s = slot_ttl_s
        self._clock = clock
        self._acquire = client.register_script(RESERVED + ACQUIRE)
        self._reserve = client.register_script(RESERVED + RESERVE)
        self._held: dict[str, Lease] = {}  # leases with a slot, whose expiry this server keeps pushing forward
        self._reservations: dict[str, Reservation] = {}  # reservations this server holds, renewed like the slots
        self._renewer: asyncio.Task | None = None
        self._warned_at = -WARN_EVERY_S

    @classmethod
    async def connect(cls, url: str, **options: object) -> RedisLimiter:
        """A limiter on the Redis at ``url``; ServiceUnavailableError (one clear line) if it cannot be reached."""
        try:
            client = redis.from_url(
                url, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 1), health_check_interval=30
            )
        except ValueError as exc:
            raise unreachable(url, exc) from None
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise unreachable(url, exc) from None
        return cls(client, **options)  # type: ignore[arg-type]

    def _keys(self, key_id: str) -> tuple[str, str]:
        base = f"{self._prefix}{{{key_id}}}"
        return f"{base}:requests", f"{base}:slots"

    def _tokens_key(self, key_id: str, day: str) -> str:
        return f"{self._prefix}{{{key_id}}}:tokens:{day}"

    def _reserved_key(self, key_id: str) -> str:
        return f"{self._prefix}{{{key_id}}}:reserved"

    @staticmethod
    def _member(reservation: Reservation) -> str:
        return f"{reservation.reservation_id}:{reservation.tokens}"

    async def acquire(self, principal: Principal, *, spends_tokens: bool = True) -> Lease:
        now = self._clock()
        requests, slots = self._keys(principal.key_id)
        lease_id = new_lease_id()
        ttl_ms = round(self._slot_ttl_s * 1000)
        budget = principal.tokens_per_day if spends_tokens else 0
        args = [
            round(now * 1000), round(WINDOW_S * 1000), principal.requests_per_minute, principal.concurrent_requests,
            budget, lease_id, round(now * 1000) + ttl_ms, 2 * ttl_ms, 1 if principal.tokens_per_day > 0 else 0,
        ]  # fmt: skip
        tokens_key, reserved_key = (
            self._tokens_key(principal.key_id, utc_day(now)),
            self._reserved_key(principal.key_id),
        )
        try:
            admitted, count, oldest, in_flight, tokens, reserved = await self._acquire(
                keys=[requests, slots, tokens_key, reserved_key], args=args
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        self._report(True)
        snap = Snapshot(
            now=now, requests=int(count), oldest=None if int(oldest) < 0 else int(oldest) / 1000,
            in_flight=int(in_flight), tokens=int(tokens), reserved=int(reserved),
        )  # fmt: skip
        if not admitted:
            raise refusal(principal, snap, spends_tokens=spends_tokens) or QuotaExceededError(
                f"API key {principal.key_id} is over one of its limits; retry shortly", headers={"Retry-After": "1"}
            )  # the second only if the script and refusal() ever disagreed
        lease = Lease(principal, lease_id, limit_headers(principal, snap, admitted=True))
        if principal.concurrent_requests > 0:
            self._held[lease_id] = lease
            self._start_renewing()
        return lease

    async def release(self, lease: Lease, tokens_used: int) -> None:
        held = self._held.pop(lease.lease_id, None)
        charge = tokens_used > 0 and lease.principal.tokens_per_day > 0
        if held is None and not charge:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if held is not None:
                    pipe.zrem(self._keys(lease.principal.key_id)[1], lease.lease_id)
                if charge:
                    self._queue_charge(pipe, lease.principal, tokens_used)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the slot expires by itself; the tokens are lost
            log.warning("rate limits: releasing a request of %s failed: %s", lease.principal.key_id, exc)

    async def check_tokens(self, principal: Principal) -> None:
        now = self._clock()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self._tokens_key(principal.key_id, utc_day(now)))
                pipe.zrangebyscore(self._reserved_key(principal.key_id), round(now * 1000), "+inf")
                used, members = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        self._report(True)
        reserved = sum(int(member.rsplit(b":", 1)[1]) for member in members)
        refused = token_refusal(principal, Snapshot(now, 0, None, 0, int(used or 0), reserved))
        if refused is not None:
            raise refused

    async def reserve(self, principal: Principal, tokens: int) -> Reservation:
        now = self._clock()
        reservation = Reservation(principal, new_lease_id(), max(0, tokens))
        now_ms, ttl_ms = round(now * 1000), round(self._slot_ttl_s * 1000)
        keys = [self._reserved_key(principal.key_id), self._tokens_key(principal.key_id, utc_day(now))]
        args = [now_ms, principal.tokens_per_day, self._member(reservation), now_ms + ttl_ms, 2 * ttl_ms]
        try:
            admitted, used, reserved = await self._reserve(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        self._report(True)
        if not admitted:
            snap = Snapshot(now, 0, None, 0, int(used), int(reserved))
            raise token_refusal(principal, snap) or QuotaExceededError(
                f"API key {principal.key_id} is over its tokens for today; retry shortly", headers={"Retry-After": "1"}
            )  # the second only if the script and token_refusal() ever disagreed
        self._reservations[reservation.reservation_id] = reservation
        self._start_renewing()
        return reservation

    async def settle(self, reservation: Reservation, tokens_used: int) -> None:
        self._reservations.pop(reservation.reservation_id, None)
        principal = reservation.principal
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._reserved_key(principal.key_id), self._member(reservation))
                if tokens_used > 0:
                    self._queue_charge(pipe, principal, tokens_used)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the reservation expires by itself; the tokens are lost
            log.warning("rate limits: settling the tokens of %s failed: %s", principal.key_id, exc)

    async def charge(self, principal: Principal, tokens: int) -> None:
        if tokens <= 0 or principal.tokens_per_day <= 0:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                self._queue_charge(pipe, principal, tokens)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("rate limits: counting %d tokens of %s failed: %s", tokens, principal.key_id, exc)

    def _queue_charge(self, pipe: redis.client.Pipeline, principal: Principal, tokens: int) -> None:
        key = self._tokens_key(principal.key_id, utc_day(self._clock()))
        pipe.incrby(key, tokens)
        pipe.expire(key, TOKEN_TTL_S)

    def _report(self, ok: bool) -> None:
        if self._health is not None:
            self._health.report(ok)

    def _unavailable(self, exc: BaseException) -> ServiceUnavailableError:
        self._report(False)
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:  # one line per outage and interval, not one per request
            self._warned_at = now
            log.warning("rate limits: Redis cannot be reached, requests of keys with limits get 503: %s", exc)
        return ServiceUnavailableError(
            "this API key's rate limits are kept in Redis, which cannot be reached right now; retry shortly",
            code="rate_limits_unavailable",
            headers={"Retry-After": "5"},
        )

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="vlserve-ratelimit-renew")

    async def _renew(self) -> None:
        """Push the expiry of this server's slots and reservations forward while their requests run (stops
        when none is held)."""
        while self._held or self._reservations:
            await asyncio.sleep(self._slot_ttl_s / 3)
            expiry = round((self._clock() + self._slot_ttl_s) * 1000)
            ttl_ms = round(self._slot_ttl_s * 2000)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for lease in list(self._held.values()):
                        slots = self._keys(lease.principal.key_id)[1]
                        pipe.zadd(slots, {lease.lease_id: expiry}, xx=True)
                        pipe.pexpire(slots, ttl_ms)
                    for reservation in list(self._reservations.values()):
                        reserved = self._reserved_key(reservation.principal.key_id)
                        pipe.zadd(reserved, {self._member(reservation): expiry}, xx=True)
                        pipe.pexpire(reserved, ttl_ms)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("rate limits: renewing request slots and token reservations failed: %s", exc)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        self._held.clear()
        self._reservations.clear()
        await self._redis.aclose()
