"""Engine signals through the real app over fake engines: a hung engine turns the server not ready and
back, the queue wait and the capacity reach /metrics, and /metrics/engine is only the vLLM engine's."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.fakes import FakeEngine
from tests.observability.test_metrics import ask, scrape, value
from vlserve.engine.base import Delta, Prepared, SamplingParams
from vlserve.observability.gpu import GPU_METRICS


class HangingEngine(FakeEngine):
    """Answers like the fake engine, but after the first token hangs until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    async def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        first = True
        async for delta in super().generate(prepared, params):
            yield delta
            while first and not self.release.is_set():  # a wedged GPU: the process is fine, no token comes
                await asyncio.sleep(0.01)
            first = False


class QueueingEngine(FakeEngine):
    """Says that every request waited 0.25 s for a place in a batch."""

    async def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        first = True
        async for delta in super().generate(prepared, params):
            yield Delta(delta.text, delta.finish_reason, delta.token_ids, delta.usage, queued_s=0.25 if first else None)
            first = False


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_hung_engine_turns_the_server_not_ready_and_resuming_makes_it_ready_again(make_client):
    engine = HangingEngine()
    client = make_client(engine, stall_timeout_s=0.3)
    assert client.get("/health/ready").status_code == 200
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(ask, client, max_tokens=8)  # a whole answer: its tokens still count as progress
        wait_for(lambda: client.get("/health/ready").status_code == 503)
        ready = client.get("/health/ready")
        assert ready.json()["status"] == "stalled" and ready.headers["retry-after"] == "5"
        assert ready.json()["detail"].startswith("no token for ") and ready.json()["detail"].endswith(
            " s while 1 request runs"
        )
        assert client.get("/health").json()["status"] == "stalled"
        stalled = scrape(client)
        assert value(stalled, "vlserve_engine_stalled") == 1 and value(stalled, "vlserve_model_ready") == 0
        refused = ask(client, max_tokens=4)  # a new request would only join the hanging one
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "engine_stalled"

        engine.release.set()
        assert answer.result(10).status_code == 200
    assert client.get("/health/ready").json() == {"status": "ready", "model": "fake-vl"}
    after = scrape(client)
    assert value(after, "vlserve_engine_stalled") == 0 and value(after, "vlserve_model_ready") == 1
    assert value(after, "vlserve_engine_stalls_total") == 1
    assert ask(client, max_tokens=4).status_code == 200


def test_a_slow_answer_within_the_timeout_never_shows_as_stalled(make_client):
    client = make_client(FakeEngine(), stall_timeout_s=30)
    for _ in range(3):
        assert ask(client, max_tokens=8).status_code == 200
    samples = scrape(client)
    assert value(samples, "vlserve_engine_stalled") == 0 and value(samples, "vlserve_engine_stalls_total") == 0


def test_the_queue_wait_and_the_capacity_reach_metrics(make_client):
    engine = QueueingEngine()
    client = make_client(engine)
    before = scrape(client)
    assert ask(client, max_tokens=4).status_code == 200
    with client.stream("POST", "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "a b"}], "stream": True, "max_tokens": 4,
    }) as streamed:  # fmt: skip
        assert "[DONE]" in "".join(streamed.iter_text())
    after = scrape(client)
    count, total = "vlserve_queue_wait_seconds_count", "vlserve_queue_wait_seconds_sum"
    assert value(after, count) - value(before, count) == 2
    assert value(after, total) - value(before, total) == pytest.approx(0.5)
    assert value(after, "vlserve_queue_wait_seconds_bucket", le="0.1") == value(
        before, "vlserve_queue_wait_seconds_bucket", le="0.1"
    )
    assert value(after, "vlserve_engine_capacity") == engine.capacity == 64


def test_an_engine_that_does_not_say_its_queue_wait_observes_none(client):
    before = scrape(client)
    assert ask(client, max_tokens=4).status_code == 200
    assert value(scrape(client), "vlserve_queue_wait_seconds_count") == value(
        before, "vlserve_queue_wait_seconds_count"
    )


def test_without_a_gpu_the_gpu_families_are_absent_and_metrics_still_answer(client):
    names = {name for name, _ in scrape(client)}
    assert "vlserve_model_ready" in names
    assert not any(name.startswith(GPU_METRICS) for name in names)


def test_engine_metrics_are_only_the_managed_vllm_engines(client):
    response = client.get("/metrics/engine")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "engine_metrics_unavailable" and "--engine vllm" in error["message"]
