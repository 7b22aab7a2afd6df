"""Images through the remote engine: bytes sent upstream, and the upstream's latency with and without the resize.

    .venv/bin/python bench/remote_media.py [--repeats 10] [--model DIR]

Three large images (a 4032x3024 JPEG photo and a 2480x3508 A4 page scanned at 300 dpi as JPEG, both
with sensor grain, and a 1920x1080 PNG screenshot), encoded as a client would send them. For each:
the bytes of the client's data URL and of what the gateway sends upstream (resized once into the
pixel budget: by default JPEG for a JPEG and PNG otherwise; both forced formats too); the upstream's
latency for a one-token answer (so decoding, preprocessing and prefill dominate) when it gets the
original and when it gets what the gateway sends; and the latency end to end through the gateway.
The upstream is `vlserve serve` on the demo model (transformers' PIL image processor on CPU), started
with the gateway on loopback. Each latency is a level of `vlserve bench`'s load (vlserve.benchmark) at one
client, after one unmeasured request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import random
import statistics
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import api_headers, vlserve  # noqa: E402

from vlserve.benchmark.endpoint import http_client  # noqa: E402
from vlserve.benchmark.load import Bounds, run_level  # noqa: E402
from vlserve.benchmark.measure import RequestResult, stream_chat  # noqa: E402
from vlserve.engine.base import MediaItem  # noqa: E402
from vlserve.engine.remote.media import inline_image  # noqa: E402
from vlserve.media.resize import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, ImageBudget  # noqa: E402


def _grain(image: Image.Image, sigma: float) -> Image.Image:
    """Sensor or scanner noise: what makes real photos and scans large once encoded."""
    noise = Image.effect_noise(image.size, sigma).convert("RGB")
    return Image.blend(image, noise, 0.12)


def photo() -> Image.Image:
    rng = random.Random(1)
    image = Image.linear_gradient("L").resize((4032, 3024)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(400):
        x, y = rng.randrange(4032), rng.randrange(3024)
        r = rng.randint(10, 200)
        draw.ellipse((x, y, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    return _grain(image.filter(ImageFilter.GaussianBlur(2)), 40)


def scan() -> Image.Image:
    rng = random.Random(2)
    image = Image.new("RGB", (2480, 3508), (250, 250, 246))
    draw = ImageDraw.Draw(image)
    for row in range(160, 3300, 48):
        x = 200
        while x < 2200:
            width = rng.randint(30, 160)
            draw.rectangle((x, row, x + width, row + 22), fill=(20, 20, 20))
            x += width + rng.randint(15, 30)
    return _grain(image, 20)


def screenshot() -> Image.Image:
    image = Image.new("RGB", (1920, 1080), "white")
    draw = ImageDraw.Draw(image)
    for k in range(12):
        top = 100 + (97 * k) % 800
        draw.rectangle((100 + 140 * k, top, 200 + 140 * k, 1000), fill=(20 * k, 120, 240 - 20 * k))
    return image


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def data_url(data: bytes, fmt: str) -> str:
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(data).decode()}"


def latency_ms(url: str, image_url: str, repeats: int) -> tuple[float, float]:
    """Median and max milliseconds of ``repeats`` one-token requests sent one at a time, after a warm-up."""
    body = {
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": "What is this?"}]}],
        "max_tokens": 1,
        "temperature": 0,
    }  # fmt: skip

    async def run() -> list[RequestResult]:
        chat = f"{url}/v1/chat/completions"
        async with http_client(timeout=300, trust_env=False) as client:
            client.headers.update(api_headers())
            warm = await stream_chat(client, chat, body, timeout=300)
            level = await run_level(client, chat, lambda n: body, 1, Bounds(requests=repeats), timeout=300)
        return [warm, *level.results]

    warm, *results = asyncio.run(run())
    failed = [r.error for r in (warm, *results) if not r.ok]
    if failed or len(results) < repeats:
        raise RuntimeError(f"{url}: {len(results)} of {repeats} answered; errors: {failed}")
    times = [r.e2e * 1000 for r in results]
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    budget = ImageBudget(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
    cases = [("photo 4032x3024", photo(), "JPEG"), ("A4 scan 300 dpi 2480x3508", scan(), "JPEG"),
             ("screenshot 1920x1080", screenshot(), "PNG")]  # fmt: skip
    sizes, timings = [], []
    with vlserve(*model) as up, vlserve(*model, engine="remote", upstream=up.url) as gw:
        upstream, gateway = up.url, gw.url
        for name, image, fmt in cases:
            original = data_url(encoded(image, fmt), fmt)
            item = MediaItem(image, source_type=f"image/{fmt.lower()}")  # as the gateway has it after decoding
            sent, tokens = inline_image(item, budget, "auto")
            png, _ = inline_image(item, budget, "png")
            jpeg, _ = inline_image(item, budget, "jpeg")
            resized = budget.size_for(*image.size)
            kind = sent.split(";")[0].removeprefix("data:image/")
            sizes.append(
                f"| {name} ({fmt}) | {len(original) / 1e6:.2f} MB | {resized[0]}x{resized[1]} ({tokens} tokens) "
                f"| {len(sent) / 1e6:.2f} MB ({kind}) | {len(png) / 1e6:.2f} MB | {len(jpeg) / 1e6:.2f} MB |"
            )
            raw = latency_ms(upstream, original, args.repeats)
            fitted = latency_ms(upstream, sent, args.repeats)
            through = latency_ms(gateway, original, args.repeats)
            timings.append(
                f"| {name} | {raw[0]:.0f} ({raw[1]:.0f}) | {fitted[0]:.0f} ({fitted[1]:.0f}) "
                f"| {raw[0] - fitted[0]:.0f} | {through[0]:.0f} ({through[1]:.0f}) |"
            )
    print("| image | client sends (data URL) | the model sees | gateway sends (auto) | as PNG | as JPEG |")
    print("|---|---:|---|---:|---:|---:|")
    print("\n".join(sizes))
    print("\n| image | upstream gets the original: median (max) ms | upstream gets what the gateway sends | saved ms "
          "| end to end through the gateway |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    print("\n".join(timings))


if __name__ == "__main__":
    main()
