"""Overload: a running server driven at a multiple of the rate it sustains, to see how it sheds the excess.

    .venv/bin/python bench/overload.py --url http://127.0.0.1:8080 [--pid PID] [--multiple 3]
        [--duration 20] [--max-requests 3000] [--max-tokens 16] [--concurrency 8] [--stream-share 0.5]

First it measures the sustainable rate: ``--concurrency`` clients in a closed loop for ``--calibrate``
seconds. Then requests arrive at ``--multiple`` times that rate (evenly spaced, half of them streaming)
for ``--duration`` seconds, at most ``--max-requests``. It prints, as Markdown: accepted requests that
completed, 429 and 503 counts and the latency percentiles of each kind of answer, the throughput of
completed requests under overload against the calibrated rate, and, given the server's ``--pid``, its
peak resident memory (VmRSS) sampled every 100 ms. Loopback only; every loop bounded in count and time.

    .venv/bin/python bench/overload.py --url http://127.0.0.1:8080 --clients 250 [--duration 20]
        [--server-log PATH] [--pid PID] [--api-key KEY]

A burst instead: ``--clients`` clients at once, each sending its next request as soon as the last is
answered (no waiting out 429s), for ``--duration`` seconds, at most ``--max-requests`` in all. Given the
server's log (``--server-log``, the text or JSON access lines at level info), it also prints the latency
of each kind of answer as the server itself measured it (from the request's arrival in the app to its
last byte), which is what a 429 costs the server, apart from the client's own queueing on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import ipaddress
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image, ImageDraw


def chart_url(seed: int) -> str:
    image = Image.new("RGB", (160, 120), "white")
    draw = ImageDraw.Draw(image)
    for k in range(4):
        height = 10 + (31 * (seed + k)) % 100
        draw.rectangle((10 + 36 * k, 115 - height, 36 + 36 * k, 115), fill=(40 * k, 90, 200 - 40 * k))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@dataclass
class Outcome:
    status: int  # HTTP status; 200 with an error event inside a stream counts as 0
    seconds: float
    stream: bool
    retry_after: str | None = None
    code: str | None = None


def body(seed: int, max_tokens: int, stream: bool) -> dict:
    content = [{"type": "image_url", "image_url": {"url": chart_url(seed % 8)}}, {"type": "text", "text": "values?"}]
    return {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens, "temperature": 0, "stream": stream,
    }  # fmt: skip


async def one(client: httpx.AsyncClient, seed: int, max_tokens: int, stream: bool) -> Outcome:
    started = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body(seed, max_tokens, stream)) as response:
            raw = await response.aread()
    except httpx.HTTPError:
        return Outcome(-1, time.perf_counter() - started, stream)
    seconds = time.perf_counter() - started
    status, code = response.status_code, None
    if status != 200:
        try:
            code = json.loads(raw)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
    elif stream and (b'"error"' in raw or not raw.rstrip().endswith(b"data: [DONE]")):
        status = 0  # an error inside a stream that answered 200
    return Outcome(status, seconds, stream, response.headers.get("retry-after"), code)


async def calibrate(client: httpx.AsyncClient, concurrency: int, seconds: float, max_tokens: int) -> float:
    """Completed requests per second with ``concurrency`` clients in a closed loop (waiting out 429s)."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker(k: int) -> None:
        nonlocal done
        for i in range(10_000):  # bounded; the deadline ends it first
            if time.perf_counter() >= deadline:
                return
            outcome = await one(client, k * 10_000 + i, max_tokens, stream=False)
            if outcome.status == 200:
                done += 1
            elif outcome.retry_after is not None:  # a well-behaved client waits as told
                await asyncio.sleep(float(outcome.retry_after))

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done / (time.perf_counter() - started)


def vm_rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextlib.asynccontextmanager
async def sampled_rss(pid: int | None) -> AsyncIterator[list[float]]:
    """The server's VmRSS in MiB every 100 ms while the block runs (empty without a pid)."""
    rss: list[float] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            value = vm_rss_mib(pid)
            if value is not None:
                rss.append(value)
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    try:
        yield rss
    finally:
        done.set()
        await sampler


async def overload(
    client: httpx.AsyncClient, rate: float, seconds: float, limit: int, max_tokens: int, stream_share: float
) -> tuple[list[Outcome], float]:
    gap = 1 / rate
    count = min(limit, int(rate * seconds))
    tasks = []
    started = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i * gap - time.perf_counter()))
        streaming = (i * stream_share) % 1 + stream_share >= 1  # spreads streams evenly
        tasks.append(asyncio.create_task(one(client, i, max_tokens, streaming)))
    outcomes = await asyncio.gather(*tasks)
    return list(outcomes), time.perf_counter() - started


async def burst(
    client: httpx.AsyncClient, clients: int, seconds: float, limit: int, max_tokens: int, stream_share: float
) -> tuple[list[Outcome], float]:
    """``clients`` closed loops at once, none waiting between requests, until ``seconds`` or ``limit`` requests."""
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(k: int) -> None:
        for i in range(limit):  # bounded; the deadline or the shared limit ends it first
            if time.perf_counter() >= deadline or len(outcomes) >= limit:
                return
            streaming = (k * stream_share) % 1 + stream_share >= 1
            outcomes.append(await one(client, k * limit + i, max_tokens, streaming))

    await asyncio.gather(*(loop(k) for k in range(clients)))
    return outcomes, time.perf_counter() - started


_TEXT_ACCESS = re.compile(r" vlserve\.access .*?(GET|POST|HEAD|PUT|DELETE|PATCH) (\S+) (\d{3}) ([\d.]+) ms")


def server_latencies(log_text: str) -> dict[int, list[float]]:
    """Seconds per status of every access line in ``log_text`` (text or JSON lines), as the server measured them."""
    out: dict[int, list[float]] = defaultdict(list)
    for line in log_text.splitlines():
        if line.startswith("{"):
            try:
                fields = json.loads(line).get("access")
            except ValueError:
                continue
            if isinstance(fields, dict) and "status" in fields and "latency_ms" in fields:
                out[int(fields["status"])].append(float(fields["latency_ms"]) / 1000)
            continue
        match = _TEXT_ACCESS.search(line)
        if match:
            out[int(match.group(3))].append(float(match.group(4)) / 1000)
    return out


def report_server(latencies: dict[int, list[float]]) -> None:
    print("\nas the server measured them (its access log):\n")
    print("| status | count | latency ms p50 / p95 / p99 / max |")
    print("|---|---|---|")
    for status, values in sorted(latencies.items()):
        print(f"| {status} | {len(values)} | {percentiles(values)} |")


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return " / ".join(_ms(v) for v in (pick(0.5), pick(0.95), pick(0.99), values[-1]))


def _ms(seconds: float) -> str:
    """Milliseconds, with a decimal below 10 ms (a refusal's cost is a fraction of one)."""
    return f"{seconds * 1000:.1f}" if seconds < 0.01 else f"{seconds * 1000:.0f}"


def report(outcomes: list[Outcome], elapsed: float, rate: float, multiple: float, rss: list[float]) -> None:
    kinds: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        name = {200: "200 completed", 429: "429", 503: "503", 0: "200 with an error inside", -1: "connection error"}
        kinds[name.get(o.status, str(o.status))].append(o)
    if multiple:
        print(f"sustainable rate (calibrated): {rate:.2f} req/s; offered: {rate * multiple:.2f} req/s ({multiple:g}x)")
    print(f"sent {len(outcomes)} requests in {elapsed:.1f} s\n")
    print("| answer | count | streaming | latency ms p50 / p95 / p99 / max |")
    print("|---|---|---|---|")
    for name, group in sorted(kinds.items()):
        streams = sum(o.stream for o in group)
        print(f"| {name} | {len(group)} | {streams} | {percentiles([o.seconds for o in group])} |")
    completed = len(kinds["200 completed"])
    calibrated = f" ({rate:.2f} calibrated)" if multiple else ""
    print(f"\nthroughput under overload: {completed / elapsed:.2f} completed req/s{calibrated}")
    refused = kinds["429"] + kinds["503"]
    if refused:
        missing = sum(1 for o in refused if not o.retry_after)
        codes = sorted({str(o.code) for o in refused})
        print(f"refusals without Retry-After: {missing}; codes: {', '.join(codes)}")
    if rss:
        print(f"server VmRSS: before {rss[0]:.0f} MiB, peak {max(rss):.0f} MiB, after {rss[-1]:.0f} MiB")


async def main_async(args: argparse.Namespace) -> None:
    connections = max(args.max_requests + args.concurrency, args.clients)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=max(64, args.clients))
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    async with httpx.AsyncClient(
        base_url=args.url, timeout=args.timeout, limits=limits, trust_env=False, headers=headers
    ) as client:
        if args.clients:
            await run_burst(client, args)
            return
        rate = args.rate or await calibrate(client, args.concurrency, args.calibrate, args.max_tokens)
        if rate <= 0:
            sys.exit("no request completed while calibrating; is the server ready?")
        async with sampled_rss(args.pid) as rss:
            outcomes, elapsed = await overload(
                client, rate * args.multiple, args.duration, args.max_requests, args.max_tokens, args.stream_share
            )
            await asyncio.sleep(2)  # memory after the burst
        report(outcomes, elapsed, rate, args.multiple, rss)
        after = await one(client, 0, args.max_tokens, stream=False)
        print(f"a request after the burst: HTTP {after.status} in {after.seconds * 1000:.0f} ms")


async def run_burst(client: httpx.AsyncClient, args: argparse.Namespace) -> None:
    log_start = Path(args.server_log).stat().st_size if args.server_log else 0
    async with sampled_rss(args.pid) as rss:
        outcomes, elapsed = await burst(
            client, args.clients, args.duration, args.max_requests, args.max_tokens, args.stream_share
        )
    print(f"{args.clients} clients at once for {elapsed:.1f} s\n")
    report(outcomes, elapsed, 0.0, 0.0, rss)
    if args.server_log:
        await asyncio.sleep(1)  # the last access lines reach the file
        with open(args.server_log, errors="replace") as log:
            log.seek(log_start)
            report_server(server_latencies(log.read()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--pid", type=int, default=None, help="the server's process id, for its VmRSS")
    parser.add_argument("--multiple", type=float, default=3.0, help="offered load / sustainable rate")
    parser.add_argument("--rate", type=float, default=0.0, help="skip calibration: the sustainable rate, req/s")
    parser.add_argument("--calibrate", type=float, default=10.0, help="seconds of closed-loop calibration")
    parser.add_argument("--concurrency", type=int, default=8, help="clients while calibrating")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of overload")
    parser.add_argument("--max-requests", type=int, default=3000)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--stream-share", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=0, help="a burst: this many clients at once, no calibration")
    parser.add_argument("--server-log", default=None, help="the server's log file: latencies as the server saw them")
    parser.add_argument("--api-key", default=None, help="a key, for a server with auth on")
    args = parser.parse_args()
    host = httpx.URL(args.url).host
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        sys.exit("bench/overload.py drives loopback servers only (127.0.0.1, ::1, localhost)")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
