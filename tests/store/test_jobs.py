"""The job store on SQLite and PostgreSQL: claims never overlap, leases expire, a job ends exactly once."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy.exc import NoResultFound

from vlserve.store.db import make_engine, make_sessions, migrate, utcnow
from vlserve.store.jobs import JobStore, NewFile, NewPage, PageOutcome
from vlserve.store.models import Document


@pytest.fixture
def store(database_url):
    migrate(database_url)
    migrate(database_url)  # a second start finds the schema current and changes nothing
    engine = make_engine(database_url)
    yield JobStore(make_sessions(engine))
    engine.dispose()


def new_job(store: JobStore, pages: int, *, job_id: str = "doc_a", webhook: str | None = None) -> Document:
    doc = Document(
        id=job_id, status="queued", created_at=utcnow(), kind="pdf", filename="report.pdf",
        options_json=json.dumps({"longest_side": 100}), pages_total=pages, webhook_url=webhook, webhook_attempts=0,
    )  # fmt: skip
    return store.create(doc, [NewFile("report.pdf", "application/pdf", b"%PDF-1.7 bytes")], [
        NewPage(page_number=i + 1, file_position=0, file_page=i) for i in range(pages)
    ])  # fmt: skip


def done(text: str = "ok") -> PageOutcome:
    return PageOutcome("succeeded", 1, text=text)


def test_a_job_is_stored_with_its_file_and_pages_in_order(store):
    job = new_job(store, 3)
    assert [p.page_number for p in job.pages] == [1, 2, 3]
    assert all(p.status == "queued" for p in job.pages)
    assert store.file_content("doc_a", 0) == b"%PDF-1.7 bytes"


def test_pages_are_claimed_in_order_and_a_finished_page_is_never_handed_out_again(store):
    new_job(store, 2)
    first = store.claim("w1", lease_s=60)
    assert (first.page_number, first.options) == (1, {"longest_side": 100})
    assert store.get("doc_a").status == "running"
    assert store.finish_page(first.page_id, "w1", done("page one"))
    second = store.claim("w1", lease_s=60)
    assert second.page_number == 2
    assert store.claim("w2", lease_s=60) is None
    assert store.end_if_done("doc_a") is None, "page 2 is still running"
    assert store.finish_page(second.page_id, "w1", done())
    ended = store.end_if_done("doc_a")
    assert ended is not None and ended.status == "succeeded" and ended.finished_at is not None
    assert store.end_if_done("doc_a") is None, "a job ends once"
    assert [p.text for p in store.get("doc_a").pages] == ["page one", "ok"]
    with pytest.raises(NoResultFound):  # the upload went with the end of the job; the results stay
        store.file_content("doc_a", 0)


def test_uploads_are_kept_when_asked(database_url):
    migrate(database_url)
    engine = make_engine(database_url)
    keeping = JobStore(make_sessions(engine), keep_files=True)
    new_job(keeping, 1)
    page = keeping.claim("w", lease_s=60)
    keeping.finish_page(page.page_id, "w", done())
    assert keeping.end_if_done("doc_a").status == "succeeded"
    assert keeping.file_content("doc_a", 0) == b"%PDF-1.7 bytes"
    engine.dispose()


def test_concurrent_workers_never_claim_the_same_page(store):
    new_job(store, 40)
    claimed: dict[str, list[int]] = {}

    def work(name: str) -> None:
        mine = claimed.setdefault(name, [])
        while (page := store.claim(name, lease_s=60)) is not None:
            mine.append(page.page_number)
            assert store.finish_page(page.page_id, name, done(name))
            store.end_if_done(page.document_id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = sorted(n for pages in claimed.values() for n in pages)
    assert everything == list(range(1, 41)), "every page exactly once"
    assert store.get("doc_a").status == "succeeded"


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_store_its_result(store):
    new_job(store, 1)
    stale = store.claim("dead", lease_s=0.2)
    assert store.claim("alive", lease_s=60) is None, "the lease still holds"
    time.sleep(0.4)
    taken = store.claim("alive", lease_s=60)
    assert taken.page_id == stale.page_id
    assert not store.finish_page(stale.page_id, "dead", done("late")), "the old holder lost the page"
    assert store.finish_page(taken.page_id, "alive", done("fresh"))
    assert store.get("doc_a").pages[0].text == "fresh"


def test_renewal_keeps_the_lease_and_a_clean_stop_releases_its_own_pages_at_once(store):
    new_job(store, 2)
    page = store.claim("host:8080", lease_s=0.3)
    for _ in range(3):
        time.sleep(0.15)
        assert store.renew("host:8080", lease_s=0.3) == 1
    assert store.claim("other", lease_s=60).page_number == 2, "page 1 is still held"
    assert store.release_worker("host:8080") == 1  # the server stops cleanly: its page is queued again
    assert store.claim("next", lease_s=60).page_id == page.page_id


def test_a_page_put_back_is_claimed_again_and_only_its_holder_can_put_it_back(store):
    new_job(store, 1)
    page = store.claim("w", lease_s=60)
    assert not store.put_back(page.page_id, "someone else")
    assert store.put_back(page.page_id, "w")
    assert store.claim("v", lease_s=60).page_id == page.page_id


def test_cancel_drops_queued_pages_and_refuses_the_running_ones_result(store):
    new_job(store, 3)
    running = store.claim("w", lease_s=60)
    assert store.cancel("doc_a")
    assert not store.cancel("doc_a"), "already ended"
    assert not store.finish_page(running.page_id, "w", done())
    assert store.claim("w", lease_s=60) is None
    job = store.get("doc_a")
    assert job.status == "cancelled" and {p.status for p in job.pages} == {"cancelled"}
    with pytest.raises(NoResultFound):
        store.file_content("doc_a", 0)


def test_one_query_names_the_pages_a_worker_holds_that_are_still_wanted(store):
    new_job(store, 2, job_id="doc_a")
    new_job(store, 1, job_id="doc_b")
    pages = [store.claim("w", lease_s=60).page_id for _ in range(3)]
    assert store.wanted("w", pages) == set(pages)
    assert store.wanted("someone else", pages) == set()
    assert store.cancel("doc_a")  # by any server: the worker holding its pages finds out with this query
    assert store.wanted("w", pages) == {pages[2]}
    assert store.wanted("w", []) == set()


def test_a_job_whose_pages_all_failed_is_failed(store):
    new_job(store, 1)
    page = store.claim("w", lease_s=60)
    store.finish_page(page.page_id, "w", PageOutcome("failed", 5, error="not valid JSON"))
    assert store.end_if_done("doc_a").status == "failed"


def test_the_webhook_of_an_ended_job_is_claimed_once_and_recorded(store):
    new_job(store, 1, webhook="http://127.0.0.1:9/hook")
    page = store.claim("w", lease_s=60)
    store.finish_page(page.page_id, "w", done())
    assert store.end_if_done("doc_a").webhook_state == "pending"
    assert store.claim_webhook(lease_s=60).id == "doc_a"
    assert store.claim_webhook(lease_s=60) is None, "one sender at a time"
    store.record_webhook("doc_a", delivered=True, attempts=2, error=None)
    job = store.get("doc_a")
    assert (job.webhook_state, job.webhook_attempts) == ("delivered", 2)


def test_recent_lists_newest_first_with_paging(store):
    for i in range(5):
        new_job(store, 1, job_id=f"doc_{i}")
    first = store.recent(limit=2)
    assert [d.id for d in first] == ["doc_4", "doc_3"]
    assert [d.id for d in store.recent(limit=2, before="doc_3")] == ["doc_2", "doc_1"]
    assert [d.id for d in store.recent(limit=5, status="running")] == []
