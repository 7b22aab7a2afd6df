"""The store tests run on a fresh SQLite file and on a fresh database of the local PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        yield from postgres_database()
