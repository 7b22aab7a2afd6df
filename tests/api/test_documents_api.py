"""/v1/documents over a fake engine: the job life cycle, the retry ladder, every limit as a clean 4xx."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest
from PIL import Image

from tests.api.fakes import FakeEngine
from tests.api.test_bad_input import assert_error
from tests.structured.test_formats import nested_properties
from tests.support.http_server import serve_http
from tests.support.images import encode, solid
from tests.support.pdfs import encrypted, text_pdf
from vlserve.errors import RateLimitError

# The fake engine answers a JSON object mapping each word of the prompt to its length.
WORDS = {"type": "object", "properties": {"how": {"type": "integer"}}, "required": ["how"]}
SETTINGS = {"document_max_tokens": 64, "default_max_tokens": 64}


@pytest.fixture
def api(make_client):
    return make_client(FakeEngine(max_model_len=400), **SETTINGS)


def submit(api, files, **form):
    parts = [("file", f) for f in files]
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in form.items()}
    return api.post("/v1/documents", files=parts, data=data)


def pdf(pages: int = 3) -> tuple[str, bytes, str]:
    return ("report.pdf", text_pdf(pages), "application/pdf")


def png(name: str = "page.png") -> tuple[str, bytes, str]:
    return (name, solid((120, 90)), "image/png")


def wait_ended(api, job_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get(f"/v1/documents/{job_id}").json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {status}")


def test_a_pdf_with_a_schema_gives_schema_valid_data_per_page_and_merged(api):
    r = submit(api, [pdf(3)], prompt="how long", json_schema=WORDS, pages="1,3")
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/documents/{job['id']}"
    assert job["status"] == "queued" and job["pages"]["total"] == 2
    status = wait_ended(api, job["id"])
    assert status["status"] == "succeeded"
    assert status["pages"] | {} == {**status["pages"], "done": 2, "succeeded": 2, "failed": 0}
    result = api.get(f"/v1/documents/{job['id']}/result").json()
    assert [p["page"] for p in result["pages"]] == [1, 3]
    assert all(p["data"] == {"how": 3, "long": 4} and p["attempts"] == 1 for p in result["pages"])
    assert result["pages"][0]["tries"][0]["temperature"] == 0.1 and "total_ms" in result["pages"][0]["timings"]
    assert result["document"] == {"data": [{"how": 3, "long": 4}] * 2, "pages": [1, 3]}


def test_image_files_are_pages_and_without_a_schema_each_page_is_text(api):
    job = submit(api, [png("a.png"), png("b.png")]).json()
    assert wait_ended(api, job["id"])["status"] == "succeeded"
    result = api.get(f"/v1/documents/{job['id']}/result").json()
    assert [p["page"] for p in result["pages"]] == [1, 2]
    assert result["pages"][0]["text"].startswith("images: 120x90 said: Transcribe this page into Markdown")
    assert "<!-- page 2 -->" in result["document"]["text"]


def test_a_page_that_keeps_breaking_the_schema_climbs_the_temperature_ladder_then_fails(api):
    strict = {**WORDS, "required": ["how", "wide"]}
    job = submit(api, [pdf(2)], prompt="how long", json_schema=strict).json()
    status = wait_ended(api, job["id"])
    assert status["status"] == "failed"
    assert [e["page"] for e in status["errors"]] == [1, 2]
    assert "'wide' is a required property" in status["errors"][0]["error"]
    page = api.get(f"/v1/documents/{job['id']}/result").json()["pages"][0]
    assert page["status"] == "failed" and page["attempts"] == 5
    assert [t["temperature"] for t in page["tries"]] == [0.1, 0.2, 0.3, 0.5, 0.8]


def test_a_cut_off_answer_is_retried_and_the_reason_recorded(make_client):
    api = make_client(FakeEngine(max_model_len=400), document_max_tokens=3, document_temperatures="0,0.5")
    job = submit(api, [png()]).json()
    status = wait_ended(api, job["id"])
    assert status["status"] == "failed"
    assert "cut off at the token limit" in status["errors"][0]["error"]
    page = api.get(f"/v1/documents/{job['id']}/result").json()["pages"][0]
    assert [t["finish_reason"] for t in page["tries"]] == ["length", "length"]


def test_list_get_cancel_and_unknown_ids(make_client):
    api = make_client(FakeEngine(max_model_len=400), document_worker=False, **SETTINGS)  # jobs stay queued
    first = submit(api, [png()]).json()
    second = submit(api, [pdf(2)]).json()
    listed = api.get("/v1/documents", params={"limit": 1}).json()
    assert [d["id"] for d in listed["data"]] == [second["id"]] and listed["has_more"]
    rest = api.get("/v1/documents", params={"after": second["id"]}).json()
    assert [d["id"] for d in rest["data"]] == [first["id"]] and not rest["has_more"]
    cancelled = api.delete(f"/v1/documents/{first['id']}").json()
    assert cancelled["status"] == "cancelled" and cancelled["pages"]["cancelled"] == 1
    assert_error(api.delete(f"/v1/documents/{first['id']}"), 409, code="already_ended", says="cancelled")
    assert [d["id"] for d in api.get("/v1/documents", params={"status": "queued"}).json()["data"]] == [second["id"]]
    assert_error(api.get("/v1/documents/doc_nope"), 404, code="document_not_found", says="doc_nope")
    assert_error(api.get("/v1/documents/doc_nope/result"), 404, code="document_not_found")


@pytest.mark.parametrize(
    ("files", "form", "status", "code", "param", "says"),
    [
        ([], {}, 400, None, "file", "required"),
        ([("notes.txt", b"just text", "text/plain")], {}, 415, "unsupported_media_type", "file[0]", "neither a PDF"),
        ([("report.pdf", b"%PDF-1.7\n garbage", "application/pdf")], {}, 400, "invalid_document", "file", ""),
        ([("locked.pdf", encrypted(text_pdf(1)), "application/pdf")], {}, 400, "encrypted_document", "file", ""),
        ([pdf(3)], {"pages": "2-9"}, 400, None, "pages", "9"),
        ([pdf(3)], {"pages": "3-1"}, 400, None, "pages", "3-1"),
        ([pdf(3)], {"json_schema": "{not json"}, 400, None, "json_schema", "not valid JSON"),
        ([pdf(3)], {"json_schema": {"type": "objekt"}}, 400, None, "json_schema", "'objekt'"),
        ([pdf(3)], {"json_schema": nested_properties(100)}, 400, "json_too_deep", "json_schema", "MAX_JSON_DEPTH"),
        ([pdf(3)], {"json_schema": "[" * 1000 + "]" * 1000}, 400, "json_too_deep", "json_schema", "MAX_JSON_DEPTH"),
        ([pdf(3)], {"json_schema": {"$ref": "urn:vlserve:elsewhere"}}, 400, "unresolvable_ref", "json_schema", "urn:"),
        ([pdf(3)], {"webhook_url": "http://10.0.0.1/hook"}, 403, "url_refused", "webhook_url", ""),
        ([pdf(3)], {"webhook_url": "ftp://example.com/hook"}, 400, None, "webhook_url", "ftp"),
        ([pdf(1), png()], {}, 400, None, "file", "one PDF per job"),
    ],
)
def test_every_bad_submission_is_a_clean_4xx_and_nothing_is_stored(api, files, form, status, code, param, says):
    response = submit(api, files, **form)
    assert_error(response, status, code=code, param=param, says=says)
    assert api.get("/v1/documents").json()["data"] == []


def test_a_schema_reference_to_a_listener_is_refused_and_never_fetched(api):
    with serve_http() as listener:
        ref = f"{listener.url}/json-secret"
        hostile = {"type": "object", "properties": {"how": {"$ref": ref}}, "required": ["how"]}
        assert_error(submit(api, [pdf(1)], json_schema=hostile), 400, code="unresolvable_ref", param="json_schema",
                     says=repr(ref))  # fmt: skip
        assert listener.paths() == [], "the server fetched the reference"
    assert api.get("/v1/documents").json()["data"] == [], "nothing was stored"


def test_size_and_page_limits(make_client):
    api = make_client(FakeEngine(max_model_len=400), document_max_pages=2, document_max_bytes=64 * 1024, **SETTINGS)
    assert_error(submit(api, [pdf(3)]), 413, code="too_many_pages", says="3 pages selected")
    assert submit(api, [pdf(3)], pages="1-2").status_code == 202, "a range within the limit is fine"
    noise = Image.frombytes("RGB", (200, 200), random.Random(0).randbytes(200 * 200 * 3))
    big = ("big.png", encode(noise), "image/png")
    assert len(big[1]) > 64 * 1024
    assert_error(submit(api, [big]), 413, code="payload_too_large", param="file[0]")


class BusyOnce(FakeEngine):
    """Answers 429 (queue full) to the first generation, as a server saturated by chat traffic would."""

    def __init__(self) -> None:
        super().__init__(max_model_len=400)
        self.refused = 0

    async def generate(self, prompt, params):
        if not self.refused:
            self.refused += 1
            raise RateLimitError("the server is at capacity")
        async for delta in super().generate(prompt, params):
            yield delta


def test_a_page_the_busy_engine_refused_is_put_back_and_read_later_not_failed(make_client):
    engine = BusyOnce()
    api = make_client(engine, **SETTINGS)
    job = submit(api, [png()], prompt="how long", json_schema=WORDS).json()
    assert wait_ended(api, job["id"])["status"] == "succeeded"
    assert engine.refused == 1
    page = api.get(f"/v1/documents/{job['id']}/result").json()["pages"][0]
    assert page["attempts"] == 1 and page["data"] == {"how": 3, "long": 4}


class Slow(FakeEngine):
    """Holds every generation until released, so a job can be cancelled while a page is being read."""

    def __init__(self) -> None:
        super().__init__(max_model_len=400)
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def generate(self, prompt, params):
        self.started.set()
        await self.release.wait()
        async for delta in super().generate(prompt, params):
            yield delta


def test_cancelling_a_running_job_discards_the_page_in_flight_and_its_cached_file(make_client, tmp_path):
    engine = Slow()
    api = make_client(engine, data_dir=tmp_path, **SETTINGS)
    job = submit(api, [pdf(2)]).json()
    api.portal.call(engine.started.wait)
    assert (tmp_path / "documents" / job["id"]).is_dir(), "the worker cached the PDF to render its page"
    assert api.delete(f"/v1/documents/{job['id']}").json()["status"] == "cancelled"
    api.portal.call(engine.release.set)
    deadline = time.monotonic() + 10
    while (tmp_path / "documents" / job["id"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (tmp_path / "documents" / job["id"]).exists()
    result = api.get(f"/v1/documents/{job['id']}/result").json()
    assert {p["status"] for p in result["pages"]} == {"cancelled"}, "the page in flight was not stored"


def test_image_pages_are_decoded_within_the_server_decode_budget(make_client):
    api = make_client(FakeEngine(max_model_len=400), **SETTINGS, max_image_pixels=100_000, decode_budget_pixels=100_000)
    large = ("large.png", encode(Image.new("RGB", (300, 300), "white")), "image/png")  # 90 000 pixels
    job = submit(api, [large, png("small.png")]).json()  # 90 000 + 10 800 pixels: never decoded together
    assert wait_ended(api, job["id"])["status"] == "succeeded"
    assert api.app.state.vlserve.decode_budget.peak == 300 * 300
