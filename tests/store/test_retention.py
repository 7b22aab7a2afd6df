"""Ended jobs expire after the retention period, with their files, pages and results, on SQLite and
PostgreSQL; unfinished and recent jobs stay, and several servers purging at once never fail."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from vlserve.store.db import make_engine, make_sessions, migrate, utcnow
from vlserve.store.jobs import JobStore, NewFile, NewPage, PageOutcome
from vlserve.store.models import Document, DocumentFile, Page

RETENTION = timedelta(days=30)


@pytest.fixture
def db(database_url):
    migrate(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(db) -> JobStore:
    return JobStore(make_sessions(db), keep_files=True)  # files kept after the end: retention removes them


def new_job(store: JobStore, job_id: str, *, pages: int = 2, webhook: str | None = None) -> None:
    doc = Document(
        id=job_id, status="queued", created_at=utcnow(), kind="pdf", filename="a.pdf",
        options_json=json.dumps({}), pages_total=pages, webhook_url=webhook, webhook_attempts=0,
    )  # fmt: skip
    store.create(doc, [NewFile("a.pdf", "application/pdf", b"%PDF")],
                 [NewPage(page_number=i + 1, file_position=0, file_page=i) for i in range(pages)])  # fmt: skip


def finish(store: JobStore, job_id: str) -> None:
    """Read every page of the job, so it ends (succeeded)."""
    while (page := store.claim("w", lease_s=60)) is not None:
        assert page.document_id == job_id
        store.finish_page(page.page_id, "w", PageOutcome("succeeded", 1, text="ok", data={"k": 1}))
    assert store.end_if_done(job_id) is not None


def ended_ago(db: sa.Engine, job_id: str, age: timedelta) -> None:
    with db.begin() as connection:
        connection.execute(sa.update(Document).where(Document.id == job_id).values(finished_at=utcnow() - age))


def count(db: sa.Engine, table: type, job_id: str) -> int:
    with db.connect() as connection:
        column = table.id if table is Document else table.document_id
        return connection.scalar(sa.select(sa.func.count()).select_from(table).where(column == job_id))


def test_jobs_that_ended_before_the_retention_period_are_deleted_with_their_files_and_pages(store, db):
    for job_id in ("doc_old", "doc_recent"):
        new_job(store, job_id)
        finish(store, job_id)
    new_job(store, "doc_cancelled")
    assert store.cancel("doc_cancelled")
    new_job(store, "doc_running")  # unfinished however old: never deleted
    ended_ago(db, "doc_old", RETENTION + timedelta(hours=1))
    ended_ago(db, "doc_cancelled", RETENTION + timedelta(days=5))
    ended_ago(db, "doc_recent", RETENTION - timedelta(hours=1))
    with db.begin() as connection:
        connection.execute(sa.update(Document).where(Document.id == "doc_running")
                           .values(created_at=utcnow() - 3 * RETENTION))  # fmt: skip

    assert store.purge_ended(RETENTION) == 2
    for gone in ("doc_old", "doc_cancelled"):
        assert store.get(gone) is None
        assert count(db, Page, gone) == 0 and count(db, DocumentFile, gone) == 0, "results and files go too"
    for kept in ("doc_recent", "doc_running"):
        assert store.get(kept) is not None
        assert count(db, Page, kept) == 2 and count(db, DocumentFile, kept) == 1
    assert store.purge_ended(RETENTION) == 0, "nothing left to delete"


def test_a_job_whose_webhook_is_still_due_is_kept_until_it_is_sent(store, db):
    new_job(store, "doc_hook", pages=1, webhook="https://example.invalid/hook")
    finish(store, "doc_hook")
    ended_ago(db, "doc_hook", RETENTION * 2)
    assert store.purge_ended(RETENTION) == 0
    claimed = store.claim_webhook(lease_s=60)
    assert claimed is not None and claimed.id == "doc_hook"
    assert store.purge_ended(RETENTION) == 0, "being sent"
    store.record_webhook("doc_hook", delivered=True, attempts=1, error=None)
    assert store.purge_ended(RETENTION) == 1


def test_servers_purging_the_same_database_at_once_each_delete_what_is_left(store, db):
    for i in range(20):
        new_job(store, f"doc_{i:02}", pages=1)
        finish(store, f"doc_{i:02}")
        ended_ago(db, f"doc_{i:02}", RETENTION * 2)
    stores = [JobStore(make_sessions(db)) for _ in range(4)]  # four servers, one database
    purged: list[int] = []
    errors: list[BaseException] = []

    def purge(s: JobStore) -> None:
        try:
            purged.append(s.purge_ended(RETENTION))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=purge, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and sum(purged) == 20
    assert store.recent(limit=50) == []
