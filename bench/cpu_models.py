"""A checkpoint served by the transformers engine on this machine's CPU: load time, throughput, TTFT, peak RSS.

    .venv/bin/python bench/cpu_models.py --model DIR [--dtype auto|float32|bfloat16] [--concurrency 1,4,8]
        [--max-tokens 32] [--rounds 2] [--image-tokens 1280]

It starts `vlserve serve --model DIR` (transformers engine, warm-up on) and reports, as one Markdown row:
- **load**: seconds from the command to ``/health/ready`` (weights loaded and a warm-up generation run);
- **tokens/s at each concurrency**: that many clients in a closed loop, each request a short text prompt
  decoding exactly ``--max-tokens`` tokens (``ignore_eos``), ``--rounds`` requests per client; output
  tokens over the wall time of the level;
- **TTFT**: one streamed request with one image of ``--image-tokens`` visual tokens (a chart of 32 × 32 px
  per token, the server's pixel budget raised to take it whole), from sending to the first content chunk;
- **peak RSS**: the server's ``VmHWM`` at the end, and its ``VmRSS`` when ready.
The load and the timing are `vlserve bench`'s (vlserve.benchmark: a closed loop per level, TTFT from the
first content chunk). Loopback only; every loop is bounded by its counts and a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import math
import sys
import time
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import vlserve  # noqa: E402

from vlserve.benchmark.endpoint import http_client  # noqa: E402
from vlserve.benchmark.load import Bounds, run_level  # noqa: E402
from vlserve.benchmark.measure import RequestResult, stream_chat  # noqa: E402
from vlserve.benchmark.stats import summarise  # noqa: E402

PROMPT = "Describe what a bar chart of yearly revenue usually shows, in detail."


def proc_status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def chart_data_url(tokens: int) -> str:
    """A PNG chart whose sides are multiples of 32 px, of ``tokens`` visual tokens (one per 32 × 32 px)."""
    cols = max(1, int(math.sqrt(tokens * 5 / 4)))
    while tokens % cols:
        cols -= 1
    width, height = 32 * cols, 32 * (tokens // cols)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for k in range(8):
        top = height // 10 + (k * 97) % (height // 2)
        draw.rectangle((width * k // 9 + 8, top, width * (k + 1) // 9, height - 8), fill=(30 * k, 90, 200 - 20 * k))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def failed(results: list[RequestResult]) -> None:
    """Stop at a failed request, as the numbers would be wrong without it."""
    errors = sorted({r.error for r in results if not r.ok and r.error})
    if errors:
        raise RuntimeError(f"requests failed: {', '.join(errors)}")


async def throughput(client: httpx.AsyncClient, url: str, concurrency: int, args: argparse.Namespace) -> float:
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": args.max_tokens, "ignore_eos": True,
            "temperature": 0.7}  # fmt: skip
    bounds = Bounds(requests=concurrency * args.rounds, cap_s=args.timeout)
    level = await run_level(client, url, lambda n: body, concurrency, bounds, timeout=args.timeout)
    failed(level.results)
    return summarise(concurrency, level.results, started=level.started).output_tokens_per_s


async def ttft(client: httpx.AsyncClient, url: str, image_url: str, timeout: float) -> tuple[float, int]:
    content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": "values?"}]
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 4, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    result = await stream_chat(client, url, body, timeout=timeout)
    failed([result])
    return (result.ttft if result.ttft is not None else float("nan")), result.prompt_tokens or 0


async def measure(url: str, pid: int, args: argparse.Namespace) -> dict:
    chat = f"{url}/v1/chat/completions"
    async with http_client(timeout=args.timeout, trust_env=False) as client:
        client.headers["Cache-Control"] = "no-store"
        ready_rss = proc_status_mib(pid, "VmRSS")
        first, prompt_tokens = await ttft(client, chat, chart_data_url(args.image_tokens), args.timeout)
        rates = {c: await throughput(client, chat, c, args) for c in args.concurrency}
    return {"ready_rss": ready_rss, "ttft": first, "prompt_tokens": prompt_tokens, "rates": rates,
            "peak_rss": proc_status_mib(pid, "VmHWM")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--concurrency", default="1,4,8", type=lambda s: [int(c) for c in s.split(",")])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="requests per client at each concurrency")
    parser.add_argument("--image-tokens", type=int, default=1280)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--set", action="append", default=[], help="another VLSERVE_ setting, NAME=VALUE")
    args = parser.parse_args()
    pixels = args.image_tokens * 32 * 32
    extra = dict(item.split("=", 1) for item in args.set)
    settings = {"dtype": args.dtype, "max_pixels": pixels, "max_batch_size": max(args.concurrency), **extra}
    started = time.perf_counter()
    with vlserve("--model", str(args.model), timeout=args.timeout, **settings) as server:
        load = time.perf_counter() - started
        result = asyncio.run(measure(server.url, server.pid, args))
    rates = " | ".join(f"{result['rates'][c]:.2f}" for c in args.concurrency)
    print(f"| model | dtype | load s | tok/s at {', '.join(map(str, args.concurrency))} | TTFT s (prompt tokens) "
          "| RSS ready / peak MiB |")  # fmt: skip
    ttft = f"{result['ttft']:.1f} ({result['prompt_tokens']})"
    rss = f"{result['ready_rss']:.0f} / {result['peak_rss']:.0f}"
    print(f"| {args.model.name} | {args.dtype} | {load:.1f} | {rates} | {ttft} | {rss} |")


if __name__ == "__main__":
    main()
