"""Continuous batching in the transformers engine: closed-loop clients, in-process, on a local checkpoint.

    .venv/bin/python bench/batching.py [--model DIR] [--concurrency 1,8] [--duration 20] [--max-tokens 32]
        [--max-batch-size 8] [--baseline-src DIR]

Each of N clients sends an image+text request (greedy, a fixed output length), waits for the whole
answer and sends the next, for ``--duration`` seconds, so requests keep arriving while others decode.
Reports, per concurrency: requests, output tokens/s, TTFT P50/P95 and end-to-end P50, and the ratio of
tokens/s and P95 TTFT to one client's. Defaults to the bundled demo model (built on first use). No network.

``--baseline-src DIR`` also runs every level on another vlserve source tree (e.g. the previous release
unpacked with ``git archive HEAD src | tar -x -C /tmp/old``), interleaved with this one, each level in a
fresh process, so both are measured on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw


def chart(i: int) -> Image.Image:
    image = Image.new("RGB", (320 + 16 * (i % 8), 240), "white")
    draw = ImageDraw.Draw(image)
    for k in range(5):
        height = 20 + (37 * (i + k)) % 200
        draw.rectangle((20 + 60 * k, 235 - height, 60 + 60 * k, 235), fill=(30 * k, 90, 200 - 30 * k))
    return image


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure(model: Path | None, clients: int, duration: float, max_tokens: int, max_batch_size: int) -> dict:
    from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
    from vlserve.engine.transformers import TransformersEngine
    from vlserve.settings import Settings

    settings = Settings(model=model, warmup=True, max_batch_size=max_batch_size)
    engine = TransformersEngine(settings)
    await engine.start()
    requests = [EngineRequest.chat([ChatTurn.user(f"Values of chart {i}?", 1)], [chart(i)]) for i in range(16)]
    prompts = [await engine.prepare(request) for request in requests]
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    ttft: list[float] = []
    e2e: list[float] = []
    tokens = 0
    deadline = time.perf_counter() + duration

    async def client(c: int) -> None:
        nonlocal tokens
        n = c
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            first = None
            async for delta in engine.generate(prompts[n % len(prompts)], params):
                if first is None and delta.token_ids:
                    first = time.perf_counter() - start
                if delta.finish_reason:
                    tokens += delta.usage.completion_tokens
            ttft.append(first or 0.0)
            e2e.append(time.perf_counter() - start)
            n += clients

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(c) for c in range(clients)))
    finally:
        wall = time.perf_counter() - started
        await engine.close()
    return {
        "clients": clients,
        "requests": len(e2e),
        "tok_per_s": tokens / wall,
        "ttft_p50_s": statistics.median(ttft),
        "ttft_p95_s": percentile(ttft, 0.95),
        "e2e_p50_s": statistics.median(e2e),
        "prompt_tokens": prompts[0].num_tokens,
    }


def in_process(src: Path | None, args: argparse.Namespace, clients: int) -> dict:
    """One level in a fresh interpreter, on ``src`` (a vlserve source tree) or this one."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    command = [sys.executable, __file__, "--one", str(clients), "--duration", str(args.duration)]
    command += ["--max-tokens", str(args.max_tokens), "--max-batch-size", str(args.max_batch_size)]
    if args.model is not None:
        command += ["--model", str(args.model)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--baseline-src", type=Path, default=None, help="another vlserve src/ to compare with")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a single level, JSON out
    args = parser.parse_args()
    if args.one is not None:
        result = asyncio.run(measure(args.model, args.one, args.duration, args.max_tokens, args.max_batch_size))
        print(json.dumps(result))
        return
    if args.model is None:
        from vlserve.demo import build_random_model
        from vlserve.settings import Settings

        build_random_model(Settings().model_dir())
    levels = [int(c) for c in args.concurrency.split(",")]
    trees: dict[str, Path | None] = {"this tree": None}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for clients in levels:
        for name, src in trees.items():  # interleaved: both trees see the same machine load
            results[name].append(in_process(src, args, clients))
    print(
        f"{args.duration:g} s per level, closed-loop clients, {args.max_tokens} tokens per answer (ignore_eos), "
        f"greedy, max_batch_size {args.max_batch_size}, prompt {results['this tree'][0]['prompt_tokens']} tokens"
    )
    print("| engine | clients | requests | output tok/s | x one | TTFT P50 s | TTFT P95 s | P95 / one | e2e P50 s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        one = rows[0]
        for r in rows:
            cells = [
                name, r["clients"], r["requests"], f"{r['tok_per_s']:.1f}", f"{r['tok_per_s'] / one['tok_per_s']:.2f}",
                f"{r['ttft_p50_s']:.3f}", f"{r['ttft_p95_s']:.3f}", f"{r['ttft_p95_s'] / one['ttft_p95_s']:.2f}",
                f"{r['e2e_p50_s']:.2f}",
            ]  # fmt: skip
            print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
