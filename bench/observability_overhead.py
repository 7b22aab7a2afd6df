"""What the metrics and the access log cost: the same uncached requests with both on and with both off.

    .venv/bin/python bench/observability_overhead.py [--pairs 200] [--max-tokens 16] [--micro-rounds 20]

End to end: two `vlserve serve` servers on loopback over one random demo checkpoint, (a) the default
(metrics on, access log on, JSON log lines at level info written to a file) and (b) VLSERVE_METRICS=0
VLSERVE_ACCESS_LOG=0 (same log settings). Each pair sends one request to each, in alternating order so that
drift cancels; every request is uncached (its own prompt, temperature 0, `Cache-Control: no-store`) and
decodes exactly --max-tokens tokens (`ignore_eos`). Prints mean and P50 latency, the paired difference with
a 95 % interval, and each server's CPU time per request. Each request is timed by `vlserve bench`'s
measurement (vlserve.benchmark); the loop stays its own, because a paired difference needs one request to
each server in turn, which a level of load against one server does not give.

Micro: the middleware stack alone, in process (no sockets, no client, no engine): the request id, access log
and metrics middlewares as app.py composes them, around an endpoint that notes a completion's model, tokens
and timings, for each combination of the two switches, in interleaved blocks, in µs per request. End-to-end
noise on a small machine is larger than 1 %; this part is what the switches cost.
Every loop is bounded in count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import api_headers, vlserve  # noqa: E402

from vlserve.benchmark.endpoint import http_client  # noqa: E402
from vlserve.benchmark.measure import stream_chat  # noqa: E402

NO_STORE = {"Cache-Control": "no-store"}
LOGS = {"log_level": "info", "log_format": "json"}
OFF = {"metrics": "0", "access_log": "0"}


def body(i: int, max_tokens: int) -> dict:
    text = f"Request {i}: in one sentence, what does a rising line chart of series {i} show?"
    return {
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
    }


def end_to_end(model: Path, pairs: int, max_tokens: int) -> None:
    with vlserve("--model", str(model), **LOGS) as on, vlserve("--model", str(model), **LOGS, **OFF) as off:
        servers = {"on": on, "off": off}
        latencies, cpu = asyncio.run(paired(servers, pairs, max_tokens))
    diffs = [a - b for a, b in zip(latencies["on"], latencies["off"], strict=True)]
    mean_off = statistics.fmean(latencies["off"])
    half = 1.96 * statistics.stdev(diffs) / len(diffs) ** 0.5
    print(f"end to end: {pairs} pairs, max_tokens {max_tokens}, uncached\n")
    print("| server | mean ms | P50 ms | server CPU ms / request |")
    print("|---|---:|---:|---:|")
    for name, label in (("on", "metrics + access log (default)"), ("off", "VLSERVE_METRICS=0 VLSERVE_ACCESS_LOG=0")):
        mean, p50 = statistics.fmean(latencies[name]) * 1000, statistics.median(latencies[name]) * 1000
        print(f"| {label} | {mean:.2f} | {p50:.2f} | {cpu[name]:.2f} |")
    mean_diff = statistics.fmean(diffs)
    print(
        f"\npaired difference (on - off): mean {mean_diff * 1000:+.3f} ms "
        f"({mean_diff / mean_off * 100:+.2f} %, 95 % interval {(mean_diff - half) / mean_off * 100:+.2f} % .. "
        f"{(mean_diff + half) / mean_off * 100:+.2f} %), median {statistics.median(diffs) * 1000:+.3f} ms\n"
    )


async def paired(servers: dict, pairs: int, max_tokens: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds per request to each server, ``pairs`` pairs in alternating order; each server's CPU ms per request."""
    latencies: dict[str, list[float]] = {"on": [], "off": []}
    async with http_client(timeout=120, trust_env=False) as client:
        client.headers.update({**api_headers(), **NO_STORE})

        async def send(name: str, payload: dict) -> float:
            result = await stream_chat(client, f"{servers[name].url}/v1/chat/completions", payload, timeout=120)
            if not result.ok:
                raise RuntimeError(f"the {name} server answered {result.error}")
            return result.e2e

        for i in range(8):  # warm both: first requests compile kernels and fill allocator pools
            for name in servers:
                await send(name, body(-1 - i, max_tokens))
        cpu = {name: server.cpu_seconds() for name, server in servers.items()}
        for i in range(pairs):
            for name in ("on", "off") if i % 2 == 0 else ("off", "on"):
                latencies[name].append(await send(name, body(i, max_tokens)))
        cpu = {name: (server.cpu_seconds() - cpu[name]) * 1000 / pairs for name, server in servers.items()}
    return latencies, cpu


def _stack(metrics: bool, access_log: bool) -> Any:
    """The request id, access log and metrics middlewares as app.py composes them, around an endpoint that notes
    what a chat completion notes (model, tokens, timings) and answers 200 at once."""
    from vlserve.engine.base import Usage
    from vlserve.observability.access_log import AccessLogMiddleware
    from vlserve.observability.accounting import note_model, note_timing, note_usage
    from vlserve.observability.metrics_middleware import MetricsMiddleware
    from vlserve.observability.request_id import RequestIdMiddleware
    from vlserve.settings import Settings

    async def endpoint(scope: dict, receive: Any, send: Any) -> None:
        note_model("demo")
        note_usage(Usage(prompt_tokens=40, completion_tokens=16))
        note_timing(0.05, 0.3)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    app: Any = endpoint
    if metrics:
        app = MetricsMiddleware(app)
    if access_log:
        app = AccessLogMiddleware(app, Settings())
    return RequestIdMiddleware(app)


async def _requests(app: Any, owner: Any, count: int) -> float:
    """Seconds for ``count`` ``POST /v1/chat/completions`` calls through ``app`` (no sockets, no client)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080),
        "app": owner,
    }  # fmt: skip

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        pass

    start = time.perf_counter()
    for _ in range(count):
        await app(dict(scope, state={}), receive, send)
    return time.perf_counter() - start


async def micro(rounds: int, block: int) -> None:
    from vlserve.observability.logging import log_config
    from vlserve.observability.metrics import Metrics

    config = log_config("info", "json")  # the server's JSON lines, written to /dev/null instead of stderr
    config["handlers"]["vlserve"] = {"class": "logging.FileHandler", "filename": os.devnull, "formatter": "vlserve"}
    config["handlers"]["vlserve"]["filters"] = ["request_id"]
    logging.config.dictConfig(config)
    # What MetricsMiddleware reads: the app's runtime and its registry.
    owner = SimpleNamespace(state=SimpleNamespace(vlserve=SimpleNamespace(metrics=Metrics(per_key=False))))
    apps = {
        "metrics + access log (default)": _stack(metrics=True, access_log=True),
        "metrics only": _stack(metrics=True, access_log=False),
        "access log only": _stack(metrics=False, access_log=True),
        "neither": _stack(metrics=False, access_log=False),
    }
    per_request: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    for name in names:
        await _requests(apps[name], owner, block)  # warm
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order every round
            per_request[name].append(await _requests(apps[name], owner, block) / block * 1e6)
    base_median, base_min = statistics.median(per_request["neither"]), min(per_request["neither"])
    print(f"micro: the middleware stack alone, {rounds} interleaved rounds of {block} requests per variant\n")
    print("| variant | µs / request, median of rounds | added | µs / request, best round | added |")
    print("|---|---:|---:|---:|---:|")
    for name, values in per_request.items():
        median, best = statistics.median(values), min(values)
        print(f"| {name} | {median:.1f} | {median - base_median:+.1f} | {best:.1f} | {best - base_min:+.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="end-to-end request pairs (one to each server)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--micro-rounds", type=int, default=30)
    parser.add_argument("--micro-block", type=int, default=2000, help="requests per variant and round")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    if not args.skip_e2e:
        from vlserve.demo import build_random_model

        with tempfile.TemporaryDirectory(prefix="vlserve-obs-bench-") as tmp:
            model = build_random_model(Path(tmp) / "model")  # one checkpoint: both servers decode the same tokens
            end_to_end(model, args.pairs, args.max_tokens)
    asyncio.run(micro(args.micro_rounds, args.micro_block))


if __name__ == "__main__":
    main()
