"""One log format: text or JSON lines, uvicorn's own lines and the per-request access line included."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from tests.api.fakes import FakeEngine
from tests.security.keyed import CHAT, new_key, serving
from vlserve.app import build_app
from vlserve.observability.logging import configure_logging, log_config
from vlserve.observability.request_id import current_request_id
from vlserve.settings import Settings

NAMES = ("vlserve", "uvicorn", "uvicorn.error", "uvicorn.access", "py.warnings")
ACCESS_FIELDS = {"method", "path", "status", "latency_ms", "key_id", "model", "prompt_tokens", "completion_tokens"}
HI = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def server_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], io.StringIO]]:
    """Configure logging as `vlserve serve` does, writing to a buffer; the previous configuration after."""
    root = logging.getLogger()
    saved = [(root, root.handlers[:], root.level, root.propagate)]
    saved += [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in map(logging.getLogger, NAMES)]
    stream = io.StringIO()

    def configure(fmt: str, level: str = "info") -> io.StringIO:
        monkeypatch.setattr(sys, "stderr", stream)  # the handler's stream is sys.stderr when configured
        configure_logging(level, fmt)
        return stream

    yield configure
    logging.captureWarnings(False)
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]  # every line parses


def test_json_lines_have_the_fields_and_the_request_id(server_log) -> None:
    stream = server_log("json")
    logging.getLogger("vlserve.test").info("outside %s", "a request")
    token = current_request_id.set("req-9")
    try:
        logging.getLogger("vlserve.test").warning("inside")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("vlserve.test").exception("failed")
    finally:
        current_request_id.reset(token)
    outside, inside, failed = json_lines(stream)
    assert outside["message"] == "outside a request" and outside["trace_id"] is None
    assert outside["level"] == "INFO" and outside["logger"] == "vlserve.test" and outside["time"].endswith("+00:00")
    assert inside["trace_id"] == "req-9" and inside["level"] == "WARNING"
    assert failed["trace_id"] == "req-9" and "ValueError: boom" in failed["exc_info"]


def test_uvicorn_and_third_party_lines_use_the_same_format(server_log) -> None:
    stream = server_log("json")
    config = uvicorn.Config(lambda *a: None, log_config=log_config("info", "json"), access_log=False)
    assert config.access_log is False
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("uvicorn.access").info("127.0.0.1 - GET / HTTP/1.1 200")  # off: vlserve writes its own
    logging.getLogger("httpx").info("noise below warning")  # third parties: warnings and above only
    logging.getLogger("alembic.runtime").warning("a third-party warning")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    lines = json_lines(stream)
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("uvicorn.error", "INFO"),
        ("alembic.runtime", "WARNING"),
        ("py.warnings", "WARNING"),
    ]
    assert lines[0]["message"] == "Started server process [42]" and "deprecated thing" in lines[2]["message"]


def test_text_lines_are_readable_with_time_level_logger_and_id(server_log) -> None:
    stream = server_log("text")
    token = current_request_id.set("req-7")
    try:
        logging.getLogger("uvicorn.error").info("Application startup complete.")
    finally:
        current_request_id.reset(token)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" INFO uvicorn.error [req-7] Application startup complete.")
    assert line[:4].isdigit()  # starts with the time


def test_log_level_applies_to_vlserve_and_uvicorn(server_log) -> None:
    stream = server_log("json", level="warning")
    logging.getLogger("vlserve.test").info("hidden")
    logging.getLogger("uvicorn.error").info("hidden too")
    logging.getLogger("vlserve.test").warning("shown")
    assert [line["message"] for line in json_lines(stream)] == ["shown"]


def access_of(stream: io.StringIO, path: str) -> dict:
    (line,) = [x for x in json_lines(stream) if x["logger"] == "vlserve.access" and x["path"] == path]
    return line


def test_one_json_access_line_per_request(server_log, tmp_path) -> None:
    stream = server_log("json")
    app = build_app(Settings(data_dir=tmp_path), engine=FakeEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        reply = client.post("/v1/chat/completions", json=HI, headers={"X-Request-Id": "chat-1"})
        assert reply.status_code == 200
        assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 400
    line = [x for x in json_lines(stream) if x.get("trace_id") == "chat-1"][-1]
    assert ACCESS_FIELDS | {"cache", "time", "level", "logger", "message", "trace_id"} <= set(line)
    assert line["logger"] == "vlserve.access" and line["method"] == "POST" and line["status"] == 200
    assert line["path"] == "/v1/chat/completions" and line["latency_ms"] >= 0 and line["key_id"] is None
    assert line["model"] == "fake-vl" and line["prompt_tokens"] > 0 and line["completion_tokens"] > 0
    assert line["cache"] is None  # no response cache yet
    assert line["message"].startswith("POST /v1/chat/completions 200 ")
    refused = [x for x in json_lines(stream) if x["logger"] == "vlserve.access" and x["status"] == 400]
    assert len(refused) == 1 and refused[0]["trace_id"] not in (None, "chat-1")


def test_the_access_line_names_the_api_key_in_text_and_json(server_log, tmp_path) -> None:
    stream = server_log("text")
    with serving(tmp_path) as api:
        key, headers = new_key(api, "alice")
        assert api.post("/v1/chat/completions", json=CHAT, headers={**headers, "X-Request-Id": "keyed-1"}).is_success
        configure_logging("info", "json")
        assert api.post("/v1/chat/completions", json=CHAT, headers={**headers, "X-Request-Id": "keyed-2"}).is_success
    text = [line for line in stream.getvalue().splitlines() if "[keyed-1]" in line and "vlserve.access" in line]
    assert len(text) == 1 and " POST /v1/chat/completions 200 " in text[0] and f"key={key}" in text[0]
    assert " model=fake-vl tokens=" in text[0]
    json_line = [json.loads(x) for x in stream.getvalue().splitlines() if x.startswith("{") and "keyed-2" in x]
    assert [(x["logger"], x["key_id"]) for x in json_line] == [("vlserve.access", key)]
