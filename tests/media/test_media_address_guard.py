"""Address guard: pure functions, checked with the network switched off (no DNS, no connect)."""

from __future__ import annotations

import ipaddress

import pytest

from vlserve.errors import ClientError, URLRefusedError
from vlserve.media import check_url, is_address_allowed, parse_allowlist

pytestmark = pytest.mark.usefixtures("no_network")
PARAM = "messages[0].content[1].image_url"
EMPTY = parse_allowlist([])


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),  # loopback
        ("10.1.2.3", False),  # private
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # link-local: cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("255.255.255.255", False),
        ("224.0.0.1", False),  # multicast
        ("240.0.0.1", False),  # reserved
        ("192.0.2.1", False),  # documentation
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("2001:db8::1", False),  # documentation
        ("not-an-ip", False),
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),
        ("2002:808:808::1", True),
    ],
)
def test_only_global_addresses_are_allowed_by_default(address: str, allowed: bool) -> None:
    assert is_address_allowed(address, EMPTY) is allowed
    assert is_address_allowed(address) is allowed


def test_ip_address_objects_are_accepted() -> None:
    assert is_address_allowed(ipaddress.ip_address("8.8.8.8"), EMPTY)
    assert not is_address_allowed(ipaddress.ip_address("10.0.0.1"), EMPTY)


@pytest.mark.parametrize(
    ("entries", "address", "allowed"),
    [
        (["10.0.0.0/8"], "10.1.2.3", True),
        (["10.0.0.0/8"], "::ffff:10.1.2.3", True),  # the same host, IPv4-mapped
        (["10.0.0.0/8"], "11.0.0.1", True),  # public anyway
        (["10.0.0.0/8"], "192.168.0.1", False),
        (["192.168.1.7"], "192.168.1.7", True),  # a bare IP is a /32
        (["192.168.1.7"], "192.168.1.8", False),
        (["127.0.0.1/32"], "127.0.0.1", True),
        (["127.0.0.1/32"], "127.0.0.2", False),
        (["fd00::/8"], "fd12::1", True),
        (["fd00::/8"], "fc00::1", False),
        (["images.internal"], "10.0.0.1", False),  # a host name does not allow addresses
    ],
)
def test_allowlisted_networks_are_allowed(entries: list[str], address: str, allowed: bool) -> None:
    assert is_address_allowed(address, parse_allowlist(entries)) is allowed


def test_parse_allowlist_splits_hosts_and_networks() -> None:
    allowlist = parse_allowlist(["Images.Internal.", " 10.0.0.0/8 ", "", "[fd00::1]", "cdn.corp"])
    assert allowlist.hosts == frozenset({"images.internal", "cdn.corp"})
    assert [str(net) for net in allowlist.networks] == ["10.0.0.0/8", "fd00::1/128"]


def test_parse_allowlist_rejects_a_broken_cidr() -> None:
    with pytest.raises(ValueError):
        parse_allowlist(["10.0.0.0/33"])


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/", "javascript:alert(1)"]
)
def test_check_url_refuses_other_schemes(url: str) -> None:
    with pytest.raises(ClientError) as info:
        check_url(url, EMPTY, param=PARAM)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "unsupported_url_scheme", PARAM)
    assert "http" in info.value.message


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http:///a.png", "no host"),
        ("https://user:secret@example.com/a.png", "credentials"),
        ("http://[::1/a.png", "not a valid URL"),
        ("http://example.com:99999/a.png", "port 99999 is out of range"),
    ],
)
def test_check_url_refuses_malformed_urls(url: str, problem: str) -> None:
    with pytest.raises(ClientError) as info:
        check_url(url, EMPTY, param=PARAM)
    assert (info.value.status_code, info.value.param) == (400, PARAM)
    assert problem in info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1:8443/a.png",
        "http://[::1]/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://[fe80::1]/a.png",
    ],
)
def test_check_url_refuses_non_public_ip_literals_with_403(url: str) -> None:
    with pytest.raises(URLRefusedError) as info:
        check_url(url, EMPTY, param=PARAM)
    assert (info.value.status_code, info.value.code, info.value.param) == (403, "url_refused", PARAM)
    assert "non-public address" in info.value.message
    assert "VLSERVE_URL_ALLOWLIST" in info.value.message


def test_check_url_accepts_public_and_allowlisted_literals_and_defers_host_names() -> None:
    assert check_url("https://8.8.8.8/a.png", EMPTY).host == "8.8.8.8"
    assert check_url("http://10.0.0.5/a.png", parse_allowlist(["10.0.0.0/24"])).host == "10.0.0.5"
    # A host name is not resolved here (the network is off): it is checked at connect time.
    assert check_url("https://images.example.com/a.png?x=1", EMPTY).host == "images.example.com"
