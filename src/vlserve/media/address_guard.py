"""Which addresses an image or webhook URL may reach: pure functions, no DNS and no network I/O.

A server that fetches URLs for its clients must not become their way into the private network
(SSRF). Only global unicast addresses are allowed, plus what the operator lists in
``VLSERVE_URL_ALLOWLIST`` (exact host names and CIDR networks).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from vlserve.errors import ClientError, URLRefusedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class Allowlist:
    """Host names (lower case, no trailing dot) and networks fetched although not global."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()


def parse_allowlist(items: list[str]) -> Allowlist:
    """Split ``VLSERVE_URL_ALLOWLIST`` entries into networks (CIDR or bare IP) and host names."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
        except ValueError:
            if "/" in item:
                raise
            hosts.add(normalise_host(item))
    return Allowlist(hosts=frozenset(hosts), networks=tuple(networks))


def normalise_host(host: str) -> str:
    """Lower case, without IPv6 brackets or a trailing dot: the form allowlist hosts are compared in."""
    return host.strip().strip("[]").rstrip(".").lower()


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64, compatible), else ``ip``."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64) or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_public(ip: IPAddress) -> bool:
    """True for a global unicast address (judged by the embedded IPv4 address where there is one)."""
    ip = embedded_ipv4(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.teredo is not None:
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def is_address_allowed(ip: str | IPAddress, allowlist: Allowlist | None = None) -> bool:
    """True if ``ip`` is public or inside an allowlisted network; an unparsable address is refused."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0]) if isinstance(ip, str) else ip
    except ValueError:
        return False
    if allowlist is not None:
        candidates = {address, embedded_ipv4(address)}
        for net in allowlist.networks:
            if any(c.version == net.version and c in net for c in candidates):
                return True
    return is_public(address)


def is_host_allowlisted(host: str, allowlist: Allowlist | None) -> bool:
    """True if ``host`` is listed by name in the allowlist."""
    return allowlist is not None and normalise_host(host) in allowlist.hosts


def is_resolution_allowed(host: str, addresses: Sequence[str], allowlist: Allowlist | None = None) -> bool:
    """Whether a host that resolved to ``addresses`` may be reached: listed by name in the allowlist, or
    resolving to at least one address and to allowed addresses only (one private answer refuses it all,
    since the connection could use any of them)."""
    if is_host_allowlisted(host, allowlist):
        return True
    return bool(addresses) and all(is_address_allowed(address, allowlist) for address in addresses)


def refused(host: str, *, param: str | None = None) -> URLRefusedError:
    """The 403 error for a URL whose host is (or resolves to) a non-public address."""
    return URLRefusedError(
        f"image URL host '{host[:100]}' resolves to a non-public address; fetching it is refused. "
        "An operator can allow it with VLSERVE_URL_ALLOWLIST.",
        param=param,
    )


def check_url(url: str | httpx.URL, allowlist: Allowlist | None = None, *, param: str | None = None) -> httpx.URL:
    """Parse and validate an image URL before any connection: scheme, host, credentials, IP literals."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ClientError("image URL is not a valid URL", param=param, code="invalid_url") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        scheme = parsed.scheme[:20] or "(none)"
        raise ClientError(
            f"image URL scheme '{scheme}' is not supported; use data:, http:// or https://",
            param=param,
            code="unsupported_url_scheme",
        )
    if not parsed.host:
        raise ClientError("image URL has no host", param=param, code="invalid_url")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ClientError(f"image URL port {parsed.port} is out of range", param=param, code="invalid_url")
    if parsed.userinfo:
        raise ClientError("image URL must not contain credentials (user:password@)", param=param, code="invalid_url")
    try:
        literal = ipaddress.ip_address(parsed.host)
    except ValueError:
        return parsed  # a host name: checked on its resolved addresses at connect time
    if not (is_address_allowed(literal, allowlist) or is_host_allowlisted(parsed.host, allowlist)):
        raise refused(parsed.host, param=param)
    return parsed
