"""ImageFetcher against a loopback HTTP server: limits, redirects, refusals, errors.

Network rule: every request here goes to 127.0.0.1 / localhost. Refused addresses are refused
before any connection is made, and each refusal test checks the server received nothing.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from vlserve.errors import ClientError, MediaFetchError, PayloadTooLargeError, URLRefusedError
from vlserve.media import ImageFetcher

PARAM = "messages[0].content[1].image_url"
LOOPBACK = ["127.0.0.1/32"]
Server = tuple[str, Any]  # (base URL, what the server saw): the `server` fixture in conftest.py


def fetch(url: str, **options: Any) -> bytes:
    settings: dict[str, Any] = {"timeout": 2.0, "max_redirects": 3, "max_bytes": 100_000, "allowlist": LOOPBACK}
    settings.update(options)

    async def run() -> bytes:
        async with ImageFetcher(**settings) as fetcher:
            return await fetcher.fetch(url, param=PARAM)

    return asyncio.run(run())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fetches_the_image_with_a_vlserve_user_agent(server: Server, ok_png: bytes) -> None:
    base, seen = server
    assert fetch(f"{base}/ok.png") == ok_png
    path, headers = seen.requests[-1]
    assert path == "/ok.png"
    assert headers["User-Agent"].startswith("vlserve/")


def test_follows_a_redirect_without_sending_cookies(server: Server, ok_png: bytes) -> None:
    base, seen = server
    assert fetch(f"{base}/redirect-ok") == ok_png
    assert seen.paths()[-2:] == ["/redirect-ok", "/ok.png"]
    assert "Cookie" not in seen.requests[-1][1]


def test_non_2xx_status_is_a_fetch_error_naming_the_status(server: Server) -> None:
    base, _ = server
    with pytest.raises(MediaFetchError) as info:
        fetch(f"{base}/404")
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "media_fetch_failed", PARAM)
    assert "HTTP 404" in info.value.message


def test_slow_server_times_out_after_the_total_budget(server: Server) -> None:
    base, _ = server
    started = time.monotonic()
    with pytest.raises(MediaFetchError) as info:
        fetch(f"{base}/slow", timeout=0.3)
    assert time.monotonic() - started < 2
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "media_fetch_timeout", PARAM)
    assert "timed out after 0.3 s" in info.value.message


@pytest.mark.parametrize("path", ["/big", "/big-declared"])
def test_body_over_the_limit_is_413(server: Server, path: str) -> None:
    base, _ = server
    started = time.monotonic()
    with pytest.raises(PayloadTooLargeError) as info:
        fetch(f"{base}{path}", max_bytes=1024 * 1024 // 4)
    assert time.monotonic() - started < 2
    assert (info.value.status_code, info.value.param) == (413, PARAM)
    assert "0.25 MB" in info.value.message


def test_too_many_redirects_is_a_fetch_error(server: Server) -> None:
    base, seen = server
    before = len(seen.requests)
    with pytest.raises(MediaFetchError) as info:
        fetch(f"{base}/redirect-loop", max_redirects=2)
    assert (info.value.status_code, info.value.param) == (400, PARAM)
    assert "more than 2 times" in info.value.message
    assert len(seen.requests) - before == 3


def test_redirect_to_another_scheme_is_refused(server: Server) -> None:
    base, _ = server
    with pytest.raises(ClientError) as info:
        fetch(f"{base}/redirect-to-file")
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "unsupported_url_scheme", PARAM)


def test_redirect_to_a_non_allowlisted_address_is_refused(server: Server) -> None:
    base, seen = server
    before = len(seen.requests)
    with pytest.raises(URLRefusedError) as info:
        fetch(f"{base}/redirect-to-refused")  # -> http://127.0.0.2:<port>/ok.png
    assert (info.value.status_code, info.value.code, info.value.param) == (403, "url_refused", PARAM)
    assert "127.0.0.2" in info.value.message
    assert seen.paths()[before:] == ["/redirect-to-refused"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_non_public_host_is_refused_before_connecting(server: Server, host: str) -> None:
    base, seen = server
    port = base.rsplit(":", 1)[1]
    before = len(seen.requests)
    with pytest.raises(URLRefusedError) as info:
        fetch(f"http://{host}:{port}/ok.png", allowlist=[])
    assert (info.value.status_code, info.value.code, info.value.param) == (403, "url_refused", PARAM)
    assert "non-public address" in info.value.message
    assert "VLSERVE_URL_ALLOWLIST" in info.value.message
    assert len(seen.requests) == before


def test_allowlisted_host_name_is_fetched(server: Server, ok_png: bytes) -> None:
    base, _ = server
    port = base.rsplit(":", 1)[1]
    assert fetch(f"http://localhost:{port}/ok.png", allowlist=["localhost"]) == ok_png


def test_dns_rebinding_is_refused_at_connect_time(server: Server) -> None:
    """A name resolving to any refused address is refused, even if another address is allowed."""
    base, seen = server
    port = base.rsplit(":", 1)[1]

    async def rebinding(host: str, port: int) -> list[str]:
        return ["127.0.0.1", "10.0.0.1"]

    before = len(seen.requests)
    with pytest.raises(URLRefusedError) as info:
        fetch(f"http://images.test:{port}/ok.png", resolver=rebinding)
    assert "images.test" in info.value.message
    assert len(seen.requests) == before


def test_connects_to_the_checked_address_and_keeps_the_host_name(server: Server, ok_png: bytes) -> None:
    base, seen = server
    port = base.rsplit(":", 1)[1]

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    assert fetch(f"http://images.test:{port}/ok.png", resolver=loopback) == ok_png
    assert seen.requests[-1][1]["Host"] == f"images.test:{port}"


def test_dns_failure_is_a_fetch_error_naming_only_the_host() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(MediaFetchError) as info:
        fetch("http://images.test/a.png", resolver=failing)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "media_fetch_failed", PARAM)
    assert "images.test" in info.value.message
    assert "Errno" not in info.value.message and "Name or service" not in info.value.message


def test_connection_refused_is_a_fetch_error() -> None:
    with pytest.raises(MediaFetchError) as info:
        fetch(f"http://127.0.0.1:{free_port()}/a.png")
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "media_fetch_failed", PARAM)
    assert "connection to host '127.0.0.1' failed" in info.value.message
    assert "Errno" not in info.value.message


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a.png", "https://user:pw@127.0.0.1/a.png"])
def test_bad_urls_are_refused_before_any_request(url: str) -> None:
    with pytest.raises(ClientError) as info:
        fetch(url)
    assert (info.value.status_code, info.value.param) == (400, PARAM)


def test_proxy_environment_is_ignored(server: Server, ok_png: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{free_port()}")
    base, _ = server
    assert fetch(f"{base}/ok.png") == ok_png
