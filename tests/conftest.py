"""Fixtures shared by every tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.http_server import HostedServer, serve_http

pytest_plugins = ["tests.e2e.fixtures"]


@pytest.fixture(scope="session")
def image_host() -> Iterator[HostedServer]:
    """A loopback HTTP server serving test images (and errors, slowness, redirects) on a free port."""
    with serve_http() as hosted:
        yield hosted
