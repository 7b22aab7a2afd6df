"""The pure parts of `vlserve bench`: workloads, SSE accounting, percentiles, level parsing, URLs."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from vlserve.benchmark.endpoint import BenchError, base_url
from vlserve.benchmark.measure import RequestResult, _event, error_key
from vlserve.benchmark.runner import parse_levels
from vlserve.benchmark.stats import Distribution, percentile, summarise
from vlserve.benchmark.workloads import WorkloadError, build_pool, parse_kinds


def test_the_pool_is_reproducible_from_the_seed_and_each_kind_has_its_images() -> None:
    kinds = ["text", "chart", "photo", "page", "multi"]
    first = build_pool(kinds, seed=7, image_size=256, size=5)
    assert first == build_pool(kinds, seed=7, image_size=256, size=5)
    assert first != build_pool(kinds, seed=8, image_size=256, size=5)
    assert [p.kind for p in first] == kinds
    assert [len(p.images) for p in first] == [0, 1, 1, 1, 3]
    for prompt in first[1:]:
        for image in prompt.images:
            with Image.open(io.BytesIO(image.data)) as decoded:
                assert max(decoded.size) == 256
                assert decoded.format == {"image/png": "PNG", "image/jpeg": "JPEG"}[image.mime]
    page = first[3].images[0].pil()
    assert page.height > page.width  # A4 portrait


def test_kinds_are_checked() -> None:
    assert parse_kinds(" chart, text ") == ["chart", "text"]
    with pytest.raises(WorkloadError, match="unknown workload 'pdf'"):
        parse_kinds("chart,pdf")
    with pytest.raises(WorkloadError, match="out of range"):
        build_pool(["photo"], image_size=4)


def test_levels_are_checked() -> None:
    assert parse_levels("1, 2,16", rate=False) == (1, 2, 16)
    assert parse_levels("0.5,4", rate=True) == (0.5, 4.0)
    for bad in ("", "1,,2", "-1", "2.5", "x"):
        with pytest.raises(ValueError):
            parse_levels(bad, rate=False)


def test_urls_are_normalised_to_the_v1_base() -> None:
    for url in (
        "http://h:8080",
        "http://h:8080/",
        "http://h:8080/v1",
        "h:8080/v1/",
        "http://h:8080/v1/chat/completions",
    ):
        assert base_url(url) == "http://h:8080/v1"
    with pytest.raises(BenchError):
        base_url("ftp://h/v1")


def test_error_keys_come_from_the_openai_envelope() -> None:
    envelope = {"error": {"message": "slow down", "type": "rate_limit", "code": "rate_limit_exceeded"}}
    assert error_key(429, json.dumps(envelope).encode()) == "429 rate_limit_exceeded"
    assert (
        error_key(400, b'{"error": {"message": "x", "type": "BadRequestError", "code": null}}') == "400 BadRequestError"
    )
    assert error_key(502, b"<html>bad gateway</html>") == "502"


def test_stream_accounting_counts_text_and_reasoning_and_takes_usage() -> None:
    result = RequestResult(start=0.0)
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},  # no text: not the first token
        {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]},
        {"choices": [{"index": 0, "delta": {"content": "a"}}]},
        {"choices": [{"index": 0, "delta": {"content": "b c"}}]},
        {
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "prompt_tokens_details": {"image_tokens": 4}},
        },
    ]
    for t, event in enumerate(events, start=1):
        assert not _event(result, json.dumps(event), float(t))
    assert _event(result, "[DONE]", 9.0)
    assert (result.first_token, result.last_token, result.chunks) == (2.0, 4.0, 3)
    assert (result.output_tokens, result.prompt_tokens, result.image_tokens) == (5, 9, 4)
    result.end = 5.0
    assert result.ttft == 2.0 and result.itl == pytest.approx(2.0 / 4) and result.e2e == 5.0


def test_an_error_event_after_the_200_is_an_error() -> None:
    result = RequestResult(start=0.0)
    assert _event(result, json.dumps({"error": {"message": "engine died", "code": "engine_error"}}), 1.0)
    assert result.error == "stream error engine_error"


def test_percentiles_interpolate_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(8.8)
    assert percentile([5.0], 99) == 5.0
    assert Distribution.of([None, 2.0, 4.0]).mean == 3.0
    assert Distribution.of([]).p50 is None


def test_a_level_summary_counts_only_successes_in_its_rates() -> None:
    good = RequestResult(start=0.0, end=2.0, ok=True, first_token=0.5, last_token=1.5, output_tokens=11)
    bad = RequestResult(start=1.0, end=4.0, error="500 internal_error", status=500)
    stats = summarise(2, [good, bad])
    assert stats.requests == 2 and stats.ok == 1 and stats.duration_s == 4.0
    assert stats.requests_per_s == 0.25 and stats.output_tokens_per_s == 11 / 4
    assert stats.errors == {"500 internal_error": 1}
    assert stats.ttft.p50 == 0.5 and stats.itl.p50 == pytest.approx(0.1)


def test_the_table_keeps_slow_figures_whole_at_80_columns() -> None:
    """A 12-second TTFT pair (five digits each) is one cell on one line, not wrapped, in an 80-column terminal."""
    from rich.console import Console

    from vlserve.benchmark.report import new_table, stats_row
    from vlserve.benchmark.stats import LevelStats

    def spread(p50: float, p95: float) -> Distribution:
        return Distribution(mean=p50, p50=p50, p95=p95, p99=p95)

    slow = LevelStats(
        level=16, requests=120, ok=120, duration_s=90.0, requests_per_s=1.37, output_tokens_per_s=123.4,
        output_tokens=11_000, ttft=spread(12.345, 23.456), itl=spread(0.123, 0.2), e2e=spread(12.34, 23.45),
        prompt_tokens_mean=300.0, image_tokens_mean=200.0, errors={"429 queue_full": 2},
    )  # fmt: skip
    table = new_table()
    table.add_row(*stats_row("A", slow, "concurrency", planned=200))  # --compare's label, a capped level
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(table)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert any("12345 23456" in line and "12.34 23.45" in line and "120/120" in line for line in lines), lines
    assert "queue_" in out.getvalue() and "of 200" in out.getvalue()  # wrapped or folded, never cut
