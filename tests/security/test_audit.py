"""The audit trail: one record per request, refused ones included; hashes, never content unless enabled."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.api.fakes import image_message
from tests.security.keyed import CHAT, new_key, serving
from tests.support.images import data_url, solid
from vlserve.observability.accounting import image_hash
from vlserve.security.audit import AuditEntry, AuditStore, purge_periodically
from vlserve.security.audit_refusals import RefusalTally
from vlserve.security.audit_writer import AuditWriter
from vlserve.store.db import make_engine, make_sessions, migrate, utcnow
from vlserve.store.models import ApiKey


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


def test_a_record_names_the_document_job_it_created_or_named(api):
    key, headers = new_key(api, "docs", ["documents"])
    files = [("file", ("page.png", solid(), "image/png"))]
    created = api.post("/v1/documents", files=files, headers=headers).json()["id"]
    api.get(f"/v1/documents/{created}", headers=headers)
    api.get("/v1/documents", headers=headers)
    got = [(r.method, r.endpoint, r.resource) for r in reversed(records(api, key_id=key)) if r.method != "PAGE"]
    assert got == [
        ("POST", "/v1/documents", created),
        ("GET", "/v1/documents/{document_id}", created),
        ("GET", "/v1/documents", None),
    ]


def test_each_document_page_is_a_record_with_its_tokens_charged_to_the_jobs_key(tmp_path):
    with serving(tmp_path, document_max_tokens=50) as api:  # fits the fake model's context
        check_pages_are_audited(api)


def check_pages_are_audited(api) -> None:
    key, headers = new_key(api, "docs", ["documents"])
    files = [("file", (f"p{i}.png", solid(), "image/png")) for i in range(2)]
    job = api.post("/v1/documents", files=files, headers=headers).json()["id"]
    deadline = time.monotonic() + 30
    while api.get(f"/v1/documents/{job}", headers=headers).json()["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the job never ended"
        time.sleep(0.05)
    pages = sorted(records(api, resource=job, key_id=key), key=lambda r: r.resource)
    assert [(r.method, r.resource, r.status) for r in pages if r.method == "PAGE"] == [
        ("PAGE", f"{job}/pages/1", 200), ("PAGE", f"{job}/pages/2", 200),
    ]  # fmt: skip
    for record in (r for r in pages if r.method == "PAGE"):
        assert record.model == "fake-vl" and record.prompt_tokens > 0 and record.completion_tokens > 0
        assert record.endpoint == "/v1/documents/{document_id}/pages/{page_number}"


def test_a_revoked_or_expired_key_is_named_in_the_record_of_its_refusal(api):
    revoked, revoked_headers = new_key(api, "revoked")
    expired, expired_headers = new_key(api, "expired")
    runtime = api.app.state.vlserve
    runtime.keys.revoke(revoked)
    with runtime.keys._sessions.begin() as session:
        session.execute(update(ApiKey).where(ApiKey.id == expired).values(expires_at=utcnow() - timedelta(days=1)))
    for headers in (revoked_headers, expired_headers):
        assert api.get("/v1/models", headers=headers).status_code == 401
    assert [(r.key_id, r.status) for r in reversed(records(api))] == [(revoked, 401), (expired, 401)]


def test_a_flood_of_requests_without_a_key_leaves_two_records_and_every_one_is_counted(api):
    _, metrics_key = new_key(api, "prometheus", ["metrics"])
    for _ in range(150):
        assert api.post("/v1/chat/completions", json=CHAT).status_code == 401
    first = records(api)
    assert [(r.status, r.count, r.endpoint) for r in first] == [(401, None, "/v1/chat/completions")]
    api.portal.call(lambda: api.app.state.vlserve.refusals.flush(everything=True))  # as at the window's end
    summary = records(api)[0]
    assert (summary.status, summary.count, summary.client, summary.key_id) == (401, 149, "testclient", None)
    exposition = api.get("/metrics", headers=metrics_key).text
    assert 'vlserve_errors_total{code="missing_api_key"} 150.0' in exposition


def test_refusals_are_tallied_per_client_and_window_and_the_clients_tallied_apart_are_bounded():
    written: list[AuditEntry] = []
    now = [0.0]

    async def submit(entry: AuditEntry) -> None:
        written.append(entry)

    tally = RefusalTally(submit, window_s=60, max_clients=3, clock=lambda: now[0])

    def refused(client: str, key: str | None = None) -> AuditEntry:
        return AuditEntry(
            at=utcnow(), key_id=key, method="GET", endpoint="/v1/models", status=401, latency_ms=1, trace_id="t",
            client=client,
        )  # fmt: skip

    async def scenario() -> None:
        for client in ("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2"):
            await tally.record(refused(client))
        await tally.record(refused("10.0.0.2", key="key_revoked"))  # a revoked key is tallied apart
        for client in ("10.0.0.3", "10.0.0.4"):  # past max_clients: together, as "*"
            await tally.record(refused(client))
        now[0] = 61.0
        await tally.flush()
        await tally.record(refused("10.0.0.1"))  # a new window: recorded as itself again

    asyncio.run(scenario())
    got = [(e.client, e.key_id, e.count) for e in written]
    assert got == [
        ("10.0.0.1", None, None), ("10.0.0.2", None, None), ("10.0.0.2", "key_revoked", None), ("*", None, None),
        ("10.0.0.1", None, 2), ("*", None, 1), ("10.0.0.1", None, None),
    ]  # fmt: skip


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
