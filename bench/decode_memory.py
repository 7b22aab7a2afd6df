"""Decompression amplification: how far a burst of small PNGs that decode to many pixels raises a server's RSS.

    .venv/bin/python bench/decode_memory.py [--requests 8] [--images 2] [--side 6000] [--control-side 1200]
        [--rounds 1] [--model DIR] [--set NAME=VALUE ...]

Starts `vlserve serve` (the demo model unless --model; loopback, a free port; ``--set`` adds VLSERVE_*
settings, e.g. ``--set decode_budget_pixels=0``) and sends bursts of ``requests`` chat completions at once
(``max_tokens`` 1), each with ``images`` one-colour PNGs, every image of every burst a different colour (so
the decoded-image cache cannot share a decode). First an unmeasured warm-up burst, then per round a control
burst of ``control-side`` PNGs (the size the model sees a large image at anyway: what the engine's own work
costs) and the burst of ``side x side`` PNGs (about 35 KB each at 6000 x 6000, 144 MB each as RGB). The
server's VmRSS is sampled every 50 ms: for a second before each burst (idle, the median), during it and for a
second after. Prints a Markdown table: the answers (status, error code), idle, peak and peak above idle.
A burst is a level of `vlserve bench`'s load (vlserve.benchmark) with as many clients as requests.
Loopback only; every request has a timeout and every loop a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import api_headers, vlserve  # noqa: E402

from vlserve.benchmark.endpoint import http_client  # noqa: E402
from vlserve.benchmark.load import Bounds, run_level  # noqa: E402
from vlserve.benchmark.measure import RequestResult  # noqa: E402

SAMPLE_S = 0.05


def flat_png(side: int, colour: int) -> bytes:
    """A ``side x side`` 8-bit palette PNG of one colour: real pixels, compressed about a thousand to one (every
    pixel is index 0, which the palette maps to ``colour`` as 0xRRGGBB, so the bytes differ by the palette)."""
    image = Image.new("P", (side, side), 0)
    image.putpalette([colour >> 16 & 255, colour >> 8 & 255, colour & 255] + [255] * 765)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


class Images:
    """Request contents, each image a colour no earlier burst had."""

    def __init__(self, requests: int, images: int) -> None:
        self.requests, self.images, self._next = requests, images, 0

    def bodies(self, side: int) -> list[list[str]]:
        count = self.requests * self.images
        urls = [
            "data:image/png;base64," + base64.b64encode(flat_png(side, self._next + k)).decode() for k in range(count)
        ]
        self._next += count
        return [urls[k * self.images : (k + 1) * self.images] for k in range(self.requests)]


def vm_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def sample(pid: int, seconds: float, into: list[float]) -> None:
    """Append the server's VmRSS (MiB) every 50 ms for ``seconds``."""
    for _ in range(int(seconds / SAMPLE_S)):
        into.append(vm_rss_mib(pid))
        await asyncio.sleep(SAMPLE_S)


def chat_body(urls: list[str]) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    content.append({"type": "text", "text": "What is shown?"})
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 1, "temperature": 0}


def outcome(result: RequestResult) -> tuple[int, str | None]:
    """(status, the error envelope's code and any Retry-After); no answer: (-1, "timeout" or "connection")."""
    if result.ok:
        return 200, None
    if result.status is None or result.status == 200:
        return -1, result.error
    parts = (result.error or "").split(" ", 1)
    code = parts[1] if len(parts) == 2 else None
    retry = result.extra.get("retry_after")
    return result.status, f"{code} (Retry-After {retry})" if retry else code


async def burst(url: str, pid: int, bodies: list[list[str]], timeout: float) -> dict:
    """Send every request at once while sampling the server's RSS; the figures of that burst."""
    idle: list[float] = []
    await sample(pid, 1.0, idle)
    during: list[float] = []
    sampling = True

    async def watch() -> None:
        for _ in range(int(timeout / SAMPLE_S) + 1):  # bounded; the burst's end stops it first
            if not sampling:
                return
            during.append(vm_rss_mib(pid))
            await asyncio.sleep(SAMPLE_S)

    requests = [chat_body(urls) for urls in bodies]
    async with http_client(timeout=timeout, trust_env=False) as client:
        client.headers.update(api_headers())
        watcher = asyncio.create_task(watch())
        chat, bounds = f"{url}/v1/chat/completions", Bounds(requests=len(requests), cap_s=timeout + 10)
        level = await run_level(client, chat, requests.__getitem__, len(requests), bounds, timeout=timeout)
        elapsed = time.perf_counter() - level.started
        sampling = False
        await watcher
    outcomes = [outcome(r) for r in level.results] + [(-1, "cut")] * (len(requests) - len(level.results))
    after: list[float] = []
    await sample(pid, 1.0, after)
    base = statistics.median(idle)
    peak = max(during + after)
    return {"outcomes": Counter(outcomes), "idle": base, "peak": peak, "after": after[-1], "seconds": elapsed}


def report(label: str, args: argparse.Namespace, side: int, figures: dict) -> None:
    outcomes = sorted(figures["outcomes"].items(), key=str)
    statuses = ", ".join(f"{count} x {status}" + (f" {code}" if code else "") for (status, code), count in outcomes)
    print(
        f"| {label} | {args.requests} x {args.images} of {side}x{side} | {statuses} | {figures['seconds']:.1f} s | "
        f"{figures['idle']:.0f} | {figures['peak']:.0f} | {figures['peak'] - figures['idle']:+.0f} | "
        f"{figures['after']:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="concurrent requests")
    parser.add_argument("--images", type=int, default=2, help="images per request")
    parser.add_argument("--side", type=int, default=6000, help="width and height of each PNG, pixels")
    parser.add_argument("--control-side", type=int, default=1200, help="the control bursts' PNGs; 0: none")
    parser.add_argument("--rounds", type=int, default=1, help="control and measured bursts, one after the other")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--model", type=Path, default=None, help="checkpoint directory (default: the demo model)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a VLSERVE_* setting")
    args = parser.parse_args()
    if not 1 <= args.requests <= 256 or not 1 <= args.images <= 64 or not 1 <= args.rounds <= 20:
        sys.exit("--requests 1..256, --images 1..64, --rounds 1..20")
    settings = dict(item.split("=", 1) for item in args.set)
    images = Images(args.requests, args.images)
    model = ("--model", str(args.model)) if args.model else ()
    with vlserve(*model, **settings) as server:
        kib = len(flat_png(args.side, 0)) / 1024
        print(f"{args.side}x{args.side} one-colour PNGs, {kib:.0f} KB each; settings: {settings or 'defaults'}\n")
        print("| burst | requests x images | answers | took | idle MiB | peak MiB | peak - idle | after MiB |")
        print("|---|---|---|---|---|---|---|---|")
        warm = args.control_side or args.side
        asyncio.run(burst(server.url, server.pid, images.bodies(warm), args.timeout))  # the engine's first-use costs
        for round_ in range(1, args.rounds + 1):
            if args.control_side:
                figures = asyncio.run(burst(server.url, server.pid, images.bodies(args.control_side), args.timeout))
                report(f"{round_}: control", args, args.control_side, figures)
            figures = asyncio.run(burst(server.url, server.pid, images.bodies(args.side), args.timeout))
            report(f"{round_}: large", args, args.side, figures)


if __name__ == "__main__":
    main()
