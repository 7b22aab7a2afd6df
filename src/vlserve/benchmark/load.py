"""The load of one level: a closed loop at a fixed concurrency, or Poisson arrivals at a fixed rate.

Closed loop: ``concurrency`` clients each send their next request as soon as their last one ends. Poisson:
requests start at exponentially distributed intervals of mean 1/rate (seeded), however many are still running;
paced (bench/overload.py): the same at even intervals, the first at once. Each stops starting requests after
``requests`` of them or ``duration`` seconds, whichever comes first, and waits for those started; a hard cap
(``cap_s``) ends a level that overruns, cancelling what is still running (those requests are not counted, and
the level is marked capped).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from vlserve.benchmark.measure import RequestResult, stream_chat

MAX_REQUESTS_PER_LEVEL = 100_000
LEVEL_CAP_S = 600.0

Send = Callable[[int], Awaitable[RequestResult]]
OnResult = Callable[[RequestResult], None]


@dataclass(frozen=True)
class Bounds:
    requests: int | None = None
    duration: float | None = None
    cap_s: float = LEVEL_CAP_S

    @property
    def most(self) -> int:
        return min(self.requests or MAX_REQUESTS_PER_LEVEL, MAX_REQUESTS_PER_LEVEL)


@dataclass
class LevelRun:
    results: list[RequestResult]
    capped: bool
    started: float  # perf_counter when the level began: its span starts here, not at the first arrival


async def closed_loop(send: Send, concurrency: int, bounds: Bounds, on_result: OnResult) -> LevelRun:
    results: list[RequestResult] = []
    started = time.perf_counter()
    issued = 0

    def more() -> bool:
        in_time = bounds.duration is None or time.perf_counter() - started < bounds.duration
        return issued < bounds.most and in_time

    async def client() -> None:
        nonlocal issued
        while more():
            n = issued
            issued += 1
            result = await send(n)
            results.append(result)
            on_result(result)

    workers = [asyncio.create_task(client()) for _ in range(concurrency)]
    capped = not await _wait(workers, bounds.cap_s)
    return LevelRun(results, capped, started)


async def poisson(send: Send, rate: float, bounds: Bounds, on_result: OnResult, *, seed: int = 0) -> LevelRun:
    rng = random.Random(seed)
    return await _open_loop(send, (rng.expovariate(rate) for _ in itertools.count()), bounds, on_result)


async def paced(send: Send, rate: float, bounds: Bounds, on_result: OnResult) -> LevelRun:
    return await _open_loop(send, itertools.chain([0.0], itertools.repeat(1 / rate)), bounds, on_result)


async def _open_loop(send: Send, gaps: Iterator[float], bounds: Bounds, on_result: OnResult) -> LevelRun:
    """Start each request the next of ``gaps`` (seconds) after the one before, however many are still running."""
    results: list[RequestResult] = []
    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []

    async def one(n: int) -> None:
        result = await send(n)
        results.append(result)
        on_result(result)

    async def arrivals() -> None:
        due = started
        for n, gap in zip(range(bounds.most), gaps, strict=False):
            due += gap
            if bounds.duration is not None and due - started >= bounds.duration:
                return
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(n)))

    arriving = asyncio.create_task(arrivals())
    in_time = await _wait([arriving], bounds.cap_s)
    left = bounds.cap_s - (time.perf_counter() - started)
    capped = not in_time or not await _wait(tasks, max(0.0, left))
    if not in_time:
        await _cancel(tasks)
    return LevelRun(results, capped, started)


async def run_level(
    client: httpx.AsyncClient,
    url: str,
    body: Callable[[int], dict[str, Any]],
    level: float,
    bounds: Bounds,
    *,
    mode: Literal["concurrency", "rate", "paced"] = "concurrency",
    timeout: float = 120.0,
    seed: int = 0,
    on_result: OnResult | None = None,
) -> LevelRun:
    """One level against ``url`` (…/v1/chat/completions): request ``n`` sends ``body(n)`` as it is (streamed or
    not, see :func:`stream_chat`); ``level`` is the concurrency, or the rate for ``rate`` (Poisson) and ``paced``."""

    async def send(n: int) -> RequestResult:
        return await stream_chat(client, url, body(n), timeout=timeout)

    noted = on_result or (lambda _: None)
    if mode == "rate":
        return await poisson(send, level, bounds, noted, seed=seed)
    if mode == "paced":
        return await paced(send, level, bounds, noted)
    return await closed_loop(send, int(level), bounds, noted)


async def _wait(tasks: list[asyncio.Task[None]], timeout: float) -> bool:
    """Wait for ``tasks``; true if all ended in time, else they are cancelled and false."""
    if not tasks:
        return True
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    await _cancel(list(pending))
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error  # a bug in the load loop, not a failed request (those are results): let it be seen
    return not pending


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
