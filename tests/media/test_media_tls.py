"""HTTPS through the guarded transport: connected by IP, but the certificate is checked for the host name."""

from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest

from vlserve.media.address_guard import parse_allowlist
from vlserve.media.guarded_transport import GuardedTransport


async def _loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def get(url: str, ca_file: str) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = GuardedTransport(
            parse_allowlist(["127.0.0.1/32"]),
            resolver=_loopback,
            ssl_context=ssl.create_default_context(cafile=ca_file),
        )
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get(url)

    return asyncio.run(run())


def test_https_verifies_the_certificate_for_the_url_host_name(tls_server: tuple[int, str]) -> None:
    port, ca_file = tls_server
    assert get(f"https://images.test:{port}/ok.png", ca_file).status_code == 200


@pytest.mark.parametrize("host", ["other.test", "127.0.0.1"])
def test_https_refuses_a_certificate_for_another_name(tls_server: tuple[int, str], host: str) -> None:
    port, ca_file = tls_server
    with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
        get(f"https://{host}:{port}/ok.png", ca_file)
