"""Trace ids: W3C traceparent and X-Request-Id accepted, returned, logged on the access line, sent upstream."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.fakes import FakeEngine
from tests.support.images import solid as png_bytes
from tests.support.openai_stub import serve_stubs
from vlserve.app import build_app
from vlserve.engine.remote import RemoteConfig, RemoteEngine
from vlserve.media.resize import ImageBudget
from vlserve.observability.logging import JsonFormatter, RequestIdFilter
from vlserve.observability.request_id import trace_id_of
from vlserve.settings import Settings

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
HI = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    with TestClient(build_app(Settings(data_dir=tmp_path), engine=FakeEngine()), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """The JSON lines the server would write, as it formats them (request id filter and all)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("vlserve")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)


def access_lines(lines: list[dict]) -> dict[str, dict]:
    return {line["path"]: line for line in lines if line["logger"] == "vlserve.access"}


@pytest.mark.parametrize(
    "header",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736",  # too few fields
        f"00-{TRACE}-00f067aa0ba902b7-01-extra",  # version 00 has exactly four
        f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is invalid
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-00f067aa0ba902b7-01",  # upper-case hex
        "garbage",
    ],
)
def test_malformed_traceparent_is_ignored(client: TestClient, header: str) -> None:
    assert trace_id_of(header) is None
    reply = client.get("/health/live", headers={"traceparent": header})
    assert reply.status_code == 200 and reply.headers["x-request-id"] != TRACE
    assert len(reply.headers["x-request-id"]) == 32


def test_a_later_version_may_add_fields() -> None:
    assert trace_id_of(f"01-{TRACE}-00f067aa0ba902b7-01-more") == TRACE


def test_traceparent_trace_id_comes_back_in_the_header_the_body_and_the_access_line(client, log_lines) -> None:
    reply = client.post("/v1/chat/completions", json=HI, headers={"traceparent": TRACEPARENT})
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == TRACE
    assert reply.json()["id"] == f"chatcmpl-{TRACE}"
    line = access_lines(log_lines())["/v1/chat/completions"]
    assert line["trace_id"] == TRACE and line["status"] == 200 and line["method"] == "POST"
    assert line["model"] == "fake-vl" and line["prompt_tokens"] > 0 and line["completion_tokens"] > 0


def test_the_vision_endpoint_returns_the_trace_id_in_its_body(client) -> None:
    reply = client.post(
        "/v1/chat/vision", data={"prompt": "what is this"}, files={"image_file": ("a.png", png_bytes(), "image/png")},
        headers={"traceparent": TRACEPARENT},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert reply.json()["trace_id"] == TRACE


def test_x_request_id_wins_over_traceparent(client) -> None:
    reply = client.get("/health/live", headers={"traceparent": TRACEPARENT, "X-Request-Id": "gateway-7"})
    assert reply.headers["x-request-id"] == "gateway-7"


def test_an_invalid_x_request_id_falls_back_to_the_traceparent(client) -> None:
    reply = client.get("/health/live", headers={"traceparent": TRACEPARENT, "X-Request-Id": "bad id"})
    assert reply.headers["x-request-id"] == TRACE


def test_without_either_an_id_is_generated(client) -> None:
    first, second = client.get("/health/live"), client.get("/health/live")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_every_request_gets_an_access_line_with_its_id(client, log_lines) -> None:
    client.get("/health/live", headers={"X-Request-Id": "probe-1"})
    client.get("/no/such/path", headers={"X-Request-Id": "probe-2"})
    lines = access_lines(log_lines())
    assert lines["/health/live"]["status"] == 200 and lines["/health/live"]["trace_id"] == "probe-1"
    assert lines["/no/such/path"]["status"] == 404 and lines["/no/such/path"]["trace_id"] == "probe-2"


def test_trace_context_goes_to_a_remote_upstream(tmp_path) -> None:
    budget = ImageBudget(64 * 1024, 256 * 1024)
    with serve_stubs("ears") as (ears,):
        engine = RemoteEngine(RemoteConfig((ears.url,), budget, max_images=8, health_interval=0.2, warmup=False))
        settings = Settings(data_dir=tmp_path)
        with TestClient(build_app(settings, engine=engine), raise_server_exceptions=False) as client:
            deadline = time.monotonic() + 10
            while client.get("/health/ready").status_code != 200:
                assert time.monotonic() < deadline, "the upstream never became ready"
                time.sleep(0.05)
            reply = client.post("/v1/chat/completions", json=HI, headers={"traceparent": TRACEPARENT})
            assert reply.status_code == 200, reply.text
            assert ears.headers[-1]["x-request-id"] == TRACE
            assert ears.headers[-1]["traceparent"] == TRACEPARENT
            plain = client.post("/v1/chat/completions", json=HI, headers={"X-Request-Id": "no-trace"})
            assert plain.status_code == 200
            assert ears.headers[-1]["x-request-id"] == "no-trace" and "traceparent" not in ears.headers[-1]
