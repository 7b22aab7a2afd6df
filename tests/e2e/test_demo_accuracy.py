"""The oracle for the whole image path: the bundled demo model reads fresh charts through a real server.

A wrong resize, normalisation, colour order, visual token count or batching bug anywhere between the
HTTP request and the model breaks the reading, so this test fails long before a user would notice.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.server import ServerProcess
from vlserve.demo.evaluate import evaluate
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
