"""Document jobs on real servers: resume after SIGKILL (SQLite and PostgreSQL), two servers on one
PostgreSQL, a signed webhook to a local receiver, the retry ladder on a real model, and a DELETE that stops
the pages being read."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.server import FAST_IMAGES, ServerProcess
from tests.support.databases import postgres_database
from tests.support.pdfs import text_pdf
from tests.support.webhook_receiver import receive_webhooks
from vlserve.documents.webhook import verify

pytestmark = pytest.mark.e2e

# Random weights answer under this grammar in a handful of tokens, so pages succeed.
FACTS = {
    "type": "object",
    "properties": {"kind": {"enum": ["bar", "line"]}, "labelled": {"type": "boolean"}},
    "required": ["kind", "labelled"],
    "additionalProperties": False,
}
JOBS = {"document_poll_s": 0.2, "document_longest_side": 256, "document_lease_s": 5, **FAST_IMAGES}


@pytest.fixture
def servers(demo_model, tmp_path) -> Iterator:
    started: list[ServerProcess] = []

    def start(name: str, *, wait: bool = True, **settings: object) -> ServerProcess:
        """A server on the demo model; ``wait=False`` returns at once (call ``wait_ready`` later), so that
        servers that are all needed start side by side."""
        log = tmp_path / f"{name}-{len(started)}.log"
        server = ServerProcess(demo_model, log, **{"data_dir": tmp_path / name, **JOBS, **settings})
        started.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in started:
        server.stop()


def submit(server: ServerProcess, pdf: bytes, **form: str) -> dict:
    files = {"file": ("report.pdf", pdf, "application/pdf")}
    r = httpx.post(f"{server.url}/v1/documents", files=files, data=form, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()


def wait_for(server: ServerProcess, job_id: str, done=lambda s: s["status"] in ("succeeded", "failed"), timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/v1/documents/{job_id}", timeout=10).json()
        if done(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not get there: {status}")


def finished_pages(database_url: str, job_id: str) -> dict[int, tuple]:
    """Straight from the database: page number → (status, text, finished_at) of every ended page."""
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT page_number, status, text, finished_at FROM document_pages "
                "WHERE document_id = :id AND status IN ('succeeded', 'failed')"
            ),
            {"id": job_id},
        )
        pages = {row.page_number: (row.status, row.text, str(row.finished_at)) for row in rows}
    engine.dispose()
    return pages


def test_a_job_killed_mid_way_resumes_without_recomputing_or_losing_a_page(servers, database_url, tmp_path):
    # Markdown pages on random weights run to the token limit: slow enough to kill the server between pages.
    settings = {
        "database_url": database_url, "data_dir": tmp_path / "data", "worker_id": "doc-server",
        "document_concurrency": 1, "document_max_tokens": 40, "document_temperatures": "0",
        "document_lease_s": 4,  # the killed server's page is taken over after this, not the default 30 s
    }  # fmt: skip
    first = servers("first", **settings)
    job = submit(first, text_pdf(8))
    wait_for(first, job["id"], done=lambda s: s["pages"]["done"] >= 2)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    before = finished_pages(database_url, job["id"])
    assert 2 <= len(before) < 8, "killed mid-way"

    second = servers("second", **settings)
    status = wait_for(second, job["id"])
    assert status["pages"]["done"] == 8
    after = finished_pages(database_url, job["id"])
    assert sorted(after) == list(range(1, 9)), "no page lost"
    assert {n: after[n] for n in before} == before, "no finished page recomputed"


@pytest.fixture
def shared_postgres() -> Iterator[str]:
    yield from postgres_database()


def test_two_servers_on_one_postgresql_split_the_pages_and_never_read_one_twice(servers, shared_postgres, tmp_path):
    common = {
        "database_url": shared_postgres,
        "document_concurrency": 2,
        "document_max_tokens": 64,
        "document_temperatures": "0",
    }
    one = servers("one", wait=False, worker_id="one", data_dir=tmp_path / "one", **common)
    two = servers("two", worker_id="two", data_dir=tmp_path / "two", **common)
    one.wait_ready()
    # Two pages at a time on each server: eight pages are four rounds, enough for both to take some.
    job = submit(one, text_pdf(8), json_schema=json.dumps(FACTS))
    status = wait_for(two, job["id"])
    assert status["pages"]["done"] == 8
    result = httpx.get(f"{two.url}/v1/documents/{job['id']}/result", timeout=10).json()
    by_worker = {w: [p["page"] for p in result["pages"] if p["worker"].startswith(f"{w}/")] for w in ("one", "two")}
    assert sorted(by_worker["one"] + by_worker["two"]) == list(range(1, 9))
    assert by_worker["one"] and by_worker["two"], f"both servers worked: {by_worker}"
    logged = [
        line.split(" page ")[1].split(":")[0]
        for server in (one, two)
        for line in server.log().splitlines()
        if f"document {job['id']} page " in line and "attempt(s)" in line
    ]
    assert sorted(map(int, logged)) == list(range(1, 9)), "each page was read exactly once"


def test_a_finished_job_posts_a_signed_summary_to_the_webhook(servers, tmp_path):
    with receive_webhooks([503, 200]) as receiver:
        server = servers("hook", data_dir=tmp_path / "data", url_allowlist="127.0.0.1/32", document_max_tokens=64)
        job = submit(server, text_pdf(2), json_schema=json.dumps(FACTS), webhook_url=receiver.url)
        assert receiver.wait_for(2, timeout=60), "one failed delivery, then one retry"
        delivery = receiver.requests[-1]
        assert verify(
            job["webhook_secret"], delivery.header("X-Vlserve-Timestamp"), delivery.header("X-Vlserve-Signature"),
            delivery.body,
        )  # fmt: skip
        assert not verify("wrong", delivery.header("X-Vlserve-Timestamp"), delivery.header("X-Vlserve-Signature"),
                          delivery.body)  # fmt: skip
        summary = delivery.json()
        assert (summary["id"], summary["status"], summary["pages"]["succeeded"]) == (job["id"], "succeeded", 2)
        assert delivery.header("X-Vlserve-Event") == "document.succeeded"
        status = wait_for(server, job["id"], done=lambda s: s["webhook"]["state"] == "delivered")
        assert status["webhook"]["attempts"] == 2


def test_a_real_model_climbing_the_ladder_fails_a_page_with_the_reason(servers, tmp_path):
    # No answer under FACTS fits in 4 tokens: every attempt is cut off.
    server = servers("ladder", data_dir=tmp_path / "data", document_max_tokens=4, document_temperatures="0,0.7")
    job = submit(server, text_pdf(1), json_schema=json.dumps(FACTS))
    status = wait_for(server, job["id"])
    page = httpx.get(f"{server.url}/v1/documents/{job['id']}/result", timeout=10).json()["pages"][0]
    assert status["status"] == "failed" and page["attempts"] == 2
    assert [t["temperature"] for t in page["tries"]] == [0.0, 0.7]
    assert "cut off" in page["error"]


def test_delete_stops_the_pages_being_read_and_a_chat_request_runs_right_after(server):
    # The shared server reads four pages at a time; Markdown on random weights would run each to 2048 tokens.
    mark = len(server.log())
    job = submit(server, text_pdf(4))
    deadline = time.monotonic() + 60
    while not any(page_batch(line) for line in server.log()[mark:].splitlines()):
        assert time.monotonic() < deadline, "the pages never reached the engine"
        time.sleep(0.05)
    r = httpx.delete(f"{server.url}/v1/documents/{job['id']}", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    chat_id = uuid.uuid4().hex  # the trace id on the chat request's log lines
    chat = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=chat, headers={"X-Request-Id": chat_id}, timeout=60)
    assert answer.status_code == 200, answer.text
    lines = server.log()[mark:].splitlines()
    stops = [i for i, line in enumerate(lines) if " -: generation stopped after" in line]
    assert stops, "the pages in the engine were stopped, not read to the end:\n" + "\n".join(lines[-40:])
    ran = next(i for i, line in enumerate(lines) if "running batch" in line and chat_id in line)
    assert ran > max(stops), "the chat request ran as soon as the pages were stopped"
    pages = httpx.get(f"{server.url}/v1/documents/{job['id']}/result", timeout=10).json()["pages"]
    assert {p["status"] for p in pages} == {"cancelled"}


def page_batch(line: str) -> bool:
    """A batch line of the server log with a document page in it (a page's request id is "-": no HTTP request)."""
    return "running batch of" in line and "-" in line.split("): ", 1)[-1].split()
