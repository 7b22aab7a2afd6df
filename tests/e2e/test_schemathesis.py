"""Schemathesis against the server's own OpenAPI schema: a real server, no 5xx, every answer as declared.

One server (random demo model, small limits so generation is quick, no document worker), every operation
of /openapi.json, valid and invalid inputs; each response must be no server error, have a status the schema
declares for its operation, a declared content type and a body matching the declared schema (for errors:
the OpenAI envelope). Bounded: about two hundred cases, well under a minute.

Network rule: only loopback is ever contacted. Generated bodies may hold URLs (image URLs, webhook URLs):
before each call every URL-looking string is replaced by a loopback one the server refuses (it is not
allowlisted), so the server neither resolves nor fetches a generated host.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.e2e

# Per operation (about a dozen): valid inputs, then inputs that break the schema.
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
LOOPBACK_URL = "http://127.0.0.1:9/refused.png"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_server(start_server):
    return start_server(max_model_len=128, default_max_tokens=8, document_worker=False, max_batch_size=8)


def loopback_only(value: Any) -> Any:
    """``value`` with every string that looks like a URL (other than a data: URL) pointing at loopback."""
    if isinstance(value, dict):
        return {key: loopback_only(item) for key, item in value.items()}
    if isinstance(value, list):
        return [loopback_only(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return LOOPBACK_URL
    return value


def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, url: str, calls: list[int]) -> None:
    """Up to ``EXAMPLES[mode]`` cases of one operation; raises on the first answer that breaks a check."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure report names the case as sent
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.body = loopback_only(case.body)
        case.query = loopback_only(case.query)
        response = case.call(base_url=url, timeout=30)
        calls.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    run()


def test_every_answer_is_declared_and_none_is_a_server_error(fuzzed_server):
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json", timeout=10)
    calls: list[int] = []
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    started = time.monotonic()
    for operation in operations:
        for mode in EXAMPLES:
            try:
                fuzz(operation, mode, fuzzed_server.url, calls)
            except Unsatisfiable:  # nothing of it can be made invalid (e.g. a free-form string path parameter)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # collected: one failure must not hide another
                failures[f"{operation.label} ({mode})"] = str(exc)[:3000]
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    labels = {operation.label for operation in operations}
    assert {"POST /v1/chat/completions", "POST /v1/documents", "GET /v1/models"} <= labels
    assert len(calls) >= 125, len(calls)
    assert all(status < 500 for status in calls)
    print(f"schemathesis: {len(calls)} cases over {len(operations)} operations in {elapsed:.0f} s")
    assert elapsed < 240, f"{len(calls)} cases took {elapsed:.0f} s"
    assert httpx.get(f"{fuzzed_server.url}/health/ready", timeout=5).status_code == 200


def test_head_and_405_on_the_real_server(fuzzed_server):
    """uvicorn, not the test client: HEAD sends the GET's headers and no body; a 405 carries Allow."""
    started = time.monotonic()
    got = httpx.get(f"{fuzzed_server.url}/v1/models", timeout=5)
    head = httpx.head(f"{fuzzed_server.url}/v1/models", timeout=5)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(got.content))
    refused = httpx.delete(f"{fuzzed_server.url}/v1/models", timeout=5)
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    missing = httpx.post(f"{fuzzed_server.url}/v1/chat/completion", json={}, timeout=5)
    assert missing.json()["error"]["message"] == "no route POST /v1/chat/completion"
    assert time.monotonic() - started < 10
