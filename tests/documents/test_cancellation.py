"""Cancelling a job stops the pages being read: through this server at once, through another server sharing the
database within the poll interval. The engine sees each page's generation closed, its place with the engine is
free for other requests, nothing is stored for the cancelled pages, and other jobs go on."""

from __future__ import annotations

import asyncio
import time

from fastapi.testclient import TestClient

from tests.api.fakes import FakeEngine
from tests.support.pdfs import text_pdf
from vlserve.app import build_app
from vlserve.documents.intake import Submission, Upload
from vlserve.engine.base import Delta
from vlserve.runtime import open_runtime
from vlserve.settings import Settings
from vlserve.store.db import make_engine, make_sessions
from vlserve.store.jobs import JobStore


class Endless(FakeEngine):
    """Reads a page (a request with an image) whose prompt says "forever" a token at a time, never ending on its
    own; answers everything else like FakeEngine. Counts the page generations running and those whose stream
    was closed by the reader."""

    def __init__(self) -> None:
        super().__init__(max_model_len=400)
        self.running = 0
        self.closed = 0

    async def generate(self, prompt, params):
        if not prompt.sizes or "forever" not in prompt.words:
            async for delta in super().generate(prompt, params):
                yield delta
            return
        self.running += 1
        try:
            while True:
                await asyncio.sleep(0.02)
                yield Delta("word ", token_ids=(1,))
        finally:
            self.running -= 1
            self.closed += 1


def wait_until(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_delete_stops_the_pages_in_flight_at_once_and_a_chat_request_gets_their_places(tmp_path):
    engine = Endless()
    engine.max_inflight = 4  # the four pages take every place with the engine
    # A poll far longer than the test: only the DELETE itself can stop the pages.
    settings = Settings(data_dir=tmp_path, document_concurrency=4, document_poll_s=60, document_max_tokens=64)
    with TestClient(build_app(settings, engine=engine)) as api:
        files = {"file": ("report.pdf", text_pdf(4), "application/pdf")}
        job = api.post("/v1/documents", files=files, data={"prompt": "read this forever"}).json()
        wait_until(lambda: engine.running == 4, "the four pages are being read")
        chat = {"model": "fake-vl", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8}
        busy = api.post("/v1/chat/completions", json=chat)
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "queue_full"

        assert api.delete(f"/v1/documents/{job['id']}").json()["status"] == "cancelled"
        answer = api.post("/v1/chat/completions", json=chat)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "images: said: hello there"
        assert (engine.running, engine.closed) == (0, 4), "every page's generation was closed"
        result = api.get(f"/v1/documents/{job['id']}/result").json()
        assert [p["status"] for p in result["pages"]] == ["cancelled"] * 4, "nothing stored for the pages"
        wait_until(lambda: not (tmp_path / "documents" / job["id"]).exists(), "the job's cached file is forgotten")


def test_a_job_cancelled_through_another_server_stops_here_within_the_poll_interval(database_url, tmp_path):
    engine = Endless()
    settings = Settings(
        data_dir=tmp_path, database_url=database_url, document_concurrency=2, document_poll_s=0.1,
        document_max_tokens=64,
    )  # fmt: skip
    other_server = make_engine(database_url)  # another process's DELETE: the store's cancel, not this runner's

    async def scenario() -> None:
        async with open_runtime(settings, engine, load=True) as runtime:
            jobs = runtime.documents
            pdf = [Upload("report.pdf", "application/pdf", text_pdf(2))]
            cancelled, _ = await jobs.submit(pdf, Submission(prompt="read this forever"))
            after, _ = await jobs.submit(pdf, Submission(prompt="read this"))
            async with asyncio.timeout(20):
                while engine.running < 2:
                    await asyncio.sleep(0.02)
            assert await asyncio.to_thread(JobStore(make_sessions(other_server)).cancel, cancelled.id)
            async with asyncio.timeout(20):  # the poll is 0.1 s: without the watch the pages would run forever
                while engine.closed < 2:
                    await asyncio.sleep(0.02)
                while (await jobs.get(after.id)).status != "succeeded":
                    await asyncio.sleep(0.05)
            pages = (await jobs.get(cancelled.id)).pages
            assert [(p.status, p.text, p.worker) for p in pages] == [("cancelled", None, None)] * 2
            read = (await jobs.get(after.id)).pages
            assert [(p.status, p.attempts) for p in read] == [("succeeded", 1)] * 2, "the next job is read once"

    try:
        asyncio.run(scenario())
    finally:
        other_server.dispose()
