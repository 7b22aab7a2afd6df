"""Alembic environment: migrations run online against the URL set by ``vlserve.store.db.alembic_config``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from vlserve.store.db import make_engine
from vlserve.store.models import Base

# PostgreSQL: servers that start together take turns (an arbitrary, fixed advisory-lock key).
_LOCK_KEY = 7_120_451_337


def run() -> None:
    engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=not postgres)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if postgres:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                connection.commit()
    engine.dispose()


run()
