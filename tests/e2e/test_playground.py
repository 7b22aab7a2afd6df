"""The playground at / in a real browser (Debian's chromium, headless, driven by Playwright) against a real
server: an image question streamed and stopped, a two-page PDF job to the end, JSON mode checked against the
schema typed in, an API key asked for and used, every request to the server's own origin and no CSP
violation, a 390-px phone layout. Skipped where chromium is missing, a failure on CI."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest

from tests.e2e.server import ServerProcess
from tests.support.images import chart, encode
from tests.support.pdfs import text_pdf
from tests.support.videos import make_video

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
INSTALL = "apt-get install chromium, or `make services` as root"
DOCS = Path(__file__).resolve().parents[2] / "docs"
ADMIN_KEY = "vlsk_" + "playground-test-key-0123456789abcdef"
DONE = "Done"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail(f"chromium is not installed, and CI is set ({INSTALL})")
        pytest.skip(f"chromium is not installed ({INSTALL})")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, headless=True)
        yield launched
        launched.close()


class Visit:
    """A page in a fresh browser context, recording every request it makes and every console error."""

    def __init__(self, browser, server: ServerProcess, **context: object) -> None:
        self.context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context})
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.origin = server.url
        self.server = server
        self.page.goto(server.url + "/")

    def attach(self, *files: tuple[str, str, bytes]) -> None:
        self.page.set_input_files("#files", [{"name": n, "mimeType": m, "buffer": b} for n, m, b in files])

    def drop(self, name: str, mime: str, data: bytes) -> None:
        """Drag a file from the desktop onto the page."""
        transfer = self.page.evaluate_handle(
            """([name, mime, b64]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], name, { type: mime }));
                return transfer;
            }""",
            [name, mime, base64.b64encode(data).decode()],
        )
        self.page.dispatch_event("#drop", "dragover", {"dataTransfer": transfer})
        self.page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})

    def ask(self, question: str, max_tokens: int = 24, temperature: float | None = None) -> None:
        self.page.fill("#max-tokens", str(max_tokens))
        if temperature is not None:
            self.page.fill("#temperature", str(temperature))
        self.page.fill("#question", question)
        self.page.click("#ask")

    def wait_status(self, text: str, timeout: float = 60_000) -> str:
        try:
            self.page.wait_for_function(
                "text => document.getElementById('status').textContent.includes(text)", arg=text, timeout=timeout
            )
        except Exception as exc:  # say what the page and the server show instead
            shown = f"status {self.text('#status')!r}, error {self.text('#error')!r}, answer {self.text('#answer')!r}"
            raise AssertionError(f"{exc}\n{shown[:2000]}\nserver log:\n{self.server.log()[-4000:]}") from None
        return self.page.text_content("#status")

    def text(self, selector: str) -> str:
        return (self.page.text_content(selector) or "").strip()

    def close(self) -> None:
        """After the test: nothing left this server's origin and the browser reported no error (a CSP
        violation is one). 4xx answers the test asked for are logged by the browser as failed loads."""
        foreign = [
            url for url in self.requests if not url.startswith(("data:", "blob:")) and _origin(url) != self.origin
        ]
        errors = [e for e in self.errors if "the server responded with a status of 4" not in e]
        self.context.close()
        assert foreign == []
        assert errors == []


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture(scope="module")
def servers(start_server) -> Iterator[dict[str, ServerProcess]]:
    """Two servers loading side by side: "site", whose document pages have a short token limit and one attempt
    (random weights answer FACTS in a few tokens), and "auth", which needs an API key (ADMIN_KEY)."""
    started = {
        "site": start_server(
            ready=False,
            document_max_tokens=64,
            document_temperatures="0",
            document_poll_s=0.2,
            document_longest_side=256,
        ),
        "auth": start_server(ready=False, require_auth=1, admin_key=ADMIN_KEY),
    }
    yield started
    for running in started.values():
        running.stop()


@pytest.fixture(scope="module")
def site(servers) -> ServerProcess:
    return servers["site"].wait_ready()


@pytest.fixture(scope="module")
def auth_server(servers) -> ServerProcess:
    return servers["auth"].wait_ready()


@pytest.fixture
def visit(browser, site) -> Iterator:
    opened: list[Visit] = []

    def open_page(target: ServerProcess = site, **context: object) -> Visit:
        page = Visit(browser, target, **context)
        opened.append(page)
        return page

    yield open_page
    for page in opened:
        page.close()


def png(seed: int) -> tuple[str, str, bytes]:
    return (f"chart-{seed}.png", "image/png", encode(chart(seed, (160, 120))))


def test_two_images_and_a_question_stream_an_answer_with_its_trace_usage_and_timings(visit):
    page = visit()
    assert page.text("#model-name") == "vlserve-demo-random"
    page.attach(png(1), png(2))
    assert page.page.locator("#file-list li").count() == 2
    with (
        page.page.expect_request("**/v1/chat/completions") as sent,
        page.page.expect_response("**/v1/chat/completions") as answered,
    ):
        page.ask("Which chart has the taller bars?")
    assert DONE in page.wait_status(DONE)
    body = json.loads(sent.value.post_data)
    kinds = [part["type"] for part in body["messages"][0]["content"]]
    assert kinds == ["image_url", "image_url", "text"] and body["stream"] is True
    assert page.text("#answer") != ""
    assert page.text("#meta-trace") == answered.value.headers["x-request-id"]
    assert "prompt" in page.text("#meta-usage") and "tokens" in page.text("#meta-usage")
    assert page.text("#meta-ttft").endswith(" s") and page.text("#meta-total").endswith(" s")
    page.attach(png(3))  # a third picture, then removed again by its button
    page.page.get_by_role("button", name="Remove chart-3.png").click()
    assert page.page.locator("#file-list li").count() == 2


def test_stop_ends_a_stream_and_the_page_can_ask_again(visit):
    page = visit()
    page.drop(*png(4))
    assert page.text("#file-list").startswith("chart-4.png")
    # Sampled from random weights, an answer may end on its own within a few dozen tokens, before the click:
    # the page's own request, with ignore_eos added on its way out, runs until it is stopped.
    page.page.route("**/v1/chat/completions", endless)
    page.ask("Describe the chart at length.", max_tokens=2000)
    page.page.wait_for_function("() => document.getElementById('answer').textContent.length > 0")
    page.page.click("#stop")
    assert "Stopped" in page.wait_status("Stopped", timeout=10_000)
    stopped = page.text("#answer")
    page.page.wait_for_timeout(500)
    assert page.text("#answer") == stopped  # nothing more arrives
    assert page.page.is_enabled("#ask") and page.page.is_disabled("#stop")
    page.ask("And now briefly?", max_tokens=8)
    page.wait_status(DONE)


def endless(route) -> None:
    body = json.loads(route.request.post_data)
    route.continue_(post_data=json.dumps({**body, "ignore_eos": True}))


# Random weights answer under this grammar in a handful of tokens, so pages succeed (tests/e2e/test_documents.py).
FACTS = {
    "type": "object",
    "properties": {"kind": {"enum": ["bar", "line"]}, "labelled": {"type": "boolean"}},
    "required": ["kind", "labelled"],
    "additionalProperties": False,
}


def test_a_two_page_pdf_job_runs_to_the_end_with_each_pages_result(visit, tmp_path):
    page = visit()
    page.attach(("report.pdf", "application/pdf", text_pdf(2)))
    page.page.check("#json-mode")
    page.page.fill("#schema", json.dumps(FACTS))
    page.page.fill("#question", "What does this page say?")
    page.page.click("#read-doc")
    page.wait_status("succeeded", timeout=45_000)
    pages = page.page.locator("#doc-pages > li")
    assert pages.count() == 2
    assert [pages.nth(i).get_attribute("data-status") for i in range(2)] == ["succeeded", "succeeded"]
    for number in (1, 2):
        shown = pages.nth(number - 1)
        assert f"Page {number}" in shown.inner_text()
        jsonschema.validate(json.loads(shown.locator("pre").inner_text()), FACTS)
        assert shown.locator(".verdict").get_attribute("data-valid") == "true"
    assert page.page.eval_on_selector("#doc-progress", "p => [p.value, p.max]") == [2, 2]
    assert page.text("#doc-count").startswith("2 of 2 pages")
    assert page.text("#meta-trace") != "" and page.text("#meta-total").endswith(" s")
    _screenshot(page, "playground-desktop.png", tmp_path)
    page.page.click("#ask")  # a PDF in a chat question: the page says to use a document job
    assert "document job" in page.text("#error")


SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 30},
        "count": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["answer", "count"],
    "additionalProperties": False,
}


def test_json_mode_answers_json_that_validates_against_the_schema_typed_in(visit):
    page = visit()
    page.page.check("#json-mode")
    assert page.page.is_visible("#schema") and page.page.input_value("#schema").startswith("{")  # an example
    page.page.select_option("#schema-example", "invoice")
    assert '"vendor"' in page.page.input_value("#schema")
    page.page.fill("#schema", json.dumps(SCHEMA, indent=2))
    page.attach(png(5))
    page.ask("How many bars are there?", max_tokens=400, temperature=0)  # sampled, whitespace may run to 400
    page.wait_status(DONE)
    parsed = json.loads(page.text("#json-parsed"))
    jsonschema.validate(parsed, SCHEMA)
    assert page.page.get_attribute("#json-valid", "data-valid") == "true"
    assert json.loads(page.text("#answer")) == parsed
    page.page.fill("#schema", "{not json")
    page.page.click("#ask")
    assert "not valid JSON" in page.text("#schema-error")


def test_a_video_is_answered_and_a_bad_one_gets_the_servers_message(visit):
    page = visit()
    page.attach(("clip.webm", "video/webm", make_video("vp9-webm", frames=10, size=(64, 48))))
    with page.page.expect_request("**/v1/chat/completions") as sent:
        page.ask("What happens in this clip?")
    assert DONE in page.wait_status(DONE)
    part = json.loads(sent.value.post_data)["messages"][0]["content"][0]
    assert part["type"] == "video_url" and part["video_url"]["url"].startswith("data:video/webm;base64,")
    page.page.get_by_role("button", name="Remove clip.webm").click()
    page.attach(("clip.mp4", "video/mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64))
    page.ask("What happens in this clip?")
    page.page.wait_for_selector("#error:not([hidden])")
    message = page.text("#error")
    assert message.startswith("HTTP 4") and len(message) > len("HTTP 400: ")
    assert page.page.is_enabled("#ask")


def test_with_auth_on_the_page_asks_for_a_key_and_uses_it(visit, auth_server):
    page = visit(auth_server)
    page.page.wait_for_selector("#key-panel:not([hidden])")
    assert page.page.evaluate("document.activeElement.id") == "api-key"
    page.page.fill("#api-key", "vlsk_" + "x" * 40)
    page.page.press("#api-key", "Enter")
    page.page.wait_for_function("() => document.getElementById('key-reason').textContent.includes('refused')")
    page.page.fill("#api-key", ADMIN_KEY)
    with page.page.expect_request("**/v1/models") as sent:
        page.page.press("#api-key", "Enter")
    assert sent.value.headers["authorization"] == f"Bearer {ADMIN_KEY}"
    page.page.wait_for_selector("#key-panel", state="hidden")
    assert page.text("#model-name") == "vlserve-demo-random"
    assert page.page.evaluate("sessionStorage.getItem('vlserve.apiKey')") == ADMIN_KEY
    page.attach(png(6))
    page.ask("What is shown?")
    page.wait_status(DONE)
    assert all(ADMIN_KEY not in url for url in page.requests)  # never in a URL


def test_chinese_from_the_browser_language_and_the_switch(visit):
    page = visit(locale="zh-CN")
    assert page.page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.text("#ask") == "提问"
    page.page.click("#lang-switch")
    assert page.text("#ask") == "Ask" and page.page.evaluate("document.documentElement.lang") == "en"


def test_phone_width_and_keyboard_only(visit, tmp_path):
    """At 390 px nothing is wider than the screen; by keyboard alone: skip link, question, Ctrl+Enter."""
    phone = visit(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
    wide = phone.page.evaluate(
        "[...document.querySelectorAll('button, input, textarea, select')]"
        ".filter(e => e.offsetParent && e.getBoundingClientRect().right > 390).map(e => e.id)"
    )
    assert wide == []
    keys = phone.page.keyboard
    focused = "() => document.activeElement.id || document.activeElement.className"
    keys.press("Tab")
    assert phone.page.evaluate(focused) == "skip"
    keys.press("Enter")
    assert phone.page.evaluate(focused) == "question"
    keys.type("What colour are the bars?")
    keys.press("Tab")
    assert phone.page.evaluate(focused) == "max-tokens"
    keys.press("Control+A")
    keys.type("24")
    keys.press("Shift+Tab")
    keys.press("Control+Enter")
    phone.wait_status(DONE)
    _screenshot(phone, "playground-phone.png", tmp_path)


def _screenshot(visit: Visit, name: str, tmp_path: Path) -> None:
    """Saved with the test's files; into docs/ (the README's pictures) with UPDATE_SCREENSHOTS=1."""
    target = DOCS / name if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / name
    visit.page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
