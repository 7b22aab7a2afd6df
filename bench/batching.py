"""Throughput of the transformers engine with and without batching, on a local checkpoint.

    .venv/bin/python bench/batching.py [--model DIR] [--requests 16] [--max-tokens 32]

Runs the same set of image+text requests (all arriving at once) with max_batch_size 1 and 4,
greedy, and prints wall time, requests/s, generated tokens/s and p50/p95 latency. Defaults to the
bundled demo model (built on first use). In-process; no network.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.engine.transformers import TransformersEngine
from vlserve.settings import Settings


def chart(i: int) -> Image.Image:
    image = Image.new("RGB", (320 + 16 * i, 240), "white")
    draw = ImageDraw.Draw(image)
    for k in range(5):
        height = 20 + (37 * (i + k)) % 200
        draw.rectangle((20 + 60 * k, 235 - height, 60 + 60 * k, 235), fill=(30 * k, 90, 200 - 30 * k))
    return image


async def run(settings: Settings, n: int, max_tokens: int) -> dict[str, float]:
    engine = TransformersEngine(settings)
    await engine.start()
    try:
        requests = [EngineRequest.chat([ChatTurn.user(f"Values of chart {i}?", 1)], [chart(i)]) for i in range(n)]
        prompts = [await engine.prepare(request) for request in requests]
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        latencies: list[float] = []
        tokens = 0

        async def one(prompt) -> None:
            nonlocal tokens
            start = time.perf_counter()
            async for delta in engine.generate(prompt, params):
                if delta.finish_reason:
                    tokens += delta.usage.completion_tokens
            latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in prompts))
        wall = time.perf_counter() - start
    finally:
        await engine.close()
    latencies.sort()
    return {
        "wall_s": wall,
        "req_per_s": n / wall,
        "tok_per_s": tokens / wall,
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[max(0, int(0.95 * len(latencies)) - 1)],
        "prompt_tokens": prompts[0].num_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    base = Settings(model=args.model, warmup=True)
    if args.model is None:
        from vlserve.demo import build_random_model

        build_random_model(base.model_dir())
    print(f"model {base.model_dir().name}, {args.requests} requests at once, {args.max_tokens} tokens each, greedy")
    print("| max_batch_size | wall s | req/s | gen tok/s | p50 s | p95 s |")
    print("|---|---|---|---|---|---|")
    for batch in (1, 4):
        r = asyncio.run(run(base.model_copy(update={"max_batch_size": batch}), args.requests, args.max_tokens))
        cells = [f"{r['wall_s']:.2f}", f"{r['req_per_s']:.2f}", f"{r['tok_per_s']:.1f}", f"{r['p50_s']:.2f}"]
        print(f"| {batch} | {' | '.join(cells)} | {r['p95_s']:.2f} |")
    print(f"(prompt: {r['prompt_tokens']} tokens incl. the image)", file=sys.stderr)


if __name__ == "__main__":
    main()
