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

The loops and the timing are `vlserve bench`'s (vlserve.benchmark): paced arrivals for the overload, closed
loops for the calibration and the burst, answers sorted by its error keys (status and code).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import io
import ipaddress
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

from vlserve.benchmark.endpoint import http_client
from vlserve.benchmark.load import Bounds, closed_loop, paced
from vlserve.benchmark.measure import RequestResult, stream_chat

CHAT = "/v1/chat/completions"


@functools.cache
def chart_url(seed: int) -> str:
    image = Image.new("RGB", (160, 120), "white")
    draw = ImageDraw.Draw(image)
    for k in range(4):
        height = 10 + (31 * (seed + k)) % 100
        draw.rectangle((10 + 36 * k, 115 - height, 36 + 36 * k, 115), fill=(40 * k, 90, 200 - 40 * k))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def kind(result: RequestResult) -> str:
    """The row an answer falls in: completed, refused (429, 503), an error inside a 200 stream, no answer."""
    if result.ok:
        return "200 completed"
    if result.error in ("timeout", "connection"):
        return "connection error"
    if result.status == 200:
        return "200 with an error inside"
    return str(result.status)


def code(result: RequestResult) -> str | None:
    """The error envelope's code of a refusal (``"429 rate_limit_exceeded"`` → ``rate_limit_exceeded``)."""
    parts = (result.error or "").split(" ", 1)
    return parts[1] if len(parts) == 2 and parts[0].isdigit() else None


def body(seed: int, max_tokens: int, stream: bool) -> dict:
    content = [{"type": "image_url", "image_url": {"url": chart_url(seed % 8)}}, {"type": "text", "text": "values?"}]
    return {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens, "temperature": 0, "stream": stream,
    }  # fmt: skip


async def one(client: httpx.AsyncClient, seed: int, args: argparse.Namespace, stream: bool) -> RequestResult:
    result = await stream_chat(client, CHAT, body(seed, args.max_tokens, stream), timeout=args.timeout)
    result.extra["stream"] = stream
    return result


def streaming(n: int, share: float) -> bool:
    return (n * share) % 1 + share >= 1  # spreads streams evenly


async def calibrate(client: httpx.AsyncClient, args: argparse.Namespace) -> float:
    """Completed requests per second with ``--concurrency`` clients in a closed loop (waiting out 429s)."""

    async def send(n: int) -> RequestResult:
        result = await one(client, n, args, stream=False)
        if (retry_after := result.extra.get("retry_after")) is not None:  # a well-behaved client waits as told
            await asyncio.sleep(float(retry_after))
        return result

    bounds = Bounds(requests=args.concurrency * 10_000, duration=args.calibrate, cap_s=args.calibrate + args.timeout)
    level = await closed_loop(send, args.concurrency, bounds, lambda _: None)
    return sum(r.ok for r in level.results) / (time.perf_counter() - level.started)


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
    client: httpx.AsyncClient, rate: float, args: argparse.Namespace
) -> tuple[list[RequestResult], float]:
    """Requests at ``rate`` per second, evenly spaced, for ``--duration`` seconds, at most ``--max-requests``."""

    async def send(n: int) -> RequestResult:
        return await one(client, n, args, streaming(n, args.stream_share))

    bounds = Bounds(requests=args.max_requests, duration=args.duration, cap_s=args.duration + args.timeout + 10)
    level = await paced(send, rate, bounds, lambda _: None)
    return level.results, time.perf_counter() - level.started


async def burst(client: httpx.AsyncClient, args: argparse.Namespace) -> tuple[list[RequestResult], float]:
    """``--clients`` closed loops at once, none waiting between requests, until ``--duration`` or ``--max-requests``."""

    async def send(n: int) -> RequestResult:
        return await one(client, n, args, streaming(n, args.stream_share))

    bounds = Bounds(requests=args.max_requests, duration=args.duration, cap_s=args.duration + args.timeout + 10)
    level = await closed_loop(send, args.clients, bounds, lambda _: None)
    return level.results, time.perf_counter() - level.started


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


def report(outcomes: list[RequestResult], elapsed: float, rate: float, multiple: float, rss: list[float]) -> None:
    kinds: dict[str, list[RequestResult]] = defaultdict(list)
    for o in outcomes:
        kinds[kind(o)].append(o)
    if multiple:
        print(f"sustainable rate (calibrated): {rate:.2f} req/s; offered: {rate * multiple:.2f} req/s ({multiple:g}x)")
    print(f"sent {len(outcomes)} requests in {elapsed:.1f} s\n")
    print("| answer | count | streaming | latency ms p50 / p95 / p99 / max |")
    print("|---|---|---|---|")
    for name, group in sorted(kinds.items()):
        streams = sum(bool(o.extra.get("stream")) for o in group)
        print(f"| {name} | {len(group)} | {streams} | {percentiles([o.e2e for o in group])} |")
    completed = len(kinds["200 completed"])
    calibrated = f" ({rate:.2f} calibrated)" if multiple else ""
    print(f"\nthroughput under overload: {completed / elapsed:.2f} completed req/s{calibrated}")
    refused = kinds["429"] + kinds["503"]
    if refused:
        missing = sum(1 for o in refused if not o.extra.get("retry_after"))
        codes = sorted({str(code(o)) for o in refused})
        print(f"refusals without Retry-After: {missing}; codes: {', '.join(codes)}")
    if rss:
        print(f"server VmRSS: before {rss[0]:.0f} MiB, peak {max(rss):.0f} MiB, after {rss[-1]:.0f} MiB")


async def main_async(args: argparse.Namespace) -> None:
    async with http_client(args.api_key, timeout=args.timeout, trust_env=False) as client:
        client.base_url = httpx.URL(args.url)
        if args.clients:
            await run_burst(client, args)
            return
        rate = args.rate or await calibrate(client, args)
        if rate <= 0:
            sys.exit("no request completed while calibrating; is the server ready?")
        async with sampled_rss(args.pid) as rss:
            outcomes, elapsed = await overload(client, rate * args.multiple, args)
            await asyncio.sleep(2)  # memory after the burst
        report(outcomes, elapsed, rate, args.multiple, rss)
        after = await one(client, 0, args, stream=False)
        answer = after.status if after.status is not None else after.error
        print(f"a request after the burst: HTTP {answer} in {after.e2e * 1000:.0f} ms")


async def run_burst(client: httpx.AsyncClient, args: argparse.Namespace) -> None:
    log_start = Path(args.server_log).stat().st_size if args.server_log else 0
    async with sampled_rss(args.pid) as rss:
        outcomes, elapsed = await burst(client, args)
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
