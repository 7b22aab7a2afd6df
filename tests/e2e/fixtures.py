"""End-to-end tier: a real server process, driven by the official openai client and plain HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.server import FAST_IMAGES, ServerProcess


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlserve.demo import build_random_model

    return build_random_model(tmp_path_factory.mktemp("models") / "vlserve-demo-random")


@pytest.fixture(scope="session")
def start_server(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    servers: list[ServerProcess] = []

    def start(*, ready: bool = True, env: dict[str, str] | None = None, **settings: object) -> ServerProcess:
        """A server on the demo model; returns once it is ready (or, with ``ready=False``, live)."""
        log = tmp_path_factory.mktemp("server") / "server.log"
        data = tmp_path_factory.mktemp("data")  # its own job database and file cache, not the user's
        server = ServerProcess(demo_model, log, env=env, **{"data_dir": data, **FAST_IMAGES, **settings})
        servers.append(server)
        if not ready:
            server.wait_status("/health/live", 200)
            return server
        return server.wait_ready()

    yield start
    for server in servers:  # all at once: each takes a few seconds to drain and exit
        server.signal_stop()
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server) -> ServerProcess:
    """The shared server: default settings, loopback 127.0.0.1 allowlisted for image URLs."""
    return start_server(url_allowlist="127.0.0.1/32", url_fetch_timeout=2)


@pytest.fixture(scope="session")
def short_queue_server(start_server) -> ServerProcess:
    """One request decoded at a time, two waiting, no answer cache (identical requests would be one): a server
    that is easy to fill. Shared by the overload tests, which each wait for all their requests."""
    return start_server(max_batch_size=1, max_queue_size=2, cache=False)


@pytest.fixture
def openai_client(server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
