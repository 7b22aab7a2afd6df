"""What `--engine remote` adds: the same load sent straight to an upstream and through a vlserve gateway.

    .venv/bin/python bench/gateway_overhead.py [--requests 200] [--max-tokens 16] [--model DIR]

Starts an upstream (`vlserve serve`, transformers engine, the demo model unless --model) and a gateway
(`vlserve serve --engine remote --upstream …`) on loopback, then for each workload (a text prompt,
and a prompt with one 640x480 chart) and concurrency 1 and 8, sends the same greedy requests to the
upstream directly and through the gateway, alternating rounds. Prints P50 / P95 latency, throughput
and what the gateway adds, as a Markdown table. Each round is one closed-loop level of `vlserve bench`'s
load generator (vlserve.benchmark), its rounds interleaved like `vlserve bench --compare`, so the gateway's CPU
time can be read around each of its rounds. Every loop is bounded in count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import api_headers, vlserve  # noqa: E402

from vlserve.benchmark.endpoint import http_client  # noqa: E402
from vlserve.benchmark.load import Bounds, run_level  # noqa: E402
from vlserve.benchmark.stats import percentile  # noqa: E402


def chart_url(width: int = 640, height: int = 480) -> str:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for k in range(6):
        top = 40 + (71 * k) % (height - 80)
        draw.rectangle((30 + 100 * k, top, 100 + 100 * k, height - 20), fill=(40 * k, 100, 220 - 30 * k))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def body(workload: str, i: int, max_tokens: int, image: str) -> dict:
    text = f"Describe the trend of series {i}."
    content: str | list = text
    if workload == "image":
        content = [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": text}]
    return {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0}


async def load(url: str, bodies: list[dict], concurrency: int) -> tuple[list[float], float]:
    """(latencies in seconds, wall seconds) of ``bodies`` sent by ``concurrency`` clients in a closed loop."""
    async with http_client(timeout=120, trust_env=False) as client:
        client.headers.update(api_headers())
        bounds = Bounds(requests=len(bodies))
        level = await run_level(client, f"{url}/v1/chat/completions", bodies.__getitem__, concurrency, bounds)
    failed = sorted({r.error or "?" for r in level.results if not r.ok})
    if failed or len(level.results) < len(bodies):
        raise RuntimeError(f"{url}: {len(level.results)} of {len(bodies)} answered; errors: {', '.join(failed)}")
    wall = max(r.end for r in level.results) - level.started
    return [r.e2e for r in level.results], wall


def quantile(values: list[float], q: float) -> float:
    return percentile(sorted(values), q * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per workload, concurrency and path")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating direct/gateway rounds")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    image = chart_url()
    rows = []
    with vlserve(*model) as upstream, vlserve(*model, engine="remote", upstream=upstream.url) as gateway:
        for workload in ("text", "image"):
            for concurrency in (1, 8):
                bodies = [body(workload, i, args.max_tokens, image) for i in range(args.requests // args.rounds)]
                asyncio.run(load(upstream.url, bodies[:8], concurrency))  # warm both paths
                asyncio.run(load(gateway.url, bodies[:8], concurrency))
                results: dict[str, tuple[list[float], float]] = {"direct": ([], 0.0), "gateway": ([], 0.0)}
                gateway_cpu = 0.0
                for _ in range(args.rounds):
                    for name, server in (("direct", upstream), ("gateway", gateway)):
                        cpu = gateway.cpu_seconds()
                        latencies, wall = asyncio.run(load(server.url, bodies, concurrency))
                        results[name] = (results[name][0] + latencies, results[name][1] + wall)
                        if name == "gateway":
                            gateway_cpu += gateway.cpu_seconds() - cpu
                rows.append((workload, concurrency, results, gateway_cpu * 1000 / len(bodies) / args.rounds))
    print("| workload | concurrency | path | requests | P50 ms | P95 ms | req/s |")
    print("|---|---:|---|---:|---:|---:|---:|")
    summary = []
    for workload, concurrency, results, cpu_ms in rows:
        stats = {}
        for name, (latencies, wall) in results.items():
            p50, p95, rate = quantile(latencies, 0.5) * 1000, quantile(latencies, 0.95) * 1000, len(latencies) / wall
            stats[name] = (p50, p95, rate)
            print(f"| {workload} | {concurrency} | {name} | {len(latencies)} | {p50:.1f} | {p95:.1f} | {rate:.2f} |")
        (d50, d95, drate), (g50, g95, grate) = stats["direct"], stats["gateway"]
        summary.append(
            f"| {workload} | {concurrency} | {g50 - d50:+.1f} ms ({(g50 / d50 - 1) * 100:+.1f} %) "
            f"| {g95 - d95:+.1f} ms ({(g95 / d95 - 1) * 100:+.1f} %) | {grate / drate:.3f} | {cpu_ms:.1f} |"
        )
    print("\n| workload | concurrency | added P50 | added P95 | throughput ratio (gateway / direct) "
          "| gateway CPU ms per request |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
