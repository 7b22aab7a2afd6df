"""A whole `vlserve bench` run: check the endpoints, make the workload, run every level, then the baseline.

With ``--compare``, the two endpoints take turns level by level (A then B at the first level, B then A at the
next, …), so that a drift of the machine over the run weighs on both alike; both get the same requests.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from vlserve.benchmark.endpoint import Endpoint, check, http_client
from vlserve.benchmark.load import LEVEL_CAP_S, Bounds, LevelRun, run_level
from vlserve.benchmark.measure import RequestResult
from vlserve.benchmark.stats import LevelStats, summarise
from vlserve.benchmark.workloads import POOL_SIZE, Prompt, build_pool


@dataclass(frozen=True)
class BenchConfig:
    url: str
    compare_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    mode: Literal["concurrency", "rate"] = "concurrency"
    levels: tuple[float, ...] = (1, 2, 4, 8, 16)
    requests: int | None = None
    duration: float | None = None
    max_tokens: int = 64
    ignore_eos: bool = False
    kinds: tuple[str, ...] = ("chart",)
    image_size: int | None = None
    seed: int = 0
    timeout: float = 120.0
    baseline: str | None = None
    level_cap_s: float | None = None  # a level's hard cap; None: LEVEL_CAP_S, or --duration + --timeout

    def bounds(self, level: float) -> Bounds:
        """A level's bounds: --requests and/or --duration; with neither, 4 requests per client (at least 16)."""
        requests = self.requests
        if requests is None and self.duration is None:
            requests = max(16, 4 * math.ceil(level))
        cap = self.level_cap_s if self.level_cap_s is not None else LEVEL_CAP_S
        if self.duration is not None:
            cap = min(cap, self.duration + self.timeout)
        return Bounds(requests=requests, duration=self.duration, cap_s=cap)

    def body(self, endpoint: Endpoint, prompt: Prompt, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": endpoint.model,
            "messages": prompt.messages(n),
            "max_tokens": self.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.ignore_eos:
            body.update(ignore_eos=True, min_tokens=self.max_tokens)
        return body

    def as_json(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.__dict__.items() if k != "api_key"}
        return {**shown, "api_key": "set" if self.api_key else None}


class Observer(Protocol):
    """What the live table is told as the run goes."""

    def level_started(self, label: str, level: float, planned: int | None) -> None: ...
    def result(self, label: str, level: float, result: RequestResult) -> None: ...
    def level_done(self, label: str, stats: LevelStats) -> None: ...


@dataclass
class EndpointRun:
    endpoint: Endpoint
    levels: list[LevelStats] = field(default_factory=list)
    records: list[list[RequestResult]] = field(default_factory=list)


@dataclass
class BenchRun:
    config: BenchConfig
    runs: list[EndpointRun]
    baseline: EndpointRun | None = None
    baseline_load_s: float | None = None
    started: float = field(default_factory=time.time)


def pool_size(config: BenchConfig) -> int:
    """Distinct prompts to make: no more than the run sends, and no more than POOL_SIZE."""
    if config.requests is not None and config.duration is None:
        return max(1, min(POOL_SIZE, config.requests * len(config.levels)))
    return POOL_SIZE


async def run_bench(config: BenchConfig, observer: Observer, *, on_status: Callable[[str], None]) -> BenchRun:
    async with http_client(config.api_key, timeout=config.timeout) as client:
        on_status("checking the endpoint")
        strict = config.baseline is None
        endpoints = [await check(client, config.url, "A", config.model, strict=strict)]
        if config.compare_url is not None:
            endpoints.append(await check(client, config.compare_url, "B", config.model, strict=False))
        on_status("making the workload")
        pool = await asyncio.to_thread(
            build_pool, list(config.kinds), seed=config.seed, image_size=config.image_size, size=pool_size(config)
        )
        runs = [EndpointRun(e) for e in endpoints]
        offset = 0
        for i, level in enumerate(config.levels):
            order = runs if i % 2 == 0 else runs[::-1]
            planned = 0
            for run in order:
                level_run = await _level(client, config, run.endpoint, pool, level, offset, observer)
                stats = summarise(level, level_run.results, capped=level_run.capped, started=level_run.started)
                run.levels.append(stats)
                run.records.append(level_run.results)
                observer.level_done(run.endpoint.label, stats)
                planned = max(planned, stats.requests)
            offset += planned
    bench = BenchRun(config, runs)
    if config.baseline == "naive":
        await _naive(config, bench, pool, observer, on_status)
    return bench


async def _level(
    client: httpx.AsyncClient,
    config: BenchConfig,
    endpoint: Endpoint,
    pool: list[Prompt],
    level: float,
    offset: int,
    observer: Observer,
) -> LevelRun:
    bounds = config.bounds(level)
    observer.level_started(endpoint.label, level, bounds.requests)

    def body(n: int) -> dict[str, Any]:
        return config.body(endpoint, pool[(offset + n) % len(pool)], offset + n)

    def on_result(result: RequestResult) -> None:
        observer.result(endpoint.label, level, result)

    return await run_level(
        client,
        endpoint.chat_url,
        body,
        level,
        bounds,
        mode=config.mode,
        timeout=config.timeout,
        seed=config.seed,
        on_result=on_result,
    )


async def _naive(
    config: BenchConfig, bench: BenchRun, pool: list[Prompt], observer: Observer, on_status: Callable[[str], None]
) -> None:
    """The seed articles' pattern on the first level's requests: one at a time, in this process."""
    from vlserve.benchmark.naive import NaiveModel, check_model_dir, run_naive

    model_dir = check_model_dir(config.model)
    on_status(f"loading {model_dir} for the naive baseline")
    model = await asyncio.to_thread(NaiveModel, model_dir)
    first = bench.runs[0].levels[0]
    count = first.requests or 16
    bounds = config.bounds(1)
    baseline = EndpointRun(Endpoint("naive", str(model_dir), model_dir.name))
    observer.level_started("naive", 1, count)
    deadline = time.perf_counter() + (config.duration if config.duration is not None else bounds.cap_s)
    results = await asyncio.to_thread(
        run_naive,
        model,
        [(n, pool[n % len(pool)]) for n in range(count)],
        max_tokens=config.max_tokens,
        ignore_eos=config.ignore_eos,
        deadline=deadline,
        on_result=lambda r: observer.result("naive", 1, r),
    )
    stats = summarise(1, results)
    baseline.levels.append(stats)
    baseline.records.append(results)
    observer.level_done("naive", stats)
    bench.baseline, bench.baseline_load_s = baseline, model.load_s


def parse_levels(value: str, *, rate: bool) -> tuple[float, ...]:
    """``"1,2,4"`` → (1, 2, 4): positive integers (concurrency) or positive numbers (rate), else ValueError."""
    levels: list[float] = []
    for part in value.split(","):
        text = part.strip()
        try:
            number = float(text) if rate else int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a {'number' if rate else 'whole number'}") from None
        if not number > 0 or number > 10_000:
            raise ValueError(f"{text!r} is out of range (above 0, at most 10000)")
        levels.append(number)
    if not levels:
        raise ValueError("no levels given")
    return tuple(levels)
