"""Signed, retried POSTs of a finished job's JSON summary to the client's ``webhook_url``.

Every request carries four headers: ``X-Vlserve-Event`` (e.g. ``document.completed``),
``X-Vlserve-Delivery`` (one id per delivery, the same across its retries: de-duplicate on it),
``X-Vlserve-Timestamp`` (Unix seconds) and ``X-Vlserve-Signature``: ``sha256=`` + the hex
HMAC-SHA256, keyed with the job's secret, of ``f"{timestamp}.".encode() + body``. Each attempt is
signed afresh; a receiver rejects stale timestamps, so a captured request cannot be replayed later::

    from vlserve.documents.webhook import verify

    def on_webhook(headers: Mapping[str, str], body: bytes) -> int:  # the raw body, before any parsing
        if not verify(SECRET, headers.get("X-Vlserve-Timestamp"), headers.get("X-Vlserve-Signature"), body):
            return 401  # forged, altered or replayed: ignore it
        handle(json.loads(body))  # at most once per headers["X-Vlserve-Delivery"]
        return 200

Without vlserve: compute the same HMAC and compare with ``hmac.compare_digest``. The URL passes the
image-URL address guard twice: at submission (:func:`check_webhook_url`: a literal IP, or every address
the host resolves to, so a client learns at once that its URL will never be delivered to) and at connect
time (:class:`GuardedTransport`: the addresses may have changed since). Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from vlserve import __version__
from vlserve.errors import ClientError, ServiceUnavailableError
from vlserve.media.address_guard import (
    Allowlist,
    check_url,
    is_host_allowlisted,
    is_resolution_allowed,
    parse_allowlist,
    refused,
)
from vlserve.media.guarded_transport import AddressRefused, GuardedClientOwner, Resolver, guarded_client, resolve

SIGNATURE_HEADER = "X-Vlserve-Signature"
TIMESTAMP_HEADER = "X-Vlserve-Timestamp"
EVENT_HEADER = "X-Vlserve-Event"
DELIVERY_HEADER = "X-Vlserve-Delivery"
PARAM = "webhook_url"
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 60
RESOLVE_TIMEOUT_S = 5.0

Sleep = Callable[[float], Awaitable[Any]]
BlockingResolver = Callable[[str, int], list[str]]
log = logging.getLogger("vlserve.documents")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` keyed with ``secret``."""
    if not secret:
        raise ValueError("a webhook secret must not be empty")
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """True if the signature is ``secret``'s over this timestamp and body, and the timestamp is fresh."""
    if not (secret and timestamp_header and signature_header):
        return False
    stamp = timestamp_header.strip()
    if not (stamp.isascii() and stamp.isdigit()):
        return False
    timestamp = int(stamp)
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, signature_header.strip().encode("utf-8", "replace"))


def resolve_blocking(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, as at delivery), without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_webhook_url(
    url: str,
    allowlist: Allowlist,
    *,
    resolver: BlockingResolver | None = resolve_blocking,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> str:
    """The normalised URL; else :class:`ClientError` (``param="webhook_url"``) naming the problem.

    Refuses non-http(s) schemes, a missing host, credentials, literal IPs the guard refuses, and host
    names that do not resolve or resolve to any address the guard refuses (a name the allowlist lists is
    not resolved). Resolving blocks for up to ``timeout_s``: call this off the event loop (the intake runs
    in a worker thread). ``resolver=None`` checks the URL without DNS (delivery resolves at connect time).
    """
    try:
        parsed = check_url(url, allowlist, param=PARAM)
    except ClientError as exc:
        raise _as_webhook_error(exc) from None
    if resolver is not None and not (_is_ip_literal(parsed.host) or is_host_allowlisted(parsed.host, allowlist)):
        port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
        addresses = _resolve(parsed.raw_host.decode("ascii"), port, resolver, timeout_s)
        if not is_resolution_allowed(parsed.host, addresses, allowlist):
            raise _as_webhook_error(refused(parsed.host, param=PARAM))
    return str(parsed)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int, resolver: BlockingResolver, timeout_s: float) -> list[str]:
    """``resolver(host, port)`` in a thread of its own, waited on for ``timeout_s`` at most (a lookup cannot
    be cancelled: a stuck one ends in the background when the system resolver gives up)."""
    shown = host[:100]
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlserve-webhook-dns")
    try:
        return pool.submit(resolver, host, port).result(timeout=timeout_s)
    except FutureTimeout:
        raise ServiceUnavailableError(
            f"looking up the webhook URL host '{shown}' took longer than {timeout_s:g} s; retry shortly",
            headers={"Retry-After": "5"},
        ) from None
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise ServiceUnavailableError(
                f"the webhook URL host '{shown}' could not be looked up just now; retry shortly",
                headers={"Retry-After": "5"},
            ) from None
        raise ClientError(
            f"the webhook URL host '{shown}' does not resolve to any address", param=PARAM, code="unknown_host"
        ) from None
    except (OSError, UnicodeError, ValueError):
        raise ClientError(
            f"the webhook URL host '{shown}' does not resolve to any address", param=PARAM, code="unknown_host"
        ) from None
    finally:
        pool.shutdown(wait=False)


def _as_webhook_error(exc: ClientError) -> ClientError:
    """The address guard's error for an image URL, reworded for the webhook URL."""
    message = exc.message.replace("image URL", "webhook URL").replace("data:, ", "")
    return type(exc)(message.replace("fetching it", "delivering to it"), param=PARAM, code=exc.code)


@dataclass(frozen=True)
class DeliveryResult:
    """How one delivery ended: ``attempts`` made, the last HTTP status and error (None once delivered)."""

    delivered: bool
    attempts: int
    status_code: int | None
    error: str | None
    delivery_id: str


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str | None
    retry: bool = False
    retry_after: float | None = None


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in whole seconds if it is at most a minute; dates and longer waits are ignored."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isascii() and value.isdigit() and int(value) <= MAX_RETRY_AFTER_S:
        return float(value)
    return None


def _judge(response: httpx.Response) -> _Outcome:
    """2xx delivered; 429 and 5xx retried; anything else (3xx, other 4xx) final."""
    code = response.status_code
    if response.is_success:
        return _Outcome(code, None)
    if code == 429 or code >= 500:
        return _Outcome(code, f"receiver answered HTTP {code}", retry=True, retry_after=_retry_after(response))
    if 300 <= code < 400:
        return _Outcome(code, f"receiver answered HTTP {code}; redirects are not followed")
    return _Outcome(code, f"receiver rejected the delivery with HTTP {code}")


class WebhookSender(GuardedClientOwner):
    """Delivers signed webhooks; one instance (one connection pool) per server, closed at shutdown."""

    def __init__(
        self,
        allowlist: Allowlist | list[str],
        *,
        timeout: float = 10.0,
        resolver: Resolver = resolve,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.timeout = timeout
        self._allowlist = allowlist if isinstance(allowlist, Allowlist) else parse_allowlist(allowlist)
        self._sleep = sleep
        self._client = guarded_client(
            self._allowlist,
            timeout=timeout,
            resolver=resolver,
            headers={"User-Agent": f"vlserve-webhook/{__version__}", "Content-Type": "application/json"},
        )

    async def deliver(
        self, url: str, secret: str, event: str, payload: dict[str, Any], *, attempts: int = 5, backoff_s: float = 1.0
    ) -> DeliveryResult:
        """POST ``payload`` as compact JSON; retry network errors, timeouts, 429 and 5xx with backoff."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        delivery_id = uuid.uuid4().hex
        try:
            target = httpx.URL(check_webhook_url(url, self._allowlist, resolver=None))  # resolved at connect
        except ClientError as exc:
            return DeliveryResult(False, 0, None, exc.message, delivery_id)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(target, secret, event, delivery_id, body)
            if outcome.error is None or not outcome.retry or attempt == attempts:
                break
            delay = outcome.retry_after
            await self._sleep(min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S) if delay is None else delay)
        if outcome.error is not None:
            log.warning("webhook %s to host %s failed: %s", delivery_id, target.host, outcome.error)
        return DeliveryResult(outcome.error is None, attempt, outcome.status_code, outcome.error, delivery_id)

    async def _attempt(self, url: httpx.URL, secret: str, event: str, delivery_id: str, body: bytes) -> _Outcome:
        """One signed POST under a total deadline of ``timeout`` seconds; the response body is not read."""
        timestamp = int(time.time())
        headers = {
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        try:
            with anyio.fail_after(self.timeout):
                async with self._client.stream("POST", url, content=body, headers=headers) as response:
                    return _judge(response)
        except AddressRefused:
            message = f"webhook URL host '{url.host}' resolves to a non-public address; delivery refused"
            return _Outcome(None, message + ". An operator can allow it with VLSERVE_URL_ALLOWLIST.")
        except (TimeoutError, httpx.TimeoutException):
            return _Outcome(None, f"webhook URL on host '{url.host}' timed out after {self.timeout:g} s", retry=True)
        except httpx.HTTPError:
            return _Outcome(None, f"connection to webhook host '{url.host}' failed", retry=True)
