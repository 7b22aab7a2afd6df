"""An httpx transport that checks every resolved address at connect time (no DNS-rebinding window).

The host name is resolved once, every address is checked by the address guard, and the TCP
connection is opened to a checked IP literal. TLS is still negotiated and verified for the
original host name: httpcore passes the URL's host to ``start_tls(server_hostname=...)``
separately from the address given to ``connect_tcp``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Self

import anyio
import httpcore
import httpx

from vlserve.media.address_guard import Allowlist, is_address_allowed, is_host_allowlisted, normalise_host

Resolver = Callable[[str, int], Awaitable[list[str]]]

# Most specific first: the first isinstance match wins.
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.ProxyError, httpx.ProxyError),
)


class AddressRefused(Exception):
    """Raised before connecting when ``host`` resolves to an address the guard refuses."""

    def __init__(self, host: str) -> None:
        super().__init__(f"host '{host}' resolves to a non-public address")
        self.host = host


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in resolver order, without duplicates."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, refuse unless every address is allowed, then connect to a checked IP literal."""

    def __init__(self, allowlist: Allowlist, resolver: Resolver = resolve) -> None:
        self._allowlist = allowlist
        self._resolve = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        name = normalise_host(host)
        addresses = await self._addresses(name, port, timeout)
        if not is_host_allowlisted(name, self._allowlist) and not all(
            is_address_allowed(address, self._allowlist) for address in addresses
        ):
            raise AddressRefused(host)
        failure: Exception = httpcore.ConnectError(f"could not connect to host '{host}'")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def _addresses(self, name: str, port: int, timeout: float | None) -> list[str]:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(name, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving host '{name}' timed out") from None
        except (OSError, UnicodeError, OverflowError):
            raise httpcore.ConnectError(f"could not resolve host '{name}'") from None
        if not addresses:
            raise httpcore.ConnectError(f"could not resolve host '{name}'")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for image URLs")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 transport over an httpcore pool whose connections go through :class:`GuardedBackend`."""

    def __init__(
        self,
        allowlist: Allowlist,
        *,
        resolver: Resolver = resolve,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 20,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections // 2,
            network_backend=GuardedBackend(allowlist, resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._response.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """Re-raise httpcore exceptions as their httpx equivalents; anything else (AddressRefused) as is."""
    try:
        yield
    except Exception as exc:
        for core_type, httpx_type in _EXCEPTIONS:
            if isinstance(exc, core_type):
                raise httpx_type(str(exc)) from exc
        raise


def _no_cookies() -> CookieJar:
    """A cookie jar that never stores a cookie, so none is ever sent (passed as a jar: httpx keeps it)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def guarded_client(
    allowlist: Allowlist, *, timeout: float, headers: dict[str, str], resolver: Resolver = resolve
) -> httpx.AsyncClient:
    """An outbound client for URLs a client gave us: every address checked at connect time, redirects not
    followed (the caller checks each hop), no proxy from the environment (it would connect on our behalf,
    bypassing the guard), no cookies."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allowlist, resolver=resolver),
        follow_redirects=False,
        trust_env=False,
        timeout=timeout,
        cookies=_no_cookies(),
        headers=headers,
    )


class GuardedClientOwner:
    """Base of the classes that own one guarded client (one connection pool): async context manager."""

    _client: httpx.AsyncClient

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
