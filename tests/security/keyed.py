"""An app over the fake engine with API keys required, and keys made in its own database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.fakes import FakeEngine
from vlserve.app import build_app
from vlserve.settings import Settings

CHAT = {"messages": [{"role": "user", "content": "what is this"}], "max_tokens": 8}


@contextlib.contextmanager
def serving(data_dir: Path, *, engine: FakeEngine | None = None, **settings: object) -> Iterator[TestClient]:
    """The app with ``require_auth`` on unless ``settings`` say otherwise; its own SQLite in ``data_dir``."""
    config = {"data_dir": data_dir, "document_poll_s": 0.05, "require_auth": True, **settings}
    app = build_app(Settings(**config), engine=engine or FakeEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def new_key(client: TestClient, name: str = "key", scopes: Sequence[str] = ("chat",), **limits: object) -> tuple:
    """(key id, headers carrying it) for a key created in the app's database."""
    row, secret = client.app.state.vlserve.keys.create(name, scopes=scopes, **limits)
    return row.id, {"Authorization": f"Bearer {secret}"}


def assert_error(response, status: int, *, code: str | None = None, says: str = "", kind: str | None = None) -> dict:
    """The OpenAI error envelope with ``status``; ``says`` is part of its message. Returns the error object."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    if kind is not None:
        assert error["type"] == kind
    assert says.lower() in error["message"].lower(), error["message"]
    return error
