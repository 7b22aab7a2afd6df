"""Rollbacks: an older release starts on a schema a newer one migrated, because migrations only ever add."""

from __future__ import annotations

import ast
import logging

from sqlalchemy import text

from vlserve.security.keys import KeyStore
from vlserve.settings import Settings
from vlserve.store.db import MIGRATIONS, make_engine, make_sessions, migrate

# Operations that would break an older release running on the newer schema (a rollback).
NOT_ADDITIVE = {"drop_table", "drop_column", "alter_column", "rename_table", "drop_index", "drop_constraint"}


def test_an_older_release_runs_on_a_schema_a_newer_release_migrated(database_url, caplog):
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:  # what a newer release's migration leaves: a revision unknown here
            connection.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
        with caplog.at_level(logging.WARNING, logger="vlserve.store"):
            migrate(database_url)
        assert "0099_from_the_future, newer than this release knows" in caplog.text
        keys = KeyStore(make_sessions(engine), Settings())
        _, secret = keys.create("after a rollback")
        assert keys.authenticate(secret).name == "after a rollback"
    finally:
        engine.dispose()


def test_every_migration_only_adds():
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        tree = ast.parse(path.read_text())
        (upgrade,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"]
        calls = {
            node.func.attr
            for node in ast.walk(upgrade)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        assert not calls & NOT_ADDITIVE, f"{path.name} upgrade() uses {sorted(calls & NOT_ADDITIVE)}"
        for call in ast.walk(upgrade):  # a column added to a table an older release writes must fill itself
            if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "add_column":
                words = {k.arg: k.value for c in ast.walk(call) if isinstance(c, ast.Call) for k in c.keywords}
                required = isinstance(words.get("nullable"), ast.Constant) and words["nullable"].value is False
                assert not required or "server_default" in words, f"{path.name}: NOT NULL column without default"
