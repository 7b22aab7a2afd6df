"""The oracle for the whole image path: the bundled demo model reads fresh charts through a real server.

A wrong resize, normalisation, colour order, visual token count or batching bug anywhere between the
HTTP request and the model breaks the reading, so this test fails long before a user would notice.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.e2e.server import ServerProcess
from tests.support.pdfs import chart_pdf
from vlserve.demo.evaluate import EVAL_SEED_BASE, evaluate
from vlserve.settings import BUNDLED_MODEL_DIR

pytestmark = pytest.mark.skipif(
    not (BUNDLED_MODEL_DIR / "config.json").is_file(), reason="the trained demo checkpoint is not in this checkout"
)


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory):
    # No --model, no pixel settings: exactly what `vlserve serve` runs on a fresh machine.
    server = ServerProcess(
        None, tmp_path_factory.mktemp("server") / "server.log", data_dir=tmp_path_factory.mktemp("data")
    )
    yield server.wait_ready()
    server.stop()


def test_default_model_reads_fresh_charts(default_server: ServerProcess) -> None:
    scores = asyncio.run(evaluate(default_server.url, n=30, seed=7, concurrency=4))
    assert str(BUNDLED_MODEL_DIR) in default_server.log()
    assert scores["json_parses"].accuracy == 1.0
    assert scores["values"].accuracy >= 0.90, scores["values"].failures
    assert scores["highest"].accuracy >= 0.90, scores["highest"].failures


def test_a_chart_report_pdf_becomes_the_right_values_under_a_schema(default_server: ServerProcess) -> None:
    """Issue 4's extraction check: a PDF with a chart per page, values as JSON under a schema, read correctly."""
    pdf, charts = chart_pdf(EVAL_SEED_BASE + 900 + i for i in range(6))
    schema = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 50}}
    r = httpx.post(
        f"{default_server.url}/v1/documents",
        files={"file": ("report.pdf", pdf, "application/pdf")},
        data={"prompt": "Output the values as a JSON object.", "json_schema": json.dumps(schema)},
        timeout=60,
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 300
    while httpx.get(f"{default_server.url}/v1/documents/{r.json()['id']}").json()["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    result = httpx.get(f"{default_server.url}/v1/documents/{r.json()['id']}/result").json()
    read = [page.get("data") for page in result["pages"]]
    right = sum(data == chart.mapping() for data, chart in zip(read, charts, strict=True))
    assert right >= 5, list(zip(read, [c.mapping() for c in charts], strict=True))
