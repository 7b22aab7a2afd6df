"""API keys on SQLite and PostgreSQL: secrets shown once and stored hashed, revocation, expiry, limits, cache."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.api.fakes import FakeEngine
from vlserve.errors import AuthenticationError, ClientError
from vlserve.runtime import open_runtime
from vlserve.security import keys as keys_module
from vlserve.security.keys import KeyStore, hash_secret, parse_scopes
from vlserve.settings import Settings
from vlserve.store.db import make_engine, make_sessions, migrate, utcnow
from vlserve.store.models import ApiKey


@pytest.fixture
def sessions(database_url):
    migrate(database_url)
    engine = make_engine(database_url)
    yield make_sessions(engine)
    engine.dispose()


@pytest.fixture
def store(sessions, tmp_path):
    return KeyStore(sessions, Settings(data_dir=tmp_path, default_requests_per_minute=60, default_tokens_per_day=1000))


def test_a_new_key_is_a_vlsk_secret_shown_once_and_stored_only_as_its_sha256(store, sessions):
    row, secret = store.create("ci pipeline", scopes=["chat"])
    assert secret.startswith("vlsk_") and len(secret) > 40
    assert row.id.startswith("key_") and len(row.id) == 16
    assert row.prefix == secret[:12] and row.scopes == "chat"
    with sessions() as session:
        stored = session.get(ApiKey, row.id)
        values = [str(getattr(stored, c.key)) for c in ApiKey.__table__.columns]
    assert stored.secret_hash == hash_secret(secret)
    assert not any(secret in value for value in values), "the secret itself is never stored"
    _, other = store.create("ci pipeline", scopes=["chat"])
    assert other != secret


def test_the_secret_authenticates_as_its_key_with_its_scopes_and_resolved_limits(store):
    row, secret = store.create("alice", scopes=["chat", "documents"], tokens_per_day=0, concurrent_requests=2)
    who = store.authenticate(secret)
    assert (who.key_id, who.name, who.scopes) == (row.id, "alice", frozenset({"chat", "documents"}))
    assert who.requests_per_minute == 60, "unset: the server's default"
    assert who.tokens_per_day == 0, "the key's own 0 (no limit) wins over the default"
    assert who.concurrent_requests == 2
    assert who.allows("chat") and not who.allows("metrics")
    assert store.principal(row.id) == who
    assert store.principal("key_000000000000") is None


def test_an_unknown_revoked_or_expired_key_is_refused_saying_which(store, sessions):
    with pytest.raises(AuthenticationError, match="no such key") as unknown:
        store.authenticate("vlsk_" + "x" * 43)
    assert unknown.value.status_code == 401 and unknown.value.headers["WWW-Authenticate"] == "Bearer"
    for junk in ("sk-openai-style", "vlsk_" + "x" * 200):
        with pytest.raises(AuthenticationError, match="not a vlserve key"):
            store.authenticate(junk)

    revoked, secret = store.create("bob")
    assert store.revoke(revoked.id)
    with pytest.raises(AuthenticationError, match=f"{revoked.id} was revoked"):
        store.authenticate(secret)

    expiring, secret = store.create("carol", expires_days=1)
    assert store.authenticate(secret).key_id == expiring.id
    with sessions.begin() as session:
        session.execute(update(ApiKey).where(ApiKey.id == expiring.id).values(expires_at=utcnow() - timedelta(hours=1)))
    with pytest.raises(AuthenticationError, match=f"{expiring.id} expired on"):
        store.authenticate(secret)


def test_revoke_says_whether_the_key_exists_and_keeps_the_first_revocation_time(store):
    row, _ = store.create("dave")
    assert store.revoke("key_doesnotexist") is False
    assert store.revoke(row.id) is True
    first = store.get(row.id).revoked_at
    assert store.revoke(row.id) is True
    assert store.get(row.id).revoked_at == first
    assert [k.id for k in store.list()] == [row.id]


def test_scopes_names_and_limits_are_checked(store):
    assert parse_scopes("chat, documents,chat") == ("chat", "documents")
    with pytest.raises(ClientError, match="unknown scope 'root'; scopes are chat, documents, metrics, admin"):
        store.create("x", scopes=["chat", "root"])
    with pytest.raises(ClientError, match="at least one scope"):
        store.create("x", scopes=[])
    with pytest.raises(ClientError, match="name"):
        store.create("   ")
    with pytest.raises(ClientError, match="requests_per_minute must be 0"):
        store.create("x", requests_per_minute=-1)
    with pytest.raises(ClientError, match="positive number of days"):
        store.create("x", expires_days=0)
    assert store.list() == []


def test_last_used_is_written_at_most_once_a_minute(store, sessions):
    row, secret = store.create("erin")
    assert store.get(row.id).last_used_at is None
    store.authenticate(secret)
    first = store.get(row.id).last_used_at
    assert first is not None
    store.authenticate(secret)
    assert store.get(row.id).last_used_at == first, "a second use within the minute writes nothing"


def test_verify_caches_for_a_few_seconds_and_a_revocation_elsewhere_bites_after_that(store, sessions, monkeypatch):
    row, secret = store.create("frank")
    clock = [1000.0]
    monkeypatch.setattr(keys_module.time, "monotonic", lambda: clock[0])
    assert asyncio.run(store.verify(secret)).key_id == row.id

    other_process = KeyStore(sessions, Settings())
    assert other_process.revoke(row.id)
    assert asyncio.run(store.verify(secret)).key_id == row.id, "still cached in this process"
    clock[0] += keys_module.CACHE_SECONDS + 0.1
    with pytest.raises(AuthenticationError, match="revoked"):
        asyncio.run(store.verify(secret))


def test_a_revocation_in_the_same_process_bites_at_once(store):
    row, secret = store.create("grace")
    assert asyncio.run(store.verify(secret)).key_id == row.id
    store.revoke(row.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        asyncio.run(store.verify(secret))


def test_the_runtime_migrates_its_database_first_even_without_documents(database_url, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=database_url)

    async def first_use() -> tuple[str, str]:
        async with open_runtime(settings, FakeEngine(), documents=False) as runtime:  # the CLI's --local paths
            assert runtime.documents is None and runtime.audit is not None
            row, secret = runtime.keys.create("local")
            return row.id, (await runtime.keys.verify(secret)).key_id

    made, verified = asyncio.run(first_use())
    assert made == verified
