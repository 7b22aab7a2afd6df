"""The audit trail: one record per request, refused ones included; hashes, never content unless enabled."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import timedelta

import pytest

from tests.api.fakes import image_message
from tests.security.keyed import CHAT, new_key, serving
from tests.support.images import data_url, solid
from vlserve.observability.accounting import image_hash
from vlserve.security.audit import AuditEntry, AuditStore, purge_periodically
from vlserve.security.audit_writer import AuditWriter
from vlserve.store.db import make_engine, make_sessions, migrate, utcnow


def records(api, **query) -> list:
    """The records, once the writer has written every request's so far (it writes off the request path)."""
    runtime = api.app.state.vlserve
    api.portal.call(runtime.audit_writer.drained)
    return runtime.audit.query(**query)


@pytest.fixture
def api(tmp_path):
    with serving(tmp_path) as client:
        yield client


def test_a_request_leaves_who_what_and_how_it_ended(api):
    key, headers = new_key(api, "alice")
    image = solid()
    body = {"messages": image_message(data_url(image)), "max_tokens": 8}
    response = api.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200
    [record] = records(api)
    assert (record.key_id, record.method, record.endpoint, record.status) == (key, "POST", "/v1/chat/completions", 200)
    assert record.trace_id == response.headers["x-request-id"]
    assert record.client == "testclient" and record.latency_ms >= 0
    usage = response.json()["usage"]
    assert (record.model, record.prompt_tokens, record.completion_tokens) == (
        "fake-vl", usage["prompt_tokens"], usage["completion_tokens"],
    )  # fmt: skip
    assert json.loads(record.image_hashes) == [image_hash(image)]
    assert record.content_json is None, "no prompt text or image bytes by default"


def test_refused_requests_are_recorded_and_health_probes_are_not(api):
    _, docs_only = new_key(api, "docs", ["documents"])
    api.get("/health/ready")
    api.get("/v1/models")
    api.post("/v1/chat/completions", json=CHAT, headers=docs_only)
    api.get("/v1/documents/doc_missing", headers=docs_only)
    got = [(r.key_id is None, r.endpoint, r.status) for r in reversed(records(api))]
    assert got == [
        (True, "/v1/models", 401),
        (False, "/v1/chat/completions", 403),
        (False, "/v1/documents/{document_id}", 404),
    ]


def test_a_stream_is_recorded_once_it_has_ended(api):
    key, headers = new_key(api)
    with api.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    [record] = records(api)
    assert (record.key_id, record.status, record.trace_id) == (key, 200, response.headers["x-request-id"])
    assert record.completion_tokens and record.completion_tokens > 0


def test_records_are_filtered_by_key_and_time(api):
    a, a_headers = new_key(api, "a")
    b, b_headers = new_key(api, "b")
    for headers in (a_headers, b_headers, a_headers):
        api.get("/v1/models", headers=headers)
    assert [r.key_id for r in records(api, key_id=a)] == [a, a]
    assert len(records(api, limit=2)) == 2
    assert records(api, since=utcnow() + timedelta(minutes=1)) == []
    assert {r.key_id for r in records(api)} == {a, b}


def test_content_is_kept_only_when_enabled(tmp_path):
    with serving(tmp_path, audit_content=True) as api:
        _, headers = new_key(api)
        image = solid()
        body = {"messages": image_message(data_url(image), text="how many bars"), "max_tokens": 4}
        assert api.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
        [record] = records(api)
        content = json.loads(record.content_json)
        assert any("how many bars" in text for text in content["texts"])
        assert [base64.b64decode(data) for data in content["images"]] == [image]


def test_audit_off_keeps_no_records(tmp_path):
    with serving(tmp_path, audit=False) as api:
        _, headers = new_key(api)
        assert api.get("/v1/models", headers=headers).status_code == 200
        assert api.app.state.vlserve.audit is None
        sessions = api.app.state.vlserve.keys._sessions
        assert AuditStore(sessions).query() == []


def test_a_failed_write_is_logged_and_the_response_is_unharmed(api, monkeypatch, caplog):
    _, headers = new_key(api)

    def broken(entries: list[AuditEntry]) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(api.app.state.vlserve.audit, "write_many", broken)
    with caplog.at_level(logging.ERROR, logger="vlserve.audit"):
        response = api.post("/v1/chat/completions", json=CHAT, headers=headers)
        api.portal.call(api.app.state.vlserve.audit_writer.drained)
    assert response.status_code == 200 and response.json()["choices"]
    assert "audit: writing the record of POST /v1/chat/completions failed: disk full" in caplog.text


def entry(at, key="key_a") -> AuditEntry:
    return AuditEntry(at=at, key_id=key, method="GET", endpoint="/v1/models", status=200, latency_ms=3, trace_id="t")


@pytest.fixture
def store(database_url):
    migrate(database_url)
    engine = make_engine(database_url)
    yield AuditStore(make_sessions(engine))
    engine.dispose()


def test_the_store_keeps_newest_first_and_purges_what_is_past_retention(store):
    now = utcnow()
    store.write(entry(now - timedelta(days=100), key="old"))
    store.write(entry(now - timedelta(days=1), key="recent"))
    store.write(
        AuditEntry(at=now, key_id=None, method="POST", endpoint="/v1/chat/completions", status=401, latency_ms=1,
                   trace_id="x" * 300, client="203.0.113.9", image_hashes=["sha256:ab"], model="m" * 300)
    )  # fmt: skip
    newest = store.query()
    assert [r.key_id for r in newest] == [None, "recent", "old"]
    assert len(newest[0].trace_id) == 128 and len(newest[0].model) == 255, "long values are cut, not refused"
    assert json.loads(newest[0].image_hashes) == ["sha256:ab"]
    assert store.purge(now - timedelta(days=90)) == 1
    assert [r.key_id for r in store.query()] == [None, "recent"]


def test_the_periodic_purge_runs_at_once_and_keeps_running(store):
    store.write(entry(utcnow() - timedelta(days=10)))

    async def run() -> None:
        task = asyncio.create_task(purge_periodically(store, retention_days=5, every_s=0.05))
        for _ in range(100):
            if not store.query():
                break
            await asyncio.sleep(0.02)
        store.write(entry(utcnow() - timedelta(days=10)))
        for _ in range(100):
            if not store.query():
                break
            await asyncio.sleep(0.02)
        task.cancel()

    asyncio.run(run())
    assert store.query() == []


def test_the_writer_writes_a_burst_in_few_transactions_and_everything_before_it_stops(store, monkeypatch):
    transactions: list[int] = []
    write_many = store.write_many

    def counted(entries) -> None:
        transactions.append(len(entries))
        write_many(entries)

    monkeypatch.setattr(store, "write_many", counted)

    async def run() -> None:
        writer = AuditWriter(store, max_pending=50, max_batch=20)
        writer.start()
        for n in range(120):  # past max_pending: submit waits for the writer instead of dropping a record
            await writer.submit(entry(utcnow(), key=f"k{n}"))
        await writer.close()

    asyncio.run(run())
    assert len(store.query(limit=500)) == 120, "every record is written, the last ones at close"
    assert sum(transactions) == 120 and max(transactions) <= 20
    assert len(transactions) < 60, f"a burst is batched: {transactions}"


def test_a_failed_batch_is_logged_and_the_writer_goes_on(store, monkeypatch, caplog):
    write_many = store.write_many
    failures = iter([RuntimeError("database is locked")])

    def flaky(entries) -> None:
        if (failure := next(failures, None)) is not None:
            raise failure
        write_many(entries)

    monkeypatch.setattr(store, "write_many", flaky)

    async def run() -> None:
        writer = AuditWriter(store)
        writer.start()
        await writer.submit(entry(utcnow(), key="lost"))
        await writer.drained()
        await writer.submit(entry(utcnow(), key="kept"))
        await writer.close()

    with caplog.at_level(logging.ERROR, logger="vlserve.audit"):
        asyncio.run(run())
    assert "audit: writing the record of GET /v1/models failed: database is locked" in caplog.text
    assert [r.key_id for r in store.query()] == ["kept"]
