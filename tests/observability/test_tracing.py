"""OpenTelemetry export: one server span per request, sent over OTLP/HTTP to a loopback collector.

The collector is a plain HTTP receiver on 127.0.0.1; its bodies are decoded as the OTLP protobuf a real
collector reads. Spans are flushed when the app shuts down, so each test closes its client before asserting.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from tests.api.fakes import FakeEngine
from tests.support.openai_stub import serve_stubs
from tests.support.webhook_receiver import WebhookReceiver, receive_webhooks
from vlserve.app import build_app
from vlserve.engine import Engine
from vlserve.engine.remote import RemoteConfig, RemoteEngine
from vlserve.media.resize import ImageBudget
from vlserve.settings import Settings

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HI = {"messages": [{"role": "user", "content": "hi there"}]}
SERVER = 2  # Span.SpanKind.SPAN_KIND_SERVER
ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR


def _value(any_value) -> object:
    return getattr(any_value, any_value.WhichOneof("value"))


def spans_of(receiver: WebhookReceiver) -> list[dict]:
    """Every span the collector received, flattened: name, ids (hex), kind, status, attributes, resource."""
    spans = []
    for request in receiver.requests:
        assert request.path == "/v1/traces" and request.header("content-type") == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "kind": span.kind,
                            "status": span.status.code,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "resource": resource,
                            "headers": request.headers,
                        }
                    )
    return spans


@pytest.fixture
def collector() -> Iterator[WebhookReceiver]:
    with receive_webhooks() as receiver:
        yield receiver


def traced_app(
    tmp_path: Path, collector: WebhookReceiver, engine: Engine | None = None, **settings: object
) -> TestClient:
    endpoint = f"http://127.0.0.1:{collector.port}"  # a base URL: spans go to /v1/traces, the OTLP convention
    app = build_app(Settings(data_dir=tmp_path, otlp_endpoint=endpoint, **settings), engine=engine or FakeEngine())
    return TestClient(app, raise_server_exceptions=False)


def test_a_request_continues_the_clients_trace(tmp_path, collector) -> None:
    with traced_app(tmp_path, collector, otlp_headers="authorization=Bearer%20s3cret,x-tenant=a") as client:
        reply = client.post("/v1/chat/completions", json=HI, headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
        assert reply.status_code == 200
    (span,) = spans_of(collector)
    assert span["name"] == "POST /v1/chat/completions" and span["kind"] == SERVER
    assert span["trace_id"] == TRACE and span["parent"] == PARENT
    assert span["status"] != ERROR
    attributes = span["attributes"]
    assert attributes["http.request.method"] == "POST" and attributes["http.route"] == "/v1/chat/completions"
    assert attributes["http.response.status_code"] == 200 and attributes["vlserve.model"] == "fake-vl"
    assert attributes["vlserve.prompt_tokens"] == 2 and attributes["vlserve.completion_tokens"] > 0
    assert span["resource"]["service.name"] == "vlserve"
    assert span["headers"]["authorization"] == "Bearer s3cret" and span["headers"]["x-tenant"] == "a"


def test_a_new_trace_takes_the_request_id_and_errors_are_marked(tmp_path, collector) -> None:
    with traced_app(tmp_path, collector, otlp_service_name="vlserve-eu") as client:
        fresh = client.get("/v1/models")
        refused = client.post("/v1/chat/completions", json={"messages": []})
        missing = client.get("/v1/documents/nope")
        unrouted = client.get("/no/such/path")
        assert client.get("/health/ready").is_success and client.get("/metrics").is_success  # neither traced
    spans = {span["attributes"]["vlserve.request_id"]: span for span in spans_of(collector)}
    assert len(spans) == 4 and {s["resource"]["service.name"] for s in spans.values()} == {"vlserve-eu"}

    span = spans[fresh.headers["x-request-id"]]
    assert span["trace_id"] == fresh.headers["x-request-id"] and span["parent"] == ""  # logs and trace agree
    assert span["name"] == "GET /v1/models" and span["status"] != ERROR

    span = spans[refused.headers["x-request-id"]]
    assert refused.status_code == 400 and span["status"] == ERROR
    assert span["attributes"]["error.type"] == refused.json()["error"]["code"]

    span = spans[missing.headers["x-request-id"]]
    assert span["name"] == "GET /v1/documents/{document_id}"  # the route template, never the raw path
    assert span["attributes"]["http.response.status_code"] == 404

    span = spans[unrouted.headers["x-request-id"]]
    assert span["name"] == "GET" and "http.route" not in span["attributes"]  # unrouted paths add no names


def test_a_remote_upstream_sees_the_vlserve_span_as_its_parent(tmp_path, collector) -> None:
    with serve_stubs("ears") as (ears,):
        engine = RemoteEngine(
            RemoteConfig(
                (ears.url,), ImageBudget(64 * 1024, 256 * 1024), max_images=8, health_interval=0.2, warmup=False
            )
        )
        with traced_app(tmp_path, collector, engine=engine) as client:
            deadline = time.monotonic() + 10
            while client.get("/health/ready").status_code != 200:
                assert time.monotonic() < deadline, "the upstream never became ready"
                time.sleep(0.05)
            reply = client.post("/v1/chat/completions", json=HI, headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
            assert reply.status_code == 200, reply.text
    (span,) = [s for s in spans_of(collector) if s["name"] == "POST /v1/chat/completions"]
    assert span["parent"] == PARENT
    assert ears.headers[-1]["traceparent"] == f"00-{TRACE}-{span['span_id']}-01"  # vLLM's spans hang under ours


def test_a_failing_collector_costs_requests_nothing_and_logs_one_line(tmp_path, caplog) -> None:
    with receive_webhooks([500]) as failing:
        with traced_app(tmp_path, failing) as client:
            assert client.post("/v1/chat/completions", json=HI).status_code == 200
        assert len(failing.requests) == 1  # a 500 is not retried
    problems = [r for r in caplog.records if r.name.startswith("opentelemetry") and r.levelno >= logging.WARNING]
    assert len(problems) == 1 and problems[0].exc_info is None and "500" in problems[0].getMessage()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("otlp_endpoint", "collector:4318"), ("otlp_endpoint", "ftp://collector"), ("otlp_headers", "no-equals-sign")],
)
def test_malformed_otlp_settings_are_refused_at_start(setting: str, value: str) -> None:
    with pytest.raises(ValidationError, match=setting):
        Settings(**{setting: value})


def test_a_path_less_endpoint_gets_the_traces_path() -> None:
    assert Settings(otlp_endpoint="http://otel:4318").otlp_endpoint == "http://otel:4318/v1/traces"
    assert Settings(otlp_endpoint="https://o/api/traces").otlp_endpoint == "https://o/api/traces"
    assert "s3cret" not in repr(Settings(otlp_headers="authorization=s3cret"))


SCRIPT = """
import os, sys
sys.modules["opentelemetry.sdk"] = None  # as if vlserve[otel] were not installed: importing it fails
from fastapi.testclient import TestClient
from tests.api.fakes import FakeEngine
from vlserve.app import build_app
from vlserve.settings import Settings
app = build_app(Settings(), engine=FakeEngine())
with TestClient(app) as client:
    assert client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}).is_success
print(*(m.cls.__name__ for m in app.user_middleware))
print(*sorted(m for m, module in sys.modules.items() if module and m.startswith(PREFIXES)))
os.environ["VLSERVE_OTLP_ENDPOINT"] = "http://127.0.0.1:4318"
print("serve:", file=sys.stderr, flush=True)
from vlserve.cli import app as cli
try:
    cli(["serve", "--port", "0"])
except SystemExit as stop:
    print(stop.code)
""".replace("PREFIXES", repr(("opentelemetry.sdk", "opentelemetry.exporter", "vlserve.observability.tracing")))


def test_tracing_off_costs_nothing_and_on_without_the_packages_stops_serve_with_one_line(tmp_path) -> None:
    """Off: no SDK, exporter or vlserve tracing module loaded (FastAPI itself imports opentelemetry-api), no layer.
    On, with the SDK missing: `vlserve serve` exits 2 with one line saying what to install."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VLSERVE_", "OTEL_", "FASTAPI_OTEL"))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, "VLSERVE_DATA_DIR": str(tmp_path), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    layers, loaded, code = done.stdout.splitlines()
    assert "TracingMiddleware" not in layers and "AccessLogMiddleware" in layers
    assert loaded == ""
    assert code == "2"
    (line,) = done.stderr.split("serve:\n", 1)[1].strip().splitlines()
    assert "VLSERVE_OTLP_ENDPOINT" in line and "pip install 'vlserve[otel]'" in line
