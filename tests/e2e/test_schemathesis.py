"""Schemathesis against the server's own OpenAPI schema: a real server, no 5xx, every answer as declared.

One server (random demo model, small limits so generation is quick, no document worker), every operation
of /openapi.json, valid and invalid inputs; each response must be no server error, have a status the schema
declares for its operation, a declared content type and a body matching the declared schema (for errors:
the OpenAI envelope), and a valid input must not be refused (no 400, 413, 415 or 422). Bounded: about two
hundred cases, well under a minute.

Network rule: only loopback is ever contacted. The URL formats of the schema (image URLs, webhook URLs) are
drawn as loopback URLs the server refuses (they are not allowlisted) or as data: URLs; any other string
that looks like a URL is replaced by such a one before the call, so the server neither resolves nor
fetches a generated host.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.images import data_url, solid
from tests.support.pdfs import text_pdf
from tests.support.videos import make_video
from vlserve.api.content_schema import IMAGE_URL_FORMAT, JSON_OBJECT_FORMAT, VIDEO_URL_FORMAT
from vlserve.api.openapi import DATA_DEPENDENT

pytestmark = pytest.mark.e2e

# Per operation (about a dozen): valid inputs, then inputs that break the schema.
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
LOOPBACK_URL = "http://127.0.0.1:9/refused.png"


@schemathesis.check
def valid_data_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """schemathesis's positive_data_acceptance, except for a 400 whose error code the operation's 400 response
    declares (``x-data-dependent-codes``) as a refusal no JSON Schema can state: a prompt longer than the
    context in tokens, a page range past the document's last page. Any other 400 to a valid request fails."""
    if response.status_code == 400 and case.meta is not None and case.meta.generation.mode.is_positive:
        declared = case.operation.definition.raw.get("responses", {}).get("400", {}).get(DATA_DEPENDENT, [])
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code in declared:
            return None
    return positive_data_acceptance(ctx, response, case)


# Every answer as declared, and every request the schema allows accepted (no 400 for a schema-valid request but
# the declared data-dependent ones).
CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
    valid_data_accepted,
]  # fmt: skip
# Uploads of the types the schema declares are real files of that type, as a client sends them; so are the images
# a chat message points at (a data: URL, or an http(s) URL on loopback) and webhook URLs (on loopback, refused).
# An upload field is a list of files: schemathesis takes a media type's strategy to draw the whole field, and
# sends a single file without a filename (a plain form field, not a file); a list of one or two is sent as files.
IMAGES = [solid((8, 8)), solid((40, 30), "JPEG")]
schemathesis.openapi.media_type("image/*", st.lists(st.sampled_from(IMAGES), min_size=1, max_size=2))
schemathesis.openapi.media_type("application/pdf", st.just([text_pdf(1)]))
schemathesis.openapi.format(
    IMAGE_URL_FORMAT, st.sampled_from([data_url(IMAGES[0]), data_url(IMAGES[1], "image/jpeg"), LOOPBACK_URL])
)
schemathesis.openapi.format("uri", st.just(LOOPBACK_URL))
# Videos: uploads are a real one-second clip; a video_url points at loopback (refused, 403) so that no fuzzed
# chat request waits for a video to decode.
schemathesis.openapi.media_type("video/*", st.just([make_video(frames=4, rate=4)]))
schemathesis.openapi.format(VIDEO_URL_FORMAT, st.just("http://127.0.0.1:9/refused.mp4"))
# A JSON object as text (a tool call's arguments; a schema, where any object is one).
JSON_VALUES = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
schemathesis.openapi.format(
    JSON_OBJECT_FORMAT, st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3).map(json.dumps)
)


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


def loopback_case(case: schemathesis.Case) -> None:
    """``case`` with every URL on loopback; changed only where a URL is left (revalidating a body changes it)."""
    for name in ("body", "query"):
        value = getattr(case, name)
        if (changed := loopback_only(value)) != value:
            setattr(case, name, changed)


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
        loopback_case(case)
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
