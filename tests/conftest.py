"""Fixtures shared by every tier."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpcore
import pytest

from tests.support.databases import postgres_database
from tests.support.http_server import HostedServer, serve_http

pytest_plugins = ["tests.e2e.fixtures"]


@pytest.fixture(scope="session")
def image_host() -> Iterator[HostedServer]:
    """A loopback HTTP server serving test images (and errors, slowness, redirects) on a free port."""
    with serve_http() as hosted:
        yield hosted


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries DNS or opens a connection."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("this test must not touch the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", refuse)


@pytest.fixture
def no_network_but_unix_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """``no_network``, except for Unix sockets: worker processes start through multiprocessing's forkserver,
    which this process reaches over one."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("this test must not touch the network")

    connect = socket.socket.connect

    def local_only(self: socket.socket, address: object) -> None:
        if self.family != socket.AF_UNIX:
            refuse()
        connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", local_only)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", refuse)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A fresh job database: a SQLite file, then a new database on the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        yield from postgres_database()
