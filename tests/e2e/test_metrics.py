"""/metrics of a real server: a streamed answer through the openai client moves TTFT, tokens and requests."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_a_streamed_answer_moves_time_to_first_token_and_token_counters(server, openai_client):
    before = scrape(server.url)
    stream = openai_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "describe the chart"}], max_tokens=8, temperature=0,
        stream=True, stream_options={"include_usage": True}, extra_headers={"Cache-Control": "no-cache"},
    )  # fmt: skip
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
    assert usage is not None and usage.completion_tokens > 0
    after = scrape(server.url)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("vlserve_time_to_first_token_seconds_count") == 1
    assert moved("vlserve_completion_tokens_total", model=MODEL) == usage.completion_tokens
    assert moved("vlserve_prompt_tokens_total", model=MODEL) == usage.prompt_tokens
    assert moved("vlserve_requests_total", endpoint="/v1/chat/completions", model=MODEL, status="200") == 1
    assert after[("vlserve_model_ready", ())] == 1
