"""What a response-cache hit costs over HTTP: P50 / P99 of repeated identical greedy requests.

    .venv/bin/python bench/cache_latency.py [--requests 500] [--redis-url redis://127.0.0.1:6379/0] [--model DIR]
                                            [--no-audit]

Starts `vlserve serve` (the demo model unless --model; loopback, a free port) once with the in-process
cache and once with the Redis one (its own key prefix, deleted afterwards), sends one temperature-0 chat
request to fill the cache, then the same request N times over one keep-alive connection (httpx), each
checked to be a hit. Prints a Markdown table. Every loop is bounded in count; loopback only.
It keeps its own loop rather than `vlserve bench`'s load: a hit is measured as identical requests sent one
after another over one keep-alive connection and checked by the ``x-vlserve-cache`` header, where the load
generator sends requests that differ (so no cache answers them) and reads no response headers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import api_headers, vlserve  # noqa: E402

BODY = {
    "messages": [{"role": "user", "content": "Describe the trend of the series."}],
    "max_tokens": 16,
    "temperature": 0,
}


def hits(url: str, requests: int, *, stream: bool) -> list[float]:
    """Seconds per request of ``requests`` hits (after one miss that fills the cache)."""
    body = {**BODY, "stream": stream}
    latencies = []
    with httpx.Client(base_url=url, timeout=30, headers=api_headers()) as client:
        client.post("/v1/chat/completions", json=body).raise_for_status()
        for _ in range(requests):
            start = time.perf_counter()
            response = client.post("/v1/chat/completions", json=body)
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()
            if response.headers.get("x-vlserve-cache") != "hit":
                raise RuntimeError(f"expected a cache hit, got {response.headers.get('x-vlserve-cache')!r}")
    return latencies


def floor(url: str, requests: int) -> list[float]:
    """Seconds per ``GET /health/live`` on the same kind of connection: what any request costs this server."""
    latencies = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(requests):
            start = time.perf_counter()
            client.get("/health/live").raise_for_status()
            latencies.append(time.perf_counter() - start)
    return latencies


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def delete_prefix(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            client.delete(key)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="hits measured per backend and mode")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="empty: the in-process backend only")
    parser.add_argument("--model", default=None)
    parser.add_argument("--no-audit", action="store_true", help="VLSERVE_AUDIT=0: no audit record per request")
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    prefix = f"vlserve-bench:{uuid.uuid4().hex[:8]}:"
    backends = [("in-process", {})]
    if args.redis_url:
        backends.append(("redis", {"redis_url": args.redis_url, "redis_prefix": prefix}))
    print("| backend | mode | hits | P50 ms | P99 ms | mean ms |")
    print("|---|---|---:|---:|---:|---:|")
    try:
        for name, settings in backends:
            audit = "false" if args.no_audit else "true"
            with vlserve(*model, cache="true", audit=audit, **settings) as server:
                for mode in ("json", "stream", "GET /health/live"):
                    if mode == "GET /health/live":  # the floor: the server's cost of any request
                        latencies = floor(server.url, args.requests)
                    else:
                        latencies = hits(server.url, args.requests, stream=mode == "stream")
                    p50, p99 = quantile(latencies, 0.5) * 1000, quantile(latencies, 0.99) * 1000
                    mean = statistics.fmean(latencies) * 1000
                    print(f"| {name} | {mode} | {len(latencies)} | {p50:.2f} | {p99:.2f} | {mean:.2f} |")
    finally:
        if args.redis_url:
            delete_prefix(args.redis_url, prefix)


if __name__ == "__main__":
    main()
