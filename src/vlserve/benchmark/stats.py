"""Summaries of one load level: percentiles, means and rates over its requests.

Percentiles interpolate linearly between the two nearest ranks (numpy's default). Rates are over the level's
span, from its start (the first request's; for Poisson arrivals, the level's) to the last request's end:
requests/s counts the successful requests, output tokens/s their ``usage.completion_tokens``. TTFT, ITL and
latency are over successful requests only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vlserve.benchmark.measure import RequestResult

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Distribution:
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Distribution:
        data = sorted(v for v in values if v is not None)
        if not data:
            return cls()
        p50, p95, p99 = (percentile(data, q) for q in PERCENTILES)
        return cls(mean=sum(data) / len(data), p50=p50, p95=p95, p99=p99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of already sorted values, interpolated linearly."""
    if not sorted_values:
        raise ValueError("no values")
    rank = (len(sorted_values) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass(frozen=True)
class LevelStats:
    level: float  # the concurrency, or the request rate (requests/s)
    requests: int
    ok: int
    duration_s: float
    requests_per_s: float
    output_tokens_per_s: float
    output_tokens: int
    ttft: Distribution
    itl: Distribution
    e2e: Distribution
    prompt_tokens_mean: float | None
    image_tokens_mean: float | None
    errors: dict[str, int] = field(default_factory=dict)
    capped: bool = False  # the level's hard cap ended it

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def summarise(
    level: float, results: Sequence[RequestResult], *, capped: bool = False, started: float | None = None
) -> LevelStats:
    """``started``: when the level began (Poisson arrivals: before the first one); else its first request's start."""
    good = [r for r in results if r.ok]
    first = min((r.start for r in results), default=0.0)
    span = (max(r.end for r in results) - min(first, started if started is not None else first)) if results else 0.0
    tokens = sum(r.output_tokens for r in good)
    prompts = [r.prompt_tokens for r in good if r.prompt_tokens is not None]
    images = [r.image_tokens for r in good if r.image_tokens is not None]
    return LevelStats(
        level=level,
        requests=len(results),
        ok=len(good),
        duration_s=span,
        requests_per_s=len(good) / span if span > 0 else 0.0,
        output_tokens_per_s=tokens / span if span > 0 else 0.0,
        output_tokens=tokens,
        ttft=Distribution.of(r.ttft for r in good),
        itl=Distribution.of(r.itl for r in good),
        e2e=Distribution.of(r.e2e for r in good),
        prompt_tokens_mean=sum(prompts) / len(prompts) if prompts else None,
        image_tokens_mean=sum(images) / len(images) if images else None,
        errors=dict(Counter(r.error for r in results if r.error is not None).most_common()),
        capped=capped,
    )


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b
