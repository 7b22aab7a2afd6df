"""Webhook signing, URL checks and delivery to a loopback receiver: retries, backoff, refusals.

Network rule: every request here goes to 127.0.0.1. Non-loopback addresses are only ever judged:
by the pure URL check, or by a sender whose resolver is faked and whose sockets cannot connect.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tests.support.webhook_receiver import Received, Reply, WebhookReceiver, receive_webhooks
from vlserve.documents.webhook import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BlockingResolver,
    DeliveryResult,
    WebhookSender,
    check_webhook_url,
    sign,
    verify,
)
from vlserve.errors import ClientError, ServiceUnavailableError, URLRefusedError
from vlserve.media import parse_allowlist
from vlserve.media.address_guard import is_resolution_allowed
from vlserve.media.guarded_transport import Resolver, resolve

SECRET = "whsec_test_0123456789"
EVENT = "document.completed"
PAYLOAD: dict[str, Any] = {"id": "doc_123", "status": "completed", "pages": [{"page": 1, "answer": "Zürich"}]}
LOOPBACK = ["127.0.0.1/32"]


def deliver(url: str, *, allowlist: Sequence[str] = LOOPBACK, resolver: Resolver = resolve, timeout: float = 5.0,
            **options: Any) -> tuple[DeliveryResult, list[float]]:  # fmt: skip
    """Deliver PAYLOAD; return the result and the delays the sender asked to sleep (never really slept)."""
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    async def run() -> DeliveryResult:
        async with WebhookSender(list(allowlist), timeout=timeout, resolver=resolver, sleep=record) as sender:
            return await sender.deliver(url, SECRET, EVENT, PAYLOAD, **options)

    return asyncio.run(run()), delays


def assert_signed(request: Received) -> None:
    assert verify(SECRET, request.header(TIMESTAMP_HEADER), request.header(SIGNATURE_HEADER), request.body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- signatures ----------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"doc_123"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, body) == f"sha256={expected}"


def test_signature_verifies_with_the_secret_only() -> None:
    now, body = 1_700_000_000, b'{"id":"doc_123"}'
    signature = sign(SECRET, now, body)
    assert verify(SECRET, str(now), signature, body, now=now + 10)
    assert not verify("wrong-secret", str(now), signature, body, now=now)
    assert not verify(SECRET, str(now), signature, b'{"id":"doc_124"}', now=now)


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_signature_with_a_stale_or_future_timestamp_is_rejected(age: int) -> None:
    now, body = 1_700_000_000, b"{}"
    assert not verify(SECRET, str(now), sign(SECRET, now, body), body, now=now + age)
    assert verify(SECRET, str(now), sign(SECRET, now, body), body, now=now + age, tolerance_s=abs(age))


def test_a_replayed_signature_under_a_fresh_timestamp_is_rejected() -> None:
    old, now, body = 1_700_000_000, 1_700_010_000, b"{}"
    assert not verify(SECRET, str(now), sign(SECRET, old, body), body, now=now)


@pytest.mark.parametrize(("timestamp", "signature"), [(None, "sha256=00"), ("1700000000", None), ("17e8", "x"),
                                                      ("", ""), ("1700000000", "sha256=ü")])  # fmt: skip
def test_missing_or_malformed_headers_do_not_verify(timestamp: str | None, signature: str | None) -> None:
    assert not verify(SECRET, timestamp, signature, b"{}", now=1_700_000_000)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        sign("", 1, b"{}")
    assert not verify("", "1", sign("x", 1, b"{}"), b"{}", now=1)


# --- submission-time URL check: the URL itself (pure: no DNS, no connection) --------------------


@pytest.mark.parametrize(
    ("url", "error", "problem"),
    [
        ("ftp://example.com/hook", ClientError, "scheme 'ftp' is not supported"),
        ("http:///hook", ClientError, "has no host"),
        ("https://user:pw@example.com/hook", ClientError, "must not contain credentials"),
        ("http://10.0.0.1/hook", URLRefusedError, "'10.0.0.1'"),
        ("http://169.254.169.254/latest/meta-data/", URLRefusedError, "'169.254.169.254'"),
        ("http://[::ffff:10.0.0.1]/hook", URLRefusedError, "non-public address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", URLRefusedError, "non-public address"),
        ("not a url at all", ClientError, "webhook URL"),
    ],
)
def test_bad_webhook_urls_are_refused_at_submission(no_network: None, url: str, error: type, problem: str) -> None:
    with pytest.raises(error) as info:
        check_webhook_url(url, parse_allowlist([]))
    assert type(info.value) is error
    assert info.value.param == "webhook_url"
    assert problem in info.value.message and "webhook URL" in info.value.message
    assert "image" not in info.value.message and "data:" not in info.value.message


def test_loopback_is_accepted_only_when_allowlisted(no_network: None) -> None:
    url = "http://127.0.0.1:8081/hook"
    assert check_webhook_url(url, parse_allowlist(LOOPBACK)) == url
    with pytest.raises(URLRefusedError) as info:
        check_webhook_url(url, parse_allowlist([]))
    assert "VLSERVE_URL_ALLOWLIST" in info.value.message


# --- submission-time URL check: the host's addresses (resolver faked, except "localhost") --------


def answering(*addresses: str) -> tuple[BlockingResolver, list[tuple[str, int]]]:
    """A resolver answering ``addresses`` for any host, and the (host, port) lookups it was asked."""
    asked: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return list(addresses)

    return resolver, asked


@pytest.mark.parametrize(
    ("addresses", "allowed"),
    [
        (["8.8.8.8"], True),
        (["2001:4860:4860::8888"], True),
        (["::ffff:8.8.8.8"], True),
        (["8.8.8.8", "2001:4860:4860::8888"], True),
        (["127.0.0.1"], False),
        (["127.8.9.10"], False),
        (["::1"], False),
        (["10.0.0.1"], False),
        (["172.16.5.4"], False),
        (["192.168.1.1"], False),
        (["100.64.0.1"], False),  # carrier-grade NAT
        (["169.254.169.254"], False),  # cloud metadata
        (["fd00:ec2::254"], False),  # AWS metadata, IPv6
        (["fe80::1"], False),
        (["fe80::1%eth0"], False),
        (["fc00::1"], False),
        (["::ffff:127.0.0.1"], False),  # mapped IPv6
        (["::ffff:169.254.169.254"], False),
        (["64:ff9b::a00:1"], False),  # NAT64 of 10.0.0.1
        (["2002:a00:1::"], False),  # 6to4 of 10.0.0.1
        (["0.0.0.0"], False),
        (["::"], False),
        (["224.0.0.1"], False),
        (["255.255.255.255"], False),
        (["not an address"], False),
        (["8.8.8.8", "127.0.0.1"], False),
        ([], False),
    ],
)
def test_which_resolved_addresses_a_webhook_may_reach(no_network: None, addresses: list[str], allowed: bool) -> None:
    assert is_resolution_allowed("hooks.example.com", addresses, parse_allowlist([])) is allowed


def test_the_allowlist_admits_networks_and_names_in_the_address_decision(no_network: None) -> None:
    allowlist = parse_allowlist(["10.0.0.0/8", "hooks.internal"])
    assert is_resolution_allowed("a.example", ["10.2.3.4"], allowlist)
    assert is_resolution_allowed("a.example", ["::ffff:10.2.3.4"], allowlist)
    assert not is_resolution_allowed("a.example", ["10.2.3.4", "192.168.0.1"], allowlist)
    assert is_resolution_allowed("HOOKS.internal.", ["192.168.0.1"], allowlist)


def test_a_host_name_resolving_to_public_addresses_is_accepted(no_network: None) -> None:
    resolver, asked = answering("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    url = "https://hooks.example.com/vlserve"
    assert check_webhook_url(url, parse_allowlist([]), resolver=resolver) == url
    assert asked == [("hooks.example.com", 443)]


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["::1"],
        ["10.1.2.3"],
        ["192.168.0.10"],
        ["169.254.169.254"],  # cloud metadata
        ["fd00:ec2::254"],  # AWS metadata over IPv6
        ["fe80::1%eth0"],
        ["::ffff:127.0.0.1"],
        ["93.184.215.14", "10.0.0.1"],  # one private answer refuses it all: the connection may use any
        [],
    ],
)
def test_a_host_name_resolving_to_a_refused_address_is_refused_at_submission(
    no_network: None, addresses: list[str]
) -> None:
    resolver, _ = answering(*addresses)
    with pytest.raises(URLRefusedError) as info:
        check_webhook_url("http://hooks.example.com:8081/hook", parse_allowlist([]), resolver=resolver)
    assert info.value.status_code == 403 and info.value.param == "webhook_url"
    assert "webhook URL host 'hooks.example.com' resolves to a non-public address" in info.value.message
    assert all(address not in info.value.message for address in addresses)  # the network's layout is not told


def test_the_allowlist_is_respected_at_submission(no_network: None) -> None:
    resolver, asked = answering("10.1.2.3")
    url = "http://hooks.internal/hook"
    assert check_webhook_url(url, parse_allowlist(["10.0.0.0/8"]), resolver=resolver) == url
    assert check_webhook_url(url, parse_allowlist(["hooks.internal"]), resolver=resolver) == url
    assert asked == [("hooks.internal", 80)]  # a host allowlisted by name is not looked up


def test_localhost_is_refused_at_submission_by_the_real_resolver() -> None:
    with pytest.raises(URLRefusedError) as info:
        check_webhook_url("http://localhost:8081/hook", parse_allowlist([]))
    assert "'localhost' resolves to a non-public address" in info.value.message
    assert check_webhook_url("http://localhost:8081/hook", parse_allowlist(["127.0.0.0/8", "::1"]))


def test_a_host_that_does_not_resolve_is_a_client_error(no_network: None) -> None:
    def unknown(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(ClientError) as info:
        check_webhook_url("https://hooks.example.com/x", parse_allowlist([]), resolver=unknown)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "unknown_host", "webhook_url")
    assert "'hooks.example.com' does not resolve" in info.value.message


def test_a_slow_lookup_is_bounded_and_answered_503(no_network: None) -> None:
    release = threading.Event()

    def stuck(host: str, port: int) -> list[str]:
        release.wait(10)
        return ["93.184.215.14"]

    started = time.monotonic()
    try:
        with pytest.raises(ServiceUnavailableError) as info:
            check_webhook_url("https://hooks.example.com/x", parse_allowlist([]), resolver=stuck, timeout_s=0.2)
    finally:
        release.set()
    assert time.monotonic() - started < 3
    assert info.value.status_code == 503 and info.value.headers["Retry-After"]
    assert "took longer than 0.2 s" in info.value.message


def test_a_temporary_lookup_failure_is_503(no_network: None) -> None:
    def again(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(ServiceUnavailableError):
        check_webhook_url("https://hooks.example.com/x", parse_allowlist([]), resolver=again)


def test_delivery_does_not_resolve_before_connecting(no_network: None) -> None:
    """The sender checks the URL without DNS; its guarded transport resolves (with its own resolver)."""
    asked: list[str] = []

    async def fake_resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["10.0.0.1"]

    result, _ = deliver("http://hooks.example.com/hook", resolver=fake_resolve)
    assert asked == ["hooks.example.com"] and not result.delivered


# --- delivery to a loopback receiver -------------------------------------------------------------


def test_delivers_signed_compact_json_on_the_first_try() -> None:
    with receive_webhooks([200]) as receiver:
        result, delays = deliver(receiver.url)
    assert result == DeliveryResult(True, 1, 200, None, result.delivery_id)
    assert delays == []
    (request,) = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.body == json.dumps(PAYLOAD, separators=(",", ":"), ensure_ascii=False).encode()
    assert request.json() == PAYLOAD
    assert request.header("Content-Type") == "application/json"
    assert (request.header("User-Agent") or "").startswith("vlserve-webhook/")
    assert request.header(EVENT_HEADER) == EVENT
    assert request.header(DELIVERY_HEADER) == result.delivery_id
    assert abs(int(request.header(TIMESTAMP_HEADER) or 0) - time.time()) < 60
    assert request.header("Cookie") is None
    assert_signed(request)


def test_retries_server_errors_with_one_delivery_id_and_fresh_signatures() -> None:
    with receive_webhooks([500, 503, 200]) as receiver:
        result, delays = deliver(receiver.url, backoff_s=0.5)
    assert (result.delivered, result.attempts, result.status_code, result.error) == (True, 3, 200, None)
    assert delays == [0.5, 1.0]
    assert {request.header(DELIVERY_HEADER) for request in receiver.requests} == {result.delivery_id}
    for request in receiver.requests:
        assert_signed(request)


def test_gives_up_after_the_last_attempt() -> None:
    with receive_webhooks([500]) as receiver:
        result, delays = deliver(receiver.url, attempts=4)
    assert (result.delivered, result.attempts, result.status_code) == (False, 4, 500)
    assert "HTTP 500" in (result.error or "")
    assert len(receiver.requests) == 4
    assert delays == [1.0, 2.0, 4.0]


def test_backoff_is_capped_at_a_minute() -> None:
    with receive_webhooks([502]) as receiver:
        result, delays = deliver(receiver.url, attempts=6, backoff_s=10.0)
    assert result.attempts == len(receiver.requests) == 6
    assert delays == [10.0, 20.0, 40.0, 60.0, 60.0]


@pytest.mark.parametrize("reply", [Reply(400), Reply(401), Reply(404), Reply(302, {"Location": "/elsewhere"})])
def test_client_errors_and_redirects_are_final(reply: Reply) -> None:
    with receive_webhooks([reply, 200]) as receiver:
        result, delays = deliver(receiver.url)
    assert (result.delivered, result.attempts, result.status_code) == (False, 1, reply.status)
    assert f"HTTP {reply.status}" in (result.error or "")
    assert [request.path for request in receiver.requests] == ["/hook"]
    assert delays == []


@pytest.mark.parametrize(
    ("reply", "delay"),
    [
        (Reply(429, {"Retry-After": "7"}), 7.0),
        (Reply(503, {"Retry-After": "0"}), 0.0),
        (Reply(429, {"Retry-After": "3600"}), 1.0),  # too long: ordinary backoff instead
        (Reply(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), 1.0),
    ],
)
def test_retry_after_is_honoured_up_to_a_minute(reply: Reply, delay: float) -> None:
    with receive_webhooks([reply, 200]) as receiver:
        result, delays = deliver(receiver.url)
    assert (result.delivered, result.attempts) == (True, 2)
    assert delays == [delay]
    assert len(receiver.requests) == 2


def test_a_slow_receiver_times_out_and_is_retried() -> None:
    with receive_webhooks([Reply(200, delay_s=5)]) as receiver:
        started = time.monotonic()
        result, delays = deliver(receiver.url, timeout=0.2, attempts=2)
        assert time.monotonic() - started < 3
    assert (result.delivered, result.attempts, result.status_code) == (False, 2, None)
    assert "timed out after 0.2 s" in (result.error or "")
    assert len(receiver.requests) == 2 and delays == [1.0]


def test_connection_failures_are_retried() -> None:
    result, delays = deliver(f"http://127.0.0.1:{free_port()}/hook", attempts=3)
    assert (result.delivered, result.attempts, result.status_code) == (False, 3, None)
    assert "connection to webhook host '127.0.0.1' failed" in (result.error or "")
    assert "Errno" not in (result.error or "")
    assert delays == [1.0, 2.0]


def test_proxy_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{free_port()}")
    with receive_webhooks([200]) as receiver:
        result, _ = deliver(receiver.url)
    assert result.delivered and len(receiver.requests) == 1


# --- refusals at delivery time -------------------------------------------------------------------


def test_a_literal_non_allowlisted_address_is_refused_without_connecting(no_network: None) -> None:
    result, delays = deliver("http://127.0.0.1:8081/hook", allowlist=[])
    assert (result.delivered, result.attempts, result.status_code) == (False, 0, None)
    assert "non-public address" in (result.error or "")
    assert delays == []


@pytest.mark.parametrize("addresses", [["10.0.0.1"], ["127.0.0.1", "10.0.0.1"], ["169.254.169.254"]])
def test_a_name_resolving_to_a_refused_address_is_refused_without_connecting(
    no_network: None, addresses: list[str]
) -> None:
    asked: list[str] = []

    async def fake_resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return addresses

    result, delays = deliver("http://hooks.test:8081/hook", resolver=fake_resolve)
    assert asked == ["hooks.test"]
    assert (result.delivered, result.attempts, result.status_code) == (False, 1, None)
    assert "webhook URL host 'hooks.test' resolves to a non-public address" in (result.error or "")
    assert delays == []  # a refusal is final: never retried


def test_a_name_resolving_to_an_allowlisted_address_is_delivered_under_its_host_name() -> None:
    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    receiver: WebhookReceiver
    with receive_webhooks([200]) as receiver:
        result, _ = deliver(f"http://hooks.test:{receiver.port}/hook", resolver=loopback)
    assert result.delivered
    assert receiver.requests[0].header("Host") == f"hooks.test:{receiver.port}"
    assert_signed(receiver.requests[0])
