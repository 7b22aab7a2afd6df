"""`vlserve bench` measures what a server whose timing the test sets does: TTFT, ITL, tokens, rates, errors."""

from __future__ import annotations

import asyncio

import pytest

from tests.benchmark.timed_server import Timing, serve_timed
from vlserve.benchmark.endpoint import BenchError, http_client
from vlserve.benchmark.load import Bounds, LevelRun, run_level
from vlserve.benchmark.report import LiveTable
from vlserve.benchmark.runner import BenchConfig, BenchRun, run_bench

FIRST, GAP, TOKENS = 0.2, 0.03, 6


def bench(config: BenchConfig) -> BenchRun:
    table = LiveTable(config.mode)
    return asyncio.run(run_bench(config, table, on_status=table.set_status))


def test_ttft_itl_tokens_and_rates_match_the_servers_timing() -> None:
    timing = Timing(first=FIRST, gap=GAP, tokens=TOKENS, image_tokens=True)
    with serve_timed(timing) as url:
        run = bench(BenchConfig(url=url, levels=(1, 3), requests=6, kinds=("chart",), max_tokens=TOKENS))
    one, three = run.runs[0].levels
    for stats in (one, three):
        assert stats.ok == stats.requests == 6 and stats.errors == {}
        assert stats.output_tokens == 6 * TOKENS
        assert FIRST <= stats.ttft.p50 < FIRST + 0.15
        assert GAP * 0.9 <= stats.itl.p50 < GAP + 0.03  # per token: (last - first chunk) / (tokens - 1)
        expected_e2e = FIRST + (TOKENS - 1) * GAP
        assert expected_e2e <= stats.e2e.p50 < expected_e2e + 0.2
        assert stats.ttft.p50 <= stats.ttft.p95 <= stats.ttft.p99
        assert stats.prompt_tokens_mean == 100 and stats.image_tokens_mean == 64
        assert stats.requests_per_s == pytest.approx(stats.ok / stats.duration_s)
        assert stats.output_tokens_per_s == pytest.approx(stats.output_tokens / stats.duration_s)
    # a closed loop of c clients completes about c requests per end-to-end latency
    assert 0.6 <= one.requests_per_s * one.e2e.mean <= 1.05
    assert 0.6 * 3 <= three.requests_per_s * three.e2e.mean <= 1.05 * 3
    assert three.requests_per_s > 1.8 * one.requests_per_s


def test_the_request_carries_the_options_and_stream_usage() -> None:
    timing = Timing(first=0.01, gap=0.005, tokens=3, models=("first-model", "other"))
    with serve_timed(timing) as url:
        run = bench(
            BenchConfig(url=url + "/v1/", levels=(2,), requests=4, kinds=("multi",), max_tokens=7, ignore_eos=True)
        )
    assert run.runs[0].endpoint.model == "first-model"  # the first id /v1/models lists
    body = timing.bodies[0]
    assert body["model"] == "first-model" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 7 and body["ignore_eos"] is True and body["min_tokens"] == 7
    content = body["messages"][0]["content"]
    assert [part["type"] for part in content] == ["image_url"] * 3 + ["text"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    texts = {b["messages"][0]["content"][-1]["text"] for b in timing.bodies}
    assert len(texts) == 4  # no two requests alike: a response cache never answers them


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limit_exceeded"), (500, "internal_error")])
def test_errors_are_counted_by_status_and_code(status: int, code: str) -> None:
    timing = Timing(first=0.01, gap=0.005, tokens=3, fail=status, fail_code=code)
    with serve_timed(timing) as url:
        run = bench(BenchConfig(url=url, levels=(1,), requests=6))
    stats = run.runs[0].levels[0]
    assert stats.requests == 6 and stats.ok == 3
    assert stats.errors == {f"{status} {code}": 3}
    assert stats.output_tokens == 9


def test_poisson_arrivals_at_a_rate() -> None:
    timing = Timing(first=0.01, gap=0.005, tokens=2)
    with serve_timed(timing) as url:
        run = bench(BenchConfig(url=url, mode="rate", levels=(40.0,), requests=12))
    stats = run.runs[0].levels[0]
    assert stats.ok == 12 and stats.level == 40.0
    assert 5 < stats.requests_per_s < 120  # 12 arrivals at a mean of 40/s, on a loaded machine


def test_a_level_past_its_hard_cap_is_cut_and_marked() -> None:
    timing = Timing(first=3.0, tokens=2)
    with serve_timed(timing) as url:
        run = bench(BenchConfig(url=url, levels=(2,), requests=4, level_cap_s=0.5))
    stats = run.runs[0].levels[0]
    assert stats.capped and stats.requests == 0


def test_compare_interleaves_the_two_endpoints_and_gives_ratios() -> None:
    fast, slow = Timing(first=0.05, gap=0.02, tokens=5), Timing(first=0.1, gap=0.04, tokens=5, models=("b-name",))
    with serve_timed(fast) as a, serve_timed(slow) as b:
        run = bench(BenchConfig(url=a, compare_url=b, model="timed-model", levels=(1, 2), requests=4))
    (a_run, b_run) = run.runs
    assert b_run.endpoint.model == "b-name"  # the other endpoint may name the model otherwise
    assert len(fast.bodies) == len(slow.bodies) == 8
    assert [body["messages"] for body in fast.bodies][:4] == [body["messages"] for body in slow.bodies][:4]
    for a_stats, b_stats in zip(a_run.levels, b_run.levels, strict=True):
        assert 0.35 < a_stats.itl.p50 / b_stats.itl.p50 < 0.75
        assert a_stats.output_tokens_per_s > b_stats.output_tokens_per_s


def test_a_model_the_server_does_not_list_is_refused_before_any_load() -> None:
    timing = Timing()
    with serve_timed(timing) as url, pytest.raises(BenchError, match="does not serve 'nope'; it serves: timed-model"):
        bench(BenchConfig(url=url, model="nope", levels=(1,), requests=1))
    assert timing.bodies == []


def script_level(url: str, body: dict, load: float, requests: int, mode: str) -> LevelRun:
    """What a bench/ script runs: one level of its own request bodies."""

    async def go() -> LevelRun:
        async with http_client() as client:
            chat = url + "/v1/chat/completions"
            return await run_level(client, chat, lambda n: body, load, Bounds(requests), mode=mode)

    return asyncio.run(go())


def test_a_script_level_sends_its_own_bodies_streamed_or_not_and_keeps_retry_after() -> None:
    timing = Timing(first=0.05, gap=0.01, tokens=4, fail=429, fail_every=3)
    with serve_timed(timing) as url:
        whole = script_level(url, {"messages": [], "max_tokens": 4}, 2, 6, "concurrency").results
        streamed = script_level(url, {"messages": [], "stream": True}, 2, 3, "concurrency").results
    assert len(whole) == 6 and all("stream" not in b for b in timing.bodies[:6])
    refused = [r for r in whole + streamed if not r.ok]
    assert len(refused) == 3 and {r.error for r in refused} == {"429 rate_limit_exceeded"}
    assert all(r.status == 429 and r.extra["retry_after"] == "1" for r in refused)
    answered = [r for r in whole if r.ok]
    assert all(r.output_tokens == 4 and r.ttft is None and r.e2e >= 0.08 for r in answered)
    assert all(r.output_tokens == 4 and r.ttft is not None for r in streamed if r.ok)


def test_paced_arrivals_are_evenly_spaced_the_first_at_once() -> None:
    timing = Timing(first=0.01, gap=0.005, tokens=2)
    with serve_timed(timing) as url:
        run = script_level(url, {"messages": [], "stream": True}, 10.0, 4, "paced")
    starts = sorted(r.start - run.started for r in run.results)
    assert len(starts) == 4 and starts[0] < 0.05
    assert all(0.07 < b - a < 0.2 for a, b in zip(starts, starts[1:], strict=False))
