"""Service tier: the real app and HTTP layer over a fake engine behind the Engine protocol."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.fakes import FakeEngine
from vlserve.app import build_app
from vlserve.settings import Settings


@pytest.fixture
def make_client(tmp_path_factory):
    clients: list[TestClient] = []

    def make(engine: FakeEngine | None = None, **settings) -> TestClient:
        # Each app gets its own data directory, so its job database (SQLite) is fresh.
        settings = {"data_dir": tmp_path_factory.mktemp("data"), "document_poll_s": 0.05, **settings}
        app = build_app(Settings(**settings), engine=engine or FakeEngine())
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()
