"""Database engines and sessions from one URL, and schema migration to the newest revision at start.

SQLite (the default, a file in the data directory) runs in WAL mode with a busy timeout, so several
threads and processes can share one file. PostgreSQL runs the same code; concurrent servers starting
together migrate one at a time under an advisory lock (see ``migrations/env.py``).

Migrations only add (tables, nullable or defaulted columns, indexes), so a release rolled back runs on the
schema a newer release left: it finds a revision it does not know, says so and uses the schema as it is.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger("vlserve.store")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (creates it on first use); one a newer release
    migrated further is left as it is (a rollback)."""
    config = alembic_config(url)
    script = ScriptDirectory.from_config(config)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
    finally:
        engine.dispose()
    known = {revision.revision for revision in script.walk_revisions()}
    newer = [revision for revision in current if revision not in known]
    if newer:
        log.warning(
            "the database schema is at revision %s, newer than this release knows (%s): a newer vlserve "
            "migrated it; using it as it is (migrations only add, so an older release runs on it)",
            ", ".join(newer), script.get_current_head(),
        )  # fmt: skip
        return
    command.upgrade(config, "head")
