"""A key sees only its own document jobs; an admin key sees all; a bad `after` cursor is a 400."""

from __future__ import annotations

import json

import pytest

from tests.security.keyed import assert_error, new_key, serving
from tests.support.images import solid
from vlserve.store.db import make_engine, make_sessions, migrate, utcnow
from vlserve.store.jobs import JobStore, NewFile, NewPage, UnknownCursorError
from vlserve.store.models import Document


def submit(api, headers: dict | None = None) -> str:
    response = api.post("/v1/documents", files=[("file", ("page.png", solid(), "image/png"))], headers=headers or {})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def listed(api, headers: dict | None = None, **query) -> list[str]:
    response = api.get("/v1/documents", params=query, headers=headers or {})
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["data"]]


@pytest.fixture
def api(tmp_path):
    with serving(tmp_path) as client:
        yield client


def test_another_keys_job_is_not_found_exactly_like_a_missing_one(api):
    _, alice = new_key(api, "alice", ["documents"])
    _, bob = new_key(api, "bob", ["documents"])
    job = submit(api, alice)
    assert api.get(f"/v1/documents/{job}", headers=alice).status_code == 200
    for method, path in [("GET", "{}"), ("GET", "{}/result"), ("DELETE", "{}")]:
        theirs = api.request(method, "/v1/documents/" + path.format(job), headers=bob)
        missing = api.request(method, "/v1/documents/" + path.format("doc_" + "0" * 24), headers=bob)
        assert_error(theirs, 404, code="document_not_found")
        assert theirs.json()["error"]["message"].replace(job, "ID") == missing.json()["error"]["message"].replace(
            "doc_" + "0" * 24, "ID"
        )
    assert api.get(f"/v1/documents/{job}", headers=alice).json()["status"] != "cancelled", "bob could not cancel it"


def test_a_key_lists_its_own_jobs_and_an_admin_key_lists_all(api):
    _, alice = new_key(api, "alice", ["documents"])
    _, bob = new_key(api, "bob", ["documents"])
    _, admin = new_key(api, "ops", ["admin"])
    a1, b1, a2 = submit(api, alice), submit(api, bob), submit(api, alice)
    assert listed(api, alice) == [a2, a1]
    assert listed(api, bob) == [b1]
    assert listed(api, admin) == [a2, b1, a1]
    assert api.get(f"/v1/documents/{b1}", headers=admin).status_code == 200
    assert listed(api, alice, limit=1, after=a2) == [a1], "paging through own jobs"


def test_a_cursor_that_is_not_one_of_the_callers_jobs_is_a_404_naming_after(api):
    _, alice = new_key(api, "alice", ["documents"])
    _, bob = new_key(api, "bob", ["documents"])
    job = submit(api, alice)
    for headers, cursor in [(alice, "doc_" + "0" * 24), (bob, job)]:  # another key's job is not found, as on GET
        response = api.get("/v1/documents", params={"after": cursor}, headers=headers)
        error = assert_error(response, 404, code="invalid_cursor", says="'after'")
        assert error["param"] == "after"
    malformed = assert_error(api.get("/v1/documents", params={"after": "garbage"}, headers=alice), 400, says="doc_")
    assert malformed["param"] == "after"


def test_with_auth_off_jobs_have_no_owner_and_everyone_sees_them(tmp_path):
    with serving(tmp_path, require_auth=False) as api:
        first, second = submit(api), submit(api)
        assert listed(api) == [second, first]
        assert api.app.state.vlserve.documents.store.get(first).owner is None
        assert_error(api.get("/v1/documents", params={"after": "doc_" + "f" * 24}), 404, code="invalid_cursor")


@pytest.fixture
def store(database_url):
    migrate(database_url)
    engine = make_engine(database_url)
    yield JobStore(make_sessions(engine))
    engine.dispose()


def add_job(store: JobStore, job_id: str, owner: str | None) -> None:
    doc = Document(
        id=job_id, status="queued", created_at=utcnow(), kind="images", options_json=json.dumps({}),
        pages_total=1, webhook_attempts=0, owner=owner,
    )  # fmt: skip
    store.create(doc, [NewFile("a.png", "image/png", b"png")], [NewPage(1, 0, 0)])


def test_the_store_filters_by_owner_and_refuses_a_foreign_or_unknown_cursor(store):
    add_job(store, "doc_a1", "key_a")
    add_job(store, "doc_b1", "key_b")
    add_job(store, "doc_a2", "key_a")
    assert store.get("doc_b1", owner="key_a") is None
    assert store.get("doc_b1", owner="key_b").owner == "key_b"
    assert store.get("doc_b1").id == "doc_b1", "no owner given: any job"
    assert [d.id for d in store.recent(limit=10, owner="key_a")] == ["doc_a2", "doc_a1"]
    assert [d.id for d in store.recent(limit=10, owner="key_a", before="doc_a2")] == ["doc_a1"]
    assert len(store.recent(limit=10)) == 3
    for owner, cursor in [("key_a", "doc_b1"), ("key_a", "doc_zz"), (None, "doc_zz")]:
        with pytest.raises(UnknownCursorError):
            store.recent(limit=10, owner=owner, before=cursor)
